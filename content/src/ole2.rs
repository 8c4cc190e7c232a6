//! OLE2 compound files (Compound File Binary: `.doc`, `.xls`, `.ppt`,
//! `.msi`, `vbaProject.bin`), read with the `cfb` crate. Every stream is a
//! member, named by its path in the file. Two kinds of stream also hold a
//! file of their own, which becomes a further member:
//!
//! - `Ole10Native`, an embedded object package (a file dropped into a
//!   document): its label, original path and data;
//! - `PowerPoint Document`: each `ExOleObjStg` record is an embedded
//!   object, an OLE2 file of its own, zlib-compressed when the record says
//!   so;
//! - a VBA module stream: its macro source, MS-OVBA compressed after the
//!   module's performance cache, found as `olevba` finds it (a compressed
//!   container whose first literals are `Attribut`, as every module's
//!   source starts `Attribute VB_Name`) and decompressed here.
//!
//! An encrypted document cannot be read: an `EncryptedPackage` stream (an
//! encrypted OOXML file), a Word stream whose header says it is encrypted
//! or obfuscated, a workbook with a `FILEPASS` record, a presentation with
//! an `EncryptedSummary` stream. Each is reported `encrypted` as well as
//! scanned as its bytes, never taken for a clean document.

use std::io::{Cursor, Read};

use crate::formats::{self, Entry, Flow, FormatError};

/// Streams read from one file at the most (each is a member, so the walk's
/// file limit applies as well).
const MAX_STREAMS: usize = 10_000;

/// Streams larger than this are not searched for macro source (a VBA
/// module's stream is a few KiB to a few MiB).
const MAX_MACRO_STREAM: u64 = 16 << 20;

/// The most a module's macro source is decompressed to.
const MAX_MACRO_SOURCE: usize = 16 << 20;

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
                let special = leaf == "ole10native" || leaf == "powerpoint document";
                if !special && stream.len() > MAX_MACRO_STREAM {
                    // Too large for a VBA module: streamed to the walk.
                    each(Entry::File {
                        name,
                        reader: &mut stream,
                        compressed: None,
                    })
                } else {
                    // Read whole (a stream is at most the file's size), so
                    // that what is inside can be found in it.
                    let mut bytes = Vec::new();
                    match stream.read_to_end(&mut bytes) {
                        Err(e) => each(Entry::Corrupt {
                            name,
                            why: format!("the stream cannot be read: {e}"),
                        }),
                        Ok(_) => {
                            if formats::bytes(each, name.clone(), &bytes) == Flow::Stop {
                                return Ok(());
                            }
                            if encrypted(&leaf, &bytes)
                                && each(Entry::Encrypted {
                                    name: format!("{name} (encrypted)"),
                                }) == Flow::Stop
                            {
                                return Ok(());
                            }
                            match leaf.as_str() {
                                // A size, then the package.
                                "ole10native" => {
                                    package(bytes.get(4..).unwrap_or_default(), &name, each)
                                }
                                "powerpoint document" => powerpoint(&bytes, &name, each),
                                _ => macro_source(&bytes, &name, each),
                            }
                        }
                    }
                }
            }
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Whether the stream `leaf` (its name, lower case) says that the
/// document it belongs to is encrypted.
fn encrypted(leaf: &str, s: &[u8]) -> bool {
    let le16 = |at: usize| s.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    match leaf {
        "encryptedpackage" | "encryptedsummary" => true,
        // The FIB: `wIdent` 0xA5EC, then flags at 0x0A; fEncrypted is
        // bit 8, fObfuscated bit 15.
        "worddocument" => le16(0) == Some(0xa5ec) && le16(0x0a).is_some_and(|f| f & 0x8100 != 0),
        // BIFF records after the first `BOF`: `FILEPASS` (0x002F) comes
        // before any other content when the workbook is encrypted.
        "workbook" | "book" => {
            let mut at = 0;
            for _ in 0..16 {
                let (Some(kind), Some(len)) = (le16(at), le16(at + 2)) else {
                    return false;
                };
                if kind == 0x002f {
                    return true;
                }
                at += 4 + usize::from(len);
            }
            false
        }
        _ => false,
    }
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
            formats::bytes(each, name, body)
        };
        if flow == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// A VBA module's source in the stream `s`, if it holds one: the compressed
