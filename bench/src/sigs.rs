//! The signature generator: ClamAV-format body (`.ndb`), logical (`.ldb`)
//! and hash (`.hdb`, `.hsb`) signatures from a seed.
//!
//! Signature `i` of each kind depends only on the seed and `i`, so a set of
//! 1k body signatures is the prefix of a set of 100k, and the corpus
//! generator can plant matches of the first [`PLANTED_BODY`] body and
//! [`PLANTED_LOGICAL`] logical signatures whatever the set's size.
//!
//! Every pattern part starts with at least four literal bytes, alternations
//! have equal-length branches, and gaps are bounded, so `clamscan` loads
//! every line (it refuses a few odd random shapes, see
//! `giva_signatures`' divergence notes).

use std::io::Write;
use std::path::Path;

use md5::Digest as _;

use crate::rng::Rng;

/// Body signatures the corpus may plant (the first ones of every set).
pub const PLANTED_BODY: usize = 64;
/// Logical signatures the corpus may plant.
pub const PLANTED_LOGICAL: usize = 16;
/// Files of the corpus that are detected by their hash (two MD5, two
/// SHA-256), when the set has hashes.
pub const HASH_PLANTS: usize = 4;

const WORDS: &[&str] = &[
    "the", "and", "file", "system", "kernel", "error", "value", "return", "config", "server",
    "client", "request", "memory", "process", "thread", "signal", "buffer", "string", "number",
    "update", "window", "module", "import", "export", "public", "private", "static", "struct",
    "function", "print", "debug", "warning", "network", "socket", "address", "handle", "object",
    "record", "stream", "header", "footer", "invoice", "payment", "account", "customer", "report",
];

/// A word of the text-like vocabulary.
pub fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.below(WORDS.len())]
}

/// One token of a hex pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// Literal bytes.
    Lit(Vec<u8>),
    /// `??`
    Any,
    /// `a?`: the high nibble is fixed.
    NibHi(u8),
    /// `?a`: the low nibble is fixed.
    NibLo(u8),
    /// `(aa|bb)`: equal-length alternatives.
    Alt(Vec<Vec<u8>>),
    /// `{n-m}`
    Gap(u32, u32),
    /// `*`
    Star,
}

/// Where a body signature may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Off {
    /// `*`
    Any,
    /// `n`
    Abs(u32),
    /// `n,m`
    Float(u32, u32),
    /// `EOF-n`
    Eof(u32),
}

/// A hex pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub Vec<Tok>);

impl Pattern {
    /// The ClamAV hex text.
    pub fn hex(&self) -> String {
        let mut s = String::new();
        for t in &self.0 {
            match t {
                Tok::Lit(b) => s.push_str(&hex::encode(b)),
                Tok::Any => s.push_str("??"),
                Tok::NibHi(v) => s.push_str(&format!("{:x}?", v >> 4)),
                Tok::NibLo(v) => s.push_str(&format!("?{:x}", v & 15)),
                Tok::Alt(alts) => {
                    s.push('(');
                    let parts: Vec<String> = alts.iter().map(hex::encode).collect();
                    s.push_str(&parts.join("|"));
                    s.push(')');
                }
                Tok::Gap(a, b) if a == b => s.push_str(&format!("{{{a}}}")),
                Tok::Gap(a, b) => s.push_str(&format!("{{{a}-{b}}}")),
                Tok::Star => s.push('*'),
            }
        }
        s
    }

    /// The length if fixed (no gaps).
    pub fn fixed_len(&self) -> Option<usize> {
        self.0.iter().try_fold(0usize, |n, t| match t {
            Tok::Lit(b) => Some(n + b.len()),
            Tok::Any | Tok::NibHi(_) | Tok::NibLo(_) => Some(n + 1),
            Tok::Alt(a) => Some(n + a[0].len()),
            Tok::Gap(..) | Tok::Star => None,
        })
    }

