//! The atom index's Bloom filter probes, 8 at a time with AVX2 or 16 with
//! AVX-512: the engine's only `unsafe` code.
//!
//! [`filter_blocks`] hashes the q-gram keys of a 32- or 64-byte block at
//! once and fetches their filter words with one gather per table, so the
//! scan pays a scalar table probe only for the few positions whose filter
//! bits are all set. On the bench corpus the AVX2 loop doubled
//! single-core throughput over the scalar loop (`engine/DESIGN.md`,
//! "Throughput"). Machines without either get 0 blocks done, and the
//! caller runs the scalar loop, which computes the same hash.
//!
//! # Safety
//!
//! Three things make the `unsafe` here sound, and each is checked in this
//! module rather than trusted from callers:
//!
//! - The AVX2 and AVX-512 functions run only after
//!   `is_x86_feature_detected!` for `avx2` or `avx512f`, in
//!   [`filter_blocks`], whatever [`Level`] the caller asks for.
//! - The two unaligned loads of a block read `hay[i..i + 34]` (AVX2) or
//!   `hay[i..i + 66]` (AVX-512), and each loop runs only while that range
//!   is inside `hay`.
//! - [`prefetch`] reads nothing, so its address may lie anywhere.
//! - A gather reads the filter word `(key * MUL) >> shift` of each lane,
//!   which is below `2^(32 - shift)`; [`Filter::new`] accepts a filter only
//!   if its word count is exactly that power of two (and `shift` leaves the
//!   ten bits below the index that pick the key's two bits).

#![allow(unsafe_code)]

/// One table's Bloom filter: `2^(32 - shift)` words; a key `x` sets bits
/// `(h >> (shift - 5)) & 31` and `(h >> (shift - 10)) & 31` of word
/// `h >> shift`, where `h = x * mul`. `atoms::bloom` is the scalar form.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Filter<'a> {
    bits: &'a [u32],
    shift: u32,
}

impl<'a> Filter<'a> {
    /// The filter, if `bits` and `shift` agree as described above.
    pub fn new(bits: &'a [u32], shift: u32) -> Option<Filter<'a>> {
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
    /// loop spills).
    Avx512,
}

impl Level {
    /// The best level this CPU runs.
    pub fn best() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Scalar
    }

    /// Every level this CPU runs, best first (so tests cover each).
    #[cfg(test)]
    pub fn available() -> Vec<Level> {
        let all = [Level::Avx512, Level::Avx2, Level::Scalar];
        all.into_iter().filter(|&l| l <= Level::best()).collect()
    }
}

/// Runs the filters at `level` (or the best level below it this CPU has)
/// over the blocks of `hay` that start in `from..until` and end inside
/// `hay`, and pushes `(position - from) << 2 | table` to `out` for each
/// position whose key passes table `table`'s filter: tables 0 and 1 at
/// every 4th position (4- and 3-byte keys), table 2 at every 2nd (3-byte
/// keys). `from` must be a multiple of 4. Returns where the blocks end
/// (also a multiple of 4; `from` if it ran none): the caller scans the
/// rest.
pub(crate) fn filter_blocks(
    level: Level,
    hay: &[u8],
    from: usize,
    until: usize,
    mul: u32,
    tables: [Option<Filter<'_>>; 3],
    out: &mut Vec<u32>,
) -> usize {
    if tables.iter().all(Option::is_none) {
        return from;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let blocks = Blocks { hay, from, until };
        if level >= Level::Avx512 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512(blocks, mul, tables, out) };
        }
        if level >= Level::Avx2 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { avx2(blocks, mul, tables, out) };
        }
    }
    let _ = (level, hay, until, mul, out);
    from
}

/// The range a filter loop covers (see [`filter_blocks`]).
#[derive(Clone, Copy)]
struct Blocks<'a> {
    hay: &'a [u8],
    from: usize,
    until: usize,
}

