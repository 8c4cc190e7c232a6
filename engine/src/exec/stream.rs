//! Running one [`Program`] over a stream: the atom search over each chunk
//! (and over the seam with the previous one), the queue of candidates
//! waiting for enough look-ahead, their verification in order of start
//! position, and the chaining of parts.
//!
//! Candidates are verified strictly in order of their start position, and
//! only once `lookahead` bytes past the start are available (or at end of
//! input). That makes the result independent of how the input is chunked,
//! and it guarantees that when part `k` is checked at `start`, every
//! occurrence of part `k - 1` that ends before `start` was already seen.

use std::sync::Arc;

use giva_signatures::ExeInfo;

use crate::compile::{Owner, Program};
use crate::exec::chain::GapState;
use crate::exec::verify::{Hay, bytes_match, left_ok, part_matches, right_ok};

/// Atoms are searched and candidates verified in blocks of this size.
const BLOCK: usize = 16 << 10;

/// Where matches go: shared by the main and the end-of-file programs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sink {
    /// Body signatures found so far (set through [`Sink::mark`]).
    body_found: Vec<bool>,
    /// The body signatures set in `body_found`, cleared at reset: with
    /// 100k of them, zeroing every flag for each small file was 4% of a
    /// scan of many files.
    marked: Vec<u32>,
    /// Body signatures in the order their match completed.
    pub body_order: Vec<u32>,
    /// For each entry of `body_order`, the start of the last part of that
    /// first match: with the body index, it orders completions as a
    /// sequential scan does (used to merge split scans).
    pub body_start: Vec<u64>,
    /// Match counts of every subsignature (flat index).
    pub counts: Vec<u32>,
    /// The greatest start (of its first part) of a match of every
    /// subsignature, plus one; 0 when it did not match. Byte-compare
    /// subsignatures count from it; empty when the database has none.
    pub last_start: Vec<u64>,
    /// First-match mode: stop at the first body detection.
    pub first_match: bool,
    /// Nothing more to match.
    pub stop: bool,
    /// Each body signature's target type (empty when none is typed).
    pub typed: Arc<[u8]>,
    /// The input's type (ClamAV's target number, 0 for none of them);
    /// `None` until it is known.
    pub file_type: Option<u8>,
    /// Typed body signatures that matched before the type was known:
    /// `(body, start)`, reported by [`Sink::set_file_type`] if it is theirs.
    pub pending: Vec<(u32, u64)>,
    /// The input's executable structure, which executable offsets
    /// ([`Offset::Exe`](giva_signatures::Offset::Exe)) resolve against;
    /// `None`: they match nowhere.
    pub exe: Option<Arc<ExeInfo>>,
}

impl Sink {
    /// Forgets everything, for an input of type `file_type` (see
    /// [`Sink::file_type`]) and executable structure `exe`, scanned with
    /// signatures whose targets are `typed`.
    pub fn reset(
        &mut self,
        bodies: usize,
        subs: usize,
        first_match: bool,
        typed: &Arc<[u8]>,
        file_type: Option<u8>,
        exe: Option<&Arc<ExeInfo>>,
    ) {
        if !Arc::ptr_eq(&self.typed, typed) {
            self.typed = typed.clone();
        }
        self.file_type = file_type;
        self.exe = exe.cloned();
        self.pending.clear();
        if self.body_found.len() == bodies {
            for &i in &self.marked {
                self.body_found[i as usize] = false;
            }
        } else {
            self.body_found.clear();
            self.body_found.resize(bodies, false);
        }
        self.marked.clear();
        self.body_order.clear();
        self.body_start.clear();
        self.counts.clear();
        self.counts.resize(subs, 0);
        self.last_start.clear();
        self.first_match = first_match;
        self.stop = false;
    }

    /// A match of `owner` whose last part starts at `start` and first part
    /// at `origin`.
    fn report(&mut self, owner: Owner, start: u64, origin: u64) {
        match owner {
            Owner::Body(i) => {
                if self.mark(i) {
                    // A typed signature counts only on an input of its type.
                    match self.typed.get(i as usize).copied().unwrap_or(0) {
                        0 => {}
                        t => match self.file_type {
                            Some(ft) if ft == t => {}
                            Some(_) => return,
                            None => {
                                self.pending.push((i, start));
                                return;
                            }
                        },
                    }
                    self.body_order.push(i);
                    self.body_start.push(start);
                    if self.first_match {
                        self.stop = true;
                    }
                }
            }
            Owner::Sub(i) => {
                let c = &mut self.counts[i as usize];
                *c = c.saturating_add(1);
                if let Some(l) = self.last_start.get_mut(i as usize) {
                    *l = (*l).max(origin + 1);
                }
            }
        }
    }

