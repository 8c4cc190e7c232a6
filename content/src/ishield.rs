//! InstallShield setup stubs: a PE whose overlay is a list of files, each
//! written as its name, its path, its version and its size in decimal
//! (each NUL-terminated), then its bytes. Each file is a member, named by
//! its path.
//!
//! InstallShield's own cabinets (`ISc(`, versions 6 and later) come in
//! the list as a header file (`data1.hdr`) and volumes (`data1.cab`,
//! `data2.cab` …). The header's file table gives each file's name, its
//! volume, where its data starts there, its compressed and expanded sizes
//! and its flags; compressed data is a run of chunks, each a 16-bit length
//! and raw deflate. Each file in a volume of the list is a further member
//! (`Disk1\data2.cab/clam.exe`). A file that spans volumes, is obfuscated,
//! or lies in a volume not in the list is reported `unsupported`, and so is
//! a cabinet whose header is missing or of an older version.
//!
//! The MSI setup stubs keep a table of their own after `InstallShield` and
//! a NUL (`msi_members`): a file count, then each file as a 260-byte name,
//! two words, its stored size (64 bits), nine words and its data. The data
//! is obfuscated: each byte's nibbles swapped, then XORed with the name
//! (itself XORed with `EC CA 79 F8`), the key position starting again every
//! 1,024 bytes; what that gives is a zlib stream. Each file is a member
//! named by its name.
//!
//! Cost: one pass over the overlay; a size past its end stops the list.
//! The file table is read once, bounded by the header; a file is inflated
//! to no more than its stated size and the largest member.

use std::io::Read;

use crate::formats::{Entry, Flow, FormatError, bytes, decode_cap, decoded, le16, le32, le64};
use crate::limits::Limits;

/// Files read from one stub at the most (each is a member, so the walk's
/// file limit applies as well).
const MAX_FILES: usize = 10_000;

/// Cabinet headers read from one stub at the most.
const MAX_CABINETS: usize = 16;

/// One file of the list at `at`: its path and where its bytes are.
fn entry(data: &[u8], at: usize) -> Option<(String, std::ops::Range<usize>)> {
    let mut at = at;
    let mut field = |max: usize, ok: fn(u8) -> bool| -> Option<&[u8]> {
        let rest = data.get(at..)?;
        let len = rest.iter().take(max + 1).position(|&b| b == 0)?;
        let f = &rest[..len];
        if f.is_empty() || !f.iter().all(|&b| ok(b)) {
            return None;
        }
        at += len + 1;
        Some(f)
    };
    let printable = |b: u8| (0x20..0x7f).contains(&b);
    let _name = field(260, printable)?;
    let path = String::from_utf8_lossy(field(1024, printable)?).into_owned();
    let _version = field(64, |b| b.is_ascii_digit() || b == b'.')?;
    let size: usize = std::str::from_utf8(field(20, |b| b.is_ascii_digit())?)
        .ok()?
        .parse()
        .ok()?;
    let end = at.checked_add(size).filter(|&e| e <= data.len())?;
    Some((path, at..end))
}

/// The MSI stubs' table: `InstallShield` and a NUL.
pub(crate) const MSI_MARK: &[u8; 14] = b"InstallShield\0";

/// A name's length in an MSI stub's table, and the whole entry's before
/// its data.
const MSI_NAME: usize = 260;
const MSI_ENTRY: usize = 312;

/// Whether an MSI stub's table starts at `data` (its mark), as ClamAV types
/// one: the mark, the header and the first name, then the first entry's
/// two words (6 and 0), its size, and a zero word and a 1.
pub(crate) fn is_msi_table(data: &[u8]) -> bool {
    data.starts_with(MSI_MARK)
        && data.get(306..314) == Some(&[6, 0, 0, 0, 0, 0, 0, 0][..])
        && data.get(322..327) == Some(&[0, 0, 0, 0, 1][..])
}

