//! A member's bytes, read from its decoder under a cap: in memory while
//! small, in an unlinked temporary file (mapped) past `spill_above`, so a
//! large member never sits in RAM.

use std::io::{Read, Write};
use std::time::Instant;

use crate::limits::Limits;

/// The bytes of an extracted member.
pub enum Extracted {
    /// Held in memory.
    Memory(Vec<u8>),
    /// Spilled to an unlinked temporary file, mapped.
    Mapped(giva_signatures::map::MappedFile),
}

impl std::fmt::Debug for Extracted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Extracted::Memory(v) => write!(f, "Memory({} bytes)", v.len()),
            Extracted::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
        }
    }
}

impl std::ops::Deref for Extracted {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Extracted::Memory(v) => v,
            Extracted::Mapped(m) => m,
        }
    }
}

/// Why a member was not extracted whole.
#[derive(Debug)]
pub enum Cut {
    /// It is larger than `max_file_size`.
    TooLarge,
    /// It expands past `max_ratio` times its compressed size.
    Ratio,
    /// The decoder failed: the data is corrupt or truncated.
    Corrupt(std::io::Error),
    /// The deadline passed while it was decoded.
    Time,
}

/// Bytes gathered in order: in memory up to `spill_above`, then in an
/// unlinked temporary file, mapped at the end.
#[derive(Debug)]
pub struct Spool {
    mem: Vec<u8>,
    file: Option<std::fs::File>,
    len: u64,
    spill_above: u64,
    temp_dir: Option<std::path::PathBuf>,
}

impl Spool {
    /// An empty spool under `limits`' spill size and temporary directory.
    pub fn new(limits: &Limits) -> Self {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            spill_above: limits.spill_above,
            temp_dir: limits.temp_dir.clone(),
        }
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`.
    ///
    /// # Errors
    ///
    /// The temporary file cannot be made or written.
    pub fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.len += bytes.len() as u64;
        match &mut self.file {
            Some(f) => f.write_all(bytes),
            None if self.len > self.spill_above => {
                let mut f = match &self.temp_dir {
                    Some(d) => tempfile::tempfile_in(d),
                    None => tempfile::tempfile(),
                }?;
                f.write_all(&self.mem)?;
                f.write_all(bytes)?;
                self.mem = Vec::new();
                self.file = Some(f);
                Ok(())
            }
            None => {
                self.mem.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// The bytes gathered.
    ///
    /// # Errors
    ///
    /// The temporary file cannot be mapped.
    pub fn finish(self) -> std::io::Result<Extracted> {
        match self.file {
            None => Ok(Extracted::Memory(self.mem)),
            Some(f) => Ok(Extracted::Mapped(
                giva_signatures::map::MappedFile::open_spool(&f)?,
            )),
        }
    }
}

/// Reads `reader` to its end: at most `limits.max_file_size` bytes (and,
/// when `compressed` is known, at most `max_ratio` times that past
/// `ratio_floor`), and no later than `deadline`: a decoder that is slow on
/// purpose is cut off between its reads of 64 KiB.
///
/// # Errors
///
/// [`Cut`]: a limit, or a decoder error. Nothing partial is returned: a
/// member not read whole is not scanned as if it were.
pub fn read_member(
    mut reader: impl Read,
    compressed: Option<u64>,
    limits: &Limits,
    deadline: Option<Instant>,
) -> Result<Extracted, Cut> {
    let mut spool = Spool::new(limits);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Cut::Time);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Cut::Corrupt(e)),
        };
        let total = spool.len() + n as u64;
        if total > limits.max_file_size {
            return Err(Cut::TooLarge);
        }
        if let Some(c) = compressed
            && limits.max_ratio > 0
            && total > limits.ratio_floor
            && total / c.max(1) > limits.max_ratio
        {
            return Err(Cut::Ratio);
        }
        spool.push(&buf[..n]).map_err(Cut::Corrupt)?;
    }
    spool.finish().map_err(Cut::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_stays_in_memory_large_spills_and_caps_hold() {
        let limits = Limits {
            spill_above: 100,
            max_file_size: 1000,
            ..Limits::default()
        };
        let small = read_member(&[7u8; 50][..], None, &limits, None).unwrap();
        assert!(matches!(small, Extracted::Memory(_)));
        assert_eq!(&*small, &[7u8; 50][..]);
        let large = read_member(&[9u8; 500][..], None, &limits, None).unwrap();
        assert!(matches!(large, Extracted::Mapped(_)));
        assert_eq!(&*large, &[9u8; 500][..]);
        assert!(matches!(
            read_member(&[0u8; 1001][..], None, &limits, None),
            Err(Cut::TooLarge)
        ));
        let ratio = Limits {
            ratio_floor: 10,
            max_ratio: 5,
            ..limits
        };
        assert!(matches!(
            read_member(&[0u8; 200][..], Some(2), &ratio, None),
            Err(Cut::Ratio)
        ));
        // A decoder that crawls on for ever is cut off at the deadline.
        struct Crawl;
        impl Read for Crawl {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(5));
                buf[0] = 1;
                Ok(1)
            }
        }
        let deadline = Instant::now() + std::time::Duration::from_millis(50);
        assert!(matches!(
            read_member(Crawl, None, &Limits::default(), Some(deadline)),
            Err(Cut::Time)
        ));
        assert!(Instant::now() < deadline + std::time::Duration::from_secs(1));
    }
}
