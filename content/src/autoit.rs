//! Compiled AutoIt scripts (`AU3!EA05`, `AU3!EA06`): the archive an AutoIt
//! executable carries after a 16-byte mark, found anywhere in a PE as
//! ClamAV finds it. Each member (the script, and every file the script
//! installs) is a record: a `FILE` mark, a subtype string and a file name
//! (each with its length), a compression flag, the stored and expanded
//! sizes and a checksum (each XORed with a constant), 16 bytes of times,
//! then the data. Strings and data are XORed with a key stream seeded per
//! field: EA05's from the Mersenne Twister (MT19937, bits 1-8 of each
//! output), EA06's from a lagged-Fibonacci generator with rotations (the
//! top byte of every second output). Compressed data starts `EA05`/`EA06`
//! and its expanded size (big-endian), then LZ77 tokens read most
//! significant bit first from 16-bit big-endian words.
//!
//! Members are named `autoit.001`, `autoit.002` … as ClamAV numbers them.
//! An EA06 script is scanned as its tokens, not turned back into text as
//! ClamAV does (`docs/clamav-formats.md` §18).
//!
//! Cost: one pass over the archive; each member is decrypted and expanded
//! once, to no more than the largest member; a match may not reach before
//! the output's start or past its end.

use crate::formats::{Entry, Flow, FormatError, decode_cap, decoded, le32};
use crate::limits::Limits;

/// The 16 bytes before `AU3!EA0`.
pub(crate) const MARK: &[u8; 23] =
    b"\xa3\x48\x4b\xbe\x98\x6c\x4a\xa9\x99\x4c\x53\x0a\x86\xd6\x48\x7dAU3!EA0";

/// Members read from one archive at the most.
const MAX_MEMBERS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Ea05,
    Ea06,
}

/// A key stream: EA05's Mersenne Twister or EA06's generator.
enum Keys {
    Mt { state: Box<[u32; 624]>, at: usize },
    Lame { g: [u32; 17], c0: usize, c1: usize },
}

impl Keys {
    fn new(version: Version, seed: u32) -> Keys {
        match version {
            Version::Ea05 => {
                let mut state = Box::new([0u32; 624]);
                state[0] = seed;
                for i in 1..624 {
                    let p = state[i - 1];
                    state[i] = 0x6c07_8965u32
                        .wrapping_mul(p ^ (p >> 30))
                        .wrapping_add(i as u32);
                }
                Keys::Mt { state, at: 624 }
            }
            Version::Ea06 => {
                let mut g = [0u32; 17];
                let mut x = seed & 0xffff;
                for w in &mut g {
                    x = 1u32.wrapping_sub(x.wrapping_mul(0x53a9_b4fb));
                    *w = x;
                }
                let mut k = Keys::Lame { g, c0: 0, c1: 10 };
                for _ in 0..9 {
                    k.lame_step();
                }
                k
            }
        }
    }

    fn lame_step(&mut self) -> u32 {
        let Keys::Lame { g, c0, c1 } = self else {
            return 0;
        };
        let r = g[*c0].rotate_left(9).wrapping_add(g[*c1].rotate_left(13));
        g[*c0] = r;
        *c0 = if *c0 == 0 { 16 } else { *c0 - 1 };
        *c1 = if *c1 == 0 { 16 } else { *c1 - 1 };
        r
    }

    fn byte(&mut self) -> u8 {
        match self {
            Keys::Mt { state, at } => {
                if *at >= 624 {
                    for k in 0..624 {
                        let y = (state[k] & 0x8000_0000) | (state[(k + 1) % 624] & 0x7fff_ffff);
                        let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                        state[k] = state[(k + 397) % 624] ^ (y >> 1) ^ mag;
                    }
                    *at = 0;
                }
                let mut y = state[*at];
                *at += 1;
                y ^= y >> 11;
                y ^= (y << 7) & 0x9d2c_5680;
                y ^= (y << 15) & 0xefc6_0000;
                y ^= y >> 18;
                (y >> 1) as u8
            }
            Keys::Lame { .. } => {
                self.lame_step();
                (self.lame_step() >> 24) as u8
            }
        }
    }
}

/// `data` XORed with the key stream of `seed`.
fn decrypt(version: Version, seed: u32, data: &[u8]) -> Vec<u8> {
    let mut k = Keys::new(version, seed);
    data.iter().map(|&b| b ^ k.byte()).collect()
}

