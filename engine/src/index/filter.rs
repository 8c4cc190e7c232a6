//! The two filters in front of the gram tables: the blocked Bloom filter
//! that the SIMD loops probe ([`Bloom`]) and the plain one that sieves
//! what passes it ([`Sieve`]).

use crate::index::hash::bloom;
use crate::index::simd;
use crate::index::table::GramTable;
use crate::util::arr::Arr;
use crate::util::wire::{StoredReader, StoredResult, invalid, put_arr};
use giva_signatures::wire::Writer;

/// The blocked Bloom filter in front of both gram tables:
/// `2^(32 - shift)` 32-bit words (see [`bloom`]).
#[derive(Clone, Debug, Default)]
pub(super) struct Bloom {
    pub(super) bits: Arr<u32>,
    pub(super) shift: u32,
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
    pub(super) fn new(wide: &GramTable, back: &GramTable) -> Self {
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
    pub(super) fn size(keys: usize) -> usize {
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
    pub(super) fn build(wide: &GramTable, back: &GramTable, nbits: usize) -> Self {
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
    pub(super) fn filter(&self) -> Option<simd::Filter<'_>> {
        if self.bits.is_empty() {
            return None;
        }
        simd::Filter::new(&self.bits, self.shift)
    }

    /// Whether key `x` may be in the table of its kind.
    #[inline(always)]
    pub(super) fn maybe(bits: &[u32], shift: u32, x: u32, wide: bool) -> bool {
        let (w, m) = bloom(x, wide, shift);
        bits[w] & m == m
    }
}

impl Bloom {
    pub(super) fn write(&self, w: &mut Writer) {
        put_arr(w, &self.bits);
        w.u32(self.shift);
    }

    /// Reads a filter and checks that `bloom` stays in bounds: the word
    /// count is the power of two its shift indexes (as
    /// [`simd::Filter::new`] wants).
    pub(super) fn read(r: &mut StoredReader<'_>) -> StoredResult<Bloom> {
        let bits = r.arr()?;
        let shift = r.u32()?;
        let b = Bloom { bits, shift };
        if b.bits.is_empty() {
            return Ok(Bloom::default());
        }
        if !(10..32).contains(&b.shift) || b.bits.len() != 1usize << (32 - b.shift) {
            return invalid("gram filter out of range");
        }
        Ok(b)
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
pub(super) struct Sieve {
    /// Empty if there are no keys (then there is nothing to sieve).
    pub(super) bits: Arr<u64>,
    /// `64 - log2(bit count)`: a bit number is the top bits of a product.
    pub(super) shift: u32,
}

impl Sieve {
    /// About 16 bits per key (about 1% false positives), 4096 bits at
    /// least, 2^22 (512 KiB) at most.
    pub(super) fn new(wide: &GramTable, back: &GramTable) -> Sieve {
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
    pub(super) fn bit_numbers(x: u32, kind: usize, shift: u32) -> [usize; 2] {
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
    pub(super) fn maybe(bits: &[u64], shift: u32, x: u32, kind: usize) -> bool {
        let [a, b] = Sieve::bit_numbers(x, kind, shift);
        (bits[a >> 6] >> (a & 63)) & (bits[b >> 6] >> (b & 63)) & 1 != 0
    }

    pub(super) fn write(&self, w: &mut Writer) {
        put_arr(w, &self.bits);
        w.u32(self.shift);
    }

    /// Reads a sieve and checks that its bit numbers stay in bounds: the
    /// bit count is the power of two its shift takes the top bits for.
    pub(super) fn read(r: &mut StoredReader<'_>) -> StoredResult<Sieve> {
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
            return invalid("gram sieve out of range");
        }
        Ok(s)
    }
}
