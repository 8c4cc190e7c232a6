//! The atom index against a naive search, and its stored form.
use bytes::Bytes;
use giva_signatures::wire::Writer;

use crate::index::Census;
use crate::index::atom_index::AtomIndex;
use crate::index::build::{HOT_WORD_BITS, gram_rarity, word_heat};
use crate::index::filter::{Bloom, Sieve};
use crate::index::hash::{BYTE_BIT, MUL, bloom};
use crate::index::rarity::{UNIT, rarity};
use crate::index::scan::CHUNK;
use crate::index::simd;
use crate::util::wire::StoredReader;

/// Every occurrence of every atom, found the obvious way.
fn naive(atoms: &[Vec<u8>], hay: &[u8]) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    for (id, a) in atoms.iter().enumerate() {
        for s in 0..hay.len() {
            if hay[s..].starts_with(a) {
                out.push((id as u32, s));
            }
        }
    }
    out.sort_unstable();
    out
}

/// A small deterministic random source.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn finds_every_occurrence_of_every_length() {
    let mut next = xorshift(0x1234_5678_9abc_def1u64);
    for round in 0..300 {
        let alpha = if round % 2 == 0 { 2 } else { 4 };
        let n = 1 + next() % 20;
        // Every third round no atom has 4 to 6 bytes: stride 4.
        let long = round % 3 == 2;
        let atoms: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let len = match 1 + next() % 12 {
                    4..7 if long => 7,
                    len => len,
                };
                (0..len).map(|_| b'a' + (next() % alpha) as u8).collect()
            })
            .collect();
        let hay: Vec<u8> = (0..next() % 200)
            .map(|_| b'a' + (next() % alpha) as u8)
            .collect();
        let index = AtomIndex::new(atoms.clone());
        let mid = atoms.iter().any(|a| (4..7).contains(&a.len()));
        assert_eq!(index.stride, if mid { 2 } else { 4 }, "round {round}");
        assert!(!(long && mid));
        let want = naive(&atoms, &hay);
        // Every filter loop this CPU runs, down to the scalar one.
        for level in simd::Level::available() {
            let mut got = Vec::new();
            index.scan_at(level, &hay, |id, s| got.push((id, s)));
            got.sort_unstable();
            assert_eq!(got, want, "round {round}, {level:?}");
        }
    }
}

#[test]
fn the_largest_filters_get_fewer_bits_per_key() {
    // 1k, 10k and 100k bench signatures have about 3.7k, 30k and 295k
    // keys in their main program.
    assert_eq!(Bloom::size(3_700), 1 << 19);
    assert_eq!(Bloom::size(30_000), 1 << 21);
    assert_eq!(Bloom::size(80_000), 1 << 21);
    assert_eq!(Bloom::size(90_000), 1 << 22);
    assert_eq!(Bloom::size(200_000), 1 << 23);
    assert_eq!(Bloom::size(295_000), 1 << 23);
    assert_eq!(Bloom::size(2_000_000), 1 << 24);
    assert_eq!(Bloom::size(1), 1 << 12);
}

#[test]
fn a_key_sets_one_bit_in_each_byte_of_its_word() {
    let mut next = xorshift(0x6a09_e667_f3bc_c909u64);
    for _ in 0..1000 {
        let x = next() as u32;
        for wide in [true, false] {
            let (w, m) = bloom(x, wide, 20);
            assert!(w < 1 << 12);
            for j in 0..4 {
                assert_eq!((m >> (8 * j) & 0xff).count_ones(), 1, "{x:#x} {wide}");
            }
        }
    }
    // Every field value sets each bit of a byte equally often.
    let mut seen = [0; 8];
    for b in BYTE_BIT {
        seen[b.trailing_zeros() as usize] += 1;
    }
    assert_eq!(seen, [8; 8]);
}

