//! How the signature types write and read themselves ([`Wire`]): the one
//! encoding that both the database file and the stored engine use.
//!
//! Numbers are LEB128 ([`Writer::var`]) and lists are counted. A token
//! list is stored as items: a run of literal bytes is one item (tag
//! [`LITERAL_RUN`], then the bytes), any other token one item, since most
//! of a body signature is literal bytes. Decoding checks every structural
//! rule the parsers guarantee (a pattern has parts, one gap between each
//! two, a logical expression names only existing subsignatures), so a
//! decoded signature is one the parsers could have produced.

use crate::pattern::{
    Anchor, Assertion, BodyPattern, BodySignature, ByteCompare, ByteSet, Check, CountOp, ExeAnchor,
    Gap, LogicalExpr, LogicalSignature, MAX_SUBSIGS, NumberForm, Offset, Part, PcreCheck, Subsig,
    Token,
};
use crate::pcre::{Options, Regex};
use crate::wire::{Reader, Wire, WireError, WireErrorKind, Writer};

/// Token tag of a run of literal bytes.
const LITERAL_RUN: u8 = 4;

/// Deepest nesting decoded (alternations inside alternations, and
/// expressions).
const MAX_DEPTH: usize = 256;

impl Wire for Offset {
    fn put(&self, w: &mut Writer) {
        match *self {
            Offset::Any => w.u8(0),
            Offset::Absolute { start, shift } => {
                w.u8(1);
                w.var(start);
                w.var(shift);
            }
            Offset::FromEnd { back, shift } => {
                w.u8(2);
                w.var(back);
                w.var(shift);
            }
            Offset::Exe {
                anchor,
                delta,
                shift,
            } => {
                let (tag, x) = match anchor {
                    ExeAnchor::EntryPoint => (3, 0),
                    ExeAnchor::Section(x) => (4, x),
                    ExeAnchor::LastSection => (5, 0),
                    ExeAnchor::WholeSection(x) => (6, x),
                };
                w.u8(tag);
                w.var(u64::from(x));
                // Zigzag, so that a small `EP-n` stays short.
                w.var(((delta << 1) ^ (delta >> 63)) as u64);
                w.var(shift);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            0 => Ok(Offset::Any),
            1 => Ok(Offset::Absolute {
                start: r.var()?,
                shift: r.var()?,
            }),
            2 => Ok(Offset::FromEnd {
                back: r.var()?,
                shift: r.var()?,
            }),
            t @ 3..=6 => {
                let x = r.var_u32()?;
                let anchor = match t {
                    3 => ExeAnchor::EntryPoint,
                    4 => ExeAnchor::Section(x),
                    5 => ExeAnchor::LastSection,
                    _ => ExeAnchor::WholeSection(x),
                };
                if x != 0 && matches!(anchor, ExeAnchor::EntryPoint | ExeAnchor::LastSection) {
                    return r.invalid("offset anchor number");
                }
                let z = r.var()?;
                let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
                Ok(Offset::Exe {
                    anchor,
                    delta,
                    shift: r.var()?,
                })
            }
            t => r.bad_tag("offset", t),
        }
    }
}

impl Wire for Anchor {
    fn put(&self, w: &mut Writer) {
        w.u8(self.byte);
        w.var(u64::from(self.min));
        w.var(u64::from(self.max));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Anchor {
            byte: r.u8()?,
            min: r.var_u32()?,
            max: r.var_u32()?,
        })
    }
}

/// An assertion or none, in one byte.
impl Wire for Option<Assertion> {
    fn put(&self, w: &mut Writer) {
        w.u8(match self {
            None => 0,
            Some(Assertion::Boundary) => 1,
            Some(Assertion::Line) => 2,
            Some(Assertion::NonAlnum) => 3,
            Some(Assertion::NonAlnumWide) => 4,
            Some(Assertion::NotBoundary) => 5,
            Some(Assertion::NotLine) => 6,
            Some(Assertion::Alnum) => 7,
        });
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8()? {
            0 => None,
            1 => Some(Assertion::Boundary),
            2 => Some(Assertion::Line),
            3 => Some(Assertion::NonAlnum),
            4 => Some(Assertion::NonAlnumWide),
            5 => Some(Assertion::NotBoundary),
            6 => Some(Assertion::NotLine),
            7 => Some(Assertion::Alnum),
            t => return r.bad_tag("assertion", t),
        })
    }
}