/// The files of an MSI stub's table at the start of `data` (its mark).
pub(crate) fn msi_members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let bad = |why: &str| FormatError::Corrupt(format!("InstallShield MSI table: {why}"));
    let head = MSI_MARK.len();
    let count = le32(data, head).ok_or_else(|| bad("too short"))? as usize;
    let reserved = data
        .get(head + 8..head + 32)
        .ok_or_else(|| bad("too short"))?;
    if count == 0 || reserved.iter().any(|&b| b != 0) {
        return Err(bad("not a table"));
    }
    let mut at = head + 32;
    for _ in 0..count.min(MAX_FILES) {
        let Some(name) = data.get(at..at + MSI_NAME) else {
            break;
        };
        let name = &name[..name
            .iter()
            .take(MSI_NAME - 1)
            .position(|&b| b == 0)
            .unwrap_or(MSI_NAME - 1)];
        if name.is_empty() {
            break;
        }
        let label = String::from_utf8_lossy(name).into_owned();
        let size = le64(data, at + 0x10c).ok_or_else(|| bad("too short"))?;
        let body = at + MSI_ENTRY;
        let Some(stored) = usize::try_from(size)
            .ok()
            .filter(|&n| n > 0)
            .and_then(|n| data.get(body..body.checked_add(n)?))
        else {
            each(Entry::Corrupt {
                name: label,
                why: "its data lies past the installer's end".into(),
            });
            break;
        };
        let key: Vec<u8> = name
            .iter()
            .enumerate()
            .map(|(i, &b)| b ^ [0xec, 0xca, 0x79, 0xf8][i % 4])
            .collect();
        let plain: Vec<u8> = stored
            .iter()
            .enumerate()
            .map(|(p, &b)| b.rotate_left(4) ^ key[(p % 1024) % key.len()])
            .collect();
        let flow = each(Entry::File {
            name: label,
            reader: &mut flate2::read::ZlibDecoder::new(plain.as_slice()),
            compressed: Some(size),
        });
        if flow == Flow::Stop {
            break;
        }
        at = body + stored.len();
    }
    Ok(())
}

/// Whether `overlay` starts as a stub's list of files.
pub(crate) fn is_stub(overlay: &[u8]) -> bool {
    entry(overlay, 0).is_some()
}

/// The files of the stub whose overlay is `data`.
pub(crate) fn members(
    data: &[u8],
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let mut files = Vec::new();
    let mut at = 0;
    while files.len() < MAX_FILES {
        let Some((path, body)) = entry(data, at) else {
            break;
        };
        at = body.end;
        files.push((path, &data[body]));
    }
    if files.is_empty() {
        return Err(FormatError::Corrupt(
            "not an InstallShield stub's list of files".into(),
        ));
    }
    for (path, file) in &files {
        if bytes(each, path.clone(), file) == Flow::Stop {
            return Ok(());
        }
    }
    // The cabinets: each header (a few at the most) with its volumes,
    // found by name.
    let by_name: std::collections::HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.to_ascii_lowercase(), i))
        .collect();
    let cabinets: Vec<(&String, &[u8], String)> = files
        .iter()
        .filter(|(p, f)| f.starts_with(b"ISc(") && p.to_ascii_lowercase().ends_with(".hdr"))
        .take(MAX_CABINETS)
        .map(|(p, f)| {
            // `data1.hdr`: volumes `data1.cab`, `data2.cab` …
            let stem = p[..p.len() - 5].trim_end_matches(|c: char| c.is_ascii_digit());
            (p, *f, stem.to_ascii_lowercase())
        })
        .collect();
    for (hdr_path, hdr, prefix) in &cabinets {
        let volume = |n: u16| -> Option<(&String, &[u8])> {
            let (p, f) = &files[*by_name.get(&format!("{prefix}{n}.cab"))?];
            Some((p, *f))
        };
        if cabinet(hdr, hdr_path, &volume, limits, each) == Flow::Stop {
            return Ok(());
        }
    }
    // Volumes no header in the list describes.
    for (path, file) in &files {
        let lower = path.to_ascii_lowercase();
        let described = cabinets
            .iter()
            .any(|(_, _, prefix)| lower.starts_with(prefix.as_str()));
        if file.starts_with(b"ISc(")
            && lower.ends_with(".cab")
            && !described
            && each(Entry::Unsupported {
                name: path.clone(),
                why: "an InstallShield cabinet without its header file".into(),
            }) == Flow::Stop
        {
            return Ok(());
        }
    }
    Ok(())
}

/// A file of a cabinet, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CabFile {
    name: String,
    flags: u16,
    expanded: u64,
    compressed: u64,
    offset: u64,
    volume: u16,
}

/// The major version of a cabinet's header, as InstallShield writes it.
fn major_version(version: u32) -> u32 {
    match version >> 24 {
        1 => (version >> 12) & 0xf,
        2 | 4 => (version & 0xffff) / 100,
        _ => 0,
    }
}

