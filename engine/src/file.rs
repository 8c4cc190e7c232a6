//! Scanning files and readers.
//!
//! [`Engine::scan_file`] reads: a file that may change under the scan is
//! never mapped (see [`giva_signatures::map`] for giva's policy). A caller
//! that has mapped a file under that policy scans the mapping with
//! [`Engine::scan_mapped`].

use std::fs::File;
use std::io::Read;
use std::path::Path;

use giva_signatures::map::MappedFile;

use crate::engine::Engine;
use crate::error::ScanError;
use crate::result::ScanResult;
use crate::scanner::{Feed, ScanOptions};

/// Files smaller than this are not worth mapping: a caller that maps
/// files under giva's policy (`giva scan`) reads smaller ones.
pub const MMAP_THRESHOLD: u64 = 64 << 10;

const READ_CHUNK: usize = 256 << 10;

/// A mapped file is scanned this many bytes at a time, each window's pages
/// mapped in one call first ([`MappedFile::populate`]): cheaper than a
/// fault per few pages, and unlike mapping the whole file up front it
/// reads no further ahead of the scan than the kernel's read-ahead would,
/// and nothing past a first detection.
const MAP_WINDOW: usize = 4 << 20;

impl Engine {
    /// Scans a local file, read in chunks.
    ///
    /// # Errors
    ///
    /// [`ScanError::Io`] if the file cannot be opened or read.
    pub fn scan_file(&self, path: &Path, opts: &ScanOptions) -> Result<ScanResult, ScanError> {
        let io = |source| ScanError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        self.scan_read(file, Some(len), opts).map_err(|e| match e {
            ScanError::Read(source) => io(source),
            other => other,
        })
    }

    /// Scans a mapped file, a window at a time.
    pub fn scan_mapped(&self, map: &MappedFile, opts: &ScanOptions) -> ScanResult {
        let mut scanner = self.scanner(opts.clone());
        scanner.reset(Some(map.len() as u64));
        for (i, piece) in map.chunks(MAP_WINDOW).enumerate() {
            let at = i * MAP_WINDOW;
            map.populate(at..at + piece.len());
            if scanner.feed(piece) == Feed::Done {
                break;
            }
        }
        if self.needs_input() {
            scanner.finish_with(map)
        } else {
            scanner.finish()
        }
    }

    /// Scans everything `reader` yields, in chunks. The size is not known
    /// in advance, so every hash algorithm is computed if the database has
    /// any hash entry.
    ///
    /// # Errors
    ///
    /// [`ScanError::Read`] if reading fails.
    pub fn scan_reader<R: Read>(
        &self,
        reader: R,
        opts: &ScanOptions,
    ) -> Result<ScanResult, ScanError> {
        self.scan_read(reader, None, opts)
    }

    fn scan_read<R: Read>(
        &self,
        mut reader: R,
        size: Option<u64>,
        opts: &ScanOptions,
    ) -> Result<ScanResult, ScanError> {
        let mut scanner = self.scanner(opts.clone());
        scanner.reset(size);
        let mut buf = vec![0u8; READ_CHUNK];
        // The input, kept (up to a bound) for the checks evaluated over it.
        let mut kept: Option<Vec<u8>> = self.needs_input().then(Vec::new);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScanError::Read(e)),
            };
            if let Some(k) = &mut kept {
                // Past ClamAV's `PCREMaxFileSize` the input is scanned
                // without the checks.
                if (k.len() + n) as u64 <= crate::PCRE_MAX_INPUT {
                    k.extend_from_slice(&buf[..n]);
                } else {
                    kept = None;
                }
            }
            if scanner.feed(&buf[..n]) == Feed::Done {
                break;
            }
        }
        Ok(match &kept {
            Some(k) => scanner.finish_with(k),
            None => scanner.finish(),
        })
    }
}
