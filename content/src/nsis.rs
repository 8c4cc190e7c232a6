//! NSIS installers (Nullsoft Scriptable Install System): the archive after
//! the installer's PE image. It starts with NSIS's first header: flags,
//! `0xDEADBEEF`, `NullsoftInst`, the install script's length and the
//! archive's length (this header included). Then either blocks, each a
//! 32-bit length (its top bit set when the block is compressed) and its
//! bytes, the first block the install script and each later one a file;
//! or, in a solid archive, one compressed stream holding the same blocks.
//! Compression is LZMA (NSIS writes its properties byte, `0x5D`, and the
//! dictionary size before the raw stream), NSIS's own bzip2 variant (not
//! decoded: reported `unsupported`) or raw deflate.
//!
//! Each block is a member: `script`, then `file 1`, `file 2` … (the names
//! are in the compiled script, which giva does not interpret).
//!
//! Cost: one pass over the archive; a block, or a solid archive whole, is
//! decoded in memory to no more than the largest member (100 MB by
//! default; past it the rest is reported not scanned), with an LZMA
//! dictionary of no more than 64 MiB.

use std::io::Read;

use crate::formats::{Entry, Flow, FormatError, bytes, decode_cap, decoded, le32};
use crate::limits::Limits;

/// The first header's signature, 4 bytes in.
pub(crate) const MARK: &[u8; 16] = b"\xef\xbe\xad\xdeNullsoftInst";

/// The first header's length.
const FIRST_HEADER: usize = 28;

/// Blocks read from one archive at the most.
const MAX_BLOCKS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Lzma,
    Bzip2,
    Deflate,
}

/// The compression that `data` starts with, if its first bytes tell:
/// LZMA's properties (`0x5D`, then a dictionary size whose low bytes are
/// 0) or NSIS's bzip2 (`1`, then a block size below 14).
fn signature(data: &[u8]) -> Option<Method> {
    match data {
        [0x5d, 0, 0, ..] => Some(Method::Lzma),
        [0x31, b, ..] if *b < 14 => Some(Method::Bzip2),
        _ => None,
    }
}

/// Whether the archive `body` (after the first header) is solid, and its
/// compression: a compression signature at its start makes it solid; one
/// after a first length whose top bit is set makes it blocks; with
/// neither it is deflate, in blocks when the first length fits.
fn layout(body: &[u8], first: u32) -> (bool, Method) {
    if let Some(m) = signature(body) {
        return (true, m);
    }
    let compressed = first & 0x8000_0000 != 0;
    if compressed && let Some(m) = signature(&body[4..]) {
        return (false, m);
    }
    let fits = (first & 0x7fff_ffff) as usize <= body.len() - 4;
    (!fits, Method::Deflate)
}

/// The bytes of a compressed block or stream, decoded to no more than
/// `max` (one more, so that the walk can tell a larger one). LZMA in NSIS
/// may end without an end mark: what decoded before the input ran out is
/// the block.
fn decode(method: Method, data: &[u8], max: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let result = match method {
        Method::Deflate => flate2::read::DeflateDecoder::new(data)
            .take(max + 1)
            .read_to_end(&mut out),
        Method::Lzma => {
            let dict = le32(data, 1).ok_or("an LZMA block too short for its properties")?;
            // A dictionary larger than what may be decoded is never used.
            let dict = u64::from(dict).min(max).clamp(4096, 64 << 20) as u32;
            let mut r =
                lzma_rust2::LzmaReader::new_with_props(&data[5..], u64::MAX, data[0], dict, None)
                    .map_err(|e| format!("LZMA: {e}"))?;
            r.set_defer_errors(true);
            r.take(max + 1).read_to_end(&mut out)
        }
        Method::Bzip2 => return Err("NSIS's own bzip2 is not decoded".into()),
    };
    match result {
        Ok(_) => Ok(out),
        Err(_) if !out.is_empty() && method == Method::Lzma => Ok(out),
        Err(e) => Err(format!("it does not decode: {e}")),
    }
}

