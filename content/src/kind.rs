//! File types by content: the magic at the start of a layer, never its
//! name. The names are ClamAV's (`CL_TYPE_*`), so that signatures' target
//! types and `Container:` attributes can refer to them.

/// What a layer is, by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Anything not recognised below: scanned as bytes only.
    Other,
    /// Zip (`PK\x03\x04`, or an empty archive's `PK\x05\x06`).
    Zip,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// tar: POSIX (`ustar` magic) or GNU.
    PosixTar,
    /// tar from before POSIX: no magic, a valid header checksum.
    OldTar,
    /// cpio, "new" ASCII format (`070701`, `070702` with CRC).
    CpioNewc,
    /// cpio, "old" ASCII (portable) format (`070707`).
    CpioOdc,
    /// cpio, old binary format (0o070707 as a 16-bit word, either order).
    CpioOld,
    /// `ar` archives (and so Debian packages).
    Ar,
    /// 7-Zip.
    SevenZip,
    /// Microsoft Cabinet.
    Cab,
    /// ARJ.
    Arj,
    /// ISO 9660 file system image.
    Iso9660,
    /// Zstandard frame.
    Zstd,
    /// A mail message or an mbox file.
    Mail,
    /// BinHex 4.0.
    BinHex,
    /// MS-TNEF (`winmail.dat`).
    Tnef,
    /// A file packed by Microsoft's `COMPRESS.EXE` (SZDD).
    Szdd,
    /// An OLE2 compound file (`.doc`, `.xls`, `.ppt`, `.msi`, VBA projects).
    Ole2,
    /// PDF.
    Pdf,
    /// RTF.
    Rtf,
    /// HTML (by a tag in its first KiB).
    Html,
    /// Microsoft Compiled HTML Help (`ITSF`).
    Chm,
    /// Microsoft OneNote section (`.one`).
    OneNote,
    /// Symbian installation package (`.sis`, before Symbian OS 9).
    Sis,
    /// An InstallShield setup stub's list of files (a PE's overlay).
    InstallShield,
    /// An NSIS installer's archive (a PE's overlay).
    Nsis,
    /// A PE packed by UPX (its packed image).
    Upx,
    /// An InstallShield MSI setup stub's table of files (in a PE).
    IsMsi,
    /// A compiled AutoIt script's archive (`AU3!EA05`, `AU3!EA06`, in a PE).
    AutoIt,
    /// A PE file inside a PE, from its `MZ` to the end.
    EmbeddedPe,
    /// A PE packed by WWPack32.
    WwPack,
    /// A PE packed by MEW 11.
    Mew,
    /// Text: no other type, and no NUL in its first KiB (or UTF-16). Its
    /// one layer inside is its normalized text.
    Text,
}

