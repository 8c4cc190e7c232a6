//! Read-only memory maps: one of the two modules of giva that define
//! `unsafe` code (the other is the engine's SIMD filter).
//!
//! # Safety
//!
//! Mapping a file is sound only while nobody changes or truncates it: the
//! bytes seen through the slice could change under a `&[u8]`, and a
//! truncated file raises SIGBUS on access. So mapping is a choice that the
//! caller makes and vouches for, by calling the `unsafe`
//! [`MappedFile::open`] or [`MappedFile::from_file`]. giva's policy, which
//! every caller follows:
//!
//! - **Compiled databases are mapped.** They are written to a temporary
//!   name and renamed into place (a rename never modifies the old,
//!   still-mapped inode), and their content is verified against a SHA-256
//!   after mapping ([`Database::open`](crate::Database::open)).
//! - **Local files named by the operator may be mapped** by `giva scan`,
//!   as `clamscan` and ripgrep do: the operator accepts that a file
//!   truncated during its own scan kills the scan.
//! - **Files that may change under a scan are read, never mapped.** Guest
//!   content arrives over the network and is streamed; the appliance never
//!   maps a guest's file, and the engine's own file scan
//!   (`Engine::scan_file`) reads.
//! - **Spooled files are mapped** ([`MappedFile::open_spool`]): a
//!   container's member (or a streamed container) too large to hold in
//!   memory is written to an unlinked temporary file that only its writer
//!   holds, and mapped once the writer is done with it.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

/// A file mapped read-only into memory. Dereferences to its bytes.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
}

impl MappedFile {
    /// Maps `path` read-only. An empty file yields an empty slice (mapping a
    /// zero-length file is an error on most systems, so it is not mapped).
    ///
    /// # Safety
    ///
    /// Nobody may modify or truncate the file while the map lives (see the
    /// module docs for giva's policy).
    ///
    /// # Errors
    ///
    /// Any I/O error from opening, inspecting or mapping the file.
    pub unsafe fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the caller's promise covers the file behind `path`.
        unsafe { Self::from_file(&file) }
    }

    /// Maps an already opened file read-only.
    ///
    /// # Safety
    ///
    /// As for [`open`](Self::open).
    ///
    /// # Errors
    ///
    /// Any I/O error from inspecting or mapping the file.
    pub unsafe fn from_file(file: &File) -> io::Result<Self> {
        if file.metadata()?.len() == 0 {
            return Ok(MappedFile { map: None });
        }
        // SAFETY: the caller promises that nobody modifies or truncates the
        // file while it is mapped, and the map is read-only.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(MappedFile { map: Some(map) })
    }

    /// Maps a compiled database file: the one kind of file that this crate
    /// maps by itself, under the policy in the module docs (written by
    /// rename, verified against its checksum after mapping).
    ///
    /// # Errors
    ///
    /// Any I/O error from opening, inspecting or mapping the file.
    pub(crate) fn open_database(path: &Path) -> io::Result<Self> {
        // SAFETY: compiled databases are replaced by rename, never modified
        // in place, and `Database::open` verifies the checksum of what it
        // mapped before trusting any of it.
        unsafe { Self::open(path) }
    }

    /// Maps a local file that the operator named for an on-demand scan
    /// (`giva scan PATH`): the one kind of untrusted file giva maps, under
    /// the policy in the module docs. The operator accepts, as with
    /// `clamscan` and ripgrep, that a file truncated while it is scanned
    /// ends the scan with SIGBUS; a file whose bytes change mid-scan gives
    /// a verdict on a mix of old and new bytes. Guest content never comes
    /// here: the appliance streams it.
    ///
    /// # Errors
    ///
    /// Any I/O error from opening, inspecting or mapping the file.
    pub fn open_operator_file(path: &Path) -> io::Result<Self> {
        // SAFETY: giva's policy (module docs) for files named by the
        // operator on the command line: the operator vouches that they are
        // not modified while `giva scan` reads them.
        unsafe { Self::open(path) }
    }

    /// Maps a spooled file: an unlinked temporary file (no name, so no
    /// other process can open it) that the caller wrote and will not write
    /// again, under the policy in the module docs.
    ///
    /// # Errors
    ///
    /// Any I/O error from inspecting or mapping the file.
    pub fn open_spool(file: &File) -> io::Result<Self> {
        // SAFETY: giva's policy (module docs) for spooled files: unlinked
        // at creation, held only by this process, and no longer written.
        unsafe { Self::from_file(file) }
    }

    /// Asks the kernel to map the pages of `range` (byte offsets into the
    /// file) now, in one call, rather than on faults as they are first
    /// read. Only advice: a range out of bounds, or a kernel without
    /// `MADV_POPULATE_READ` (before Linux 5.14), leaves the pages to be
    /// faulted in as before.
    pub fn populate(&self, range: std::ops::Range<usize>) {
        #[cfg(target_os = "linux")]
        if let Some(map) = &self.map
            && range.start < range.end
            && range.end <= map.len()
        {
            let _ = map.advise_range(memmap2::Advice::PopulateRead, range.start, range.len());
        }
        #[cfg(not(target_os = "linux"))]
        let _ = range;
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self
    }
}
