//! The body-signature (hex) language shared by `.ndb` and `.ldb`
//! (clamav-formats.md §4), parsed into a [`BodyPattern`].
//!
//! The parser works in four steps, mirroring how ClamAV treats a signature:
//!
//! 1. split at top-level `*` and `{…}` ranges into parts (a `{n}` with
//!    0 < n < 128 becomes n `??` and does not split; `{0}` and a range whose
//!    maximum is 0 are unbounded, as in ClamAV);
//! 2. take the `[x-y]` single-byte anchors off each part (per part, as
//!    ClamAV does; anchors that are not at the very ends of the pattern, or
//!    whose byte is not a plain literal, are expressed as an alternation of
//!    the allowed distances);
//! 3. tokenize the part (literals, nibbles, alternations, `(B)(L)(W)`);
//! 4. apply the `::w`, `::i` and `::f` modifiers and check that every part
//!    has two consecutive fixed bytes.

use crate::limits::Limits;
use crate::pattern::{Anchor, Assertion, BodyPattern, ByteSet, Gap, Part, Token, boundary_any};

/// Modifiers of an `.ldb` content subsignature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HexOptions {
    /// `::i`
    pub nocase: bool,
    /// `::w` (the wide variant)
    pub wide: bool,
    /// `::f`
    pub fullword: bool,
    /// Any modifier was given (`::a` included): ClamAV then refuses a
    /// negated alternation.
    pub modified: bool,
    /// `[x-y]` is read as `{x-y}`: ClamAV does so with `::w` and `::f`, for
    /// the ASCII form of `::wa` too.
    pub braces: bool,
}

/// Why a hex body was not turned into a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HexError {
    /// ClamAV refuses it: the whole file is malformed.
    Malformed(String),
    /// ClamAV accepts it but giva cannot express it: skip and count.
    Unsupported(&'static str),
    /// A [`Limits`] value was exceeded.
    Limit(String),
}

fn malformed<T>(msg: impl Into<String>) -> Result<T, HexError> {
    Err(HexError::Malformed(msg.into()))
}

const WILDCARD: Token = Token::Byte { value: 0, mask: 0 };

/// What `{n}` (0 < n < 128) is written as inside a part: a wildcard byte
/// that `::w` does not widen (ClamAV widens a written `??`, not `{n}`).
const FILL: &str = "~~";

fn lit(b: u8) -> Token {
    Token::Byte {
        value: b,
        mask: 0xff,
    }
}

fn is_lit(t: &Token) -> bool {
    matches!(t, Token::Byte { mask: 0xff, .. })
}

/// One raw part string with its gap to the previous one.
struct RawPart {
    text: String,
    gap_before: Option<Gap>,
}

/// Parses a hex body with modifiers.
pub(crate) fn parse_body(
    hex: &str,
    opts: HexOptions,
    limits: &Limits,
) -> Result<BodyPattern, HexError> {
    if hex.len() > limits.max_pattern_len {
        return Err(HexError::Limit(format!(
            "hex signature is {} characters (limit {})",
            hex.len(),
            limits.max_pattern_len
        )));
    }
    if hex.is_empty() {
        return malformed("empty hex signature");
    }
    if opts == HexOptions::default()
        && let Some(p) = parse_plain(hex, limits)
    {
        return Ok(p);
    }
    parse_general(hex, opts, limits)
}

