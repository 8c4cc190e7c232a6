//! [`ScanPool`]: the pool's handle: submit jobs, split large buffers into
//! segments scanned in parallel, read the counters.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::engine::Engine;
use crate::pool::job::{Busy, Job, JobError, JobHandle, PoolConfig, PoolStats, Priority};
use crate::pool::scheduler::{Owner, Sched, Shared, Yielder};
use crate::pool::split::{self, SplitConfig};
use crate::result::ScanResult;
use crate::scanner::ScanOptions;

/// The scan pool. Cheap to clone (an `Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct ScanPool {
    owner: Arc<Owner>,
    split: SplitConfig,
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
            on_idle: split::release_scratch,
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
            owner: Arc::new(Owner { shared, threads }),
            split,
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
        &self.split
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
            &self.split,
            (self.workers(), self.owner.shared.capacity),
            tx,
            yielder,
        );
        self.submit_all(vm, priority, jobs)?;
        Ok(JobHandle::new(rx))
    }
}
