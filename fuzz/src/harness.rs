//! The code behind every fuzz target, one public function per target.
//!
//! This file is compiled twice: into `giva-fuzz` (the fuzz targets) and,
//! through `#[path]`, into the integration suite, which replays the inputs
//! kept in `fuzz/regressions/<target>/` through the same function. It only
//! uses crates both have: the giva crates (`giva-content` too), `prost`,
//! `tokio`, `tonic`, `tokio-stream`, `sha2`, `md-5`, `flate2`, `hex` and
//! `arbitrary`.
//!
//! Every function panics (and so makes libFuzzer report a crash) when an
//! invariant breaks; returning means the input was handled correctly.

#![allow(dead_code)]

use std::fmt::Debug;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use giva_engine::{Engine, ScanOptions};
use giva_signatures::{Compiler, Database, Limits};
use sha2::Digest as _;

/// The names of every target, as in `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &[
    "sig_text",
    "cvd",
    "database",
    "scan_diff",
    "proto_decode",
    "appliance_session",
    "content_zip",
    "content_tar",
    "content_cpio",
    "content_ar",
    "content_compressed",
    "content_7z",
    "content_cab",
    "content_iso",
    "content_arj",
    "content_mail",
    "content_doc",
    "content_html",
    "content_installer",
    "content_upx",
    "content_exe",
    "content_packer",
];

/// Runs the target called `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "sig_text" => sig_text(data),
        "cvd" => cvd(data),
        "database" => database(data),
        "scan_diff" => scan_diff(data),
        "proto_decode" => proto_decode(data),
        "appliance_session" => appliance_session(data),
        "content_zip" => content(b"PK\x03\x04", data, Parser::Crate),
        "content_tar" => content_tar(data),
        "content_cpio" => content_cpio(data),
        "content_ar" => content(b"!<arch>\n", data, Parser::Own),
        "content_compressed" => content_compressed(data),
        "content_7z" => content(b"7z\xbc\xaf\x27\x1c", data, Parser::Crate),
        "content_cab" => content(b"MSCF\0\0\0\0", data, Parser::Crate),
        "content_iso" => content_iso(data),
        "content_arj" => content_arj(data),
        "content_mail" => content_mail(data),
        "content_doc" => content_doc(data),
        "content_html" => content_html(data),
        "content_installer" => content_installer(data),
        "content_upx" => content_upx(data),
        "content_exe" => content_exe(data),
        "content_packer" => content_packer(data),
        _ => return false,
    }
    true
}

// ---------------------------------------------------------------------------
// Signature text

const SIG_EXTS: [&str; 8] = ["hdb", "hsb", "ndb", "ldb", "fp", "sfp", "ign2", "ign"];

/// Limits small enough that one input cannot make an execution slow, large
/// enough that every check is reachable.
fn fuzz_limits() -> Limits {
    Limits {
        max_line_len: 1 << 16,
        max_ldb_line_len: 1 << 16,
        max_pattern_len: 1 << 14,
        max_pattern_tokens: 1 << 14,
        max_file_size: 1 << 22,
        ..Limits::default()
    }
}

/// A database the compiler built must serialize, load back unchanged and
/// build an engine that scans without panicking.
fn check_built(db: &Database, probe: &[u8]) {
    let bytes = db.to_bytes();
    let back = match Database::from_bytes(&bytes) {
        Ok(b) => b,
        Err(e) => panic!("a database the compiler built does not load back: {e}"),
    };
    assert_eq!(back.body_signatures(), db.body_signatures());
    assert_eq!(back.logical_signatures(), db.logical_signatures());
    assert_eq!(back.hash_counts(), db.hash_counts());
    assert_eq!(back.info(), db.info());
    if let Ok(engine) = Engine::new(&back) {
        let opts = ScanOptions {
            all_match: true,
            ..ScanOptions::default()
        };
        let probe = &probe[..probe.len().min(4096)];
        let _ = engine.scan_bytes(probe, &opts);
    }
}

/// `sig_text`: signature text of every line format. Byte 0 picks the
/// extension (bits 0-2), whether a second source follows (bit 3, split at
/// byte 1), its extension (bits 4-6) and the `official` flag (bit 7).
pub fn sig_text(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut c = Compiler::with_limits(fuzz_limits());
    let official = sel & 0x80 != 0;
    let first_ext = SIG_EXTS[usize::from(sel & 7)];
    if sel & 8 != 0 && !rest.is_empty() {
        let at = usize::from(rest[0]) % rest.len();
        let (a, b) = rest.split_at(at);
        let second_ext = SIG_EXTS[usize::from((sel >> 4) & 7)];
        c.add_source(
            &format!("a.{first_ext}"),
            &String::from_utf8_lossy(a),
            official,
        );
        c.add_source(
            &format!("b.{second_ext}"),
            &String::from_utf8_lossy(b),
            official,
        );
    } else {
        c.add_source(
            &format!("a.{first_ext}"),
            &String::from_utf8_lossy(rest),
            official,
        );
    }
    if let Ok(db) = c.build() {
        check_built(&db, rest);
    }
}

// ---------------------------------------------------------------------------
// CVD / CLD / CUD containers

/// The header line every container built by the harness carries (and that
/// the `.info` member of the seeds repeats).
pub const CVD_HEADER: &str = "ClamAV-VDB:21 Nov 2026 00-00 +0000:1:1:216:MD5:DSIG:fuzz:1763683200";

fn cvd_header(md5: &str, dsig: &str) -> Vec<u8> {
    let line = CVD_HEADER
        .replace(":MD5:", &format!(":{md5}:"))
        .replace(":DSIG:", &format!(":{dsig}:"));
    let mut h = line.into_bytes();
    h.truncate(giva_signatures::cvd::HEADER_LEN);
    h.resize(giva_signatures::cvd::HEADER_LEN, b' ');
    h
}

/// `cvd`: containers. Byte 0 picks how the rest is used: 0 raw (header
/// included) as `.cvd`/`.cld`/`.cud`; 1 a `.cud` body behind a valid
/// header; 2 a `.cvd` body behind a header with its correct MD5 (so the
/// signature check runs); 3 a `.cld` body behind a valid header.
pub fn cvd(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let limits = fuzz_limits();
    let (bytes, ext) = match sel % 4 {
        0 => (
            rest.to_vec(),
            ["cvd", "cld", "cud"][usize::from(sel / 4) % 3],
        ),
        1 => {
            let mut b = cvd_header("00000000000000000000000000000000", "x");
            b.extend_from_slice(rest);
            (b, "cud")
        }
        2 => {
            let md5 = hex::encode(md5::Md5::digest(rest));
            let mut b = cvd_header(
                &md5,
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            );
            b.extend_from_slice(rest);
            (b, "cvd")
        }
        _ => {
            let mut b = cvd_header("00000000000000000000000000000000", "x");
            b.extend_from_slice(rest);
            (b, "cld")
        }
    };
    let _ = giva_signatures::cvd::parse_header(&bytes[..bytes.len().min(512)]);
    let Ok(unpacked) = giva_signatures::cvd::unpack(&bytes, ext, &limits) else {
        return;
    };
    let mut c = Compiler::with_limits(limits);
    for m in &unpacked.members {
        c.add_source(
            &m.name,
            &String::from_utf8_lossy(&m.data),
            unpacked.official,
        );
    }
    if let Ok(db) = c.build() {
        check_built(&db, b"probe");
    }
}

