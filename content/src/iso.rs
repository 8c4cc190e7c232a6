//! ISO 9660 images (CD and DVD file systems): the files of the directory
//! tree, read from the volume descriptors. The Joliet tree (UCS-2 names)
//! is read when the image has one, the primary tree otherwise; both point
//! at the same file data. Rock Ridge names are not read: a file is named
//! by its ISO name without the `;1` version.
//!
//! Every number comes from a hostile image: extents and sizes are checked
//! against the image, a directory is read once however often it is linked
//! (no loops), the tree is read no deeper than [`MAX_DEPTH`], and the
//! directories read add up to no more bytes than the image has (in a real
//! image they do not overlap), so records that point many directories at
//! the same large extent cannot make the walk quadratic.

use std::collections::HashSet;

use crate::formats::{Entry, Flow, FormatError};

/// Where the volume descriptors begin: sector 16 of 2,048 bytes.
const DESCRIPTORS: usize = 16 * 2048;
/// Volume descriptors read before giving up on a terminator.
const MAX_DESCRIPTORS: usize = 64;
/// Directory levels followed (ISO 9660 allows 8; Rock Ridge images go
/// deeper).
const MAX_DEPTH: usize = 64;

/// A directory record's fields that matter here.
struct Record<'a> {
    extent: u64,
    size: u64,
    dir: bool,
    name: &'a [u8],
}

/// The record at the start of `b` (its length is `b[0]`), if well formed.
fn record(b: &[u8]) -> Option<Record<'_>> {
    let len = usize::from(*b.first()?);
    if len < 34 || len > b.len() {
        return None;
    }
    let le32 = |at: usize| u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
    let name_len = usize::from(b[32]);
    let name = b.get(33..33 + name_len).filter(|_| 33 + name_len <= len)?;
    Some(Record {
        extent: le32(2),
        size: le32(10),
        dir: b[25] & 2 != 0,
        name,
    })
}

fn corrupt(what: &str) -> FormatError {
    FormatError::Corrupt(what.to_string())
}

/// The root directory record and block size of the tree to read: Joliet's
/// when there is one, the primary volume's otherwise.
fn root(data: &[u8]) -> Result<(Vec<u8>, u64, bool), FormatError> {
    let mut primary = None;
    for i in 0..MAX_DESCRIPTORS {
        let at = DESCRIPTORS + i * 2048;
        let Some(d) = data.get(at..at + 2048) else {
            break;
        };
        if &d[1..6] != b"CD001" {
            break;
        }
        let block = u64::from(u16::from_le_bytes([d[128], d[129]]));
        let root = d[156..190].to_vec();
        match d[0] {
            1 if primary.is_none() => primary = Some((root, block, false)),
            // A supplementary descriptor with a UCS-2 escape is Joliet.
            2 if d[88] == b'%' && d[89] == b'/' && matches!(d[90], b'@' | b'C' | b'E') => {
                return Ok((root, block, true));
            }
            255 => break,
            _ => {}
        }
    }
    primary.ok_or_else(|| corrupt("no primary volume descriptor"))
}

