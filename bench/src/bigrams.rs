//! `bench bigrams`: the byte-pair statistics the engine rates atoms with
//! (`engine/src/index/bigrams.bin`), counted over real files of this
//! machine that are neither in the real-file corpus (`real.rs`) nor the
//! source the real signatures are cut from (the Rust toolchain).
//!
//! The table is 256 costs of a first byte, then 65,536 costs of a byte
//! after a byte (row: the byte before), each `-log2 p` in quarter bits,
//! at most 255. Each source directory adds at most [`PER_ROOT`] bytes, so
//! that no one kind of file (machine code, C headers, translations)
//! outweighs the rest.

use std::path::{Path, PathBuf};

/// The training files: machine code (a compiler, helper programs, a JVM),
/// C headers, Perl, Vim scripts, message catalogues. Each appears under
/// none of the real corpus' roots.
pub const ROOTS: &[&str] = &[
    "/usr/lib/gcc",
    "/usr/libexec",
    "/usr/sbin",
    "/usr/lib/jvm",
    "/usr/include",
    "/usr/share/perl",
    "/usr/share/vim",
    "/usr/share/locale",
];

/// Most bytes read under one root.
pub const PER_ROOT: u64 = 48 << 20;

/// Counts.
#[derive(Debug)]
pub struct Counts {
    first: Vec<u64>,
    pairs: Vec<u64>,
    /// Bytes counted.
    pub bytes: u64,
    /// Files counted.
    pub files: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            first: vec![0; 256],
            pairs: vec![0; 65536],
            bytes: 0,
            files: 0,
        }
    }
}

impl Counts {
    /// Adds one file's bytes.
    pub fn add(&mut self, b: &[u8]) {
        for &x in b {
            self.first[usize::from(x)] += 1;
        }
        for w in b.windows(2) {
            self.pairs[usize::from(w[0]) << 8 | usize::from(w[1])] += 1;
        }
        self.bytes += b.len() as u64;
        self.files += 1;
    }

    /// The table: costs in quarter bits. Each row is smoothed with 256
    /// pseudo-counts spread as the bytes are spread alone, so that a pair
    /// never seen after a common byte is dear, and a row seen little
    /// stays close to the bytes' own costs.
    pub fn table(&self) -> Vec<u8> {
        let cost = |p: f64| (-(p.log2()) * 4.0).round().clamp(0.0, 255.0) as u8;
        let total: u64 = self.first.iter().sum();
        let uni: Vec<f64> = self
            .first
            .iter()
            .map(|&c| (c as f64 + 0.5) / (total as f64 + 128.0))
            .collect();
        let mut out: Vec<u8> = uni.iter().map(|&p| cost(p)).collect();
        for a in 0..256 {
            let row = &self.pairs[a << 8..(a + 1) << 8];
            let n: u64 = row.iter().sum();
            for (b, &c) in row.iter().enumerate() {
                let p = (c as f64 + 256.0 * uni[b]) / (n as f64 + 256.0);
                out.push(cost(p));
            }
        }
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// Counts the files under `roots`, at most `per_root` bytes under each.
pub fn count(roots: &[&str], per_root: u64) -> Counts {
    let mut c = Counts::default();
    for root in roots {
        let mut files = Vec::new();
        walk(Path::new(root), &mut files);
        let mut taken = 0u64;
        for f in files {
            if taken >= per_root {
                break;
            }
            let Ok(b) = std::fs::read(&f) else { continue };
            let b = &b[..b.len().min((per_root - taken) as usize)];
            taken += b.len() as u64;
            c.add(b);
        }
        eprintln!("{root}: {:.1} MB", taken as f64 / 1e6);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frequent_pair_is_cheap_and_an_unseen_one_dear() {
        let mut c = Counts::default();
        c.add(&b"the cat sat on the mat; the end".repeat(50));
        c.add(&[0u8; 4000]);
        let t = c.table();
        assert_eq!(t.len(), 256 + 65536);
        let pair = |a: u8, b: u8| t[256 + (usize::from(a) << 8 | usize::from(b))];
        assert!(pair(b't', b'h') < pair(b't', b'q'));
        assert!(pair(0, 0) < 4, "zeros follow zeros: {}", pair(0, 0));
        assert!(pair(0x9a, 0x3e) > 4 * 7, "{}", pair(0x9a, 0x3e));
    }
}
