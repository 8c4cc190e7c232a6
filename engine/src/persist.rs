//! The built engine as bytes, stored in the compiled database file so that
//! loading a database does not rebuild the atom index and the programs.
//!
//! Layout (little-endian): the magic `GIVAENG` plus a format byte, the
//! number of body signatures and subsignature counters it was built for
//! (checked against the database; the counters' layout is derived from
//! its logical signatures), `eof_tail`, the body signature names, then the
//! `main`, `eof` and (optional) sequential programs. Every array is a
//! `u64` element count followed by the elements.
//!
//! The file is checksummed as a whole, so these bytes are what `giva db
//! compile` wrote; reading still checks every count, index and range that
//! scanning relies on, and refuses the blob (the engine is then rebuilt
//! from the signatures) rather than panic or read out of bounds later.

use bytes::Bytes;
use giva_signatures::{Anchor, Assertion, ByteSet, Gap, Offset};

use crate::arr::Arr;

use crate::atoms::AtomIndex;
use crate::compile::{
    ASSERT_CTX, Elem, Entry, MAX_SPLIT_SPAN, NotAltCheck, Owner, PatternInfo, Program,
    entry_context,
};

/// The magic and format of the blob. Bump the last byte whenever the
/// layout or the meaning of a stored structure changes: an older blob is
/// then ignored and the engine rebuilt.
pub(crate) const MAGIC: &[u8; 8] = b"GIVAENG\x09";

/// The tables ([`W::pods`]) start at multiples of this many bytes from the
/// blob's start, which the database file places at a multiple of 64: so
/// they are aligned in the mapping and used in place ([`Arr`]).
const POD_ALIGN: usize = 8;

/// Why a stored engine was not used.
#[derive(Debug, thiserror::Error)]
#[error("stored engine index: {0}")]
pub struct PersistError(pub(crate) String);

pub(crate) type PResult<T> = Result<T, PersistError>;

pub(crate) fn bad<T>(what: impl Into<String>) -> PResult<T> {
    Err(PersistError(what.into()))
}

/// Appends little-endian values.
#[derive(Default)]
pub(crate) struct W(pub Vec<u8>);

impl W {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    /// A table of plain values, used in place when read back
    /// ([`R::arr`]): the count, zero padding to [`POD_ALIGN`], the values.
    pub fn pods<T: bytemuck::Pod>(&mut self, v: &[T]) {
        self.len(v.len());
        let pad = self.0.len().next_multiple_of(POD_ALIGN) - self.0.len();
        self.0.extend(std::iter::repeat_n(0, pad));
        self.0.extend_from_slice(bytemuck::cast_slice(v));
    }
    pub fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        self.0.reserve(v.len() * 4);
        for x in v {
            self.u32(*x);
        }
    }
}

/// Reads what [`W`] wrote, bounds-checked.
pub(crate) struct R<'a> {
    b: &'a [u8],
    /// What `b` started as: tables are cut from it rather than copied
    /// ([`R::arr`]).
    src: &'a Bytes,
}

impl<'a> R<'a> {
    /// Reads `src`, handing out its tables in place.
    pub fn new(src: &'a Bytes) -> Self {
        R { b: src, src }
    }
    pub fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        if n > self.b.len() {
            return bad("truncated");
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> PResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> PResult<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// An element count of elements of `size` bytes each, checked against
    /// the bytes left so that a bad count cannot allocate.
    pub fn len(&mut self, size: usize) -> PResult<usize> {
        let n = self.u64()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(size.max(1)) <= self.b.len() => Ok(n),
            _ => bad(format!("count {n} exceeds the bytes left")),
        }
    }
    pub fn bytes(&mut self) -> PResult<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    /// A `u32` array written by [`W::u32s`], read as `T`s (plain structs
    /// of `u32`s, or `u64`s as two words, low first): a copy, not a
    /// decode. Little-endian hosts only (see `Inner::read`).
    pub fn pods<T: bytemuck::Pod>(&mut self) -> PResult<Vec<T>> {
        let n = self.len(4)?;
        let size = std::mem::size_of::<T>();
        if (n * 4) % size != 0 {
            return bad(format!("{n} words are not records of {size} bytes"));
        }
        Ok(bytemuck::pod_collect_to_vec(self.take(n * 4)?))
    }

