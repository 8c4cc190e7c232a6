//! The subsignatures of a logical signature that are evaluated once the
//! content scan is done, over the whole input, as ClamAV 1.4 evaluates
//! them: byte-compare subsignatures first, then PCRE subsignatures
//! (docs/clamav-formats.md §6.4, §6.5).

use std::time::Instant;

use giva_signatures::pcre::{MatchError, MatchLimits};
use giva_signatures::{
    ByteCompare, Check, CountOp, ExeInfo, LogicalSignature, NumberForm, Offset, PcreCheck,
};

use crate::exec::logical;

/// ClamAV's defaults for a PCRE match: `PCREMatchLimit` and
/// `PCRERecMatchLimit` (the depth limit; 2000, whatever its help says).
pub const PCRE_LIMITS: MatchLimits = MatchLimits {
    match_limit: 100_000,
    depth_limit: 2_000,
};

/// ClamAV's default `PCREMaxFileSize`: no PCRE runs on a larger layer.
pub const PCRE_MAX_INPUT: u64 = 100 << 20;

/// The state of the checks over one input, across its logical signatures.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// A PCRE failed with an error other than a limit: as in ClamAV, no
    /// later PCRE runs on this input.
    pcre_failed: bool,
    /// The scan's time limit; past it no PCRE runs (or goes on).
    deadline: Option<Instant>,
    /// The time limit stopped a PCRE.
    out_of_time: bool,
}

impl Checks {
    /// Checks for one input, under the scan's time limit.
    pub fn new(deadline: Option<Instant>) -> Checks {
        Checks {
            deadline,
            ..Checks::default()
        }
    }

    /// True if the time limit stopped a PCRE: what they found may be
    /// incomplete.
    pub fn out_of_time(&self) -> bool {
        self.out_of_time
    }

    fn late(&mut self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            self.out_of_time = true;
        }
        self.out_of_time
    }
    /// Evaluates `lsig`'s checks, byte-compares then PCREs, each kind in
    /// index order, adding their matches to `counts` (the signature's
    /// subsignature counts); `last_start` holds each subsignature's
    /// greatest match start plus one (0: none); `exe` is the input's
    /// executable structure, for executable offsets.
    pub fn run(
        &mut self,
        lsig: &LogicalSignature,
        counts: &mut [u32],
        last_start: &[u64],
        data: &[u8],
        exe: Option<&ExeInfo>,
    ) {
        for (index, check) in &lsig.checks {
            if let Check::ByteCompare(b) = check
                && byte_compare(lsig, b, counts, last_start, data)
                && let Some(c) = counts.get_mut(*index)
            {
                *c = c.saturating_add(1);
            }
        }
        if data.len() as u64 > PCRE_MAX_INPUT {
            return;
        }
        for (index, check) in &lsig.checks {
            let Check::Pcre(p) = check else { continue };
            if self.pcre_failed || self.late() {
                return;
            }
            if p.trigger
                .as_ref()
                .is_some_and(|t| !logical::eval(t, counts))
            {
                continue;
            }
            let n = self.pcre(p, data, exe);
            if let Some(c) = counts.get_mut(*index) {
                *c = c.saturating_add(n);
            }
        }
    }

    /// Runs one PCRE: its number of matches.
    fn pcre(&mut self, p: &PcreCheck, data: &[u8], exe: Option<&ExeInfo>) -> u32 {
        let size = data.len() as u64;
        // The subject's start and the shift after it.
        let (start, shift) = match p.offset {
            Offset::Any => (0, 0),
            o => match o.start_range_in(Some(size), exe) {
                Some((lo, hi)) => (lo, hi - lo),
                None => return 0,
            },
        };
        if start >= size {
            return 0;
        }
        let any = p.offset == Offset::Any;
        // Anchored at the offset unless `r`, a shift, or `*`.
        let anchored = !p.rolling && shift == 0 && !any;
        // With `e` and a shift, the match must lie in [start, start+shift).
        let window = p.encompass && shift > 0;
        let end = if window {
            start.saturating_add(shift).min(size)
        } else {
            size
        };
        let subject = &data[start as usize..end as usize];
        let mut searcher = match p.regex.searcher(PCRE_LIMITS) {
            Ok(s) => s,
            Err(_) => {
                self.pcre_failed = true;
                return 0;
            }
        };
        let mut count = 0u32;
        let mut at = 0usize;
        loop {
            match searcher.find_at(subject, at, anchored) {
                Ok(Some((s, e))) => {
                    // Without `e`, a shift bounds where a match may start.
                    if !window && shift > 0 && s as u64 > shift {
                        break;
                    }
                    count = count.saturating_add(1);
                    // An empty match ends the search (ClamAV would find it
                    // again and again until its time limit).
                    if !p.global || e == s || e >= subject.len() || self.late() {
                        break;
                    }
                    at = e;
                }
                Ok(None) | Err(MatchError::Limit) => break,
                Err(MatchError::Other(_)) => {
                    self.pcre_failed = true;
                    break;
                }
            }
        }
        count
    }
}

