//! The multi-pattern atom search: finds every occurrence (overlaps
//! included) of every atom in a buffer.
//!
//! Why not one Aho-Corasick automaton: with thousands of atoms its
//! transition table no longer fits in cache, no prefilter applies to random
//! data, and `aho-corasick` measured about 0.07 GB/s for 10k atoms on clean
//! random data (overlapping or not). This index is built for that case:
//!
//! - Atoms of 4 bytes or more are indexed by their `q`-byte q-grams at two
//!   consecutive offsets `j` and `j + 1`, and the scan looks up every even
//!   position: every occurrence has exactly one of those q-grams at an even
//!   position. `j` is chosen per atom so that the more common of its two
//!   q-grams is as rare as possible (text-like q-grams shared by many atoms
//!   made text data cost hundreds of confirmations per hit). Atoms of 5+
//!   bytes use 4-byte q-grams. A 4-byte atom is its own key twice: found
//!   at its start when that is even, and as the *back key* (the 4 bytes
//!   from 1 before the position) when its start is odd.
//! - One blocked Bloom filter in front of both kinds of key rejects almost
//!   every position: one bit in each byte of one 32-bit word per key,
//!   24 to 128 bits per key. The word is picked by the position's first
//!   3 bytes (which both kinds of key at a position hold), so one fetched
//!   word answers
//!   both, and a 64-byte block costs two 16-lane gathers (`simd.rs` runs
//!   8 or 16 positions at once where the CPU has AVX2 or AVX-512).
//!   Positions that pass, collected 16 KiB of input at a time, go through
//!   a second, plain Bloom filter (the [`Sieve`]), and those that pass it
//!   too to an exact open-addressing table per kind (their slots
//!   prefetched first), whose values carry each atom's first 8 bytes so
//!   that a candidate is mostly confirmed or rejected by one 8-byte
//!   compare.
//! - **Short atoms** (1 to 3 bytes; rare, the compiler requires two static
//!   bytes per part) are indexed by their first byte(s) and checked at
//!   every position.
//!
//! Every candidate is confirmed byte for byte, so the result is exact.

/// The hasher for integer keys built at load time (SipHash dominated
/// `AtomIndex::new` and `Program::build`).
pub(crate) type FxBuild = rustc_hash::FxBuildHasher;

use crate::arr::Arr;
use crate::persist::{PResult, R, W, bad};
use crate::rarity::rarity;
use crate::simd;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Slot {
    key: u32,
    start: u32,
    len: u32,
}

/// One atom that has a key at some offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
struct Val {
    atom: u32,
    /// The key's offset in the atom (low byte) and the atom's length (the
    /// byte above).
    at: u32,
    /// The atom's first 8 bytes (zero-padded), little-endian: most
    /// candidates are rejected by one compare, without reading the atom.
    head: u64,
}

impl Val {
    fn new(atom: u32, off: usize, bytes: &[u8]) -> Val {
        Val {
            atom,
            at: off as u32 | (bytes.len() as u32) << 8,
            head: head_of(bytes),
        }
    }

    #[inline(always)]
    fn off(&self) -> usize {
        (self.at & 0xff) as usize
    }

    #[inline(always)]
    fn len(&self) -> usize {
        (self.at >> 8 & 0xff) as usize
    }
}

/// The first 8 bytes of `a`, zero-padded, as a little-endian word.
fn head_of(a: &[u8]) -> u64 {
    let mut h = [0u8; 8];
    let n = a.len().min(8);
    h[..n].copy_from_slice(&a[..n]);
    u64::from_le_bytes(h)
}

/// A set of 3- or 4-byte keys, each with a list of atoms that have the
/// key at some offset: an open-addressing table.
#[derive(Clone, Debug, Default)]
struct GramTable {
    slots: Arr<Slot>,
    values: Arr<Val>,
}

/// The blocked Bloom filter in front of both gram tables:
/// `2^(32 - shift)` 32-bit words (see [`bloom`]).
#[derive(Clone, Debug, Default)]
struct Bloom {
    bits: Arr<u32>,
    shift: u32,
}

/// The multiplier of the hash of a position's first 3 bytes, which picks
/// the filter word (a 32-bit multiply, so that 8 or 16 keys hash in one
/// vector instruction).
const MUL: u32 = 0x9e37_79b1;
/// The multipliers of the hashes of a 4-byte key and of a back key's last
/// 3 bytes, which pick their bits. Not one multiplier for both: those 3
/// bytes and the 4-byte keys they begin share their word.
const MUL4: u32 = 0x85eb_ca77;
const MUL3: u32 = 0xc2b2_ae3d;

