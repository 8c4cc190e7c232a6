//! ARJ archives: the headers, and the two decoders ARJ has: methods 1-3
//! (LZ77 with Huffman codes sent per block, as LHA's) and method 4 (LZ77
//! with fixed variable-length codes). No crate decodes ARJ, so it is here,
//! written from the format's description.
//!
//! Every member is decoded as a stream through a 64 KiB window, never held
//! whole, and checked against the CRC-32 its header gives: a member that
//! decodes to other bytes is corrupt, not scanned as if it were right.
//! Garbled (password) members are reported encrypted; multi-volume parts
//! are reported unsupported.

use std::io::Read;

use crate::formats::{Entry, Flow, FormatError};

/// A header's mark.
const MAGIC: [u8; 2] = [0x60, 0xea];
/// The largest basic header ARJ writes.
const MAX_HEADER: usize = 2600;

/// Header flags.
const GARBLED: u8 = 0x01;
const VOLUME: u8 = 0x04;
const EXTFILE: u8 = 0x08;

fn corrupt(what: impl std::fmt::Display) -> FormatError {
    FormatError::Corrupt(what.to_string())
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One header: its basic part, and where what follows it begins.
struct Header<'a> {
    basic: &'a [u8],
    next: usize,
}

/// The header at `at`; `None` at the end-of-archive header.
fn header(data: &[u8], at: usize) -> Result<Option<Header<'_>>, FormatError> {
    let h = data
        .get(at..at + 4)
        .ok_or_else(|| corrupt("truncated header"))?;
    if h[..2] != MAGIC {
        return Err(corrupt("no header mark"));
    }
    let size = le16(h, 2);
    if size == 0 {
        return Ok(None);
    }
    if size > MAX_HEADER {
        return Err(corrupt(format!("a header of {size} bytes")));
    }
    let start = at + 4;
    let basic = data
        .get(start..start + size)
        .ok_or_else(|| corrupt("truncated header"))?;
    let crc = data
        .get(start + size..start + size + 4)
        .ok_or_else(|| corrupt("truncated header"))?;
    let mut sum = flate2::Crc::new();
    sum.update(basic);
    if sum.sum() != le32(crc, 0) {
        return Err(corrupt("header CRC does not match"));
    }
    // Extended headers: skipped (size, data, CRC), up to a size of 0.
    let mut next = start + size + 4;
    loop {
        let ext = data
            .get(next..next + 2)
            .ok_or_else(|| corrupt("truncated extended header"))?;
        let n = le16(ext, 0);
        next += 2;
        if n == 0 {
            break;
        }
        next += n + 4;
    }
    if basic.len() < 30 || usize::from(basic[0]) > basic.len() || basic[0] < 30 {
        return Err(corrupt("basic header too short"));
    }
    Ok(Some(Header { basic, next }))
}

/// Hands each file of the ARJ archive `data` to `each`.
pub(crate) fn members(
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    // The main header (the archive's name and comment) comes first.
    let Some(main) = header(data, 0)? else {
        return Ok(());
    };
    let mut at = main.next;
    while let Some(h) = header(data, at)? {
        let b = h.basic;
        let (flags, method, kind) = (b[4], b[5], b[6]);
        let packed = le32(b, 12) as usize;
        let size = u64::from(le32(b, 16));
        let crc = le32(b, 20);
        let name_at = usize::from(b[0]);
        let name_end = b[name_at..]
            .iter()
            .position(|&c| c == 0)
            .map_or(b.len(), |p| name_at + p);
        let name = String::from_utf8_lossy(&b[name_at..name_end]).into_owned();
        let body = data
            .get(h.next..h.next.saturating_add(packed))
            .ok_or_else(|| corrupt(format!("{name}: truncated data")))?;
        at = h.next + packed;
        // Binary and text files; not directories, labels or comments.
        if kind > 1 {
            continue;
        }
        let flow = if flags & GARBLED != 0 {
            each(Entry::Encrypted { name })
        } else if flags & (VOLUME | EXTFILE) != 0 {
            each(Entry::Unsupported {
                name,
                why: "a part of a multi-volume archive".into(),
            })
        } else {
            match method {
                0 => each(Entry::File {
                    name,
                    reader: &mut Checked::new(body, size, crc),
                    compressed: Some(packed as u64),
                }),
                1..=4 => each(Entry::File {
                    name,
                    reader: &mut Checked::new(Decoder::new(body, method), size, crc),
                    compressed: Some(packed as u64),
                }),
                m => each(Entry::Unsupported {
                    name,
                    why: format!("compression method {m} is not ARJ's"),
                }),
            }
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// A member's bytes: exactly its original size, then checked against its
/// CRC-32.
struct Checked<R> {
    inner: R,
    left: u64,
    crc: flate2::Crc,
    want: u32,
}

impl<R: Read> Checked<R> {
    fn new(inner: R, size: u64, want: u32) -> Self {
        Checked {
            inner,
            left: size,
            crc: flate2::Crc::new(),
            want,
        }
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            if self.crc.sum() != self.want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "arj: the member's CRC does not match",
                ));
            }
            return Ok(0);
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "arj: the member ends early",
            ));
        }
        self.crc.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Bits read most significant first; past the end, zeros (as ARJ's own
/// decoder reads), which the CRC then refuses.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    buf: u64,
    count: u32,
}

