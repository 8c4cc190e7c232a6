//! The one binary encoding of giva's stored files: a [`Writer`] that
//! appends values and a bounds-checked [`Reader`] that never panics and
//! names what is wrong with a typed [`WireError`].
//!
//! Both on-disk formats use it: the compiled database file (its info, body
//! and logical sections, see [`crate::db`]) and the scan engine that
//! `giva db compile` stores inside it (`giva_engine`'s stored module). A
//! type that is stored in both, such as a signature's [`Offset`](crate::Offset),
//! is written and read once, by its [`Wire`] implementation.
//!
//! The primitives:
//!
//! | value | encoding |
//! |---|---|
//! | [`u8`](Writer::u8) | one byte |
//! | [`u32`](Writer::u32), [`u64`](Writer::u64) | little-endian, fixed width |
//! | [`var`](Writer::var) | LEB128: 7 bits a byte, low first, high bit = more |
//! | [`count`](Writer::count) | a `var` element count; the reader refuses a count that the bytes left cannot hold |
//! | [`bytes`](Writer::bytes), [`str`](Writer::str) | a count, then the bytes (a string is UTF-8) |
//! | [`u32s`](Writer::u32s) | a count, then the words, fixed width |
//! | [`table`](Writer::table) | a count, zero padding to a multiple of [`TABLE_ALIGN`] from the start of the encoding, then raw records |
//!
//! A table's records are aligned in the written bytes, so a reader whose
//! bytes are aligned in memory (a mapped file) can use them in place.
//!
//! This module is a leaf: it knows nothing of signatures or engines.

use std::fmt;

/// Tables start at a multiple of this many bytes from the start of the
/// encoding (see [`Writer::table`]).
pub const TABLE_ALIGN: usize = 8;

/// A value that writes itself to a [`Writer`] and reads itself back from a
/// [`Reader`], refusing anything it would not have written.
pub trait Wire: Sized {
    /// Appends `self`.
    fn put(&self, w: &mut Writer);
    /// Reads a value written by [`put`](Wire::put).
    ///
    /// # Errors
    ///
    /// A [`WireError`] if the bytes are truncated or not a valid encoding.
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError>;
}

/// Appends encoded values to a byte buffer.
#[derive(Default, Debug, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The written bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A `u32`, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `u64`, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `u64` as LEB128 (1 to 10 bytes).
    pub fn var(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }

    /// An element count (a [`var`](Writer::var)).
    pub fn count(&mut self, n: usize) {
        self.var(n as u64);
    }

    /// Bytes as they are, with no length.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A byte string: its length, then the bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.buf.extend_from_slice(b);
    }

    /// A UTF-8 string, as [`bytes`](Writer::bytes).
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// A `u32` array: its length, then each word little-endian.
    pub fn u32s(&mut self, v: &[u32]) {
        self.count(v.len());
        self.buf.reserve(v.len() * 4);
        for x in v {
            self.u32(*x);
        }
    }

    /// A table of `count` fixed-size records given as their raw bytes: the
    /// count, zero padding to a multiple of [`TABLE_ALIGN`], the bytes.
    pub fn table(&mut self, count: usize, records: &[u8]) {
        self.count(count);
        let pad = self.buf.len().next_multiple_of(TABLE_ALIGN) - self.buf.len();
        self.buf.extend(std::iter::repeat_n(0, pad));
        self.buf.extend_from_slice(records);
    }

    /// An optional value: a tag byte 0 (none) or 1, then the value.
    pub fn opt<T: Wire>(&mut self, v: Option<&T>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                v.put(self);
            }
        }
    }

    /// A value of a [`Wire`] type.
    pub fn put<T: Wire>(&mut self, v: &T) {
        v.put(self);
    }

    /// A list of [`Wire`] values: its length, then each value.
    pub fn list<T: Wire>(&mut self, v: &[T]) {
        self.count(v.len());
        for x in v {
            x.put(self);
        }
    }
}

/// What is wrong with encoded bytes, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {kind}")]
pub struct WireError {
    /// Offset from the start of the reader's bytes.
    pub at: usize,
    /// What is wrong.
    pub kind: WireErrorKind,
}