    /// A table written by [`W::pods`]: a slice of the source, used in
    /// place if it is aligned (else copied). Little-endian hosts only (see
    /// `Inner::read`).
    pub fn arr<T: bytemuck::Pod + Send + Sync>(&mut self) -> PResult<Arr<T>> {
        let size = std::mem::size_of::<T>();
        let n = self.len(size)?;
        let at = self.src.len() - self.b.len();
        self.take(at.next_multiple_of(POD_ALIGN) - at)?;
        let raw = self.take(n * size)?;
        Ok(Arr::from_bytes(self.src.slice_ref(raw)))
    }

    /// A `u32` array written by [`W::u32s`], each word decoded by `f` in
    /// one pass from the bytes.
    pub fn map_u32s<T>(&mut self, f: impl Fn(u32) -> T) -> PResult<Vec<T>> {
        let n = self.len(4)?;
        Ok(self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|w| f(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .collect())
    }

    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
}

/// `Elem` as one `u32`: a set id with the top bit set, else
/// `value | mask << 8`.
const SET_BIT: u32 = 1 << 31;

fn elem_code(e: Elem) -> u32 {
    match e {
        Elem::Byte { value, mask } => u32::from(value) | u32::from(mask) << 8,
        Elem::Set(i) => SET_BIT | i,
    }
}

fn elem_of(c: u32) -> PResult<Elem> {
    if c & SET_BIT != 0 {
        Ok(Elem::Set(c & !SET_BIT))
    } else if c >> 16 != 0 {
        bad("bad byte predicate")
    } else {
        Ok(Elem::Byte {
            value: c as u8,
            mask: (c >> 8) as u8,
        })
    }
}

fn opt_u32(w: &mut W, v: Option<u32>) {
    match v {
        Some(x) => {
            w.u8(1);
            w.u32(x);
        }
        None => w.u8(0),
    }
}

fn read_opt_u32(r: &mut R<'_>) -> PResult<Option<u32>> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u32()?)),
        _ => bad("bad option tag"),
    }
}

fn anchor(w: &mut W, a: Option<Anchor>) {
    match a {
        Some(a) => {
            w.u8(1);
            w.u8(a.byte);
            w.u32(a.min);
            w.u32(a.max);
        }
        None => w.u8(0),
    }
}

fn read_anchor(r: &mut R<'_>) -> PResult<Option<Anchor>> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(Anchor {
            byte: r.u8()?,
            min: r.u32()?,
            max: r.u32()?,
        })),
        _ => bad("bad anchor tag"),
    }
}

fn assertion(w: &mut W, a: Option<Assertion>) {
    w.u8(match a {
        None => 0,
        Some(Assertion::Boundary) => 1,
        Some(Assertion::Line) => 2,
        Some(Assertion::NonAlnum) => 3,
        Some(Assertion::NonAlnumWide) => 4,
    });
}

fn read_assertion(r: &mut R<'_>) -> PResult<Option<Assertion>> {
    Ok(match r.u8()? {
        0 => None,
        1 => Some(Assertion::Boundary),
        2 => Some(Assertion::Line),
        3 => Some(Assertion::NonAlnum),
        4 => Some(Assertion::NonAlnumWide),
        _ => return bad("bad assertion tag"),
    })
}

fn offset(w: &mut W, o: Offset) {
    match o {
        Offset::Any => w.u8(0),
        Offset::Absolute { start, shift } => {
            w.u8(1);
            w.u64(start);
            w.u64(shift);
        }
        Offset::FromEnd { back, shift } => {
            w.u8(2);
            w.u64(back);
            w.u64(shift);
        }
    }
}

