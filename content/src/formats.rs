//! The members of each container type, handed one at a time to the walk.
//! Decoders come from crates (zip, flate2, bzip2, lzma-rust2, tar); cpio
//! and ar, whose headers are a few fixed fields, are read here.

use std::io::{Cursor, Read};

use crate::kind::Kind;
use crate::limits::Limits;

/// One member of a container.
pub(crate) enum Entry<'r> {
    /// A file, to be read from `reader`; `compressed` is its stored size
    /// when the container says it.
    File {
        name: String,
        reader: &'r mut dyn Read,
        compressed: Option<u64>,
    },
    /// A message inside a mail message (`message/rfc822`): a file, but
    /// not target 4, as ClamAV parses it in place.
    Message {
        name: String,
        reader: &'r mut dyn Read,
    },
    /// A file that is encrypted: it cannot be scanned.
    Encrypted { name: String },
    /// A file stored with a method giva cannot decode.
    Unsupported { name: String, why: String },
    /// A file whose data cannot be read (it lies past the container's end).
    Corrupt { name: String, why: String },
    /// A normalized form of the file (of a text file, target 7; of an
    /// HTML page, target 3): scanned with signatures of that target and of
    /// target 0, no hash, and not opened or named as a member.
    Normalized {
        reader: &'r mut dyn Read,
        target: u8,
    },
}

/// What a parser handed out, for its tests: the files (name, bytes), the
/// names of those it said cannot be read, and its result.
#[cfg(test)]
pub(crate) type Collected = (Vec<(String, Vec<u8>)>, Vec<String>, Result<(), FormatError>);

