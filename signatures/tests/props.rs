//! Property tests: no input makes the parsers panic.

use giva_signatures::{Compiler, bundled, parse_expression};
use proptest::prelude::*;

fn hexish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("61".to_owned()),
            Just("4142".to_owned()),
            Just("??".to_owned()),
            Just("3?".to_owned()),
            Just("?a".to_owned()),
            Just("*".to_owned()),
            Just("{5}".to_owned()),
            Just("{-3}".to_owned()),
            Just("{2-}".to_owned()),
            Just("{200}".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("|".to_owned()),
            Just("!(".to_owned()),
            Just("[1-3]".to_owned()),
            Just("(B)".to_owned()),
            Just("(L)".to_owned()),
            Just("(W)".to_owned()),
            "[0-9a-fA-F?(){}\\[\\]|!*-]{1,3}",
        ],
        1..24,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hex_parser_never_panics(hex in hexish(), mods in "(::[iwfa]{0,4})?") {
        let mut c = Compiler::new();
        c.add_source("t.ndb", &format!("A:0:*:{hex}\n"), false);
        c.add_source("t.ldb", &format!("B;Target:0;0;{hex}{mods}\n"), false);
        let _ = c.build();
    }

    #[test]
    fn any_line_never_panics(line in "\\PC{0,200}", ext in prop_oneof![
        Just("ndb"), Just("ldb"), Just("hdb"), Just("fp"), Just("ign2"), Just("ign"), Just("hsb")
    ]) {
        let mut c = Compiler::new();
        c.add_source(&format!("t.{ext}"), &line, false);
        let _ = c.build();
    }

    #[test]
    fn expressions_never_panic(e in "[0-9&|()=<>,!]{0,40}") {
        let _ = parse_expression(&e);
    }

    /// Whatever compiles survives the file format unchanged.
    #[test]
    fn compiled_signatures_round_trip(hex in hexish(), mods in "(::[iwfa]{0,4})?") {
        let mut c = Compiler::new();
        c.add_source("t.ndb", &format!("A:0:*:{hex}\n"), false);
        c.add_source("u.ldb", &format!("B;Target:0;0;{hex}{mods}\n"), false);
        if let Ok(db) = c.build() {
            let back = giva_signatures::Database::from_bytes(&db.to_bytes()).unwrap();
            prop_assert_eq!(back.body_signatures(), db.body_signatures());
            prop_assert_eq!(back.logical_signatures(), db.logical_signatures());
            prop_assert_eq!(back.info(), db.info());
        }
    }
}

#[test]
fn bundled_database_is_official() {
    let db = bundled();
    let names: Vec<&str> = db
        .body_signatures()
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(names, vec!["Eicar-Signature"]);
    assert_eq!(db.info().loaded["hash"], 2);
    let eicar = [
        0x44u8, 0xd8, 0x86, 0x12, 0xfe, 0xa8, 0xa8, 0xf3, 0x6d, 0xe8, 0x2e, 0x12, 0x78, 0xab, 0xb0,
        0x2f,
    ];
    let got: Vec<_> = db
        .lookup_hash(giva_signatures::HashAlgo::Md5, &eicar, 68)
        .collect();
    assert_eq!(got, vec!["Eicar-Test-Signature"]);
    let clam = [
        0xaau8, 0x15, 0xbc, 0xf4, 0x78, 0xd1, 0x65, 0xef, 0xd2, 0x06, 0x51, 0x90, 0xeb, 0x47, 0x3b,
        0xcb,
    ];
    let got: Vec<_> = db
        .lookup_hash(giva_signatures::HashAlgo::Md5, &clam, 544)
        .collect();
    assert_eq!(got, vec!["Clamav.Test.File-6"]);
    assert!(db.info().skipped.is_empty());
}

#[test]
fn error_rendering_names_file_line_and_signature() {
    let mut c = Compiler::new();
    c.add_source(
        "main.ndb",
        "Good:0:*:414243\nFoo.Bar:0:*:4142*43*4445\n",
        false,
    );
    let e = c.build().unwrap_err();
    assert_eq!(
        e.to_string(),
        "main.ndb: line 2: Foo.Bar: part 2 is too short (needs 2 consecutive fixed bytes)"
    );
}

fn expr_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (0u8..8).prop_map(|n| n.to_string()),
        (0u8..8, "[=<>]", 0u8..9).prop_map(|(n, o, c)| format!("{n}{o}{c}")),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            (inner.clone(), "[&|]", inner.clone()).prop_map(|(a, o, b)| format!("{a}{o}{b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            (
                inner.clone(),
                "[&|]",
                inner,
                "[=<>]",
                0u8..9,
                proptest::option::of(0u8..5)
            )
                .prop_map(|(a, op, b, o, c, d)| match d {
                    Some(d) => format!("({a}{op}{b}){o}{c},{d}"),
                    None => format!("({a}{op}{b}){o}{c}"),
                }),
        ]
    })
}

proptest! {
    #[test]
    fn expression_display_round_trips(text in expr_text()) {
        let e = parse_expression(&text).expect("generated expressions parse");
        let shown = e.to_string();
        prop_assert_eq!(parse_expression(&shown).expect("display parses"), e, "{} -> {}", text, shown);
    }
}
