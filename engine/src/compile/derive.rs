//! Which parts of a multi-part pattern are found by an atom of their own,
//! and which are *derived*: their candidates come from a neighbouring
//! part's atom, at every start the bounded gaps between them allow.
//!
//! Indexing every part on its own made the weakest part decide the speed.
//! Signatures cut from real code often have a rare part next to a run of
//! zeros or a common instruction sequence (`84c074deeb068b45c8{12-32}41??
//! 5dc?000000000000`): the zeros were an atom, and on the bench's real
//! files three such parts were confirmed 130 million times a GB, most of
//! the scan. A derived part costs nothing until its anchor's atom occurs,
//! and then a few byte checks, one per start its gap allows.

use giva_signatures::Gap;

use crate::index::rarity::UNIT;

/// A derived part's starts may spread over at most this many bytes more
/// than one (the sum of its gaps' and intermediate parts' slack).
pub(crate) const MAX_SPREAD: u64 = 63;

/// A derived part lies at most this far from its anchor's start (its own
/// bytes included): the distance adds to the bytes a scanner keeps.
pub(crate) const MAX_DISTANCE: u64 = 1024;

/// One occurrence of an anchor's atom queues at most this many derived
/// candidates.
const MAX_FANOUT: u64 = 256;

/// An atom this rare (quarter bits, length bonus included) is as good as
/// any: a part this rare is derived anyway if its anchor is, since that
/// keeps a key out of the index.
const GOOD: u32 = 48 * UNIT;

/// What the planner needs of one part.
#[derive(Clone, Copy, Debug)]
pub(super) struct PartInfo {
    /// Its fixed-length variants.
    pub variants: usize,
    /// Its shortest and longest variant.
    pub min_len: u64,
    pub max_len: u64,
    /// The score of its weakest variant's atom ([`super::atom::Atom`]).
    pub score: u32,
}

impl PartInfo {
    /// Its score less what its variants' number costs: each is an atom to
    /// find.
    fn worth(&self) -> u32 {
        self.score
            .saturating_sub(UNIT * (self.variants as u64).next_power_of_two().trailing_zeros())
    }
}

/// How the candidates of a part are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// By its own atoms.
    Own,
    /// By the atom of part `anchor` (one variant): a variant of this part
    /// starts (or, with `by_end`, ends) `lo..=hi` bytes after the anchor
    /// starts (negative: before).
    From {
        anchor: usize,
        lo: i64,
        hi: i64,
        by_end: bool,
    },
}

impl Role {
    /// For a variant of `len` bytes: the range of its start relative to
    /// its anchor's start.
    pub fn starts(&self, len: u64) -> Option<(i64, i64)> {
        match *self {
            Role::Own => None,
            Role::From { lo, hi, by_end, .. } => {
                let l = if by_end { len as i64 } else { 0 };
                Some((lo - l, hi - l))
            }
        }
    }
}

/// `n` as a count of bits, rounded up, in score units.
fn bits(n: u64) -> u32 {
    UNIT * n.next_power_of_two().trailing_zeros()
}

