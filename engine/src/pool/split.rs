//! Scanning one large buffer as overlapping segments on the pool, with a
//! result identical to a sequential scan (see `DESIGN.md`, "Split scans").
//!
//! One scan is cut into segments, which runner jobs (one per worker, all
//! queued at once) share by work stealing ([`Runner`]), plus one job for
//! the hashes:
//!
//! - per segment: the main program over the segment plus
//!   `split_overlap` bytes of context. Its bounded patterns
//!   (`PatternInfo::split`) report only matches whose last part ends inside
//!   the segment. The other patterns (unbounded gaps, or spans over
//!   64 KiB) cannot be decided inside a segment: their part matches that
//!   start inside it are verified there and kept, in order, as events;
//! - one job for the whole-file hashes, if the database needs any at this
//!   size.
//!
//! The last job to finish merges: the events of every segment, in segment
//! order, are chained as a sequential scan chains them
//! (`Matcher::replay`); body signatures found anywhere; the first-match
//! winner by `(start of last part, body index)` (the order in which a
//! sequential scan completes matches); subsignature counts summed (each
//! match end belongs to exactly one segment); then the end-of-file program
//! over the tail and the verdict, exactly as `Scanner::finish`. If the
//! events outgrow [`SplitConfig::events`], the merge runs the unsplit
//! patterns over the whole buffer instead.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use giva_signatures::HashAlgo;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::compile::Program;
use crate::engine::Engine;
use crate::exec::hashing::{Hashers, SectionHashes};
use crate::exec::stream::{Matcher, Sink, Window};
use crate::pool::job::{Job, JobError};
use crate::pool::scheduler::Yielder;
use crate::result::{Detection, DetectionKind, Limit, Outcome, ScanResult};
use crate::scanner::{ScanOptions, Scanner, TOO_SMALL, conclude};

/// When and how [`ScanPool::scan_bytes`](crate::pool::ScanPool::scan_bytes)
/// splits a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitConfig {
    /// Buffers larger than this are split (default 8 MiB).
    pub threshold: usize,
    /// The size of one segment, overlap excluded (default 8 MiB). Raised
    /// so that one scan makes at most 1024 segments (and at most half the
    /// queue capacity). Any size gives the same result; sizes close to
    /// [`Engine::split_overlap`] waste work on the overlap.
    pub segment: usize,
    /// Most part-match events of patterns that cannot be split (unbounded
    /// gaps, very long spans) one scan keeps for its merge, shared out
    /// evenly between its segments (default 4 Mi, 16 bytes each). Real
    /// files give a few; a file built to repeat such a pattern's atom
    /// gives one per repetition, and beyond the budget the merge runs
    /// those patterns over the whole buffer instead (the same result,
    /// sequentially).
    pub events: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            threshold: 8 << 20,
            segment: 8 << 20,
            events: 4 << 20,
        }
    }
}

/// Most segments of one scan.
const MAX_SEGMENTS: usize = 1024;

/// Input is fed in pieces of this size, so time limits are checked.
const PIECE: usize = 1 << 20;

thread_local! {
    /// Each worker's scanner scratch, reused while the engine and options
    /// stay the same.
    static SCANNER: RefCell<Option<Scanner>> = const { RefCell::new(None) };
    /// Each worker's segment scratch.
    static SEGMENT: RefCell<(Matcher, Sink)> = RefCell::new(Default::default());
}

/// Drops this thread's scratch (and the engine clone it holds).
pub(crate) fn release_scratch() {
    SCANNER.with_borrow_mut(|s| *s = None);
    SEGMENT.with_borrow_mut(|s| *s = Default::default());
}

/// A whole-buffer scan with this thread's scratch.
fn scan_whole(engine: &Engine, data: &[u8], opts: &ScanOptions) -> ScanResult {
    SCANNER.with_borrow_mut(|slot| {
        let s = match slot {
            Some(s) if s.engine().same(engine) && s.options() == opts => s,
            _ => slot.insert(engine.scanner(opts.clone())),
        };
        s.reset(Some(data.len() as u64));
        s.feed(data);
        s.finish_with(data)
    })
}

type Reply = oneshot::Sender<Result<ScanResult, JobError>>;

