//! Building an [`AtomIndex`]: which keys index each atom, chosen so that
//! the keys are rare in real data and spread over the filter.

use crate::index::atom_index::AtomIndex;
use crate::index::filter::{Bloom, Sieve};
use crate::index::hash::{MUL, gram};
use crate::index::rarity::{self, rarity};
use crate::index::table::GramTable;
use crate::util::FxBuild;

/// The rarity of `g` (4 bytes) as a key of the index: [`rarity`], but no
/// more than that of its first 3 bytes, or `heat` (that of the most common
/// 3 bytes that pick the same filter word, [`word_heat`]), plus
/// [`HOT_WORD_BITS`]. Every occurrence of those 3 bytes looks the word up,
/// and each key there makes them more likely to pass whatever follows:
/// with a few keys in the word, about 1 in 2^8 to 2^10 of them do. A rare
/// last byte does not help with that.
///
/// At 100k bench signatures, `ess\0` and `mer\x18` were keys, and `ess `
/// and `mer `, no keys but a good part of the bench's text, passed on
/// every occurrence: text files passed the filter 4,417 times a MB, 460
/// with the cap on a gram's own first 3 bytes. Later, with the bits of
/// [`bloom`] and words balanced, five strings such as `lic\n` and `g ne`
/// made most of 1,091 passes per MB of text: keys of other first bytes had
/// landed in their words. With the cap on the word's heat too, 311.
pub(super) fn gram_rarity(g: &[u8], heat: u32) -> u32 {
    rarity(g).min(
        rarity(&g[..3])
            .min(heat)
            .saturating_add(HOT_WORD_BITS * rarity::UNIT),
    )
}

/// For each word of a filter of `2^(32 - shift)` words, the rarity of the
/// most common 3 bytes that pick it, if that is at most [`HOT_BITS`]
/// (`u32::MAX` for none). At 100k bench signatures, one word in 8 has one.
pub(super) fn word_heat(shift: u32) -> Vec<u32> {
    // The common 3 bytes, found once per process (about 7 ms).
    static COMMON: std::sync::OnceLock<Vec<(u32, u32)>> = std::sync::OnceLock::new();
    let common = COMMON.get_or_init(|| {
        let mut v = Vec::new();
        rarity::common_trigrams(HOT_BITS * rarity::UNIT, |s, r| {
            v.push((u32::from_le_bytes([s[0], s[1], s[2], 0]), r));
        });
        v
    });
    let mut heat = vec![u32::MAX; 1 << (32 - shift)];
    for &(k3, r) in common {
        let w = &mut heat[(k3.wrapping_mul(MUL) >> shift) as usize];
        *w = (*w).min(r);
    }
    heat
}

/// See [`word_heat`]. 10 bits left text passing 919 times per MB at 100k
/// bench signatures, 12 bits 311 and 14 bits 288; but the more words are
/// avoided, the fuller the others: the random files passed 1,765, 1,830
/// and 2,112 times.
pub(super) const HOT_BITS: u32 = 14;

/// See [`gram_rarity`].
pub(super) const HOT_WORD_BITS: u32 = 10;

/// What a window of keys that the sieve takes by 8 bytes (see [`Sieve`])
/// is worth over one it takes by 4, in rarity: 4 bits. At 100k bench
/// signatures, real files then passed the sieve 3,361 times per MB instead
/// of 4,718 (the atom values probed went from 7,312 to 5,904, and 356
/// confirmed), while the filter in front passed as often as before
/// (26,479 against 26,777). Preferring such a window whatever its rarity
/// made the filter pass 114,876 times per MB; 8 bits did as well as 4.
const SIEVED_BONUS: i64 = (4 * rarity::UNIT) as i64;