#[test]
fn an_atom_that_starts_with_a_word_is_indexed_past_the_word() {
    // A bench signature's shape: a text word, then random bytes. The
    // grams inside the word hit text files constantly. The 5-byte atom
    // makes the stride 2, as in any large database, which leaves a
    // choice of windows past the word.
    let atoms = vec![
        b"number K)\xff".to_vec(),
        b"xportQoZ\xff".to_vec(),
        b"\x9a\x3e\xd7\x61\x05".to_vec(),
    ];
    let index = AtomIndex::new(atoms);
    assert_eq!(index.stride, 2);
    let keys: Vec<[u8; 4]> = index.q4.keys().map(u32::to_le_bytes).collect();
    for word in [b"numb", b"umbe", b"mber", b"xpor", b"port"] {
        assert!(
            !keys.contains(word),
            "{:?} indexed; keys {keys:?}",
            String::from_utf8_lossy(word)
        );
    }
}

#[test]
fn a_back_key_is_turned_away_by_the_byte_before_its_last_three() {
    // A 4-byte atom at an odd start is found by its back key at the
    // next (even) position. Its last 3 bytes preceded by any of the
    // 255 other bytes must mostly fail the filter already: each pass
    // costs a sieve check and often a probe.
    let atoms = vec![b"WXYZ".to_vec(), b"\x01\x02\x03\x04\x05".to_vec()];
    let index = AtomIndex::new(atoms.clone());
    assert_eq!((index.stride, index.back.keys().count()), (2, 1));
    let mut hay = vec![0u8; 4];
    for b in (0..=255u8).filter(|&b| b != b'W') {
        // "XYZ" at a multiple of 4.
        hay.extend_from_slice(&[0, 0, 0, b, b'X', b'Y', b'Z', 0]);
    }
    hay.extend_from_slice(&[0, 0, 0, b'W', b'X', b'Y', b'Z', 0]);
    for level in simd::Level::available() {
        let mut passes = Vec::new();
        assert_eq!(index.filter(level, &hay, 0, CHUNK, &mut passes), hay.len());
        let backs: Vec<usize> = passes
            .iter()
            .filter(|&&e| e & 1 == 1)
            .map(|&e| (e >> 1) as usize)
            .filter(|&p| hay[p..].starts_with(b"XYZ"))
            .collect();
        // The real one passes; about 1 in 10 others (the word holds
        // few bits), never all 255.
        assert!(backs.contains(&(hay.len() - 4)), "{level:?}");
        assert!(backs.len() < 64, "{level:?}: {} passed", backs.len());
    }
    let mut got = Vec::new();
    index.scan(&hay, |id, s| got.push((id, s)));
    assert_eq!(got, naive(&atoms, &hay));
}

#[test]
fn a_common_key_is_turned_away_by_the_bytes_around_it() {
    // Data full of the index's own 4-byte keys, each amid other bytes than
    // its atom's: every occurrence passes the filter (its 4 bytes are a
    // real key), but the sieve holds 8 bytes of each atom around its key,
    // so only the atoms' own occurrences go on to a probe. The 5-byte
    // atom has no 8 bytes around a key: its keys are sieved by 4 bytes.
    let atoms = vec![
        b"\x02\x00\x00\x00rare-tail".to_vec(),
        b"lead-in\x02\x00\x00\x00".to_vec(),
        b"\x09\x08\x07\x06\x05".to_vec(),
    ];
    let index = AtomIndex::new(atoms.clone());
    let keys: Vec<u32> = index.q4.keys().collect();
    let mut hay = Vec::new();
    for i in 0..1000u32 {
        for &k in &keys {
            hay.extend_from_slice(&i.to_le_bytes());
            hay.extend_from_slice(&k.to_le_bytes());
            hay.extend_from_slice(&(!i).to_le_bytes());
        }
    }
    let plant = |hay: &mut Vec<u8>, at: usize, a: &[u8]| hay[at..at + a.len()].copy_from_slice(a);
    plant(&mut hay, 3000, &atoms[0]);
    plant(&mut hay, 9001, &atoms[1]);
    plant(&mut hay, 20_000, &atoms[0]);
    plant(&mut hay, 30_001, &atoms[2]);
    let mut c = Census::default();
    index.census(&hay, &mut c);
    // The short atom's keys pass the sieve whatever surrounds them;
    // of the others, the planted atoms and a few false positives.
    let short = index.q4.view().get(u32::from_le_bytes([9, 8, 7, 6])).len()
        + index.q4.view().get(u32::from_le_bytes([8, 7, 6, 5])).len();
    assert_eq!(short, 2, "the short atom has both its keys");
    let others = (keys.len() - 2) as u64 * 1000;
    assert!(
        c.bloom >= others,
        "{} of {others} passed the filter",
        c.bloom
    );
    assert!(
        c.sieve < 2 * 1000 + 3 + others / 50,
        "{} of {} passed the sieve",
        c.sieve,
        c.bloom
    );
    let mut got = Vec::new();
    index.scan(&hay, |id, s| got.push((id, s)));
    got.sort_unstable();
    assert_eq!(got, naive(&atoms, &hay));
    assert_eq!(got.iter().filter(|&&(id, _)| id < 2).count(), 3);
}

