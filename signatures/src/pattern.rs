//! The compiled form of body and logical signatures: what the parsers produce
//! and what the engine consumes.
//!
//! Everything here is already *normalized*: `{n}` with n < 128 became `n`
//! wildcard bytes, modifiers (`::i`, `::w`, `::a`, `::f`) were expanded into
//! plain patterns, and boundaries in the middle of a pattern became byte
//! classes. The engine never needs to know the hex syntax.
//!
//! Each type writes and reads itself through [`crate::wire`] (the
//! implementations are in `pattern/wire.rs`).

mod wire;

/// The suffix of the reported name of a signature that does not come from
/// an official source (a signed container or the bundled database).
pub const UNOFFICIAL: &str = ".UNOFFICIAL";

/// Most subsignatures in one logical signature (ClamAV's limit).
pub const MAX_SUBSIGS: usize = 64;

/// A set of byte values (a 256-bit bitmap).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ByteSet(pub [u64; 4]);

impl ByteSet {
    /// The empty set.
    pub const EMPTY: ByteSet = ByteSet([0; 4]);
    /// Every byte.
    pub const ALL: ByteSet = ByteSet([u64::MAX; 4]);

    /// A set holding exactly `b`.
    pub fn single(b: u8) -> Self {
        let mut s = Self::EMPTY;
        s.insert(b);
        s
    }

    /// Adds `b`.
    pub fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1u64 << (b & 63);
    }

    /// True if `b` is in the set.
    #[inline]
    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1u64 << (b & 63)) != 0
    }

    /// The complement.
    pub fn negate(&self) -> Self {
        ByteSet([!self.0[0], !self.0[1], !self.0[2], !self.0[3]])
    }

    /// Number of bytes in the set.
    pub fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// True if no byte is in the set.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// Iterates over the bytes in the set, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0u8..=255).filter(move |&b| self.contains(b))
    }
}

impl std::fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|b| format!("{b:02x}")))
            .finish()
    }
}

/// One position (or a small fixed or variable number of positions) of a part.
///
/// Nearly every token of a real database is a [`Byte`](Token::Byte), so
/// the rarer kinds are boxed: a token takes 16 bytes instead of 40, which
/// at 100k signatures is some 70 MB less to write while loading.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// One byte `b` with `b & mask == value`. A literal has mask `0xff`, `??`
    /// has mask `0`, `a?` has mask `0xf0`, `?a` has mask `0x0f`.
    Byte {
        /// The expected bits.
        value: u8,
        /// Which bits are compared.
        mask: u8,
    },
    /// One byte from a set: single-byte alternations `(aa|bb)`, their
    /// negation `!(aa|bb)`, case-folded letters (`::i`), and boundary classes
    /// `(B)`/`(W)` in the middle of a pattern.
    Set(Box<ByteSet>),
    /// A generic alternation: one of the branches (which may differ in length
    /// and may themselves contain any token, including nested alternations).
    /// Also used for `(L)` in the middle of a pattern (`\n` or `\r\n`).
    Alt(Box<Vec<Vec<Token>>>),
    /// A negated fixed-length multi-byte alternation `!(aaaa|bbbb)`: `len`
    /// bytes that equal none of the branches. Every branch is `len` long.
    NotAlt {
        /// Length of every branch, in bytes.
        len: u32,
        /// The forbidden byte strings.
        branches: Box<Vec<Vec<u8>>>,
    },
}

// What the boxes are for (see [`Token`]).
const _: () = assert!(std::mem::size_of::<Token>() == 16);

/// A zero-width check at the very start or end of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assertion {
    /// `(B)`: the neighbouring byte is a word boundary in ClamAV's sense (see
    /// [`boundary_left`] and [`boundary_right`]), or there is no neighbour
    /// (start or end of the file).
    Boundary,
    /// `(L)`: at the start, the file start or a preceding `\n`; at the end,
    /// the file end or a following `\n` or `\r\n`.
    Line,
    /// `(W)`: the neighbouring byte is not ASCII alphanumeric, or there is no
    /// neighbour.
    NonAlnum,
    /// `(W)` in wide mode (`::wf`): the neighbouring two bytes are not an
    /// alphanumeric ASCII character followed by (end) or preceding (start)
    /// a `00` byte, i.e. the wide neighbour character is not alphanumeric.
    NonAlnumWide,
    /// `!(B)`: there is a neighbouring byte and it is not a word boundary
    /// (at the start, in neither of ClamAV's boundary sets; at the end, not
    /// in the right-hand one).
    NotBoundary,
    /// `!(L)`: there is a neighbouring byte and it is not `\n`.
    NotLine,
    /// `!(W)`: there is a neighbouring byte and it is ASCII alphanumeric.
    Alnum,
}

