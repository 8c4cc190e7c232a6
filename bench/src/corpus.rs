//! The corpus generator: files of log-uniform size (1 KiB to 64 MiB) with
//! random, text-like or executable-like content, some of them with planted
//! matches of the generated signatures, and `manifest.json` listing the
//! expected detections.
//!
//! Executable-like files start with an `MZ` header that is not a valid PE.
//! `clamscan` disables `EOF-n` offsets on such files (clamav-formats.md
//! §14.3), so `EOF-n` signatures are planted only in the other kinds.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::sigs::{self, Off, PLANTED_BODY, PLANTED_LOGICAL};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct CorpusSpec {
    /// The seed.
    pub seed: u64,
    /// Total size in bytes (the last file is cut to fit).
    pub size: u64,
    /// Smallest file.
    pub min_file: u64,
    /// Largest file.
    pub max_file: u64,
    /// Share of files that get planted matches.
    pub plant_share: f64,
}

impl CorpusSpec {
    /// The defaults for a total `size`.
    pub fn new(seed: u64, size: u64) -> CorpusSpec {
        CorpusSpec {
            seed,
            size,
            min_file: 1 << 10,
            max_file: 64 << 20,
            plant_share: 0.3,
        }
    }

    /// A directory name that identifies the corpus.
    pub fn dir_name(&self) -> String {
        format!("corpus-s{}-{}", self.seed, self.size)
    }
}

/// One planted match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Plant {
    /// "body", "logical" or "hash".
    pub kind: String,
    /// The signature's index within its kind.
    pub index: usize,
    /// The signature name as written in the source.
    pub name: String,
    /// Where the (first) planted bytes start.
    pub offset: u64,
}

/// One file of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the corpus directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// "random", "text" or "exe".
    pub kind: String,
    /// Planted matches.
    pub plants: Vec<Plant>,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The seed.
    pub seed: u64,
    /// Total bytes.
    pub total_bytes: u64,
    /// The files.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    ///
    /// # Errors
    ///
    /// I/O or JSON errors.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(dir.join("manifest.json"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The expected `(path, name)` detections for a signature set with
    /// `body` body, `logical` logical and `hashes` hash signatures, with
    /// ClamAV's `.UNOFFICIAL` suffix.
    pub fn expected(
        &self,
        body: usize,
        logical: usize,
        hashes: usize,
    ) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for f in &self.files {
            for p in &f.plants {
                let present = match p.kind.as_str() {
                    "body" => p.index < body,
                    "logical" => p.index < logical,
                    _ => hashes > 0,
                };
                if present {
                    out.insert((f.path.clone(), format!("{}.UNOFFICIAL", p.name)));
                }
            }
        }
        out
    }
}

/// Fills `buf` with words, commas and line breaks: English-like text.
pub(crate) fn text_fill(rng: &mut Rng, buf: &mut [u8]) {
    let mut i = 0;
    let mut col = 0;
    while i < buf.len() {
        let w = sigs::word(rng).as_bytes();
        for &b in w {
            if i < buf.len() {
                buf[i] = b;
                i += 1;
            }
        }
        col += w.len() + 1;
        if i < buf.len() {
            buf[i] = if col > 72 {
                col = 0;
                b'\n'
            } else if rng.below(16) == 0 {
                b','
            } else {
                b' '
            };
            i += 1;
        }
    }
}

fn exe_fill(rng: &mut Rng, buf: &mut [u8]) {
    // Mostly low-entropy "code" (a few opcodes and zeros) with some random
    // runs and strings, under an MZ header whose e_lfanew points to junk.
    let mut i = 0;
    let ops: [u8; 12] = [
        0x00, 0x00, 0x00, 0x8b, 0x89, 0x48, 0xe8, 0xff, 0x55, 0xc3, 0x90, 0x0f,
    ];
    while i < buf.len() {
        let run = rng.range(16, 512) as usize;
        let end = (i + run).min(buf.len());
        match rng.below(4) {
            0 => rng.fill(&mut buf[i..end]),
            1 => text_fill(rng, &mut buf[i..end]),
            _ => {
                for b in &mut buf[i..end] {
                    *b = ops[(rng.next_u64() % ops.len() as u64) as usize];
                }
            }
        }
        i = end;
    }
    let n = buf.len().min(64);
    buf[..n].fill(0);
    buf[0] = b'M';
    if buf.len() > 1 {
        buf[1] = b'Z';
    }
    if buf.len() >= 64 {
        buf[60..64].copy_from_slice(&0x40u32.to_le_bytes());
    }
}

