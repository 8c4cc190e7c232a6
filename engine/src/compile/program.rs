//! The [`Program`]: a compiled, read-only set of patterns, as the
//! executor runs it and as it is stored ([`wire`] writes and reads it).

mod wire;

use giva_signatures::{Anchor, Assertion, BodyPattern, ByteSet, Gap, Offset, Token};

use crate::index::AtomIndex;
use crate::util::arr::Arr;

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
    /// Where the entry's atom starts relative to the entry's start: inside
    /// it for an atom of its own; for an entry derived from another part's
    /// atom (`derive.rs`), the earliest start is `atom_off` bytes before
    /// the atom (negative: after it), and the others follow, `spread` of
    /// them.
    pub atom_off: i32,
    pub spread: u32,
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

/// The bytes a variant of `len` bytes needs after its start (`lookahead`)
/// and before it (`history`) to be verified: the end assertion's context,
/// and the right anchor on a last part or the left anchor on a first part
/// (`None` otherwise).
pub(crate) fn entry_context(len: u64, right: Option<Anchor>, left: Option<Anchor>) -> (u64, u64) {
    let after = len + ASSERT_CTX + right.map_or(0, |a| u64::from(a.max) + 1);
    let before = left.map_or(ASSERT_CTX, |a| u64::from(a.max) + 1 + ASSERT_CTX);
    (after, before)
}

/// The bytes an entry needs after its start (`lookahead`: its own and its
/// context, and for a derived entry its anchor's atom, at most `max_atom`
/// bytes, which the scan must have passed before the entry is verified and
/// a segment of a split scan must hold) and before it (`history`: its left
/// context, and the distance back to a derived entry's atom).
pub(crate) fn entry_needs(e: &Entry, pat: &PatternInfo, max_atom: usize) -> (u64, u64) {
    let (after, before) = entry_context(
        u64::from(e.elem_len),
        (e.part + 1 == pat.nparts)
            .then_some(pat.right_anchor)
            .flatten(),
        (e.part == 0).then_some(pat.left_anchor).flatten(),
    );
    let hi = i64::from(e.atom_off);
    let lo = hi - i64::from(e.spread);
    (
        after.max(hi.saturating_add(max_atom as i64).max(0) as u64),
        before.max(lo.min(0).unsigned_abs()),
    )
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

impl Program {
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
