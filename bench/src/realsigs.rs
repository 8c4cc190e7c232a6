//! Signatures for the real-file benchmark, cut from real code and written
//! out for every engine the benchmark runs: ClamAV's `.ndb` and `.ldb`
//! (giva and clamscan read the same files), a YARA rule file (yara and
//! YARA-X), and one regular expression per pattern (Hyperscan).
//!
//! No official ClamAV database is reachable here, so this mix stands in
//! for one. Each signature is 16–40 bytes of code cut from a file outside
//! the corpus; then, by a seeded draw:
//!
//! | share | form |
//! |---|---|
//! | 25% | one byte inside becomes `??` |
//! | 10% | a gap `{n-m}` inside, over the bytes the cut skipped |
//! | 5% | one byte keeps only its high nibble (`a?`) |
//! | 5% | one byte becomes an alternation of itself and another (`(aa\|bb)`) |
//! | 1% | a logical signature of 2–4 such parts, all required |
//!
//! The forms may combine; the rest are plain bytes. [`MIX`] holds the
//! shares.

use std::fmt::Write as _;

use crate::rng::Rng;

/// The shares of the forms, in percent.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// One byte becomes `??`.
    pub any_byte: u64,
    /// A `{n-m}` gap.
    pub gap: u64,
    /// A high nibble only.
    pub nibble: u64,
    /// An alternation of two bytes.
    pub alternation: u64,
    /// A logical signature of 2–4 parts.
    pub logical: u64,
}

/// The benchmark's mix (the table in the module's docs).
pub const MIX: Mix = Mix {
    any_byte: 25,
    gap: 10,
    nibble: 5,
    alternation: 5,
    logical: 1,
};

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Token {
    /// This byte.
    Byte(u8),
    /// Any byte (`??`).
    Any,
    /// A byte whose high nibble is this (`a?`).
    High(u8),
    /// Either byte (`(aa|bb)`).
    Either(u8, u8),
    /// From `min` to `max` bytes of anything (`{min-max}`).
    Gap(u16, u16),
}

/// A byte pattern.
pub type Pattern = Vec<Token>;

/// A signature: one pattern (`.ndb`), or several that must all match
/// (`.ldb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Its name.
    pub name: String,
    /// Its parts (one for a body signature).
    pub parts: Vec<Pattern>,
}

/// Whether `b` is worth a signature: not mostly one byte value, and code
/// rather than a string (a quarter or more of it not printable).
pub fn worth_cutting(b: &[u8]) -> bool {
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &x in b {
        if !seen[x as usize] {
            seen[x as usize] = true;
            distinct += 1;
        }
    }
    let unprintable = b
        .iter()
        .filter(|&&c| !(0x20..0x7f).contains(&c) && c != b'\n' && c != b'\t')
        .count();
    distinct >= b.len() / 2 && unprintable * 4 >= b.len()
}

/// Cuts one pattern out of `data` at a random place, in the mix's forms;
/// `None` if the draw fell on bytes not worth a signature. Its fixed bytes
/// are always the source's, so the pattern matches where it was cut.
pub fn cut(rng: &mut Rng, data: &[u8], mix: &Mix) -> Option<Pattern> {
    let len = 16 + rng.below(25);
    let gap = (rng.range(0, 99) < mix.gap).then(|| {
        let skipped = rng.range(1, 32) as usize;
        let slack = rng.range(0, 16) as usize;
        (skipped, slack)
    });
    let span = len + gap.map_or(0, |(skipped, _)| skipped);
    if data.len() <= span {
        return None;
    }
    let at = rng.below(data.len() - span);
    let bytes = &data[at..at + span];
    let mut out: Pattern = match gap {
        Some((skipped, slack)) => {
            let left = 6 + rng.below(len - 12);
            let (head, rest) = bytes.split_at(left);
            let tail = &rest[skipped..];
            if !worth_cutting(head) || !worth_cutting(tail) {
                return None;
            }
            let lo = skipped.saturating_sub(slack) as u16;
            let hi = (skipped + slack) as u16;
            head.iter()
                .map(|&b| Token::Byte(b))
                .chain(std::iter::once(Token::Gap(lo, hi)))
                .chain(tail.iter().map(|&b| Token::Byte(b)))
                .collect()
        }
        None => {
            if !worth_cutting(bytes) {
                return None;
            }
            bytes.iter().map(|&b| Token::Byte(b)).collect()
        }
    };
    // A change never touches the first or last two bytes, nor a gap's
    // neighbours, so every form keeps fixed bytes at both ends.
    let inner = |rng: &mut Rng, p: &Pattern| -> Option<usize> {
        let candidates: Vec<usize> = (2..p.len().saturating_sub(2))
            .filter(|&i| {
                matches!(p[i], Token::Byte(_))
                    && !matches!(p[i - 1], Token::Gap(..))
                    && !matches!(p.get(i + 1), Some(Token::Gap(..)))
            })
            .collect();
        (!candidates.is_empty()).then(|| candidates[rng.below(candidates.len())])
    };
    if rng.range(0, 99) < mix.any_byte
        && let Some(i) = inner(rng, &out)
    {
        out[i] = Token::Any;
    }
    if rng.range(0, 99) < mix.nibble
        && let Some(i) = inner(rng, &out)
        && let Token::Byte(b) = out[i]
    {
        out[i] = Token::High(b >> 4);
    }
    if rng.range(0, 99) < mix.alternation
        && let Some(i) = inner(rng, &out)
        && let Token::Byte(b) = out[i]
    {
        let other = b ^ (1 + rng.below(255) as u8);
        out[i] = Token::Either(b, other);
    }
    Some(out)
}