impl Wire for Gap {
    fn put(&self, w: &mut Writer) {
        w.var(u64::from(self.min));
        w.opt(self.max.as_ref());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Gap {
            min: r.var_u32()?,
            max: r.opt()?,
        })
    }
}

/// Four little-endian words.
impl Wire for ByteSet {
    fn put(&self, w: &mut Writer) {
        for x in self.0 {
            w.u64(x);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ByteSet([r.u64()?, r.u64()?, r.u64()?, r.u64()?]))
    }
}

fn put_token(w: &mut Writer, t: &Token) {
    match t {
        Token::Byte { value, mask } => {
            w.u8(0);
            w.u8(*value);
            w.u8(*mask);
        }
        Token::Set(s) => {
            w.u8(1);
            s.put(w);
        }
        Token::Alt(branches) => {
            w.u8(2);
            w.count(branches.len());
            for b in branches.iter() {
                put_tokens(w, b);
            }
        }
        Token::NotAlt { len, branches } => {
            w.u8(3);
            w.count(*len as usize);
            w.count(branches.len());
            for b in branches.iter() {
                w.bytes(b);
            }
        }
    }
}

fn literal(t: &Token) -> Option<u8> {
    match t {
        Token::Byte { value, mask: 0xff } => Some(*value),
        _ => None,
    }
}

fn put_tokens(w: &mut Writer, ts: &[Token]) {
    // A run of literal bytes is one item, any other token one.
    let run = |ts: &[Token]| ts.iter().take_while(|t| literal(t).is_some()).count();
    let mut items = 0;
    let mut rest = ts;
    while !rest.is_empty() {
        let n = run(rest).max(1);
        items += 1;
        rest = &rest[n..];
    }
    w.count(items);
    let mut rest = ts;
    while let Some(first) = rest.first() {
        let n = run(rest);
        if n == 0 {
            put_token(w, first);
            rest = &rest[1..];
        } else {
            w.u8(LITERAL_RUN);
            w.count(n);
            for t in &rest[..n] {
                w.u8(literal(t).unwrap_or(0));
            }
            rest = &rest[n..];
        }
    }
}

fn get_token(r: &mut Reader<'_>, depth: usize) -> Result<Token, WireError> {
    if depth > MAX_DEPTH {
        return r.invalid("nesting too deep");
    }
    match r.u8()? {
        0 => Ok(Token::Byte {
            value: r.u8()?,
            mask: r.u8()?,
        }),
        1 => Ok(Token::Set(Box::new(r.get()?))),
        2 => {
            let n = r.count(1)?;
            let mut branches = Vec::new();
            for _ in 0..n {
                branches.push(get_tokens(r, depth + 1)?);
            }
            Ok(Token::Alt(Box::new(branches)))
        }
        3 => {
            let len = r.count(1)?;
            let n = r.count(1)?;
            let mut branches = Vec::new();
            for _ in 0..n {
                let b = r.bytes()?;
                if b.len() != len {
                    return r.invalid("negated branch length mismatch");
                }
                branches.push(b.to_vec());
            }
            let Ok(len) = u32::try_from(len) else {
                return r.invalid("negated branch too long");
            };
            Ok(Token::NotAlt {
                len,
                branches: Box::new(branches),
            })
        }
        t => r.bad_tag("token", t),
    }
}

fn get_tokens(r: &mut Reader<'_>, depth: usize) -> Result<Vec<Token>, WireError> {
    let n = r.count(1)?;
    let mut v = Vec::new();
    for _ in 0..n {
        if r.peek() == Some(LITERAL_RUN) {
            r.u8()?;
            let run = r.bytes()?;
            if run.is_empty() {
                return r.invalid("empty literal run");
            }
            v.extend(run.iter().map(|&value| Token::Byte { value, mask: 0xff }));
        } else {
            v.push(get_token(r, depth)?);
        }
    }
    Ok(v)
}

/// Its tokens; never empty.
impl Wire for Part {
    fn put(&self, w: &mut Writer) {
        put_tokens(w, &self.tokens);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let tokens = get_tokens(r, 0)?;
        if tokens.is_empty() {
            return r.invalid("empty part");
        }
        Ok(Part { tokens })
    }
}

