//! Opaque session cookies, recognised by asking the intranet's userinfo endpoint.
//!
//! The endpoint gets the session cookie (only the configured cookies, nothing else from the
//! request) and answers 200 with the person as JSON, or 401/403 for "not signed in". Answers
//! are cached under a keyed hash of the cookies — the raw value is never kept, logged or
//! counted — with a positive and a negative lifetime. Concurrent requests with the same new
//! cookie make one call between them (single flight); a just-expired entry is served while one
//! refresh runs (stale-while-revalidate); when the endpoint is down or slow the configured
//! failure mode decides between a 503 and a bounded stale answer.
//!
//! A flood of made-up cookies cannot push people out: "not signed in" answers live in their
//! own, smaller map (they never evict a person's entry), and calls for cookies not known as a
//! person's are bounded (`max_new_lookups`; beyond it the new cookie gets a 503 while everyone
//! known is served from the cache as before).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::header::{ACCEPT, COOKIE};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::cache::{make_room, CacheCounts, CacheKey, KeyedHash};
use crate::identity::{ClaimMapping, Identity};
use crate::outbound::{read_capped, FetchError};

/// `[session.userinfo]`, validated. `Debug` shows the URL redacted (it may carry a credential).
#[derive(Clone, PartialEq)]
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
    /// People's answers kept at most.
    pub max_entries: usize,
    /// "Not signed in" answers kept at most (apart from people's: they never evict one).
    pub max_negative_entries: usize,
    /// Calls at once for cookies not known as a person's; more get [`LookupError::Busy`].
    pub max_new_lookups: usize,
    pub max_body_bytes: usize,
}

impl fmt::Debug for UserinfoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserinfoSettings")
            .field("url", &crate::config::redacted_url(&self.url))
            .field("cookies", &self.cookies)
            .field("timeout", &self.timeout)
            .field("cache", &self.cache)
            .field("negative_cache", &self.negative_cache)
            .field("stale_while_revalidate", &self.stale_while_revalidate)
            .field("on_error", &self.on_error)
            .field("max_stale", &self.max_stale)
            .field("max_entries", &self.max_entries)
            .field("max_negative_entries", &self.max_negative_entries)
            .field("max_new_lookups", &self.max_new_lookups)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
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
    /// A cookie not known as a person's, while `max_new_lookups` calls for such cookies are
    /// already in flight.
    Busy,
}

type Flight = Arc<OnceCell<Result<Answer, FetchError>>>;

/// A person's answer, and when it came.
struct Entry {
    identity: Arc<Identity>,
    fetched: Instant,
}

/// What is known about cookies, each under its keyed hash.
#[derive(Default)]
struct Cache {
    /// Cookies the endpoint said are a person's.
    people: HashMap<CacheKey, Entry>,
    /// Cookies the endpoint said are nobody's, and when (kept apart: see the module docs).
    strangers: HashMap<CacheKey, Instant>,
    /// Calls in flight, each marked whether its cookie was not known as a person's.
    flights: HashMap<CacheKey, (Flight, bool)>,
}

/// Someone still waits for this call (the map holds one reference, each waiter another).
fn awaited(flight: &Flight) -> bool {
    Arc::strong_count(flight) > 1
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
    cache: Mutex<Cache>,
    counts: CacheCounts,
    /// When (seconds since `started`) a refusal for `max_new_lookups` may be logged again, so
    /// a flood makes one warning every 10 s, not one per request.
    next_refusal_log: std::sync::atomic::AtomicU64,
    started: Instant,
    clock: Clock,
}

impl fmt::Debug for Userinfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Userinfo")
            .field(
                "url",
                &crate::config::redacted_url(&self.inner.settings.url),
            )
            .finish_non_exhaustive()
    }
}

/// Where the cache reads the time: the clock, or a test's.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

impl Userinfo {
    pub fn new(settings: UserinfoSettings, mapping: ClaimMapping) -> Result<Self, String> {
        Self::with_clock(settings, mapping, Arc::new(Instant::now))
    }