/// For the parsers' tests: what `parse` hands out, each file read whole.
#[cfg(test)]
pub(crate) fn collect(
    parse: impl FnOnce(&mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError>,
) -> Collected {
    let mut files = Vec::new();
    let mut bad = Vec::new();
    let r = parse(&mut |e| {
        match e {
            Entry::File { name, reader, .. } => {
                let mut v = Vec::new();
                reader.read_to_end(&mut v).expect("read");
                files.push((name, v));
            }
            Entry::Corrupt { name, .. } => bad.push(name),
            _ => {}
        }
        Flow::Continue
    });
    (files, bad, r)
}

/// Hands `each` the member `name` whose bytes a parser already holds
/// (decoded from text, or cut out of its container).
pub(crate) fn bytes(each: &mut dyn FnMut(Entry<'_>) -> Flow, name: String, data: &[u8]) -> Flow {
    let mut reader = data;
    each(Entry::File {
        name,
        reader: &mut reader,
        compressed: None,
    })
}

/// An unpacked program as a member, made from `packed` bytes: its
/// expansion is checked as a compressed member's is (a bomb is reported
/// as one); a program that could not be unpacked (`Err`, with why) is
/// reported unreadable.
pub(crate) fn unpacked(
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
    name: String,
    program: Result<&[u8], String>,
    packed: usize,
) -> Flow {
    match program {
        Ok(data) => {
            let mut reader = data;
            each(Entry::File {
                name,
                reader: &mut reader,
                compressed: Some(packed as u64),
            })
        }
        Err(why) => each(Entry::Corrupt { name, why }),
    }
}

/// The most a parser should decode in memory from `stored` bytes before
/// it hands the result to the walk: the largest member, and no more than
/// the expansion ratio allows past its floor (one byte more than either,
/// so that the walk can tell and say so).
pub(crate) fn decode_cap(limits: &crate::limits::Limits, stored: usize) -> u64 {
    let by_ratio = if limits.max_ratio == 0 {
        u64::MAX
    } else {
        (stored as u64)
            .saturating_mul(limits.max_ratio)
            .max(limits.ratio_floor)
    };
    limits.max_file_size.min(by_ratio).saturating_add(1)
}

/// Hands `each` the member `name` a parser decoded in memory from
/// `stored` bytes: the walk holds it to the member caps and the ratio.
pub(crate) fn decoded(
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
    name: String,
    data: &[u8],
    stored: usize,
) -> Flow {
    let mut reader = data;
    each(Entry::File {
        name,
        reader: &mut reader,
        compressed: Some(stored as u64),
    })
}

/// The little-endian 16-bit value at `at` in `d`, if it is there.
pub(crate) fn le16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// The little-endian 32-bit value at `at` in `d`, if it is there.
pub(crate) fn le32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The little-endian 64-bit value at `at` in `d`, if it is there.
pub(crate) fn le64(d: &[u8], at: usize) -> Option<u64> {
    let b = d.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// What the walk wants after a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Why a container could not be read (what was read before stands).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    /// Corrupt or truncated.
    #[error("{0}")]
    Corrupt(String),
    /// Zip entries whose data overlap: a decompression bomb.
    #[error("zip entries overlap (a decompression bomb)")]
    Overlapping,
}

fn corrupt(e: impl std::fmt::Display) -> FormatError {
    FormatError::Corrupt(e.to_string())
}

/// Hands each member of `data` (a container of `kind`) to `each`.
/// `outer` names the container, for single-stream compressors' members.
pub(crate) fn members(
    kind: Kind,
    data: &[u8],
    outer: &str,
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    match kind {
        Kind::Zip => zip(data, each),
        Kind::Gzip => {
            let mut r = flate2::read::MultiGzDecoder::new(data);
            single(&mut r, data.len(), outer, &[".gz", ".tgz", ".z"], each)
        }
        Kind::Bzip2 => {
            let mut r = bzip2::read::MultiBzDecoder::new(data);
            single(&mut r, data.len(), outer, &[".bz2", ".tbz2", ".tbz"], each)
        }
        Kind::Xz => {
            let mut r = lzma_rust2::XzReader::new(data, true);
            single(&mut r, data.len(), outer, &[".xz", ".txz"], each)
        }
        Kind::PosixTar | Kind::OldTar => tar(data, each),
        Kind::CpioNewc | Kind::CpioOdc | Kind::CpioOld => cpio(kind, data, each),
        Kind::Ar => ar(data, each),
        Kind::SevenZip => seven_zip(data, each),
        Kind::Cab => cab(data, each),
        Kind::Iso9660 => crate::iso::members(data, each),
        Kind::Arj => crate::arj::members(data, each),
        Kind::Mail => crate::mail::members(data, each),
        Kind::BinHex => crate::mail::binhex(data, each),
        Kind::Tnef => crate::mail::tnef(data, each),
        Kind::Szdd => szdd(data, outer, each),
        Kind::Ole2 => crate::ole2::members(data, each),
        Kind::Pdf => crate::pdf::members(data, each),
        Kind::Rtf => crate::rtf::members(data, each),
        Kind::Html => crate::html::members(data, limits, each),
        Kind::Chm => crate::chm::members(data, each),
        Kind::OneNote => crate::onenote::members(data, each),
        Kind::Sis => crate::sis::members(data, each),
        Kind::InstallShield => crate::ishield::members(data, limits, each),
        Kind::Nsis => crate::nsis::members(data, limits, each),
        Kind::Upx => crate::upx::members(data, limits, each),
        Kind::IsMsi => crate::ishield::msi_members(data, each),
        Kind::AutoIt => crate::autoit::members(data, limits, each),
        Kind::WwPack => crate::wwpack::members(data, limits, each),
        Kind::Mew => crate::mew::members(data, limits, each),
        Kind::EmbeddedPe => {
            bytes(each, "PE".into(), data);
            Ok(())
        }
        Kind::Text => {
            // As ClamAV, a large text file is scanned as bytes only.
            if data.len() as u64 <= limits.max_script_normalize
                && let Some(encoding) = crate::text::text_encoding(data)
            {
                each(Entry::Normalized {
                    reader: &mut crate::text::Normalized::new(data, encoding),
                    target: 7,
                });
            }
            Ok(())
        }
        Kind::Zstd => {
            let mut r = ruzstd::decoding::StreamingDecoder::new(data).map_err(corrupt)?;
            single(&mut r, data.len(), outer, &[".zst", ".tzst"], each)
        }
        _ => Ok(()),
    }
}

/// A compressed stream's one member, named after the container without
/// its suffix (`a.tar.gz` holds `a.tar`; `.tgz` holds `.tar`).
fn single(
    reader: &mut dyn Read,
    compressed: usize,
    outer: &str,
    suffixes: &[&str],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let lower = outer.to_ascii_lowercase();
    let name = suffixes
        .iter()
        .find(|s| lower.ends_with(*s))
        .map(|s| {
            let stem = &outer[..outer.len() - s.len()];
            if s.starts_with(".t") && s.len() > 3 {
                format!("{stem}.tar")
            } else {
                stem.to_string()
            }
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "(stream)".to_string());
    each(Entry::File {
        name,
        reader,
        compressed: Some(compressed as u64),
    });
    Ok(())
}

fn zip(data: &[u8], each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError> {
    let mut archive = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        // No usable central directory: read the local headers in order,
        // as ClamAV does.
        Err(_) => return zip_stream(data, each),
    };
    // Entries whose data overlap are the mark of a decompression bomb
    // (one deflate stream counted thousands of times).
    let mut ranges = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(corrupt)?;
        if let Some(start) = f.data_start() {
            ranges.push((start, start.saturating_add(f.compressed_size())));
        }
    }
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(FormatError::Overlapping);
    }
    for i in 0..archive.len() {
        let (name, encrypted, dir, method) = {
            let f = archive.by_index_raw(i).map_err(corrupt)?;
            let name = f.name().map_or_else(|_| format!("#{i}"), |n| n.to_string());
            (name, f.encrypted(), f.is_dir(), f.compression())
        };
        if dir {
            continue;
        }
        let flow = if encrypted {
            each(Entry::Encrypted { name })
        } else if !zip_decodes(method) {
            each(Entry::Unsupported {
                name,
                why: format!("compression method {method} is not decoded"),
            })
        } else {
            match archive.by_index(i) {
                Ok(mut f) => {
                    let compressed = Some(f.compressed_size());
                    each(Entry::File {
                        name,
                        reader: &mut f,
                        compressed,
                    })
                }
                Err(
                    e @ (zip::result::ZipError::UnsupportedArchive(_)
                    | zip::result::ZipError::CompressionMethodNotSupported(_)),
                ) => each(Entry::Unsupported {
                    name,
                    why: e.to_string(),
                }),
                Err(e) => return Err(corrupt(e)),
            }
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// The zip methods the `zip` crate decodes with the features giva builds
/// it with (zstd would need a C library; AES is a password).
fn zip_decodes(method: zip::CompressionMethod) -> bool {
    use zip::CompressionMethod as M;
    matches!(
        method,
        M::Stored
            | M::Deflated
            | M::Deflate64
            | M::Bzip2
            | M::Lzma
            | M::Xz
            | M::Ppmd
            | M::Shrink
            | M::Reduce(_)
            | M::Implode
    )
}

fn zip_stream(data: &[u8], each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError> {
    let mut cursor = Cursor::new(data);
    let mut i = 0usize;
    loop {
        let mut f = match zip::read::read_zipfile_from_stream(&mut cursor) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) if i == 0 => return Err(corrupt(e)),
            // What was read before stands; the rest is not a zip.
            Err(_) => return Ok(()),
        };
        i += 1;
        if f.is_dir() {
            continue;
        }
        let name = f.name().map_or_else(|_| format!("#{i}"), |n| n.to_string());
        let flow = if f.encrypted() {
            each(Entry::Encrypted { name })
        } else {
            let compressed = Some(f.compressed_size());
            each(Entry::File {
                name,
                reader: &mut f,
                compressed,
            })
        };
        // The rest of an entry not read must be skipped to reach the next.
        std::io::copy(&mut f, &mut std::io::sink()).map_err(corrupt)?;
        if flow == Flow::Stop {
            return Ok(());
        }
    }
}

fn tar(data: &[u8], each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError> {
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let t = entry.header().entry_type();
        if !(t.is_file() || t.is_contiguous() || t.is_gnu_sparse()) {
            continue;
        }
        let name = entry
            .path()
            .map_or_else(|_| "(unnamed)".into(), |p| p.display().to_string());
        let size = entry.size();
        let flow = each(Entry::File {
            name,
            reader: &mut entry,
            compressed: Some(size),
        });
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// Memory a 7z header or decoder may claim, in KiB.
const SEVEN_ZIP_MEMORY_KB: usize = 256 << 10;

/// A 7-Zip archive's members, one thread, no password: an encrypted
/// archive (or block) is reported so.
fn seven_zip(data: &[u8], each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError> {
    use sevenz_rust2::{ArchiveReader, Error, Password};
    // Header buffers and each decoder's dictionary are held to 256 MiB: a
    // header cannot make the parser allocate what it declares.
    let mut reader = match ArchiveReader::new_with_memory_limit(
        Cursor::new(data),
        Password::empty(),
        SEVEN_ZIP_MEMORY_KB,
    ) {
        Ok(r) => r,
        Err(Error::MaxMemLimited { .. }) => {
            each(Entry::Unsupported {
                name: "(7z headers)".into(),
                why: "needs more memory than allowed".into(),
            });
            return Ok(());
        }
        Err(Error::PasswordRequired | Error::MaybeBadPassword(_)) => {
            each(Entry::Encrypted {
                name: "(7z headers)".into(),
            });
            return Ok(());
        }
        Err(e) => return Err(corrupt(e)),
    };
    reader.set_thread_count(1);
    let mut stopped = false;
    let result = reader.for_each_entries(|entry, r| {
        if entry.is_directory || !entry.has_stream {
            return Ok(true);
        }
        let flow = each(Entry::File {
            name: entry.name.clone(),
            reader: r,
            compressed: Some(entry.compressed_size).filter(|c| *c > 0),
        });
        stopped = flow == Flow::Stop;
        Ok(!stopped)
    });
    match result {
        Ok(()) => Ok(()),
        Err(_) if stopped => Ok(()),
        Err(Error::PasswordRequired | Error::MaybeBadPassword(_)) => {
            each(Entry::Encrypted {
                name: "(7z block)".into(),
            });
            Ok(())
        }
        Err(Error::MaxMemLimited { .. }) => {
            each(Entry::Unsupported {
                name: "(7z block)".into(),
                why: "its dictionary needs more memory than allowed".into(),
            });
            Ok(())
        }
        Err(Error::UnsupportedCompressionMethod(m)) => {
            each(Entry::Unsupported {
                name: "(7z block)".into(),
                why: format!("compression method {m} is not decoded"),
            });
            Ok(())
        }
        Err(e) => Err(corrupt(e)),
    }
}

/// A Microsoft Cabinet's members (stored, MSZIP, LZX; Quantum is not
/// decoded and is reported so).
fn cab(data: &[u8], each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError> {
    let mut cabinet = cab::Cabinet::new(Cursor::new(data)).map_err(corrupt)?;
    let files: Vec<(String, bool)> = cabinet
        .folder_entries()
        .flat_map(|folder| {
            let quantum = matches!(folder.compression_type(), cab::CompressionType::Quantum(..));
            folder
                .file_entries()
                .map(move |f| (f.name().to_string(), quantum))
        })
        .collect();
    for (name, quantum) in files {
        let flow = if quantum {
            each(Entry::Unsupported {
                name,
                why: "Quantum compression is not decoded".into(),
            })
        } else {
            match cabinet.read_file(&name) {
                Ok(mut r) => each(Entry::File {
                    name,
                    reader: &mut r,
                    compressed: None,
                }),
                Err(e) => return Err(corrupt(e)),
            }
        };
        if flow == Flow::Stop {
            break;
        }
    }
    Ok(())
}

/// A file packed by `COMPRESS.EXE` (SZDD): LZSS over a 4 KiB window that
/// starts as spaces, decoded as a stream. Its one member is named after
/// the packed file, with the last character the header keeps (`clam.ex_`
/// holds `clam.exe`).
fn szdd(
    data: &[u8],
    outer: &str,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    if data.len() < 14 || data[8] != b'A' {
        return Err(FormatError::Corrupt("SZDD: not mode A".into()));
    }
    let last = data[9];
    let size = u64::from(u32::from_le_bytes([data[10], data[11], data[12], data[13]]));
    let name = match outer.strip_suffix('_') {
        Some(stem) if last.is_ascii_graphic() => format!("{stem}{}", char::from(last)),
        _ => "(expanded)".to_string(),
    };
    let mut r = Szdd {
        data,
        at: 14,
        window: [b' '; 4096],
        pos: 4096 - 16,
        control: 0,
        bit: 8,
        copy: (0, 0),
        left: size,
    };
    each(Entry::File {
        name,
        reader: &mut r,
        compressed: Some(data.len() as u64),
    });
    Ok(())
}

/// SZDD's decoder state.
struct Szdd<'a> {
    data: &'a [u8],
    at: usize,
    window: [u8; 4096],
    pos: usize,
    control: u8,
    bit: u8,
    /// A match being copied: (bytes left, from).
    copy: (usize, usize),
    /// Bytes of the original size still to give.
    left: u64,
}

impl Read for Szdd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            let b = if self.copy.0 > 0 {
                let b = self.window[self.copy.1];
                self.copy = (self.copy.0 - 1, (self.copy.1 + 1) & 4095);
                b
            } else {
                if self.bit == 8 {
                    let Some(&c) = self.data.get(self.at) else {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "SZDD: the data ends before the file does",
                        ));
                    };
                    self.control = c;
                    self.bit = 0;
                    self.at += 1;
                }
                let literal = self.control & (1 << self.bit) != 0;
                self.bit += 1;
                let need = if literal { 1 } else { 2 };
                let Some(code) = self.data.get(self.at..self.at + need) else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "SZDD: the data ends before the file does",
                    ));
                };
                self.at += need;
                if literal {
                    code[0]
                } else {
                    let from = usize::from(code[0]) | (usize::from(code[1] & 0xf0) << 4);
                    self.copy = (usize::from(code[1] & 0x0f) + 3, from);
                    continue;
                }
            };
            self.window[self.pos] = b;
            self.pos = (self.pos + 1) & 4095;
            buf[n] = b;
            n += 1;
            self.left -= 1;
        }
        Ok(n)
    }
}

