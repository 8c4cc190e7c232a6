//! Compiling body patterns into a [`Program`]: every part is expanded into
//! fixed-length variants, each variant gets its best static atom, and one
//! [`AtomIndex`] is built over all atoms.

use std::collections::HashMap;

use giva_signatures::{BodyPattern, ByteSet, Offset, Token};

use crate::compile::atom::{Atom, Scratch, pick_atom};
use crate::compile::derive::{PartInfo, Role, plan};
use crate::compile::expand::{Flat, expand, flat_of};
use crate::compile::program::{
    ASSERT_CTX, Elem, Entry, NotAltCheck, Owner, PatternInfo, Program, entry_needs, split_span,
};
use crate::error::BuildError;
use crate::index::AtomIndex;
use crate::util::FxBuild;

/// Patterns lowered in one run on one core (enough that a run is worth a
/// hand-over, few enough that putting the runs together keeps pace).
const RUN: usize = 2048;

/// A part may expand into at most this many fixed-length variants.
pub(crate) const MAX_VARIANTS: usize = 4096;

/// A pattern to compile.
pub(crate) struct Source<'a> {
    pub owner: Owner,
    pub name: &'a str,
    pub offset: Offset,
    pub pattern: &'a BodyPattern,
}

/// `len` as an index into an arena of a program (at most `u32::MAX`
/// elements).
fn arena_index(len: usize, name: &str) -> Result<u32, BuildError> {
    u32::try_from(len).map_err(|_| BuildError::Malformed {
        name: name.to_owned(),
        reason: "the database has more pattern bytes than one program can hold",
    })
}

/// An atom (at most [`MAX_ATOM`] = 12 bytes) as a hash key, without an
/// allocation: the bytes, and the length in the top byte.
fn atom_key(a: &[u8]) -> u128 {
    debug_assert!(a.len() <= 15);
    let mut b = [0u8; 16];
    b[..a.len()].copy_from_slice(a);
    b[15] = a.len() as u8;
    u128::from_le_bytes(b)
}

/// One fixed-length variant of a part: ranges of its run's arenas.
struct LoweredVariant {
    elem_start: u32,
    elem_len: u32,
    not_alt_start: u32,
    not_alt_len: u32,
    /// Its atom: where it starts in the variant, and its strings (`count`
    /// of `len` bytes each) in the run's `atom_bytes` from `atom_start`.
    atom: Atom,
    atom_start: usize,
}

/// A pattern lowered in a run: what the program needs besides its parts.
struct LoweredPattern {
    /// The last part has several variants.
    multi_end: bool,
    /// See [`split_span`].
    span: Option<u64>,
}

/// A run of sources lowered on one thread, into arenas of its own (byte
/// sets numbered in its own table), so that putting the program together
/// copies ranges instead of freeing a few allocations per variant.
#[derive(Default)]
struct Run {
    sets: Vec<ByteSet>,
    set_ids: HashMap<ByteSet, u32>,
    elems: Vec<Elem>,
    not_alts: Vec<NotAltCheck>,
    /// Every variant of every part of every pattern, in order.
    variants: Vec<LoweredVariant>,
    atom_bytes: Vec<u8>,
    /// Each part's number of variants, and how it is found (see [`plan`]).
    part_variants: Vec<u32>,
    roles: Vec<Role>,
    patterns: Vec<LoweredPattern>,
    /// The first pattern that could not be lowered stops the run.
    error: Option<BuildError>,
    scratch: Scratch,
    flats: Vec<Flat>,
    info: Vec<PartInfo>,
}

