//! PDF: every stream of every object, in every revision (incremental
//! updates append objects; each stream found in the file is a member),
//! decoded through its filter chain: FlateDecode, ASCIIHexDecode,
//! ASCII85Decode, LZWDecode and RunLengthDecode, in any order and number.
//! Image filters (DCT, JPX, JBIG2, CCITT) leave the bytes as they are,
//! which are then scanned as stored. Object streams are streams too, so
//! the objects packed in them are scanned decoded.
//!
//! A stream's `/Length` may be a number or a reference to an object that
//! holds it; a length that does not fit, or none, gives way to the
//! `endstream` keyword. A stream that decodes only in part is scanned for
//! what decoded, as ClamAV does; one that decodes to nothing is reported
//! unreadable. An encrypted PDF whose user password is empty is decrypted
//! (`pdf_crypt`); one behind a real password is reported encrypted.

use crate::formats::{Entry, Flow, FormatError};
use crate::pdf_crypt::{Decryptor, Refused};

/// The most one stream may decode to.
const MAX_DECODED: usize = 64 << 20;
/// Filters applied to one stream at the most.
const MAX_FILTERS: usize = 8;
/// The longest stream dictionary looked for before a `stream` keyword.
const MAX_DICT: usize = 16 << 10;
/// `stream` keywords without a dictionary before them, past which the
/// file is taken to be no PDF to speak of and the search stops.
const MAX_STRAYS: usize = 10_000;