/// The segments `[lo, hi)` of a buffer of `len` bytes, or `None` if it
/// should not be split.
pub(crate) fn segments(len: usize, cfg: &SplitConfig, max_jobs: usize) -> Option<Vec<(u64, u64)>> {
    if len <= cfg.threshold || len as u64 <= TOO_SMALL {
        return None;
    }
    let max_segs = MAX_SEGMENTS.min(max_jobs.saturating_sub(2) / 2);
    if max_segs < 2 {
        return None;
    }
    // Correct for any size (windows then overlap more than once), but
    // efficient only well above `Engine::split_overlap`.
    let seg = cfg.segment.max(1).max(len.div_ceil(max_segs));
    if seg >= len {
        return None;
    }
    let len = len as u64;
    let seg = seg as u64;
    Some(
        (0..len.div_ceil(seg))
            .map(|i| (i * seg, ((i + 1) * seg).min(len)))
            .collect(),
    )
}

/// The jobs that scan `data` and send the result to `tx`: one job, or the
/// jobs of a split scan if `data` is large (see [`segments`]): a runner per
/// worker (at most one per segment), sharing the segments by work stealing
/// ([`Runner`]), and a job for the whole-file hashes if any are needed.
/// `(workers, max_jobs)`: the pool's workers and queue capacity.
pub(crate) fn jobs<D>(
    engine: &Engine,
    data: Arc<D>,
    opts: &ScanOptions,
    cfg: &SplitConfig,
    (workers, max_jobs): (usize, usize),
    tx: Reply,
    yielder: Yielder,
) -> Vec<Job>
where
    D: AsRef<[u8]> + Send + Sync + 'static,
{
    let len = (*data).as_ref().len();
    let plan = if opts.max_scan_bytes.is_some_and(|m| m < len as u64) {
        // The byte limit truncates: keep the sequential semantics.
        None
    } else {
        segments(len, cfg, max_jobs)
    };
    let seq = engine.sequential_program().map(|p| p.is_some());
    let (Some(segs), Ok(seq)) = (plan, seq) else {
        let engine = engine.clone();
        let opts = opts.clone();
        return vec![Box::new(move || {
            if tx.is_closed() {
                yielder.count_abandoned();
                return;
            }
            let r = catch_unwind(AssertUnwindSafe(|| {
                scan_whole(&engine, (*data).as_ref(), &opts)
            }))
            .map_err(|_| JobError::Panicked);
            let _ = tx.send(r);
        })];
    };
    let db = engine.database();
    let hashes = HashAlgo::ALL.iter().any(|&a| db.needs_hash(a, len as u64));
    let event_cap = if seq { cfg.events / segs.len() } else { 0 };
    let injector = Injector::new();
    for &seg in &segs {
        injector.push(seg);
    }
    let locals: Vec<Worker<(u64, u64)>> = (0..workers.clamp(1, segs.len()))
        .map(|_| Worker::new_fifo())
        .collect();
    let split = Arc::new(Split {
        engine: engine.clone(),
        opts: opts.clone(),
        data,
        started: OnceLock::new(),
        best: AtomicU64::new(u64::MAX),
        event_cap,
        merge: Mutex::new(Merge {
            remaining: segs.len() + usize::from(hashes),
            ..Merge::default()
        }),
        tx: Mutex::new(Some(tx)),
        dropped: AtomicBool::new(false),
        injector,
        stealers: locals.iter().map(Worker::stealer).collect(),
        yielder,
    });
    let mut jobs: Vec<Job> = locals
        .into_iter()
        .map(|local| {
            let runner = Runner {
                split: split.clone(),
                local,
            };
            Box::new(move || runner.run()) as Job
        })
        .collect();
    if hashes {
        jobs.push(Box::new(move || split.run(Part::Hashes)));
    }
    jobs
}

/// One worker's share of a split scan: segments from its own deque, else a
/// batch from the scan's injector, else stolen from another runner. Between
/// segments it gives its worker to waiting work of a higher class or of
/// another VM (and continues later from the back of its VM's queue).
struct Runner<D> {
    split: Arc<Split<D>>,
    local: Worker<(u64, u64)>,
}

