//! Byte-compare subsignatures of `.ldb` logical signatures
//! (clamav-formats.md §6.4): `N(>>offset#options#comparisons)`.
//!
//! The grammar is ClamAV 1.4's as measured with `clamscan`, quirks
//! included: numbers are read like C's `strtol` (a leading `0` is octal,
//! `0x` is hex, a sign is allowed), letters may come in any order under
//! conflict rules, and a form without endianness loads but never matches.

use crate::pattern::{ByteCompare, CountOp, NumberForm};

/// Whether subsignature text is a byte-compare: ClamAV's test, a `(` and
/// two different `#` (a macro or a PCRE was recognized before).
pub(crate) fn is_byte_compare(text: &str) -> bool {
    text.contains('(') && text.find('#') != text.rfind('#')
}

/// C `strtol` with base 0 or 10 over all of `s`: leading whitespace, an
/// optional sign, then (base 0) `0x` hex, `0` octal or decimal digits.
/// `None` if anything is left over; an empty number is 0; overflow
/// saturates, as `strtol` does.
fn strtol_all(s: &str, base: u32) -> Option<i64> {
    let s = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if base == 10 {
        (10, s)
    } else if let Some(rest) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))
        && rest.bytes().next().is_some_and(|b| b.is_ascii_hexdigit())
    {
        (16, rest)
    } else if s.starts_with('0') {
        (8, s)
    } else {
        (10, s)
    };
    let mut v: i128 = 0;
    for b in digits.bytes() {
        let d = (b as char).to_digit(radix)?;
        v = (v * i128::from(radix) + i128::from(d)).min(i128::from(u64::MAX));
    }
    let v = if neg { -v } else { v };
    Some(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Parses one byte-compare subsignature (see [`is_byte_compare`]).
///
/// # Errors
///
/// Why ClamAV refuses it (which refuses the whole database).
pub(crate) fn parse(text: &str) -> Result<ByteCompare, String> {
    // The trigger: `strtol` base 10 from the start; no digits means the
    // text must begin with `(` (and the trigger is 0).
    let open = text.find('(').ok_or("no `(`")?;
    let head = &text[..open];
    let trigger = if head.is_empty() {
        0
    } else {
        let t = head.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let t = t.strip_prefix(['+', '-']).unwrap_or(t);
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "the trigger {head:?} is not a subsignature number followed by `(`"
            ));
        }
        strtol_all(head, 10).ok_or("bad trigger")? as i16
    };
    if trigger > 64 {
        return Err(format!("the trigger {head:?} is above 64"));
    }
    let rest = &text[open + 1..];
    let close = rest.find(')').ok_or("no closing `)`")?;
    // Anything after the `)` is ignored, as ClamAV ignores it.
    let fields: Vec<&str> = rest[..close].split('#').collect();
    let [offset, options, comparisons] = fields.as_slice() else {
        return Err(format!("{} `#`-separated fields, 3 expected", fields.len()));
    };
    ByteCompare {
        trigger,
        offset: parse_offset(offset)?,
        form: NumberForm::Never,
        exact: false,
        width: 0,
        comparisons: parse_comparisons(comparisons)?,
    }
    .with_options(options)
}

fn parse_offset(s: &str) -> Result<i64, String> {
    let bad = || format!("bad offset {s:?} (`>>n` or `<<n`)");
    if s.is_empty() || s.starts_with('0') {
        // ClamAV reads an empty offset, or one starting with `0`, as 0.
        return Ok(0);
    }
    let (forward, n) = if let Some(n) = s.strip_prefix(">>") {
        (true, n)
    } else if let Some(n) = s.strip_prefix("<<") {
        (false, n)
    } else {
        return Err(bad());
    };
    let v = strtol_all(n, 0).ok_or_else(bad)?;
    Ok(if forward { v } else { v.saturating_neg() })
}

fn parse_comparisons(s: &str) -> Result<Vec<(CountOp, i64)>, String> {
    let pieces: Vec<&str> = s.split(',').collect();
    if pieces.len() > 2 {
        return Err(format!("more than two comparisons in {s:?}"));
    }
    pieces
        .into_iter()
        .map(|p| {
            let op = match p.as_bytes().first() {
                Some(b'=') => CountOp::Eq,
                Some(b'>') => CountOp::Gt,
                Some(b'<') => CountOp::Lt,
                _ => return Err(format!("bad comparison {p:?} (`=`, `>` or `<`)")),
            };
            let v = strtol_all(&p[1..], 0).ok_or_else(|| format!("bad value in {p:?}"))?;
            Ok((op, v))
        })
        .collect()
}

