//! Prometheus metrics: what answers "is it working?" at 3 a.m.
//!
//! Counters and histograms that the request path updates live in [`Metrics`]; everything that
//! is state rather than events (upstream health, the JWKS key set, cache counters, log write
//! errors) is read when Prometheus scrapes, by the gateway's state collector
//! (`gateway/state.rs`) over the current config.
//! One registry per [`crate::Handoff`], so two gateways in one process never mix their counts.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for requests through the gateway and calls to vendor APIs (seconds).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The event metrics, and the registry that serves them.
pub struct Metrics {
    registry: Registry,
    /// `handoff_requests_total{route, status}` (`status`: `2xx` … `5xx`, or `none` when the
    /// client left before an answer).
    pub requests: IntCounterVec,
    /// `handoff_request_duration_seconds{route}`.
    pub request_seconds: HistogramVec,
    /// `handoff_handoffs_total{app, outcome, code}`.
    pub handoffs: IntCounterVec,
    /// `handoff_vendor_request_duration_seconds{app, call}`.
    pub vendor_seconds: HistogramVec,
    /// `handoff_sessions_total{source, result}`.
    pub sessions: IntCounterVec,
    /// `handoff_config_reloads_total{result}`.
    pub reloads: IntCounterVec,
    /// `handoff_config_last_reload_success_timestamp_seconds`.
    pub last_reload: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "handoff_requests_total",
                "Requests answered, by route and status class.",
            ),
            &["route", "status"],
        );
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "handoff_request_duration_seconds",
                "Time from the request's arrival to the end of its answer, by route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        );
        let handoffs = IntCounterVec::new(
            Opts::new(
                "handoff_handoffs_total",
                "Handoffs to apps, by app and outcome (code: the vendor's error code, or \
                 timeout/connect/garbled).",
            ),
            &["app", "outcome", "code"],
        );
        let vendor_seconds = HistogramVec::new(
            HistogramOpts::new(
                "handoff_vendor_request_duration_seconds",
                "Time of each call to an app's API, by app and call.",
            )
            .buckets(BUCKETS.to_vec()),
            &["app", "call"],
        );
        let sessions = IntCounterVec::new(
            Opts::new(
                "handoff_sessions_total",
                "Session lookups, by the source that recognised the person (none: nobody was \
                 recognised) and the result (valid, or why not).",
            ),
            &["source", "result"],
        );
        let reloads = IntCounterVec::new(
            Opts::new(
                "handoff_config_reloads_total",
                "Config reloads, by result (success, failure).",
            ),
            &["result"],
        );
        let last_reload = Gauge::new(
            "handoff_config_last_reload_success_timestamp_seconds",
            "When the config in use was loaded (Unix time).",
        );
        let metrics = (|| -> prometheus::Result<Metrics> {
            let m = Metrics {
                requests: requests?,
                request_seconds: request_seconds?,
                handoffs: handoffs?,
                vendor_seconds: vendor_seconds?,
                sessions: sessions?,
                reloads: reloads?,
                last_reload: last_reload?,
                registry,
            };
            m.registry.register(Box::new(m.requests.clone()))?;
            m.registry.register(Box::new(m.request_seconds.clone()))?;
            m.registry.register(Box::new(m.handoffs.clone()))?;
            m.registry.register(Box::new(m.vendor_seconds.clone()))?;
            m.registry.register(Box::new(m.sessions.clone()))?;
            // Both results from the start: the first refused reload is an increase from 0,
            // which `increase()` sees, not a series appearing at 1, which it does not.
            for result in ["success", "failure"] {
                m.reloads.with_label_values(&[result]);
            }
            m.registry.register(Box::new(m.reloads.clone()))?;
            m.registry.register(Box::new(m.last_reload.clone()))?;
            #[cfg(target_os = "linux")]
            m.registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))?;
            Ok(m)
        })();
        // Every name and label above is a constant that the tests scrape.
        Arc::new(metrics.unwrap_or_else(|e| unreachable!("metric definitions are valid: {e}")))
    }

    /// Adds a collector of state read at scrape time.
    pub fn register(&self, collector: Box<dyn Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::error!(target: "handoff::metrics", "cannot register metrics: {e}");
        }
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(target: "handoff::metrics", "cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The request counters of one route, resolved once (no label lookup per request).
    pub fn for_route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            by_class: STATUS_CLASSES.map(|class| self.requests.with_label_values(&[route, class])),
            seconds: self.request_seconds.with_label_values(&[route]),
        }
    }
}

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// `handoff_requests_total` and `handoff_request_duration_seconds` of one route.
pub struct RouteMetrics {
    by_class: [prometheus::IntCounter; 6],
    seconds: prometheus::Histogram,
}

impl RouteMetrics {
    /// Counts one answered request (`status` 0: the client left before an answer).
    pub fn record(&self, status: u16, seconds: f64) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.by_class[class].inc();
        self.seconds.observe(seconds);
    }
}

/// The `[server] metrics_listen` listener's app: the metrics on any path.
pub struct MetricsApp(pub Arc<Metrics>);

#[async_trait::async_trait]
impl pingora::apps::http_app::ServeHttp for MetricsApp {
    async fn response(
        &self,
        _session: &mut pingora::protocols::http::ServerSession,
    ) -> http::Response<Vec<u8>> {
        let body = self.0.render().into_bytes();
        http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, TextEncoder::new().format_type())
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// `server.max_connections`, read when Prometheus scrapes: connections open now and those
/// refused for being over the cap.
pub struct ConnectionsCollector {
    limit: Arc<pingora::apps::ConnectionLimit>,
    open: prometheus::IntGauge,
    max: prometheus::IntGauge,
    refused: prometheus::IntCounter,
}

impl ConnectionsCollector {
    pub fn new(limit: Arc<pingora::apps::ConnectionLimit>) -> prometheus::Result<Self> {
        Ok(ConnectionsCollector {
            limit,
            open: prometheus::IntGauge::new(
                "handoff_client_connections",
                "Client connections open now (counted with server.max_connections set).",
            )?,
            max: prometheus::IntGauge::new(
                "handoff_client_connections_max",
                "server.max_connections: the most client connections served at once.",
            )?,
            refused: prometheus::IntCounter::new(
                "handoff_client_connections_refused_total",
                "Client connections closed at once because server.max_connections were open.",
            )?,
        })
    }
}

impl Collector for ConnectionsCollector {
    fn desc(&self) -> Vec<&Desc> {
        [&self.open as &dyn Collector, &self.max, &self.refused]
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.open.set(self.limit.active() as i64);
        self.max.set(self.limit.max() as i64);
        self.refused.reset();
        self.refused.inc_by(self.limit.refused());
        [&self.open as &dyn Collector, &self.max, &self.refused]
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_reload_results_are_exported_from_the_start() {
        let text = Metrics::new().render();
        for result in ["success", "failure"] {
            let series = format!("handoff_config_reloads_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&series), "{series} in:\n{text}");
        }
    }
}
