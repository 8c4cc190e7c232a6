//! [`Backoff`]: the one retry schedule of every giva retry loop (the
//! appliance's reports to the manager, the manager's tagging actions, the
//! shim's reconnects).

use std::time::Duration;

/// Exponential backoff with jitter: the `n`th delay (from 1) is
/// `min × 2^(n-1)`, capped at `max`, less a random share of up to half of
/// it, so that many clients that failed together do not retry together.
/// [`reset`](Backoff::reset) after a success starts again from `min`.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule from `min` up to `max` (at least `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay before the next attempt, counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay_after(self.failures)
    }

    /// Starts again from the shortest delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// How many failures were counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay after `failures` failures in a row (from 1), for callers
    /// that keep the count themselves (a retry that survives a restart).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let base = self
            .min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        let jitter = base.mul_f64(fastrand::f64() / 2.0);
        base.saturating_sub(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_minimum_and_stop_at_the_maximum() {
        let ms = Duration::from_millis;
        let b = Backoff::new(ms(100), ms(1000));
        for _ in 0..200 {
            for (failures, lo, hi) in [(1, 50, 100), (2, 100, 200), (4, 400, 800), (5, 500, 1000)] {
                let d = b.delay_after(failures);
                assert!(d >= ms(lo) && d <= ms(hi), "{failures}: {d:?}");
            }
            for failures in [10, 40, u32::MAX] {
                let d = b.delay_after(failures);
                assert!(d >= ms(500) && d <= ms(1000), "{failures}: {d:?}");
            }
        }
    }

    #[test]
    fn next_delay_counts_failures_and_reset_starts_again() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(10_000));
        for _ in 0..6 {
            b.next_delay();
        }
        assert_eq!(b.failures(), 6);
        assert!(b.next_delay() >= ms(320));
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.next_delay() <= ms(10));
    }

    #[test]
    fn a_maximum_below_the_minimum_is_the_minimum() {
        let ms = Duration::from_millis;
        let b = Backoff::new(ms(100), ms(1));
        assert!(b.delay_after(3) <= ms(100));
    }
}