/// The members of the PDF `data`: its streams, decoded.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    // An encrypted document is opened when its user password is empty;
    // else its streams are scanned as stored, and it says it is encrypted.
    let decryptor = if encrypted(data) {
        match encryption(data) {
            Ok(d) => Some(d),
            Err(Refused::Password) => {
                each(Entry::Encrypted {
                    name: "(streams, behind a user password)".into(),
                });
                None
            }
            Err(Refused::Unsupported(why)) => {
                each(Entry::Unsupported {
                    name: "(encrypted streams)".into(),
                    why: format!("its encryption: {why}"),
                });
                None
            }
        }
    } else {
        None
    };
    let mut at = 0usize;
    let mut n = 0usize;
    let finder = memchr::memmem::Finder::new(b"stream");
    let mut objects = Objects::default();
    let mut strays = 0usize;
    while let Some(p) = finder.find(&data[at..]) {
        let kw = at + p;
        at = kw + 6;
        // `stream` as a keyword: not the end of `endstream`, and after the
        // stream dictionary's `>>` (whitespace between).
        if kw >= 3 && &data[kw - 3..kw] == b"end" {
            continue;
        }
        let before = trim_end(&data[..kw]);
        if !before.ends_with(b">>") {
            continue;
        }
        let Some(dict) = dictionary_before(data, before.len()) else {
            strays += 1;
            if strays > MAX_STRAYS {
                each(Entry::Corrupt {
                    name: format!("stream {}", n + 1),
                    why: format!("more than {MAX_STRAYS} `stream` keywords without a dictionary"),
                });
                break;
            }
            continue;
        };
        // The data starts after the end of the keyword's line.
        let mut start = kw + 6;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) == Some(&b'\n') {
            start += 1;
        }
        let end = stream_end(data, dict, start, &mut objects);
        at = end.max(at);
        n += 1;
        let object = object_number(data, dict.as_ptr() as usize - data.as_ptr() as usize);
        let name = object.map_or_else(|| format!("stream {n}"), |(o, g)| format!("obj {o} {g}"));
        let stored = &data[start..end];
        // Cross-reference streams are never encrypted.
        let xref = value(dict, b"/Type").is_some_and(|t| trim(t) == b"/XRef");
        let decrypted = match (&decryptor, object) {
            (Some(d), Some((o, g))) if !xref => d.stream(o, g, stored),
            _ => None,
        };
        let raw: &[u8] = decrypted.as_deref().unwrap_or(stored);
        let filters = filters(dict);
        let flow = match decode(raw, &filters) {
            Decoded::Whole(bytes) | Decoded::Part(bytes) if !bytes.is_empty() || raw.is_empty() => {
                let mut r: &[u8] = &bytes;
                each(Entry::File {
                    name,
                    reader: &mut r,
                    compressed: Some(raw.len() as u64),
                })
            }
            Decoded::TooLarge => each(Entry::Unsupported {
                name,
                why: format!("decodes to more than {MAX_DECODED} bytes"),
            }),
            _ => each(Entry::Corrupt {
                name,
                why: format!("its filters ({}) do not decode it", filters.join(", ")),
            }),
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Whether a trailer (or cross-reference stream) names an encryption
/// dictionary: `/Encrypt` followed by a reference or a dictionary.
fn encrypted(data: &[u8]) -> bool {
    encrypt_entry(data).is_some()
}

/// What follows the last `/Encrypt` that names an encryption dictionary
/// (a reference or a dictionary, not a word in a string).
fn encrypt_entry(data: &[u8]) -> Option<&[u8]> {
    memchr::memmem::rfind_iter(data, b"/Encrypt")
        .map(|at| trim_start(&data[at + 8..]))
        .find(|rest| {
            rest.first()
                .is_some_and(|c| c.is_ascii_digit() || *c == b'<')
        })
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &b[..n]
}

/// The dictionary that ends at `end` (just past its `>>`): from its
/// matching `<<`, nested dictionaries counted.
fn dictionary_before(data: &[u8], end: usize) -> Option<&[u8]> {
    let mut depth = 0i32;
    let mut i = end;
    // Far enough back for any real stream dictionary, and no further, so
    // that a file of `>>stream` without dictionaries stays linear.
    let floor = end.saturating_sub(MAX_DICT);
    while i >= floor + 2 {
        if &data[i - 2..i] == b">>" {
            depth += 1;
            i -= 2;
        } else if &data[i - 2..i] == b"<<" {
            depth -= 1;
            i -= 2;
            if depth == 0 {
                return Some(&data[i..end]);
            }
        } else {
            i -= 1;
        }
    }
    None
}

/// `N G` of the `N G obj` before the dictionary at `at`.
fn object_number(data: &[u8], at: usize) -> Option<(u32, u16)> {
    let head = trim_end(&data[at.saturating_sub(64)..at]);
    let head = head.strip_suffix(b"obj")?;
    let text = String::from_utf8_lossy(head);
    let mut words = text.split_ascii_whitespace().rev();
    let g: u16 = words.next()?.parse().ok()?;
    let num: u32 = words.next()?.parse().ok()?;
    Some((num, g))
}

/// Both ends trimmed of whitespace.
pub(crate) fn trim(b: &[u8]) -> &[u8] {
    trim_start(trim_end(b))
}

/// The document's decryptor: its `/Encrypt` dictionary (inline, or the
/// object a trailer refers to) and the first string of its `/ID`.
fn encryption(data: &[u8]) -> Result<Decryptor, Refused> {
    let unsupported = |w: &str| Refused::Unsupported(w.to_string());
    let rest = encrypt_entry(data).ok_or_else(|| unsupported("no /Encrypt"))?;
    let dict: &[u8] = if rest.starts_with(b"<<") {
        let end = dictionary_end(rest).ok_or_else(|| unsupported("a bad /Encrypt"))?;
        &rest[..end]
    } else {
        let text = String::from_utf8_lossy(&rest[..rest.len().min(32)]).into_owned();
        let mut w = text.split_ascii_whitespace();
        let (num, g) = (w.next().unwrap_or_default(), w.next().unwrap_or_default());
        let mark = format!("{num} {g} obj");
        let obj = memchr::memmem::find_iter(data, mark.as_bytes())
            .find(|&p| p == 0 || !data[p - 1].is_ascii_digit())
            .ok_or_else(|| unsupported("no encryption dictionary"))?;
        let body = trim_start(&data[obj + mark.len()..]);
        let end = dictionary_end(body).ok_or_else(|| unsupported("a bad encryption dictionary"))?;
        &body[..end]
    };
    let id = memchr::memmem::rfind(data, b"/ID")
        .and_then(|at| {
            let r = trim_start(&data[at + 3..]);
            let r = trim_start(r.strip_prefix(b"[")?);
            crate::pdf_crypt::string(r)
        })
        .unwrap_or_default();
    Decryptor::new(dict, &id)
}

/// The length of the dictionary that starts `b` (`<<` … `>>`, nested ones
/// counted).
fn dictionary_end(b: &[u8]) -> Option<usize> {
    let mut depth = 0i32;
    let mut i = 0;
    while i + 1 < b.len() {
        match &b[i..i + 2] {
            b"<<" => {
                depth += 1;
                i += 2;
            }
            b">>" => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The value after `/Key` in a dictionary (up to the next `/`, `>>` or
/// `<<` at its level), trimmed.
pub(crate) fn value<'a>(dict: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut at = 0;
    while let Some(p) = memchr::memmem::find(&dict[at..], key) {
        let after = at + p + key.len();
        at = after;
        // A whole name, not a prefix of a longer one.
        if dict.get(after).is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let rest = &dict[after..];
        let rest = &rest[rest.iter().take_while(|c| c.is_ascii_whitespace()).count()..];
        let stop = if rest.starts_with(b"[") {
            rest.iter()
                .position(|&c| c == b']')
                .map_or(rest.len(), |e| e + 1)
        } else if rest.starts_with(b"<<") {
            dictionary_end(rest).unwrap_or(rest.len())
        } else if rest.starts_with(b"<") {
            rest.iter()
                .position(|&c| c == b'>')
                .map_or(rest.len(), |e| e + 1)
        } else if rest.starts_with(b"(") {
            crate::pdf_crypt::literal(rest).map_or(rest.len(), |(_, end)| end)
        } else {
            let first = usize::from(rest.starts_with(b"/"));
            rest[first..]
                .iter()
                .position(|&c| c == b'/' || c == b'>' || c == b'<')
                .map_or(rest.len(), |e| e + first)
        };
        return Some(trim_end(&rest[..stop]));
    }
    None
}

/// Where the stream that starts at `start` ends: its `/Length` (a number,
/// or the number in the object it refers to) when that ends at an
/// `endstream`, else the next `endstream`.
fn stream_end(data: &[u8], dict: &[u8], start: usize, objects: &mut Objects) -> usize {
    let by_keyword = || {
        memchr::memmem::find(&data[start..], b"endstream").map_or(data.len(), |p| {
            let mut e = start + p;
            // The end-of-line before `endstream` is not data.
            if e > start && data[e - 1] == b'\n' {
                e -= 1;
            }
            if e > start && data[e - 1] == b'\r' {
                e -= 1;
            }
            e
        })
    };
    let length = value(dict, b"/Length").and_then(|v| {
        let text = String::from_utf8_lossy(v);
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        match words.as_slice() {
            [n] => n.parse::<usize>().ok(),
            [num, g, "R"] => objects.number(data, num.parse().ok()?, g.parse().ok()?),
            _ => None,
        }
    });
    match length.and_then(|l| start.checked_add(l)) {
        Some(end) if end <= data.len() && trim_start(&data[end..]).starts_with(b"endstream") => end,
        _ => by_keyword(),
    }
}

fn trim_start(b: &[u8]) -> &[u8] {
    &b[b.iter().take_while(|c| c.is_ascii_whitespace()).count()..]
}

/// Where each object's body starts (`N G obj`), found in one pass the
/// first time an indirect length needs it; a later definition (an
/// incremental update) replaces an earlier one.
#[derive(Default)]
struct Objects {
    index: Option<std::collections::HashMap<(u32, u16), usize>>,
}

impl Objects {
    /// The integer object `num g`, if the file has one.
    fn number(&mut self, data: &[u8], num: u32, g: u16) -> Option<usize> {
        let index = self.index.get_or_insert_with(|| {
            let mut index = std::collections::HashMap::new();
            for at in memchr::memmem::find_iter(data, b" obj") {
                if let Some(key) = object_number(data, at + 4) {
                    index.insert(key, at + 4);
                }
            }
            index
        });
        let rest = trim_start(&data[*index.get(&(num, g))?..]);
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
    }
}

/// The filter names of a stream dictionary, in order (`FlateDecode`,
/// abbreviations included).
fn filters(dict: &[u8]) -> Vec<String> {
    let Some(v) = value(dict, b"/Filter") else {
        return Vec::new();
    };
    String::from_utf8_lossy(v)
        .split(|c: char| c == '/' || c == '[' || c == ']' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .take(MAX_FILTERS)
        .map(str::to_string)
        .collect()
}

/// What a filter chain gave.
enum Decoded {
    /// All of it.
    Whole(Vec<u8>),
    /// What decoded before an error.
    Part(Vec<u8>),
    /// More than [`MAX_DECODED`].
    TooLarge,
}

fn decode(raw: &[u8], filters: &[String]) -> Decoded {
    let mut data = raw.to_vec();
    let mut whole = true;
    for f in filters {
        let (out, ok) = match f.as_str() {
            "FlateDecode" | "Fl" => flate(&data),
            "ASCIIHexDecode" | "AHx" => ascii_hex(&data),
            "ASCII85Decode" | "A85" => ascii85(&data),
            "LZWDecode" | "LZW" => lzw(&data),
            "RunLengthDecode" | "RL" => run_length(&data),
            // Images and the rest: the bytes as stored.
            _ => {
                return if whole {
                    Decoded::Whole(data)
                } else {
                    Decoded::Part(data)
                };
            }
        };
        if out.len() > MAX_DECODED {
            return Decoded::TooLarge;
        }
        whole &= ok;
        data = out;
    }
    if whole {
        Decoded::Whole(data)
    } else {
        Decoded::Part(data)
    }
}

/// zlib, or raw deflate when the zlib header is missing; what decodes
/// before an error is kept.
fn flate(data: &[u8]) -> (Vec<u8>, bool) {
    use std::io::Read;
    let read = |r: &mut dyn Read| {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.len() > MAX_DECODED {
                        return (out, false);
                    }
                }
                Err(_) => return (out, false),
            }
        }
    };
    let (out, ok) = read(&mut flate2::read::ZlibDecoder::new(data));
    if ok || !out.is_empty() {
        return (out, ok);
    }
    read(&mut flate2::read::DeflateDecoder::new(data))
}

/// Hex digits, whitespace ignored, up to `>`; an odd last digit is
/// followed by 0.
fn ascii_hex(data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut high: Option<u8> = None;
    for &c in data {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            b'>' => break,
            c if c.is_ascii_whitespace() => continue,
            _ => return (out, false),
        };
        match high.take() {
            None => high = Some(v),
            Some(h) => out.push((h << 4) | v),
        }
    }
    if let Some(h) = high {
        out.push(h << 4);
    }
    (out, true)
}

/// Base-85 groups of five (`z` for four zeros), up to `~>`.
fn ascii85(data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(data.len() * 4 / 5);
    let mut group = [0u8; 5];
    let mut n = 0;
    let body = data.strip_prefix(b"<~").unwrap_or(data);
    for &c in body {
        match c {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                group[n] = c - b'!';
                n += 1;
                if n == 5 {
                    let v = group.iter().fold(0u64, |acc, &d| acc * 85 + u64::from(d));
                    if v > u64::from(u32::MAX) {
                        return (out, false);
                    }
                    out.extend_from_slice(&(v as u32).to_be_bytes());
                    n = 0;
                }
            }
            c if c.is_ascii_whitespace() => {}
            _ => return (out, false),
        }
    }
    if n > 1 {
        for d in group.iter_mut().skip(n) {
            *d = 84;
        }
        let v = group.iter().fold(0u64, |acc, &d| acc * 85 + u64::from(d));
        let bytes = (v.min(u64::from(u32::MAX)) as u32).to_be_bytes();
        out.extend_from_slice(&bytes[..n - 1]);
    }
    (out, true)
}

