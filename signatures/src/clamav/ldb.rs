//! `.ldb` logical signatures (clamav-formats.md §6):
//! `SignatureName;TargetDescriptionBlock;LogicalExpression;Subsig0;…`.

use crate::clamav::hex::{self, HexOptions};
use crate::clamav::ign::IgnoreList;
use crate::clamav::line::{
    LineError, LineResult, Outcome, Settings, display_name, parse_u32, parse_u64,
};
use crate::clamav::ndb::{OffsetSpec, hex_err, parse_offset};
use crate::pattern::{CountOp, LogicalExpr, LogicalSignature, MAX_SUBSIGS, Subsig};

/// The minimum `Engine` level required by any TDB key other than `Target`.
pub const TDB_KEYS_MIN_FLEVEL: u32 = 51;

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

/// `min-max` with an optional (unbounded) maximum, as ClamAV reads ranges
/// in the target description block (`10-` is 10 and up; `10` alone is an
/// error).
fn range_u64(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once('-')?;
    let max = if b.is_empty() {
        u64::MAX
    } else {
        parse_u64(b)?
    };
    Some((parse_u64(a)?, max))
}

struct Tdb {
    engine: Option<(u32, u32)>,
    target: u32,
    file_size: Option<(u64, u64)>,
    entry_point: Option<(u64, u64)>,
    sections: Option<(u64, u64)>,
    container: Option<String>,
    unsupported: Option<String>,
}

fn parse_tdb(tdb: &str, name: &str) -> Result<Tdb, LineError> {
    let err = |r: String| LineError::new(Some(name), r);
    let mut engine = None;
    let mut target = None;
    let mut file_size = None;
    let mut entry_point = None;
    let mut sections = None;
    let mut container = None;
    let mut unsupported = None;
    let mut other_keys = false;
    let mut exe_keys: Vec<String> = Vec::new();
    let mut icon_keys: Vec<String> = Vec::new();
    for (i, kv) in tdb.split(',').enumerate() {
        let Some((k, v)) = kv.split_once(':') else {
            return Err(err(format!("bad target description block entry {kv:?}")));
        };
        // ClamAV compares the key names case-insensitively.
        let key = k.to_ascii_lowercase();
        match key.as_str() {
            "engine" => {
                if i != 0 {
                    return Err(err(
                        "`Engine` must come first in the target description block".into(),
                    ));
                }
                let (a, b) = range_u64(v)
                    .and_then(|(a, b)| {
                        Some((u32::try_from(a).ok()?, u32::try_from(b).unwrap_or(u32::MAX)))
                    })
                    .ok_or_else(|| err(format!("bad Engine range {v:?}")))?;
                engine = Some((a, b));
            }
            "target" => {
                target = Some(parse_u32(v).ok_or_else(|| err(format!("bad Target {v:?}")))?);
            }
            "filesize" => {
                other_keys = true;
                file_size =
                    Some(range_u64(v).ok_or_else(|| err(format!("bad FileSize range {v:?}")))?);
            }
            "entrypoint" | "numberofsections" => {
                other_keys = true;
                exe_keys.push(k.to_owned());
                let r = Some(range_u64(v).ok_or_else(|| err(format!("bad {k} range {v:?}")))?);
                if key == "entrypoint" {
                    entry_point = r;
                } else {
                    sections = r;
                }
            }
            "icongroup1" | "icongroup2" => {
                other_keys = true;
                icon_keys.push(k.to_owned());
                unsupported.get_or_insert(format!("tdb:{k}"));
            }
            "container" => {
                other_keys = true;
                container = Some(v.to_owned());
            }
            "intermediates" | "handlertype" => {
                other_keys = true;
                unsupported.get_or_insert(format!("tdb:{k}"));
            }
            _ => {
                other_keys = true;
                unsupported.get_or_insert(format!("tdb-unknown:{k}"));
            }
        }
    }
    let Some(target) = target else {
        return Err(err("the target description block has no `Target`".into()));
    };
    if let Some(k) = exe_keys.first().filter(|_| !matches!(target, 1 | 6 | 9)) {
        return Err(err(format!(
            "`{k}` is only supported for targets 1, 6 and 9"
        )));
    }
    if let Some(k) = icon_keys.first().filter(|_| target != 1) {
        return Err(err(format!("`{k}` is only supported for target 1")));
    }
    if other_keys && engine.is_none_or(|(min, _)| min < TDB_KEYS_MIN_FLEVEL) {
        return Err(err(format!(
            "target description keys other than Target need `Engine` with a minimum of at least {TDB_KEYS_MIN_FLEVEL}"
        )));
    }
    Ok(Tdb {
        engine,
        target,
        file_size,
        entry_point,
        sections,
        container,
        unsupported,
    })
}

