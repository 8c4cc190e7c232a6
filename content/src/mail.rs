//! Mail and the encodings that travel in it: RFC 822 messages and mbox
//! files (MIME structure by the `mail-parser` crate: multipart to any
//! depth, base64, quoted-printable), uuencode, BinHex 4.0 and MS-TNEF
//! (`winmail.dat`), the last three decoded here.
//!
//! A message's parts are its members, decoded: each text part, each
//! attachment, and each message inside it (`message/rfc822`), which the
//! walk opens as a layer of its own, so nesting is bounded by the walk's
//! recursion limit and not by the parser's. A part that holds uuencoded
//! or BinHex data yields the decoded file as a further member.

use std::borrow::Cow;

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::formats::{self, Entry, Flow, FormatError};

/// The first line of a BinHex 4.0 file.
pub(crate) const BINHEX_MARK: &[u8] = b"(This file must be converted with BinHex";

/// The TNEF signature (little-endian 0x223E9F78).
pub(crate) const TNEF_MAGIC: [u8; 4] = [0x78, 0x9f, 0x3e, 0x22];

/// Header names a message may start with (`clamscan` types such files as
/// mail by their first header).
const HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "received",
    "return-path",
    "delivered-to",
    "message-id",
    "date",
    "mime-version",
    "reply-to",
    "sender",
    "envelope-to",
    "organization",
    "content-type",
];

/// Whether `data` starts as a mail message does: an mbox `From ` line, or
/// a known header (or an `X-` one) followed by a second header line.
pub(crate) fn is_mail(data: &[u8]) -> bool {
    if data.starts_with(b"From ") {
        return data[..data.len().min(1024)].contains(&b'\n');
    }
    let head = &data[..data.len().min(4096)];
    let mut lines = head.split(|&b| b == b'\n');
    let header = |l: &[u8]| -> Option<String> {
        let colon = l.iter().position(|&b| b == b':')?;
        let name = &l[..colon];
        (!name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'))
            .then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
    };
    let Some(first) = lines.next().and_then(header) else {
        return false;
    };
    let known = HEADERS.contains(&first.as_str()) || first.starts_with("x-");
    // A second header line (or a folded continuation) follows.
    known
        && lines.next().is_some_and(|l| {
            header(l).is_some() || l.first().is_some_and(|b| *b == b' ' || *b == b'\t')
        })
}

/// The members of a mail file: each message of an mbox, or the one
/// message.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let messages = if data.starts_with(b"From ") {
        mbox_messages(data)
    } else {
        vec![data]
    };
    let many = messages.len() > 1;
    for (i, m) in messages.into_iter().enumerate() {
        let prefix = if many {
            format!("message {}/", i + 1)
        } else {
            String::new()
        };
        if message(m, &prefix, each)? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// The messages of an mbox: each starts at a line beginning `From `.
fn mbox_messages(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = vec![0usize];
    let mut at = 0;
    while let Some(p) = memchr::memmem::find(&data[at..], b"\nFrom ") {
        starts.push(at + p + 1);
        at += p + 1;
    }
    starts.push(data.len());
    starts
        .windows(2)
        .map(|w| &data[w[0]..w[1]])
        .filter(|m| !m.is_empty())
        .collect()
}

/// One message's parts, decoded.
fn message(
    data: &[u8],
    prefix: &str,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<Flow, FormatError> {
    // An mbox's `From ` line is no header.
    let body = if data.starts_with(b"From ") {
        data.iter()
            .position(|&b| b == b'\n')
            .map_or(&data[data.len()..], |p| &data[p + 1..])
    } else {
        data
    };
    let Some(msg) = MessageParser::default().parse(body) else {
        return Err(FormatError::Corrupt("not a mail message".into()));
    };
    for (i, part) in msg.parts.iter().enumerate() {
        let name = part
            .attachment_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("part {}", i + 1));
        let name = format!("{prefix}{name}");
        let bytes: Cow<'_, [u8]> = match &part.body {
            PartType::Multipart(_) => continue,
            PartType::Text(t) | PartType::Html(t) => Cow::Borrowed(t.as_bytes()),
            PartType::Binary(b) | PartType::InlineBinary(b) => Cow::Borrowed(b.as_ref()),
            // A message inside: its raw bytes, which the walk opens as
            // mail again.
            PartType::Message(m) => Cow::Borrowed(m.raw_message()),
        };
        if matches!(part.body, PartType::Message(_)) {
            let flow = each(Entry::Message {
                name: name.clone(),
                reader: &mut bytes.as_ref(),
            });
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
            continue;
        }
        if formats::bytes(each, name.clone(), &bytes) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        // Encoded files inside a part's text.
        if embedded_files(&bytes, &name, each) == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

/// Uuencoded and BinHex files inside `text` (a part called `within`).
fn embedded_files(text: &[u8], within: &str, each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Flow {
    for (name, data) in uudecode_all(text) {
        if formats::bytes(each, format!("{within}/{name}"), &data) == Flow::Stop {
            return Flow::Stop;
        }
    }
    if let Some(at) = memchr::memmem::find(text, BINHEX_MARK) {
        return binhex_entries(&text[at..], within, each);
    }
    Flow::Continue
}

/// Every uuencoded file in `text`: `begin MODE NAME`, then lines whose
/// first character gives their length, up to `end` (or a line that does
/// not decode).
fn uudecode_all(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(rest) = line.strip_prefix(b"begin ") else {
            continue;
        };
        let mut fields = rest.splitn(2, |&b| b == b' ');
        let mode_ok = fields
            .next()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|b| (b'0'..=b'7').contains(b)));
        let Some(name) = fields.next().filter(|_| mode_ok) else {
            continue;
        };
        let name = String::from_utf8_lossy(name).trim().to_string();
        let mut data = Vec::new();
        while let Some(l) = lines.peek() {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            if l == b"end" || l.is_empty() {
                break;
            }
            let n = usize::from(l[0].wrapping_sub(b' ') & 63);
            if n == 0 {
                break;
            }
            let Some(bytes) = uu_line(&l[1..], n) else {
                break;
            };
            data.extend_from_slice(&bytes);
            lines.next();
        }
        if !data.is_empty() {
            out.push((name, data));
        }
    }
    out
}

