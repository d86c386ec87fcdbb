//! `[state]` → [`StateSettings`]: where a fleet of gateways keeps what they must share.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::raw::RawUrl;
use super::validate::{redacted_url, Problems, UrlKind};

/// `[state]`: the Redis the instances of a fleet share. Without it every limit is per process.
#[derive(Clone, PartialEq)]
pub struct StateSettings {
    /// `redis://[:password@]host[:port][/db]` (it may carry a password: shown redacted).
    pub redis_url: url::Url,
    /// Put before every key Handoff writes (several fleets may share one Redis).
    pub key_prefix: String,
    /// The most one Redis round trip may take before the instance falls back to its own limits.
    pub timeout: Duration,
}

impl fmt::Debug for StateSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSettings")
            .field("redis_url", &redacted_url(&self.redis_url))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub const DEFAULT_KEY_PREFIX: &str = "handoff:";
pub const DEFAULT_TIMEOUT_MS: u64 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    redis_url: RawUrl,
    key_prefix: Option<String>,
    timeout_ms: Option<u64>,
}

pub(super) fn state_settings(
    raw: RawState,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<StateSettings> {
    let redis_url = p.url_of_kind("state.redis_url", &raw.redis_url, base_dir, UrlKind::Redis);
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
    if key_prefix.is_empty()
        || key_prefix.len() > 64
        || !key_prefix.chars().all(|c| c.is_ascii_graphic())
    {
        p.add(
            "state.key_prefix",
            format!("{key_prefix:?} must be 1 to 64 visible ASCII characters, like \"handoff:\""),
        );
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=10_000).contains(&timeout_ms) {
        p.add(
            "state.timeout_ms",
            format!("{timeout_ms} must be between 1 and 10000 (one Redis round trip)"),
        );
    }
    Some(StateSettings {
        redis_url: redis_url?,
        key_prefix,
        timeout: Duration::from_millis(timeout_ms),
    })
}