/// The ways encoded bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireErrorKind {
    /// The bytes end before the value does.
    Truncated,
    /// An element count larger than the bytes left could hold.
    CountTooLarge(u64),
    /// A LEB128 number longer than 10 bytes.
    VarintTooLong,
    /// A tag byte that names no variant of `what`.
    BadTag {
        /// The kind of value.
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// A string that is not UTF-8.
    NotUtf8,
    /// A number or index outside the range its value allows.
    OutOfRange(&'static str),
    /// A structural rule of the value does not hold.
    Invalid(&'static str),
}

impl fmt::Display for WireErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireErrorKind::Truncated => f.write_str("truncated"),
            WireErrorKind::CountTooLarge(n) => {
                write!(f, "count {n} is larger than the remaining bytes")
            }
            WireErrorKind::VarintTooLong => f.write_str("varint too long"),
            WireErrorKind::BadTag { what, tag } => write!(f, "bad {what} tag {tag}"),
            WireErrorKind::NotUtf8 => f.write_str("string is not UTF-8"),
            WireErrorKind::OutOfRange(what) => write!(f, "{what} out of range"),
            WireErrorKind::Invalid(what) => f.write_str(what),
        }
    }
}

/// Reads what a [`Writer`] wrote, checking every bound. Never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    /// The current offset from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.b.len()
    }

    /// The byte at the current position, if any, without reading it.
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// An error of `kind` at the current position.
    pub fn error(&self, kind: WireErrorKind) -> WireError {
        WireError { at: self.pos, kind }
    }

    /// An [`WireErrorKind::Invalid`] error at the current position.
    ///
    /// # Errors
    ///
    /// Always.
    pub fn invalid<T>(&self, what: &'static str) -> Result<T, WireError> {
        Err(self.error(WireErrorKind::Invalid(what)))
    }

    /// A [`WireErrorKind::BadTag`] error at the byte just read.
    ///
    /// # Errors
    ///
    /// Always.
    pub fn bad_tag<T>(&self, what: &'static str, tag: u8) -> Result<T, WireError> {
        Err(WireError {
            at: self.pos.saturating_sub(1),
            kind: WireErrorKind::BadTag { what, tag },
        })
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    ///
    /// [`WireErrorKind::Truncated`] if fewer are left.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        match self.b.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.error(WireErrorKind::Truncated)),
        }
    }

    /// The next `N` bytes as an array.
    ///
    /// # Errors
    ///
    /// [`WireErrorKind::Truncated`] if fewer are left.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// One byte.
    ///
    /// # Errors
    ///
    /// [`WireErrorKind::Truncated`] at the end.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian `u32`.
    ///
    /// # Errors
    ///
    /// [`WireErrorKind::Truncated`] if fewer than 4 bytes are left.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    ///
    /// # Errors
    ///
    /// [`WireErrorKind::Truncated`] if fewer than 8 bytes are left.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A LEB128 number.
    ///
    /// # Errors
    ///
    /// Truncated, or longer than 10 bytes.
    pub fn var(&mut self) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error(WireErrorKind::VarintTooLong))
    }

    /// A LEB128 number that must fit a `u32`.
    ///
    /// # Errors
    ///
    /// As [`var`](Reader::var), or [`WireErrorKind::OutOfRange`].
    pub fn var_u32(&mut self) -> Result<u32, WireError> {
        let v = self.var()?;
        u32::try_from(v).map_err(|_| self.error(WireErrorKind::OutOfRange("number")))
    }

    /// A count of elements that each take at least `min_size` bytes (at
    /// least 1), refused if the bytes left cannot hold that many: a bad
    /// count can never make a caller allocate.
    ///
    /// # Errors
    ///
    /// As [`var`](Reader::var), or [`WireErrorKind::CountTooLarge`].
    pub fn count(&mut self, min_size: usize) -> Result<usize, WireError> {
        let n = self.var()?;
        match usize::try_from(n) {
            Ok(c) if c.saturating_mul(min_size.max(1)) <= self.remaining() => Ok(c),
            _ => Err(self.error(WireErrorKind::CountTooLarge(n))),
        }
    }

    /// A byte string written by [`Writer::bytes`].
    ///
    /// # Errors
    ///
    /// Truncated, or a bad length.
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.count(1)?;
        self.take(n)
    }

    /// A string written by [`Writer::str`].
    ///
    /// # Errors
    ///
    /// As [`bytes`](Reader::bytes), or [`WireErrorKind::NotUtf8`].
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let at = self.pos;
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| WireError {
            at,
            kind: WireErrorKind::NotUtf8,
        })
    }

    /// A `u32` array written by [`Writer::u32s`], each word mapped by `f`.
    ///
    /// # Errors
    ///
    /// Truncated, or a bad length.
    pub fn u32s<T>(&mut self, f: impl Fn(u32) -> T) -> Result<Vec<T>, WireError> {
        let n = self.count(4)?;
        Ok(self
            .take(n * 4)?
            .chunks_exact(4)
            .map(|w| f(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .collect())
    }

    /// A table written by [`Writer::table`] of records of `size` bytes:
    /// their raw bytes, which start at a multiple of [`TABLE_ALIGN`] from
    /// the start of the reader's bytes.
    ///
    /// # Errors
    ///
    /// Truncated, or a bad count.
    pub fn table(&mut self, size: usize) -> Result<&'a [u8], WireError> {
        let n = self.count(size)?;
        let pad = self.pos.next_multiple_of(TABLE_ALIGN) - self.pos;
        self.take(pad)?;
        self.take(n * size)
    }

    /// An optional value written by [`Writer::opt`].
    ///
    /// # Errors
    ///
    /// A bad tag, or the value's own error.
    pub fn opt<T: Wire>(&mut self) -> Result<Option<T>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => T::get(self).map(Some),
            t => self.bad_tag("option", t),
        }
    }

    /// A value of a [`Wire`] type.
    ///
    /// # Errors
    ///
    /// The value's own error.
    pub fn get<T: Wire>(&mut self) -> Result<T, WireError> {
        T::get(self)
    }

    /// A list written by [`Writer::list`] of values that each take at least
    /// `min_size` bytes.
    ///
    /// # Errors
    ///
    /// A bad count, or a value's own error.
    pub fn list<T: Wire>(&mut self, min_size: usize) -> Result<Vec<T>, WireError> {
        let n = self.count(min_size)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::get(self)?);
        }
        Ok(v)
    }
}