// ---------------------------------------------------------------------------
// Compiled database files

/// The small database whose file the `database` target corrupts.
pub fn template_database() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let mut c = Compiler::new();
        c.add_source(
            "t.hdb",
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n\
             d41d8cd98f00b204e9800998ecf8427e:*:Empty.Any:73\n",
            false,
        );
        c.add_source(
            "t.hsb",
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Eicar.Sha256\n",
            false,
        );
        c.add_source(
            "t.ndb",
            "Test.Evil:0:*:6576696c\n\
             Test.Gap:0:0:4d5a{2-8}5045\n\
             Test.Alt:0:EOF-20:(6162|6364)??6566*6667\n\
             Test.Anchor:0:*:68[1-3]696a6b(L)\nTest.Bound:0:*:(B)6869\n",
            false,
        );
        c.add_source(
            "t.ldb",
            "Test.Logical;Engine:51-255,Target:0;(0&1)|2>1;6576696c;676f6f64::i;0:4d5a\n",
            false,
        );
        c.add_source(
            "t.fp",
            "0123456789abcdef0123456789abcdef:10:Allowed\n",
            false,
        );
        c.add_source("t.ign2", "Test.Ignored\n", false);
        c.version("fuzz-template");
        let db = match c.build() {
            Ok(db) => db,
            Err(e) => panic!("the template database does not compile: {e}"),
        };
        // With the built engine stored, so that flipped bytes also reach
        // the stored-engine reader.
        let blob = Engine::build(&db)
            .and_then(|e| e.to_blob())
            .unwrap_or_else(|e| panic!("the template engine does not build: {e}"));
        match db.with_extension(giva_signatures::EXT_ENGINE, &blob) {
            Ok(db) => db.to_bytes(),
            Err(e) => panic!("the template engine cannot be stored: {e}"),
        }
    })
}

/// Rewrites the header's payload length and checksum so that `b` passes
/// the checksum test and the parser behind it sees the payload.
pub fn fix_checksum(b: &mut [u8]) {
    giva_signatures::db::layout::seal(b);
}

fn use_database(db: &Database) {
    let _ = db.info();
    let _ = db.version();
    let _ = db.memory_estimate();
    let _ = db.hash_counts();
    for algo in giva_signatures::HashAlgo::ALL {
        let _ = db.needs_hash(algo, 68);
        let d = vec![0u8; algo.digest_len()];
        let _ = db.lookup_hash(algo, &d, 68).count();
        let _ = db.is_allowed(algo, &d, 10);
    }
    // Reserialized, it must load again.
    let again = db.to_bytes();
    if let Err(e) = Database::from_bytes(&again) {
        panic!("a loaded database does not reload from its own bytes: {e}");
    }
    if let Ok(engine) = Engine::new(db) {
        let opts = ScanOptions {
            all_match: true,
            ..ScanOptions::default()
        };
        for probe in [
            &b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"[..],
            b"some evil bytes, MZ..PE and abcde good",
            b"",
        ] {
            let _ = engine.scan_bytes(probe, &opts);
        }
    }
}