    /// Concrete bytes that match the pattern.
    pub fn instance(&self, rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        for t in &self.0 {
            match t {
                Tok::Lit(b) => out.extend_from_slice(b),
                Tok::Any => out.push(rng.next_u64() as u8),
                Tok::NibHi(v) => out.push((v & 0xf0) | (rng.next_u64() as u8 & 0x0f)),
                Tok::NibLo(v) => out.push((v & 0x0f) | (rng.next_u64() as u8 & 0xf0)),
                Tok::Alt(a) => out.extend_from_slice(&a[rng.below(a.len())]),
                Tok::Gap(a, b) => {
                    let n = rng.range(u64::from(*a), u64::from(*b)) as usize;
                    out.extend(rng.bytes(n));
                }
                Tok::Star => {
                    let n = rng.range(0, 32) as usize;
                    out.extend(rng.bytes(n));
                }
            }
        }
        out
    }
}

/// A body (`.ndb`) signature.
#[derive(Debug, Clone)]
pub struct BodySig {
    /// The name as written.
    pub name: String,
    /// The offset.
    pub offset: Off,
    /// The pattern.
    pub pattern: Pattern,
}

impl BodySig {
    /// The `.ndb` line.
    pub fn line(&self) -> String {
        let off = match self.offset {
            Off::Any => "*".to_string(),
            Off::Abs(n) => n.to_string(),
            Off::Float(n, m) => format!("{n},{m}"),
            Off::Eof(n) => format!("EOF-{n}"),
        };
        format!("{}:0:{off}:{}", self.name, self.pattern.hex())
    }
}

/// The shape of a logical expression over 2 or 3 subsignatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expr {
    /// `0&1`
    And2,
    /// `0|1`
    Or2,
    /// `0&1&2`
    And3,
    /// `(0|1)&2`
    OrAnd,
}

/// A logical (`.ldb`) signature.
#[derive(Debug, Clone)]
pub struct LogicalSig {
    /// The name as written.
    pub name: String,
    /// The expression.
    pub expr: Expr,
    /// The subsignatures.
    pub subs: Vec<Pattern>,
}

impl LogicalSig {
    /// The `.ldb` line.
    pub fn line(&self) -> String {
        let e = match self.expr {
            Expr::And2 => "0&1",
            Expr::Or2 => "0|1",
            Expr::And3 => "0&1&2",
            Expr::OrAnd => "(0|1)&2",
        };
        let subs: Vec<String> = self.subs.iter().map(Pattern::hex).collect();
        format!("{};Target:0;{e};{}", self.name, subs.join(";"))
    }

    /// Which subsignatures to plant so that the expression is true.
    pub fn plant_set(&self, rng: &mut Rng) -> Vec<usize> {
        match self.expr {
            Expr::And2 => vec![0, 1],
            Expr::Or2 => vec![rng.below(2)],
            Expr::And3 => vec![0, 1, 2],
            Expr::OrAnd => vec![rng.below(2), 2],
        }
    }
}

fn lit(rng: &mut Rng, lo: u64, hi: u64) -> Tok {
    let n = rng.range(lo, hi) as usize;
    Tok::Lit(rng.bytes(n))
}