impl Run {
    /// Lowers `sources` in order, up to the first that fails.
    fn lower_all(sources: &[Source<'_>]) -> Run {
        let mut run = Run::default();
        for src in sources {
            if let Err(e) = run.lower(src) {
                run.error = Some(e);
                break;
            }
        }
        run
    }

    /// Appends one expanded variant to the arenas (its byte sets numbered
    /// into the run's table) and picks its atom.
    fn push_variant(&mut self, name: &str, part: usize) -> Result<(), BuildError> {
        let elem_start = self.elems.len();
        let not_alt_start = self.not_alts.len();
        for f in self.flats.drain(..) {
            match f {
                Flat::Byte { value, mask } => self.elems.push(Elem::Byte { value, mask }),
                Flat::Set(s) => {
                    let next = self.sets.len() as u32;
                    let id = *self.set_ids.entry(s).or_insert_with(|| {
                        self.sets.push(s);
                        next
                    });
                    self.elems.push(Elem::Set(id));
                }
                Flat::NotAlt { len, branches } => {
                    self.not_alts.push(NotAltCheck {
                        off: (self.elems.len() - elem_start) as u32,
                        len: len as u32,
                        branches,
                    });
                    self.elems
                        .extend((0..len).map(|_| Elem::Byte { value: 0, mask: 0 }));
                }
            }
        }
        let atom_start = self.atom_bytes.len();
        let atom = pick_atom(
            &self.elems[elem_start..],
            &self.sets,
            &mut self.scratch,
            &mut self.atom_bytes,
        )
        .ok_or_else(|| BuildError::NoStaticBytes {
            name: name.to_owned(),
            part,
        })?;
        // (A run's arenas stay far below 4 GiB: the program's total is
        // checked where the runs are put together.)
        self.variants.push(LoweredVariant {
            elem_start: elem_start as u32,
            elem_len: (self.elems.len() - elem_start) as u32,
            not_alt_start: not_alt_start as u32,
            not_alt_len: (self.not_alts.len() - not_alt_start) as u32,
            atom,
            atom_start,
        });
        Ok(())
    }

    /// Checks `src`'s shape, expands its parts and picks each variant's
    /// atom; on an error the run is left to be discarded.
    fn lower(&mut self, src: &Source<'_>) -> Result<(), BuildError> {
        let pat = src.pattern;
        if pat.parts.is_empty() || pat.gaps.len() + 1 != pat.parts.len() {
            return Err(BuildError::Malformed {
                name: src.name.to_owned(),
                reason: "a pattern needs parts and one gap between each two parts",
            });
        }
        let nparts = pat.parts.len();
        let mut multi_end = false;
        self.info.clear();
        for (k, part) in pat.parts.iter().enumerate() {
            let first = self.variants.len();
            if part.tokens.iter().any(|t| matches!(t, Token::Alt(_))) {
                let flats = expand(&part.tokens, MAX_VARIANTS).ok_or_else(|| {
                    BuildError::TooManyVariants {
                        name: src.name.to_owned(),
                        part: k,
                        limit: MAX_VARIANTS,
                    }
                })?;
                if k + 1 == nparts && flats.len() > 1 {
                    multi_end = true;
                }
                for flat in flats {
                    self.flats = flat;
                    self.push_variant(src.name, k)?;
                }
            } else {
                // Most parts have no alternation: one variant, lowered as
                // `expand` would.
                self.flats.clear();
                self.flats.extend(part.tokens.iter().map(flat_of));
                self.push_variant(src.name, k)?;
            }
            let variants = &self.variants[first..];
            let lens = variants.iter().map(|v| u64::from(v.elem_len));
            self.info.push(PartInfo {
                variants: variants.len(),
                min_len: lens.clone().min().unwrap_or(0),
                max_len: lens.max().unwrap_or(0),
                score: variants.iter().map(|v| v.atom.score).min().unwrap_or(0),
            });
            self.part_variants.push(variants.len() as u32);
        }
        // The plan and the span are the pattern's alone, so they are made
        // here on every core rather than where the program is put together.
        self.roles.extend(plan(&self.info, &pat.gaps));
        self.patterns.push(LoweredPattern {
            multi_end,
            span: split_span(pat),
        });
        Ok(())
    }
}

impl Program {
    /// Compiles `sources` into one program.
    pub fn build(sources: &[Source<'_>]) -> Result<Program, BuildError> {
        let mut entries = Vec::new();
        let mut all_elems: Vec<Elem> = Vec::new();
        let mut all_not_alts: Vec<NotAltCheck> = Vec::new();
        let mut patterns = Vec::new();
        let mut sets: Vec<ByteSet> = Vec::new();
        let mut set_ids: HashMap<ByteSet, u32> = HashMap::new();
        let mut atoms: Vec<Vec<u8>> = Vec::new();
        let mut atom_ids: HashMap<u128, u32, FxBuild> = HashMap::default();
        // (atom, entry) in the order the entries are found; sorted by atom
        // (stably) into the targets at the end.
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut gap_slots = Vec::new();
        let mut lookahead = ASSERT_CTX + 1;
        let mut history = ASSERT_CTX;
        let mut max_atom = 1;
        let mut max_split_span = 0;
        // The atom ids of each part that anchors others: a range of `ids`.
        let mut anchors: Vec<Option<(usize, std::ops::Range<usize>)>> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        // Where each part's variants start among the pattern's.
        let mut starts: Vec<usize> = Vec::new();

        // Expanding the parts and choosing atoms is most of the work, and
        // each pattern's alone: it runs on every core, and each run is put
        // into the program here while the next are lowered.
        let mut next = sources.iter();
        giva_signatures::parallel::in_order(sources, RUN, Run::lower_all, |run| {
            let sources = &mut next;
            let remap: Vec<u32> = run
                .sets
                .iter()
                .map(|&set| {
                    let next = sets.len() as u32;
                    *set_ids.entry(set).or_insert_with(|| {
                        sets.push(set);
                        next
                    })
                })
                .collect();
            // (Named after the run's first pattern: the arenas are
            // counted run by run.)
            let name = sources.clone().next().map_or("", |s| s.name);
            let elem_base =
                arena_index(all_elems.len() + run.elems.len(), name)? - run.elems.len() as u32;
            let not_alt_base = arena_index(all_not_alts.len() + run.not_alts.len(), name)?
                - run.not_alts.len() as u32;
            all_elems.extend(run.elems.iter().map(|&e| match e {
                Elem::Set(i) => Elem::Set(remap[i as usize]),
                e => e,
            }));
            all_not_alts.extend(run.not_alts);
            let (mut vi, mut pi) = (0, 0);
            for lp in &run.patterns {
                let src = sources.next().expect("one pattern per source");
                let pat = src.pattern;
                let pid = patterns.len() as u32;
                let nparts = pat.parts.len();
                let counts = &run.part_variants[pi..pi + nparts];
                let roles = &run.roles[pi..pi + nparts];
                pi += nparts;
                let total: usize = counts.iter().map(|&n| n as usize).sum();
                let lvs = &run.variants[vi..vi + total];
                vi += total;
                // Entry ids follow the parts and their variants in order.
                let first = entries.len() as u32;
                starts.clear();
                let mut at = 0usize;
                for &n in counts {
                    starts.push(at);
                    at += n as usize;
                }
                // The atoms of the parts found by their own, and for a
                // part of one variant (an anchor), where its atom starts
                // and its ids.
                anchors.clear();
                anchors.resize(nparts, None);
                ids.clear();
                for k in 0..nparts {
                    if roles[k] != Role::Own {
                        continue;
                    }
                    for i in 0..counts[k] as usize {
                        let v = &lvs[starts[k] + i];
                        let from = ids.len();
                        let a = v.atom;
                        max_atom = max_atom.max(a.len);
                        for j in 0..a.count {
                            let at = v.atom_start + j * a.len;
                            let string = &run.atom_bytes[at..at + a.len];
                            let next = atoms.len() as u32;
                            let aid = *atom_ids.entry(atom_key(string)).or_insert_with(|| {
                                atoms.push(string.to_vec());
                                next
                            });
                            pairs.push((aid, first + (starts[k] + i) as u32));
                            ids.push(aid);
                        }
                        // Only a part of one variant anchors others.
                        if counts[k] == 1 {
                            anchors[k] = Some((a.off, from..ids.len()));
                        }
                    }
                }
                for k in 0..nparts {
                    for i in 0..counts[k] as usize {
                        let v = &lvs[starts[k] + i];
                        let eid = first + (starts[k] + i) as u32;
                        let len = u64::from(v.elem_len);
                        let (atom_off, spread) = match (roles[k], roles[k].starts(len)) {
                            (Role::From { anchor, .. }, Some((lo, hi))) => {
                                let (off, range) =
                                    anchors[anchor].clone().expect("an anchor is own");
                                pairs.extend(ids[range].iter().map(|&aid| (aid, eid)));
                                // The atom starts `off - lo` bytes after the
                                // earliest start (the plan keeps it small).
                                (off as i64 - lo, (hi - lo) as u32)
                            }
                            _ => (v.atom.off as i64, 0),
                        };
                        entries.push(Entry {
                            pattern: pid,
                            part: k as u32,
                            atom_off: atom_off as i32,
                            spread,
                            elem_start: elem_base + v.elem_start,
                            elem_len: v.elem_len,
                            not_alt_start: not_alt_base + v.not_alt_start,
                            not_alt_len: v.not_alt_len,
                        });
                    }
                }
                max_split_span = max_split_span.max(lp.span.unwrap_or(0));
                let gap_slot = gap_slots.len() as u32;
                gap_slots.extend(pat.gaps.iter().copied());
                patterns.push(PatternInfo {
                    owner: src.owner,
                    offset: src.offset,
                    nparts: nparts as u32,
                    left_anchor: pat.left_anchor,
                    right_anchor: pat.right_anchor,
                    start_assertion: pat.start_assertion,
                    end_assertion: pat.end_assertion,
                    gap_slot,
                    multi_end: lp.multi_end,
                    split: lp.span.is_some(),
                });
            }
            run.error.map_or(Ok(()), Err)
        })?;
        // (After every atom is known: a derived entry needs its anchor's
        // atom, and `max_atom` stands for its length.)
        for e in &entries {
            let (after, before) = entry_needs(e, &patterns[e.pattern as usize], max_atom);
            lookahead = lookahead.max(after);
            history = history.max(before);
        }
        // The targets of each atom, in the order they were found.
        let mut target_start = vec![0u32; atoms.len() + 1];
        for &(aid, _) in &pairs {
            target_start[aid as usize + 1] += 1;
        }
        for i in 1..target_start.len() {
            target_start[i] += target_start[i - 1];
        }
        let mut targets = vec![0u32; pairs.len()];
        let mut fill: Vec<u32> = target_start[..atoms.len()].to_vec();
        for &(aid, eid) in &pairs {
            targets[fill[aid as usize] as usize] = eid;
            fill[aid as usize] += 1;
        }
        let atoms = AtomIndex::new(atoms);
        Ok(Program {
            atoms,
            target_start: target_start.into(),
            targets: targets.into(),
            entries: entries.into(),
            elems: all_elems,
            not_alts: all_not_alts,
            patterns,
            sets,
            lookahead,
            history,
            max_atom,
            gap_slots,
            max_split_span,
        })
    }
}
