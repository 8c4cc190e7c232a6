//! Replays the fuzz inputs kept in the repository through the same harness
//! code the fuzz targets run (`fuzz/src/harness.rs`, included here):
//! `fuzz/regressions/<target>/*` (crash inputs, each a regression test) and
//! the small seed corpora `fuzz/corpus-seed/<target>/*`.
//!
//! Crash inputs of bugs that are not fixed yet would live in
//! `fuzz/regressions-open/<target>/` (outside `regressions/`, which
//! `fuzz/smoke.sh` also replays), each replayed by an ignored test named
//! after the bug; once fixed, move the file to `regressions/<target>/`.
//! There are none at the moment.

use std::path::{Path, PathBuf};

#[path = "../../../fuzz/src/harness.rs"]
mod harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

/// Replays every file of `dirs` through `target`; panics naming the files
/// whose replay panicked.
fn replay(target: &str, dirs: &[PathBuf]) -> usize {
    let mut failed = Vec::new();
    let mut n = 0;
    for dir in dirs {
        for f in files(dir) {
            let data = std::fs::read(&f).expect("read fuzz input");
            n += 1;
            let t = target.to_string();
            if std::panic::catch_unwind(move || harness::run(&t, &data)).is_err() {
                failed.push(f.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these inputs fail: {failed:#?}"
    );
    n
}

fn replay_target(target: &str) {
    let d = fuzz_dir();
    let n = replay(
        target,
        &[
            d.join("regressions").join(target),
            d.join("corpus-seed").join(target),
        ],
    );
    eprintln!("{target}: {n} inputs replayed");
}

#[test]
fn every_target_has_a_name_the_harness_knows() {
    for t in harness::TARGETS {
        assert!(harness::run(t, &[]), "{t}");
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{t}.rs"))
                .is_file(),
            "{t} has no fuzz target file"
        );
    }
}

#[test]
fn fuzz_regressions_sig_text() {
    replay_target("sig_text");
}

#[test]
fn fuzz_regressions_cvd() {
    replay_target("cvd");
}

#[test]
fn fuzz_regressions_database() {
    replay_target("database");
}

#[test]
fn fuzz_regressions_scan_diff() {
    replay_target("scan_diff");
}

#[test]
fn fuzz_regressions_proto_decode() {
    replay_target("proto_decode");
}

#[test]
fn fuzz_regressions_appliance_session() {
    replay_target("appliance_session");
}

#[test]
fn fuzz_regressions_content() {
    for t in harness::TARGETS
        .iter()
        .filter(|t| t.starts_with("content_"))
    {
        replay_target(t);
    }
}

/// How far `scan_diff` gets on a working corpus (`fuzz/corpus/scan_diff`,
/// left by a long run): how many inputs compile and are compared, and how
/// many of those detect something. Informational.
#[test]
#[ignore = "informational: needs a fuzz/corpus/scan_diff from a long run"]
fn scan_diff_corpus_reach() {
    use std::sync::atomic::Ordering;
    let n = replay("scan_diff", &[fuzz_dir().join("corpus").join("scan_diff")]);
    let compared = harness::SCAN_DIFF_COMPARED.load(Ordering::Relaxed);
    let detected = harness::SCAN_DIFF_DETECTED.load(Ordering::Relaxed);
    eprintln!("scan_diff: {n} inputs, {compared} compared, {detected} with detections");
}
