//! Normalized HTML, as ClamAV builds it for signatures of target type 3:
//! two streams made in one pass over the page.
//!
//! - The **page** stream: tags, attributes and text folded to lower case;
//!   comments and `<!…>` declarations dropped; a run of whitespace in text
//!   one space, and none right after a tag's `>`; whitespace inside a tag
//!   one space between attributes; attribute values with `"` quotes;
//!   character references decoded (Latin-1 bytes, larger code points as
//!   `&#xhhhh;`); inside `<script>` and `<style>` every whitespace byte
//!   dropped and `'` written `"`; a `data:` URI cut to `data`.
//! - The **text** stream: the page's text alone, folded, one space for each
//!   tag or whitespace run, and the `href` of each `<a>` and the `src` of
//!   each `<img>` as written.
//!
//! The rules, quirks included, are ClamAV's (1.4), each checked against
//! `clamscan --leave-temps` output (`docs/clamav-formats.md` §9.1 lists
//! them, and what is not reproduced). Among the quirks kept on purpose,
//! because signatures were written against them: a comment ends at its
//! first `>`; named references decode only before a `;` and by their exact
//! case; nothing decoded from a reference reaches the text stream; a byte
//! from 0x80 up reaches the text stream mangled; the page is read in
//! pieces of 8,191 bytes cut back to whitespace, and whitespace at the
//! start of a piece is lost.
//!
//! Cost: linear in the page, both streams together no larger than a few
//! times the page; no tag or name keeps more than 1,024 bytes.

use crate::html_entities::ENTITIES;

/// ClamAV reads the page in pieces of this many bytes (see [`pieces`]).
const PIECE: usize = 8191;
/// The most kept of a tag name, an attribute's name or value, or a
/// reference's name; the rest still reaches the page stream.
const NAME_MAX: usize = 1024;

/// The two normalized streams of a page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NormalizedHtml {
    /// The page, normalized (ClamAV's `nocomment.html`).
    pub page: Vec<u8>,
    /// Its text alone (ClamAV's `notags.html`).
    pub text: Vec<u8>,
}

/// Normalizes `data` (an HTML page) into both streams.
pub fn normalize(data: &[u8]) -> NormalizedHtml {
    let mut m = Machine::new(data.len());
    for piece in pieces(data) {
        m.piece(piece);
    }
    m.finish()
}

/// A byte that text copies, folded, and nothing more: printable ASCII
/// other than `<` and `&` (whitespace, control and high bytes each have
/// rules of their own).
fn plain(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && b != b'<' && b != b'&'
}

/// How many bytes from the start of `s` go on a name: up to whitespace or
/// `>`.
fn name_run(s: &[u8]) -> usize {
    s.iter()
        .position(|&b| is_ws(b) || b == b'>')
        .unwrap_or(s.len())
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The pieces ClamAV reads the page in, NUL bytes left out: at most
/// [`PIECE`] bytes each, and when a piece would end inside a word, cut back
/// to just after its last whitespace byte (not its first byte), so that the
/// word starts the next. The next piece starts as many bytes back as were
/// cut, counted in the piece: where NULs were among them it starts later,
/// and the bytes between are lost, as in ClamAV.
fn pieces(data: &[u8]) -> impl Iterator<Item = std::borrow::Cow<'_, [u8]>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let window = &data[at..(at + PIECE).min(data.len())];
        let (mut piece, used): (std::borrow::Cow<'_, [u8]>, usize) =
            if memchr::memchr(0, window).is_none() {
                (window.into(), window.len())
            } else {
                let mut kept = Vec::with_capacity(PIECE);
                let mut j = at;
                while j < data.len() && kept.len() < PIECE {
                    if data[j] != 0 {
                        kept.push(data[j]);
                    }
                    j += 1;
                }
                (kept.into(), j - at)
            };
        at += used;
        if data.get(at).is_some_and(|&b| !is_ws(b))
            && let Some(last) = piece[1.min(piece.len())..].iter().rposition(|&b| is_ws(b))
        {
            let keep = 1 + last + 1;
            at -= piece.len() - keep;
            match &mut piece {
                std::borrow::Cow::Borrowed(p) => *p = &p[..keep],
                std::borrow::Cow::Owned(p) => p.truncate(keep),
            }
        }
        Some(piece)
    })
}

/// Where a state returns to, or goes after skipping whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Text, and the contents of a script or style.
    Text,
    /// A run of whitespace in text.
    TrimWs,
    /// Whitespace skipped, then the state given.
    SkipWs(Next),
    /// A tag's name.
    Tag,
    /// An attribute's name.
    AttrName,
    /// Whitespace after an attribute's name: `=` or the next one.
    AfterName,
    /// An attribute's value.
    AttrValue,
    /// `<!…>`, to its first `>`.
    Comment,
    /// A tag complete, acted on at the next byte.
    ProcessTag,
    /// After `&`.
    CharRef(Back),
    /// `&name`.
    NamedRef(Back),
    /// `&#…`.
    NumRef(Back),
    /// Bytes from 0x80 up, in text.
    High,
    /// A `data:` URI's media type.
    DataType,
    /// A `data:` URI's payload.
    Data,
    /// After `<script language="jscript.encode">`: bytes as they are, to
    /// the Script Encoder's `#@~^`.
    JsDecode,
    /// The encoded block's length, in its first 8 bytes.
    Length,
    /// The encoded block, decoded in place and read again as script.
    Decoding,
}

/// The states [`State::SkipWs`] leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Text,
    Tag,
    AttrName,
    AfterName,
    AttrValue,
    ProcessTag,
    DataType,
    JsDecode,
}

/// Where a character reference returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Back {
    Text,
    AttrValue,
    Data,
}

impl Back {
    fn state(self) -> State {
        match self {
            Back::Text => State::Text,
            Back::AttrValue => State::AttrValue,
            Back::Data => State::Data,
        }
    }
}

/// What content the text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inside {
    Page,
    Script,
    Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// What a byte did: moved on, or is to be looked at again in the new state.
enum Step {
    Consume,
    Again,
}