/// The common shape of a body read without the general parser's
/// allocations: no modifier, and nothing but hex digits, `?`, `*` and
/// `{…}` ranges. `None` for anything else, and for anything the general
/// parser would refuse or skip, which it then reads again and explains;
/// what this returns, the general parser returns too (tested).
fn parse_plain(hex: &str, limits: &Limits) -> Option<BodyPattern> {
    let s = hex.as_bytes();
    if !s
        .iter()
        .all(|&c| c.is_ascii_hexdigit() || matches!(c, b'?' | b'*' | b'{' | b'}' | b'-'))
    {
        return None;
    }
    let mut parts = Vec::new();
    let mut gaps = Vec::new();
    // Each part's bytes (value, mask) are gathered here, then made its
    // tokens at their number.
    let mut bytes: Vec<(u8, u8)> = Vec::with_capacity(s.len() / 2);
    // As the general parser counts: tokens over all parts, and characters
    // with each `{n}` as `2n`.
    let mut spent = 0usize;
    let mut expanded = 0usize;
    let mut end_part = |bytes: &mut Vec<(u8, u8)>, gap: Option<Gap>| -> Option<()> {
        // As `check_static`: two consecutive fixed bytes.
        if !bytes.windows(2).any(|w| w[0].1 == 0xff && w[1].1 == 0xff) {
            return None;
        }
        parts.push(Part {
            tokens: bytes
                .iter()
                .map(|&(value, mask)| Token::Byte { value, mask })
                .collect(),
        });
        bytes.clear();
        if parts.len() > limits.max_pattern_tokens {
            return None;
        }
        gaps.extend(gap);
        Some(())
    };
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'*' => {
                end_part(&mut bytes, Some(Gap { min: 0, max: None }))?;
                i += 1;
            }
            b'{' => {
                let end = i + 1 + s[i + 1..].iter().position(|&c| c == b'}')?;
                let inner = &hex[i + 1..end];
                i = end + 1;
                let (min, max) = parse_range(inner).ok()?;
                if !inner.contains('-') && max == Some(min) && min > 0 && min < 128 {
                    expanded += min as usize * 2;
                    spent += min as usize;
                    bytes.extend(std::iter::repeat_n((0, 0), min as usize));
                } else {
                    if max.is_some_and(|m| m < min) {
                        return None;
                    }
                    end_part(&mut bytes, Some(Gap { min, max }))?;
                }
            }
            b'}' | b'-' => return None,
            a => {
                let b = *s.get(i + 1)?;
                bytes.push(plain_byte(a, b)?);
                i += 2;
                expanded += 2;
                spent += 1;
            }
        }
        if expanded > limits.max_pattern_tokens.saturating_mul(2) {
            return None;
        }
    }
    if spent > limits.max_pattern_tokens {
        return None;
    }
    end_part(&mut bytes, None)?;
    Some(BodyPattern {
        parts,
        gaps,
        left_anchor: None,
        right_anchor: None,
        start_assertion: None,
        end_assertion: None,
    })
}

/// Two characters of [`parse_plain`] as a byte `(value, mask)`, if they
/// are one.
fn plain_byte(a: u8, b: u8) -> Option<(u8, u8)> {
    let nib = |c: u8| {
        if c == b'?' {
            Some(None)
        } else {
            hexval(c).map(Some)
        }
    };
    Some(match (nib(a)?, nib(b)?) {
        (None, None) => (0, 0),
        (None, Some(lo)) => (lo, 0x0f),
        (Some(hi), None) => (hi << 4, 0xf0),
        (Some(hi), Some(lo)) => (hi << 4 | lo, 0xff),
    })
}

