//! The compiled signature database: an immutable, validated view of one
//! database file (see [`layout`](crate::db::layout)), in memory or mapped.
//!
//! The hash tables are binary-searched in place in the file's bytes, so a
//! database with a million hashes opens in the time it takes to check its
//! checksum. The logical signatures are decoded on open; the body
//! signatures on first use (an engine stored in the file, see
//! [`EXT_ENGINE`], never needs them).

use std::sync::OnceLock;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::db::info::DatabaseInfo;
use crate::db::layout::{
    self, EXT_MIN, SEC_ALLOW, SEC_BODY, SEC_INFO, SEC_LOGICAL, Section, algo_index, record_len,
    scope_index, scope_kinds,
};
use crate::db::names::{NAME_BLOCK, decode_name};
use crate::db::write::{assemble, encode};
use crate::error::LoadError;

/// The extension section holding the built scan engine (written by `giva
/// db compile`, read by `giva_engine::Engine::new`). Opaque here.
pub const EXT_ENGINE: u32 = EXT_MIN;
use crate::map::MappedFile;
use crate::pattern::{
    BodySignature, ByteSet, HashAlgo, HashEntry, HashScope, LogicalSignature, Token,
};
use crate::wire::{Reader, WireError};

#[derive(Debug)]
enum Storage {
    Owned(Vec<u8>),
    Mapped(MappedFile),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(m) => m,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    info: DatabaseInfo,
    /// Decoded from `body_sec` on first use.
    body: OnceLock<Result<Vec<BodySignature>, WireError>>,
    body_sec: Section,
    body_count: usize,
    logical: Vec<LogicalSignature>,
    /// Extension sections (kind >= [`EXT_MIN`]) by kind.
    extensions: BTreeMap<u32, Section>,
    storage: Option<Storage>,
    payload_start: usize,
    /// Detection records by scope ([`scope_index`]) and algorithm.
    hash: [[Section; 3]; 3],
    allow: [Section; 3],
    /// The names of the `hash` records.
    names: [[Section; 3]; 3],
}

/// An immutable, validated signature database. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug, Default)]
pub struct Database {
    inner: Arc<Inner>,
}

fn section_error(section: &'static str, source: WireError) -> LoadError {
    LoadError::Section { section, source }
}

fn decode_map(r: &mut Reader<'_>) -> Result<BTreeMap<String, u64>, WireError> {
    let n = r.count(2)?;
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let k = r.str()?.to_owned();
        let v = r.var()?;
        m.insert(k, v);
    }
    Ok(m)
}

/// The header of the file `b`, checked to announce exactly the payload
/// that follows it.
fn header_with_payload(b: &[u8]) -> Result<layout::Header, LoadError> {
    let h = layout::parse_header(b)?;
    let actual = (b.len() - h.header_len.min(b.len())) as u64;
    if actual < h.payload_len {
        return Err(LoadError::Truncated {
            expected: h.payload_len,
            actual,
        });
    }
    if actual != h.payload_len {
        return Err(LoadError::PayloadLength {
            expected: h.payload_len,
            actual,
        });
    }
    Ok(h)
}

/// Decoded signatures and info handed over by `from_parts`.
type Decoded = (DatabaseInfo, Vec<BodySignature>, Vec<LogicalSignature>);