/// A cpio archive's members: newc (`070701`/`070702`), odc (`070707`) or
/// old binary (either byte order); regular files only, up to `TRAILER!!!`.
fn cpio(
    kind: Kind,
    data: &[u8],
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let mut at = 0usize;
    let truncated = || FormatError::Corrupt("cpio: truncated header".into());
    let field = |s: &[u8], radix: u32| -> Result<u64, FormatError> {
        let t = std::str::from_utf8(s).map_err(|_| truncated())?;
        u64::from_str_radix(t.trim_end_matches('\0'), radix)
            .map_err(|_| FormatError::Corrupt(format!("cpio: bad header field {t:?}")))
    };
    loop {
        let rest = &data[at.min(data.len())..];
        let (mode, namesize, filesize, header, align) = match kind {
            Kind::CpioNewc => {
                if rest.len() < 110 || !(rest.starts_with(b"070701") || rest.starts_with(b"070702"))
                {
                    return Err(truncated());
                }
                let h = |i: usize| field(&rest[6 + i * 8..14 + i * 8], 16);
                (h(1)?, h(11)?, h(6)?, 110usize, 4usize)
            }
            Kind::CpioOdc => {
                if rest.len() < 76 || !rest.starts_with(b"070707") {
                    return Err(truncated());
                }
                (
                    field(&rest[18..24], 8)?,
                    field(&rest[59..65], 8)?,
                    field(&rest[65..76], 8)?,
                    76,
                    1,
                )
            }
            _ => {
                if rest.len() < 26 {
                    return Err(truncated());
                }
                let le = rest[0] == 0xc7 && rest[1] == 0x71;
                let be = rest[0] == 0x71 && rest[1] == 0xc7;
                if !le && !be {
                    return Err(truncated());
                }
                let w = |i: usize| -> u64 {
                    let b = [rest[i * 2], rest[i * 2 + 1]];
                    u64::from(if le {
                        u16::from_le_bytes(b)
                    } else {
                        u16::from_be_bytes(b)
                    })
                };
                (w(3), w(10), (w(11) << 16) | w(12), 26, 2)
            }
        };
        let pad = |n: usize| n.div_ceil(align) * align;
        let name_end = at + header + namesize as usize;
        let data_start = at + pad(header + namesize as usize);
        let data_end = data_start.saturating_add(filesize as usize);
        if name_end > data.len() || data_end > data.len() || namesize == 0 {
            return Err(FormatError::Corrupt("cpio: truncated member".into()));
        }
        let name = String::from_utf8_lossy(&data[at + header..name_end - 1]).into_owned();
        if name == "TRAILER!!!" {
            return Ok(());
        }
        if mode & 0o170000 == 0o100000 {
            let mut r = &data[data_start..data_end];
            let flow = each(Entry::File {
                name,
                reader: &mut r,
                compressed: Some(filesize),
            });
            if flow == Flow::Stop {
                return Ok(());
            }
        }
        at = data_start + pad(filesize as usize);
    }
}