/// LZW as PDF has it: 9- to 12-bit codes, most significant bit first,
/// 256 clears the table, 257 ends, and the width grows one code early.
fn lzw(data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(data.len() * 3);
    let mut table: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    table.push(Vec::new());
    table.push(Vec::new());
    let mut width = 9u32;
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut prev: Option<usize> = None;
    for &byte in data {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= width {
            bits -= width;
            let code = ((acc >> bits) & ((1 << width) - 1)) as usize;
            if code == 256 {
                table.truncate(258);
                width = 9;
                prev = None;
                continue;
            }
            if code == 257 {
                return (out, true);
            }
            let entry = match (code < table.len(), prev) {
                (true, _) => table[code].clone(),
                (false, Some(p)) if code == table.len() => {
                    let mut e = table[p].clone();
                    e.push(table[p][0]);
                    e
                }
                _ => return (out, false),
            };
            out.extend_from_slice(&entry);
            if out.len() > MAX_DECODED {
                return (out, false);
            }
            if let Some(p) = prev
                && table.len() < 4096
            {
                let mut e = table[p].clone();
                e.push(entry[0]);
                table.push(e);
            }
            if table.len() + 1 >= (1 << width) && width < 12 {
                width += 1;
            }
            prev = Some(code);
        }
    }
    (out, true)
}

