//! `.ndb` extended signatures (clamav-formats.md §5) and the offset syntax
//! shared with `.ldb` subsignatures.
//!
//! `MalwareName:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]`

use crate::clamav::hex::{self, HexError, HexOptions};
use crate::clamav::ign::IgnoreList;
use crate::clamav::line::{
    LineError, LineResult, Outcome, Settings, display_name, flevel_skip, parse_flevel, parse_u32,
    parse_u64,
};
use crate::pattern::{BodySignature, Offset};

/// A parsed offset field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetSpec {
    /// A plain-file offset.
    Plain(Offset),
    /// An executable-relative offset (`EP`, `Sx`, `SEx`, `SL`, `VI`).
    Exe,
    /// A macro group (`$n`).
    Macro,
}

fn parse_off_shift(s: &str) -> Option<(u64, u64)> {
    match s.split_once(',') {
        None => Some((parse_u64(s)?, 0)),
        // ClamAV reads an empty number on either side of the comma (`10,`,
        // `,5`) as 0.
        Some((a, b)) => {
            let num = |x: &str| if x.is_empty() { Some(0) } else { parse_u64(x) };
            Some((num(a)?, num(b)?))
        }
    }
}

/// Parses an offset field; `target` decides whether executable forms are
/// allowed (1, 6 and 9 only, as in ClamAV).
pub(crate) fn parse_offset(s: &str, target: u32) -> Result<OffsetSpec, String> {
    let bad = || format!("invalid offset {s:?}");
    if s == "*" {
        return Ok(OffsetSpec::Plain(Offset::Any));
    }
    if let Some(rest) = s.strip_prefix("EOF-") {
        let (back, shift) = parse_off_shift(rest).ok_or_else(bad)?;
        return Ok(OffsetSpec::Plain(Offset::FromEnd { back, shift }));
    }
    if s.starts_with('$') {
        return Ok(OffsetSpec::Macro);
    }
    let exe = s.starts_with("EP+")
        || s.starts_with("EP-")
        || s.starts_with("SL+")
        || s.starts_with("SE")
        || s == "VI"
        || (s.starts_with('S') && s.len() > 1 && s.as_bytes()[1].is_ascii_digit());
    if exe {
        if matches!(target, 1 | 6 | 9) {
            return Ok(OffsetSpec::Exe);
        }
        return Err(format!("invalid offset type {s:?} for target {target}"));
    }
    let (start, shift) = parse_off_shift(s).ok_or_else(bad)?;
    Ok(OffsetSpec::Plain(Offset::Absolute { start, shift }))
}

/// Maps a hex error to a line outcome.
pub(crate) fn hex_err<T>(e: HexError, name: &str) -> LineResult<T> {
    match e {
        HexError::Malformed(r) => Err(LineError::new(Some(name), r)),
        HexError::Limit(r) => Err(LineError {
            name: Some(name.to_owned()),
            reason: r,
            limit: true,
        }),
        HexError::Unsupported(r) => Ok(Outcome::Skip(r.to_owned())),
    }
}

/// Parses one `.ndb` line.
pub(crate) fn parse_line(
    line: &str,
    s: &Settings<'_>,
    ign: &IgnoreList,
) -> LineResult<BodySignature> {
    let fields: Vec<&str> = line.split(':').collect();
    let raw_name = fields.first().copied().unwrap_or("");
    if !(4..=6).contains(&fields.len()) {
        return Err(LineError::new(
            Some(raw_name).filter(|n| !n.is_empty()),
            format!("expected 4 to 6 fields, found {}", fields.len()),
        ));
    }
    if raw_name.is_empty() {
        return Err(LineError::new(None, "empty signature name"));
    }
    // ClamAV checks the ignore list right after the field count.
    if ign.ignores(raw_name, line) {
        return Ok(Outcome::Skip("ignored".into()));
    }
    let min = parse_flevel(fields.get(4).copied(), raw_name)?;
    let max = parse_flevel(fields.get(5).copied(), raw_name)?;
    if let Some(r) = flevel_skip(min, max, s.flevel) {
        return Ok(Outcome::Skip(r));
    }
    let target = match fields[1] {
        "*" => 0,
        t => parse_u32(t)
            .ok_or_else(|| LineError::new(Some(raw_name), format!("invalid target type {t:?}")))?,
    };
    if target >= 15 {
        return Ok(Outcome::Skip("target>=15".into()));
    }
    let offset = parse_offset(fields[2], target).map_err(|r| LineError::new(Some(raw_name), r))?;
    let pattern = match hex::parse_body(fields[3], HexOptions::default(), s.limits) {
        Ok(p) => p,
        Err(e) => return hex_err(e, raw_name),
    };
    if hex::is_plain_literal(&pattern).is_some_and(|n| n < 3) {
        return Err(LineError::new(
            Some(raw_name),
            "signature is too short (a plain string needs 3 bytes)",
        ));
    }
    if target != 0 && !crate::pattern::TYPED_TARGETS.contains(&(target as u8)) {
        return Ok(Outcome::Skip(format!("target:{target}")));
    }
    let offset = match offset {
        OffsetSpec::Plain(o) => o,
        OffsetSpec::Exe => return Ok(Outcome::Skip("offset:exe".into())),
        OffsetSpec::Macro => return Ok(Outcome::Skip("macro".into())),
    };
    if !s.phishing
        && (raw_name.starts_with("HTML.Phishing") || raw_name.starts_with("Email.Phishing"))
    {
        return Ok(Outcome::Skip("phishing-disabled".into()));
    }
    Ok(Outcome::Keep(BodySignature {
        name: display_name(raw_name, s.official),
        // Below 15, checked above.
        target: target as u8,
        offset,
        pattern,
    }))
}