impl Kind {
    /// ClamAV's name for the type.
    pub fn clamav_name(self) -> &'static str {
        match self {
            Kind::Other => "CL_TYPE_BINARY_DATA",
            Kind::Zip => "CL_TYPE_ZIP",
            Kind::Gzip => "CL_TYPE_GZ",
            Kind::Bzip2 => "CL_TYPE_BZ",
            Kind::Xz => "CL_TYPE_XZ",
            Kind::PosixTar => "CL_TYPE_POSIX_TAR",
            Kind::OldTar => "CL_TYPE_OLD_TAR",
            Kind::CpioNewc => "CL_TYPE_CPIO_NEWC",
            Kind::CpioOdc => "CL_TYPE_CPIO_ODC",
            Kind::CpioOld => "CL_TYPE_CPIO_OLD",
            Kind::Ar => "CL_TYPE_AR",
            Kind::SevenZip => "CL_TYPE_7Z",
            Kind::Cab => "CL_TYPE_MSCAB",
            Kind::Arj => "CL_TYPE_ARJ",
            Kind::Iso9660 => "CL_TYPE_ISO9660",
            Kind::Zstd => "CL_TYPE_ZSTD",
            Kind::Mail => "CL_TYPE_MAIL",
            Kind::BinHex => "CL_TYPE_BINHEX",
            Kind::Tnef => "CL_TYPE_TNEF",
            Kind::Szdd => "CL_TYPE_MSSZDD",
            Kind::Ole2 => "CL_TYPE_MSOLE2",
            Kind::Pdf => "CL_TYPE_PDF",
            Kind::Rtf => "CL_TYPE_RTF",
            Kind::Html => "CL_TYPE_HTML",
            Kind::Chm => "CL_TYPE_MSCHM",
            Kind::OneNote => "CL_TYPE_ONENOTE",
            Kind::Sis => "CL_TYPE_SIS",
            Kind::InstallShield => "CL_TYPE_ISHIELD (setup stub)",
            Kind::Nsis => "CL_TYPE_NULSFT",
            Kind::Upx => "CL_TYPE_PE (UPX)",
            Kind::IsMsi => "CL_TYPE_ISHIELD_MSI",
            Kind::AutoIt => "CL_TYPE_AUTOIT",
            Kind::EmbeddedPe => "CL_TYPE_MSEXE (embedded)",
            Kind::WwPack => "CL_TYPE_PE (WWPack)",
            Kind::Mew => "CL_TYPE_PE (MEW)",
            Kind::Text => "CL_TYPE_TEXT_ASCII",
        }
    }

    /// A short name for messages (`zip`, `gzip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Other => "data",
            Kind::Zip => "zip",
            Kind::Gzip => "gzip",
            Kind::Bzip2 => "bzip2",
            Kind::Xz => "xz",
            Kind::PosixTar | Kind::OldTar => "tar",
            Kind::CpioNewc | Kind::CpioOdc | Kind::CpioOld => "cpio",
            Kind::Ar => "ar",
            Kind::SevenZip => "7z",
            Kind::Cab => "cab",
            Kind::Arj => "arj",
            Kind::Iso9660 => "iso9660",
            Kind::Zstd => "zstd",
            Kind::Mail => "mail",
            Kind::BinHex => "binhex",
            Kind::Tnef => "tnef",
            Kind::Szdd => "szdd",
            Kind::Ole2 => "ole2",
            Kind::Pdf => "pdf",
            Kind::Rtf => "rtf",
            Kind::Html => "html",
            Kind::Chm => "chm",
            Kind::OneNote => "onenote",
            Kind::Sis => "sis",
            Kind::InstallShield => "installshield",
            Kind::Nsis => "nsis",
            Kind::Upx => "upx",
            Kind::IsMsi => "ishield-msi",
            Kind::AutoIt => "autoit",
            Kind::EmbeddedPe => "embedded-pe",
            Kind::WwPack => "wwpack",
            Kind::Mew => "mew",
            Kind::Text => "text",
        }
    }

    /// Whether this is a packed executable, whose unpacked image is a
    /// layer as well as what the file carries (not an archive in it).
    pub fn is_packer(self) -> bool {
        matches!(self, Kind::Upx | Kind::WwPack | Kind::Mew)
    }

    /// Whether this type holds other files (or one compressed stream).
    pub fn is_container(self) -> bool {
        self != Kind::Other
    }

    /// Whether giva opens this type (every container type it recognises).
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            Kind::Zip
                | Kind::Gzip
                | Kind::Bzip2
                | Kind::Xz
                | Kind::PosixTar
                | Kind::OldTar
                | Kind::CpioNewc
                | Kind::CpioOdc
                | Kind::CpioOld
                | Kind::Ar
                | Kind::SevenZip
                | Kind::Cab
                | Kind::Zstd
                | Kind::Iso9660
                | Kind::Arj
                | Kind::Mail
                | Kind::BinHex
                | Kind::Tnef
                | Kind::Szdd
                | Kind::Ole2
                | Kind::Pdf
                | Kind::Rtf
                | Kind::Html
                | Kind::Chm
                | Kind::OneNote
                | Kind::Sis
                | Kind::InstallShield
                | Kind::Nsis
                | Kind::Upx
                | Kind::IsMsi
                | Kind::AutoIt
                | Kind::EmbeddedPe
                | Kind::WwPack
                | Kind::Mew
                | Kind::Text
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of `data`, by its magic. Costs a few comparisons at fixed
/// offsets (the tar and ISO checks look at offsets 257 and 32769).
pub fn detect(data: &[u8]) -> Kind {
    let starts = |m: &[u8]| data.starts_with(m);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        return Kind::Zip;
    }
    if starts(&[0x1f, 0x8b, 0x08]) {
        return Kind::Gzip;
    }
    if data.len() >= 4 && starts(b"BZh") && (b'1'..=b'9').contains(&data[3]) {
        return Kind::Bzip2;
    }
    if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Kind::Xz;
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Kind::SevenZip;
    }
    if starts(b"MSCF\0\0\0\0") {
        return Kind::Cab;
    }
    if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Kind::Zstd;
    }
    if starts(b"070701") || starts(b"070702") {
        return Kind::CpioNewc;
    }
    if starts(b"070707") {
        return Kind::CpioOdc;
    }
    if starts(&[0xc7, 0x71]) || starts(&[0x71, 0xc7]) {
        return Kind::CpioOld;
    }
    if starts(b"!<arch>\n") {
        return Kind::Ar;
    }
    if data.len() >= 512 && &data[257..262] == b"ustar" {
        return Kind::PosixTar;
    }
    if data.len() >= 512 && tar_checksum_ok(&data[..512]) {
        return Kind::OldTar;
    }
    if starts(&[0x60, 0xea]) && data.len() > 10 {
        return Kind::Arj;
    }
    if data.len() > 32774 && &data[32769..32774] == b"CD001" {
        return Kind::Iso9660;
    }
    if starts(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return Kind::Ole2;
    }
    if starts(b"{\\rtf") {
        return Kind::Rtf;
    }
    let typed = target_type(data);
    if typed == 10 {
        return Kind::Pdf;
    }
    if starts(b"ITSF") {
        return Kind::Chm;
    }
    if starts(&crate::onenote::MAGIC) {
        return Kind::OneNote;
    }
    if crate::sis::is_sis(data) {
        return Kind::Sis;
    }
    if starts(&crate::mail::TNEF_MAGIC) {
        return Kind::Tnef;
    }
    if starts(b"SZDD\x88\xf0\x27\x33") {
        return Kind::Szdd;
    }
    if memchr::memmem::find(&data[..data.len().min(512)], crate::mail::BINHEX_MARK).is_some() {
        return Kind::BinHex;
    }
    if crate::mail::is_mail(data) {
        return Kind::Mail;
    }
    if crate::html::is_html(data) {
        return Kind::Html;
    }
    if typed == 0 && crate::text::text_encoding(data).is_some() {
        return Kind::Text;
    }
    Kind::Other
}

