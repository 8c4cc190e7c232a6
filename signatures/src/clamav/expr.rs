//! The logical expression of an `.ldb` signature (clamav-formats.md §6.2),
//! also the trigger of a PCRE subsignature: indexes, `&`, `|`,
//! parentheses and counts, with ClamAV's grouping and leniency.

use crate::pattern::{CountOp, LogicalExpr, MAX_SUBSIGS};

/// Deepest expression nesting accepted.
const MAX_EXPR_DEPTH: usize = 200;

/// Parses a logical expression with ClamAV's grouping: split at the first
/// top-level `&` or `|`, so `a & b | c` is `a & (b | c)`.
///
/// # Errors
///
/// A plain reason when the expression does not parse.
pub fn parse_expression(s: &str) -> Result<LogicalExpr, String> {
    expr(s.as_bytes(), 0)
}

fn expr(s: &[u8], depth: usize) -> Result<LogicalExpr, String> {
    if depth > MAX_EXPR_DEPTH {
        return Err(format!("expression nested deeper than {MAX_EXPR_DEPTH}"));
    }
    if s.is_empty() {
        return Err("syntax error: missing argument".into());
    }
    let mut d = 0usize;
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'(' => d += 1,
            b')' => {
                d = d.checked_sub(1).ok_or("syntax error: unbalanced `)`")?;
            }
            b'&' | b'|' if d == 0 => {
                if i + 1 == s.len() {
                    return Err("syntax error: missing right argument".into());
                }
                if i == 0 {
                    return Err("syntax error: missing left argument".into());
                }
                let l = Box::new(expr(&s[..i], depth + 1)?);
                let r = Box::new(expr(&s[i + 1..], depth + 1)?);
                return Ok(if c == b'&' {
                    LogicalExpr::And(l, r)
                } else {
                    LogicalExpr::Or(l, r)
                });
            }
            _ => {}
        }
    }
    if d != 0 {
        return Err("syntax error: missing `)`".into());
    }
    term(s, depth)
}

fn term(s: &[u8], depth: usize) -> Result<LogicalExpr, String> {
    let text = String::from_utf8_lossy(s);
    if s.first() == Some(&b'(') {
        let mut d = 0usize;
        let mut close = None;
        for (i, &c) in s.iter().enumerate() {
            match c {
                b'(' => d += 1,
                b')' => {
                    d -= 1;
                    if d == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.ok_or("syntax error: missing `)`")?;
        let inside = &s[1..close];
        let inner = expr(inside, depth + 1)?;
        let rest = &s[close + 1..];
        // ClamAV counts only blocks that hold an operator at their top
        // level: `(0)>1` and `((0|1))>1` are syntax errors, `(0|1)>1` is not.
        if !rest.is_empty() && !has_top_level_operator(inside) {
            return Err(format!(
                "a count on a parenthesised block needs `&` or `|` inside it: {text:?}"
            ));
        }
        return block_modifier(inner, rest, &text);
    }
    // A single index: ClamAV skips leading blanks and ignores anything
    // after `N`, `N<op>count` or `N<op>count,m` (`1,1`, `0x`, `2>01>0`).
    let lead = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let s = &s[lead..];
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err(format!("can't parse {text:?}"));
    }
    let n: usize = std::str::from_utf8(&s[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .filter(|&n| n < MAX_SUBSIGS)
        .ok_or_else(|| format!("subsignature index in {text:?} is out of range"))?;
    let inner = LogicalExpr::Sub(n);
    // ...but not a parenthesis.
    if s[digits..].iter().any(|&c| c == b'(' || c == b')') {
        return Err(format!("can't parse {text:?}"));
    }
    let Some((op, rest)) = count_op(&s[digits..]) else {
        return Ok(inner);
    };
    let (count, _) = leading_number(rest).ok_or_else(|| format!("bad count in {text:?}"))?;
    // `,m` on a single index is parsed and ignored by ClamAV.
    Ok(LogicalExpr::Count {
        inner: Box::new(inner),
        op,
        count,
        distinct: None,
    })
}

fn count_op(s: &[u8]) -> Option<(CountOp, &[u8])> {
    let (&c, rest) = s.split_first()?;
    let op = match c {
        b'=' => CountOp::Eq,
        b'>' => CountOp::Gt,
        b'<' => CountOp::Lt,
        _ => return None,
    };
    Some((op, rest))
}

/// Blanks, then at least one digit: the number and what follows it. The
/// number is read as ClamAV reads it, with C's `strtol` (saturating at
/// 2^63 - 1) stored in 32 bits: `4294967298` is 2, and anything from 2^63
/// up is 4294967295.
fn leading_number(s: &[u8]) -> Option<(u32, &[u8])> {
    let lead = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let s = &s[lead..];
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let v = s[..n].iter().try_fold(0i64, |v, d| {
        v.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    });
    let v = v.unwrap_or(i64::MAX) as u64 as u32;
    Some((v, &s[n..]))
}

fn has_top_level_operator(s: &[u8]) -> bool {
    let mut d = 0usize;
    for &c in s {
        match c {
            b'(' => d += 1,
            b')' => d = d.saturating_sub(1),
            b'&' | b'|' if d == 0 => return true,
            _ => {}
        }
    }
    false
}

/// The count after a parenthesised block: `=n`, `=n,m` (ClamAV also takes
/// `=n,` and further `,`-separated digits, and nothing else).
fn block_modifier(inner: LogicalExpr, rest: &[u8], text: &str) -> Result<LogicalExpr, String> {
    if rest.is_empty() {
        return Ok(inner);
    }
    let bad = || format!("can't parse {text:?}");
    let (op, rest) = count_op(rest).ok_or_else(bad)?;
    let (count, rest) = leading_number(rest).ok_or_else(|| format!("bad count in {text:?}"))?;
    let distinct = match rest.split_first() {
        None => None,
        Some((b',', tail)) => {
            if !tail.iter().all(|c| c.is_ascii_digit() || *c == b',') {
                return Err(bad());
            }
            if tail.first().is_some_and(u8::is_ascii_digit) {
                leading_number(tail).map(|(m, _)| m)
            } else {
                None
            }
        }
        Some(_) => return Err(bad()),
    };
    Ok(LogicalExpr::Count {
        inner: Box::new(inner),
        op,
        count,
        distinct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_splits_at_first_operator() {
        let e = parse_expression("0&1|2").unwrap();
        assert!(matches!(e, LogicalExpr::And(_, ref r) if matches!(**r, LogicalExpr::Or(..))));
        let e = parse_expression("((0|1|2)>5,2)&(3|1)").unwrap();
        assert_eq!(e.max_index(), 3);
        assert!(parse_expression("0&!1").is_err());
        assert!(parse_expression("0&").is_err());
        let e = parse_expression("0=3,5").unwrap();
        assert!(matches!(
            e,
            LogicalExpr::Count {
                distinct: None,
                count: 3,
                ..
            }
        ));
    }
}