/// [`parse_body`] for any body: the four steps of the module's comment.
fn parse_general(hex: &str, opts: HexOptions, limits: &Limits) -> Result<BodyPattern, HexError> {
    let mut unsupported: Option<&'static str> = None;
    let text: String = if opts.braces {
        hex.chars()
            .map(|c| match c {
                '[' => '{',
                ']' => '}',
                c => c,
            })
            .collect()
    } else {
        hex.to_owned()
    };
    let raw_parts = split_parts(&text, limits, &mut unsupported)?;
    let nparts = raw_parts.len();
    let mut parts = Vec::with_capacity(nparts);
    let mut gaps = Vec::new();
    let mut left_anchor = None;
    let mut right_anchor = None;
    let mut start_assertion = None;
    let mut end_assertion = None;
    let mut budget = limits.max_pattern_tokens;
    for (i, raw) in raw_parts.into_iter().enumerate() {
        let pnum = i + 1;
        if raw.text.is_empty() {
            return malformed(format!("can't extract part {pnum} (empty part)"));
        }
        if let Some(g) = raw.gap_before {
            gaps.push(g);
        }
        let (lanchor, body, ranchor) = split_anchors(&raw.text)?;
        let mut tz = Tokenizer {
            s: body.as_bytes(),
            pos: 0,
            budget: &mut budget,
            limits,
            opts,
        };
        let items = tz.top()?;
        // Resolve (B)(L)(W).
        let mut tokens: Vec<Token> = Vec::with_capacity(items.len());
        let n_items = items.len();
        let mut lead = 0;
        while lead < n_items && matches!(items[lead], Item::Special(..)) {
            lead += 1;
        }
        let mut trail = 0;
        while trail < n_items - lead && matches!(items[n_items - 1 - trail], Item::Special(..)) {
            trail += 1;
        }
        for (k, item) in items.into_iter().enumerate() {
            match item {
                // `::w` widens what was written, not `{n}` nor the classes.
                Item::Tok(t) if opts.wide => tokens.extend(widen(vec![t])),
                Item::Tok(t) => tokens.push(t),
                Item::Fill => tokens.push(WILDCARD),
                Item::Special(c, negated) => {
                    let at_start = i == 0 && lanchor.is_none() && k < lead;
                    let at_end = i + 1 == nparts && ranchor.is_none() && k + trail >= n_items;
                    if at_start || at_end {
                        let a = match (c, negated) {
                            (b'B', false) => Assertion::Boundary,
                            (b'L', false) => Assertion::Line,
                            (_, false) => Assertion::NonAlnum,
                            (b'B', true) => Assertion::NotBoundary,
                            (b'L', true) => Assertion::NotLine,
                            (_, true) => Assertion::Alnum,
                        };
                        let slot = if at_start {
                            &mut start_assertion
                        } else {
                            &mut end_assertion
                        };
                        if slot.is_some() {
                            unsupported.get_or_insert("several-assertions");
                        }
                        *slot = Some(a);
                    } else {
                        tokens.push(mid_class(c, negated));
                    }
                }
            }
        }
        // Anchors: as fields at the pattern ends, else as alternations.
        let mut anchors_inline: [Option<(Token, u32, u32)>; 2] = [None, None];
        if let Some((tok, min, max)) = lanchor {
            match tok {
                Token::Byte { value, mask: 0xff } if i == 0 && !opts.nocase => {
                    left_anchor = Some(Anchor {
                        byte: value,
                        min,
                        max,
                    });
                }
                t => anchors_inline[0] = Some((t, min, max)),
            }
        }
        if let Some((tok, min, max)) = ranchor {
            match tok {
                Token::Byte { value, mask: 0xff } if i + 1 == nparts && !opts.nocase => {
                    right_anchor = Some(Anchor {
                        byte: value,
                        min,
                        max,
                    });
                }
                t => anchors_inline[1] = Some((t, min, max)),
            }
        }
        check_static(&tokens, pnum)?;
        if opts.nocase {
            // The letters written at the top level; those inside an
            // alternation were folded as they were read, and a nibble is
            // never folded (ClamAV: `4?4243::i` does not match `qbc`).
            tokens = tokens.into_iter().map(fold_literal).collect();
        }
        if let Some((t, min, max)) = anchors_inline[0].take() {
            let t = if opts.nocase { fold_literal(t) } else { t };
            let branches = (min..=max)
                .map(|k| {
                    let mut b = vec![t.clone()];
                    b.extend(std::iter::repeat_n(WILDCARD, k as usize));
                    b
                })
                .collect();
            tokens.insert(0, Token::Alt(Box::new(branches)));
        }
        if let Some((t, min, max)) = anchors_inline[1].take() {
            let t = if opts.nocase { fold_literal(t) } else { t };
            let branches = (min..=max)
                .map(|k| {
                    let mut b: Vec<Token> = std::iter::repeat_n(WILDCARD, k as usize).collect();
                    b.push(t.clone());
                    b
                })
                .collect();
            tokens.push(Token::Alt(Box::new(branches)));
        }
        parts.push(Part { tokens });
    }
    if opts.fullword {
        let a = if opts.wide {
            Assertion::NonAlnumWide
        } else {
            Assertion::NonAlnum
        };
        if start_assertion.is_some() || end_assertion.is_some() {
            unsupported.get_or_insert("fullword-with-assertion");
        }
        start_assertion = Some(a);
        end_assertion = Some(a);
    }
    if let Some(u) = unsupported {
        return Err(HexError::Unsupported(u));
    }
    Ok(BodyPattern {
        parts,
        gaps,
        left_anchor,
        right_anchor,
        start_assertion,
        end_assertion,
    })
}

/// True if the pattern is one plain literal string (ClamAV's Boyer-Moore
/// path, which needs at least 3 bytes in an `.ndb`).
pub(crate) fn is_plain_literal(p: &BodyPattern) -> Option<usize> {
    if p.parts.len() != 1
        || p.left_anchor.is_some()
        || p.right_anchor.is_some()
        || p.start_assertion.is_some()
        || p.end_assertion.is_some()
    {
        return None;
    }
    let part = p.parts.first()?;
    part.tokens.iter().all(is_lit).then_some(part.tokens.len())
}

