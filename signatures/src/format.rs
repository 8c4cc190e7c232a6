//! giva's compiled database file format.
//!
//! One file is a header followed by a payload:
//!
//! ```text
//! header (little-endian)
//!   0   8  magic  "GIVADB\r\n"
//!   8   4  format version (FORMAT_VERSION)
//!   12  4  header length in bytes (HEADER_FIXED_LEN + version string length)
//!   16  8  payload length in bytes
//!   24 32  checksum (see [`checksum`]: a SHA-256 hash tree) over
//!          header[56..header length] followed by the payload
//!   56  8  build time, seconds since the Unix epoch
//!   64  4  version string length
//!   68  n  version string (UTF-8)
//! payload
//!   u32 section count, then per section {u32 kind, u32 0, u64 offset, u64 length}
//!   (offsets relative to the payload start), then the sections, each at a
//!   file offset that is a multiple of SECTION_ALIGN (64), zero-padded.
//! ```
//!
//! Sections: the info counters; per algorithm a table of fixed-size
//! detection records and one of allow-list records (`size u64 big-endian
//! (u64::MAX = any) | digest`), sorted bytewise, so by size and then
//! digest; per algorithm the names of the detection records, front-coded
//! in blocks (see [`NAME_BLOCK`]); and the body and logical signatures in
//! a compact binary encoding. The hash tables are binary-searched in place
//! in the mapped bytes, both to find a digest and to tell whether a file
//! of some size needs hashing at all; the logical signatures are decoded
//! on open, the body signatures on first use. Loading checksums every
//! byte, so the layout stores as few as it can. Kinds from [`EXT_MIN`] up are extensions, opaque here:
//! `giva db compile` stores the built scan engine in one, so that a
//! database is ready to scan without rebuilding its index.
//! Every offset and length read from a file is bounds-checked.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::error::LoadError;
use crate::pattern::{
    Anchor, Assertion, BodyPattern, BodySignature, ByteSet, CountOp, Gap, HashAlgo, LogicalExpr,
    LogicalSignature, Offset, Part, Subsig, Token,
};

/// The 8-byte magic at the start of every compiled database file.
pub const MAGIC: &[u8; 8] = b"GIVADB\r\n";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 4;

/// Length of the fixed part of the header.
pub const HEADER_FIXED_LEN: usize = 68;

/// Longest version string accepted.
pub const MAX_VERSION_LEN: usize = 4096;

/// Deepest nesting decoded (tokens and expressions).
const MAX_DECODE_DEPTH: usize = 256;

pub(crate) const SEC_INFO: u32 = 1;
pub(crate) const SEC_HASH: u32 = 10;
pub(crate) const SEC_ALLOW: u32 = 20;
/// Per algorithm, the names of the detection records (see
/// [`NAME_BLOCK`]).
pub(crate) const SEC_NAMES: u32 = 30;
pub(crate) const SEC_BODY: u32 = 40;
pub(crate) const SEC_LOGICAL: u32 = 41;
/// Section kinds from here up are extensions: stored and checksummed with
/// the rest, opaque to this crate (see [`crate::EXT_ENGINE`]).
pub const EXT_MIN: u32 = 1000;

/// Every section starts at a file offset that is a multiple of this, so
/// that tables used in place from the mapping (the stored engine's) are
/// aligned. Readers do not rely on it: the gaps are zero padding, covered
/// by the checksum like the rest.
pub const SECTION_ALIGN: usize = 64;

/// The checksum covers the data in chunks of this many bytes.
pub const CHECKSUM_CHUNK: usize = 4 << 20;

/// The checksum of `data` (the header from byte 56, then the payload): a
/// SHA-256 hash tree. Each [`CHECKSUM_CHUNK`]-byte chunk is hashed on its
/// own, in parallel on large files, and the result is the SHA-256 of the
/// domain tag `giva-db-tree-v2`, the data length (u64 LE) and the chunk
/// digests in order. It is as collision-resistant as SHA-256 over the
/// whole file, and checking a 100 MB database takes a fraction of the
/// time on several cores.
pub fn checksum(data: &[u8]) -> [u8; 32] {
    let tree = TreeHash::new(data);
    let helpers = checksum_threads(data.len()).saturating_sub(1);
    std::thread::scope(|s| {
        for _ in 0..helpers {
            s.spawn(|| tree.work());
        }
        tree.work();
    });
    tree.finish()
}