struct Machine {
    out: NormalizedHtml,
    state: State,
    inside: Inside,
    /// The text stream's last byte is a separating space.
    text_space: bool,
    tag: Vec<u8>,
    name: Vec<u8>,
    /// The name is longer than it was at the last reset (ClamAV counts
    /// bytes past the cap too).
    name_len: usize,
    /// The value as written (with its opening quote, as `"`).
    value: Vec<u8>,
    quote: Quote,
    /// The first `href` and `src` of the tag: `None` when absent, `Some(None)`
    /// when present without a value.
    href: Option<Option<Vec<u8>>>,
    src: Option<Option<Vec<u8>>>,
    /// A reference's name, or a numeric reference's value.
    entity: Vec<u8>,
    number: i64,
    hex: bool,
    /// High bytes held, in text and in attribute values.
    high: u32,
    high_value: u32,
    /// In a `data:` payload: line ends are kept as they are.
    binary: bool,
    /// A `<script>` tag's attributes, written again (` name="value"`),
    /// and where its first `language` value is in them.
    script_attrs: Vec<u8>,
    language: Option<(Vec<u8>, std::ops::Range<usize>)>,
    /// Of a Script Encoder block: characters left, and how many were
    /// decoded (which picks the table).
    encoded_left: i64,
    encoded_at: usize,
    /// An ASP directive said the page's script is encoded: each piece is
    /// searched for a block (`asp_started` for the piece it came in).
    asp_encoded: bool,
    asp_started: bool,
}

impl Machine {
    fn new(size: usize) -> Self {
        Machine {
            out: NormalizedHtml {
                page: Vec::with_capacity(size),
                text: Vec::with_capacity(size / 2),
            },
            state: State::Text,
            inside: Inside::Page,
            text_space: false,
            tag: Vec::new(),
            name: Vec::new(),
            name_len: 0,
            value: Vec::new(),
            quote: Quote::None,
            href: None,
            src: None,
            entity: Vec::new(),
            number: 0,
            hex: false,
            high: 0,
            high_value: 0,
            binary: false,
            script_attrs: Vec::new(),
            language: None,
            encoded_left: 0,
            encoded_at: 0,
            asp_encoded: false,
            asp_started: false,
        }
    }

    fn piece(&mut self, mut piece: std::borrow::Cow<'_, [u8]>) {
        // Whitespace that starts a piece is lost, whatever the state.
        let start = piece.iter().position(|&b| !is_ws(b)).unwrap_or(piece.len());
        let mut i = start;
        // An encoded block the last piece ended in goes on here.
        let mut restart = None;
        let mut reread = false;
        if self.encoded_left > 0 {
            self.state = State::Decoding;
        } else if self.asp_encoded {
            restart = mark_encoded(&mut piece, i);
        }
        loop {
            if i >= piece.len() {
                // After an ASP directive, the piece is read again from its
                // encoded block on, decoded this time.
                match restart.take() {
                    Some(at) => {
                        reread = true;
                        // Read as a piece of its own: from its first byte
                        // that is not whitespace.
                        i = piece[at..]
                            .iter()
                            .position(|&b| !is_ws(b))
                            .map_or(piece.len(), |n| at + n);
                        self.state = State::Length;
                        continue;
                    }
                    None => break,
                }
            }
            match self.state {
                State::JsDecode if piece[i..].starts_with(b"#@~^") => {
                    i += 4;
                    self.state = State::Length;
                    continue;
                }
                State::Length => {
                    // The length must be in this piece, or nothing is decoded.
                    if let Some(head) = piece.get(i..i + 8) {
                        self.encoded_left = encoded_length(head);
                        self.encoded_at = 0;
                        i += 8;
                        self.state = State::Decoding;
                    } else {
                        self.state = State::Text;
                    }
                    continue;
                }
                State::Decoding => {
                    self.decode(piece.to_mut(), i);
                    self.state = State::Text;
                    continue;
                }
                // Most of a page: a run of text with nothing to decide in
                // it, taken whole (as the byte-by-byte rules would).
                State::Text => {
                    let run = piece[i..]
                        .iter()
                        .position(|&b| !plain(b))
                        .unwrap_or(piece.len() - i);
                    if run > 0 {
                        self.plain_run(&piece[i..i + run]);
                        i += run;
                        continue;
                    }
                }
                // The rest of a tag's or an attribute's name.
                State::Tag if !self.tag.is_empty() && self.inside == Inside::Page => {
                    let run = name_run(&piece[i..]);
                    if run > 0 {
                        let bytes = &piece[i..i + run];
                        let start = self.out.page.len();
                        self.out
                            .page
                            .extend(bytes.iter().map(u8::to_ascii_lowercase));
                        let room = NAME_MAX.saturating_sub(self.tag.len()).min(run);
                        self.tag
                            .extend_from_slice(&self.out.page[start..start + room]);
                        i += run;
                        continue;
                    }
                }
                State::AttrName if self.name_len > 0 => {
                    let run = name_run(&piece[i..]);
                    let run = piece[i..i + run]
                        .iter()
                        .position(|&b| b == b'=')
                        .unwrap_or(run);
                    if run > 0 {
                        let bytes = &piece[i..i + run];
                        let start = self.out.page.len();
                        self.out
                            .page
                            .extend(bytes.iter().map(u8::to_ascii_lowercase));
                        let room = NAME_MAX.saturating_sub(self.name.len()).min(run);
                        self.name
                            .extend_from_slice(&self.out.page[start..start + room]);
                        self.name_len += run;
                        i += run;
                        continue;
                    }
                }
                // A `data:` payload gives nothing to either stream up to
                // its end, a reference or an escape.
                State::Data => {
                    let run = piece[i..]
                        .iter()
                        .position(|&b| is_ws(b) || matches!(b, b'\'' | b'"' | b'>' | b'&' | b'%'))
                        .unwrap_or(piece.len() - i);
                    if run > 0 {
                        i += run;
                        continue;
                    }
                }
                // A comment in the page gives nothing up to its `>`.
                State::Comment if self.inside == Inside::Page => {
                    i = memchr::memchr(b'>', &piece[i..]).map_or(piece.len(), |n| i + n);
                    if i == piece.len() {
                        continue;
                    }
                }
                // The middle of a long value: ordinary bytes, taken whole,
                // once it can no longer be a `data:` URI and no high bytes
                // are held.
                State::AttrValue if self.value.len() > 6 && self.high_value == 0 => {
                    let run = piece[i..]
                        .iter()
                        .position(|&b| !plain(b) || matches!(b, b'\'' | b'"' | b'>'))
                        .unwrap_or(piece.len() - i);
                    if run > 0 {
                        let bytes = &piece[i..i + run];
                        self.out
                            .page
                            .extend(bytes.iter().map(u8::to_ascii_lowercase));
                        self.value_push(bytes);
                        i += run;
                        continue;
                    }
                }
                _ => {}
            }
            let mut b = piece[i];
            if !self.binary {
                if b == b'\r' {
                    i += 1;
                    continue;
                }
                if b == b'\n' {
                    b = b' ';
                }
            }
            // A `%xx` escape in a `data:` payload takes the bytes after it.
            if b == b'%' && self.state == State::Data {
                i += 1;
                if let Some(&h) = piece.get(i) {
                    i += 1;
                    if h.is_ascii_hexdigit() && i < piece.len() {
                        i += 1;
                    }
                }
                continue;
            }
            match self.step(b) {
                Step::Consume => i += 1,
                Step::Again => {}
            }
            // A piece is read again once at the most, so that directive
            // after directive cannot make it quadratic.
            if self.asp_started
                && std::mem::take(&mut self.asp_started)
                && !reread
                && let Some(at) = mark_encoded(&mut piece, i)
            {
                restart = Some(at);
            }
        }
    }