/// `(B)`, `(L)` or `(W)` (negated with `!`) inside a pattern: one byte of
/// the class (or, for `(L)`, a `\r\n` too).
fn mid_class(c: u8, negated: bool) -> Token {
    let class = |f: &dyn Fn(u8) -> bool| {
        let mut s = ByteSet::EMPTY;
        for b in 0..=255u8 {
            if f(b) != negated {
                s.insert(b);
            }
        }
        Token::Set(Box::new(s))
    };
    match c {
        b'B' => class(&boundary_any),
        b'L' if !negated => Token::Alt(Box::new(vec![
            vec![lit(b'\n')],
            vec![lit(b'\r'), lit(b'\n')],
        ])),
        b'L' => class(&|b| b == b'\n'),
        _ => class(&|b: u8| !b.is_ascii_alphanumeric()),
    }
}

fn check_static(tokens: &[Token], pnum: usize) -> Result<(), HexError> {
    let mut run = 0;
    for t in tokens {
        if is_lit(t) {
            run += 1;
            if run >= 2 {
                return Ok(());
            }
        } else {
            run = 0;
        }
    }
    if tokens.len() < 2 {
        malformed(format!(
            "part {pnum} is too short (needs 2 consecutive fixed bytes)"
        ))
    } else {
        malformed(format!("part {pnum} has no 2 consecutive fixed bytes"))
    }
}

fn widen(tokens: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len() * 2);
    for t in tokens {
        match t {
            // ClamAV widens `??` and nibbles too (`41??::w` is `4100??00`).
            Token::Byte { .. } | Token::Set(_) => {
                out.push(t);
                out.push(lit(0));
            }
            Token::Alt(branches) => out.push(Token::Alt(Box::new(
                branches.into_iter().map(widen).collect(),
            ))),
            Token::NotAlt { len, branches } => out.push(Token::NotAlt {
                len: len * 2,
                branches: Box::new(
                    branches
                        .into_iter()
                        .map(|b| b.into_iter().flat_map(|x| [x, 0]).collect())
                        .collect(),
                ),
            }),
        }
    }
    out
}

/// `::i` on one literal byte: a letter matches in either case. Anything
/// else (nibbles, classes, alternations) is left as it is.
fn fold_literal(t: Token) -> Token {
    match t {
        Token::Byte { value, mask: 0xff } if value.is_ascii_alphabetic() => {
            let mut s = ByteSet::EMPTY;
            s.insert(value.to_ascii_lowercase());
            s.insert(value.to_ascii_uppercase());
            Token::Set(Box::new(s))
        }
        t => t,
    }
}

fn parse_num(s: &str) -> Result<u32, HexError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return malformed(format!("bad number {s:?} in a range"));
    }
    t.parse::<u32>()
        .or_else(|_| malformed(format!("number {t} is too large")))
}

/// Parses the inside of `{…}`: `(min, max)` with `None` = unbounded.
fn parse_range(inner: &str) -> Result<(u32, Option<u32>), HexError> {
    match inner.split_once('-') {
        None => {
            let n = parse_num(inner)?;
            Ok(if n == 0 { (0, None) } else { (n, Some(n)) })
        }
        Some((a, b)) => {
            if b.contains('-') {
                return malformed(format!("bad range {{{inner}}}"));
            }
            let min = if a.trim().is_empty() {
                0
            } else {
                parse_num(a)?
            };
            let max = if b.trim().is_empty() {
                None
            } else {
                Some(parse_num(b)?)
            };
            // ClamAV reads a maximum of 0 as "unbounded".
            Ok((min, max.filter(|&m| m != 0)))
        }
    }
}

