//! PE files packed by MEW 11 (its aPLib-style method; the LZMA one is
//! reported `unsupported`), unpacked as ClamAV unpacks them.
//!
//! MEW keeps an empty section for the program (memory only) followed by a
//! section holding the packed chunks and its decompressor; the entry point
//! jumps to code at file offset 0x154 or 0x158 whose `mov esi` gives where
//! the chunks start. Each chunk decompresses to the address its header
//! gives, the next chunk's address follows it, and an address of 0 ends
//! them. The program is rebuilt as a PE laid out as ClamAV lays out the
//! programs it rebuilds (each chunk a section of whole 4 KiB pages; the
//! same offsets, the header's other bytes giva's), a member `MEW
//! unpacked`; what it holds (a zip, a PE) is found in it as in any PE.
//!
//! The decoder is the aPLib-style one ClamAV shares between MEW and FSG:
//! tag bits taken from the top of tag bytes that sit between the data
//! bytes, literals, matches with a 4-bit, 7-bit or gamma-coded distance
//! (and a repeat of the last distance), a one-byte match of distance 0
//! ending the stream. Every copy is checked against the output window;
//! the source and the output share one buffer, as in MEW.
//!
//! Cost: one buffer of the two sections' sizes in memory (no larger than
//! the member cap), and no more than twice the program written: chunks
//! that rewrite it again and again make the file unreadable.

use crate::exe::{PeLayout, pe_layout};
use crate::formats::{Entry, Flow, FormatError, le32, unpacked};
use crate::limits::Limits;

/// Where MEW's code is: the two sections, the start of its chunks in the
/// second, and the program's image base.
#[derive(Debug)]
pub(crate) struct Packed {
    /// The index of the empty section (the second follows it).
    empty: usize,
    /// The chunks' offset in the second section.
    offset: u32,
    base: u32,
    lzma: bool,
}

/// Whether `data` is a PE packed by MEW, as ClamAV recognises one.
pub(crate) fn packed(data: &[u8]) -> Option<(PeLayout, Packed)> {
    let l = pe_layout(data, true)?;
    if l.plus {
        return None;
    }
    let s = &l.sections;
    let empty = (0..s.len().saturating_sub(1))
        .find(|&i| s[i].rsz == 0 && s[i].vsz != 0 && s[i + 1].rsz != 0 && s[i + 1].vsz != 0)?;
    let code = data.get(usize::try_from(l.entry).ok()?..)?;
    if code.len() < 16 || code[0] != 0xe9 {
        return None;
    }
    // The jump's target, read as a file offset (as ClamAV does).
    let target = l.entry_rva.wrapping_add(le32(code, 1)?).wrapping_add(5);
    if target != 0x154 && target != 0x158 {
        return None;
    }
    let stub = data.get(target as usize..target as usize + 0xb0)?;
    let base = le32(data, l.pe + 0x18 + 0x1c)?;
    let next = &s[empty + 1];
    let esi = le32(stub, 1)?.wrapping_sub(base);
    // ClamAV bounds it by the section's file offset, not its size.
    if esi <= next.rva || esi >= next.rva.wrapping_add(next.raw).wrapping_sub(4) {
        return None;
    }
    let packed = Packed {
        empty,
        offset: esi - next.rva,
        base,
        lzma: stub[0x7b] == 0xe8,
    };
    Some((l, packed))
}

/// The tag-bit reader and source of the aPLib-style decoder: the source
/// window is `buf[s0..s0 + len]`.
struct Source {
    at: usize,
    start: usize,
    end: usize,
    tag: u8,
}

impl Source {
    fn bit(&mut self, buf: &[u8]) -> Option<u32> {
        let mut old = self.tag;
        self.tag = self.tag.wrapping_mul(2);
        if old & 0x7f == 0 {
            // A new tag byte; the window's last byte never is one.
            if self.at < self.start || self.at + 1 >= self.end {
                return None;
            }
            old = buf[self.at];
            self.tag = old.wrapping_mul(2).wrapping_add(1);
            self.at += 1;
        }
        Some(u32::from(old >> 7))
    }

    fn gamma(&mut self, buf: &[u8]) -> Option<u32> {
        let mut v: u32 = 1;
        loop {
            v = v.wrapping_mul(2).wrapping_add(self.bit(buf)?);
            if self.bit(buf)? == 0 {
                return Some(v);
            }
        }
    }

