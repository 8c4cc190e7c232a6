//! The `giva` binary as a user runs it: `scan`, `db`, `serve`.

mod common;
use common::free_port;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn giva(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_giva"))
        .args(args)
        .output()
        .expect("run giva")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn guest_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("eicar.com"), EICAR).expect("write");
    std::fs::write(dir.path().join("clean.txt"), b"nothing to see here\n").expect("write");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("sub/eicar2.com"), EICAR).expect("write");
    dir
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn scan_prints_clamscan_lines_summary_and_exit_codes() {
    let dir = guest_dir();
    let out = giva(&["scan", p(dir.path())]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{}: Eicar-Test-Signature FOUND",
            dir.path().join("eicar.com").display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}: OK", dir.path().join("clean.txt").display())),
        "{text}"
    );
    assert!(
        !text.contains("eicar2.com"),
        "no recursion without -r: {text}"
    );
    assert!(
        text.contains("----------- SCAN SUMMARY -----------"),
        "{text}"
    );
    assert!(text.contains("Infected files: 1"), "{text}");

    let out = giva(&["scan", "-r", "-i", "--no-summary", p(dir.path())]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text.lines().count(),
        2,
        "only the two infected files: {text}"
    );
    assert!(
        text.contains("eicar2.com: Eicar-Test-Signature FOUND"),
        "{text}"
    );

    let clean = dir.path().join("clean.txt");
    assert_eq!(giva(&["scan", p(&clean)]).status.code(), Some(0));
    // As clamscan: an empty file is said to be empty and not counted as
    // scanned; a file of a few bytes is OK.
    let empty = dir.path().join("empty.bin");
    let small = dir.path().join("small.bin");
    std::fs::write(&empty, b"").expect("write");
    std::fs::write(&small, b"abc").expect("write");
    let out = giva(&["scan", p(&empty), p(&small)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("{}: Empty file", empty.display())),
        "{text}"
    );
    assert!(text.contains(&format!("{}: OK", small.display())), "{text}");
    assert!(text.contains("Scanned files: 1\n"), "{text}");
    let missing = giva(&["scan", "/nonexistent/giva-test"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stdout(&missing));
    assert!(stdout(&missing).contains("/nonexistent/giva-test: ERROR"));
}