/// The bits of a compressed member, most significant first, from 16-bit
/// big-endian words after its 8-byte head.
struct Bits<'a> {
    src: &'a [u8],
    at: usize,
    word: u32,
    left: u32,
}

impl Bits<'_> {
    fn get(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            if self.left == 0 {
                let w = self.src.get(self.at..self.at + 2)?;
                self.word = u32::from(u16::from_be_bytes([w[0], w[1]]));
                self.at += 2;
                self.left = 16;
            }
            self.left -= 1;
            v = (v << 1) | ((self.word >> self.left) & 1);
        }
        Some(v)
    }
}

/// The expanded member `data` (decrypted, starting `EA05`/`EA06`), to no
/// more than `max` bytes; `None` for a stream of another kind (`JB01`).
/// A stream that goes wrong gives what it expanded so far.
fn expand(version: Version, data: &[u8], max: usize) -> Option<Vec<u8>> {
    let magic: &[u8; 4] = match version {
        Version::Ea05 => b"EA05",
        Version::Ea06 => b"EA06",
    };
    if data.get(..4) != Some(magic) {
        return None;
    }
    let stated = data
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
    let size = if stated == 0 { data.len() } else { stated }.min(max);
    let mut out = Vec::with_capacity(size.min(1 << 24));
    let mut bits = Bits {
        src: data,
        at: 8,
        word: 0,
        left: 0,
    };
    let matched = u32::from(version == Version::Ea05);
    while out.len() < size {
        let Some(flag) = bits.get(1) else { break };
        if flag != matched {
            let Some(b) = bits.get(8) else { break };
            out.push(b as u8);
            continue;
        }
        let Some(dist) = bits.get(15) else { break };
        let len = (|| {
            let v = bits.get(2)?;
            if v < 3 {
                return Some(v + 3);
            }
            let v = bits.get(3)?;
            if v < 7 {
                return Some(v + 6);
            }
            let v = bits.get(5)?;
            if v < 31 {
                return Some(v + 13);
            }
            let v = bits.get(8)?;
            if v < 255 {
                return Some(v + 44);
            }
            let mut add = 296u32;
            loop {
                let v = bits.get(8)?;
                if v != 255 {
                    return Some(v + 3 + add);
                }
                add = add.checked_add(255)?;
            }
        })();
        let Some(len) = len else { break };
        let (dist, len) = (dist as usize, len as usize);
        if dist > out.len() || out.len() + len > size {
            break;
        }
        let from = out.len() - dist;
        for i in 0..len {
            // A distance of 0 copies nothing new: the buffer's zero.
            let b = if dist == 0 { 0 } else { out[from + i] };
            out.push(b);
        }
    }
    Some(out)
}

