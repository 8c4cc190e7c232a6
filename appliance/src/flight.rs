//! Single flight: when many VMs ask about the same file at once (an
//! instant-clone storm), one of them streams and scans it and the others
//! wait for its verdict, so the same bytes are never scanned twice.
//!
//! The leader is a guest, and a guest may stop sending content on purpose
//! to make the others wait. So a leader says when it waits for its guest's
//! content ([`Leader::waiting_for_content`]), and a follower that sees it
//! waiting longer than [`STALL`] stops waiting and scans its own copy
//! ([`wait`] returns [`Waited::Stalled`]). Time the leader spends in the
//! scan pool does not count: a busy appliance does not make followers
//! stream what is being scanned already.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use giva_engine::CachedVerdict;
use giva_engine::cache::Key;
use tokio::sync::watch;

/// What a finished flight tells its followers: the verdict, or `None` when
/// the leader could not produce one (then each follower scans for itself).
pub type Outcome = Option<CachedVerdict>;

/// How long a leader may wait for its guest's content before followers
/// give up on it.
pub const STALL: Duration = Duration::from_secs(1);

/// Whether, and since when, a leader waits for content.
#[derive(Debug)]
struct Progress {
    base: Instant,
    /// Milliseconds after `base` plus one since the leader waits for
    /// content; 0 while it does not.
    waiting_since: AtomicU64,
}

impl Progress {
    fn mark(&self, waiting: bool) {
        let v = if waiting {
            u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
        } else {
            0
        };
        self.waiting_since.store(v, Ordering::Relaxed);
    }

    /// How long the leader has been waiting for content, if it is.
    fn waiting_for(&self) -> Option<Duration> {
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.base
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }
}

/// A follower's view of a flight.
#[derive(Debug, Clone)]
pub struct Slot {
    rx: watch::Receiver<Option<Outcome>>,
    progress: Arc<Progress>,
}

/// The flights in progress, by cache key.
#[derive(Debug, Default)]
pub struct Flights {
    inner: Mutex<HashMap<Key, Slot>>,
}

/// The answer to [`Flights::join`].
#[derive(Debug)]
pub enum Join {
    /// Nobody is scanning this file: the caller does, and must complete the
    /// guard (dropping it tells followers the flight failed).
    Leader(Leader),
    /// Someone is scanning it: wait here for the outcome.
    Follower(Slot),
}

/// The duty of the VM that scans a file others are waiting for.
#[derive(Debug)]
pub struct Leader {
    key: Key,
    tx: watch::Sender<Option<Outcome>>,
    progress: Arc<Progress>,
    flights: Arc<Flights>,
    done: bool,
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight for `key`, or starts one.
    pub fn join(self: &Arc<Self>, key: Key) -> Join {
        let mut map = self.lock();
        if let Some(slot) = map.get(&key)
            && slot.rx.borrow().is_none()
        {
            return Join::Follower(slot.clone());
        }
        let (tx, rx) = watch::channel(None);
        let progress = Arc::new(Progress {
            base: Instant::now(),
            waiting_since: AtomicU64::new(0),
        });
        // It waits for its guest's content from the start.
        progress.mark(true);
        map.insert(
            key,
            Slot {
                rx,
                progress: progress.clone(),
            },
        );
        Join::Leader(Leader {
            key,
            tx,
            progress,
            flights: self.clone(),
            done: false,
        })
    }

    /// Follows the flight in progress for `key`, if there is one; never
    /// starts one.
    pub fn follow(&self, key: Key) -> Option<Slot> {
        self.lock()
            .get(&key)
            .filter(|slot| slot.rx.borrow().is_none())
            .cloned()
    }

    /// Flights in progress.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Leader {
    /// Says whether the leader now waits for its guest's content (true)
    /// or works on what it has (false).
    pub fn waiting_for_content(&self, waiting: bool) {
        self.progress.mark(waiting);
    }

    /// Ends the flight with `outcome`.
    pub fn complete(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        self.flights.lock().remove(&self.key);
        let _ = self.tx.send(Some(outcome));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// How a follower's wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Waited {
    /// The leader finished: its verdict, or `None` if it failed.
    Done(Outcome),
    /// The leader waited for its guest's content longer than [`STALL`].
    Stalled,
}

/// Waits for a flight's outcome, or until its leader stalls.
pub async fn wait(slot: Slot) -> Waited {
    let Slot { mut rx, progress } = slot;
    let check = STALL / 4;
    loop {
        tokio::select! {
            r = rx.wait_for(Option::is_some) => {
                return match r {
                    Ok(v) => Waited::Done(v.clone().flatten()),
                    Err(_) => Waited::Done(None),
                };
            }
            () = tokio::time::sleep(check) => {
                if progress.waiting_for().is_some_and(|d| d > STALL) {
                    return Waited::Stalled;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_verdict_and_a_dropped_leader_fails_them() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(leader) = flights.join([1; 16]) else {
            panic!("first is leader")
        };
        let Join::Follower(rx) = flights.join([1; 16]) else {
            panic!("second follows")
        };
        leader.waiting_for_content(false);
        leader.complete(Some(CachedVerdict::Clean));
        assert_eq!(wait(rx).await, Waited::Done(Some(CachedVerdict::Clean)));
        assert!(flights.is_empty());

        let Join::Leader(leader) = flights.join([2; 16]) else {
            panic!("leader")
        };
        let Join::Follower(rx) = flights.join([2; 16]) else {
            panic!("follower")
        };
        leader.waiting_for_content(false);
        drop(leader);
        assert_eq!(wait(rx).await, Waited::Done(None));
        assert!(
            matches!(flights.join([2; 16]), Join::Leader(_)),
            "a new flight can start"
        );
    }

    #[tokio::test]
    async fn a_leader_stuck_waiting_for_content_lets_followers_go_but_a_busy_one_does_not() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(leader) = flights.join([3; 16]) else {
            panic!("leader")
        };
        let Join::Follower(rx) = flights.join([3; 16]) else {
            panic!("follower")
        };
        let started = Instant::now();
        assert_eq!(wait(rx).await, Waited::Stalled);
        assert!(started.elapsed() >= STALL && started.elapsed() < STALL * 2);

        // Scanning (not waiting for content) for longer than STALL is fine.
        let Join::Follower(rx) = flights.join([3; 16]) else {
            panic!("follower")
        };
        leader.waiting_for_content(false);
        let waiter = tokio::spawn(wait(rx));
        tokio::time::sleep(STALL + STALL / 2).await;
        assert!(!waiter.is_finished());
        leader.complete(Some(CachedVerdict::Clean));
        assert_eq!(
            waiter.await.unwrap(),
            Waited::Done(Some(CachedVerdict::Clean))
        );
    }
}
