//! How rare byte strings are in the data an appliance scans, used to pick
//! atoms (`compile::pick_atom`) and the q-grams that index them
//! (`index/build.rs`).
//!
//! A string's cost is `-log2 p` under a first-order model of real files:
//! the cost of its first byte, then of each byte after the one before it,
//! from `bigrams.bin`. That table is counted over real files of many kinds
//! (a compiler and other machine code, a JVM, C headers, Perl, Vim scripts,
//! message catalogues) by `bench bigrams`, which names them; none of them
//! is in the benchmark's real corpus.
//!
//! It replaced three hand-written models (English letters, a list of
//! common opcode bytes, random bytes), which rated every printable byte in
//! machine code alike: on the real corpus the atoms they chose included
//! function epilogues (`A\A]A^A_]\xc3`), `nop` padding (`f.\x0f\x1f`) and
//! DWARF call-frame programs (`B\x0e\x10B\x0e\x18`), whose keys were
//! looked up about 10,000 times a MB and confirmed 500 times.

/// Cost units per bit.
pub(crate) const UNIT: u32 = 4;

/// 256 costs of a first byte, then for each byte the costs of each byte
/// after it (quarter bits).
static TABLE: &[u8; 256 + 65536] = include_bytes!("bigrams.bin");

/// The cost of `b` with nothing known before it.
fn first(b: u8) -> u32 {
    u32::from(TABLE[usize::from(b)])
}

/// The cost of `b` right after `a`.
fn after(a: u8, b: u8) -> u32 {
    u32::from(TABLE[256 + (usize::from(a) << 8 | usize::from(b))])
}

/// The accumulated cost of a string, position by position.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cost {
    cost: u32,
    /// The choices of the last position added (`prev[..n]`).
    prev: [u8; 4],
    n: usize,
}

impl Cost {
    /// Adds a position that takes any of `choices` (1 to 4 of them): the
    /// most likely choice after the most likely one before, less the bits
    /// the alternatives give away.
    pub fn add(&mut self, choices: &[u8]) {
        self.cost += position_cost(&self.prev[..self.n], choices);
        self.n = choices.len().min(4);
        self.prev[..self.n].copy_from_slice(&choices[..self.n]);
    }

    /// The cost so far, in quarter bits.
    pub fn rarity(&self) -> u32 {
        self.cost
    }
}

/// What a position that takes any of `choices` adds to a string whose
/// last position took any of `prev` (none: the string starts here): the
/// most likely choice after the most likely one before, less the bits the
/// alternatives give away.
pub(crate) fn position_cost(prev: &[u8], choices: &[u8]) -> u32 {
    let give = UNIT * choices.len().next_power_of_two().trailing_zeros();
    let c = choices
        .iter()
        .map(|&b| {
            prev.iter()
                .map(|&a| after(a, b))
                .min()
                .unwrap_or_else(|| first(b))
        })
        .min()
        .unwrap_or(0);
    c.saturating_sub(give)
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
/// bytes are added, so a prefix already above `max` ends its branch.
pub(crate) fn common_trigrams(max: u32, mut f: impl FnMut([u8; 3], u32)) {
    for a in 0..=255u8 {
        let ca = first(a);
        if ca > max {
            continue;
        }
        for b in 0..=255u8 {
            let cb = ca + after(a, b);
            if cb > max {
                continue;
            }
            for c in 0..=255u8 {
                let r = cb + after(b, c);
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
        let max = 14 * UNIT;
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
    fn common_code_and_text_are_cheap_and_random_bytes_dear() {
        assert!(rarity(b"port") < rarity(b"qB0\xff"));
        assert!(rarity(b"\0\0\0\0") < rarity(b"port"));
        assert!(rarity(b"the ") < rarity(b"jxqz"));
        // The machine code the hand-written models rated as rare.
        for common in [&b"A\\A]"[..], b"f.\x0f\x1f", b"H\x89D$", b"H\x8bD$"] {
            assert!(rarity(common) < 24 * UNIT, "{common:?}: {}", rarity(common));
        }
        // Random-looking bytes cost about 8 bits each, or more.
        let r = rarity(&[0x9a, 0x3e, 0xd7, 0x61]);
        assert!(r >= 4 * 7 * UNIT, "{r}");
    }

    #[test]
    fn letters_inside_a_word_are_cheaper_than_across_its_end() {
        // `number` followed by random bytes: the gram at the word's end
        // must beat the one inside it.
        assert!(rarity(b"numb") < rarity(b"r K)"));
        assert!(rarity(b"umbe") < rarity(b"er K"));
        assert!(rarity(b"port") < rarity(b"tQoZ"));
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
