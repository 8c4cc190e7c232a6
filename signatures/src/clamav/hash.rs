//! Hash signatures: whole files `.hdb .hsb .hdu .hsu` (detections) and
//! `.fp .sfp` (the allow-list), PE sections `.mdb .msb .mdu .msu` and PE
//! import tables `.imp` (clamav-formats.md §3.1, §3.3 and §8.1).
//!
//! `HashString:FileSize:MalwareName[:MinFL[:MaxFL]]` (a section's line
//! starts with the size: `SectionSize:HashString:...`); the algorithm is
//! chosen by the digest length; `*` as the size needs MinFL ≥ 73, except
//! in `.imp`.

use crate::clamav::ign::IgnoreList;
use crate::clamav::line::{
    LineError, LineResult, Outcome, Settings, atoi_u32, decode_hex, display_name, flevel_skip,
    parse_u64,
};
use crate::pattern::HashAlgo;
use crate::pattern::{HashEntry, HashScope};

/// The minimum FLEVEL a `*` size needs.
pub const WILDCARD_SIZE_MIN_FLEVEL: u32 = 73;

/// The kinds of hash line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashLine {
    /// `.hdb .hsb .hdu .hsu`: a whole file.
    File,
    /// `.fp .sfp`: the allow-list (the name is kept as written, without
    /// `.UNOFFICIAL`).
    Allow,
    /// `.mdb .msb .mdu .msu`: a PE section, `Size:Hash:Name`.
    Section,
    /// `.imp`: a PE's import table; `*` as the size needs no level.
    Import,
}

/// Parses one hash line of kind `kind`.
pub(crate) fn parse_line(
    line: &str,
    kind: HashLine,
    s: &Settings<'_>,
    ign: &IgnoreList,
) -> LineResult<HashEntry> {
    let fields: Vec<&str> = line.split(':').collect();
    let name = fields.get(2).copied();
    if !(3..=5).contains(&fields.len()) {
        return Err(LineError::new(
            name,
            format!("expected 3 to 5 fields, found {}", fields.len()),
        ));
    }
    let (hash, size, raw_name) = match kind {
        HashLine::Section => (fields[1], fields[0], fields[2]),
        _ => (fields[0], fields[1], fields[2]),
    };
    let allow = kind == HashLine::Allow;
    // ClamAV reads these two with atoi: `abc` is level 0.
    let min = fields.get(3).filter(|f| !f.is_empty()).map(|f| atoi_u32(f));
    let max = fields.get(4).filter(|f| !f.is_empty()).map(|f| atoi_u32(f));
    if let Some(r) = flevel_skip(min, max, s.flevel) {
        return Ok(Outcome::Skip(r));
    }
    let size = if size == "*" {
        if kind != HashLine::Import && min.is_none_or(|m| m < WILDCARD_SIZE_MIN_FLEVEL) {
            return Err(LineError::new(
                name,
                format!(
                    "size `*` needs a minimum functionality level of at least {WILDCARD_SIZE_MIN_FLEVEL}"
                ),
            ));
        }
        None
    } else {
        // ClamAV reads the size with strtol and requires it to end the
        // field: leading blanks and a `+` are fine, trailing ones are not.
        let digits = size.trim_start();
        let digits = digits.strip_prefix('+').unwrap_or(digits);
        match parse_u64(digits) {
            Some(n) if n > 0 && n < 0xffff_ffff => Some(n),
            _ => {
                return Err(LineError::new(
                    name,
                    format!("invalid value for the size field: {size:?}"),
                ));
            }
        }
    };
    // ClamAV checks the ignore list after the levels and the size, before
    // the name and the hash.
    if ign.ignores(raw_name, line) {
        return Ok(Outcome::Skip("ignored".into()));
    }
    if raw_name.is_empty() {
        return Err(LineError::new(None, "empty signature name"));
    }
    let algo = match hash.len() {
        32 => HashAlgo::Md5,
        40 => HashAlgo::Sha1,
        64 => HashAlgo::Sha256,
        n => {
            return Err(LineError::new(
                name,
                format!("hash has {n} hex digits (expected 32, 40 or 64)"),
            ));
        }
    };
    let Some(digest) = decode_hex(hash) else {
        return Err(LineError::new(name, "hash is not hexadecimal"));
    };
    let name = if allow {
        raw_name.to_owned()
    } else {
        display_name(raw_name, s.official)
    };
    Ok(Outcome::Keep(HashEntry {
        scope: match kind {
            HashLine::File | HashLine::Allow => HashScope::File,
            HashLine::Section => HashScope::Section,
            HashLine::Import => HashScope::Import,
        },
        algo,
        digest,
        size,
        name,
    }))
}