/// Places `bytes` at a free position in `buf` within `lo..=hi` (start), or
/// returns `None`.
fn place(
    rng: &mut Rng,
    buf: &mut [u8],
    used: &mut Vec<(u64, u64)>,
    bytes: &[u8],
    lo: u64,
    hi: u64,
) -> Option<u64> {
    let len = bytes.len() as u64;
    if buf.len() as u64 <= len || lo > hi {
        return None;
    }
    let hi = hi.min(buf.len() as u64 - len);
    if lo > hi {
        return None;
    }
    for _ in 0..32 {
        let at = rng.range(lo, hi);
        // Keep a margin so neighbours cannot form a different match.
        if used
            .iter()
            .all(|&(a, b)| at + len + 64 <= a || at >= b + 64)
        {
            buf[at as usize..(at + len) as usize].copy_from_slice(bytes);
            used.push((at, at + len));
            return Some(at);
        }
    }
    None
}

fn plant_body(
    rng: &mut Rng,
    seed: u64,
    i: usize,
    buf: &mut [u8],
    used: &mut Vec<(u64, u64)>,
    exe: bool,
) -> Option<Plant> {
    let sig = sigs::body_sig(seed, i);
    let bytes = sig.pattern.instance(rng);
    let n = buf.len() as u64;
    let at = match sig.offset {
        Off::Any => place(rng, buf, used, &bytes, 64, n.saturating_sub(1)),
        Off::Abs(o) => place(rng, buf, used, &bytes, u64::from(o), u64::from(o)),
        Off::Float(o, m) => place(rng, buf, used, &bytes, u64::from(o), u64::from(o + m)),
        Off::Eof(back) if !exe && n >= u64::from(back) + 128 => {
            let at = n - u64::from(back);
            place(rng, buf, used, &bytes, at, at)
        }
        Off::Eof(_) => None,
    }?;
    Some(Plant {
        kind: "body".into(),
        index: i,
        name: sig.name,
        offset: at,
    })
}

fn plant_logical(
    rng: &mut Rng,
    seed: u64,
    i: usize,
    buf: &mut [u8],
    used: &mut Vec<(u64, u64)>,
) -> Option<Plant> {
    let sig = sigs::logical_sig(seed, i);
    let want = sig.plant_set(rng);
    let n = buf.len() as u64;
    let mut first = None;
    let saved = used.clone();
    for s in want {
        let bytes = sig.subs[s].instance(rng);
        match place(rng, buf, used, &bytes, 64, n.saturating_sub(1)) {
            Some(at) => {
                first.get_or_insert(at);
            }
            None => {
                // Could not place every part. The parts already written
                // stay in the file, but without this one the expression is
                // false, so nothing is recorded.
                *used = saved;
                return None;
            }
        }
    }
    Some(Plant {
        kind: "logical".into(),
        index: i,
        name: sig.name,
        offset: first?,
    })
}

/// Fills `buf` with content of `kind`: "random", "text" or "exe".
pub fn fill(kind: &str, rng: &mut Rng, buf: &mut [u8]) {
    match kind {
        "text" => text_fill(rng, buf),
        "exe" => exe_fill(rng, buf),
        _ => rng.fill(buf),
    }
}

/// Log-uniform sizes adding up to `spec.size`.
fn sizes(spec: &CorpusSpec, rng: &mut Rng) -> Vec<u64> {
    let (lo, hi) = ((spec.min_file as f64).ln(), (spec.max_file as f64).ln());
    let mut left = spec.size;
    let mut out = Vec::new();
    while left > 0 {
        let s = (lo + rng.unit() * (hi - lo)).exp() as u64;
        let s = s.clamp(spec.min_file, spec.max_file).min(left);
        out.push(s);
        left -= s;
    }
    out
}