/// The blocks of the NSIS archive that starts `data` (at its first
/// header).
pub(crate) fn members(
    data: &[u8],
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let bad = |why: &str| FormatError::Corrupt(format!("NSIS: {why}"));
    if data.get(4..20) != Some(MARK) {
        return Err(bad("no first header"));
    }
    let stated = le32(data, 24).ok_or_else(|| bad("too short"))? as usize;
    let body = data
        .get(FIRST_HEADER..stated.clamp(FIRST_HEADER, data.len()))
        .ok_or_else(|| bad("too short"))?;
    let first = le32(body, 0).ok_or_else(|| bad("no blocks"))?;
    let name = |n: usize| {
        if n == 0 {
            "script".to_string()
        } else {
            format!("file {n}")
        }
    };
    let (solid, m) = layout(body, first);
    if !solid {
        // Blocks, each compressed on its own (or stored).
        let mut at = 0;
        for n in 0..MAX_BLOCKS {
            let Some(v) = le32(body, at) else { break };
            let len = (v & 0x7fff_ffff) as usize;
            let Some(block) = body.get(at + 4..at + 4 + len) else {
                each(Entry::Corrupt {
                    name: name(n),
                    why: "a block runs past the archive's end".into(),
                });
                break;
            };
            at += 4 + len;
            let flow = if v & 0x8000_0000 == 0 {
                bytes(each, name(n), block)
            } else {
                match decode(m, block, decode_cap(limits, block.len())) {
                    Ok(out) => decoded(each, name(n), &out, block.len()),
                    Err(why) if m == Method::Bzip2 => {
                        each(Entry::Unsupported { name: name(n), why })
                    }
                    Err(why) => each(Entry::Corrupt { name: name(n), why }),
                }
            };
            if flow == Flow::Stop {
                break;
            }
        }
        return Ok(());
    }
    // Solid: one stream, then the blocks inside it, stored.
    // The member cap, or what the expansion ratio allows.
    let max = decode_cap(limits, body.len()) - 1;
    let mut whole = match decode(m, body, max) {
        Ok(out) => out,
        Err(why) => {
            each(if m == Method::Bzip2 {
                Entry::Unsupported {
                    name: "solid archive".into(),
                    why,
                }
            } else {
                Entry::Corrupt {
                    name: "solid archive".into(),
                    why,
                }
            });
            return Ok(());
        }
    };
    let cut = whole.len() as u64 > max;
    if cut {
        whole.truncate(max as usize);
    }
    let mut at = 0;
    for n in 0..MAX_BLOCKS {
        let Some(v) = le32(&whole, at) else { break };
        let len = (v & 0x7fff_ffff) as usize;
        let Some(block) = whole.get(at + 4..at + 4 + len) else {
            each(Entry::Corrupt {
                name: name(n),
                why: "a block runs past the solid archive's end".into(),
            });
            break;
        };
        at += 4 + len;
        if bytes(each, name(n), block) == Flow::Stop {
            return Ok(());
        }
    }
    if cut {
        each(Entry::Unsupported {
            name: "solid archive".into(),
            why: format!("it decodes to more than {max} bytes; the rest is not scanned"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn archive(blocks: &[(bool, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (compressed, b) in blocks {
            let flag = if *compressed { 0x8000_0000 } else { 0 };
            body.extend_from_slice(&(b.len() as u32 | flag).to_le_bytes());
            body.extend_from_slice(b);
        }
        let mut a = vec![0u8; 4];
        a.extend_from_slice(MARK);
        a.extend_from_slice(&100u32.to_le_bytes());
        a.extend_from_slice(&((FIRST_HEADER + body.len()) as u32).to_le_bytes());
        a.extend_from_slice(&body);
        a
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn blocks_are_members() {
        let a = archive(&[
            (true, deflate(b"the install script")),
            (true, deflate(b"MZ the first file")),
            (false, b"a stored file".to_vec()),
        ]);
        let (got, bad, r) = crate::formats::collect(|each| members(&a, &Limits::default(), each));
        r.expect("parses");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            got,
            [
                ("script".to_string(), b"the install script".to_vec()),
                ("file 1".to_string(), b"MZ the first file".to_vec()),
                ("file 2".to_string(), b"a stored file".to_vec()),
            ]
        );
        // A block past the end is reported.
        let mut cut = archive(&[(false, b"abcdef".to_vec()), (false, b"ghijkl".to_vec())]);
        cut.truncate(cut.len() - 2);
        let (got, bad, _) = crate::formats::collect(|each| members(&cut, &Limits::default(), each));
        assert_eq!((got.len(), bad), (1, vec!["file 1".to_string()]));
        // The layouts, by their first bytes.
        let lzma_blocks = [0x25, 0x04, 0x00, 0x80, 0x5d, 0, 0, 0x80, 0];
        assert_eq!(layout(&lzma_blocks, 0x8000_0425), (false, Method::Lzma));
        assert_eq!(
            layout(&[0x5d, 0, 0, 0x80, 0, 1, 2, 3], 0x8000_005d),
            (true, Method::Lzma)
        );
        assert_eq!(
            layout(&[0x31, 9, 0, 0, 0], 0x0000_0931),
            (true, Method::Bzip2)
        );
    }
}
