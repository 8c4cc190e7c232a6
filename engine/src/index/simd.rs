//! The atom index's Bloom filter probes, 8 at a time with AVX2 or 16 with
//! AVX-512: the engine's only `unsafe` code.
//!
//! [`filter_blocks`] hashes the q-gram keys of a 32- or 64-byte block at
//! once and fetches their filter words with one gather per 8 or 16 even
//! positions, so the scan pays a scalar table probe only for the few
//! positions whose filter bits are all set. Machines without either get 0
//! blocks done, and the caller runs the scalar loop, which computes the
//! same hash. The scalar loop scans the 1 GiB bench corpus at about
//! 0.45 GB/s against about 4 GB/s for the AVX2 loop (engine alone, 1k to
//! 100k body signatures, `bench/results/history/2026-12-03/byte-bits.md`).
//!
//! # Safety
//!
//! These things make the `unsafe` here sound, and each is checked in this
//! module rather than trusted from callers:
//!
//! - The AVX2 and AVX-512 functions run only after
//!   `is_x86_feature_detected!` for `avx2`, or for `avx512f`, `avx512bw`
//!   and `avx512vbmi`, in [`filter_blocks`], whatever [`Level`] the caller
//!   asks for.
//! - The unaligned loads of a block read `hay[i - 1..i + 34]` (AVX2) or
//!   `hay[i - 1..i + 66]` (AVX-512), and each loop runs only while that
//!   range is inside `hay`: [`filter_blocks`] runs no block at 0.
//! - [`prefetch`] reads nothing, so its address may lie anywhere.
//! - A gather reads the filter word `h >> shift` of each lane (`h` a
//!   32-bit hash), which is below `2^(32 - shift)`; [`Filter::new`] accepts
//!   a filter only if its word count is exactly that power of two.
//! - The loops push into the output vector's spare capacity through `Out`,
//!   whose writes are bounds-checked and counted; the vector's length grows
//!   by that count only.

#![allow(unsafe_code)]

/// The Bloom filter of the atom index: `2^(32 - shift)` words. At a
/// position whose 4 bytes are `x`, `h = (x & 0xffffff) * mul[0]` picks
/// word `h >> shift`; a key sets one bit in each byte of it, from the
/// hash `g`: for the 4-byte key, `x` rotated left by 8 bits times
/// `mul[1]`; for the back key `b` (the 4 bytes from 1 before the
/// position), `(x & 0xffffff) * mul[2] ^ b`. `hash::bloom` is the scalar
/// form and says which bits of `g` pick which bit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Filter<'a> {
    bits: &'a [u32],
    shift: u32,
}

impl<'a> Filter<'a> {
    /// The filter, if `bits` and `shift` agree as described above.
    pub fn new(bits: &'a [u32], shift: u32) -> Option<Filter<'a>> {
        // At most 2^22 words (16 MiB): far above any filter built.
        let ok = (10..32).contains(&shift) && bits.len() == 1usize << (32 - shift);
        ok.then_some(Filter { bits, shift })
    }
}

/// The vector instructions a filter loop uses, in order: [`filter_blocks`]
/// runs the best level at or below the one asked for that the CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// None: the caller's scalar loop does everything.
    Scalar,
    /// 32-byte blocks, 8-lane gathers.
    Avx2,
    /// 64-byte blocks, 16-lane gathers, and 32 vector registers (the AVX2
    /// loop spills); byte shuffles across the whole vector (`avx512vbmi`).
    Avx512,
}

impl Level {
    /// The level the scans use: the best this CPU runs, except on Zen 4
    /// (see [`gathers_slowly`]). Found once.
    pub fn best() -> Level {
        static BEST: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let top = Level::top();
            #[cfg(target_arch = "x86_64")]
            if top == Level::Avx512 && gathers_slowly() {
                return Level::Avx2;
            }
            top
        })
    }

    /// The best level this CPU runs.
    fn top() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512() {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Scalar
    }

    /// Every level this CPU runs, best first (so tests cover each, the
    /// ones [`best`](Level::best) passes over too).
    #[cfg(test)]
    pub fn available() -> Vec<Level> {
        let all = [Level::Avx512, Level::Avx2, Level::Scalar];
        all.into_iter().filter(|&l| l <= Level::top()).collect()
    }
}

