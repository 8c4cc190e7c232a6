//! Compiling body patterns into a [`Program`]: every part is expanded into
//! fixed-length variants, each variant gets its best static atom, and one
//! [`AtomIndex`] is built over all atoms.

use std::collections::HashMap;

use giva_signatures::{Anchor, Assertion, BodyPattern, ByteSet, Gap, Offset, Token};

use crate::arr::Arr;
use crate::atoms::AtomIndex;
use crate::error::BuildError;
use crate::rarity::Cost;

/// A part may expand into at most this many fixed-length variants.
pub(crate) const MAX_VARIANTS: usize = 4096;
/// Atoms are at most this long: longer ones add automaton states but hardly
/// any selectivity.
const MAX_ATOM: usize = 12;
/// Bytes of right context an end assertion may look at (`\r\n`, wide).
pub(crate) const ASSERT_CTX: u64 = 2;

/// Who a pattern belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Body signature number `n`.
    Body(u32),
    /// Flat subsignature counter index (see `Engine::lsig_base`).
    Sub(u32),
}

/// One byte position of a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// `b & mask == value`.
    Byte { value: u8, mask: u8 },
    /// One of a set (index into [`Program::sets`]).
    Set(u32),
}

/// A negated multi-byte alternation inside a variant.
#[derive(Clone, Debug)]
pub(crate) struct NotAltCheck {
    pub off: u32,
    pub len: u32,
    pub branches: Vec<Vec<u8>>,
}

/// One fixed-length variant of one part of one pattern. Its byte
/// predicates and negated alternations are ranges of the program's
/// `elems` and `not_alts` arenas (one allocation per program, not per
/// entry: cheaper to build, to load from a database file, and to walk).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Entry {
    pub pattern: u32,
    pub part: u32,
    pub atom_off: u32,
    pub elem_start: u32,
    pub elem_len: u32,
    pub not_alt_start: u32,
    pub not_alt_len: u32,
}

impl Entry {
    pub fn len(&self) -> u64 {
        u64::from(self.elem_len)
    }
}

/// Everything but the bytes of a pattern.
#[derive(Clone, Debug)]
pub(crate) struct PatternInfo {
    pub owner: Owner,
    pub offset: Offset,
    pub nparts: u32,
    pub left_anchor: Option<Anchor>,
    pub right_anchor: Option<Anchor>,
    pub start_assertion: Option<Assertion>,
    pub end_assertion: Option<Assertion>,
    /// Index of this pattern's first gap in [`Program::gap_slots`] (one
    /// per pair of consecutive parts), which is also its first gap state.
    pub gap_slot: u32,
    /// The last part has several variants, so match ends must be deduplicated.
    pub multi_end: bool,
    /// Bounded (see [`split_span`]): a split scan runs it per segment.
    pub split: bool,
}

/// A compiled, read-only set of patterns.
#[derive(Debug)]
pub(crate) struct Program {
    pub atoms: AtomIndex,
    /// For atom `a`: `targets[target_start[a]..target_start[a + 1]]` are
    /// the entries whose atom it is.
    pub target_start: Arr<u32>,
    pub targets: Arr<u32>,
    pub entries: Arr<Entry>,
    /// The byte predicates of every entry, back to back.
    pub elems: Vec<Elem>,
    /// The negated alternations of every entry, back to back.
    pub not_alts: Vec<NotAltCheck>,
    pub patterns: Vec<PatternInfo>,
    pub sets: Vec<ByteSet>,
    /// Bytes after a candidate start that must be available before it is
    /// verified.
    pub lookahead: u64,
    /// Bytes before a candidate start that verification may read.
    pub history: u64,
    pub max_atom: usize,
    pub gap_slots: Vec<Gap>,
    /// The largest [`split_span`] of a pattern of this program.
    pub max_split_span: u64,
}

/// Bounded patterns longer than this are scanned sequentially in a split
/// scan, so that segments need only a small overlap.
pub(crate) const MAX_SPLIT_SPAN: u64 = 64 << 10;