fn pattern(rng: &mut Rng, allow_gaps: bool) -> Pattern {
    let shape = rng.below(100);
    let mut t = Vec::new();
    match shape {
        // literal
        0..30 => t.push(lit(rng, 10, 24)),
        // wildcards and nibbles
        30..50 => {
            t.push(lit(rng, 4, 8));
            for _ in 0..rng.range(1, 2) {
                t.push(match rng.below(3) {
                    0 => Tok::Any,
                    1 => Tok::NibHi(rng.next_u64() as u8),
                    _ => Tok::NibLo(rng.next_u64() as u8),
                });
                t.push(lit(rng, 2, 4));
            }
            t.push(lit(rng, 2, 4));
        }
        // alternation
        50..65 => {
            t.push(lit(rng, 4, 8));
            let width = rng.range(1, 2) as usize;
            let n = rng.range(2, 4) as usize;
            let mut alts: Vec<Vec<u8>> = Vec::new();
            while alts.len() < n {
                let a = rng.bytes(width);
                if !alts.contains(&a) {
                    alts.push(a);
                }
            }
            t.push(Tok::Alt(alts));
            t.push(lit(rng, 3, 6));
        }
        // gaps
        65..85 if allow_gaps => {
            t.push(lit(rng, 4, 8));
            for _ in 0..rng.range(1, 2) {
                if rng.chance(0.3) {
                    t.push(Tok::Star);
                } else {
                    let a = rng.range(1, 8) as u32;
                    let b = a + rng.range(0, 24) as u32;
                    t.push(Tok::Gap(a, b));
                }
                t.push(lit(rng, 4, 8));
            }
        }
        // a text word, then random bytes
        _ => {
            let mut b = word(rng).as_bytes().to_vec();
            while b.len() < 4 {
                b.push(b' ');
            }
            let n = rng.range(4, 8) as usize;
            b.extend(rng.bytes(n));
            t.push(Tok::Lit(b));
        }
    }
    // Merge adjacent literals so the hex stays canonical.
    let mut merged: Vec<Tok> = Vec::new();
    for tok in t {
        match (merged.last_mut(), tok) {
            (Some(Tok::Lit(a)), Tok::Lit(b)) => a.extend(b),
            (_, tok) => merged.push(tok),
        }
    }
    Pattern(merged)
}

/// Body signature `i` of `seed`.
pub fn body_sig(seed: u64, i: usize) -> BodySig {
    let mut rng = Rng::new(seed, (1 << 40) | i as u64);
    let pattern = pattern(&mut rng, true);
    let offset = match rng.below(10) {
        0 => Off::Abs(rng.range(64, 2048) as u32),
        1 => Off::Float(rng.range(64, 2048) as u32, rng.range(0, 256) as u32),
        2 => match pattern.fixed_len() {
            Some(len) => Off::Eof((len as u64 + rng.range(0, 64)) as u32),
            None => Off::Any,
        },
        _ => Off::Any,
    };
    BodySig {
        name: format!("Bench.Body.{i}"),
        offset,
        pattern,
    }
}

/// Logical signature `i` of `seed`.
pub fn logical_sig(seed: u64, i: usize) -> LogicalSig {
    let mut rng = Rng::new(seed, (2 << 40) | i as u64);
    let expr = match rng.below(4) {
        0 => Expr::And2,
        1 => Expr::Or2,
        2 => Expr::And3,
        _ => Expr::OrAnd,
    };
    let n = if matches!(expr, Expr::And2 | Expr::Or2) {
        2
    } else {
        3
    };
    let subs = (0..n).map(|_| pattern(&mut rng, true)).collect();
    LogicalSig {
        name: format!("Bench.Logical.{i}"),
        expr,
        subs,
    }
}

/// The content of hash-planted file `h` (< [`HASH_PLANTS`]).
pub fn hash_plant(seed: u64, h: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed, (3 << 40) | h as u64);
    let size = 2048 + rng.range(0, 64 << 10) as usize;
    rng.bytes(size)
}