/// Where an executable's overlay starts: the bytes past what its headers
/// account for (a PE's last section, an ELF's segments and section
/// table), where a self-extractor keeps its archive. `None` for a file
/// that is not a well-formed PE or ELF, or has no overlay.
pub fn overlay_start(data: &[u8]) -> Option<usize> {
    let end = if data.starts_with(b"MZ") {
        pe_end(data)?
    } else if data.starts_with(b"\x7fELF") {
        elf_end(data)?
    } else {
        return None;
    };
    (end < data.len()).then_some(end)
}

fn u16_at(d: &[u8], at: usize, le: bool) -> Option<u64> {
    let b: [u8; 2] = d.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u64::from(if le {
        u16::from_le_bytes(b)
    } else {
        u16::from_be_bytes(b)
    }))
}

fn u32_at(d: &[u8], at: usize, le: bool) -> Option<u64> {
    let b: [u8; 4] = d.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u64::from(if le {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    }))
}

fn u64_at(d: &[u8], at: usize, le: bool) -> Option<u64> {
    let b: [u8; 8] = d.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(if le {
        u64::from_le_bytes(b)
    } else {
        u64::from_be_bytes(b)
    })
}

/// The end of a PE image's last section in the file.
fn pe_end(d: &[u8]) -> Option<usize> {
    let pe = usize::try_from(u32_at(d, 0x3c, true)?).ok()?;
    if d.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let sections = u16_at(d, pe + 6, true)? as usize;
    let optional = u16_at(d, pe + 20, true)? as usize;
    let table = pe + 24 + optional;
    let mut end = table + sections * 40;
    for i in 0..sections {
        let s = table + i * 40;
        let size = u32_at(d, s + 16, true)?;
        let ptr = u32_at(d, s + 20, true)?;
        if size > 0 {
            end = end.max(usize::try_from(ptr + size).ok()?);
        }
    }
    Some(end)
}

