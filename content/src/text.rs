//! Text files and their normalized form, as ClamAV scans text twice: the
//! bytes as they are, and a normalized stream that signatures of target 7
//! and of target 0 both match.
//!
//! Normalization: UTF-16 is read as its code units; the bytes `\t \n \v
//! \f \r` and space become one space, with runs collapsed; `A`-`Z` become
//! lower case; other bytes below 0x20, and every byte from 0x80, are
//! dropped; the rest is copied. Dropped bytes do not break a run of
//! spaces.
//!
//! A file is text, for this, when it is no other type and its first 1,024
//! bytes hold no NUL (ASCII, UTF-8, Latin-1 and the like), or when it
//! starts with a UTF-16 byte-order mark, or when every other byte of its
//! first 1,024 is NUL (UTF-16 without a mark). ClamAV's own text typing is
//! more lenient in places (see `docs/clamav-formats.md` §18).

use std::io::Read;

/// How a text file's characters are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// One byte a character.
    Bytes,
    /// UTF-16, little-endian.
    Utf16Le,
    /// UTF-16, big-endian.
    Utf16Be,
}

/// The encoding of `data` if it is text.
pub(crate) fn text_encoding(data: &[u8]) -> Option<Encoding> {
    if data.is_empty() {
        return None;
    }
    if data.starts_with(&[0xff, 0xfe]) {
        return Some(Encoding::Utf16Le);
    }
    if data.starts_with(&[0xfe, 0xff]) {
        return Some(Encoding::Utf16Be);
    }
    let head = &data[..data.len().min(1024)];
    if memchr::memchr(0, head).is_none() {
        return Some(Encoding::Bytes);
    }
    let pairs = head.len() / 2;
    if pairs >= 8 {
        let nul_at = |odd: usize| {
            head.iter()
                .skip(odd)
                .step_by(2)
                .take(pairs)
                .filter(|&&b| b == 0)
                .count()
        };
        let text_at = |even: usize| {
            head.iter()
                .skip(even)
                .step_by(2)
                .take(pairs)
                .all(|&b| b != 0 && (b >= 0x20 || b"\t\n\r".contains(&b)))
        };
        if nul_at(1) == pairs && text_at(0) {
            return Some(Encoding::Utf16Le);
        }
        if nul_at(0) == pairs && text_at(1) {
            return Some(Encoding::Utf16Be);
        }
    }
    None
}

/// The normalized text of a reader, as a reader.
pub(crate) struct Normalized<'a> {
    data: &'a [u8],
    at: usize,
    encoding: Encoding,
    /// The last byte given was a space.
    space: bool,
}

impl<'a> Normalized<'a> {
    pub(crate) fn new(data: &'a [u8], encoding: Encoding) -> Self {
        let at = match encoding {
            Encoding::Bytes => 0,
            // After a byte-order mark.
            Encoding::Utf16Le if data.starts_with(&[0xff, 0xfe]) => 2,
            Encoding::Utf16Be if data.starts_with(&[0xfe, 0xff]) => 2,
            _ => 0,
        };
        Normalized {
            data,
            at,
            encoding,
            space: false,
        }
    }

    /// The next character, as a byte (`None` past 0xff), or the end.
    fn next_char(&mut self) -> Option<Option<u8>> {
        match self.encoding {
            Encoding::Bytes => {
                let b = *self.data.get(self.at)?;
                self.at += 1;
                Some(Some(b))
            }
            Encoding::Utf16Le | Encoding::Utf16Be => {
                let pair = self.data.get(self.at..self.at + 2)?;
                self.at += 2;
                let unit = if self.encoding == Encoding::Utf16Le {
                    u16::from_le_bytes([pair[0], pair[1]])
                } else {
                    u16::from_be_bytes([pair[0], pair[1]])
                };
                Some(u8::try_from(unit).ok())
            }
        }
    }
}

impl Read for Normalized<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            // A run of printable ASCII, the most of any text: folded and
            // copied whole.
            if self.encoding == Encoding::Bytes {
                let rest = &self.data[self.at..];
                let room = (buf.len() - n).min(rest.len());
                let run = rest[..room]
                    .iter()
                    .position(|b| !matches!(b, 0x21..=0x7e))
                    .unwrap_or(room);
                if run > 0 {
                    for (o, b) in buf[n..n + run].iter_mut().zip(&rest[..run]) {
                        *o = b.to_ascii_lowercase();
                    }
                    n += run;
                    self.at += run;
                    self.space = false;
                    continue;
                }
            }
            let Some(c) = self.next_char() else { break };
            let Some(c) = c else { continue };
            let out = match c {
                b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => {
                    if self.space {
                        continue;
                    }
                    self.space = true;
                    b' '
                }
                b'A'..=b'Z' => c.to_ascii_lowercase(),
                0x00..=0x1f | 0x80..=0xff => continue,
                _ => c,
            };
            if out != b' ' {
                self.space = false;
            }
            buf[n] = out;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Normalized::new(data, text_encoding(data).expect("text"))
            .read_to_end(&mut out)
            .expect("read");
        out
    }

    /// The rules one byte at a time, as the documentation states them.
    fn reference(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut space = false;
        for &c in data {
            match c {
                b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => {
                    if !space {
                        out.push(b' ');
                        space = true;
                    }
                }
                0x00..=0x1f | 0x80..=0xff => {}
                _ => {
                    out.push(c.to_ascii_lowercase());
                    space = false;
                }
            }
        }
        out
    }

    #[test]
    fn runs_read_whole_give_what_bytes_one_by_one_give() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut data = Vec::new();
        for i in 0..20_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            data.push(if i % 3 == 0 {
                (seed >> 24) as u8
            } else {
                b"Ab c\tD\n"[(seed % 7) as usize]
            });
        }
        for size in [1, 2, 3, 7, 64, 4096] {
            let mut r = Normalized::new(&data, Encoding::Bytes);
            let mut out = Vec::new();
            let mut buf = vec![0; size];
            loop {
                let n = r.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, reference(&data), "reads of {size}");
        }
    }

    #[test]
    fn normalized_as_clamav_describes_it() {
        assert_eq!(norm(b"Hello   WORLD\tFoo\n"), b"hello world foo ");
        assert_eq!(norm(b"a \x01 \x02b\xffc"), b"a bc");
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain(
                "Hi  There\u{263a}!"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        assert_eq!(norm(&utf16), b"hi there!");
        let be: Vec<u8> = "Plain Words"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(text_encoding(&be), Some(Encoding::Utf16Be));
        assert_eq!(text_encoding(b"bin\0ary"), None);
        assert_eq!(text_encoding(b""), None);
    }
}