/// Writes the corpus and its manifest into `dir`.
///
/// # Errors
///
/// I/O errors.
pub fn write(spec: &CorpusSpec, dir: &Path) -> anyhow::Result<Manifest> {
    std::fs::create_dir_all(dir.join("files"))?;
    let mut rng = Rng::new(spec.seed, 5 << 40);
    let mut files = Vec::new();
    let mut total = 0u64;
    // The hash-planted files come first, so they are there at every size.
    for h in 0..sigs::HASH_PLANTS {
        let data = sigs::hash_plant(spec.seed, h);
        let path = format!("files/hash-{h}.bin");
        std::fs::write(dir.join(&path), &data)?;
        total += data.len() as u64;
        files.push(FileEntry {
            path,
            size: data.len() as u64,
            kind: "random".into(),
            plants: vec![Plant {
                kind: "hash".into(),
                index: h,
                name: sigs::hash_plant_name(h),
                offset: 0,
            }],
        });
    }
    let rest = CorpusSpec {
        size: spec.size.saturating_sub(total),
        ..*spec
    };
    for (n, size) in sizes(&rest, &mut rng).into_iter().enumerate() {
        let mut frng = Rng::new(spec.seed, (6 << 40) | n as u64);
        let kind = match frng.below(100) {
            0..40 => "random",
            40..75 => "text",
            _ => "exe",
        };
        let mut buf = vec![0u8; size as usize];
        fill(kind, &mut frng, &mut buf);
        let mut plants = Vec::new();
        let mut used = vec![(0, 64)];
        if frng.chance(spec.plant_share) {
            for _ in 0..frng.range(1, 2) {
                let p = if frng.chance(0.75) {
                    let i = frng.below(PLANTED_BODY);
                    plant_body(&mut frng, spec.seed, i, &mut buf, &mut used, kind == "exe")
                } else {
                    let i = frng.below(PLANTED_LOGICAL);
                    plant_logical(&mut frng, spec.seed, i, &mut buf, &mut used)
                };
                if let Some(p) = p
                    && !plants
                        .iter()
                        .any(|q: &Plant| q.kind == p.kind && q.index == p.index)
                {
                    plants.push(p);
                }
            }
        }
        let path = format!(
            "files/f{n:05}.{}",
            match kind {
                "text" => "txt",
                "exe" => "exe",
                _ => "bin",
            }
        );
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(&path))?);
        f.write_all(&buf)?;
        f.flush()?;
        total += size;
        files.push(FileEntry {
            path,
            size,
            kind: kind.into(),
            plants,
        });
    }
    let manifest = Manifest {
        seed: spec.seed,
        total_bytes: total,
        files,
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// The corpus in `root/<dir_name>`, generated unless it is already there.
///
/// # Errors
///
/// I/O errors.
pub fn ensure(spec: &CorpusSpec, root: &Path) -> anyhow::Result<(PathBuf, Manifest)> {
    let dir = root.join(spec.dir_name());
    if let Ok(m) = Manifest::read(&dir) {
        return Ok((dir, m));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let m = write(spec, &dir)?;
    Ok((dir, m))
}

/// A size that [`parse_size`] cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSize {
    /// No number in front.
    #[error("'{0}': expected a size like 100MiB or 1GiB")]
    Number(String),
    /// A unit that is not one of the accepted ones.
    #[error("'{0}': unknown unit (use K, M, G, KiB, MiB or GiB)")]
    Unit(String),
}

/// Parses a size such as `1GiB`, `100MiB`, `64K`, `4096`.
///
/// # Errors
///
/// [`BadSize`], naming the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, BadSize> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| BadSize::Number(s.to_string()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => return Err(BadSize::Unit(s.to_string())),
    };
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigs::SigSpec;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
    }

    /// The engine finds exactly what the manifest says was planted: checks
    /// the generators (and, in passing, the engine) on a small corpus.
    #[test]
    fn the_engine_finds_exactly_the_planted_matches() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CorpusSpec {
            seed: 3,
            size: 6 << 20,
            min_file: 1 << 10,
            max_file: 512 << 10,
            plant_share: 0.8,
        };
        let m = write(&spec, dir.path()).unwrap();
        let sigdir = dir.path().join("sigs");
        let sspec = SigSpec {
            seed: 3,
            body: 200,
            logical: 20,
            hashes: 50,
        };
        crate::sigs::write(&sspec, &sigdir).unwrap();
        let db = giva_signatures::compile(&[&sigdir]).unwrap();
        let engine = giva_engine::Engine::new(&db).unwrap();
        let opts = giva_engine::ScanOptions {
            all_match: true,
            ..Default::default()
        };
        let mut found = BTreeSet::new();
        for f in &m.files {
            let r = engine.scan_file(&dir.path().join(&f.path), &opts).unwrap();
            for n in r.names() {
                found.insert((f.path.clone(), n.to_string()));
            }
        }
        let expected = m.expected(200, 20, 50);
        assert!(expected.len() > 10, "too few plants: {}", expected.len());
        assert_eq!(found, expected);
    }
}
