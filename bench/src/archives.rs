//! Archives: `giva scan` on one thread beside `clamscan` in its default
//! mode (archives opened), the same signatures, on two corpora of this
//! machine's own files:
//!
//! - **compressed docs**: the `.gz` files of `/usr/share/man` and
//!   `/usr/share/doc`, as they are;
//! - **archive mix**: zip, tar.gz and (with `7z` installed) 7z archives
//!   built here from real files of `/usr/share/doc`, `/usr/share/man` and
//!   `/usr/bin`;
//! - **mail and documents**: messages and mboxes with base64 attachments
//!   and quoted-printable text, PDFs of Flate and ASCIIHex streams, OLE2
//!   compound files, RTF documents with embedded objects and HTML pages
//!   with `data:` URIs, all built here around real files of the same
//!   directories.
//!
//! The signatures: 10,000 body signatures cut from the machine's shared
//! libraries (code neither corpus holds, so a scan pays for every one of
//! them and finds nothing with them), plus a few cut from the decompressed
//! content of corpus files, which both tools must find inside the
//! containers. Both tools' FOUND lines are compared.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::latest::{Row, Summary};
use crate::rng::Rng;
use crate::run;

/// What to run.
#[derive(Debug, Clone)]
pub struct ArchivesArgs {
    /// Directory of the release binaries.
    pub bin_dir: PathBuf,
    /// Scratch directory (corpora and signatures are kept for reuse).
    pub work: PathBuf,
    /// Body signatures cut from shared libraries.
    pub body: usize,
    /// Runs of each tool; the best is kept.
    pub repeat: usize,
    /// Timeout of one run.
    pub timeout: Duration,
}

/// One tool on one corpus.
#[derive(Debug, Clone)]
pub struct ToolRun {
    /// The corpus.
    pub corpus: String,
    /// The tool.
    pub tool: String,
    /// Best wall time, seconds.
    pub secs: f64,
    /// Peak RSS, MiB.
    pub rss_mib: Option<f64>,
    /// Files found, as (file, signature).
    pub found: BTreeSet<(String, String)>,
    /// Files reported as not scanned inside (giva only).
    pub not_scanned: usize,
}

/// A corpus: its directory, files and bytes.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub dir: PathBuf,
    /// Files.
    pub files: usize,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The run's results.
#[derive(Debug, Clone, Default)]
pub struct ArchivesResult {
    /// The corpora.
    pub corpora: Vec<Corpus>,
    /// Every run.
    pub runs: Vec<ToolRun>,
    /// What the signatures are.
    pub signatures: String,
    /// Notes (skips, mismatches).
    pub notes: Vec<String>,
}

fn files_under(roots: &[&str], keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = roots
        .iter()
        .flat_map(|r| walkdir::WalkDir::new(r).follow_links(false))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && keep(e.path()))
        .map(walkdir::DirEntry::into_path)
        .collect();
    v.sort();
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A run of bytes worth a signature: not mostly one byte value.
fn varied(b: &[u8]) -> bool {
    let distinct: BTreeSet<u8> = b.iter().copied().collect();
    distinct.len() >= b.len() / 2
}

/// Code, not a string: a quarter of the bytes or more are not printable
/// text. (ClamAV also scans text normalized, which giva does not do yet:
/// a signature cut from a library's strings would measure that, not
/// archives.)
fn binary(b: &[u8]) -> bool {
    b.iter()
        .filter(|&&c| !(0x20..0x7f).contains(&c) && c != b'\n' && c != b'\t')
        .count()
        * 4
        >= b.len()
}

/// One word of text (letters, digits, `_`) with a capital letter in it:
/// ClamAV also scans text normalized (spaces collapsed, lines joined, case
/// folded), as giva does too, and a capital keeps a signature out of that
/// pass, so both tools can only find it in the raw bytes.
fn plain_text(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
}