/// Whether this is an AMD Zen 4 (family 19h; Zen 3 shares the family but
/// has no AVX-512), where the AVX-512 loop is the slower one (Zen 4 runs
/// 512-bit operations as two 256-bit halves). On the bench's real corpus
/// (`giva scan --threads 1` of a compiled database, `perf stat -r 5`, the
/// two loops interleaved, 2026-12-07) the AVX2 loop scanned 8-11% faster at 10k signatures, and
/// at 100k within noise (from 2% slower to 4% faster by draw).
#[cfg(target_arch = "x86_64")]
fn gathers_slowly() -> bool {
    use std::arch::x86_64::__cpuid;
    let vendor = __cpuid(0);
    let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
    let eax = __cpuid(1).eax;
    let base = (eax >> 8) & 0xf;
    let family = if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    };
    amd && family == 0x19
}

/// Whether this CPU runs the AVX-512 loop: Ice Lake and later, Zen 4 and
/// later (Skylake-X lacks `avx512vbmi` and runs the AVX2 loop).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vbmi")
}

/// Runs `filter` at `level` (or the best level below it this CPU has)
/// over the blocks of `hay` that start in `from..until` and end inside
/// `hay`, and pushes `(position - base) << 1 | kind` to `out` for each
/// even position (each multiple of 4 unless `hash.pairs`) whose key of
/// kind `kind` passes `hash.filter`: kind 0 the 4 bytes at the position,
/// kind 1 its back key, the 4 bytes from 1 before it, each only if
/// `hash.kinds[kind]`. `from` must be a multiple of 4 and not below
/// `base`, and not 0 with back keys (a block there would have no byte
/// before it).
/// Returns where the blocks end (also a multiple of 4; `from` if it ran
/// none): the caller scans the rest.
pub(crate) fn filter_blocks(
    level: Level,
    hay: &[u8],
    base: usize,
    from: usize,
    until: usize,
    hash: Hash<'_>,
    out: &mut Vec<u32>,
) -> usize {
    if hash.kinds == [false; 2] || from < base || hash.kinds[1] && from == 0 {
        return from;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let blocks = Blocks {
            hay,
            base,
            from,
            until,
        };
        let wide = level >= Level::Avx512 && has_avx512();
        let narrow = level >= Level::Avx2 && std::arch::is_x86_feature_detected!("avx2");
        if !(wide || narrow) {
            return from;
        }
        // The loops write into spare capacity reserved here, so that they
        // make no call: a call in the loop (`Vec::push` growing) made the
        // compiler keep the hash constants on the stack and load them again
        // in every block, beside the gathers' loads. A block pushes at most
        // one entry per byte (two kinds at each of its 32 even positions),
        // and blocks start before `until`.
        out.reserve(until.min(hay.len()).saturating_sub(from) + 64);
        let mut o = Out {
            spare: out.spare_capacity_mut(),
            len: 0,
        };
        // One loop per combination of key kinds and stride, so that the
        // loop tests none of them (the tests cost about 3% at 10k bench
        // signatures).
        macro_rules! specialized {
            ($f:ident) => {
                match (hash.kinds, hash.pairs) {
                    ([true, true], true) => $f::<true, true, true>,
                    ([true, true], false) => $f::<true, true, false>,
                    ([true, false], true) => $f::<true, false, true>,
                    ([true, false], false) => $f::<true, false, false>,
                    // [false, false] returned above.
                    ([false, _], true) => $f::<false, true, true>,
                    ([false, _], false) => $f::<false, true, false>,
                }
            };
        }
        let run: unsafe fn(Blocks<'_>, Hash<'_>, &mut Out<'_>) -> usize = if wide {
            specialized!(avx512)
        } else {
            specialized!(avx2)
        };
        // SAFETY: the CPU has AVX-512F, BW and VBMI if `wide`, else AVX2.
        let end = unsafe { run(blocks, hash, &mut o) };
        let n = o.len;
        // SAFETY: `Out::push` wrote `spare[..n]`, which is `out`'s spare
        // capacity from its current length on.
        unsafe { out.set_len(out.len() + n) };
        end
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, hay, base, until, out);
        from
    }
}

/// The entries a filter loop pushes, written into a vector's spare
/// capacity. A push past its end panics (it never reallocates, so the loop
/// makes no call that could return).
struct Out<'a> {
    spare: &'a mut [std::mem::MaybeUninit<u32>],
    len: usize,
}

impl Out<'_> {
    #[inline(always)]
    fn push(&mut self, v: u32) {
        self.spare[self.len].write(v);
        self.len += 1;
    }
}