fn open_storage(storage: Storage, decoded: Option<Decoded>) -> Result<Inner, LoadError> {
    let b: &[u8] = &storage;
    let h = header_with_payload(b)?;
    let payload = &b[h.header_len..];
    let secs = layout::parse_sections(payload)?;
    let get = |k: u32| secs.get(&k).copied();
    let slice = |s: Section| &payload[s.start..s.start + s.len];
    let mut hash = [[Section::default(); 3]; 3];
    let mut allow = [Section::default(); 3];
    let mut names = [[Section::default(); 3]; 3];
    let table = |kind: u32, algo: HashAlgo| -> Result<Section, LoadError> {
        let Some(s) = get(kind) else {
            return Ok(Section::default());
        };
        if s.len % record_len(algo) != 0 {
            return Err(LoadError::Corrupt(format!(
                "hash section {kind} length {} is not a multiple of {}",
                s.len,
                record_len(algo)
            )));
        }
        Ok(s)
    };
    for algo in HashAlgo::ALL {
        let i = algo_index(algo) as usize;
        allow[i] = table(SEC_ALLOW + i as u32, algo)?;
        for scope in HashScope::ALL {
            let (kind, names_kind) = scope_kinds(scope);
            let si = scope_index(scope);
            hash[si][i] = table(kind + i as u32, algo)?;
            // Each block of names needs its start in the index.
            let records = hash[si][i].len / record_len(algo);
            match get(names_kind + i as u32) {
                Some(s) if s.len >= records.div_ceil(NAME_BLOCK) * 4 => names[si][i] = s,
                None if records == 0 => {}
                _ => {
                    return Err(LoadError::Corrupt(format!(
                        "name section {} does not fit {records} hash records",
                        names_kind + i as u32
                    )));
                }
            }
        }
    }
    let need = |k: u32, what: &str| {
        get(k).ok_or_else(|| LoadError::Corrupt(format!("missing {what} section")))
    };
    let info_sec = need(SEC_INFO, "info")?;
    let body_sec = need(SEC_BODY, "body")?;
    let logical_sec = need(SEC_LOGICAL, "logical")?;
    let body_count = Reader::new(slice(body_sec))
        .count(1)
        .map_err(|e| section_error("body", e))?;
    let extensions = secs
        .iter()
        .filter(|(k, _)| **k >= EXT_MIN)
        .map(|(k, s)| (*k, *s))
        .collect();
    let (info, body, logical) = match decoded {
        Some((info, body, logical)) => (info, OnceLock::from(Ok(body)), logical),
        None => {
            let mut r = Reader::new(slice(info_sec));
            let loaded = decode_map(&mut r).map_err(|e| section_error("info", e))?;
            let skipped = decode_map(&mut r).map_err(|e| section_error("info", e))?;
            let info = DatabaseInfo {
                version: h.version.clone(),
                built_at: h.built_at,
                loaded,
                skipped,
            };
            let logical = Reader::new(slice(logical_sec))
                .list(1)
                .map_err(|e| section_error("logical", e))?;
            (info, OnceLock::new(), logical)
        }
    };
    let payload_start = h.header_len;
    Ok(Inner {
        info,
        body,
        body_sec,
        body_count,
        logical,
        extensions,
        storage: Some(storage),
        payload_start,
        hash,
        allow,
        names,
    })
}

fn verify_checksum(b: &[u8]) -> Result<(), LoadError> {
    let h = header_with_payload(b)?;
    if layout::checksum(&b[56..]) != h.checksum {
        return Err(LoadError::ChecksumMismatch);
    }
    Ok(())
}

fn tokens_estimate(ts: &[Token]) -> usize {
    // A token, and what its box holds (a list's header and its items).
    let token = std::mem::size_of::<Token>();
    ts.iter()
        .map(|t| match t {
            Token::Alt(bs) => {
                token + 24 + bs.iter().map(|b| 24 + tokens_estimate(b)).sum::<usize>()
            }
            Token::NotAlt { branches, .. } => {
                token + 24 + branches.iter().map(|b| 24 + b.len()).sum::<usize>()
            }
            Token::Set(_) => token + std::mem::size_of::<ByteSet>(),
            Token::Byte { .. } => token,
        })
        .sum()
}

impl Database {
    /// Builds a database straight from compiled parts (used by the
    /// [`Compiler`](crate::Compiler) and by tests).
    pub fn from_parts(
        info: DatabaseInfo,
        body: Vec<BodySignature>,
        logical: Vec<LogicalSignature>,
        hashes: Vec<HashEntry>,
        allow: Vec<HashEntry>,
    ) -> Self {
        let bytes = encode(&info, &body, &logical, &hashes, &allow);
        match open_storage(Storage::Owned(bytes), Some((info, body, logical))) {
            Ok(inner) => Database {
                inner: Arc::new(inner),
            },
            // Unreachable: the encoder and the reader agree (covered by tests).
            Err(_) => Database::default(),
        }
    }

