//! A deliberately naive reference matcher, used as the oracle in property
//! tests. It tries every start position with a straightforward recursive
//! matcher directly over the signature IR: no atoms, no automaton, no
//! streaming. Slow (polynomial in the input length per pattern); only for
//! small inputs.
//!
//! Semantics (shared with the engine): a pattern *matches* at every distinct
//! end position of its last part (the right anchor byte excluded) for which a
//! chain of parts exists that satisfies the gaps, the anchors, the
//! assertions and the offset (which constrains the start of the whole match,
//! left anchor byte included). The number of such end positions is the match
//! count used by logical signatures.

use std::collections::BTreeSet;

use giva_signatures::{Assertion, BodyPattern, Database, HashAlgo, Offset, Token};

use giva_signatures::pattern::{boundary_any, boundary_left, boundary_right};

use crate::exec::logical;
use crate::result::{Detection, DetectionKind};

fn match_seq(tokens: &[Token], data: &[u8], pos: usize, out: &mut Vec<usize>) {
    let Some((first, rest)) = tokens.split_first() else {
        out.push(pos);
        return;
    };
    match first {
        Token::Byte { value, mask } => {
            if pos < data.len() && data[pos] & mask == value & mask {
                match_seq(rest, data, pos + 1, out);
            }
        }
        Token::Set(s) => {
            if pos < data.len() && s.contains(data[pos]) {
                match_seq(rest, data, pos + 1, out);
            }
        }
        Token::NotAlt { len, branches } => {
            let len = *len as usize;
            if pos + len <= data.len() {
                let w = &data[pos..pos + len];
                if !branches.iter().any(|b| b.as_slice() == w) {
                    match_seq(rest, data, pos + len, out);
                }
            }
        }
        Token::Alt(branches) => {
            for b in branches.iter() {
                let mut mids = Vec::new();
                match_seq(b, data, pos, &mut mids);
                for m in mids {
                    match_seq(rest, data, m, out);
                }
            }
        }
    }
}

fn before_ok(a: Assertion, data: &[u8], start: usize) -> bool {
    if start == 0 {
        return !a.needs_neighbour();
    }
    let p = data[start - 1];
    match a {
        Assertion::NotBoundary => !boundary_any(p),
        Assertion::NotLine => p != b'\n',
        Assertion::Alnum => p.is_ascii_alphanumeric(),
        Assertion::Boundary => boundary_left(p),
        Assertion::Line => p == b'\n',
        Assertion::NonAlnum => !p.is_ascii_alphanumeric(),
        Assertion::NonAlnumWide => {
            !(start >= 2 && p == 0 && data[start - 2].is_ascii_alphanumeric())
        }
    }
}

fn after_ok(a: Assertion, data: &[u8], end: usize) -> bool {
    if end >= data.len() {
        return !a.needs_neighbour();
    }
    let n = data[end];
    let n2 = data.get(end + 1).copied();
    match a {
        Assertion::NotBoundary => !boundary_right(n),
        Assertion::NotLine => n != b'\n',
        Assertion::Alnum => n.is_ascii_alphanumeric(),
        Assertion::Boundary => boundary_right(n),
        Assertion::Line => n == b'\n' || (n == b'\r' && n2 == Some(b'\n')),
        Assertion::NonAlnum => !n.is_ascii_alphanumeric(),
        Assertion::NonAlnumWide => !(n.is_ascii_alphanumeric() && matches!(n2, Some(0) | None)),
    }
}

/// The set of match end positions of `pattern` with `offset` in `data`
/// (the whole file).
pub fn match_ends(pattern: &BodyPattern, offset: Offset, data: &[u8]) -> BTreeSet<usize> {
    let n = data.len();
    let mut result = BTreeSet::new();
    let Some((lo, hi)) = offset.start_range(Some(n as u64)) else {
        return result;
    };
    let in_range = |a: usize| (a as u64) >= lo && (a as u64) <= hi;
    let start_ok = |a: usize| {
        in_range(a)
            && pattern
                .start_assertion
                .is_none_or(|x| before_ok(x, data, a))
    };
    let last = pattern.parts.len() - 1;
    let end_ok = |e: usize| match pattern.right_anchor {
        None => pattern.end_assertion.is_none_or(|x| after_ok(x, data, e)),
        Some(an) => (an.min..=an.max).any(|d| {
            let p = e + d as usize;
            p < n
                && data[p] == an.byte
                && pattern
                    .end_assertion
                    .is_none_or(|x| after_ok(x, data, p + 1))
        }),
    };
    // Valid ends of the previous part.
    let mut prev: BTreeSet<usize> = BTreeSet::new();
    for (k, part) in pattern.parts.iter().enumerate() {
        let mut ends = BTreeSet::new();
        for s in 0..n {
            if k == 0 {
                let ok = match pattern.left_anchor {
                    None => start_ok(s),
                    // The offset counts from the body, not the anchor byte.
                    Some(an) => {
                        in_range(s)
                            && (an.min..=an.max).any(|d| {
                                let d = d as usize + 1;
                                s >= d
                                    && data[s - d] == an.byte
                                    && pattern
                                        .start_assertion
                                        .is_none_or(|x| before_ok(x, data, s - d))
                            })
                    }
                };
                if !ok {
                    continue;
                }
            } else {
                let g = pattern.gaps[k - 1];
                let chained = prev.iter().any(|&e| {
                    e <= s && {
                        let dist = (s - e) as u64;
                        dist >= u64::from(g.min) && g.max.is_none_or(|m| dist <= u64::from(m))
                    }
                });
                if !chained {
                    continue;
                }
            }
            let mut out = Vec::new();
            match_seq(&part.tokens, data, s, &mut out);
            for e in out {
                if k < last || end_ok(e) {
                    ends.insert(e);
                }
            }
        }
        prev = ends;
    }
    result.extend(prev);
    result
}

/// Every detection for `data` as a whole file, in the all-match order
/// documented on [`ScanResult`](crate::ScanResult).
pub fn scan(db: &Database, data: &[u8]) -> Vec<Detection> {
    let size = data.len() as u64;
    if size <= crate::scanner::TOO_SMALL {
        return Vec::new();
    }
    let digests: Vec<(HashAlgo, Vec<u8>)> = HashAlgo::ALL
        .iter()
        .map(|&a| (a, crate::exec::hashing::digest(a, data)))
        .collect();
    if digests.iter().any(|(a, d)| db.is_allowed(*a, d, size)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (a, d) in &digests {
        out.extend(db.lookup_hash(*a, d, size).map(|n| Detection {
            name: n.into_owned(),
            kind: DetectionKind::Hash,
        }));
    }
    for sig in db.body_signatures() {
        if !match_ends(&sig.pattern, sig.offset, data).is_empty() {
            out.push(Detection {
                name: sig.name.clone(),
                kind: DetectionKind::Body,
            });
        }
    }
    for lsig in db.logical_signatures() {
        if lsig
            .file_size
            .is_some_and(|(lo, hi)| size < lo || size > hi)
        {
            continue;
        }
        let counts: Vec<u32> = lsig
            .subsigs
            .iter()
            .map(|sub| {
                sub.variants
                    .iter()
                    .map(|v| match_ends(v, sub.offset, data).len() as u32)
                    .sum()
            })
            .collect();
        if logical::eval(&lsig.expr, &counts) {
            out.push(Detection {
                name: lsig.name.clone(),
                kind: DetectionKind::Logical,
            });
        }
    }
    out
}