fn read_offset(r: &mut R<'_>) -> PResult<Offset> {
    Ok(match r.u8()? {
        0 => Offset::Any,
        1 => Offset::Absolute {
            start: r.u64()?,
            shift: r.u64()?,
        },
        2 => Offset::FromEnd {
            back: r.u64()?,
            shift: r.u64()?,
        },
        _ => return bad("bad offset tag"),
    })
}

fn idx(x: u64) -> PResult<usize> {
    usize::try_from(x).or_else(|_| bad("index out of range"))
}

impl Program {
    pub(crate) fn write(&self, w: &mut W) {
        w.u64(self.lookahead);
        w.u64(self.history);
        w.u64(self.max_atom as u64);
        w.u64(self.max_split_span);
        w.len(self.sets.len());
        for s in &self.sets {
            for x in s.0 {
                w.u64(x);
            }
        }
        let codes: Vec<u32> = self.elems.iter().map(|&e| elem_code(e)).collect();
        w.u32s(&codes);
        w.len(self.not_alts.len());
        for n in &self.not_alts {
            w.u32(n.off);
            w.u32(n.len);
            w.len(n.branches.len());
            for b in &n.branches {
                w.bytes(b);
            }
        }
        w.pods(&self.entries);
        w.len(self.patterns.len());
        for p in &self.patterns {
            match p.owner {
                Owner::Body(i) => {
                    w.u8(0);
                    w.u32(i);
                }
                Owner::Sub(i) => {
                    w.u8(1);
                    w.u32(i);
                }
            }
            offset(w, p.offset);
            w.u32(p.nparts);
            anchor(w, p.left_anchor);
            anchor(w, p.right_anchor);
            assertion(w, p.start_assertion);
            assertion(w, p.end_assertion);
            w.u32(p.gap_slot);
            w.u8(u8::from(p.multi_end) | u8::from(p.split) << 1);
        }
        w.len(self.gap_slots.len());
        for g in &self.gap_slots {
            w.u32(g.min);
            opt_u32(w, g.max);
        }
        w.pods(&self.target_start);
        w.pods(&self.targets);
        self.atoms.write(w);
    }

    /// Reads a program and checks every index scanning relies on against
    /// `nbody` body signatures and `nsubs` subsignature counters.
    pub(crate) fn read(r: &mut R<'_>, nbody: usize, nsubs: usize) -> PResult<Program> {
        let lookahead = r.u64()?;
        let history = r.u64()?;
        let max_atom = idx(r.u64()?)?;
        let max_split_span = r.u64()?;
        let nsets = r.len(32)?;
        let mut sets = Vec::with_capacity(nsets);
        for _ in 0..nsets {
            sets.push(ByteSet([r.u64()?, r.u64()?, r.u64()?, r.u64()?]));
        }
        // Undecodable codes become an out-of-range set, refused below.
        let elems = r.map_u32s(|c| elem_of(c).unwrap_or(Elem::Set(u32::MAX >> 1)))?;
        if elems
            .iter()
            .any(|e| matches!(e, Elem::Set(i) if *i as usize >= sets.len()))
        {
            return bad("byte predicate out of range");
        }
        let nnot = r.len(16)?;
        let mut not_alts = Vec::with_capacity(nnot);
        for _ in 0..nnot {
            let off = r.u32()?;
            let len = r.u32()?;
            let nb = r.len(8)?;
            let mut branches = Vec::with_capacity(nb);
            for _ in 0..nb {
                branches.push(r.bytes()?.to_vec());
            }
            not_alts.push(NotAltCheck { off, len, branches });
        }
        let entries: Arr<Entry> = r.arr()?;
        let npat = r.len(10)?;
        let mut patterns = Vec::with_capacity(npat);
        for _ in 0..npat {
            let owner = match r.u8()? {
                0 => Owner::Body(r.u32()?),
                1 => Owner::Sub(r.u32()?),
                _ => return bad("bad owner tag"),
            };
            let offset = read_offset(r)?;
            let nparts = r.u32()?;
            let left_anchor = read_anchor(r)?;
            let right_anchor = read_anchor(r)?;
            let start_assertion = read_assertion(r)?;
            let end_assertion = read_assertion(r)?;
            let gap_slot = r.u32()?;
            let flags = r.u8()?;
            patterns.push(PatternInfo {
                owner,
                offset,
                nparts,
                left_anchor,
                right_anchor,
                start_assertion,
                end_assertion,
                gap_slot,
                multi_end: flags & 1 != 0,
                split: flags & 2 != 0,
            });
        }
        let ngaps = r.len(5)?;
        let mut gap_slots = Vec::with_capacity(ngaps);
        for _ in 0..ngaps {
            gap_slots.push(Gap {
                min: r.u32()?,
                max: read_opt_u32(r)?,
            });
        }
        let target_start = r.arr()?;
        let targets = r.arr()?;
        let atoms = AtomIndex::read(r)?;
        let p = Program {
            atoms,
            target_start,
            targets,
            entries,
            elems,
            not_alts,
            patterns,
            sets,
            lookahead,
            history,
            max_atom,
            gap_slots,
            max_split_span,
        };
        p.check(nbody, nsubs)?;
        Ok(p)
    }