    /// A run of [`plain`] bytes in text: folded into the page stream, and
    /// into the text stream when they are the page's own text (`'` is
    /// written `"` in a script or style).
    fn plain_run(&mut self, run: &[u8]) {
        let start = self.out.page.len();
        self.out.page.extend(run.iter().map(u8::to_ascii_lowercase));
        if self.inside == Inside::Page {
            self.out.text.extend_from_slice(&self.out.page[start..]);
            self.text_space = false;
        } else {
            for b in &mut self.out.page[start..] {
                if *b == b'\'' {
                    *b = b'"';
                }
            }
        }
    }

    /// A space in the text stream, unless one ends it; only for the page's
    /// own text.
    fn text_sep(&mut self) {
        if self.inside == Inside::Page && !self.text_space {
            self.out.text.push(b' ');
            self.text_space = true;
        }
    }

    fn step(&mut self, b: u8) -> Step {
        let page = &mut self.out.page;
        match self.state {
            State::Text => {
                if b == b'<' {
                    page.push(b'<');
                    self.text_sep();
                    self.tag.clear();
                    self.state = State::SkipWs(Next::Tag);
                } else if is_ws(b) {
                    self.text_sep();
                    self.state = State::TrimWs;
                    return Step::Again;
                } else if b == b'&' {
                    self.text_sep();
                    self.state = State::CharRef(Back::Text);
                } else if b >= 0x80 {
                    self.high = u32::from(b);
                    self.state = State::High;
                } else {
                    let mut c = b.to_ascii_lowercase();
                    if self.inside != Inside::Page && c == b'\'' {
                        c = b'"';
                    }
                    page.push(c);
                    if self.inside == Inside::Page {
                        if b < 0x20 {
                            self.text_sep();
                        } else {
                            self.out.text.push(c);
                            self.text_space = false;
                        }
                    }
                }
            }
            State::TrimWs => {
                if is_ws(b) {
                    return Step::Consume;
                }
                if self.inside == Inside::Page {
                    page.push(b' ');
                }
                self.state = State::Text;
                return Step::Again;
            }
            State::SkipWs(next) => {
                if is_ws(b) {
                    return Step::Consume;
                }
                self.state = match next {
                    Next::Text => State::Text,
                    Next::Tag => State::Tag,
                    Next::AttrName => State::AttrName,
                    Next::AfterName => State::AfterName,
                    Next::AttrValue => State::AttrValue,
                    Next::ProcessTag => State::ProcessTag,
                    Next::DataType => State::DataType,
                    Next::JsDecode => State::JsDecode,
                };
                return Step::Again;
            }
            State::Tag => {
                let first = self.tag.is_empty();
                if first && b == b'!' {
                    if self.inside == Inside::Page {
                        page.pop();
                    } else {
                        page.push(b'!');
                    }
                    self.state = State::Comment;
                } else if b == b'>' {
                    page.push(b'>');
                    self.state = State::SkipWs(Next::ProcessTag);
                } else if is_ws(b) {
                    self.state = if self.inside == Inside::Page {
                        self.name.clear();
                        self.name_len = 0;
                        State::SkipWs(Next::AttrName)
                    } else {
                        State::SkipWs(Next::ProcessTag)
                    };
                    return Step::Again;
                } else {
                    let c = b.to_ascii_lowercase();
                    page.push(c);
                    if self.tag.len() < NAME_MAX {
                        self.tag.push(c);
                    }
                    // Inside a script or style only end tags are tags.
                    if self.inside != Inside::Page && first && b != b'/' {
                        self.state = State::Text;
                    }
                }
            }
            State::AttrName => {
                if b == b'=' {
                    page.push(b'=');
                    self.value_start();
                    self.state = State::SkipWs(Next::AttrValue);
                } else if is_ws(b) {
                    self.state = State::SkipWs(Next::AfterName);
                } else if b == b'>' {
                    page.push(b'>');
                    if self.name_len > 0 {
                        self.attribute(None);
                    }
                    self.state = State::ProcessTag;
                } else {
                    if self.name_len == 0 {
                        page.push(b' ');
                    }
                    let c = b.to_ascii_lowercase();
                    page.push(c);
                    if self.name.len() < NAME_MAX {
                        self.name.push(c);
                    }
                    self.name_len += 1;
                }
            }
            State::AfterName => {
                if b == b'=' {
                    page.push(b'=');
                    self.value_start();
                    self.state = State::SkipWs(Next::AttrValue);
                } else {
                    if self.name_len > 0 {
                        self.attribute(None);
                    }
                    self.name.clear();
                    self.name_len = 0;
                    self.state = State::AttrName;
                    return Step::Again;
                }
            }
            State::AttrValue => return self.attr_value(b),
            State::Comment => {
                if b == b'>' {
                    if self.inside != Inside::Page {
                        page.push(b'>');
                    }
                    self.state = State::SkipWs(Next::Text);
                } else if self.inside != Inside::Page && !is_ws(b) {
                    page.push(match b.to_ascii_lowercase() {
                        b'\'' => b'"',
                        c => c,
                    });
                }
            }
            State::ProcessTag => {
                self.state = State::SkipWs(if self.process_tag() {
                    Next::JsDecode
                } else {
                    Next::Text
                });
                return Step::Again;
            }
            State::CharRef(back) => {
                self.entity.clear();
                if b == b'#' {
                    self.number = 0;
                    self.hex = false;
                    self.state = State::NumRef(back);
                } else {
                    self.state = State::NamedRef(back);
                    return Step::Again;
                }
            }
            State::NamedRef(back) => {
                if (b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
                    && self.entity.len() < NAME_MAX
                {
                    self.entity.push(b);
                    return Step::Consume;
                }
                let decoded = (b == b';').then(|| lookup(&self.entity)).flatten();
                let mut bytes = Vec::new();
                match decoded {
                    Some(cp) => code_point(u32::from(cp), &mut bytes),
                    None => {
                        bytes.push(b'&');
                        bytes.extend(self.entity.iter().map(u8::to_ascii_lowercase));
                        if b == b';' {
                            bytes.push(b';');
                        }
                    }
                }
                page.extend_from_slice(&bytes);
                if back == Back::AttrValue {
                    self.value_push(&bytes);
                }
                self.state = back.state();
                if b != b';' {
                    return Step::Again;
                }
            }
            State::NumRef(back) => {
                if (b == b'x' || b == b'X') && self.number == 0 {
                    self.hex = true;
                    return Step::Consume;
                }
                let digit = if self.hex {
                    (b as char).to_digit(16)
                } else {
                    (b as char).to_digit(10)
                };
                if let Some(d) = digit {
                    let d = i64::from(d);
                    // Past 63 bits the value so far ends the reference.
                    let grown = if self.hex && self.number < i64::MAX / 16 {
                        Some(self.number * 16)
                    } else if self.number < i64::MAX / 10 {
                        Some(self.number * 10)
                    } else {
                        None
                    };
                    match grown {
                        Some(n) if n <= i64::MAX - d => self.number = n + d,
                        Some(n) => {
                            page.push(n as u8);
                            self.state = back.state();
                        }
                        None => {
                            page.push(self.number as u8);
                            self.state = back.state();
                        }
                    }
                    return Step::Consume;
                }
                self.state = back.state();
                if b == b';' {
                    if back == Back::AttrValue {
                        let raw = self.number as u8;
                        self.value_push(&[raw]);
                    }
                    if self.number < 0x80 {
                        self.out.page.push((self.number as u8).to_ascii_lowercase());
                    } else {
                        code_point((self.number % 0x10000) as u32, &mut self.out.page);
                    }
                    return Step::Consume;
                }
                // Without its `;`, the value's low byte as it is.
                page.push(self.number as u8);
                return Step::Again;
            }
            State::High => {
                if b < 0x80 || self.high >= 0x10000 {
                    if self.high == 0xa1 && matches!(b, b'C' | b'D' | b'O') {
                        page.push(b'.');
                        self.out.text.push(b'.');
                        self.high = 0;
                        return Step::Consume;
                    }
                    let high = std::mem::take(&mut self.high);
                    self.flush_high_text(high);
                    self.state = State::Text;
                    return Step::Again;
                }
                self.high = (self.high << 8) | u32::from(b);
            }
            State::DataType => return self.data_type(b),
            State::JsDecode => page.push(b.to_ascii_lowercase()),
            // Taken in `piece`.
            State::Length | State::Decoding => {}
            State::Data => {
                let close = match self.quote {
                    Quote::Single => b == b'\'',
                    Quote::Double => b == b'"',
                    Quote::None => is_ws(b) || b == b'>',
                };
                if close {
                    // The URI ends; the attribute's name is not reset, so
                    // what follows is read as more of it.
                    self.binary = false;
                    self.quote = Quote::None;
                    self.state = State::SkipWs(Next::AttrName);
                } else if b == b'&' {
                    self.state = State::CharRef(Back::Data);
                }
            }
        }
        Step::Consume
    }

    fn value_start(&mut self) {
        self.value.clear();
        self.quote = Quote::None;
    }

    fn value_push(&mut self, bytes: &[u8]) {
        let room = NAME_MAX.saturating_sub(self.value.len());
        self.value
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn attr_value(&mut self, b: u8) -> Step {
        // A value that begins `data:` is an RFC 2397 URI.
        if self.value == b"data:" || self.value == b"\"data:" {
            self.out.page.pop();
            if self.quote != Quote::None {
                self.out.page.push(b'"');
            }
            self.value.clear();
            self.state = State::DataType;
            return Step::Again;
        }
        let quote = match b {
            b'\'' => Some(Quote::Single),
            b'"' => Some(Quote::Double),
            _ => None,
        };
        if b == b'&' {
            self.state = State::CharRef(Back::AttrValue);
        } else if let Some(q) = quote {
            self.out.page.push(b'"');
            if self.value.is_empty() {
                self.quote = q;
                self.value_push(b"\"");
            } else if self.quote == q {
                self.value_push(b"\"");
                self.value_attribute();
                self.name.clear();
                self.name_len = 0;
                self.state = State::SkipWs(Next::AttrName);
            } else {
                self.value_push(b"\"");
            }
        } else if is_ws(b) || b == b'>' {
            if self.quote == Quote::None {
                self.value_attribute();
                self.name.clear();
                self.name_len = 0;
                self.state = State::SkipWs(Next::AttrName);
                return Step::Again;
            }
            // The first space or `>` in a quoted value ends its quoting.
            self.out.page.push(b);
            self.value_push(if b == b'>' { b">" } else { b" " });
            self.quote = Quote::None;
            self.state = State::SkipWs(Next::AttrValue);
        } else {
            if self.high_value != 0 && (b < 0x80 || self.high_value >= 0x10000) {
                let high = std::mem::take(&mut self.high_value);
                if high == 0xa1 && matches!(b, b'C' | b'D' | b'O') {
                    self.out.page.push(b'.');
                    self.value_push(b".");
                    return Step::Consume;
                }
                let (held, n) = high_bytes(high);
                self.out.page.extend_from_slice(&held[..n]);
                self.value_push(&held[..n]);
            }
            if b >= 0x80 {
                self.high_value = (self.high_value << 8) | u32::from(b);
            } else {
                self.out.page.push(b.to_ascii_lowercase());
                self.value_push(&[b]);
            }
        }
        Step::Consume
    }

    fn data_type(&mut self, b: u8) -> Step {
        let closing = match self.quote {
            Quote::Single => b == b'\'',
            Quote::Double => b == b'"',
            Quote::None => false,
        };
        if closing {
            self.name.clear();
            self.name_len = 0;
            self.state = State::SkipWs(Next::AttrName);
        } else if is_ws(b) || b == b'>' {
            if self.quote == Quote::None {
                self.name.clear();
                self.name_len = 0;
                self.state = State::SkipWs(Next::AttrName);
                return Step::Again;
            }
            self.quote = Quote::None;
            self.state = State::SkipWs(Next::DataType);
        } else if b == b',' {
            self.binary = true;
            self.state = State::Data;
        }
        Step::Consume
    }

    /// An attribute of the tag: the first `href` and `src`, and a
    /// script's, matter.
    fn attribute(&mut self, value: Option<&[u8]>) {
        if self.tag == b"script" || self.tag == b"%@" {
            let value = value.map(stored);
            self.script_attrs.push(b' ');
            self.script_attrs.extend_from_slice(&self.name);
            if let Some(v) = value {
                self.script_attrs.extend_from_slice(b"=\"");
                let at = self.script_attrs.len();
                self.script_attrs
                    .extend(v.iter().map(u8::to_ascii_lowercase));
                if self.name == b"language" && self.language.is_none() {
                    self.language = Some((v, at..self.script_attrs.len()));
                }
                self.script_attrs.push(b'"');
            }
        }
        let slot = match self.name.as_slice() {
            b"href" => &mut self.href,
            b"src" => &mut self.src,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value.map(stored));
        }
    }

    /// The attribute whose value was just read.
    fn value_attribute(&mut self) {
        let value = std::mem::take(&mut self.value);
        self.attribute(Some(&value));
        self.value = value;
    }

    /// Acts on the tag just read; true when a Script Encoder block may
    /// follow.
    fn process_tag(&mut self) -> bool {
        let (href, src) = (self.href.take(), self.src.take());
        let attrs = std::mem::take(&mut self.script_attrs);
        let language = self.language.take();
        let url = match self.tag.as_slice() {
            b"/script" => {
                self.inside = Inside::Page;
                None
            }
            b"/style" if self.inside == Inside::Style => {
                self.inside = Inside::Page;
                None
            }
            b"script" => {
                self.inside = Inside::Script;
                // An encoded script's tag is written again, as plain script.
                let plain = language.and_then(|(value, at)| {
                    let plain: &[u8] = if value.eq_ignore_ascii_case(b"jscript.encode") {
                        b"javascript"
                    } else if value.eq_ignore_ascii_case(b"vbscript.encode") {
                        b"vbscript"
                    } else {
                        return None;
                    };
                    Some((plain, at))
                });
                if let Some((plain, at)) = plain {
                    let page = &mut self.out.page;
                    page.extend_from_slice(b"<script");
                    page.extend_from_slice(&attrs[..at.start]);
                    page.extend_from_slice(plain);
                    page.extend_from_slice(&attrs[at.end..]);
                    page.push(b'>');
                    return true;
                }
                None
            }
            b"style" => {
                self.inside = Inside::Style;
                None
            }
            b"%@" => {
                if language.is_some_and(|(v, _)| {
                    v.eq_ignore_ascii_case(b"jscript.encode")
                        || v.eq_ignore_ascii_case(b"vbscript.encode")
                }) {
                    self.asp_encoded = true;
                    self.asp_started = true;
                }
                None
            }
            b"a" => href.flatten(),
            b"img" => src.flatten(),
            _ => None,
        };
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            self.out.text.extend_from_slice(&url);
            self.out.text.push(b' ');
            self.text_space = true;
        }
        false
    }