#[test]
fn a_gram_in_the_word_of_a_common_text_string_counts_as_common() {
    // `ess\x9a` is rare by itself (26 bits), but its first 3 bytes, which
    // pick its word, are text (13 bits): it counts as 23, and loses the
    // window choice to a gram of 23.5 bits or more.
    let capped = rarity(b"ess") + HOT_WORD_BITS * UNIT;
    assert!(rarity(b"ess\x9a") > capped);
    assert_eq!(gram_rarity(b"ess\x9a", u32::MAX), capped);
    assert_eq!(
        gram_rarity(&[0x9a, 0x3e, 0xd7, 0x61], u32::MAX),
        rarity(&[0x9a, 0x3e, 0xd7, 0x61])
    );
    // So is a gram whose word is also picked by common text.
    let random = [0x9a, 0x3e, 0xd7, 0x61];
    assert!(gram_rarity(&random, rarity(b"the")) < gram_rarity(b"s\xff\0\xff", u32::MAX));

    // In an index among 3,000 other atoms (so that its filter has many
    // words, few of them hot), the atom is indexed past `ess`.
    let mut next = xorshift(0x510e_527f_ade6_82d1u64);
    let mut atoms: Vec<Vec<u8>> = (0..3000)
        .map(|_| (0..8).map(|_| next() as u8).collect())
        .collect();
    atoms.push(b"ess\xff\x00\xff".to_vec());
    let index = AtomIndex::new(atoms);
    let keys: Vec<[u8; 4]> = index.q4.keys().map(u32::to_le_bytes).collect();
    assert!(!keys.contains(b"ess\xff"));
    assert!(keys.contains(b"s\xff\x00\xff"));
}

#[test]
fn hot_words_are_those_of_common_strings() {
    let shift = 32 - 15;
    let heat = word_heat(shift);
    let word = |s: &[u8; 3]| {
        (u32::from_le_bytes([s[0], s[1], s[2], 0]).wrapping_mul(MUL) >> shift) as usize
    };
    assert_eq!(heat.len(), 1 << 15);
    for s in [b"the", b"ess", b"\0\0\0", b"\xff\0\0"] {
        assert!(heat[word(s)] <= rarity(s), "{s:?}");
    }
    // Common strings are a minority: most words are not hot.
    let hot = heat.iter().filter(|&&h| h < u32::MAX).count();
    assert!(hot > 1000 && hot < heat.len() / 2, "{hot}");
}

