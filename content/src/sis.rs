//! Symbian installation packages (`.sis`, EPOC releases 3 to 6, before
//! Symbian OS 9): the files each file record points at, zlib-compressed
//! unless the package says it is not, each a member named by where it
//! installs to.
//!
//! The layout (little-endian throughout): four UIDs (the third says the
//! release), a header with the counts of languages and file records, the
//! options (bit 3: not compressed) and the offset of the file records.
//! A record is simple (one file) or multi-language (one file per
//! language); both give the destination name, each file's stored length
//! and offset, and, from release 6, its length once inflated. Options,
//! conditions and their ends are records with nothing to extract.
//!
//! Cost: each record is read once; every offset and length is checked
//! against the package; a file is inflated as the walk reads it, under
//! the member caps, and to no more than the length it states.

use std::io::Read;

use crate::formats::{Entry, Flow, FormatError, bytes, le16, le32};

/// The second UID of every package, at 4.
const UID2: [u8; 4] = [0x12, 0x3a, 0x00, 0x10];

/// The third UID of a package of release 6 (the others: 3 and 5).
const UID3_R6: u32 = 0x1000_0419;
const UID3_R3: u32 = 0x1000_006d;

/// File records read from one package at the most.
const MAX_RECORDS: u32 = 4096;

/// Whether `data` is a package: its second UID, and a third that names a
/// release.
pub(crate) fn is_sis(data: &[u8]) -> bool {
    data.get(4..8) == Some(&UID2)
        && data
            .get(8..12)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .is_some_and(|u| u == UID3_R6 || u == UID3_R3)
}

/// The bytes at `ptr`, `len` long, if they lie in the package.
fn span(data: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = ptr as usize;
    data.get(start..start.checked_add(len as usize)?)
}

/// The files of the package `data`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let bad = |why: &str| FormatError::Corrupt(format!("SIS: {why}"));
    let release6 = le32(data, 8) == Some(UID3_R6);
    let languages = u32::from(le16(data, 0x12).ok_or_else(|| bad("too short"))?).max(1);
    let records = u32::from(le16(data, 0x14).ok_or_else(|| bad("too short"))?);
    let options = le16(data, 0x24).ok_or_else(|| bad("too short"))?;
    let unicode = options & 0x0001 != 0;
    let compressed = options & 0x0008 == 0;
    let mut at = le32(data, 0x34).ok_or_else(|| bad("too short"))? as usize;
    let mut n = 0;
    for _ in 0..records.min(MAX_RECORDS) {
        let kind = le32(data, at).ok_or_else(|| bad("a file record past the end"))?;
        let per_file = match kind {
            0 => 1,
            1 => languages,
            // Options: their count, then a name per language each, then
            // 16 bytes of selection.
            2 => {
                let count =
                    le32(data, at + 4).ok_or_else(|| bad("an options record past the end"))?;
                at = at
                    .checked_add(8 + 8 * (count as usize).saturating_mul(languages as usize) + 16)
                    .ok_or_else(|| bad("an options record past the end"))?;
                continue;
            }
            // A condition: its size, then the expression.
            3 | 4 => {
                let size = le32(data, at + 4).ok_or_else(|| bad("a condition past the end"))?;
                at = at
                    .checked_add(8 + size as usize)
                    .ok_or_else(|| bad("a condition past the end"))?;
                continue;
            }
            5 | 6 => {
                at += 4;
                continue;
            }
            k => return Err(bad(&format!("a record of unknown type {k}"))),
        };
        // Type, file type, details, the source name, the destination name.
        let field =
            |i: usize| le32(data, at + 4 * i).ok_or_else(|| bad("a file record past the end"));
        let dest = span(data, field(6)?, field(5)?).unwrap_or_default();
        let dest = if unicode {
            String::from_utf16_lossy(
                &dest
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            )
        } else {
            String::from_utf8_lossy(dest).into_owned()
        };
        let files = per_file as usize;
        let lengths = 7;
        let pointers = lengths + files;
        let originals = pointers + files;
        for f in 0..files {
            n += 1;
            let name = match (dest.is_empty(), files) {
                (true, _) => format!("file {n}"),
                (false, 1) => dest.clone(),
                (false, _) => format!("{dest} (language {})", f + 1),
            };
            let Some(stored) = span(data, field(pointers + f)?, field(lengths + f)?) else {
                if each(Entry::Corrupt {
                    name,
                    why: "its data lies past the package's end".into(),
                }) == Flow::Stop
                {
                    return Ok(());
                }
                continue;
            };
            let flow = if compressed {
                // Streamed to the walk, which holds it to the member caps
                // and the expansion ratio; no longer than it says it is.
                let stated = if release6 {
                    u64::from(field(originals + f)?)
                } else {
                    u64::MAX
                };
                each(Entry::File {
                    name,
                    reader: &mut flate2::read::ZlibDecoder::new(stored).take(stated),
                    compressed: Some(stored.len() as u64),
                })
            } else {
                bytes(each, name, stored)
            };
            if flow == Flow::Stop {
                return Ok(());
            }
        }
        let size = if release6 {
            7 + 3 * files + 2
        } else {
            7 + 2 * files
        };
        at = at
            .checked_add(4 * size)
            .ok_or_else(|| bad("a file record past the end"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_package_gives_its_file() {
        let Ok(sis) = std::fs::read("/usr/share/clamav-testfiles/clam.sis") else {
            eprintln!("SKIPPED: clamav-testfiles not installed");
            return;
        };
        assert!(is_sis(&sis));
        let (got, bad, r) = crate::formats::collect(|each| members(&sis, each));
        r.expect("parses");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "!:\\clam.exe");
        assert!(got[0].1.starts_with(b"MZ"));
        assert_eq!(got[0].1.len(), 544);
        // Cut short: a record or its data past the end is reported.
        let (_, bad, r) = crate::formats::collect(|each| members(&sis[..0x160], each));
        assert!(r.is_err() || !bad.is_empty());
        assert!(!is_sis(b"not a package at all"));
    }
}