/// A record's name: Joliet's UCS-2 (big-endian), or ISO's bytes; the
/// `;1` version and a lone trailing dot dropped.
fn name(raw: &[u8], joliet: bool) -> String {
    let mut n = if joliet {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    if let Some(semi) = n.rfind(';') {
        n.truncate(semi);
    }
    if n.ends_with('.') {
        n.pop();
    }
    n
}

/// Hands each file of the image to `each`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let (root, block, joliet) = root(data)?;
    if !matches!(block, 512 | 1024 | 2048) {
        return Err(corrupt(&format!("logical block size {block}")));
    }
    let root = record(&root)
        .filter(|r| r.dir)
        .ok_or_else(|| corrupt("bad root directory record"))?;
    let mut seen = HashSet::new();
    let mut dir_bytes = 0u64;
    // Directories still to read: (extent, size, path, depth).
    let mut todo = vec![(root.extent, root.size, String::new(), 0usize)];
    while let Some((extent, size, path, depth)) = todo.pop() {
        if !seen.insert(extent) {
            continue;
        }
        let start = extent.saturating_mul(block);
        let end = start.saturating_add(size);
        let Some(dir) = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| data.get(s..e))
        else {
            return Err(corrupt(&format!(
                "directory {path:?} lies past the image's end"
            )));
        };
        dir_bytes += dir.len() as u64;
        if dir_bytes > data.len() as u64 {
            return Err(corrupt("its directories add up to more than the image"));
        }
        let mut at = 0usize;
        while at < dir.len() {
            if dir[at] == 0 {
                // Records do not cross a sector: the rest of it is padding.
                at = (at / 2048 + 1) * 2048;
                continue;
            }
            let Some(r) = record(&dir[at..]) else {
                return Err(corrupt(&format!("bad directory record in {path:?}")));
            };
            at += usize::from(dir[at]);
            // `.` and `..`.
            if r.name == [0] || r.name == [1] {
                continue;
            }
            let full = if path.is_empty() {
                name(r.name, joliet)
            } else {
                format!("{path}/{}", name(r.name, joliet))
            };
            if r.dir {
                if depth + 1 < MAX_DEPTH {
                    todo.push((r.extent, r.size, full, depth + 1));
                }
                continue;
            }
            if r.size == 0 {
                continue;
            }
            let start = r.extent.saturating_mul(block);
            let body = usize::try_from(start)
                .ok()
                .zip(usize::try_from(start.saturating_add(r.size)).ok())
                .and_then(|(s, e)| data.get(s..e));
            let flow = match body {
                Some(mut body) => each(Entry::File {
                    name: full,
                    reader: &mut body,
                    compressed: Some(r.size),
                }),
                None => each(Entry::Corrupt {
                    name: full,
                    why: "its data lies past the image's end".into(),
                }),
            };
            if flow == Flow::Stop {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory record.
    fn rec(extent: u32, size: u32, dir: bool, name: &[u8]) -> Vec<u8> {
        let len = 33 + name.len() + (name.len() + 1) % 2;
        let mut r = vec![0u8; len];
        r[0] = len as u8;
        r[2..6].copy_from_slice(&extent.to_le_bytes());
        r[6..10].copy_from_slice(&extent.to_be_bytes());
        r[10..14].copy_from_slice(&size.to_le_bytes());
        r[14..18].copy_from_slice(&size.to_be_bytes());
        r[25] = if dir { 2 } else { 0 };
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r
    }

    /// An image by hand: the root (sector 18) holds `A.TXT;1` (sector 19)
    /// and `SUB` (sector 20); `SUB` holds `B.BIN;1` (sector 21) and a
    /// directory `LOOP` that is the root again.
    fn image() -> Vec<u8> {
        let mut img = vec![0u8; 22 * 2048];
        let sector = |n: usize| n * 2048;
        let pvd = sector(16);
        img[pvd] = 1;
        img[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        img[pvd + 128..pvd + 130].copy_from_slice(&2048u16.to_le_bytes());
        let root = rec(18, 2048, true, &[0]);
        img[pvd + 156..pvd + 156 + 34].copy_from_slice(&root);
        img[sector(17)] = 255;
        img[sector(17) + 1..sector(17) + 6].copy_from_slice(b"CD001");
        let mut dir = Vec::new();
        dir.extend(rec(18, 2048, true, &[0]));
        dir.extend(rec(18, 2048, true, &[1]));
        dir.extend(rec(19, 5, false, b"A.TXT;1"));
        dir.extend(rec(20, 2048, true, b"SUB"));
        img[sector(18)..sector(18) + dir.len()].copy_from_slice(&dir);
        img[sector(19)..sector(19) + 5].copy_from_slice(b"hello");
        let mut sub = Vec::new();
        sub.extend(rec(20, 2048, true, &[0]));
        sub.extend(rec(18, 2048, true, &[1]));
        sub.extend(rec(21, 6, false, b"B.BIN;1"));
        sub.extend(rec(18, 2048, true, b"LOOP"));
        img[sector(20)..sector(20) + sub.len()].copy_from_slice(&sub);
        img[sector(21)..sector(21) + 6].copy_from_slice(b"world!");
        img
    }

    fn files(img: &[u8]) -> crate::formats::Collected {
        crate::formats::collect(|each| members(img, each))
    }

    #[test]
    fn files_of_the_tree_are_read_once_and_loops_end() {
        let img = image();
        assert_eq!(crate::kind::detect(&img), crate::kind::Kind::Iso9660);
        let (got, bad, r) = files(&img);
        assert!(r.is_ok(), "{r:?}");
        assert!(bad.is_empty());
        let mut got = got;
        got.sort();
        assert_eq!(
            got,
            [
                ("A.TXT".to_string(), b"hello".to_vec()),
                ("SUB/B.BIN".to_string(), b"world!".to_vec())
            ]
        );
        // A file whose extent lies past the end is named, not read.
        let mut cut = img.clone();
        cut.truncate(21 * 2048 + 3);
        let (got, bad, r) = files(&cut);
        assert!(r.is_ok());
        assert_eq!(got.len(), 1);
        assert_eq!(bad, ["SUB/B.BIN"]);
        // Directories that overlap (each from its own sector to the end of
        // the image): refused once they add up to more than the image,
        // rather than read again and again.
        let mut wide = vec![0u8; 40 * 2048];
        wide[..18 * 2048].copy_from_slice(&img[..18 * 2048]);
        let mut root = Vec::new();
        root.extend(rec(18, 2048, true, &[0]));
        root.extend(rec(18, 2048, true, &[1]));
        for e in 19..40u32 {
            root.extend(rec(e, (40 - e) * 2048, true, format!("D{e}").as_bytes()));
        }
        wide[18 * 2048..18 * 2048 + root.len()].copy_from_slice(&root);
        let (_, _, r) = files(&wide);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.to_string().contains("more than the image")),
            "{r:?}"
        );
        // A root past the end is an error, not a panic.
        let mut lost = img;
        lost[16 * 2048 + 156 + 2..16 * 2048 + 156 + 6].copy_from_slice(&9999u32.to_le_bytes());
        assert!(files(&lost).2.is_err());
    }

    #[test]
    fn names_lose_their_version() {
        assert_eq!(name(b"README.TXT;1", false), "README.TXT");
        assert_eq!(name(b"NOEXT.;1", false), "NOEXT");
        let j: Vec<u8> = "Long name.exe;1"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(name(&j, true), "Long name.exe");
    }
}