fn split_parts(
    text: &str,
    limits: &Limits,
    unsupported: &mut Option<&'static str>,
) -> Result<Vec<RawPart>, HexError> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut gap_before = None;
    let mut depth = 0usize;
    let mut rest = text;
    let expanded_limit = limits.max_pattern_tokens.saturating_mul(2);
    let mut expanded = 0usize;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            '*' => {
                if depth > 0 {
                    return malformed("`*` is not allowed inside an alternation");
                }
                parts.push(RawPart {
                    text: std::mem::take(&mut cur),
                    gap_before,
                });
                gap_before = Some(Gap { min: 0, max: None });
            }
            '{' => {
                let Some(end) = rest.find('}') else {
                    return malformed("missing `}`");
                };
                let inner = &rest[..end];
                rest = &rest[end + 1..];
                let (min, max) = parse_range(inner)?;
                // Only the `{n}` form is inlined; `{n-n}` is a range.
                if !inner.contains('-') && max == Some(min) && min > 0 && min < 128 {
                    expanded += min as usize * 2;
                    if expanded > expanded_limit {
                        return Err(HexError::Limit(format!(
                            "pattern expands to more than {} tokens",
                            limits.max_pattern_tokens
                        )));
                    }
                    for _ in 0..min {
                        cur.push_str(FILL);
                    }
                } else if depth > 0 {
                    return malformed(format!(
                        "`{{{inner}}}` is not allowed inside an alternation"
                    ));
                } else {
                    if let Some(m) = max
                        && m < min
                    {
                        // ClamAV accepts it; it never matches.
                        unsupported.get_or_insert("gap-min-above-max");
                    }
                    parts.push(RawPart {
                        text: std::mem::take(&mut cur),
                        gap_before,
                    });
                    gap_before = Some(Gap { min, max });
                }
            }
            c => {
                expanded += 1;
                cur.push(c);
            }
        }
        if parts.len() > limits.max_pattern_tokens {
            return Err(HexError::Limit("too many parts".into()));
        }
    }
    parts.push(RawPart {
        text: cur,
        gap_before,
    });
    Ok(parts)
}

type AnchorSpec = (Token, u32, u32);

fn anchor_token(s: &str) -> Option<Token> {
    let b = s.as_bytes();
    if b.len() != 2 {
        return None;
    }
    byte_token(b[0], b[1]).ok()
}

fn parse_anchor_range(inner: &str) -> Result<(u32, u32), HexError> {
    let Some((a, b)) = inner.split_once('-') else {
        return malformed(format!("bad anchor range [{inner}]"));
    };
    let (x, y) = (parse_num(a)?, parse_num(b)?);
    if x > y {
        return malformed(format!("bad anchor range [{inner}]: min above max"));
    }
    if y > 32 {
        return malformed(format!("anchor distance {y} is above 32"));
    }
    Ok((x, y))
}

/// Splits `aa[x-y]BODY[x-y]bb` into its anchors and body.
fn split_anchors(text: &str) -> Result<(Option<AnchorSpec>, String, Option<AnchorSpec>), HexError> {
    if !text.contains('[') && !text.contains(']') {
        return Ok((None, text.to_owned(), None));
    }
    // Collect top-level bracket groups.
    let mut segs = Vec::new();
    let mut ranges = Vec::new();
    let mut rest = text;
    loop {
        match rest.find('[') {
            None => {
                if rest.contains(']') {
                    return malformed("unbalanced `]`");
                }
                segs.push(rest);
                break;
            }
            Some(open) => {
                let Some(close) = rest[open..].find(']') else {
                    return malformed("missing `]`");
                };
                if rest[..open].contains(']') {
                    return malformed("unbalanced `]`");
                }
                segs.push(&rest[..open]);
                ranges.push(parse_anchor_range(&rest[open + 1..open + close])?);
                rest = &rest[open + close + 1..];
            }
        }
    }
    let err = "`[x-y]` needs a single-byte anchor on one side";
    match (segs.as_slice(), ranges.as_slice()) {
        ([l, r], [(x, y)]) => {
            if let Some(t) = anchor_token(l) {
                Ok((Some((t, *x, *y)), (*r).to_owned(), None))
            } else if let Some(t) = anchor_token(r) {
                Ok((None, (*l).to_owned(), Some((t, *x, *y))))
            } else {
                malformed(err)
            }
        }
        ([l, m, r], [(x1, y1), (x2, y2)]) => match (anchor_token(l), anchor_token(r)) {
            (Some(a), Some(b)) => Ok((Some((a, *x1, *y1)), (*m).to_owned(), Some((b, *x2, *y2)))),
            _ => malformed(err),
        },
        _ => malformed("more than one `[x-y]` anchor on one side"),
    }
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn byte_token(a: u8, b: u8) -> Result<Token, HexError> {
    match (a, b) {
        (b'?', b'?') => Ok(WILDCARD),
        (b'?', lo) => match hexval(lo) {
            Some(v) => Ok(Token::Byte {
                value: v,
                mask: 0x0f,
            }),
            None => malformed(format!("bad hex digit {:?}", lo as char)),
        },
        (hi, b'?') => match hexval(hi) {
            Some(v) => Ok(Token::Byte {
                value: v << 4,
                mask: 0xf0,
            }),
            None => malformed(format!("bad hex digit {:?}", hi as char)),
        },
        (hi, lo) => match (hexval(hi), hexval(lo)) {
            (Some(h), Some(l)) => Ok(lit(h << 4 | l)),
            _ => malformed(format!("bad hex {:?}", String::from_utf8_lossy(&[hi, lo]))),
        },
    }
}

enum Item {
    Tok(Token),
    /// A byte of `{n}`.
    Fill,
    /// `(B)`, `(L)`, `(W)`; `true` when negated (`!(B)`).
    Special(u8, bool),
}

struct Tokenizer<'a> {
    s: &'a [u8],
    pos: usize,
    budget: &'a mut usize,
    limits: &'a Limits,
    opts: HexOptions,
}