#[test]
fn a_stored_index_scans_alike_and_a_sieve_out_of_range_is_refused() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
    let atoms: Vec<Vec<u8>> = (0..500)
        .map(|i| (0..4 + i % 9).map(|_| next() as u8).collect())
        .collect();
    let mut hay: Vec<u8> = (0..20_000).map(|_| next() as u8).collect();
    for (i, a) in atoms.iter().enumerate() {
        hay.extend_from_slice(a);
        hay.extend((0..i % 7).map(|_| next() as u8));
    }
    let index = AtomIndex::new(atoms.clone());
    assert!(!index.sieve.bits.is_empty());
    let mut w = Writer::new();
    index.write(&mut w);
    let blob = Bytes::from(w.into_bytes());
    let stored = AtomIndex::read(&mut StoredReader::new(&blob)).expect("reads back");
    assert_eq!(stored.sieve.bits[..], index.sieve.bits[..]);
    let scan = |ix: &AtomIndex| {
        let mut got = Vec::new();
        ix.scan(&hay, |id, s| got.push((id, s)));
        got.sort_unstable();
        got
    };
    assert_eq!(scan(&stored), naive(&atoms, &hay));

    // A shift that does not match the bit count could index past it,
    // in either filter.
    fn with_shift<T: bytemuck::Pod>(bits: &[T], shift: u32) -> Bytes {
        let mut w = Writer::new();
        crate::util::wire::put_arr(&mut w, bits);
        w.u32(shift);
        Bytes::from(w.into_bytes())
    }
    for shift in [index.sieve.shift - 1, index.sieve.shift + 1] {
        let blob = with_shift(&index.sieve.bits, shift);
        assert!(
            Sieve::read(&mut StoredReader::new(&blob)).is_err(),
            "shift {shift}"
        );
    }
    for shift in [index.bloom.shift - 1, index.bloom.shift + 1] {
        let blob = with_shift(&index.bloom.bits, shift);
        assert!(
            Bloom::read(&mut StoredReader::new(&blob)).is_err(),
            "shift {shift}"
        );
    }
}

#[test]
fn large_tables_find_planted_atoms_at_every_simd_level() {
    // Thousands of atoms of every index class over the whole byte range,
    // so the filters have many words; every atom planted somewhere.
    // Then only atoms of 7+ bytes, which the index looks up at every
    // 4th position instead of every 2nd.
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
    for (min, stride) in [(4, 2), (7, 4)] {
        let atoms: Vec<Vec<u8>> = (0..3000)
            .map(|i| (0..min + i % (13 - min)).map(|_| next() as u8).collect())
            .collect();
        // Random bytes with every atom planted once, without overlaps.
        let mut hay = Vec::new();
        for a in &atoms {
            hay.extend((0..next() % 24).map(|_| next() as u8));
            hay.extend_from_slice(a);
        }
        let index = AtomIndex::new(atoms.clone());
        assert_eq!(index.stride, stride);
        let mut by_bytes: std::collections::HashMap<&[u8], Vec<u32>> = Default::default();
        for (id, a) in atoms.iter().enumerate() {
            by_bytes.entry(a).or_default().push(id as u32);
        }
        let mut want = Vec::new();
        for s in 0..hay.len() {
            for len in min..=12.min(hay.len() - s) {
                for &id in by_bytes.get(&hay[s..s + len]).into_iter().flatten() {
                    want.push((id, s));
                }
            }
        }
        want.sort_unstable();
        assert!(want.len() >= atoms.len());
        // The same tables behind a filter with fewer bits per key, as
        // the largest databases get (a small one: many words hold
        // several keys).
        let mut dense = AtomIndex::new(atoms.clone());
        dense.bloom = Bloom::build(&dense.q4, &dense.back, 1 << 14);
        for (ix, what) in [(&index, "sparse"), (&dense, "dense")] {
            for level in simd::Level::available() {
                let mut got = Vec::new();
                ix.scan_at(level, &hay, |id, s| got.push((id, s)));
                got.sort_unstable();
                assert_eq!(got, want, "{level:?} stride {stride}, {what} filter");
            }
        }
    }
}
