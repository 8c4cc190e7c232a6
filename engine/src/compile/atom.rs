//! Choosing the atom of a variant: its rarest run of static bytes.

use giva_signatures::ByteSet;

use crate::compile::program::Elem;
use crate::index::rarity::position_cost;

/// Atoms are at most this long: longer ones add automaton states but hardly
/// any selectivity.
const MAX_ATOM: usize = 12;

/// Most atom strings one variant may expand into (small sets such as
/// case-folded letters multiply).
const MAX_ATOM_EXPANSION: usize = 64;

/// The bytes a position may take, if they are few enough for an atom
/// (at most 4: `(bytes, count)`, no allocation).
fn choices(e: &Elem, sets: &[ByteSet]) -> Option<([u8; 4], usize)> {
    match *e {
        Elem::Byte { value, mask: 0xff } => Some(([value, 0, 0, 0], 1)),
        Elem::Byte { .. } => None,
        Elem::Set(i) => {
            let s = &sets[i as usize];
            if s.len() > 4 || s.is_empty() {
                return None;
            }
            let mut out = [0u8; 4];
            let mut n = 0;
            for b in s.iter() {
                out[n] = b;
                n += 1;
            }
            Some((out, n))
        }
    }
}

/// A variant's atom; its strings are in the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Atom {
    /// Where it starts in the variant.
    pub off: usize,
    /// The length of each string.
    pub len: usize,
    /// How many strings (small byte sets expand), back to back in the
    /// buffer `pick_atom` was given, in the order of their bytes' choices.
    pub count: usize,
    /// How rare it is, with the bonus of its length class (quarter bits;
    /// higher is better).
    pub score: u32,
}

/// The score bonus of one step up in atom length class: 8 bits, so a
/// shorter atom wins only when it is 256 times rarer.
const CLASS_STEP: u32 = 32;

/// What [`pick_atom`] works in, kept from one variant to the next so that
/// a load of 100k patterns does not allocate it 100k times.
#[derive(Default)]
pub(super) struct Scratch {
    ch: Vec<Option<([u8; 4], usize)>>,
    alone: Vec<u32>,
    after: Vec<u32>,
    /// Sums of `after` before each position.
    pre: Vec<u32>,
}

/// The score bonus of an atom of `len` bytes: the length classes the atom
/// index scans cheaply (an index whose atoms all have 7+ bytes looks up
/// every 4th position, one with 4-6 byte atoms every 2nd; atoms of 1-3
/// bytes are checked at every position). A lone byte is a last resort.
fn class(len: usize) -> u32 {
    match len {
        7.. => 3 * CLASS_STEP,
        4..=6 => 2 * CLASS_STEP,
        2..=3 => CLASS_STEP,
        _ => 0,
    }
}