/// `database`: compiled database files. Byte 0 picks: 0 the rest as a whole
/// file; 1 a valid header (fixed checksum) in front of the rest as payload;
/// 2 the template with the rest as `(u16 LE position, xor)` triples and the
/// checksum fixed afterwards; 3 the same flips without fixing, which must
/// always be refused; 4 the template truncated at a position.
pub fn database(data: &[u8]) {
    use giva_signatures::db::layout::{FORMAT_VERSION, MAGIC};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let template = template_database();
    match sel % 5 {
        0 => {
            if let Ok(db) = Database::from_bytes(rest) {
                use_database(&db);
            }
        }
        1 => {
            let version = b"fuzz";
            let mut b = Vec::new();
            b.extend_from_slice(MAGIC);
            b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            let header_len = (giva_signatures::db::layout::HEADER_FIXED_LEN + version.len()) as u32;
            b.extend_from_slice(&header_len.to_le_bytes());
            b.extend_from_slice(&0u64.to_le_bytes());
            b.extend_from_slice(&[0u8; 32]);
            b.extend_from_slice(&0i64.to_le_bytes());
            b.extend_from_slice(&(version.len() as u32).to_le_bytes());
            b.extend_from_slice(version);
            b.extend_from_slice(rest);
            fix_checksum(&mut b);
            if let Ok(db) = Database::from_bytes(&b) {
                use_database(&db);
            }
        }
        2 | 3 => {
            let mut b = template.to_vec();
            for t in rest.chunks_exact(3) {
                let pos = usize::from(u16::from_le_bytes([t[0], t[1]])) % b.len();
                b[pos] ^= t[2];
            }
            let changed = b != template;
            if sel % 5 == 2 {
                fix_checksum(&mut b);
                if let Ok(db) = Database::from_bytes(&b) {
                    use_database(&db);
                }
            } else if changed {
                assert!(
                    Database::from_bytes(&b).is_err(),
                    "a database file with flipped bits was accepted without its checksum fixed"
                );
            }
        }
        _ => {
            let at = rest
                .get(..2)
                .map_or(0, |p| usize::from(u16::from_le_bytes([p[0], p[1]])))
                % template.len();
            assert!(
                Database::from_bytes(&template[..at]).is_err(),
                "a database file truncated at {at} was accepted"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Scanner against the naive reference matcher

/// The bytes data and patterns are built from: few enough that patterns
/// match often, with the characters the `(B)`, `(L)` and `::w` / `::f`
/// assertions look at.
const ALPHA: [u8; 6] = [b'a', b'b', b'\n', b'A', 0x00, b' '];

fn alpha(i: u8) -> u8 {
    ALPHA[usize::from(i) % ALPHA.len()]
}

/// One element of a generated hex pattern.
#[derive(Arbitrary, Debug, Clone)]
pub enum Tok {
    /// A literal byte.
    Byte(u8),
    /// Two literal bytes.
    Pair(u8, u8),
    /// `??`
    Wild,
    /// `6?`
    NibHi(u8),
    /// `?1`
    NibLo(u8),
    /// `(aa|bb)` or `!(aa|bb)`; every branch has `width` bytes unless
    /// `ragged`.
    Alt {
        /// Branches.
        branches: Vec<Vec<u8>>,
        /// Width of every branch (1-3).
        width: u8,
        /// Negated.
        negated: bool,
        /// Branches of different widths (allowed only without negation).
        ragged: bool,
    },
    /// `{n}`, `{n-}`, `{-m}`, `{n-m}`.
    Gap(u8, u8, u8),
    /// `*`
    Star,
    /// `[n-m]` (an anchored byte on either side of a part).
    Anchor(u8, u8),
}

fn tok_text(t: &Tok, out: &mut String) {
    match t {
        Tok::Byte(b) => out.push_str(&hex::encode([alpha(*b)])),
        Tok::Pair(a, b) => out.push_str(&hex::encode([alpha(*a), alpha(*b)])),
        Tok::Wild => out.push_str("??"),
        Tok::NibHi(b) => {
            out.push_str(&hex::encode([alpha(*b)])[..1]);
            out.push('?');
        }
        Tok::NibLo(b) => {
            out.push('?');
            out.push_str(&hex::encode([alpha(*b)])[1..]);
        }
        Tok::Alt {
            branches,
            width,
            negated,
            ragged,
        } => {
            let width = usize::from(width % 3) + 1;
            if *negated {
                out.push('!');
            }
            out.push('(');
            for (i, b) in branches.iter().take(5).enumerate() {
                if i > 0 {
                    out.push('|');
                }
                let w = if *ragged && !negated {
                    b.len().clamp(1, 3)
                } else {
                    width
                };
                let bytes: Vec<u8> = (0..w)
                    .map(|k| alpha(b.get(k).copied().unwrap_or(0)))
                    .collect();
                out.push_str(&hex::encode(&bytes));
            }
            if branches.is_empty() {
                out.push_str(&hex::encode(vec![b'a'; width]));
            }
            out.push(')');
        }
        Tok::Gap(kind, n, m) => {
            let (n, m) = (n % 6, m % 6);
            match kind % 4 {
                0 => out.push_str(&format!("{{{n}}}")),
                1 => out.push_str(&format!("{{{n}-}}")),
                2 => out.push_str(&format!("{{-{m}}}")),
                _ => out.push_str(&format!("{{{}-{}}}", n.min(m), n.max(m))),
            }
        }
        Tok::Star => out.push('*'),
        Tok::Anchor(n, m) => {
            let (n, m) = (n % 4 + 1, m % 4 + 1);
            out.push_str(&format!("[{}-{}]", n.min(m), n.max(m)));
        }
    }
}

/// A generated hex pattern with its optional `(B)`/`(L)` assertions.
#[derive(Arbitrary, Debug, Clone)]
pub struct Pat {
    /// The elements.
    pub toks: Vec<Tok>,
    /// 0: none, 1: `(B)`, 2: `(L)` at the start.
    pub start: u8,
    /// The same at the end.
    pub end: u8,
}

fn pat_text(p: &Pat) -> String {
    let mut s = String::new();
    match p.start % 4 {
        1 => s.push_str("(B)"),
        2 => s.push_str("(L)"),
        _ => {}
    }
    for t in p.toks.iter().take(12) {
        tok_text(t, &mut s);
    }
    match p.end % 4 {
        1 => s.push_str("(B)"),
        2 => s.push_str("(L)"),
        _ => {}
    }
    s
}

/// A generated offset.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Off {
    /// `*`
    Any,
    /// `n`
    At(u8),
    /// `n,m`
    Range(u8, u8),
    /// `EOF-n`
    Eof(u8),
    /// `EOF-n,m`
    EofRange(u8, u8),
}

fn off_text(o: Off) -> String {
    match o {
        Off::Any => "*".into(),
        Off::At(n) => format!("{}", n % 64),
        Off::Range(n, m) => format!("{},{}", n % 64, m % 64),
        Off::Eof(n) => format!("EOF-{}", n % 64),
        Off::EofRange(n, m) => format!("EOF-{},{}", n % 64, m % 64),
    }
}

/// A generated logical expression over subsignature indexes.
#[derive(Arbitrary, Debug, Clone)]
pub enum Expr {
    /// `i`
    Sub(u8),
    /// `(a&b)`
    And(Box<Expr>, Box<Expr>),
    /// `(a|b)`
    Or(Box<Expr>, Box<Expr>),
    /// `(e)=n`, `(e)>n`, `(e)<n`, optionally `,m`.
    Count(Box<Expr>, u8, u8, Option<u8>),
}

fn expr_text(e: &Expr, subs: usize, depth: usize, out: &mut String) {
    if depth > 4 {
        out.push('0');
        return;
    }
    match e {
        Expr::Sub(i) => out.push_str(&(usize::from(*i) % subs).to_string()),
        Expr::And(a, b) | Expr::Or(a, b) => {
            out.push('(');
            expr_text(a, subs, depth + 1, out);
            out.push(if matches!(e, Expr::And(..)) { '&' } else { '|' });
            expr_text(b, subs, depth + 1, out);
            out.push(')');
        }
        Expr::Count(a, op, n, m) => {
            out.push('(');
            expr_text(a, subs, depth + 1, out);
            out.push(')');
            out.push(['=', '>', '<'][usize::from(*op) % 3]);
            out.push_str(&(n % 4).to_string());
            if let Some(m) = m {
                out.push(',');
                out.push_str(&(m % 4).to_string());
            }
        }
    }
}

/// One generated signature.
#[derive(Arbitrary, Debug, Clone)]
pub enum Sig {
    /// An `.ndb` line.
    Body(Off, Pat),
    /// An `.ldb` line: subsignatures with optional offsets and modifiers
    /// (bit 0 `i`, bit 1 `w`, bit 2 `f`, bit 3 `a`).
    Logical {
        /// Subsignatures.
        subs: Vec<(Option<Off>, Pat, u8)>,
        /// The expression.
        expr: Expr,
        /// `FileSize:lo-hi`.
        size: Option<(u8, u16)>,
    },
    /// An MD5 (`.hdb`) or SHA-256 (`.hsb`) of the data, any size when the
    /// flag says so.
    HashOfData(bool, bool),
    /// The data's MD5 in the allow-list (`.fp`).
    AllowData,
    /// An `.ign2` line naming signature `i`.
    Ignore(u8),
}

/// The input of `scan_diff`.
#[derive(Arbitrary, Debug)]
pub struct DiffInput {
    /// Signatures.
    pub sigs: Vec<Sig>,
    /// The data, as indexes into the alphabet (and raw bytes with bit 7).
    pub data: Vec<u8>,
    /// Chunk sizes for the streamed scan.
    pub chunks: Vec<u8>,
    /// Tell the scanner the size up front.
    pub known_size: bool,
}

/// Turns generated signatures into source files `(name, text)`.
pub fn diff_sources(input: &DiffInput, data: &[u8]) -> Vec<(String, String)> {
    let mut ndb = String::new();
    let mut ldb = String::new();
    let mut hdb = String::new();
    let mut hsb = String::new();
    let mut fp = String::new();
    let mut ign = String::new();
    for (i, s) in input.sigs.iter().take(6).enumerate() {
        match s {
            Sig::Body(off, pat) => {
                ndb.push_str(&format!(
                    "Diff.B{i}:0:{}:{}\n",
                    off_text(*off),
                    pat_text(pat)
                ));
            }
            Sig::Logical { subs, expr, size } => {
                let subs: Vec<_> = subs.iter().take(4).collect();
                if subs.is_empty() {
                    continue;
                }
                let mut e = String::new();
                expr_text(expr, subs.len(), 0, &mut e);
                let mut line = format!("Diff.L{i};Engine:51-255,Target:0");
                if let Some((lo, hi)) = size {
                    line.push_str(&format!(",FileSize:{lo}-{hi}"));
                }
                line.push(';');
                line.push_str(&e);
                for (off, pat, m) in subs {
                    line.push(';');
                    if let Some(off) = off {
                        line.push_str(&off_text(*off));
                        line.push(':');
                    }
                    line.push_str(&pat_text(pat));
                    if m & 15 != 0 {
                        line.push_str("::");
                        for (bit, c) in [(1, 'i'), (2, 'w'), (4, 'f'), (8, 'a')] {
                            if m & bit != 0 {
                                line.push(c);
                            }
                        }
                    }
                }
                ldb.push_str(&line);
                ldb.push('\n');
            }
            Sig::HashOfData(sha, any) => {
                let size = if *any {
                    "*".to_string()
                } else {
                    data.len().to_string()
                };
                if *sha {
                    let d = hex::encode(sha2::Sha256::digest(data));
                    hsb.push_str(&format!("{d}:{size}:Diff.H{i}\n"));
                } else {
                    let d = hex::encode(md5::Md5::digest(data));
                    hdb.push_str(&format!("{d}:{size}:Diff.H{i}\n"));
                }
            }
            Sig::AllowData => {
                let d = hex::encode(md5::Md5::digest(data));
                fp.push_str(&format!("{d}:{}:Allowed\n", data.len()));
            }
            Sig::Ignore(n) => {
                ign.push_str(&format!("Diff.B{}\n", n % 6));
            }
        }
    }
    [
        ("d.ndb", ndb),
        ("d.ldb", ldb),
        ("d.hdb", hdb),
        ("d.hsb", hsb),
        ("d.fp", fp),
        ("d.ign2", ign),
    ]
    .into_iter()
    .filter(|(_, t)| !t.is_empty())
    .map(|(n, t)| (n.to_string(), t))
    .collect()
}

/// How many `scan_diff` inputs reached the comparison, and how many of
/// those had at least one detection (to judge the target's reach).
pub static SCAN_DIFF_COMPARED: AtomicU64 = AtomicU64::new(0);
/// See [`SCAN_DIFF_COMPARED`].
pub static SCAN_DIFF_DETECTED: AtomicU64 = AtomicU64::new(0);

/// `scan_diff`: random signatures and data; the whole-buffer scan, a scan
/// streamed in random chunks, and `giva_engine::reference::scan` must
/// report the same detections.
pub fn scan_diff(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = DiffInput::arbitrary(&mut u) else {
        return;
    };
    let bytes: Vec<u8> = input
        .data
        .iter()
        .take(200)
        .map(|&b| if b & 0x80 != 0 { b & 0x7f } else { alpha(b) })
        .collect();
    let sources = diff_sources(&input, &bytes);
    if sources.is_empty() {
        return;
    }
    let mut c = Compiler::with_limits(fuzz_limits());
    for (name, text) in &sources {
        c.add_source(name, text, false);
    }
    let Ok(db) = c.build() else {
        return;
    };
    let Ok(engine) = Engine::new(&db) else {
        return;
    };
    let opts = ScanOptions {
        all_match: true,
        ..ScanOptions::default()
    };
    let whole = engine.scan_bytes(&bytes, &opts);
    let mut scanner = engine.scanner(opts);
    scanner.reset(input.known_size.then_some(bytes.len() as u64));
    let mut rest = &bytes[..];
    let mut sizes = input.chunks.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .map_or(rest.len(), |&s| usize::from(s % 17))
            .min(rest.len());
        if n == 0 {
            // An empty chunk is legal input; then move on by one byte.
            scanner.feed(&[]);
        }
        let n = n.max(1);
        scanner.feed(&rest[..n]);
        rest = &rest[n..];
        if input.chunks.is_empty() {
            break;
        }
    }
    let streamed = scanner.finish();
    let reference = giva_engine::reference::scan(&db, &bytes);
    SCAN_DIFF_COMPARED.fetch_add(1, Ordering::Relaxed);
    if !reference.is_empty() {
        SCAN_DIFF_DETECTED.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(
        whole.detections, reference,
        "whole-buffer scan differs from the reference\nsignatures: {sources:#?}\ndata: {bytes:?}"
    );
    assert_eq!(
        streamed, whole,
        "chunked scan differs from the whole-buffer scan\nsignatures: {sources:#?}\ndata: {bytes:?}\nchunks: {:?}",
        input.chunks
    );
}

// ---------------------------------------------------------------------------
// prost decoding

fn roundtrip<M: prost::Message + Default + PartialEq + Debug>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        let enc = m.encode_to_vec();
        assert_eq!(enc.len(), m.encoded_len());
        match M::decode(enc.as_slice()) {
            Ok(again) => assert_eq!(again, m, "re-decoded message differs"),
            Err(e) => panic!("prost cannot decode what it encoded: {e}"),
        }
    }
    let _ = M::decode_length_delimited(data);
}

/// `proto_decode`: byte 0 picks one of the shim and manager message types;
/// the rest is decoded, and what decodes must re-encode and decode equal.
pub fn proto_decode(data: &[u8]) {
    use giva_proto::{manager as m, shim as s};
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let all: &[fn(&[u8])] = &[
        roundtrip::<s::VmIdentity>,
        roundtrip::<s::RegisterRequest>,
        roundtrip::<s::RegisterResponse>,
        roundtrip::<s::Policy>,
        roundtrip::<s::GuestMessage>,
        roundtrip::<s::ApplianceMessage>,
        roundtrip::<s::SessionOpen>,
        roundtrip::<s::FileIdentity>,
        roundtrip::<s::FileEvent>,
        roundtrip::<s::ContentRequest>,
        roundtrip::<s::ContentChunk>,
        roundtrip::<s::ContentError>,
        roundtrip::<s::Detection>,
        roundtrip::<s::Verdict>,
        roundtrip::<s::FullScanRequest>,
        roundtrip::<s::FullScanSlot>,
        roundtrip::<s::FullScanFinished>,
        roundtrip::<s::FullScanCommand>,
        roundtrip::<s::ShimReport>,
        roundtrip::<s::ScanRequest>,
        roundtrip::<s::ScanResponse>,
        roundtrip::<m::Event>,
        roundtrip::<m::ScanSummary>,
        roundtrip::<m::StoredEvent>,
        roundtrip::<m::NotifyRequest>,
        roundtrip::<m::NotifyResponse>,
        roundtrip::<m::VmInfo>,
        roundtrip::<m::ApplianceStats>,
        roundtrip::<m::HeartbeatRequest>,
        roundtrip::<m::HeartbeatResponse>,
        roundtrip::<m::DatabaseNews>,
        roundtrip::<m::ApplianceCommand>,
        roundtrip::<m::FullScanVm>,
        roundtrip::<m::SubscribeRequest>,
        roundtrip::<m::ListEventsRequest>,
        roundtrip::<m::ListEventsResponse>,
        roundtrip::<m::ListVmsRequest>,
        roundtrip::<m::VmState>,
        roundtrip::<m::ListVmsResponse>,
        roundtrip::<m::UntagVmRequest>,
        roundtrip::<m::UntagVmResponse>,
        roundtrip::<m::RequestScanRequest>,
        roundtrip::<m::RequestScanResponse>,
    ];
    all[usize::from(sel) % all.len()](rest);
}

// ---------------------------------------------------------------------------
// The appliance's session handling

/// One step a fuzzed guest takes on its session stream.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// A file event (`seq % 8`, `kind % 6`, `size`, a short path).
    Event {
        /// Sequence number (mod 8).
        seq: u8,
        /// Event kind (mod 6, so invalid ones occur).
        kind: u8,
        /// Declared size.
        size: u16,
        /// Huge declared size instead.
        huge: bool,
        /// Path selector: 0 empty, 1 over the limit, else short.
        path: u8,
        /// Send without an identity.
        no_identity: bool,
        /// Blocking.
        blocking: bool,
    },
    /// Content for `seq` at the next offset (or at `offset` when given).
    Chunk {
        /// Sequence number (mod 8).
        seq: u8,
        /// Explicit offset instead of the expected one.
        offset: Option<u16>,
        /// The bytes; `eicar` replaces them with the EICAR file.
        data: Vec<u8>,
        /// Send EICAR.
        eicar: bool,
        /// Final chunk.
        last: bool,
    },
    /// `ContentError` for `seq`.
    ContentError(u8),
    /// `FullScanRequest`.
    FullScanRequest(u8),
    /// `FullScanFinished`.
    FullScanFinished(u8, bool),
    /// `ShimReport`.
    Report(u8, u8, u8),
    /// A second `open`.
    Open,
    /// A message with no body.
    Empty,
    /// Raw bytes decoded as a `GuestMessage` (skipped when they do not
    /// decode).
    Raw(Vec<u8>),
}

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