    /// Decodes the Script Encoder block at `at` in `piece`, in place, to
    /// its end or the piece's: the decoded script replaces the encoded one
    /// (and its 12-byte checksum and end mark, when the piece holds them),
    /// to be read as script.
    fn decode(&mut self, piece: &mut Vec<u8>, at: usize) {
        let mut out = Vec::new();
        let mut j = at;
        while self.encoded_left > 0 && j < piece.len() {
            let c = piece[j];
            j += 1;
            match c {
                b'\n' | b'\r' => {}
                0x80.. => {
                    // A double-byte character, as it is.
                    out.push(c);
                    if let Some(&d) = piece.get(j) {
                        out.push(d);
                        j += 1;
                    }
                    self.encoded_left -= 1;
                }
                _ => {
                    let table = SCRIPT_TABLE_PICK[self.encoded_at % 64];
                    let d = SCRIPT_TABLES[usize::from(table)][usize::from(c)];
                    self.encoded_at += 1;
                    if d == 0xff {
                        // `@` and the next byte stand for one character.
                        let e = piece.get(j).copied();
                        if e.is_some() {
                            j += 1;
                        }
                        out.push(match e {
                            Some(b'!') => b'<',
                            Some(b'#') => b'\r',
                            Some(b'$') => b'@',
                            Some(b'&') => b'\n',
                            Some(b'*') => b'>',
                            _ => 0xff,
                        });
                        self.encoded_left -= 2;
                    } else {
                        out.push(d);
                        self.encoded_left -= 1;
                    }
                }
            }
        }
        if self.encoded_left <= 0 {
            self.encoded_left = 0;
            // The checksum, its padding and `^#~@`, unchecked.
            if piece.len() - j >= 12 {
                j += 12;
            }
        }
        piece.splice(at..j, out);
    }