/// One byte-compare: it fires once when its trigger has matched, the
/// number it reads (near the trigger's last match start) can be read, and
/// every comparison holds.
fn byte_compare(
    lsig: &LogicalSignature,
    b: &ByteCompare,
    counts: &[u32],
    last_start: &[u64],
    data: &[u8],
) -> bool {
    let Ok(t) = usize::try_from(b.trigger) else {
        return false;
    };
    if counts.get(t).copied().unwrap_or(0) == 0 {
        // Not matched, not a subsignature of this signature, a later check,
        // or itself.
        return false;
    }
    // An earlier byte-compare records no match start: 0.
    let base = if lsig.checks.iter().any(|(i, _)| *i == t) {
        0
    } else {
        last_start.get(t).map_or(0, |s| s.saturating_sub(1))
    };
    let Some(pos) = i64::try_from(base)
        .ok()
        .and_then(|b0| b0.checked_add(b.offset))
    else {
        return false;
    };
    // ClamAV never reads from the file's first byte (its bounds check is
    // `pos > 0`), and the whole field must lie in the file.
    let width = u64::from(b.width);
    let Ok(pos) = u64::try_from(pos) else {
        return false;
    };
    if pos == 0 || pos.saturating_add(width) > data.len() as u64 {
        return false;
    }
    let field = &data[pos as usize..(pos + width) as usize];
    let Some(v) = read(b.form, b.exact, field) else {
        return false;
    };
    b.comparisons.iter().all(|&(op, want)| match op {
        CountOp::Eq => v == want,
        CountOp::Gt => v > want,
        CountOp::Lt => v < want,
    })
}

/// The number in `field`, read as `form`; `None` when ClamAV reads none
/// (or reads one but refuses it: overflow, `e` not satisfied).
fn read(form: NumberForm, exact: bool, field: &[u8]) -> Option<i64> {
    match form {
        NumberForm::Never => None,
        NumberForm::Binary { big } => {
            let mut v: u64 = 0;
            if big {
                for &x in field {
                    v = v << 8 | u64::from(x);
                }
            } else {
                for &x in field.iter().rev() {
                    v = v << 8 | u64::from(x);
                }
            }
            Some(v as i64)
        }
        NumberForm::Hex { big } => text(field, exact, Some(big), 16),
        NumberForm::Decimal => text(field, exact, Some(true), 10),
        NumberForm::Auto { big } => {
            let t = trim_space(field);
            if t.len() < 3 {
                return None;
            }
            if t[0] == b'0' && matches!(t[1], b'x' | b'X') {
                text(field, exact, Some(big), 16)
            } else if big {
                text(field, exact, Some(true), 10)
            } else {
                None
            }
        }
    }
}

/// C's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn trim_space(field: &[u8]) -> &[u8] {
    let pad = field.iter().take_while(|&&b| is_space(b)).count();
    &field[pad..]
}

