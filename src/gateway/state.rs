//! The gateway's state, read when Prometheus scrapes: upstream health, the JWKS key set, the
//! session caches' counters, lost log lines — over the config in use.

use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};

use super::Gateway;

/// Reads the current config's state when Prometheus scrapes.
pub struct StateCollector {
    current: Weak<ArcSwap<Gateway>>,
    lock: Mutex<()>,
    upstream_servers: IntGaugeVec,
    jwks_keys: IntGaugeVec,
    jwks_age: GaugeVec,
    jwks_fetches: IntCounterVec,
    cache: IntCounterVec,
    log_errors: IntCounterVec,
    state_up: IntGaugeVec,
    state_errors: IntCounterVec,
}

impl StateCollector {
    /// `current` holds the config in use; the collector stops reporting once it is dropped.
    pub fn new(current: &Arc<ArcSwap<Gateway>>) -> prometheus::Result<Self> {
        Ok(StateCollector {
            current: Arc::downgrade(current),
            lock: Mutex::new(()),
            upstream_servers: IntGaugeVec::new(
                Opts::new(
                    "handoff_upstream_servers",
                    "Servers of each upstream group, by health-check state (healthy, unhealthy).",
                ),
                &["upstream", "state"],
            )?,
            jwks_keys: IntGaugeVec::new(
                Opts::new(
                    "handoff_jwks_keys",
                    "Signing keys loaded from the JWKS URL (0: none yet).",
                ),
                &["url"],
            )?,
            jwks_age: GaugeVec::new(
                Opts::new(
                    "handoff_jwks_age_seconds",
                    "Age of the key set in use (absent until one loads).",
                ),
                &["url"],
            )?,
            jwks_fetches: IntCounterVec::new(
                Opts::new(
                    "handoff_jwks_fetches_total",
                    "Fetches of the JWKS URL since the config was loaded, by result.",
                ),
                &["url", "result"],
            )?,
            cache: IntCounterVec::new(
                Opts::new(
                    "handoff_session_cache_total",
                    "Session cache lookups since the config was loaded, by cache (token, \
                     userinfo) and result (hit, miss, stale, refused).",
                ),
                &["cache", "result"],
            )?,
            log_errors: IntCounterVec::new(
                Opts::new(
                    "handoff_log_lines_lost_total",
                    "Log lines lost, by cause (write_error: the log file could not be written, \
                     e.g. a full disk; queue_full: written faster than the disk takes them).",
                ),
                &["cause"],
            )?,
            state_up: IntGaugeVec::new(
                Opts::new(
                    "handoff_state_backend_up",
                    "Whether the last round trip to [state]'s Redis worked (1) or not (0: the \
                     email limits are per instance); absent before the first or without [state].",
                ),
                &["backend"],
            )?,
            state_errors: IntCounterVec::new(
                Opts::new(
                    "handoff_state_backend_errors_total",
                    "Round trips to [state]'s Redis that failed or timed out.",
                ),
                &["backend"],
            )?,
        })
    }

    fn all(&self) -> [&dyn Collector; 8] {
        [
            &self.upstream_servers,
            &self.jwks_keys,
            &self.jwks_age,
            &self.jwks_fetches,
            &self.cache,
            &self.log_errors,
            &self.state_up,
            &self.state_errors,
        ]
    }
}

impl Collector for StateCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.all().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(current) = self.current.upgrade() else {
            return Vec::new();
        };
        let gateway = current.load_full();
        let _one_scrape_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.upstream_servers.reset();
        for group in gateway.upstreams() {
            let health = group.health();
            let name = group.name.as_str();
            self.upstream_servers
                .with_label_values(&[name, "healthy"])
                .set(health.healthy as i64);
            self.upstream_servers
                .with_label_values(&[name, "unhealthy"])
                .set(health.total.saturating_sub(health.healthy) as i64);
        }
        self.jwks_keys.reset();
        self.jwks_age.reset();
        self.jwks_fetches.reset();
        if let Some(jwks) = gateway.jwks() {
            let status = jwks.status();
            let url = jwks.url();
            let url = url.as_str();
            self.jwks_keys
                .with_label_values(&[url])
                .set(status.keys as i64);
            if let Some(age) = status.age_seconds {
                self.jwks_age.with_label_values(&[url]).set(age as f64);
            }
            let ok = status.fetches.saturating_sub(status.failures);
            self.jwks_fetches
                .with_label_values(&[url, "success"])
                .inc_by(ok);
            self.jwks_fetches
                .with_label_values(&[url, "failure"])
                .inc_by(status.failures);
        }
        self.cache.reset();
        for (cache, counts) in gateway.session_cache_counts() {
            for (result, n) in counts.snapshot() {
                self.cache.with_label_values(&[cache, result]).inc_by(n);
            }
        }
        self.log_errors.reset();
        // Only the `handoff` binary's log writer can lose lines; an embedding host logs itself.
        #[cfg(feature = "cli")]
        let (write_errors, dropped) = crate::logging::lost_lines();
        #[cfg(not(feature = "cli"))]
        let (write_errors, dropped) = (0, 0);
        self.log_errors
            .with_label_values(&["write_error"])
            .inc_by(write_errors);
        self.log_errors
            .with_label_values(&["queue_full"])
            .inc_by(dropped);
        self.state_up.reset();
        self.state_errors.reset();
        if let Some(state) = gateway.shared_state() {
            if let Some(up) = state.is_up() {
                self.state_up
                    .with_label_values(&["redis"])
                    .set(i64::from(up));
            }
            self.state_errors
                .with_label_values(&["redis"])
                .inc_by(state.errors());
        }
        self.all().into_iter().flat_map(|c| c.collect()).collect()
    }
}
