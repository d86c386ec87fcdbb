//! What the instances of a fleet share (`[state]`): the YourGPT email limits, on Redis.
//!
//! Every operation is one Redis round trip bounded by `timeout_ms`, atomic on the Redis side (a
//! Lua script or `SET … NX PX`) and timed by Redis's own clock, so instances whose clocks
//! disagree still count one window. When Redis fails or is slow the caller gets `None` and uses
//! its per-process limit; Redis is then left alone for [`REST`] (a flood during an outage pays
//! no round trips), one warning says so, and the first answer after it says shared state is
//! back. Keys are the caller's keyed hashes under `key_prefix`: no client id or email in clear.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use crate::config::{redacted_url, StateSettings};

/// How long Redis is left alone after a failed round trip.
pub const REST: Duration = Duration::from_secs(1);

/// How often the background task pings Redis, so readiness and the metrics tell the truth
/// when no handoff asked Redis anything for a while.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// Takes a slot in a sliding window held as a sorted set of event times (Redis's clock, ms).
/// KEYS[1]: the set. ARGV: limit, window in ms, a unique member. Returns 0 when a slot was
/// taken, else the milliseconds until the oldest event leaves the window.
const TAKE_SLOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
";

/// Deletes KEYS[1] only if it still holds ARGV[1] (a claim is released by its holder only).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The fleet's Redis, as one instance sees it.
pub struct SharedState {
    settings: StateSettings,
    client: redis::Client,
    /// Made on first use (it needs the runtime that drives it); dropped after a failure so the
    /// next try starts from a fresh connection.
    connection: Mutex<Option<ConnectionManager>>,
    /// Until when Redis is left alone.
    resting_until: Mutex<Option<Instant>>,
    /// [`UNKNOWN`] until the first round trip, then [`UP`] or [`DOWN`].
    health: AtomicU8,
    /// One warning per outage: set when it was given.
    warned: AtomicBool,
    errors: AtomicU64,
    take_slot: Script,
    release: Script,
}

/// A claim on a key, released by its holder only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    key: String,
    token: String,
}

impl SharedState {
    /// Checks the URL; connects on first use.
    pub fn new(settings: StateSettings) -> Result<Self, String> {
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(|e| {
            format!(
                "{} is not a Redis address: {e}",
                redacted_url(&settings.redis_url)
            )
        })?;
        Ok(SharedState {
            settings,
            client,
            connection: Mutex::new(None),
            resting_until: Mutex::new(None),
            health: AtomicU8::new(UNKNOWN),
            warned: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            take_slot: Script::new(TAKE_SLOT),
            release: Script::new(RELEASE),
        })
    }

    pub fn settings(&self) -> &StateSettings {
        &self.settings
    }

    /// `key_prefix` + `rest`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.settings.key_prefix)
    }

    /// Whether the last round trip worked (`None` before the first).
    pub fn is_up(&self) -> Option<bool> {
        match self.health.load(Ordering::Relaxed) {
            UP => Some(true),
            DOWN => Some(false),
            _ => None,
        }
    }

    /// Failed or timed-out round trips since this state was built.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Takes one of `limit` slots in the sliding `window` at `key`: `Ok` when taken,
    /// `Err(wait)` when full. `None`: Redis did not answer (use the per-process limit).
    pub async fn take_slot(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Option<Result<(), Duration>> {
        let member = uuid::Uuid::new_v4().simple().to_string();
        let window_ms = window.as_millis() as u64;
        let wait: u64 = self
            .round_trip(|mut c| async move {
                self.take_slot
                    .key(key)
                    .arg(limit)
                    .arg(window_ms)
                    .arg(member)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(match wait {
            0 => Ok(()),
            ms => Err(Duration::from_millis(ms)),
        })
    }

    /// Claims `key` for `window` if nobody holds it: `Some(Some(held))` when claimed,
    /// `Some(None)` when held by someone else. `None`: Redis did not answer.
    pub async fn claim(&self, key: String, window: Duration) -> Option<Option<Held>> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let window_ms = (window.as_millis() as u64).max(1);
        let set: Option<String> = self
            .round_trip(|mut c| {
                let (key, token) = (key.clone(), token.clone());
                async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg(window_ms)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Some(set.map(|_| Held { key, token }))
    }

    /// Gives back a claim (if it is still ours). A failure is logged and counted; the claim
    /// then ends with its window.
    pub async fn release(&self, held: Held) {
        let _: Option<i64> = self
            .round_trip(|mut c| async move {
                self.release
                    .key(&held.key)
                    .arg(&held.token)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
    }

    /// One `PING`, for the background check.
    pub async fn ping(&self) {
        let _: Option<String> = self
            .round_trip(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await;
    }

    /// Runs one round trip within the timeout; `None` (logged, counted) on any failure or while
    /// Redis rests after one.
    async fn round_trip<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if lock(&self.resting_until).is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let connection = self.connection()?;
        let failure = match tokio::time::timeout(self.settings.timeout, op(connection)).await {
            Ok(Ok(value)) => {
                self.health.store(UP, Ordering::Relaxed);
                if self.warned.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        target: "handoff::state",
                        "Redis at {} answers again: the email limits are shared by the fleet again",
                        redacted_url(&self.settings.redis_url)
                    );
                }
                return Some(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "no answer within state.timeout_ms = {}",
                self.settings.timeout.as_millis()
            ),
        };
        self.failed(&failure);
        None
    }

    /// The connection, made on first use (and after a failure dropped the last one).
    fn connection(&self) -> Option<ConnectionManager> {
        let mut slot = lock(&self.connection);
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout))
            .set_number_of_retries(0);
        match ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            Ok(c) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Err(e) => {
                drop(slot);
                self.failed(&e.to_string());
                None
            }
        }
    }

    fn failed(&self, why: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.health.store(DOWN, Ordering::Relaxed);
        *lock(&self.resting_until) = Some(Instant::now() + REST);
        lock(&self.connection).take();
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "handoff::state",
                "Redis at {} failed ({why}): each instance keeps its own email limits until it \
                 answers again (YourGPT still enforces its own)",
                redacted_url(&self.settings.redis_url)
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