impl Assertion {
    /// True for the negated classes, which need a neighbouring byte: at the
    /// very start or end of the file they fail. (clamscan 1.4.6 crashes on
    /// a negated class at the start of a file; giva keeps the documented
    /// reading, "the neighbour is not of the class", which has no neighbour
    /// to test there.)
    pub fn needs_neighbour(self) -> bool {
        matches!(self, Self::NotBoundary | Self::NotLine | Self::Alnum)
    }
}

/// True if `b` may stand immediately *before* a `(B)` match (the left
/// side), per ClamAV's boundary table: `. < @` (left only) and space `- / _`
/// (both sides).
#[inline]
pub fn boundary_left(b: u8) -> bool {
    matches!(b, b'.' | b'<' | b'@' | b' ' | b'-' | b'/' | b'_')
}

/// True if `b` may stand immediately *after* a `(B)` match (the right side),
/// per ClamAV's boundary table: `\n \r " ' = >` (right only) and space
/// `- / _` (both sides).
#[inline]
pub fn boundary_right(b: u8) -> bool {
    matches!(
        b,
        b'\n' | b'\r' | b'"' | b'\'' | b'=' | b'>' | b' ' | b'-' | b'/' | b'_'
    )
}

/// True if `b` counts as a boundary when consumed in the middle of a pattern
/// (`(B)` not at an end): any byte valid on either side.
#[inline]
pub fn boundary_any(b: u8) -> bool {
    boundary_left(b) || boundary_right(b)
}

/// A single byte at a bounded distance from the body: ClamAV's `[x-y]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Anchor {
    /// The byte.
    pub byte: u8,
    /// Minimum number of arbitrary bytes between the anchor byte and the body.
    pub min: u32,
    /// Maximum number of arbitrary bytes between the anchor byte and the body
    /// (at most 32).
    pub max: u32,
}

/// The gap between two consecutive parts (`*`, `{n-m}`, `{-n}`, `{n-}`, and
/// `{n}` with n >= 128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gap {
    /// Minimum number of bytes between the end of one part and the start of
    /// the next.
    pub min: u32,
    /// Maximum number of bytes, or `None` for unbounded.
    pub max: Option<u32>,
}

/// A contiguous run of tokens with no variable gap inside (except through
/// `Alt` branches of different lengths).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Part {
    /// The tokens, in order. Never empty. The compiler guarantees that every
    /// part holds at least two consecutive literal bytes (`Token::Byte` with
    /// mask `0xff`), ClamAV's minimum static run, with one exception: after
    /// `::i` the letters of that run are case sets (`Token::Set` of the two
    /// cases), checked before the case folding.
    pub tokens: Vec<Token>,
}

/// A complete body pattern: one or more parts separated by gaps, with
/// optional zero-width assertions and single-byte anchors at the ends.
///
/// A match is reported at the position of its first byte, counting a left
/// anchor byte as part of the match (ClamAV anchors offsets to the start of
/// the whole pattern, prefix included).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BodyPattern {
    /// The parts, at least one.
    pub parts: Vec<Part>,
    /// `gaps[i]` separates `parts[i]` and `parts[i + 1]`.
    pub gaps: Vec<Gap>,
    /// `aa[x-y]` before the first part.
    pub left_anchor: Option<Anchor>,
    /// `[x-y]aa` after the last part.
    pub right_anchor: Option<Anchor>,
    /// A zero-width check before the first byte of the match.
    pub start_assertion: Option<Assertion>,
    /// A zero-width check after the last byte of the match.
    pub end_assertion: Option<Assertion>,
}

/// Where a match may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offset {
    /// `*`: anywhere.
    Any,
    /// `n` or `n,shift`: the match starts in `start ..= start + shift`.
    Absolute {
        /// First allowed start position.
        start: u64,
        /// How far past `start` it may begin (0 for an exact offset).
        shift: u64,
    },
    /// `EOF-n` or `EOF-n,shift`: the match starts in
    /// `size - back ..= size - back + shift`. Never matches when
    /// `back > size`.
    FromEnd {
        /// Distance from the end of the file.
        back: u64,
        /// How far past `size - back` it may begin.
        shift: u64,
    },
    /// `EP+n`, `EP-n`, `Sx+n`, `SEx`, `SL+n` (each with an optional
    /// `,shift`): relative to an executable's entry point or sections, on
    /// a layer whose [`ExeInfo`] is known. Never matches elsewhere, nor
    /// where the position it names does not exist (a section the file
    /// lacks, a start before the file's first byte).
    Exe {
        /// What the offset counts from.
        anchor: ExeAnchor,
        /// Added to the anchor's position (`EP-n` is `-n`).
        delta: i64,
        /// How far past that it may begin.
        shift: u64,
    },
}

