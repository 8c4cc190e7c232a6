//! PDF's standard security handler, for documents whose user password is
//! empty (anyone may open them, so ClamAV opens them too): the file key
//! from the `/Encrypt` dictionary and the trailer's `/ID`, checked against
//! `/U`, and each stream decrypted before its filters. RC4 (revisions 2-4),
//! AES-128 (`/AESV2`) and AES-256 (`/AESV3`, revisions 5 and 6) are
//! handled. A document with a real user password cannot be opened and is
//! reported encrypted.

use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use md5::{Digest as _, Md5};
use sha2::{Sha256, Sha384, Sha512};

/// The padding string of the password algorithms.
const PAD: [u8; 32] = [
    0x28, 0xbf, 0x4e, 0x5e, 0x4e, 0x75, 0x8a, 0x41, 0x64, 0x00, 0x4e, 0x56, 0xff, 0xfa, 0x01, 0x08,
    0x2e, 0x2e, 0x00, 0xb6, 0xd0, 0x68, 0x3e, 0x80, 0x2f, 0x0c, 0xa9, 0xfe, 0x64, 0x53, 0x69, 0x7a,
];

/// How streams are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cipher {
    Rc4,
    Aes128,
    Aes256,
    /// `/Identity`: not at all.
    None,
}

/// What decrypts a document's streams.
#[derive(Debug, Clone)]
pub(crate) struct Decryptor {
    key: Vec<u8>,
    cipher: Cipher,
}

/// Why a document cannot be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It has a user password (the empty one is not it).
    Password,
    /// Its security handler or revision is not the standard one, or its
    /// dictionary does not parse.
    Unsupported(String),
}

/// `dict` with the insides of the dictionaries nested in it blanked out.
fn top_level(dict: &[u8]) -> Vec<u8> {
    let mut out = dict.to_vec();
    let mut depth = 0;
    let mut i = 0;
    while i + 1 < out.len() {
        match &dict[i..i + 2] {
            b"<<" => {
                depth += 1;
                i += 2;
            }
            b">>" => {
                depth -= 1;
                i += 2;
            }
            _ => {
                if depth > 1 {
                    out[i] = b' ';
                }
                i += 1;
            }
        }
    }
    out
}

/// The PDF string at the start of `v`: `<hex>` or `(literal)` with its
/// escapes.
pub(crate) fn string(v: &[u8]) -> Option<Vec<u8>> {
    let v = super::pdf::trim(v);
    if let Some(hex) = v.strip_prefix(b"<") {
        let end = hex.iter().position(|&c| c == b'>')?;
        let digits: Vec<u8> = hex[..end]
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let mut out = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks(2) {
            let h = (pair[0] as char).to_digit(16)?;
            let l = pair.get(1).map_or(Some(0), |c| (*c as char).to_digit(16))?;
            out.push((h * 16 + l) as u8);
        }
        return Some(out);
    }
    literal(v).map(|(bytes, _)| bytes)
}

/// The literal string `(…)` that starts `v`: its bytes, escapes decoded
/// and nested pairs of parentheses kept, and its length in `v`.
pub(crate) fn literal(v: &[u8]) -> Option<(Vec<u8>, usize)> {
    let body = v.strip_prefix(b"(")?;
    let mut out = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        match c {
            b'\\' => {
                let e = *body.get(i)?;
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'\r' | b'\n' => {
                        if e == b'\r' && body.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                    }
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match body.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(c);
            }
            b')' if depth == 0 => return Some((out, i + 1)),
            b')' => {
                depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    None
}

fn number(v: Option<&[u8]>) -> Option<i64> {
    let t = String::from_utf8_lossy(super::pdf::trim(v?)).into_owned();
    t.split_ascii_whitespace().next()?.parse().ok()
}

/// RC4 of `data` with `key`.
fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j = 0u8;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|&b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            b ^ s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))]
        })
        .collect()
}