/// A text number: leading white space dropped; big-endian, or (hex only)
/// little-endian with its digit pairs reversed. With `exact` there must be
/// no leading white space and every byte must be part of the number.
fn text(field: &[u8], exact: bool, big: Option<bool>, base: u32) -> Option<i64> {
    let t = trim_space(field);
    let pad = field.len() - t.len();
    let m = t.len();
    let (value, end) = if base == 16 && big == Some(false) {
        let s = little_endian(t);
        let len = if m == 1 { 1 } else { s.len() };
        parse(&s, len, 16)?
    } else {
        parse(t, m, base)?
    };
    if exact && (pad != 0 || end != m) {
        return None;
    }
    Some(value)
}

/// ClamAV's reading of little-endian hex text: the digit pairs in reverse
/// order (`1234` is `3412`, `123` is `2301`), a `0x` prefix moved along
/// with them, and every pair after an invalid one (in the text's order)
/// read as `00`.
fn little_endian(t: &[u8]) -> Vec<u8> {
    let m = t.len();
    if m <= 1 {
        return t.to_vec();
    }
    let n = m + m % 2;
    let is0x = m >= 3 && t[0] == b'0' && matches!(t[1], b'x' | b'X');
    let h: Vec<u8> = if m % 2 == 1 {
        if is0x {
            [b"x00".as_slice(), &t[2..]].concat()
        } else {
            [b"0".as_slice(), t].concat()
        }
    } else {
        let mut h = t.to_vec();
        if is0x {
            h[0] = b'x';
        }
        h
    };
    let ok = |c: u8| c.is_ascii_hexdigit() || matches!(c, b'x' | b'X');
    let mut s = vec![b'0'; n];
    for k in 0..n / 2 {
        let (a, b) = (h[n - 2 - 2 * k], h[n - 1 - 2 * k]);
        if !ok(a) {
            s.fill(b'0');
            continue;
        }
        s[2 * k] = a;
        if ok(b) {
            s[2 * k + 1] = b;
        } else {
            s.fill(b'0');
        }
    }
    s
}

