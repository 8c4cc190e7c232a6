//! giva's HTML normalizer against `clamscan`'s, byte for byte: the page
//! stream against the `nocomment.html` and the text stream against the
//! `notags.html` that `clamscan --leave-temps` writes, on 1,500 generated
//! pages (tags, attributes, quotes, references, comments, scripts, styles,
//! `data:` URIs, Script Encoder blocks, high bytes, NULs, and pages long
//! enough to be read in several pieces) and on up to 300 of the machine's own HTML files.
//!
//! Skipped (with a message) when `clamscan` is not installed, unless
//! `GIVA_REQUIRE_CLAMAV=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use giva_content::{Kind, detect, html_norm};

mod common;
use common::clamscan_available;

/// Pieces of HTML the generated pages are made of: each of the
/// normalizer's states, and the bytes that move it between them.
const ATOMS: &[&[u8]] = &[
    b"<",
    b">",
    b"</",
    b"<!--",
    b"-->",
    b"<!",
    b" ",
    b"\n",
    b"\t",
    b"\r",
    b"=",
    b"\"",
    b"'",
    b"&",
    b"&amp;",
    b"&#65;",
    b"&#x41",
    b"&lt",
    b"&nbsp;",
    b"&#8364;",
    b"&Eacute;",
    b";",
    b"#",
    b"x",
    b"a",
    b"A",
    b"href",
    b"HREF",
    b"src",
    b"img",
    b"a ",
    b"script",
    b"SCRIPT",
    b"style",
    b"/script",
    b"/style",
    b"data:",
    b"data:,x",
    b"data:text/html;base64,PGI+",
    b"%41",
    b"%",
    b"\xc3\xa9",
    b"\xe9",
    b"\xa1C",
    b"\xe3\x80\x82",
    b"\x00",
    b"\x01",
    b"\\",
    b"Word",
    b"text ",
    b"/",
    b"?",
    b"<a href=\"",
    b"<img src=",
    b"<script>",
    b"</script>",
    b"<style>",
    b"</style >",
    b"<p>",
    b"</p>",
    // A Script Encoder block (`var q = 1; alert('x');`), and the tag that
    // says one follows.
    b"#@~^FwAAAA==#mD~5P{PFpP,CV\x7fDO`r(EbpAwYAAA==^#~@",
    b"<script language=\"JScript.Encode\">",
];

const ENDINGS: &[&[u8]] = &[b"", b"</body></html>", b"\n", b" x", b"<a href=y>"];

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn generated() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut pages = Vec::new();
    for _ in 0..1470 {
        let mut page = b"<html><body>".to_vec();
        for _ in 0..1 + rng.below(60) {
            page.extend_from_slice(ATOMS[rng.below(ATOMS.len())]);
        }
        page.extend_from_slice(ENDINGS[rng.below(ENDINGS.len())]);
        pages.push(page);
    }
    // Pages read in several pieces: long words, runs of spaces, NULs.
    for _ in 0..30 {
        let mut page = b"<html><body>".to_vec();
        let size = 8000 + rng.below(22_000);
        while page.len() < size {
            match rng.below(8) {
                0 => page.extend(std::iter::repeat_n(b'b', 1 + rng.below(9000))),
                1 => page.extend(std::iter::repeat_n(b' ', 1 + rng.below(5))),
                _ => page.extend_from_slice(ATOMS[rng.below(ATOMS.len())]),
            }
        }
        pages.push(page);
    }
    pages
}

/// Up to `n` of the machine's own HTML files, in a stable order.
fn machine_pages(n: usize) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from("/usr/share/doc")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "html" || x == "htm") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|d| d.len() <= 4 << 20)
        .take(n)
        .collect()
}

/// The shallowest file called `name` under `dir` (a `data:` URI holding
/// HTML has a normalized page of its own, deeper down).
fn shallowest(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut level = vec![dir.to_path_buf()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for d in level {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    next.push(p);
                } else if p.file_name().is_some_and(|n| n == name) {
                    return Some(p);
                }
            }
        }
        level = next;
    }
    None
}

#[test]
fn normalized_html_is_byte_for_byte_clamscans() {
    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut pages = generated();
    let generated_count = pages.len();
    pages.extend(machine_pages(300));
    let input = d.join("in");
    let temps = d.join("temps");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::create_dir(&temps).expect("mkdir");
    for (i, page) in pages.iter().enumerate() {
        std::fs::write(input.join(format!("p{i:05}.html")), page).expect("write");
    }
    // A signature that matches nothing: the normalizer runs all the same.
    std::fs::write(d.join("none.ndb"), "None:0:*:00ff00ff00ff00ff00ff\n").expect("ndb");
    let out = Command::new("clamscan")
        .args(["--no-summary", "--leave-temps", "-r", "-d"])
        .arg(d.join("none.ndb"))
        .arg("--tempdir")
        .arg(&temps)
        .arg(&input)
        .output()
        .expect("clamscan runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each file's temporary directory is named `<time>-<file name>.<hex>`.
    let mut dirs = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&temps).expect("temps").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(at) = name.find("-p")
            && let Some(end) = name[at..].find(".html")
        {
            dirs.insert(name[at + 1..at + end].to_string(), e.path());
        }
    }
    let (mut compared, mut typed_apart) = (0, Vec::new());
    let mut wrong = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let key = format!("p{i:05}");
        let theirs = dirs.get(&key).and_then(|dir| {
            Some((
                std::fs::read(shallowest(dir, "nocomment.html")?).ok()?,
                std::fs::read(shallowest(dir, "notags.html")?).ok()?,
            ))
        });
        let html = detect(page) == Kind::Html;
        let Some((page_stream, text_stream)) = theirs else {
            if html {
                typed_apart.push(key);
            }
            continue;
        };
        if !html {
            typed_apart.push(key);
            continue;
        }
        compared += 1;
        let ours = html_norm::normalize(page);
        if ours.page != page_stream || ours.text != text_stream {
            wrong.push(key);
        }
    }
    println!(
        "{compared} pages compared ({generated_count} generated); typed HTML by one side only: {typed_apart:?}"
    );
    assert!(compared >= generated_count, "{compared} compared");
    assert!(wrong.is_empty(), "normalized differently: {wrong:?}");
}