impl<D: AsRef<[u8]> + Send + Sync + 'static> Runner<D> {
    fn run(self) {
        let mut me = self;
        loop {
            if me.split.abandoned() {
                return;
            }
            let Some((seg, stolen)) = me.next() else {
                return;
            };
            me.split.yielder.count_segment(stolen);
            me.split.run(Part::Segment(seg.0, seg.1));
            let split = me.split.clone();
            match split
                .yielder
                .yield_to_waiting(me, |r| Box::new(move || r.run()))
            {
                Some(back) => me = back,
                None => return,
            }
        }
    }

    /// The next segment, and whether it was stolen from another runner.
    fn next(&self) -> Option<((u64, u64), bool)> {
        if let Some(seg) = self.local.pop() {
            return Some((seg, false));
        }
        loop {
            match self.split.injector.steal_batch_and_pop(&self.local) {
                Steal::Success(seg) => return Some((seg, false)),
                Steal::Retry => continue,
                Steal::Empty => {}
            }
            let stolen: Steal<(u64, u64)> =
                self.split.stealers.iter().map(Stealer::steal).collect();
            match stolen {
                Steal::Success(seg) => return Some((seg, true)),
                Steal::Retry => continue,
                Steal::Empty => return None,
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Part {
    /// Bounded patterns, matches ending in `lo < end <= hi` (the first
    /// segment also owns end 0, which no match has); part matches of the
    /// others starting in `lo <= start < hi`.
    Segment(u64, u64),
    /// Whole-file hashes.
    Hashes,
}

/// What one job found.
#[derive(Default)]
struct Out {
    /// `(start of last part, body index)` of the first match of each body
    /// signature found.
    bodies: Vec<(u64, u32)>,
    /// Non-zero subsignature counts, with the subsignature's last start.
    counts: Vec<Count>,
    digests: Vec<(HashAlgo, Vec<u8>)>,
    limit: bool,
    /// A segment's first byte and its events (see [`Window::events_lo`]).
    events: Option<(u64, Events)>,
    /// The segment found more events than it could keep.
    overflow: bool,
}

/// A subsignature's matches in one job: `(flat index, count, greatest
/// start + 1)` (see [`Sink::last_start`]).
type Count = (u32, u32, u64);

/// Appends what `sink` found: `(start of last part, body index)` of each
/// body signature, and the non-zero subsignature counts.
fn take_found(sink: &Sink, bodies: &mut Vec<(u64, u32)>, counts: &mut Vec<Count>) {
    bodies.extend(
        sink.body_start
            .iter()
            .copied()
            .zip(sink.body_order.iter().copied()),
    );
    counts.extend(
        sink.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u32, *c, sink.last_start.get(i).copied().unwrap_or(0))),
    );
}

/// Part matches `(start, entry)` of unsplit patterns, in verification
/// order (see [`Window::events_lo`]).
type Events = Vec<(u64, u32)>;

#[derive(Default)]
struct Merge {
    remaining: usize,
    bodies: Vec<(u64, u32)>,
    counts: Vec<Count>,
    digests: Vec<(HashAlgo, Vec<u8>)>,
    limit: bool,
    /// Per segment: its first byte, whether it ran out of time, its events.
    events: Vec<(u64, bool, Events)>,
    overflow: bool,
}

struct Split<D> {
    engine: Engine,
    opts: ScanOptions,
    data: Arc<D>,
    /// When the first job of this scan started (the time limit counts from
    /// there).
    started: OnceLock<Instant>,
    /// First-match mode: the smallest start of a last part of a body match
    /// found so far. A segment whose matches must all start later cannot
    /// change the verdict and stops.
    best: AtomicU64,
    /// Most events one segment keeps.
    event_cap: usize,
    merge: Mutex<Merge>,
    tx: Mutex<Option<Reply>>,
    /// Set once the handle is found dropped (so it is counted once).
    dropped: AtomicBool,
    /// Segments not yet taken by a runner.
    injector: Injector<(u64, u64)>,
    /// Every runner's deque, to steal from.
    stealers: Vec<Stealer<(u64, u64)>>,
    yielder: Yielder,
}

impl<D: AsRef<[u8]>> Split<D> {
    /// Makes `sink` ready for this scan's input (its size, its type).
    fn reset_sink(&self, sink: &mut Sink, first_match: bool) {
        let inner = &self.engine.inner;
        sink.reset(
            inner.names.len(),
            inner.nsubs,
            first_match,
            &inner.typed,
            self.opts.file_type,
            self.opts.exe.as_ref(),
        );
        if inner.starts {
            sink.track_starts(inner.nsubs);
        }
    }

    fn data(&self) -> &[u8] {
        (*self.data).as_ref()
    }

    /// True if nobody waits for the result any more: the handle was
    /// dropped, or the result was already sent (after a panic). The
    /// segments left are then skipped, and the scan's memory (its buffer
    /// included) is freed when its last queued job has run.
    fn abandoned(&self) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        match tx.as_ref() {
            None => true,
            Some(tx) if tx.is_closed() => {
                if !self.dropped.swap(true, Ordering::Relaxed) {
                    self.yielder.count_abandoned();
                }
                true
            }
            Some(_) => false,
        }
    }

    fn send(&self, r: Result<ScanResult, JobError>) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(r);
        }
    }

    fn run(&self, part: Part) {
        if self.abandoned() {
            return;
        }
        let started = *self.started.get_or_init(Instant::now);
        let out = catch_unwind(AssertUnwindSafe(|| match part {
            Part::Segment(lo, hi) => self.segment(lo, hi, started),
            Part::Hashes => self.hashes(started),
        }));
        let Ok(out) = out else {
            self.send(Err(JobError::Panicked));
            return;
        };
        if let Some(&(start, _)) = out.bodies.iter().min() {
            self.best.fetch_min(start, Ordering::Relaxed);
        }
        let done = {
            let mut m = self.merge.lock().unwrap_or_else(|e| e.into_inner());
            m.bodies.extend(out.bodies);
            m.counts.extend(out.counts);
            m.digests.extend(out.digests);
            m.limit |= out.limit;
            m.overflow |= out.overflow;
            if let Some((lo, events)) = out.events {
                m.events.push((lo, out.limit, events));
            }
            m.remaining -= 1;
            (m.remaining == 0).then(|| std::mem::take(&mut *m))
        };
        if let Some(m) = done {
            let r =
                catch_unwind(AssertUnwindSafe(|| self.conclude(m))).map_err(|_| JobError::Panicked);
            self.send(r);
        }
    }

    /// True if a segment answering for ends after `lo` cannot hold the
    /// first-match winner any more: each of its matches has a last part
    /// starting after `lo - span`, later than a match already found. (Its
    /// counts do not matter then: a body detection wins over logical
    /// signatures.)
    fn superseded(&self, lo: u64) -> bool {
        !self.opts.all_match
            && self
                .best
                .load(Ordering::Relaxed)
                .saturating_add(self.engine.max_bounded_span())
                < lo
    }

    fn over_time(&self, started: Instant) -> bool {
        self.opts
            .max_scan_time
            .is_some_and(|t| started.elapsed() > t)
    }

    /// Runs `p` over `data[w0..w1]` (`window` set for a segment) and
    /// collects what it found.
    fn run_program(
        &self,
        p: &Program,
        w0: u64,
        w1: u64,
        window: Option<Window>,
        started: Instant,
    ) -> Out {
        SEGMENT.with_borrow_mut(|(m, sink)| {
            match window {
                Some(w) => m.reset_window(p, w0, w),
                None => m.reset(p, w0),
            }
            m.event_cap = self.event_cap;
            self.reset_sink(sink, !self.opts.all_match);
            let mut out = Out::default();
            let lo = window.map(|w| w.end_lo);
            if lo.is_some_and(|lo| self.superseded(lo)) {
                return out;
            }
            for piece in self.data()[w0 as usize..w1 as usize].chunks(PIECE) {
                m.feed(p, piece, None, sink);
                if sink.stop {
                    break;
                }
                if lo.is_some_and(|lo| self.superseded(lo)) {
                    return out;
                }
                if self.over_time(started) {
                    out.limit = true;
                    break;
                }
            }
            if !out.limit {
                m.finish(p, None, sink);
            }
            take_found(sink, &mut out.bodies, &mut out.counts);
            if let Some(w) = window {
                out.events = Some((w.events_lo, std::mem::take(&mut m.events)));
                out.overflow = m.events_overflow;
            }
            out
        })
    }

    fn segment(&self, lo: u64, hi: u64, started: Instant) -> Out {
        let p = &self.engine.inner.main;
        let (before, after) = self.engine.split_overlap();
        let w0 = lo.saturating_sub(before);
        let w1 = hi.saturating_add(after).min(self.data().len() as u64);
        // A candidate may read `history` bytes before its start: those
        // starting earlier could read before `w0`. None of them can be
        // part of a match ending after `lo`.
        let cand_lo = if w0 == 0 { 0 } else { w0 + p.history };
        let window = Window {
            cand_lo,
            end_lo: lo,
            end_hi: hi,
            events_lo: lo,
            events_hi: hi,
        };
        self.run_program(p, w0, w1, Some(window), started)
    }

    /// The unsplit patterns' matches: the segments' events chained in
    /// order, or (if a segment could not keep all of its events) a
    /// sequential scan of those patterns over the whole buffer.
    fn unsplit(&self, m: &mut Merge) {
        if m.overflow {
            let started = *self.started.get_or_init(Instant::now);
            if let Ok(Some(p)) = self.engine.sequential_program() {
                let out = self.run_program(p, 0, self.data().len() as u64, None, started);
                m.bodies.extend(out.bodies);
                m.counts.extend(out.counts);
                m.limit |= out.limit;
            }
            return;
        }
        m.events.sort_unstable_by_key(|(lo, _, _)| *lo);
        // After a segment that ran out of time, nothing is certain.
        let complete = m.events.iter().take_while(|(_, limit, _)| !limit);
        if complete.clone().all(|(_, _, e)| e.is_empty()) {
            return;
        }
        let inner = &self.engine.inner;
        let p = &inner.main;
        SEGMENT.with_borrow_mut(|(matcher, sink)| {
            matcher.reset(p, 0);
            self.reset_sink(sink, !self.opts.all_match);
            for (_, _, events) in complete {
                matcher.replay(p, events, sink);
            }
            take_found(sink, &mut m.bodies, &mut m.counts);
        });
    }

    fn hashes(&self, started: Instant) -> Out {
        let db = self.engine.database();
        let size = self.data().len() as u64;
        let mut h = Hashers::start(|a| db.needs_hash(a, size));
        let mut out = Out::default();
        for piece in self.data().chunks(PIECE) {
            h.update(piece);
            if self.over_time(started) {
                out.limit = true;
                return out;
            }
        }
        out.digests = h.finish();
        out
    }

    fn conclude(&self, mut m: Merge) -> ScanResult {
        self.unsplit(&mut m);
        let inner = &self.engine.inner;
        let size = self.data().len() as u64;
        let first_match = !self.opts.all_match;
        m.bodies.sort_unstable();
        if m.limit {
            // As `Scanner::finish`: only what is certain.
            let mut found: Vec<u32> = m.bodies.iter().map(|&(_, b)| b).collect();
            if first_match {
                found.truncate(1);
            } else {
                found.sort_unstable();
                found.dedup();
            }
            let d: Vec<Detection> = found
                .into_iter()
                .map(|i| Detection {
                    name: inner.names.get(i).to_owned(),
                    kind: DetectionKind::Body,
                })
                .collect();
            let outcome = if d.is_empty() {
                Outcome::LimitExceeded(Limit::ScanTime)
            } else {
                Outcome::Infected
            };
            return ScanResult {
                detections: d,
                outcome,
                bytes_scanned: size,
                allowed: false,
            };
        }
        let mut sink = Sink::default();
        self.reset_sink(&mut sink, first_match);
        for &(start, b) in &m.bodies {
            if sink.mark(b) {
                sink.body_order.push(b);
                sink.body_start.push(start);
            }
        }
        if first_match && !sink.body_order.is_empty() {
            // The match a sequential scan completes first, and stops at.
            sink.body_order.truncate(1);
            sink.body_start.truncate(1);
            sink.stop = true;
        }
        for (i, c, last) in m.counts {
            let x = &mut sink.counts[i as usize];
            *x = x.saturating_add(c);
            if let Some(l) = sink.last_start.get_mut(i as usize) {
                *l = (*l).max(last);
            }
        }
        m.digests
            .sort_by_key(|(a, _)| HashAlgo::ALL.iter().position(|x| x == a));
        let data = self.data();
        // The executable offsets' program and the PE's section hashes: one
        // sequential pass, under the scan's time limit.
        let mut sections = Vec::new();
        let mut cut = false;
        if let Some(exe) = self.opts.exe.as_ref().filter(|_| !sink.stop) {
            let started = *self.started.get_or_init(Instant::now);
            let mut m = Matcher::default();
            m.reset(&inner.exe, 0);
            let mut hashes = SectionHashes::start(exe, &inner.db);
            if !inner.exe.is_empty() || hashes.any() {
                let mut at = 0u64;
                for piece in data.chunks(PIECE) {
                    if sink.stop {
                        break;
                    }
                    hashes.update(at, piece);
                    at += piece.len() as u64;
                    m.feed(&inner.exe, piece, None, &mut sink);
                    if self.over_time(started) {
                        cut = true;
                        break;
                    }
                }
                m.finish(&inner.exe, None, &mut sink);
                if !cut && !sink.stop {
                    sections = hashes.finish();
                }
            }
        }
        let keep = (inner.eof_tail as usize).min(data.len());
        let tail = &data[data.len() - keep..];
        let mut eof = Matcher::default();
        let mut result = conclude(
            &self.engine,
            &self.opts,
            &mut sink,
            &mut eof,
            tail,
            (&m.digests, &sections),
            size,
            Some((data, *self.started.get_or_init(Instant::now))),
        );
        if cut && result.outcome == Outcome::Clean {
            result.outcome = Outcome::LimitExceeded(Limit::ScanTime);
        }
        result
    }
}