    fn byte(&mut self, buf: &[u8]) -> Option<u8> {
        if self.at >= self.end {
            return None;
        }
        self.at += 1;
        Some(buf[self.at - 1])
    }
}

/// Decompresses `buf[src..src + src_len]` into `buf[dst..dst + dst_len]`,
/// writing no more than `budget` bytes: where the source and the output
/// end, or `None` where the stream goes wrong or the budget is spent.
fn decode(
    buf: &mut [u8],
    (src, src_len): (usize, usize),
    (dst, dst_len): (usize, usize),
    budget: &mut usize,
) -> Option<(usize, usize)> {
    let mut s = Source {
        at: src,
        start: src,
        end: src.checked_add(src_len)?,
        tag: 0x80,
    };
    let end = dst.checked_add(dst_len)?;
    if dst_len == 0 || s.end > buf.len() || end > buf.len() || src_len == 0 {
        return None;
    }
    buf[dst] = buf[src];
    s.at += 1;
    let mut d = dst + 1;
    let (mut last, mut after_literal) = (0usize, 1u32);
    loop {
        *budget = budget.checked_sub(1)?;
        if s.bit(buf)? == 0 {
            if d >= end {
                return None;
            }
            buf[d] = s.byte(buf)?;
            d += 1;
            after_literal = 1;
            continue;
        }
        let (dist, len) = if s.bit(buf)? == 1 {
            if s.bit(buf)? == 1 {
                // Four bits of distance, one byte; distance 0 is a zero.
                after_literal = 1;
                let mut v = 0;
                for _ in 0..4 {
                    v = v * 2 + s.bit(buf)?;
                }
                if v == 0 {
                    if d >= end {
                        return None;
                    }
                    buf[d] = 0;
                    d += 1;
                    continue;
                }
                (v as usize, 1)
            } else {
                // Seven bits of distance and one of length; 0 ends it.
                let b = s.byte(buf)?;
                let dist = usize::from(b >> 1);
                if dist == 0 {
                    return Some((s.at, d));
                }
                last = dist;
                after_literal = 0;
                (dist, usize::from(b & 1) + 2)
            }
        } else {
            let g = s.gamma(buf)?.wrapping_sub(1).wrapping_sub(after_literal);
            after_literal = 0;
            if g == 0 {
                (last, s.gamma(buf)? as usize)
            } else {
                let dist = (u32::from(s.byte(buf)?)).wrapping_add(g.wrapping_sub(1) << 8) as usize;
                let mut len = s.gamma(buf)? as usize;
                len += usize::from(dist >= 0x7d00) + usize::from(dist >= 0x500);
                if dist <= 0x7f {
                    len += 2;
                }
                last = dist;
                (dist, len)
            }
        };
        // Both the match and its copy lie in the output window.
        let from = d.checked_sub(dist)?;
        if len == 0 || from < dst || d.checked_add(len)? > end {
            return None;
        }
        *budget = budget.checked_sub(len)?;
        for i in 0..len {
            buf[d + i] = buf[from + i];
        }
        d += len;
    }
}

/// One unpacked section: its address (from the image base) and bytes.
struct Section {
    rva: u32,
    data: Vec<u8>,
}