    /// High bytes held in text, given out: the page gets them as they are;
    /// the text stream a mangled copy (ClamAV's), whatever the content.
    fn flush_high_text(&mut self, high: u32) {
        let (held, n) = high_bytes(high);
        self.out.page.extend_from_slice(&held[..n]);
        if is_full_stop(high) {
            self.out.text.push(b'.');
            return;
        }
        match held[..n] {
            [_] => self.out.text.push(0),
            [a, _] => self.out.text.extend_from_slice(&[a, a]),
            [a, b, _] => self.out.text.extend_from_slice(&[a, b, b]),
            _ => {}
        }
    }

    fn finish(mut self) -> NormalizedHtml {
        // Only a named reference left open is given out.
        if let State::NamedRef(_) = self.state {
            match lookup(&self.entity) {
                Some(cp) => code_point(u32::from(cp), &mut self.out.page),
                None => {
                    self.out.page.push(b'&');
                    self.out
                        .page
                        .extend(self.entity.iter().map(u8::to_ascii_lowercase));
                }
            }
        }
        self.out
    }
}

/// After an ASP directive for encoded script: the first `#@~^` in `piece`
/// from `from` is made `//~^` (read as text the first time), and where its
/// block starts is returned.
fn mark_encoded(piece: &mut std::borrow::Cow<'_, [u8]>, from: usize) -> Option<usize> {
    let at = from + memchr::memmem::find(piece.get(from..)?, b"#@~^")?;
    piece.to_mut()[at..at + 2].copy_from_slice(b"//");
    Some(at + 4)
}

