//! Streaming hashes of whole files and of PE sections, computed only for
//! the algorithms the database may need.

use giva_signatures::{Database, ExeInfo, ExeKind, HashAlgo, HashScope};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The running hashes of one scan.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hashers {
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

impl Hashers {
    /// Starts the algorithms for which `want` is true.
    pub fn start(want: impl Fn(HashAlgo) -> bool) -> Self {
        Hashers {
            md5: want(HashAlgo::Md5).then(Md5::new),
            sha1: want(HashAlgo::Sha1).then(Sha1::new),
            sha256: want(HashAlgo::Sha256).then(Sha256::new),
        }
    }

    /// True if any algorithm runs.
    pub fn any(&self) -> bool {
        self.md5.is_some() || self.sha1.is_some() || self.sha256.is_some()
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
    }

    /// The digests, in [`HashAlgo::ALL`] order.
    pub fn finish(&mut self) -> Vec<(HashAlgo, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(h) = self.md5.take() {
            out.push((HashAlgo::Md5, h.finalize().to_vec()));
        }
        if let Some(h) = self.sha1.take() {
            out.push((HashAlgo::Sha1, h.finalize().to_vec()));
        }
        if let Some(h) = self.sha256.take() {
            out.push((HashAlgo::Sha256, h.finalize().to_vec()));
        }
        out
    }
}

/// Computes the digest of `data` in one go (used by the reference matcher).
pub(crate) fn digest(algo: HashAlgo, data: &[u8]) -> Vec<u8> {
    match algo {
        HashAlgo::Md5 => Md5::digest(data).to_vec(),
        HashAlgo::Sha1 => Sha1::digest(data).to_vec(),
        HashAlgo::Sha256 => Sha256::digest(data).to_vec(),
    }
}

/// A PE section's size and digests.
pub(crate) type SectionDigests = (u64, Vec<(HashAlgo, Vec<u8>)>);

/// Sections of a PE larger than this are not hashed (ClamAV's limit).
const MAX_HASHED_SECTION: u64 = 1 << 30;

/// The running hashes of a PE's sections (`.mdb`, `.msb`): for each
/// section the file holds bytes of, the algorithms the database has a
/// signature of its size for. The input's bytes pass by once, in order,
/// from its first byte.
#[derive(Clone, Debug, Default)]
pub(crate) struct SectionHashes {
    /// `(start, end, hashers)` of each section hashed.
    parts: Vec<(u64, u64, Hashers)>,
}

impl SectionHashes {
    /// The sections of `exe` that need hashing for `db` (a PE's only).
    pub fn start(exe: &ExeInfo, db: &Database) -> Self {
        if !matches!(exe.kind, ExeKind::Pe32 | ExeKind::Pe64)
            || db.scoped_hash_count(HashScope::Section) == 0
        {
            return SectionHashes::default();
        }
        let parts = exe
            .sections
            .iter()
            .filter(|s| s.size != 0 && s.size <= MAX_HASHED_SECTION)
            .filter_map(|s| {
                let h = Hashers::start(|a| db.needs_scoped_hash(HashScope::Section, a, s.size));
                h.any().then(|| (s.raw, s.raw + s.size, h))
            })
            .collect();
        SectionHashes { parts }
    }

    /// True if any section is hashed.
    pub fn any(&self) -> bool {
        !self.parts.is_empty()
    }

    /// The input's bytes `piece`, the first of which is at `pos`.
    pub fn update(&mut self, pos: u64, piece: &[u8]) {
        let end = pos + piece.len() as u64;
        for (lo, hi, h) in &mut self.parts {
            let (a, b) = ((*lo).max(pos), (*hi).min(end));
            if a < b {
                h.update(&piece[(a - pos) as usize..(b - pos) as usize]);
            }
        }
    }

    /// Each section's size and digests.
    pub fn finish(&mut self) -> Vec<SectionDigests> {
        std::mem::take(&mut self.parts)
            .into_iter()
            .map(|(lo, hi, mut h)| (hi - lo, h.finish()))
            .collect()
    }
}
