//! The layout of giva's compiled database file: header, section table,
//! checksum.
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
//! digest, and the same for PE sections' and import tables' hashes; per
//! algorithm the names of each table's detection records, front-coded in
//! blocks (see `db/names.rs`); and the body and logical signatures in
//! their [`wire`](crate::wire) encoding. The hash tables are binary-searched in place
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
use crate::pattern::{HashAlgo, HashScope};

/// The 8-byte magic at the start of every compiled database file.
pub const MAGIC: &[u8; 8] = b"GIVADB\r\n";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 6;

/// Length of the fixed part of the header.
pub const HEADER_FIXED_LEN: usize = 68;

/// Longest version string accepted.
pub const MAX_VERSION_LEN: usize = 4096;

pub(crate) const SEC_INFO: u32 = 1;
pub(crate) const SEC_HASH: u32 = 10;
pub(crate) const SEC_ALLOW: u32 = 20;
/// Per algorithm, the names of the detection records (see
/// `db/names.rs`).
pub(crate) const SEC_NAMES: u32 = 30;
pub(crate) const SEC_BODY: u32 = 40;
/// Per algorithm, PE section hashes (`.mdb`, `.msb`) and their names.
pub(crate) const SEC_SECTION_HASH: u32 = 50;
pub(crate) const SEC_SECTION_NAMES: u32 = 60;
/// Per algorithm, import-table hashes (`.imp`) and their names.
pub(crate) const SEC_IMPORT_HASH: u32 = 70;
pub(crate) const SEC_IMPORT_NAMES: u32 = 80;

/// The first section kinds of the detection records of `scope` and of
/// their names (plus [`algo_index`]).
pub(crate) fn scope_kinds(scope: HashScope) -> (u32, u32) {
    match scope {
        HashScope::File => (SEC_HASH, SEC_NAMES),
        HashScope::Section => (SEC_SECTION_HASH, SEC_SECTION_NAMES),
        HashScope::Import => (SEC_IMPORT_HASH, SEC_IMPORT_NAMES),
    }
}

/// The position of `scope` in tables indexed by scope.
pub(crate) fn scope_index(scope: HashScope) -> usize {
    match scope {
        HashScope::File => 0,
        HashScope::Section => 1,
        HashScope::Import => 2,
    }
}
pub(crate) const SEC_LOGICAL: u32 = 41;
/// Section kinds from here up are extensions: stored and checksummed with
/// the rest, opaque to this crate (see [`EXT_ENGINE`](crate::EXT_ENGINE)).
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

/// What the first bytes of a file say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// It starts with [`MAGIC`]: a compiled giva database.
    Compiled,
    /// It is shorter than [`MAGIC`] and all of it is the start of it (or
    /// it is empty and named `.gdb`): a compiled database cut short.
    Truncated {
        /// Its length in bytes.
        len: u64,
    },
    /// Anything else: signature text or a container, to be compiled.
    Other,
}

/// What the file at `path` is, by its first bytes (its name counts only
/// for an empty `.gdb`). A file that cannot be read is [`Sniff::Other`]:
/// compiling it reports the error.
pub fn sniff(path: &Path) -> Sniff {
    let mut head = Vec::with_capacity(MAGIC.len());
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAGIC.len() as u64).read_to_end(&mut head));
    if read.is_err() {
        return Sniff::Other;
    }
    let gdb = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gdb"));
    match head.len() {
        n if n == MAGIC.len() && head == MAGIC[..] => Sniff::Compiled,
        0 if gdb => Sniff::Truncated { len: 0 },
        n if n > 0 && n < MAGIC.len() && MAGIC.starts_with(&head) => {
            Sniff::Truncated { len: n as u64 }
        }
        _ => Sniff::Other,
    }
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
