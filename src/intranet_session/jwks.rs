//! Signing keys published by the intranet's identity provider at a JWKS URL.
//!
//! Fetched at start (the proxy's listeners may wait for it), cached for the response's
//! `Cache-Control: max-age` within bounds, refreshed in the background before they expire,
//! refetched when a token names an unknown `kid` — at most once per cooldown, so a flood of
//! made-up `kid`s cannot hammer the provider — and kept when the provider is down. Only
//! asymmetric signing keys are taken: an HMAC algorithm is never checked against a published
//! key, so key confusion stays impossible.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::header::CACHE_CONTROL;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use crate::outbound::{read_capped, FetchError};

/// A key set larger than this is refused (real ones are a few KiB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// At most this many keys are kept from one set.
const MAX_KEYS: usize = 64;
/// Retries after a failed scheduled fetch start here and double up to the cooldown.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// `[session.jwks]`, validated. `Debug` shows the URL redacted (it may carry a credential).
#[derive(Clone, PartialEq)]
pub struct JwksSettings {
    pub url: url::Url,
    /// How long keys are kept when the response has no `max-age`.
    pub cache: Duration,
    /// Bounds on a response's `max-age`.
    pub min_cache: Duration,
    pub max_cache: Duration,
    /// At most one refetch for an unknown `kid` per this long.
    pub unknown_kid_cooldown: Duration,
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// How long the proxy's listeners wait at start for the first keys (zero: not at all).
    pub startup_wait: Duration,
}

impl fmt::Debug for JwksSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSettings")
            .field("url", &crate::config::redacted_url(&self.url))
            .field("cache", &self.cache)
            .field("min_cache", &self.min_cache)
            .field("max_cache", &self.max_cache)
            .field("unknown_kid_cooldown", &self.unknown_kid_cooldown)
            .field("timeout", &self.timeout)
            .field("startup_wait", &self.startup_wait)
            .finish()
    }
}

/// One published signing key.
pub struct SigningKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// The key's own `alg`, when it names one: the token must then use exactly it.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl SigningKey {
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    fetched: Instant,
    ttl: Duration,
    /// Bumped on every successful fetch; tells a waiting request that new keys arrived.
    generation: u64,
}

/// What the provider's status looks like, for `readyz` and the logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JwksStatus {
    pub loaded: bool,
    pub keys: usize,
    /// Seconds since the keys in use were fetched.
    pub age_seconds: Option<u64>,
    pub fetches: u64,
    pub failures: u64,
    /// The last fetch's error, while the provider keeps failing.
    pub last_error: Option<String>,
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// No key with this `kid` (after a refetch, or within the cooldown).
    Unknown,
    /// No keys were ever loaded: the provider has not answered since start.
    NotLoaded,
}

/// The cached key set of one JWKS URL.
pub struct Jwks {
    settings: JwksSettings,
    http: reqwest::Client,
    current: ArcSwapOption<KeySet>,
    /// Serialises fetches (one in flight at a time) and remembers the last unknown-`kid` one.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &crate::config::redacted_url(&self.settings.url))
            .finish_non_exhaustive()
    }
}