/// Plans the parts of one pattern (`gaps[k]` lies between parts `k` and
/// `k + 1`). Anchors are chosen best first among the parts of one variant;
/// from each, the plan reaches out over bounded gaps to the parts on both
/// sides while the spread, the distance and the fan-out stay small and the
/// anchor is rarer than the part by more than the spread costs.
pub(super) fn plan(parts: &[PartInfo], gaps: &[Gap]) -> Vec<Role> {
    let mut roles: Vec<Option<Role>> = vec![None; parts.len()];
    while let Some(a) = (0..parts.len())
        .filter(|&k| roles[k].is_none() && parts[k].variants == 1)
        .max_by_key(|&k| (parts[k].score, std::cmp::Reverse(k)))
    {
        roles[a] = Some(Role::Own);
        let anchor = parts[a].score;
        let mut fanout = 0u64;
        // May `part` be derived, its starts (or ends) spread over `lo..=hi`?
        let mut fits = |part: &PartInfo, lo: i64, hi: i64, far: u64| {
            let spread = (hi - lo) as u64;
            let width = (spread + 1) * part.variants as u64;
            let ok = spread <= MAX_SPREAD
                && far <= MAX_DISTANCE
                && fanout + width <= MAX_FANOUT
                && anchor >= part.worth().min(GOOD) + bits(width);
            if ok {
                fanout += width;
            }
            ok
        };
        // To the right: where part j starts.
        let (mut lo, mut hi) = (0i64, 0i64);
        for j in a + 1..parts.len() {
            let (prev, gap) = (&parts[j - 1], gaps[j - 1]);
            let Some(max) = gap.max else { break };
            lo += prev.min_len as i64 + i64::from(gap.min);
            hi += prev.max_len as i64 + i64::from(max);
            if roles[j].is_some() || !fits(&parts[j], lo, hi, hi as u64 + parts[j].max_len) {
                break;
            }
            roles[j] = Some(Role::From {
                anchor: a,
                lo,
                hi,
                by_end: false,
            });
        }
        // To the left: where part j ends.
        let (mut lo, mut hi) = (0i64, 0i64);
        for j in (0..a).rev() {
            let gap = gaps[j];
            let Some(max) = gap.max else { break };
            lo -= i64::from(max);
            hi -= i64::from(gap.min);
            if roles[j].is_some() || !fits(&parts[j], lo, hi, lo.unsigned_abs() + parts[j].max_len)
            {
                break;
            }
            roles[j] = Some(Role::From {
                anchor: a,
                lo,
                hi,
                by_end: true,
            });
            lo -= parts[j].max_len as i64;
            hi -= parts[j].min_len as i64;
        }
    }
    roles.into_iter().map(|r| r.unwrap_or(Role::Own)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(len: u64, score_bits: u32) -> PartInfo {
        PartInfo {
            variants: 1,
            min_len: len,
            max_len: len,
            score: score_bits * UNIT,
        }
    }

    fn gap(min: u32, max: Option<u32>) -> Gap {
        Gap { min, max }
    }

    #[test]
    fn a_weak_part_is_derived_from_a_rare_neighbour_on_either_side() {
        // rare{12-32}zeros: the zeros start 9 + 12 to 9 + 32 bytes after
        // the anchor starts.
        let roles = plan(&[part(9, 90), part(10, 20)], &[gap(12, Some(32))]);
        assert_eq!(roles[0], Role::Own);
        assert_eq!(
            roles[1],
            Role::From {
                anchor: 0,
                lo: 21,
                hi: 41,
                by_end: false
            }
        );
        // zeros{15-43}rare: the zeros end 15 to 43 bytes before it.
        let roles = plan(&[part(6, 20), part(20, 90)], &[gap(15, Some(43))]);
        assert_eq!(roles[1], Role::Own);
        assert_eq!(
            roles[0],
            Role::From {
                anchor: 1,
                lo: -43,
                hi: -15,
                by_end: true
            }
        );
        assert_eq!(roles[0].starts(6), Some((-49, -21)));
    }

    #[test]
    fn a_chain_reaches_over_several_parts_and_stops_at_a_star() {
        let parts = [part(4, 20), part(12, 90), part(3, 20), part(5, 20)];
        let roles = plan(&parts, &[gap(0, Some(2)), gap(1, Some(3)), gap(0, None)]);
        assert!(matches!(roles[0], Role::From { anchor: 1, .. }));
        assert_eq!(
            roles[2],
            Role::From {
                anchor: 1,
                lo: 13,
                hi: 15,
                by_end: false
            }
        );
        // Past `*` the last part is on its own.
        assert_eq!(roles[3], Role::Own);
    }

    #[test]
    fn wide_gaps_and_weak_anchors_keep_parts_on_their_own() {
        // A gap wider than the spread allows.
        let roles = plan(&[part(12, 90), part(12, 20)], &[gap(0, Some(500))]);
        assert_eq!(roles, [Role::Own, Role::Own]);
        // Too far away.
        let roles = plan(&[part(12, 90), part(12, 20)], &[gap(1100, Some(1110))]);
        assert_eq!(roles, [Role::Own, Role::Own]);
        // An anchor hardly rarer than the part: deriving would queue 21
        // candidates per occurrence of an atom as common as the part's.
        let roles = plan(&[part(8, 22), part(8, 21)], &[gap(0, Some(20))]);
        assert_eq!(roles, [Role::Own, Role::Own]);
        // Two rare parts: one is derived, keeping its key out of the index.
        let roles = plan(&[part(12, 90), part(12, 80)], &[gap(0, Some(20))]);
        assert!(matches!(roles[1], Role::From { anchor: 0, .. }));
    }

    #[test]
    fn an_anchor_has_one_variant() {
        let mut alt = part(12, 95);
        alt.variants = 2;
        let roles = plan(&[alt, part(12, 90)], &[gap(0, Some(4))]);
        assert_eq!(roles[1], Role::Own);
        assert!(matches!(roles[0], Role::From { anchor: 1, .. }));
    }
}
