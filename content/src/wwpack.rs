//! PE files packed by WWPack32 (1.x), unpacked as ClamAV unpacks them.
//!
//! WWPack appends a section holding its decompressor and makes it the
//! entry point; the program's sections keep their places in memory and
//! their compressed bytes. Recognised, as by ClamAV, by the entry point
//! being the last section's first byte and two runs of the decompressor's
//! code there. The program is rebuilt as its memory image: the headers
//! and every section but the last copied to their addresses, then each
//! block that WWPack lists (17-byte records at 0x2a1 in its section)
//! decompressed in place, and the header patched (the section count, the
//! entry point from the jump WWPack keeps, the image size, each section's
//! file offset made its address). The image is a member, `WWPack
//! unpacked`; what it holds (a PE, a zip) is found in it as in any PE.
//!
//! The decoder is WWPack's: 32-bit little-endian bit words read from
//! their top bit, with the literal bytes between them in the same stream;
//! a literal, a two-byte match at a distance of up to 0x360, or a match of
//! 3 to 16,383 bytes at a distance of up to 0xDFE0, until a two-byte match
//! with the end mark. Every copy is checked against the image: a stream
//! that points outside it fails, and the file is reported unreadable.
//!
//! Cost: one image of the program's size in memory (no larger than the
//! member cap), and no more than twice its size written: records that send
//! blocks over the image again and again (ClamAV follows them for minutes)
//! make the file unreadable.

use crate::exe::{PeLayout, PeSection, pe_layout};
use crate::formats::{Entry, Flow, FormatError, le32, unpacked};
use crate::limits::Limits;

/// The decompressor's first bytes at the entry point.
const START: &[u8] = b"\x53\x55\x8b\xe8\x33\xdb\xeb";

/// The decompressor's bytes at 0x68 past the entry point.
const AT_68: &[u8] =
    b"\xe8\x00\x00\x00\x00\x58\x2d\x6d\x00\x00\x00\x50\x60\x33\xc9\x50\x58\x50\x50";

/// Where WWPack's block records start in its section.
const RECORDS: usize = 0x2a1;

/// Whether `data` is a PE packed by WWPack, as ClamAV recognises one; its
/// layout if so.
pub(crate) fn packed(data: &[u8]) -> Option<PeLayout> {
    let l = pe_layout(data, true)?;
    let last = l.sections.last()?;
    let ep = usize::try_from(l.entry).ok()?;
    let code = data.get(ep..)?;
    (!l.plus
        && l.sections.len() > 1
        && l.entry_rva == last.rva
        && code.len() >= 200
        && code.starts_with(START)
        && code.get(0x68..0x68 + AT_68.len()) == Some(AT_68))
    .then_some(l)
}

/// The bit reader: 32-bit little-endian words read from their top bit,
/// with literal bytes between them in the same stream.
struct Bits<'a> {
    src: &'a [u8],
    at: usize,
    word: u32,
    left: u32,
    error: bool,
}

impl Bits<'_> {
    /// Loads the next word; past the end, the error is set (the count is
    /// 32 either way, as WWPack's decoder has it).
    fn reseed(&mut self) {
        match le32(self.src, self.at) {
            Some(w) => {
                self.word = w;
                self.at += 4;
            }
            None => self.error = true,
        }
        self.left = 32;
    }

    fn bit(&mut self) -> u32 {
        let b = self.word >> 31;
        self.word <<= 1;
        self.left -= 1;
        if self.left == 0 {
            self.reseed();
        }
        b
    }

    /// `n` bits, 2 to 15.
    fn bits(&mut self, n: u32) -> u32 {
        let mut b = self.word >> (32 - n);
        if self.left >= n {
            self.left -= n;
            self.word = self.word.checked_shl(n).unwrap_or(0);
            if self.left == 0 {
                self.reseed();
            }
        } else if let Some(w) = le32(self.src, self.at) {
            self.at += 4;
            self.left += 32 - n;
            b |= w >> self.left;
            self.word = w.checked_shl(32 - self.left).unwrap_or(0);
        } else {
            self.error = true;
        }
        b
    }

    /// The next literal byte.
    fn byte(&mut self) -> Option<u8> {
        let b = *self.src.get(self.at)?;
        self.at += 1;
        Some(b)
    }
}

/// Copies `len` bytes from `dist` back to `at` in `image`, forward (the
/// two may overlap), out of the `budget` of bytes the unpacker may still
/// write; false if either lies outside the image or the budget is spent.
fn copy_back(image: &mut [u8], at: usize, dist: usize, len: usize, budget: &mut usize) -> bool {
    let Some(from) = at.checked_sub(dist) else {
        return false;
    };
    if len == 0 || at + len > image.len() || len > *budget {
        return false;
    }
    *budget -= len;
    for i in 0..len {
        image[at + i] = image[from + i];
    }
    true
}

