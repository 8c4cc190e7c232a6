//! RTF: the objects embedded in a document (`\objdata`, hex digits), each
//! an OLE1 object: its bytes are a member, and so is what it carries: an
//! object package's file (`Package`), or its native data (often an OLE2
//! file, which the walk opens in turn).

use crate::formats::{self, Entry, Flow, FormatError};

/// The members of the RTF document `data`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let mut n = 0;
    for at in memchr::memmem::find_iter(data, b"\\objdata") {
        // A longer control word (`\objdatax`) is another one.
        if data.get(at + 8).is_some_and(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        n += 1;
        let object = hex_run(&data[at + 8..]);
        let name = format!("objdata {n}");
        if formats::bytes(each, name.clone(), &object) == Flow::Stop
            || ole1(&object, &name, each) == Flow::Stop
        {
            break;
        }
    }
    Ok(())
}

/// The bytes of the hex digits that follow, whitespace skipped, up to the
/// group's end (`}`) or the next group or control word.
fn hex_run(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut high: Option<u8> = None;
    for &c in s {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            b' ' | b'\r' | b'\n' | b'\t' => continue,
            _ => break,
        };
        match high.take() {
            None => high = Some(v),
            Some(h) => out.push((h << 4) | v),
        }
    }
    out
}

/// What an OLE1 object carries: version, format, class, topic and item
/// names (each with its length), then the native data with its size.
fn ole1(o: &[u8], within: &str, each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Flow {
    let le32 = |at: usize| -> Option<usize> {
        let b = o.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let parsed = (|| {
        let mut at = 8;
        let class_len = le32(at)?;
        let class = o.get(at + 4..at.checked_add(4 + class_len)?)?;
        let class = String::from_utf8_lossy(class.split(|&b| b == 0).next()?).into_owned();
        at += 4 + class_len;
        for _ in 0..2 {
            at = at.checked_add(4 + le32(at)?)?;
        }
        let size = le32(at)?;
        let native = o.get(at + 4..at.checked_add(4 + size)?)?;
        Some((class, native))
    })();
    match parsed {
        Some((class, native)) if class.eq_ignore_ascii_case("package") => {
            crate::ole2::package(native, within, each)
        }
        Some((_, mut native)) => each(Entry::File {
            name: format!("{within}/native data"),
            reader: &mut native,
            compressed: None,
        }),
        // Not an OLE1 object: its bytes were scanned as they are.
        None => Flow::Continue,
    }
}
