//! The names of the hash records, front-coded in blocks so that a million
//! names take a third of their plain size and one is found by decoding at
//! most [`NAME_BLOCK`] entries.

use crate::pattern::UNOFFICIAL;
use crate::wire::{Reader, Writer};

/// A name section holds the names of its records in blocks of this many:
/// a table of each block's `u32` start (from the section start), then per
/// name the length it shares with the name before it in its block
/// (varint), its remaining length shifted left by one with the low bit
/// meaning "append `.UNOFFICIAL`" (varint), and the remaining bytes. A
/// name is found by decoding at most this many entries of its block, and
/// a million names such as `Win.Trojan.Agent-1234567-0` take a third of
/// their plain size.
pub(crate) const NAME_BLOCK: usize = 32;

/// A name section (see [`NAME_BLOCK`]) for `names`, in record order.
pub(crate) fn encode_names<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Vec<u8> {
    let index_len = names.len().div_ceil(NAME_BLOCK) * 4;
    let mut index = Vec::with_capacity(index_len);
    let mut w = Writer::new();
    let mut prev: &[u8] = &[];
    for (i, name) in names.enumerate() {
        if i % NAME_BLOCK == 0 {
            let at = u32::try_from(index_len + w.len()).unwrap_or(u32::MAX);
            index.extend_from_slice(&at.to_le_bytes());
            prev = &[];
        }
        // The suffix of most names is a flag, not 11 bytes a name for the
        // checksum to read at every load.
        let (stem, flag) = match name.strip_suffix(UNOFFICIAL) {
            Some(stem) => (stem.as_bytes(), 1),
            None => (name.as_bytes(), 0),
        };
        let shared = prev.iter().zip(stem).take_while(|(a, b)| a == b).count();
        w.count(shared);
        w.var(((stem.len() - shared) as u64) << 1 | flag);
        w.raw(&stem[shared..]);
        prev = stem;
    }
    index.extend_from_slice(w.as_bytes());
    index
}

/// Name `i` of a name section (see [`NAME_BLOCK`]); `None` if the
/// section does not hold it.
pub(crate) fn decode_name(section: &[u8], i: usize) -> Option<String> {
    let at = 4 * (i / NAME_BLOCK);
    let start = u32::from_le_bytes(section.get(at..at + 4)?.try_into().ok()?) as usize;
    let mut r = Reader::new(section.get(start..)?);
    let mut name: Vec<u8> = Vec::new();
    let mut flag = 0;
    for _ in 0..=i % NAME_BLOCK {
        let shared = usize::try_from(r.var().ok()?).ok()?;
        let rest = r.var().ok()?;
        if shared > name.len() {
            return None;
        }
        name.truncate(shared);
        name.extend_from_slice(r.take(usize::try_from(rest >> 1).ok()?).ok()?);
        flag = rest & 1;
    }
    let mut name = String::from_utf8(name).ok()?;
    if flag != 0 {
        name.push_str(UNOFFICIAL);
    }
    Some(name)
}