/// The structure an [`Offset::Exe`] counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExeAnchor {
    /// `EP`: the entry point's file offset.
    EntryPoint,
    /// `Sx`: the start of section `x` (from 0) in the file.
    Section(u32),
    /// `SL`: the start of the last section.
    LastSection,
    /// `SEx`: anywhere in section `x`: from its start, shifted by up to
    /// its size in the file plus the offset's own shift.
    WholeSection(u32),
}

/// One section of an executable as its file holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExeSection {
    /// Where its bytes start in the file.
    pub raw: u64,
    /// How many bytes of it the file holds.
    pub size: u64,
}

/// Which kind of executable an [`ExeInfo`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExeKind {
    /// A 32-bit PE (`PE32`).
    Pe32,
    /// A 64-bit PE (`PE32+`).
    Pe64,
    /// An ELF file, 32- or 64-bit.
    Elf,
    /// A Mach-O file (one architecture).
    MachO,
}

/// What executable offsets, target-description keys and the hashes of an
/// executable's parts resolve against: the entry point and sections of a
/// PE, ELF or Mach-O layer, as ClamAV computes them (see
/// `docs/clamav-formats.md` §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExeInfo {
    /// The kind of executable.
    pub kind: ExeKind,
    /// The entry point's offset in the file.
    pub entry: u64,
    /// The sections, in header order (ClamAV's `NumberOfSections` is
    /// their count).
    pub sections: Vec<ExeSection>,
    /// A 32-bit PE's imports as `.imp` signatures hash them
    /// (`kernel32.getprocaddress,...`), or `None` where ClamAV computes
    /// no import hash.
    pub imports: Option<Vec<u8>>,
}

impl ExeInfo {
    /// The first allowed start and the shift of `anchor` moved by `delta`
    /// and `shift`, or `None` where the position does not exist.
    fn resolve(&self, anchor: ExeAnchor, delta: i64, shift: u64) -> Option<(u64, u64)> {
        let (base, shift) = match anchor {
            ExeAnchor::EntryPoint => (self.entry, shift),
            ExeAnchor::Section(x) => (self.sections.get(x as usize)?.raw, shift),
            ExeAnchor::LastSection => (self.sections.last()?.raw, shift),
            ExeAnchor::WholeSection(x) => {
                let s = self.sections.get(x as usize)?;
                (s.raw, s.size.saturating_add(shift))
            }
        };
        Some((base.checked_add_signed(delta)?, shift))
    }
}

impl Offset {
    /// The allowed range of start positions for a file of `size` bytes, as
    /// an inclusive `(first, last)` pair, or `None` if the offset cannot be
    /// satisfied. `size` is required only for [`Offset::FromEnd`]; with an
    /// unknown size (`None`) it returns `None` for that variant.
    pub fn start_range(&self, size: Option<u64>) -> Option<(u64, u64)> {
        self.start_range_in(size, None)
    }

    /// [`start_range`](Offset::start_range) on a layer whose executable
    /// structure is `exe` (`None`: not an executable, or not known), which
    /// [`Offset::Exe`] needs.
    pub fn start_range_in(&self, size: Option<u64>, exe: Option<&ExeInfo>) -> Option<(u64, u64)> {
        match *self {
            Offset::Any => Some((0, u64::MAX)),
            Offset::Absolute { start, shift } => Some((start, start.saturating_add(shift))),
            Offset::FromEnd { back, shift } => {
                let size = size?;
                let first = size.checked_sub(back)?;
                Some((first, first.saturating_add(shift)))
            }
            Offset::Exe {
                anchor,
                delta,
                shift,
            } => {
                let (first, shift) = exe?.resolve(anchor, delta, shift)?;
                Some((first, first.saturating_add(shift)))
            }
        }
    }
}

/// ClamAV's target types giva can apply: each names a file type that
/// giva recognises by its magic (see `giva-content`'s `target_type`), or
/// a normalized form: (3) of an HTML page, (7) of a text file. The others
/// (12 Java; 13 and 14) are skipped at load and counted (`target:N`).
pub const TYPED_TARGETS: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 9, 10, 11];

