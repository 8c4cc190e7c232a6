//! `.cvd` / `.cld` / `.cud` containers (clamav-formats.md §10).
//!
//! A 512-byte ASCII header `ClamAV-VDB:time:version:sigs:flevel:md5:dsig:
//! builder:stime`, then a gzip'd tar, or a plain tar when the body starts
//! with the `COPYING` member. Checks, as clamscan 1.4.6 makes them:
//!
//! - `.cvd`: the MD5 of the body, the header's legacy RSA signature of that
//!   MD5, then `.info` with its `DSIG:` line (RSA-2048, EMSA-PSS with
//!   SHA-256);
//! - `.cld`: `.info` with its `DSIG:` line (freshclam rewrites the body and
//!   header when it applies cdiffs);
//! - `.cud`: `.info` only, no MD5 and no signature; its names are
//!   unofficial.
//!
//! `.info` lists `name:size:sha256` for every member; every member other
//! than `COPYING` and `.info` must be listed with the right size and
//! SHA-256. The keys are ClamAV's published public keys.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use md5::Md5;
use num_bigint::BigUint;
use sha2::{Digest, Sha256};

use crate::error::ContainerError;
use crate::limits::Limits;

/// Length of the container header.
pub const HEADER_LEN: usize = 512;

/// ClamAV's public RSA modulus for the legacy CVD header signature
/// (`CLI_NSTR` in libclamav's `dsig.c`; a public parameter).
pub const CLAMAV_DSIG_N: &str = "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037";

/// ClamAV's public RSA exponent for the legacy CVD header signature
/// (`CLI_ESTR`).
pub const CLAMAV_DSIG_E: u32 = 100_001_027;

/// One member file of a container.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member's file name (`main.ndb`).
    pub name: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The unpacked, verified content of a container.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The parsed header.
    pub header: CvdHeader,
    /// True for signed `.cvd`/`.cld`: names are reported without
    /// `.UNOFFICIAL`.
    pub official: bool,
    /// The members other than `COPYING` and `.info`, in archive order.
    pub members: Vec<Member>,
}

/// The parsed 512-byte header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CvdHeader {
    /// Build time as text (`22 Jun 2021 21-34 -0400`).
    pub time: String,
    /// Database version.
    pub version: u32,
    /// Number of signatures.
    pub sigs: u32,
    /// Minimum functionality level.
    pub flevel: u32,
    /// MD5 of the body, hex.
    pub md5: String,
    /// The legacy digital signature.
    pub dsig: String,
    /// Builder name.
    pub builder: String,
    /// Build time, Unix seconds.
    pub stime: u64,
}

/// Parses the header (the first 512 bytes, or a `.info` first line).
///
/// # Errors
///
/// [`ContainerError::BadHeader`] when it is not `ClamAV-VDB:` with 9 fields.
pub fn parse_header(raw: &[u8]) -> Result<CvdHeader, ContainerError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| ContainerError::BadHeader("header is not ASCII".into()))?;
    let text = text.trim_end_matches(['\0', ' ', '\n', '\r']);
    let f: Vec<&str> = text.split(':').collect();
    if f.len() != 9 || f[0] != "ClamAV-VDB" {
        return Err(ContainerError::BadHeader(
            "expected `ClamAV-VDB:` followed by 8 `:`-separated fields".into(),
        ));
    }
    let num = |i: usize, what: &str| -> Result<u64, ContainerError> {
        f[i].trim()
            .parse::<u64>()
            .map_err(|_| ContainerError::BadHeader(format!("bad {what} {:?}", f[i])))
    };
    let small = |i: usize, what: &str| -> Result<u32, ContainerError> {
        u32::try_from(num(i, what)?)
            .map_err(|_| ContainerError::BadHeader(format!("{what} out of range")))
    };
    Ok(CvdHeader {
        time: f[1].to_owned(),
        version: small(2, "version")?,
        sigs: small(3, "signature count")?,
        flevel: small(4, "functionality level")?,
        md5: f[5].to_owned(),
        dsig: f[6].to_owned(),
        builder: f[7].to_owned(),
        stime: num(8, "build time")?,
    })
}

