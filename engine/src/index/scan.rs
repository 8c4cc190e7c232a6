//! Scanning with an [`AtomIndex`]: the filter loops (scalar here, SIMD in
//! `simd.rs`), the sieve, and the probes of the exact tables.

use crate::index::atom_index::AtomIndex;
use crate::index::filter::{Bloom, Sieve};
use crate::index::hash::{MUL, MUL3, MUL4, gram, home};
use crate::index::simd;
use crate::index::table::{GramView, Val};

/// The filter loops run over this many bytes at a time before the
/// positions that passed are probed (see [`AtomIndex::scan_at`]).
pub(super) const CHUNK: usize = 16 << 10;

impl AtomIndex {
    /// Whether the atom of `v` occurs at `start` (which is at most
    /// `hay.len()`).
    #[inline(always)]
    pub(super) fn confirm(&self, v: &Val, hay: &[u8], start: usize) -> bool {
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
    pub(super) fn probe(
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
    pub(super) fn scan_at(&self, level: simd::Level, hay: &[u8], mut f: impl FnMut(u32, usize)) {
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
                    let (t, p, x) = key(&e);
                    passes[kept] = e;
                    kept += usize::from(Sieve::pass(sieve, self.sieve.shift, hay, p, x, t == 1));
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
    pub(super) fn filter(
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
    pub(super) fn grams_scalar(
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
    pub(super) fn shorts(&self, hay: &[u8], f: &mut impl FnMut(u32, usize)) {
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

/// What one scan cost, by stage (a diagnostic of the tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Census {
    pub bytes: u64,
    pub bloom: u64,
    pub sieve: u64,
    /// Table values looked at, and those whose atom was there.
    pub probed: u64,
    pub confirmed: u64,
    /// Per atom: (confirmed, probed without confirming).
    pub per_atom: std::collections::HashMap<u32, (u64, u64)>,
    /// Per 3-byte word prefix of positions that passed the bloom filter.
    pub passed_prefix: std::collections::HashMap<[u8; 4], u64>,
}

#[cfg(test)]
impl AtomIndex {
    /// [`AtomIndex::scan`], counting into `c`.
    pub(crate) fn census(&self, hay: &[u8], c: &mut Census) {
        let views = [self.q4.view(), self.back.view()];
        let sieve = &self.sieve.bits[..];
        let mut passes = Vec::new();
        let mut from = 0;
        c.bytes += hay.len() as u64;
        while from < hay.len() {
            passes.clear();
            let next = self.filter(simd::Level::best(), hay, from, from + CHUNK, &mut passes);
            c.bloom += passes.len() as u64;
            for &e in &passes {
                let (t, p) = ((e & 1) as usize, from + (e >> 1) as usize);
                let q = if t == 0 { p } else { p - 1 };
                let x = gram(hay, q);
                let mut k = [0u8; 4];
                let end = (q + 4).min(hay.len());
                k[..end - q].copy_from_slice(&hay[q..end]);
                *c.passed_prefix.entry(k).or_insert(0) += 1;
                if !sieve.is_empty() && !Sieve::pass(sieve, self.sieve.shift, hay, p, x, t == 1) {
                    continue;
                }
                c.sieve += 1;
                for v in views[t].get(x) {
                    c.probed += 1;
                    let off = v.off();
                    let ok = p >= off && self.confirm(v, hay, p - off);
                    let s = c.per_atom.entry(v.atom).or_insert((0, 0));
                    if ok {
                        c.confirmed += 1;
                        s.0 += 1;
                    } else {
                        s.1 += 1;
                    }
                }
            }
            from = next;
        }
    }
}