/// The files of the cabinet header `hdr` (version 6 and later). Fixed
/// 0x57-byte descriptors after the file table; names NUL-terminated in it.
fn cab_files(hdr: &[u8]) -> Result<Vec<CabFile>, String> {
    let short = || "the header is cut short".to_string();
    let version = le32(hdr, 4).ok_or_else(short)?;
    let major = major_version(version);
    if major < 6 {
        return Err(format!("InstallShield cabinet version {major} is not read"));
    }
    let desc = le32(hdr, 12).ok_or_else(short)? as usize;
    let table = desc + le32(hdr, desc + 0x0c).ok_or_else(short)? as usize;
    let count = le32(hdr, desc + 0x28).ok_or_else(short)? as usize;
    let files_at = table + le32(hdr, desc + 0x2c).ok_or_else(short)? as usize;
    if count > MAX_FILES || files_at.saturating_add(count * 0x57) > hdr.len() {
        return Err("the file table runs past the header".into());
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let d = files_at + i * 0x57;
        let name_at = table + le32(hdr, d + 58).ok_or_else(short)? as usize;
        let name = hdr
            .get(name_at..)
            .and_then(|s| s.get(..s.iter().take(1024).position(|&b| b == 0)?))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        out.push(CabFile {
            name,
            flags: le16(hdr, d).ok_or_else(short)?,
            expanded: le64(hdr, d + 2).ok_or_else(short)?,
            compressed: le64(hdr, d + 10).ok_or_else(short)?,
            offset: le64(hdr, d + 18).ok_or_else(short)?,
            volume: le16(hdr, d + 85).ok_or_else(short)?,
        });
    }
    Ok(out)
}

/// A cabinet's compressed file: chunks, each a 16-bit length and raw
/// deflate, inflated to no more than `max` bytes.
fn inflate_chunks(mut data: &[u8], max: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while data.len() >= 2 && (out.len() as u64) <= max {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let chunk = data
            .get(2..2 + len)
            .ok_or("a chunk runs past the file's data")?;
        flate2::read::DeflateDecoder::new(chunk)
            .take(max + 1 - out.len() as u64)
            .read_to_end(&mut out)
            .map_err(|e| format!("a chunk does not inflate: {e}"))?;
        data = &data[2 + len..];
    }
    Ok(out)
}