/// The word index and the bit mask of key `x` in a blocked Bloom filter
/// of `2^(32 - shift)` 32-bit words: `x` is the 4 bytes at a position if
/// `wide`, else its back key (the 4 bytes from 1 before it). The top bits
/// of the position's first 3 bytes times `MUL` pick the word for both
/// kinds of key (`x & 0xffffff` or `x >> 8`), so that one word fetched
/// per position answers both.
///
/// A key sets one bit in each byte of its word: byte `j` gets bit
/// [`BYTE_BIT`]`[f_j]`, `f_j` a 6-bit field of a hash `g` of the key. Four
/// bits, each one of 8, pass a random string as rarely (`8^-4`) as the
/// earlier two or three bits anywhere in the word (`16^-2`, `11^-3`) or
/// more rarely, but the vector loops make them with two byte shuffles
/// instead of a shift and a permute per bit: the AVX-512 loop takes 15
/// vector instructions per 16 lookups of both kinds of key instead of 27
/// (the gather aside).
///
/// - 4-byte key: `g` is `x` rotated by a byte, so that its 4th byte is the
///   low byte of the multiplicand and reaches every bit of the product,
///   times `MUL4`; the fields are bits 2-7, 10-15, 18-23 and 26-31. The
///   keys of a word mostly share their first 3 bytes (those pick it), so
///   the 4th byte is what tells them apart.
/// - Back key: `g` is its last 3 bytes times `MUL3`, xor the key; the
///   fields are bits 0-5 and 4-9 (they hold its first byte, together 6
///   independent bits of it) and 18-23 and 26-31 (its last 3 bytes only).
///   Bits of its last 3 bytes alone fail a common 3 bytes at every
///   occurrence alike, where a hash of all 4 bytes would let some of them
///   through (text passed 10 times as often that way); the first byte's
///   bits turn away most strings that end in a key's last 3 bytes. Random
///   data hit the real last 3 bytes of 100k bench signatures about 600
///   times per MB (20k back keys among 2^24 values).
#[inline(always)]
fn bloom(x: u32, wide: bool, shift: u32) -> (usize, u32) {
    let (x3, f) = if wide {
        (x & 0x00ff_ffff, x.rotate_left(8).wrapping_mul(MUL4) >> 2)
    } else {
        let x3 = x >> 8;
        let g = x3.wrapping_mul(MUL3) ^ x;
        (x3, g & 0x3f | (g << 4) & 0x3f00 | (g >> 2) & 0x3f3f_0000)
    };
    let mut m = 0;
    for j in 0..4 {
        m |= u32::from(BYTE_BIT[(f >> (8 * j) & 63) as usize]) << (8 * j);
    }
    ((x3.wrapping_mul(MUL) >> shift) as usize, m)
}

/// The bit a 6-bit field sets in its byte of a filter word ([`bloom`]):
/// `1 << (i ^ i >> 3) & 7`, so that all 6 bits count. A table, because
/// the AVX-512 loop looks up 64 bytes at once (`vpermb`); the AVX2 loop
/// folds the field first and looks up 8 (`vpshufb`).
pub(crate) const BYTE_BIT: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = 1 << ((i ^ (i >> 3)) & 7);
        i += 1;
    }
    t
};

#[inline]
fn h2(x: u32) -> u32 {
    (x ^ (x >> 15)).wrapping_mul(0x85eb_ca6b)
}

/// The first slot to probe for `x` in a table of `n` slots (`n` below
/// 2^32): the hash scaled to `0..n` by a multiply, not a modulo.
#[inline(always)]
fn home(x: u32, n: usize) -> usize {
    ((u64::from(h2(x)) * n as u64) >> 32) as usize
}

impl GramTable {
    /// `entries` are `(key, atom, offset)`.
    fn build(entries: Vec<(u32, u32, u32)>, atoms: &[Vec<u8>]) -> Self {
        if entries.is_empty() {
            return GramTable::default();
        }
        // Group by key with a counting pass instead of a sort (the sort of
        // ~600k entries was a quarter of `Engine::new` at 100k patterns);
        // values are reported in no particular order.
        let mut gid: std::collections::HashMap<u32, u32, FxBuild> =
            std::collections::HashMap::with_capacity_and_hasher(entries.len(), FxBuild::default());
        let mut groups: Vec<(u32, u32, u32)> = Vec::new(); // key, start, len
        let mut of_entry = Vec::with_capacity(entries.len());
        for &(key, _, _) in &entries {
            let next = groups.len() as u32;
            let g = *gid.entry(key).or_insert_with(|| {
                groups.push((key, 0, 0));
                next
            });
            groups[g as usize].2 += 1;
            of_entry.push(g);
        }
        let mut fill = Vec::with_capacity(groups.len());
        let mut start = 0;
        for g in &mut groups {
            g.1 = start;
            fill.push(start);
            start += g.2;
        }
        let mut values = vec![Val::default(); entries.len()];
        for (&(_, atom, off), &g) in entries.iter().zip(&of_entry) {
            let at = &mut fill[g as usize];
            values[*at as usize] = Val::new(atom, off as usize, &atoms[atom as usize]);
            *at += 1;
        }
        Self::index(&groups, values)
    }

    /// The slot table over `groups` (`(key, start, len)` into `values`).
    fn index(groups: &[(u32, u32, u32)], values: Vec<Val>) -> Self {
        // Load factor 2/3, any size (not a power of two: that wasted up
        // to half of the largest table of a big database, which every
        // load checksums).
        let nslots = groups.len() + groups.len() / 2 + 1;
        let mut slots = vec![Slot::default(); nslots];
        for &(key, start, len) in groups {
            let mut s = home(key, nslots);
            while slots[s].len != 0 {
                s = if s + 1 == nslots { 0 } else { s + 1 };
            }
            slots[s] = Slot { key, start, len };
        }
        GramTable {
            slots: slots.into(),
            values: values.into(),
        }
    }