struct Fixture {
    rt: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
}

/// Every how many iterations the target checks that the appliance still
/// answers another VM.
const LIVENESS_EVERY: u64 = 32;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let channel = rt.block_on(async {
            let mut config = giva_appliance::config::Config {
                appliance_id: "fuzz".into(),
                ..giva_appliance::config::Config::default()
            };
            config.server.admin_listen = None;
            config.outbox.path = ":memory:".into();
            config.server.content_timeout_secs = 1;
            config.server.max_inflight_per_vm = 4;
            config.server.max_path_len = 64;
            config.server.max_message_bytes = 64 * 1024;
            config.limits.max_file_size = 4096;
            config.full_scan.max_concurrent = 2;
            config.database.watch_interval_secs = 0;
            let db = Database::from_bytes(template_database()).expect("template loads");
            let app = giva_appliance::Appliance::new(config, db)
                .await
                .expect("appliance builds");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let _ = giva_appliance::serve(app, listener, std::future::pending()).await;
            });
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect to the appliance")
        });
        Fixture { rt, channel }
    })
}

fn op_message(op: &Op, offsets: &mut [u64; 8]) -> Option<giva_proto::shim::GuestMessage> {
    use giva_proto::shim::{
        ContentChunk, ContentError, FileEvent, FileIdentity, FullScanFinished, FullScanRequest,
        GuestMessage, SessionOpen, ShimReport, guest_message::Msg,
    };
    let msg = match op {
        Op::Event {
            seq,
            kind,
            size,
            huge,
            path,
            no_identity,
            blocking,
        } => {
            let seq = u64::from(seq % 8);
            offsets[seq as usize] = 0;
            let path = match path % 8 {
                0 => String::new(),
                1 => "/".repeat(65),
                n => format!("/tmp/f{n}"),
            };
            Msg::Event(FileEvent {
                seq,
                kind: i32::from(kind % 6),
                path,
                identity: (!no_identity).then(|| FileIdentity {
                    size: if *huge {
                        u64::MAX - 1
                    } else {
                        u64::from(*size)
                    },
                    ..FileIdentity::default()
                }),
                blocking: *blocking,
                full_scan_id: 0,
            })
        }
        Op::Chunk {
            seq,
            offset,
            data,
            eicar,
            last,
        } => {
            let seq = u64::from(seq % 8);
            let data = if *eicar { EICAR.to_vec() } else { data.clone() };
            let at = offset.map_or(offsets[seq as usize], u64::from);
            offsets[seq as usize] = at + data.len() as u64;
            Msg::Chunk(ContentChunk {
                seq,
                offset: at,
                data,
                last: *last,
            })
        }
        Op::ContentError(seq) => Msg::ContentError(ContentError {
            seq: u64::from(seq % 8),
            reason: "fuzz".into(),
        }),
        Op::FullScanRequest(id) => Msg::FullScanRequest(FullScanRequest {
            full_scan_id: u64::from(*id),
            reason: "fuzz".into(),
            ..FullScanRequest::default()
        }),
        Op::FullScanFinished(id, completed) => Msg::FullScanFinished(FullScanFinished {
            full_scan_id: u64::from(*id),
            files_scanned: 1,
            files_infected: 0,
            files_failed: 0,
            completed: *completed,
            ..FullScanFinished::default()
        }),
        Op::Report(a, b, c) => Msg::Report(ShimReport {
            fail_open_decisions: u64::from(*a),
            fail_closed_decisions: u64::from(*b),
            events_dropped: u64::from(*c),
        }),
        Op::Open => Msg::Open(SessionOpen {
            session_id: "again".into(),
        }),
        Op::Empty => return Some(GuestMessage { msg: None }),
        Op::Raw(bytes) => return prost::Message::decode(bytes.as_slice()).ok(),
    };
    Some(GuestMessage { msg: Some(msg) })
}

