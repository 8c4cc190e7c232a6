//! UPX-packed PE files: the packed image unpacked. UPX keeps a header (`UPX!`, then its version, the format, the
//! compression method, the level, two checksums, the unpacked and packed
//! lengths) near the start of the file, and the packed image at the start
//! of the second section's raw data. The methods giva decodes are UPX's
//! NRV2B, NRV2D and NRV2E with 32-bit bit buffers (UPX's choice for 32-bit
//! PE files), each its own decoder here; LZMA and the others are reported
//! `unsupported`.
//!
//! The original file is rebuilt from the unpacked image (the sections as
//! they lie in memory) with the original PE header UPX keeps after it, and
//! is a member, `UPX unpacked` (the image itself when no header there
//! describes it). A PE file the original carries is then found in it as in
//! any PE (`kind::embedded`), as ClamAV finds it: a file a dropper carries
//! is found as itself.
//!
//! Cost: the image is decoded once, to no more than the length the header
//! states and the largest member, and the original rebuilt no larger than
//! the largest member; every read is checked against the input.

use crate::formats::{Entry, Flow, FormatError, le16, le32, unpacked};
use crate::limits::Limits;

/// How far into the file the `UPX!` header is looked for.
const HEADER_WITHIN: usize = 0x1000;

/// A packed PE: where its packed image is, how, how long unpacked, and
/// the address the image starts at (the first section's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed {
    method: u8,
    at: usize,
    len: usize,
    unpacked: usize,
    base: usize,
}

/// A PE section: its address in memory, its offset and size in the
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Section {
    va: usize,
    raw: usize,
    size: usize,
}

/// The sections of the PE header that starts at `pe` (its `PE\0\0`).
fn section_table(d: &[u8], pe: usize) -> Option<Vec<Section>> {
    if d.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let count = le16(d, pe + 6)? as usize;
    if count == 0 || count > 96 {
        return None;
    }
    let table = pe + 24 + le16(d, pe + 20)? as usize;
    (0..count)
        .map(|i| {
            let s = table + 40 * i;
            Some(Section {
                va: le32(d, s + 12)? as usize,
                size: le32(d, s + 16)? as usize,
                raw: le32(d, s + 20)? as usize,
            })
        })
        .collect()
}

/// A PE file's sections.
fn sections(d: &[u8]) -> Option<Vec<Section>> {
    if !d.starts_with(b"MZ") {
        return None;
    }
    section_table(d, le32(d, 0x3c)? as usize)
}

/// The packed image of the PE `data`, if UPX packed it.
pub(crate) fn packed(data: &[u8]) -> Option<Packed> {
    let secs = sections(data)?;
    let head = &data[..data.len().min(HEADER_WITHIN)];
    let at = memchr::memmem::find(head, b"UPX!")?;
    let h = data.get(at..at + 32)?;
    let (method, unpacked, len) = (h[6], le32(h, 16)? as usize, le32(h, 20)? as usize);
    let packed = secs.get(1)?;
    if len == 0 || len > packed.size || unpacked == 0 {
        return None;
    }
    data.get(packed.raw..packed.raw.checked_add(len)?)?;
    Some(Packed {
        method,
        at: packed.raw,
        len,
        unpacked,
        base: secs[0].va,
    })
}

