//! Read-only memory maps: one of the two modules of giva with `unsafe` code
//! (the other is the engine's SIMD filter, `engine/src/simd.rs`).
//!
//! # Safety
//!
//! `memmap2::Mmap::map` is unsafe because the mapped file may be changed or
//! truncated by another process while it is mapped: the bytes seen through
//! the slice could change under a `&[u8]`, and a truncated file raises
//! SIGBUS on access. giva maps only files it trusts not to change in place:
//!
//! - compiled databases, which are written to a temporary name and renamed
//!   into place (a rename never modifies the old, still-mapped inode), and
//!   whose content is verified against a SHA-256 after mapping;
//! - local files given to `giva scan` by the operator, exactly as `clamscan`
//!   and ripgrep do.
//!
//! Guest content that arrives over the network is never mapped; it is
//! streamed. Callers pick a map only where the trade-off above holds.
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
    /// # Errors
    ///
    /// Any I/O error from opening, inspecting or mapping the file.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        Self::from_file(&file)
    }

    /// Maps an already opened file read-only.
    ///
    /// # Errors
    ///
    /// Any I/O error from inspecting or mapping the file.
    pub fn from_file(file: &File) -> io::Result<Self> {
        if file.metadata()?.len() == 0 {
            return Ok(MappedFile { map: None });
        }
        // SAFETY: see the module docs: only files that are not modified in
        // place while mapped are passed here, and the map is read-only.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(MappedFile { map: Some(map) })
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
