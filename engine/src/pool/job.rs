//! What the pool's callers see of a job: its [`Priority`], the handle
//! that resolves to its result ([`JobHandle`]), and the pool's settings,
//! errors and counters.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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

/// A job as the scheduler runs it.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;