    /// Marks body signature `i` found; false if it already was.
    pub fn mark(&mut self, i: u32) -> bool {
        let found = &mut self.body_found[i as usize];
        if *found {
            return false;
        }
        *found = true;
        self.marked.push(i);
        true
    }

    /// Records where each of the `subs` subsignatures last matched
    /// ([`Sink::last_start`]), after a [`reset`](Sink::reset).
    pub fn track_starts(&mut self, subs: usize) {
        self.last_start.resize(subs, 0);
    }

    /// The input's type, once known: the typed matches kept until now that
    /// are of this type are reported. A type already known stays.
    pub fn set_file_type(&mut self, file_type: u8) {
        if self.file_type.is_some() {
            return;
        }
        self.file_type = Some(file_type);
        for (i, start) in std::mem::take(&mut self.pending) {
            if self.typed.get(i as usize) == Some(&file_type) {
                self.body_order.push(i);
                self.body_start.push(start);
                if self.first_match {
                    self.stop = true;
                }
            }
        }
    }

    #[inline]
    fn skip(&self, owner: Owner) -> bool {
        match owner {
            Owner::Body(i) => self.body_found[i as usize],
            Owner::Sub(_) => false,
        }
    }
}

/// The part of the input a segment matcher answers for (split scans).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// Candidates starting before this are dropped (their left context
    /// may lie before the segment's first byte).
    pub cand_lo: u64,
    /// Only matches whose last part ends in `end_lo < end <= end_hi` are
    /// reported.
    pub end_lo: u64,
    /// See `end_lo`.
    pub end_hi: u64,
    /// Candidates of the patterns that cannot be split (`!split`) starting
    /// in `events_lo <= start < events_hi` are checked as far as their own
    /// bytes decide (the part, offset, anchors and assertions) and kept as
    /// events, in order, for [`Matcher::replay`] to chain over the whole
    /// input.
    pub events_lo: u64,
    /// See `events_lo`.
    pub events_hi: u64,
}

/// State for keys `0..n` (gap slots, patterns) that costs what a scan
/// uses, not what the database holds: a zeroed index (one allocation the
/// allocator may hand out as untouched zero pages) into a pool of the
/// states in use. A scanner made for each small file used to build and
/// drop a state per pattern: 0.27 ms a file at 100k signatures.
#[derive(Clone, Debug, Default)]
struct Sparse<T> {
    /// `index[k]` is 1 + the pool position of key `k`'s state, or 0.
    index: Vec<u32>,
    /// The keys in use, in pool order.
    keys: Vec<u32>,
    pool: Vec<T>,
}

impl<T: Default> Sparse<T> {
    /// Forgets every state, for keys `0..n`.
    fn reset(&mut self, n: usize) {
        if self.index.len() == n {
            for &k in &self.keys {
                self.index[k as usize] = 0;
            }
        } else {
            self.index = vec![0; n];
        }
        self.keys.clear();
    }

    fn get_mut(&mut self, k: usize) -> Option<&mut T> {
        match self.index[k] {
            0 => None,
            i => Some(&mut self.pool[i as usize - 1]),
        }
    }

    /// Key `k`'s state, made empty on first use since the reset.
    fn entry(&mut self, k: usize) -> &mut T {
        if self.index[k] == 0 {
            let i = self.keys.len();
            self.keys.push(k as u32);
            if i == self.pool.len() {
                self.pool.push(T::default());
            } else {
                self.pool[i] = T::default();
            }
            self.index[k] = i as u32 + 1;
        }
        &mut self.pool[self.index[k] as usize - 1]
    }
}

