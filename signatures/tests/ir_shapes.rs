//! The exact IR the compiler hands to the engine for each construct.

use giva_signatures::{
    Anchor, Assertion, BodyPattern, ByteSet, Compiler, CountOp, ExeAnchor, Gap, LogicalExpr,
    Offset, Token,
};

fn lit(b: u8) -> Token {
    Token::Byte {
        value: b,
        mask: 0xff,
    }
}

fn body(hex: &str) -> (Offset, BodyPattern) {
    let mut c = Compiler::new();
    c.add_source("t.ndb", &format!("X:0:*:{hex}\n"), false);
    let db = c.build().unwrap_or_else(|e| panic!("{hex}: {e}"));
    let s = &db.body_signatures()[0];
    (s.offset, s.pattern.clone())
}

fn sub(text: &str) -> giva_signatures::LogicalSignature {
    let mut c = Compiler::new();
    c.add_source(
        "t.ldb",
        &format!("X;Engine:81-255,Target:0;{text}\n"),
        false,
    );
    let db = c.build().unwrap_or_else(|e| panic!("{text}: {e}"));
    db.logical_signatures()[0].clone()
}

fn set(bytes: &[u8]) -> Token {
    let mut s = ByteSet::EMPTY;
    for &b in bytes {
        s.insert(b);
    }
    Token::Set(Box::new(s))
}

#[test]
fn nibbles_and_wildcards() {
    let (_, p) = body("4142??3??a");
    assert_eq!(
        p.parts[0].tokens,
        vec![
            lit(0x41),
            lit(0x42),
            Token::Byte { value: 0, mask: 0 },
            Token::Byte {
                value: 0x30,
                mask: 0xf0
            },
            Token::Byte {
                value: 0x0a,
                mask: 0x0f
            },
        ]
    );
}

#[test]
fn gaps() {
    let (_, p) = body("4142{0}4344{-3}4546{2-}4748{3-5}494a{130}4b4c*4d4e{4-0}4f50");
    assert_eq!(
        p.gaps,
        vec![
            Gap { min: 0, max: None },
            Gap {
                min: 0,
                max: Some(3)
            },
            Gap { min: 2, max: None },
            Gap {
                min: 3,
                max: Some(5)
            },
            Gap {
                min: 130,
                max: Some(130)
            },
            Gap { min: 0, max: None },
            Gap { min: 4, max: None },
        ]
    );
}

#[test]
fn small_n_is_wildcards() {
    let (_, p) = body("4142{3}4344");
    assert_eq!(p.parts.len(), 1);
    assert_eq!(p.parts[0].tokens.len(), 7);
}

#[test]
fn anchors_at_the_ends_are_fields() {
    let (_, p) = body("64[4-4]61616161{2}6262[3-6]65");
    assert_eq!(
        p.left_anchor,
        Some(Anchor {
            byte: 0x64,
            min: 4,
            max: 4
        })
    );
    assert_eq!(
        p.right_anchor,
        Some(Anchor {
            byte: 0x65,
            min: 3,
            max: 6
        })
    );
    assert_eq!(p.parts[0].tokens.len(), 8);
}

#[test]
fn anchors_elsewhere_are_alternations() {
    let (_, p) = body("6161*6262[1-2]63*6464");
    assert_eq!(p.left_anchor, None);
    assert_eq!(p.right_anchor, None);
    let w = Token::Byte { value: 0, mask: 0 };
    assert_eq!(
        p.parts[1].tokens,
        vec![
            lit(0x62),
            lit(0x62),
            Token::Alt(Box::new(vec![
                vec![w.clone(), lit(0x63)],
                vec![w.clone(), w, lit(0x63)]
            ])),
        ]
    );
}

#[test]
fn alternations() {
    let (_, p) = body("4142(43|44)!(45|46)(4748|494a)!(4b4c|4d4e)(4f|5051)");
    let t = &p.parts[0].tokens;
    assert_eq!(t[2], set(&[0x43, 0x44]));
    assert_eq!(t[3], set(&[0x45, 0x46]).negate_set());
    assert_eq!(
        t[4],
        Token::Alt(Box::new(vec![
            vec![lit(0x47), lit(0x48)],
            vec![lit(0x49), lit(0x4a)]
        ]))
    );
    assert_eq!(
        t[5],
        Token::NotAlt {
            len: 2,
            branches: Box::new(vec![vec![0x4b, 0x4c], vec![0x4d, 0x4e]])
        }
    );
    assert_eq!(
        t[6],
        Token::Alt(Box::new(vec![vec![lit(0x4f)], vec![lit(0x50), lit(0x51)]]))
    );
}

trait Negate {
    fn negate_set(self) -> Token;
}
impl Negate for Token {
    fn negate_set(self) -> Token {
        match self {
            Token::Set(s) => Token::Set(Box::new(s.negate())),
            t => t,
        }
    }
}

#[test]
fn boundaries() {
    let (_, p) = body("(B)4142(L)4344(W)4546(L)");
    assert_eq!(p.start_assertion, Some(Assertion::Boundary));
    assert_eq!(p.end_assertion, Some(Assertion::Line));
    let t = &p.parts[0].tokens;
    assert_eq!(
        t[2],
        Token::Alt(Box::new(vec![
            vec![lit(b'\n')],
            vec![lit(b'\r'), lit(b'\n')]
        ]))
    );
    match &t[5] {
        Token::Set(s) => {
            assert!(s.contains(b'_') && s.contains(b' ') && !s.contains(b'a') && !s.contains(b'0'));
        }
        other => panic!("{other:?}"),
    }
}