impl Wire for BodyPattern {
    fn put(&self, w: &mut Writer) {
        w.list(&self.parts);
        w.list(&self.gaps);
        w.opt(self.left_anchor.as_ref());
        w.opt(self.right_anchor.as_ref());
        self.start_assertion.put(w);
        self.end_assertion.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let parts: Vec<Part> = r.list(1)?;
        if parts.is_empty() {
            return r.invalid("pattern without parts");
        }
        let gaps: Vec<Gap> = r.list(1)?;
        if gaps.len() + 1 != parts.len() {
            return r.invalid("gap count does not match part count");
        }
        Ok(BodyPattern {
            parts,
            gaps,
            left_anchor: r.opt()?,
            right_anchor: r.opt()?,
            start_assertion: r.get()?,
            end_assertion: r.get()?,
        })
    }
}

/// Before a typed signature's offset: the target follows. Offsets' own
/// tags are 0-2, so a signature of target 0 is written as before typed
/// signatures existed, and older files read unchanged.
const TYPED: u8 = 0x40;

impl Wire for BodySignature {
    fn put(&self, w: &mut Writer) {
        w.str(&self.name);
        if self.target != 0 {
            w.u8(TYPED);
            w.u8(self.target);
        }
        self.offset.put(w);
        self.pattern.put(w);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let name = r.get()?;
        let target = if r.peek() == Some(TYPED) {
            r.u8()?;
            r.u8()?
        } else {
            0
        };
        Ok(BodySignature {
            name,
            target,
            offset: r.get()?,
            pattern: r.get()?,
        })
    }
}

fn put_expr(w: &mut Writer, e: &LogicalExpr) {
    match e {
        LogicalExpr::Sub(n) => {
            w.u8(0);
            w.count(*n);
        }
        LogicalExpr::And(a, b) | LogicalExpr::Or(a, b) => {
            w.u8(if matches!(e, LogicalExpr::And(..)) {
                1
            } else {
                2
            });
            put_expr(w, a);
            put_expr(w, b);
        }
        LogicalExpr::Count {
            inner,
            op,
            count,
            distinct,
        } => {
            w.u8(3);
            w.u8(op_tag(*op));
            w.var(u64::from(*count));
            w.opt(distinct.as_ref());
            put_expr(w, inner);
        }
    }
}

fn get_expr(r: &mut Reader<'_>, depth: usize) -> Result<LogicalExpr, WireError> {
    if depth > MAX_DEPTH {
        return r.invalid("expression nesting too deep");
    }
    match r.u8()? {
        0 => {
            let v = r.var()?;
            if v >= MAX_SUBSIGS as u64 {
                return Err(r.error(WireErrorKind::OutOfRange("subsignature index")));
            }
            Ok(LogicalExpr::Sub(v as usize))
        }
        t @ (1 | 2) => {
            let a = Box::new(get_expr(r, depth + 1)?);
            let b = Box::new(get_expr(r, depth + 1)?);
            Ok(if t == 1 {
                LogicalExpr::And(a, b)
            } else {
                LogicalExpr::Or(a, b)
            })
        }
        3 => {
            let op = get_op(r)?;
            let count = r.var_u32()?;
            let distinct = r.opt()?;
            let inner = Box::new(get_expr(r, depth + 1)?);
            Ok(LogicalExpr::Count {
                inner,
                op,
                count,
                distinct,
            })
        }
        t => r.bad_tag("expression", t),
    }
}