/// The most bytes any sequence of `tokens` can match.
fn max_len(tokens: &[Token]) -> u64 {
    tokens
        .iter()
        .map(|t| match t {
            Token::Byte { .. } | Token::Set(_) => 1,
            Token::NotAlt { len, .. } => *len as u64,
            Token::Alt(branches) => branches.iter().map(|b| max_len(b)).max().unwrap_or(0),
        })
        .sum()
}

/// The longest distance from the start of a match's first part to the end
/// of its last part, if the pattern has no unbounded gap and that distance
/// is at most [`MAX_SPLIT_SPAN`]: such a pattern's matches can be found in
/// any window that holds them (plus the program's `history` before and
/// `lookahead` after). `None` otherwise.
pub(crate) fn split_span(pat: &BodyPattern) -> Option<u64> {
    let mut span: u64 = pat.parts.iter().map(|p| max_len(&p.tokens)).sum();
    for g in &pat.gaps {
        span = span.saturating_add(u64::from(g.max?));
    }
    (span <= MAX_SPLIT_SPAN).then_some(span)
}

/// A pattern to compile.
pub(crate) struct Source<'a> {
    pub owner: Owner,
    pub name: &'a str,
    pub offset: Offset,
    pub pattern: &'a BodyPattern,
}

#[derive(Clone, Debug)]
enum Flat {
    Byte { value: u8, mask: u8 },
    Set(ByteSet),
    NotAlt { len: usize, branches: Vec<Vec<u8>> },
}

fn expand(tokens: &[Token], limit: usize) -> Option<Vec<Vec<Flat>>> {
    let mut out: Vec<Vec<Flat>> = vec![Vec::with_capacity(tokens.len())];
    for t in tokens {
        match t {
            Token::Byte { value, mask } => {
                let f = Flat::Byte {
                    value: value & mask,
                    mask: *mask,
                };
                out.iter_mut().for_each(|v| v.push(f.clone()));
            }
            Token::Set(s) => out.iter_mut().for_each(|v| v.push(Flat::Set(*s))),
            Token::NotAlt { len, branches } => {
                let f = Flat::NotAlt {
                    len: *len,
                    branches: branches.clone(),
                };
                out.iter_mut().for_each(|v| v.push(f.clone()));
            }
            Token::Alt(branches) => {
                let mut alts = Vec::new();
                for b in branches {
                    alts.extend(expand(b, limit)?);
                    if alts.len() > limit {
                        return None;
                    }
                }
                if out.len().saturating_mul(alts.len()) > limit {
                    return None;
                }
                let mut next = Vec::with_capacity(out.len() * alts.len());
                for v in &out {
                    for a in &alts {
                        let mut n = v.clone();
                        n.extend(a.iter().cloned());
                        next.push(n);
                    }
                }
                out = next;
            }
        }
    }
    Some(out)
}

/// Most atom strings one variant may expand into (small sets such as
/// case-folded letters multiply).
const MAX_ATOM_EXPANSION: usize = 64;

/// The bytes a position may take, if they are few enough for an atom
/// (at most 4: `(bytes, count)`, no allocation).
fn choices(e: &Elem, sets: &[ByteSet]) -> Option<([u8; 4], usize)> {
    match *e {
        Elem::Byte { value, mask: 0xff } => Some(([value, 0, 0, 0], 1)),
        Elem::Byte { .. } => None,
        Elem::Set(i) => {
            let s = &sets[i as usize];
            if s.len() > 4 || s.is_empty() {
                return None;
            }
            let mut out = [0u8; 4];
            let mut n = 0;
            for b in s.iter() {
                out[n] = b;
                n += 1;
            }
            Some((out, n))
        }
    }
}

/// Picks the best atom window: the highest-scoring run of at most
/// [`MAX_ATOM`] positions that are literal bytes or tiny sets, expanding
/// into at most [`MAX_ATOM_EXPANSION`] strings. Returns `(offset, strings)`.
/// The score bonus of one step up in atom length class: 8 bits, so a
/// shorter atom wins only when it is 256 times rarer.
const CLASS_STEP: u32 = 32;