fn exe(anchor: ExeAnchor, delta: i64, shift: u64) -> Offset {
    Offset::Exe {
        anchor,
        delta,
        shift,
    }
}

#[test]
fn offsets() {
    for (text, want) in [
        ("*", Offset::Any),
        (
            "10",
            Offset::Absolute {
                start: 10,
                shift: 0,
            },
        ),
        (
            "10,5",
            Offset::Absolute {
                start: 10,
                shift: 5,
            },
        ),
        ("EOF-4", Offset::FromEnd { back: 4, shift: 0 }),
        ("EOF-10,4", Offset::FromEnd { back: 10, shift: 4 }),
        ("EP+0", exe(ExeAnchor::EntryPoint, 0, 0)),
        ("EP+16,8", exe(ExeAnchor::EntryPoint, 16, 8)),
        ("EP-4", exe(ExeAnchor::EntryPoint, -4, 0)),
        ("S0+7", exe(ExeAnchor::Section(0), 7, 0)),
        ("S12+0,3", exe(ExeAnchor::Section(12), 0, 3)),
        ("SL+2", exe(ExeAnchor::LastSection, 2, 0)),
        ("SE1", exe(ExeAnchor::WholeSection(1), 0, 0)),
        ("SE3,10", exe(ExeAnchor::WholeSection(3), 0, 10)),
        // As in ClamAV: an empty number is 0, and what follows `Sx+n`'s
        // digits is ignored.
        ("EP+", exe(ExeAnchor::EntryPoint, 0, 0)),
        ("SE,3", exe(ExeAnchor::WholeSection(0), 0, 3)),
        ("S2+4junk", exe(ExeAnchor::Section(2), 4, 0)),
    ] {
        let target = if matches!(want, Offset::Exe { .. }) {
            1
        } else {
            0
        };
        let mut c = Compiler::new();
        c.add_source("t.ndb", &format!("X:{target}:{text}:414243\n"), false);
        assert_eq!(
            c.build().unwrap().body_signatures()[0].offset,
            want,
            "{text}"
        );
    }
}

#[test]
fn modifiers() {
    let l = sub("0;4162::wa");
    let v = &l.subsigs[0].variants;
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].parts[0].tokens, vec![lit(0x41), lit(0x62)]);
    assert_eq!(
        v[1].parts[0].tokens,
        vec![lit(0x41), lit(0), lit(0x62), lit(0)]
    );
    let l = sub("0;4162::i");
    assert_eq!(
        l.subsigs[0].variants[0].parts[0].tokens,
        vec![set(b"Aa"), set(b"Bb")]
    );
    // `::w` widens `??` too (as ClamAV does); `::i` folds letters only.
    let l = sub("0;41??62::iwf");
    let p = &l.subsigs[0].variants[0];
    assert_eq!(
        p.parts[0].tokens,
        vec![
            set(b"Aa"),
            lit(0),
            Token::Byte { value: 0, mask: 0 },
            lit(0),
            set(b"Bb"),
            lit(0),
        ]
    );
    assert_eq!(p.start_assertion, Some(Assertion::NonAlnumWide));
    assert_eq!(p.end_assertion, Some(Assertion::NonAlnumWide));
    let l = sub("0;4142::f");
    assert_eq!(
        l.subsigs[0].variants[0].start_assertion,
        Some(Assertion::NonAlnum)
    );
    // `[x-y]` becomes a gap in wide mode.
    let l = sub("0;6161[1-2]62::w");
    let p = &l.subsigs[0].variants[0];
    assert_eq!(
        p.gaps,
        vec![Gap {
            min: 1,
            max: Some(2)
        }]
    );
    assert_eq!(p.parts[1].tokens, vec![lit(0x62), lit(0)]);
}

#[test]
fn logical_signature() {
    let l = sub("((0|1)>2,1)&2=0;EOF-5:414243;10,2:444546;474849");
    assert_eq!(l.name, "X.UNOFFICIAL");
    assert_eq!(l.subsigs[0].offset, Offset::FromEnd { back: 5, shift: 0 });
    assert_eq!(
        l.subsigs[1].offset,
        Offset::Absolute {
            start: 10,
            shift: 2
        }
    );
    let count = |inner, op, count, distinct| LogicalExpr::Count {
        inner: Box::new(inner),
        op,
        count,
        distinct,
    };
    let want = LogicalExpr::And(
        Box::new(count(
            LogicalExpr::Or(Box::new(LogicalExpr::Sub(0)), Box::new(LogicalExpr::Sub(1))),
            CountOp::Gt,
            2,
            Some(1),
        )),
        Box::new(count(LogicalExpr::Sub(2), CountOp::Eq, 0, None)),
    );
    assert_eq!(l.expr, want);
    assert_eq!(l.expr.to_string(), "((0|1)>2,1&2=0)");
    let mut c = Compiler::new();
    c.add_source(
        "t.ldb",
        "X;Engine:51-255,Target:0,FileSize:10-30;0;414243\n",
        false,
    );
    assert_eq!(
        c.build().unwrap().logical_signatures()[0].file_size,
        Some((10, 30))
    );
}

#[test]
fn database_is_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<giva_signatures::Database>();
}