    /// [`Userinfo::new`] reading the time from `clock` (tests move it by hand).
    fn with_clock(
        settings: UserinfoSettings,
        mapping: ClaimMapping,
        clock: Clock,
    ) -> Result<Self, String> {
        let http = crate::outbound::client("userinfo", settings.timeout, None, 0)?;
        let hash = KeyedHash::random()?;
        let started = clock();
        Ok(Userinfo {
            inner: Arc::new(Inner {
                settings,
                mapping,
                http,
                hash,
                cache: Mutex::new(Cache::default()),
                counts: CacheCounts::default(),
                next_refusal_log: Default::default(),
                started,
                clock,
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
        let s = &self.inner.settings;
        let flight = {
            let mut cache = self.inner.lock();
            let now = (self.inner.clock)();
            if let Some(entry) = cache.people.get(&key) {
                let age = now.saturating_duration_since(entry.fetched);
                let answer = Answer::Person(entry.identity.clone());
                if age < s.cache {
                    self.inner.counts.hit();
                    return Ok(answer);
                }
                if age < s.cache + s.stale_while_revalidate {
                    if !cache.flights.get(&key).is_some_and(|(f, _)| awaited(f)) {
                        let flight = Flight::default();
                        cache.flights.insert(key, (flight.clone(), false));
                        let me = self.clone();
                        tokio::spawn(async move {
                            let _ = me.fly(key, &cookies, &flight).await;
                        });
                    }
                    self.inner.counts.stale();
                    return Ok(answer);
                }
            } else if let Some(&at) = cache.strangers.get(&key) {
                if now.saturating_duration_since(at) < s.negative_cache {
                    self.inner.counts.hit();
                    return Ok(Answer::NotSignedIn);
                }
            }
            self.inner.counts.miss();
            match cache.flights.get(&key) {
                Some((flight, _)) if awaited(flight) => flight.clone(),
                _ => {
                    let new = !cache.people.contains_key(&key);
                    if new && self.inner.too_many_new_lookups(&mut cache) {
                        drop(cache);
                        self.inner.refused();
                        return Err(LookupError::Busy);
                    }
                    let flight = Flight::default();
                    cache.flights.insert(key, (flight.clone(), new));
                    flight
                }
            }
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
        let ours = cache
            .flights
            .get(&key)
            .is_some_and(|(f, _)| Arc::ptr_eq(f, flight));
        if ours {
            cache.flights.remove(&key);
            let now = (self.inner.clock)();
            match &result {
                Ok(Answer::Person(identity)) => {
                    cache.strangers.remove(&key);
                    if !cache.people.contains_key(&key) {
                        self.inner.make_room_for_a_person(&mut cache.people, now);
                    }
                    let entry = Entry {
                        identity: identity.clone(),
                        fetched: now,
                    };
                    cache.people.insert(key, entry);
                }
                Ok(Answer::NotSignedIn) => {
                    cache.people.remove(&key);
                    if !self.inner.settings.negative_cache.is_zero() {
                        if !cache.strangers.contains_key(&key) {
                            self.inner
                                .make_room_for_a_stranger(&mut cache.strangers, now);
                        }
                        cache.strangers.insert(key, now);
                    }
                }
                Err(_) => {}
            }
        }
        result
    }

    fn on_failure(&self, key: CacheKey, e: &FetchError) -> Result<Answer, LookupError> {
        let s = &self.inner.settings;
        let stale = (s.on_error == OnError::OpenWithStale)
            .then(|| {
                let cache = self.inner.lock();
                let entry = cache.people.get(&key)?;
                let age = (self.inner.clock)().saturating_duration_since(entry.fetched);
                (age <= s.cache + s.max_stale).then(|| Answer::Person(entry.identity.clone()))
            })
            .flatten();
        let url = crate::config::redacted_url(&s.url);
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
    fn lock(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding this lock cannot leave the map inconsistent: keep serving.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `max_new_lookups` calls for cookies not known as a person's are in flight
    /// (calls nobody waits for any more, their requests cancelled, are dropped first).
    fn too_many_new_lookups(&self, cache: &mut Cache) -> bool {
        let pending = |cache: &Cache| cache.flights.values().filter(|(_, new)| *new).count();
        if pending(cache) < self.settings.max_new_lookups {
            return false;
        }
        cache.flights.retain(|_, (flight, _)| awaited(flight));
        pending(cache) >= self.settings.max_new_lookups
    }

    /// Counts a refusal for `max_new_lookups`, and says so in the log every 10 s at most.
    fn refused(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.counts.refused();
        let now = (self.clock)()
            .saturating_duration_since(self.started)
            .as_secs();
        let next = self.next_refusal_log.load(Relaxed);
        if now >= next
            && self
                .next_refusal_log
                .compare_exchange(next, now + 10, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                target: "handoff::session",
                "userinfo {}: {} lookups of new cookies already in flight (max_new_lookups); \
                 answering 503 to new cookies until they finish (people already known are \
                 served from the cache)",
                crate::config::redacted_url(&self.settings.url),
                self.settings.max_new_lookups
            );
        }
    }

    /// Before a new person's entry goes in a full map: entries of no more use go first, then
    /// the oldest tenth.
    fn make_room_for_a_person(&self, people: &mut HashMap<CacheKey, Entry>, now: Instant) {
        let s = &self.settings;
        let stale = match s.on_error {
            OnError::Closed => Duration::ZERO,
            OnError::OpenWithStale => s.max_stale,
        };
        let keep_for = s.cache + s.stale_while_revalidate.max(stale);
        make_room(
            people,
            s.max_entries,
            |e| now.saturating_duration_since(e.fetched) >= keep_for,
            |e| Some(e.fetched),
        );
    }

    /// The same for a "not signed in" answer, in its own map.
    fn make_room_for_a_stranger(&self, strangers: &mut HashMap<CacheKey, Instant>, now: Instant) {
        let s = &self.settings;
        make_room(
            strangers,
            s.max_negative_entries,
            |&at| now.saturating_duration_since(at) >= s.negative_cache,
            |&at| Some(at),
        );
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
            .map_err(FetchError::from_reqwest)?;
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

#[cfg(test)]
mod tests {
    //! The cache's time rules on a hand-moved clock: what the integration tests would need
    //! seconds of sleep for takes milliseconds here. The endpoint is a real one on loopback.

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// How the stand-in endpoint answers.
    #[derive(Clone, Copy)]
    enum Mode {
        Normal,
        Down,
        Slow(Duration),
    }

    /// A userinfo endpoint: 200 with the claims of a known `sid`, 401 for any other.
    #[derive(Clone)]
    struct Endpoint {
        url: url::Url,
        calls: Arc<AtomicUsize>,
        state: Arc<Mutex<(HashMap<String, Value>, Mode)>>,
    }

    impl Endpoint {
        async fn start() -> Endpoint {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/me", listener.local_addr().unwrap());
            let endpoint = Endpoint {
                url: url::Url::parse(&url).unwrap(),
                calls: Arc::default(),
                state: Arc::new(Mutex::new((HashMap::new(), Mode::Normal))),
            };
            let served = endpoint.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let served = served.clone();
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        served.calls.fetch_add(1, Ordering::SeqCst);
                        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                        let sid = head
                            .lines()
                            .find_map(|l| l.strip_prefix("cookie: sid="))
                            .unwrap_or_default()
                            .trim()
                            .to_string();
                        let (claims, mode) = {
                            let state = served.state.lock().unwrap();
                            (state.0.get(&sid).cloned(), state.1)
                        };
                        let (status, body) = match (mode, claims) {
                            (Mode::Down, _) => ("500 Internal Server Error", String::new()),
                            (Mode::Slow(d), claims) => {
                                tokio::time::sleep(d).await;
                                match claims {
                                    Some(c) => ("200 OK", c.to_string()),
                                    None => ("401 Unauthorized", String::new()),
                                }
                            }
                            (Mode::Normal, Some(c)) => ("200 OK", c.to_string()),
                            (Mode::Normal, None) => ("401 Unauthorized", String::new()),
                        };
                        let answer = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                    });
                }
            });
            endpoint
        }

        fn person(&self, sid: &str, last_name: &str) {
            let claims = json!({"sub": sid, "email": "ada@corp.example",
                                "given_name": "Ada", "family_name": last_name});
            self.state.lock().unwrap().0.insert(sid.to_string(), claims);
        }

        fn mode(&self, mode: Mode) {
            self.state.lock().unwrap().1 = mode;
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    /// A clock moved by hand.
    #[derive(Clone)]
    struct TestClock(Arc<Mutex<Instant>>);

    impl TestClock {
        fn new() -> TestClock {
            TestClock(Arc::new(Mutex::new(Instant::now())))
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }

        fn clock(&self) -> Clock {
            let at = self.0.clone();
            Arc::new(move || *at.lock().unwrap())
        }
    }

    fn userinfo(
        endpoint: &Endpoint,
        clock: &TestClock,
        edit: impl FnOnce(&mut UserinfoSettings),
    ) -> Userinfo {
        let mut settings = UserinfoSettings {
            url: endpoint.url.clone(),
            cookies: vec!["sid".to_string()],
            timeout: Duration::from_secs(2),
            cache: Duration::from_secs(1),
            negative_cache: Duration::from_secs(5),
            stale_while_revalidate: Duration::ZERO,
            on_error: OnError::Closed,
            max_stale: Duration::from_secs(300),
            max_entries: 10,
            max_negative_entries: 10,
            max_new_lookups: 100,
            max_body_bytes: 64 * 1024,
        };
        edit(&mut settings);
        Userinfo::with_clock(settings, ClaimMapping::default(), clock.clock()).unwrap()
    }

    fn cookie(sid: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(COOKIE, format!("sid={sid}").parse().unwrap());
        headers
    }

    /// The person's last name, or why there is none.
    async fn last_name(u: &Userinfo, sid: &str) -> Result<String, String> {
        match u.lookup(&cookie(sid)).await {
            Ok(Answer::Person(p)) => Ok(p.last_name.clone()),
            Ok(Answer::NotSignedIn) => Err("not signed in".to_string()),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_expired_entry_is_served_while_one_refresh_runs() {
        let (endpoint, clock) = (Endpoint::start().await, TestClock::new());
        let u = userinfo(&endpoint, &clock, |s| {
            s.stale_while_revalidate = Duration::from_secs(30)
        });
        endpoint.person("s1", "v1");
        assert_eq!(last_name(&u, "s1").await.unwrap(), "v1");
        endpoint.person("s1", "v2");
        endpoint.mode(Mode::Slow(Duration::from_millis(300)));
        clock.advance(Duration::from_millis(1100));
        // Expired: answered at once from the stale entry, while one refresh runs.
        let started = Instant::now();
        let answers = futures_util::future::join_all((0..20).map(|_| last_name(&u, "s1"))).await;
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        assert!(
            answers.iter().all(|a| a.as_deref() == Ok("v1")),
            "{answers:?}"
        );
        let waited = Instant::now();
        while endpoint.calls() < 2 || u.inner.lock().flights.values().any(|(f, _)| awaited(f)) {
            assert!(
                waited.elapsed() < Duration::from_secs(3),
                "the refresh never ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(endpoint.calls(), 2, "one refresh for twenty requests");
        assert_eq!(last_name(&u, "s1").await.unwrap(), "v2");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn past_its_window_an_entry_is_fetched_again_before_answering() {
        let (endpoint, clock) = (Endpoint::start().await, TestClock::new());
        let u = userinfo(&endpoint, &clock, |_| {});
        endpoint.person("s1", "v1");
        assert_eq!(last_name(&u, "s1").await.unwrap(), "v1");
        endpoint.person("s1", "v2");
        clock.advance(Duration::from_millis(999));
        assert_eq!(last_name(&u, "s1").await.unwrap(), "v1", "still fresh");
        clock.advance(Duration::from_millis(2));
        assert_eq!(last_name(&u, "s1").await.unwrap(), "v2");
        assert_eq!(endpoint.calls(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn open_with_stale_serves_a_known_person_up_to_the_bound() {
        let (endpoint, clock) = (Endpoint::start().await, TestClock::new());
        let u = userinfo(&endpoint, &clock, |s| {
            s.on_error = OnError::OpenWithStale;
            s.max_stale = Duration::from_secs(2);
        });
        endpoint.person("s1", "v1");
        endpoint.person("s2", "v1");
        assert_eq!(last_name(&u, "s1").await.unwrap(), "v1");
        endpoint.mode(Mode::Down);
        clock.advance(Duration::from_millis(1200));
        assert_eq!(
            last_name(&u, "s1").await.unwrap(),
            "v1",
            "the stale answer stands in"
        );
        // Nobody new gets in on a guess.
        assert_eq!(last_name(&u, "s2").await, Err("Unavailable".to_string()));
        // Past cache + max_stale: no more.
        clock.advance(Duration::from_millis(1801));
        assert_eq!(last_name(&u, "s1").await, Err("Unavailable".to_string()));
        // Closed: no stale answer at all.
        let closed = userinfo(&endpoint, &clock, |_| {});
        endpoint.mode(Mode::Normal);
        assert_eq!(last_name(&closed, "s1").await.unwrap(), "v1");
        endpoint.mode(Mode::Down);
        clock.advance(Duration::from_millis(1001));
        assert_eq!(
            last_name(&closed, "s1").await,
            Err("Unavailable".to_string())
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn not_signed_in_answers_expire_and_never_push_a_person_out() {
        let (endpoint, clock) = (Endpoint::start().await, TestClock::new());
        let u = userinfo(&endpoint, &clock, |s| s.cache = Duration::from_secs(60));
        endpoint.person("ada", "Lovelace");
        assert_eq!(last_name(&u, "ada").await.unwrap(), "Lovelace");
        for i in 0..100 {
            assert!(last_name(&u, &format!("nobody-{i}")).await.is_err());
        }
        let calls = endpoint.calls();
        assert_eq!(last_name(&u, "ada").await.unwrap(), "Lovelace");
        assert_eq!(endpoint.calls(), calls, "Ada's answer is still cached");
        // A "not signed in" answer is used for negative_cache, then asked again.
        assert!(last_name(&u, "nobody-99").await.is_err());
        assert_eq!(endpoint.calls(), calls);
        clock.advance(Duration::from_secs(5));
        assert!(last_name(&u, "nobody-99").await.is_err());
        assert_eq!(endpoint.calls(), calls + 1);
    }
}
