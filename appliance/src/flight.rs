//! Single flight: when many VMs ask about the same file at once (an
//! instant-clone storm), one of them streams and scans it and the others
//! wait for its verdict, so the same bytes are never scanned twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use giva_engine::CachedVerdict;
use giva_engine::cache::Key;
use tokio::sync::watch;

/// What a finished flight tells its followers: the verdict, or `None` when
/// the leader could not produce one (then each follower scans for itself).
pub type Outcome = Option<CachedVerdict>;

type Slot = watch::Receiver<Option<Outcome>>;

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
        if let Some(rx) = map.get(&key)
            && rx.borrow().is_none()
        {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key, rx);
        Join::Leader(Leader {
            key,
            tx,
            flights: self.clone(),
            done: false,
        })
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

/// Waits for a flight's outcome; `None` when the leader failed or vanished.
pub async fn wait(mut rx: Slot) -> Outcome {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().flatten(),
        Err(_) => None,
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
        leader.complete(Some(CachedVerdict::Clean));
        assert_eq!(wait(rx).await, Some(CachedVerdict::Clean));
        assert!(flights.is_empty());

        let Join::Leader(leader) = flights.join([2; 16]) else {
            panic!("leader")
        };
        let Join::Follower(rx) = flights.join([2; 16]) else {
            panic!("follower")
        };
        drop(leader);
        assert_eq!(wait(rx).await, None);
        assert!(
            matches!(flights.join([2; 16]), Join::Leader(_)),
            "a new flight can start"
        );
    }
}
