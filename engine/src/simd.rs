//! The atom index's Bloom filter probes, eight at a time with AVX2: the
//! engine's only `unsafe` code.
//!
//! [`filter_blocks`] hashes the q-gram keys of 32 bytes at once and fetches
//! their filter words with one gather per table, so the scan pays a scalar
//! table probe only for the few positions whose filter bits are all set.
//! On the bench corpus this doubled single-core throughput over the scalar
//! loop (`engine/DESIGN.md`, "Throughput"). Machines without AVX2 get
//! `None` and the caller runs the scalar loop, which computes the same hash.
//!
//! # Safety
//!
//! Three things make the `unsafe` here sound, and each is checked in this
//! module rather than trusted from callers:
//!
//! - The AVX2 function runs only after `is_x86_feature_detected!("avx2")`.
//! - The two unaligned 32-byte loads of a block read `hay[i..i + 34]`, and
//!   the loop runs only while `i + 34 <= hay.len()`.
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

/// Runs the filters over every whole 32-byte block of `hay` and calls
/// `hit(table, position)` for each position whose key passes table
/// `table`'s filter: tables 0 and 1 at every 4th position (4- and 3-byte
/// keys), table 2 at every 2nd (3-byte keys). Returns where the blocks end
/// (a multiple of 4; the caller scans the rest), or `None` when the CPU
/// has no AVX2 and the caller must scan everything.
pub(crate) fn filter_blocks(
    hay: &[u8],
    mul: u32,
    tables: [Option<Filter<'_>>; 3],
    hit: &mut impl FnMut(usize, usize),
) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return Some(unsafe { avx2(hay, mul, tables, hit) });
    }
    let _ = (hay, mul, tables, hit);
    None
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2(
    hay: &[u8],
    mul: u32,
    tables: [Option<Filter<'_>>; 3],
    hit: &mut impl FnMut(usize, usize),
) -> usize {
    use std::arch::x86_64::*;
    if tables.iter().all(Option::is_none) {
        return 0;
    }
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
    let n = hay.len();
    let mut i = 0;
    while i + 34 <= n {
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
        if masks.iter().any(|m| m.0 != 0) {
            for (mut m, table, add) in masks {
                while m != 0 {
                    hit(table, i + add + 4 * m.trailing_zeros() as usize);
                    m &= m - 1;
                }
            }
        }
        i += 32;
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
        let mut hits = 0;
        let mut hit = |_, _| hits += 1;
        if let Some(done) = filter_blocks(&[0; 33], 1, [t, t, t], &mut hit) {
            assert_eq!(done, 0);
        }
        if let Some(done) = filter_blocks(&[0; 100], 1, [None, None, None], &mut hit) {
            assert_eq!(done, 0);
        }
        // A filter with every bit set passes every position: 8 + 8 + 16
        // per 32-byte block.
        if let Some(done) = filter_blocks(&[7; 66], 1, [t, t, t], &mut hit) {
            assert_eq!(done, 64);
            assert_eq!(hits, 64);
        }
    }
}