/// The end of what an ELF file's headers account for: its loaded
/// segments and its section header table.
fn elf_end(d: &[u8]) -> Option<usize> {
    let wide = match d.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match d.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let word = |at: usize| {
        if wide {
            u64_at(d, at, le)
        } else {
            u32_at(d, at, le)
        }
    };
    let (phoff, shoff) = if wide {
        (word(0x20)?, word(0x28)?)
    } else {
        (word(0x1c)?, word(0x20)?)
    };
    let at = if wide { 0x36 } else { 0x2a };
    let (phentsize, phnum) = (u16_at(d, at, le)?, u16_at(d, at + 2, le)?);
    let (shentsize, shnum) = (u16_at(d, at + 4, le)?, u16_at(d, at + 6, le)?);
    let mut end = shoff.checked_add(shentsize * shnum)?;
    end = end.max(phoff.checked_add(phentsize * phnum)?);
    for i in 0..phnum {
        let ph = usize::try_from(phoff.checked_add(i * phentsize)?).ok()?;
        let (offset, filesz) = if wide {
            (
                u64_at(d, ph.saturating_add(8), le)?,
                u64_at(d, ph.saturating_add(32), le)?,
            )
        } else {
            (
                u32_at(d, ph.saturating_add(4), le)?,
                u32_at(d, ph.saturating_add(16), le)?,
            )
        };
        end = end.max(offset.checked_add(filesz)?);
    }
    usize::try_from(end).ok()
}

/// What an executable holds to be opened: a packed PE's image (UPX,
/// WWPack), an InstallShield MSI stub's table, a compiled AutoIt script's
/// archive, a PE it carries, in its overlay (see [`overlay_start`]) an
/// InstallShield stub's list of files at its start and an NSIS archive's
/// first header, and where a zip, CAB or 7z magic occurs in a PE after its
/// first byte or in an ELF's overlay (at most a few of each, in order), to
/// be tried as layers. A file that is none of these costs the header reads
/// and a few searches of its bytes.
pub fn embedded(data: &[u8]) -> Vec<(usize, Kind)> {
    // Magic bytes also occur by chance in a PE's code and data: enough
    // candidates of each kind that strays do not hide the real one.
    const MAX_EACH: usize = 16;
    let mut found = Vec::new();
    // A packed PE: its packed image (UPX), or the program (MEW, WWPack).
    if crate::upx::packed(data).is_some() {
        found.push((0, Kind::Upx));
    } else if data.starts_with(b"MZ") && crate::mew::packed(data).is_some() {
        found.push((0, Kind::Mew));
    } else if data.starts_with(b"MZ") && crate::wwpack::packed(data).is_some() {
        found.push((0, Kind::WwPack));
    }
    // An InstallShield MSI stub's table, anywhere in a PE, as ClamAV
    // finds it by its pattern.
    if data.starts_with(b"MZ")
        && let Some(at) = memchr::memmem::find_iter(data, crate::ishield::MSI_MARK)
            .take(MAX_EACH)
            .find(|&at| crate::ishield::is_msi_table(&data[at..]))
    {
        found.push((at, Kind::IsMsi));
    }
    // A compiled AutoIt script's archive, anywhere in a PE after its
    // start, as ClamAV's type signature finds it.
    if data.starts_with(b"MZ") {
        found.extend(
            memchr::memmem::find_iter(data, crate::autoit::MARK)
                .filter(|&at| at > 0 && matches!(data.get(at + 23), Some(b'5' | b'6')))
                .take(MAX_EACH)
                .map(|at| (at, Kind::AutoIt)),
        );
    }
    // A PE inside a PE, as ClamAV finds one: the first of its candidates
    // whose headers it accepts.
    if let Some(at) = embedded_pe(data) {
        found.push((at, Kind::EmbeddedPe));
    }
    let overlay = overlay_start(data);
    if let Some(from) = overlay {
        let overlay = &data[from..];
        // An InstallShield stub's list of files starts the overlay.
        if crate::ishield::is_stub(overlay) {
            found.push((from, Kind::InstallShield));
        }
        // An NSIS archive's first header: flags, then its mark.
        if let Some(at) = memchr::memmem::find(overlay, crate::nsis::MARK)
            && at >= 4
        {
            found.push((from + at - 4, Kind::Nsis));
        }
    }
    // A self-extractor's archive: in a PE anywhere after its first byte,
    // as ClamAV's type patterns find one in a PE's bytes (an unpacked
    // program keeps its archive in a section); in an ELF, in its overlay.
    let (from, region) = if data.starts_with(b"MZ") {
        (1, &data[1..])
    } else if let Some(from) = overlay {
        (from, &data[from..])
    } else {
        found.sort_unstable_by_key(|(at, _)| *at);
        return found;
    };
    for (magic, kind) in [
        (&b"PK\x03\x04"[..], Kind::Zip),
        (&b"MSCF\0\0\0\0"[..], Kind::Cab),
        (&b"7z\xbc\xaf\x27\x1c"[..], Kind::SevenZip),
    ] {
        found.extend(
            memchr::memmem::find_iter(region, magic)
                .take(MAX_EACH)
                .map(|at| (from + at, kind)),
        );
    }
    found.sort_unstable_by_key(|(at, _)| *at);
    found
}