/// The compressed-docs corpus: the `.gz` files of man and doc, copied so
/// that the run does not depend on what else is under those directories.
fn docs_corpus(work: &Path) -> anyhow::Result<Corpus> {
    let dir = work.join("archives-docs");
    let gz = files_under(&["/usr/share/man", "/usr/share/doc"], |p| {
        p.extension().is_some_and(|e| e == "gz")
    });
    if !dir.join(".done").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        for (i, f) in gz.iter().enumerate() {
            let to = dir.join(format!("{:03}", i / 1000)).join(format!(
                "{i:05}-{}",
                f.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::create_dir_all(to.parent().unwrap_or(&dir))?;
            std::fs::copy(f, &to)?;
        }
        std::fs::write(dir.join(".done"), b"")?;
    }
    corpus(
        "compressed docs (.gz of /usr/share/man and /usr/share/doc)",
        &dir,
    )
}

fn corpus(name: &str, dir: &Path) -> anyhow::Result<Corpus> {
    let files = files_under(&[&dir.display().to_string()], |p| {
        p.file_name().is_none_or(|n| n != ".done")
    });
    let bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    Ok(Corpus {
        name: name.into(),
        dir: dir.to_owned(),
        files: files.len(),
        bytes,
    })
}

/// The archive mix: 150 zips, 150 tar.gz and (with `7z`) 75 7z archives
/// of 20 real files each.
fn mix_corpus(work: &Path, seed: u64) -> anyhow::Result<Corpus> {
    let dir = work.join("archives-mix");
    if !dir.join(".done").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pool = files_under(&["/usr/share/doc", "/usr/share/man", "/usr/bin"], |p| {
            std::fs::metadata(p).is_ok_and(|m| m.len() > 512 && m.len() < 4 << 20)
        });
        anyhow::ensure!(pool.len() >= 100, "too few real files for the archive mix");
        let mut rng = Rng::new(seed, 0xa5c);
        let mut pick = |n: usize| -> Vec<PathBuf> {
            (0..n)
                .map(|_| pool[rng.below(pool.len())].clone())
                .collect()
        };
        let seven = run::which("7z");
        for i in 0..150 {
            let files = pick(20);
            let mut z =
                zip::ZipWriter::new(std::fs::File::create(dir.join(format!("a{i:03}.zip")))?);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            for (j, f) in files.iter().enumerate() {
                z.start_file(
                    format!(
                        "{j:02}-{}",
                        f.file_name().unwrap_or_default().to_string_lossy()
                    ),
                    opts,
                )?;
                z.write_all(&std::fs::read(f)?)?;
            }
            z.finish()?;
            let files = pick(20);
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(dir.join(format!("t{i:03}.tar.gz")))?,
                flate2::Compression::default(),
            );
            let mut t = tar::Builder::new(gz);
            for (j, f) in files.iter().enumerate() {
                t.append_path_with_name(
                    f,
                    format!(
                        "{j:02}-{}",
                        f.file_name().unwrap_or_default().to_string_lossy()
                    ),
                )?;
            }
            t.into_inner()?.finish()?;
            if let (Some(seven), true) = (&seven, i < 75) {
                let files = pick(20);
                let list = dir.join("list.txt");
                std::fs::write(
                    &list,
                    files
                        .iter()
                        .map(|f| format!("{}\n", f.display()))
                        .collect::<String>(),
                )?;
                let st = std::process::Command::new(seven)
                    .arg("a")
                    .arg("-bd")
                    .arg("-y")
                    // Full paths: the picks may share a file name.
                    .arg("-spf2")
                    .arg(dir.join(format!("s{i:03}.7z")))
                    .arg(format!("@{}", list.display()))
                    .stdout(std::process::Stdio::null())
                    .status()?;
                anyhow::ensure!(st.success(), "7z failed");
                std::fs::remove_file(&list)?;
            }
        }
        std::fs::write(dir.join(".done"), b"")?;
    }
    corpus("archive mix (zip, tar.gz, 7z of real files)", &dir)
}

