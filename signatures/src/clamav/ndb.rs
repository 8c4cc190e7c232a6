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
use crate::pattern::{BodySignature, ExeAnchor, Offset};

/// A parsed offset field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetSpec {
    /// An offset giva resolves (plain or executable-relative).
    Plain(Offset),
    /// `VI`, the version information of a PE (not supported).
    VersionInfo,
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

/// A number ClamAV reads after an offset's prefix: all digits, the empty
/// string being 0.
fn digits_or_zero(s: &str) -> Option<u64> {
    if s.is_empty() { Some(0) } else { parse_u64(s) }
}

/// The executable-relative forms: `EP+n`, `EP-n`, `Sx+n`, `SEx`, `SL+n`,
/// each with an optional `,shift`; `None` if `s` is none of them. As in
/// ClamAV, an empty number is 0 and anything after `Sx+n`'s digits is
/// ignored.
fn parse_exe_offset(s: &str) -> Option<Result<Offset, ()>> {
    let (body, shift) = match s.split_once(',') {
        Some((b, sh)) => (b, Some(sh)),
        None => (s, None),
    };
    let exe = |anchor, delta: u64, neg: bool| -> Result<Offset, ()> {
        let shift = shift.map_or(Some(0), digits_or_zero).ok_or(())?;
        let delta = i64::try_from(delta).map_err(|_| ())?;
        Ok(Offset::Exe {
            anchor,
            delta: if neg { -delta } else { delta },
            shift,
        })
    };
    let num = |rest: &str| digits_or_zero(rest).ok_or(());
    if let Some(rest) = body.strip_prefix("EP+") {
        return Some(num(rest).and_then(|n| exe(ExeAnchor::EntryPoint, n, false)));
    }
    if let Some(rest) = body.strip_prefix("EP-") {
        return Some(num(rest).and_then(|n| exe(ExeAnchor::EntryPoint, n, true)));
    }
    if let Some(rest) = body.strip_prefix("SL+") {
        return Some(num(rest).and_then(|n| exe(ExeAnchor::LastSection, n, false)));
    }
    if let Some(rest) = body.strip_prefix("SE") {
        return Some((|| {
            let x = u32::try_from(num(rest)?).map_err(|_| ())?;
            exe(ExeAnchor::WholeSection(x), 0, false)
        })());
    }
    let rest = body.strip_prefix('S')?;
    Some((|| {
        // `S%u+%u`: digits, `+`, digits; the rest is ignored.
        let lead = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
        let n = lead(rest);
        let x: u32 = rest[..n].parse().map_err(|_| ())?;
        let after = rest[n..].strip_prefix('+').ok_or(())?;
        let m = lead(after);
        let delta: u64 = after[..m].parse().map_err(|_| ())?;
        exe(ExeAnchor::Section(x), delta, false)
    })())
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
    let exe = parse_exe_offset(s);
    if exe.is_some() || s.starts_with("VI") {
        if !matches!(target, 1 | 6 | 9) {
            return Err(format!("invalid offset type {s:?} for target {target}"));
        }
        return match exe {
            Some(Ok(o)) => Ok(OffsetSpec::Plain(o)),
            Some(Err(())) => Err(bad()),
            None => Ok(OffsetSpec::VersionInfo),
        };
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
    // The first six fields, and how many there are.
    let mut fields = [""; 6];
    let mut count = 0;
    for f in line.split(':') {
        if let Some(slot) = fields.get_mut(count) {
            *slot = f;
        }
        count += 1;
    }
    let raw_name = fields[0];
    if !(4..=6).contains(&count) {
        return Err(LineError::new(
            Some(raw_name).filter(|n| !n.is_empty()),
            format!("expected 4 to 6 fields, found {count}"),
        ));
    }
    if raw_name.is_empty() {
        return Err(LineError::new(None, "empty signature name"));
    }
    // ClamAV checks the ignore list right after the field count.
    if ign.ignores(raw_name, line) {
        return Ok(Outcome::Skip("ignored".into()));
    }
    let field = |k: usize| (k < count).then_some(fields[k]);
    let min = parse_flevel(field(4), raw_name)?;
    let max = parse_flevel(field(5), raw_name)?;
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
        OffsetSpec::VersionInfo => return Ok(Outcome::Skip("offset:VI".into())),
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
