//! What giva asks of the C library and the kernel directly: giving freed
//! heap memory back to the system, and the open-files limit.
//!
//! The C library's allocator (glibc) keeps memory freed by a program in
//! its arenas for reuse. After a burst (a flood of sessions, a storm of
//! scans) that can be hundreds of megabytes the process no longer uses,
//! and it is not returned until the same arena is trimmed. [`give_back`]
//! trims every arena (`malloc_trim`), and [`give_back_periodically`] does
//! so whenever the process holds more than a threshold of such memory
//! ([`idle_resident`]).
//! On other C libraries both do nothing.
//!
//! [`raise_open_files_limit`] lifts the soft limit on open files to the
//! hard one, as servers do: each connection is a descriptor.
//!
//! # Safety
//!
//! This is the crate's only `unsafe` code: calls into the C library.
//! `mallinfo` and `malloc_trim` (glibc) are thread-safe (each takes its
//! arenas' locks), take no pointers and have no preconditions; `mallinfo`
//! returns a plain struct by value (`mallinfo2`, which does not wrap, is
//! not used: it needs glibc 2.33, and the appliance would not start on an
//! older one). `getrlimit` and `setrlimit` are given a pointer to an
//! `rlimit` that lives on the stack for the whole call.
#![allow(unsafe_code)]

use std::time::Duration;

/// Anonymous memory the process holds resident beyond what its heap
/// allocations use: mostly free memory the allocator keeps (the rest is
/// thread stacks and the like). `None` where the C library cannot say.
pub fn idle_resident() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let anon = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?
            * 1024;
        // SAFETY: `mallinfo` has no preconditions and is thread-safe (see
        // the module's `# Safety`).
        let info = unsafe { libc::mallinfo() };
        // Its fields are C `int`s, which glibc fills from sizes that may
        // pass 2 GiB: read as unsigned, they are right up to 4 GiB. Past
        // that the estimate errs towards trimming, which only costs time.
        let in_use = u64::from(info.uordblks as u32) + u64::from(info.hblkhd as u32);
        Some(anon.saturating_sub(in_use))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Returns the allocator's free memory to the system; `true` when some
/// was returned.
pub fn give_back() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` has no preconditions and is thread-safe
        // (see the module's `# Safety`); 0 asks it to keep no padding.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Every `every`, gives free memory back when the process holds more
/// than `threshold` bytes of it resident ([`idle_resident`]), until `stop`
/// completes. What a trim cannot return (memory in pages still partly in
/// use) raises the bar for the next one, so a fragmented heap is not
/// trimmed again and again for nothing.
pub async fn give_back_periodically(
    every: Duration,
    threshold: u64,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut floor = 0;
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        // A tick whose figures cannot be read is skipped.
        let Some(idle) = idle_resident() else {
            continue;
        };
        if idle > floor + threshold {
            // The walk holds the arenas' locks: off the async workers.
            let _ = tokio::task::spawn_blocking(give_back).await;
            floor = idle_resident().unwrap_or(0);
            tracing::debug!(
                before = idle,
                after = floor,
                "gave idle heap memory back to the system"
            );
        } else {
            floor = floor.min(idle);
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, and
/// returns the soft limit now in force (`None` where it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable `rlimit` for the whole call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid `rlimit` for the whole call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_is_given_back() {
        // Blocks of 8 KiB (under the allocator's mmap threshold), every
        // other one freed: holes the arena keeps, two pages each.
        let mut blocks: Vec<Option<Vec<u8>>> =
            (0..4000).map(|i| Some(vec![i as u8; 8 << 10])).collect();
        for b in blocks.iter_mut().step_by(2) {
            *b = None;
        }
        match idle_resident() {
            Some(before) => {
                assert!(
                    before >= 8 << 20,
                    "{before} bytes idle after freeing 16 MiB"
                );
                assert!(give_back(), "nothing given back");
                let after = idle_resident().unwrap_or(0);
                assert!(
                    after + (4 << 20) <= before,
                    "{before} bytes idle before the trim, {after} after"
                );
            }
            None => eprintln!("SKIPPED: this C library does not report its free memory"),
        }
        drop(blocks);
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let now = raise_open_files_limit().expect("the limit can be read");
        assert!(now >= 64, "{now}");
        assert_eq!(
            raise_open_files_limit(),
            Some(now),
            "a second call changes nothing"
        );
    }
}