/// Run-length: a length byte `n` below 128 copies `n + 1` bytes, above 128
/// repeats the next byte `257 - n` times, 128 ends.
fn run_length(data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut i = 0;
    while i < data.len() {
        let n = data[i];
        i += 1;
        match n {
            128 => return (out, true),
            0..=127 => {
                let len = usize::from(n) + 1;
                let Some(s) = data.get(i..i + len) else {
                    return (out, false);
                };
                out.extend_from_slice(s);
                i += len;
            }
            _ => {
                let Some(&b) = data.get(i) else {
                    return (out, false);
                };
                out.extend(std::iter::repeat_n(b, 257 - usize::from(n)));
                i += 1;
            }
        }
        if out.len() > MAX_DECODED {
            return (out, false);
        }
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_decode() {
        assert_eq!(ascii_hex(b"48 65 6c6C 6f>").0, b"Hello");
        assert_eq!(ascii_hex(b"7>").0, [0x70]);
        assert_eq!(ascii85(b"<~87cURD]i,\"Ebo80~>").0, b"Hello World!");
        assert_eq!(ascii85(b"z~>").0, [0, 0, 0, 0]);
        assert_eq!(
            run_length(&[2, b'a', b'b', b'c', 253, b'x', 128]).0,
            b"abcxxxx"
        );
        // "ABABABA" as 9-bit LZW codes: A B 258 260 257.
        let codes = [65u32, 66, 258, 260, 257];
        let mut bits = String::new();
        for c in codes {
            bits.push_str(&format!("{c:09b}"));
        }
        while !bits.len().is_multiple_of(8) {
            bits.push('0');
        }
        let bytes: Vec<u8> = (0..bits.len() / 8)
            .map(|i| u8::from_str_radix(&bits[i * 8..i * 8 + 8], 2).unwrap())
            .collect();
        assert_eq!(lzw(&bytes).0, b"ABABABA");
    }

    #[test]
    fn streams_with_direct_and_indirect_lengths_are_members() {
        let pdf = b"%PDF-1.4\n1 0 obj\n<< /Length 5 >>\nstream\nhello\nendstream\nendobj\n2 0 obj\n<< /Length 3 0 R /Filter /ASCIIHexDecode >>\nstream\n776f726c64>\nendstream\nendobj\n3 0 obj\n11\nendobj\n";
        let (got, _, r) = crate::formats::collect(|each| members(pdf, each));
        r.expect("parses");
        assert_eq!(
            got,
            [
                ("obj 1 0".to_string(), b"hello".to_vec()),
                ("obj 2 0".to_string(), b"world".to_vec())
            ]
        );
        assert!(!encrypted(pdf));
        // `>>stream` over and over, with no dictionary: the search gives up
        // after a bounded number, and says so.
        let strays = b">>stream ".repeat(50_000);
        let (files, bad, r) = crate::formats::collect(|each| members(&strays, each));
        assert!(r.is_ok() && files.is_empty() && bad.len() == 1, "{bad:?}");
        assert!(encrypted(b"trailer << /Root 1 0 R /Encrypt 9 0 R >>"));
        assert!(!encrypted(b"(a string that says /Encrypt aloud)"));
    }
}