    /// Opens a compiled database file: maps it read-only and validates the
    /// header, the SHA-256 of the payload, and every section bound.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] saying why the file was refused.
    pub fn open(path: impl AsRef<Path>) -> Result<Database, LoadError> {
        let path = path.as_ref();
        let map = MappedFile::open_database(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        verify_checksum(&map)?;
        let inner = open_storage(Storage::Mapped(map), None)?;
        Ok(Database {
            inner: Arc::new(inner),
        })
    }

    /// Opens a compiled database file as [`open`](Self::open) does, and
    /// runs `during` on it while the checksum is being verified on other
    /// threads: loading then takes about the longer of the two instead of
    /// their sum. `during` sees a database whose header and section bounds
    /// are checked but whose content is not yet known to be intact, so it
    /// must treat it as untrusted input (decode with bounds checks, no
    /// side effects that outlive a refusal); its result is returned only
    /// if the checksum matches, and dropped otherwise.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    pub fn open_overlapped<T>(
        path: impl AsRef<Path>,
        during: impl FnOnce(&Database) -> T,
    ) -> Result<(Database, T), LoadError> {
        let path = path.as_ref();
        let map = MappedFile::open_database(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let db = match open_storage(Storage::Mapped(map), None) {
            Ok(inner) => Database {
                inner: Arc::new(inner),
            },
            // Say what `open` says of the same file (a damaged section
            // table is a checksum mismatch first).
            Err(_) => {
                let db = Database::open(path)?;
                let result = during(&db);
                return Ok((db, result));
            }
        };
        let bytes: &[u8] = db.inner.storage.as_deref().unwrap_or(&[]);
        let h = layout::parse_header(bytes)?;
        let data = bytes.get(56..).unwrap_or(&[]);
        let tree = layout::TreeHash::new(data);
        let result = std::thread::scope(|s| {
            for _ in 0..layout::checksum_threads(data.len()) {
                s.spawn(|| tree.work());
            }
            let result = during(&db);
            // Help with what is left rather than wait.
            tree.work();
            result
        });
        if tree.finish() != h.checksum {
            return Err(LoadError::ChecksumMismatch);
        }
        Ok((db, result))
    }

    /// Validates and loads a compiled database from bytes (copied).
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    pub fn from_bytes(bytes: &[u8]) -> Result<Database, LoadError> {
        verify_checksum(bytes)?;
        let inner = open_storage(Storage::Owned(bytes.to_vec()), None)?;
        Ok(Database {
            inner: Arc::new(inner),
        })
    }

    /// The serialized file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.inner.storage {
            Some(s) => s.to_vec(),
            None => encode(&self.inner.info, &[], &[], &[], &[]),
        }
    }

    /// Writes the database file atomically: to a temporary file in the same
    /// directory, fsync, then rename over `path`.
    ///
    /// # Errors
    ///
    /// [`LoadError::Io`] on any I/O failure.
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<(), LoadError> {
        let path = path.as_ref();
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let bytes = self.to_bytes();
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map_err(io)
    }

    /// Facts about the database.
    pub fn info(&self) -> &DatabaseInfo {
        &self.inner.info
    }

    /// The version string.
    pub fn version(&self) -> &str {
        &self.inner.info.version
    }

    /// True if the database is a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.inner.storage, Some(Storage::Mapped(_)))
    }

    /// A rough estimate of the memory the database uses, in bytes (the file
    /// bytes, mapped or owned, plus the decoded signatures).
    pub fn memory_estimate(&self) -> u64 {
        let file = self.inner.storage.as_ref().map_or(0, |s| s.len());
        let body: &[BodySignature] = match self.inner.body.get() {
            Some(Ok(b)) => b,
            _ => &[],
        };
        let sigs: usize = body
            .iter()
            .map(|b| {
                96 + b.name.len()
                    + b.pattern
                        .parts
                        .iter()
                        .map(|p| tokens_estimate(&p.tokens))
                        .sum::<usize>()
            })
            .sum::<usize>()
            + self
                .inner
                .logical
                .iter()
                .map(|l| {
                    128 + l.name.len()
                        + l.subsigs
                            .iter()
                            .flat_map(|s| &s.variants)
                            .map(|v| {
                                96 + v
                                    .parts
                                    .iter()
                                    .map(|p| tokens_estimate(&p.tokens))
                                    .sum::<usize>()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>();
        (file + sigs) as u64
    }

    /// The body (`.ndb`) signatures, decoded on first use; empty if they
    /// cannot be decoded (see [`try_body_signatures`](Self::try_body_signatures)).
    pub fn body_signatures(&self) -> &[BodySignature] {
        self.try_body_signatures().unwrap_or(&[])
    }

    /// The body (`.ndb`) signatures, decoded on first use.
    ///
    /// # Errors
    ///
    /// [`LoadError::Section`] if the body section does not decode (the
    /// checksum matched, so the file was written wrong).
    pub fn try_body_signatures(&self) -> Result<&[BodySignature], LoadError> {
        self.inner
            .body
            .get_or_init(|| Reader::new(self.section(self.inner.body_sec)).list(1))
            .as_ref()
            .map(Vec::as_slice)
            .map_err(|e| section_error("body", e.clone()))
    }

    /// How many body signatures there are (without decoding them).
    pub fn body_count(&self) -> usize {
        self.inner.body_count
    }

    /// The bytes of extension section `kind` (at least [`EXT_ENGINE`]),
    /// if the file has one.
    pub fn extension(&self, kind: u32) -> Option<&[u8]> {
        self.inner.extensions.get(&kind).map(|&s| self.section(s))
    }

    /// This database with extension section `kind` set to `bytes`
    /// (replacing one of that kind); everything else is kept as is.
    ///
    /// # Errors
    ///
    /// [`LoadError::Corrupt`] if `kind` is not an extension kind.
    pub fn with_extension(&self, kind: u32, bytes: &[u8]) -> Result<Database, LoadError> {
        if kind < EXT_MIN {
            return Err(LoadError::Corrupt(format!(
                "section {kind} is not an extension (at least {EXT_MIN})"
            )));
        }
        let all = self.to_bytes();
        let h = layout::parse_header(&all)?;
        let payload = &all[h.header_len..];
        let mut sections: Vec<(u32, Vec<u8>)> = layout::parse_sections(payload)?
            .into_iter()
            .filter(|(k, _)| *k != kind)
            .map(|(k, s)| (k, payload[s.start..s.start + s.len].to_vec()))
            .collect();
        sections.push((kind, bytes.to_vec()));
        let out = assemble(&h.version, h.built_at, &sections);
        let inner = open_storage(Storage::Owned(out), None)?;
        Ok(Database {
            inner: Arc::new(inner),
        })
    }

    /// The logical (`.ldb`) signatures.
    pub fn logical_signatures(&self) -> &[LogicalSignature] {
        &self.inner.logical
    }

    fn section(&self, s: Section) -> &[u8] {
        let Some(st) = &self.inner.storage else {
            return &[];
        };
        let start = self.inner.payload_start + s.start;
        st.get(start..start + s.len).unwrap_or(&[])
    }

    /// True if a detection or allow-list hash of `algo` exists for files of
    /// `size` bytes (or for any size), so the scanner must compute it.
    pub fn needs_hash(&self, algo: HashAlgo, size: u64) -> bool {
        let i = algo_index(algo) as usize;
        [self.inner.hash[0][i], self.inner.allow[i]]
            .into_iter()
            .any(|sec| self.has_size(sec, algo, size))
    }

    /// True if a detection hash of `scope` and `algo` exists for parts of
    /// `size` bytes (or for any size).
    pub fn needs_scoped_hash(&self, scope: HashScope, algo: HashAlgo, size: u64) -> bool {
        let sec = self.inner.hash[scope_index(scope)][algo_index(algo) as usize];
        self.has_size(sec, algo, size)
    }

    /// True if `table` has a record for `size` or for any size.
    fn has_size(&self, table: Section, algo: HashAlgo, size: u64) -> bool {
        let t = Records::new(self.section(table), algo);
        t.size(t.len().wrapping_sub(1)) == Some(u64::MAX)
            || t.size(t.lower_bound(&size.to_be_bytes())) == Some(size)
    }

    /// Indices of the records of `table` with this digest and a size of
    /// `size` or any.
    fn matching(
        &self,
        table: Section,
        algo: HashAlgo,
        digest: &[u8],
        size: u64,
    ) -> impl Iterator<Item = usize> + use<> {
        let t = Records::new(self.section(table), algo);
        let usable = digest.len() == algo.digest_len();
        let mut key = [0u8; 8 + 32];
        let mut equal = |size: u64| {
            if !usable {
                return 0..0;
            }
            key[..8].copy_from_slice(&size.to_be_bytes());
            key[8..8 + digest.len()].copy_from_slice(digest);
            let key = &key[..8 + digest.len()];
            let lo = t.lower_bound(key);
            let hi = (lo..t.len())
                .find(|&j| t.get(j) != Some(key))
                .unwrap_or(t.len());
            lo..hi
        };
        let exact = equal(size);
        let any = if size == u64::MAX {
            0..0
        } else {
            equal(u64::MAX)
        };
        exact.chain(any)
    }

    /// Names of the detection hashes equal to `digest` for a file of `size`
    /// bytes.
    pub fn lookup_hash<'a>(
        &'a self,
        algo: HashAlgo,
        digest: &'a [u8],
        size: u64,
    ) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        self.lookup_scoped_hash(HashScope::File, algo, digest, size)
    }

    /// Names of the detection hashes of `scope` equal to `digest` for a
    /// part (a PE section, an import table) of `size` bytes.
    pub fn lookup_scoped_hash<'a>(
        &'a self,
        scope: HashScope,
        algo: HashAlgo,
        digest: &'a [u8],
        size: u64,
    ) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        let i = algo_index(algo) as usize;
        let si = scope_index(scope);
        let names = self.section(self.inner.names[si][i]);
        self.matching(self.inner.hash[si][i], algo, digest, size)
            .map(move |r| {
                // Unreachable for a file this crate wrote (checksummed,
                // section sizes checked): the detection is still reported.
                decode_name(names, r).map_or(Cow::Borrowed(UNREADABLE_NAME), Cow::Owned)
            })
    }

    /// True if the allow-list (`.fp`/`.sfp`) holds `digest` for a file of
    /// `size` bytes.
    pub fn is_allowed(&self, algo: HashAlgo, digest: &[u8], size: u64) -> bool {
        let table = self.inner.allow[algo_index(algo) as usize];
        self.matching(table, algo, digest, size).next().is_some()
    }

    /// Number of whole-file detection and allow-list hash entries.
    pub fn hash_counts(&self) -> (u64, u64) {
        (
            self.scoped_hash_count(HashScope::File),
            count_records(&self.inner.allow),
        )
    }

    /// Number of detection hash entries of `scope`.
    pub fn scoped_hash_count(&self, scope: HashScope) -> u64 {
        count_records(&self.inner.hash[scope_index(scope)])
    }
}