/// Per-scan state for one program.
#[derive(Clone, Debug, Default)]
pub(crate) struct Matcher {
    /// Set for a segment of a split scan: only bounded patterns, only
    /// matches ending in the window.
    window: Option<Window>,
    tail: Vec<u8>,
    tail_base: u64,
    /// Candidates `(start, entry)` waiting for verification.
    queue: Vec<(u64, u32)>,
    /// Per gap slot: the valid ends of the part before the gap.
    gaps: Sparse<GapState>,
    /// Per multi-end pattern: its recent match ends.
    recent_ends: Sparse<Vec<u64>>,
    seam: Vec<u8>,
    scratch: Vec<u8>,
    /// Part matches `(start, entry)` of unsplit patterns (see
    /// [`Window::events_lo`]), at most `event_cap`.
    pub events: Vec<(u64, u32)>,
    pub event_cap: usize,
    /// More events than `event_cap` were found (and dropped).
    pub events_overflow: bool,
}

impl Matcher {
    /// Prepares for a stream whose first byte is at absolute position `base`.
    pub fn reset(&mut self, p: &Program, base: u64) {
        self.window = None;
        self.tail.clear();
        self.tail_base = base;
        self.queue.clear();
        self.gaps.reset(p.gap_slots.len());
        self.recent_ends.reset(p.patterns.len());
        self.events.clear();
        self.events_overflow = false;
    }

    /// Prepares for one segment of a split scan: the stream starts at
    /// `base`, only bounded (`split`) patterns run, and only matches inside
    /// `window` are reported.
    pub fn reset_window(&mut self, p: &Program, base: u64, window: Window) {
        self.reset(p, base);
        self.window = Some(window);
    }

    /// Scans the next chunk of input.
    pub fn feed(&mut self, p: &Program, chunk: &[u8], size: Option<u64>, sink: &mut Sink) {
        if sink.stop || p.is_empty() || chunk.is_empty() {
            self.keep_tail(p, chunk);
            return;
        }
        let chunk_base = self.tail_base + self.tail.len() as u64;
        let window = self.window;
        if !p.atoms.is_empty() {
            // Atoms across the seam between the tail and this chunk.
            let k = p.max_atom - 1;
            if k > 0 && !self.tail.is_empty() {
                self.seam.clear();
                self.seam
                    .extend_from_slice(&self.tail[self.tail.len().saturating_sub(k)..]);
                let before = self.seam.len();
                self.seam.extend_from_slice(&chunk[..chunk.len().min(k)]);
                let seam_base = chunk_base - before as u64;
                let queue = &mut self.queue;
                p.atoms.scan(&self.seam, |atom, start| {
                    let end = start + p.atom_len(atom);
                    if start < before && end > before {
                        push(
                            p,
                            queue,
                            atom as usize,
                            seam_base + start as u64,
                            size,
                            sink,
                            None,
                            window,
                        );
                    }
                });
            }
        }
        // The chunk, in blocks: scan the atoms of one block, then verify what
        // can be verified, so that the candidate queue stays small even when
        // an atom occurs at every position.
        let tail = std::mem::take(&mut self.tail);
        let hay = Hay {
            tail: &tail,
            tail_base: self.tail_base,
            chunk,
            chunk_base,
        };
        let mut b0 = 0;
        while b0 < chunk.len() && !sink.stop {
            let b1 = (b0 + BLOCK).min(chunk.len());
            if !p.atoms.is_empty() {
                // Atoms starting in b0..b1, which may end up to max_atom - 1
                // bytes later.
                let ext = (b1 + p.max_atom - 1).min(chunk.len());
                let queue = &mut self.queue;
                p.atoms.scan(&chunk[b0..ext], |atom, start| {
                    if start < b1 - b0 {
                        let abs = chunk_base + (b0 + start) as u64;
                        push(
                            p,
                            queue,
                            atom as usize,
                            abs,
                            size,
                            sink,
                            Some((chunk, chunk_base)),
                            window,
                        );
                    }
                });
            }
            // A candidate starting at s has its atom at s + atom_off, with
            // atom_off < lookahead (for a derived entry too; see
            // `entry_needs`): every candidate with s + lookahead <=
            // chunk_base + b1 is queued by now, and its bytes are available.
            self.drain(
                p,
                &hay,
                (chunk_base + b1 as u64).checked_sub(p.lookahead),
                size,
                sink,
            );
            b0 = b1;
        }
        self.tail = tail;
        self.keep_tail(p, chunk);
    }

