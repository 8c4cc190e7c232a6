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

mod job;
mod scan_pool;
mod scheduler;
mod split;

pub use job::{Busy, JobError, JobHandle, PoolConfig, PoolStats, Priority};
pub use scan_pool::ScanPool;
pub use split::SplitConfig;