/// `strtol` over the first `len` bytes of `s` as ClamAV bounds it: white
/// space, a sign, `0x` (hex, and only without a sign), digits. Returns the
/// value and where the number ended (0 when no digit was read); `None` on
/// overflow.
fn parse(s: &[u8], len: usize, base: u32) -> Option<(i64, usize)> {
    let s = &s[..len.min(s.len())];
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    if i == s.len() {
        return Some((0, 0));
    }
    let mut neg = false;
    let mut signed = false;
    if matches!(s[i], b'-' | b'+') {
        neg = s[i] == b'-';
        signed = true;
        i += 1;
        if i == s.len() {
            return Some((0, 0));
        }
    }
    if base == 16
        && !signed
        && s[i] == b'0'
        && s.get(i + 1).is_some_and(|c| matches!(c, b'x' | b'X'))
    {
        if i + 2 >= s.len() {
            return Some((0, 0));
        }
        i += 2;
    }
    let start = i;
    let mut v: u128 = 0;
    while i < s.len() {
        let Some(d) = (s[i] as char).to_digit(36).filter(|&d| d < base) else {
            break;
        };
        v = v * u128::from(base) + u128::from(d);
        if v > 1 << 64 {
            return None;
        }
        i += 1;
    }
    if i == start {
        return Some((0, 0));
    }
    let v = if neg {
        if v > 1 << 63 {
            return None;
        }
        (v as i128).checked_neg()? as i64
    } else {
        i64::try_from(v).ok()?
    };
    Some((v, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, ScanOptions};

    fn detects(ldb: &str, data: &[u8]) -> bool {
        let mut c = giva_signatures::Compiler::new();
        c.add_source("t.ldb", &format!("{ldb}\n"), false);
        let db = c.build().expect("builds");
        let engine = Engine::new(&db).expect("engine");
        engine
            .scan_bytes(data, &ScanOptions::default())
            .is_infected()
    }

    /// With `g`, an expression matching the empty string counts once and
    /// the search ends (clamscan finds the same empty match again until
    /// its time limit).
    #[test]
    fn an_empty_global_match_counts_once() {
        let data = b"xx ab ab ab ab X ab ab zz 0123456789\n";
        assert!(detects("T;Target:0;0&1=1;7878;0/(?=ab)/g", data));
        assert!(!detects("T;Target:0;0&1>1;7878;0/(?=ab)/g", data));
        // A non-empty one counts every match.
        assert!(detects("T;Target:0;0&1=6;7878;0/ab/g", data));
    }

    /// A PCRE over a layer larger than ClamAV's `PCREMaxFileSize` does not
    /// run; a byte-compare still does.
    #[test]
    fn no_pcre_past_the_size_limit() {
        let mut data = vec![b'.'; PCRE_MAX_INPUT as usize + 1];
        data[10..18].copy_from_slice(b"TRIG1234");
        assert!(!detects("T;Target:0;0&1;54524947;0/1234/", &data));
        assert!(detects("T;Target:0;0&1=0;54524947;0/1234/", &data));
        assert!(detects("T;Target:0;0&1;54524947;0(>>4#db4#=1234)", &data));
        data.truncate(PCRE_MAX_INPUT as usize);
        assert!(detects("T;Target:0;0&1;54524947;0/1234/", &data));
    }

    fn hex_le(s: &str) -> Option<i64> {
        text(s.as_bytes(), false, Some(false), 16)
    }

    #[test]
    fn little_endian_hex_as_clamav_reads_it() {
        assert_eq!(hex_le("1234"), Some(0x3412));
        assert_eq!(hex_le("123"), Some(0x2301));
        assert_eq!(hex_le("12345"), Some(0x45_2301));
        assert_eq!(hex_le("12G4"), Some(0x12));
        assert_eq!(hex_le("0x12"), Some(0x12));
        assert_eq!(hex_le("AAx4BB"), Some(0xBB));
        assert_eq!(hex_le("12x4"), Some(0));
        assert_eq!(hex_le("120x"), Some(0x12));
        assert_eq!(hex_le("0x345"), Some(0x4503));
        assert_eq!(hex_le("A"), Some(10));
        assert_eq!(text(b"123", true, Some(false), 16), None);
        assert_eq!(text(b"120x", true, Some(false), 16), Some(0x12));
        assert_eq!(text(b"0x12", true, Some(false), 16), None);
    }

    #[test]
    fn text_numbers() {
        let dec = |s: &[u8], e| text(s, e, Some(true), 10);
        assert_eq!(dec(b"  12", false), Some(12));
        assert_eq!(dec(b"  12", true), None);
        assert_eq!(dec(b"abcd", false), Some(0));
        assert_eq!(dec(b"abcd", true), None);
        assert_eq!(dec(b"-12x", false), Some(-12));
        assert_eq!(dec(b"+123", true), Some(123));
        assert_eq!(dec(b"99999999999999999999", false), None);
        assert_eq!(dec(b"-9223372036854775808", false), Some(i64::MIN));
        let hex = |s: &[u8], e| text(s, e, Some(true), 16);
        assert_eq!(hex(b"-0x1A", false), Some(0));
        assert_eq!(hex(b"-1A", false), Some(-26));
        assert_eq!(hex(b"0x1F", true), Some(31));
        assert_eq!(hex(b"0x", false), Some(0));
        assert_eq!(hex(b"FFFFFFFFFFFFFFFF", false), None);
        assert_eq!(hex(b"7FFFFFFFFFFFFFFF", false), Some(i64::MAX));
        let auto = |s: &[u8], big| read(NumberForm::Auto { big }, false, s);
        assert_eq!(auto(b"12", true), None);
        assert_eq!(auto(b"0X1F", true), Some(31));
        assert_eq!(auto(b"010", true), Some(10));
        assert_eq!(auto(b"-12", false), None);
        assert_eq!(auto(b"0x1F", false), Some(0x1F));
        assert_eq!(
            read(NumberForm::Binary { big: true }, false, &[0xff; 8]),
            Some(-1)
        );
        assert_eq!(
            read(NumberForm::Binary { big: false }, false, &[0x12, 0x34]),
            Some(0x3412)
        );
    }
}