/// Draws `count` signatures named `PREFIX.N` from `sources` (the bytes of
/// files outside the corpus), with the mix's logical share made of 2–4
/// parts cut from one source.
pub fn draw(
    rng: &mut Rng,
    sources: &[Vec<u8>],
    count: usize,
    prefix: &str,
    mix: &Mix,
) -> Vec<Signature> {
    let mut out = Vec::with_capacity(count);
    let mut seen = std::collections::BTreeSet::new();
    let mut tries = 0usize;
    while out.len() < count && !sources.is_empty() && tries < count * 100 {
        tries += 1;
        let data = &sources[rng.below(sources.len())];
        let parts = if rng.range(0, 99) < mix.logical {
            2 + rng.below(3)
        } else {
            1
        };
        let cut_parts: Option<Vec<Pattern>> = (0..parts).map(|_| cut(rng, data, mix)).collect();
        let Some(parts) = cut_parts else {
            continue;
        };
        if !seen.insert(parts.clone()) {
            continue;
        }
        out.push(Signature {
            name: format!("{prefix}.{}", out.len()),
            parts,
        });
    }
    out
}

fn clamav_pattern(p: &Pattern) -> String {
    let mut s = String::new();
    for t in p {
        let _ = match t {
            Token::Byte(b) => write!(s, "{b:02x}"),
            Token::Any => write!(s, "??"),
            Token::High(h) => write!(s, "{h:x}?"),
            Token::Either(a, b) => write!(s, "({a:02x}|{b:02x})"),
            Token::Gap(lo, hi) => write!(s, "{{{lo}-{hi}}}"),
        };
    }
    s
}

/// The signatures as ClamAV text: (`.ndb`, `.ldb`) lines.
pub fn clamav(sigs: &[Signature]) -> (String, String) {
    let (mut ndb, mut ldb) = (String::new(), String::new());
    for s in sigs {
        if let [one] = s.parts.as_slice() {
            let _ = writeln!(ndb, "{}:0:*:{}", s.name, clamav_pattern(one));
        } else {
            let all: Vec<String> = (0..s.parts.len()).map(|i| i.to_string()).collect();
            let parts: Vec<String> = s.parts.iter().map(clamav_pattern).collect();
            let _ = writeln!(
                ldb,
                "{};Target:0;{};{}",
                s.name,
                all.join("&"),
                parts.join(";")
            );
        }
    }
    (ndb, ldb)
}

fn yara_pattern(p: &Pattern) -> String {
    let mut s = String::new();
    for t in p {
        let _ = match t {
            Token::Byte(b) => write!(s, "{b:02X} "),
            Token::Any => write!(s, "?? "),
            Token::High(h) => write!(s, "{h:X}? "),
            Token::Either(a, b) => write!(s, "({a:02X}|{b:02X}) "),
            Token::Gap(lo, hi) => write!(s, "[{lo}-{hi}] "),
        };
    }
    s.trim_end().to_string()
}

/// The signatures as one YARA rule file (a rule per signature, its name
/// with `.` as `_`; a logical signature needs all of its strings).
pub fn yara(sigs: &[Signature]) -> String {
    let mut out = String::new();
    for s in sigs {
        let _ = writeln!(out, "rule {} {{\n  strings:", s.name.replace('.', "_"));
        for (i, p) in s.parts.iter().enumerate() {
            let _ = writeln!(out, "    $p{i} = {{ {} }}", yara_pattern(p));
        }
        let _ = writeln!(out, "  condition:\n    all of them\n}}");
    }
    out
}

