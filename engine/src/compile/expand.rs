//! Expanding a part's alternations into fixed-length variants.

use giva_signatures::{ByteSet, Token};

#[derive(Clone, Debug)]
pub(super) enum Flat {
    Byte { value: u8, mask: u8 },
    Set(ByteSet),
    NotAlt { len: usize, branches: Vec<Vec<u8>> },
}

pub(super) fn expand(tokens: &[Token], limit: usize) -> Option<Vec<Vec<Flat>>> {
    let mut out: Vec<Vec<Flat>> = vec![Vec::with_capacity(tokens.len())];
    for t in tokens {
        match t {
            Token::Byte { .. } | Token::Set(_) | Token::NotAlt { .. } => {
                let f = flat_of(t);
                out.iter_mut().for_each(|v| v.push(f.clone()));
            }
            Token::Alt(branches) => {
                let mut alts = Vec::new();
                for b in branches.iter() {
                    alts.extend(expand(b, limit)?);
                    if alts.len() > limit {
                        return None;
                    }
                }
                if out.len().saturating_mul(alts.len()) > limit {
                    return None;
                }
                let mut next = Vec::with_capacity(out.len() * alts.len());
                for v in &out {
                    for a in &alts {
                        let mut n = v.clone();
                        n.extend(a.iter().cloned());
                        next.push(n);
                    }
                }
                out = next;
            }
        }
    }
    Some(out)
}

/// A token without alternation, flattened.
pub(super) fn flat_of(t: &Token) -> Flat {
    match t {
        Token::Byte { value, mask } => Flat::Byte {
            value: value & mask,
            mask: *mask,
        },
        Token::Set(s) => Flat::Set(**s),
        Token::NotAlt { len, branches } => Flat::NotAlt {
            len: *len as usize,
            branches: branches.to_vec(),
        },
        Token::Alt(_) => unreachable!("an alternation is expanded, not flattened"),
    }
}
