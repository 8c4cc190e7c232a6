//! Evaluating a logical expression over subsignature match counts, the way
//! ClamAV does (`docs/clamav-formats.md` §6.2).
//!
//! Every node has a truth value and a count:
//!
//! - a subsignature is true when it matched; its count is its number of
//!   matches (overlaps included);
//! - `a & b` is true when both are; its count is the sum of both counts
//!   (zero when false);
//! - `a | b` is true when either is; its count is the sum of the counts of
//!   the true sides;
//! - `X op n[,m]` is true when the count of `X` compares as asked and, for a
//!   block, at least `m` distinct subsignatures inside it matched (`,m` is
//!   ignored on a single subsignature). Its count is the count of `X` when
//!   true, else zero. `X=0` is therefore the negation idiom.

use giva_signatures::{CountOp, LogicalExpr};

fn eval_node(e: &LogicalExpr, counts: &[u32]) -> (bool, u64) {
    match e {
        LogicalExpr::Sub(i) => {
            let c = u64::from(counts.get(*i).copied().unwrap_or(0));
            (c > 0, c)
        }
        LogicalExpr::And(a, b) => {
            let (ta, ca) = eval_node(a, counts);
            let (tb, cb) = eval_node(b, counts);
            if ta && tb {
                (true, ca + cb)
            } else {
                (false, 0)
            }
        }
        LogicalExpr::Or(a, b) => {
            let (ta, ca) = eval_node(a, counts);
            let (tb, cb) = eval_node(b, counts);
            (ta || tb, if ta { ca } else { 0 } + if tb { cb } else { 0 })
        }
        LogicalExpr::Count {
            inner,
            op,
            count,
            distinct,
        } => {
            let (_, c) = eval_node(inner, counts);
            let n = u64::from(*count);
            let mut ok = match op {
                CountOp::Eq => c == n,
                CountOp::Gt => c > n,
                CountOp::Lt => c < n,
            };
            if let (Some(m), false) = (distinct, matches!(**inner, LogicalExpr::Sub(_))) {
                let mut seen = Vec::new();
                collect_matched(inner, counts, &mut seen);
                seen.sort_unstable();
                seen.dedup();
                ok &= seen.len() as u64 >= u64::from(*m);
            }
            (ok, if ok { c } else { 0 })
        }
    }
}

fn collect_matched(e: &LogicalExpr, counts: &[u32], out: &mut Vec<usize>) {
    match e {
        LogicalExpr::Sub(i) => {
            if counts.get(*i).copied().unwrap_or(0) > 0 {
                out.push(*i);
            }
        }
        LogicalExpr::And(a, b) | LogicalExpr::Or(a, b) => {
            collect_matched(a, counts, out);
            collect_matched(b, counts, out);
        }
        LogicalExpr::Count { inner, .. } => collect_matched(inner, counts, out),
    }
}

/// True if `expr` holds for the per-subsignature match `counts`.
pub(crate) fn eval(expr: &LogicalExpr, counts: &[u32]) -> bool {
    eval_node(expr, counts).0
}