/// The bit reader of UPX's 32-bit NRV variants: bits taken from the top
/// of little-endian 32-bit words.
struct Bits<'a> {
    src: &'a [u8],
    at: usize,
    word: u32,
    left: u32,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        if self.left == 0 {
            self.word = le32(self.src, self.at)?;
            self.at += 4;
            self.left = 32;
        }
        self.left -= 1;
        Some((self.word >> self.left) & 1)
    }

    fn byte(&mut self) -> Option<u32> {
        let b = *self.src.get(self.at)?;
        self.at += 1;
        Some(u32::from(b))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nrv {
    B,
    D,
    E,
}

/// NRV2B, NRV2D or NRV2E (32-bit bit buffers) of `src`, to no more than
/// `max` bytes. A stream cut short or pointing before its start gives what
/// it decoded so far, and says it did.
fn nrv(variant: Nrv, src: &[u8], max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(max.min(1 << 20));
    let mut b = Bits {
        src,
        at: 0,
        word: 0,
        left: 0,
    };
    let mut last: u32 = 1;
    let whole = (|| -> Option<()> {
        loop {
            while b.bit()? == 1 {
                if out.len() >= max {
                    return Some(());
                }
                out.push(b.byte()? as u8);
            }
            let mut off: u32 = 1;
            loop {
                off = off.checked_mul(2)?.checked_add(b.bit()?)?;
                if b.bit()? == 1 {
                    break;
                }
                if variant != Nrv::B {
                    off = (off - 1).checked_mul(2)?.checked_add(b.bit()?)?;
                }
            }
            let mut len: u32;
            if off == 2 {
                off = last;
                len = if variant == Nrv::B { 0 } else { b.bit()? };
            } else {
                let o = (off - 3).checked_mul(256)?.checked_add(b.byte()?);
                let Some(o) = o.filter(|&o| o != u32::MAX) else {
                    // The end mark.
                    return Some(());
                };
                if variant == Nrv::B {
                    off = o + 1;
                    len = 0;
                } else {
                    len = (o ^ u32::MAX) & 1;
                    off = (o >> 1) + 1;
                }
                last = off;
            }
            let far = match variant {
                Nrv::B => 0xd00,
                Nrv::D | Nrv::E => 0x500,
            };
            len = match variant {
                Nrv::B | Nrv::D => {
                    if variant == Nrv::B {
                        len = b.bit()?;
                    }
                    len = len * 2 + b.bit()?;
                    if len == 0 {
                        len = 1;
                        loop {
                            len = len.checked_mul(2)?.checked_add(b.bit()?)?;
                            if b.bit()? == 1 {
                                break;
                            }
                        }
                        len += 2;
                    }
                    len
                }
                Nrv::E => {
                    if len == 1 {
                        1 + b.bit()?
                    } else if b.bit()? == 1 {
                        3 + b.bit()?
                    } else {
                        let mut l: u32 = 1;
                        loop {
                            l = l.checked_mul(2)?.checked_add(b.bit()?)?;
                            if b.bit()? == 1 {
                                break;
                            }
                        }
                        l + 3
                    }
                }
            };
            len += u32::from(off > far);
            let from = out.len().checked_sub(off as usize)?;
            for i in 0..=len as usize {
                if out.len() >= max {
                    return Some(());
                }
                out.push(out[from + i]);
            }
        }
    })()
    .is_some();
    (out, whole)
}

/// The original file, rebuilt from the unpacked `image` (whose first byte
/// is at address `base`): UPX keeps the original PE header (from its
/// `PE\0\0`) after the image; each of its sections is copied from the
/// image to where the header says it lies in the file, behind a DOS
/// header and that PE header. `None` when no header there describes the
/// image, or the file would exceed `max`.
fn rebuild(image: &[u8], base: usize, max: usize) -> Option<Vec<u8>> {
    let at = memchr::memmem::rfind(image, b"PE\0\0")?;
    let secs = section_table(image, at)?;
    let len = secs.iter().map(|s| s.raw.saturating_add(s.size)).max()?;
    if len > max || secs.iter().any(|s| s.va < base) {
        return None;
    }
    let mut file = vec![0u8; len];
    // A DOS header and the original PE header in front of the first
    // section, where there is room, so that the file is a PE again (its
    // type, its structure, a PE inside it found as in any PE).
    let header_len = 24 + usize::from(le16(image, at + 20)?) + 40 * secs.len();
    let first = secs.iter().map(|s| s.raw).min()?;
    if let Some(header) = image.get(at..at + header_len)
        && 0x40 + header_len <= first
    {
        file[..2].copy_from_slice(b"MZ");
        file[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        file[0x40..0x40 + header_len].copy_from_slice(header);
    }
    for s in &secs {
        let from = s.va - base;
        let (Some(src), Some(dst)) = (
            image.get(from..from.saturating_add(s.size).min(image.len())),
            file.get_mut(s.raw..s.raw + s.size),
        ) else {
            continue;
        };
        dst[..src.len()].copy_from_slice(src);
    }
    Some(file)
}

/// The original file of the UPX-packed PE `data` (or its unpacked image,
/// when the original cannot be rebuilt).
pub(crate) fn members(
    data: &[u8],
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let p = packed(data).ok_or_else(|| FormatError::Corrupt("UPX: no packed image".into()))?;
    let name = "UPX unpacked".to_string();
    let variant = match p.method {
        2 => Nrv::B,
        5 => Nrv::D,
        8 => Nrv::E,
        m => {
            each(Entry::Unsupported {
                name,
                why: format!("UPX method {m} is not decoded (NRV2B, NRV2D and NRV2E are)"),
            });
            return Ok(());
        }
    };
    let max = p.unpacked.min(limits.max_file_size as usize);
    let (image, whole) = nrv(variant, &data[p.at..p.at + p.len], max);
    if image.is_empty() {
        each(Entry::Corrupt {
            name,
            why: "the packed image does not decode".into(),
        });
        return Ok(());
    }
    let file = rebuild(&image, p.base, limits.max_file_size as usize).unwrap_or(image);
    if unpacked(each, name.clone(), Ok(&file), data.len()) == Flow::Stop {
        return Ok(());
    }
    if !whole && file.len() < max {
        each(Entry::Corrupt {
            name,
            why: "the packed image decodes only in part".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_file_unpacks_to_the_file_it_carries() {
        let dir = std::path::Path::new("/usr/share/clamav-testfiles");
        let (Ok(packed_exe), Ok(clam)) = (
            std::fs::read(dir.join("clam-upx.exe")),
            std::fs::read(dir.join("clam.exe")),
        ) else {
            eprintln!("SKIPPED: clamav-testfiles not installed");
            return;
        };
        let p = packed(&packed_exe).expect("UPX header");
        assert_eq!(p.method, 2);
        let (image, whole) = nrv(Nrv::B, &packed_exe[p.at..p.at + p.len], p.unpacked);
        assert!(whole);
        assert_eq!(image.len(), p.unpacked);
        // The original is 6,656 bytes (UPX's header says so too), and ends
        // with the file it carries.
        let file = rebuild(&image, p.base, 100 << 20).expect("rebuilt");
        assert_eq!(file.len(), 6656);
        assert_eq!(
            crate::kind::embedded(&file),
            [(6656 - clam.len(), crate::Kind::EmbeddedPe)]
        );
        assert!(file.ends_with(&clam));
        assert!(packed(&clam).is_none());
    }

    /// A compressor from the UCL library (UPX's own algorithms), built
    /// here: `ucl-nrv METHOD < in > out`, 32-bit little-endian bit
    /// buffers as UPX packs PE files.
    const UCL_NRV: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucl/ucl.h>
int main(int argc, char **argv) {
    static unsigned char in[1 << 20], out[(1 << 20) + (1 << 17)];
    ucl_uint n = fread(in, 1, sizeof in, stdin), m = sizeof out;
    struct ucl_compress_config_t c;
    memset(&c, 0xff, sizeof c);
    c.bb_endian = 0;
    c.bb_size = 32;
    if (ucl_init() != UCL_E_OK) return 2;
    int r = argv[1][0] == 'b' ? ucl_nrv2b_99_compress(in, n, out, &m, NULL, 10, &c, NULL)
          : argv[1][0] == 'd' ? ucl_nrv2d_99_compress(in, n, out, &m, NULL, 10, &c, NULL)
          : ucl_nrv2e_99_compress(in, n, out, &m, NULL, 10, &c, NULL);
    if (r != UCL_E_OK) return 3;
    fwrite(out, 1, m, stdout);
    return 0;
}
"#;

    /// NRV2B, NRV2D and NRV2E as the UCL library writes them decode to what
    /// went in (text, code, runs, noise, and lengths around every case of
    /// the length codes). Skipped without a C compiler and `libucl-dev`,
    /// unless `GIVA_REQUIRE_ARCHIVERS=1`.
    #[test]
    fn what_ucl_compresses_decodes() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("tempdir");
        let c = dir.path().join("ucl-nrv.c");
        let bin = dir.path().join("ucl-nrv");
        std::fs::write(&c, UCL_NRV).expect("write");
        let built = Command::new("cc")
            .arg(&c)
            .arg("-o")
            .arg(&bin)
            .arg("-lucl")
            .output()
            .is_ok_and(|o| o.status.success());
        if !built {
            assert!(
                std::env::var("GIVA_REQUIRE_ARCHIVERS").as_deref() != Ok("1"),
                "cc or libucl-dev missing and GIVA_REQUIRE_ARCHIVERS=1"
            );
            eprintln!("SKIPPED: cc or libucl-dev not installed");
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect()
        };
        let text = b"UPX packs executables; NRV2B, NRV2D and NRV2E code matches. ".repeat(300);
        let code = std::fs::read("/bin/ls").unwrap_or_else(|_| noise(50_000));
        let mixed: Vec<u8> = (0..40_000u32)
            .map(|i| {
                if i % 1000 < 500 {
                    (i % 7) as u8
                } else {
                    (i * 31 % 251) as u8
                }
            })
            .collect();
        let inputs = [
            text,
            code[..code.len().min(300_000)].to_vec(),
            mixed,
            noise(20_000),
            vec![0u8; 100_000],
            b"a".to_vec(),
        ];
        for (method, variant) in [("b", Nrv::B), ("d", Nrv::D), ("e", Nrv::E)] {
            for input in &inputs {
                let mut child = Command::new(&bin)
                    .arg(method)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("run");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(input)
                    .expect("write");
                let out = child.wait_with_output().expect("wait");
                assert!(out.status.success(), "ucl-nrv {method}");
                let (got, whole) = nrv(variant, &out.stdout, input.len());
                assert!(whole, "NRV2{method} of {} bytes: not whole", input.len());
                assert!(
                    got == *input,
                    "NRV2{method} of {} bytes differs",
                    input.len()
                );
            }
        }
    }

    #[test]
    fn hostile_streams_stop_where_they_go_wrong() {
        // All ones: literals until the input runs out.
        let (out, whole) = nrv(Nrv::B, &[0xff; 64], 1000);
        assert!(!whole);
        assert!(out.len() <= 64);
        // A match before the start of the output.
        for v in [Nrv::B, Nrv::D, Nrv::E] {
            let (_, whole) = nrv(v, &[0, 0, 0, 0x40, 5, 0, 0, 0], 1000);
            assert!(!whole);
        }
        // The output cap holds.
        let (out, _) = nrv(Nrv::B, &[0xff; 4096], 10);
        assert_eq!(out.len(), 10);
    }
}
