//! The engine stored in a database file: used when it fits the file's
//! signatures, refused (and rebuilt) when it does not, never a panic.

use giva_engine::{Engine, ScanOptions};
use giva_signatures::{Compiler, Database, EXT_ENGINE};

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn db(ndb: &str) -> Database {
    let mut c = Compiler::new();
    c.add_source("t.ndb", ndb, false);
    c.add_source(
        "t.ldb",
        "Test.Logical;Engine:51-255,Target:0;0&1;6576696c;676f6f64\n",
        false,
    );
    c.build().expect("database builds")
}

fn sample() -> Database {
    db(
        "Test.Eicar:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341\n\
        Test.Gap:0:*:6162{2-4}6364*6566\n\
        Test.Alt:0:*:7878(61|62|6364)!(7a7a)7979\n\
        Test.Eof:0:EOF-4:5a5a5a5a\n",
    )
}

fn with_blob(db: &Database, blob: &[u8]) -> Database {
    let file = db.with_extension(EXT_ENGINE, blob).expect("extension");
    Database::from_bytes(&file.to_bytes()).expect("reloads")
}

fn names(e: &Engine, data: &[u8]) -> Vec<String> {
    let opts = ScanOptions {
        all_match: true,
        ..ScanOptions::default()
    };
    e.scan_bytes(data, &opts)
        .detections
        .into_iter()
        .map(|d| d.name)
        .collect()
}

const PROBES: [&[u8]; 4] = [
    EICAR,
    b"..ab..cd....ef.. xxcdzayy evil and good ZZZZ",
    b"xxbzzyy abXXXcd ef",
    b"",
];

#[test]
fn a_stored_engine_is_used_and_scans_like_a_built_one() {
    let db = sample();
    let built = Engine::build(&db).expect("build");
    let stored_db = with_blob(&db, &built.to_blob().expect("blob"));
    let stored = Engine::new(&stored_db).expect("load");
    assert!(stored.is_from_blob());
    assert!(!built.is_from_blob());
    for p in PROBES {
        assert_eq!(names(&stored, p), names(&built, p), "probe {p:?}");
    }
    assert_eq!(names(&stored, EICAR), ["Test.Eicar.UNOFFICIAL"]);
}

#[test]
fn an_engine_stored_for_other_signatures_is_rebuilt() {
    let other = Engine::build(&db("Other.Sig:0:*:41424344\n")).expect("build");
    let db = with_blob(&sample(), &other.to_blob().expect("blob"));
    assert!(matches!(Engine::load_stored(&db), Some(Err(_))));
    let e = Engine::new(&db).expect("rebuilt");
    assert!(!e.is_from_blob());
    assert_eq!(names(&e, EICAR), ["Test.Eicar.UNOFFICIAL"]);
}

#[test]
fn a_damaged_stored_engine_is_refused_or_harmless_never_a_panic() {
    let db = sample();
    let built = Engine::build(&db).expect("build");
    let blob = built.to_blob().expect("blob");
    let mut refused = 0;
    for cut in [0, 4, 8, blob.len() / 2, blob.len() - 1] {
        let d = with_blob(&db, &blob[..cut]);
        assert!(matches!(Engine::load_stored(&d), Some(Err(_))), "cut {cut}");
    }
    for at in 0..blob.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = blob.clone();
            b[at] ^= flip;
            let d = with_blob(&db, &b);
            match Engine::load_stored(&d) {
                Some(Ok(e)) => {
                    // In bounds but different: scanning must still be safe.
                    for p in PROBES {
                        let _ = names(&e, p);
                    }
                }
                Some(Err(_)) => refused += 1,
                None => unreachable!("the extension is there"),
            }
        }
    }
    assert!(refused > 0);
}

#[test]
fn loading_a_compiled_file_uses_its_stored_engine_after_the_checksum() {
    let db = sample();
    let built = Engine::build(&db).expect("build");
    let file = db
        .with_extension(EXT_ENGINE, &built.to_blob().expect("blob"))
        .expect("extension");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sample.giva");
    file.write_to(&path).expect("write");

    let (loaded_db, engine) = Engine::load(&[&path]).expect("loads");
    assert!(loaded_db.is_mapped());
    assert!(engine.is_from_blob());
    for p in PROBES {
        assert_eq!(names(&engine, p), names(&built, p), "probe {p:?}");
    }

    // One flipped byte in the stored engine: the checksum refuses the
    // file, whatever the engine decoded meanwhile.
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let err = Engine::load(&[&path]).expect_err("a damaged file is refused");
    assert!(err.to_string().contains("checksum"), "{err}");
}

/// Typed signatures (ClamAV's targets other than 0) apply only to an input
/// of their type, whether the engine is built or stored, whole or
/// streamed, and whether the type is known before the bytes or after.
#[test]
fn typed_signatures_apply_only_to_their_type() {
    let mut c = Compiler::new();
    c.add_source(
        "t.ndb",
        "Any.Mark:0:*:6d61726b2d616e79\nPe.Mark:1:*:6d61726b2d7065\nPdf.Mark:10:*:6d61726b2d706466\n",
        false,
    );
    c.add_source(
        "t.ldb",
        "Pe.Logical;Target:1;0&1;6d61726b2d7065;6c6f67\n",
        false,
    );
    let db = c.build().expect("database builds");
    let built = Engine::build(&db).expect("build");
    let stored = Engine::new(&with_blob(&db, &built.to_blob().expect("blob"))).expect("load");
    assert!(stored.is_from_blob());
    let data = b"..mark-any..mark-pe..mark-pdf..log..";
    for e in [&built, &stored] {
        let scan = |file_type: Option<u8>| -> Vec<String> {
            let opts = ScanOptions {
                all_match: true,
                file_type,
                ..ScanOptions::default()
            };
            let mut v: Vec<String> = e
                .scan_bytes(data, &opts)
                .detections
                .into_iter()
                .map(|d| d.name)
                .collect();
            v.sort();
            v
        };
        assert_eq!(scan(Some(0)), ["Any.Mark.UNOFFICIAL"]);
        assert_eq!(scan(None), ["Any.Mark.UNOFFICIAL"], "no type: untyped only");
        assert_eq!(
            scan(Some(1)),
            [
                "Any.Mark.UNOFFICIAL",
                "Pe.Logical.UNOFFICIAL",
                "Pe.Mark.UNOFFICIAL"
            ]
        );
        assert_eq!(
            scan(Some(10)),
            ["Any.Mark.UNOFFICIAL", "Pdf.Mark.UNOFFICIAL"]
        );

        // Streamed, the type told after the matches: held, then counted.
        let mut s = e.scanner(ScanOptions {
            all_match: true,
            ..ScanOptions::default()
        });
        s.reset(None);
        s.feed(data);
        s.set_file_type(10);
        let mut v: Vec<String> = s.finish().detections.into_iter().map(|d| d.name).collect();
        v.sort();
        assert_eq!(v, ["Any.Mark.UNOFFICIAL", "Pdf.Mark.UNOFFICIAL"]);

        // First match: a typed signature of another type neither stops the
        // scan nor wins it.
        let first = |file_type| {
            e.scan_bytes(
                b"..mark-pe..........mark-any..",
                &ScanOptions {
                    file_type,
                    ..ScanOptions::default()
                },
            )
            .detections
            .into_iter()
            .map(|d| d.name)
            .collect::<Vec<_>>()
        };
        assert_eq!(first(Some(10)), ["Any.Mark.UNOFFICIAL"]);
        assert_eq!(first(Some(1)), ["Pe.Mark.UNOFFICIAL"]);
    }
}
