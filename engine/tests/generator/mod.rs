//! Random databases and inputs for property tests: patterns in the IR
//! with every token kind, gaps, anchors, assertions, offsets, logical
//! expressions with counts, and hashes; matches are planted in the data.
#![allow(dead_code)]

use giva_signatures::{
    Anchor, Assertion, BodyPattern, BodySignature, ByteSet, CountOp, Database, DatabaseInfo, Gap,
    HashAlgo, HashEntry, LogicalExpr, LogicalSignature, Offset, Part, Subsig, Token,
};

/// A tiny deterministic generator (xorshift64*), seeded by proptest.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A small alphabet, with boundary and line bytes, so that random data hits.
pub const ALPHA: &[u8] = b"abc\0 .\n\r_Z0";

pub fn lit(r: &mut Rng) -> Token {
    Token::Byte {
        value: r.pick(ALPHA),
        mask: 0xff,
    }
}

pub fn simple_token(r: &mut Rng, depth: u32) -> Token {
    match r.below(if depth > 1 { 4 } else { 6 }) {
        0 | 1 => lit(r),
        2 => {
            let m = r.pick(&[0u8, 0xf0, 0x0f]);
            Token::Byte {
                value: r.pick(ALPHA) & m,
                mask: m,
            }
        }
        3 => {
            let mut s = ByteSet::EMPTY;
            for _ in 0..1 + r.below(3) {
                s.insert(r.pick(ALPHA));
            }
            if r.chance(20) {
                s = s.negate();
            }
            Token::Set(Box::new(s))
        }
        4 => {
            let n = 2 + r.below(2) as usize;
            let branches: Vec<Vec<Token>> = (0..n)
                .map(|_| {
                    (0..1 + r.below(2))
                        .map(|_| simple_token(r, depth + 1))
                        .collect()
                })
                .collect();
            Token::Alt(Box::new(branches))
        }
        _ => {
            let len = 1 + r.below(2) as u32;
            let branches: Vec<Vec<u8>> = (0..1 + r.below(2))
                .map(|_| (0..len).map(|_| r.pick(ALPHA)).collect())
                .collect();
            Token::NotAlt {
                len,
                branches: Box::new(branches),
            }
        }
    }
}

pub fn part(r: &mut Rng) -> Part {
    let mut tokens = Vec::new();
    for _ in 0..r.below(3) {
        tokens.push(simple_token(r, 0));
    }
    let run = if r.chance(25) {
        7 + r.below(4)
    } else {
        2 + r.below(2)
    };
    for _ in 0..run {
        tokens.push(lit(r));
    }
    for _ in 0..r.below(3) {
        tokens.push(simple_token(r, 0));
    }
    Part { tokens }
}

pub fn assertion(r: &mut Rng) -> Option<Assertion> {
    if r.chance(75) {
        return None;
    }
    Some(r.pick(&[
        Assertion::Boundary,
        Assertion::Line,
        Assertion::NonAlnum,
        Assertion::NonAlnumWide,
    ]))
}

pub fn anchor(r: &mut Rng) -> Option<Anchor> {
    if r.chance(80) {
        return None;
    }
    let min = r.below(3) as u32;
    Some(Anchor {
        byte: r.pick(ALPHA),
        min,
        max: min + r.below(3) as u32,
    })
}

pub fn pattern(r: &mut Rng) -> BodyPattern {
    let nparts = 1 + r.below(3) as usize;
    let parts: Vec<Part> = (0..nparts).map(|_| part(r)).collect();
    let gaps = (1..nparts)
        .map(|_| {
            let min = r.below(4) as u32;
            let max = if r.chance(40) {
                None
            } else {
                Some(min + r.below(5) as u32)
            };
            Gap { min, max }
        })
        .collect();
    BodyPattern {
        parts,
        gaps,
        left_anchor: anchor(r),
        right_anchor: anchor(r),
        start_assertion: assertion(r),
        end_assertion: assertion(r),
    }
}

pub fn offset(r: &mut Rng) -> Offset {
    match r.below(6) {
        0 => Offset::Absolute {
            start: r.below(10),
            shift: r.below(5),
        },
        1 => Offset::FromEnd {
            back: r.below(30),
            shift: r.below(5),
        },
        _ => Offset::Any,
    }
}

/// Bytes that match `tokens` (best effort; used to plant matches).
pub fn sample(tokens: &[Token], r: &mut Rng, out: &mut Vec<u8>) {
    for t in tokens {
        match t {
            Token::Byte { value, mask } => out.push((r.pick(ALPHA) & !mask) | (value & mask)),
            Token::Set(s) => {
                let members: Vec<u8> = s.iter().filter(|b| ALPHA.contains(b)).collect();
                out.push(if members.is_empty() {
                    s.iter().next().unwrap_or(0)
                } else {
                    r.pick(&members)
                });
            }
            Token::Alt(bs) => {
                let b = &bs[r.below(bs.len() as u64) as usize];
                sample(b, r, out);
            }
            Token::NotAlt { len, .. } => out.extend((0..*len).map(|_| r.pick(ALPHA))),
        }
    }
}

