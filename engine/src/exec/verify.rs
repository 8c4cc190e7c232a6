//! Verifying a candidate: the bytes of a part variant, anchors and
//! zero-width assertions, over a window that may straddle a chunk seam.

use giva_signatures::pattern::{boundary_any, boundary_left, boundary_right};
use giva_signatures::{Anchor, Assertion, ByteSet};

use crate::compile::{Elem, Entry, Program};

/// The bytes visible to the verifier: the retained tail of earlier input
/// followed by the current chunk, addressed by absolute file position.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hay<'a> {
    pub tail: &'a [u8],
    pub tail_base: u64,
    pub chunk: &'a [u8],
    pub chunk_base: u64,
}

impl<'a> Hay<'a> {
    /// The byte at absolute position `pos`, or `None` past the end of the
    /// input seen so far (the verifier only looks there at end of file).
    #[inline]
    pub fn get(&self, pos: u64) -> Option<u8> {
        if pos >= self.chunk_base {
            self.chunk
                .get(usize::try_from(pos - self.chunk_base).ok()?)
                .copied()
        } else if pos >= self.tail_base {
            self.tail
                .get(usize::try_from(pos - self.tail_base).ok()?)
                .copied()
        } else {
            debug_assert!(false, "read before the retained history");
            None
        }
    }

    /// The bytes `from..to` as one slice if they lie in one piece.
    #[inline]
    fn slice(&self, from: u64, to: u64) -> Option<&'a [u8]> {
        if from >= self.chunk_base {
            let a = usize::try_from(from - self.chunk_base).ok()?;
            let b = usize::try_from(to - self.chunk_base).ok()?;
            self.chunk.get(a..b)
        } else if to <= self.chunk_base && from >= self.tail_base {
            let a = usize::try_from(from - self.tail_base).ok()?;
            let b = usize::try_from(to - self.tail_base).ok()?;
            self.tail.get(a..b)
        } else {
            None
        }
    }
}

#[inline]
fn elem_ok(e: Elem, b: u8, sets: &[ByteSet]) -> bool {
    match e {
        Elem::Byte { value, mask } => b & mask == value,
        Elem::Set(i) => sets[i as usize].contains(b),
    }
}

/// True if the variant `entry` matches at absolute position `start`.
pub(crate) fn part_matches(
    p: &Program,
    entry: &Entry,
    start: u64,
    hay: &Hay<'_>,
    scratch: &mut Vec<u8>,
) -> bool {
    let end = start + entry.len();
    let bytes: &[u8] = match hay.slice(start, end) {
        Some(s) => s,
        None => {
            scratch.clear();
            for p in start..end {
                match hay.get(p) {
                    Some(b) => scratch.push(b),
                    None => return false,
                }
            }
            scratch
        }
    };
    bytes_match(p, entry, bytes)
}

/// True if `bytes` (exactly the variant's length) match the variant.
#[inline]
pub(crate) fn bytes_match(p: &Program, entry: &Entry, bytes: &[u8]) -> bool {
    let elems = p.elems(entry);
    if bytes.len() != elems.len()
        || !elems
            .iter()
            .zip(bytes)
            .all(|(&e, &b)| elem_ok(e, b, &p.sets))
    {
        return false;
    }
    p.not_alts(entry).iter().all(|n| {
        let w = &bytes[n.off as usize..(n.off + n.len) as usize];
        !n.branches.iter().any(|br| br.as_slice() == w)
    })
}

/// The zero-width check before a match starting at `start`.
pub(crate) fn start_assertion_ok(a: Assertion, start: u64, hay: &Hay<'_>) -> bool {
    let prev = if start == 0 { None } else { hay.get(start - 1) };
    match a {
        Assertion::Boundary => prev.is_none_or(boundary_left),
        Assertion::Line => prev.is_none_or(|b| b == b'\n'),
        Assertion::NonAlnum => prev.is_none_or(|b| !b.is_ascii_alphanumeric()),
        Assertion::NotBoundary => prev.is_some_and(|b| !boundary_any(b)),
        Assertion::NotLine => prev.is_some_and(|b| b != b'\n'),
        Assertion::Alnum => prev.is_some_and(|b| b.is_ascii_alphanumeric()),
        Assertion::NonAlnumWide => {
            !(start >= 2
                && prev == Some(0)
                && hay
                    .get(start - 2)
                    .is_some_and(|b| b.is_ascii_alphanumeric()))
        }
    }
}

/// The zero-width check after a match ending (exclusively) at `end`.
pub(crate) fn end_assertion_ok(a: Assertion, end: u64, hay: &Hay<'_>) -> bool {
    let next = hay.get(end);
    match a {
        Assertion::Boundary => next.is_none_or(boundary_right),
        Assertion::Line => match next {
            None | Some(b'\n') => true,
            Some(b'\r') => hay.get(end + 1) == Some(b'\n'),
            Some(_) => false,
        },
        Assertion::NonAlnum => next.is_none_or(|b| !b.is_ascii_alphanumeric()),
        Assertion::NotBoundary => next.is_some_and(|b| !boundary_right(b)),
        Assertion::NotLine => next.is_some_and(|b| b != b'\n'),
        Assertion::Alnum => next.is_some_and(|b| b.is_ascii_alphanumeric()),
        // clamscan 1.4.6: an alphanumeric last byte of the file also fails
        // (checked: `a\0b\0c\0a` + EOF does not match `616263::wf`).
        Assertion::NonAlnumWide => {
            !(next.is_some_and(|b| b.is_ascii_alphanumeric())
                && matches!(hay.get(end + 1), Some(0) | None))
        }
    }
}

/// The left side of a match whose first part starts at `start`: the
/// anchor byte (if any), the start assertion and the offset range, which
/// applies to the start of the body (the anchor byte is not counted).
pub(crate) fn left_ok(
    anchor: Option<Anchor>,
    assertion: Option<Assertion>,
    range: (u64, u64),
    start: u64,
    hay: &Hay<'_>,
) -> bool {
    let in_range = |a: u64| a >= range.0 && a <= range.1;
    let assert_ok = |a: u64| assertion.is_none_or(|x| start_assertion_ok(x, a, hay));
    match anchor {
        None => in_range(start) && assert_ok(start),
        // The offset counts from the body, not from the anchor byte, as in
        // ClamAV (`T:0:4:61[0-1]6263` matches `xxxabc`).
        Some(an) => {
            in_range(start)
                && (an.min..=an.max).any(|d| {
                    let d = u64::from(d) + 1;
                    start >= d && hay.get(start - d) == Some(an.byte) && assert_ok(start - d)
                })
        }
    }
}

/// The right side of a match whose last part ends (exclusively) at `end`.
pub(crate) fn right_ok(
    anchor: Option<Anchor>,
    assertion: Option<Assertion>,
    end: u64,
    hay: &Hay<'_>,
) -> bool {
    let check = |e: u64| assertion.is_none_or(|x| end_assertion_ok(x, e, hay));
    match anchor {
        None => check(end),
        Some(an) => (an.min..=an.max).any(|d| {
            let p = end + u64::from(d);
            hay.get(p) == Some(an.byte) && check(p + 1)
        }),
    }
}
