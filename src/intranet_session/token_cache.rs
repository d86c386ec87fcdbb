//! Verified JWTs, remembered: a session cookie is sent with every request, and checking an
//! RS256/ES256 signature costs hundreds of microseconds, so a token that verified is kept —
//! under a keyed hash, never as itself — with the person it names, for at most the configured
//! time and never past its own `exp` (plus leeway). A change of the published key set empties
//! the cache's use: entries carry the key-set generation they were verified under.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::cache::{make_room, CacheCounts, CacheKey, KeyedHash};
use crate::identity::Identity;

/// `[session] token_cache_*`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheSettings {
    /// At most this long per token; zero turns the cache off.
    pub ttl: Duration,
    pub max_entries: usize,
}

struct Verified {
    identity: Arc<Identity>,
    until: Instant,
    born: Instant,
    /// The JWKS generation the token was verified under (`None` without JWKS).
    generation: Option<u64>,
}

pub struct TokenCache {
    settings: TokenCacheSettings,
    hash: KeyedHash,
    counts: CacheCounts,
    map: Mutex<HashMap<CacheKey, Verified>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(settings: TokenCacheSettings) -> Result<Self, String> {
        Ok(TokenCache {
            settings,
            hash: KeyedHash::random()?,
            counts: CacheCounts::default(),
            map: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<CacheKey, Verified>> {
        // Entries are written whole: a panic elsewhere cannot leave one half-made.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The person a token verified for, if it did recently, under this key-set generation.
    pub fn get(&self, token: &str, generation: Option<u64>) -> Option<Arc<Identity>> {
        self.get_at(token, generation, Instant::now())
    }

    /// [`TokenCache::get`] at `now`.
    fn get_at(&self, token: &str, generation: Option<u64>, now: Instant) -> Option<Arc<Identity>> {
        if self.settings.ttl.is_zero() {
            return None;
        }
        let key = self.hash.of(token.as_bytes());
        let found = self
            .lock()
            .get(&key)
            .filter(|hit| hit.until > now && hit.generation == generation)
            .map(|hit| hit.identity.clone());
        match found {
            Some(_) => self.counts.hit(),
            None => self.counts.miss(),
        }
        found
    }

    /// Hits and misses so far.
    pub fn counts(&self) -> &CacheCounts {
        &self.counts
    }

    /// Remembers that `token` verified with `claims` (for its `exp`) as `identity`.
    pub fn put(
        &self,
        token: &str,
        claims: &Map<String, Value>,
        leeway_seconds: u64,
        identity: &Arc<Identity>,
        generation: Option<u64>,
    ) {
        self.put_at(
            token,
            claims,
            leeway_seconds,
            identity,
            generation,
            Instant::now(),
        );
    }

    /// [`TokenCache::put`] at `now`.
    fn put_at(
        &self,
        token: &str,
        claims: &Map<String, Value>,
        leeway_seconds: u64,
        identity: &Arc<Identity>,
        generation: Option<u64>,
        now: Instant,
    ) {
        let Some(valid_for) = remaining(claims, leeway_seconds) else {
            return;
        };
        let lifetime = valid_for.min(self.settings.ttl);
        if lifetime.is_zero() {
            return;
        }
        let key = self.hash.of(token.as_bytes());
        let mut map = self.lock();
        if !map.contains_key(&key) {
            make_room(
                &mut map,
                self.settings.max_entries,
                |v| v.until <= now || v.generation != generation,
                |v| Some(v.born),
            );
        }
        map.insert(
            key,
            Verified {
                identity: identity.clone(),
                until: now + lifetime,
                born: now,
                generation,
            },
        );
    }
}

/// How long until the token's `exp` (plus leeway) passes; `None` without a numeric `exp`.
fn remaining(claims: &Map<String, Value>, leeway_seconds: u64) -> Option<Duration> {
    let exp = claims.get("exp")?.as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(
        exp.saturating_add(leeway_seconds).saturating_sub(now),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(exp_in: i64) -> Map<String, Value> {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        match json!({ "sub": "a", "exp": now + exp_in }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn cache(ttl: u64) -> TokenCache {
        TokenCache::new(TokenCacheSettings {
            ttl: Duration::from_secs(ttl),
            max_entries: 100,
        })
        .unwrap()
    }

    fn ada() -> Arc<Identity> {
        Arc::new(Identity {
            id: "a".into(),
            ..Identity::default()
        })
    }

    #[test]
    fn a_verified_token_is_remembered_for_its_generation_only() {
        let c = cache(60);
        c.put("t1", &claims(600), 0, &ada(), Some(3));
        assert_eq!(
            c.get("t1", Some(3)).map(|i| i.id.clone()),
            Some("a".to_string())
        );
        assert!(c.get("t1", Some(4)).is_none(), "keys changed since");
        assert!(c.get("t2", Some(3)).is_none());
    }

    #[test]
    fn an_entry_lasts_the_ttl_or_until_exp_whichever_comes_first() {
        let c = cache(60);
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        c.put_at("long", &claims(3600), 0, &ada(), None, t0);
        assert!(c.get_at("long", None, t0 + secs(59)).is_some());
        assert!(c.get_at("long", None, t0 + secs(60)).is_none(), "the ttl");
        c.put_at("short", &claims(30), 0, &ada(), None, t0);
        assert!(c.get_at("short", None, t0 + secs(28)).is_some());
        assert!(c.get_at("short", None, t0 + secs(31)).is_none(), "its exp");
        c.put_at("leeway", &claims(30), 10, &ada(), None, t0);
        assert!(
            c.get_at("leeway", None, t0 + secs(38)).is_some(),
            "exp + leeway"
        );
        assert!(c.get_at("leeway", None, t0 + secs(41)).is_none());
    }

    #[test]
    fn never_past_exp_plus_leeway_and_off_when_ttl_is_zero() {
        let c = cache(60);
        c.put("expired", &claims(-10), 5, &ada(), None);
        assert!(c.get("expired", None).is_none());
        c.put("in-leeway", &claims(-10), 60, &ada(), None);
        assert!(c.get("in-leeway", None).is_some());
        let mut no_exp = claims(600);
        no_exp.remove("exp");
        c.put("no-exp", &no_exp, 0, &ada(), None);
        assert!(c.get("no-exp", None).is_none());
        let off = cache(0);
        off.put("t", &claims(600), 0, &ada(), None);
        assert!(off.get("t", None).is_none());
    }
}