/// Base64 of `data` in lines of 76.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            out.push(if k <= c.len() {
                A[(n >> (18 - 6 * k)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Quoted-printable of `text`: lines of at most 76, `=` and bytes outside
/// printable ASCII escaped.
fn quoted_printable(text: &[u8]) -> String {
    let mut out = String::new();
    let mut col = 0;
    for &b in text {
        let piece = if b == b'\n' {
            col = 0;
            out.push('\n');
            continue;
        } else if (b' '..=b'~').contains(&b) && b != b'=' {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if col + piece.len() > 75 {
            out.push_str("=\n");
            col = 0;
        }
        col += piece.len();
        out.push_str(&piece);
    }
    out
}

/// Picks a real file: its path and bytes.
type Pick<'a> = dyn FnMut(&mut Rng) -> anyhow::Result<(PathBuf, Vec<u8>)> + 'a;

/// The mail-and-documents corpus: 150 messages, 20 mboxes of 5, 100
/// PDFs, 50 OLE2 files, 50 RTF documents and 50 HTML pages, around real
/// files of this machine. Its text files (whose words the planted
/// signatures are cut from) are listed beside it.
fn mail_docs_corpus(work: &Path, seed: u64) -> anyhow::Result<(Corpus, Vec<PathBuf>)> {
    let dir = work.join("archives-maildocs");
    let sources = work.join("archives-maildocs.sources");
    if !dir.join(".done").is_file() || !sources.is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let texts = files_under(&["/usr/share/doc"], |p| {
            std::fs::metadata(p).is_ok_and(|m| m.len() > 4096 && m.len() < 256 << 10)
                && std::fs::read(p).is_ok_and(|b| !b.starts_with(&[0x1f, 0x8b]) && !b.contains(&0))
        });
        let bins = files_under(&["/usr/bin"], |p| {
            std::fs::metadata(p).is_ok_and(|m| m.len() > 4096 && m.len() < 512 << 10)
        });
        anyhow::ensure!(
            texts.len() >= 50 && bins.len() >= 50,
            "too few real files for the mail and documents corpus"
        );
        let mut rng = Rng::new(seed, 0xd0c);
        let mut used = Vec::new();
        let mut text = |rng: &mut Rng| -> anyhow::Result<(PathBuf, Vec<u8>)> {
            let f = texts[rng.below(texts.len())].clone();
            let b = std::fs::read(&f)?;
            used.push(f.clone());
            Ok((f, b))
        };
        let bin = |rng: &mut Rng| -> anyhow::Result<(PathBuf, Vec<u8>)> {
            let f = bins[rng.below(bins.len())].clone();
            let b = std::fs::read(&f)?;
            Ok((f, b))
        };
        let name = |p: &Path| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };
        let message = |rng: &mut Rng, text: &mut Pick<'_>| -> anyhow::Result<String> {
            let (_, body) = text(rng)?;
            let (tf, tb) = text(rng)?;
            let (bf, bb) = bin(rng)?;
            Ok(format!(
                "From: bench@example.com\nTo: giva@example.com\nSubject: files\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BENCH\"\n\n--BENCH\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n{}\n--BENCH\nContent-Type: text/plain; name=\"{}\"\nContent-Transfer-Encoding: base64\n\n{}\n--BENCH\nContent-Type: application/octet-stream; name=\"{}\"\nContent-Transfer-Encoding: base64\n\n{}\n--BENCH--\n",
                quoted_printable(&body[..body.len().min(2048)]),
                name(&tf),
                base64(&tb),
                name(&bf),
                base64(&bb)
            ))
        };
        for i in 0..150 {
            std::fs::write(
                dir.join(format!("m{i:03}.eml")),
                message(&mut rng, &mut text)?,
            )?;
        }
        for i in 0..20 {
            let mut mbox = String::new();
            for k in 0..5 {
                mbox.push_str(&format!(
                    "From bench@example.com Mon Jan  1 00:00:0{k} 2024\n{}\n",
                    message(&mut rng, &mut text)?
                ));
            }
            std::fs::write(dir.join(format!("b{i:02}.mbox")), mbox)?;
        }
        for i in 0..100 {
            let mut pdf = b"%PDF-1.5\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
            for k in 0..4 {
                let (_, data) = if k % 2 == 0 {
                    text(&mut rng)?
                } else {
                    bin(&mut rng)?
                };
                let (filter, bytes) = if k == 3 {
                    ("/ASCIIHexDecode", format!("{}>", hex(&data)).into_bytes())
                } else {
                    let mut z =
                        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                    z.write_all(&data)?;
                    ("/FlateDecode", z.finish()?)
                };
                pdf.extend_from_slice(
                    format!(
                        "{} 0 obj\n<< /Length {} /Filter {filter} >>\nstream\n",
                        k + 2,
                        bytes.len()
                    )
                    .as_bytes(),
                );
                pdf.extend_from_slice(&bytes);
                pdf.extend_from_slice(b"\nendstream\nendobj\n");
            }
            pdf.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
            std::fs::write(dir.join(format!("p{i:03}.pdf")), pdf)?;
        }
        for i in 0..50 {
            let mut f = cfb::CompoundFile::create_with_version(
                cfb::Version::V3,
                std::fs::File::create(dir.join(format!("o{i:02}.doc")))?,
            )?;
            for k in 0..4 {
                let (_, data) = if k % 2 == 0 {
                    text(&mut rng)?
                } else {
                    bin(&mut rng)?
                };
                let mut s = f.create_stream(format!("/Stream{k}"))?;
                s.write_all(&data)?;
            }
            f.flush()?;
        }
        for i in 0..50 {
            let (tf, data) = text(&mut rng)?;
            let label = name(&tf);
            // An OLE1 object carrying an object package of the file.
            let mut package = vec![2u8, 0];
            for s in [&label, &format!("C:\\{label}")] {
                package.extend_from_slice(s.as_bytes());
                package.push(0);
            }
            package.extend_from_slice(&[0, 0, 3, 0]);
            let tmp = format!("C:\\{label}\0");
            package.extend_from_slice(&(tmp.len() as u32).to_le_bytes());
            package.extend_from_slice(tmp.as_bytes());
            package.extend_from_slice(&(data.len() as u32).to_le_bytes());
            package.extend_from_slice(&data);
            let mut ole1 = Vec::new();
            ole1.extend_from_slice(&0x0501u32.to_le_bytes());
            ole1.extend_from_slice(&2u32.to_le_bytes());
            ole1.extend_from_slice(&8u32.to_le_bytes());
            ole1.extend_from_slice(b"Package\0");
            ole1.extend_from_slice(&0u32.to_le_bytes());
            ole1.extend_from_slice(&0u32.to_le_bytes());
            ole1.extend_from_slice(&(package.len() as u32).to_le_bytes());
            ole1.extend_from_slice(&package);
            let rtf = format!(
                "{{\\rtf1\\ansi {{\\fonttbl{{\\f0 Times;}}}}\\f0 A document with an object.\\par {{\\object\\objemb{{\\*\\objclass Package}}{{\\*\\objdata {}}}}}}}",
                hex(&ole1)
            );
            std::fs::write(dir.join(format!("r{i:02}.rtf")), rtf)?;
        }
        for i in 0..50 {
            let (_, a) = text(&mut rng)?;
            let (_, b) = bin(&mut rng)?;
            let html = format!(
                "<!DOCTYPE html>\n<html><head><title>files</title></head><body>\n<p>Two files.</p>\n<a href=\"data:text/plain;base64,{}\">a</a>\n<a href=\"data:application/octet-stream;base64,{}\">b</a>\n</body></html>\n",
                base64(&a).replace('\n', ""),
                base64(&b).replace('\n', "")
            );
            std::fs::write(dir.join(format!("h{i:02}.html")), html)?;
        }
        used.sort();
        used.dedup();
        std::fs::write(
            &sources,
            used.iter()
                .map(|p| format!("{}\n", p.display()))
                .collect::<String>(),
        )?;
        std::fs::write(dir.join(".done"), b"")?;
    }
    let used = std::fs::read_to_string(&sources)?
        .lines()
        .map(PathBuf::from)
        .collect();
    Ok((
        corpus(
            "mail and documents (messages, mboxes, PDF, OLE2, RTF, HTML around real files)",
            &dir,
        )?,
        used,
    ))
}