/// Checks that a fresh VM still gets a DENY for EICAR over a session.
async fn liveness(channel: tonic::transport::Channel, vm_id: &str) {
    use giva_proto::shim::{
        ContentChunk, EventKind, FileEvent, FileIdentity, GuestMessage, RegisterRequest,
        SessionOpen, VerdictKind, VmIdentity, appliance_message, guest_message::Msg,
        shim_service_client::ShimServiceClient,
    };
    let mut client = ShimServiceClient::new(channel);
    let reg = client
        .register(RegisterRequest {
            vm: Some(VmIdentity {
                vm_id: vm_id.into(),
                ..VmIdentity::default()
            }),
        })
        .await
        .expect("register for the liveness check")
        .into_inner();
    let msgs = vec![
        GuestMessage {
            msg: Some(Msg::Open(SessionOpen {
                session_id: reg.session_id,
            })),
        },
        GuestMessage {
            msg: Some(Msg::Event(FileEvent {
                seq: 1,
                kind: EventKind::Open as i32,
                path: "/eicar.com".into(),
                identity: Some(FileIdentity {
                    size: EICAR.len() as u64,
                    ..FileIdentity::default()
                }),
                blocking: true,
                full_scan_id: 0,
            })),
        },
        GuestMessage {
            msg: Some(Msg::Chunk(ContentChunk {
                seq: 1,
                offset: 0,
                data: EICAR.to_vec(),
                last: true,
            })),
        },
    ];
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for m in msgs {
        tx.send(m).await.expect("queue");
    }
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session opens")
        .into_inner();
    loop {
        let m = inbound
            .message()
            .await
            .expect("liveness stream")
            .expect("liveness stream ended without a verdict");
        if let Some(appliance_message::Msg::Verdict(v)) = m.msg {
            assert_eq!(v.kind, VerdictKind::Deny as i32, "EICAR not denied: {v:?}");
            break;
        }
    }
    drop(tx);
}

