//! The walk: a file's layers, each scanned by the engine and, when its
//! magic says it is a container, opened, its members scanned and opened in
//! turn, under one file's [`Limits`].

use std::sync::Arc;
use std::time::Instant;

use giva_engine::cache::content_key;
use giva_engine::{
    CachedVerdict, Detection, Engine, Limit, Outcome, ScanOptions, ScanResult, VerdictCache,
};
use sha2::{Digest, Sha256};

use crate::exe::exe_info;
use crate::extract::{Cut, read_member};
use crate::formats::{Entry, Flow, FormatError, members};
use crate::kind::{Kind, detect, embedded, target_type};
use crate::limits::Limits;

/// Where in a file something was found or skipped: the member names from
/// the outside in (`["mid.zip", "p.exe"]`), empty for the file itself.
pub type MemberPath = Vec<String>;

/// A detection and the layer it was made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The layer.
    pub path: MemberPath,
    /// The detection.
    pub detection: Detection,
}

/// A part of the file that was not scanned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The layer (a container: what is inside it was not scanned, or not
    /// all of it).
    pub path: MemberPath,
    /// Why.
    pub limit: Limit,
    /// In words, for people (the format's error, the limit's value).
    pub detail: String,
}

/// A file's decomposition.
#[derive(Debug, Clone)]
pub struct Report {
    /// Everything merged: the detections of every layer, bytes scanned in
    /// all layers, and the outcome (infected if any layer is; otherwise not
    /// clean if anything was not scanned).
    pub result: ScanResult,
    /// The detections with their layers, in the order found.
    pub found: Vec<Found>,
    /// What was not scanned.
    pub gaps: Vec<Gap>,
    /// Members extracted.
    pub members: u64,
    /// Of those, members whose verdict came from the cache (see
    /// [`Decomposer::with_cache`]).
    pub cached: u64,
}

impl Report {
    /// The report of a file scanned whole that is not a container: its own
    /// result, and the limit that stopped it, if one did.
    pub fn of(result: ScanResult) -> Report {
        let gaps = match result.outcome {
            Outcome::LimitExceeded(limit) => vec![Gap {
                path: Vec::new(),
                limit,
                detail: "stopped at the limit".into(),
            }],
            _ => Vec::new(),
        };
        Report {
            result,
            found: Vec::new(),
            gaps,
            members: 0,
            cached: 0,
        }
    }

    /// As `clamscan --alert-exceeds-max` (`exceeds_max`) and
    /// `--alert-encrypted` (`encrypted`): a file not otherwise infected
    /// whose first such gap is a limit (an encrypted member) is infected
    /// by ClamAV's heuristic name for it (`Heuristics.Limits.Exceeded.*`,
    /// `Heuristics.Encrypted.Archive`), found where the gap is.
    #[must_use]
    pub fn with_alerts(mut self, exceeds_max: bool, encrypted: bool) -> Report {
        if self.result.is_infected() || !(exceeds_max || encrypted) {
            return self;
        }
        let alert = self.gaps.iter().find_map(|g| {
            let on = match g.limit {
                Limit::Encrypted => encrypted,
                _ => exceeds_max,
            };
            on.then(|| g.limit.alert_name())
                .flatten()
                .map(|n| (n, g.path.clone()))
        });
        if let Some((name, path)) = alert {
            let d = Detection {
                name: name.to_string(),
                kind: giva_engine::DetectionKind::Body,
            };
            self.found.push(Found {
                path,
                detection: d.clone(),
            });
            self.result.detections.push(d);
            self.result.outcome = Outcome::Infected;
        }
        self
    }

    /// `path` joined with `!` after the file's own name, as in
    /// `outer.zip!mid.zip!p.exe`.
    pub fn joined(file: &str, path: &[String]) -> String {
        std::iter::once(file)
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("!")
    }
}

/// Longest member name kept, in characters.
const MAX_NAME: usize = 255;

/// A member name as an archive gives it, fit for a log line, a terminal or
/// an event: control characters (and `!`, the path separator) replaced,
/// and cut to [`MAX_NAME`] characters.
fn printable(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(MAX_NAME)
        .map(|c| if c.is_control() || c == '!' { '?' } else { c })
        .collect();
    if name.chars().count() > MAX_NAME {
        out.push('…');
    }
    out
}