/// The bytes of `path` as its innermost layer: a `.gz` decompressed.
fn plain(path: &Path) -> Option<Vec<u8>> {
    let raw = std::fs::read(path).ok()?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    } else {
        Some(raw)
    }
}

/// The signatures: `body` cut from shared libraries, 8 cut from the
/// decompressed content of compressed-docs files and 6 from the text files
/// inside the mail and documents (the expected finds).
fn signatures(
    work: &Path,
    body: usize,
    docs: &Corpus,
    mail_texts: &[PathBuf],
    seed: u64,
) -> anyhow::Result<(PathBuf, String)> {
    let path = work.join(format!("archives-sigs-{body}.ndb"));
    let mut rng = Rng::new(seed, 0x51c);
    let libs = files_under(&["/usr/lib/x86_64-linux-gnu", "/usr/lib"], |p| {
        p.to_string_lossy().contains(".so")
            && std::fs::metadata(p).is_ok_and(|m| m.len() > 64 << 10)
    });
    anyhow::ensure!(
        !libs.is_empty(),
        "no shared libraries to cut signatures from"
    );
    let mut lines = Vec::with_capacity(body + 8);
    let mut seen = BTreeSet::new();
    while lines.len() < body {
        let lib = &libs[rng.below(libs.len())];
        let Ok(data) = std::fs::read(lib) else {
            continue;
        };
        for _ in 0..50 {
            let len = 16 + rng.below(17);
            let at = rng.below(data.len() - len);
            let cut = &data[at..at + len];
            if varied(cut) && binary(cut) && seen.insert(cut.to_vec()) {
                lines.push(format!("Bench.Lib.{}:0:*:{}", lines.len(), hex(cut)));
                if lines.len() == body {
                    break;
                }
            }
        }
    }
    let docs_files = files_under(&[&docs.dir.display().to_string()], |p| {
        p.extension().is_some_and(|e| e == "gz")
    });
    let planted = plant(&mut rng, &docs_files, 8, "Bench.Doc", &mut seen, &mut lines);
    let mail_planted = plant(&mut rng, mail_texts, 6, "Bench.Mail", &mut seen, &mut lines);
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok((
        path,
        format!(
            "{body} body signatures of 16-32 bytes of code (not strings) cut from {} shared libraries of this machine, {planted} of one-word text (20 letters, digits or `_`, with a capital, so that the normalized pass of text that both tools make cannot find them where the raw bytes do not) cut from the decompressed content of compressed-docs files, and {mail_planted} such from the text files inside the mail and documents (the expected finds)",
            libs.len()
        ),
    ))
}