/// One pattern as a Hyperscan regular expression (to be compiled with
/// `HS_FLAG_DOTALL`, so that `.` is any byte).
pub fn hyperscan_pattern(p: &Pattern) -> String {
    let mut s = String::new();
    for t in p {
        let _ = match t {
            Token::Byte(b) => write!(s, "\\x{b:02x}"),
            Token::Any => write!(s, "."),
            Token::High(h) => write!(s, "[\\x{h:x}0-\\x{h:x}f]"),
            Token::Either(a, b) => write!(s, "[\\x{a:02x}\\x{b:02x}]"),
            Token::Gap(lo, hi) => write!(s, ".{{{lo},{hi}}}"),
        };
    }
    s
}

/// The signatures as Hyperscan input, a JSON array of `[signature name,
/// [part regexes]]`: a file matches a signature when every part matched.
pub fn hyperscan(sigs: &[Signature]) -> String {
    let rows: Vec<(String, Vec<String>)> = sigs
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.parts.iter().map(hyperscan_pattern).collect(),
            )
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(seed: u64, n: usize) -> Vec<u8> {
        let mut rng = Rng::new(seed, 1);
        (0..n).map(|_| rng.next_u64() as u8).collect()
    }

    /// Does `p` match `data` at `at`? (A plain backtracking matcher, the
    /// reference for the cut patterns.)
    fn matches_at(p: &[Token], data: &[u8], at: usize) -> bool {
        let Some((first, rest)) = p.split_first() else {
            return true;
        };
        let one = |ok: bool| ok && matches_at(rest, data, at + 1);
        match *first {
            Token::Gap(lo, hi) => (lo as usize..=hi as usize)
                .any(|n| at + n <= data.len() && matches_at(rest, data, at + n)),
            _ if at >= data.len() => false,
            Token::Byte(b) => one(data[at] == b),
            Token::Any => one(true),
            Token::High(h) => one(data[at] >> 4 == h),
            Token::Either(a, b) => one(data[at] == a || data[at] == b),
        }
    }

    #[test]
    fn every_cut_matches_its_source_and_the_mix_shows() {
        let sources = vec![code(1, 1 << 16), code(2, 1 << 16)];
        let mut rng = Rng::new(7, 2);
        let sigs = draw(&mut rng, &sources, 2000, "T", &MIX);
        assert_eq!(sigs.len(), 2000);
        for s in &sigs {
            for p in &s.parts {
                assert!(
                    sources
                        .iter()
                        .any(|d| (0..d.len()).any(|at| matches_at(p, d, at))),
                    "{} does not match its source",
                    s.name
                );
                assert!(matches!(p.first(), Some(Token::Byte(_))));
                assert!(matches!(p.last(), Some(Token::Byte(_))));
            }
        }
        let with = |f: fn(&Token) -> bool| {
            sigs.iter()
                .filter(|s| s.parts.iter().any(|p| p.iter().any(f)))
                .count()
        };
        let share = |n: usize| n * 100 / sigs.len();
        assert!((18..=32).contains(&share(with(|t| matches!(t, Token::Any)))));
        assert!((5..=15).contains(&share(with(|t| matches!(t, Token::Gap(..))))));
        assert!((2..=9).contains(&share(with(|t| matches!(t, Token::High(_))))));
        assert!((2..=9).contains(&share(with(|t| matches!(t, Token::Either(..))))));
        let logical = sigs.iter().filter(|s| s.parts.len() > 1).count();
        assert!((5..=45).contains(&logical), "{logical} logical of 2000");
    }

    #[test]
    fn each_engine_gets_the_same_pattern() {
        let p = vec![
            Token::Byte(0x4d),
            Token::Any,
            Token::High(0xa),
            Token::Either(0x01, 0xfe),
            Token::Gap(2, 5),
            Token::Byte(0x5a),
        ];
        let s = [
            Signature {
                name: "B.0".into(),
                parts: vec![p.clone()],
            },
            Signature {
                name: "B.1".into(),
                parts: vec![p.clone(), vec![Token::Byte(1), Token::Byte(2)]],
            },
        ];
        let (ndb, ldb) = clamav(&s);
        assert_eq!(ndb, "B.0:0:*:4d??a?(01|fe){2-5}5a\n");
        assert_eq!(ldb, "B.1;Target:0;0&1;4d??a?(01|fe){2-5}5a;0102\n");
        let y = yara(&s);
        assert!(y.contains("rule B_0 {\n  strings:\n    $p0 = { 4D ?? A? (01|FE) [2-5] 5A }\n  condition:\n    all of them\n}"), "{y}");
        assert_eq!(
            hyperscan_pattern(&p),
            "\\x4d.[\\xa0-\\xaf][\\x01\\xfe].{2,5}\\x5a"
        );
        assert_eq!(
            hyperscan(&s[1..]),
            r#"[["B.1",["\\x4d.[\\xa0-\\xaf][\\x01\\xfe].{2,5}\\x5a","\\x01\\x02"]]]"#
        );
    }
}