impl Wire for LogicalExpr {
    fn put(&self, w: &mut Writer) {
        put_expr(w, self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        get_expr(r, 0)
    }
}

fn op_tag(op: CountOp) -> u8 {
    match op {
        CountOp::Eq => 0,
        CountOp::Gt => 1,
        CountOp::Lt => 2,
    }
}

fn get_op(r: &mut Reader<'_>) -> Result<CountOp, WireError> {
    Ok(match r.u8()? {
        0 => CountOp::Eq,
        1 => CountOp::Gt,
        2 => CountOp::Lt,
        t => return r.bad_tag("count operator", t),
    })
}

/// A signed number as a varint (zigzag).
fn put_signed(w: &mut Writer, v: i64) {
    w.var(((v << 1) ^ (v >> 63)) as u64);
}

fn get_signed(r: &mut Reader<'_>) -> Result<i64, WireError> {
    let z = r.var()?;
    Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
}

/// The flags of a PCRE subsignature in one 16-bit word.
fn pcre_flags(c: &PcreCheck) -> u32 {
    let o = c.regex.options();
    [
        o.caseless,
        o.dotall,
        o.multiline,
        o.extended,
        o.anchored,
        o.dollar_endonly,
        o.ungreedy,
        c.global,
        c.rolling,
        c.encompass,
    ]
    .iter()
    .enumerate()
    .fold(0, |acc, (i, &on)| acc | u32::from(on) << i)
}

/// A byte-compare (tag 1) or a PCRE (tag 2), then its fields. A PCRE is
/// stored as its expression and flags, and compiled again when read.
impl Wire for Check {
    fn put(&self, w: &mut Writer) {
        match self {
            Check::ByteCompare(b) => {
                w.u8(1);
                put_signed(w, i64::from(b.trigger));
                put_signed(w, b.offset);
                let (form, big) = match b.form {
                    NumberForm::Binary { big } => (1, big),
                    NumberForm::Hex { big } => (2, big),
                    NumberForm::Decimal => (3, true),
                    NumberForm::Auto { big } => (4, big),
                    NumberForm::Never => (0, false),
                };
                w.u8(form | u8::from(big) << 4 | u8::from(b.exact) << 5);
                w.var(u64::from(b.width));
                w.count(b.comparisons.len());
                for (op, v) in &b.comparisons {
                    w.u8(op_tag(*op));
                    put_signed(w, *v);
                }
            }
            Check::Pcre(p) => {
                w.u8(2);
                match &p.trigger {
                    None => w.u8(0),
                    Some(e) => {
                        w.u8(1);
                        e.put(w);
                    }
                }
                p.offset.put(w);
                w.bytes(p.regex.pattern());
                w.var(u64::from(pcre_flags(p)));
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            1 => {
                let trigger = i16::try_from(get_signed(r)?)
                    .map_err(|_| r.error(WireErrorKind::OutOfRange("byte-compare trigger")))?;
                let offset = get_signed(r)?;
                let bits = r.u8()?;
                let big = bits & 16 != 0;
                let form = match bits & 15 {
                    0 => NumberForm::Never,
                    1 => NumberForm::Binary { big },
                    2 => NumberForm::Hex { big },
                    3 => NumberForm::Decimal,
                    4 => NumberForm::Auto { big },
                    t => return r.bad_tag("byte-compare form", t),
                };
                let width = r.var_u32()?;
                let n = r.count(2)?;
                if !(1..=2).contains(&n) {
                    return r.invalid("byte-compare comparisons");
                }
                let mut comparisons = Vec::with_capacity(n);
                for _ in 0..n {
                    comparisons.push((get_op(r)?, get_signed(r)?));
                }
                Ok(Check::ByteCompare(ByteCompare {
                    trigger,
                    offset,
                    form,
                    exact: bits & 32 != 0,
                    width,
                    comparisons,
                }))
            }
            2 => {
                let trigger = match r.u8()? {
                    0 => None,
                    1 => Some(r.get()?),
                    t => return r.bad_tag("PCRE trigger", t),
                };
                let offset = r.get()?;
                let pattern = r.bytes()?;
                let bits = r.var_u32()?;
                if bits >= 1 << 10 {
                    return r.invalid("PCRE flags");
                }
                let on = |i: u32| bits & 1 << i != 0;
                let options = Options {
                    caseless: on(0),
                    dotall: on(1),
                    multiline: on(2),
                    extended: on(3),
                    anchored: on(4),
                    dollar_endonly: on(5),
                    ungreedy: on(6),
                };
                let Ok(regex) = Regex::new(pattern, options) else {
                    return r.invalid("PCRE expression");
                };
                Ok(Check::Pcre(PcreCheck {
                    trigger,
                    offset,
                    regex,
                    global: on(7),
                    rolling: on(8),
                    encompass: on(9),
                }))
            }
            t => r.bad_tag("check", t),
        }
    }
}

impl Wire for Subsig {
    fn put(&self, w: &mut Writer) {
        self.offset.put(w);
        w.list(&self.variants);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Subsig {
            offset: r.get()?,
            variants: r.list(1)?,
        })
    }
}

impl Wire for LogicalSignature {
    fn put(&self, w: &mut Writer) {
        w.str(&self.name);
        // Bit 0: a file size follows; bit 1: a target (0 is not written,
        // so untyped signatures read as before); bits 2 and 3: an entry
        // point and a section count range; bit 4: a container type.
        let ranges = [self.file_size, self.entry_point, self.sections];
        let mut tag = if self.target != 0 { 2 } else { 0 };
        for (bit, r) in [1, 4, 8].into_iter().zip(ranges) {
            if r.is_some() {
                tag |= bit;
            }
        }
        if self.container.is_some() {
            tag |= 16;
        }
        if !self.checks.is_empty() {
            tag |= 32;
        }
        w.u8(tag);
        if let Some((a, b)) = self.file_size {
            w.var(a);
            w.var(b);
        }
        if self.target != 0 {
            w.u8(self.target);
        }
        for (a, b) in [self.entry_point, self.sections].into_iter().flatten() {
            w.var(a);
            w.var(b);
        }
        if let Some(c) = &self.container {
            w.str(c);
        }
        self.expr.put(w);
        w.list(&self.subsigs);
        // Bit 5 of the tag: the checks follow.
        if !self.checks.is_empty() {
            w.count(self.checks.len());
            for (i, c) in &self.checks {
                w.var(*i as u64);
                c.put(w);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let name = r.get()?;
        let tag = r.u8()?;
        if tag > 63 {
            return r.bad_tag("file size", tag);
        }
        let file_size = if tag & 1 == 1 {
            Some((r.var()?, r.var()?))
        } else {
            None
        };
        let target = if tag & 2 == 2 { r.u8()? } else { 0 };
        let mut range = |bit: u8| -> Result<Option<(u64, u64)>, WireError> {
            Ok(if tag & bit != 0 {
                Some((r.var()?, r.var()?))
            } else {
                None
            })
        };
        let entry_point = range(4)?;
        let sections = range(8)?;
        let container = if tag & 16 != 0 {
            Some(r.str()?.to_owned())
        } else {
            None
        };
        let expr: LogicalExpr = r.get()?;
        let subsigs: Vec<Subsig> = r.list(1)?;
        if expr.max_index() >= subsigs.len() {
            return r.invalid("expression refers to a missing subsignature");
        }
        let mut checks = Vec::new();
        if tag & 32 != 0 {
            let n = r.count(2)?;
            for _ in 0..n {
                let i = r.var()? as usize;
                if i >= subsigs.len() || checks.last().is_some_and(|(j, _)| *j >= i) {
                    return r.invalid("check index");
                }
                checks.push((i, r.get()?));
            }
        }
        Ok(LogicalSignature {
            name,
            target,
            file_size,
            entry_point,
            sections,
            container,
            expr,
            subsigs,
            checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(b: &[u8]) -> Part {
        Part {
            tokens: b
                .iter()
                .map(|&value| Token::Byte { value, mask: 0xff })
                .collect(),
        }
    }

    #[test]
    fn signatures_read_back_as_written() {
        let pattern = BodyPattern {
            parts: vec![
                Part {
                    tokens: vec![
                        Token::Byte {
                            value: 0x41,
                            mask: 0xff,
                        },
                        Token::Byte {
                            value: 0x40,
                            mask: 0xf0,
                        },
                        Token::Alt(Box::new(vec![lit(b"ab").tokens, lit(b"c").tokens])),
                        Token::NotAlt {
                            len: 2,
                            branches: Box::new(vec![b"xy".to_vec()]),
                        },
                        Token::Set(Box::new(ByteSet::single(7))),
                    ],
                },
                lit(b"zz"),
            ],
            gaps: vec![Gap {
                min: 3,
                max: Some(9),
            }],
            left_anchor: Some(Anchor {
                byte: 1,
                min: 0,
                max: 4,
            }),
            right_anchor: None,
            start_assertion: Some(Assertion::Boundary),
            end_assertion: None,
        };
        let body = BodySignature {
            name: "A.B".into(),
            target: 0,
            offset: Offset::FromEnd { back: 5, shift: 1 },
            pattern: pattern.clone(),
        };
        let logical = LogicalSignature {
            name: "L".into(),
            target: 0,
            file_size: Some((1, 99)),
            entry_point: None,
            sections: None,
            container: None,
            expr: LogicalExpr::Count {
                inner: Box::new(LogicalExpr::And(
                    Box::new(LogicalExpr::Sub(0)),
                    Box::new(LogicalExpr::Sub(1)),
                )),
                op: CountOp::Gt,
                count: 2,
                distinct: Some(1),
            },
            subsigs: vec![
                Subsig {
                    offset: Offset::Any,
                    variants: vec![pattern.clone()],
                },
                Subsig {
                    offset: Offset::Absolute { start: 4, shift: 0 },
                    variants: vec![pattern],
                },
            ],
            checks: Vec::new(),
        };
        let mut w = Writer::new();
        w.put(&body);
        w.put(&logical);
        let untyped = w.into_bytes();
        let mut r = Reader::new(&untyped);
        assert_eq!(r.get::<BodySignature>(), Ok(body.clone()));
        assert_eq!(r.get::<LogicalSignature>(), Ok(logical.clone()));
        assert!(r.is_empty());
        // An untyped signature is written as before targets were stored:
        // its name, then its offset's own tag (FromEnd, 2).
        assert_eq!(untyped[1 + 3], 2, "{untyped:?}");

        // Typed ones carry their target both ways.
        let body = BodySignature { target: 10, ..body };
        let logical = LogicalSignature {
            target: 1,
            entry_point: Some((0x400, 0x4ff)),
            sections: Some((3, 3)),
            container: Some("CL_TYPE_ZIP".into()),
            ..logical
        };
        let no_size = LogicalSignature {
            file_size: None,
            target: 6,
            subsigs: [
                logical.subsigs.clone(),
                vec![
                    Subsig {
                        offset: Offset::Any,
                        variants: Vec::new(),
                    };
                    2
                ],
            ]
            .concat(),
            checks: vec![
                (
                    2,
                    Check::ByteCompare(ByteCompare {
                        trigger: -1,
                        offset: -7,
                        form: NumberForm::Hex { big: false },
                        exact: true,
                        width: 18,
                        comparisons: vec![(CountOp::Gt, i64::MIN), (CountOp::Lt, i64::MAX)],
                    }),
                ),
                (
                    3,
                    Check::Pcre(PcreCheck {
                        trigger: Some(LogicalExpr::Sub(2)),
                        offset: Offset::FromEnd { back: 9, shift: 3 },
                        regex: Regex::new(
                            b"a+(b|c)$",
                            Options {
                                caseless: true,
                                ungreedy: true,
                                ..Options::default()
                            },
                        )
                        .expect("compiles"),
                        global: true,
                        rolling: false,
                        encompass: true,
                    }),
                ),
            ],
            ..logical.clone()
        };
        let mut w = Writer::new();
        w.put(&body);
        w.put(&logical);
        w.put(&no_size);
        let typed = w.into_bytes();
        let mut r = Reader::new(&typed);
        assert_eq!(r.get::<BodySignature>(), Ok(body));
        assert_eq!(r.get::<LogicalSignature>(), Ok(logical));
        assert_eq!(r.get::<LogicalSignature>(), Ok(no_size));
        assert!(r.is_empty());
    }

    #[test]
    fn an_expression_naming_a_missing_subsignature_is_refused() {
        let l = LogicalSignature {
            name: "L".into(),
            target: 0,
            file_size: None,
            entry_point: None,
            sections: None,
            container: None,
            expr: LogicalExpr::Sub(1),
            subsigs: vec![Subsig {
                offset: Offset::Any,
                variants: vec![BodyPattern {
                    parts: vec![lit(b"ab")],
                    gaps: vec![],
                    left_anchor: None,
                    right_anchor: None,
                    start_assertion: None,
                    end_assertion: None,
                }],
            }],
            checks: Vec::new(),
        };
        let mut w = Writer::new();
        w.put(&l);
        let bytes = w.into_bytes();
        let e = Reader::new(&bytes).get::<LogicalSignature>().unwrap_err();
        assert_eq!(
            e.kind,
            WireErrorKind::Invalid("expression refers to a missing subsignature")
        );
    }
}