/// Cuts `count` signatures named `PREFIX.N` of one-word text from
/// `files` (a `.gz` decompressed): the first one-word run of 20 bytes past
/// a random point of a file drawn at random. Returns how many it cut.
fn plant(
    rng: &mut Rng,
    files: &[PathBuf],
    count: usize,
    prefix: &str,
    seen: &mut BTreeSet<Vec<u8>>,
    lines: &mut Vec<String>,
) -> usize {
    let mut planted = 0;
    let mut tries = 0;
    while planted < count && !files.is_empty() && tries < 10_000 {
        tries += 1;
        let Some(data) = plain(&files[rng.below(files.len())]) else {
            continue;
        };
        if data.len() < 4096 {
            continue;
        }
        let from = rng.below(data.len() - 20);
        let Some(at) = (from..data.len() - 20).find(|&i| plain_text(&data[i..i + 20])) else {
            continue;
        };
        let cut = &data[at..at + 20];
        if varied(cut) && seen.insert(cut.to_vec()) {
            lines.push(format!("{prefix}.{planted}:0:*:{}", hex(cut)));
            planted += 1;
        }
    }
    planted
}

/// FOUND lines as (file name, signature).
fn found(stdout: &str) -> BTreeSet<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (path, rest) = l.rsplit_once(": ")?;
            let sig = rest.strip_suffix(" FOUND")?;
            let name = Path::new(path).file_name()?.to_string_lossy().into_owned();
            Some((name, sig.trim_end_matches(".UNOFFICIAL").to_string()))
        })
        .collect()
}

