//! `.ldb` logical signatures (clamav-formats.md §6):
//! `SignatureName;TargetDescriptionBlock;LogicalExpression;Subsig0;…`.

use crate::clamav::bytecmp;
use crate::clamav::expr::parse_expression;
use crate::clamav::hex::{self, HexOptions};
use crate::clamav::ign::IgnoreList;
use crate::clamav::line::{
    LineError, LineResult, Outcome, Settings, display_name, parse_u32, parse_u64,
};
use crate::clamav::ndb::{OffsetSpec, hex_err, parse_offset};
use crate::clamav::pcre_sub::{self, split_outside_regex};
use crate::pattern::{Check, LogicalSignature, MAX_SUBSIGS, Subsig};

/// One parsed subsignature: matched by the scan, or checked after it.
enum Item {
    Content(Subsig),
    Check(Check),
}

/// The minimum `Engine` level required by any TDB key other than `Target`.
pub const TDB_KEYS_MIN_FLEVEL: u32 = 51;

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
) -> LineResult<Item> {
    let err = |r: String| LineError::new(Some(name), format!("subsignature {idx}: {r}"));
    if text.is_empty() {
        return Err(err("empty subsignature".into()));
    }
    if text.starts_with("${") {
        // ClamAV 1.4.6 loads a macro even as subsignature 0.
        return Ok(Outcome::Skip("macro".into()));
    }
    if text.contains('/') {
        return match pcre_sub::parse(text, idx, target).map_err(|r| err(format!("PCRE: {r}")))? {
            pcre_sub::Parsed::Check(c) => Ok(Outcome::Keep(Item::Check(Check::Pcre(c)))),
            pcre_sub::Parsed::Skip(r) => Ok(Outcome::Skip(r.into())),
        };
    }
    if bytecmp::is_byte_compare(text) {
        let b = bytecmp::parse(text).map_err(|r| err(format!("byte compare: {r}")))?;
        return Ok(Outcome::Keep(Item::Check(Check::ByteCompare(b))));
    }
    if text.starts_with("fuzzy_img#") {
        return Ok(Outcome::Skip("fuzzy_img".into()));
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
                return match hex_err::<Item>(e, name) {
                    Err(mut le) => {
                        le.reason = format!("subsignature {idx}: {}", le.reason);
                        Err(le)
                    }
                    other => other,
                };
            }
        }
    }
    Ok(Outcome::Keep(Item::Content(Subsig { offset, variants })))
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
    // The name and the target description block split at every `;`; from
    // the expression on, a `;` inside a PCRE's `/…/` does not (and the
    // `/` toggle carries from one subsignature to the next, as in ClamAV).
    let mut fields: Vec<&str> = line.splitn(3, ';').collect();
    if fields.len() == 3 {
        let rest = fields.pop().unwrap_or_default();
        let mut toggle = false;
        fields.extend(split_outside_regex(rest, b';', &mut toggle));
    }
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
    let mut checks = Vec::new();
    let mut skip: Option<String> = None;
    for (i, t) in subsig_texts.iter().enumerate() {
        match parse_subsig(t, i, tdb.target, raw_name, s)? {
            Outcome::Keep(Item::Content(ss)) => subsigs.push(ss),
            Outcome::Keep(Item::Check(c)) => {
                subsigs.push(Subsig {
                    offset: crate::pattern::Offset::Any,
                    variants: Vec::new(),
                });
                checks.push((i, c));
            }
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
        checks,
    }))
}
