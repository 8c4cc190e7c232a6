//! How rare byte strings are in the data an appliance scans, used to pick
//! atoms (`compile::pick_atom`) and the q-grams that index them
//! (`index/build.rs`).
//!
//! A string is scored under three simple models of file contents: text
//! (English-like letter frequencies, spaces, punctuation), machine code and
//! binary structures (zeros, `0xff`, a handful of common opcode and small
//! integer bytes) and uniform random bytes. Its rarity is its cost in the
//! model where it is *most* likely, in quarter bits: an atom must be rare in
//! every kind of file, because one that is common in any kind is looked up
//! and confirmed on every file of that kind. A flat per-byte weight missed
//! exactly that: it ranked `qB0\xff` below `port` because `0xff` is common
//! in executables, so text files, where `port` occurs every few hundred
//! bytes, paid a table probe and a failed confirmation per occurrence.

/// Cost units per bit.
pub(crate) const UNIT: u32 = 4;

/// `-log2` of an English letter's frequency among all characters of text
/// (letters take about 80% of them), in quarter bits; `a` to `z`.
const LETTER: [u8; 26] = [
    16, 26, 22, 19, 13, 23, 24, 17, 17, 39, 29, 20, 23, 17, 16, 24, 41, 18, 17, 15, 22, 28, 23, 39,
    24, 43,
];

/// Bytes that are frequent in machine code and binary structures besides
/// `0x00` and `0xff`: x86 opcodes, ModRM and REX bytes, small powers of two.
const CODE: [u8; 31] = [
    0x01, 0x02, 0x04, 0x08, 0x0f, 0x10, 0x20, 0x24, 0x40, 0x44, 0x45, 0x48, 0x4c, 0x55, 0x74, 0x75,
    0x80, 0x83, 0x85, 0x89, 0x8b, 0x8d, 0x90, 0xc0, 0xc3, 0xc7, 0xcc, 0xe8, 0xe9, 0xeb, 0xfe,
];

/// A byte's cost (`-log2 p`, quarter bits) in text, in binary data and in
/// random data.
pub(crate) fn byte_cost(b: u8) -> [u32; 3] {
    let text = match b {
        b' ' => 11,
        b'a'..=b'z' => u32::from(LETTER[usize::from(b - b'a')]),
        b'A'..=b'Z' => 26,
        b'0'..=b'9' => 24,
        b'\n' => 22,
        b'\r' | b'\t' => 28,
        0x21..=0x7e => 28,
        0x80..=0xff => 12 * UNIT,
        _ => 16 * UNIT,
    };
    let binary = match b {
        0x00 => 8,
        0xff => 18,
        _ if CODE.contains(&b) => 26,
        0x20..=0x7e => 30,
        _ => 34,
    };
    [text, binary, 8 * UNIT]
}

/// Accumulated costs of a string under each model.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cost {
    cost: [u32; 3],
    /// Whether the last position added is a lowercase letter.
    letter: bool,
}

impl Cost {
    /// Adds a position that takes any of `choices` (non-empty): the most
    /// likely choice's cost, less the bits the alternatives give away.
    ///
    /// In text, a lowercase letter right after one costs 5/8 of its own
    /// frequency: inside words, letters follow each other far more
    /// predictably than their frequencies alone say (English runs at about
    /// 2.5 bits a letter in context, 4.1 alone). Without this, a q-gram
    /// inside a word (`numb` of `number K)`) scored rarer than one across
    /// the word's end (`r K)`), and with 100k bench signatures text files
    /// passed the index's filter about 23,000 times a MB for atoms that
    /// never confirmed; with it, about 550 times, and the engine scanned
    /// text at 5.3 GB/s instead of 1.1 (all files: 2.5 instead of 1.4).
    pub fn add(&mut self, choices: &[u8]) {
        let give = UNIT * choices.len().next_power_of_two().trailing_zeros();
        // A lowercase letter (or a case-insensitive one).
        let letter = choices.iter().all(u8::is_ascii_alphabetic)
            && choices.iter().any(u8::is_ascii_lowercase);
        for m in 0..3 {
            let mut c = choices.iter().map(|&b| byte_cost(b)[m]).min().unwrap_or(0);
            if m == 0 && letter && self.letter {
                c = c * 5 / 8;
            }
            self.cost[m] += c.saturating_sub(give);
        }
        self.letter = letter;
    }