/// The most candidates for a PE inside a PE that are checked (ClamAV
/// records at most 10 embedded objects of a layer).
const MAX_EMBEDDED_PE_CANDIDATES: usize = 10;

/// The largest PE inside a PE that is cut out (ClamAV's `MaxEmbeddedPE`).
const MAX_EMBEDDED_PE: usize = 40 << 20;

/// Where a PE file inside the PE `data` starts, as ClamAV finds one. Its
/// type pattern (`4d5a{60-300}50450000`) is reported, in practice, at every
/// `MZ` that some `PE\0\0` follows, however far [verified: an `MZ`
/// followed by 1,000 zero bytes is a candidate]; ClamAV keeps the first 10
/// (the file's own `MZ` among them), and takes the first after the first
/// byte whose headers it accepts, no further than 40 MiB from the end. It
/// is a layer from its `MZ` to the end of `data`; a PE inside it is found
/// in turn when that layer is opened. So a PE with more than nine stray
/// `MZ` before the one it carries carries nothing, for ClamAV as for giva.
fn embedded_pe(data: &[u8]) -> Option<usize> {
    if !data.starts_with(b"MZ") {
        return None;
    }
    let last_pe = memchr::memmem::rfind(data, b"PE\0\0")?;
    memchr::memmem::find_iter(data, b"MZ")
        .filter(|&at| last_pe >= at + 62)
        .take(MAX_EMBEDDED_PE_CANDIDATES)
        .filter(|&at| at > 0)
        .find(|&at| {
            data.len() - at <= MAX_EMBEDDED_PE
                && std::panic::catch_unwind(|| crate::exe::exe_info(&data[at..], 1))
                    .ok()
                    .flatten()
                    .is_some()
        })
}

/// Whether a 512-byte block is a tar header by its checksum: the sum of
/// its bytes with the checksum field read as spaces, in octal at 148. An
/// all-zero block is not a header.
fn tar_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if digits.is_empty() || block[0] == 0 {
        return false;
    }
    let Ok(stated) = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or(""), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stated
}

/// ClamAV's target type of `data`, from its first bytes, as `clamscan`
/// types files for its typed signatures: 1 PE (any file that starts with
/// `MZ`), 2 OLE2, 4 mail (one of [`MAIL_MAGICS`]), 5 graphics (GIF, PNG, JPEG, and any file that starts with
/// `BM` or a TIFF mark), 6 ELF, 9 Mach-O (thin, or universal with fewer
/// than 32 architectures), 10 PDF (`%PDF-` at the start, or `%PDF-` and a
/// version `x.` anywhere in the first 1,024 bytes), 11 Flash (`FWS`, `CWS`,
/// `ZWS`); 0 for every other file. Each rule was checked against
/// `clamscan` (see `docs/clamav-formats.md`).
pub fn target_type(data: &[u8]) -> u8 {
    let starts = |m: &[u8]| data.starts_with(m);
    if starts(b"MZ") {
        return 1;
    }
    if starts(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return 2;
    }
    if starts(b"GIF8")
        || starts(b"\x89PNG\r\n\x1a\n")
        || starts(&[0xff, 0xd8, 0xff])
        || starts(b"BM")
        || starts(b"II*\0")
        || starts(b"MM\0*")
    {
        return 5;
    }
    if starts(b"\x7fELF") {
        return 6;
    }
    if [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
    ]
    .iter()
    .any(|m| starts(m))
    {
        return 9;
    }
    if starts(&[0xca, 0xfe, 0xba, 0xbe])
        && data
            .get(4..8)
            .is_some_and(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) < 32)
    {
        return 9;
    }
    if starts(b"%PDF-") {
        return 10;
    }
    let head = &data[..data.len().min(1024)];
    if memchr::memmem::find_iter(head, b"%PDF-").any(|at| head.get(at + 6) == Some(&b'.')) {
        return 10;
    }
    if starts(b"FWS") || starts(b"CWS") || starts(b"ZWS") {
        return 11;
    }
    if MAIL_MAGICS.iter().any(|m| starts(m)) {
        return 4;
    }
    0
}