impl ByteCompare {
    /// Reads the options field: letters (`h d a i l b e`), then the width.
    fn with_options(mut self, s: &str) -> Result<ByteCompare, String> {
        let bad = || format!("bad options {s:?}");
        let letters = s.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let (mut base, mut little, mut big) = (None::<u8>, false, false);
        for c in s[..letters].bytes() {
            let other_base = |allowed: u8| base.is_some_and(|b| b != allowed);
            match c {
                b'h' | b'd' | b'i' | b'a' if other_base(c) => return Err(bad()),
                b'd' if little => return Err(bad()),
                b'd' => {
                    base = Some(c);
                    big = true;
                }
                b'h' | b'i' | b'a' => base = Some(c),
                b'l' if big || base == Some(b'd') => return Err(bad()),
                b'l' => little = true,
                b'b' if little => return Err(bad()),
                b'b' => big = true,
                b'e' => self.exact = true,
                _ => return Err(bad()),
            }
        }
        let width_text = &s[letters..];
        if width_text.is_empty() {
            return Err(bad());
        }
        let width = strtol_all(width_text, 0)
            .filter(|&w| w != 0)
            .ok_or_else(|| format!("bad width in {s:?}"))?;
        match base {
            Some(b'i') if ![1, 2, 4, 8].contains(&width) => {
                return Err(format!("a binary width is 1, 2, 4 or 8, not {width}"));
            }
            Some(b'h') if width > 18 => {
                return Err(format!("a hex width is at most 18, not {width}"));
            }
            _ => {}
        }
        // Only the low 32 bits count at scan time.
        self.width = width as u32;
        self.form = match (base, big, little) {
            (Some(b'i'), true, _) => NumberForm::Binary { big: true },
            (Some(b'i'), _, true) => NumberForm::Binary { big: false },
            (Some(b'h'), true, _) => NumberForm::Hex { big: true },
            (Some(b'h'), _, true) => NumberForm::Hex { big: false },
            (Some(b'd'), ..) => NumberForm::Decimal,
            (Some(b'a'), true, _) => NumberForm::Auto { big: true },
            (Some(b'a'), _, true) => NumberForm::Auto { big: false },
            _ => NumberForm::Never,
        };
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strtol_reads_them() {
        assert_eq!(strtol_all("", 0), Some(0));
        assert_eq!(strtol_all(" 8", 0), Some(8));
        assert_eq!(strtol_all("010", 0), Some(8));
        assert_eq!(strtol_all("08", 0), None);
        assert_eq!(strtol_all("0x1f", 0), Some(31));
        assert_eq!(strtol_all("-2", 0), Some(-2));
        assert_eq!(strtol_all("5 ", 0), None);
        assert_eq!(strtol_all("0xFFFFFFFFFFFFFFFF", 0), Some(i64::MAX));
        assert_eq!(strtol_all("65536", 10), Some(65536));
    }

    #[test]
    fn forms() {
        let b = parse("0(>>4#hb4#=4660)").unwrap();
        assert_eq!(
            (b.trigger, b.offset, b.form, b.width),
            (0, 4, NumberForm::Hex { big: true }, 4)
        );
        assert_eq!(parse("(<<3#d4#>1,<9)").unwrap().form, NumberForm::Decimal);
        assert_eq!(parse("(<<3#d4#>1,<9)").unwrap().offset, -3);
        assert_eq!(parse("1(>>4#i2#=1)").unwrap().form, NumberForm::Never);
        assert_eq!(parse("65536(>>4#db4#=1)").unwrap().trigger, 0);
        assert_eq!(parse("0(0junk#ib1#=84)").unwrap().offset, 0);
        assert!(parse("65(>>4#db4#=1)").is_err());
        assert!(parse("70000(>>4#db4#=1)").is_err());
        assert!(parse("0x0(>>4#db4#=1)").is_err());
        assert!(parse("0(>>4#dl4#=1)").is_err());
        assert!(parse("0(>>4#ib3#=1)").is_err());
        assert!(parse("0(>>4#hb19#=1)").is_err());
        assert!(parse("0(>>4#hb0#=1)").is_err());
        assert!(parse("0(>>4#db4#=1,=2,=3)").is_err());
        assert!(parse("0(>>4#db4#=1#x)").is_err());
        assert!(parse("0(>>4#db4#=1").is_err());
        assert!(parse("0(>5#db4#=1)").is_err());
        assert!(parse("0(>>4#db4#>=1)").is_err());
    }
}