fn pick_atom(elems: &[Elem], sets: &[ByteSet]) -> Option<(usize, Vec<Vec<u8>>)> {
    let ch: Vec<Option<([u8; 4], usize)>> = elems.iter().map(|e| choices(e, sets)).collect();
    let mut best: Option<(u32, usize, usize)> = None; // score, start, len
    for start in 0..ch.len() {
        let mut product = 1usize;
        let mut cost = Cost::default();
        let mut len = 0;
        while start + len < ch.len() && len < MAX_ATOM {
            let Some((c, n)) = &ch[start + len] else {
                break;
            };
            if product * n > MAX_ATOM_EXPANSION {
                break;
            }
            product *= n;
            cost.add(&c[..*n]);
            len += 1;
            // Rarity (quarter bits in the kind of data where the window is
            // most likely; `rarity.rs`) plus a bonus for the length classes
            // the atom index scans cheaply (7+ bytes are looked up every
            // 4th position, 4-6 bytes every 2nd, shorter ones at every
            // position). A lone byte is a last resort.
            let class = match len {
                7.. => 3 * CLASS_STEP,
                4..=6 => 2 * CLASS_STEP,
                2..=3 => CLASS_STEP,
                _ => 0,
            };
            let s = cost.rarity() + class;
            if best.is_none_or(|(b, _, _)| s > b) {
                best = Some((s, start, len));
            }
        }
    }
    let (_, start, len) = best?;
    let window = &ch[start..start + len];
    if window.iter().flatten().all(|&(_, n)| n == 1) {
        // The common case: one string, one allocation.
        return Some((
            start,
            vec![window.iter().flatten().map(|(c, _)| c[0]).collect()],
        ));
    }
    let mut out: Vec<Vec<u8>> = vec![Vec::with_capacity(len)];
    for (c, n) in window.iter().flatten() {
        out = out
            .iter()
            .flat_map(|prefix| {
                c[..*n].iter().map(move |&b| {
                    let mut p = prefix.clone();
                    p.push(b);
                    p
                })
            })
            .collect();
    }
    Some((start, out))
}

/// The bytes a variant of `len` bytes needs after its start (`lookahead`)
/// and before it (`history`) to be verified: the end assertion's context,
/// and the right anchor on a last part or the left anchor on a first part
/// (`None` otherwise).
pub(crate) fn entry_context(len: u64, right: Option<Anchor>, left: Option<Anchor>) -> (u64, u64) {
    let after = len + ASSERT_CTX + right.map_or(0, |a| u64::from(a.max) + 1);
    let before = left.map_or(ASSERT_CTX, |a| u64::from(a.max) + 1 + ASSERT_CTX);
    (after, before)
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
        let mut atom_ids: HashMap<u128, usize, crate::atoms::FxBuild> = HashMap::default();
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

    /// The length of atom `atom`.
    pub fn atom_len(&self, atom: u32) -> usize {
        self.atoms.atom_len(atom)
    }

    /// The entries whose atom is `atom`.
    #[inline]
    pub fn targets(&self, atom: usize) -> &[u32] {
        &self.targets[self.target_start[atom] as usize..self.target_start[atom + 1] as usize]
    }

    /// The byte predicates of `entry`.
    #[inline]
    pub fn elems(&self, entry: &Entry) -> &[Elem] {
        let s = entry.elem_start as usize;
        &self.elems[s..s + entry.elem_len as usize]
    }

    /// The negated alternations of `entry`.
    #[inline]
    pub fn not_alts(&self, entry: &Entry) -> &[NotAltCheck] {
        let s = entry.not_alt_start as usize;
        &self.not_alts[s..s + entry.not_alt_len as usize]
    }

    /// The gap between parts `k` and `k + 1` of `pat`.
    #[inline]
    pub fn gap(&self, pat: &PatternInfo, k: usize) -> Gap {
        self.gap_slots[pat.gap_slot as usize + k]
    }

    /// True if the program holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}