/// The files in `found`.
fn files_of(found: &BTreeSet<(String, String)>) -> BTreeSet<&str> {
    found.iter().map(|(f, _)| f.as_str()).collect()
}

/// Runs the workload.
///
/// # Errors
///
/// giva is not built, or a corpus cannot be made.
pub fn run(a: &ArchivesArgs) -> anyhow::Result<ArchivesResult> {
    let giva = a.bin_dir.join("giva");
    anyhow::ensure!(
        giva.is_file(),
        "{} not found: build with `cargo build --release -p giva-appliance`",
        giva.display()
    );
    std::fs::create_dir_all(&a.work)?;
    let work = a.work.canonicalize()?;
    let mut res = ArchivesResult::default();
    eprintln!("archives: corpora (made once, then reused)");
    let docs = docs_corpus(&work)?;
    let mix = mix_corpus(&work, 1)?;
    let (maildocs, mail_texts) = mail_docs_corpus(&work, 1)?;
    let (sigs, what) = signatures(&work, a.body, &docs, &mail_texts, 1)?;
    res.signatures = what;
    let clamscan = run::which("clamscan");
    if clamscan.is_none() {
        res.notes
            .push("clamscan not installed: skipped (apt-get install clamav)".into());
    }
    let scratch = work.join("scratch-archives");
    // giva scans with the signatures compiled (`giva db compile`), as an
    // appliance loads them; clamscan reads the text, which it loads in a
    // few milliseconds.
    let gdb = sigs.with_extension("gdb");
    let compiled = run::run(
        &giva,
        &[
            "db".into(),
            "compile".into(),
            "-o".into(),
            gdb.display().to_string(),
            sigs.display().to_string(),
        ],
        a.timeout,
        &scratch,
    )?;
    anyhow::ensure!(
        compiled.code == Some(0),
        "giva db compile failed: {}",
        compiled.stderr
    );
    for c in [&docs, &mix, &maildocs] {
        let target = c.dir.display().to_string();
        let giva_args: Vec<String> = vec![
            "scan".into(),
            "--threads".into(),
            "1".into(),
            "-r".into(),
            "--no-summary".into(),
            "--infected".into(),
            "-d".into(),
            gdb.display().to_string(),
            target.clone(),
        ];
        let mut tools: Vec<(&str, PathBuf, Vec<String>)> =
            vec![("giva scan, 1 thread", giva.clone(), giva_args)];
        if let Some(cs) = &clamscan {
            tools.push((
                "clamscan, default mode",
                cs.clone(),
                vec![
                    "-r".into(),
                    "--no-summary".into(),
                    "--infected".into(),
                    "-d".into(),
                    sigs.display().to_string(),
                    target.clone(),
                ],
            ));
        }
        for (tool, prog, args) in tools {
            let mut best: Option<run::Run> = None;
            for _ in 0..a.repeat.max(1) {
                eprintln!("  {tool} on {} …", c.name);
                let r = run::run(&prog, &args, a.timeout, &scratch)?;
                eprintln!("    {:.2} s", r.wall.as_secs_f64());
                if best.as_ref().is_none_or(|b| r.wall < b.wall) {
                    best = Some(r);
                }
            }
            let r = best.unwrap_or_default();
            if r.timed_out {
                res.notes.push(format!("{tool} on {} timed out", c.name));
            }
            res.runs.push(ToolRun {
                corpus: c.name.clone(),
                tool: tool.into(),
                secs: r.wall.as_secs_f64(),
                rss_mib: r.rss_mib(),
                found: found(&r.stdout),
                not_scanned: r
                    .stdout
                    .lines()
                    .filter(|l| l.contains(": NOT SCANNED"))
                    .count(),
            });
        }
    }
    for c in [&docs, &mix, &maildocs] {
        let of = |t: &str| {
            res.runs
                .iter()
                .find(|r| r.corpus == c.name && r.tool.starts_with(t))
        };
        if let (Some(g), Some(k)) = (of("giva"), of("clamscan")) {
            let (gf, kf) = (files_of(&g.found), files_of(&k.found));
            if gf != kf {
                res.notes.push(format!(
                    "{}: infected files differ; giva only: {:?}; clamscan only: {:?}",
                    c.name,
                    gf.difference(&kf).collect::<Vec<_>>(),
                    kf.difference(&gf).collect::<Vec<_>>()
                ));
            }
            let both = gf.intersection(&kf).count();
            let named = g.found.intersection(&k.found).count();
            if named < both {
                res.notes.push(format!(
                    "{}: {} files found by both under another first signature (each tool stops at its first match, and the order of layers and signatures differs)",
                    c.name,
                    both - named
                ));
            }
        }
    }
    res.corpora = vec![docs, mix, maildocs];
    Ok(res)
}

