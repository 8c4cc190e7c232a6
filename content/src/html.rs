//! HTML: the page normalized for target-3 signatures (`html_norm`), and
//! the files it carries inline, as RFC 2397 `data:` URIs (base64 or
//! percent-encoded), each a member.

use crate::formats::{Entry, Flow, FormatError, bytes};
use crate::limits::Limits;

/// Tags that make a file HTML when one of them appears in its first KiB
/// (case-insensitive).
const TAGS: &[&[u8]] = &[
    b"<html",
    b"<!doctype html",
    b"<head",
    b"<body",
    b"<script",
    b"<iframe",
    b"<a href",
    b"<img ",
    b"<meta ",
    b"<title",
    b"<div",
    b"<table",
    b"<form",
];

/// Whether `data` looks like HTML: one of [`TAGS`] in its first 1,024
/// bytes. Costs a scan for `<` there, and a comparison at each.
pub(crate) fn is_html(data: &[u8]) -> bool {
    let head = &data[..data.len().min(1024)];
    memchr::memchr_iter(b'<', head).any(|at| {
        let rest = &head[at..];
        TAGS.iter()
            .any(|t| rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t))
    })
}

/// The page `data`'s normalized streams (unless it is larger than
/// ClamAV normalizes), then its `data:` URIs, decoded: ClamAV's order.
pub(crate) fn members(
    data: &[u8],
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let size = data.len() as u64;
    if size <= limits.max_html_normalize {
        let normalized = crate::html_norm::normalize(data);
        let mut streams = vec![normalized.page];
        if size <= limits.max_html_notags {
            streams.push(normalized.text);
        }
        for stream in streams {
            let flow = each(Entry::Normalized {
                reader: &mut stream.as_slice(),
                target: 3,
            });
            if flow == Flow::Stop {
                return Ok(());
            }
        }
    }
    let mut n = 0;
    // Where the last URI ended: a colon inside one starts none, so that
    // `data:data:data:…` stays linear.
    let mut past = 0;
    // `data:` in any case: each colon after `data`.
    for colon in memchr::memchr_iter(b':', data) {
        if colon < past || colon < 4 || !data[colon - 4..colon].eq_ignore_ascii_case(b"data") {
            continue;
        }
        // The URI ends at a quote, whitespace or the tag's end.
        let rest = &data[colon + 1..];
        let end = rest
            .iter()
            .position(|&c| {
                matches!(
                    c,
                    b'"' | b'\'' | b'>' | b'<' | b')' | b' ' | b'\n' | b'\r' | b'\t'
                )
            })
            .unwrap_or(rest.len());
        let uri = &rest[..end];
        past = colon + 1 + end;
        let Some(comma) = uri.iter().position(|&c| c == b',') else {
            continue;
        };
        let (meta, payload) = (&uri[..comma], &uri[comma + 1..]);
        if payload.is_empty() {
            continue;
        }
        let meta = String::from_utf8_lossy(meta).to_ascii_lowercase();
        let decoded = if meta.ends_with(";base64") {
            base64(payload)
        } else {
            percent(payload)
        };
        n += 1;
        if bytes(each, format!("data URI {n}"), &decoded) == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Standard base64, padding optional, other characters skipped.
pub(crate) fn base64(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `%XX` escapes decoded; everything else as it is.
fn percent(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h << 4) | l);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_uris_are_decoded() {
        let page = b"<html><a href=\"data:application/octet-stream;base64,aGVsbG8gd29ybGQ=\">x</a><img src='data:,a%20b'></html>";
        assert!(is_html(page));
        let (got, _, r) = crate::formats::collect(|each| members(page, &Limits::default(), each));
        r.expect("parses");
        assert_eq!(
            got,
            [
                ("data URI 1".to_string(), b"hello world".to_vec()),
                ("data URI 2".to_string(), b"a b".to_vec())
            ]
        );
        assert!(!is_html(b"plain words, no tags"));
        // `data:` inside a URI starts no other: one member, not thousands.
        let page = [
            b"<a href=\"".as_slice(),
            &b"data:".repeat(100_000),
            b"x,y\">",
        ]
        .concat();
        let (got, _, r) = crate::formats::collect(|each| members(&page, &Limits::default(), each));
        assert!(r.is_ok());
        assert!(got.len() <= 1, "{}", got.len());
    }
}
