//! Decomposition of file content: a file's type by its magic (ClamAV's
//! type names), containers opened into their members, and every layer
//! scanned by the engine, under ClamAV's limits.
//!
//! - [`kind`]: types by magic ([`detect`]).
//! - `formats`: the members of each container type: zip (stored, deflate,
//!   deflate64, bzip2, lzma, xz, PPMd, implode), gzip, bzip2, xz, zstd, tar
//!   (ustar, GNU, pax, old), cpio (newc, odc, old binary in both byte
//!   orders), ar, 7z (LZMA, LZMA2, PPMd, BZip2, Deflate, copy), Microsoft
//!   CAB (stored, MSZIP, LZX); `arj` (stored, methods 1-4, giva's own
//!   decoder) and `iso` (ISO 9660, primary or Joliet tree). A member in a
//!   method not decoded (CAB's Quantum, zstd in a zip) or encrypted is
//!   reported as not scanned.
//! - Mail and documents: `mail` (RFC 822, mbox, MIME by `mail-parser`;
//!   uuencode, BinHex, TNEF), SZDD (`formats`), `ole2` (compound files by
//!   `cfb`; object packages, PowerPoint's embedded objects), `pdf`
//!   (streams and their filters), `rtf` (embedded objects), `html`
//!   (`data:` URIs) and `html_norm` (normalized HTML, target 3), `chm`
//!   (LZX by `lzxd`), `onenote` (embedded files), `sis` (Symbian
//!   packages), `text` (normalized text, target 7).
//! - `extract`: a member's bytes under the caps; large ones go to an
//!   unlinked temporary file and are mapped.
//! - [`walk`]: the tree walk ([`Decomposer`]), the limits ([`Limits`]) and
//!   what it reports ([`Report`]): detections with their member path, and
//!   every part not scanned, with why. A part not scanned is never a clean
//!   result.
//!
//! An executable's overlay (the bytes past what its PE or ELF headers
//! account for) is read as an InstallShield stub's list of files
//! (`ishield`) when it starts as one, and searched for an NSIS archive
//! (`nsis`) and a zip, CAB or 7z (a self-extractor's archive); one that
//! opens is a layer named by its offset (`setup.exe!@40960!payload.dll`);
//! a magic that does not open is no archive and costs nothing more. A PE
//! packed by UPX (NRV2B, NRV2D, NRV2E; `upx`), WWPack32 (`wwpack`) or MEW 11
//! (`mew`) is unpacked, its program a layer under `UPX`, `WWPack` or `MEW`;
//! a PE carried in a PE (`kind::embedded`) is a layer from its `MZ` to the
//! end. An executable's structure (`exe`: entry point, sections, a 32-bit
//! PE's imports) is read as ClamAV reads it, for the engine's executable
//! offsets and the hashes of its parts. A compiled AutoIt
//! script's archive in a PE is opened (`autoit`), and so is an
//! InstallShield MSI stub's table (`ishield`).
//!
//! Every layer, the file itself included, is scanned with the whole
//! database (body signatures of target type 0 and hash signatures apply to
//! each layer, as in ClamAV).

#![forbid(unsafe_code)]

mod arj;
mod autoit;
mod chm;
mod exe;
mod exe_ordinals;
pub mod extract;
mod formats;
mod html;
mod html_entities;
pub mod html_norm;
mod ishield;
mod iso;
pub mod kind;
pub mod limits;
mod mail;
mod mew;
mod nsis;
mod ole2;
mod onenote;
mod pdf;
mod pdf_crypt;
mod rtf;
mod sis;
mod text;
mod upx;
pub mod walk;
mod wwpack;

pub use exe::exe_info;
pub use kind::{Kind, detect, embedded, overlay_start, target_type};
pub use limits::Limits;
pub use walk::{Decomposer, Found, Gap, MemberPath, Report, typed_options};
