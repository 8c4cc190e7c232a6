//! The scheduler behind the pool: worker threads serving three strict
//! priority classes, round robin between VMs inside a class, with one
//! bounded queue (see the module docs of [`crate::pool`]).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle as ThreadHandle;

use crate::pool::job::{Job, Priority};

/// A worker idle this long drops its scratch.
const IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// One priority class: a FIFO per VM and the ring of VMs with work.
#[derive(Default)]
pub(super) struct Class {
    pub(super) queues: HashMap<Arc<str>, VecDeque<Job>>,
    pub(super) ring: VecDeque<Arc<str>>,
    pub(super) len: usize,
}

impl Class {
    pub(super) fn push(&mut self, vm: &str, job: Job) {
        if let Some(q) = self.queues.get_mut(vm) {
            q.push_back(job);
        } else {
            let vm: Arc<str> = vm.into();
            self.queues.insert(vm.clone(), VecDeque::from([job]));
            self.ring.push_back(vm);
        }
        self.len += 1;
    }

    pub(super) fn pop(&mut self) -> Option<Job> {
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
pub(super) struct Sched {
    pub(super) classes: [Class; 3],
    pub(super) queued: usize,
    pub(super) shutdown: bool,
}

impl Sched {
    pub(super) fn pop(&mut self) -> Option<Job> {
        let job = self.classes.iter_mut().find_map(Class::pop)?;
        self.queued -= 1;
        Some(job)
    }
}

pub(super) struct Shared {
    pub(super) sched: Mutex<Sched>,
    pub(super) ready: Condvar,
    pub(super) capacity: usize,
    pub(super) running: AtomicUsize,
    pub(super) completed: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) segments: AtomicU64,
    pub(super) stolen: AtomicU64,
    pub(super) yields: AtomicU64,
    pub(super) abandoned: AtomicU64,
    /// Run by a worker that has been idle for [`IDLE`] (the split scans
    /// drop their per-thread scratch there).
    pub(super) on_idle: fn(),
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Sched> {
        // Jobs never run under the lock, so poisoning cannot leave the
        // scheduler half-updated.
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn work(&self) {
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
                        (self.on_idle)();
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
    pub(super) shared: Arc<Shared>,
    pub(super) vm: Arc<str>,
    pub(super) priority: Priority,
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
pub(super) struct Owner {
    pub(super) shared: Arc<Shared>,
    pub(super) threads: Vec<ThreadHandle<()>>,
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
