//! Compiling body patterns into a [`Program`]: every part is expanded into
//! fixed-length variants, each variant gets its best static atom, and one
//! [`AtomIndex`] is built over all atoms.

use std::collections::HashMap;

use giva_signatures::{BodyPattern, ByteSet, Offset};

use crate::compile::atom::{Atom, pick_atom};
use crate::compile::derive::{PartInfo, Role, plan};
use crate::compile::expand::{Flat, expand};
use crate::compile::program::{
    ASSERT_CTX, Elem, Entry, NotAltCheck, Owner, PatternInfo, Program, entry_needs, split_span,
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

/// One fixed-length variant of a part, lowered to byte predicates, with
/// its atom.
struct Variant {
    elems: Vec<Elem>,
    not_alts: Vec<NotAltCheck>,
    atom: Option<Atom>,
}

impl Variant {
    /// Lowers an expanded variant (its byte sets go to `sets`, once each).
    fn lower(
        flat: Vec<Flat>,
        sets: &mut Vec<ByteSet>,
        set_ids: &mut HashMap<ByteSet, u32>,
    ) -> Self {
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
        Variant {
            elems,
            not_alts,
            atom: None,
        }
    }
}

/// A pattern's parts, expanded into variants with their atoms; byte sets
/// numbered in the tables `lower` was given.
struct Lowered {
    parts: Vec<Vec<Variant>>,
    /// The last part has several variants.
    multi_end: bool,
    /// How each part is found (see [`plan`]).
    roles: Vec<Role>,
    /// See [`split_span`].
    span: Option<u64>,
}

/// Checks `src`'s shape, expands its parts and picks each variant's atom.
fn lower(
    src: &Source<'_>,
    sets: &mut Vec<ByteSet>,
    set_ids: &mut HashMap<ByteSet, u32>,
) -> Result<Lowered, BuildError> {
    let pat = src.pattern;
    if pat.parts.is_empty() || pat.gaps.len() + 1 != pat.parts.len() {
        return Err(BuildError::Malformed {
            name: src.name.to_owned(),
            reason: "a pattern needs parts and one gap between each two parts",
        });
    }
    let nparts = pat.parts.len();
    let mut multi_end = false;
    let mut parts: Vec<Vec<Variant>> = Vec::with_capacity(nparts);
    for (k, part) in pat.parts.iter().enumerate() {
        let flats =
            expand(&part.tokens, MAX_VARIANTS).ok_or_else(|| BuildError::TooManyVariants {
                name: src.name.to_owned(),
                part: k,
                limit: MAX_VARIANTS,
            })?;
        if k + 1 == nparts && flats.len() > 1 {
            multi_end = true;
        }
        let mut variants = Vec::with_capacity(flats.len());
        for flat in flats {
            let mut v = Variant::lower(flat, sets, set_ids);
            v.atom = pick_atom(&v.elems, sets);
            if v.atom.is_none() {
                return Err(BuildError::NoStaticBytes {
                    name: src.name.to_owned(),
                    part: k,
                });
            }
            variants.push(v);
        }
        parts.push(variants);
    }
    // The plan and the span are the pattern's alone, so they are made
    // here on every core rather than where the program is put together.
    let info: Vec<PartInfo> = parts.iter().map(|v| part_info(v)).collect();
    let roles = plan(&info, &pat.gaps);
    Ok(Lowered {
        parts,
        multi_end,
        roles,
        span: split_span(pat),
    })
}

/// What the derivation plan needs of a part's variants.
fn part_info(variants: &[Variant]) -> PartInfo {
    let lens = variants.iter().map(|v| v.elems.len() as u64);
    PartInfo {
        variants: variants.len(),
        min_len: lens.clone().min().unwrap_or(0),
        max_len: lens.max().unwrap_or(0),
        score: variants
            .iter()
            .filter_map(|v| v.atom.as_ref().map(|a| a.score))
            .min()
            .unwrap_or(0),
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
        let mut atom_ids: HashMap<u128, usize, FxBuild> = HashMap::default();
        let mut atom_targets: Vec<Vec<u32>> = Vec::new();
        let mut gap_slots = Vec::new();
        let mut lookahead = ASSERT_CTX + 1;
        let mut history = ASSERT_CTX;
        let mut max_atom = 1;
        let mut max_split_span = 0;

        // Expanding the parts and choosing atoms is most of the work, and
        // each pattern's alone: it runs on every core, each run of sources
        // with byte sets of its own, numbered into the program's here.
        let runs = giva_signatures::parallel::chunks(sources, 1024, |run| {
            let mut sets = Vec::new();
            let mut ids = HashMap::new();
            let lowered: Vec<_> = run.iter().map(|s| lower(s, &mut sets, &mut ids)).collect();
            (lowered, sets)
        });
        let mut sources = sources.iter();
        for (lowered, run_sets) in runs {
            let remap: Vec<u32> = run_sets
                .into_iter()
                .map(|set| {
                    let next = sets.len() as u32;
                    *set_ids.entry(set).or_insert_with(|| {
                        sets.push(set);
                        next
                    })
                })
                .collect();
            for lowered in lowered {
                let src = sources.next().expect("one result per source");
                let Lowered {
                    mut parts,
                    multi_end,
                    roles,
                    span,
                } = lowered?;
                for e in parts.iter_mut().flatten().flat_map(|v| v.elems.iter_mut()) {
                    if let Elem::Set(i) = e {
                        *i = remap[*i as usize];
                    }
                }
                let pat = src.pattern;
                let pid = patterns.len() as u32;
                let nparts = pat.parts.len();
                // Entry ids follow the parts and their variants in order.
                let mut eid = entries.len() as u32;
                let mut eids = Vec::with_capacity(nparts);
                for variants in &parts {
                    eids.push(eid);
                    eid += variants.len() as u32;
                }
                // The atoms of the parts found by their own, and for a part of
                // one variant (an anchor), where its atom starts and its ids.
                let mut anchors: Vec<Option<(usize, Vec<usize>)>> = vec![None; nparts];
                for (k, variants) in parts.iter().enumerate() {
                    if roles[k] != Role::Own {
                        continue;
                    }
                    for (i, v) in variants.iter().enumerate() {
                        let atom = v.atom.as_ref().expect("every variant has an atom");
                        let mut ids = Vec::with_capacity(atom.strings.len());
                        for string in &atom.strings {
                            max_atom = max_atom.max(string.len());
                            let next = atoms.len();
                            let aid = *atom_ids.entry(atom_key(string)).or_insert_with(|| {
                                atoms.push(string.clone());
                                atom_targets.push(Vec::new());
                                next
                            });
                            atom_targets[aid].push(eids[k] + i as u32);
                            ids.push(aid);
                        }
                        // Only a part of one variant anchors others.
                        if variants.len() == 1 {
                            anchors[k] = Some((atom.off, ids));
                        }
                    }
                }
                for (k, variants) in parts.into_iter().enumerate() {
                    for (i, v) in variants.into_iter().enumerate() {
                        let atom = v.atom.expect("every variant has an atom");
                        let len = v.elems.len() as u64;
                        let (atom_off, spread) = match (roles[k], roles[k].starts(len)) {
                            (Role::From { anchor, .. }, Some((lo, hi))) => {
                                let (off, ids) =
                                    anchors[anchor].as_ref().expect("an anchor is own");
                                for &aid in ids {
                                    atom_targets[aid].push(eids[k] + i as u32);
                                }
                                // The atom starts `off - lo` bytes after the
                                // earliest start (the plan keeps it small).
                                (*off as i64 - lo, (hi - lo) as u32)
                            }
                            _ => (atom.off as i64, 0),
                        };
                        let part_entry = Entry {
                            pattern: pid,
                            part: k as u32,
                            atom_off: atom_off as i32,
                            spread,
                            elem_start: arena_index(all_elems.len(), src.name)?,
                            elem_len: len as u32,
                            not_alt_start: arena_index(all_not_alts.len(), src.name)?,
                            not_alt_len: v.not_alts.len() as u32,
                        };
                        all_elems.extend_from_slice(&v.elems);
                        all_not_alts.extend(v.not_alts);
                        entries.push(part_entry);
                    }
                }
                max_split_span = max_split_span.max(span.unwrap_or(0));
                let gap_slot = gap_slots.len() as u32;
                gap_slots.extend(pat.gaps.iter().copied());
                let pattern_info = PatternInfo {
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
                };
                patterns.push(pattern_info);
            }
        }
        // (After every atom is known: a derived entry needs its anchor's
        // atom, and `max_atom` stands for its length.)
        for e in &entries {
            let (after, before) = entry_needs(e, &patterns[e.pattern as usize], max_atom);
            lookahead = lookahead.max(after);
            history = history.max(before);
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