/// An `.ndb` body signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodySignature {
    /// The name as it is reported (with `.UNOFFICIAL` already appended when
    /// the source was not a signed container).
    pub name: String,
    /// ClamAV's target type: 0 for every layer, else only layers of that
    /// type (1 PE, 2 OLE2, 3 normalized HTML, 4 mail, 5 graphics, 6 ELF, 7
    /// normalized text, 9 Mach-O, 10 PDF, 11 Flash; [`TYPED_TARGETS`]).
    pub target: u8,
    /// Where the match may start.
    pub offset: Offset,
    /// What must match.
    pub pattern: BodyPattern,
}

/// One subsignature of a logical signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subsig {
    /// Where a match may start.
    pub offset: Offset,
    /// The patterns, any of which counts as a match of this subsignature.
    /// Usually one; two for `::wa` (the ASCII and the wide form); none for
    /// a subsignature evaluated after the scan ([`LogicalSignature::checks`]).
    pub variants: Vec<BodyPattern>,
}

/// The comparison of a count modifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CountOp {
    /// `=n`
    Eq,
    /// `>n`
    Gt,
    /// `<n`
    Lt,
}

/// A logical expression over subsignature match counts, already grouped
/// the way ClamAV groups it (split at the first top-level operator, so
/// `a & b | c` is `a & (b | c)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogicalExpr {
    /// Subsignature number `n` (true when it matched at least once).
    Sub(usize),
    /// Both sides.
    And(Box<LogicalExpr>, Box<LogicalExpr>),
    /// Either side.
    Or(Box<LogicalExpr>, Box<LogicalExpr>),
    /// A count condition on a subsignature or block: `A=n`, `(..)>n,m`, ...
    Count {
        /// The subsignature or block that is counted.
        inner: Box<LogicalExpr>,
        /// The comparison.
        op: CountOp,
        /// The number of matches compared against.
        count: u32,
        /// For blocks: the minimum number of distinct subsignatures that must
        /// have matched (`,m`). Ignored on a single subsignature, as in ClamAV.
        distinct: Option<u32>,
    },
}

impl LogicalExpr {
    /// The highest subsignature number the expression names.
    pub fn max_index(&self) -> usize {
        match self {
            LogicalExpr::Sub(n) => *n,
            LogicalExpr::And(a, b) | LogicalExpr::Or(a, b) => a.max_index().max(b.max_index()),
            LogicalExpr::Count { inner, .. } => inner.max_index(),
        }
    }
}

/// How a byte-compare subsignature reads its number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NumberForm {
    /// `i`: raw bytes, an unsigned integer of 1, 2, 4 or 8 bytes.
    Binary {
        /// `b` (else `l`).
        big: bool,
    },
    /// `h`: hexadecimal text (`l` reverses its digit pairs).
    Hex {
        /// `b` (else `l`).
        big: bool,
    },
    /// `d`: decimal text.
    Decimal,
    /// `a`: hexadecimal text after `0x`, else decimal.
    Auto {
        /// `b` (else `l`, which never reads a decimal).
        big: bool,
    },
    /// A combination ClamAV loads but never evaluates: no base letter, or
    /// `i`, `h` or `a` without `b` or `l`.
    #[default]
    Never,
}

/// A byte-compare subsignature, `N(>>off#opts#cmp[,cmp])`: reads a number
/// near the last match of subsignature `trigger`, once the content scan is
/// done, and matches (once) if every comparison holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ByteCompare {
    /// The subsignature whose last match start the offset counts from, as
    /// ClamAV keeps it (16 bits, at most 64). One that is not an earlier
    /// byte-compare or a content subsignature of the same signature never
    /// fires.
    pub trigger: i16,
    /// Bytes from the trigger's match start (`>>n`, or `<<n` negative).
    pub offset: i64,
    /// How the bytes are read.
    pub form: NumberForm,
    /// `e`: the text must be exactly `width` bytes of number.
    pub exact: bool,
    /// Bytes read.
    pub width: u32,
    /// The comparisons (one or two), all of which must hold, in signed
    /// 64-bit arithmetic.
    pub comparisons: Vec<(CountOp, i64)>,
}