    /// Every index that scanning follows without a check of its own.
    fn check(&self, nbody: usize, nsubs: usize) -> PResult<()> {
        for p in &self.patterns {
            match p.owner {
                Owner::Body(i) if i as usize >= nbody => return bad("body index out of range"),
                Owner::Sub(i) if i as usize >= nsubs => return bad("counter index out of range"),
                _ => {}
            }
            let gaps = (p.gap_slot as usize).checked_add((p.nparts as usize).saturating_sub(1));
            if p.nparts == 0 || gaps.is_none_or(|g| g > self.gap_slots.len()) {
                return bad("pattern gaps out of range");
            }
        }
        for e in &self.entries {
            let pat = self.patterns.get(e.pattern as usize);
            let elems_end = u64::from(e.elem_start) + u64::from(e.elem_len);
            let nots_end = u64::from(e.not_alt_start) + u64::from(e.not_alt_len);
            if pat.is_none_or(|p| e.part >= p.nparts)
                || elems_end > self.elems.len() as u64
                || nots_end > self.not_alts.len() as u64
                || e.atom_off > e.elem_len
            {
                return bad("entry out of range");
            }
            let s = e.not_alt_start as usize;
            for n in &self.not_alts[s..s + e.not_alt_len as usize] {
                if u64::from(n.off) + u64::from(n.len) > u64::from(e.elem_len)
                    || n.branches.iter().any(|b| b.len() != n.len as usize)
                {
                    return bad("negated alternation out of range");
                }
            }
        }
        let natoms = self.atoms.len();
        if self.target_start.len() != natoms + 1
            || self.target_start.first() != Some(&0)
            || self.target_start.windows(2).any(|w| w[0] > w[1])
            || self.target_start.last().map(|&x| x as usize) != Some(self.targets.len())
            || self
                .targets
                .iter()
                .any(|&t| t as usize >= self.entries.len())
        {
            return bad("atom targets out of range");
        }
        // The context sizes decide how much a scanner keeps: recompute them
        // as the compiler does, so that a bad value cannot make it allocate.
        if self.max_atom
            != (0..natoms as u32)
                .map(|a| self.atoms.atom_len(a))
                .max()
                .unwrap_or(0)
                .max(1)
        {
            return bad("longest atom");
        }
        let (mut lookahead, mut history) = (ASSERT_CTX + 1, ASSERT_CTX);
        for e in &self.entries {
            let pat = &self.patterns[e.pattern as usize];
            let (after, before) = entry_context(
                u64::from(e.elem_len),
                (e.part + 1 == pat.nparts)
                    .then_some(pat.right_anchor)
                    .flatten(),
                (e.part == 0).then_some(pat.left_anchor).flatten(),
            );
            lookahead = lookahead.max(after);
            history = history.max(before);
        }
        if (lookahead, history) != (self.lookahead, self.history)
            || self.max_split_span > MAX_SPLIT_SPAN
        {
            return bad("context sizes");
        }
        Ok(())
    }
}