fn ndecode(c: u8) -> Option<u32> {
    match c {
        b'a'..=b'z' => Some(u32::from(c - b'a')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// ClamAV's public RSA-2048 modulus for the `DSIG:` line of a container's
/// `.info` member (`INFO_NSTR` in libclamav's `readdb.c`; a public
/// parameter).
pub const CLAMAV_INFO_N: &str = "11088894983048545473659556106627194923928941791795047620591658697413581043322715912172496806525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668378361221524205396631090105151641270857277080310734320951653700508941717419168723942507890702904702707587451621691050754307850383399865346487203798464178537392211402786481359824461197231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809932848454845886971706424360558667862775876072059437703365380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977";

/// ClamAV's public RSA exponent for the `.info` signature (`INFO_ESTR`).
pub const CLAMAV_INFO_E: u32 = 100_002_049;

/// The public keys a container is checked with.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    legacy_n: BigUint,
    legacy_e: u32,
    info_n: BigUint,
    info_e: u32,
}

impl Keys {
    /// ClamAV's published keys.
    pub(crate) fn clamav() -> Keys {
        Keys {
            legacy_n: CLAMAV_DSIG_N.parse().unwrap_or_default(),
            legacy_e: CLAMAV_DSIG_E,
            info_n: CLAMAV_INFO_N.parse().unwrap_or_default(),
            info_e: CLAMAV_INFO_E,
        }
    }
}

/// Decodes ClamAV's signature text: a little-endian base-64 number
/// (character i contributes its value << 6·i, alphabet `a-z A-Z 0-9 + /`),
/// then `c^e mod n` as `len` big-endian bytes. `None` if the text is not
/// in the alphabet, the number is not below `n`, or the result does not
/// fit in `len` bytes.
fn rsa_decode(sig: &str, n: &BigUint, e: u32, len: usize) -> Option<Vec<u8>> {
    if sig.is_empty() || sig.len() > 1024 || *n == BigUint::default() {
        return None;
    }
    let mut c = BigUint::default();
    for (i, &ch) in sig.as_bytes().iter().enumerate() {
        c |= BigUint::from(ndecode(ch)?) << (6 * i);
    }
    if &c >= n {
        return None;
    }
    let m = c.modpow(&BigUint::from(e), n).to_bytes_be();
    if m.len() > len {
        return None;
    }
    let mut out = vec![0u8; len - m.len()];
    out.extend_from_slice(&m);
    Some(out)
}

fn verify_legacy(md5_hex: &str, dsig: &str, n: &BigUint, e: u32) -> bool {
    if md5_hex.len() != 32 {
        return false;
    }
    let Some(md5) = crate::clamav::line::decode_hex(md5_hex) else {
        return false;
    };
    rsa_decode(dsig, n, e, 16).is_some_and(|m| m == md5)
}

/// Verifies ClamAV's legacy digital signature `dsig` of an MD5 given as 32
/// hex digits (the CVD header's check): `dsig^e mod n`, as a big-endian
/// number, must equal the MD5.
pub fn verify_dsig(md5_hex: &str, dsig: &str) -> bool {
    let k = Keys::clamav();
    verify_legacy(md5_hex, dsig, &k.legacy_n, k.legacy_e)
}

/// Length of the `.info` signature block (RSA-2048).
const PSS_LEN: usize = 256;
/// SHA-256 length, also the salt length.
const PSS_HASH: usize = 32;

/// EMSA-PSS verification (RFC 8017 §9.1.2 with SHA-256, MGF1-SHA-256, a
/// 32-byte salt and trailer `0xbc`) of `mhash` against the signature text
/// `dsig`.
fn verify_pss(mhash: &[u8; 32], dsig: &str, n: &BigUint, e: u32) -> bool {
    let Some(em) = rsa_decode(dsig, n, e, PSS_LEN) else {
        return false;
    };
    if em[PSS_LEN - 1] != 0xbc {
        return false;
    }
    let db_len = PSS_LEN - PSS_HASH - 1;
    let (masked, h) = (&em[..db_len], &em[db_len..PSS_LEN - 1]);
    // MGF1: SHA-256(h || 32-bit big-endian counter) blocks.
    let mut mask = Vec::with_capacity(db_len + PSS_HASH);
    let mut counter: u32 = 0;
    while mask.len() < db_len {
        let block = Sha256::new()
            .chain_update(h)
            .chain_update(counter.to_be_bytes())
            .finalize();
        mask.extend_from_slice(&block);
        counter += 1;
    }
    let mut db: Vec<u8> = masked.iter().zip(&mask).map(|(a, b)| a ^ b).collect();
    db[0] &= 0x7f;
    let Some(one) = db.iter().position(|&b| b == 0x01) else {
        return false;
    };
    let salt = &db[one + 1..];
    if salt.len() != PSS_HASH {
        return false;
    }
    let h2 = Sha256::new()
        .chain_update([0u8; 8])
        .chain_update(mhash)
        .chain_update(salt)
        .finalize();
    h2.as_slice() == h
}

/// Verifies the `DSIG:` line of a `.info` member: `mhash` is the SHA-256 of
/// every byte of the `.info` before the `DSIG:` line.
pub fn verify_info_dsig(mhash: &[u8; 32], dsig: &str) -> bool {
    let k = Keys::clamav();
    verify_pss(mhash, dsig, &k.info_n, k.info_e)
}

fn read_tar<R: Read>(r: R, limits: &Limits) -> Result<Vec<Member>, ContainerError> {
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    let mut total: u64 = 0;
    let entries = ar
        .entries()
        .map_err(|e| ContainerError::Archive(e.to_string()))?;
    for e in entries {
        let e = e.map_err(|e| ContainerError::Archive(e.to_string()))?;
        if out.len() >= limits.max_dir_entries {
            return Err(ContainerError::Limit(format!(
                "more than {} members",
                limits.max_dir_entries
            )));
        }
        let name = e
            .path()
            .map_err(|e| ContainerError::Archive(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if name.contains('/') || name.contains('\\') || name == ".." {
            return Err(ContainerError::Archive(format!(
                "member {name:?} is not a flat file name"
            )));
        }
        let left = limits.max_file_size.saturating_sub(total);
        let mut data = Vec::new();
        e.take(left.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| ContainerError::Archive(e.to_string()))?;
        total += data.len() as u64;
        if total > limits.max_file_size {
            return Err(ContainerError::Limit(format!(
                "unpacked content is larger than {} bytes",
                limits.max_file_size
            )));
        }
        out.push(Member { name, data });
    }
    Ok(out)
}

/// Unpacks and verifies a container; `ext` is `cvd`, `cld` or `cud`.
///
/// # Errors
///
/// Any failed integrity check, as a typed [`ContainerError`].
pub fn unpack(bytes: &[u8], ext: &str, limits: &Limits) -> Result<Unpacked, ContainerError> {
    unpack_with_keys(bytes, ext, limits, &Keys::clamav())
}

pub(crate) fn unpack_with_keys(
    bytes: &[u8],
    ext: &str,
    limits: &Limits,
    keys: &Keys,
) -> Result<Unpacked, ContainerError> {
    if bytes.len() < HEADER_LEN {
        return Err(ContainerError::Truncated { len: bytes.len() });
    }
    let header = parse_header(&bytes[..HEADER_LEN])?;
    let body = &bytes[HEADER_LEN..];
    let ext = ext.to_ascii_lowercase();
    // `.cud` is unsigned: ClamAV checks neither its MD5 nor a signature.
    // `.cld` is rewritten by freshclam: only its `.info` signature counts.
    let signed = ext != "cud";
    if ext == "cvd" {
        let actual = hex::encode(Md5::digest(body));
        if !actual.eq_ignore_ascii_case(&header.md5) {
            return Err(ContainerError::Md5Mismatch {
                expected: header.md5.clone(),
                actual,
            });
        }
        if !verify_legacy(&header.md5, &header.dsig, &keys.legacy_n, keys.legacy_e) {
            return Err(ContainerError::BadSignature);
        }
    }
    let members = if body.starts_with(b"COPYING") {
        read_tar(body, limits)?
    } else {
        read_tar(flate2::read::GzDecoder::new(body), limits)?
    };
    let info = members
        .iter()
        .find(|m| m.name.to_ascii_lowercase().ends_with(".info"))
        .ok_or_else(|| ContainerError::BadInfo("no .info member".into()))?;
    let entries = parse_info(&info.data, &header, signed.then_some(keys))?;
    let mut out = Vec::new();
    for m in &members {
        let lower = m.name.to_ascii_lowercase();
        if m.name == "COPYING" || lower.ends_with(".info") {
            continue;
        }
        let Some((size, sha)) = entries.get(&m.name) else {
            return Err(ContainerError::Member {
                member: m.name.clone(),
                reason: "not listed in .info".into(),
            });
        };
        if *size != m.data.len() as u64 {
            return Err(ContainerError::Member {
                member: m.name.clone(),
                reason: format!("size {} differs from .info ({size})", m.data.len()),
            });
        }
        if !hex::encode(Sha256::digest(&m.data)).eq_ignore_ascii_case(sha) {
            return Err(ContainerError::Member {
                member: m.name.clone(),
                reason: "SHA-256 differs from .info".into(),
            });
        }
        out.push(m.clone());
    }
    Ok(Unpacked {
        header,
        official: signed,
        members: out,
    })
}

/// Parses `.info`; with `keys` (signed containers) its `DSIG:` line must be
/// present and verify over every byte before it.
fn parse_info(
    data: &[u8],
    header: &CvdHeader,
    keys: Option<&Keys>,
) -> Result<HashMap<String, (u64, String)>, ContainerError> {
    let text =
        std::str::from_utf8(data).map_err(|_| ContainerError::BadInfo("not UTF-8".into()))?;
    if let Some(keys) = keys {
        let at = if text.starts_with("DSIG:") {
            Some(0)
        } else {
            text.find("\nDSIG:").map(|i| i + 1)
        };
        let Some(at) = at else {
            return Err(ContainerError::BadInfo(
                "digital signature not found".into(),
            ));
        };
        let sig = text[at + 5..]
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches('\r');
        let mhash: [u8; 32] = Sha256::digest(&data[..at]).into();
        if !verify_pss(&mhash, sig, &keys.info_n, keys.info_e) {
            return Err(ContainerError::BadInfo(
                "incorrect digital signature".into(),
            ));
        }
    }
    let mut lines = text.lines();
    let first = lines
        .next()
        .ok_or_else(|| ContainerError::BadInfo("empty".into()))?;
    let ih = parse_header(first.as_bytes())
        .map_err(|e| ContainerError::BadInfo(format!("first line: {e}")))?;
    if ih.version != header.version
        || ih.sigs != header.sigs
        || ih.flevel != header.flevel
        || ih.stime != header.stime
    {
        return Err(ContainerError::BadInfo(
            "version, signature count, level or time differ from the container header".into(),
        ));
    }
    let mut out = HashMap::new();
    for l in lines {
        let l = l.trim_end_matches('\r');
        if l.is_empty() || l.starts_with("DSIG:") {
            continue;
        }
        let f: Vec<&str> = l.split(':').collect();
        let [name, size, sha] = f.as_slice() else {
            return Err(ContainerError::BadInfo(format!("bad line {l:?}")));
        };
        let size = size
            .parse::<u64>()
            .map_err(|_| ContainerError::BadInfo(format!("bad size in {l:?}")))?;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ContainerError::BadInfo(format!("bad SHA-256 in {l:?}")));
        }
        out.insert((*name).to_owned(), (size, (*sha).to_owned()));
    }
    Ok(out)
}

/// Drops `x.cvd`/`x.cld` duplicates, keeping the one with the higher
/// header version (the `.cld` on a tie).
pub(crate) fn drop_older_duplicates(files: Vec<PathBuf>) -> Vec<PathBuf> {
    let version = |p: &PathBuf| -> Option<u32> {
        let mut f = std::fs::File::open(p).ok()?;
        let mut buf = [0u8; HEADER_LEN];
        f.read_exact(&mut buf).ok()?;
        parse_header(&buf).ok().map(|h| h.version)
    };
    let key = |p: &PathBuf| -> Option<(String, String)> {
        let name = p.file_name()?.to_string_lossy().into_owned();
        let (stem, ext) = name.rsplit_once('.')?;
        let ext = ext.to_ascii_lowercase();
        matches!(ext.as_str(), "cvd" | "cld").then(|| (stem.to_owned(), ext))
    };
    let mut drop = Vec::new();
    for a in &files {
        let Some((stem, ext)) = key(a) else { continue };
        if ext != "cvd" {
            continue;
        }
        if let Some(b) = files
            .iter()
            .find(|b| key(b) == Some((stem.clone(), "cld".into())))
        {
            let (va, vb) = (version(a), version(b));
            if va > vb {
                drop.push(b.clone());
            } else {
                drop.push(a.clone());
            }
        }
    }
    files.into_iter().filter(|f| !drop.contains(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from ClamAV's unit_tests/check_clamav.c `dsig_tests[]`
    // (public test data: MD5, signature, expected result).
    const GOOD_A: &str = "60uhCFmiN48J8r6c7coBv9Q1mehAWEGh6GPYA+60VhQcuXfb0iV1O+sCEyMiRXt/iYF6vXtPXHVd6DiuZ4Gfrry7sVQqNTt3o1/KwU1rc0l5FHgX/nC99fdr/fjaFtinMtRnUXHLeu0j8e6HK+7JLBpD37fZ60GC9YY86EclYGe";
    const GOOD_B: &str = "Zh5gmf09Zfj6V4gmRKu/NURzhFiE9VloI7w1G33BgDdGSs0Xhscx6sjPUpFSCPsjOalyS4L8q7RS+NdGvNCsLymiIH6RYItlOZsygFhcGuH4jt15KAaAkvEg2TwmqR8z41nUaMlZ0c8q1MXYCLvQJyFARsfzIxS3PAoN2Y3HPoe";

    #[test]
    fn dsig_vectors() {
        let cases: &[(&str, String, bool)] = &[
            ("ae307614434715274c60854c931a26de", GOOD_A.into(), true),
            ("96b7feb3b2a863846438809fe481906f", GOOD_B.into(), true),
            ("ae307614434715274c60854c931a26de", GOOD_B.into(), false),
            ("96b7feb3b2a863846438809fe481906f", GOOD_A.into(), false),
            ("ae307614434715274060854c931a26de", GOOD_A.into(), false),
            (
                "ae307614434715274c60854c931a26de",
                GOOD_A.replace("fjaFtin", "fjaatin"),
                false,
            ),
            (
                "96b7feb3b2a863846438809fe481906f",
                GOOD_B.replace("MXYCL", "MYYCL"),
                false,
            ),
            ("ge307614434715274c60854c931a26dee", GOOD_A.into(), false),
            (
                "ae307614434715274c60854c931a26de",
                format!("{GOOD_A}e"),
                false,
            ),
            (
                "ae307614434715274c60854c931a26de",
                "60uhCFmiN48J8r6c7coBv9Q1mehAWEGh6GPYA+".into(),
                false,
            ),
        ];
        for (i, (md5, sig, want)) in cases.iter().enumerate() {
            assert_eq!(verify_dsig(md5, sig), *want, "dsig_tests[{i}]");
        }
    }

    #[test]
    fn header_parses() {
        let h = parse_header(b"ClamAV-VDB:22 Jun 2021 21-34 -0400:6:14:81:3e249e00076b0b15bb54ced37be880c7:Dou6:micasnyd:1624412045   ").unwrap();
        assert_eq!(
            (h.version, h.sigs, h.flevel, h.stime),
            (6, 14, 81, 1_624_412_045)
        );
        assert!(parse_header(b"ClamAV-VDB:1:2").is_err());
    }

    // A throwaway key pair generated for these tests only (not ClamAV's):
    // it lets the tests sign containers and check the verifiers end to end.
    const TEST_LEGACY_N: &str = "102788999654890472790209970241449322274783063883458216442089051223440100028213623863325720352468747295946937987894490276947791532084208765905408111459928308596607379569475444450526032476647670374448113200555042256048792608685822825527633580015807644105320342928436850546736043667286572764106261963320754673329";
    const TEST_LEGACY_MD5: &str = "b75a2c61eb9d8d67f8af2730c44b76dd";
    const TEST_LEGACY_SIG: &str = "d0Fqfdu4LAHmwazgyY/wDQjnwI5DEYR6P3EuXaVmRvSisvRD7Ybt2EuG7K9mOdO46ppxuPx8eNfBJre3EJqdRCD2b1Id9kI7j8mFWri6wqHrNeTg8PZsKiot0237lC4ZI5GLFoCyULSwFHqwWd/g1P1tgOhiRUAoPQ00H9GF8Jg";
    const TEST_INFO_N: &str = "18529180742198457976622760785673064792467199449697801434493373220994337794573088924221652783019766177291087073906719999470934716878727744167850959500356955859120394148936173912171663843186168935361573810775171043435681797150099380583472641608126770196888436110263373757856777803765310332795681387087414873667805782233185265365750136041150028633182821689469837164531808115825340749745127177755296731223019109479213421879479282937594428084248224714765105513524062006988555106872771572306962616749435574111518927348113741900939844910716732437822333722267398405027424464234239091745642461222501769384068506753977043818811";
    const TEST_INFO_MHASH: &str =
        "c8d6bd00db98991c2badabd8aedf33bb714e01634fe0fc506f615f35ec9d0dc7";
    const TEST_INFO_SIG: &str = "21vMiJMH0/CX/hvfErOU5DzWa3Tcjj5Zkm3ZpVuWRRcnsSCCP9No7WQLNQSbsNeSrSVINIzZ5AP/ZtXKQujUR+ijEQpKLQ7zEfl/I7bvcjT0/7POtPwigZPASrqnD8+o6zbV8BMUHWir3Acxy9PPp8pLSpbP021QxUx6Dg6r+CW1AaTfvVMpCQDRW+Z4LvM1yQ5wTntHug8gqQZizKtGjdOBODrK0LpXwHNDDR8zMKyHSk8ZTOR3+viUIlsUrtxAp29taWWDs3pwBEzniTfXIkJ2/dha+TfcGSrX969KGqFlzEtvLsor+GezR68Rol3TwcXaIX3o/2I0B8AruHWKBb";
    const TEST_LEGACY_D: &str = "85200945302250396664516401987483575238127995539435824625407671198355512021495817136720990874214729892708932047882449058818440186166364492653231097879219401365129223462533775163062340352140048123909065218043371389586337355629398466760435045558014314866006874427801424914464269966485205554987808816855100881323";
    const TEST_INFO_D: &str = "4937263826215785982380841567150504468212215981346657580789427829661039559750504705458171673516295701498959926787831788214482480223421426547958079088040857032401261949559085371164089611897126071067981475830360537630232067288466514197738911510237113292055683116384636880182263284593381426072644727385999033127069339582306941046161225361230112974362673623304212952428140752083880236893486654483192425235412936617205359800487489511542012213632429699690545107028088900202515535844133167404708941928538250603890524122197329893518183742787378344042134659070227209525745693968356534907523531076733326262784807077674375313953";

    fn test_keys() -> Keys {
        Keys {
            legacy_n: TEST_LEGACY_N.parse().unwrap(),
            legacy_e: CLAMAV_DSIG_E,
            info_n: TEST_INFO_N.parse().unwrap(),
            info_e: CLAMAV_INFO_E,
        }
    }

    fn encode_sig(mut s: BigUint) -> String {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
        let mut out = String::new();
        let zero = BigUint::default();
        while s != zero {
            let d = (&s & BigUint::from(63u32))
                .to_u32_digits()
                .first()
                .copied()
                .unwrap_or(0);
            out.push(ALPHA[d as usize] as char);
            s >>= 6;
        }
        out
    }

    fn sign_legacy(md5_hex: &str) -> String {
        let n: BigUint = TEST_LEGACY_N.parse().unwrap();
        let d: BigUint = TEST_LEGACY_D.parse().unwrap();
        let m = BigUint::from_bytes_be(&crate::clamav::line::decode_hex(md5_hex).unwrap());
        encode_sig(m.modpow(&d, &n))
    }

    fn sign_pss(mhash: &[u8; 32], salt: [u8; 32]) -> String {
        let h: [u8; 32] = Sha256::new()
            .chain_update([0u8; 8])
            .chain_update(mhash)
            .chain_update(salt)
            .finalize()
            .into();
        let db_len = PSS_LEN - PSS_HASH - 1;
        let mut db = vec![0u8; db_len - PSS_HASH - 1];
        db.push(1);
        db.extend_from_slice(&salt);
        let mut mask = Vec::new();
        let mut counter: u32 = 0;
        while mask.len() < db_len {
            mask.extend_from_slice(
                &Sha256::new()
                    .chain_update(h)
                    .chain_update(counter.to_be_bytes())
                    .finalize(),
            );
            counter += 1;
        }
        let mut em: Vec<u8> = db.iter().zip(&mask).map(|(a, b)| a ^ b).collect();
        em[0] &= 0x7f;
        em.extend_from_slice(&h);
        em.push(0xbc);
        let n: BigUint = TEST_INFO_N.parse().unwrap();
        let d: BigUint = TEST_INFO_D.parse().unwrap();
        encode_sig(BigUint::from_bytes_be(&em).modpow(&d, &n))
    }

    #[test]
    fn legacy_verifier_with_a_test_key() {
        let k = test_keys();
        assert!(verify_legacy(
            TEST_LEGACY_MD5,
            TEST_LEGACY_SIG,
            &k.legacy_n,
            k.legacy_e
        ));
        assert!(!verify_legacy(
            "00000000000000000000000000000000",
            TEST_LEGACY_SIG,
            &k.legacy_n,
            k.legacy_e
        ));
        assert_eq!(sign_legacy(TEST_LEGACY_MD5), TEST_LEGACY_SIG);
    }

    #[test]
    fn pss_verifier_with_a_test_key() {
        let k = test_keys();
        let mhash: [u8; 32] = crate::clamav::line::decode_hex(TEST_INFO_MHASH)
            .unwrap()
            .try_into()
            .unwrap();
        assert!(verify_pss(&mhash, TEST_INFO_SIG, &k.info_n, k.info_e));
        let mut other = mhash;
        other[0] ^= 1;
        assert!(!verify_pss(&other, TEST_INFO_SIG, &k.info_n, k.info_e));
        let mut bad = TEST_INFO_SIG.to_owned();
        bad.replace_range(10..11, if &bad[10..11] == "a" { "b" } else { "a" });
        assert!(!verify_pss(&mhash, &bad, &k.info_n, k.info_e));
        // The Rust signer agrees with the independent Python one.
        assert!(verify_pss(
            &mhash,
            &sign_pss(&mhash, [7; 32]),
            &k.info_n,
            k.info_e
        ));
        // ClamAV's real key rejects the test signature.
        assert!(!verify_info_dsig(&mhash, TEST_INFO_SIG));
    }

    /// A real header of ClamAV's daily.cvd version 25784 (public data),
    /// verified with ClamAV's published key.
    #[test]
    fn real_daily_cvd_header_verifies() {
        let h = parse_header(b"ClamAV-VDB:16 Apr 2020 07-58 -0400:25784:2267600:63:92baacd59fd26e6bcf03077add78d209:4Jp9JtGJY6nUk8JHDQQpQeBwlfXqskvhXL+vesDNqAeWCmjbudU+Hy/Nj4/BH2vl70c/R5B/VYY+eqqCQo6o7VGLqLJr/E+19gejqMp/iRcuHrtnLw6V/x3UjO3/qYVSlcJvAjtMI7FK32wjB+Sp8kaS/ZbfaFQp6trRQhisjqf:raynman:1587038339").unwrap();
        assert_eq!((h.version, h.sigs, h.flevel), (25784, 2_267_600, 63));
        assert!(verify_dsig(&h.md5, &h.dsig));
        assert!(!verify_dsig("92baacd59fd26e6bcf03077add78d208", &h.dsig));
    }

    const HDR: &str = "21 Nov 2026 23-20 +0000:5:1:216";
    const STIME: &str = "1795303252";

    /// A container signed with the test keys; `tamper` edits the .info
    /// text after signing.
    fn signed_container(gzip: bool, sign_info: bool, tamper: bool) -> Vec<u8> {
        let ndb = b"Test.Signed:0:*:414243444546\n";
        let mut info = format!(
            "ClamAV-VDB:{HDR}:X:X:tester:{STIME}\ntest.ndb:{}:{}\n",
            ndb.len(),
            hex::encode(Sha256::digest(ndb))
        );
        if sign_info {
            let mhash: [u8; 32] = Sha256::digest(info.as_bytes()).into();
            info.push_str(&format!("DSIG:{}\n", sign_pss(&mhash, [3; 32])));
        }
        if tamper {
            info = info.replacen("tester", "Tester", 1);
        }
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("COPYING", &b"copying\n"[..]),
            ("test.info", info.as_bytes()),
            ("test.ndb", &ndb[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, data).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let body = if gzip {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        } else {
            tar
        };
        let md5 = hex::encode(Md5::digest(&body));
        let dsig = sign_legacy(&md5);
        let mut out = format!("ClamAV-VDB:{HDR}:{md5}:{dsig}:tester:{STIME}").into_bytes();
        out.resize(HEADER_LEN, b' ');
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn signed_cvd_and_cld_load_as_official() {
        let k = test_keys();
        let l = Limits::default();
        let u = unpack_with_keys(&signed_container(true, true, false), "cvd", &l, &k).unwrap();
        assert!(u.official);
        assert_eq!(u.members.len(), 1);
        let u = unpack_with_keys(&signed_container(false, true, false), "cld", &l, &k).unwrap();
        assert!(u.official);
        // With ClamAV's real keys the test signatures fail.
        assert!(matches!(
            unpack(&signed_container(true, true, false), "cvd", &l),
            Err(ContainerError::BadSignature)
        ));
        assert!(matches!(
            unpack(&signed_container(false, true, false), "cld", &l),
            Err(ContainerError::BadInfo(_))
        ));
    }

    #[test]
    fn signed_containers_need_a_valid_info_signature() {
        let k = test_keys();
        let l = Limits::default();
        for ext in ["cvd", "cld"] {
            let gz = ext == "cvd";
            let e = unpack_with_keys(&signed_container(gz, false, false), ext, &l, &k).unwrap_err();
            assert!(
                matches!(e, ContainerError::BadInfo(ref m) if m.contains("not found")),
                "{e}"
            );
            let e = unpack_with_keys(&signed_container(gz, true, true), ext, &l, &k).unwrap_err();
            assert!(
                matches!(e, ContainerError::BadInfo(ref m) if m.contains("incorrect")),
                "{e}"
            );
        }
        // A .cud needs no signature at all.
        let u = unpack_with_keys(&signed_container(true, false, false), "cud", &l, &k).unwrap();
        assert!(!u.official);
    }

    #[test]
    fn cvd_header_signature_is_checked() {
        let k = test_keys();
        let mut b = signed_container(true, true, false);
        // Corrupt one character of the header dsig (field 6).
        let text = String::from_utf8_lossy(&b[..HEADER_LEN]).into_owned();
        let dsig_at = text.match_indices(':').nth(5).unwrap().0 + 1;
        b[dsig_at + 3] = if b[dsig_at + 3] == b'a' { b'b' } else { b'a' };
        assert!(matches!(
            unpack_with_keys(&b, "cvd", &Limits::default(), &k),
            Err(ContainerError::BadSignature)
        ));
    }
}
