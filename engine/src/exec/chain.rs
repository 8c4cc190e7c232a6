//! Chaining the parts of a pattern under their gap constraints, with
//! bounded state: an unbounded gap keeps only the earliest valid end of the
//! previous part; a bounded gap keeps the ends still inside its window.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use giva_signatures::Gap;

/// Valid ends of part `k` of one pattern, seen through gap `k`.
#[derive(Clone, Debug, Default)]
pub(crate) struct GapState {
    /// Earliest valid end (used for unbounded gaps).
    min_end: Option<u64>,
    /// Valid ends inside the window (used for bounded gaps).
    ends: BinaryHeap<Reverse<u64>>,
}

impl GapState {
    /// Records that the previous part validly ends at `end`.
    pub fn record(&mut self, gap: Gap, end: u64) {
        match gap.max {
            None => self.min_end = Some(self.min_end.map_or(end, |m| m.min(end))),
            Some(_) => self.ends.push(Reverse(end)),
        }
    }

    /// True if the next part may start at `start`. Queries must come in
    /// non-decreasing order of `start` (ends that fall out of the window are
    /// dropped).
    pub fn allows(&mut self, gap: Gap, start: u64) -> bool {
        let Some(hi) = start.checked_sub(u64::from(gap.min)) else {
            return false;
        };
        match gap.max {
            None => self.min_end.is_some_and(|m| m <= hi),
            Some(max) => {
                let lo = start.saturating_sub(u64::from(max));
                while let Some(&Reverse(e)) = self.ends.peek() {
                    if e < lo {
                        self.ends.pop();
                    } else {
                        return e <= hi;
                    }
                }
                false
            }
        }
    }

    /// True if nothing was recorded (a cheap pre-check).
    pub fn is_empty(&self) -> bool {
        self.min_end.is_none() && self.ends.is_empty()
    }
}
