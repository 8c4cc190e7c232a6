//! The queue between `giva scan`'s walk and its scanning threads.
//!
//! A bounded channel woke the walk for every file taken once it was full,
//! and a scanning thread for every file sent while it waited: about 18,000
//! context switches on 28,000 small files, which cost two threads a fifth
//! of their gain over one. Here each side sleeps only when it must and is
//! woken in bulk: the walk stops at `high` files waiting and goes on when
//! they are down to `low`; a scanning thread sleeps only on an empty queue.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Work from one producer for many consumers, bounded with hysteresis.
/// (Several producers work too, but take turns at the bound.)
#[derive(Debug)]
pub struct Backlog<T> {
    state: Mutex<State<T>>,
    /// Consumers wait here for work or the close.
    work: Condvar,
    /// The producer waits here for room.
    room: Condvar,
    high: usize,
    low: usize,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Consumers asleep on `work`.
    idle: usize,
    /// The producer is asleep on `room`.
    full: bool,
}

impl<T> Backlog<T> {
    /// A queue that holds at most `high` items (at least 1), and lets a
    /// producer held at `high` go on once they are down to half.
    pub fn new(high: usize) -> Self {
        let high = high.max(1);
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                idle: 0,
                full: false,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            high,
            low: high / 2,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A consumer that panicked holding the lock left the queue whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an item, first waiting for room while the queue is full.
    /// After [`close`](Self::close) the item is dropped.
    pub fn push(&self, item: T) {
        let mut s = self.lock();
        if s.items.len() >= self.high && !s.closed {
            // Until a consumer has taken the queue down to `low` (a
            // spurious wake-up leaves `full` set).
            s.full = true;
            while s.full && !s.closed {
                s = self.room.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        if s.closed {
            return;
        }
        s.items.push_back(item);
        if s.idle > 0 {
            self.work.notify_one();
        }
    }

    /// Takes the next item, waiting while the queue is empty and open;
    /// `None` once it is closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                if s.full && s.items.len() <= self.low {
                    s.full = false;
                    self.room.notify_all();
                }
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s.idle += 1;
            s = self.work.wait(s).unwrap_or_else(|e| e.into_inner());
            s.idle -= 1;
        }
    }

    /// No more items will come: consumers drain what is queued and then
    /// get `None`. A producer waiting for room returns.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.full = false;
        self.work.notify_all();
        self.room.notify_all();
    }
}

/// Closes the backlog when dropped, so the consumers end even if the
/// producer panics.
#[derive(Debug)]
pub struct CloseOnDrop<'a, T>(pub &'a Backlog<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Closes the backlog if a consumer panics, so that a producer waiting
/// for room returns instead of waiting for consumers that are gone.
#[derive(Debug)]
pub struct CloseOnPanic<'a, T>(pub &'a Backlog<T>);

impl<T> Drop for CloseOnPanic<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_is_taken_once_in_order_per_consumer() {
        let q = Backlog::new(8);
        let taken = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(i) = q.pop() {
                        mine.push(i);
                    }
                    // One consumer takes items in the order they were sent.
                    assert!(mine.windows(2).all(|w| w[0] < w[1]));
                    taken.lock().unwrap().extend(mine);
                });
            }
            let _close = CloseOnDrop(&q);
            for i in 0..10_000 {
                q.push(i);
            }
        });
        let mut all = taken.into_inner().unwrap();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn the_producer_waits_at_the_bound() {
        let q = Backlog::new(4);
        let pushed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..6 {
                    q.push(i);
                    pushed.fetch_add(1, Ordering::SeqCst);
                }
            });
            // Nobody takes: the producer stops at the bound.
            while pushed.load(Ordering::SeqCst) < 4 {
                std::thread::yield_now();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(pushed.load(Ordering::SeqCst), 4);
            // Taking down to half the bound lets it go on.
            assert_eq!(q.pop(), Some(0));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert_eq!(pushed.load(Ordering::SeqCst), 4, "woken above half");
            assert_eq!(q.pop(), Some(1));
            for want in 2..6 {
                assert_eq!(q.pop(), Some(want));
            }
            q.close();
        });
        assert_eq!(pushed.load(Ordering::SeqCst), 6);
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_panicking_producer_still_ends_the_consumers() {
        let q = Backlog::<u32>::new(4);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                s.spawn(|| while q.pop().is_some() {});
                let _close = CloseOnDrop(&q);
                q.push(1);
                panic!("the walk failed");
            });
        }));
        assert!(r.is_err());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_panicking_consumer_releases_a_waiting_producer() {
        let q = Backlog::<u32>::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _guard = CloseOnPanic(&q);
                    // Let the producer fill the queue and wait for room.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    let _ = q.pop();
                    panic!("a scan failed");
                });
                for i in 0..100 {
                    q.push(i);
                }
            });
        }));
        assert!(r.is_err());
    }
}