pub fn plant(p: &BodyPattern, r: &mut Rng, data: &mut Vec<u8>) {
    let mut bytes = Vec::new();
    if let Some(a) = p.left_anchor {
        bytes.push(a.byte);
        bytes.extend((0..a.min).map(|_| r.pick(ALPHA)));
    }
    for (k, part) in p.parts.iter().enumerate() {
        if k > 0 {
            let g = p.gaps[k - 1];
            bytes.extend((0..g.min + r.below(3) as u32).map(|_| r.pick(ALPHA)));
        }
        sample(&part.tokens, r, &mut bytes);
    }
    if let Some(a) = p.right_anchor {
        bytes.extend((0..a.min).map(|_| r.pick(ALPHA)));
        bytes.push(a.byte);
    }
    let at = r.below(data.len() as u64 + 1) as usize;
    if r.chance(50) {
        data.splice(at..at, bytes);
    } else {
        let end = (at + bytes.len()).min(data.len());
        data.splice(at..end, bytes);
    }
}

pub fn expr(r: &mut Rng, n: usize, depth: u32) -> LogicalExpr {
    if depth > 2 || r.chance(40) {
        let leaf = LogicalExpr::Sub(r.below(n as u64) as usize);
        return if r.chance(30) {
            LogicalExpr::Count {
                inner: Box::new(leaf),
                op: r.pick(&[CountOp::Eq, CountOp::Gt, CountOp::Lt]),
                count: r.below(4) as u32,
                distinct: None,
            }
        } else {
            leaf
        };
    }
    let a = Box::new(expr(r, n, depth + 1));
    let b = Box::new(expr(r, n, depth + 1));
    match r.below(3) {
        0 => LogicalExpr::And(a, b),
        1 => LogicalExpr::Or(a, b),
        _ => LogicalExpr::Count {
            inner: Box::new(LogicalExpr::Or(a, b)),
            op: r.pick(&[CountOp::Eq, CountOp::Gt, CountOp::Lt]),
            count: r.below(4) as u32,
            distinct: r.chance(50).then(|| r.below(3) as u32),
        },
    }
}

pub struct Case {
    pub db: Database,
    pub data: Vec<u8>,
}

pub fn case(seed: u64) -> Case {
    let r = &mut Rng(seed | 1);
    let len = r.below(90) as usize;
    let mut data: Vec<u8> = (0..len).map(|_| r.pick(ALPHA)).collect();
    let mut body = Vec::new();
    for i in 0..1 + r.below(4) {
        let p = pattern(r);
        for _ in 0..r.below(3) {
            plant(&p, r, &mut data);
        }
        body.push(BodySignature {
            name: format!("B{i}"),
            target: 0,
            offset: offset(r),
            pattern: p,
        });
    }
    let mut logical = Vec::new();
    for i in 0..r.below(3) {
        let n = 1 + r.below(3) as usize;
        let subsigs: Vec<Subsig> = (0..n)
            .map(|_| {
                let v: Vec<BodyPattern> = (0..1 + r.below(2)).map(|_| pattern(r)).collect();
                for p in &v {
                    for _ in 0..r.below(3) {
                        plant(p, r, &mut data);
                    }
                }
                Subsig {
                    offset: offset(r),
                    variants: v,
                }
            })
            .collect();
        let file_size = r.chance(20).then(|| (r.below(40), 40 + r.below(80)));
        logical.push(LogicalSignature {
            name: format!("L{i}"),
            target: 0,
            file_size,
            entry_point: None,
            sections: None,
            container: None,
            expr: expr(r, n, 0),
            subsigs,
            checks: Vec::new(),
        });
    }
    let mut hashes = Vec::new();
    let mut allow = Vec::new();
    if r.chance(20) {
        let algo = r.pick(&HashAlgo::ALL);
        let digest = digest_of(algo, &data);
        let size = if r.chance(50) {
            None
        } else {
            Some(data.len() as u64 + r.below(2))
        };
        let e = HashEntry {
            scope: giva_signatures::HashScope::File,
            algo,
            digest,
            size,
            name: "H".into(),
        };
        if r.chance(30) {
            allow.push(e)
        } else {
            hashes.push(e)
        }
    }
    let db = Database::from_parts(DatabaseInfo::default(), body, logical, hashes, allow);
    Case { db, data }
}

pub fn digest_of(algo: HashAlgo, data: &[u8]) -> Vec<u8> {
    // Use the engine itself through a hash-only database? No: compute here.
    use sha2::Digest;
    match algo {
        HashAlgo::Md5 => md5::Md5::digest(data).to_vec(),
        HashAlgo::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlgo::Sha256 => sha2::Sha256::digest(data).to_vec(),
    }
}
