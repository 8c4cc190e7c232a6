//! The hashes of the atom index: which filter word and bits a key sets
//! ([`bloom`]), and where a key's slot search starts ([`home`]). The scalar
//! loop, the SIMD loops and the index builder all compute them here, so
//! they cannot disagree.

/// The multiplier of the hash of a position's first 3 bytes, which picks
/// the filter word (a 32-bit multiply, so that 8 or 16 keys hash in one
/// vector instruction).
pub(crate) const MUL: u32 = 0x9e37_79b1;
/// The multipliers of the hashes of a 4-byte key and of a back key's last
/// 3 bytes, which pick their bits. Not one multiplier for both: those 3
/// bytes and the 4-byte keys they begin share their word.
pub(crate) const MUL4: u32 = 0x85eb_ca77;
pub(crate) const MUL3: u32 = 0xc2b2_ae3d;

/// The word index and the bit mask of key `x` in a blocked Bloom filter
/// of `2^(32 - shift)` 32-bit words: `x` is the 4 bytes at a position if
/// `wide`, else its back key (the 4 bytes from 1 before it). The top bits
/// of the position's first 3 bytes times `MUL` pick the word for both
/// kinds of key (`x & 0xffffff` or `x >> 8`), so that one word fetched
/// per position answers both.
///
/// A key sets one bit in each byte of its word: byte `j` gets bit
/// [`BYTE_BIT`]`[f_j]`, `f_j` a 6-bit field of a hash `g` of the key. Four
/// bits, each one of 8, pass a random string as rarely (`8^-4`) as the
/// earlier two or three bits anywhere in the word (`16^-2`, `11^-3`) or
/// more rarely, but the vector loops make them with two byte shuffles
/// instead of a shift and a permute per bit: the AVX-512 loop takes 15
/// vector instructions per 16 lookups of both kinds of key instead of 27
/// (the gather aside).
///
/// - 4-byte key: `g` is `x` rotated by a byte, so that its 4th byte is the
///   low byte of the multiplicand and reaches every bit of the product,
///   times `MUL4`; the fields are bits 2-7, 10-15, 18-23 and 26-31. The
///   keys of a word mostly share their first 3 bytes (those pick it), so
///   the 4th byte is what tells them apart.
/// - Back key: `g` is its last 3 bytes times `MUL3`, xor the key; the
///   fields are bits 0-5 and 4-9 (they hold its first byte, together 6
///   independent bits of it) and 18-23 and 26-31 (its last 3 bytes only).
///   Bits of its last 3 bytes alone fail a common 3 bytes at every
///   occurrence alike, where a hash of all 4 bytes would let some of them
///   through (text passed 10 times as often that way); the first byte's
///   bits turn away most strings that end in a key's last 3 bytes. Random
///   data hit the real last 3 bytes of 100k bench signatures about 600
///   times per MB (20k back keys among 2^24 values).
#[inline(always)]
pub(crate) fn bloom(x: u32, wide: bool, shift: u32) -> (usize, u32) {
    let (x3, f) = if wide {
        (x & 0x00ff_ffff, x.rotate_left(8).wrapping_mul(MUL4) >> 2)
    } else {
        let x3 = x >> 8;
        let g = x3.wrapping_mul(MUL3) ^ x;
        (x3, g & 0x3f | (g << 4) & 0x3f00 | (g >> 2) & 0x3f3f_0000)
    };
    let mut m = 0;
    for j in 0..4 {
        m |= u32::from(BYTE_BIT[(f >> (8 * j) & 63) as usize]) << (8 * j);
    }
    ((x3.wrapping_mul(MUL) >> shift) as usize, m)
}

/// The bit a 6-bit field sets in its byte of a filter word ([`bloom`]):
/// `1 << (i ^ i >> 3) & 7`, so that all 6 bits count. A table, because
/// the AVX-512 loop looks up 64 bytes at once (`vpermb`); the AVX2 loop
/// folds the field first and looks up 8 (`vpshufb`).
pub(crate) const BYTE_BIT: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = 1 << ((i ^ (i >> 3)) & 7);
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn h2(x: u32) -> u32 {
    (x ^ (x >> 15)).wrapping_mul(0x85eb_ca6b)
}

/// The first slot to probe for `x` in a table of `n` slots (`n` below
/// 2^32): the hash scaled to `0..n` by a multiply, not a modulo.
#[inline(always)]
pub(crate) fn home(x: u32, n: usize) -> usize {
    ((u64::from(h2(x)) * n as u64) >> 32) as usize
}

#[inline(always)]
pub(crate) fn gram(hay: &[u8], i: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&hay[i..i + 4]);
    u32::from_le_bytes(b)
}