/// One uuencoded line's `n` bytes.
fn uu_line(chars: &[u8], n: usize) -> Option<Vec<u8>> {
    let need = n.div_ceil(3) * 4;
    if chars.len() < need {
        // Some encoders drop trailing spaces.
        if chars.len() + 2 < need {
            return None;
        }
    }
    let v = |i: usize| chars.get(i).map_or(0, |c| c.wrapping_sub(b' ') & 63);
    let mut out = Vec::with_capacity(n + 2);
    for g in 0..need / 4 {
        let (a, b, c, d) = (v(g * 4), v(g * 4 + 1), v(g * 4 + 2), v(g * 4 + 3));
        out.push((a << 2) | (b >> 4));
        out.push((b << 4) | (c >> 2));
        out.push((c << 6) | d);
    }
    out.truncate(n);
    Some(out)
}

/// The most a BinHex file may expand to.
const MAX_BINHEX: usize = 64 << 20;

/// BinHex's 64 characters, in value order.
const BINHEX_CHARS: &[u8; 64] =
    b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

/// A BinHex 4.0 file (from its mark on): its data fork, and its resource
/// fork when it has one, as members named after the file it holds.
pub(crate) fn binhex(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let at = memchr::memmem::find(data, BINHEX_MARK)
        .ok_or_else(|| FormatError::Corrupt("no BinHex mark".into()))?;
    binhex_entries(&data[at..], "", each);
    Ok(())
}