/// Decompresses `src` into `image` from `at`, writing no more than
/// `budget` bytes: `Some(())` at the end mark, `None` where the stream goes
/// wrong or the budget is spent.
fn decode(src: &[u8], image: &mut [u8], mut at: usize, budget: &mut usize) -> Option<()> {
    let mut r = Bits {
        src,
        at: 0,
        word: 0,
        left: 0,
        error: false,
    };
    r.reseed();
    while !r.error {
        if r.bit() == 0 {
            let b = r.byte()?;
            *budget = budget.checked_sub(1)?;
            *image.get_mut(at)? = b;
            at += 1;
            continue;
        }
        let kind = r.bits(2);
        if kind == 3 {
            let k = r.bits(2);
            let n = if k >= 2 { k + 6 } else { k + 5 };
            let base = [0x1, 0x21, 0x61, 0x161][k as usize];
            let v = r.bits(n);
            if r.error || v == 0x1ff {
                break;
            }
            if !copy_back(image, at, (base + v) as usize, 2, budget) {
                return None;
            }
            at += 2;
            continue;
        }
        let m = r.bits(3);
        let dist = match m {
            0..=5 => {
                let n = match m {
                    0..=2 => m + 5,
                    3 => 8 + r.bit(),
                    4 => 10 + r.bit(),
                    _ => 12,
                };
                (r.bits(n) + (1 << n)).wrapping_sub(31)
            }
            6 => r.bits(14) + 0x1fe1,
            _ => r.bits(15) + 0x5fe1,
        };
        let len = if kind != 0 {
            kind + 2
        } else if r.bit() == 0 {
            5 + r.bit()
        } else {
            match r.bits(3) {
                0 => match r.bits(4) {
                    0 => {
                        // One to three bits say how many follow.
                        let mut len = None;
                        for (n, bias) in [(5, 0x1d), (6, 0x3d), (7, 0x7d)] {
                            if r.bit() == 1 {
                                len = Some(r.bits(n) + bias);
                                break;
                            }
                        }
                        len.unwrap_or_else(|| r.bits(14))
                    }
                    x => x + 13,
                },
                x => x + 6,
            }
        };
        if !copy_back(image, at, dist as usize, len as usize, budget) {
            return None;
        }
        at += len as usize;
    }
    (!r.error).then_some(())
}

/// The program packed in `data` (whose layout is `l`), rebuilt; `Err`
/// with why when it cannot be.
fn unpack(data: &[u8], l: &PeLayout, limits: &Limits) -> Result<Vec<u8>, String> {
    let (last, program) = l.sections.split_last().ok_or("no sections")?;
    let head = l.sections.iter().map(|s| s.raw).min().unwrap_or(0) as usize;
    let size = program
        .iter()
        .map(|s| u64::from(s.rva) + u64::from(s.vsz))
        .max()
        .unwrap_or(0);
    if head == 0 || size == 0 || head as u64 > size {
        return Err("its sections do not describe a program".into());
    }
    if size > limits.max_file_size {
        return Err(format!(
            "the unpacked program ({size} bytes) is larger than the file size limit"
        ));
    }
    let mut image = vec![0u8; size as usize];
    image[..head].copy_from_slice(data.get(..head).ok_or("the headers are cut short")?);
    for s in program.iter().filter(|s| s.rsz != 0) {
        let (at, len) = (s.rva as usize, s.rsz as usize);
        let dst = image
            .get_mut(at..at + len)
            .ok_or("a section lies outside the program")?;
        let raw = s.raw as usize;
        dst.copy_from_slice(data.get(raw..raw + len).ok_or("a section is cut short")?);
    }
    let raw = last.raw as usize;
    let packer = data
        .get(raw..raw + last.rsz as usize)
        .filter(|p| !p.is_empty())
        .ok_or("WWPack's section is empty")?;
    // WWPack writes each block once; ClamAV follows records that send
    // blocks over the whole image again and again (minutes for a small
    // file). giva writes no more than twice the image, blocks included.
    let mut budget = image.len().saturating_mul(2);
    let mut rec = RECORDS;
    while let Some(r) = packer.get(rec..rec + 17) {
        let src = last.rva.wrapping_sub(le32(r, 0).unwrap_or(0));
        let len = le32(r, 8).unwrap_or(0).wrapping_mul(4) as usize;
        let end = le32(r, 12).unwrap_or(0);
        let at = src
            .wrapping_add(end)
            .wrapping_add(4)
            .wrapping_sub(len as u32) as usize;
        if len == 0 || at.checked_add(len).is_none_or(|e| e > image.len()) {
            break;
        }
        // The block decompresses in place over its compressed bytes.
        budget = budget
            .checked_sub(len)
            .ok_or("its blocks rewrite the program over and over")?;
        let stream = image[at..at + len].to_vec();
        image[at..at + len].fill(0xff);
        decode(&stream, &mut image, at, &mut budget).ok_or("a block does not decode")?;
        if r[16] == 0 {
            break;
        }
        rec += 17;
    }
    rebuild_header(&mut image, l.pe, program, last, packer)
        .ok_or("the header cannot be rebuilt")?;
    Ok(image)
}