/// The members of the AutoIt archive at the start of `data` (its mark).
pub(crate) fn members(
    data: &[u8],
    limits: &Limits,
    each: &mut dyn FnMut(Entry<'_>) -> Flow,
) -> Result<(), FormatError> {
    let bad = |why: &str| FormatError::Corrupt(format!("AutoIt: {why}"));
    let version = match data.get(23) {
        Some(b'5') => Version::Ea05,
        Some(b'6') => Version::Ea06,
        _ => return Err(bad("an unknown version")),
    };
    let sum: u32 = data
        .get(24..40)
        .ok_or_else(|| bad("too short"))?
        .iter()
        .map(|&b| u32::from(b))
        .sum();
    // The keys of the lengths and sizes, the data's seed, and the bytes a
    // string's length counts (EA06's strings are UTF-16).
    let (file_mark, k1, k2, ksize, seed, wide) = match version {
        Version::Ea05 => (0xceb0_6dffu32, 0x29bc, 0x29ac, 0x45aa, 0x22af + sum, 1),
        Version::Ea06 => (0x52ca_436b, 0xadbc, 0xf820, 0x87bc, 0x2477, 2),
    };
    // A string's length in bytes, if ClamAV goes on past it.
    let length = |raw: u32| -> Option<usize> {
        let l = (raw as usize).checked_mul(wide)?;
        (l <= i32::MAX as usize).then_some(l)
    };
    let max = limits.max_file_size as usize;
    let mut at = 40;
    let mut n = 0;
    for _ in 0..MAX_MEMBERS {
        if le32(data, at) != Some(file_mark) {
            break;
        }
        // The subtype string and the file name: passed over by their
        // lengths (an EA06 subtype of length 0 ends the archive).
        let Some(l1) = le32(data, at + 4).and_then(|v| length(v ^ k1)) else {
            break;
        };
        if version == Version::Ea06 && l1 == 0 {
            break;
        }
        at += 8 + l1;
        let Some(l2) = le32(data, at).and_then(|v| length(v ^ k2)) else {
            break;
        };
        at += 4 + l2;
        if data.len() < at.saturating_add(13) {
            break;
        }
        let comp = data[at];
        let size = le32(data, at + 1).map_or(0, |v| v ^ ksize);
        if size > i32::MAX as u32 {
            break;
        }
        let size = size as usize;
        at += 13 + 16;
        if size == 0 {
            continue;
        }
        if size > max {
            at = at.saturating_add(size);
            continue;
        }
        // Too short to be compressed: ClamAV reads its data as the next
        // record (which then ends the archive).
        if comp == 1 && size < 4 {
            continue;
        }
        if version == Version::Ea06 {
            n += 1;
        }
        let Some(stored) = data.get(at..at + size) else {
            let next = n + usize::from(version == Version::Ea05);
            each(Entry::Corrupt {
                name: format!("autoit.{next:03}"),
                why: "its data runs past the archive's end".into(),
            });
            break;
        };
        at += size;
        let plain = decrypt(version, seed, stored);
        let out = if comp == 1 {
            match expand(version, &plain, decode_cap(limits, size) as usize) {
                Some(out) => out,
                None => {
                    let next = n + usize::from(version == Version::Ea05);
                    if each(Entry::Unsupported {
                        name: format!("autoit.{next:03}"),
                        why: "compressed other than EA05/EA06 (JB01)".into(),
                    }) == Flow::Stop
                    {
                        break;
                    }
                    continue;
                }
            }
        } else {
            plain
        };
        if out.len() < 4 {
            continue;
        }
        if version == Version::Ea05 {
            n += 1;
        }
        if decoded(each, format!("autoit.{n:03}"), &out, size) == Flow::Stop {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_streams_are_the_generators() {
        let mut mt = Keys::new(Version::Ea05, 5489);
        let got: Vec<u8> = (0..8).map(|_| mt.byte()).collect();
        assert_eq!(got, [0xae, 0x7b, 0x77, 0xbc, 0x96, 0xef, 0x02, 0xf0]);
        let mut lame = Keys::new(Version::Ea06, 0x2477);
        let got: Vec<u8> = (0..8).map(|_| lame.byte()).collect();
        assert_eq!(got, [0x28, 0xba, 0xca, 0x35, 0xb3, 0x8b, 0x3e, 0xb9]);
        assert_eq!(
            decrypt(Version::Ea05, 0x16fa, &[0xff, 0x6d, 0xb0, 0xce]),
            b"FILE"
        );
        assert_eq!(
            decrypt(Version::Ea06, 0x18ee, &[0x6b, 0x43, 0xca, 0x52]),
            b"FILE"
        );
    }

    #[test]
    fn the_test_files_give_the_file_they_install() {
        let dir = std::path::Path::new("/usr/share/clamav-testfiles");
        let Ok(clam) = std::fs::read(dir.join("clam.exe")) else {
            eprintln!("SKIPPED: clamav-testfiles not installed");
            return;
        };
        for (file, at) in [("clam.ea05.exe", 206_848), ("clam.ea06.exe", 252_928)] {
            let data = std::fs::read(dir.join(file)).expect("read");
            assert!(data[at..].starts_with(MARK));
            let (got, bad, r) =
                crate::formats::collect(|each| members(&data[at..], &Limits::default(), each));
            r.expect("parses");
            assert!(bad.is_empty(), "{file}: {bad:?}");
            assert_eq!(got.len(), 2, "{file}");
            assert_eq!(got[1], ("autoit.002".to_string(), clam.clone()), "{file}");
        }
    }

    #[test]
    fn hostile_streams_stay_in_bounds() {
        // A match before the start, a huge length, a cut stream.
        for data in [
            b"EA05\0\0\x10\0\xff\xff\xff\xff".to_vec(),
            b"EA06\0\0\x10\0\x00\x00\xff\xff\xff\xff".to_vec(),
            b"EA05\0\0\0\0".to_vec(),
        ] {
            for v in [Version::Ea05, Version::Ea06] {
                if let Some(out) = expand(v, &data, 1 << 20) {
                    assert!(out.len() <= 1 << 20);
                }
            }
        }
        assert!(expand(Version::Ea05, b"JB01\0\0\0\x10", 100).is_none());
    }
}
