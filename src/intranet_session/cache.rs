//! What the session caches share: keys that are keyed hashes of a credential (so the raw
//! cookie or token is never kept, logged or counted), and making room in a bounded map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// How a cache has been answering, for the metrics (`handoff_session_cache_total`).
#[derive(Debug, Default)]
pub struct CacheCounts {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    refused: AtomicU64,
}

impl CacheCounts {
    pub fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }

    pub fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    /// Answered from an entry past its lifetime (stale-while-revalidate, or standing in for
    /// a failed call).
    pub fn stale(&self) {
        self.stale.fetch_add(1, Relaxed);
    }

    /// Not looked up: too many lookups of new credentials in flight.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// `(result, count)` for `hit`, `miss`, `stale` and `refused`.
    pub fn snapshot(&self) -> [(&'static str, u64); 4] {
        [
            ("hit", self.hits.load(Relaxed)),
            ("miss", self.misses.load(Relaxed)),
            ("stale", self.stale.load(Relaxed)),
            ("refused", self.refused.load(Relaxed)),
        ]
    }
}

/// A cache key: BLAKE3 in its keyed mode (a MAC) of the credential under a per-process random
/// key. The credential itself is never kept; an attacker who never sees the keys cannot make
/// another credential land on a remembered one (2^-256 a try). BLAKE3 rather than HMAC-SHA256:
/// the same guarantee at a fraction of the cost for a token of a few hundred bytes, which is
/// hashed on every request (BENCHMARKS.md, issue 18).
pub type CacheKey = [u8; 32];

/// Hashes credentials into [`CacheKey`]s.
pub struct KeyedHash([u8; 32]);

impl KeyedHash {
    /// A hasher with a fresh random key.
    pub fn random() -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for a cache key: {e}"))?;
        Ok(KeyedHash(key))
    }

    pub fn of(&self, credential: &[u8]) -> CacheKey {
        *blake3::keyed_hash(&self.0, credential).as_bytes()
    }
}

/// Before a new entry goes into `map`, which may hold `max` entries: when full, drops what
/// `outlived` says is of no more use; if that is not enough, the oldest tenth by `born`
/// (entries whose `born` is `None`, e.g. with a call in flight, stay). Amortised, an insert
/// stays O(1).
pub fn make_room<V>(
    map: &mut HashMap<CacheKey, V>,
    max: usize,
    outlived: impl Fn(&V) -> bool,
    born: impl Fn(&V) -> Option<Instant>,
) {
    if map.len() < max {
        return;
    }
    map.retain(|_, v| !outlived(v));
    let target = max.saturating_sub(max / 10 + 1);
    if map.len() > target {
        let mut ages: Vec<(Instant, CacheKey)> = map
            .iter()
            .filter_map(|(k, v)| born(v).map(|at| (at, *k)))
            .collect();
        ages.sort_unstable_by_key(|(at, _)| *at);
        let excess = map.len() - target;
        for (_, k) in ages.iter().take(excess) {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_depend_on_the_credential_and_the_process_key() {
        let a = KeyedHash::random().unwrap();
        let b = KeyedHash::random().unwrap();
        assert_eq!(a.of(b"sid=1"), a.of(b"sid=1"));
        assert_ne!(a.of(b"sid=1"), a.of(b"sid=2"));
        assert_ne!(a.of(b"sid=1"), b.of(b"sid=1"));
    }

    #[test]
    fn a_full_map_drops_the_outlived_then_the_oldest() {
        let h = KeyedHash::random().unwrap();
        let start = Instant::now();
        let mut map: HashMap<CacheKey, (u32, bool)> = HashMap::new();
        for i in 0..20u32 {
            // (age order, outlived?) — every fifth is outlived.
            map.insert(h.of(&i.to_le_bytes()), (i, i % 5 == 0));
        }
        let at = |i: u32| start + Duration::from_millis(u64::from(i));
        make_room(&mut map, 20, |v| v.1, |v| Some(at(v.0)));
        // 4 outlived gone (16 left), then down to 20 - 3 = 17: nothing more to drop.
        assert_eq!(map.len(), 16);
        assert!(map.values().all(|v| !v.1));
        make_room(&mut map, 10, |v| v.1, |v| Some(at(v.0)));
        assert_eq!(map.len(), 8);
        let mut kept: Vec<u32> = map.values().map(|v| v.0).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            vec![11, 12, 13, 14, 16, 17, 18, 19],
            "the newest are kept"
        );
        // Not full: untouched.
        make_room(&mut map, 100, |_| true, |_| None);
        assert_eq!(map.len(), 8);
    }
}