/// Opens files' layers and scans each with an engine.
#[derive(Debug, Clone)]
pub struct Decomposer {
    engine: Engine,
    opts: ScanOptions,
    limits: Limits,
    cache: Option<(Arc<VerdictCache>, u64)>,
    /// Some logical signature depends on the container (`Container:`): a
    /// member's verdict is cached with its container's type.
    container_keyed: bool,
}

struct Walk<'a> {
    d: &'a Decomposer,
    started: Instant,
    scanned: u64,
    members: u64,
    cached: u64,
    found: Vec<Found>,
    gaps: Vec<Gap>,
    detections: Vec<Detection>,
    stop: bool,
    /// ClamAV's type of the layer that holds the layers scanned now
    /// (`Container:`): `CL_TYPE_ANY` for the file itself.
    parent: &'static str,
    /// The same for the layer being opened (its normalized forms').
    outer: &'static str,
}

/// Whether a logical signature of `engine` names a container type.
fn engine_has_container_keys(engine: &Engine) -> bool {
    engine
        .database()
        .logical_signatures()
        .iter()
        .any(|l| l.container.is_some())
}

/// ClamAV's type of a layer of `kind` as the container of what is found
/// in it: an unpacked image, a carried PE or an installer stub's files are
/// the executable's.
fn container_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Upx | Kind::WwPack | Kind::Mew | Kind::EmbeddedPe | Kind::InstallShield => {
            "CL_TYPE_MSEXE"
        }
        k => {
            let n = k.clamav_name();
            n.split(' ').next().unwrap_or(n)
        }
    }
}

impl Decomposer {
    /// A decomposer scanning with `engine` and `opts` (all-match or first
    /// match; the per-layer byte and time limits come from `limits`).
    pub fn new(engine: Engine, opts: ScanOptions, limits: Limits) -> Self {
        Decomposer {
            container_keyed: engine_has_container_keys(&engine),
            engine,
            opts,
            limits,
            cache: None,
        }
    }

    /// Also looks every member up in `cache` by the SHA-256 of its bytes,
    /// under database generation `epoch`, and stores the verdict of each
    /// member scanned completely: a known member in a new wrapper is not
    /// scanned again. A member's verdict covers its own layers; a verdict
    /// with a part not scanned is not stored.
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<VerdictCache>, epoch: u64) -> Self {
        self.cache = Some((cache, epoch));
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Scans `data` (a file called `name`) and every layer inside it.
    pub fn scan(&self, data: &[u8], name: &str) -> Report {
        let started = Instant::now();
        let root = self
            .engine
            .scan_bytes(data, &self.layer_opts(data, started, 0));
        self.scan_inside(data, name, root, started)
    }

    /// Goes on from `root`, the result of scanning `data` itself (by any
    /// means: a split scan, a streamed one; with `file_type` set to
    /// [`target_type`] of `data`, so that typed signatures apply as in a
    /// member) begun at `started`: when `data`
    /// is a container, its layers. A file that is not costs one magic
    /// check.
    pub fn scan_inside(
        &self,
        data: &[u8],
        name: &str,
        root: ScanResult,
        started: Instant,
    ) -> Report {
        let kind = detect(data);
        let mut w = Walk {
            d: self,
            started,
            scanned: root.bytes_scanned,
            members: 0,
            cached: 0,
            found: Vec::new(),
            gaps: Vec::new(),
            detections: Vec::new(),
            stop: false,
            parent: "CL_TYPE_ANY",
            outer: "CL_TYPE_ANY",
        };
        let root_outcome = root.outcome;
        // A file on the allow list (`.fp`, `.sfp`) is not opened, as in
        // ClamAV: the operator vouched for all of it.
        let allowed = root.allowed;
        w.take(&[], root);
        if !allowed && !w.stop {
            if kind.is_container() {
                w.open(kind, data, name, &mut Vec::new(), 0);
            } else {
                w.open_embedded(data, &mut Vec::new(), 0);
            }
        }
        let outcome = if !w.detections.is_empty() {
            Outcome::Infected
        } else if let Some(g) = w.gaps.first() {
            Outcome::LimitExceeded(g.limit)
        } else {
            root_outcome
        };
        Report {
            result: ScanResult {
                detections: w.detections,
                outcome,
                bytes_scanned: w.scanned,
                allowed,
            },
            found: w.found,
            gaps: w.gaps,
            members: w.members,
            cached: w.cached,
        }
    }

    /// Options for the layer `data`: its type, and the file's scan-size
    /// and time budget left.
    fn layer_opts(&self, data: &[u8], started: Instant, scanned: u64) -> ScanOptions {
        let left = self.limits.max_scan_time.saturating_sub(started.elapsed());
        ScanOptions {
            max_scan_bytes: {
                let bytes_left = self.limits.max_scan_size.saturating_sub(scanned);
                Some(
                    self.opts
                        .max_scan_bytes
                        .map_or(bytes_left, |o| o.min(bytes_left)),
                )
            },
            max_scan_time: Some(self.opts.max_scan_time.map_or(left, |o| o.min(left))),
            ..typed_options(&self.opts, data)
        }
    }
}

