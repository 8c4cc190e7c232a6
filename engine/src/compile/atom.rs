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

/// A variant's atom.
#[derive(Clone, Debug)]
pub(super) struct Atom {
    /// Where it starts in the variant.
    pub off: usize,
    /// Its strings, all of one length (small byte sets expand).
    pub strings: Vec<Vec<u8>>,
    /// How rare it is, with the bonus of its length class (quarter bits;
    /// higher is better).
    pub score: u32,
}

/// The score bonus of one step up in atom length class: 8 bits, so a
/// shorter atom wins only when it is 256 times rarer.
const CLASS_STEP: u32 = 32;

/// Picks the best atom window: the highest-scoring run of at most
/// [`MAX_ATOM`] positions that are literal bytes or tiny sets, expanding
/// into at most [`MAX_ATOM_EXPANSION`] strings.
pub(super) fn pick_atom(elems: &[Elem], sets: &[ByteSet]) -> Option<Atom> {
    let ch: Vec<Option<([u8; 4], usize)>> = elems.iter().map(|e| choices(e, sets)).collect();
    // Each position's cost as a window's first, and after the one before
    // (as `rarity::Cost` adds them), computed once: a window's cost is then
    // a sum.
    let alone: Vec<u32> = ch
        .iter()
        .map(|c| c.map_or(0, |(b, n)| position_cost(&[], &b[..n])))
        .collect();
    let after: Vec<u32> = (0..ch.len())
        .map(|i| match (i.checked_sub(1).and_then(|p| ch[p]), ch[i]) {
            (Some((a, m)), Some((b, n))) => position_cost(&a[..m], &b[..n]),
            _ => 0,
        })
        .collect();
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
    let window = &ch[start..start + len];
    if window.iter().flatten().all(|&(_, n)| n == 1) {
        // The common case: one string, one allocation.
        return Some(Atom {
            off: start,
            strings: vec![window.iter().flatten().map(|(c, _)| c[0]).collect()],
            score,
        });
    }
    let mut out: Vec<Vec<u8>> = vec![Vec::with_capacity(len)];
    for (c, n) in window.iter().flatten() {
        out = out
            .iter()
            .flat_map(|prefix| {
                c[..*n].iter().map(move |&b| {
                    let mut p = prefix.clone();
                    p.push(b);
                    p
                })
            })
            .collect();
    }
    Some(Atom {
        off: start,
        strings: out,
        score,
    })
}