/// The records in one table per algorithm.
fn count_records(secs: &[Section; 3]) -> u64 {
    HashAlgo::ALL
        .iter()
        .map(|&a| (secs[algo_index(a) as usize].len / record_len(a)) as u64)
        .sum()
}

/// Reported for a detection hash whose name cannot be decoded.
const UNREADABLE_NAME: &str = "Giva.Hash.UnreadableName";

/// A hash table of fixed-size records, sorted bytewise, searched in place.
struct Records<'a> {
    t: &'a [u8],
    len: usize,
}

impl<'a> Records<'a> {
    fn new(t: &'a [u8], algo: HashAlgo) -> Self {
        Records {
            t,
            len: record_len(algo),
        }
    }

    fn len(&self) -> usize {
        self.t.len() / self.len
    }

    fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.t.get(i.checked_mul(self.len)?..(i + 1) * self.len)
    }

    /// Record `i`'s file size (`u64::MAX`: any).
    fn size(&self, i: usize) -> Option<u64> {
        Some(u64::from_be_bytes(self.get(i)?.get(..8)?.try_into().ok()?))
    }

    /// The first record not less than `key` (a prefix of a record).
    fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self
                .get(mid)
                .is_some_and(|r| r.get(..key.len()).unwrap_or(r) < key)
            {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}