/// The first bytes that make a file mail for target-4 signatures, as
/// `clamscan` types it: these exact header names (case counts, and so
/// does the space after the colon), or an mbox `From ` line. A file that
/// starts with another header (`MIME-Version:`, `X-Mailer:`, `Sender:`)
/// is still opened as mail when it looks like one, but is not target 4.
const MAIL_MAGICS: &[&[u8]] = &[
    b"From ",
    b">From ",
    b"From: ",
    b"Received: ",
    b"Subject: ",
    b"Return-Path: ",
    b"Date: ",
    b"Message-ID: ",
    b"Message-Id: ",
    b"Delivered-To: ",
    b"To: ",
    b"Envelope-to: ",
    b"X-UIDL: ",
    b"X-Apparently-To: ",
    b"X-Envelope-From: ",
    b"X-Original-To: ",
    b"X-Real-To: ",
    b"X-Sieve: ",
    b"X-Symantec-TimeoutProtection:",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_types_by_first_bytes() {
        let cases: &[(&[u8], u8)] = &[
            (b"MZ", 1),
            (&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0], 2),
            (&[0xd0, 0xcf, 0x11, 0xe0], 0),
            (b"BMW", 5),
            (&[0xff, 0xd8, 0xff], 5),
            (&[0xff, 0xd8], 0),
            (b"\x7fELF", 6),
            (&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 31], 9),
            // A Java class, not typed by giva yet.
            (&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 32], 0),
            (b"%PDF-", 10),
            (b"xx%PDF-1.4", 10),
            (b"xx%PDF-x", 0),
            (b"CWS", 11),
            (b"PK\x03\x04", 0),
            (b"", 0),
            (b"From: a@example.com\n", 4),
            (b"From someone Tue Jan  1 00:00:00 2000\n", 4),
            (b"X-Symantec-TimeoutProtection:0\n", 4),
            (b"Message-Id: <x@y>\n", 4),
            // Not these, as in `clamscan`.
            (b"Message-id: <x@y>\n", 0),
            (b"from: a@example.com\n", 0),
            (b"Subject:x\n", 0),
            (b"MIME-Version: 1.0\n", 0),
            (b"X-Mailer: m\n", 0),
        ];
        for (data, want) in cases {
            assert_eq!(target_type(data), *want, "{data:?}");
        }
        let mut late = vec![b' '; 1017];
        late.extend_from_slice(b"%PDF-1.4");
        assert_eq!(target_type(&late), 10);
        late.insert(0, b' ');
        assert_eq!(target_type(&late), 0);
    }

    #[test]
    fn hostile_executable_headers_give_no_overlay_and_no_panic() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(0x40, 0);
        // Program headers claimed at the end of the address space.
        elf[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(overlay_start(&elf), None);
        let mut pe = b"MZ".to_vec();
        pe.resize(0x40, 0);
        pe[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(overlay_start(&pe), None);
        assert_eq!(overlay_start(b"MZ"), None);
        assert!(embedded(b"random bytes PK\x03\x04 that are no executable").is_empty());
    }

    #[test]
    fn magic_decides_not_the_name() {
        assert_eq!(detect(b"PK\x03\x04rest"), Kind::Zip);
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Kind::Gzip);
        assert_eq!(detect(b"BZh91AY&SY"), Kind::Bzip2);
        assert_eq!(detect(b"BZh\0"), Kind::Other);
        assert_eq!(detect(b"070701000"), Kind::CpioNewc);
        assert_eq!(detect(b"!<arch>\ndebian"), Kind::Ar);
        assert_eq!(detect(b"plain text"), Kind::Text);
        assert_eq!(detect(b"bin\0ary"), Kind::Other);
        assert_eq!(detect(b""), Kind::Other);
        let mut tar = vec![0u8; 1024];
        tar[..4].copy_from_slice(b"file");
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar), Kind::PosixTar);
        let mut old = vec![0u8; 512];
        old[..4].copy_from_slice(b"file");
        let sum: u32 = old.iter().map(|&b| u32::from(b)).sum::<u32>() + 8 * 32;
        old[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert_eq!(detect(&old), Kind::OldTar);
        old[0] = b'g';
        assert_eq!(detect(&old), Kind::Other, "a wrong checksum is no header");
    }
}