    /// Verifies everything still queued: the input has ended.
    pub fn finish(&mut self, p: &Program, size: Option<u64>, sink: &mut Sink) {
        let chunk_base = self.tail_base + self.tail.len() as u64;
        let tail = std::mem::take(&mut self.tail);
        let hay = Hay {
            tail: &tail,
            tail_base: self.tail_base,
            chunk: &[],
            chunk_base,
        };
        self.drain(p, &hay, Some(u64::MAX), size, sink);
        self.tail = tail;
        self.queue.clear();
    }

    /// Verifies the queued candidates that start at or before `limit`.
    fn drain(
        &mut self,
        p: &Program,
        hay: &Hay<'_>,
        limit: Option<u64>,
        size: Option<u64>,
        sink: &mut Sink,
    ) {
        let Some(limit) = limit else { return };
        if self.queue.is_empty() {
            return;
        }
        // Candidates arrive nearly sorted (in atom order; a derived entry's
        // starts lie up to about 1 KiB from its anchor's atom); a stable
        // sort of nearly sorted runs is close to linear.
        self.queue.sort();
        let queue = std::mem::take(&mut self.queue);
        let mut done = 0;
        let mut last = None;
        for &(start, eid) in &queue {
            if start > limit || sink.stop {
                break;
            }
            done += 1;
            // A derived entry's starts come from every occurrence of its
            // anchor's atom, and the ranges of two near occurrences
            // overlap: each start is verified once. (All copies are queued
            // by the time the first is due: each lies within `lookahead`
            // of its atom.)
            if last.replace((start, eid)) == Some((start, eid)) {
                continue;
            }
            let entry = &p.entries[eid as usize];
            let pat = &p.patterns[entry.pattern as usize];
            if sink.skip(pat.owner) {
                continue;
            }
            // A segment keeps the part matches of unsplit patterns for the
            // merge, which chains them in order over the whole input.
            let event = self.window.is_some() && !pat.split;
            let part = entry.part as usize;
            // Where the match's first part started.
            let mut origin = start;
            if part > 0 && !event {
                match self.gap_allows(p, eid, start) {
                    Some(o) => origin = o,
                    None => continue,
                }
            }
            if !part_matches(p, entry, start, hay, &mut self.scratch) {
                continue;
            }
            if part == 0 {
                let Some(range) = pat.offset.start_range_in(size, sink.exe.as_deref()) else {
                    continue;
                };
                if !left_ok(pat.left_anchor, pat.start_assertion, range, start, hay) {
                    continue;
                }
            }
            if part + 1 == pat.nparts as usize
                && !right_ok(
                    pat.right_anchor,
                    pat.end_assertion,
                    start + entry.len(),
                    hay,
                )
            {
                continue;
            }
            if event {
                if self.events.len() < self.event_cap {
                    self.events.push((start, eid));
                } else {
                    self.events_overflow = true;
                }
                continue;
            }
            self.chain(p, eid, start, origin, sink);
        }
        self.queue = queue;
        if sink.stop {
            self.queue.clear();
        } else {
            self.queue.drain(..done);
        }
    }

    /// Whether part `k > 0` of entry `eid`'s pattern may start at `start`
    /// (part `k - 1` validly ended within the gap before): the origin of
    /// the chain it continues.
    fn gap_allows(&mut self, p: &Program, eid: u32, start: u64) -> Option<u64> {
        let entry = &p.entries[eid as usize];
        let pat = &p.patterns[entry.pattern as usize];
        let part = entry.part as usize;
        let slot = pat.gap_slot as usize + part - 1;
        self.gaps
            .get_mut(slot)
            .filter(|g| !g.is_empty())
            .and_then(|g| g.allows(p.gap(pat, part - 1), start))
    }

    /// A verified part match of entry `eid` at `start` (its gap from the
    /// previous part checked), on a chain whose first part started at
    /// `origin`: the last part reports a match of its pattern, an earlier
    /// one opens the gap to the next.
    fn chain(&mut self, p: &Program, eid: u32, start: u64, origin: u64, sink: &mut Sink) {
        let entry = &p.entries[eid as usize];
        let pat = &p.patterns[entry.pattern as usize];
        let part = entry.part as usize;
        let end = start + entry.len();
        if part + 1 == pat.nparts as usize {
            if pat.multi_end {
                let recent = self.recent_ends.entry(entry.pattern as usize);
                recent.retain(|&e| e > start);
                if recent.contains(&end) {
                    return;
                }
                recent.push(end);
            }
            if let Some(w) = self.window
                && (end <= w.end_lo || end > w.end_hi)
            {
                return;
            }
            sink.report(pat.owner, start, origin);
        } else {
            let slot = pat.gap_slot as usize + part;
            self.gaps.entry(slot).record(p.gap(pat, part), end, origin);
        }
    }