#[test]
fn scan_json_and_allmatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let both = dir.path().join("both.bin");
    std::fs::write(&both, EICAR).expect("write");
    let out = giva(&["scan", "--json", "--allmatch", p(&both)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a row and the summary: {text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
    assert_eq!(v["status"], "found");
    let summary: serde_json::Value = serde_json::from_str(lines[1]).expect("the summary");
    assert_eq!(summary["summary"]["infected_files"], 1);
    assert!(
        summary["summary"]["known_viruses"].as_u64() > Some(0),
        "{text}"
    );
    assert_eq!(summary["summary"]["skipped"], serde_json::json!({}));
    let sigs: Vec<&str> = v["signatures"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        sigs.contains(&"Eicar-Test-Signature") && sigs.contains(&"Eicar-Signature"),
        "{sigs:?}"
    );
}

/// Nothing is skipped silently: what the databases held but giva did not
/// load is one line on stderr at load, with a count per kind, and in the
/// `--json` summary; `Known viruses` counts what was loaded.
#[test]
fn scan_says_what_it_skipped_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    std::fs::create_dir(&db).expect("mkdir");
    std::fs::write(
        db.join("t.ndb"),
        "Loaded:0:*:68656c6c6f\nOther:0:*:776f726c64\n",
    )
    .expect("write");
    std::fs::write(
        db.join("t.ldb"),
        "Vi;Engine:51-255,Target:1;0;VI:68656c6c6f\nTooNew;Engine:999-1000,Target:0;0;68656c6c6f\n",
    )
    .expect("write");
    std::fs::write(db.join("x.ign2"), "Other\n").expect("write");
    let file = dir.path().join("f");
    std::fs::write(&file, b"xx hello xx").expect("write");
    let out = giva(&["scan", "-d", p(&db), p(&file)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("skipped at load"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    for kind in ["offset:VI 1", "flevel 1", "ignored 1"] {
        assert!(lines[0].contains(kind), "{kind} in {}", lines[0]);
    }
    assert!(
        stdout(&out).contains("Known viruses: 1\n"),
        "{}",
        stdout(&out)
    );
    let out = giva(&["scan", "--json", "-d", p(&db), p(&file)]);
    let text = stdout(&out);
    let last = text.lines().last().expect("a summary");
    let v: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(v["summary"]["known_viruses"], 1);
    assert_eq!(
        v["summary"]["skipped"],
        serde_json::json!({"flevel": 1, "ignored": 1, "offset:VI": 1})
    );
    // The bundled database skips nothing, and says nothing.
    let clean = giva(&["scan", p(&file)]);
    assert!(
        !String::from_utf8_lossy(&clean.stderr).contains("skipped"),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
}

#[test]
fn db_compile_info_verify_and_scan_with_the_compiled_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("mine.ndb");
    std::fs::write(&src, "My.Marker:0:*:4d592d4d41524b4552\n").expect("write");
    let out_db = dir.path().join("site.gdb");
    let c = giva(&["db", "compile", "-o", p(&out_db), p(&src)]);
    assert_eq!(
        c.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&c.stderr)
    );
    let info = giva(&["db", "info", p(&out_db)]);
    assert_eq!(info.status.code(), Some(0));
    assert!(stdout(&info).contains("version:"), "{}", stdout(&info));
    // The built engine is stored, so that loading skips the index build.
    assert!(
        stdout(&info).contains("engine: stored"),
        "{}",
        stdout(&info)
    );
    assert!(
        stdout(&info).contains("memory estimate:"),
        "{}",
        stdout(&info)
    );
    let verify = giva(&["db", "verify", p(&out_db)]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));

    let sample = dir.path().join("sample.bin");
    std::fs::write(&sample, b"\x00\x01 MY-MARKER here").expect("write");
    let scan = giva(&["scan", "-d", p(&out_db), p(&sample)]);
    assert_eq!(scan.status.code(), Some(1), "{}", stdout(&scan));
    assert!(
        stdout(&scan).contains("My.Marker.UNOFFICIAL FOUND"),
        "{}",
        stdout(&scan)
    );

    // A flipped byte in the payload is caught by verify and refused by scan.
    let mut bytes = std::fs::read(&out_db).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&out_db, &bytes).expect("write");
    let verify = giva(&["db", "verify", p(&out_db)]);
    assert_eq!(verify.status.code(), Some(2), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("FAILED"));
    let scan = giva(&["scan", "-d", p(&out_db), p(&sample)]);
    assert_eq!(scan.status.code(), Some(2));

    // A bad signature file is refused with file, line and reason.
    let bad = dir.path().join("bad.ndb");
    std::fs::write(&bad, "Good:0:*:41424344\nBad.Sig:0:*:4546{-4}4a\n").expect("write");
    let c = giva(&["db", "compile", "-o", p(&dir.path().join("x.gdb")), p(&bad)]);
    assert_eq!(c.status.code(), Some(2));
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(
        err.contains("bad.ndb") && err.contains("line 2") && err.contains("Bad.Sig"),
        "{err}"
    );
}

#[test]
fn print_config_round_trips() {
    let out = giva(&["serve", "--print-config"]);
    assert_eq!(out.status.code(), Some(0));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("giva.toml");
    std::fs::write(&cfg, &out.stdout).expect("write");
    let again = giva(&["serve", "--config", p(&cfg), "--print-config"]);
    assert_eq!(stdout(&again), stdout(&out));
    std::fs::write(&cfg, "[server]\nlisten = 'not an address'\n").expect("write");
    let bad = giva(&["serve", "--config", p(&cfg)]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("giva.toml"));
}

/// A detection is on disk before the guest gets DENY: a SIGKILL right after
/// the verdict loses nothing, and the restarted appliance delivers it.
#[test]
fn sigkill_after_deny_loses_no_detection() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (aport, mport) = (free_port(), free_port());
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_giva"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{aport}"),
                "--manager",
                &format!("http://127.0.0.1:{mport}"),
                "--data-dir",
                p(dir.path()),
                "--no-admin",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start giva serve")
    };
    let mut child = start();
    let guest = guest_dir();
    let vm = giva_proto::shim::VmIdentity {
        vm_id: "vm-kill".into(),
        ..Default::default()
    };
    let config = giva_shim::scan::ScanConfig::new(
        format!("http://127.0.0.1:{aport}"),
        vm,
        vec![guest.path().to_path_buf()],
    );
    let summary = rt.block_on(async {
        for _ in 0..100 {
            if let Ok(s) = giva_shim::scan::run(&config, |_| {}, |_, _| {}).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the appliance did not come up");
    });
    assert_eq!(summary.infected, 2);
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let mut restarted = start();
    let stored = rt.block_on(async {
        let store = giva_manager::store::Store::open(&dir.path().join("m.sqlite"))
            .await
            .expect("store");
        let manager = giva_manager::Manager::new(store);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", mport))
            .await
            .expect("bind manager");
        let m = manager.clone();
        let server = tokio::spawn(giva_manager::serve(m, listener, std::future::pending()));
        let filter = giva_manager::store::EventFilter {
            limit: 1000,
            ..Default::default()
        };
        let detections = || async {
            let mut all = manager.store().events(&filter).await.expect("events");
            all.retain(|e| {
                e.event
                    .as_ref()
                    .is_some_and(|e| e.kind == giva_proto::manager::EventKind::Detection as i32)
            });
            all
        };
        for _ in 0..300 {
            if detections().await.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let a duplicate arrive, if one were coming.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let found = detections().await;
        server.abort();
        found
    });
    let _ = restarted.kill();
    let _ = restarted.wait();
    assert_eq!(
        stored.len(),
        2,
        "both detections delivered once after the restart: {stored:?}"
    );
}

/// A file larger than the split threshold is scanned in parallel segments
/// (with one thread, whole); a signature across a segment boundary is
/// still found.
#[test]
fn large_file_split_across_segments_finds_the_boundary_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.bin");
    let mut data = vec![0x5au8; 20 << 20];
    let at = (8 << 20) - 20; // straddles the first segment boundary
    data[at..at + EICAR.len()].copy_from_slice(EICAR);
    std::fs::write(&big, &data).expect("write");
    for threads in ["2", "1"] {
        let out = giva(&["scan", "--no-summary", "--threads", threads, p(&big)]);
        assert_eq!(out.status.code(), Some(1), "{threads}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("Eicar-Signature FOUND"),
            "{threads}: {}",
            stdout(&out)
        );
    }
}

