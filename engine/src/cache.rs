//! The cross-VM verdict cache: verdicts keyed by content digest or by file
//! identity, each tagged with the database generation (`epoch`) that
//! produced it.
//!
//! Built on `quick_cache` (S3-FIFO eviction, sharded, weighted). The cache
//! is bounded both by entries and by estimated bytes: every entry weighs at
//! least `max_bytes / max_entries`, so neither bound can be exceeded.
//!
//! Keys are 128 bits. [`content_key`] takes 127 bits of the content's
//! SHA-256 and [`file_key`] 127 bits of a SHA-256 over a length-prefixed
//! encoding of the file identity; the remaining bit tells the two domains
//! apart, so a content key can never equal a file key.
//!
//! Scoping (per image id, or sharing turned off by policy) is the caller's
//! choice of `scope` in [`file_key`]; the allow-list and ignore list are
//! re-applied by the caller when a cached detection is served.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use sha2::{Digest, Sha256};

use crate::result::Detection;

/// A 128-bit cache key (see [`content_key`] and [`file_key`]).
pub type Key = [u8; 16];

/// The domain bit (lowest bit of the last byte): 0 for content keys, 1 for
/// file-identity keys.
const FILE_DOMAIN: u8 = 1;

/// The key for content with this SHA-256 digest: its first 16 bytes, with
/// the domain bit cleared.
pub fn content_key(sha256: &[u8; 32]) -> Key {
    let mut k = [0u8; 16];
    k.copy_from_slice(&sha256[..16]);
    k[15] &= !FILE_DOMAIN;
    k
}

/// The key for a file identity: SHA-256 over a length-prefixed encoding of
/// `scope` (the image id, or the VM id when sharing is off), `path`, `size`,
/// `mtime_ns` and `file_id`, truncated to 16 bytes, with the domain bit set.
pub fn file_key(scope: &str, path: &str, size: u64, mtime_ns: i64, file_id: u64) -> Key {
    let mut h = Sha256::new();
    h.update(b"giva-file-key/1\0");
    for s in [scope, path] {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    h.update(size.to_le_bytes());
    h.update(mtime_ns.to_le_bytes());
    h.update(file_id.to_le_bytes());
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k[15] |= FILE_DOMAIN;
    k
}

/// A cached verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CachedVerdict {
    /// Scanned completely, nothing found.
    Clean,
    /// The detections found, and where.
    Infected(Arc<Infection>),
}

/// What an infected file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Infection {
    /// The detections.
    pub detections: Vec<Detection>,
    /// The layer of the first, inside the file (`["mid.zip", "p.exe"]`);
    /// empty for the file's own bytes.
    pub member: Vec<String>,
}

impl CachedVerdict {
    /// An infected verdict for `detections` found in the layer `member`.
    pub fn infected(detections: Vec<Detection>, member: Vec<String>) -> Self {
        CachedVerdict::Infected(Arc::new(Infection { detections, member }))
    }
}

/// Bounds of a [`VerdictCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries held (default 1,000,000).
    pub max_entries: usize,
    /// Most estimated bytes held (default 100 MiB).
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 1_000_000,
            max_bytes: 100 << 20,
        }
    }
}

/// Counters of a [`VerdictCache`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that returned a verdict.
    pub hits: u64,
    /// Lookups that found nothing (stale ones included).
    pub misses: u64,
    /// Lookups that found an entry of another epoch (dropped).
    pub stale: u64,
    /// Entries evicted to stay within the bounds.
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Estimated bytes held now.
    pub bytes: u64,
}

/// The stored value: the epoch and the infection (`None` = clean; the
/// `Arc` niche keeps this 16 bytes).
type Val = (u64, Option<Arc<Infection>>);

/// Estimated resident bytes of one clean entry: key and value (32) plus
/// quick_cache's slot, hash-table and queue overhead (see `DESIGN.md` for
/// the measurement).
const ENTRY_BYTES: u64 = 72;

#[derive(Clone, Debug)]
struct Weigh {
    /// The least weight of an entry: `max_bytes / max_entries`.
    floor: u64,
}

impl Weighter<Key, Val> for Weigh {
    fn weight(&self, _key: &Key, val: &Val) -> u64 {
        let extra = val.1.as_ref().map_or(0, |i| {
            let detections = i
                .detections
                .iter()
                .map(|x| (std::mem::size_of::<Detection>() + x.name.len()) as u64)
                .sum::<u64>();
            let member = i
                .member
                .iter()
                .map(|m| (std::mem::size_of::<String>() + m.len()) as u64)
                .sum::<u64>();
            16 + std::mem::size_of::<Infection>() as u64 + detections + member
        });
        (ENTRY_BYTES + extra).max(self.floor)
    }
}

#[derive(Clone, Debug, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<Key, Val> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _state: &mut Self::RequestState, _key: Key, _val: Val) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The verdict cache: `Send + Sync`, sharded, bounded. Share it in an `Arc`.
pub struct VerdictCache {
    cache: Cache<Key, Val, Weigh, DefaultHashBuilder, CountEvictions>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    evictions: Arc<AtomicU64>,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl VerdictCache {
    /// An empty cache with these bounds (a bound of 0 is treated as 1).
    pub fn new(config: CacheConfig) -> Self {
        let entries = config.max_entries.max(1) as u64;
        let bytes = (config.max_bytes as u64).max(1);
        let floor = (bytes / entries).max(1);
        let evictions = Arc::new(AtomicU64::new(0));
        let cache = Cache::with(
            // quick_cache sizes its tables from this estimate.
            (bytes / floor.max(ENTRY_BYTES)).min(entries) as usize,
            bytes,
            Weigh { floor },
            DefaultHashBuilder::default(),
            CountEvictions(evictions.clone()),
        );
        VerdictCache {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            evictions,
        }
    }

    /// The verdict cached under `key` by database generation `epoch`.
    /// An entry of any other epoch is stale: it is not returned, and it is
    /// dropped.
    pub fn get(&self, key: &Key, epoch: u64) -> Option<CachedVerdict> {
        match self.cache.get(key) {
            Some((e, v)) if e == epoch => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(match v {
                    None => CachedVerdict::Clean,
                    Some(d) => CachedVerdict::Infected(d),
                })
            }
            Some(_) => {
                self.stale.fetch_add(1, Ordering::Relaxed);
                self.misses.fetch_add(1, Ordering::Relaxed);
                // Only if no fresh verdict was stored in between.
                self.cache.remove_if(key, |(e, _)| *e != epoch);
                None
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores `verdict` under `key`, made by database generation `epoch`
    /// (replacing any earlier entry).
    pub fn insert(&self, key: Key, epoch: u64, verdict: CachedVerdict) {
        let v = match verdict {
            CachedVerdict::Clean => None,
            CachedVerdict::Infected(d) => Some(d),
        };
        self.cache.insert(key, (epoch, v));
    }

    /// Removes the entry under `key`, if any.
    pub fn remove(&self, key: &Key) {
        self.cache.remove(key);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.clear();
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.cache.len() as u64,
            bytes: self.cache.weight(),
        }
    }

    /// Heap bytes used by the cache's tables as reported by `quick_cache`
    /// (entries plus hash tables; detection names not included).
    pub fn memory_used(&self) -> usize {
        self.cache.memory_used().total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_small() {
        assert_eq!(std::mem::size_of::<Val>(), 16);
    }
}