impl Jwks {
    pub fn new(settings: JwksSettings) -> Result<Self, String> {
        let http = crate::outbound::client("JWKS", settings.timeout, None, 3)?;
        Ok(Jwks {
            settings,
            http,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// The key with this `kid` that may verify an `alg` token. An unknown `kid` triggers one
    /// refetch, unless one already ran within the cooldown.
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<SigningKey>, KeyMiss> {
        let seen = self.current.load_full();
        if let Some(key) = seen.as_deref().and_then(|set| find(set, kid, alg)) {
            return Ok(key);
        }
        let seen_generation = seen.as_ref().map(|s| s.generation);
        self.refetch_for_unknown_kid(seen_generation).await;
        match self.current.load_full() {
            None => Err(KeyMiss::NotLoaded),
            Some(set) => find(&set, kid, alg).ok_or(KeyMiss::Unknown),
        }
    }

    /// Bumped on every successful fetch (`None` before the first).
    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    pub fn generation(&self) -> Option<u64> {
        self.current.load().as_ref().map(|s| s.generation)
    }

    /// Every key that may verify an `alg` token, for tokens without a `kid`.
    pub fn keys_for(&self, alg: Algorithm) -> Result<Vec<Arc<SigningKey>>, KeyMiss> {
        let set = self.current.load_full().ok_or(KeyMiss::NotLoaded)?;
        Ok(set.keys.iter().filter(|k| k.fits(alg)).cloned().collect())
    }

    /// Takes `previous`'s keys when both read the same URL and this one has none yet (a
    /// reload: tokens keep verifying while the new config's refresher takes over).
    pub fn adopt_keys(&self, previous: &Jwks) {
        if self.settings.url == previous.settings.url && self.current.load().is_none() {
            self.current.store(previous.current.load_full());
        }
    }

    /// The URL the keys come from.
    /// The key-set URL as logs and metrics show it (no credential, no query).
    pub fn url(&self) -> String {
        crate::config::redacted_url(&self.settings.url)
    }

    pub fn status(&self) -> JwksStatus {
        let set = self.current.load_full();
        JwksStatus {
            loaded: set.is_some(),
            keys: set.as_ref().map_or(0, |s| s.keys.len()),
            age_seconds: set.as_ref().map(|s| s.fetched.elapsed().as_secs()),
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    async fn refetch_for_unknown_kid(&self, seen_generation: Option<u64>) {
        let mut last = self.fetching.lock().await;
        let now_generation = self.current.load().as_ref().map(|s| s.generation);
        if now_generation != seen_generation {
            return; // someone else fetched while this request waited
        }
        if last.is_some_and(|at| at.elapsed() < self.settings.unknown_kid_cooldown) {
            return;
        }
        *last = Some(Instant::now());
        let _ = self
            .fetch_and_store("a token names an unknown key id")
            .await;
    }

    /// Fetches now (waiting for a fetch already running), as the scheduled refresh does.
    pub async fn refresh(&self) -> Result<(), String> {
        let _guard = self.fetching.lock().await;
        self.fetch_and_store("scheduled refresh").await
    }

    async fn fetch_and_store(&self, why: &str) -> Result<(), String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let url = crate::config::redacted_url(&self.settings.url);
        match self.fetch().await {
            Ok((keys, ttl)) => {
                let previous = self.current.load_full();
                let generation = previous.as_ref().map_or(1, |s| s.generation + 1);
                let kids: Vec<&str> = keys
                    .iter()
                    .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
                    .collect();
                tracing::info!(
                    target: "handoff::session",
                    "JWKS {url}: {} signing keys [{}] ({why}); next refresh in {} s",
                    keys.len(),
                    kids.join(", "),
                    refresh_delay(ttl).as_secs()
                );
                self.current.store(Some(Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                    ttl,
                    generation,
                })));
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                match self.current.load_full() {
                    Some(set) => tracing::warn!(
                        target: "handoff::session",
                        "JWKS {url} failed ({why}): {e}; still using the {} keys fetched {} s ago",
                        set.keys.len(),
                        set.fetched.elapsed().as_secs()
                    ),
                    None => tracing::error!(
                        target: "handoff::session",
                        "JWKS {url} failed ({why}): {e}; no keys loaded yet, so tokens signed \
                         with published keys cannot be verified"
                    ),
                }
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Arc<SigningKey>>, Duration), String> {
        let response = self
            .http
            .get(self.settings.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(e).to_string())?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status(status).to_string());
        }
        let ttl = self.ttl(response.headers().get(CACHE_CONTROL));
        let body = read_capped(response, MAX_JWKS_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let keys = parse_key_set(&body)?;
        Ok((keys, ttl))
    }

    fn ttl(&self, cache_control: Option<&http::HeaderValue>) -> Duration {
        let s = &self.settings;
        cache_control
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map_or(s.cache, |age| age.clamp(s.min_cache, s.max_cache))
    }

    /// How long until the next scheduled fetch.
    fn next_fetch_in(&self, failures_in_a_row: u32) -> Duration {
        if failures_in_a_row > 0 {
            let backoff = FIRST_RETRY.saturating_mul(1 << failures_in_a_row.min(16));
            return backoff.min(self.settings.unknown_kid_cooldown.max(FIRST_RETRY));
        }
        match self.current.load_full() {
            Some(set) => refresh_delay(set.ttl).saturating_sub(set.fetched.elapsed()),
            None => FIRST_RETRY,
        }
    }
}

/// Keys are refetched when three quarters of their lifetime has passed.
fn refresh_delay(ttl: Duration) -> Duration {
    ttl.mul_f64(0.75)
}

fn find(set: &KeySet, kid: &str, alg: Algorithm) -> Option<Arc<SigningKey>> {
    set.keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid) && k.fits(alg))
        .cloned()
}

/// `max-age=N` from a Cache-Control value; `no-cache`/`no-store` count as zero.
fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

/// Parses a JWKS body. Keys that are not asymmetric signing keys, or that this build cannot
/// use, are skipped (a provider may publish encryption keys too); a set with no usable key is
/// an error, so the keys in use are kept.
fn parse_key_set(body: &[u8]) -> Result<Vec<Arc<SigningKey>>, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not a JWKS document ({e})"))?;
    let total = raw.keys.len();
    let keys: Vec<Arc<SigningKey>> = raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| signing_key(&jwk))
        .take(MAX_KEYS)
        .map(Arc::new)
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "the JWKS document holds {total} keys but no usable signing key \
             (RSA, EC or Ed25519 with `use` = \"sig\" or no `use`)"
        ));
    }
    Ok(keys)
}