/// The files of one cabinet, from its header `hdr` (at `hdr_path`) and
/// the volumes `volume` finds.
fn cabinet<'a>(
    hdr: &[u8],
    hdr_path: &str,
    volume: &dyn Fn(u16) -> Option<(&'a String, &'a [u8])>,
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Flow {
    let files = match cab_files(hdr) {
        Ok(f) => f,
        Err(why) => {
            return each(Entry::Unsupported {
                name: hdr_path.to_string(),
                why,
            });
        }
    };
    for f in files {
        // Invalid, or not in any volume (kept beside the cabinet).
        if f.flags & 0x8 != 0 || f.compressed == 0 || f.volume == 0 {
            continue;
        }
        let Some((cab_path, cab)) = volume(f.volume) else {
            if each(Entry::Unsupported {
                name: format!("{hdr_path}/{}", f.name),
                why: format!("its volume ({}) is not in the installer", f.volume),
            }) == Flow::Stop
            {
                return Flow::Stop;
            }
            continue;
        };
        let name = format!("{cab_path}/{}", f.name);
        if f.flags & 0x3 != 0 {
            if each(Entry::Unsupported {
                name,
                why: "it spans volumes or is obfuscated".into(),
            }) == Flow::Stop
            {
                return Flow::Stop;
            }
            continue;
        }
        let stored = usize::try_from(f.offset)
            .ok()
            .zip(usize::try_from(f.compressed).ok())
            .and_then(|(o, n)| cab.get(o..o.checked_add(n)?));
        let Some(stored) = stored else {
            if each(Entry::Corrupt {
                name,
                why: "its data lies past the volume's end".into(),
            }) == Flow::Stop
            {
                return Flow::Stop;
            }
            continue;
        };
        let flow = if f.flags & 0x4 == 0 {
            bytes(each, name, stored)
        } else {
            let cap = decode_cap(limits, stored.len()).min(f.expanded);
            match inflate_chunks(stored, cap) {
                Ok(out) => decoded(each, name, &out, stored.len()),
                Err(why) => each(Entry::Corrupt { name, why }),
            }
        };
        if flow == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut s = Vec::new();
        for (name, data) in files {
            s.extend_from_slice(
                format!("{name}\x00Disk1\\{name}\x000.0.0.0\x00{}\x00", data.len()).as_bytes(),
            );
            s.extend_from_slice(data);
        }
        s
    }

    #[test]
    fn files_in_the_list_are_members() {
        let s = stub(&[("a.exe", b"MZ first"), ("data1.cab", b"ISc(\0\0rest")]);
        assert!(is_stub(&s));
        let (got, _, r) = crate::formats::collect(|each| members(&s, &Limits::default(), each));
        r.expect("parses");
        assert_eq!(
            got,
            [
                ("Disk1\\a.exe".to_string(), b"MZ first".to_vec()),
                ("Disk1\\data1.cab".to_string(), b"ISc(\0\0rest".to_vec())
            ]
        );
        // A size past the end ends the list; text that is no list is none.
        let mut cut = stub(&[("a.exe", b"MZ first")]);
        cut.truncate(cut.len() - 1);
        assert!(!is_stub(&cut));
        assert!(!is_stub(b"NB10\0\0\0\0x\x030J"));
        assert!(!is_stub(b"name\x00path\x00version\x00123\x00"));
    }

    /// An MSI stub's table of `files` (name, contents), as InstallShield
    /// writes one: zlib, then obfuscated with the name.
    fn msi_table(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut t = MSI_MARK.to_vec();
        t.extend_from_slice(&(files.len() as u32).to_le_bytes());
        t.extend_from_slice(&[0; 28]);
        for (name, data) in files {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(data).expect("write");
            let z = z.finish().expect("finish");
            let key: Vec<u8> = name
                .bytes()
                .enumerate()
                .map(|(i, b)| b ^ [0xec, 0xca, 0x79, 0xf8][i % 4])
                .collect();
            let mut entry = vec![0u8; MSI_ENTRY];
            entry[..name.len()].copy_from_slice(name.as_bytes());
            entry[0x104] = 6;
            entry[0x10c..0x114].copy_from_slice(&(z.len() as u64).to_le_bytes());
            entry[0x118] = 1;
            t.extend_from_slice(&entry);
            t.extend(
                z.iter()
                    .enumerate()
                    .map(|(p, &b)| (b ^ key[(p % 1024) % key.len()]).rotate_left(4)),
            );
        }
        t
    }

    #[test]
    fn msi_tables_give_their_files() {
        let big: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let t = msi_table(&[("setup.msi", b"MSI file bytes"), ("clam.exe409.bmp", &big)]);
        assert!(is_msi_table(&t));
        let (got, bad, r) = crate::formats::collect(|each| msi_members(&t, each));
        r.expect("parses");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            got,
            [
                ("setup.msi".to_string(), b"MSI file bytes".to_vec()),
                ("clam.exe409.bmp".to_string(), big)
            ]
        );
        // Cut short: reported; a header that is not zero: no table.
        let (_, bad, _) = crate::formats::collect(|each| msi_members(&t[..t.len() - 10], each));
        assert_eq!(bad, ["clam.exe409.bmp"]);
        let mut odd = t.clone();
        odd[MSI_MARK.len() + 12] = 1;
        assert!(msi_members(&odd, &mut |_| Flow::Continue).is_err());
    }

    #[test]
    fn cabinet_files_inflate_chunk_by_chunk() {
        use std::io::Write;
        let chunk = |data: &[u8]| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("write");
            let c = e.finish().expect("finish");
            [(c.len() as u16).to_le_bytes().as_slice(), &c].concat()
        };
        let stored = [chunk(b"MZ first part, "), chunk(b"and the second")].concat();
        assert_eq!(
            inflate_chunks(&stored, 1000).expect("inflates"),
            b"MZ first part, and the second"
        );
        // Cut short, or past the cap.
        assert!(inflate_chunks(&stored[..stored.len() - 3], 1000).is_err());
        assert!(inflate_chunks(&stored, 4).expect("inflates").len() <= 5);
        assert_eq!(major_version(0x0100_9500), 9);
        assert_eq!(major_version(0x0200_0258), 6);
        assert!(cab_files(b"ISc(\x00\x50\x00\x01").is_err());
    }
}
