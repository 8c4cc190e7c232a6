//! The [`Scanner`]: one scan at a time, fed in chunks, with its own scratch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use giva_signatures::{ExeInfo, HashAlgo, HashScope};

use crate::engine::Engine;
use crate::exec::hashing::{Hashers, SectionDigests, SectionHashes, digest};
use crate::exec::stream::{Matcher, Sink};
use crate::exec::{checks, logical};
use crate::result::{Detection, DetectionKind, Limit, Outcome, ScanResult};

/// Files of this many bytes or fewer are never scanned (ClamAV's rule).
pub const TOO_SMALL: u64 = 5;

/// Input is processed in pieces of at most this size, so that time limits
/// are checked regularly even when the caller feeds one huge buffer.
const PIECE: usize = 4 << 20;

/// How a scan runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Report every detection (ClamAV's `--allmatch`) instead of the first.
    pub all_match: bool,
    /// Stop after this many bytes and report [`Limit::ScanBytes`].
    pub max_scan_bytes: Option<u64>,
    /// Stop after this much time and report [`Limit::ScanTime`] (checked
    /// between pieces of a few MiB, not per byte).
    pub max_scan_time: Option<Duration>,
    /// The input's type, as ClamAV's target number (1 PE, 2 OLE2, 5
    /// graphics, 6 ELF, 7 normalized text, 9 Mach-O, 10 PDF, 11 Flash; 0
    /// for none of them):
    /// signatures of a target other than 0 apply only to an input of their
    /// type. `None`: not known yet, set later with
    /// [`Scanner::set_file_type`] (a stream's first bytes decide it), or
    /// none at the end.
    pub file_type: Option<u8>,
    /// Apply no hash signature (nor the allow list by hash): for a
    /// derived view of a file, such as its normalized text, which is no
    /// file of its own.
    pub skip_hashes: bool,
    /// The input's executable structure (its entry point and sections),
    /// when it is a PE, ELF or Mach-O file whose headers were read: the
    /// signatures with executable offsets (`EP+n`, `Sx+n`, `SL+n`, `SEx`)
    /// run only where it is known. For a stream whose headers arrive with
    /// its first bytes, see [`Scanner::set_exe_info`].
    pub exe: Option<Arc<ExeInfo>>,
    /// ClamAV's name for the type of the layer that holds the input
    /// (`CL_TYPE_ZIP`, ...), for `Container:` in logical signatures;
    /// `None`: a file of its own (`CL_TYPE_ANY`).
    pub container: Option<&'static str>,
}

/// Scanners kept for reuse by one [`Engine`], so that a stream of small
/// inputs does not pay for a fresh scanner's scratch every time: a 4 KiB
/// input cost 14.6 µs with a fresh scanner and 3.7 µs with a reused one
/// at 100k bench body signatures (1.2 µs of 3.3 at 10k; `small_file_cost`
/// in `tests/throughput.rs`).
#[derive(Debug)]
pub struct IdleScanners {
    engine: Engine,
    free: std::sync::Mutex<Vec<Scanner>>,
    keep: usize,
}

