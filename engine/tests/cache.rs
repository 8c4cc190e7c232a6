//! The verdict cache: keys, epochs, bounds and counters.

use std::sync::Arc;

use giva_engine::cache::{
    CacheConfig, CacheStats, CachedVerdict, Key, VerdictCache, content_key, file_key,
};
use giva_engine::{Detection, DetectionKind};

fn key(i: u64) -> Key {
    let mut sha = [0u8; 32];
    sha[..8].copy_from_slice(&i.to_le_bytes());
    sha[8..16].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    content_key(&sha)
}

fn infected(name: &str) -> CachedVerdict {
    CachedVerdict::infected(
        vec![Detection {
            name: name.into(),
            kind: DetectionKind::Body,
        }],
        Vec::new(),
    )
}

#[test]
fn stores_and_returns_verdicts() {
    let c = VerdictCache::new(CacheConfig::default());
    c.insert(key(1), 7, CachedVerdict::Clean);
    c.insert(key(2), 7, infected("Eicar"));
    assert_eq!(c.get(&key(1), 7), Some(CachedVerdict::Clean));
    assert_eq!(c.get(&key(2), 7), Some(infected("Eicar")));
    assert_eq!(c.get(&key(3), 7), None);
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.stale, s.entries), (2, 1, 0, 2));
}

#[test]
fn a_new_database_epoch_makes_entries_stale() {
    let c = VerdictCache::new(CacheConfig::default());
    c.insert(key(1), 1, CachedVerdict::Clean);
    c.insert(key(2), 1, infected("X"));
    assert_eq!(c.get(&key(1), 2), None);
    assert_eq!(c.get(&key(2), 2), None);
    let s = c.stats();
    assert_eq!((s.stale, s.misses, s.hits), (2, 2, 0));
    // Dropped: not even the old epoch finds them any more.
    assert_eq!(c.get(&key(1), 1), None);
    assert_eq!(c.stats().entries, 0);
    // A fresh verdict under the new epoch.
    c.insert(key(1), 2, CachedVerdict::Clean);
    assert_eq!(c.get(&key(1), 2), Some(CachedVerdict::Clean));
}

#[test]
fn content_and_file_keys_never_collide() {
    let sha = [0xffu8; 32];
    let ck = content_key(&sha);
    assert_eq!(&ck[..15], &sha[..15]);
    assert_eq!(ck[15] & 1, 0);
    let fk = file_key("img", "/a", 1, 2, 3);
    assert_eq!(fk[15] & 1, 1);
    assert_ne!(ck, fk);
    assert_eq!(fk, file_key("img", "/a", 1, 2, 3));
    // Every field counts, and the encoding is length-prefixed.
    let others = [
        file_key("img2", "/a", 1, 2, 3),
        file_key("img", "/b", 1, 2, 3),
        file_key("img", "/a", 9, 2, 3),
        file_key("img", "/a", 1, 9, 3),
        file_key("img", "/a", 1, 2, 9),
        file_key("im", "g/a", 1, 2, 3),
    ];
    for o in others {
        assert_ne!(o, fk);
    }
    // The same content under a file key and a content key: two entries.
    let c = VerdictCache::new(CacheConfig::default());
    c.insert(ck, 1, CachedVerdict::Clean);
    assert_eq!(c.get(&fk, 1), None);
}

#[test]
fn bounded_by_entries() {
    let c = VerdictCache::new(CacheConfig {
        max_entries: 1000,
        max_bytes: 100 << 20,
    });
    for i in 0..20_000 {
        c.insert(key(i), 1, CachedVerdict::Clean);
    }
    let s = c.stats();
    assert!(s.entries <= 1000, "{s:?}");
    assert!(s.entries >= 500, "{s:?}");
    assert!(s.evictions >= 19_000, "{s:?}");
}

#[test]
fn bounded_by_bytes() {
    let c = VerdictCache::new(CacheConfig {
        max_entries: 1_000_000,
        max_bytes: 64 << 10,
    });
    for i in 0..20_000 {
        let v = if i % 2 == 0 {
            CachedVerdict::Clean
        } else {
            infected(&"N".repeat(200))
        };
        c.insert(key(i), 1, v);
    }
    let s: CacheStats = c.stats();
    assert!(s.bytes <= 64 << 10, "{s:?}");
    assert!(s.entries > 100, "{s:?}");
    assert!(s.evictions > 0, "{s:?}");
}

#[test]
fn shared_between_threads() {
    let c = Arc::new(VerdictCache::new(CacheConfig::default()));
    let ts: Vec<_> = (0..4u64)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    c.insert(key(t * 1000 + i), 3, CachedVerdict::Clean);
                }
                (0..1000)
                    .filter(|&i| c.get(&key(t * 1000 + i), 3).is_some())
                    .count()
            })
        })
        .collect();
    for t in ts {
        assert_eq!(t.join().unwrap(), 1000);
    }
    assert_eq!(c.stats().entries, 4000);
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The target: 1,000,000 entries in at most 100 MB. Run with
/// `cargo test -p giva-engine --release --test cache -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: allocates ~100 MB"]
fn one_million_clean_entries_fit_in_100_mb() {
    let before = rss_bytes();
    let c = VerdictCache::new(CacheConfig::default());
    for i in 0..1_000_000 {
        c.insert(key(i), 1, CachedVerdict::Clean);
    }
    let after = rss_bytes();
    let s = c.stats();
    let t = std::time::Instant::now();
    let mut hits = 0;
    for i in 0..1_000_000 {
        hits += usize::from(c.get(&key(i), 1).is_some());
    }
    let per_get = t.elapsed() / 1_000_000;
    let delta = after.saturating_sub(before);
    eprintln!(
        "1M clean inserts: entries {} evictions {} weight {} B; quick_cache memory_used {} B; \
         RSS delta {} B ({:.1} B/entry); {hits} hits, {per_get:?}/get",
        s.entries,
        s.evictions,
        s.bytes,
        c.memory_used(),
        delta,
        delta as f64 / s.entries as f64,
    );
    assert!(s.entries >= 990_000, "{s:?}");
    assert!(delta <= 100_000_000, "RSS delta {delta}");
}