/// Without the `vsock` feature a configured vsock port is refused with the
/// reason, never silently ignored.
#[cfg(not(feature = "vsock"))]
#[test]
fn vsock_port_without_vsock_support_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("giva.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = '127.0.0.1:0'\nvsock_port = 5000\nadmin_listen = '127.0.0.1:0'\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_giva"))
        .args(["serve", "--config", p(&cfg), "--data-dir", p(dir.path())])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without vsock support"), "{err}");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A compiled database of one marker signature, written to `dir/name`.
fn compiled(dir: &Path, name: &str) -> std::path::PathBuf {
    let src = dir.join("marker.ndb");
    std::fs::write(&src, "My.Marker:0:*:4d592d4d41524b4552\n").expect("write");
    let out = dir.join(name);
    let c = giva(&["db", "compile", "-o", p(&out), p(&src)]);
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
    out
}

#[test]
fn a_database_with_no_signature_is_refused_naming_each_source_and_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = dir.path().join("sample.txt");
    std::fs::write(&sample, EICAR).expect("write");
    let empty = dir.path().join("empty.ndb");
    std::fs::write(&empty, b"").expect("write");
    let unknown = dir.path().join("sigs.foo");
    std::fs::write(&unknown, b"A:0:*:41424344\n").expect("write");
    let nothing = dir.path().join("nothing");
    std::fs::create_dir(&nothing).expect("mkdir");
    std::fs::write(nothing.join("readme.txt"), b"not signatures\n").expect("write");
    // An empty signature file is malformed (as ClamAV has it); a file or
    // directory that yields nothing is refused for holding no signature.
    for (db, name, why) in [
        (&empty, "empty.ndb", "empty database file"),
        (&unknown, p(&unknown), "unsupported file type .foo"),
        (&nothing, p(&nothing), "no supported signature file in it"),
    ] {
        let out = giva(&["scan", "-d", p(db), p(&sample)]);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(name) && err.contains(why), "{err}");
        assert!(!stdout(&out).contains("OK"), "nothing may be called clean");
        let verify = giva(&["db", "verify", p(db)]);
        assert_eq!(verify.status.code(), Some(2), "{}", stdout(&verify));
        assert!(stdout(&verify).contains(why), "{}", stdout(&verify));
        let compile = giva(&["db", "compile", "-o", p(&dir.path().join("x.gdb")), p(db)]);
        assert_eq!(compile.status.code(), Some(2), "{}", stderr(&compile));
        let serve = giva(&[
            "serve",
            "-d",
            p(db),
            "--listen",
            "127.0.0.1:0",
            "--no-admin",
        ]);
        assert_eq!(serve.status.code(), Some(2), "{}", stderr(&serve));
        assert!(stderr(&serve).contains(why), "{}", stderr(&serve));
    }
    // Asked for, an empty database scans (and says so in its count).
    let out = giva(&["scan", "--allow-empty", "-d", p(&nothing), p(&sample)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Known viruses: 0"),
        "{}",
        stdout(&out)
    );
    let verify = giva(&["db", "verify", "--allow-empty", p(&nothing)]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
}

#[test]
fn a_compiled_database_is_recognised_by_its_magic_and_a_truncated_one_says_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = dir.path().join("sample.bin");
    std::fs::write(&sample, b"\x00\x01 MY-MARKER here").expect("write");
    // Named like a text format, read as what it is.
    let disguised = compiled(dir.path(), "site.ndb");
    let out = giva(&["scan", "-d", p(&disguised), p(&sample)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("My.Marker"), "{}", stdout(&out));
    let bytes = std::fs::read(&disguised).expect("read");
    // Cut in the payload, in the header, and to nothing: each is refused
    // as truncated, under any name.
    for (name, len) in [
        ("cut.gdb", bytes.len() / 2),
        ("head.txt", 40),
        ("empty.gdb", 0),
        ("magic.ndb", 5),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).expect("write");
        let out = giva(&["scan", "-d", p(&path), p(&sample)]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("truncated"),
            "{name}: {}",
            stderr(&out)
        );
        let verify = giva(&["db", "verify", p(&path)]);
        assert_eq!(verify.status.code(), Some(2), "{name}");
        assert!(
            stdout(&verify).contains("truncated"),
            "{name}: {}",
            stdout(&verify)
        );
    }
    // A compiled database among other sources cannot be merged with them.
    let text = dir.path().join("more.ndb");
    std::fs::write(&text, "More:0:*:41424344\n").expect("write");
    let out = giva(&["scan", "-d", p(&disguised), "-d", p(&text), p(&sample)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("compiled giva database"),
        "{}",
        stderr(&out)
    );
    // An old compiled database is read and stored again in this build's
    // format by compiling it.
    let again = dir.path().join("again.gdb");
    let c = giva(&["db", "compile", "-o", p(&again), p(&disguised)]);
    assert_eq!(c.status.code(), Some(0), "{}", stderr(&c));
}

#[test]
fn plaintext_on_a_network_address_is_refused_unless_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = giva(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--no-admin",
        "--data-dir",
        p(dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("without TLS") && stderr(&out).contains("--insecure-plaintext"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_vsock_cid_belongs_to_one_named_vm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("giva.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = '127.0.0.1:0'\nadmin_listen = '127.0.0.1:0'\n\n\
         [[inventory]]\nvm = 'clone-*'\ncid = 5\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_giva"))
        .args(["serve", "--config", p(&cfg), "--data-dir", p(dir.path())])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("name it exactly"), "{}", stderr(&out));
}

#[test]
fn enroll_says_what_is_missing_and_keeps_an_enrolled_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("tls");
    let run = |extra: &[&str], env_token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_giva"));
        c.args(["enroll", "--manager", "https://127.0.0.1:1", "--ca-file"])
            .arg(dir.path().join("ca.pem"))
            .arg("--out")
            .arg(&out_dir)
            .args(extra)
            .env_remove("GIVA_ENROLL_TOKEN");
        if let Some(t) = env_token {
            c.env("GIVA_ENROLL_TOKEN", t);
        }
        let o = c.output().expect("run giva");
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // No token: it says where one comes from, never asks for it on the
    // command line.
    let e = run(&[], None);
    assert!(
        e.contains("--token-file") && e.contains("GIVA_ENROLL_TOKEN"),
        "{e}"
    );
    // A token, but no CA file to check the manager with.
    let e = run(&[], Some("giva-enroll-x"));
    assert!(e.contains("ca.pem"), "{e}");
    // A key already there is not replaced without --force.
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    std::fs::write(out_dir.join("appliance.key"), "kept").expect("key");
    let e = run(&[], Some("giva-enroll-x"));
    assert!(e.contains("enrolled already"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("appliance.key")).expect("key"),
        "kept"
    );
}

#[test]
fn a_file_that_says_it_is_empty_is_read_to_its_end() {
    // `/proc` files have size 0 but content: giva's own command line
    // holds the marker given as an argument, and is scanned for it.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("m.ndb");
    let marker = "giva-proc-marker";
    let hex: String = marker.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&db, format!("Proc.Marker:0:*:{hex}\n")).expect("write");
    let out = giva(&[
        "scan",
        "--no-summary",
        "-d",
        p(&db),
        "/proc/self/cmdline",
        marker,
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("/proc/self/cmdline: Proc.Marker.UNOFFICIAL FOUND"),
        "{text}\n{}",
        stderr(&out)
    );
}
