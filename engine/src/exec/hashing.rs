//! Streaming whole-file hashes, computed only for the algorithms the
//! database may need.

use giva_signatures::HashAlgo;
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