/// AES-CBC decryption of whole blocks with `iv`; `None` for a bad key
/// length or a partial block.
fn aes_cbc_decrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if !data.len().is_multiple_of(16) || iv.len() != 16 {
        return None;
    }
    let mut prev: [u8; 16] = iv.try_into().ok()?;
    let mut out = Vec::with_capacity(data.len());
    let mut step = |dec: &dyn Fn(&mut [u8; 16])| {
        for block in data.chunks_exact(16) {
            let mut b: [u8; 16] = block.try_into().expect("16 bytes");
            dec(&mut b);
            for k in 0..16 {
                b[k] ^= prev[k];
            }
            out.extend_from_slice(&b);
            prev.copy_from_slice(block);
        }
    };
    match key.len() {
        16 => {
            let c = aes::Aes128::new_from_slice(key).ok()?;
            step(&|b| {
                let mut a = Array::from(*b);
                c.decrypt_block(&mut a);
                *b = a.into();
            });
        }
        32 => {
            let c = aes::Aes256::new_from_slice(key).ok()?;
            step(&|b| {
                let mut a = Array::from(*b);
                c.decrypt_block(&mut a);
                *b = a.into();
            });
        }
        _ => return None,
    }
    Some(out)
}

/// AES-128-CBC encryption without padding (revision 6's hash).
fn aes128_cbc_encrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let c = aes::Aes128::new_from_slice(key).ok()?;
    let mut prev: [u8; 16] = iv.try_into().ok()?;
    let mut out = Vec::with_capacity(data.len());
    for block in data.chunks_exact(16) {
        let mut b = [0u8; 16];
        for k in 0..16 {
            b[k] = block[k] ^ prev[k];
        }
        let mut a = Array::from(b);
        c.encrypt_block(&mut a);
        prev = a.into();
        out.extend_from_slice(&prev);
    }
    Some(out)
}

/// Revision 6's password hash (ISO 32000-2, 7.6.4.3.4) of the empty
/// password with `salt`.
fn hash_r6(salt: &[u8]) -> Option<[u8; 32]> {
    let mut k: Vec<u8> = Sha256::digest(salt).to_vec();
    let mut round = 0u32;
    loop {
        let k1: Vec<u8> = k.repeat(64);
        let e = aes128_cbc_encrypt(&k[..16], &k[16..32], &k1)?;
        let sum: u32 = e[..16].iter().map(|&b| u32::from(b)).sum();
        k = match sum % 3 {
            0 => Sha256::digest(&e).to_vec(),
            1 => Sha384::digest(&e).to_vec(),
            _ => Sha512::digest(&e).to_vec(),
        };
        round += 1;
        if round >= 64 && u32::from(*e.last()?) <= round - 32 {
            break;
        }
        if round > 1000 {
            return None;
        }
    }
    k[..32].try_into().ok()
}