/// A PE of `sections` laid out as ClamAV lays out the programs it
/// rebuilds, so that offsets in it are ClamAV's: `PE\0\0` at 0xd0, the
/// section table at 0x1c8, the sections' bytes from the first 512-byte
/// block after it, one after the other in whole blocks; an empty first
/// section in memory when the program starts past the headers' page. The
/// header's other bytes are giva's. `None` past 96 sections.
fn rebuild(sections: &[Section], base: u32, entry: u32) -> Option<Vec<u8>> {
    const TABLE: usize = 0x1c8;
    let first = sections.first()?.rva;
    let count = sections.len();
    let mut raw = (TABLE + 40 * count).next_multiple_of(0x200);
    let ghost = first as usize > raw.next_multiple_of(0x1000);
    if ghost {
        raw = (TABLE + 40 * (count + 1)).next_multiple_of(0x200);
    }
    if count + usize::from(ghost) > 96 {
        return None;
    }
    let total = raw
        + sections
            .iter()
            .map(|s| s.data.len().next_multiple_of(0x200))
            .sum::<usize>();
    let mut out = vec![0u8; total];
    let put16 = |o: &mut [u8], at: usize, v: u16| o[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |o: &mut [u8], at: usize, v: u32| o[at..at + 4].copy_from_slice(&v.to_le_bytes());
    out[..2].copy_from_slice(b"MZ");
    put32(&mut out, 0x3c, 0xd0);
    out[0xd0..0xd4].copy_from_slice(b"PE\0\0");
    put16(&mut out, 0xd4, 0x14c);
    put16(&mut out, 0xd6, (count + usize::from(ghost)) as u16);
    put16(&mut out, 0xe4, 0xe0);
    put16(&mut out, 0xe6, 0x010f);
    let opt = 0xe8;
    put16(&mut out, opt, 0x10b);
    put32(&mut out, opt + 16, entry);
    put32(&mut out, opt + 28, base);
    put32(&mut out, opt + 32, 0x1000);
    put32(&mut out, opt + 36, 0x200);
    put32(&mut out, opt + 60, raw as u32);
    put16(&mut out, opt + 68, 2);
    put32(&mut out, opt + 92, 16);
    let mut at = TABLE;
    let mut image = raw.next_multiple_of(0x1000) as u32;
    if ghost {
        out[at..at + 5].copy_from_slice(b"empty");
        let vsz = first.saturating_sub(image);
        put32(&mut out, at + 8, vsz);
        put32(&mut out, at + 12, image);
        put32(&mut out, at + 36, 0xffff_ffff);
        image = image.saturating_add(vsz.checked_next_multiple_of(0x1000).unwrap_or(u32::MAX));
        at += 40;
    }
    for (i, s) in sections.iter().enumerate() {
        let name = format!(".giva{:02}", (i + 1) % 100);
        out[at..at + 7].copy_from_slice(&name.as_bytes()[..7]);
        let len = s.data.len() as u32;
        put32(&mut out, at + 8, len);
        put32(&mut out, at + 12, s.rva);
        put32(&mut out, at + 16, len);
        put32(&mut out, at + 20, raw as u32);
        put32(&mut out, at + 36, 0xffff_ffff);
        out[raw..raw + s.data.len()].copy_from_slice(&s.data);
        raw += s.data.len().next_multiple_of(0x200);
        image = image.saturating_add(len.checked_next_multiple_of(0x1000).unwrap_or(u32::MAX));
        at += 40;
    }
    put32(&mut out, opt + 56, image);
    Some(out)
}

/// The program MEW packed in `data`, rebuilt; `Err` with why when it
/// cannot be.
fn unpack(data: &[u8], l: &PeLayout, p: &Packed, limits: &Limits) -> Result<Vec<u8>, String> {
    let (empty, next) = (&l.sections[p.empty], &l.sections[p.empty + 1]);
    let (ssize, dsize) = (next.vsz as usize, empty.vsz as usize);
    let total = ssize + dsize;
    if total as u64 > limits.max_file_size {
        return Err(format!(
            "the unpacked program ({total} bytes) is larger than the file size limit"
        ));
    }
    let off = p.offset as usize;
    let rsz = next.rsz as usize;
    if off >= total || rsz < off + 12 || rsz > ssize {
        return Err("its packed section does not hold its chunks".into());
    }
    let mut buf = vec![0u8; total];
    let raw = next.raw as usize;
    buf[dsize..dsize + rsz].copy_from_slice(data.get(raw..raw + rsz).ok_or("cut short")?);
    let vadd = l.sections[0].rva;
    let vma = p.base.checked_add(vadd).ok_or("its addresses overflow")?;
    let head = dsize + off;
    let entry = le32(&buf, head + 4).ok_or("no header")?;
    let mut src = head + 12;
    let mut dst = le32(&buf, head + 8).ok_or("no header")?.wrapping_sub(vma) as usize;
    let mut src_len = (ssize as u32).wrapping_sub(12).wrapping_sub(off as u32) as usize;
    let mut sections: Vec<Section> = Vec::new();
    let mut start = 0usize;
    // MEW writes each chunk once; chunks that send the output over the
    // program again and again (96 of them, each a few bytes) stop at
    // twice its size.
    let mut budget = dsize.saturating_mul(2);
    loop {
        let inside =
            |at: usize, len: usize| len != 0 && at.checked_add(len).is_some_and(|e| e <= total);
        let dst_len = total.wrapping_sub(dst);
        if !inside(src, src_len) || !inside(dst, dst_len) {
            return Err("a chunk lies outside the program".into());
        }
        let (src_end, dst_end) = decode(&mut buf, (src, src_len), (dst, dst_len), &mut budget)
            .ok_or("a chunk does not decode")?;
        let next_va = le32(&buf, src_end).ok_or("a chunk has no successor")?;
        src_len = src_len.wrapping_sub(src_end + 4 - src);
        src = src_end + 4;
        dst = next_va.wrapping_sub(vma) as usize;
        // Each chunk ends a section at its next 4 KiB page.
        let end = dst_end.next_multiple_of(0x1000);
        if end < start || end > dsize {
            return Err("the chunks overlap or overrun the program".into());
        }
        sections.push(Section {
            rva: vadd.wrapping_add(start as u32),
            data: buf[start..end].to_vec(),
        });
        start = end;
        if sections.len() > 96 {
            return Err("more than 96 sections".into());
        }
        if next_va == 0 {
            break;
        }
    }
    rebuild(&sections, p.base, entry.wrapping_sub(p.base))
        .ok_or_else(|| "more than 96 sections".into())
}

/// The program MEW packed in `data`, rebuilt, as a member.
pub(crate) fn members(
    data: &[u8],
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let (l, p) = packed(data).ok_or_else(|| FormatError::Corrupt("MEW: not packed".into()))?;
    let name = "MEW unpacked".to_string();
    if p.lzma {
        each(Entry::Unsupported {
            name,
            why: "MEW's LZMA method is not decoded (its aPLib-style one is)".into(),
        });
        return Ok(());
    }
    let program = unpack(data, &l, &p, limits);
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

    /// ClamAV's test file: five chunks come back as five sections, the
    /// program's code first and, in the last, the zip that holds
    /// `clam.exe`.
    #[test]
    fn the_test_file_unpacks_as_clamav_unpacks_it() {
        let Ok(data) = std::fs::read("/usr/share/clamav-testfiles/clam-mew.exe") else {
            eprintln!("SKIPPED: clamav-testfiles not installed");
            return;
        };
        let (l, p) = packed(&data).expect("MEW");
        assert!(!p.lzma);
        let image = unpack(&data, &l, &p, &Limits::default()).expect("unpacks");
        let info = crate::exe::exe_info(&image, 1).expect("a PE");
        assert_eq!(info.sections.len(), 5);
        let code = info.sections[0].raw as usize;
        assert_eq!(
            &image[code..code + 16],
            b"\x6a\x00\x68\x54\x20\x40\x00\x68\x1c\x20\x40\x00\x6a\x00\xff\x15"
        );
        // Laid out as ClamAV's rebuilt file: 21,504 bytes, the zip at RVA
        // 0x4e6c at offset 17,004, where ClamAV's file has it.
        assert_eq!(image.len(), 21504);
        assert_eq!(&image[17004..17008], b"PK\x03\x04");
        assert_eq!(info.entry, 0x420);
        assert_eq!(le32(&image, 0xe8 + 16), Some(0x1020));
    }

    #[test]
    fn streams_that_point_outside_the_window_fail() {
        // A first byte, then a tag asking for a gamma match far back.
        let mut buf = vec![0u8; 64];
        buf[..4].copy_from_slice(&[0x41, 0x80, 0xff, 0xff]);
        assert_eq!(decode(&mut buf, (0, 8), (32, 32), &mut 1000), None);
        // Empty windows.
        assert_eq!(decode(&mut buf, (0, 0), (32, 32), &mut 1000), None);
        assert_eq!(decode(&mut buf, (0, 8), (32, 0), &mut 1000), None);
    }

    /// Random streams end, one way or the other, without a panic.
    #[test]
    fn random_streams_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut image = vec![0u8; 1000];
            for b in &mut image[..96] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let _ = decode(&mut image, (0, 96), (600, 400), &mut 800);
        }
    }
}