fn signing_key(jwk: &Jwk) -> Option<SigningKey> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
        // Symmetric (`oct`) keys are never taken from a published set.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => match format!("{a:?}").parse::<Algorithm>() {
            Ok(alg) if alg.family() == family => Some(alg),
            _ => return None,
        },
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(SigningKey {
        kid: jwk.common.key_id.clone(),
        family,
        alg,
        key,
    })
}

/// Keeps the keys fresh until `stop` changes (or its sender goes). `ready` (what the proxy's
/// listeners wait for) is called after the first fetch, or after `startup_wait`, or at once
/// when keys are already there (adopted from the config a reload replaced).
pub async fn keep_fresh(
    jwks: Arc<Jwks>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ready: impl FnOnce(),
) {
    let wait = jwks.settings.startup_wait;
    let loaded = if jwks.generation().is_some() {
        ready();
        true
    } else if wait.is_zero() {
        ready();
        jwks.refresh().await.is_ok()
    } else {
        let loaded = matches!(tokio::time::timeout(wait, jwks.refresh()).await, Ok(Ok(())));
        if !loaded {
            tracing::warn!(
                target: "handoff::session",
                "starting without JWKS keys after waiting {} ms; readyz says not ready \
                 until they load",
                wait.as_millis()
            );
        }
        ready();
        loaded
    };
    let mut failures = u32::from(!loaded);
    loop {
        let delay = jwks.next_fetch_in(failures);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        failures = match jwks.refresh().await {
            Ok(()) => 0,
            Err(_) => failures.saturating_add(1),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("MAX-AGE=\"7\""), Some(Duration::from_secs(7)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=-1"), None);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_taken() {
        let body = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"EC","crv":"P-256","use":"enc","kid":"enc",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}"#;
        let err = parse_key_set(body).err().unwrap_or_default();
        assert!(
            err.contains("holds 2 keys but no usable signing key"),
            "{err}"
        );
    }

    #[test]
    fn a_key_with_an_alg_only_fits_that_alg() {
        let body = br#"{"keys":[
            {"kty":"EC","crv":"P-256","alg":"ES256","kid":"ec",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","alg":"RS256","kid":"mismatched",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            "not a key", {"kty":"RSA"}
        ]}"#;
        let keys = parse_key_set(body).unwrap_or_default();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].fits(Algorithm::ES256));
        assert!(!keys[0].fits(Algorithm::ES384));
        assert!(!keys[0].fits(Algorithm::RS256));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        for body in [&b"<html>"[..], b"{}", b"{\"keys\":{}}", b""] {
            assert!(parse_key_set(body).is_err());
        }
    }
}