fn parse_subsig(
    text: &str,
    idx: usize,
    target: u32,
    name: &str,
    s: &Settings<'_>,
) -> LineResult<Subsig> {
    let err = |r: String| LineError::new(Some(name), format!("subsignature {idx}: {r}"));
    if text.is_empty() {
        return Err(err("empty subsignature".into()));
    }
    if text.starts_with("${") {
        // ClamAV 1.4.6 loads a macro even as subsignature 0.
        return Ok(Outcome::Skip("macro".into()));
    }
    if text.contains('/') {
        return Ok(Outcome::Skip("pcre".into()));
    }
    if text.starts_with("fuzzy_img#") {
        return Ok(Outcome::Skip("fuzzy_img".into()));
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && text[digits..].starts_with('(')
        && (text[digits..].starts_with("(>>") || text[digits..].starts_with("(<<"))
    {
        return Ok(Outcome::Skip("byte-compare".into()));
    }
    let (main, mods) = match text.split_once("::") {
        Some((m, o)) => (m, o),
        None => (text, ""),
    };
    let mut opts = HexOptions::default();
    let mut ascii = false;
    for c in mods.chars() {
        match c {
            'i' => opts.nocase = true,
            'w' => opts.wide = true,
            'f' => opts.fullword = true,
            'a' => ascii = true,
            c => return Err(err(format!("invalid option {c:?}"))),
        }
    }
    opts.modified = !mods.is_empty();
    opts.braces = opts.wide || opts.fullword;
    let (offset, hex) = match main.split_once(':') {
        Some((o, h)) => (Some(o), h),
        None => (None, main),
    };
    let offset = match offset {
        None => crate::pattern::Offset::Any,
        Some(o) => match parse_offset(o, target).map_err(err)? {
            OffsetSpec::Plain(o) => o,
            OffsetSpec::VersionInfo => return Ok(Outcome::Skip("offset:VI".into())),
            OffsetSpec::Macro => return Ok(Outcome::Skip("macro".into())),
        },
    };
    let mut variants = Vec::new();
    let forms: &[bool] = if opts.wide && ascii {
        &[false, true]
    } else if opts.wide {
        &[true]
    } else {
        &[false]
    };
    for &wide in forms {
        let o = HexOptions { wide, ..opts };
        match hex::parse_body(hex, o, s.limits) {
            Ok(p) => variants.push(p),
            Err(e) => {
                return match hex_err::<Subsig>(e, name) {
                    Err(mut le) => {
                        le.reason = format!("subsignature {idx}: {}", le.reason);
                        Err(le)
                    }
                    other => other,
                };
            }
        }
    }
    Ok(Outcome::Keep(Subsig { offset, variants }))
}

/// Parses one `.ldb` line.
pub(crate) fn parse_line(
    line: &str,
    s: &Settings<'_>,
    ign: &IgnoreList,
) -> LineResult<LogicalSignature> {
    if line.len() > s.limits.max_ldb_line_len {
        return Err(LineError {
            name: None,
            reason: format!(
                "line is {} bytes (limit {})",
                line.len(),
                s.limits.max_ldb_line_len
            ),
            limit: true,
        });
    }
    let fields: Vec<&str> = line.split(';').collect();
    let raw_name = fields.first().copied().unwrap_or("");
    if fields.len() < 4 {
        return Err(LineError::new(
            Some(raw_name).filter(|n| !n.is_empty()),
            format!(
                "expected at least 4 `;`-separated fields, found {}",
                fields.len()
            ),
        ));
    }
    if raw_name.is_empty() {
        return Err(LineError::new(None, "empty signature name"));
    }
    if ign.ignores(raw_name, line) {
        return Ok(Outcome::Skip("ignored".into()));
    }
    let tdb = parse_tdb(fields[1], raw_name)?;
    if let Some((min, max)) = tdb.engine
        && (min > s.flevel || max < s.flevel)
    {
        return Ok(Outcome::Skip("flevel".into()));
    }
    let expr = parse_expression(fields[2])
        .map_err(|r| LineError::new(Some(raw_name), format!("invalid logical expression: {r}")))?;
    let subsig_texts = &fields[3..];
    if subsig_texts.len() > MAX_SUBSIGS {
        return Err(LineError::new(
            Some(raw_name),
            format!(
                "{} subsignatures (at most {MAX_SUBSIGS})",
                subsig_texts.len()
            ),
        ));
    }
    if expr.max_index() + 1 != subsig_texts.len() {
        return Err(LineError::new(
            Some(raw_name),
            format!(
                "the expression uses subsignatures 0..={} but the line has {}",
                expr.max_index(),
                subsig_texts.len()
            ),
        ));
    }
    if tdb.target >= 15 {
        return Ok(Outcome::Skip("target>=15".into()));
    }
    let mut subsigs = Vec::with_capacity(subsig_texts.len());
    let mut skip: Option<String> = None;
    for (i, t) in subsig_texts.iter().enumerate() {
        match parse_subsig(t, i, tdb.target, raw_name, s)? {
            Outcome::Keep(ss) => subsigs.push(ss),
            Outcome::Skip(r) => {
                skip.get_or_insert(r);
            }
        }
    }
    if tdb.target != 0 && !crate::pattern::TYPED_TARGETS.contains(&(tdb.target as u8)) {
        return Ok(Outcome::Skip(format!("target:{}", tdb.target)));
    }
    if let Some(r) = tdb.unsupported.or(skip) {
        return Ok(Outcome::Skip(r));
    }
    Ok(Outcome::Keep(LogicalSignature {
        name: display_name(raw_name, s.official),
        // Below 15, checked above.
        target: tdb.target as u8,
        file_size: tdb.file_size,
        entry_point: tdb.entry_point,
        sections: tdb.sections,
        container: tdb.container,
        expr,
        subsigs,
    }))
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