/// `appliance_session`: a registered VM opens a session on a real appliance
/// (in-process, loopback gRPC) and sends a sequence of generated or raw
/// messages. The appliance must answer or end the stream with a status,
/// within a bounded time, and keep serving other VMs.
pub fn appliance_session(data: &[u8]) {
    use giva_proto::shim::{
        GuestMessage, RegisterRequest, SessionOpen, VmIdentity, guest_message::Msg,
        shim_service_client::ShimServiceClient,
    };
    static N: AtomicU64 = AtomicU64::new(0);
    let mut u = Unstructured::new(data);
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    let f = fixture();
    let n = N.fetch_add(1, Ordering::Relaxed);
    f.rt.block_on(async {
        let mut client = ShimServiceClient::new(f.channel.clone());
        let vm_id = format!("fuzz-{}", n % 16);
        let reg = tokio::time::timeout(
            Duration::from_secs(10),
            client.register(RegisterRequest {
                vm: Some(VmIdentity {
                    vm_id: vm_id.clone(),
                    ..VmIdentity::default()
                }),
            }),
        )
        .await
        .expect("Register hangs");
        let Ok(reg) = reg else {
            // The VM's previous stream is still being torn down.
            return;
        };
        let mut offsets = [0u64; 8];
        let mut msgs = vec![GuestMessage {
            msg: Some(Msg::Open(SessionOpen {
                session_id: reg.into_inner().session_id,
            })),
        }];
        msgs.extend(
            ops.iter()
                .take(64)
                .filter_map(|op| op_message(op, &mut offsets)),
        );
        let stream = tokio_stream::iter(msgs);
        let run = async {
            let Ok(resp) = client.session(stream).await else {
                return;
            };
            let mut inbound = resp.into_inner();
            // Read until the appliance ends the stream (after our side
            // closed) or an error status; bounded below.
            while let Ok(Some(_)) = inbound.message().await {}
        };
        // Files left without content end with our stream; a queued
        // full-scan slot or a wait for another VM's scan of the same file
        // keeps the response open until we hang up, so a stream still open
        // after a short wait is not an error (the liveness check below is
        // what catches an appliance that stopped answering).
        let _ = tokio::time::timeout(Duration::from_millis(300), run).await;
        if n.is_multiple_of(LIVENESS_EVERY) {
            tokio::time::timeout(
                Duration::from_secs(10),
                liveness(f.channel.clone(), &format!("fuzz-liveness-{n}")),
            )
            .await
            .expect("the appliance stopped answering other VMs");
        }
    });
}

// ---------------------------------------------------------------------------
// Containers (giva-content): each parser behind its magic

/// An engine with the EICAR body signature, built once.
fn content_engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let text = "Eicar.Body:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n";
        let mut c = Compiler::new();
        c.add_source("eicar.ndb", text, false);
        // Executable offsets, section and import hashes, so that an
        // executable's structure is used as it is read.
        c.add_source(
            "exe.ndb",
            "Fuzz.EP:1:EP+0,16:4d5a??00\nFuzz.SE:6:SE1,4:7f454c46\nFuzz.SL:9:SL+0:cffaedfe\n",
            false,
        );
        c.add_source("exe.mdb", "*:d41d8cd98f00b204e9800998ecf8427e:Fuzz.Section:73\n", false);
        c.add_source("exe.imp", "d41d8cd98f00b204e9800998ecf8427e:*:Fuzz.Imports\n", false);
        c.add_source(
            "exe.ldb",
            "Fuzz.Ldb;Engine:51-255,Target:1,EntryPoint:0-4096,NumberOfSections:1-3;0;EP-2:4d5a\n",
            false,
        );
        let db = c.build().expect("the EICAR database builds");
        Engine::new(&db).expect("engine")
    })
}

/// Whose parser a container target runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parser {
    /// giva's own (cpio, ar): a panic is a bug here, and a crash.
    Own,
    /// A crate's (zip, tar, gzip, bzip2, xz, zstd, 7z, cab): a panic is
    /// caught by the walk's boundary and the container reported as
    /// unreadable, which is the behaviour under test; the crate's bug is
    /// not giva's to fix.
    Crate,
}

/// Opens `magic` + `data` as layers under small limits. A parser may say
/// the input is unreadable; whatever the walk reports must be coherent;
/// giva's own parsers must not panic.
fn content(magic: &[u8], data: &[u8], parser: Parser) {
    let mut input = magic.to_vec();
    input.extend_from_slice(data);
    content_input(&input, parser);
}

fn content_input(input: &[u8], parser: Parser) {
    let limits = giva_content::Limits {
        max_files: 64,
        max_file_size: 1 << 20,
        max_scan_size: 8 << 20,
        max_scan_time: Duration::from_secs(5),
        ratio_floor: 64 << 10,
        spill_above: 256 << 10,
        ..giva_content::Limits::default()
    };
    let d = giva_content::Decomposer::new(content_engine().clone(), ScanOptions::default(), limits);
    // Under libFuzzer, any panic aborts through its hook, even one the walk
    // catches: for a crate's parser, a caught panic is the expected
    // outcome, so the hook stays quiet while the walk runs.
    #[cfg(fuzzing)]
    let hook = (parser == Parser::Crate).then(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        prev
    });
    let r = d.scan(input, "fuzz.bin");
    #[cfg(fuzzing)]
    if let Some(prev) = hook {
        std::panic::set_hook(prev);
    }
    for g in &r.gaps {
        assert!(
            parser == Parser::Crate || !g.detail.contains("the parser failed"),
            "giva's own parser panicked: {g:?}"
        );
    }
    assert!(
        r.members <= 64 + 1,
        "more members than the limit: {}",
        r.members
    );
    assert_eq!(r.result.is_infected(), !r.found.is_empty());
    assert!(r.result.bytes_scanned <= input.len() as u64 + (8 << 20));
}

/// `content_tar`: a 512-byte header (the input's first bytes, with the
/// `ustar` magic set) and the rest.
fn content_tar(data: &[u8]) {
    let mut input = data.to_vec();
    if input.len() < 512 {
        input.resize(512, 0);
    }
    input[257..262].copy_from_slice(b"ustar");
    content_input(&input, Parser::Crate);
}