impl Wire for u32 {
    fn put(&self, w: &mut Writer) {
        w.var(u64::from(*self));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.var_u32()
    }
}

impl Wire for u64 {
    fn put(&self, w: &mut Writer) {
        w.var(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.var()
    }
}

impl Wire for String {
    fn put(&self, w: &mut Writer) {
        w.str(self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_primitive_reads_back_what_was_written() {
        let mut w = Writer::new();
        w.u8(7);
        w.u32(0xdead_beef);
        w.u64(u64::MAX - 1);
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            w.var(v);
        }
        w.bytes(b"abc");
        w.str("snow\u{2603}");
        w.u32s(&[1, 2, 3]);
        w.table(2, &[1, 0, 0, 0, 2, 0, 0, 0]);
        w.opt(Some(&5u32));
        w.opt::<u32>(None);
        w.list(&["a".to_string(), "bc".to_string()]);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u32(), Ok(0xdead_beef));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(r.var(), Ok(v));
        }
        assert_eq!(r.bytes(), Ok(&b"abc"[..]));
        assert_eq!(r.str(), Ok("snow\u{2603}"));
        assert_eq!(r.u32s(|x| x * 10), Ok(vec![10, 20, 30]));
        let t = r.table(4).unwrap();
        assert_eq!(t, &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            (t.as_ptr() as usize - bytes.as_ptr() as usize) % TABLE_ALIGN,
            0
        );
        assert_eq!(r.opt::<u32>(), Ok(Some(5)));
        assert_eq!(r.opt::<u32>(), Ok(None));
        assert_eq!(r.list::<String>(1), Ok(vec!["a".into(), "bc".into()]));
        assert!(r.is_empty());
    }

    #[test]
    fn each_way_to_be_wrong_is_named_with_its_offset() {
        let kind = |b: &[u8], f: fn(&mut Reader<'_>) -> Result<(), WireError>| {
            f(&mut Reader::new(b)).unwrap_err()
        };
        assert_eq!(
            kind(&[1, 2], |r| r.u32().map(drop)),
            WireError {
                at: 0,
                kind: WireErrorKind::Truncated
            }
        );
        assert_eq!(
            kind(&[0xff; 11], |r| r.var().map(drop)).kind,
            WireErrorKind::VarintTooLong
        );
        assert_eq!(
            kind(&[200, 1, 0], |r| r.count(1).map(drop)).kind,
            WireErrorKind::CountTooLarge(200)
        );
        assert_eq!(
            kind(&[2, 0xff, 0xfe], |r| r.str().map(drop)).kind,
            WireErrorKind::NotUtf8
        );
        assert_eq!(
            kind(&[9], |r| r.opt::<u32>().map(drop)),
            WireError {
                at: 0,
                kind: WireErrorKind::BadTag {
                    what: "option",
                    tag: 9
                }
            }
        );
        assert_eq!(
            kind(&[0x80, 0x80, 0x80, 0x80, 0x10], |r| r.var_u32().map(drop)).kind,
            WireErrorKind::OutOfRange("number")
        );
        // A count of records larger than the bytes left: refused before
        // anything is allocated, whatever the record size.
        assert_eq!(
            kind(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], |r| r
                .table(4)
                .map(drop))
            .kind,
            WireErrorKind::CountTooLarge(3)
        );
    }
}