/// Which of [`SCRIPT_TABLES`] decodes the Script Encoder's n-th character
/// (n modulo 64).
const SCRIPT_TABLE_PICK: [u8; 64] = [
    0, 2, 1, 0, 2, 1, 2, 1, 1, 2, 1, 2, 0, 1, 2, 1, 0, 1, 2, 1, 0, 0, 2, 1, 1, 2, 0, 1, 2, 1, 1, 2,
    0, 0, 1, 2, 1, 2, 1, 0, 1, 0, 0, 2, 1, 0, 1, 2, 0, 1, 2, 1, 0, 0, 2, 1, 1, 0, 0, 2, 1, 0, 1, 2,
];

/// The Script Encoder's three substitutions: the byte each encoded byte
/// below 0x80 stands for; 0xff marks `@`, whose next byte says which
/// character it is.
const SCRIPT_TABLES: [[u8; 128]; 3] = [TABLE_0, TABLE_1, TABLE_2];
const TABLE_0: [u8; 128] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x57, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x2e, 0x47, 0x7a, 0x56, 0x42, 0x6a, 0x2f, 0x26, 0x49, 0x41, 0x34, 0x32, 0x5b, 0x76, 0x72, 0x43,
    0x38, 0x39, 0x70, 0x45, 0x68, 0x71, 0x4f, 0x09, 0x62, 0x44, 0x23, 0x75, 0x3c, 0x7e, 0x3e, 0x5e,
    0xff, 0x77, 0x4a, 0x61, 0x5d, 0x22, 0x4b, 0x6f, 0x4e, 0x3b, 0x4c, 0x50, 0x67, 0x2a, 0x7d, 0x74,
    0x54, 0x2b, 0x2d, 0x2c, 0x30, 0x6e, 0x6b, 0x66, 0x35, 0x25, 0x21, 0x64, 0x4d, 0x52, 0x63, 0x3f,
    0x7b, 0x78, 0x29, 0x28, 0x73, 0x59, 0x33, 0x7f, 0x6d, 0x55, 0x53, 0x7c, 0x3a, 0x5f, 0x65, 0x46,
    0x58, 0x31, 0x69, 0x6c, 0x5a, 0x48, 0x27, 0x5c, 0x3d, 0x24, 0x79, 0x37, 0x60, 0x51, 0x20, 0x36,
];
const TABLE_1: [u8; 128] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x7b, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x32, 0x30, 0x21, 0x29, 0x5b, 0x38, 0x33, 0x3d, 0x58, 0x3a, 0x35, 0x65, 0x39, 0x5c, 0x56, 0x73,
    0x66, 0x4e, 0x45, 0x6b, 0x62, 0x59, 0x78, 0x5e, 0x7d, 0x4a, 0x6d, 0x71, 0x3c, 0x60, 0x3e, 0x53,
    0xff, 0x42, 0x27, 0x48, 0x72, 0x75, 0x31, 0x37, 0x4d, 0x52, 0x22, 0x54, 0x6a, 0x47, 0x64, 0x2d,
    0x20, 0x7f, 0x2e, 0x4c, 0x5d, 0x7e, 0x6c, 0x6f, 0x79, 0x74, 0x43, 0x26, 0x76, 0x25, 0x24, 0x2b,
    0x28, 0x23, 0x41, 0x34, 0x09, 0x2a, 0x44, 0x3f, 0x77, 0x3b, 0x55, 0x69, 0x61, 0x63, 0x50, 0x67,
    0x51, 0x49, 0x4f, 0x46, 0x68, 0x7c, 0x36, 0x70, 0x6e, 0x7a, 0x2f, 0x5f, 0x4b, 0x5a, 0x2c, 0x57,
];
const TABLE_2: [u8; 128] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x6e, 0x0a, 0x0b, 0x0c, 0x06, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x2d, 0x75, 0x52, 0x60, 0x71, 0x5e, 0x49, 0x5c, 0x62, 0x7d, 0x29, 0x36, 0x20, 0x7c, 0x7a, 0x7f,
    0x6b, 0x63, 0x33, 0x2b, 0x68, 0x51, 0x66, 0x76, 0x31, 0x64, 0x54, 0x43, 0x3c, 0x3a, 0x3e, 0x7e,
    0xff, 0x45, 0x2c, 0x2a, 0x74, 0x27, 0x37, 0x44, 0x79, 0x59, 0x2f, 0x6f, 0x26, 0x72, 0x6a, 0x39,
    0x7b, 0x3f, 0x38, 0x77, 0x67, 0x53, 0x47, 0x34, 0x78, 0x5d, 0x30, 0x23, 0x5a, 0x5b, 0x6c, 0x48,
    0x55, 0x70, 0x69, 0x2e, 0x4c, 0x21, 0x24, 0x4e, 0x50, 0x09, 0x56, 0x73, 0x35, 0x61, 0x4b, 0x58,
    0x3b, 0x57, 0x22, 0x6d, 0x4d, 0x25, 0x28, 0x46, 0x4a, 0x32, 0x41, 0x3d, 0x5f, 0x4f, 0x42, 0x65,
];