/// `content_cpio`: byte 0 picks newc, odc or old binary (either order).
fn content_cpio(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let magic: &[u8] = match pick % 4 {
        0 => b"070701",
        1 => b"070707",
        2 => &[0xc7, 0x71],
        _ => &[0x71, 0xc7],
    };
    content(magic, rest, Parser::Own);
}

/// `content_iso`: the input from sector 16 on (the volume descriptors),
/// after 32 KiB of zeros, with the first descriptor's `CD001` set.
fn content_iso(data: &[u8]) {
    let mut input = vec![0u8; 16 * 2048];
    input.extend_from_slice(data);
    if input.len() < 16 * 2048 + 7 {
        input.resize(16 * 2048 + 7, 0);
    }
    input[16 * 2048 + 1..16 * 2048 + 6].copy_from_slice(b"CD001");
    content_input(&input, Parser::Own);
}

/// `content_arj`: an ARJ archive whose header CRCs are put right (the
/// fuzzer cannot make them), so that the headers and the decoders behind
/// them are reached. Byte 0 picks: odd, the input is the archive; even, a
/// main header and one file header (method byte 1 % 5, flags byte 2,
/// original size bytes 3-4) are made around the rest as its data.
fn content_arj(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::new();
    if pick & 1 == 1 {
        input.extend_from_slice(&[0x60, 0xea]);
        input.extend_from_slice(rest);
    } else {
        let field = |i: usize| rest.get(i).copied().unwrap_or(0);
        let body = rest.get(4..).unwrap_or_default();
        let mut header = |kind: u8, method: u8, flags: u8, packed: u32, size: u32| {
            let mut b = vec![30u8, 11, 1, 2, flags, method, kind, 0];
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&packed.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&[0; 10]);
            b.extend_from_slice(b"fuzz.bin\0\0");
            input.extend_from_slice(&[0x60, 0xea]);
            input.extend_from_slice(&(b.len() as u16).to_le_bytes());
            input.extend_from_slice(&b);
            input.extend_from_slice(&[0; 4]);
            input.extend_from_slice(&[0, 0]);
        };
        header(2, 0, 0, 0, 0);
        header(
            0,
            field(0) % 5,
            field(1),
            body.len() as u32,
            u32::from(u16::from_le_bytes([field(2), field(3)])),
        );
        input.extend_from_slice(body);
        input.extend_from_slice(&[0x60, 0xea, 0, 0]);
    }
    // Every header's CRC made right, in order.
    let mut at = 0;
    while at + 4 <= input.len() {
        if input[at..at + 2] == [0x60, 0xea] {
            let size = usize::from(u16::from_le_bytes([input[at + 2], input[at + 3]]));
            let end = at + 4 + size;
            if size > 0 && end + 4 <= input.len() {
                let mut crc = flate2::Crc::new();
                crc.update(&input[at + 4..end]);
                input[end..end + 4].copy_from_slice(&crc.sum().to_le_bytes());
                at = end + 4;
                continue;
            }
        }
        at += 1;
    }
    content_input(&input, Parser::Own);
}

/// `content_mail`: byte 0 picks a message (its first two header lines
/// set, the rest from the input; MIME by the `mail-parser` crate, with
/// giva's uuencode and BinHex behind it), BinHex, TNEF or SZDD (giva's own
/// decoders).
fn content_mail(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (magic, parser): (&[u8], Parser) = match pick % 4 {
        0 => (b"From: a@example.com\nTo: b@example.com\n", Parser::Crate),
        1 => (
            b"(This file must be converted with BinHex 4.0)\n",
            Parser::Own,
        ),
        2 => (&[0x78, 0x9f, 0x3e, 0x22], Parser::Own),
        _ => (b"SZDD\x88\xf0\x27\x33A_", Parser::Own),
    };
    content(magic, rest, parser);
}

/// `content_doc`: byte 0 picks an OLE2 file (the `cfb` crate, with giva's
/// package and PowerPoint readers behind it), a PDF, an RTF document, an
/// HTML page (giva's own), a CHM file (giva's directory reader, the
/// `lzxd` crate behind it) or a OneNote section (giva's own).
fn content_doc(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (magic, parser): (&[u8], Parser) = match pick % 6 {
        0 => (
            &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1],
            Parser::Crate,
        ),
        1 => (b"%PDF-1.4\n", Parser::Own),
        2 => (b"{\\rtf1", Parser::Own),
        3 => (b"<html>", Parser::Own),
        // CHM: giva's directory reader, the `lzxd` crate behind it.
        4 => (b"ITSF", Parser::Crate),
        _ => (
            &[
                0xe4, 0x52, 0x5c, 0x7b, 0x8c, 0xd8, 0xa7, 0x4d, 0xae, 0xb1, 0x53, 0x78, 0xd0, 0x29,
                0x96, 0xd3,
            ],
            Parser::Own,
        ),
    };
    content(magic, rest, parser);
}

/// `content_html`: the input after `<html>` is a page for giva's HTML
/// normalizer, checked on its own (each stream at most three times the
/// page: references may grow by a third, and a piece after an ASP
/// directive is read twice; the same twice) and then walked (the normalized streams scanned, the
/// `data:` URIs opened).
fn content_html(data: &[u8]) {
    let mut page = b"<html>".to_vec();
    page.extend_from_slice(data);
    let n = giva_content::html_norm::normalize(&page);
    assert!(
        n.page.len() <= 2 * page.len() + 16,
        "page stream grew {} -> {}",
        page.len(),
        n.page.len()
    );
    assert!(
        n.text.len() <= 2 * page.len() + 16,
        "text stream grew {} -> {}",
        page.len(),
        n.text.len()
    );
    assert_eq!(
        giva_content::html_norm::normalize(&page),
        n,
        "not deterministic"
    );
    content_input(&page, Parser::Own);
}

/// `content_installer`: byte 0 picks a Symbian package (its three UIDs
/// set, the rest from the input), an InstallShield stub (a minimal PE
/// whose overlay is the input: a list of files, cabinets, or an MSI
/// stub's table), an NSIS installer (the same PE, its overlay NSIS's
/// first header up to its mark, then the input) or a compiled AutoIt
/// script (the same PE, its overlay the AutoIt mark up to `AU3!EA0`, then
/// the input); all giva's own readers (LZMA and deflate by crates behind
/// them).
fn content_installer(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 4 == 0 {
        let uids = [0, 0, 0, 1, 0x12, 0x3a, 0x00, 0x10, 0x19, 0x04, 0x00, 0x10];
        content(&uids, rest, Parser::Own);
    } else {
        // MZ, PE at 0x80, one section of 0x10 bytes at 0x200, no optional
        // header: the overlay starts at 0x210.
        let mut pe = vec![0u8; 0x210];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x86..0x88].copy_from_slice(&1u16.to_le_bytes());
        let s = 0x80 + 24;
        pe[s + 16..s + 20].copy_from_slice(&0x10u32.to_le_bytes());
        pe[s + 20..s + 24].copy_from_slice(&0x200u32.to_le_bytes());
        match pick % 4 {
            2 => pe.extend_from_slice(b"\0\0\0\0\xef\xbe\xad\xdeNullsoftInst"),
            3 => pe.extend_from_slice(
                b"\xa3\x48\x4b\xbe\x98\x6c\x4a\xa9\x99\x4c\x53\x0a\x86\xd6\x48\x7dAU3!EA0",
            ),
            _ => {}
        }
        content(&pe, rest, Parser::Own);
    }
}