/// The header of the unpacked program: its sections (the last, WWPack's,
/// gone), its entry point (from WWPack's jump) and image size, each
/// section at its address.
fn rebuild_header(
    image: &mut [u8],
    pe: usize,
    program: &[PeSection],
    last: &PeSection,
    packer: &[u8],
) -> Option<()> {
    if pe + 0x54 > image.len() {
        return None;
    }
    let jump = le32(packer, 0x295)?;
    let put = |image: &mut [u8], at: usize, v: u32| {
        image[at..at + 4].copy_from_slice(&v.to_le_bytes());
    };
    image[pe + 6..pe + 8].copy_from_slice(&(program.len() as u16).to_le_bytes());
    put(
        image,
        pe + 0x28,
        jump.wrapping_add(last.rva).wrapping_add(0x299),
    );
    let image_size = le32(image, pe + 0x50)?.wrapping_sub(last.vsz);
    put(image, pe + 0x50, image_size);
    let mut at = pe + 0x18 + usize::from(u16::try_from(le32(image, pe + 0x14)? & 0xffff).ok()?);
    for s in program {
        image.get(at..at + 40)?;
        put(image, at + 8, s.vsz);
        put(image, at + 12, s.rva);
        put(image, at + 16, s.vsz);
        put(image, at + 20, s.rva);
        at += 40;
    }
    image.get_mut(at..at + 40)?.fill(0);
    Some(())
}

/// The program WWPack packed in `data`, rebuilt, as a member.
pub(crate) fn members(
    data: &[u8],
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let l = packed(data).ok_or_else(|| FormatError::Corrupt("WWPack: not packed".into()))?;
    let name = "WWPack unpacked".to_string();
    let program = unpack(data, &l, limits);
    unpacked(
        each,
        name,
        program.as_deref().map_err(Clone::clone),
        data.len(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ClamAV's test file: the program comes back, and in it the zip that
    /// holds `clam.exe`, where ClamAV's own unpacked file has it.
    #[test]
    fn the_test_file_unpacks_as_clamav_unpacks_it() {
        let Ok(data) = std::fs::read("/usr/share/clamav-testfiles/clam-wwpack.exe") else {
            eprintln!("SKIPPED: clamav-testfiles not installed");
            return;
        };
        let l = packed(&data).expect("WWPack");
        let image = unpack(&data, &l, &Limits::default()).expect("unpacks");
        assert_eq!(image.len(), 0x5000);
        assert!(image[0x4000..0x4e6c].iter().all(|&b| b == 0));
        assert_eq!(&image[0x4e6c..0x4e70], b"PK\x03\x04");
        let info = crate::exe::exe_info(&image, 1).expect("a PE again");
        assert_eq!(info.sections.len(), 4);
        assert_eq!(le32(&image, l.pe + 0x28), Some(0x1020));
    }

    #[test]
    fn streams_that_point_outside_the_image_fail() {
        let mut image = vec![0u8; 64];
        // A bit word whose first bit asks for a match, with nothing before.
        assert_eq!(decode(&[0, 0, 0, 0xff], &mut image, 0, &mut 1000), None);
        // Too short for even one word.
        assert_eq!(decode(&[1, 2], &mut image, 0, &mut 1000), None);
        // A literal past the end of the image.
        assert_eq!(decode(&[0, 0, 0, 0, 7], &mut image, 64, &mut 1000), None);
        // Literals past the budget.
        assert_eq!(decode(&[0, 0, 0, 0, 7, 7, 7], &mut image, 0, &mut 2), None);
    }

    /// Random streams end, one way or the other, without a panic.
    #[test]
    fn random_streams_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut stream = vec![0u8; 64];
            for b in &mut stream {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let mut image = vec![0u8; 512];
            let _ = decode(&stream, &mut image, 64, &mut 1024);
        }
    }
}
