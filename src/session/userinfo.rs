//! Opaque session cookies, recognised by asking the intranet's userinfo endpoint.
//!
//! The endpoint gets the session cookie (only the configured cookies, nothing else from the
//! request) and answers 200 with the person as JSON, or 401/403 for "not signed in". Answers
//! are cached under a keyed hash of the cookies — the raw value is never kept, logged or
//! counted — with a positive and a negative lifetime. Concurrent requests with the same new
//! cookie make one call between them (single flight); a just-expired entry is served while one
//! refresh runs (stale-while-revalidate); when the endpoint is down or slow the configured
//! failure mode decides between a 503 and a bounded stale answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::header::{ACCEPT, COOKIE};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::cache::{make_room, CacheCounts, CacheKey, KeyedHash};
use super::fetch::{read_capped, FetchError};
use crate::identity::{ClaimMapping, Identity};

/// `[session.userinfo]`, validated.
#[derive(Debug, Clone)]
pub struct UserinfoSettings {
    pub url: url::Url,
    /// The cookies sent to the endpoint (and hashed into the cache key).
    pub cookies: Vec<String>,
    pub timeout: Duration,
    /// How long a "this is Ada" answer is used.
    pub cache: Duration,
    /// How long a "not signed in" answer is used.
    pub negative_cache: Duration,
    /// How long past `cache` an entry is still served while one refresh runs.
    pub stale_while_revalidate: Duration,
    pub on_error: OnError,
    /// With `open_with_stale`: how long past `cache` an entry may stand in for a failed call.
    pub max_stale: Duration,
    pub max_entries: usize,
    pub max_body_bytes: usize,
}

/// What a request sees when the endpoint is down, slow or answers garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// A 503 page: nobody is let in on a guess.
    Closed,
    /// The person's last known answer, if it is at most `max_stale` past its lifetime.
    OpenWithStale,
}

/// What the endpoint said about a cookie.
#[derive(Debug, Clone)]
pub enum Answer {
    Person(Arc<Identity>),
    /// 401 or 403: the intranet does not recognise this session.
    NotSignedIn,
}

/// Why a lookup gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// None of the configured cookies is in the request.
    NoCookie,
    /// The endpoint failed and no stale answer may stand in (see [`OnError`]).
    Unavailable,
}

type Flight = Arc<OnceCell<Result<Answer, FetchError>>>;

struct Entry {
    answer: Answer,
    fetched: Instant,
}

/// One cookie's place in the cache: its last answer, and the call in flight for it, if any.
#[derive(Default)]
struct Slot {
    entry: Option<Entry>,
    flight: Option<Flight>,
}

/// The userinfo client and its cache. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Userinfo {
    inner: Arc<Inner>,
}

struct Inner {
    settings: UserinfoSettings,
    mapping: ClaimMapping,
    http: reqwest::Client,
    hash: KeyedHash,
    cache: Mutex<HashMap<CacheKey, Slot>>,
    counts: CacheCounts,
}

