//! Microsoft Compiled HTML Help (CHM, `ITSF`): the files its directory
//! lists, from section 0 (stored) or section 1 (LZX, decoded by the `lzxd`
//! crate frame by frame, with the reset table giving where each 32 KiB
//! frame starts). Internal files (`::DataSpace/...`) are read to decode
//! section 1 and are not members.

use crate::formats::{Entry, Flow, FormatError};

/// The most section 1 may decode to.
const MAX_SECTION: u64 = 256 << 20;
/// An LZX frame's output.
const FRAME: u64 = 0x8000;

const CONTENT: &str = "::DataSpace/Storage/MSCompressed/Content";
const CONTROL: &str = "::DataSpace/Storage/MSCompressed/ControlData";
const RESET_TABLE: &str = "::DataSpace/Storage/MSCompressed/Transform/{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable";

fn corrupt(what: impl std::fmt::Display) -> FormatError {
    FormatError::Corrupt(what.to_string())
}

fn le32(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 4)?;
    Some(u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    Some(u64::from_le_bytes([
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
    ]))
}

/// A variable-length number: 7 bits a byte, most significant first.
fn encint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..9 {
        let c = *b.get(*at)?;
        *at += 1;
        v = (v << 7) | u64::from(c & 0x7f);
        if c & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One file the directory lists.
struct File {
    name: String,
    section: u64,
    offset: u64,
    length: u64,
}

/// `data[at..at + len]`, if it is all there.
fn slice(data: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(at).ok()?;
    let end = usize::try_from(at.checked_add(len)?).ok()?;
    data.get(start..end)
}

/// The files of the CHM file `data`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let bad = || corrupt("CHM: bad header");
    let version = le32(data, 4).ok_or_else(bad)?;
    let dir_off = le64(data, 72).ok_or_else(bad)?;
    let dir_len = le64(data, 80).ok_or_else(bad)?;
    let content_off = if version >= 3 {
        le64(data, 88).ok_or_else(bad)?
    } else {
        dir_off.checked_add(dir_len).ok_or_else(bad)?
    };
    let dir =
        slice(data, dir_off, dir_len).ok_or_else(|| corrupt("CHM: directory past the end"))?;
    if !dir.starts_with(b"ITSP") {
        return Err(corrupt("CHM: no ITSP directory"));
    }
    let header = le32(dir, 8).ok_or_else(bad)? as usize;
    let chunk = le32(dir, 16).ok_or_else(bad)? as usize;
    if !(64..=1 << 20).contains(&chunk) {
        return Err(corrupt(format!("CHM: directory chunks of {chunk} bytes")));
    }
    let mut files = Vec::new();
    let mut at = header;
    while let Some(c) = dir.get(at..at + chunk) {
        at += chunk;
        if !c.starts_with(b"PMGL") {
            continue;
        }
        let free = le32(c, 4).ok_or_else(bad)? as usize;
        let end = chunk.saturating_sub(free);
        let mut p = 20;
        while p < end {
            let Some(file) = (|| {
                let n = usize::try_from(encint(c, &mut p)?).ok()?;
                let name = String::from_utf8_lossy(c.get(p..p.checked_add(n)?)?).into_owned();
                p += n;
                Some(File {
                    name,
                    section: encint(c, &mut p)?,
                    offset: encint(c, &mut p)?,
                    length: encint(c, &mut p)?,
                })
            })() else {
                break;
            };
            files.push(file);
        }
    }
    let find = |name: &str| files.iter().find(|f| f.name == name && f.section == 0);
    let stored = |f: &File| slice(data, content_off.checked_add(f.offset)?, f.length);
    // Section 1, decoded once, when a file lies in it.
    let mut section1: Option<Result<Vec<u8>, String>> = None;
    for f in &files {
        if f.name.starts_with("::") || f.name.ends_with('/') || f.length == 0 {
            continue;
        }
        let name = f.name.trim_start_matches('/').to_string();
        let bytes: Result<&[u8], String> = match f.section {
            0 => stored(f).ok_or_else(|| "its data lies past the file's end".to_string()),
            1 => {
                let decoded = section1.get_or_insert_with(|| {
                    decode_section1(
                        find(CONTENT).and_then(stored),
                        find(CONTROL).and_then(stored),
                        find(RESET_TABLE).and_then(stored),
                    )
                });
                match decoded {
                    Ok(s) => slice(s, f.offset, f.length)
                        .ok_or_else(|| "its data lies past the section's end".to_string()),
                    Err(e) => Err(e.clone()),
                }
            }
            n => Err(format!("section {n} does not exist")),
        };
        let flow = match bytes {
            Ok(mut r) => each(Entry::File {
                name,
                reader: &mut r,
                compressed: None,
            }),
            Err(why) => each(Entry::Corrupt { name, why }),
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Section 1 decoded: the LZX `content`, its window and reset interval
/// from `control` (`LZXC`), and each frame's start from `reset`.
fn decode_section1(
    content: Option<&[u8]>,
    control: Option<&[u8]>,
    reset: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    let (Some(content), Some(control), Some(reset)) = (content, control, reset) else {
        return Err(
            "the compressed section's content, control data or reset table is missing".into(),
        );
    };
    let bad = || "the compressed section's control data or reset table is bad".to_string();
    if control.get(4..8) != Some(b"LZXC") {
        return Err(bad());
    }
    let version = le32(control, 8).ok_or_else(bad)?;
    let scale = if version >= 2 { FRAME } else { 1 };
    let interval = le32(control, 12).ok_or_else(bad)?.saturating_mul(scale);
    let window = le32(control, 16).ok_or_else(bad)?.saturating_mul(scale);
    let window = match window {
        0x8000 => lzxd::WindowSize::KB32,
        0x1_0000 => lzxd::WindowSize::KB64,
        0x2_0000 => lzxd::WindowSize::KB128,
        0x4_0000 => lzxd::WindowSize::KB256,
        0x8_0000 => lzxd::WindowSize::KB512,
        0x10_0000 => lzxd::WindowSize::MB1,
        0x20_0000 => lzxd::WindowSize::MB2,
        w => return Err(format!("an LZX window of {w} bytes")),
    };
    let frames_per_reset = (interval / FRAME).max(1);
    let entries = le32(reset, 4).ok_or_else(bad)?;
    let header = le32(reset, 12).ok_or_else(bad)?;
    let length = le64(reset, 16).ok_or_else(bad)?;
    let compressed = le64(reset, 24).ok_or_else(bad)?.min(content.len() as u64);
    if length > MAX_SECTION {
        return Err(format!("it decodes to more than {MAX_SECTION} bytes"));
    }
    let frames = length.div_ceil(FRAME);
    if entries < frames {
        return Err(bad());
    }
    let start = |i: u64| -> Option<u64> {
        if i >= entries {
            return Some(compressed);
        }
        le64(
            reset,
            usize::try_from(header.checked_add(i.checked_mul(8)?)?).ok()?,
        )
    };
    let mut lzx = lzxd::Lzxd::new(window);
    // Grown as frames decode, not sized by the header's word.
    let mut out = Vec::with_capacity((length as usize).min(content.len().saturating_mul(4)));
    for i in 0..frames {
        if i > 0 && i % frames_per_reset == 0 {
            lzx.reset();
        }
        let (a, b) = (start(i).ok_or_else(bad)?, start(i + 1).ok_or_else(bad)?);
        let chunk = slice(content, a, b.saturating_sub(a)).ok_or_else(bad)?;
        let want = (length - i * FRAME).min(FRAME) as usize;
        let frame = lzx
            .decompress_next(chunk, want)
            .map_err(|e| format!("LZX: {e}"))?;
        out.extend_from_slice(frame);
    }
    Ok(out)
}
