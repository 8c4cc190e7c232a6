//! OLE2 compound files (Compound File Binary: `.doc`, `.xls`, `.ppt`,
//! `.msi`, `vbaProject.bin`), read with the `cfb` crate. Every stream is a
//! member, named by its path in the file. Two kinds of stream also hold a
//! file of their own, which becomes a further member:
//!
//! - `Ole10Native`, an embedded object package (a file dropped into a
//!   document): its label, original path and data;
//! - `PowerPoint Document`: each `ExOleObjStg` record is an embedded
//!   object, an OLE2 file of its own, zlib-compressed when the record says
//!   so.

use std::io::{Cursor, Read};

use crate::formats::{Entry, Flow, FormatError};

/// Streams read from one file at the most (each is a member, so the walk's
/// file limit applies as well).
const MAX_STREAMS: usize = 10_000;

/// An `ExOleObjStg` record.
const EX_OLE_OBJ_STG: u16 = 0x1011;

/// The members of the compound file `data`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let mut file = cfb::CompoundFile::open(Cursor::new(data))
        .map_err(|e| FormatError::Corrupt(format!("OLE2: {e}")))?;
    let streams: Vec<(std::path::PathBuf, String)> = file
        .walk()
        .filter(|e| e.is_stream())
        .take(MAX_STREAMS)
        .map(|e| {
            let p = e.path().to_path_buf();
            let name = p
                .to_string_lossy()
                .trim_start_matches('/')
                .replace(|c: char| c.is_control(), "");
            (p, name)
        })
        .collect();
    for (path, name) in streams {
        let flow = match file.open_stream(&path) {
            Err(e) => each(Entry::Corrupt {
                name,
                why: format!("the stream cannot be read: {e}"),
            }),
            Ok(mut stream) => {
                // Stream names may start with a control character
                // (`\x01Ole10Native`).
                let leaf = path
                    .file_name()
                    .map(|n| {
                        n.to_string_lossy()
                            .trim_start_matches(|c: char| c.is_control())
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_default();
                if leaf == "ole10native" || leaf == "powerpoint document" {
                    // Read whole (a stream is at most the file's size), so
                    // that the object inside can be found in it.
                    let mut bytes = Vec::new();
                    match stream.read_to_end(&mut bytes) {
                        Err(e) => each(Entry::Corrupt {
                            name,
                            why: format!("the stream cannot be read: {e}"),
                        }),
                        Ok(_) => {
                            let flow = {
                                let mut r: &[u8] = &bytes;
                                each(Entry::File {
                                    name: name.clone(),
                                    reader: &mut r,
                                    compressed: None,
                                })
                            };
                            if flow == Flow::Stop {
                                return Ok(());
                            }
                            if leaf == "ole10native" {
                                // A size, then the package.
                                package(bytes.get(4..).unwrap_or_default(), &name, each)
                            } else {
                                powerpoint(&bytes, &name, each)
                            }
                        }
                    }
                } else {
                    each(Entry::File {
                        name,
                        reader: &mut stream,
                        compressed: None,
                    })
                }
            }
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// The file an object package holds (an `Ole10Native` stream after its
/// size, or an OLE1 `Package` object's native data): a flag, the label
/// and the original path (NUL-terminated), two words, a temporary path
/// with its length, then the data with its length.
pub(crate) fn package(s: &[u8], within: &str, each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Flow {
    fn cstr(s: &[u8], at: &mut usize) -> Option<String> {
        let end = *at + s.get(*at..)?.iter().position(|&b| b == 0)?;
        let v = String::from_utf8_lossy(&s[*at..end]).into_owned();
        *at = end + 1;
        Some(v)
    }
    let le32 = |at: usize| -> Option<usize> {
        let b = s.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let parsed = (|| {
        let mut at = 2;
        let label = cstr(s, &mut at)?;
        let _path = cstr(s, &mut at)?;
        at += 4;
        let tmp_len = le32(at)?;
        at = at.checked_add(4 + tmp_len)?;
        let len = le32(at)?;
        let body = s.get(at + 4..at.checked_add(4 + len)?)?;
        Some((label, body))
    })();
    match parsed {
        Some((label, mut body)) => each(Entry::File {
            name: format!(
                "{within}/{}",
                if label.is_empty() { "(object)" } else { &label }
            ),
            reader: &mut body,
            compressed: None,
        }),
        None => each(Entry::Corrupt {
            name: format!("{within}/(object)"),
            why: "an embedded object package that does not parse".into(),
        }),
    }
}

/// The embedded objects of a `PowerPoint Document` stream: its records,
/// containers entered, `ExOleObjStg` atoms taken (inflated when their
/// instance is 1).
fn powerpoint(s: &[u8], within: &str, each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Flow {
    let mut at = 0usize;
    let mut n = 0;
    while at + 8 <= s.len() {
        let ver_inst = u16::from_le_bytes([s[at], s[at + 1]]);
        let kind = u16::from_le_bytes([s[at + 2], s[at + 3]]);
        let len = u32::from_le_bytes([s[at + 4], s[at + 5], s[at + 6], s[at + 7]]) as usize;
        let body_at = at + 8;
        if ver_inst & 0x0f == 0x0f {
            // A container: its records follow.
            at = body_at;
            continue;
        }
        let Some(body) = s.get(body_at..body_at.saturating_add(len)) else {
            break;
        };
        at = body_at + len;
        if kind != EX_OLE_OBJ_STG {
            continue;
        }
        n += 1;
        let name = format!("{within}/ExOleObjStg {n}");
        let flow = if ver_inst >> 4 == 1 && body.len() > 4 {
            let mut r = flate2::read::ZlibDecoder::new(&body[4..]);
            each(Entry::File {
                name,
                reader: &mut r,
                compressed: Some(body.len() as u64),
            })
        } else {
            let mut r = body;
            each(Entry::File {
                name,
                reader: &mut r,
                compressed: None,
            })
        };
        if flow == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}