/// A Script Encoder block's length, from the six base-64 characters that
/// start its 8-byte head (four bytes, little-endian). A character outside
/// base 64 counts as ClamAV counts it.
fn encoded_length(head: &[u8]) -> i64 {
    let v = |c: u8| -> i32 {
        match c {
            b'A'..=b'Z' => i32::from(c - b'A'),
            b'a'..=b'z' => i32::from(c - b'a') + 26,
            b'0'..=b'9' => i32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => -1,
        }
    };
    let b: Vec<i32> = head[..6].iter().map(|&c| v(c)).collect();
    let pos = |x: i32| x.max(0);
    let byte0 = pos(b[0]) * 4 + (b[1] >> 4);
    let byte1 = (b[1] & 15) * 16 + pos(b[2]) / 4;
    let byte2 = (b[2] & 3) * 64 + pos(b[3]);
    let byte3 = pos(b[4]) * 4 + pos(b[5]) / 16;
    let n = (byte0 as u32)
        .wrapping_add((byte1 as u32) << 8)
        .wrapping_add((byte2 as u32) << 16)
        .wrapping_add((byte3 as u32) << 24);
    i64::from(n)
}

/// A value as the tag keeps it: to its first NUL; a quoted one without its
/// first byte (the quote) and its last (whatever it is).
fn stored(value: &[u8]) -> Vec<u8> {
    let mut value = &value[..memchr::memchr(0, value).unwrap_or(value.len())];
    if let Some(rest) = value.strip_prefix(b"\"") {
        value = rest.split_last().map_or(rest, |(_, v)| v);
    }
    value.to_vec()
}

/// The UTF-8 of the full stops U+3002, U+FF0E and U+FE52.
fn is_full_stop(high: u32) -> bool {
    matches!(high, 0xe3_80_82 | 0xef_bc_8e | 0xef_b9_92)
}

/// The 1 to 3 bytes held in `high`, first first (a value 0 is one NUL),
/// and how many there are.
fn high_bytes(high: u32) -> ([u8; 3], usize) {
    if is_full_stop(high) {
        ([b'.', 0, 0], 1)
    } else if high <= 0xff {
        ([high as u8, 0, 0], 1)
    } else if high <= 0xffff {
        ([(high >> 8) as u8, high as u8, 0], 2)
    } else {
        ([(high >> 16) as u8, (high >> 8) as u8, high as u8], 3)
    }
}

/// A named reference's code point.
fn lookup(name: &[u8]) -> Option<u16> {
    ENTITIES
        .binary_search_by(|(n, _)| n.as_bytes().cmp(name))
        .ok()
        .map(|i| ENTITIES[i].1)
}