impl ArchivesResult {
    fn pair(&self, corpus: &str) -> (Option<&ToolRun>, Option<&ToolRun>) {
        let of = |t: &str| {
            self.runs
                .iter()
                .find(|r| r.corpus == corpus && r.tool.starts_with(t))
        };
        (of("giva"), of("clamscan"))
    }

    /// The full report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!("Signatures: {}.\n\n", self.signatures));
        md.push_str("| corpus | files | MB on disk | tool | wall s | MB/s (on disk) | × clamscan | peak RSS MiB | found | not scanned inside |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for c in &self.corpora {
            let (_, clam) = self.pair(&c.name);
            for r in self.runs.iter().filter(|r| r.corpus == c.name) {
                let ratio = clam
                    .filter(|k| !std::ptr::eq(*k, r))
                    .map_or(String::new(), |k| format!("{:.1}×", k.secs / r.secs));
                md.push_str(&format!(
                    "| {} | {} | {:.1} | {} | {:.2} | {:.1} | {ratio} | {} | {} | {} |\n",
                    c.name,
                    c.files,
                    c.bytes as f64 / 1e6,
                    r.tool,
                    r.secs,
                    c.bytes as f64 / 1e6 / r.secs,
                    r.rss_mib.map_or("–".into(), |m| format!("{m:.0}")),
                    r.found.len(),
                    r.not_scanned
                ));
            }
        }
        if !self.notes.is_empty() {
            md.push_str("\nNotes:\n\n");
            for n in &self.notes {
                md.push_str(&format!("- {n}\n"));
            }
        }
        md
    }

    /// The headline rows for LATEST.md.
    pub fn summary(&self, command: &str) -> Summary {
        let mut s = Summary::new(
            "archives",
            "Archives: giva scan beside clamscan's default mode",
            command,
            "archives.md",
        );
        s.setup = format!(
            "This machine's own compressed files, archives of its real files, and mail and documents built around them; {}. One thread of `giva scan` (signatures compiled with `giva db compile`) against `clamscan` (which uses one; it reads the text signatures), both opening containers and normalizing text. Where giva finds a file clamscan does not, the signature lies in HTML, or in text that clamscan re-types as HTML for the tags in it (the nodejs API `.json` files): clamscan scans those through its HTML normalizer, which folds case, and so misses a case-sensitive signature there; giva has no HTML normalizer yet and scans their bytes. The notes of the full report list those files.",
            self.signatures
        );
        for c in &self.corpora {
            let (g, k) = self.pair(&c.name);
            if let Some(g) = g {
                let ratio = k.map(|k| k.secs / g.secs);
                s.rows.push(Row {
                    measure: format!(
                        "{}: {} files, {:.0} MB",
                        c.name,
                        c.files,
                        c.bytes as f64 / 1e6
                    ),
                    giva: format!(
                        "{:.2} s ({:.1} MB/s), {} found",
                        g.secs,
                        c.bytes as f64 / 1e6 / g.secs,
                        g.found.len()
                    ),
                    peer: k.map_or("clamscan not run".into(), |k| {
                        format!("clamscan default: {:.2} s, {} found", k.secs, k.found.len())
                    }),
                    ratio: ratio.map_or(String::new(), |r| format!("{r:.1}×")),
                    target: "≥ 5× clamscan, every file clamscan finds".into(),
                    met: k.map(|k| {
                        k.secs / g.secs >= 5.0 && files_of(&k.found).is_subset(&files_of(&g.found))
                    }),
                });
            }
        }
        s
    }
}