/// A PCRE subsignature, `[offset:]trigger/regex/flags`: once the content
/// scan is done and if its trigger holds, the regular expression runs over
/// the input from the offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcreCheck {
    /// The condition over earlier subsignatures' counts under which the
    /// expression runs; `None` for ClamAV's bypass trigger (always).
    pub trigger: Option<LogicalExpr>,
    /// Where the subject starts (and, with a shift, where a match may
    /// start).
    pub offset: Offset,
    /// The compiled expression (the flags `i s m x A E U`).
    pub regex: crate::pcre::Regex,
    /// `g`: count every match, not only the first.
    pub global: bool,
    /// `r`: search from the offset on, not only at it.
    pub rolling: bool,
    /// `e`: with a shift, the match must lie within it.
    pub encompass: bool,
}

/// A subsignature that is evaluated once the content scan is done, not by
/// the pattern matcher (its entry in [`LogicalSignature::subsigs`] has no
/// variants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A byte-compare subsignature.
    ByteCompare(ByteCompare),
    /// A PCRE subsignature.
    Pcre(PcreCheck),
}

/// An `.ldb` logical signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalSignature {
    /// The reported name (see [`BodySignature::name`]).
    pub name: String,
    /// `Target:n` (see [`BodySignature::target`]).
    pub target: u8,
    /// `FileSize:min-max` from the target description block, inclusive.
    pub file_size: Option<(u64, u64)>,
    /// `EntryPoint:min-max`: the entry point's offset in the file
    /// (targets 1, 6 and 9), inclusive.
    pub entry_point: Option<(u64, u64)>,
    /// `NumberOfSections:min-max` (targets 1, 6 and 9), inclusive.
    pub sections: Option<(u64, u64)>,
    /// `Container:CL_TYPE_X`: the type of the layer that holds the one
    /// scanned (`CL_TYPE_ANY` for a file of its own).
    pub container: Option<String>,
    /// The condition.
    pub expr: LogicalExpr,
    /// The subsignatures, indexed by the numbers used in `expr`.
    pub subsigs: Vec<Subsig>,
    /// The subsignatures evaluated after the scan, by index, in index
    /// order (the entries of `subsigs` at those indexes have no variants).
    pub checks: Vec<(usize, Check)>,
}

/// A whole-file hash algorithm, chosen by the length of the hex digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    /// 32 hex digits.
    Md5,
    /// 40 hex digits.
    Sha1,
    /// 64 hex digits.
    Sha256,
}

impl HashAlgo {
    /// Every algorithm, in a fixed order.
    pub const ALL: [HashAlgo; 3] = [HashAlgo::Md5, HashAlgo::Sha1, HashAlgo::Sha256];

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
        }
    }
}

/// What a hash signature hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashScope {
    /// The whole file (`.hdb`, `.hsb`; the allow-list).
    File,
    /// One section of a PE file (`.mdb`, `.msb`): its size is the
    /// section's in the file.
    Section,
    /// A 32-bit PE's import table (`.imp`): its size is the length of the
    /// hashed string ([`ExeInfo::imports`]).
    Import,
}

impl HashScope {
    /// Every scope, in a fixed order.
    pub const ALL: [HashScope; 3] = [HashScope::File, HashScope::Section, HashScope::Import];
}

/// A hash entry (detection or allow-list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashEntry {
    /// What it hashes (the allow-list: always whole files).
    pub scope: HashScope,
    /// The algorithm.
    pub algo: HashAlgo,
    /// The raw digest (`algo.digest_len()` bytes).
    pub digest: Vec<u8>,
    /// The file size it applies to, or `None` for any size.
    pub size: Option<u64>,
    /// The reported name (for the allow-list: the name in the `.fp` line).
    pub name: String,
}

/// Writes the expression in ClamAV syntax, with every `&`/`|` pair in
/// parentheses, so [`parse_expression`](crate::parse_expression) reads it
/// back unchanged.
impl std::fmt::Display for LogicalExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogicalExpr::Sub(n) => write!(f, "{n}"),
            LogicalExpr::And(a, b) => write!(f, "({a}&{b})"),
            LogicalExpr::Or(a, b) => write!(f, "({a}|{b})"),
            LogicalExpr::Count {
                inner,
                op,
                count,
                distinct,
            } => {
                match **inner {
                    LogicalExpr::Count { .. } => write!(f, "({inner})")?,
                    _ => write!(f, "{inner}")?,
                }
                let op = match op {
                    CountOp::Eq => '=',
                    CountOp::Gt => '>',
                    CountOp::Lt => '<',
                };
                write!(f, "{op}{count}")?;
                if let Some(d) = distinct {
                    write!(f, ",{d}")?;
                }
                Ok(())
            }
        }
    }
}