/// A decoded code point as the page gets it: one Latin-1 byte below 0xff,
/// `.` for the full stops, `&#xhhhh;` otherwise, nothing for 0.
fn code_point(cp: u32, out: &mut Vec<u8>) {
    match cp {
        0 => {}
        1..=0xfe => out.push(cp as u8),
        0x3002 | 0xff0e | 0xfe52 => out.push(b'.'),
        _ => out.extend_from_slice(format!("&#x{cp:04x};").as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(page: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let n = normalize(page);
        (n.page, n.text)
    }

    /// Each case's expected output is what `clamscan` 1.4 wrote for it
    /// (`--leave-temps`, `nocomment.html` and `notags.html`).
    #[test]
    fn as_clamscan_normalizes_pages() {
        let page = b"<HTML><Head><TITLE>My   Page</TITLE></Head>\n\
<BODY BGCOLOR=\"#FFFFFF\" onLoad='Foo()'>\n\
<!-- a comment with EVIL inside -->\n\
<P>Hello   &amp; WORLD &lt;x&gt; &#65;&#x42; &nbsp; caf&eacute; %41%42</P>\n\
<a href=\"http://Ex.com/%41B?q=1&amp;r=2\">Link  Text</a>\n\
<script language=\"javascript\">\n\
  var X = \"Evil&#65;Code\";   // comment\n\
  document.write('<b>hi</b>');\n\
</script>\n\
<SCRIPT>function F ( a , b ) { return a+b; }</SCRIPT>\n\
<img src=\"data:text/plain;base64,SGVsbG8=\">\n\
</BODY></HTML>\n";
        let (o, t) = norm(page);
        assert_eq!(
            o,
            b"<html><head><title>my page</title></head><body bgcolor=\"#ffffff\" onload=\"foo()\">\
<p>hello & world <x> ab \xa0 caf\xe9 %41%42</p><a href=\"http://ex.com/%41b?q=1&r=2\">link text</a>\
<script language=\"javascript\">varx=\"evilacode\";//commentdocument.write(\"<b>hi</b>\");</script>\
<script>functionf(a,b){returna+b;}</script><img src=\"data\"></body></html>"
                .as_slice(),
            "{}",
            String::from_utf8_lossy(&o)
        );
        assert_eq!(
            t,
            b" my page hello world x caf %41%42 http://Ex.com/%41B?q=1&r=2 link text ".as_slice(),
            "{}",
            String::from_utf8_lossy(&t)
        );
    }

    #[test]
    fn tags_comments_and_references() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (
                b"<html><p>A  B\n\n C</p>  <b> x </b>\n<i>y</i>\t<u>z</u>end &amp;x &AMP; &foo; \
&#x263a; &#9786; &#65 &#x41 Q&lt\n<!-- c1 --><!--c2--!> <!DOCTYPE html> <?php x ?> </p >< p>tt</ P  >",
                b"<html><p>a b c</p><b>x </b><i>y</i><u>z</u>end &x &amp; &foo; &#x263a; &#x263a; A A \
q&lt <?php x ?></p><p>tt</ p>",
                b" a b c x y z end x q tt ",
            ),
            (
                b"<html><body><a HREF=Foo.HTML TITLE = \"A  B\" x='q\"q' y=\"p'p\" checked z=&#65;b>t</a>\n\
<img SRC=\"a.gif\" alt=\"%41\">\n<script>\n  if (a < b && c > d) { x = \"A  B\"; }\n  y = 'it\"s'; // Cmt\n\
  /* blk */ z=1\n</SCRIPT >\n<style>  P { Color : Red }  </style>\n<textarea>  Keep   Me </textarea></body>",
                b"<html><body><a href=foo.html title=\"a b\" x=\"q\"q\" y=\"p\"p\" checked z=ab>t</a>\
<img src=\"a.gif\" alt=\"%41\"><script>if(a<b&&c>d){x=\"ab\";}y=\"it\"s\";//cmt/*blk*/z=1</script> \
<style>p{color:red}</style><textarea>keep me </textarea></body>",
                b" Foo.HTML t a.gif > keep me ",
            ),
            (
                b"<html><body><a href=\"a&#72;b&#x2F;c&#233;d&#8364;e&Eacute;f&quot;g&#65 h\">x</a></body></html>",
                b"<html><body><a href=\"ahb/c\xe9d&#x20ac;e\xc9f\"gA h\">x</a></body></html>",
                b" aHb/c\xe9d\xace\xc9f\"g h x ",
            ),
            (
                b"<html><body>caf\xc3\xa9 x \xe2\x82\xac y p\xa1Cq</body></html>",
                b"<html><body>caf\xc3\xa9 x \xe2\x82\xac y p.\x00q</body></html>",
                b" caf\xc3\xc3 x \xe2\x82\x82y p.\x00q ",
            ),
            (
                b"<html><body><img src=\"data:x\" alt=\"y\">after<a href=\"data:\">C</a> tail &amp\
<img src=\"data:text/plain;base64,SGVsbG8=\" alt=\"x\">after",
                b"<html><body><img src=\"data\" alt=\"y\">after<a href=\"data\">c</a>tail &amp\
<img src=\"data\"alt=\"x\">after",
                b" after c tail after",
            ),
        ];
        for (input, page, text) in cases {
            let (o, t) = norm(input);
            assert_eq!(
                (o.as_slice(), t.as_slice()),
                (*page, *text),
                "\n{}\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&t)
            );
        }
    }

    /// Script Encoder blocks (`var q = 1; alert('x');` encoded): after a
    /// `<script language="JScript.Encode">`, decoded and normalized as
    /// script; after an ASP directive, read once as text and then again,
    /// decoded, with the rest of the piece.
    #[test]
    fn encoded_scripts_are_decoded() {
        let block = b"#@~^FwAAAA==#mD~5P{PFpP,CV\x7fDO`r(EbpAwYAAA==^#~@";
        let page = [
            b"<html><script language=\"JScript.Encode\">pre ".as_slice(),
            block,
            b"</script>after</html>",
        ]
        .concat();
        assert_eq!(
            norm(&page),
            (
                b"<html><script language=\"jscript.encode\"><script language=\"javascript\">\
pre varq=1;alert(\"x\");</script>after</html>"
                    .to_vec(),
                b" after ".to_vec()
            )
        );
        let page = [
            b"<html><%@ language=\"JScript.Encode\" %>\n<p>hi</p>\n<script>".as_slice(),
            block,
            b"</script>after</html>",
        ]
        .concat();
        let (o, t) = norm(&page);
        assert_eq!(
            o,
            b"<html><%@ language=\"jscript.encode\" %><p>hi</p><script>//~^fwaaaa==#md~5p{pfpp,\
cv\x7fdo`r(ebpawyaaa==^#~@</script>after</html>var q = 1; alert(\"x\");</script>after</html>"
                .as_slice()
        );
        assert_eq!(t, b" hi after var q = 1; alert(\"x\"); after ".as_slice());
    }

    /// What a hostile page can make of the streams: directive after
    /// directive, attribute after attribute, references that grow.
    #[test]
    fn hostile_pages_stay_linear() {
        let block = b"#@~^FwAAAA==#mD~5P{PFpP,CV\x7fDO`r(EbpAwYAAA==^#~@";
        let mut asp = b"<html>".to_vec();
        for _ in 0..20_000 {
            asp.extend_from_slice(b"<%@ language=\"JScript.Encode\" %>");
            asp.extend_from_slice(block);
        }
        let script_attrs = [b"<html><script".as_slice(), &b" a".repeat(500_000)].concat();
        let references = [b"<html>".as_slice(), &b"&#256;".repeat(200_000)].concat();
        for page in [asp, script_attrs, references] {
            let n = normalize(&page);
            assert!(
                n.page.len() <= 3 * page.len(),
                "{} -> {}",
                page.len(),
                n.page.len()
            );
            assert!(
                n.text.len() <= 3 * page.len(),
                "{} -> {}",
                page.len(),
                n.text.len()
            );
        }
    }

    #[test]
    fn references_decode_as_latin1_or_hex() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"&#65;", b"a"),
            (b"&#x4a;", b"j"),
            (b"&#X41;", b"a"),
            (b"&#;", b"\x00"),
            (b"&#256;", b"&#x0100;"),
            (b"&#65601;", b"A"),
            (b"&#65536;", b""),
            (b"&#255;", b"&#x00ff;"),
            (b"&#x3002;", b"."),
            (b"&#233;", b"\xe9"),
            (b"&#99999999999999999999;", b"\xff9;"),
        ];
        for (input, want) in cases {
            let page = [b"<html>".as_slice(), input, b" end"].concat();
            let (o, _) = norm(&page);
            let want = [b"<html>".as_slice(), want, b" end"].concat();
            assert_eq!(
                o,
                want,
                "{} gave {}",
                String::from_utf8_lossy(input),
                String::from_utf8_lossy(&o)
            );
        }
        assert_eq!(lookup(b"amp"), Some(38));
        assert_eq!(lookup(b"AMP"), None);
        assert_eq!(lookup(b"yuml"), Some(255));
    }

    #[test]
    fn pieces_are_cut_at_whitespace_and_lose_their_leading_spaces() {
        let mut long = vec![b'b'; PIECE];
        long.extend_from_slice(b"   c");
        let (o, t) = norm(&long);
        assert_eq!(o.len(), PIECE + 1);
        assert!(o.ends_with(b"bc") && t.ends_with(b"bc"));
        let words = b"word ".repeat(4000);
        let chunks: Vec<_> = pieces(&words).collect();
        assert!(chunks.iter().all(|c| c.len() <= PIECE));
        assert_eq!(chunks.concat(), words);
        // NULs are left out, and where they were in a cut tail, the next
        // piece starts that many bytes late (ClamAV's arithmetic).
        let mut nul = vec![b'a'; PIECE - 10];
        nul.extend_from_slice(b" xy\0\0z");
        nul.extend_from_slice(&[b'q'; 20]);
        let chunks: Vec<_> = pieces(&nul).collect();
        assert_eq!(chunks[0].len(), PIECE - 9);
        assert_eq!(&*chunks[1], [b"z".as_slice(), &[b'q'; 20]].concat());
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.ends_with(b" ")));
    }
}
