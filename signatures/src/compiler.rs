//! The [`Compiler`]: collects signature sources (text files, directories,
//! containers), applies the ignore lists, and builds a [`Database`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::clamav::cvd as container;
use crate::clamav::hash::HashLine;
use crate::clamav::ign::IgnoreList;
use crate::clamav::line::{self, LineError, Outcome, Settings};
use crate::clamav::{hash, ldb, ndb};
use crate::db::{Database, DatabaseInfo};
use crate::error::{BuildError, CompileError};
use crate::limits::{FLEVEL, Limits};
use crate::pattern::{BodySignature, HashEntry, HashScope, LogicalSignature};

/// One signature source waiting to be compiled.
#[derive(Clone, Debug)]
struct Source {
    name: String,
    ext: String,
    text: String,
    official: bool,
}

/// Collects signature sources, then [builds](Compiler::build) a
/// [`Database`].
///
/// Ignore lists (`.ign2`, `.ign`) apply to every source whatever the order
/// they were added in (giva reads them first).
#[derive(Clone, Debug)]
pub struct Compiler {
    limits: Limits,
    flevel: u32,
    pua: bool,
    phishing: bool,
    sources: Vec<Source>,
    skipped_files: BTreeMap<String, u64>,
    version: Option<String>,
}

impl Default for Compiler {
    fn default() -> Self {
        Self::new()
    }
}

fn ext_of(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((_, e)) => e.to_ascii_lowercase(),
        None => String::new(),
    }
}

/// Line-based formats giva does not load yet; their signatures are counted
/// as `unsupported:.ext`.
const LINE_FORMATS: &[&str] = &[
    "cdb", "ftm", "pdb", "gdb", "wdb", "crb", "idb", "db", "zmd", "rmd", "pwdb",
];

/// True if files named `*.ext` hold signatures the compiler reads (text
/// formats and containers; case-insensitive).
pub(crate) fn is_supported_extension(ext: &str) -> bool {
    known_ext(&ext.to_ascii_lowercase())
}

/// True for extensions the compiler reads (text formats and containers).
fn known_ext(ext: &str) -> bool {
    matches!(
        ext,
        "hdb"
            | "hsb"
            | "hdu"
            | "hsu"
            | "fp"
            | "sfp"
            | "mdb"
            | "msb"
            | "mdu"
            | "msu"
            | "imp"
            | "ndb"
            | "ndu"
            | "sdb"
            | "ldb"
            | "ldu"
            | "ign"
            | "ign2"
            | "cvd"
            | "cld"
            | "cud"
    )
}

