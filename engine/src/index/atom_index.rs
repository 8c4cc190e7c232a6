//! [`AtomIndex`]: the atoms of a program, indexed for the scan. Built in
//! `build.rs`, scanned in `scan.rs`, stored here.

use crate::index::filter::{Bloom, Sieve};
use crate::index::table::GramTable;
use crate::util::arr::Arr;
use crate::util::wire::{StoredReader, StoredResult, invalid, put_arr};
use giva_signatures::wire::Writer;

/// The atoms of a program, indexed for [`AtomIndex::scan`].
#[derive(Clone, Debug)]
pub(crate) struct AtomIndex {
    /// Every atom's bytes, back to back: atom `a` is
    /// `bytes[starts[a]..starts[a + 1]]`.
    pub(super) bytes: Arr<u8>,
    pub(super) starts: Arr<u32>,
    /// The positions looked up are the multiples of this: 2, or 4 when
    /// every atom of 4 bytes or more has 7 or more.
    pub(crate) stride: u32,
    /// The filter in front of `q4` and `back`.
    pub(super) bloom: Bloom,
    /// The second filter, for the positions that pass `bloom`.
    pub(super) sieve: Sieve,
    /// 5+ byte atoms: 4-byte q-grams at `stride` consecutive offsets; and
    /// 4-byte atoms, at offset 0.
    pub(super) q4: GramTable,
    /// 4-byte atoms by their back key: the whole atom, at offset 1 (only
    /// with stride 2). Its 3-byte q-grams were keys before: on random
    /// data 1 position in 800 or so hit a real one, which the 4th byte
    /// then nearly always rejected after a probe.
    pub(super) back: GramTable,
    /// Short atoms by first byte: `(first byte, atom)` sorted.
    pub(super) short: Vec<(u8, u32)>,
    pub(super) short_first: [bool; 256],
}

impl AtomIndex {
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
}

impl AtomIndex {
    pub(crate) fn write(&self, w: &mut Writer) {
        put_arr(w, &self.bytes);
        put_arr(w, &self.starts);
        w.u32(self.stride);
        self.bloom.write(w);
        self.sieve.write(w);
        self.q4.write(w);
        self.back.write(w);
        let short: Vec<[u32; 2]> = self.short.iter().map(|&(b, a)| [u32::from(b), a]).collect();
        put_arr(w, &short);
    }

    pub(crate) fn read(r: &mut StoredReader<'_>) -> StoredResult<AtomIndex> {
        let bytes: Arr<u8> = r.arr()?;
        let starts: Arr<u32> = r.arr()?;
        if starts.first() != Some(&0)
            || starts.windows(2).any(|w| w[0] >= w[1])
            || starts.last().map(|&x| x as usize) != Some(bytes.len())
        {
            return invalid("atom table out of range");
        }
        let natoms = starts.len() - 1;
        let stride = r.u32()?;
        let bloom = Bloom::read(r)?;
        let sieve = Sieve::read(r)?;
        let q4 = GramTable::read(r, natoms)?;
        let back = GramTable::read(r, natoms)?;
        if bloom.bits.is_empty() && !(q4.is_empty() && back.is_empty()) {
            return invalid("gram tables without a filter");
        }
        // Back keys are 4-byte atoms, which are indexed only with stride 2
        // (stride 4 misses those at a start 2 past a multiple of 4).
        if !(stride == 2 || stride == 4 && back.is_empty()) {
            return invalid("gram stride out of range");
        }
        let pairs: Arr<[u32; 2]> = r.arr()?;
        let mut short = Vec::with_capacity(pairs.len());
        let mut short_first = [false; 256];
        for &[b, a] in pairs.iter() {
            let (Ok(b), true) = (u8::try_from(b), (a as usize) < natoms) else {
                return invalid("short atom out of range");
            };
            short.push((b, a));
            short_first[usize::from(b)] = true;
        }
        if short.windows(2).any(|w| w[0] > w[1]) {
            return invalid("short atoms out of order");
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
