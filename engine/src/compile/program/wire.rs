//! How a [`Program`] is stored: its tables as they are in memory (used in
//! place from the mapping when read back), the rest in the shared
//! [`wire`](giva_signatures::wire) encoding. Reading checks every index
//! that scanning follows without a check of its own.

use giva_signatures::wire::{Wire, Writer};
use giva_signatures::{ByteSet, Gap};

use crate::compile::derive::{MAX_DISTANCE, MAX_SPREAD};
use crate::compile::program::{
    ASSERT_CTX, Elem, Entry, MAX_SPLIT_SPAN, NotAltCheck, Owner, PatternInfo, Program, entry_needs,
};
use crate::index::AtomIndex;
use crate::util::arr::Arr;
use crate::util::wire::{StoredReader, StoredResult, invalid, put_arr};

/// `Elem` as one `u32`: a set id with the top bit set, else
/// `value | mask << 8`.
const SET_BIT: u32 = 1 << 31;

fn elem_code(e: Elem) -> u32 {
    match e {
        Elem::Byte { value, mask } => u32::from(value) | u32::from(mask) << 8,
        Elem::Set(i) => SET_BIT | i,
    }
}

fn elem_of(c: u32) -> StoredResult<Elem> {
    if c & SET_BIT != 0 {
        Ok(Elem::Set(c & !SET_BIT))
    } else if c >> 16 != 0 {
        invalid("bad byte predicate")
    } else {
        Ok(Elem::Byte {
            value: c as u8,
            mask: (c >> 8) as u8,
        })
    }
}

fn idx(x: u64) -> StoredResult<usize> {
    usize::try_from(x).or_else(|_| invalid("index out of range"))
}

/// Whether an entry's atom lies where the compiler can put it: inside
/// the entry, or for a derived entry no farther than the plan allows (its
/// distance, plus where the atom lies in its anchor, at most `longest`
/// bytes in), with at most `MAX_SPREAD` further starts: so that a stored
/// program cannot make a scanner keep more bytes than a compiled one
/// could. (With the check that no atom lists an entry twice, each target
/// of an atom queues at most 64 candidates per occurrence.)
fn atom_in_reach(e: &Entry, longest: u32) -> bool {
    if e.spread == 0 && e.atom_off >= 0 && e.atom_off as u32 <= e.elem_len {
        return true;
    }
    let far = MAX_DISTANCE as i64 + i64::from(longest);
    u64::from(e.spread) <= MAX_SPREAD && i64::from(e.atom_off).abs() <= far
}