/// How many threads are worth using to checksum `len` bytes: one per
/// chunk, at most one per core (and 8).
pub(crate) fn checksum_threads(len: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8)
        .min(len.div_ceil(CHECKSUM_CHUNK))
        .max(1)
}

/// The [`checksum`] computed by any number of threads calling
/// [`work`](Self::work): each takes the next chunk not yet taken, so a
/// thread that is busy elsewhere or descheduled holds nobody up.
pub(crate) struct TreeHash<'a> {
    data: &'a [u8],
    next: std::sync::atomic::AtomicUsize,
    leaves: Vec<std::sync::OnceLock<[u8; 32]>>,
}

impl<'a> TreeHash<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        TreeHash {
            data,
            next: std::sync::atomic::AtomicUsize::new(0),
            leaves: (0..data.len().div_ceil(CHECKSUM_CHUNK))
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }

    /// Hashes chunks until none is left to take.
    pub fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(leaf) = self.leaves.get(i) else {
                return;
            };
            let _ = leaf.set(self.leaf(i));
        }
    }

    /// The digest of chunk `i`.
    fn leaf(&self, i: usize) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let end = (i + 1).saturating_mul(CHECKSUM_CHUNK).min(self.data.len());
        Sha256::digest(&self.data[i * CHECKSUM_CHUNK..end]).into()
    }

    /// The root, once every chunk is hashed (a chunk nobody took is hashed
    /// here).
    pub fn finish(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        self.work();
        let mut root = Sha256::new();
        root.update(b"giva-db-tree-v2");
        root.update((self.data.len() as u64).to_le_bytes());
        for (i, leaf) in self.leaves.iter().enumerate() {
            root.update(leaf.get_or_init(|| self.leaf(i)));
        }
        root.finalize().into()
    }
}

/// Writes the payload length and the [`checksum`] into the header of the
/// database file `b` (for writers and for tests that alter a file on
/// purpose). Does nothing if `b` is shorter than a header.
pub fn seal(b: &mut [u8]) {
    if b.len() < HEADER_FIXED_LEN {
        return;
    }
    let header_len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
    let payload = b.len().saturating_sub(header_len) as u64;
    b[16..24].copy_from_slice(&payload.to_le_bytes());
    let sum = checksum(&b[56..]);
    b[24..56].copy_from_slice(&sum);
}

/// True if the file at `path` starts with [`MAGIC`].
pub fn has_magic(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok_and(|()| &buf == MAGIC)
}

pub(crate) fn algo_index(a: HashAlgo) -> u32 {
    match a {
        HashAlgo::Md5 => 0,
        HashAlgo::Sha1 => 1,
        HashAlgo::Sha256 => 2,
    }
}

/// Size of one hash record for `algo`: the file size (big-endian, so that
/// records sort bytewise by size, then digest), then the digest.
pub(crate) fn record_len(algo: HashAlgo) -> usize {
    8 + algo.digest_len()
}

/// Token tag of a run of literal bytes in the compact encoding.
const LITERAL_RUN: u8 = 4;

/// A name section holds the names of its records in blocks of this many:
/// a table of each block's `u32` start (from the section start), then per
/// name the length it shares with the name before it in its block
/// (varint), its remaining length shifted left by one with the low bit
/// meaning "append `.UNOFFICIAL`" (varint), and the remaining bytes. A
/// name is found by decoding at most this many entries of its block, and
/// a million names such as `Win.Trojan.Agent-1234567-0` take a third of
/// their plain size.
pub(crate) const NAME_BLOCK: usize = 32;

/// The parsed header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub header_len: usize,
    pub payload_len: u64,
    pub checksum: [u8; 32],
    pub built_at: u64,
    pub version: String,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses and checks the header (not the checksum).
