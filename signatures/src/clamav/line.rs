//! Helpers shared by the line-based text formats: line splitting, the
//! per-line outcome, names and FLEVEL gating.

use crate::limits::Limits;
use crate::pattern::UNOFFICIAL;

/// What one line turned into.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    /// Loaded.
    Keep(T),
    /// Skipped for the given reason (counted in `DatabaseInfo::skipped`).
    Skip(String),
}

/// Why one line was refused.
#[derive(Debug)]
pub(crate) struct LineError {
    pub name: Option<String>,
    pub reason: String,
    pub limit: bool,
}

impl LineError {
    pub fn new(name: Option<&str>, reason: impl Into<String>) -> Self {
        LineError {
            name: name.map(str::to_owned),
            reason: reason.into(),
            limit: false,
        }
    }
}

pub(crate) type LineResult<T> = Result<Outcome<T>, LineError>;

/// Settings every line parser needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings<'a> {
    pub flevel: u32,
    pub official: bool,
    pub phishing: bool,
    pub limits: &'a Limits,
}

/// Splits text into `(line number, line)` pairs, handling CRLF, comments,
/// a NUL (which ends the line, as in ClamAV) and a missing final newline. Empty lines are returned (the caller refuses
/// them); comment lines are not.
pub(crate) fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut it = if text.is_empty() {
        None
    } else {
        Some(body.split('\n'))
    };
    let mut n = 0usize;
    std::iter::from_fn(move || {
        loop {
            let l = it.as_mut()?.next()?;
            n += 1;
            // ClamAV reads a line as a C string: a NUL ends it.
            let l = l.split_once('\0').map_or(l, |(head, _)| head);
            let l = l.strip_suffix('\r').unwrap_or(l);
            if l.starts_with('#') {
                continue;
            }
            return Some((n, l));
        }
    })
}

/// The reported name: cut at ` (Clam)` (ClamAV drops the rest of the name
/// with it) and [`UNOFFICIAL`] appended unless the source is official.
pub(crate) fn display_name(raw: &str, official: bool) -> String {
    let base = raw.split_once(" (Clam)").map_or(raw, |(head, _)| head);
    let mut name = String::with_capacity(base.len() + UNOFFICIAL.len());
    name.push_str(base);
    if !official {
        name.push_str(UNOFFICIAL);
    }
    name
}

/// Parses an optional FLEVEL field (`""` means absent).
pub(crate) fn parse_flevel(s: Option<&str>, name: &str) -> Result<Option<u32>, LineError> {
    match s {
        None | Some("") => Ok(None),
        Some(v) => parse_u32(v)
            .map(Some)
            .ok_or_else(|| LineError::new(Some(name), format!("bad functionality level {v:?}"))),
    }
}

/// Strict decimal u32.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Strict decimal u64.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `Some(reason)` if the FLEVEL range excludes the engine.
pub(crate) fn flevel_skip(min: Option<u32>, max: Option<u32>, flevel: u32) -> Option<String> {
    if min.is_some_and(|m| m > flevel) || max.is_some_and(|m| m < flevel) {
        Some("flevel".to_owned())
    } else {
        None
    }
}

/// Decodes a hex digest (either case); `None` if it is not hex.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

/// C `atoi` on an unsigned field: leading whitespace skipped, the leading
/// digits read (saturating), 0 when there are none. ClamAV reads the
/// FLEVEL fields of hash files this way.
pub(crate) fn atoi_u32(s: &str) -> u32 {
    s.trim_start()
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        })
}