/// What a filter loop looks up (see [`filter_blocks`]).
#[derive(Clone, Copy)]
pub(crate) struct Hash<'a> {
    pub filter: Filter<'a>,
    /// The multipliers of the word's hash and of a 4-byte key's and a back
    /// key's (see [`Filter`]).
    pub mul: [u32; 3],
    /// Which kinds of key (4-byte, back) the filter holds.
    pub kinds: [bool; 2],
    /// Whether the positions 2 past a multiple of 4 are looked up too.
    pub pairs: bool,
}

/// The range a filter loop covers (see [`filter_blocks`]).
#[derive(Clone, Copy)]
struct Blocks<'a> {
    hay: &'a [u8],
    /// Positions are pushed relative to this.
    base: usize,
    /// The first block; 4 or more with back keys.
    from: usize,
    until: usize,
}

impl Blocks<'_> {
    /// Pushes the passing lanes of the block at `i`: each of `masks` is
    /// `(lanes, kind, add)`, lane `k` being position `i + add + 4k`.
    #[inline(always)]
    fn push(&self, out: &mut Out<'_>, i: usize, masks: [(u32, u32, usize); 4]) {
        if masks.iter().all(|m| m.0 == 0) {
            return;
        }
        for (mut lanes, kind, add) in masks {
            let base = ((i + add - self.base) as u32) << 1 | kind;
            while lanes != 0 {
                out.push(base + (lanes.trailing_zeros() << 3));
                lanes &= lanes - 1;
            }
        }
    }
}

/// Asks for the cache line holding `p`: a hint that reads nothing, so any
/// address is fine.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    // SAFETY: SSE is part of x86_64, and a prefetch never faults.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// How far ahead of the block the loop asks for the haystack's cache
/// lines. The gathers keep the load ports busy enough that the hardware
/// prefetcher falls behind on data streamed from memory: without this, a
/// block from memory cost about twice as much as one from cache.
const PREFETCH: usize = 2048;

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<const WIDE: bool, const BACK: bool, const PAIRS: bool>(
    blocks: Blocks<'_>,
    hash: Hash<'_>,
    out: &mut Out<'_>,
) -> usize {
    use std::arch::x86_64::*;
    let Hash { filter, mul, .. } = hash;
    let mul4 = _mm256_set1_epi32(mul[1] as i32);
    let mul3 = _mm256_set1_epi32(mul[2] as i32);
    let mulw = _mm256_set1_epi32(mul[0] as i32);
    let low3 = _mm256_set1_epi32(0x00ff_ffff);
    let low6 = _mm256_set1_epi32(0x3f);
    let at4 = _mm256_set1_epi32(0x3f00);
    let at16 = _mm256_set1_epi32(0x3f3f_0000);
    let low3s = _mm256_set1_epi8(7);
    // `1 << i` for i below 8, in each 16-byte half (`vpshufb` looks up
    // within halves).
    let one_of_8 = _mm256_setr_epi8(
        1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128,
        1, 2, 4, 8, 16, 32, 64, -128,
    );
    // A per-lane shift is one instruction; a shift by an `xmm` count two.
    let shift = _mm256_set1_epi32(filter.shift as i32);
    // The key bits of the 6-bit fields `f` holds in the low bits of each
    // byte: `hash::BYTE_BIT`, its index folded to 3 bits first.
    let bits = |f: __m256i| {
        let i = _mm256_and_si256(_mm256_xor_si256(f, _mm256_srli_epi32::<3>(f)), low3s);
        _mm256_shuffle_epi8(one_of_8, i)
    };
    // The lanes whose 4-byte key and whose back key have their filter
    // bits set, one bit per lane.
    let pass = |keys: __m256i, back: __m256i| -> (u32, u32) {
        let k3 = _mm256_and_si256(keys, low3);
        let word = _mm256_srlv_epi32(_mm256_mullo_epi32(k3, mulw), shift);
        // SAFETY: every lane of `word` is below 2^(32 - shift), which is
        // `bits.len()` (`Filter::new`).
        let w = unsafe { _mm256_i32gather_epi32::<4>(filter.bits.as_ptr().cast(), word) };
        let test = |m: __m256i| {
            let set = _mm256_cmpeq_epi32(_mm256_and_si256(w, m), m);
            _mm256_movemask_ps(_mm256_castsi256_ps(set)) as u32
        };
        let a = if WIDE {
            let r = _mm256_or_si256(_mm256_slli_epi32::<8>(keys), _mm256_srli_epi32::<24>(keys));
            test(bits(_mm256_srli_epi32::<2>(_mm256_mullo_epi32(r, mul4))))
        } else {
            0
        };
        let b = if BACK {
            let g = _mm256_xor_si256(_mm256_mullo_epi32(k3, mul3), back);
            let f = _mm256_or_si256(
                _mm256_and_si256(g, low6),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_slli_epi32::<4>(g), at4),
                    _mm256_and_si256(_mm256_srli_epi32::<2>(g), at16),
                ),
            );
            test(bits(f))
        } else {
            0
        };
        (a, b)
    };
    let hay = blocks.hay;
    // SAFETY: the callers read inside hay[i - 1..i + 34], and `i` is at
    // least 4 with back keys (`filter_blocks`).
    let load = |at: usize| unsafe { _mm256_loadu_si256(hay.as_ptr().add(at).cast()) };
    let back = |at: usize| {
        if BACK {
            load(at - 1)
        } else {
            _mm256_setzero_si256()
        }
    };
    let mut i = blocks.from;
    while i < blocks.until && i + 34 <= hay.len() {
        prefetch(hay.as_ptr().wrapping_add(i + PREFETCH));
        // Lane k of a load at `at` holds the 4 bytes at at + 4k: the key at
        // i + 4k (or i + 2 + 4k), and its back key from 1 byte before.
        let a = pass(load(i), back(i));
        let b = if PAIRS {
            pass(load(i + 2), back(i + 2))
        } else {
            (0, 0)
        };
        blocks.push(out, i, [(a.0, 0, 0), (a.1, 1, 0), (b.0, 0, 2), (b.1, 1, 2)]);
        i += 32;
    }
    i
}