    /// Chains part matches kept by segments ([`Window::events_lo`]), given
    /// in the order a sequential scan verifies them (`(start, entry)`,
    /// segment after segment), exactly as that scan would: the same gap
    /// checks, the same reports. Call on a matcher [`reset`](Self::reset)
    /// for `p` at 0.
    pub fn replay(&mut self, p: &Program, events: &[(u64, u32)], sink: &mut Sink) {
        for &(start, eid) in events {
            if sink.stop {
                break;
            }
            let Some(entry) = p.entries.get(eid as usize) else {
                continue;
            };
            let pat = &p.patterns[entry.pattern as usize];
            if sink.skip(pat.owner) {
                continue;
            }
            let origin = if entry.part > 0 {
                match self.gap_allows(p, eid, start) {
                    Some(o) => o,
                    None => continue,
                }
            } else {
                start
            };
            self.chain(p, eid, start, origin, sink);
        }
    }

    /// Bytes of input and queued candidates held between chunks (for the
    /// bounded-memory tests).
    #[cfg(test)]
    pub fn retained(&self) -> usize {
        self.tail.len() + self.queue.len() * 16
    }

    /// Keeps the bytes of `tail ++ chunk` that later verification may need.
    fn keep_tail(&mut self, p: &Program, chunk: &[u8]) {
        let keep = (p.lookahead + p.history + p.max_atom as u64) as usize;
        if chunk.len() >= keep {
            self.tail_base += (self.tail.len() + chunk.len() - keep) as u64;
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            let total = self.tail.len() + chunk.len();
            if total > keep {
                let drop = total - keep;
                self.tail.drain(..drop);
                self.tail_base += drop as u64;
            }
            self.tail.extend_from_slice(chunk);
        }
    }
}

/// Queues the candidates implied by an atom at absolute position `atom_start`.
#[inline]
#[allow(clippy::too_many_arguments)]
fn push(
    p: &Program,
    queue: &mut Vec<(u64, u32)>,
    atom: usize,
    atom_start: u64,
    size: Option<u64>,
    sink: &Sink,
    chunk: Option<(&[u8], u64)>,
    window: Option<Window>,
) {
    for &eid in p.targets(atom) {
        let entry = &p.entries[eid as usize];
        let pat = &p.patterns[entry.pattern as usize];
        if sink.skip(pat.owner) {
            continue;
        }
        // The starts this atom implies: one for an atom of the entry's own,
        // a range for one of another part (`compile/derive.rs`).
        let first = i64::try_from(atom_start)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::from(entry.atom_off));
        let last = first.saturating_add(i64::from(entry.spread));
        let (Ok(mut lo), Ok(mut hi)) = (u64::try_from(first.max(0)), u64::try_from(last)) else {
            continue;
        };
        if let Some(w) = window {
            if pat.split {
                lo = lo.max(w.cand_lo);
            } else {
                lo = lo.max(w.events_lo);
                hi = hi.min(w.events_hi.saturating_sub(1));
                if w.events_hi == 0 {
                    continue;
                }
            }
        }
        if entry.part == 0 {
            // Cheap offset pre-filter; the exact check happens on verification.
            // (The offset counts from the body, so a left anchor adds nothing.)
            let Some((olo, ohi)) = pat.offset.start_range_in(size, sink.exe.as_deref()) else {
                continue;
            };
            lo = lo.max(olo);
            hi = hi.min(ohi);
        }
        for start in lo..=hi {
            // When the variant lies inside the current chunk, check its
            // bytes now: most candidates die here without being queued.
            // (The full, ordered verification still happens later.)
            if let Some((bytes, base)) = chunk
                && start >= base
                && let Some(w) =
                    bytes.get((start - base) as usize..(start - base + entry.len()) as usize)
                && !bytes_match(p, entry, w)
            {
                continue;
            }
            queue.push((start, eid));
        }
    }
}
