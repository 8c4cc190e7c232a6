//! The scan pool: worker threads serving three strict priority classes,
//! round robin between VMs inside a class, with a bounded queue.
//!
//! # Design
//!
//! All queued work lives in one scheduler behind a mutex: per priority
//! class, one FIFO per VM and a ring of the VMs that have work. A worker
//! that becomes free takes the highest non-empty class, pops the VM at the
//! front of that class's ring, runs that VM's oldest job and puts the VM
//! back at the end of the ring if it still has work. So:
//!
//! - an `OnAccess` job waits at most for the first worker to finish its
//!   current job (one job's worth of latency), however much `Background`
//!   work is queued;
//! - inside a class, VMs are served round robin: a VM with 1000 queued jobs
//!   delays another VM's job by at most one job per VM with work.
//!
//! Work stealing is where the work is divisible: a large buffer
//! ([`ScanPool::scan_bytes`]) becomes segments in a `crossbeam-deque`
//! injector, served by one runner job per worker. Each runner takes
//! batches of segments into its own deque and, when both are empty,
//! steals from the other runners' deques, so idle workers take over the
//! rest of a busy one's share. Between segments a runner yields its worker
//! (re-queues itself at the back of its VM's queue, [`Yielder`]) when a
//! job of a higher class, or of another VM in its class, is waiting: the
//! priority and round-robin guarantees above then hold at segment
//! granularity. Whole jobs are not stolen from per-worker deques: a
//! worker's private deque would be served before the global classes, so
//! it could not honour a global priority order or per-VM round robin (a
//! worker would run its local background job while an on-access job
//! waits). Scan jobs are coarse (tens of microseconds and up), so one
//! short critical section per job is negligible.
//!
//! Jobs run under `catch_unwind`: a panic becomes [`JobError::Panicked`]
//! and the worker lives on. When the last [`ScanPool`] handle is dropped,
//! queued jobs are dropped (their handles resolve to
//! [`JobError::Shutdown`]), running jobs finish, and the workers exit.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle as ThreadHandle;

use crate::engine::Engine;
use crate::result::ScanResult;
use crate::scanner::ScanOptions;
use crate::split;
pub use crate::split::SplitConfig;

/// The priority class of a job. Classes are served strictly in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// A blocking on-access event: a guest is waiting.
    OnAccess,
    /// An on-demand scan.
    OnDemand,
    /// A background full scan.
    Background,
}

impl Priority {
    /// Every class, highest first.
    pub const ALL: [Priority; 3] = [Priority::OnAccess, Priority::OnDemand, Priority::Background];

    /// The index of the class in [`PoolStats::queued`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a [`ScanPool`] is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Worker threads; 0 means `std::thread::available_parallelism()`.
    pub workers: usize,
    /// Most jobs queued (not yet running) at once, all classes together
    /// (default 4096). A submission beyond it gets [`Busy`].
    pub queue_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 0,
            queue_capacity: 4096,
        }
    }
}

/// The queue is full: try again later (maps to `RESOURCE_EXHAUSTED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scan queue full")
    }
}

impl std::error::Error for Busy {}

/// Why a job gave no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The job panicked (the worker survived).
    #[error("scan job panicked")]
    Panicked,
    /// The pool shut down before the job ran.
    #[error("scan pool shut down")]
    Shutdown,
}

/// A snapshot of the pool's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Jobs waiting, per class ([`Priority::index`]).
    pub queued: [usize; 3],
    /// Jobs running now.
    pub running: usize,
    /// Jobs finished (panicked and abandoned ones included).
    pub completed: u64,
    /// Submissions refused with [`Busy`].
    pub rejected: u64,
    /// Segments of split scans scanned.
    pub segments: u64,
    /// Of those, segments a runner stole from another runner's deque.
    pub stolen: u64,
    /// Times a split scan's runner gave its worker to waiting work.
    pub yields: u64,
    /// Jobs and split scans dropped unrun because their [`JobHandle`] was
    /// dropped first (the client went away, or stopped waiting).
    pub abandoned: u64,
}

/// The result of a submitted job. Await it from async code (it does not
/// block the executor thread), or [`wait`](JobHandle::wait) for it.
/// Dropping it cancels the job if it has not started, and stops a split
/// scan at its next segment: nobody is left to take the result.
#[derive(Debug)]
pub struct JobHandle<T> {
    rx: oneshot::Receiver<Result<T, JobError>>,
}

impl<T> JobHandle<T> {
    pub(crate) fn new(rx: oneshot::Receiver<Result<T, JobError>>) -> Self {
        JobHandle { rx }
    }

    /// Blocks until the job is done.
    ///
    /// # Errors
    ///
    /// [`JobError::Panicked`] if the job panicked, [`JobError::Shutdown`] if
    /// the pool was dropped before the job ran.
    pub fn wait(self) -> Result<T, JobError> {
        self.rx.recv().unwrap_or(Err(JobError::Shutdown))
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(JobError::Shutdown)),
            Poll::Pending => Poll::Pending,
        }
    }
}

pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// A worker idle this long drops its scratch.
const IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// One priority class: a FIFO per VM and the ring of VMs with work.
#[derive(Default)]
struct Class {
    queues: HashMap<Arc<str>, VecDeque<Job>>,
    ring: VecDeque<Arc<str>>,
    len: usize,
}

impl Class {
    fn push(&mut self, vm: &str, job: Job) {
        if let Some(q) = self.queues.get_mut(vm) {
            q.push_back(job);
        } else {
            let vm: Arc<str> = vm.into();
            self.queues.insert(vm.clone(), VecDeque::from([job]));
            self.ring.push_back(vm);
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Job> {
        let vm = self.ring.pop_front()?;
        let q = self.queues.get_mut(&vm)?;
        let job = q.pop_front();
        if q.is_empty() {
            self.queues.remove(&vm);
        } else {
            self.ring.push_back(vm);
        }
        self.len -= 1;
        job
    }
}

#[derive(Default)]
struct Sched {
    classes: [Class; 3],
    queued: usize,
    shutdown: bool,
}

impl Sched {
    fn pop(&mut self) -> Option<Job> {
        let job = self.classes.iter_mut().find_map(Class::pop)?;
        self.queued -= 1;
        Some(job)
    }
}

struct Shared {
    sched: Mutex<Sched>,
    ready: Condvar,
    capacity: usize,
    running: AtomicUsize,
    completed: AtomicU64,
    rejected: AtomicU64,
    segments: AtomicU64,
    stolen: AtomicU64,
    yields: AtomicU64,
    abandoned: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        // Jobs never run under the lock, so poisoning cannot leave the
        // scheduler half-updated.
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&self) {
        loop {
            let job = {
                let mut s = self.lock();
                loop {
                    if s.shutdown {
                        return;
                    }
                    if let Some(job) = s.pop() {
                        break job;
                    }
                    let (g, idle) = self
                        .ready
                        .wait_timeout(s, IDLE)
                        .unwrap_or_else(|e| e.into_inner());
                    s = g;
                    if idle.timed_out() {
                        // Idle: let go of the scratch, and with it the
                        // engine it holds (an old database after a reload).
                        drop(s);
                        split::release_scratch();
                        s = self.lock();
                    }
                }
            };
            self.running.fetch_add(1, Ordering::Relaxed);
            // Jobs catch their own panics to report them; this is the
            // backstop that keeps the worker alive whatever happens.
            let _ = catch_unwind(AssertUnwindSafe(job));
            self.running.fetch_sub(1, Ordering::Relaxed);
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lets a long job (a split scan's runner) give its worker to waiting work
/// between steps, by re-queueing its continuation under its own VM and
/// class.
pub(crate) struct Yielder {
    shared: Arc<Shared>,
    vm: Arc<str>,
    priority: Priority,
}

impl Yielder {
    /// Queues `make(state)` at the back of this VM's queue in this class,
    /// if a job of a higher class or of another VM in this class is
    /// waiting (and the queue has room); otherwise gives `state` back to
    /// carry on with.
    pub fn yield_to_waiting<S>(&self, state: S, make: impl FnOnce(S) -> Job) -> Option<S> {
        let mut s = self.shared.lock();
        let class = self.priority.index();
        let waiting = s.classes[..class].iter().any(|c| c.len > 0)
            || s.classes[class].ring.iter().any(|vm| *vm != self.vm);
        if !waiting || s.shutdown || s.queued >= self.shared.capacity {
            return Some(state);
        }
        s.classes[class].push(&self.vm, make(state));
        s.queued += 1;
        drop(s);
        self.shared.yields.fetch_add(1, Ordering::Relaxed);
        self.shared.ready.notify_one();
        None
    }

    /// Counts a scan dropped because its handle was.
    pub fn count_abandoned(&self) {
        self.shared.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a scanned segment (and whether it was stolen).
    pub fn count_segment(&self, stolen: bool) {
        self.shared.segments.fetch_add(1, Ordering::Relaxed);
        if stolen {
            self.shared.stolen.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Owns the threads; dropped with the last [`ScanPool`] handle.
struct Owner {
    shared: Arc<Shared>,
    threads: Vec<ThreadHandle<()>>,
    split: SplitConfig,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let dropped: Vec<Job> = {
            let mut s = self.shared.lock();
            s.shutdown = true;
            s.queued = 0;
            let mut v = Vec::new();
            for c in &mut s.classes {
                while let Some(j) = c.pop() {
                    v.push(j);
                }
            }
            v
        };
        self.shared.ready.notify_all();
        // Dropping a queued job drops its result sender: its handle
        // resolves to `JobError::Shutdown`.
        drop(dropped);
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            // The last handle may be dropped by a job on a worker; that
            // worker exits on its own after the job.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// The scan pool. Cheap to clone (an `Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct ScanPool {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for ScanPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPool")
            .field("workers", &self.workers())
            .field("stats", &self.stats())
            .finish()
    }
}

impl ScanPool {
    /// Starts the workers, with the default [`SplitConfig`].
    ///
    /// # Panics
    ///
    /// If a worker thread cannot be spawned.
    pub fn new(config: PoolConfig) -> ScanPool {
        ScanPool::with_split(config, SplitConfig::default())
    }

    /// Starts the workers; large buffers given to
    /// [`scan_bytes`](ScanPool::scan_bytes) are split as `split` says.
    ///
    /// # Panics
    ///
    /// If a worker thread cannot be spawned.
    pub fn with_split(config: PoolConfig, split: SplitConfig) -> ScanPool {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let shared = Arc::new(Shared {
            sched: Mutex::new(Sched::default()),
            ready: Condvar::new(),
            capacity: config.queue_capacity.max(1),
            running: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            stolen: AtomicU64::new(0),
            yields: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        });
        let threads = (0..workers)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("giva-scan-{i}"))
                    .spawn(move || shared.work())
                    .expect("spawn scan worker")
            })
            .collect();
        ScanPool {
            owner: Arc::new(Owner {
                shared,
                threads,
                split,
            }),
        }
    }

    /// Runs `job` on a worker, queued under `vm` in class `priority`.
    /// Never blocks.
    ///
    /// # Errors
    ///
    /// [`Busy`] at once if the queue is full.
    pub fn submit<T: Send + 'static>(
        &self,
        vm: &str,
        priority: Priority,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JobHandle<T>, Busy> {
        let (tx, rx) = oneshot::channel();
        let shared = self.owner.shared.clone();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                shared.abandoned.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let r = catch_unwind(AssertUnwindSafe(job)).map_err(|_| JobError::Panicked);
            let _ = tx.send(r);
        });
        self.submit_all(vm, priority, vec![job])?;
        Ok(JobHandle::new(rx))
    }

    /// Queues all of `jobs` or none of them.
    pub(crate) fn submit_all(
        &self,
        vm: &str,
        priority: Priority,
        jobs: Vec<Job>,
    ) -> Result<(), Busy> {
        let shared = &self.owner.shared;
        let n = jobs.len();
        {
            let mut s = shared.lock();
            if s.shutdown || s.queued + n > shared.capacity {
                drop(s);
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Busy);
            }
            let class = &mut s.classes[priority.index()];
            for j in jobs {
                class.push(vm, j);
            }
            s.queued += n;
        }
        if n == 1 {
            shared.ready.notify_one();
        } else {
            shared.ready.notify_all();
        }
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        let shared = &self.owner.shared;
        let queued = {
            let s = shared.lock();
            [s.classes[0].len, s.classes[1].len, s.classes[2].len]
        };
        PoolStats {
            queued,
            running: shared.running.load(Ordering::Relaxed),
            completed: shared.completed.load(Ordering::Relaxed),
            rejected: shared.rejected.load(Ordering::Relaxed),
            segments: shared.segments.load(Ordering::Relaxed),
            stolen: shared.stolen.load(Ordering::Relaxed),
            yields: shared.yields.load(Ordering::Relaxed),
            abandoned: shared.abandoned.load(Ordering::Relaxed),
        }
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.owner.threads.len()
    }

    /// How large buffers are split.
    pub fn split_config(&self) -> &SplitConfig {
        &self.owner.split
    }

    /// Scans a whole buffer on the pool. A buffer larger than
    /// [`SplitConfig::threshold`] is split into overlapping segments that
    /// are scanned in parallel (see `DESIGN.md`); the result is identical
    /// to `engine.scan_bytes(data, opts)`, except that a time limit is
    /// checked per segment.
    ///
    /// `data` is any shared byte buffer (`Arc<[u8]>`, `Vec<u8>`,
    /// `bytes::Bytes`, a memory map...); it is kept alive until the last
    /// segment is done.
    ///
    /// # Errors
    ///
    /// [`Busy`] if the queue cannot take all the jobs of this scan.
    pub fn scan_bytes<D>(
        &self,
        engine: &Engine,
        data: D,
        opts: &ScanOptions,
        vm: &str,
        priority: Priority,
    ) -> Result<JobHandle<ScanResult>, Busy>
    where
        D: AsRef<[u8]> + Send + Sync + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let yielder = Yielder {
            shared: self.owner.shared.clone(),
            vm: vm.into(),
            priority,
        };
        let jobs = split::jobs(
            engine,
            Arc::new(data),
            opts,
            &self.owner.split,
            (self.workers(), self.owner.shared.capacity),
            tx,
            yielder,
        );
        self.submit_all(vm, priority, jobs)?;
        Ok(JobHandle::new(rx))
    }
}