impl Program {
    /// Appends the program.
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.lookahead);
        w.u64(self.history);
        w.u64(self.max_atom as u64);
        w.u64(self.max_split_span);
        w.list(&self.sets);
        let codes: Vec<u32> = self.elems.iter().map(|&e| elem_code(e)).collect();
        w.u32s(&codes);
        w.count(self.not_alts.len());
        for n in &self.not_alts {
            w.u32(n.off);
            w.u32(n.len);
            w.count(n.branches.len());
            for b in &n.branches {
                w.bytes(b);
            }
        }
        put_arr(w, &self.entries);
        w.count(self.patterns.len());
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
            p.offset.put(w);
            w.u32(p.nparts);
            w.opt(p.left_anchor.as_ref());
            w.opt(p.right_anchor.as_ref());
            p.start_assertion.put(w);
            p.end_assertion.put(w);
            w.u32(p.gap_slot);
            w.u8(u8::from(p.multi_end) | u8::from(p.split) << 1);
        }
        w.list(&self.gap_slots);
        put_arr(w, &self.target_start);
        put_arr(w, &self.targets);
        self.atoms.write(w);
    }

    /// Reads a program and checks every index scanning relies on against
    /// `nbody` body signatures and `nsubs` subsignature counters.
    pub(crate) fn read(
        r: &mut StoredReader<'_>,
        nbody: usize,
        nsubs: usize,
    ) -> StoredResult<Program> {
        let lookahead = r.u64()?;
        let history = r.u64()?;
        let max_atom = idx(r.u64()?)?;
        let max_split_span = r.u64()?;
        let sets: Vec<ByteSet> = r.list(32)?;
        // Undecodable codes become an out-of-range set, refused below.
        let elems = r.u32s(|c| elem_of(c).unwrap_or(Elem::Set(u32::MAX >> 1)))?;
        if elems
            .iter()
            .any(|e| matches!(e, Elem::Set(i) if *i as usize >= sets.len()))
        {
            return invalid("byte predicate out of range");
        }
        let nnot = r.count(9)?;
        let mut not_alts = Vec::with_capacity(nnot);
        for _ in 0..nnot {
            let off = r.u32()?;
            let len = r.u32()?;
            let nb = r.count(1)?;
            let mut branches = Vec::with_capacity(nb);
            for _ in 0..nb {
                branches.push(r.bytes()?.to_vec());
            }
            not_alts.push(NotAltCheck { off, len, branches });
        }
        let entries: Arr<Entry> = r.arr()?;
        let npat = r.count(10)?;
        let mut patterns = Vec::with_capacity(npat);
        for _ in 0..npat {
            let owner = match r.u8()? {
                0 => Owner::Body(r.u32()?),
                1 => Owner::Sub(r.u32()?),
                t => r.bad_tag("owner", t)?,
            };
            let offset = r.get()?;
            let nparts = r.u32()?;
            let left_anchor = r.opt()?;
            let right_anchor = r.opt()?;
            let start_assertion = r.get()?;
            let end_assertion = r.get()?;
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
        let gap_slots: Vec<Gap> = r.list(2)?;
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
    fn check(&self, nbody: usize, nsubs: usize) -> StoredResult<()> {
        for p in &self.patterns {
            match p.owner {
                Owner::Body(i) if i as usize >= nbody => return invalid("body index out of range"),
                Owner::Sub(i) if i as usize >= nsubs => {
                    return invalid("counter index out of range");
                }
                _ => {}
            }
            let gaps = (p.gap_slot as usize).checked_add((p.nparts as usize).saturating_sub(1));
            if p.nparts == 0 || gaps.is_none_or(|g| g > self.gap_slots.len()) {
                return invalid("pattern gaps out of range");
            }
        }
        let longest = self.entries.iter().map(|e| e.elem_len).max().unwrap_or(0);
        for e in &self.entries {
            let pat = self.patterns.get(e.pattern as usize);
            let elems_end = u64::from(e.elem_start) + u64::from(e.elem_len);
            let nots_end = u64::from(e.not_alt_start) + u64::from(e.not_alt_len);
            if pat.is_none_or(|p| e.part >= p.nparts)
                || elems_end > self.elems.len() as u64
                || nots_end > self.not_alts.len() as u64
                || !atom_in_reach(e, longest)
            {
                return invalid("entry out of range");
            }
            let s = e.not_alt_start as usize;
            for n in &self.not_alts[s..s + e.not_alt_len as usize] {
                if u64::from(n.off) + u64::from(n.len) > u64::from(e.elem_len)
                    || n.branches.iter().any(|b| b.len() != n.len as usize)
                {
                    return invalid("negated alternation out of range");
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
            return invalid("atom targets out of range");
        }
        // No atom lists an entry twice (the compiler never does; each copy
        // would queue the entry's starts again).
        let mut seen = Vec::new();
        for a in 0..natoms {
            seen.clear();
            seen.extend_from_slice(self.targets(a));
            seen.sort_unstable();
            if seen.windows(2).any(|w| w[0] == w[1]) {
                return invalid("an atom lists an entry twice");
            }
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
            return invalid("longest atom");
        }
        let (mut lookahead, mut history) = (ASSERT_CTX + 1, ASSERT_CTX);
        for e in &self.entries {
            let (after, before) = entry_needs(e, &self.patterns[e.pattern as usize], self.max_atom);
            lookahead = lookahead.max(after);
            history = history.max(before);
        }
        if (lookahead, history) != (self.lookahead, self.history)
            || self.max_split_span > MAX_SPLIT_SPAN
        {
            return invalid("context sizes");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(p: &Program) -> bytes::Bytes {
        let mut w = Writer::new();
        p.write(&mut w);
        bytes::Bytes::from(w.into_bytes())
    }

    #[test]
    fn a_stored_program_whose_atom_lists_an_entry_twice_is_refused() {
        // One literal signature: one atom with one entry.
        let mut c = giva_signatures::Compiler::new();
        c.add_source("t.ndb", "One:0:*:6e6565646c652121\n", false);
        let db = c.build().expect("database");
        let e = crate::Engine::build(&db).expect("engine");
        let stored = bytes_of(&e.inner.main);
        let mut p = Program::read(&mut StoredReader::new(&stored), 1, 0).expect("as written");
        assert_eq!(&p.target_start[..], &[0, 1]);
        // The same entry twice under its atom: each copy would queue the
        // entry's starts again.
        let t = p.targets[0];
        p.targets = vec![t, t].into();
        p.target_start = vec![0, 2].into();
        let damaged = bytes_of(&p);
        match Program::read(&mut StoredReader::new(&damaged), 1, 0) {
            Err(e) => assert!(e.to_string().contains("twice"), "{e}"),
            Ok(_) => panic!("a duplicated target was accepted"),
        }
    }
}