    /// The keys in the table.
    fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().filter(|s| s.len != 0).map(|s| s.key)
    }

    #[inline(always)]
    /// The table as plain slices, taken once per scan rather than per
    /// lookup (an [`Arr`] checks its view on every access).
    fn view(&self) -> GramView<'_> {
        GramView {
            slots: &self.slots,
            values: &self.values,
        }
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl Bloom {
    /// The filter over the keys of `wide` (4-byte keys) and `back`
    /// (back keys): about 128 bits per key, but not beyond 256 KiB unless
    /// that leaves fewer than 24 bits per key; then about 24 bits per key,
    /// never beyond 2 MiB; at least 4096 bits. Every position that passes
    /// costs a sieve check and often a slot probe with likely two branch
    /// misses, so false positives are dear; but so are gathers that miss
    /// the cache. Engine alone, bench corpus, with the bits of [`bloom`]:
    ///
    /// - 1k signatures (3.7k keys): 128 bits per key (64 KiB) 6.8 GB/s,
    ///   256 (128 KiB) 5.7-6.0, 64 (32 KiB) 6.5-6.8, 32 5.3-5.8.
    /// - 10k (30k keys): 64 bits per key (256 KiB) 5.4 GB/s, 128 (512 KiB)
    ///   5.0-5.2, 32 (128 KiB) 5.2-5.4.
    /// - 100k (295k keys): 24 bits per key (1 MiB) 3.9 GB/s, 12 (512 KiB)
    ///   2.7 with 5 times the passes, 48 (2 MiB) slower too: the random
    ///   files went from 2.9 GB/s to 2.1 though they passed a quarter as
    ///   often.
    fn new(wide: &GramTable, back: &GramTable) -> Self {
        if wide.is_empty() && back.is_empty() {
            return Bloom::default();
        }
        Bloom::build(
            wide,
            back,
            Bloom::size(wide.keys().count() + back.keys().count()),
        )
    }

    /// The bit count for `keys` keys (see [`Bloom::new`]).
    fn size(keys: usize) -> usize {
        let bits_for = |per_key: usize| (keys * per_key).next_power_of_two();
        let small = bits_for(128).clamp(1 << 12, 1 << 21);
        if small >= keys * 24 {
            small
        } else {
            bits_for(24).min(1 << 24)
        }
    }

    /// The filter of `nbits` bits (a power of two, at least 1024) over the
    /// keys of `wide` and `back`.
    fn build(wide: &GramTable, back: &GramTable, nbits: usize) -> Self {
        let mut bits = vec![0u32; nbits / 32];
        let shift = 32 - (nbits / 32).trailing_zeros();
        for (table, is_wide) in [(wide, true), (back, false)] {
            for key in table.keys() {
                let (w, m) = bloom(key, is_wide, shift);
                bits[w] |= m;
            }
        }
        Bloom {
            bits: bits.into(),
            shift,
        }
    }

    /// The filter for [`simd::filter_blocks`] (`None` if empty: then no
    /// table has a key).
    fn filter(&self) -> Option<simd::Filter<'_>> {
        if self.bits.is_empty() {
            return None;
        }
        simd::Filter::new(&self.bits, self.shift)
    }

    /// Whether key `x` may be in the table of its kind.
    #[inline(always)]
    fn maybe(bits: &[u32], shift: u32, x: u32, wide: bool) -> bool {
        let (w, m) = bloom(x, wide, shift);
        bits[w] & m == m
    }
}

/// The second filter: a plain Bloom filter over the keys of both tables,
/// two bits per key anywhere in it, from hashes unrelated to [`bloom`]'s.
/// The positions that pass [`Bloom`] go through it in a batch before
/// their slot probes. A probe costs about 35 ns, mostly mispredicted
/// branches (whether the slot is empty, holds the key or holds another is
/// random); this check is two loads and a branch that is nearly always
/// taken the same way, because at 1k and 10k bench signatures nearly every
/// position that passes [`Bloom`] is a false positive (`engine/DESIGN.md`).
/// It made `giva scan` of the bench corpus 2% faster at 1k and 4-6% at
/// 10k and 100k. Stored with the tables: building it at load took 3 ms at
/// 100k.
#[derive(Clone, Debug, Default)]
struct Sieve {
    /// Empty if there are no keys (then there is nothing to sieve).
    bits: Arr<u64>,
    /// `64 - log2(bit count)`: a bit number is the top bits of a product.
    shift: u32,
}

impl Sieve {
    /// About 16 bits per key (about 1% false positives), 4096 bits at
    /// least, 2^22 (512 KiB) at most.
    fn new(wide: &GramTable, back: &GramTable) -> Sieve {
        let keys = wide.keys().count() + back.keys().count();
        if keys == 0 {
            return Sieve::default();
        }
        let nbits = (keys * 16).next_power_of_two().clamp(1 << 12, 1 << 22);
        let shift = 64 - nbits.trailing_zeros();
        let mut bits = vec![0u64; nbits / 64];
        for (table, kind) in [(wide, 0), (back, 1)] {
            for key in table.keys() {
                for b in Sieve::bit_numbers(key, kind, shift) {
                    bits[b >> 6] |= 1 << (b & 63);
                }
            }
        }
        Sieve {
            bits: bits.into(),
            shift,
        }
    }

    /// The two bits of key `x` of kind `kind` (0 for 4 bytes, 1 for 3).
    #[inline(always)]
    fn bit_numbers(x: u32, kind: usize, shift: u32) -> [usize; 2] {
        let k = u64::from(x) | (kind as u64) << 32;
        [
            (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize,
            (k.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) >> shift) as usize,
        ]
    }

    /// Whether key `x` of kind `kind` may be in its table, given the
    /// sieve's `bits` (taken as a slice once per scan, as [`GramView`]
    /// does: an [`Arr`] checks its view on every access) and `shift`.
    #[inline(always)]
    fn maybe(bits: &[u64], shift: u32, x: u32, kind: usize) -> bool {
        let [a, b] = Sieve::bit_numbers(x, kind, shift);
        (bits[a >> 6] >> (a & 63)) & (bits[b >> 6] >> (b & 63)) & 1 != 0
    }

    fn write(&self, w: &mut W) {
        w.pods(&self.bits);
        w.u32(self.shift);
    }

    /// Reads a sieve and checks that its bit numbers stay in bounds: the
    /// bit count is the power of two its shift takes the top bits for.
    fn read(r: &mut R<'_>) -> PResult<Sieve> {
        let s = Sieve {
            bits: r.arr()?,
            shift: r.u32()?,
        };
        if s.bits.is_empty() {
            return Ok(Sieve::default());
        }
        let nbits = s.bits.len() * 64;
        if !nbits.is_power_of_two()
            || !(12..=22).contains(&nbits.trailing_zeros())
            || s.shift != 64 - nbits.trailing_zeros()
        {
            return bad("gram sieve out of range");
        }
        Ok(s)
    }
}

/// A [`GramTable`] borrowed as slices for the scan loop.
#[derive(Clone, Copy)]
struct GramView<'a> {
    slots: &'a [Slot],
    values: &'a [Val],
}

