//! The two filters in front of the gram tables: the blocked Bloom filter
//! that the SIMD loops probe ([`Bloom`]) and the plain one that sieves
//! what passes it ([`Sieve`]).

use crate::index::hash::bloom;
use crate::index::simd;
use crate::index::table::{GramTable, Val};
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

/// The second filter: a plain Bloom filter, two bits per key anywhere in
/// it, from hashes unrelated to [`bloom`]'s. The positions that pass
/// [`Bloom`] go through it in a batch before their slot probes. A probe
/// costs about 35 ns, mostly mispredicted branches (whether the slot is
/// empty, holds the key or holds another is random); a sieve check is a
/// few loads and no branch on its outcome.
///
/// **Keys.** A back key is sieved as itself. A 4-byte key is sieved by
/// 8 bytes of each of its atoms where it can be: the 8 bytes from the key
/// when the atom has 4 more after it (a *forward* key), else the 8 bytes
/// from 4 before it when the atom has 4 before it (a *behind* key); a key
/// with an atom that has neither is sieved as its 4 bytes. A position then
/// passes if its 4 bytes, the 8 from it or the 8 from 4 before it are in
/// the sieve. The 4 bytes alone could not tell a rare atom from the common
/// structure that shares its key: at 100k bench signatures, 16,000 positions
/// per MB of real files passed a sieve of 4-byte keys (real hits of keys
/// like `\x02\x00\x00\x00` or `A\A]`, shared by prologues and headers),
/// and 356 of them confirmed.
///
/// At 1k and 10k bench signatures nearly every position that passes
/// [`Bloom`] is a false positive (`engine/DESIGN.md`); the sieve made
/// `giva scan` of the bench corpus 2% faster at 1k and 4-6% at 10k and
/// 100k even with 4-byte keys only. Stored with the tables.
#[derive(Clone, Debug, Default)]
pub(super) struct Sieve {
    /// Empty if there are no keys (then there is nothing to sieve).
    pub(super) bits: Arr<u64>,
    /// `64 - log2(bit count)`: a bit number is the top bits of a hash.
    pub(super) shift: u32,
}

/// What a sieve key is, mixed into its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SieveKey {
    /// A 4-byte key's own 4 bytes.
    Wide = 0,
    /// A back key.
    Back = 1,
    /// The 8 bytes from a 4-byte key.
    Forward = 2,
    /// The 8 bytes from 4 before a 4-byte key.
    Behind = 3,
}

impl Sieve {
    /// The sieve over the keys of `wide` (4-byte keys) and `back` (back
    /// keys), `atom` giving an atom's bytes: about 16 bits per sieve key
    /// (about 1% false positives a check), 4096 bits at least, 2^23
    /// (1 MiB) at most.
    pub(super) fn new<'a>(
        wide: &GramTable,
        back: &GramTable,
        atom: impl Fn(u32) -> &'a [u8],
    ) -> Sieve {
        let mut keys: Vec<(u64, SieveKey)> = back
            .keys()
            .map(|x| (u64::from(x), SieveKey::Back))
            .collect();
        let eight = |v: &Val| {
            let (from, kind) = Sieve::eight_around(v.off(), v.len())?;
            Some((word8(&atom(v.atom)[from..from + 8]), kind))
        };
        for (x, values) in wide.groups() {
            // One atom without 8 bytes around the key lets every
            // occurrence of the key through anyway.
            if values
                .iter()
                .all(|v| Sieve::eight_around(v.off(), v.len()).is_some())
            {
                keys.extend(values.iter().filter_map(eight));
            } else {
                keys.push((u64::from(x), SieveKey::Wide));
            }
        }
        if keys.is_empty() {
            return Sieve::default();
        }
        let nbits = (keys.len() * 16)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 23);
        let shift = 64 - nbits.trailing_zeros();
        let mut bits = vec![0u64; nbits / 64];
        for &(k, kind) in &keys {
            for b in Sieve::bit_numbers(k, kind, shift) {
                bits[b >> 6] |= 1 << (b & 63);
            }
        }
        Sieve {
            bits: bits.into(),
            shift,
        }
    }

    /// Where in an atom of `len` bytes the sieve's 8 bytes around a
    /// 4-byte key at `off` start, and their kind: from the key if 4 more
    /// bytes follow it, else from 4 before it if there are 4; `None` if
    /// neither (then the key is sieved by its 4 bytes).
    pub(super) fn eight_around(off: usize, len: usize) -> Option<(usize, SieveKey)> {
        if off + 8 <= len {
            Some((off, SieveKey::Forward))
        } else if off >= 4 {
            Some((off - 4, SieveKey::Behind))
        } else {
            None
        }
    }

    /// The two bits of key `k` of kind `kind`: two fields of a hash of
    /// all its bits (two multiplies, the high bits folded in between).
    #[inline(always)]
    pub(super) fn bit_numbers(k: u64, kind: SieveKey, shift: u32) -> [usize; 2] {
        let m = (k ^ (kind as u64) << 61).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h = (m ^ m >> 29).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        [(h >> shift) as usize, (h << (64 - shift) >> shift) as usize]
    }

    /// Whether key `k` of kind `kind` may be in the sieve, given its
    /// `bits` (taken as a slice once per scan, as [`GramView`] does: an
    /// [`Arr`] checks its view on every access) and `shift`.
    #[inline(always)]
    fn maybe(bits: &[u64], shift: u32, k: u64, kind: SieveKey) -> bool {
        let [a, b] = Sieve::bit_numbers(k, kind, shift);
        (bits[a >> 6] >> (a & 63)) & (bits[b >> 6] >> (b & 63)) & 1 != 0
    }

    /// Whether the position `p` of `hay` that passed [`Bloom`] with key
    /// `x` (a back key if `back`) may hold an atom. Near either end of
    /// `hay`, where 8 bytes around a 4-byte key do not fit, it passes.
    #[inline(always)]
    pub(super) fn pass(bits: &[u64], shift: u32, hay: &[u8], p: usize, x: u32, back: bool) -> bool {
        if back {
            return Sieve::maybe(bits, shift, u64::from(x), SieveKey::Back);
        }
        let (Some(fwd), Some(behind)) = (hay.get(p..p + 8), p.checked_sub(4)) else {
            return true;
        };
        let behind = word8(&hay[behind..behind + 8]);
        Sieve::maybe(bits, shift, u64::from(x), SieveKey::Wide)
            | Sieve::maybe(bits, shift, word8(fwd), SieveKey::Forward)
            | Sieve::maybe(bits, shift, behind, SieveKey::Behind)
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
            || !(12..=23).contains(&nbits.trailing_zeros())
            || s.shift != 64 - nbits.trailing_zeros()
        {
            return invalid("gram sieve out of range");
        }
        Ok(s)
    }
}

/// 8 bytes as a little-endian word.
#[inline(always)]
fn word8(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}
