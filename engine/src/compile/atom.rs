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
    let Scratch { ch, alone, after } = scratch;
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
    let mut best: Option<(u32, usize, usize)> = None; // score, start, len
    for start in 0..ch.len() {
        let mut product = 1usize;
        let mut cost = 0;
        let mut len = 0;
        while start + len < ch.len() && len < MAX_ATOM {
            let Some((_, n)) = &ch[start + len] else {
                break;
            };
            if product * n > MAX_ATOM_EXPANSION {
                break;
            }
            product *= n;
            cost += if len == 0 {
                alone[start]
            } else {
                after[start + len]
            };
            len += 1;
            // Rarity (quarter bits, `rarity.rs`) plus a bonus for the
            // length classes the atom index scans cheaply (an index whose
            // atoms all have 7+ bytes looks up every 4th position, one with
            // 4-6 byte atoms every 2nd; atoms of 1-3 bytes are checked at
            // every position). A lone byte is a last resort.
            let class = match len {
                7.. => 3 * CLASS_STEP,
                4..=6 => 2 * CLASS_STEP,
                2..=3 => CLASS_STEP,
                _ => 0,
            };
            let s = cost + class;
            if best.is_none_or(|(b, _, _)| s > b) {
                best = Some((s, start, len));
            }
        }
    }
    let (score, start, len) = best?;
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