impl Decryptor {
    /// The decryptor of the document whose `/Encrypt` dictionary is `dict`
    /// and whose trailer's first `/ID` is `id`.
    pub(crate) fn new(dict: &[u8], id: &[u8]) -> Result<Decryptor, Refused> {
        // Top-level keys are looked up with the nested dictionaries (the
        // crypt filters, whose `/Length` is in bytes) blanked out.
        let top = top_level(dict);
        let get = |k: &[u8]| super::pdf::value(&top, k);
        let unsupported = |w: &str| Refused::Unsupported(w.to_string());
        if get(b"/Filter").is_some_and(|f| super::pdf::trim(f) != b"/Standard") {
            return Err(unsupported("not the standard security handler"));
        }
        let v = number(get(b"/V")).unwrap_or(0);
        let r = number(get(b"/R")).ok_or_else(|| unsupported("no /R"))?;
        let o = get(b"/O")
            .and_then(string)
            .ok_or_else(|| unsupported("no /O"))?;
        let u = get(b"/U")
            .and_then(string)
            .ok_or_else(|| unsupported("no /U"))?;
        let p = number(get(b"/P")).ok_or_else(|| unsupported("no /P"))? as i32;
        let cfm = super::pdf::value(dict, b"/CFM")
            .map(|c| String::from_utf8_lossy(super::pdf::trim(c)).into_owned());
        let identity = get(b"/StmF").is_some_and(|s| super::pdf::trim(s) == b"/Identity");
        match r {
            2..=4 => {
                let n = if r == 2 {
                    5
                } else {
                    (number(get(b"/Length")).unwrap_or(40) / 8).clamp(5, 16) as usize
                };
                let encrypt_metadata =
                    get(b"/EncryptMetadata").is_none_or(|m| super::pdf::trim(m) != b"false");
                let mut h = Md5::new();
                h.update(PAD);
                h.update(&o[..o.len().min(32)]);
                h.update(p.to_le_bytes());
                h.update(id);
                if r >= 4 && !encrypt_metadata {
                    h.update([0xff; 4]);
                }
                let mut key = h.finalize().to_vec();
                if r >= 3 {
                    for _ in 0..50 {
                        key = Md5::digest(&key[..n]).to_vec();
                    }
                }
                key.truncate(n);
                // The empty password is the user's if it gives `/U`.
                let ok = if r == 2 {
                    rc4(&key, &PAD) == u.get(..32).unwrap_or_default()
                } else {
                    let mut h = Md5::new();
                    h.update(PAD);
                    h.update(id);
                    let mut x = rc4(&key, &h.finalize());
                    for i in 1..=19u8 {
                        let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
                        x = rc4(&k, &x);
                    }
                    u.get(..16) == Some(&x[..])
                };
                if !ok {
                    return Err(Refused::Password);
                }
                let cipher = if identity {
                    Cipher::None
                } else if v == 4 && cfm.as_deref() == Some("/AESV2") {
                    Cipher::Aes128
                } else {
                    Cipher::Rc4
                };
                Ok(Decryptor { key, cipher })
            }
            5 | 6 => {
                let (Some(validation), Some(key_salt)) = (u.get(32..40), u.get(40..48)) else {
                    return Err(unsupported("a short /U"));
                };
                let hash = |salt: &[u8]| -> Option<[u8; 32]> {
                    if r == 5 {
                        Sha256::digest(salt).as_slice().try_into().ok()
                    } else {
                        hash_r6(salt)
                    }
                };
                if hash(validation).as_ref().map(|h| &h[..]) != u.get(..32) {
                    return Err(Refused::Password);
                }
                let ue = get(b"/UE")
                    .and_then(string)
                    .ok_or_else(|| unsupported("no /UE"))?;
                let inter = hash(key_salt).ok_or_else(|| unsupported("the key hash"))?;
                let key = aes_cbc_decrypt(&inter, &[0; 16], ue.get(..32).unwrap_or_default())
                    .ok_or_else(|| unsupported("a bad /UE"))?;
                Ok(Decryptor {
                    key,
                    cipher: if identity {
                        Cipher::None
                    } else {
                        Cipher::Aes256
                    },
                })
            }
            _ => Err(unsupported("an unknown revision")),
        }
    }

    /// The stream `data` of object `num gen`, decrypted.
    pub(crate) fn stream(&self, num: u32, generation: u16, data: &[u8]) -> Option<Vec<u8>> {
        let object_key = |aes: bool| {
            let mut h = Md5::new();
            h.update(&self.key);
            h.update(&num.to_le_bytes()[..3]);
            h.update(generation.to_le_bytes());
            if aes {
                h.update(b"sAlT");
            }
            let d = h.finalize();
            d[..(self.key.len() + 5).min(16)].to_vec()
        };
        let unpad = |mut out: Vec<u8>| {
            let n = usize::from(*out.last()?);
            if (1..=16).contains(&n) && n <= out.len() {
                out.truncate(out.len() - n);
            }
            Some(out)
        };
        match self.cipher {
            Cipher::None => Some(data.to_vec()),
            Cipher::Rc4 => Some(rc4(&object_key(false), data)),
            Cipher::Aes128 => {
                let (iv, rest) = (data.get(..16)?, data.get(16..)?);
                unpad(aes_cbc_decrypt(&object_key(true), iv, rest)?)
            }
            Cipher::Aes256 => {
                let (iv, rest) = (data.get(..16)?, data.get(16..)?);
                unpad(aes_cbc_decrypt(&self.key, iv, rest)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc4_and_strings() {
        // RFC 6229's first test vector: key 0x0102030405, first bytes.
        assert_eq!(rc4(&[1, 2, 3, 4, 5], &[0; 4]), [0xb2, 0x39, 0x63, 0x05]);
        assert_eq!(string(b"<41 42 4>").unwrap(), b"AB@");
        assert_eq!(string(b"(a\\(b\\)c\\101\\n)").unwrap(), b"a(b)cA\n");
    }
}