impl IdleScanners {
    /// A stash for `engine` that keeps at most `keep` idle scanners.
    pub fn new(engine: Engine, keep: usize) -> IdleScanners {
        IdleScanners {
            engine,
            free: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A scanner with `opts`, reset for an input of `expected_size` (see
    /// [`Scanner::reset`]): an idle one if the stash has one, else a new
    /// one.
    pub fn take(&self, opts: ScanOptions, expected_size: Option<u64>) -> Scanner {
        let idle = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut scanner = match idle {
            Some(mut s) => {
                s.opts = opts;
                s
            }
            None => self.engine.scanner(opts),
        };
        scanner.reset(expected_size);
        scanner
    }

    /// Keeps `scanner` for a later [`take`](IdleScanners::take), unless the
    /// stash is full or the scanner runs another engine. Its state does not
    /// matter: `take` resets it.
    pub fn give(&self, scanner: Scanner) {
        if !std::sync::Arc::ptr_eq(&scanner.engine.inner, &self.engine.inner) {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            free.push(scanner);
        }
    }

    /// Scans a whole buffer as [`Engine::scan_bytes`] does, with an idle
    /// scanner if there is one.
    pub fn scan_bytes(&self, data: &[u8], opts: &ScanOptions) -> ScanResult {
        let mut s = self.take(opts.clone(), Some(data.len() as u64));
        s.feed(data);
        let result = s.finish_with(data);
        self.give(s);
        result
    }

    /// The idle scanners kept now.
    pub fn idle(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Engine {
    /// A new scanner with its own scratch. Call [`Scanner::reset`] before
    /// each input.
    pub fn scanner(&self, opts: ScanOptions) -> Scanner {
        Scanner::new(self.clone(), opts)
    }

    /// Scans a whole buffer.
    pub fn scan_bytes(&self, data: &[u8], opts: &ScanOptions) -> ScanResult {
        let mut s = self.scanner(opts.clone());
        s.reset(Some(data.len() as u64));
        s.feed(data);
        s.finish_with(data)
    }
}

/// What [`Scanner::feed`] wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Send more input (or call [`Scanner::finish`] at the end).
    Continue,
    /// The verdict cannot change any more (a certain detection in
    /// first-match mode, or a limit was hit): call [`Scanner::finish`].
    Done,
}

/// A streaming scan. Owns a clone of its [`Engine`] and its own scratch, so
/// it can be kept in a struct across await points and reused for many
/// inputs: [`reset`](Scanner::reset), [`feed`](Scanner::feed) any number of
/// chunks of any size, then [`finish`](Scanner::finish).
#[derive(Debug)]
pub struct Scanner {
    engine: Engine,
    opts: ScanOptions,
    main: Matcher,
    eof: Matcher,
    /// The program of executable offsets, fed with `main` when the
    /// input's structure is known before its first byte (`exe_live`), or
    /// over the input again ([`Scanner::feed_exe`]).
    exe: Matcher,
    exe_live: bool,
    /// Bytes given to [`Scanner::feed_exe`] so far.
    exe_fed: u64,
    /// A PE's section hashes, fed with the input once its structure is
    /// known (as the executable offsets are).
    sections: SectionHashes,
    eof_tail: Vec<u8>,
    sink: Sink,
    hashers: Hashers,
    expected: Option<u64>,
    total: u64,
    started: Instant,
    limit: Option<Limit>,
    hash_possible: bool,
}

impl Scanner {
    pub(crate) fn new(engine: Engine, opts: ScanOptions) -> Scanner {
        let mut s = Scanner {
            engine,
            opts,
            main: Matcher::default(),
            eof: Matcher::default(),
            exe: Matcher::default(),
            exe_live: false,
            exe_fed: 0,
            sections: SectionHashes::default(),
            eof_tail: Vec::new(),
            sink: Sink::default(),
            hashers: Hashers::default(),
            expected: None,
            total: 0,
            started: Instant::now(),
            limit: None,
            hash_possible: true,
        };
        s.reset(None);
        s
    }

    /// The engine this scanner runs.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The options.
    pub fn options(&self) -> &ScanOptions {
        &self.opts
    }

    /// Starts a new input. `expected_size` lets the scanner compute only the
    /// hashes the database has entries for at that size; with `None` every
    /// hash algorithm is computed (unless the database holds no hash at all)
    /// and the decision is made at the end. A wrong `expected_size` may miss
    /// hash detections (never body ones).
    pub fn reset(&mut self, expected_size: Option<u64>) {
        let inner = &self.engine.inner;
        let db = &inner.db;
        self.main.reset(&inner.main, 0);
        self.exe.reset(&inner.exe, 0);
        self.eof_tail.clear();
        self.sink.reset(
            inner.names.len(),
            inner.nsubs,
            !self.opts.all_match,
            &inner.typed,
            self.opts.file_type,
            self.opts.exe.as_ref(),
        );
        if inner.starts {
            self.sink.track_starts(inner.nsubs);
        }
        self.exe_live = self.opts.exe.is_some();
        self.exe_fed = 0;
        self.sections = match &self.opts.exe {
            Some(exe) => SectionHashes::start(exe, db),
            None => SectionHashes::default(),
        };
        self.hashers = match expected_size {
            _ if self.opts.skip_hashes => Hashers::start(|_| false),
            Some(size) => Hashers::start(|a| db.needs_hash(a, size)),
            None => {
                let any = db.hash_counts() != (0, 0);
                Hashers::start(|_| any)
            }
        };
        self.hash_possible = self.hashers.any();
        self.expected = expected_size;
        self.total = 0;
        self.started = Instant::now();
        self.limit = None;
    }

    /// The input's type (see [`ScanOptions::file_type`]), once its first
    /// bytes tell it; typed signatures that matched before are then
    /// counted if they are of this type. A type already set stays.
    pub fn set_file_type(&mut self, file_type: u8) {
        self.sink.set_file_type(file_type);
    }

    /// The input's executable structure, once its headers are read (see
    /// [`ScanOptions::exe`]). Before the first [`feed`](Scanner::feed), the
    /// signatures with executable offsets run along with the rest, and
    /// this returns false. After it, they (and the PE section hashes)
    /// have not seen the bytes fed so far: it returns true, and the caller
    /// must give the input again, from its first byte, to
    /// [`feed_exe`](Scanner::feed_exe) before [`finish`](Scanner::finish).
    /// It also returns false when the database has nothing that needs the
    /// bytes again, or a structure was already given.
    pub fn set_exe_info(&mut self, exe: Arc<ExeInfo>) -> bool {
        if self.sink.exe.is_some() {
            return false;
        }
        let inner = &self.engine.inner;
        self.sections = SectionHashes::start(&exe, &inner.db);
        self.sink.exe = Some(exe);
        if self.total == 0 {
            self.exe_live = true;
            return false;
        }
        !inner.exe.is_empty() || self.sections.any()
    }

    /// The input again, from its first byte, for the signatures with
    /// executable offsets (see [`set_exe_info`](Scanner::set_exe_info)):
    /// only as many bytes as [`feed`](Scanner::feed) took are scanned.
    pub fn feed_exe(&mut self, data: &[u8]) {
        let inner = &self.engine.inner;
        if self.exe_live || self.sink.exe.is_none() || self.limit.is_some() {
            return;
        }
        let end = (self.total - self.exe_fed).min(data.len() as u64) as usize;
        for piece in data[..end].chunks(PIECE) {
            if self.sink.stop {
                break;
            }
            self.sections.update(self.exe_fed, piece);
            self.exe_fed += piece.len() as u64;
            self.exe.feed(&inner.exe, piece, None, &mut self.sink);
            // The time limit covers this pass too.
            if let Some(t) = self.opts.max_scan_time
                && self.started.elapsed() > t
            {
                self.limit = Some(Limit::ScanTime);
                return;
            }
        }
    }

    /// Scans the next chunk of input.
    pub fn feed(&mut self, data: &[u8]) -> Feed {
        if self.limit.is_some() {
            return Feed::Done;
        }
        let mut data = data;
        let mut truncated = false;
        if let Some(max) = self.opts.max_scan_bytes {
            let room = max.saturating_sub(self.total);
            if data.len() as u64 > room {
                data = &data[..room as usize];
                truncated = true;
            }
        }
        let inner = &self.engine.inner;
        for piece in data.chunks(PIECE) {
            self.hashers.update(piece);
            self.main.feed(&inner.main, piece, None, &mut self.sink);
            if self.exe_live {
                if !inner.exe.is_empty() {
                    self.exe.feed(&inner.exe, piece, None, &mut self.sink);
                }
                self.sections.update(self.total, piece);
            }
            if !inner.eof.is_empty() && !self.sink.stop {
                let keep = inner.eof_tail as usize;
                if piece.len() >= keep {
                    self.eof_tail.clear();
                    self.eof_tail
                        .extend_from_slice(&piece[piece.len() - keep..]);
                } else {
                    let over = (self.eof_tail.len() + piece.len()).saturating_sub(keep);
                    self.eof_tail.drain(..over);
                    self.eof_tail.extend_from_slice(piece);
                }
            }
            self.total += piece.len() as u64;
            if let Some(t) = self.opts.max_scan_time
                && self.started.elapsed() > t
            {
                self.limit = Some(Limit::ScanTime);
                return Feed::Done;
            }
        }
        if truncated {
            self.limit = Some(Limit::ScanBytes);
            return Feed::Done;
        }
        if self.sink.stop && !self.hash_possible && self.total > TOO_SMALL {
            return Feed::Done;
        }
        Feed::Continue
    }

    /// Ends the input and returns the verdict. The scanner can then be
    /// [`reset`](Scanner::reset) for the next input.
    ///
    /// The subsignatures that are evaluated over the whole input after the
    /// scan (byte-compare) do not match: give the input to
    /// [`finish_with`](Scanner::finish_with) when the engine
    /// [needs it](Engine::needs_input).
    pub fn finish(&mut self) -> ScanResult {
        self.finish_inner(None)
    }

    /// [`finish`](Scanner::finish), with the whole input (the bytes given
    /// to [`feed`](Scanner::feed), from the first) for the subsignatures
    /// that are evaluated over it.
    pub fn finish_with(&mut self, whole: &[u8]) -> ScanResult {
        self.finish_inner(Some(whole))
    }

    fn finish_inner(&mut self, whole: Option<&[u8]>) -> ScanResult {
        let inner = &self.engine.inner;
        let size = self.total;
        let result = |detections: Vec<Detection>, outcome| ScanResult {
            detections,
            outcome,
            bytes_scanned: size,
            allowed: false,
        };
        if size <= TOO_SMALL {
            return result(Vec::new(), Outcome::TooSmall);
        }
        let body = |i: u32| Detection {
            name: self.engine.inner.names.get(i).to_owned(),
            kind: DetectionKind::Body,
        };
        if let Some(limit) = self.limit {
            // Only what is certain from the part that was scanned.
            let mut found: Vec<u32> = self.sink.body_order.clone();
            if self.opts.all_match {
                found.sort_unstable();
            } else {
                found.truncate(1);
            }
            let d: Vec<Detection> = found.into_iter().map(body).collect();
            return if d.is_empty() {
                result(d, Outcome::LimitExceeded(limit))
            } else {
                result(d, Outcome::Infected)
            };
        }
        self.main.finish(&inner.main, None, &mut self.sink);
        if self.sink.exe.is_some() {
            self.exe.finish(&inner.exe, None, &mut self.sink);
        }
        let digests = self.hashers.finish();
        let sections = self.sections.finish();
        let whole = whole.map(|w| &w[..w.len().min(size as usize)]);
        conclude(
            &self.engine,
            &self.opts,
            &mut self.sink,
            &mut self.eof,
            &self.eof_tail,
            (&digests, &sections),
            size,
            whole.map(|w| (w, self.started)),
        )
    }
}

/// The verdict once the main program has seen all `size` bytes: runs the
/// end-of-file program over `tail` (the last bytes of the input, at least
/// `eof_tail` of them when the input is that long) unless the scan already
/// stopped, then applies hashes, the allow-list, body and logical
/// detections (the checks of logical signatures over `whole`, the input,
/// when it is given with the scan's start, from which its time limit
/// counts). Shared by [`Scanner::finish`] and split scans.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conclude(
    engine: &Engine,
    opts: &ScanOptions,
    sink: &mut Sink,
    eof: &mut Matcher,
    tail: &[u8],
    (digests, sections): (&[(HashAlgo, Vec<u8>)], &[SectionDigests]),
    size: u64,
    whole: Option<(&[u8], Instant)>,
) -> ScanResult {
    let inner = &engine.inner;
    let db = &inner.db;
    let result = |detections: Vec<Detection>, outcome| ScanResult {
        detections,
        outcome,
        bytes_scanned: size,
        allowed: false,
    };
    let body = |i: u32| Detection {
        name: inner.names.get(i).to_owned(),
        kind: DetectionKind::Body,
    };
    // On a layer of an executable type whose headers could not be read,
    // ClamAV resolves no offset relative to the file's structure or its
    // end: not even an `EOF-n` of a target-0 signature.
    let relative_ok = !matches!(sink.file_type, Some(1 | 6 | 9)) || sink.exe.is_some();
    if !inner.eof.is_empty() && !sink.stop && relative_ok {
        let base = size - tail.len() as u64;
        eof.reset(&inner.eof, base);
        eof.feed(&inner.eof, tail, Some(size), sink);
        eof.finish(&inner.eof, Some(size), sink);
    }
    if digests.iter().any(|(a, d)| db.is_allowed(*a, d, size)) {
        return ScanResult {
            allowed: true,
            ..result(Vec::new(), Outcome::Clean)
        };
    }
    let mut detections = Vec::new();
    for (algo, d) in digests {
        let algo: HashAlgo = *algo;
        detections.extend(db.lookup_hash(algo, d, size).map(|n| Detection {
            name: n.into_owned(),
            kind: DetectionKind::Hash,
        }));
    }
    if opts.all_match {
        // Every body found is in `body_order` once; sorted, that is the
        // signatures' order, without walking a flag per signature (100k of
        // them for every file took 2% of a 100k bench scan).
        let mut found = sink.body_order.clone();
        found.sort_unstable();
        detections.extend(found.into_iter().map(body));
    } else {
        detections.extend(sink.body_order.iter().copied().map(body));
    }
    let mut checks_out_of_time = false;
    if opts.all_match || detections.is_empty() {
        let deadline = whole.and_then(|(_, started)| Some(started + opts.max_scan_time?));
        let mut check_state = checks::Checks::new(deadline);
        for (li, lsig) in db.logical_signatures().iter().enumerate() {
            if lsig
                .file_size
                .is_some_and(|(lo, hi)| size < lo || size > hi)
            {
                continue;
            }
            if lsig.target != 0 && sink.file_type != Some(lsig.target) {
                continue;
            }
            if lsig
                .container
                .as_deref()
                .is_some_and(|c| c != opts.container.unwrap_or("CL_TYPE_ANY"))
            {
                continue;
            }
            if lsig.entry_point.is_some() || lsig.sections.is_some() {
                let Some(exe) = &sink.exe else { continue };
                let within =
                    |r: Option<(u64, u64)>, v: u64| r.is_none_or(|(a, b)| a <= v && v <= b);
                if !within(lsig.entry_point, exe.entry)
                    || !within(lsig.sections, exe.sections.len() as u64)
                {
                    continue;
                }
            }
            let base = inner.lsig_base[li] as usize;
            let range = base..base + lsig.subsigs.len();
            let counts = &sink.counts[range.clone()];
            let hit = match whole {
                Some((data, _)) if !lsig.checks.is_empty() => {
                    let mut checked = counts.to_vec();
                    let last = sink.last_start.get(range).unwrap_or_default();
                    check_state.run(lsig, &mut checked, last, data, sink.exe.as_deref());
                    logical::eval(&lsig.expr, &checked)
                }
                // The expression depends on the counts alone.
                _ if counts.iter().all(|&c| c == 0) => inner.lsig_zero[li],
                _ => logical::eval(&lsig.expr, counts),
            };
            if hit {
                detections.push(Detection {
                    name: lsig.name.clone(),
                    kind: DetectionKind::Logical,
                });
                if !opts.all_match {
                    break;
                }
            }
        }
        checks_out_of_time = check_state.out_of_time();
    }
    if opts.all_match || detections.is_empty() {
        detections.extend(part_hashes(db, sink.exe.as_deref(), sections));
    }
    if !opts.all_match {
        detections.truncate(1);
    }
    let outcome = if !detections.is_empty() {
        Outcome::Infected
    } else if checks_out_of_time {
        Outcome::LimitExceeded(Limit::ScanTime)
    } else {
        Outcome::Clean
    };
    result(detections, outcome)
}

/// The detections of an executable's parts, after its patterns' (ClamAV
/// checks them once the raw scan is done): each PE section hashed as it
/// passed (`.mdb`, `.msb`), then a 32-bit PE's import table (`.imp`).
fn part_hashes(
    db: &giva_signatures::Database,
    exe: Option<&ExeInfo>,
    sections: &[SectionDigests],
) -> Vec<Detection> {
    let hash = |n: std::borrow::Cow<'_, str>| Detection {
        name: n.into_owned(),
        kind: DetectionKind::Hash,
    };
    let mut out = Vec::new();
    for (size, digests) in sections {
        for (algo, d) in digests {
            out.extend(
                db.lookup_scoped_hash(HashScope::Section, *algo, d, *size)
                    .map(hash),
            );
        }
    }
    if let Some(imports) = exe.and_then(|e| e.imports.as_deref()) {
        let size = imports.len() as u64;
        for algo in HashAlgo::ALL {
            if db.needs_scoped_hash(HashScope::Import, algo, size) {
                let d = digest(algo, imports);
                out.extend(
                    db.lookup_scoped_hash(HashScope::Import, algo, &d, size)
                        .map(hash),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use giva_signatures::{
        BodyPattern, BodySignature, Database, DatabaseInfo, Gap, Offset, Part, Token,
    };

    use super::*;

    fn lit(b: &[u8]) -> Part {
        Part {
            tokens: b
                .iter()
                .map(|&value| Token::Byte { value, mask: 0xff })
                .collect(),
        }
    }

    /// Streaming keeps only a bounded tail, whatever the input size, even
    /// with unbounded gaps, bounded gaps and end-of-file offsets.
    #[test]
    fn memory_stays_bounded() {
        let pat = |parts: Vec<Part>, gaps: Vec<Gap>| BodyPattern {
            parts,
            gaps,
            left_anchor: None,
            right_anchor: None,
            start_assertion: None,
            end_assertion: None,
        };
        let sigs = vec![
            BodySignature {
                name: "Star".into(),
                target: 0,
                offset: Offset::Any,
                pattern: pat(
                    vec![lit(b"ab"), lit(b"zz")],
                    vec![Gap { min: 0, max: None }],
                ),
            },
            BodySignature {
                name: "Range".into(),
                target: 0,
                offset: Offset::Any,
                pattern: pat(
                    vec![lit(b"ab"), lit(b"zy")],
                    vec![Gap {
                        min: 0,
                        max: Some(50),
                    }],
                ),
            },
            BodySignature {
                name: "Eof".into(),
                target: 0,
                offset: Offset::FromEnd {
                    back: 100,
                    shift: 0,
                },
                pattern: pat(vec![lit(b"ab")], vec![]),
            },
        ];
        let db = Database::from_parts(DatabaseInfo::default(), sigs, vec![], vec![], vec![]);
        let engine = Engine::new(&db).expect("engine");
        let mut s = engine.scanner(ScanOptions {
            all_match: true,
            ..Default::default()
        });
        s.reset(Some(0));
        let chunk = b"ababababab".repeat(100);
        let mut max = 0;
        for _ in 0..2000 {
            s.feed(&chunk);
            max = max.max(s.main.retained() + s.eof_tail.len());
        }
        assert!(max < 4096, "retained {max} bytes");
        let r = s.finish();
        assert_eq!(r.names(), ["Eof"]);
    }
}
