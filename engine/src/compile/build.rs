//! Compiling body patterns into a [`Program`]: every part is expanded into
//! fixed-length variants, each variant gets its best static atom, and one
//! [`AtomIndex`] is built over all atoms.

use std::collections::HashMap;

use giva_signatures::{BodyPattern, ByteSet, Offset};

use crate::compile::atom::pick_atom;
use crate::compile::expand::{Flat, expand};
use crate::compile::program::{
    ASSERT_CTX, Elem, Entry, NotAltCheck, Owner, PatternInfo, Program, entry_context, split_span,
};
use crate::error::BuildError;
use crate::index::AtomIndex;
use crate::util::FxBuild;

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
        let mut atom_ids: HashMap<u128, usize, FxBuild> = HashMap::default();
        let mut atom_targets: Vec<Vec<u32>> = Vec::new();
        let mut gap_slots = Vec::new();
        let mut lookahead = ASSERT_CTX + 1;
        let mut history = ASSERT_CTX;
        let mut max_atom = 1;
        let mut max_split_span = 0;

        for src in sources {
            let pat = src.pattern;
            if pat.parts.is_empty() || pat.gaps.len() + 1 != pat.parts.len() {
                return Err(BuildError::Malformed {
                    name: src.name.to_owned(),
                    reason: "a pattern needs parts and one gap between each two parts",
                });
            }
            let pid = patterns.len() as u32;
            let nparts = pat.parts.len();
            let mut multi_end = false;
            for (k, part) in pat.parts.iter().enumerate() {
                let variants = expand(&part.tokens, MAX_VARIANTS).ok_or_else(|| {
                    BuildError::TooManyVariants {
                        name: src.name.to_owned(),
                        part: k,
                        limit: MAX_VARIANTS,
                    }
                })?;
                if k + 1 == nparts && variants.len() > 1 {
                    multi_end = true;
                }
                for flat in variants {
                    let mut elems = Vec::new();
                    let mut not_alts = Vec::new();
                    for f in flat {
                        match f {
                            Flat::Byte { value, mask } => elems.push(Elem::Byte { value, mask }),
                            Flat::Set(s) => {
                                let next = sets.len() as u32;
                                let id = *set_ids.entry(s).or_insert_with(|| {
                                    sets.push(s);
                                    next
                                });
                                elems.push(Elem::Set(id));
                            }
                            Flat::NotAlt { len, branches } => {
                                not_alts.push(NotAltCheck {
                                    off: elems.len() as u32,
                                    len: len as u32,
                                    branches,
                                });
                                elems.extend((0..len).map(|_| Elem::Byte { value: 0, mask: 0 }));
                            }
                        }
                    }
                    let Some((atom_off, strings)) = pick_atom(&elems, &sets) else {
                        return Err(BuildError::NoStaticBytes {
                            name: src.name.to_owned(),
                            part: k,
                        });
                    };
                    let (after, before) = entry_context(
                        elems.len() as u64,
                        (k + 1 == nparts).then_some(pat.right_anchor).flatten(),
                        (k == 0).then_some(pat.left_anchor).flatten(),
                    );
                    lookahead = lookahead.max(after);
                    history = history.max(before);
                    let eid = entries.len() as u32;
                    for atom in strings {
                        max_atom = max_atom.max(atom.len());
                        let next = atoms.len();
                        let aid = *atom_ids.entry(atom_key(&atom)).or_insert_with(|| {
                            atoms.push(atom);
                            atom_targets.push(Vec::new());
                            next
                        });
                        atom_targets[aid].push(eid);
                    }
                    entries.push(Entry {
                        pattern: pid,
                        part: k as u32,
                        atom_off: atom_off as u32,
                        elem_start: arena_index(all_elems.len(), src.name)?,
                        elem_len: elems.len() as u32,
                        not_alt_start: arena_index(all_not_alts.len(), src.name)?,
                        not_alt_len: not_alts.len() as u32,
                    });
                    all_elems.extend_from_slice(&elems);
                    all_not_alts.extend(not_alts);
                }
            }
            let span = split_span(pat);
            max_split_span = max_split_span.max(span.unwrap_or(0));
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
                multi_end,
                split: span.is_some(),
            });
        }
        let mut target_start = Vec::with_capacity(atom_targets.len() + 1);
        let mut targets = Vec::with_capacity(entries.len());
        target_start.push(0);
        for t in &atom_targets {
            targets.extend_from_slice(t);
            target_start.push(targets.len() as u32);
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