/// Picks the best atom window: the highest-scoring run of at most
/// [`MAX_ATOM`] positions that are literal bytes or tiny sets, expanding
/// into at most [`MAX_ATOM_EXPANSION`] strings, which are appended to
/// `out`.
pub(super) fn pick_atom(
    elems: &[Elem],
    sets: &[ByteSet],
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<Atom> {
    let Scratch {
        ch,
        alone,
        after,
        pre,
    } = scratch;
    ch.clear();
    ch.extend(elems.iter().map(|e| choices(e, sets)));
    // Each position's cost as a window's first, and after the one before
    // (as `rarity::Cost` adds them), computed once: a window's cost is then
    // a sum.
    alone.clear();
    alone.extend(
        ch.iter()
            .map(|c| c.map_or(0, |(b, n)| position_cost(&[], &b[..n]))),
    );
    after.clear();
    after.extend(
        (0..ch.len()).map(|i| match (i.checked_sub(1).and_then(|p| ch[p]), ch[i]) {
            (Some((a, m)), Some((b, n))) => position_cost(&a[..m], &b[..n]),
            _ => 0,
        }),
    );
    // A window's score only grows as it lengthens (costs and class bonuses
    // are never negative), so the first window of the best score, in the
    // order (start, length), starts where the longest window allowed from
    // there scores best first, and is the shortest window from there that
    // scores as much. The longest windows are found in one pass: where one
    // ends never moves back as its start moves on.
    pre.clear();
    pre.push(0);
    for (i, a) in after.iter().enumerate() {
        pre.push(pre[i] + a);
    }
    let score = |start: usize, len: usize| -> u32 {
        alone[start] + (pre[start + len] - pre[start + 1]) + class(len)
    };
    let mut best: Option<(u32, usize, usize)> = None; // score, start, longest
    let (mut end, mut product) = (0usize, 1usize);
    for start in 0..ch.len() {
        if end <= start {
            (end, product) = (start, 1);
        } else if let Some((_, n)) = ch[start - 1] {
            product /= n;
        }
        while end < ch.len() && end - start < MAX_ATOM {
            let Some((_, n)) = ch[end] else {
                break;
            };
            if product * n > MAX_ATOM_EXPANSION {
                break;
            }
            product *= n;
            end += 1;
        }
        if end > start {
            let s = score(start, end - start);
            if best.is_none_or(|(b, _, _)| s > b) {
                best = Some((s, start, end - start));
            }
        }
    }
    let (score_max, start, longest) = best?;
    let len = (1..=longest)
        .find(|&len| score(start, len) == score_max)
        .unwrap_or(longest);
    let score = score_max;
    let window: [([u8; 4], usize); MAX_ATOM] =
        std::array::from_fn(|k| ch.get(start + k).copied().flatten().unwrap_or(([0; 4], 1)));
    let window = &window[..len];
    // Every combination of the positions' choices, the last position
    // changing fastest (a mixed-radix count).
    let count: usize = window.iter().map(|&(_, n)| n).product();
    let mut digit = [0usize; MAX_ATOM];
    for _ in 0..count {
        out.extend(window.iter().zip(&digit).map(|(&(c, _), &d)| c[d]));
        for (k, &(_, n)) in window.iter().enumerate().rev() {
            digit[k] += 1;
            if digit[k] < n {
                break;
            }
            digit[k] = 0;
        }
    }
    Some(Atom {
        off: start,
        len,
        count,
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window, in the order (start, length), the first of the best
    /// score kept: what [`pick_atom`] finds in one pass.
    fn every_window(elems: &[Elem], sets: &[ByteSet]) -> Option<(usize, usize, u32)> {
        let ch: Vec<_> = elems.iter().map(|e| choices(e, sets)).collect();
        let cost = |i: usize, first: bool| -> u32 {
            let Some((b, n)) = ch[i] else { return 0 };
            match (first, i.checked_sub(1).and_then(|p| ch[p])) {
                (false, Some((a, m))) => position_cost(&a[..m], &b[..n]),
                (false, None) => 0,
                (true, _) => position_cost(&[], &b[..n]),
            }
        };
        let mut best: Option<(u32, usize, usize)> = None;
        for start in 0..ch.len() {
            let (mut product, mut sum) = (1, 0);
            for len in 1..=MAX_ATOM.min(ch.len() - start) {
                let Some((_, n)) = ch[start + len - 1] else {
                    break;
                };
                if product * n > MAX_ATOM_EXPANSION {
                    break;
                }
                product *= n;
                sum += cost(start + len - 1, len == 1);
                let s = sum + class(len);
                if best.is_none_or(|(b, _, _)| s > b) {
                    best = Some((s, start, len));
                }
            }
        }
        best.map(|(s, start, len)| (start, len, s))
    }

    #[test]
    fn the_one_pass_window_is_the_first_best_of_every_window() {
        let mut sets = vec![ByteSet::ALL];
        for members in [&b"ab"[..], b"xyz", b"\x00\xff\x10\x20", b"q"] {
            let mut s = ByteSet::EMPTY;
            members.iter().for_each(|&b| s.insert(b));
            sets.push(s);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut scratch = Scratch::default();
        for _ in 0..5_000 {
            let len = 1 + random(40) as usize;
            let elems: Vec<Elem> = (0..len)
                .map(|_| match random(10) {
                    0 => Elem::Byte { value: 0, mask: 0 },
                    1 => Elem::Byte {
                        value: 0x40,
                        mask: 0xf0,
                    },
                    2 | 3 => Elem::Set(random(sets.len() as u64) as u32),
                    // Few distinct bytes, so that scores tie.
                    _ => Elem::Byte {
                        value: [0, 0x41, 0xe8, 0xff][random(4) as usize],
                        mask: 0xff,
                    },
                })
                .collect();
            let mut out = Vec::new();
            let got =
                pick_atom(&elems, &sets, &mut scratch, &mut out).map(|a| (a.off, a.len, a.score));
            assert_eq!(got, every_window(&elems, &sets), "{elems:?}");
            if let Some((_, len, _)) = got {
                assert_eq!(out.len() % len, 0);
            }
        }
    }
}