pub(crate) fn parse_header(b: &[u8]) -> Result<Header, LoadError> {
    if b.len() < MAGIC.len() {
        return Err(LoadError::TruncatedHeader {
            len: b.len(),
            need: HEADER_FIXED_LEN,
        });
    }
    if &b[..8] != MAGIC {
        return Err(LoadError::BadMagic);
    }
    let trunc = || LoadError::TruncatedHeader {
        len: b.len(),
        need: HEADER_FIXED_LEN,
    };
    let version_field = le_u32(b, 8).ok_or_else(trunc)?;
    if version_field != FORMAT_VERSION {
        return Err(LoadError::UnsupportedVersion {
            found: version_field,
            supported: FORMAT_VERSION,
        });
    }
    if b.len() < HEADER_FIXED_LEN {
        return Err(trunc());
    }
    let header_len = le_u32(b, 12).ok_or_else(trunc)? as usize;
    let payload_len = le_u64(b, 16).ok_or_else(trunc)?;
    let mut checksum = [0u8; 32];
    checksum.copy_from_slice(&b[24..56]);
    let built_at = le_u64(b, 56).ok_or_else(trunc)?;
    let vlen = le_u32(b, 64).ok_or_else(trunc)? as usize;
    if vlen > MAX_VERSION_LEN || header_len != HEADER_FIXED_LEN + vlen {
        return Err(LoadError::Corrupt(format!(
            "header length {header_len} does not match version length {vlen}"
        )));
    }
    let vbytes = b
        .get(HEADER_FIXED_LEN..header_len)
        .ok_or(LoadError::TruncatedHeader {
            len: b.len(),
            need: header_len,
        })?;
    let version = std::str::from_utf8(vbytes)
        .map_err(|_| LoadError::Corrupt("version string is not UTF-8".into()))?
        .to_owned();
    Ok(Header {
        header_len,
        payload_len,
        checksum,
        built_at,
        version,
    })
}

/// A section in the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Section {
    pub start: usize,
    pub len: usize,
}