/// An `ar` archive's members (GNU and BSD long names; the symbol and name
/// tables are not files).
fn ar(data: &[u8], each: &mut dyn FnMut(Entry<'_>) -> Flow) -> Result<(), FormatError> {
    let mut at = 8usize;
    let mut long_names: &[u8] = &[];
    while at + 60 <= data.len() {
        let h = &data[at..at + 60];
        if &h[58..60] != b"`\n" {
            return Err(FormatError::Corrupt("ar: bad member header".into()));
        }
        let size: usize = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| FormatError::Corrupt("ar: bad member size".into()))?;
        let start = at + 60;
        let end = start
            .checked_add(size)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| FormatError::Corrupt("ar: truncated member".into()))?;
        let raw_name = String::from_utf8_lossy(&h[..16]).trim_end().to_string();
        let mut body = &data[start..end];
        let name = if raw_name == "/" || raw_name == "/SYM64/" || raw_name == "__.SYMDEF" {
            None
        } else if raw_name == "//" {
            long_names = body;
            None
        } else if let Some(len) = raw_name
            .strip_prefix("#1/")
            .and_then(|l| l.parse::<usize>().ok())
        {
            let len = len.min(body.len());
            let n = String::from_utf8_lossy(&body[..len])
                .trim_end_matches('\0')
                .to_string();
            body = &body[len..];
            Some(n)
        } else if let Some(off) = raw_name
            .strip_prefix('/')
            .and_then(|o| o.parse::<usize>().ok())
        {
            let n = long_names.get(off..).unwrap_or_default();
            let end = n.iter().position(|&b| b == b'\n').unwrap_or(n.len());
            Some(
                String::from_utf8_lossy(&n[..end])
                    .trim_end_matches('/')
                    .to_string(),
            )
        } else {
            Some(raw_name.trim_end_matches('/').to_string())
        };
        if let Some(name) = name {
            let compressed = Some(body.len() as u64);
            if each(Entry::File {
                name,
                reader: &mut body,
                compressed,
            }) == Flow::Stop
            {
                return Ok(());
            }
        }
        at = end + (size & 1);
    }
    Ok(())
}

#[cfg(test)]
mod decode_cap_tests {
    use super::*;

    #[test]
    fn decoding_in_memory_stops_at_the_member_cap_or_the_ratio() {
        let limits = crate::limits::Limits::default();
        // A small block: the ratio's floor (16 MiB), one byte over.
        assert_eq!(decode_cap(&limits, 100), (16 << 20) + 1);
        // A large one: a thousand times its size, under the member cap.
        assert_eq!(decode_cap(&limits, 40_000), 40_000_001);
        assert_eq!(decode_cap(&limits, 1 << 20), (100 << 20) + 1);
        let no_ratio = crate::limits::Limits {
            max_ratio: 0,
            ..crate::limits::Limits::default()
        };
        assert_eq!(decode_cap(&no_ratio, 1), (100 << 20) + 1);
    }
}