impl Bits<'_> {
    fn get(&mut self, n: u32) -> u32 {
        debug_assert!(n <= 32);
        if n == 0 {
            return 0;
        }
        while self.count < n {
            let byte = self.data.get(self.at).copied().unwrap_or(0);
            self.at += 1;
            self.buf = (self.buf << 8) | u64::from(byte);
            self.count += 8;
        }
        self.count -= n;
        ((self.buf >> self.count) & ((1u64 << n) - 1)) as u32
    }

    fn bit(&mut self) -> u32 {
        self.get(1)
    }
}

/// A canonical Huffman code (shorter codes first, then by symbol), or one
/// symbol sent with no bits.
enum Huff {
    One(u16),
    Code {
        counts: [u16; 17],
        symbols: Vec<u16>,
    },
}

impl Huff {
    fn new(lengths: &[u8]) -> Result<Huff, &'static str> {
        let mut counts = [0u16; 17];
        for &l in lengths {
            if l > 16 {
                return Err("a code longer than 16 bits");
            }
            counts[usize::from(l)] += 1;
        }
        counts[0] = 0;
        let mut left: i64 = 1;
        for &c in &counts[1..] {
            left = (left << 1) - i64::from(c);
            if left < 0 {
                return Err("an oversubscribed code");
            }
        }
        let mut offsets = [0u16; 17];
        for l in 1..16 {
            offsets[l + 1] = offsets[l] + counts[l];
        }
        let mut symbols = vec![0u16; lengths.iter().filter(|&&l| l > 0).count()];
        for (s, &l) in lengths.iter().enumerate() {
            if l > 0 {
                symbols[usize::from(offsets[usize::from(l)])] = s as u16;
                offsets[usize::from(l)] += 1;
            }
        }
        Ok(Huff::Code { counts, symbols })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, &'static str> {
        let (counts, symbols) = match self {
            Huff::One(s) => return Ok(*s),
            Huff::Code { counts, symbols } => (counts, symbols),
        };
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for &count in &counts[1..] {
            code |= bits.bit() as i32;
            let count = i32::from(count);
            if code - first < count {
                return Ok(symbols[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("a code not in the table")
    }
}

/// Literals and lengths (256 literals, match lengths 3 to 256).
const NC: usize = 510;
/// Distance codes.
const NP: usize = 17;
/// Code-length codes.
const NT: usize = 19;
/// The window: distances reach 65,535 bytes back.
const WINDOW: usize = 1 << 16;

/// Methods 1-4, as a stream.
struct Decoder<'a> {
    bits: Bits<'a>,
    method: u8,
    window: Box<[u8]>,
    at: usize,
    /// A match still being copied: (bytes left, distance).
    copy: (usize, usize),
    /// Symbols left in the current block (methods 1-3).
    block: u32,
    c: Huff,
    p: Huff,
}

fn bad(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("arj: {why}"))
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8], method: u8) -> Self {
        Decoder {
            bits: Bits {
                data,
                at: 0,
                buf: 0,
                count: 0,
            },
            method,
            window: vec![0u8; WINDOW].into_boxed_slice(),
            at: 0,
            copy: (0, 0),
            block: 0,
            c: Huff::One(0),
            p: Huff::One(0),
        }
    }

    /// Code lengths sent with `nbits`-bit counts; after the `special`th, a
    /// 2-bit count of zeros.
    fn lengths(
        &mut self,
        n_max: usize,
        nbits: u32,
        special: Option<usize>,
    ) -> Result<Huff, &'static str> {
        let n = self.bits.get(nbits) as usize;
        if n == 0 {
            return Ok(Huff::One(self.bits.get(nbits) as u16));
        }
        if n > n_max {
            return Err("too many code lengths");
        }
        let mut len = vec![0u8; n_max];
        let mut i = 0;
        while i < n {
            let mut c = self.bits.get(3);
            if c == 7 {
                // Longer lengths: a run of ones, ended by a zero.
                while self.bits.bit() == 1 {
                    c += 1;
                    if c > 16 {
                        return Err("a code longer than 16 bits");
                    }
                }
            }
            len[i] = c as u8;
            i += 1;
            if Some(i) == special {
                let zeros = self.bits.get(2) as usize;
                i = (i + zeros).min(n_max);
            }
        }
        Huff::new(&len)
    }

    /// The literal and length code, sent with the code-length code `t`.
    fn c_lengths(&mut self, t: &Huff) -> Result<Huff, &'static str> {
        let n = self.bits.get(9) as usize;
        if n == 0 {
            return Ok(Huff::One(self.bits.get(9) as u16));
        }
        if n > NC {
            return Err("too many code lengths");
        }
        let mut len = vec![0u8; NC];
        let mut i = 0;
        while i < n {
            match t.decode(&mut self.bits)? {
                0 => i += 1,
                1 => i += self.bits.get(4) as usize + 3,
                2 => i += self.bits.get(9) as usize + 20,
                c => {
                    len[i] = (c - 2) as u8;
                    i += 1;
                }
            }
            if i > NC {
                return Err("code lengths past the alphabet");
            }
        }
        Huff::new(&len)
    }

    /// The next literal (0-255) or match length code (256 and up) of
    /// methods 1-3.
    fn symbol(&mut self) -> Result<u16, &'static str> {
        if self.block == 0 {
            self.block = self.bits.get(16);
            let t = self.lengths(NT, 5, Some(3))?;
            self.c = self.c_lengths(&t)?;
            self.p = self.lengths(NP, 5, None)?;
        }
        self.block = self.block.wrapping_sub(1);
        let c = self.c.decode(&mut self.bits)?;
        if usize::from(c) >= NC {
            return Err("a symbol past the alphabet");
        }
        Ok(c)
    }

    /// A match's distance code, then its extra bits (methods 1-3).
    fn distance(&mut self) -> Result<usize, &'static str> {
        let j = u32::from(self.p.decode(&mut self.bits)?);
        Ok(if j == 0 {
            0
        } else {
            (1usize << (j - 1)) + self.bits.get(j - 1) as usize
        })
    }

    /// Method 4: a unary prefix of up to `stop - start` ones picks a width.
    fn fast(&mut self, start: u32, stop: u32) -> usize {
        let (mut plus, mut pwr, mut width) = (0usize, 1usize << start, start);
        while width < stop {
            if self.bits.bit() == 0 {
                break;
            }
            plus += pwr;
            pwr <<= 1;
            width += 1;
        }
        plus + self.bits.get(width) as usize
    }

    /// The next literal, or starts the next match.
    fn step(&mut self) -> Result<Option<u8>, &'static str> {
        let (len, dist) = if self.method == 4 {
            let c = self.fast(0, 7);
            if c == 0 {
                return Ok(Some(self.bits.get(8) as u8));
            }
            (c + 2, self.fast(9, 13))
        } else {
            let c = self.symbol()?;
            if c < 256 {
                return Ok(Some(c as u8));
            }
            (usize::from(c) - 253, self.distance()?)
        };
        self.copy = (len, dist + 1);
        Ok(None)
    }
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            let byte = if self.copy.0 > 0 {
                self.copy.0 -= 1;
                self.window[(self.at.wrapping_sub(self.copy.1)) & (WINDOW - 1)]
            } else {
                match self.step().map_err(bad)? {
                    Some(b) => b,
                    None => continue,
                }
            };
            self.window[self.at & (WINDOW - 1)] = byte;
            self.at = self.at.wrapping_add(1);
            buf[n] = byte;
            n += 1;
        }
        Ok(n)
    }
}