/// The name of hash-planted file `h`.
pub fn hash_plant_name(h: usize) -> String {
    format!("Bench.HashPlant.{h}")
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SigSpec {
    /// The seed.
    pub seed: u64,
    /// Body signatures.
    pub body: usize,
    /// Logical signatures.
    pub logical: usize,
    /// Hash signatures (about 80 % MD5, 20 % SHA-256), plus the
    /// [`HASH_PLANTS`] real ones when non-zero.
    pub hashes: usize,
}

impl SigSpec {
    /// A directory name that identifies the set.
    pub fn dir_name(&self) -> String {
        format!(
            "sigs-s{}-b{}-l{}-h{}",
            self.seed, self.body, self.logical, self.hashes
        )
    }
}

/// Writes `body.ndb`, `logical.ldb`, `hashes.hdb` and `hashes.hsb` (the
/// files that would be empty are not written) into `dir`.
///
/// # Errors
///
/// I/O errors.
pub fn write(spec: &SigSpec, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if spec.body > 0 {
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("body.ndb"))?);
        for i in 0..spec.body {
            writeln!(w, "{}", body_sig(spec.seed, i).line())?;
        }
        w.flush()?;
    }
    if spec.logical > 0 {
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("logical.ldb"))?);
        for i in 0..spec.logical {
            writeln!(w, "{}", logical_sig(spec.seed, i).line())?;
        }
        w.flush()?;
    }
    if spec.hashes > 0 {
        let mut md5w = std::io::BufWriter::new(std::fs::File::create(dir.join("hashes.hdb"))?);
        let mut shaw = std::io::BufWriter::new(std::fs::File::create(dir.join("hashes.hsb"))?);
        for h in 0..HASH_PLANTS {
            let data = hash_plant(spec.seed, h);
            if h < HASH_PLANTS / 2 {
                let d = md5::Md5::digest(&data);
                writeln!(
                    md5w,
                    "{}:{}:{}",
                    hex::encode(d),
                    data.len(),
                    hash_plant_name(h)
                )?;
            } else {
                let d = sha2::Sha256::digest(&data);
                writeln!(
                    shaw,
                    "{}:{}:{}",
                    hex::encode(d),
                    data.len(),
                    hash_plant_name(h)
                )?;
            }
        }
        let mut rng = Rng::new(spec.seed, 4 << 40);
        for i in 0..spec.hashes {
            let size = rng.range(1024, 64 << 20);
            if rng.below(5) == 0 {
                writeln!(shaw, "{}:{size}:Bench.Hash.{i}", hex::encode(rng.bytes(32)))?;
            } else {
                writeln!(md5w, "{}:{size}:Bench.Hash.{i}", hex::encode(rng.bytes(16)))?;
            }
        }
        md5w.flush()?;
        shaw.flush()?;
    }
    Ok(())
}

/// The set in `root/<dir_name>`, generated unless it is already there.
///
/// # Errors
///
/// I/O errors.
pub fn ensure(spec: &SigSpec, root: &Path) -> std::io::Result<std::path::PathBuf> {
    let dir = root.join(spec.dir_name());
    // The marker sits beside the directory: ClamAV and giva read every
    // file inside it.
    let done = root.join(format!("{}.complete", spec.dir_name()));
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        write(spec, &dir)?;
        std::fs::write(&done, format!("{spec:?}\n"))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_depend_only_on_seed_and_index() {
        assert_eq!(body_sig(7, 3).line(), body_sig(7, 3).line());
        assert_ne!(body_sig(7, 3).line(), body_sig(8, 3).line());
        assert_eq!(logical_sig(7, 2).line(), logical_sig(7, 2).line());
    }

    #[test]
    fn the_generator_output_is_stable() {
        // A change here changes every corpus and signature set: results
        // taken before and after are then not comparable.
        let mut r = Rng::new(1, 2);
        assert_eq!(r.next_u64(), Rng::new(1, 2).next_u64());
        assert_eq!(
            body_sig(1, 0).line(),
            "Bench.Body.0:0:*:7fe991fd99ca?5d229070?63b6eefc96bb24"
        );
    }

    #[test]
    fn instances_have_the_fixed_length() {
        let mut rng = Rng::new(1, 1);
        for i in 0..200 {
            let s = body_sig(1, i);
            if let Some(n) = s.pattern.fixed_len() {
                assert_eq!(s.pattern.instance(&mut rng).len(), n, "{}", s.line());
            }
        }
    }
}