/// `opts` for the layer `data`: its type (ClamAV's target number) decides
/// which typed signatures apply, and an executable's structure where its
/// executable offsets lie.
pub fn typed_options(opts: &ScanOptions, data: &[u8]) -> ScanOptions {
    let target = target_type(data);
    // The headers are the guest's: a reader's bug must not take the
    // appliance down (a panic here reads as headers ClamAV refuses).
    let exe = std::panic::catch_unwind(|| exe_info(data, target))
        .ok()
        .flatten();
    ScanOptions {
        file_type: Some(target),
        exe: exe.map(Arc::new),
        ..opts.clone()
    }
}

impl Walk<'_> {
    /// Takes one layer's result.
    fn take(&mut self, path: &[String], r: ScanResult) {
        match r.outcome {
            Outcome::Infected => {
                for d in r.detections {
                    self.found.push(Found {
                        path: path.to_vec(),
                        detection: d.clone(),
                    });
                    self.detections.push(d);
                }
                if !self.d.opts.all_match {
                    self.stop = true;
                }
            }
            Outcome::LimitExceeded(limit) => self.gap(path, limit, "stopped at the limit"),
            _ => {}
        }
    }

    fn gap(&mut self, path: &[String], limit: Limit, detail: impl Into<String>) {
        self.gaps.push(Gap {
            path: path.to_vec(),
            limit,
            detail: detail.into(),
        });
    }

    /// Opens the container `data` at `path`, `depth` levels down.
    fn open(&mut self, kind: Kind, data: &[u8], name: &str, path: &mut MemberPath, depth: u32) {
        if !kind.is_supported() {
            self.gap(
                path,
                Limit::Unsupported,
                format!("{} ({}) is not opened", kind.name(), kind.clamav_name()),
            );
            return;
        }
        if depth >= self.d.limits.max_recursion {
            self.gap(
                path,
                Limit::Recursion,
                format!("more than {} levels", self.d.limits.max_recursion),
            );
            return;
        }
        // A parser that panics loses this container, not the process.
        let saved = (self.parent, self.outer);
        (self.outer, self.parent) = (self.parent, container_type(kind));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            members(kind, data, name, &self.d.limits, &mut |entry| {
                self.member(entry, path, depth)
            })
        }));
        (self.parent, self.outer) = saved;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(FormatError::Overlapping)) => {
                self.gap(path, Limit::Bomb, FormatError::Overlapping.to_string());
            }
            Ok(Err(e)) => self.gap(path, Limit::Unreadable, format!("{kind}: {e}")),
            Err(_) => {
                tracing::error!(kind = %kind, "a parser panicked; the container is not scanned");
                self.gap(
                    path,
                    Limit::Unreadable,
                    format!("{kind}: the parser failed"),
                );
            }
        }
    }

    /// Archives in the overlay of the executable `data` at `path` (nothing
    /// for a file that is not one): each magic is tried, in order, and the first that opens as its
    /// kind is a layer named `@OFFSET`. A magic that does not open is no
    /// archive: no gap, as ClamAV finds no archive there either.
    fn open_embedded(&mut self, data: &[u8], path: &mut MemberPath, depth: u32) {
        if depth >= self.d.limits.max_recursion {
            return;
        }
        // The kinds of archive already opened: one of each, as a
        // self-extractor has one (a later magic of that kind is most often
        // a header inside it); a packed image does not count.
        let mut opened_kinds: Vec<Kind> = Vec::new();
        for (at, kind) in embedded(data) {
            if self.stop {
                break;
            }
            if opened_kinds.contains(&kind) {
                continue;
            }
            let slice = &data[at..];
            let before = (self.members, self.gaps.len());
            path.push(match kind {
                Kind::Upx => "UPX".to_string(),
                Kind::WwPack => "WWPack".to_string(),
                Kind::Mew => "MEW".to_string(),
                _ => format!("@{at}"),
            });
            let saved = (self.parent, self.outer);
            (self.outer, self.parent) = (self.parent, container_type(kind));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                members(kind, slice, "", &self.d.limits, &mut |entry| {
                    self.member(entry, path, depth)
                })
            }));
            (self.parent, self.outer) = saved;
            path.pop();
            let opened = matches!(result, Ok(Ok(()))) && self.members > before.0;
            if opened && !kind.is_packer() {
                opened_kinds.push(kind);
            } else if self.members == before.0 {
                // Nothing came of it: not an archive.
                self.gaps.truncate(before.1);
            }
        }
    }

    /// One member: counted, read under the caps, scanned, and opened if it
    /// is a container. Its name, the archive's word, is made fit to print.
    fn member(&mut self, entry: Entry<'_>, path: &mut MemberPath, depth: u32) -> Flow {
        if self.stop {
            return Flow::Stop;
        }
        let limits = &self.d.limits;
        if self.started.elapsed() >= limits.max_scan_time {
            self.gap(path, Limit::ScanTime, "the file's time ran out");
            return Flow::Stop;
        }
        // A normalized form of the file is no member: not counted.
        if let Entry::Normalized { reader, target } = entry {
            return self.normalized(reader, target, path);
        }
        self.members += 1;
        if self.members > limits.max_files {
            self.gap(
                path,
                Limit::Files,
                format!("more than {} members", limits.max_files),
            );
            return Flow::Stop;
        }
        let (name, reader, compressed, nested) = match entry {
            Entry::File {
                name,
                reader,
                compressed,
            } => (name, reader, compressed, false),
            Entry::Message { name, reader } => (name, reader, None, true),
            Entry::Encrypted { name } => {
                path.push(printable(&name));
                self.gap(path, Limit::Encrypted, "encrypted");
                path.pop();
                return Flow::Continue;
            }
            Entry::Unsupported { name, why } => {
                path.push(printable(&name));
                self.gap(path, Limit::Unsupported, why);
                path.pop();
                return Flow::Continue;
            }
            Entry::Corrupt { name, why } => {
                path.push(printable(&name));
                self.gap(path, Limit::Unreadable, why);
                path.pop();
                return Flow::Continue;
            }
            // Taken above.
            Entry::Normalized { .. } => return Flow::Continue,
        };
        path.push(printable(&name));
        let deadline = self.started + limits.max_scan_time;
        let flow = match read_member(reader, compressed, limits, Some(deadline)) {
            Err(Cut::TooLarge) => {
                self.gap(
                    path,
                    Limit::FileSize,
                    format!("larger than {} bytes", limits.max_file_size),
                );
                Flow::Continue
            }
            Err(Cut::Ratio) => {
                self.gap(
                    path,
                    Limit::Bomb,
                    format!("expands more than {} times", limits.max_ratio),
                );
                Flow::Continue
            }
            Err(Cut::Corrupt(e)) => {
                self.gap(path, Limit::Unreadable, e.to_string());
                Flow::Continue
            }
            Err(Cut::Time) => {
                self.gap(
                    path,
                    Limit::ScanTime,
                    "the file's time ran out while this member was decoded",
                );
                Flow::Stop
            }
            Ok(bytes) => self.layer(&bytes, path, depth, nested),
        };
        path.pop();
        flow
    }

    /// A normalized form of the file at `path` (a text file's text, target
    /// 7; an HTML page's page or text stream, target 3): scanned with that
    /// target's and target-0 signatures, without hashes, and found at the
    /// file's own path, as ClamAV reports it.
    fn normalized(
        &mut self,
        reader: &mut dyn std::io::Read,
        target: u8,
        path: &mut MemberPath,
    ) -> Flow {
        let limits = &self.d.limits;
        let deadline = self.started + limits.max_scan_time;
        let bytes = match read_member(reader, None, limits, Some(deadline)) {
            Ok(b) => b,
            Err(Cut::Time) => {
                self.gap(path, Limit::ScanTime, "the file's time ran out");
                return Flow::Stop;
            }
            Err(Cut::TooLarge) => {
                self.gap(
                    path,
                    Limit::FileSize,
                    format!(
                        "its normalized text is larger than {} bytes",
                        limits.max_file_size
                    ),
                );
                return Flow::Continue;
            }
            Err(Cut::Ratio | Cut::Corrupt(_)) => return Flow::Continue,
        };
        if !self.room_for(bytes.len(), path) {
            return Flow::Stop;
        }
        let opts = ScanOptions {
            file_type: Some(target),
            skip_hashes: true,
            exe: None,
            container: Some(self.outer),
            ..self.d.layer_opts(&bytes, self.started, self.scanned)
        };
        let r = self.d.engine.scan_bytes(&bytes, &opts);
        self.scanned += r.bytes_scanned;
        self.take(path, r);
        self.flow()
    }

    /// A member's bytes at `path`: its verdict from the cache, or scanned,
    /// opened if it is a container, and its verdict cached when nothing in
    /// it was left unscanned.
    fn layer(&mut self, bytes: &[u8], path: &mut MemberPath, depth: u32, nested: bool) -> Flow {
        let mut opts = self.d.layer_opts(bytes, self.started, self.scanned);
        opts.container = Some(self.parent);
        // A message inside a message is no mail of its own for target-4
        // signatures (ClamAV parses it in place): its verdict depends on
        // where it is, so it is not cached by its digest either.
        let in_place = nested && opts.file_type == Some(4);
        if in_place {
            opts.file_type = Some(0);
        }
        let key = self
            .d
            .cache
            .as_ref()
            .filter(|_| !in_place)
            .map(|(c, epoch)| {
                let mut digest: [u8; 32] = Sha256::digest(bytes).into();
                if self.d.container_keyed {
                    // Its verdict depends on what holds it.
                    digest = Sha256::new()
                        .chain_update(digest)
                        .chain_update(self.parent)
                        .finalize()
                        .into();
                }
                (c, *epoch, content_key(&digest))
            });
        if let Some((cache, epoch, key)) = &key
            && let Some(v) = cache.get(key, *epoch)
        {
            self.cached += 1;
            if let CachedVerdict::Infected(i) = v {
                let at = path.len();
                path.extend(i.member.iter().cloned());
                self.take(
                    path,
                    ScanResult {
                        detections: i.detections.clone(),
                        outcome: Outcome::Infected,
                        bytes_scanned: 0,
                        allowed: false,
                    },
                );
                path.truncate(at);
            }
            return self.flow();
        }
        if !self.room_for(bytes.len(), path) {
            return Flow::Stop;
        }
        let before = (self.found.len(), self.gaps.len());
        let r = self.d.engine.scan_bytes(bytes, &opts);
        self.scanned += r.bytes_scanned;
        // A member on the allow list is not opened either.
        let allowed = r.allowed;
        self.take(path, r);
        if !allowed && !self.stop {
            let kind = detect(bytes);
            if kind.is_container() {
                let own = path.last().cloned().unwrap_or_default();
                self.open(kind, bytes, &own, path, depth + 1);
            } else {
                self.open_embedded(bytes, path, depth + 1);
            }
        }
        let Some((cache, epoch, key)) = key else {
            return self.flow();
        };
        if self.gaps.len() > before.1 {
            return self.flow();
        }
        let found = &self.found[before.0..];
        let verdict = match found.first() {
            None => CachedVerdict::Clean,
            Some(first) => CachedVerdict::infected(
                found.iter().map(|f| f.detection.clone()).collect(),
                first.path[path.len()..].to_vec(),
            ),
        };
        cache.insert(key, epoch, verdict);
        self.flow()
    }

    /// Whether `len` more bytes fit in the file's scan size; if not, the
    /// gap at `path` says so.
    fn room_for(&mut self, len: usize, path: &[String]) -> bool {
        let max_scan_size = self.d.limits.max_scan_size;
        if self.scanned.saturating_add(len as u64) > max_scan_size {
            self.gap(
                path,
                Limit::ScanBytes,
                format!("the file's {max_scan_size} bytes to scan are used up"),
            );
            return false;
        }
        true
    }

    /// Whether the walk goes on after a member.
    fn flow(&self) -> Flow {
        if self.stop {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_made_fit_to_print() {
        assert_eq!(printable("a/b.exe"), "a/b.exe");
        assert_eq!(printable("evil\n\x1b[31mname!x"), "evil??[31mname?x");
        let long = "x".repeat(1000);
        assert_eq!(printable(&long).chars().count(), MAX_NAME + 1);
    }
}