impl AtomIndex {
    /// Indexes `atoms` (each non-empty); atom ids are their positions.
    pub fn new(atoms: Vec<Vec<u8>>) -> Self {
        let mut by = [Vec::new(), Vec::new()];
        let mut uses: std::collections::HashMap<u32, u32, FxBuild> = Default::default();
        let mut short = Vec::new();
        let mut short_first = [false; 256];
        // One position in `stride` is looked up: every 4th when no atom has
        // 4 to 6 bytes (one gather a 64-byte block instead of two), else
        // every 2nd.
        let stride = if atoms.iter().any(|a| (4..7).contains(&a.len())) {
            2
        } else {
            4
        };
        // The filter word of a key whose first 3 bytes are `k3`, in a
        // filter sized for the most keys there can be (shared keys make
        // fewer, and the filter at most half as large).
        let most: usize = atoms
            .iter()
            .map(|a| match a.len() {
                4 => 2,
                5.. => stride,
                _ => 0,
            })
            .sum();
        let word_shift = 32 - (Bloom::size(most) / 32).trailing_zeros();
        let word_of = |k3: u32| k3.wrapping_mul(MUL) >> word_shift;
        let heat = word_heat(word_shift);
        // The keys in each filter word so far.
        let mut words = vec![0u32; heat.len()];
        let mut worth: Vec<i64> = Vec::new();
        for (id, a) in atoms.iter().enumerate() {
            let id = id as u32;
            match a.len() {
                5.. => {}
                4 => {
                    // No choice of window: the atom is both its keys.
                    let g = gram(a, 0);
                    *uses.entry(g).or_insert(0) += 1;
                    for (class, off, word) in
                        [(0, 0, word_of(g & 0x00ff_ffff)), (1, 1, word_of(g >> 8))]
                    {
                        words[word as usize] += 1;
                        by[class].push((g, id, off));
                    }
                    continue;
                }
                _ => {
                    if let Some(&b) = a.first() {
                        short.push((b, id));
                        short_first[usize::from(b)] = true;
                    }
                    continue;
                }
            }
            // Any `stride` consecutive q-gram offsets j.. work (an
            // occurrence has exactly one of them at a looked-up position),
            // so pick the window whose most common q-gram is rarest: text-like
            // grams ("the ", "erne") hit constantly and are shared by many
            // atoms.
            // Each q-gram's worth is computed once (the counts change only
            // after the choice), and each window takes its worst.
            worth.clear();
            worth.extend((0..=a.len() - 4).map(|o| {
                let g = gram(a, o);
                // A hit on a gram shared by `n` atoms costs `n`
                // confirmations: sharing is worth log2(n + 1) bits
                // of rarity (in rarity's quarter bits). So is
                // sharing a filter word with `w` keys: each sets
                // more bits that other grams of that word can hit.
                // With both, 100k bench signatures scanned text
                // at 1.0 GB/s instead of 0.42. Counting the keys
                // of the word itself rather than those with the
                // same first 3 bytes (which share it too) evens
                // out the filter: the random files of the bench
                // passed it 1,742 times per MB instead of 2,691.
                let n = *uses.get(&g).unwrap_or(&0);
                let word = word_of(g & 0x00ff_ffff);
                let w = words[word as usize];
                let shared = 4 * (2 * u32::BITS - n.leading_zeros() - w.leading_zeros());
                let hot = heat[word as usize];
                i64::from(gram_rarity(&a[o..o + 4], hot)) - i64::from(shared)
            }));
            // A window whose keys all have 8 bytes of the atom around
            // them is worth more (see `SIEVED_BONUS`): the sieve turns away
            // the occurrences of a common key whose other bytes differ.
            let last = a.len() + 1 - 4 - stride;
            let sieved =
                |j: usize| (j..j + stride).all(|o| Sieve::eight_around(o, a.len()).is_some());
            let mut best = (i64::MIN, 0usize);
            for j in 0..=last {
                let worst = worth[j..j + stride].iter().copied().min().unwrap_or(0);
                let rank = worst + if sieved(j) { SIEVED_BONUS } else { 0 };
                if rank > best.0 {
                    best = (rank, j);
                }
            }
            let j = best.1;
            for off in j..j + stride {
                let g = gram(a, off);
                *uses.entry(g).or_insert(0) += 1;
                words[word_of(g & 0x00ff_ffff) as usize] += 1;
                by[0].push((g, id, off as u32));
            }
        }
        short.sort_unstable();
        let [a, b] = by;
        let mut bytes = Vec::with_capacity(atoms.iter().map(Vec::len).sum());
        let mut starts = Vec::with_capacity(atoms.len() + 1);
        starts.push(0);
        for a in &atoms {
            bytes.extend_from_slice(a);
            starts.push(bytes.len() as u32);
        }
        let mut index = AtomIndex {
            stride: stride as u32,
            bytes: bytes.into(),
            starts: starts.into(),
            bloom: Bloom::default(),
            sieve: Sieve::default(),
            q4: GramTable::build(a, &atoms),
            back: GramTable::build(b, &atoms),
            short,
            short_first,
        };
        index.bloom = Bloom::new(&index.q4, &index.back);
        index.sieve = Sieve::new(&index.q4, &index.back, |a| index.atom(a));
        index
    }
}