impl Compiler {
    /// A compiler with default [`Limits`], giva's [`FLEVEL`], PUA off and
    /// phishing signatures on (clamscan's defaults).
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A compiler with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Compiler {
            limits,
            flevel: FLEVEL,
            pua: false,
            phishing: true,
            sources: Vec::new(),
            skipped_files: BTreeMap::new(),
            version: None,
        }
    }

    /// Loads the PUA files (`.hdu .hsu .ndu .ldu`), off by default.
    pub fn pua(&mut self, on: bool) -> &mut Self {
        self.pua = on;
        self
    }

    /// Loads `.ndb` signatures named `HTML.Phishing*`/`Email.Phishing*`
    /// (on by default, as in clamscan).
    pub fn phishing(&mut self, on: bool) -> &mut Self {
        self.phishing = on;
        self
    }

    /// Overrides the emulated functionality level (for tests).
    pub fn flevel(&mut self, flevel: u32) -> &mut Self {
        self.flevel = flevel;
        self
    }

    /// Sets the version string of the built database (default: derived from
    /// the content).
    pub fn version(&mut self, version: impl Into<String>) -> &mut Self {
        self.version = Some(version.into());
        self
    }

    /// Adds a text source. `name` is a file name whose extension selects the
    /// format (`main.ndb`); `official` means the names are reported without
    /// `.UNOFFICIAL` (true only for signed containers and the bundled
    /// database). Unknown extensions are counted as skipped files.
    pub fn add_source(&mut self, name: &str, text: &str, official: bool) -> &mut Self {
        let ext = ext_of(name);
        if matches!(ext.as_str(), "cvd" | "cld" | "cud") || !known_ext(&ext) {
            self.skip_file(name, &ext, Some(text));
            return self;
        }
        self.sources.push(Source {
            name: name.to_owned(),
            ext,
            text: text.to_owned(),
            official,
        });
        self
    }

    /// Counts an unsupported file (`file:.ext`) and, for line-based
    /// formats, its signatures (`unsupported:.ext`).
    fn skip_file(&mut self, name: &str, ext: &str, text: Option<&str>) {
        tracing::warn!(file = name, "unsupported signature file skipped");
        *self
            .skipped_files
            .entry(format!("file:.{ext}"))
            .or_default() += 1;
        if let Some(text) = text.filter(|_| LINE_FORMATS.contains(&ext)) {
            let n = line::lines(text).filter(|(_, l)| !l.is_empty()).count() as u64;
            if n > 0 {
                *self
                    .skipped_files
                    .entry(format!("unsupported:.{ext}"))
                    .or_default() += n;
            }
        }
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>, CompileError> {
        let io = |source| CompileError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > self.limits.max_file_size {
            return Err(CompileError::Limit {
                file: file_name(path),
                line: None,
                name: None,
                what: format!(
                    "file is {} bytes (limit {})",
                    meta.len(),
                    self.limits.max_file_size
                ),
            });
        }
        std::fs::read(path).map_err(io)
    }

    /// Adds one file: a text format or a `.cvd`/`.cld`/`.cud` container.
    ///
    /// # Errors
    ///
    /// I/O errors, and containers that fail their integrity checks.
    pub fn add_file(&mut self, path: impl AsRef<Path>) -> Result<(), CompileError> {
        let path = path.as_ref();
        let name = file_name(path);
        let ext = ext_of(&name);
        if crate::db::layout::sniff(path) == crate::db::layout::Sniff::Compiled {
            return Err(CompileError::CompiledDatabase { file: name });
        }
        if !known_ext(&ext) {
            let text = if LINE_FORMATS.contains(&ext.as_str()) {
                Some(String::from_utf8_lossy(&self.read(path)?).into_owned())
            } else {
                None
            };
            self.skip_file(&name, &ext, text.as_deref());
            return Ok(());
        }
        let bytes = self.read(path)?;
        if matches!(ext.as_str(), "cvd" | "cld" | "cud") {
            let members = container::unpack(&bytes, &ext, &self.limits).map_err(|source| {
                CompileError::Container {
                    file: name.clone(),
                    source,
                }
            })?;
            for m in members.members {
                self.add_source(&m.name, &String::from_utf8_lossy(&m.data), members.official);
            }
            return Ok(());
        }
        let text = String::from_utf8_lossy(&bytes);
        self.add_source(&name, &text, false);
        Ok(())
    }

    /// Adds every database file in a directory (not recursive), like
    /// `clamscan -d DIR`. When both `x.cvd` and `x.cld` exist, only the
    /// newer (by header version) is read.
    ///
    /// # Errors
    ///
    /// I/O errors and any error of [`add_file`](Self::add_file).
    pub fn add_dir(&mut self, path: impl AsRef<Path>) -> Result<(), CompileError> {
        let path = path.as_ref();
        let io = |source| CompileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let entry = entry.map_err(io)?;
            if files.len() >= self.limits.max_dir_entries {
                return Err(CompileError::Limit {
                    file: path.display().to_string(),
                    line: None,
                    name: None,
                    what: format!("more than {} files", self.limits.max_dir_entries),
                });
            }
            let p = entry.path();
            if p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        let files = container::drop_older_duplicates(files);
        for f in files {
            self.add_file(&f)?;
        }
        Ok(())
    }

    /// Adds a file or a directory.
    ///
    /// # Errors
    ///
    /// See [`add_file`](Self::add_file) and [`add_dir`](Self::add_dir).
    pub fn add_path(&mut self, path: impl AsRef<Path>) -> Result<(), CompileError> {
        let path = path.as_ref();
        if path.is_dir() {
            self.add_dir(path)
        } else {
            self.add_file(path)
        }
    }

    /// Parses every source and builds the database.
    ///
    /// # Errors
    ///
    /// The first refused file (loading is all-or-nothing), or a limit.
    pub fn build(&self) -> Result<Database, BuildError> {
        let mut ign = IgnoreList::default();
        for src in self
            .sources
            .iter()
            .filter(|s| matches!(s.ext.as_str(), "ign" | "ign2"))
        {
            for (n, l) in line::lines(&src.text) {
                self.check_line(src, n, l)?;
                ign.add_line(l).map_err(|e| to_compile(src, n, e))?;
            }
        }
        let mut body: Vec<BodySignature> = Vec::new();
        let mut logical: Vec<LogicalSignature> = Vec::new();
        let mut hashes: Vec<HashEntry> = Vec::new();
        let mut allow: Vec<HashEntry> = Vec::new();
        let mut skipped = self.skipped_files.clone();
        let mut total: u64 = 0;
        for src in &self.sources {
            let settings = Settings {
                flevel: self.flevel,
                official: src.official,
                phishing: self.phishing,
                limits: &self.limits,
            };
            let pua_file = matches!(
                src.ext.as_str(),
                "hdu" | "hsu" | "mdu" | "msu" | "ndu" | "ldu"
            );
            if pua_file && !self.pua {
                let n = line::lines(&src.text)
                    .filter(|(_, l)| !l.is_empty())
                    .count() as u64;
                *skipped.entry("pua".into()).or_default() += n;
                continue;
            }
            if matches!(src.ext.as_str(), "ign" | "ign2") {
                continue;
            }
            if src.text.is_empty() {
                // clamscan 1.4.6: "Empty database file" (a comment is enough).
                return Err(BuildError::Compile(CompileError::Malformed {
                    file: src.name.clone(),
                    line: None,
                    name: None,
                    reason: "empty database file".into(),
                }));
            }
            // Lines are parsed on every core (a database of 100k
            // signatures is mostly parsing), and taken in order: the first
            // refused line is the one reported, and signatures keep their
            // order.
            let lines: Vec<(usize, &str)> = line::lines(&src.text).collect();
            let parse = |n: usize, l: &str| -> Result<Parsed, CompileError> {
                self.check_line(src, n, l)?;
                let map = |e| to_compile(src, n, e);
                Ok(match src.ext.as_str() {
                    "hdb" | "hsb" | "hdu" | "hsu" | "fp" | "sfp" | "mdb" | "msb" | "mdu"
                    | "msu" | "imp" => {
                        let kind = match src.ext.as_str() {
                            "fp" | "sfp" => HashLine::Allow,
                            "mdb" | "msb" | "mdu" | "msu" => HashLine::Section,
                            "imp" => HashLine::Import,
                            _ => HashLine::File,
                        };
                        let outcome = hash::parse_line(l, kind, &settings, &ign).map_err(map)?;
                        if kind == HashLine::Allow {
                            Parsed::Allow(outcome)
                        } else {
                            Parsed::Hash(outcome)
                        }
                    }
                    // `.sdb` is read as `.ndb` (clamav-formats.md §1).
                    "ndb" | "ndu" | "sdb" => {
                        Parsed::Body(ndb::parse_line(l, &settings, &ign).map_err(map)?)
                    }
                    "ldb" | "ldu" => {
                        Parsed::Logical(ldb::parse_line(l, &settings, &ign).map_err(map)?)
                    }
                    _ => Parsed::Other,
                })
            };
            let parsed = crate::parallel::chunks(&lines, 2048, |chunk| {
                chunk.iter().map(|&(n, l)| parse(n, l)).collect::<Vec<_>>()
            });
            for parsed in parsed.into_iter().flatten() {
                let kept = match parsed? {
                    Parsed::Hash(o) => record(o, &mut hashes, &mut skipped),
                    Parsed::Allow(o) => record(o, &mut allow, &mut skipped),
                    Parsed::Body(o) => record(o, &mut body, &mut skipped),
                    Parsed::Logical(o) => record(o, &mut logical, &mut skipped),
                    Parsed::Other => false,
                };
                if kept {
                    total += 1;
                    if total > self.limits.max_signatures {
                        return Err(BuildError::TooManySignatures {
                            count: total,
                            limit: self.limits.max_signatures,
                        });
                    }
                }
            }
        }
        let mut loaded = BTreeMap::new();
        let scoped = |scope| hashes.iter().filter(|h| h.scope == scope).count() as u64;
        loaded.insert("hash".to_owned(), scoped(HashScope::File));
        for (key, scope) in [
            ("section-hash", HashScope::Section),
            ("import-hash", HashScope::Import),
        ] {
            let n = scoped(scope);
            if n > 0 {
                loaded.insert(key.to_owned(), n);
            }
        }
        loaded.insert("body".to_owned(), body.len() as u64);
        loaded.insert("logical".to_owned(), logical.len() as u64);
        loaded.insert("allow".to_owned(), allow.len() as u64);
        let version = self
            .version
            .clone()
            .unwrap_or_else(|| self.content_version());
        let built_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        tracing::debug!(?loaded, ?skipped, "signature database built");
        let info = DatabaseInfo {
            version,
            built_at,
            loaded,
            skipped,
        };
        Ok(Database::from_parts(info, body, logical, hashes, allow))
    }

    fn content_version(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.sources {
            h.update((s.name.len() as u64).to_le_bytes());
            h.update(s.name.as_bytes());
            h.update([u8::from(s.official)]);
            h.update((s.text.len() as u64).to_le_bytes());
            h.update(s.text.as_bytes());
        }
        let d = h.finalize();
        let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    fn check_line(&self, src: &Source, n: usize, l: &str) -> Result<(), CompileError> {
        if l.is_empty() {
            return Err(CompileError::Malformed {
                file: src.name.clone(),
                line: Some(n),
                name: None,
                reason: "empty line (malformed database)".into(),
            });
        }
        let limit = if src.ext == "ldb" {
            self.limits.max_ldb_line_len
        } else {
            self.limits.max_line_len
        };
        if l.len() > limit {
            return Err(CompileError::Limit {
                file: src.name.clone(),
                line: Some(n),
                name: None,
                what: format!(
                    "line is {} bytes (limit {limit}; ClamAV refuses a database with a longer line)",
                    l.len()
                ),
            });
        }
        if src.ext == "ldb" && l.ends_with(';') {
            return Err(CompileError::Malformed {
                file: src.name.clone(),
                line: Some(n),
                name: l.split(';').next().map(str::to_owned),
                reason: "trailing `;` (malformed database)".into(),
            });
        }
        Ok(())
    }
}

/// One parsed line, of whichever kind its file holds.
enum Parsed {
    Hash(Outcome<HashEntry>),
    Allow(Outcome<HashEntry>),
    Body(Outcome<BodySignature>),
    Logical(Outcome<LogicalSignature>),
    Other,
}

/// Stores a kept signature or counts a skipped one; true if kept.
fn record<T>(outcome: Outcome<T>, dst: &mut Vec<T>, skipped: &mut BTreeMap<String, u64>) -> bool {
    match outcome {
        Outcome::Keep(x) => {
            dst.push(x);
            true
        }
        Outcome::Skip(reason) => {
            *skipped.entry(reason).or_default() += 1;
            false
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn to_compile(src: &Source, n: usize, e: LineError) -> CompileError {
    if e.limit {
        CompileError::Limit {
            file: src.name.clone(),
            line: Some(n),
            name: e.name,
            what: e.reason,
        }
    } else {
        CompileError::Malformed {
            file: src.name.clone(),
            line: Some(n),
            name: e.name,
            reason: e.reason,
        }
    }
}