impl Tokenizer<'_> {
    fn spend(&mut self, n: usize) -> Result<(), HexError> {
        if *self.budget < n {
            return Err(HexError::Limit(format!(
                "pattern has more than {} tokens",
                self.limits.max_pattern_tokens
            )));
        }
        *self.budget -= n;
        Ok(())
    }

    fn top(&mut self) -> Result<Vec<Item>, HexError> {
        let mut out = Vec::new();
        while self.pos < self.s.len() {
            let c = self.s[self.pos];
            match c {
                b'(' => {
                    if let Some(&[b'(', k @ (b'B' | b'L' | b'W'), b')']) =
                        self.s.get(self.pos..self.pos + 3)
                    {
                        self.pos += 3;
                        self.spend(1)?;
                        out.push(Item::Special(k, false));
                    } else {
                        let t = self.alt(false, 1)?;
                        out.push(Item::Tok(t));
                    }
                }
                b'!' => {
                    if self.s.get(self.pos + 1) != Some(&b'(') {
                        return malformed("`!` must be followed by `(`");
                    }
                    if let Some(&[b'(', k @ (b'B' | b'L' | b'W'), b')']) =
                        self.s.get(self.pos + 1..self.pos + 4)
                    {
                        self.pos += 4;
                        self.spend(1)?;
                        out.push(Item::Special(k, true));
                        continue;
                    }
                    self.pos += 1;
                    let t = self.alt(true, 1)?;
                    out.push(Item::Tok(t));
                }
                b')' | b'|' => return malformed(format!("unexpected `{}`", c as char)),
                b'~' if self.s.get(self.pos..self.pos + 2) == Some(FILL.as_bytes()) => {
                    self.pos += 2;
                    self.spend(1)?;
                    out.push(Item::Fill);
                }
                _ => {
                    let t = self.byte()?;
                    out.push(Item::Tok(t));
                }
            }
        }
        Ok(out)
    }

    fn byte(&mut self) -> Result<Token, HexError> {
        let a = self.s[self.pos];
        let Some(&b) = self.s.get(self.pos + 1) else {
            return malformed("odd number of hex digits");
        };
        if matches!(b, b'(' | b')' | b'|' | b'!') {
            return malformed("odd number of hex digits");
        }
        let t = if (a, b) == (b'~', b'~') {
            WILDCARD
        } else {
            byte_token(a, b)?
        };
        self.pos += 2;
        self.spend(1)?;
        Ok(t)
    }

    /// Parses `(…|…)` starting at `(`.
    fn alt(&mut self, negated: bool, depth: usize) -> Result<Token, HexError> {
        // `depth` counts the outermost alternation as 1; ClamAV's limit
        // counts the levels nested inside it.
        // Capped so that every compiled pattern can be decoded again.
        if depth > self.limits.max_nesting.min(200) + 1 {
            return Err(HexError::Limit(format!(
                "alternations nested deeper than {} levels inside the outermost one",
                self.limits.max_nesting
            )));
        }
        if negated && self.opts.modified {
            // ClamAV: "can't apply negation operation to generic alternate
            // strings"; with any modifier every alternation is generic.
            return malformed(
                "a negated alternation can't take modifiers (`::i`, `::a`, `::w`, `::f`)",
            );
        }
        self.pos += 1; // '('
        let mut branches: Vec<Vec<Token>> = vec![Vec::new()];
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return malformed("missing closing parenthesis");
            };
            match c {
                b')' => {
                    self.pos += 1;
                    break;
                }
                b'|' => {
                    self.pos += 1;
                    if branches.len() >= self.limits.max_alternatives {
                        return Err(HexError::Limit(format!(
                            "more than {} alternatives",
                            self.limits.max_alternatives
                        )));
                    }
                    branches.push(Vec::new());
                }
                b'!' => {
                    return malformed("an alternation can't contain a negation");
                }
                b'(' => {
                    if let Some(&[b'(', b'B' | b'L' | b'W', b')']) =
                        self.s.get(self.pos..self.pos + 3)
                    {
                        return malformed("(B), (L) and (W) are not allowed inside an alternation");
                    }
                    let t = self.alt(false, depth + 1)?;
                    if let Some(last) = branches.last_mut() {
                        last.push(t);
                    }
                }
                _ => {
                    let t = self.byte()?;
                    // `::i` folds the letters of an alternation here, before
                    // its bytes are merged into sets, so that a nibble in
                    // it stays unfolded.
                    let t = if self.opts.nocase { fold_literal(t) } else { t };
                    if let Some(last) = branches.last_mut() {
                        last.push(t);
                    }
                }
            }
        }
        classify(branches, negated)
    }
}