impl fmt::Debug for Userinfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Userinfo")
            .field("url", &self.inner.settings.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Userinfo {
    pub fn new(settings: UserinfoSettings, mapping: ClaimMapping) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the userinfo HTTP client: {e}"))?;
        let hash = KeyedHash::random()?;
        Ok(Userinfo {
            inner: Arc::new(Inner {
                settings,
                mapping,
                http,
                hash,
                cache: Mutex::new(HashMap::new()),
                counts: CacheCounts::default(),
            }),
        })
    }

    /// Hits, misses and stale answers so far.
    pub fn counts(&self) -> &CacheCounts {
        &self.inner.counts
    }

    /// Who the session cookies in `headers` belong to.
    pub async fn lookup(&self, headers: &http::HeaderMap) -> Result<Answer, LookupError> {
        let cookies = self.cookie_header(headers).ok_or(LookupError::NoCookie)?;
        let key = self.inner.hash.of(cookies.as_bytes());
        let flight = {
            let mut cache = self.inner.lock();
            let now = Instant::now();
            if !cache.contains_key(&key) {
                self.inner.make_room(&mut cache, now);
            }
            let slot = cache.entry(key).or_default();
            if let Some(entry) = &slot.entry {
                let age = now.saturating_duration_since(entry.fetched);
                if age < self.inner.lifetime(&entry.answer) {
                    self.inner.counts.hit();
                    return Ok(entry.answer.clone());
                }
                let s = &self.inner.settings;
                if matches!(entry.answer, Answer::Person(_))
                    && age < s.cache + s.stale_while_revalidate
                {
                    let answer = entry.answer.clone();
                    if slot.flight.is_none() {
                        let flight = Flight::default();
                        slot.flight = Some(flight.clone());
                        let me = self.clone();
                        tokio::spawn(async move {
                            let _ = me.fly(key, &cookies, &flight).await;
                        });
                    }
                    self.inner.counts.stale();
                    return Ok(answer);
                }
            }
            self.inner.counts.miss();
            slot.flight.get_or_insert_with(Flight::default).clone()
        };
        match self.fly(key, &cookies, &flight).await {
            Ok(answer) => Ok(answer),
            Err(e) => self.on_failure(key, &e),
        }
    }

    /// Joins (or makes) the call in flight for `key`, and files its answer.
    async fn fly(
        &self,
        key: CacheKey,
        cookies: &str,
        flight: &Flight,
    ) -> Result<Answer, FetchError> {
        let result = flight
            .get_or_init(|| self.inner.fetch(cookies))
            .await
            .clone();
        let mut cache = self.inner.lock();
        if let Some(slot) = cache.get_mut(&key) {
            if slot.flight.as_ref().is_some_and(|f| Arc::ptr_eq(f, flight)) {
                slot.flight = None;
                if let Ok(answer) = &result {
                    slot.entry = Some(Entry {
                        answer: answer.clone(),
                        fetched: Instant::now(),
                    });
                } else if slot.entry.is_none() {
                    cache.remove(&key);
                }
            }
        }
        result
    }

    fn on_failure(&self, key: CacheKey, e: &FetchError) -> Result<Answer, LookupError> {
        let s = &self.inner.settings;
        let stale = (s.on_error == OnError::OpenWithStale)
            .then(|| {
                let cache = self.inner.lock();
                let entry = cache.get(&key)?.entry.as_ref()?;
                let fresh_enough = entry.fetched.elapsed() <= s.cache + s.max_stale;
                (fresh_enough && matches!(entry.answer, Answer::Person(_)))
                    .then(|| entry.answer.clone())
            })
            .flatten();
        let url = s.url.as_str();
        match stale {
            Some(answer) => {
                tracing::warn!(
                    target: "handoff::session",
                    "userinfo {url} {e}; serving the person's last known answer (on_error = open_with_stale)"
                );
                self.inner.counts.stale();
                Ok(answer)
            }
            None => {
                tracing::warn!(
                    target: "handoff::session",
                    "userinfo {url} {e}; answering 503 (on_error = {})",
                    match s.on_error {
                        OnError::Closed => "closed",
                        OnError::OpenWithStale => "open_with_stale, nothing recent to serve",
                    }
                );
                Err(LookupError::Unavailable)
            }
        }
    }

    /// `name=value; …` of the configured cookies found in the request, in the request's order.
    fn cookie_header(&self, headers: &http::HeaderMap) -> Option<String> {
        let wanted = &self.inner.settings.cookies;
        let mut out = String::new();
        let found = super::request_cookies(headers)
            .filter(|c| wanted.iter().any(|w| w == c.name()))
            .take(super::MAX_CANDIDATES * wanted.len());
        for c in found {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(c.name());
            out.push('=');
            out.push_str(c.value());
        }
        (!out.is_empty()).then_some(out)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<CacheKey, Slot>> {
        // A panic while holding this lock cannot leave the map inconsistent: keep serving.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lifetime(&self, answer: &Answer) -> Duration {
        match answer {
            Answer::Person(_) => self.settings.cache,
            Answer::NotSignedIn => self.settings.negative_cache,
        }
    }

    /// How long an entry is worth keeping at all.
    fn keep_for(&self, answer: &Answer) -> Duration {
        let s = &self.settings;
        match answer {
            Answer::Person(_) => {
                let stale = match s.on_error {
                    OnError::Closed => Duration::ZERO,
                    OnError::OpenWithStale => s.max_stale,
                };
                s.cache + s.stale_while_revalidate.max(stale)
            }
            Answer::NotSignedIn => s.negative_cache,
        }
    }

    /// Before a new entry goes in a full cache. Entries with a call someone waits for stay; a
    /// call nobody waits for any more (its requests were cancelled) does not hold its slot.
    fn make_room(&self, cache: &mut HashMap<CacheKey, Slot>, now: Instant) {
        let awaited = |slot: &Slot| {
            slot.flight
                .as_ref()
                .is_some_and(|f| Arc::strong_count(f) > 1)
        };
        let outlived = |slot: &Slot| {
            !awaited(slot)
                && slot.entry.as_ref().is_none_or(|e| {
                    now.saturating_duration_since(e.fetched) >= self.keep_for(&e.answer)
                })
        };
        let born = |slot: &Slot| match (awaited(slot), &slot.entry) {
            (false, Some(e)) => Some(e.fetched),
            (false, None) => Some(now),
            (true, _) => None,
        };
        make_room(cache, self.settings.max_entries, outlived, born);
    }

    async fn fetch(&self, cookies: &str) -> Result<Answer, FetchError> {
        let s = &self.settings;
        let response = self
            .http
            .get(s.url.clone())
            .header(COOKIE, cookies)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Ok(Answer::NotSignedIn),
            other => return Err(FetchError::Status(other)),
        }
        let body = read_capped(response, s.max_body_bytes).await?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|_| FetchError::NotJson)?;
        Ok(Answer::Person(Arc::new(self.mapping.identity(&claims))))
    }
}