/// Reads the section table; every section must lie inside the payload.
pub(crate) fn parse_sections(payload: &[u8]) -> Result<BTreeMap<u32, Section>, LoadError> {
    let corrupt = |m: String| LoadError::Corrupt(m);
    let count = le_u32(payload, 0).ok_or_else(|| corrupt("missing section table".into()))? as usize;
    if count > 256 {
        return Err(corrupt(format!("{count} sections")));
    }
    let mut out = BTreeMap::new();
    for i in 0..count {
        let at = 4 + i * 24;
        let (Some(kind), Some(off), Some(len)) = (
            le_u32(payload, at),
            le_u64(payload, at + 8),
            le_u64(payload, at + 16),
        ) else {
            return Err(corrupt("section table is truncated".into()));
        };
        let end = off
            .checked_add(len)
            .ok_or_else(|| corrupt(format!("section {kind} overflows")))?;
        if end > payload.len() as u64 {
            return Err(corrupt(format!(
                "section {kind} ({off}..{end}) is outside the payload ({} bytes)",
                payload.len()
            )));
        }
        if out
            .insert(
                kind,
                Section {
                    start: off as usize,
                    len: len as usize,
                },
            )
            .is_some()
        {
            return Err(corrupt(format!("section {kind} appears twice")));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Encoding

/// A byte writer for the compact encoding.
#[derive(Default, Debug)]
pub(crate) struct W(pub Vec<u8>);

impl W {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn var(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.var(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.var(u64::from(v));
            }
        }
    }
    fn offset(&mut self, o: &Offset) {
        match *o {
            Offset::Any => self.u8(0),
            Offset::Absolute { start, shift } => {
                self.u8(1);
                self.var(start);
                self.var(shift);
            }
            Offset::FromEnd { back, shift } => {
                self.u8(2);
                self.var(back);
                self.var(shift);
            }
        }
    }
    fn token(&mut self, t: &Token) {
        match t {
            Token::Byte { value, mask } => {
                self.u8(0);
                self.u8(*value);
                self.u8(*mask);
            }
            Token::Set(s) => {
                self.u8(1);
                for w in s.0 {
                    self.0.extend_from_slice(&w.to_le_bytes());
                }
            }
            Token::Alt(branches) => {
                self.u8(2);
                self.var(branches.len() as u64);
                for b in branches {
                    self.tokens(b);
                }
            }
            Token::NotAlt { len, branches } => {
                self.u8(3);
                self.var(*len as u64);
                self.var(branches.len() as u64);
                for b in branches {
                    self.bytes(b);
                }
            }
        }
    }
    /// A token list as items: a run of literal bytes is one item (tag
    /// [`LITERAL_RUN`], its length, the bytes), any other token one item.
    /// Most of a body signature is literal bytes: a run stores each in one
    /// byte instead of three.
    fn tokens(&mut self, ts: &[Token]) {
        let literal = |t: &Token| match t {
            Token::Byte { value, mask: 0xff } => Some(*value),
            _ => None,
        };
        let mut items: Vec<&[Token]> = Vec::new();
        let mut rest = ts;
        while let Some(first) = rest.first() {
            let n = if literal(first).is_some() {
                rest.iter().take_while(|t| literal(t).is_some()).count()
            } else {
                1
            };
            let (item, tail) = rest.split_at(n);
            items.push(item);
            rest = tail;
        }
        self.var(items.len() as u64);
        for item in items {
            match item {
                [t] if literal(t).is_none() => self.token(t),
                run => {
                    self.u8(LITERAL_RUN);
                    let bytes: Vec<u8> = run.iter().filter_map(literal).collect();
                    self.bytes(&bytes);
                }
            }
        }
    }
    fn anchor(&mut self, a: Option<Anchor>) {
        match a {
            None => self.u8(0),
            Some(a) => {
                self.u8(1);
                self.u8(a.byte);
                self.var(u64::from(a.min));
                self.var(u64::from(a.max));
            }
        }
    }
    fn assertion(&mut self, a: Option<Assertion>) {
        self.u8(match a {
            None => 0,
            Some(Assertion::Boundary) => 1,
            Some(Assertion::Line) => 2,
            Some(Assertion::NonAlnum) => 3,
            Some(Assertion::NonAlnumWide) => 4,
        });
    }
    pub fn pattern(&mut self, p: &BodyPattern) {
        self.var(p.parts.len() as u64);
        for part in &p.parts {
            self.tokens(&part.tokens);
        }
        self.var(p.gaps.len() as u64);
        for g in &p.gaps {
            self.var(u64::from(g.min));
            self.opt_u32(g.max);
        }
        self.anchor(p.left_anchor);
        self.anchor(p.right_anchor);
        self.assertion(p.start_assertion);
        self.assertion(p.end_assertion);
    }
    pub fn body(&mut self, b: &BodySignature) {
        self.str(&b.name);
        self.offset(&b.offset);
        self.pattern(&b.pattern);
    }
    fn expr(&mut self, e: &LogicalExpr) {
        match e {
            LogicalExpr::Sub(n) => {
                self.u8(0);
                self.var(*n as u64);
            }
            LogicalExpr::And(a, b) | LogicalExpr::Or(a, b) => {
                self.u8(if matches!(e, LogicalExpr::And(..)) {
                    1
                } else {
                    2
                });
                self.expr(a);
                self.expr(b);
            }
            LogicalExpr::Count {
                inner,
                op,
                count,
                distinct,
            } => {
                self.u8(3);
                self.u8(match op {
                    CountOp::Eq => 0,
                    CountOp::Gt => 1,
                    CountOp::Lt => 2,
                });
                self.var(u64::from(*count));
                self.opt_u32(*distinct);
                self.expr(inner);
            }
        }
    }
    pub fn logical(&mut self, l: &LogicalSignature) {
        self.str(&l.name);
        match l.file_size {
            None => self.u8(0),
            Some((a, b)) => {
                self.u8(1);
                self.var(a);
                self.var(b);
            }
        }
        self.expr(&l.expr);
        self.var(l.subsigs.len() as u64);
        for s in &l.subsigs {
            self.offset(&s.offset);
            self.var(s.variants.len() as u64);
            for v in &s.variants {
                self.pattern(v);
            }
        }
    }
}

/// A bounds-checked reader for the compact encoding. Never panics.
#[derive(Debug)]
pub(crate) struct R<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'static str,
}

type DResult<T> = Result<T, LoadError>;

impl<'a> R<'a> {
    pub fn new(b: &'a [u8], what: &'static str) -> Self {
        R { b, pos: 0, what }
    }
    fn err<T>(&self, m: &str) -> DResult<T> {
        Err(LoadError::Corrupt(format!(
            "{} section at byte {}: {m}",
            self.what, self.pos
        )))
    }
    pub fn u8(&mut self) -> DResult<u8> {
        match self.b.get(self.pos) {
            Some(&v) => {
                self.pos += 1;
                Ok(v)
            }
            None => self.err("truncated"),
        }
    }
    pub fn var(&mut self) -> DResult<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.err("varint too long")
    }
    fn u32v(&mut self) -> DResult<u32> {
        let v = self.var()?;
        u32::try_from(v).or_else(|_| self.err("number out of range"))
    }
    /// A count of items that each take at least one byte.
    pub fn count(&mut self) -> DResult<usize> {
        let v = self.var()?;
        if v > (self.b.len() - self.pos.min(self.b.len())) as u64 {
            return self.err("count larger than the remaining bytes");
        }
        Ok(v as usize)
    }
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        match self.b.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => self.err("truncated"),
        }
    }
    pub fn bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }
    pub fn str(&mut self) -> DResult<String> {
        let b = self.bytes()?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => self.err("string is not UTF-8"),
        }
    }
    fn opt_u32(&mut self) -> DResult<Option<u32>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u32v()?)),
            _ => self.err("bad option tag"),
        }
    }
    fn offset(&mut self) -> DResult<Offset> {
        match self.u8()? {
            0 => Ok(Offset::Any),
            1 => Ok(Offset::Absolute {
                start: self.var()?,
                shift: self.var()?,
            }),
            2 => Ok(Offset::FromEnd {
                back: self.var()?,
                shift: self.var()?,
            }),
            _ => self.err("bad offset tag"),
        }
    }
    fn token(&mut self, depth: usize) -> DResult<Token> {
        if depth > MAX_DECODE_DEPTH {
            return self.err("nesting too deep");
        }
        match self.u8()? {
            0 => Ok(Token::Byte {
                value: self.u8()?,
                mask: self.u8()?,
            }),
            1 => {
                let mut s = [0u64; 4];
                for w in &mut s {
                    let Some(b) = self.b.get(self.pos..self.pos + 8) else {
                        return self.err("truncated");
                    };
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    *w = u64::from_le_bytes(a);
                    self.pos += 8;
                }
                Ok(Token::Set(ByteSet(s)))
            }
            2 => {
                let n = self.count()?;
                let mut branches = Vec::new();
                for _ in 0..n {
                    branches.push(self.tokens(depth + 1)?);
                }
                Ok(Token::Alt(branches))
            }
            3 => {
                let len = self.count()?;
                let n = self.count()?;
                let mut branches = Vec::new();
                for _ in 0..n {
                    let b = self.bytes()?;
                    if b.len() != len {
                        return self.err("negated branch length mismatch");
                    }
                    branches.push(b.to_vec());
                }
                Ok(Token::NotAlt { len, branches })
            }
            _ => self.err("bad token tag"),
        }
    }
    fn tokens(&mut self, depth: usize) -> DResult<Vec<Token>> {
        let n = self.count()?;
        let mut v = Vec::new();
        for _ in 0..n {
            if self.b.get(self.pos) == Some(&LITERAL_RUN) {
                self.pos += 1;
                let run = self.bytes()?;
                if run.is_empty() {
                    return self.err("empty literal run");
                }
                v.extend(run.iter().map(|&value| Token::Byte { value, mask: 0xff }));
            } else {
                v.push(self.token(depth)?);
            }
        }
        Ok(v)
    }
    fn anchor(&mut self) -> DResult<Option<Anchor>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Anchor {
                byte: self.u8()?,
                min: self.u32v()?,
                max: self.u32v()?,
            })),
            _ => self.err("bad anchor tag"),
        }
    }
    fn assertion(&mut self) -> DResult<Option<Assertion>> {
        Ok(match self.u8()? {
            0 => None,
            1 => Some(Assertion::Boundary),
            2 => Some(Assertion::Line),
            3 => Some(Assertion::NonAlnum),
            4 => Some(Assertion::NonAlnumWide),
            _ => return self.err("bad assertion tag"),
        })
    }
    pub fn pattern(&mut self) -> DResult<BodyPattern> {
        let n = self.count()?;
        if n == 0 {
            return self.err("pattern without parts");
        }
        let mut parts = Vec::new();
        for _ in 0..n {
            let tokens = self.tokens(0)?;
            if tokens.is_empty() {
                return self.err("empty part");
            }
            parts.push(Part { tokens });
        }
        let g = self.count()?;
        if g + 1 != n {
            return self.err("gap count does not match part count");
        }
        let mut gaps = Vec::new();
        for _ in 0..g {
            gaps.push(Gap {
                min: self.u32v()?,
                max: self.opt_u32()?,
            });
        }
        Ok(BodyPattern {
            parts,
            gaps,
            left_anchor: self.anchor()?,
            right_anchor: self.anchor()?,
            start_assertion: self.assertion()?,
            end_assertion: self.assertion()?,
        })
    }
    pub fn body(&mut self) -> DResult<BodySignature> {
        Ok(BodySignature {
            name: self.str()?,
            offset: self.offset()?,
            pattern: self.pattern()?,
        })
    }
    fn expr(&mut self, depth: usize) -> DResult<LogicalExpr> {
        if depth > MAX_DECODE_DEPTH {
            return self.err("expression nesting too deep");
        }
        match self.u8()? {
            0 => Ok(LogicalExpr::Sub(self.count_index()?)),
            t @ (1 | 2) => {
                let a = Box::new(self.expr(depth + 1)?);
                let b = Box::new(self.expr(depth + 1)?);
                Ok(if t == 1 {
                    LogicalExpr::And(a, b)
                } else {
                    LogicalExpr::Or(a, b)
                })
            }
            3 => {
                let op = match self.u8()? {
                    0 => CountOp::Eq,
                    1 => CountOp::Gt,
                    2 => CountOp::Lt,
                    _ => return self.err("bad count operator"),
                };
                let count = self.u32v()?;
                let distinct = self.opt_u32()?;
                let inner = Box::new(self.expr(depth + 1)?);
                Ok(LogicalExpr::Count {
                    inner,
                    op,
                    count,
                    distinct,
                })
            }
            _ => self.err("bad expression tag"),
        }
    }
    fn count_index(&mut self) -> DResult<usize> {
        let v = self.var()?;
        if v >= crate::ldb::MAX_SUBSIGS as u64 {
            return self.err("subsignature index out of range");
        }
        Ok(v as usize)
    }
    pub fn logical(&mut self) -> DResult<LogicalSignature> {
        let name = self.str()?;
        let file_size = match self.u8()? {
            0 => None,
            1 => Some((self.var()?, self.var()?)),
            _ => return self.err("bad file size tag"),
        };
        let expr = self.expr(0)?;
        let n = self.count()?;
        let mut subsigs = Vec::new();
        for _ in 0..n {
            let offset = self.offset()?;
            let k = self.count()?;
            let mut variants = Vec::new();
            for _ in 0..k {
                variants.push(self.pattern()?);
            }
            subsigs.push(Subsig { offset, variants });
        }
        if crate::ldb::max_index(&expr) >= subsigs.len() {
            return self.err("expression refers to a missing subsignature");
        }
        Ok(LogicalSignature {
            name,
            file_size,
            expr,
            subsigs,
        })
    }
}