/// `content_upx`: byte 0 picks UPX's NRV2B, NRV2D or NRV2E; the rest is
/// the packed image of a minimal UPX-packed PE (its `UPX!` header saying
/// 64 KiB unpacked), giva's own decoders and rebuilder.
fn content_upx(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let method = [2u8, 5, 8][usize::from(pick) % 3];
    let mut pe = vec![0u8; 0x400];
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    pe[0x86..0x88].copy_from_slice(&2u16.to_le_bytes());
    let put =
        |pe: &mut Vec<u8>, at: usize, v: u32| pe[at..at + 4].copy_from_slice(&v.to_le_bytes());
    // UPX0: 64 KiB in memory, nothing in the file; UPX1: the input.
    put(&mut pe, 0x98 + 8, 0x10000);
    put(&mut pe, 0x98 + 12, 0x1000);
    put(&mut pe, 0xc0 + 8, 0x10000);
    put(&mut pe, 0xc0 + 12, 0x11000);
    put(&mut pe, 0xc0 + 16, rest.len() as u32);
    put(&mut pe, 0xc0 + 20, 0x400);
    pe[0x300..0x308].copy_from_slice(&[b'U', b'P', b'X', b'!', 13, 9, method, 8]);
    put(&mut pe, 0x310, 0x10000);
    put(&mut pe, 0x314, rest.len() as u32);
    content(&pe, rest, Parser::Own);
}

/// `content_exe`: byte 0 picks a PE (the input from its `e_lfanew` on),
/// an ELF or a Mach-O (the input after the magic): giva's own header
/// readers, the offsets, section and import hashes that use them. The
/// structure must be coherent: a PE's entry point lies in the file, and it
/// has a section.
fn content_exe(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut input: Vec<u8> = match pick % 3 {
        0 => {
            let mut pe = vec![0u8; 0x40];
            pe[..2].copy_from_slice(b"MZ");
            pe[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
            pe.extend_from_slice(b"PE\0\0");
            pe
        }
        1 => b"\x7fELF".to_vec(),
        _ => vec![0xcf, 0xfa, 0xed, 0xfe],
    };
    input.extend_from_slice(rest);
    let target = giva_content::target_type(&input);
    if let Some(info) = giva_content::exe_info(&input, target)
        && target == 1
    {
        assert!(info.entry < input.len() as u64, "{info:?}");
        assert!(!info.sections.is_empty(), "{info:?}");
    }
    content_input(&input, Parser::Own);
}

/// `content_packer`: byte 0 picks WWPack or MEW; the rest is the packed
/// stream of a minimal PE that each recognises (WWPack: one block filling
/// the first section; MEW: one chunk after its header), giva's own
/// decoders and rebuilders.
fn content_packer(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let stream = &rest[..rest.len().min(0x200)];
    let put =
        |pe: &mut Vec<u8>, at: usize, v: u32| pe[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let mut pe = vec![0u8; 0xa00];
    pe[..2].copy_from_slice(b"MZ");
    put(&mut pe, 0x3c, 0x80);
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    pe[0x86..0x88].copy_from_slice(&2u16.to_le_bytes());
    pe[0x94..0x96].copy_from_slice(&0xe0u16.to_le_bytes());
    let opt = 0x98;
    pe[opt..opt + 2].copy_from_slice(&0x10bu16.to_le_bytes());
    put(&mut pe, opt + 28, 0x40_0000);
    put(&mut pe, opt + 32, 0x1000);
    put(&mut pe, opt + 36, 0x200);
    put(&mut pe, opt + 60, 0x200);
    put(&mut pe, opt + 92, 16);
    let table = opt + 0xe0;
    let section = |pe: &mut Vec<u8>, i: usize, (va, vsz, raw, rsz): (u32, u32, u32, u32)| {
        let at = table + 40 * i;
        put(pe, at + 8, vsz);
        put(pe, at + 12, va);
        put(pe, at + 16, rsz);
        put(pe, at + 20, raw);
    };
    if pick % 2 == 0 {
        // WWPack: the program at 0x1000 (its stream in the file at 0x200),
        // WWPack's section at 0x2000 (the file at 0x400), the entry point.
        section(&mut pe, 0, (0x1000, 0x1000, 0x200, 0x200));
        section(&mut pe, 1, (0x2000, 0x1000, 0x400, 0x400));
        put(&mut pe, opt + 16, 0x2000);
        pe[0x200..0x200 + stream.len()].copy_from_slice(stream);
        let w = 0x400;
        pe[w..w + 7].copy_from_slice(b"\x53\x55\x8b\xe8\x33\xdb\xeb");
        pe[w + 0x68..w + 0x68 + 19].copy_from_slice(
            b"\xe8\x00\x00\x00\x00\x58\x2d\x6d\x00\x00\x00\x50\x60\x33\xc9\x50\x58\x50\x50",
        );
        // One block: from 0x1000, 0x200 bytes, no more.
        put(&mut pe, w + 0x2a1, 0x1000);
        put(&mut pe, w + 0x2a1 + 8, 0x80);
        put(&mut pe, w + 0x2a1 + 12, 0x200 - 4);
    } else {
        // MEW: the program's empty section at 0x1000, MEW's at 0x6000
        // (the file at 0x200), the entry point jumping to 0x154, where
        // `mov esi` gives the chunks at 0x1c in MEW's section.
        section(&mut pe, 0, (0x1000, 0x5000, 0, 0));
        section(&mut pe, 1, (0x6000, 0x1000, 0x200, 0x400));
        put(&mut pe, opt + 16, 0x6000);
        pe[0x200] = 0xe9;
        put(&mut pe, 0x201, 0x154u32.wrapping_sub(0x6005));
        pe[0x154] = 0xbe;
        put(&mut pe, 0x155, 0x40_601c);
        let h = 0x200 + 0x1c;
        put(&mut pe, h + 4, 0x40_1000);
        put(&mut pe, h + 8, 0x40_1000);
        pe[h + 12..h + 12 + stream.len()].copy_from_slice(stream);
    }
    content_input(&pe, Parser::Own);
}

/// `content_compressed`: byte 0 picks gzip, bzip2, xz or zstd.
fn content_compressed(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let magic: &[u8] = match pick % 4 {
        0 => &[0x1f, 0x8b, 0x08],
        1 => b"BZh9",
        2 => &[0xfd, b'7', b'z', b'X', b'Z', 0],
        _ => &[0x28, 0xb5, 0x2f, 0xfd],
    };
    content(magic, rest, Parser::Crate);
}