impl<'a> GramView<'a> {
    #[inline]
    fn get(&self, x: u32) -> &'a [Val] {
        let n = self.slots.len();
        let mut s = home(x, n);
        loop {
            let slot = self.slots[s];
            if slot.len == 0 {
                return &[];
            }
            if slot.key == x {
                return &self.values[slot.start as usize..(slot.start + slot.len) as usize];
            }
            s = if s + 1 == n { 0 } else { s + 1 };
        }
    }
}

/// The atoms of a program, indexed for [`AtomIndex::scan`].
#[derive(Clone, Debug)]
pub(crate) struct AtomIndex {
    /// Every atom's bytes, back to back: atom `a` is
    /// `bytes[starts[a]..starts[a + 1]]`.
    bytes: Arr<u8>,
    starts: Arr<u32>,
    /// The positions looked up are the multiples of this: 2, or 4 when
    /// every atom of 4 bytes or more has 7 or more.
    stride: u32,
    /// The filter in front of `q4` and `back`.
    bloom: Bloom,
    /// The second filter, for the positions that pass `bloom`.
    sieve: Sieve,
    /// 5+ byte atoms: 4-byte q-grams at `stride` consecutive offsets; and
    /// 4-byte atoms, at offset 0.
    q4: GramTable,
    /// 4-byte atoms by their back key: the whole atom, at offset 1 (only
    /// with stride 2). Its 3-byte q-grams were keys before: on random
    /// data 1 position in 800 or so hit a real one, which the 4th byte
    /// then nearly always rejected after a probe.
    back: GramTable,
    /// Short atoms by first byte: `(first byte, atom)` sorted.
    short: Vec<(u8, u32)>,
    short_first: [bool; 256],
}

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
fn gram_rarity(g: &[u8], heat: u32) -> u32 {
    rarity(g).min(
        rarity(&g[..3])
            .min(heat)
            .saturating_add(HOT_WORD_BITS * crate::rarity::UNIT),
    )
}

