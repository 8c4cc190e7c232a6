//! PCRE subsignatures of `.ldb` logical signatures (clamav-formats.md
//! §6.5): `[Offset:]Trigger/regex/flags`, read as ClamAV 1.4 reads them.
//!
//! A `/` that is not right after a `\` opens or closes a regular
//! expression for ClamAV's splitters: a `;` or a `:` between two such
//! slashes does not separate fields.

use crate::clamav::expr::parse_expression;
use crate::clamav::ndb::{OffsetSpec, parse_offset};
use crate::pattern::{Offset, PcreCheck};
use crate::pcre::{Options, Regex};

/// ClamAV's bypass trigger ("stultzgetsregex" in hex): the expression
/// always runs, which lets a PCRE be subsignature 0.
pub(crate) const BYPASS_TRIGGER: &str = "7374756c747a676574737265676578";

/// Splits `s` at `sep`, except where a `/` toggle (flipped by every `/`
/// not preceded by `\`) is on. `toggle` carries the state in and out.
pub(crate) fn split_outside_regex<'a>(s: &'a str, sep: u8, toggle: &mut bool) -> Vec<&'a str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    for i in 0..b.len() {
        match b[i] {
            b'/' if i == 0 || b[i - 1] != b'\\' => *toggle = !*toggle,
            c if c == sep && !*toggle => {
                out.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[from..]);
    out
}

/// What a PCRE subsignature parses to: the check, or a reason to skip the
/// signature (a `VI` offset).
pub(crate) enum Parsed {
    Check(PcreCheck),
    Skip(&'static str),
}

/// Parses PCRE subsignature `index` (its text contains a `/`) of a
/// signature of type `target`.
///
/// # Errors
///
/// Why ClamAV refuses it (which refuses the whole database).
pub(crate) fn parse(text: &str, index: usize, target: u32) -> Result<Parsed, String> {
    // Offset and expression: split at `:` outside the expression; only
    // exactly two parts give an offset, otherwise the first part is the
    // expression and the rest is ignored (so `::i` does nothing).
    let mut toggle = false;
    let parts = split_outside_regex(text, b':', &mut toggle);
    let (offset_text, body) = match parts.as_slice() {
        [o, b] => (Some(*o), *b),
        [b, ..] => (None, *b),
        [] => (None, text),
    };
    if text.starts_with('/') {
        return Err("a PCRE subsignature must start with its trigger".into());
    }
    let (Some(first), Some(last)) = (body.find('/'), body.rfind('/')) else {
        return Err("a PCRE subsignature needs `/` around its expression".into());
    };
    if first == last {
        return Err("mismatched `/` around the expression".into());
    }
    let trigger_text = &body[..first];
    let regex_text = &body[first + 1..last];
    let flags = &body[last + 1..];
    if trigger_text.is_empty() || regex_text.is_empty() {
        return Err("the trigger and the expression cannot be empty".into());
    }
    let trigger = if trigger_text == BYPASS_TRIGGER {
        None
    } else {
        let e = parse_expression(trigger_text)
            .map_err(|r| format!("the trigger {trigger_text:?} is not valid: {r}"))?;
        let max = e.max_index();
        if max == index {
            return Err(format!(
                "the trigger of subsignature {index} refers to itself"
            ));
        }
        if max > index {
            return Err(format!(
                "the trigger of subsignature {index} refers to a later subsignature, {max}"
            ));
        }
        Some(e)
    };
    let mut options = Options::default();
    let (mut global, mut rolling, mut encompass) = (false, false, false);
    for c in flags.chars() {
        match c {
            'i' => options.caseless = true,
            's' => options.dotall = true,
            'm' => options.multiline = true,
            'x' => options.extended = true,
            'A' => options.anchored = true,
            'E' => options.dollar_endonly = true,
            'U' => options.ungreedy = true,
            'g' => global = true,
            'r' => rolling = true,
            'e' => encompass = true,
            c => return Err(format!("unknown PCRE flag {c:?}")),
        }
    }
    let offset = match offset_text {
        None => Offset::Any,
        // ClamAV reads an empty offset as 0.
        Some("") => Offset::Absolute { start: 0, shift: 0 },
        Some(o) => match parse_offset(o, target)? {
            OffsetSpec::Plain(o) => o,
            OffsetSpec::VersionInfo => return Ok(Parsed::Skip("offset:VI")),
            OffsetSpec::Macro => {
                return Err("a PCRE subsignature cannot take a macro offset".into());
            }
        },
    };
    let regex = Regex::new(regex_text.as_bytes(), options)
        .map_err(|e| format!("the expression does not compile: {e}"))?;
    Ok(Parsed::Check(PcreCheck {
        trigger,
        offset,
        regex,
        global,
        rolling,
        encompass,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, index: usize) -> Result<PcreCheck, String> {
        match parse(text, index, 0)? {
            Parsed::Check(c) => Ok(c),
            Parsed::Skip(r) => Err(r.into()),
        }
    }

    #[test]
    fn splitting_outside_expressions() {
        let mut t = false;
        assert_eq!(
            split_outside_regex("a;0/x;y/;b", b';', &mut t),
            ["a", "0/x;y/", "b"]
        );
        assert!(!t);
        let mut t = false;
        assert_eq!(split_outside_regex("0/e/f/;b", b';', &mut t), ["0/e/f/;b"]);
        assert!(t);
        let mut t = false;
        assert_eq!(
            split_outside_regex("0/e\\/f:c/", b':', &mut t),
            ["0/e\\/f:c/"]
        );
    }

    #[test]
    fn forms_and_refusals() {
        let c = check("7:0/ABC/rgi", 1).unwrap();
        assert_eq!(c.offset, Offset::Absolute { start: 7, shift: 0 });
        assert!(c.rolling && c.global && c.regex.options().caseless);
        let c = check("0/abc/::i", 1).unwrap();
        assert!(!c.regex.options().caseless);
        assert_eq!(c.offset, Offset::Any);
        assert_eq!(
            check(":0/ab/", 1).unwrap().offset,
            Offset::Absolute { start: 0, shift: 0 }
        );
        assert_eq!(check("0/e/f/", 1).unwrap().regex.pattern(), b"e/f");
        assert!(
            check(&format!("{BYPASS_TRIGGER}/abc/"), 0)
                .unwrap()
                .trigger
                .is_none()
        );
        assert!(check("0x/abc/", 1).is_ok());
        for bad in [
            "/abc/",
            "5:/abc/",
            "0/abc",
            "0//i",
            "0/abc/z",
            "0/abc/I",
            "0/abc/ ",
            "1/abc/",
            "2/abc/",
            "0&/abc/",
            "x/abc/",
            "7:0/ABC/::i",
            "0/ABC/:",
            "EP+0:0/ABC/",
            "5,x:0/ABC/",
            "0/a(bc/",
        ] {
            assert!(check(bad, 1).is_err(), "{bad}");
        }
        assert!(check("0/abc/", 0).is_err());
        assert!(matches!(
            parse("VI:0/abc/", 1, 1),
            Ok(Parsed::Skip("offset:VI"))
        ));
    }
}