fn binhex_entries(data: &[u8], within: &str, each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Flow {
    let Some((name, forks)) = binhex_decode(data) else {
        return each(Entry::Corrupt {
            name: if within.is_empty() {
                "(BinHex)".into()
            } else {
                format!("{within}/(BinHex)")
            },
            why: "BinHex data that does not decode".into(),
        });
    };
    let prefix = if within.is_empty() {
        String::new()
    } else {
        format!("{within}/")
    };
    for (i, fork) in forks.into_iter().enumerate() {
        if fork.is_empty() {
            continue;
        }
        let member = if i == 0 {
            format!("{prefix}{name}")
        } else {
            format!("{prefix}{name} (resource fork)")
        };
        if formats::bytes(each, member, &fork) == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// A BinHex file's name and its two forks.
fn binhex_decode(data: &[u8]) -> Option<(String, [Vec<u8>; 2])> {
    let mut value = [255u8; 256];
    for (i, &c) in BINHEX_CHARS.iter().enumerate() {
        value[usize::from(c)] = i as u8;
    }
    // The encoded part lies between the first `:` after the mark's line
    // and the next `:`.
    let after_mark = data.iter().position(|&b| b == b'\n')?;
    let start = after_mark + data[after_mark..].iter().position(|&b| b == b':')? + 1;
    let mut sixes = Vec::with_capacity(data.len());
    for &c in &data[start..] {
        match c {
            b':' => break,
            b'\r' | b'\n' | b' ' | b'\t' => {}
            c if value[usize::from(c)] != 255 => sixes.push(value[usize::from(c)]),
            _ => return None,
        }
    }
    // Six bits a character, then run-length: 0x90 n repeats the byte
    // before n - 1 more times (0x90 0 is 0x90 itself).
    let mut packed = Vec::with_capacity(sixes.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for s in sixes {
        acc = (acc << 6) | u32::from(s);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            packed.push((acc >> bits) as u8);
        }
    }
    let mut raw = Vec::with_capacity(packed.len());
    let mut i = 0;
    while i < packed.len() {
        let b = packed[i];
        if b == 0x90 && i + 1 < packed.len() {
            let n = packed[i + 1];
            i += 2;
            if n == 0 {
                raw.push(0x90);
            } else {
                let last = *raw.last()?;
                raw.extend(std::iter::repeat_n(last, usize::from(n) - 1));
                // Runs expand 127-fold: a bound, as for any bomb.
                if raw.len() > MAX_BINHEX {
                    return None;
                }
            }
        } else {
            raw.push(b);
            i += 1;
        }
    }
    let nlen = usize::from(*raw.first()?);
    let h = raw.get(1 + nlen..1 + nlen + 1 + 4 + 4 + 2 + 4 + 4 + 2)?;
    let name = String::from_utf8_lossy(&raw[1..1 + nlen]).into_owned();
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let dlen = be32(&h[11..15]);
    let rlen = be32(&h[15..19]);
    let data_at = 1 + nlen + h.len();
    let fork = raw.get(data_at..data_at.checked_add(dlen)?)?.to_vec();
    let rsrc_at = data_at + dlen + 2;
    let rsrc = raw
        .get(rsrc_at..rsrc_at.saturating_add(rlen))
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Some((name, [fork, rsrc]))
}

/// A TNEF stream's attachments (`attAttachData`), named by their
/// `attAttachTitle`.
pub(crate) fn tnef(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    const ATTACH_DATA: u32 = 0x800f;
    const ATTACH_TITLE: u32 = 0x8010;
    const ATTACH_REND: u32 = 0x9002;
    if !data.starts_with(&TNEF_MAGIC) {
        return Err(FormatError::Corrupt("no TNEF signature".into()));
    }
    // Each attachment's attributes run from one attAttachRendData to the
    // next; its title may come before or after its data.
    let mut at = 6;
    let mut groups: Vec<(Option<String>, Vec<&[u8]>)> = vec![(None, Vec::new())];
    while at + 9 <= data.len() {
        let level = data[at];
        if level != 1 && level != 2 {
            return Err(FormatError::Corrupt(format!(
                "TNEF: attribute level {level}"
            )));
        }
        let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let id = le32(&data[at + 1..at + 5]) & 0xffff;
        let len = le32(&data[at + 5..at + 9]) as usize;
        let start = at + 9;
        let Some(value) = data.get(start..start.saturating_add(len)) else {
            return Err(FormatError::Corrupt("TNEF: truncated attribute".into()));
        };
        at = start + len + 2;
        if level != 2 {
            continue;
        }
        let group = groups.last_mut().expect("one group at least");
        match id {
            ATTACH_REND => groups.push((None, Vec::new())),
            ATTACH_TITLE => {
                let t = value.split(|&b| b == 0).next().unwrap_or_default();
                group.0 = Some(String::from_utf8_lossy(t).into_owned());
            }
            ATTACH_DATA => group.1.push(value),
            _ => {}
        }
    }
    let mut n = 0;
    for (title, datas) in groups {
        for value in datas {
            n += 1;
            let name = title.clone().unwrap_or_else(|| format!("attachment {n}"));
            if formats::bytes(each, name, value) == Flow::Stop {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(
        f: impl FnOnce(&mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError>,
    ) -> Vec<(String, Vec<u8>)> {
        let (files, _, r) = crate::formats::collect(f);
        r.expect("parses");
        files
    }

    #[test]
    fn uuencode_round_trip() {
        // "Cat" and a longer line, as `uuencode` writes them.
        let text = b"hello\nbegin 644 cat.txt\n#0V%T\n`\nend\nbye\n";
        assert_eq!(
            uudecode_all(text),
            [("cat.txt".to_string(), b"Cat".to_vec())]
        );
        assert!(uudecode_all(b"begin here we go\n").is_empty());
    }

    #[test]
    fn mail_is_told_by_its_first_headers() {
        assert!(is_mail(b"From: a@b\nTo: c@d\n\nhi"));
        assert!(is_mail(b"Received: from x\n\tby y\nFrom: z\n"));
        assert!(is_mail(b"From someone Mon Jan 1 00:00:00 2024\nFrom: a\n"));
        assert!(!is_mail(b"From: only one line"));
        assert!(!is_mail(b"Title: a novel\nAuthor: me\n"));
        assert!(!is_mail(b"plain text"));
    }

    #[test]
    fn multipart_parts_and_uuencoded_bodies_are_members() {
        let mail = b"From: a\nTo: b\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nsee attached\nbegin 644 cat.txt\n#0V%T\n`\nend\n--XX\nContent-Type: application/octet-stream; name=x.bin\nContent-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n--XX--\n";
        let got = files(|e| members(mail, e));
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"part 2/cat.txt"), "{names:?}");
        assert!(
            got.iter().any(|(n, b)| n == "x.bin" && b == b"hello world"),
            "{got:?}"
        );
    }

    #[test]
    fn tnef_attachments_are_members() {
        let mut t = TNEF_MAGIC.to_vec();
        t.extend_from_slice(&[0x01, 0x00]);
        let mut attr = |level: u8, id: u32, value: &[u8]| {
            t.push(level);
            t.extend_from_slice(&id.to_le_bytes());
            t.extend_from_slice(&(value.len() as u32).to_le_bytes());
            t.extend_from_slice(value);
            t.extend_from_slice(&[0, 0]);
        };
        attr(2, 0x0006_9002, b"");
        attr(2, 0x0001_8010, b"note.txt\0");
        attr(2, 0x0006_800f, b"attached bytes");
        let got = files(|e| tnef(&t, e));
        assert_eq!(got, [("note.txt".to_string(), b"attached bytes".to_vec())]);
    }
}