/// For each word of a filter of `2^(32 - shift)` words, the rarity of the
/// most common 3 bytes that pick it, if that is at most [`HOT_BITS`]
/// (`u32::MAX` for none). At 100k bench signatures, one word in 8 has one.
fn word_heat(shift: u32) -> Vec<u32> {
    // The common 3 bytes, found once per process (about 7 ms).
    static COMMON: std::sync::OnceLock<Vec<(u32, u32)>> = std::sync::OnceLock::new();
    let common = COMMON.get_or_init(|| {
        let mut v = Vec::new();
        crate::rarity::common_trigrams(HOT_BITS * crate::rarity::UNIT, |s, r| {
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
const HOT_BITS: u32 = 12;

/// See [`gram_rarity`].
const HOT_WORD_BITS: u32 = 10;

#[inline(always)]
fn gram(hay: &[u8], i: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&hay[i..i + 4]);
    u32::from_le_bytes(b)
}

impl AtomIndex {
    /// Indexes `atoms` (each non-empty); atom ids are their positions.
    pub fn new(atoms: Vec<Vec<u8>>) -> Self {
        let mut by = [Vec::new(), Vec::new()];
        let mut uses: std::collections::HashMap<u32, u32, FxBuild> = Default::default();
        let mut words: std::collections::HashMap<u32, u32, FxBuild> = Default::default();
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
                        *words.entry(word).or_insert(0) += 1;
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
            let last = a.len() + 1 - 4 - stride;
            let mut best = (i64::MIN, 0usize);
            for j in 0..=last {
                let worst = (j..j + stride)
                    .map(|o| {
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
                        let w = *words.get(&word).unwrap_or(&0);
                        let shared = 4 * (2 * u32::BITS - n.leading_zeros() - w.leading_zeros());
                        let hot = heat[word as usize];
                        i64::from(gram_rarity(&a[o..o + 4], hot)) - i64::from(shared)
                    })
                    .min()
                    .unwrap_or(0);
                if worst > best.0 {
                    best = (worst, j);
                }
            }
            let j = best.1;
            for off in j..j + stride {
                let g = gram(a, off);
                *uses.entry(g).or_insert(0) += 1;
                *words.entry(word_of(g & 0x00ff_ffff)).or_insert(0) += 1;
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
        index.sieve = Sieve::new(&index.q4, &index.back);
        index
    }

    /// True if there is no atom.
    pub fn is_empty(&self) -> bool {
        self.starts.len() <= 1
    }

    /// The bytes of atom `id`.
    #[inline]
    pub fn atom(&self, id: u32) -> &[u8] {
        let id = id as usize;
        &self.bytes[self.starts[id] as usize..self.starts[id + 1] as usize]
    }

    /// The length of atom `id`.
    #[inline]
    pub fn atom_len(&self, id: u32) -> usize {
        let id = id as usize;
        (self.starts[id + 1] - self.starts[id]) as usize
    }

    /// How many atoms there are.
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Whether the atom of `v` occurs at `start` (which is at most
    /// `hay.len()`).
    #[inline(always)]
    fn confirm(&self, v: &Val, hay: &[u8], start: usize) -> bool {
        let len = v.len();
        match hay.get(start..start + 8) {
            Some(w) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                let mask = if len >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (8 * len)) - 1
                };
                u64::from_le_bytes(b) & mask == v.head
                    && (len <= 8 || hay.get(start + 8..start + len) == self.atom(v.atom).get(8..))
            }
            None => hay.get(start..start + len) == Some(self.atom(v.atom)),
        }
    }

    /// Reports the atoms of `table` that have key `x` at position `i`
    /// (the Bloom filter already passed).
    #[inline(always)]
    fn probe(
        &self,
        table: &GramView<'_>,
        hay: &[u8],
        i: usize,
        x: u32,
        f: &mut impl FnMut(u32, usize),
    ) {
        for v in table.get(x) {
            let off = v.off();
            if i >= off && self.confirm(v, hay, i - off) {
                f(v.atom, i - off);
            }
        }
    }

    /// Calls `f(atom, start)` for every occurrence of every atom that lies
    /// entirely within `hay`. Each occurrence is reported exactly once, in
    /// no particular order.
    pub fn scan(&self, hay: &[u8], f: impl FnMut(u32, usize)) {
        self.scan_at(simd::Level::best(), hay, f);
    }

    /// [`AtomIndex::scan`] with the filter loop of `level` at most.
    ///
    /// The buffer goes through the filters a chunk at a time. The filter
    /// loop only collects the positions that pass; then the home slot of
    /// every one is prefetched, and only then are they probed. So the
    /// probes' cache misses in a slot table larger than the cache overlap
    /// instead of stalling the scan one by one, and the filter loop makes
    /// no calls.
    fn scan_at(&self, level: simd::Level, hay: &[u8], mut f: impl FnMut(u32, usize)) {
        let views = [self.q4.view(), self.back.view()];
        // Empty when no table has a key: then nothing is sieved.
        let sieve = &self.sieve.bits[..];
        // At most one pass per input byte (two kinds at every even
        // position); seams between chunks are scanned too, and are tiny.
        let mut passes = Vec::with_capacity(hay.len().min(CHUNK) + 64);
        let mut from = 0;
        while from < hay.len() {
            passes.clear();
            let next = self.filter(level, hay, from, from + CHUNK, &mut passes);
            let key = |e: &u32| {
                let (t, p) = ((e & 1) as usize, from + (e >> 1) as usize);
                // A back key passes only at a position past the first.
                let x = gram(hay, if t == 0 { p } else { p - 1 });
                (t, p, x)
            };
            if !sieve.is_empty() {
                // Without a branch on the outcome (`Vec::retain` branches),
                // which goes either way at 100k bench signatures.
                let mut kept = 0;
                for k in 0..passes.len() {
                    let e = passes[k];
                    let (t, _, x) = key(&e);
                    passes[kept] = e;
                    kept += usize::from(Sieve::maybe(sieve, self.sieve.shift, x, t));
                }
                passes.truncate(kept);
            }
            let pass = |e: &u32| {
                let (t, p, x) = key(e);
                (&views[t], p, x)
            };
            for (v, _, x) in passes.iter().map(pass) {
                simd::prefetch(v.slots.as_ptr().wrapping_add(home(x, v.slots.len())));
            }
            for (v, p, x) in passes.iter().map(pass) {
                self.probe(v, hay, p, x, &mut f);
            }
            from = next;
        }
        self.shorts(hay, &mut f);
    }

    /// The filter lookups at the positions from `from` (a multiple of 4)
    /// up to `until` or a little past it, or to the end: pushes `(position
    /// - from) << 1 | kind` (0 for a 4-byte key, 1 for a back key) for
    /// each that passes [`Bloom`], and returns where it stopped.
    fn filter(
        &self,
        level: simd::Level,
        hay: &[u8],
        from: usize,
        until: usize,
        passes: &mut Vec<u32>,
    ) -> usize {
        let kinds = [!self.q4.is_empty(), !self.back.is_empty()];
        // The vector loops read a back key from 1 byte before their first
        // block: the buffer's first position goes to the scalar loop.
        let mut next = from;
        if from == 0 && kinds[1] {
            next = self.grams_scalar(hay, from, 0, 4, passes);
        }
        // A filter the SIMD loop cannot take (never the case for a built
        // or checked one) leaves the whole buffer to the scalar loop.
        if let Some(filter) = self.bloom.filter() {
            let hash = simd::Hash {
                filter,
                mul: [MUL, MUL4, MUL3],
                kinds,
                pairs: self.stride == 2,
            };
            next = simd::filter_blocks(level, hay, from, next, until, hash, passes);
        }
        if next < until {
            next = self.grams_scalar(hay, from, next, until, passes);
        }
        next
    }

    /// The q-gram lookups at the even positions `at..until` (`at` a
    /// multiple of 4) and, when that reaches the end of the buffer, to the
    /// end. Like [`simd::filter_blocks`], pushes `(position - from) << 1 |
    /// kind` (0 for a 4-byte key, 1 for a back key) for each lookup that
    /// passes the filter; returns where it stopped.
    fn grams_scalar(
        &self,
        hay: &[u8],
        from: usize,
        at: usize,
        until: usize,
        out: &mut Vec<u32>,
    ) -> usize {
        let n = hay.len();
        let (wide, back) = (!self.q4.is_empty(), !self.back.is_empty());
        if !(wide || back) {
            return n;
        }
        let (bits, shift) = (&self.bloom.bits[..], self.bloom.shift);
        // An atom at p has exactly one of its indexed q-grams at a
        // multiple of the stride, and that q-gram ends within the atom, so
        // looking up those positions finds it once.
        // `x` holds the bytes at `i`, `room` of them (3 or 4); the back
        // key is the 4 bytes from `i - 1`, none at the buffer's start.
        let mut lookup = |i: usize, x: u32, room: usize| {
            if wide && room >= 4 && Bloom::maybe(bits, shift, x, true) {
                out.push(((i - from) as u32) << 1);
            }
            if back && i > 0 {
                let b = x << 8 | u32::from(hay[i - 1]);
                if Bloom::maybe(bits, shift, b, false) {
                    out.push(((i - from) as u32) << 1 | 1);
                }
            }
        };
        let mut i = at;
        // One 8-byte load per 4 positions; the q-grams are shifts of it.
        while i + 8 <= n {
            if i >= until {
                return i;
            }
            let mut w = [0u8; 8];
            w.copy_from_slice(&hay[i..i + 8]);
            let x = u64::from_le_bytes(w);
            lookup(i, x as u32, 4);
            if self.stride == 2 {
                lookup(i + 2, (x >> 16) as u32, 4);
            }
            i += 4;
        }
        while i + 3 <= n {
            let mut b = [0u8; 4];
            let room = (n - i).min(4);
            b[..room].copy_from_slice(&hay[i..i + room]);
            lookup(i, u32::from_le_bytes(b), room);
            i += self.stride as usize;
        }
        n
    }

    /// The short atoms (1 to 3 bytes), checked at every position.
    fn shorts(&self, hay: &[u8], f: &mut impl FnMut(u32, usize)) {
        if self.short.is_empty() {
            return;
        }
        for (i, &b) in hay.iter().enumerate() {
            if self.short_first[usize::from(b)] {
                let from = self.short.partition_point(|&(k, _)| k < b);
                for &(k, id) in &self.short[from..] {
                    if k != b {
                        break;
                    }
                    if hay[i..].starts_with(self.atom(id)) {
                        f(id, i);
                    }
                }
            }
        }
    }
}

/// The filter loops run over this many bytes at a time before the
/// positions that passed are probed (see [`AtomIndex::scan_at`]).
const CHUNK: usize = 16 << 10;

impl GramTable {
    /// Stores the table as it is in memory: rebuilding the slot table at
    /// load (random writes into a table larger than the cache) cost more
    /// than checksumming and copying it.
    fn write(&self, w: &mut W) {
        w.pods(&self.slots);
        w.pods(&self.values);
    }

    /// Reads a table and checks what `get` and `confirm` need to stay in
    /// bounds: every slot's range lies in `values`, a probe always reaches
    /// an empty slot, and every value names an atom of `atoms`. A value's
    /// length, head and offset are not checked: they come from the
    /// compiler through the database checksum, and a wrong one only makes
    /// a match fail.
    fn read(r: &mut R<'_>, natoms: usize) -> PResult<GramTable> {
        let t = GramTable {
            slots: r.arr()?,
            values: r.arr()?,
        };
        if t.values.is_empty() {
            // Never probed (`is_empty`).
            return Ok(GramTable::default());
        }
        let mut empty = false;
        for s in &t.slots {
            empty |= s.len == 0;
            if u64::from(s.start) + u64::from(s.len) > t.values.len() as u64 {
                return bad("gram table slot out of range");
            }
        }
        if !empty
            || u32::try_from(t.slots.len()).is_err()
            || t.values.iter().any(|v| v.atom as usize >= natoms)
        {
            return bad("gram table out of range");
        }
        Ok(t)
    }
}

impl Bloom {
    fn write(&self, w: &mut W) {
        w.pods(&self.bits);
        w.u32(self.shift);
    }

    /// Reads a filter and checks that `bloom` stays in bounds: the word
    /// count is the power of two its shift indexes (as
    /// [`simd::Filter::new`] wants).
    fn read(r: &mut R<'_>) -> PResult<Bloom> {
        let bits = r.arr()?;
        let shift = r.u32()?;
        let b = Bloom { bits, shift };
        if b.bits.is_empty() {
            return Ok(Bloom::default());
        }
        if !(10..32).contains(&b.shift) || b.bits.len() != 1usize << (32 - b.shift) {
            return bad("gram filter out of range");
        }
        Ok(b)
    }
}

impl AtomIndex {
    pub(crate) fn write(&self, w: &mut W) {
        w.pods(&self.bytes);
        w.pods(&self.starts);
        w.u32(self.stride);
        self.bloom.write(w);
        self.sieve.write(w);
        self.q4.write(w);
        self.back.write(w);
        let mut short = Vec::with_capacity(self.short.len() * 2);
        for &(b, a) in &self.short {
            short.extend_from_slice(&[u32::from(b), a]);
        }
        w.u32s(&short);
    }

    pub(crate) fn read(r: &mut R<'_>) -> PResult<AtomIndex> {
        let bytes: Arr<u8> = r.arr()?;
        let starts: Arr<u32> = r.arr()?;
        if starts.first() != Some(&0)
            || starts.windows(2).any(|w| w[0] >= w[1])
            || starts.last().map(|&x| x as usize) != Some(bytes.len())
        {
            return bad("atom table out of range");
        }
        let natoms = starts.len() - 1;
        let stride = r.u32()?;
        let bloom = Bloom::read(r)?;
        let sieve = Sieve::read(r)?;
        let q4 = GramTable::read(r, natoms)?;
        let back = GramTable::read(r, natoms)?;
        if bloom.bits.is_empty() && !(q4.is_empty() && back.is_empty()) {
            return bad("gram tables without a filter");
        }
        // Back keys are 4-byte atoms, which are indexed only with stride 2
        // (stride 4 misses those at a start 2 past a multiple of 4).
        if !(stride == 2 || stride == 4 && back.is_empty()) {
            return bad("gram stride out of range");
        }
        let pairs: Vec<[u32; 2]> = r.pods()?;
        let mut short = Vec::with_capacity(pairs.len());
        let mut short_first = [false; 256];
        for [b, a] in pairs {
            let (Ok(b), true) = (u8::try_from(b), (a as usize) < natoms) else {
                return bad("short atom out of range");
            };
            short.push((b, a));
            short_first[usize::from(b)] = true;
        }
        if short.windows(2).any(|w| w[0] > w[1]) {
            return bad("short atoms out of order");
        }
        Ok(AtomIndex {
            stride,
            bytes,
            starts,
            bloom,
            sieve,
            q4,
            back,
            short,
            short_first,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every occurrence of every atom, found the obvious way.
    fn naive(atoms: &[Vec<u8>], hay: &[u8]) -> Vec<(u32, usize)> {
        let mut out = Vec::new();
        for (id, a) in atoms.iter().enumerate() {
            for s in 0..hay.len() {
                if hay[s..].starts_with(a) {
                    out.push((id as u32, s));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// A small deterministic random source.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn finds_every_occurrence_of_every_length() {
        let mut next = xorshift(0x1234_5678_9abc_def1u64);
        for round in 0..300 {
            let alpha = if round % 2 == 0 { 2 } else { 4 };
            let n = 1 + next() % 20;
            // Every third round no atom has 4 to 6 bytes: stride 4.
            let long = round % 3 == 2;
            let atoms: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = match 1 + next() % 12 {
                        4..7 if long => 7,
                        len => len,
                    };
                    (0..len).map(|_| b'a' + (next() % alpha) as u8).collect()
                })
                .collect();
            let hay: Vec<u8> = (0..next() % 200)
                .map(|_| b'a' + (next() % alpha) as u8)
                .collect();
            let index = AtomIndex::new(atoms.clone());
            let mid = atoms.iter().any(|a| (4..7).contains(&a.len()));
            assert_eq!(index.stride, if mid { 2 } else { 4 }, "round {round}");
            assert!(!(long && mid));
            let want = naive(&atoms, &hay);
            // Every filter loop this CPU runs, down to the scalar one.
            for level in simd::Level::available() {
                let mut got = Vec::new();
                index.scan_at(level, &hay, |id, s| got.push((id, s)));
                got.sort_unstable();
                assert_eq!(got, want, "round {round}, {level:?}");
            }
        }
    }

    #[test]
    fn the_largest_filters_get_fewer_bits_per_key() {
        // 1k, 10k and 100k bench signatures have about 3.7k, 30k and 295k
        // keys in their main program.
        assert_eq!(Bloom::size(3_700), 1 << 19);
        assert_eq!(Bloom::size(30_000), 1 << 21);
        assert_eq!(Bloom::size(80_000), 1 << 21);
        assert_eq!(Bloom::size(90_000), 1 << 22);
        assert_eq!(Bloom::size(200_000), 1 << 23);
        assert_eq!(Bloom::size(295_000), 1 << 23);
        assert_eq!(Bloom::size(2_000_000), 1 << 24);
        assert_eq!(Bloom::size(1), 1 << 12);
    }

    #[test]
    fn a_key_sets_one_bit_in_each_byte_of_its_word() {
        let mut next = xorshift(0x6a09_e667_f3bc_c909u64);
        for _ in 0..1000 {
            let x = next() as u32;
            for wide in [true, false] {
                let (w, m) = bloom(x, wide, 20);
                assert!(w < 1 << 12);
                for j in 0..4 {
                    assert_eq!((m >> (8 * j) & 0xff).count_ones(), 1, "{x:#x} {wide}");
                }
            }
        }
        // Every field value sets each bit of a byte equally often.
        let mut seen = [0; 8];
        for b in BYTE_BIT {
            seen[b.trailing_zeros() as usize] += 1;
        }
        assert_eq!(seen, [8; 8]);
    }

    #[test]
    fn an_atom_that_starts_with_a_word_is_indexed_past_the_word() {
        // A bench signature's shape: a text word, then random bytes. The
        // grams inside the word hit text files constantly. The 5-byte atom
        // makes the stride 2, as in any large database, which leaves a
        // choice of windows past the word.
        let atoms = vec![
            b"number K)\xff".to_vec(),
            b"xportQoZ\xff".to_vec(),
            b"\x9a\x3e\xd7\x61\x05".to_vec(),
        ];
        let index = AtomIndex::new(atoms);
        assert_eq!(index.stride, 2);
        let keys: Vec<[u8; 4]> = index.q4.keys().map(u32::to_le_bytes).collect();
        for word in [b"numb", b"umbe", b"mber", b"xpor", b"port"] {
            assert!(
                !keys.contains(word),
                "{:?} indexed; keys {keys:?}",
                String::from_utf8_lossy(word)
            );
        }
    }

    #[test]
    fn a_back_key_is_turned_away_by_the_byte_before_its_last_three() {
        // A 4-byte atom at an odd start is found by its back key at the
        // next (even) position. Its last 3 bytes preceded by any of the
        // 255 other bytes must mostly fail the filter already: each pass
        // costs a sieve check and often a probe.
        let atoms = vec![b"WXYZ".to_vec(), b"\x01\x02\x03\x04\x05".to_vec()];
        let index = AtomIndex::new(atoms.clone());
        assert_eq!((index.stride, index.back.keys().count()), (2, 1));
        let mut hay = vec![0u8; 4];
        for b in (0..=255u8).filter(|&b| b != b'W') {
            // "XYZ" at a multiple of 4.
            hay.extend_from_slice(&[0, 0, 0, b, b'X', b'Y', b'Z', 0]);
        }
        hay.extend_from_slice(&[0, 0, 0, b'W', b'X', b'Y', b'Z', 0]);
        for level in simd::Level::available() {
            let mut passes = Vec::new();
            assert_eq!(index.filter(level, &hay, 0, CHUNK, &mut passes), hay.len());
            let backs: Vec<usize> = passes
                .iter()
                .filter(|&&e| e & 1 == 1)
                .map(|&e| (e >> 1) as usize)
                .filter(|&p| hay[p..].starts_with(b"XYZ"))
                .collect();
            // The real one passes; about 1 in 10 others (the word holds
            // few bits), never all 255.
            assert!(backs.contains(&(hay.len() - 4)), "{level:?}");
            assert!(backs.len() < 64, "{level:?}: {} passed", backs.len());
        }
        let mut got = Vec::new();
        index.scan(&hay, |id, s| got.push((id, s)));
        assert_eq!(got, naive(&atoms, &hay));
    }

    #[test]
    fn a_gram_in_the_word_of_a_common_text_string_counts_as_common() {
        // `ess\xff` is rarer than `s\xff\0\xff` by itself (20.25 bits
        // against 18.5), but its first 3 bytes, which pick its word, are
        // text (8.25 bits): capped at 18.25, it loses the window choice.
        assert!(rarity(b"ess\xff") > rarity(b"s\xff\0\xff"));
        assert!(gram_rarity(b"ess\xff", u32::MAX) < gram_rarity(b"s\xff\0\xff", u32::MAX));
        assert_eq!(
            gram_rarity(&[0x9a, 0x3e, 0xd7, 0x61], u32::MAX),
            rarity(&[0x9a, 0x3e, 0xd7, 0x61])
        );
        // So is a gram whose word is also picked by common text.
        let random = [0x9a, 0x3e, 0xd7, 0x61];
        assert!(gram_rarity(&random, rarity(b"the")) < gram_rarity(b"s\xff\0\xff", u32::MAX));

        // In an index among 3,000 other atoms (so that its filter has many
        // words, few of them hot), the atom is indexed past `ess`.
        let mut next = xorshift(0x510e_527f_ade6_82d1u64);
        let mut atoms: Vec<Vec<u8>> = (0..3000)
            .map(|_| (0..8).map(|_| next() as u8).collect())
            .collect();
        atoms.push(b"ess\xff\x00\xff".to_vec());
        let index = AtomIndex::new(atoms);
        let keys: Vec<[u8; 4]> = index.q4.keys().map(u32::to_le_bytes).collect();
        assert!(!keys.contains(b"ess\xff"));
        assert!(keys.contains(b"s\xff\x00\xff"));
    }

    #[test]
    fn hot_words_are_those_of_common_strings() {
        let shift = 32 - 15;
        let heat = word_heat(shift);
        let word = |s: &[u8; 3]| {
            (u32::from_le_bytes([s[0], s[1], s[2], 0]).wrapping_mul(MUL) >> shift) as usize
        };
        assert_eq!(heat.len(), 1 << 15);
        for s in [b"the", b"ess", b"\0\0\0", b"\xff\0\0"] {
            assert!(heat[word(s)] <= rarity(s), "{s:?}");
        }
        // Common strings are a minority: most words are not hot.
        let hot = heat.iter().filter(|&&h| h < u32::MAX).count();
        assert!(hot > 1000 && hot < heat.len() / 2, "{hot}");
    }

    #[test]
    fn a_stored_index_scans_alike_and_a_sieve_out_of_range_is_refused() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        let atoms: Vec<Vec<u8>> = (0..500)
            .map(|i| (0..4 + i % 9).map(|_| next() as u8).collect())
            .collect();
        let mut hay: Vec<u8> = (0..20_000).map(|_| next() as u8).collect();
        for (i, a) in atoms.iter().enumerate() {
            hay.extend_from_slice(a);
            hay.extend((0..i % 7).map(|_| next() as u8));
        }
        let index = AtomIndex::new(atoms.clone());
        assert!(!index.sieve.bits.is_empty());
        let mut w = W::default();
        index.write(&mut w);
        let blob = bytes::Bytes::from(w.0);
        let stored = AtomIndex::read(&mut R::new(&blob)).expect("reads back");
        assert_eq!(stored.sieve.bits[..], index.sieve.bits[..]);
        let scan = |ix: &AtomIndex| {
            let mut got = Vec::new();
            ix.scan(&hay, |id, s| got.push((id, s)));
            got.sort_unstable();
            got
        };
        assert_eq!(scan(&stored), naive(&atoms, &hay));

        // A shift that does not match the bit count could index past it,
        // in either filter.
        fn with_shift<T: bytemuck::Pod>(bits: &[T], shift: u32) -> bytes::Bytes {
            let mut w = W::default();
            w.pods(bits);
            w.u32(shift);
            bytes::Bytes::from(w.0)
        }
        for shift in [index.sieve.shift - 1, index.sieve.shift + 1] {
            let blob = with_shift(&index.sieve.bits, shift);
            assert!(Sieve::read(&mut R::new(&blob)).is_err(), "shift {shift}");
        }
        for shift in [index.bloom.shift - 1, index.bloom.shift + 1] {
            let blob = with_shift(&index.bloom.bits, shift);
            assert!(Bloom::read(&mut R::new(&blob)).is_err(), "shift {shift}");
        }
    }

    #[test]
    fn large_tables_find_planted_atoms_at_every_simd_level() {
        // Thousands of atoms of every index class over the whole byte range,
        // so the filters have many words; every atom planted somewhere.
        // Then only atoms of 7+ bytes, which the index looks up at every
        // 4th position instead of every 2nd.
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        for (min, stride) in [(4, 2), (7, 4)] {
            let atoms: Vec<Vec<u8>> = (0..3000)
                .map(|i| (0..min + i % (13 - min)).map(|_| next() as u8).collect())
                .collect();
            // Random bytes with every atom planted once, without overlaps.
            let mut hay = Vec::new();
            for a in &atoms {
                hay.extend((0..next() % 24).map(|_| next() as u8));
                hay.extend_from_slice(a);
            }
            let index = AtomIndex::new(atoms.clone());
            assert_eq!(index.stride, stride);
            let mut by_bytes: std::collections::HashMap<&[u8], Vec<u32>> = Default::default();
            for (id, a) in atoms.iter().enumerate() {
                by_bytes.entry(a).or_default().push(id as u32);
            }
            let mut want = Vec::new();
            for s in 0..hay.len() {
                for len in min..=12.min(hay.len() - s) {
                    for &id in by_bytes.get(&hay[s..s + len]).into_iter().flatten() {
                        want.push((id, s));
                    }
                }
            }
            want.sort_unstable();
            assert!(want.len() >= atoms.len());
            // The same tables behind a filter with fewer bits per key, as
            // the largest databases get (a small one: many words hold
            // several keys).
            let mut dense = AtomIndex::new(atoms.clone());
            dense.bloom = Bloom::build(&dense.q4, &dense.back, 1 << 14);
            for (ix, what) in [(&index, "sparse"), (&dense, "dense")] {
                for level in simd::Level::available() {
                    let mut got = Vec::new();
                    ix.scan_at(level, &hay, |id, s| got.push((id, s)));
                    got.sort_unstable();
                    assert_eq!(got, want, "{level:?} stride {stride}, {what} filter");
                }
            }
        }
    }
}