fn classify(branches: Vec<Vec<Token>>, negated: bool) -> Result<Token, HexError> {
    if branches.iter().all(Vec::is_empty) {
        return malformed("empty alternation block");
    }
    let all_single_lit = branches
        .iter()
        .all(|b| b.len() == 1 && b.iter().all(is_lit));
    let len0 = branches.first().map_or(0, Vec::len);
    let fixed_lit = branches
        .iter()
        .all(|b| b.len() == len0 && b.iter().all(is_lit));
    if all_single_lit {
        let mut s = ByteSet::EMPTY;
        for b in &branches {
            if let Some(Token::Byte { value, .. }) = b.first() {
                s.insert(*value);
            }
        }
        return Ok(Token::Set(Box::new(if negated { s.negate() } else { s })));
    }
    if negated {
        if !fixed_lit {
            return malformed("can't negate a generic alternation");
        }
        let bytes: Vec<Vec<u8>> = branches
            .iter()
            .map(|b| {
                b.iter()
                    .map(|t| match t {
                        Token::Byte { value, .. } => *value,
                        _ => 0,
                    })
                    .collect()
            })
            .collect();
        // (A branch is shorter than the pattern, which is far below 4 GiB.)
        return Ok(Token::NotAlt {
            len: len0 as u32,
            branches: Box::new(bytes),
        });
    }
    // A single-byte alternation with nibbles or nested single-byte sets is
    // still one byte: express it as a set.
    if branches
        .iter()
        .all(|b| b.len() == 1 && matches!(b[0], Token::Byte { .. } | Token::Set(_)))
    {
        let mut s = ByteSet::EMPTY;
        for b in &branches {
            match &b[0] {
                &Token::Byte { value, mask } => {
                    for x in 0..=255u8 {
                        if x & mask == value & mask {
                            s.insert(x);
                        }
                    }
                }
                Token::Set(set) => {
                    for x in set.iter() {
                        s.insert(x);
                    }
                }
                _ => {}
            }
        }
        return Ok(Token::Set(Box::new(s)));
    }
    Ok(Token::Alt(Box::new(branches)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<BodyPattern, HexError> {
        parse_body(s, HexOptions::default(), &Limits::default())
    }

    #[test]
    fn literals_and_gaps() {
        let b = p("6161{5}6262*6363{-4}6464{3-}6565{200}6666").unwrap();
        assert_eq!(b.parts.len(), 5);
        assert_eq!(b.parts[0].tokens.len(), 9);
        assert_eq!(
            b.gaps,
            vec![
                Gap { min: 0, max: None },
                Gap {
                    min: 0,
                    max: Some(4)
                },
                Gap { min: 3, max: None },
                Gap {
                    min: 200,
                    max: Some(200)
                }
            ]
        );
    }

    #[test]
    fn anchors() {
        let b = p("30[1-3]3334").unwrap();
        assert_eq!(
            b.left_anchor,
            Some(Anchor {
                byte: 0x30,
                min: 1,
                max: 3
            })
        );
        assert_eq!(b.parts[0].tokens, vec![lit(0x33), lit(0x34)]);
        assert!(p("6161[1-2]6262").is_err());
        assert!(p("61[1-2]62").is_err());
        assert!(p("6161[0-33]62").is_err());
        let b = p("6161*6262[1-2]63*6464").unwrap();
        assert!(matches!(b.parts[1].tokens.last(), Some(Token::Alt(v)) if v.len() == 2));
    }

    #[test]
    fn alternations() {
        let b = p("6161(62|63)6161").unwrap();
        assert!(matches!(&b.parts[0].tokens[2], Token::Set(s) if s.len() == 2));
        let b = p("6161!(6263|6465)6161").unwrap();
        assert!(matches!(b.parts[0].tokens[2], Token::NotAlt { len: 2, .. }));
        assert!(p("6161!(62|6465)6161").is_err());
        assert!(p("6161()6161").is_err());
        assert!(p("30(31|32)32").is_err());
        assert!(p("4d5a30(3132|3939)33").is_ok());
        assert!(p("6161(62|(63|64))6161").is_ok());
    }

    #[test]
    fn specials() {
        let b = p("(B)6161(W)6262(L)").unwrap();
        assert_eq!(b.start_assertion, Some(Assertion::Boundary));
        assert_eq!(b.end_assertion, Some(Assertion::Line));
        assert_eq!(b.parts[0].tokens.len(), 5);
        assert!(p("6161(X)").is_err());
    }

    #[test]
    fn wide_nocase() {
        let o = HexOptions {
            wide: true,
            nocase: true,
            fullword: true,
            modified: true,
            braces: true,
        };
        let b = parse_body("414243", o, &Limits::default()).unwrap();
        assert_eq!(b.parts[0].tokens.len(), 6);
        assert_eq!(b.start_assertion, Some(Assertion::NonAlnumWide));
    }

    #[test]
    fn nesting_limit() {
        let deep = format!("6161{}62{}", "(".repeat(40), ")".repeat(40));
        assert!(matches!(p(&deep), Err(HexError::Limit(_))));
    }

    /// The plain reader agrees with the general parser on every body it
    /// takes, and leaves to it only bodies the general parser refuses or
    /// skips.
    #[test]
    fn the_plain_reader_agrees_with_the_general_parser() {
        let tight = Limits {
            max_pattern_tokens: 24,
            ..Limits::default()
        };
        let fixed = [
            "6161",
            "61",
            "616",
            "6?",
            "?6",
            "????",
            "61??62",
            "6162*6364",
            "6162{5}6364",
            "6162{0}6364",
            "6162{-4}6364",
            "6162{3-}6364",
            "6162{4-2}6364",
            "6162{127}63",
            "6162{128}6364",
            "{3}6162",
            "6162{3}",
            "*6162",
            "6162*",
            "6162**6364",
            "{}6162",
            "6162{-}6364",
            "6162{1-2-3}6364",
            "6162}6364",
            "6162{5",
            "6162-6364",
            "a?b?c?",
            "6162{2-3}6?6?",
            "AAbb{1}ccDD",
            "6162{99999999999}6364",
        ];
        // Bodies made of the plain reader's pieces, now and then with a
        // stray character of its alphabet.
        let pieces = [
            "61", "62", "aB", "6?", "?6", "??", "00", "*", "{3}", "{0}", "{200}", "{2-5}", "{-4}",
            "{3-}", "{5-2}", "{}", "}", "{", "-", "6", "?",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let generated: Vec<String> = (0..20_000)
            .map(|_| {
                let len = 1 + (random() % 16) as usize;
                (0..len)
                    .map(|_| {
                        // Hex pairs most of the time, as in real bodies.
                        let k = random() as usize;
                        if k.is_multiple_of(3) {
                            pieces[k / 3 % pieces.len()]
                        } else {
                            pieces[k / 3 % 6]
                        }
                    })
                    .collect()
            })
            .collect();
        let mut taken = 0;
        for hex in fixed.iter().map(|s| s.to_string()).chain(generated) {
            for limits in [&Limits::default(), &tight] {
                let general = parse_general(&hex, HexOptions::default(), limits);
                match parse_plain(&hex, limits) {
                    Some(plain) => {
                        taken += 1;
                        assert_eq!(general, Ok(plain), "{hex}");
                    }
                    // (Every body here is of the plain alphabet.)
                    None => assert!(
                        general.is_err(),
                        "{hex}: the general parser reads it, the plain one leaves it"
                    ),
                }
            }
        }
        assert!(taken > 2_000, "only {taken} bodies took the plain path");
    }
}