impl Blocks<'_> {
    /// Pushes the passing lanes of the block at `i`: each of `masks` is
    /// `(lanes, table, add)`, lane `k` being position `i + add + 4k`.
    #[inline(always)]
    fn push(&self, out: &mut Vec<u32>, i: usize, masks: [(u32, u32, usize); 4]) {
        if masks.iter().all(|m| m.0 == 0) {
            return;
        }
        for (mut lanes, table, add) in masks {
            let base = ((i + add - self.from) as u32) << 2 | table;
            while lanes != 0 {
                out.push(base + (lanes.trailing_zeros() << 4));
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
unsafe fn avx2(
    blocks: Blocks<'_>,
    mul: u32,
    tables: [Option<Filter<'_>>; 3],
    out: &mut Vec<u32>,
) -> usize {
    use std::arch::x86_64::*;
    let mulv = _mm256_set1_epi32(mul as i32);
    let low3 = _mm256_set1_epi32(0x00ff_ffff);
    let one = _mm256_set1_epi32(1);
    let low5 = _mm256_set1_epi32(31);
    // The lanes whose key has both filter bits set, one bit per lane.
    let pass = |keys: __m256i, t: &Filter<'_>| -> u32 {
        let h = _mm256_mullo_epi32(keys, mulv);
        let word = _mm256_srl_epi32(h, _mm_cvtsi32_si128(t.shift as i32));
        let bit = |below: i32| {
            let b = _mm256_srl_epi32(h, _mm_cvtsi32_si128(t.shift as i32 - below));
            _mm256_sllv_epi32(one, _mm256_and_si256(b, low5))
        };
        let m = _mm256_or_si256(bit(5), bit(10));
        // SAFETY: every lane of `word` is below 2^(32 - shift), which is
        // `bits.len()` (`Filter::new`).
        let w = unsafe { _mm256_i32gather_epi32::<4>(t.bits.as_ptr().cast(), word) };
        let set = _mm256_cmpeq_epi32(_mm256_and_si256(w, m), m);
        _mm256_movemask_ps(_mm256_castsi256_ps(set)) as u32
    };
    let hay = blocks.hay;
    let mut i = blocks.from;
    while i < blocks.until && i + 34 <= hay.len() {
        prefetch(hay.as_ptr().wrapping_add(i + PREFETCH));
        // SAFETY: both loads read inside hay[i..i + 34].
        let (v0, v2) = unsafe {
            (
                _mm256_loadu_si256(hay.as_ptr().add(i).cast()),
                _mm256_loadu_si256(hay.as_ptr().add(i + 2).cast()),
            )
        };
        // Lane k holds the 4 bytes at i + 4k (v0) or at i + 2 + 4k (v2).
        let k3 = _mm256_and_si256(v0, low3);
        let masks = [
            (tables[0].map_or(0, |t| pass(v0, &t)), 0, 0),
            (tables[1].map_or(0, |t| pass(k3, &t)), 1, 0),
            (tables[2].map_or(0, |t| pass(k3, &t)), 2, 0),
            (
                tables[2].map_or(0, |t| pass(_mm256_and_si256(v2, low3), &t)),
                2,
                2,
            ),
        ];
        blocks.push(out, i, masks);
        i += 32;
    }
    i
}

/// [`avx2`] on 64-byte blocks. The two bits of a key come from rotates,
/// which take the bit number modulo 32 as the filter wants, so no mask.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(
    blocks: Blocks<'_>,
    mul: u32,
    tables: [Option<Filter<'_>>; 3],
    out: &mut Vec<u32>,
) -> usize {
    use std::arch::x86_64::*;
    let mulv = _mm512_set1_epi32(mul as i32);
    let low3 = _mm512_set1_epi32(0x00ff_ffff);
    let one = _mm512_set1_epi32(1);
    // The lanes whose key has both filter bits set, one bit per lane.
    let pass = |keys: __m512i, t: &Filter<'_>| -> u32 {
        let h = _mm512_mullo_epi32(keys, mulv);
        let word = _mm512_srl_epi32(h, _mm_cvtsi32_si128(t.shift as i32));
        let bit = |below: i32| {
            _mm512_rolv_epi32(
                one,
                _mm512_srl_epi32(h, _mm_cvtsi32_si128(t.shift as i32 - below)),
            )
        };
        let m = _mm512_or_si512(bit(5), bit(10));
        // SAFETY: every lane of `word` is below 2^(32 - shift), which is
        // `bits.len()` (`Filter::new`).
        let w = unsafe { _mm512_i32gather_epi32::<4>(word, t.bits.as_ptr().cast()) };
        u32::from(_mm512_cmpeq_epi32_mask(_mm512_and_si512(w, m), m))
    };
    let hay = blocks.hay;
    let mut i = blocks.from;
    while i < blocks.until && i + 66 <= hay.len() {
        prefetch(hay.as_ptr().wrapping_add(i + PREFETCH));
        // SAFETY: both loads read inside hay[i..i + 66].
        let (v0, v2) = unsafe {
            (
                _mm512_loadu_si512(hay.as_ptr().add(i).cast()),
                _mm512_loadu_si512(hay.as_ptr().add(i + 2).cast()),
            )
        };
        // Lane k holds the 4 bytes at i + 4k (v0) or at i + 2 + 4k (v2).
        let k3 = _mm512_and_si512(v0, low3);
        let masks = [
            (tables[0].map_or(0, |t| pass(v0, &t)), 0, 0),
            (tables[1].map_or(0, |t| pass(k3, &t)), 1, 0),
            (tables[2].map_or(0, |t| pass(k3, &t)), 2, 0),
            (
                tables[2].map_or(0, |t| pass(_mm512_and_si512(v2, low3), &t)),
                2,
                2,
            ),
        ];
        blocks.push(out, i, masks);
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
        assert!(Filter::new(&few, 9).is_none(), "no room for the bits");
    }

    #[test]
    fn short_input_and_no_tables_leave_everything_to_the_caller() {
        let bits = vec![u32::MAX; 1 << 12];
        let t = Filter::new(&bits, 20);
        for level in Level::available() {
            let mut out = Vec::new();
            let block = match level {
                Level::Scalar => 0,
                Level::Avx2 => 32,
                Level::Avx512 => 64,
            };
            // One byte short of a block and its look-ahead.
            let short = vec![0; block + 1];
            assert_eq!(
                filter_blocks(level, &short, 0, 1000, 1, [t; 3], &mut out),
                0
            );
            assert_eq!(
                filter_blocks(level, &[0; 200], 4, 100, 1, [None; 3], &mut out),
                4
            );
            assert!(out.is_empty());
            // A filter with every bit set passes every position: 8 + 8 +
            // 16 per 32 bytes, in blocks that start before `until`.
            let hay = vec![7; 4 * block + 2];
            let done = filter_blocks(level, &hay, 8, 8 + block + 1, 1, [t; 3], &mut out);
            // Blocks at 8 and 8 + block; none without SIMD.
            let want_done = if block == 0 { 8 } else { 8 + 2 * block };
            assert_eq!(done, want_done, "{level:?}");
            assert_eq!(out.len(), done - 8, "{level:?}");
            let mut got: Vec<(u32, u32)> = out.iter().map(|e| (e >> 2, e & 3)).collect();
            got.sort_unstable();
            let mut want: Vec<(u32, u32)> = (0..(done - 8) as u32)
                .step_by(4)
                .flat_map(|p| [(p, 0), (p, 1), (p, 2), (p + 2, 2)])
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "{level:?}");
        }
    }
}
