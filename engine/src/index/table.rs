//! The exact tables behind the filters: open-addressing tables from a 3-
//! or 4-byte key to the atoms that have it at some offset.

use crate::index::hash::home;
use crate::util::FxBuild;
use crate::util::arr::Arr;
use crate::util::wire::{StoredReader, StoredResult, invalid, put_arr};
use giva_signatures::wire::Writer;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Slot {
    pub(super) key: u32,
    pub(super) start: u32,
    pub(super) len: u32,
}

/// One atom that has a key at some offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Val {
    pub(super) atom: u32,
    /// The key's offset in the atom (low byte) and the atom's length (the
    /// byte above).
    pub(super) at: u32,
    /// The atom's first 8 bytes (zero-padded), little-endian: most
    /// candidates are rejected by one compare, without reading the atom.
    pub(super) head: u64,
}

impl Val {
    pub(super) fn new(atom: u32, off: usize, bytes: &[u8]) -> Val {
        Val {
            atom,
            at: off as u32 | (bytes.len() as u32) << 8,
            head: head_of(bytes),
        }
    }

    #[inline(always)]
    pub(super) fn off(&self) -> usize {
        (self.at & 0xff) as usize
    }

    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        (self.at >> 8 & 0xff) as usize
    }
}

/// The first 8 bytes of `a`, zero-padded, as a little-endian word.
pub(super) fn head_of(a: &[u8]) -> u64 {
    let mut h = [0u8; 8];
    let n = a.len().min(8);
    h[..n].copy_from_slice(&a[..n]);
    u64::from_le_bytes(h)
}

/// A set of 3- or 4-byte keys, each with a list of atoms that have the
/// key at some offset: an open-addressing table.
#[derive(Clone, Debug, Default)]
pub(super) struct GramTable {
    pub(super) slots: Arr<Slot>,
    pub(super) values: Arr<Val>,
}

impl GramTable {
    /// `entries` are `(key, atom, offset)`.
    pub(super) fn build(entries: Vec<(u32, u32, u32)>, atoms: &[Vec<u8>]) -> Self {
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
    pub(super) fn index(groups: &[(u32, u32, u32)], values: Vec<Val>) -> Self {
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
    pub(super) fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().filter(|s| s.len != 0).map(|s| s.key)
    }

    /// Each key in the table with its values.
    pub(super) fn groups(&self) -> impl Iterator<Item = (u32, &[Val])> + '_ {
        self.slots.iter().filter(|s| s.len != 0).map(|s| {
            (
                s.key,
                &self.values[s.start as usize..(s.start + s.len) as usize],
            )
        })
    }

    #[inline(always)]
    /// The table as plain slices, taken once per scan rather than per
    /// lookup (an [`Arr`] checks its view on every access).
    pub(super) fn view(&self) -> GramView<'_> {
        GramView {
            slots: &self.slots,
            values: &self.values,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl GramTable {
    /// Stores the table as it is in memory: rebuilding the slot table at
    /// load (random writes into a table larger than the cache) cost more
    /// than checksumming and copying it.
    pub(super) fn write(&self, w: &mut Writer) {
        put_arr(w, &self.slots);
        put_arr(w, &self.values);
    }

    /// Reads a table and checks what `get` and `confirm` need to stay in
    /// bounds: every slot's range lies in `values`, a probe always reaches
    /// an empty slot, and every value names an atom of `atoms`. A value's
    /// length, head and offset are not checked: they come from the
    /// compiler through the database checksum, and a wrong one only makes
    /// a match fail.
    pub(super) fn read(r: &mut StoredReader<'_>, natoms: usize) -> StoredResult<GramTable> {
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
                return invalid("gram table slot out of range");
            }
        }
        if !empty
            || u32::try_from(t.slots.len()).is_err()
            || t.values.iter().any(|v| v.atom as usize >= natoms)
        {
            return invalid("gram table out of range");
        }
        Ok(t)
    }
}

/// A [`GramTable`] borrowed as slices for the scan loop.
#[derive(Clone, Copy)]
pub(super) struct GramView<'a> {
    pub(super) slots: &'a [Slot],
    pub(super) values: &'a [Val],
}

impl<'a> GramView<'a> {
    #[inline]
    pub(super) fn get(&self, x: u32) -> &'a [Val] {
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
