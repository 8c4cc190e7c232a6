//! ClamAV's test files that hide `clam.exe` in an installer, a package or
//! a packer, found with one hash signature of `clam.exe`; and executables'
//! structure compared with `clamscan` on real files.

mod common;
use common::clam_exe_in;

/// Skipped (with a message) without clamav-testfiles, unless
/// `GIVA_REQUIRE_CLAMAV=1`.
#[test]
fn clamav_testfiles_in_installers_and_packages() {
    let (found, missed) = clam_exe_in(&[
        "clam.sis",
        "clam_IScab_ext.exe",
        "clam_IScab_int.exe",
        "clam_ISmsi_ext.exe",
        "clam_ISmsi_int.exe",
        "clam-nsis.exe",
        "clam-upx.exe",
        "clam.ea05.exe",
        "clam.ea06.exe",
        // Unpacked by giva's WWPack and MEW unpackers; the zip in the
        // program holds clam.exe.
        "clam-wwpack.exe",
        "clam-mew.exe",
        // Not packed in Debian's build: clam.exe is carried raw, a PE in
        // a PE (ClamAV's FSG unpacker does not run on it either).
        "clam-fsg.exe",
    ]);
    for f in &found {
        println!("found in {f}");
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

/// Differential test against `clamscan` (default mode, all-match) on real
/// executables: ELF programs and a library of this machine, ClamAV's own
/// `clam.exe`, and PE files built now by MinGW (32-bit, 64-bit, a DLL, a
/// file alignment of 0x1000). Signatures are cut from each file at its
/// entry point and sections (`EP+n`, `EP-n`, `EP+n,shift`, `Sx+n`,
/// `SEx`, `SL+n`), with logical signatures keyed on `EntryPoint` and
/// `NumberOfSections`, section hashes (`.mdb`, `.msb`) and import hashes
/// (`.imp`), each with a twin that must not match (one byte off, another
/// size or range). The signatures found per file must be the same.
///
/// Skipped (with a message) without clamscan or MinGW, unless
/// `GIVA_REQUIRE_CLAMAV=1` / `GIVA_REQUIRE_ARCHIVERS=1`.
#[test]
fn executable_structure_as_clamscan_sees_it() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Write as _;

    use common::{clamscan_available, have, hex};
    use sha2::Digest;

    if !clamscan_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for p in [
        "/bin/ls",
        "/usr/bin/gzip",
        "/usr/bin/cpio",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ] {
        if let Ok(b) = std::fs::read(p) {
            files.push((p.rsplit('/').next().unwrap_or(p).to_string(), b));
        }
    }
    if let Ok(b) = std::fs::read("/usr/share/clamav-testfiles/clam.exe") {
        files.push(("clam.exe".into(), b));
    }
    let src = d.join("t.c");
    std::fs::write(
        &src,
        "#include <winsock2.h>\n#include <windows.h>\nint main(void){ WSADATA w; \
         WSAStartup(0x202,&w); HMODULE h = LoadLibraryA(\"user32.dll\"); FARPROC p = \
         GetProcAddress(h, \"MessageBoxA\"); MessageBoxA(0,\"giva\",\"exe\",0); return p != 0; }\n",
    )
    .expect("write");
    for (cc, name, extra) in [
        ("i686-w64-mingw32-gcc", "t32.exe", &["-s"][..]),
        ("i686-w64-mingw32-gcc", "t32.dll", &["-s", "-shared"][..]),
        (
            "i686-w64-mingw32-gcc",
            "t32fa.exe",
            &["-s", "-Wl,--file-alignment=0x1000"][..],
        ),
        ("x86_64-w64-mingw32-gcc", "t64.exe", &[][..]),
    ] {
        if !have(cc) {
            continue;
        }
        let out = d.join(name);
        let ok = std::process::Command::new(cc)
            .arg("-O1")
            .args(extra)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(["-lws2_32", "-luser32"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{cc} builds {name}");
        files.push((name.into(), std::fs::read(&out).expect("built")));
    }
    // Every file must have a structure, or the test proves nothing.
    let [mut ndb, mut ldb, mut mdb, mut msb, mut imp] = [(); 5].map(|()| String::new());
    let mut expect: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // ClamAV keeps one name for a hash and size that several signatures
    // share (which one depends on its table's order), giva reports each
    // (docs/compatibility.md): a hash already written is not written again.
    let mut hashed: BTreeSet<(String, u64)> = BTreeSet::new();
    for (i, (name, b)) in files.iter().enumerate() {
        let t = giva_content::target_type(b);
        let info = giva_content::exe_info(b, t).unwrap_or_else(|| panic!("{name}: no structure"));
        let cut = |at: u64, n: usize| -> Option<String> {
            let at = usize::try_from(at).ok()?;
            b.get(at..at.checked_add(n)?).map(hex)
        };
        let e = info.entry;
        let mut sure = |tag: &str| {
            expect
                .entry(name.clone())
                .or_default()
                .insert(format!("X{i}.{tag}.UNOFFICIAL"));
        };
        if let Some(h) = cut(e, 12) {
            writeln!(&mut ndb, "X{i}.EP:{t}:EP+0:{h}").unwrap();
            writeln!(&mut ndb, "X{i}.EPno:{t}:EP+1:{h}").unwrap();
            sure("EP");
        }
        if e >= 4
            && let Some(h) = cut(e - 4, 12)
        {
            writeln!(&mut ndb, "X{i}.EPm:{t}:EP-4:{h}").unwrap();
        }
        if let Some(h) = cut(e + 40, 12) {
            writeln!(&mut ndb, "X{i}.EPs:{t}:EP+0,64:{h}").unwrap();
            writeln!(&mut ndb, "X{i}.EPsno:{t}:EP+0,39:{h}").unwrap();
        }
        for (j, s) in info.sections.iter().enumerate().take(8) {
            if s.size >= 64
                && let Some(h) = cut(s.raw + 8, 12)
            {
                writeln!(&mut ndb, "X{i}.S{j}:{t}:S{j}+8:{h}").unwrap();
                writeln!(&mut ndb, "X{i}.S{j}no:{t}:S{j}+9:{h}").unwrap();
                sure(&format!("S{j}"));
            }
            if s.size >= 64
                && let Some(h) = cut(s.raw + s.size / 2, 12)
            {
                // With a shift: ClamAV's Boyer-Moore matcher reads a static
                // `SEx` without one as the section's first byte only, on
                // files of 256 KiB or more (docs/compatibility.md).
                writeln!(&mut ndb, "X{i}.SE{j}:{t}:SE{j},0:{h}").unwrap();
            }
            // Past the section's end: only its own shift reaches there.
            if s.size >= 64
                && let Some(h) = cut(s.raw + s.size + 4, 12)
            {
                writeln!(&mut ndb, "X{i}.SEp{j}:{t}:SE{j},16:{h}").unwrap();
                writeln!(&mut ndb, "X{i}.SEpno{j}:{t}:SE{j},3:{h}").unwrap();
            }
        }
        if let Some(last) = info.sections.last()
            && let Some(h) = cut(last.raw, 12)
        {
            writeln!(&mut ndb, "X{i}.SL:{t}:SL+0:{h}").unwrap();
        }
        if let Some(h) = cut(b.len() as u64 - 20, 12) {
            writeln!(&mut ndb, "X{i}.EOF:0:EOF-20:{h}").unwrap();
            sure("EOF");
        }
        let n = info.sections.len();
        if let Some(h) = cut(e, 8) {
            writeln!(
                &mut ldb,
                "X{i}.L;Engine:51-255,Target:{t},EntryPoint:{e}-{e},NumberOfSections:{n}-{n};0;EP+0:{h}"
            )
            .unwrap();
            writeln!(
                &mut ldb,
                "X{i}.Lno;Engine:51-255,Target:{t},EntryPoint:{}-{};0;EP+0:{h}",
                e + 1,
                e + 100
            )
            .unwrap();
            writeln!(
                &mut ldb,
                "X{i}.Lsec;Engine:51-255,Target:{t},NumberOfSections:{}-{};0;EP+0:{h}",
                n + 1,
                n + 5
            )
            .unwrap();
            sure("L");
        }
        if t == 1 {
            for (j, s) in info.sections.iter().enumerate() {
                let Some(bytes) = usize::try_from(s.raw)
                    .ok()
                    .and_then(|r| b.get(r..r + s.size as usize))
                    .filter(|x| !x.is_empty())
                else {
                    continue;
                };
                let md5 = hex(&md5::Md5::digest(bytes));
                if !hashed.insert((md5.clone(), s.size)) {
                    continue;
                }
                writeln!(&mut mdb, "{}:{md5}:X{i}.M{j}", s.size).unwrap();
                writeln!(&mut mdb, "{}:{md5}:X{i}.M{j}no", s.size + 1).unwrap();
                writeln!(
                    &mut msb,
                    "{}:{}:X{i}.H{j}",
                    s.size,
                    hex(&sha2::Sha256::digest(bytes))
                )
                .unwrap();
                sure(&format!("M{j}"));
            }
            if let Some(im) = &info.imports {
                let md5 = hex(&md5::Md5::digest(im));
                if hashed.insert((md5.clone(), u64::MAX)) {
                    writeln!(&mut imp, "{md5}:{}:X{i}.I", im.len()).unwrap();
                    writeln!(&mut imp, "{md5}:{}:X{i}.Ino", im.len() + 1).unwrap();
                    writeln!(&mut imp, "{md5}:*:X{i}.Istar").unwrap();
                    sure("I");
                }
            }
        }
    }
    // Data starting with `MZ` that is no PE: no offset relative to its
    // end resolves (a target-0 signature's neither), as in ClamAV; the
    // same bytes without the `MZ` are found.
    let junk: Vec<u8> = (0..4000u32).map(|k| (k * 37 % 251) as u8 ^ 0xa5).collect();
    let mut mz = b"MZ".to_vec();
    mz.extend_from_slice(&junk);
    assert!(giva_content::exe_info(&mz, 1).is_none());
    writeln!(
        &mut ndb,
        "Junk.EOF:0:EOF-20:{}",
        hex(&junk[junk.len() - 20..junk.len() - 8])
    )
    .unwrap();
    let mut nomz = b"..".to_vec();
    nomz.extend_from_slice(&junk);
    expect
        .entry("nomz.bin".into())
        .or_default()
        .insert("Junk.EOF.UNOFFICIAL".into());
    files.push(("mz.bin".into(), mz));
    files.push(("nomz.bin".into(), nomz));
    // A dropper: a PE carrying `clam.exe` after its own bytes is found by
    // `clam.exe`'s hash, as ClamAV cuts an embedded PE out; one whose
    // carried file's `PE\0\0` is damaged carries nothing.
    let mut hsb = String::new();
    if let Some((_, clam)) = files.iter().find(|(n, _)| n == "clam.exe").cloned()
        && let Some((_, host)) = files.iter().find(|(n, _)| n == "t32.exe").cloned()
    {
        writeln!(
            &mut hsb,
            "{}:{}:Clam.Carried",
            hex(&sha2::Sha256::digest(&clam)),
            clam.len()
        )
        .unwrap();
        // The MinGW file has nine stray `MZ` of its own: ClamAV looks at no
        // more than ten, so what it carries is not found.
        let mut crowded = host.clone();
        crowded.extend_from_slice(&clam);
        files.push(("crowded-dropper.exe".into(), crowded));
        let mut dropper = clam.clone();
        dropper.extend_from_slice(&[0u8; 1000]);
        dropper.extend_from_slice(&clam);
        expect
            .entry("dropper.exe".into())
            .or_default()
            .insert("Clam.Carried.UNOFFICIAL".into());
        let mut broken = clam.clone();
        let at = broken.len() + 256;
        broken.extend_from_slice(&clam);
        broken[at + 3] = 1;
        files.push(("dropper.exe".into(), dropper));
        files.push(("broken-dropper.exe".into(), broken));
    }
    // The MinGW files import by name from three DLLs.
    if have("i686-w64-mingw32-gcc") {
        let t32 = files.iter().find(|(n, _)| n == "t32.exe").expect("t32");
        let im = giva_content::exe_info(&t32.1, 1)
            .and_then(|i| i.imports)
            .expect("imports");
        let im = String::from_utf8(im).expect("ascii");
        for want in [
            "kernel32.loadlibrarya",
            "user32.messageboxa",
            "ws2_32.wsastartup",
        ] {
            assert!(im.contains(want), "{want} in {im}");
        }
    }
    let db = d.join("db");
    std::fs::create_dir(&db).expect("mkdir");
    for (f, text) in [
        ("t.ndb", &ndb),
        ("t.ldb", &ldb),
        ("t.mdb", &mdb),
        ("t.msb", &msb),
        ("t.imp", &imp),
        ("t.hsb", &hsb),
    ] {
        if !text.is_empty() {
            std::fs::write(db.join(f), text.as_bytes()).expect("write db");
        }
    }
    let scan_dir = d.join("files");
    std::fs::create_dir(&scan_dir).expect("mkdir");
    for (name, b) in &files {
        std::fs::write(scan_dir.join(name), b).expect("write");
    }
    let out = std::process::Command::new("clamscan")
        .args(["--no-summary", "--allmatch", "--infected", "-d"])
        .arg(&db)
        .arg(&scan_dir)
        .output()
        .expect("clamscan runs");
    let mut theirs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((path, rest)) = line.rsplit_once(": ")
            && let Some(sig) = rest.strip_suffix(" FOUND")
        {
            let f = path.rsplit('/').next().unwrap_or(path).to_string();
            theirs.entry(f).or_default().insert(sig.to_string());
        }
    }
    let (_, engine) = giva_engine::Engine::load(&[&db]).expect("engine");
    let dec = giva_content::Decomposer::new(
        engine,
        giva_engine::ScanOptions {
            all_match: true,
            ..Default::default()
        },
        giva_content::Limits::default(),
    );
    let mut ours: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, b) in &files {
        for det in dec.scan(b, name).result.detections {
            ours.entry(name.clone()).or_default().insert(det.name);
        }
    }
    for (name, want) in &expect {
        let got = ours.get(name).cloned().unwrap_or_default();
        let missing: Vec<_> = want.difference(&got).collect();
        assert!(missing.is_empty(), "{name}: giva misses {missing:?}");
    }
    assert_eq!(ours, theirs, "giva (left) and clamscan (right) differ");
    let total: usize = ours.values().map(BTreeSet::len).sum();
    println!(
        "{} files, {total} detections, the same as clamscan's",
        files.len()
    );
}