    /// The cost in the model where the string is most likely.
    pub fn rarity(&self) -> u32 {
        self.cost.into_iter().min().unwrap_or(0)
    }
}

/// The rarity of a literal string (see [`Cost::rarity`]).
pub(crate) fn rarity(bytes: &[u8]) -> u32 {
    let mut c = Cost::default();
    for &b in bytes {
        c.add(&[b]);
    }
    c.rarity()
}

/// Calls `f(s, rarity(s))` for every 3-byte string `s` whose rarity is at
/// most `max`, without scoring all 2^24 of them: a cost only grows as
/// bytes are added, so a prefix already above `max` ends its branch, and
/// the last byte's cost is looked up (it depends only on whether the byte
/// before is a lowercase letter).
pub(crate) fn common_trigrams(max: u32, mut f: impl FnMut([u8; 3], u32)) {
    let after = |letter: bool| -> Vec<[u32; 3]> {
        (0..=255u8)
            .map(|b| {
                let mut c = Cost {
                    cost: [0; 3],
                    letter,
                };
                c.add(&[b]);
                c.cost
            })
            .collect()
    };
    let last = [after(false), after(true)];
    let add = |c: Cost, b: u8| {
        let mut c = c;
        c.add(&[b]);
        (c.rarity() <= max).then_some(c)
    };
    for a in 0..=255u8 {
        let Some(ca) = add(Cost::default(), a) else {
            continue;
        };
        for b in 0..=255u8 {
            let Some(cb) = add(ca, b) else { continue };
            for (c, d) in (0..=255u8).zip(&last[usize::from(cb.letter)]) {
                let r = (0..3).map(|m| cb.cost[m] + d[m]).min().unwrap_or(0);
                if r <= max {
                    f([a, b, c], r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_trigrams_are_all_those_of_low_rarity() {
        let max = 12 * UNIT;
        let mut found = std::collections::HashMap::new();
        common_trigrams(max, |s, r| {
            assert_eq!(r, rarity(&s), "{s:?}");
            found.insert(s, r);
        });
        assert!(found.contains_key(b"the") && found.contains_key(&[0, 0, 0]));
        assert!(found.len() > 1000, "{}", found.len());
        // Every string below the bound is there: all of those made of
        // letters, spaces and a few binary bytes, and a sample of the rest.
        let some: Vec<u8> = (b'a'..=b'z')
            .chain([b' ', b'\n', 0, 0xff, 0x8b, b'E'])
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut sample = Vec::new();
        for &a in &some {
            for &b in &some {
                for &c in &some {
                    sample.push([a, b, c]);
                }
            }
        }
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let [a, b, c, ..] = x.to_le_bytes();
            sample.push([a, b, c]);
        }
        for s in sample {
            assert_eq!(found.contains_key(&s), rarity(&s) <= max, "{s:?}");
        }
    }

    #[test]
    fn a_word_is_common_and_a_mixed_string_is_not() {
        // The case that motivated the models: a text word against bytes
        // rare in every kind of file.
        assert!(rarity(b"port") < rarity(b"qB0\xff"));
        assert!(rarity(b"\0\0\0\0") < rarity(b"port"));
        assert!(rarity(b"the ") < rarity(b"jxqz"));
        // Random-looking bytes cost about 8 bits each.
        assert_eq!(rarity(&[0x9a, 0x3e, 0xd7, 0x61]), 4 * 8 * UNIT);
    }

    #[test]
    fn letters_inside_a_word_are_cheaper_than_across_its_end() {
        // `number` followed by random bytes: the gram at the word's end
        // must beat the one inside it.
        assert!(rarity(b"numb") < rarity(b"r K)"));
        assert!(rarity(b"umbe") < rarity(b"er K"));
        // Mixed case is not a word.
        assert!(rarity(b"port") < rarity(b"tQoZ"));
        // Letters apart cost what they cost alone.
        let mut apart = Cost::default();
        for b in b"n u" {
            apart.add(&[*b]);
        }
        assert_eq!(
            apart.rarity(),
            rarity(b"n") + rarity(b" ") + rarity(b"u"),
            "no discount across a space"
        );
    }

    #[test]
    fn alternatives_give_away_bits() {
        let mut one = Cost::default();
        one.add(b"x");
        let mut two = Cost::default();
        two.add(b"xX");
        assert!(two.rarity() < one.rarity());
    }
}
