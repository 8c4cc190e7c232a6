//! InstallShield setup stubs: a PE whose overlay is a list of files, each
//! written as its name, its path, its version and its size in decimal
//! (each NUL-terminated), then its bytes. Each file is a member, named by
//! its path. A cabinet in InstallShield's own format (`ISc(`) is scanned
//! as its bytes but not opened, and reported so.
//!
//! Cost: one pass over the overlay; a size past its end stops the list.

use crate::formats::{Entry, Flow, FormatError, bytes};

/// Files read from one stub at the most (each is a member, so the walk's
/// file limit applies as well).
const MAX_FILES: usize = 10_000;

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

/// Whether `overlay` starts as a stub's list of files.
pub(crate) fn is_stub(overlay: &[u8]) -> bool {
    entry(overlay, 0).is_some()
}

/// The files of the stub whose overlay is `data`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let mut at = 0;
    let mut n = 0;
    while n < MAX_FILES {
        let Some((path, body)) = entry(data, at) else {
            break;
        };
        n += 1;
        at = body.end;
        let file = &data[body];
        if bytes(each, path.clone(), file) == Flow::Stop {
            break;
        }
        if file.starts_with(b"ISc(")
            && each(Entry::Unsupported {
                name: path,
                why: "an InstallShield cabinet (ISc() is not opened".into(),
            }) == Flow::Stop
        {
            break;
        }
    }
    if n == 0 {
        return Err(FormatError::Corrupt(
            "not an InstallShield stub's list of files".into(),
        ));
    }
    Ok(())
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
        let (got, _, r) = crate::formats::collect(|each| members(&s, each));
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
}