/// container (signature byte 1, then a chunk header) whose first token
/// group is a flag byte of literals spelling `Attribut`.
fn macro_source(s: &[u8], within: &str, each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Flow {
    let Some(at) = memchr::memmem::find(s, b"\x00Attribut") else {
        return Flow::Continue;
    };
    if at < 3 || s[at - 3] != 1 {
        return Flow::Continue;
    }
    match ovba_decompress(&s[at - 3..]) {
        Some(source) => formats::bytes(each, format!("{within} (VBA source)"), &source),
        None => each(Entry::Corrupt {
            name: format!("{within} (VBA source)"),
            why: "the compressed macro source does not decompress".into(),
        }),
    }
}

/// MS-OVBA decompression: a signature byte 1, then chunks of up to 4,096
/// bytes each, stored raw or as flag bytes over literals and copy tokens
/// whose offset and length split 16 bits by how far into the chunk they
/// are. What decompressed before a damaged chunk is kept; `None` if the
/// first chunk is damaged.
pub(crate) fn ovba_decompress(c: &[u8]) -> Option<Vec<u8>> {
    if c.first() != Some(&1) {
        return None;
    }
    let mut out = Vec::with_capacity(c.len() * 2);
    let mut at = 1;
    while at + 2 <= c.len() {
        let header = u16::from_le_bytes([c[at], c[at + 1]]);
        if header >> 12 & 0b111 != 0b011 {
            break;
        }
        let size = usize::from(header & 0x0fff) + 3;
        let end = (at + size).min(c.len());
        let chunk_start = out.len();
        let mut p = at + 2;
        if header & 0x8000 == 0 {
            // Stored: 4,096 bytes as they are.
            let raw = c.get(p..(p + 4096).min(c.len()))?;
            out.extend_from_slice(raw);
            at = p + 4096;
            continue;
        }
        'tokens: while p < end {
            let flags = c[p];
            p += 1;
            for bit in 0..8 {
                if p >= end {
                    break 'tokens;
                }
                if flags & (1 << bit) == 0 {
                    out.push(c[p]);
                    p += 1;
                    continue;
                }
                let token = usize::from(u16::from_le_bytes([c[p], *c.get(p + 1)?]));
                p += 2;
                let done = out.len() - chunk_start;
                let bits = (usize::BITS - done.saturating_sub(1).leading_zeros()).max(4) as usize;
                let length = (token & (0xffff >> bits)) + 3;
                let offset = (token >> (16 - bits)) + 1;
                if offset > done {
                    if out.is_empty() {
                        return None;
                    }
                    return Some(out);
                }
                let from = out.len() - offset;
                for i in 0..length {
                    out.push(out[from + i]);
                }
                // Copy tokens expand a thousandfold: macro source is far
                // smaller than this.
                if out.len() > MAX_MACRO_SOURCE {
                    return Some(out);
                }
            }
        }
        at = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ovba_decompresses_the_specifications_example() {
        // MS-OVBA 3.2.3: a chunk of literals and copy tokens.
        let compressed = [
            0x01, 0x2f, 0xb0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66,
            0x00, 0x70, 0x61, 0x67, 0x68, 0x69, 0x6a, 0x01, 0x38, 0x08, 0x61, 0x6b, 0x6c, 0x00,
            0x30, 0x6d, 0x6e, 0x6f, 0x70, 0x06, 0x71, 0x02, 0x70, 0x04, 0x10, 0x72, 0x73, 0x74,
            0x75, 0x76, 0x10, 0x77, 0x78, 0x79, 0x7a, 0x00, 0x3c,
        ];
        assert_eq!(
            ovba_decompress(&compressed).expect("decompresses"),
            b"#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        );
    }

    #[test]
    fn macro_source_is_found_in_a_module_stream() {
        let source = b"Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\nEnd Sub\r\n";
        // Literals only: a flag byte of zeros before each eight.
        let mut chunk = Vec::new();
        for group in source.chunks(8) {
            chunk.push(0);
            chunk.extend_from_slice(group);
        }
        let header = 0xb000u16 | (chunk.len() as u16 + 2 - 3);
        let mut stream = vec![0xccu8; 40]; // the performance cache
        stream.push(1);
        stream.extend_from_slice(&header.to_le_bytes());
        stream.extend_from_slice(&chunk);
        let mut got = Vec::new();
        macro_source(&stream, "VBA/Module1", &mut |e| {
            if let Entry::File { name, reader, .. } = e {
                let mut v = Vec::new();
                reader.read_to_end(&mut v).expect("read");
                got.push((name, v));
            }
            Flow::Continue
        });
        assert_eq!(
            got,
            [("VBA/Module1 (VBA source)".to_string(), source.to_vec())]
        );
    }

    /// A compound file of the streams given.
    fn compound(streams: &[(&str, &[u8])]) -> Vec<u8> {
        let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).expect("create");
        for (name, data) in streams {
            let mut s = file.create_stream(name).expect("stream");
            std::io::Write::write_all(&mut s, data).expect("write");
        }
        file.flush().expect("flush");
        file.into_inner().into_inner()
    }

    #[test]
    fn encrypted_documents_are_reported() {
        let mut fib = vec![0u8; 64];
        fib[..2].copy_from_slice(&0xa5ecu16.to_le_bytes());
        let plain_fib = fib.clone();
        fib[0x0a..0x0c].copy_from_slice(&0x0100u16.to_le_bytes());
        // BOF, then FILEPASS.
        let mut book = vec![0x09, 0x08, 4, 0, 0, 6, 5, 0];
        book.extend_from_slice(&[0x2f, 0x00, 2, 0, 1, 0]);
        type Streams<'a> = &'a [(&'a str, &'a [u8])];
        let cases: &[(Streams<'_>, bool)] = &[
            (
                &[("EncryptionInfo", b"info"), ("EncryptedPackage", b"noise")],
                true,
            ),
            (&[("WordDocument", &fib)], true),
            (&[("WordDocument", &plain_fib)], false),
            (&[("Workbook", &book)], true),
            (&[("Workbook", &book[..8])], false),
            (
                &[("EncryptedSummary", b"x"), ("PowerPoint Document", b"")],
                true,
            ),
        ];
        for (streams, want) in cases {
            let data = compound(streams);
            let mut said = Vec::new();
            members(&data, &mut |e| {
                if let Entry::Encrypted { name } = e {
                    said.push(name);
                }
                Flow::Continue
            })
            .expect("parses");
            assert_eq!(!said.is_empty(), *want, "{streams:?}: {said:?}");
        }
    }
}
