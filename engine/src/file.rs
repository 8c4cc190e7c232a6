//! Scanning files and readers.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use giva_signatures::map::MappedFile;

use crate::engine::Engine;
use crate::error::ScanError;
use crate::result::ScanResult;
use crate::scanner::{Feed, ScanOptions};

/// Files at least this large are memory-mapped by [`Engine::scan_file`];
/// smaller ones are read.
pub const MMAP_THRESHOLD: u64 = 64 << 10;

const READ_CHUNK: usize = 256 << 10;

/// A mapped file is scanned this many bytes at a time, each window's pages
/// mapped in one call first ([`MappedFile::populate`]): cheaper than a
/// fault per few pages, and unlike mapping the whole file up front it
/// reads no further ahead of the scan than the kernel's read-ahead would,
/// and nothing past a first detection.
const MAP_WINDOW: usize = 4 << 20;

/// How [`Engine::scan_file_with`] gets at a file's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileAccess {
    /// Map files of at least [`MMAP_THRESHOLD`] bytes, read smaller ones.
    #[default]
    Auto,
    /// Always map (see the caveats on [`Engine::scan_file`]).
    Map,
    /// Always read in chunks.
    Read,
}

impl Engine {
    /// Scans a local file: memory-mapped when it is at least
    /// [`MMAP_THRESHOLD`] bytes, read in chunks otherwise. Only for files
    /// that are not modified in place while being scanned (see
    /// [`giva_signatures::map`]); stream untrusted content with
    /// [`scan_reader`](Engine::scan_reader) instead.
    ///
    /// # Errors
    ///
    /// [`ScanError::Io`] if the file cannot be opened, mapped or read.
    pub fn scan_file(&self, path: &Path, opts: &ScanOptions) -> Result<ScanResult, ScanError> {
        self.scan_file_with(path, opts, FileAccess::Auto)
    }

    /// [`scan_file`](Engine::scan_file) with an explicit choice between
    /// mapping and reading.
    ///
    /// # Errors
    ///
    /// [`ScanError::Io`] if the file cannot be opened, mapped or read.
    pub fn scan_file_with(
        &self,
        path: &Path,
        opts: &ScanOptions,
        access: FileAccess,
    ) -> Result<ScanResult, ScanError> {
        let io = |source| ScanError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let map = match access {
            FileAccess::Auto => len >= MMAP_THRESHOLD,
            FileAccess::Map => true,
            FileAccess::Read => false,
        };
        if map {
            let map = MappedFile::from_file(&file).map_err(io)?;
            let mut scanner = self.scanner(opts.clone());
            scanner.reset(Some(map.len() as u64));
            for (i, piece) in map.chunks(MAP_WINDOW).enumerate() {
                let at = i * MAP_WINDOW;
                map.populate(at..at + piece.len());
                if scanner.feed(piece) == Feed::Done {
                    break;
                }
            }
            Ok(scanner.finish())
        } else {
            self.scan_read(file, Some(len), opts).map_err(|e| match e {
                ScanError::Read(source) => io(source),
                other => other,
            })
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
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScanError::Read(e)),
            };
            if scanner.feed(&buf[..n]) == Feed::Done {
                break;
            }
        }
        Ok(scanner.finish())
    }
}
