//! Microsoft OneNote sections (`.one`): the files embedded in one, each a
//! member. A section is a revision store (MS-ONESTORE) whose embedded
//! files are kept in FileDataStoreObject structures: a 16-byte GUID, the
//! file's length (64 bits), 12 reserved bytes, the file's bytes, padding
//! to 8 bytes and a closing GUID. As ClamAV does when the store does not
//! parse, each structure is found by its GUID, without reading the store:
//! the same files, from any section that holds them.
//!
//! Cost: one search of the section for the GUID; the search goes on after
//! each file, so no byte is read as two files and a file is never longer
//! than the section.

use crate::formats::{Entry, Flow, FormatError, bytes};

/// A OneNote section's first 16 bytes (its file type GUID).
pub(crate) const MAGIC: [u8; 16] = [
    0xe4, 0x52, 0x5c, 0x7b, 0x8c, 0xd8, 0xa7, 0x4d, 0xae, 0xb1, 0x53, 0x78, 0xd0, 0x29, 0x96, 0xd3,
];

/// The GUID a FileDataStoreObject starts with.
const FILE_DATA: [u8; 16] = [
    0xe7, 0x16, 0xe3, 0xbd, 0x65, 0x26, 0x11, 0x45, 0xa4, 0xc4, 0x8d, 0x4d, 0x0b, 0x7a, 0x9e, 0xac,
];

/// The GUID, the length and the reserved bytes before a file's data.
const HEAD: usize = 16 + 8 + 4 + 8;

/// The embedded files of the section `data`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let finder = memchr::memmem::Finder::new(&FILE_DATA);
    let mut at = 0;
    let mut n = 0;
    while let Some(found) = finder.find(&data[at..]) {
        let start = at + found;
        n += 1;
        let name = format!("embedded file {n}");
        let Some(len) = data.get(start + 16..start + 24) else {
            break;
        };
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let body = start + HEAD;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| body.checked_add(l))
            .filter(|&e| e <= data.len());
        let Some(end) = end else {
            each(Entry::Corrupt {
                name,
                why: format!("its length ({len} bytes) runs past the section's end"),
            });
            break;
        };
        if bytes(each, name, &data[body..end]) == Flow::Stop {
            break;
        }
        at = end.max(start + 16);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section: the magic, filler, then each file in its structure.
    fn section(files: &[&[u8]]) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.resize(1024, 0);
        for f in files {
            s.extend_from_slice(&FILE_DATA);
            s.extend_from_slice(&(f.len() as u64).to_le_bytes());
            s.extend_from_slice(&[0; 12]);
            s.extend_from_slice(f);
            s.resize(s.len().next_multiple_of(8), 0);
            s.extend_from_slice(&[0x22, 0xa7, 0xfb, 0x71, 0x79, 0x0f, 0x0b, 0x4a]);
            s.extend_from_slice(&[0xbb, 0x13, 0x89, 0x92, 0x56, 0x42, 0x6b, 0x24]);
        }
        s
    }

    #[test]
    fn embedded_files_are_members() {
        // A file that holds the GUID itself is not read as two.
        let inner = [b"x".as_slice(), &FILE_DATA, &[0xff; 20]].concat();
        let one = section(&[b"hello world", &inner]);
        let (got, bad, r) = crate::formats::collect(|each| members(&one, each));
        r.expect("parses");
        assert!(bad.is_empty());
        assert_eq!(
            got,
            [
                ("embedded file 1".to_string(), b"hello world".to_vec()),
                ("embedded file 2".to_string(), inner)
            ]
        );
        // A length past the end is reported, not read.
        let mut cut = section(&[b"hello world"]);
        cut.truncate(1024 + HEAD + 5);
        let (got, bad, _) = crate::formats::collect(|each| members(&cut, each));
        assert!(got.is_empty());
        assert_eq!(bad, ["embedded file 1"]);
        let mut huge = section(&[b"abc"]);
        huge[1024 + 16..1024 + 24].copy_from_slice(&u64::MAX.to_le_bytes());
        let (_, bad, _) = crate::formats::collect(|each| members(&huge, each));
        assert_eq!(bad, ["embedded file 1"]);
    }
}
