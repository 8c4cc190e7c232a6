//! Chaining the parts of a pattern under their gap constraints, with
//! bounded state: an unbounded gap keeps only the earliest valid end of the
//! previous part; a bounded gap keeps the ends still inside its window.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use giva_signatures::Gap;

/// Valid ends of part `k` of one pattern, seen through gap `k`, each with
/// its chain's origin (where its first part started).
#[derive(Clone, Debug, Default)]
pub(crate) struct GapState {
    /// Earliest valid end and its origin (used for unbounded gaps).
    min_end: Option<(u64, u64)>,
    /// Valid ends inside the window, with their origins (used for bounded
    /// gaps).
    ends: BinaryHeap<Reverse<(u64, u64)>>,
}

impl GapState {
    /// Records that the previous part validly ends at `end`, on a chain
    /// whose first part started at `origin`.
    pub fn record(&mut self, gap: Gap, end: u64, origin: u64) {
        match gap.max {
            None => {
                self.min_end = Some(self.min_end.map_or((end, origin), |m| m.min((end, origin))))
            }
            Some(_) => self.ends.push(Reverse((end, origin))),
        }
    }

    /// Whether the next part may start at `start`: the origin of the
    /// earliest chain it continues (as ClamAV counts a multi-part match
    /// from its earliest first part), or `None`. Queries must come in
    /// non-decreasing order of `start` (ends that fall out of the window
    /// are dropped).
    pub fn allows(&mut self, gap: Gap, start: u64) -> Option<u64> {
        let hi = start.checked_sub(u64::from(gap.min))?;
        match gap.max {
            None => self.min_end.filter(|&(m, _)| m <= hi).map(|(_, o)| o),
            Some(max) => {
                let lo = start.saturating_sub(u64::from(max));
                while let Some(&Reverse((e, o))) = self.ends.peek() {
                    if e < lo {
                        self.ends.pop();
                    } else {
                        return (e <= hi).then_some(o);
                    }
                }
                None
            }
        }
    }

    /// True if nothing was recorded (a cheap pre-check).
    pub fn is_empty(&self) -> bool {
        self.min_end.is_none() && self.ends.is_empty()
    }
}