/// [`avx2`] on 64-byte blocks. A key's bits come from one
/// `vpmultishiftqb`, which moves each of its four 6-bit fields to the low
/// bits of a byte, and one `vpermb`, which looks all 64 bytes up in
/// `hash::BYTE_BIT` at once: both run on the port the multiplies and
/// shifts leave free.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512VBMI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn avx512<const WIDE: bool, const BACK: bool, const PAIRS: bool>(
    blocks: Blocks<'_>,
    hash: Hash<'_>,
    out: &mut Out<'_>,
) -> usize {
    use std::arch::x86_64::*;
    let Hash { filter, mul, .. } = hash;
    let mul4 = _mm512_set1_epi32(mul[1] as i32);
    let mul3 = _mm512_set1_epi32(mul[2] as i32);
    let mulw = _mm512_set1_epi32(mul[0] as i32);
    let low3 = _mm512_set1_epi32(0x00ff_ffff);
    // A per-lane shift is one instruction; a shift by an `xmm` count two.
    let shift = _mm512_set1_epi32(filter.shift as i32);
    // SAFETY: the table is 64 bytes, one vector.
    let table = unsafe { _mm512_loadu_si512(crate::index::hash::BYTE_BIT.as_ptr().cast()) };
    // Where each byte's field starts in the 64 bits of its pair of lanes,
    // lowest byte first (`hash::bloom`): 4-byte keys at bits 2, 10, 18
    // and 26, back keys at 0, 4, 18 and 26, and 32 more in the upper lane.
    let fields_wide = _mm512_set1_epi64(0x3a32_2a22_1a12_0a02);
    let fields_back = _mm512_set1_epi64(0x3a32_2420_1a12_0400);
    let bits = |fields: __m512i, g: __m512i| {
        _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(fields, g), table)
    };
    // The lanes whose 4-byte key and whose back key have their filter
    // bits set, one bit per lane.
    let pass = |keys: __m512i, back: __m512i| -> (u32, u32) {
        let k3 = _mm512_and_si512(keys, low3);
        let word = _mm512_srlv_epi32(_mm512_mullo_epi32(k3, mulw), shift);
        // SAFETY: every lane of `word` is below 2^(32 - shift), which is
        // `bits.len()` (`Filter::new`).
        let w = unsafe { _mm512_i32gather_epi32::<4>(word, filter.bits.as_ptr().cast()) };
        // A key passes if its bits miss every bit `w` lacks.
        let nw = _mm512_ternarylogic_epi32::<0x55>(w, w, w);
        let a = if WIDE {
            let g = _mm512_mullo_epi32(_mm512_rol_epi32::<8>(keys), mul4);
            u32::from(_mm512_testn_epi32_mask(bits(fields_wide, g), nw))
        } else {
            0
        };
        let b = if BACK {
            let g = _mm512_xor_si512(_mm512_mullo_epi32(k3, mul3), back);
            u32::from(_mm512_testn_epi32_mask(bits(fields_back, g), nw))
        } else {
            0
        };
        (a, b)
    };
    let hay = blocks.hay;
    // SAFETY: the callers read inside hay[i - 1..i + 66], and `i` is at
    // least 4 with back keys (`filter_blocks`).
    let load = |at: usize| unsafe { _mm512_loadu_si512(hay.as_ptr().add(at).cast()) };
    let back = |at: usize| {
        if BACK {
            load(at - 1)
        } else {
            _mm512_setzero_si512()
        }
    };
    let mut i = blocks.from;
    while i < blocks.until && i + 66 <= hay.len() {
        prefetch(hay.as_ptr().wrapping_add(i + PREFETCH));
        // Lane k of a load at `at` holds the 4 bytes at at + 4k: the key at
        // i + 4k (or i + 2 + 4k), and its back key from 1 byte before.
        let a = pass(load(i), back(i));
        let b = if PAIRS {
            pass(load(i + 2), back(i + 2))
        } else {
            (0, 0)
        };
        blocks.push(out, i, [(a.0, 0, 0), (a.1, 1, 0), (b.0, 0, 2), (b.1, 1, 2)]);
        i += 64;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_must_have_exactly_the_words_its_shift_indexes() {
        let bits = vec![0u32; 1 << 12];
        assert!(Filter::new(&bits, 20).is_some());
        assert!(Filter::new(&bits, 19).is_none(), "gathers past the end");
        assert!(Filter::new(&bits, 21).is_none());
        assert!(Filter::new(&bits[..100], 25).is_none());
        let few = vec![0u32; 1 << 23];
        assert!(
            Filter::new(&few, 9).is_none(),
            "larger than any filter built"
        );
    }

    #[test]
    fn short_input_and_no_tables_leave_everything_to_the_caller() {
        let bits = vec![u32::MAX; 1 << 12];
        for level in Level::available() {
            let t = Filter::new(&bits, 20).expect("filter");
            let mut out = Vec::new();
            let block = match level {
                Level::Scalar => 0,
                Level::Avx2 => 32,
                Level::Avx512 => 64,
            };
            let run = |hay: &[u8], from, until, (kinds, pairs), out: &mut Vec<u32>| {
                let hash = Hash {
                    filter: t,
                    mul: [1, 1, 1],
                    kinds,
                    pairs,
                };
                filter_blocks(level, hay, from, from, until, hash, out)
            };
            // One byte short of a block and its look-ahead.
            let short = vec![0; block + 1];
            assert_eq!(run(&short, 0, 1000, ([true; 2], true), &mut out), 0);
            assert_eq!(run(&[0; 200], 4, 100, ([false; 2], true), &mut out), 4);
            // Back keys need a byte before the first block.
            assert_eq!(run(&[0; 200], 0, 100, ([false, true], true), &mut out), 0);
            assert!(out.is_empty());
            // A filter with every bit set passes every lookup: two kinds
            // at every even position (every 4th without `pairs`), in blocks
            // that start before `until`.
            let hay = vec![7; 4 * block + 2];
            let cases = [[true, true], [true, false], [false, true]]
                .into_iter()
                .flat_map(|k| [(k, true), (k, false)]);
            for (kinds, pairs) in cases {
                out.clear();
                let done = run(&hay, 8, 8 + block + 1, (kinds, pairs), &mut out);
                // Blocks at 8 and 8 + block; none without SIMD.
                let want_done = if block == 0 { 8 } else { 8 + 2 * block };
                assert_eq!(done, want_done, "{level:?}");
                let mut got: Vec<(u32, u32)> = out.iter().map(|e| (e >> 1, e & 1)).collect();
                got.sort_unstable();
                let mut want: Vec<(u32, u32)> = (0..(done - 8) as u32)
                    .step_by(if pairs { 2 } else { 4 })
                    .flat_map(|p| [(p, 0), (p, 1)])
                    .filter(|&(_, k)| kinds[k as usize])
                    .collect();
                want.sort_unstable();
                assert_eq!(got, want, "{level:?} {kinds:?} {pairs}");
            }
        }
    }
}
