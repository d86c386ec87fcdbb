//! Upstream groups: round-robin over resolved servers, with active health checks.
//!
//! Every [`HttpPeer`] is built at load time (timeouts, TLS, SNI); a request only clones one.
//! When every server of a group fails its health check the group still tries them in turn —
//! a health check that is wrong must not turn a working intranet into an outage — and
//! `readyz` shows the group with no healthy server.
//!
//! A kept-alive HTTP/1 connection is, by default, reused only for requests with the same
//! credentials ([`ConnectionReuse`]): an upstream that writes past the end of an answer leaves
//! bytes that the next request on that connection reads as its own answer, and when they arrive
//! after the idle connection was checked nothing can tell them apart. The pool key (Pingora's
//! `HttpPeer::group_key`) is a keyed hash of the request's `Cookie` and `Authorization`
//! values, so that stray answer can only reach the person who caused it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use pingora::lb::Backend;

use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::{HttpPeer, PeerOptions};
use pingora::utils::tls::{parse_x509, WrappedX509};

use crate::config::{ConnectionReuse, HealthCheckKind, UpstreamSettings};

/// How one upstream's TLS servers are trusted — the same for its requests and its health
/// checks (they connect through different connectors: the trust travels with the peer).
struct Trust {
    /// The roots (`ca_file`); `None`: the system's.
    ca: Option<Arc<CaType>>,
    verify_cert: bool,
    verify_hostname: bool,
}

impl Trust {
    fn new(settings: &UpstreamSettings) -> Trust {
        let ca = settings.ca.as_ref().map(|ca| {
            // Checked when the config was loaded (each parses and is a trust anchor).
            let certs: Vec<WrappedX509> = ca
                .der
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            Arc::from(certs.into_boxed_slice())
        });
        Trust {
            ca,
            verify_cert: settings.verify_cert,
            verify_hostname: settings.verify_hostname,
        }
    }

    fn apply(&self, options: &mut PeerOptions) {
        options.ca = self.ca.clone();
        options.verify_cert = self.verify_cert;
        options.verify_hostname = self.verify_hostname;
    }
}

/// Prebuilt peers for one server: normal requests, and upgraded (WebSocket) connections, which
/// may sit idle longer than a read timeout.
struct ServerPeers {
    normal: HttpPeer,
    upgraded: HttpPeer,
}

/// One `[upstreams.NAME]` group.
pub struct UpstreamGroup {
    pub name: String,
    lb: Arc<LoadBalancer<RoundRobin>>,
    peers: HashMap<SocketAddr, ServerPeers>,
    health_checked: bool,
    connection_reuse: ConnectionReuse,
}

/// How many of a group's servers pass their health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GroupHealth {
    pub healthy: usize,
    pub total: usize,
}

impl UpstreamGroup {
    pub fn new(settings: &UpstreamSettings) -> Result<Self, String> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(settings.servers.iter().copied())
            .map_err(|e| format!("upstreams.{}: {e}", settings.name))?;
        let hc = &settings.health_check;
        let trust = Trust::new(settings);
        let check: Option<Box<dyn HealthCheck + Send + Sync>> = match &hc.kind {
            HealthCheckKind::None => None,
            HealthCheckKind::Tcp => {
                let mut tcp = if settings.tls {
                    TcpHealthCheck::new_tls(&settings.sni)
                } else {
                    TcpHealthCheck::new()
                };
                tcp.peer_template.options.connection_timeout = Some(hc.timeout);
                tcp.peer_template.options.total_connection_timeout = Some(hc.timeout);
                trust.apply(&mut tcp.peer_template.options);
                tcp.consecutive_failure = hc.consecutive_failures;
                tcp.consecutive_success = hc.consecutive_successes;
                Some(tcp)
            }
            HealthCheckKind::Http { path, host } => {
                let mut http = HttpHealthCheck::new(host, settings.tls);
                let uri = path
                    .parse::<http::Uri>()
                    .map_err(|e| format!("upstreams.{}.health_check.path: {e}", settings.name))?;
                http.req.set_uri(uri);
                http.peer_template.sni = settings.sni.clone();
                http.peer_template.options.connection_timeout = Some(hc.timeout);
                http.peer_template.options.total_connection_timeout = Some(hc.timeout);
                http.peer_template.options.read_timeout = Some(hc.timeout);
                trust.apply(&mut http.peer_template.options);
                http.consecutive_failure = hc.consecutive_failures;
                http.consecutive_success = hc.consecutive_successes;
                Some(Box::new(http))
            }
        };
        let health_checked = check.is_some();
        if let Some(check) = check {
            let what = match &hc.kind {
                HealthCheckKind::Http { path, .. } => format!("HTTP health check (GET {path})"),
                _ => "TCP health check".to_string(),
            };
            lb.set_health_check(Box::new(Reported::new(&settings.name, what, check)));
            lb.health_check_frequency = Some(hc.interval);
            lb.parallel_health_check = true;
        }
        let peers = settings
            .servers
            .iter()
            .map(|&addr| {
                let mut normal = HttpPeer::new(addr, settings.tls, settings.sni.clone());
                let o = &mut normal.options;
                o.connection_timeout = Some(settings.connect_timeout);
                o.total_connection_timeout = Some(settings.connect_timeout);
                o.read_timeout = Some(settings.read_timeout);
                o.write_timeout = Some(settings.write_timeout);
                o.idle_timeout = Some(settings.idle_timeout);
                trust.apply(o);
                let mut upgraded = normal.clone();
                upgraded.options.read_timeout = None;
                (addr, ServerPeers { normal, upgraded })
            })
            .collect();
        Ok(UpstreamGroup {
            name: settings.name.clone(),
            lb: Arc::new(lb),
            peers,
            health_checked,
            connection_reuse: settings.connection_reuse,
        })
    }

    /// The next server's peer for `req`, round-robin, preferring healthy servers; when none is
    /// healthy, the next one anyway (a failed connect then says why). Its pool is the one for
    /// `req`'s credentials (see the module's doc).
    pub fn select(&self, req: &RequestHeader, upgrade: bool) -> Option<Box<HttpPeer>> {
        let peers = if self.peers.len() == 1 {
            // The only server is the answer either way: no need to ask the balancer.
            self.peers.values().next()?
        } else {
            let backend = self
                .lb
                .select(b"", 256)
                .or_else(|| self.lb.select_with(b"", 256, |_, _| true))?;
            self.peers.get(backend.addr.as_inet()?)?
        };
        let mut peer = Box::new(if upgrade {
            peers.upgraded.clone()
        } else {
            peers.normal.clone()
        });
        if self.connection_reuse == ConnectionReuse::SameCredentials {
            peer.group_key = credentials_key(req);
        }
        Some(peer)
    }

    pub fn server_count(&self) -> usize {
        self.peers.len()
    }

    pub fn health(&self) -> GroupHealth {
        let backends = self.lb.backends();
        let all = backends.get_backend();
        GroupHealth {
            healthy: all.iter().filter(|b| backends.ready(b)).count(),
            total: all.len(),
        }
    }

    /// The load balancer whose health checks should run (`BackgroundService::start`), if
    /// the group has any.
    pub fn health_checker(&self) -> Option<Arc<LoadBalancer<RoundRobin>>> {
        self.health_checked.then(|| self.lb.clone())
    }
}

/// A health check that says what happened in one line of its own (target `handoff::upstream`):
/// the group, the server, the check and the cause when a server turns unhealthy, and one line
/// when it passes again. (Pingora's own line prints the whole backend as `Debug`; the
/// subscriber leaves `pingora_load_balancing` out below ERROR.)
struct Reported {
    group: String,
    /// "TCP health check", "HTTP health check (GET /healthz)".
    what: String,
    inner: Box<dyn HealthCheck + Send + Sync>,
    /// Each server's last failure, until the state change that reports it.
    last_failure: Mutex<HashMap<String, String>>,
}

impl Reported {
    fn new(group: &str, what: String, inner: Box<dyn HealthCheck + Send + Sync>) -> Self {
        Reported {
            group: group.to_string(),
            what,
            inner,
            last_failure: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl HealthCheck for Reported {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let result = self.inner.check(target).await;
        if let Err(e) = &result {
            let cause = crate::errors::summary(e);
            self.failures().insert(target.addr.to_string(), cause);
        }
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let server = target.addr.to_string();
        let group = self.group.as_str();
        if healthy {
            self.failures().remove(&server);
            tracing::info!(
                target: "handoff::upstream",
                group, server, check = %self.what,
                "upstream {group}: {server} passes its {} again", self.what
            );
        } else {
            let cause = self.failures().remove(&server).unwrap_or_default();
            tracing::warn!(
                target: "handoff::upstream",
                group, server, check = %self.what, cause = %cause,
                "upstream {group}: {server} failed its {}: {cause}", self.what
            );
        }
        self.inner.health_status_change(target, healthy).await;
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

/// The pool key of `req`'s credentials: 0 (the shared pool) for a request with neither a
/// `Cookie` nor an `Authorization` header, else a keyed hash of their values in order (a
/// cookie split over several headers, as HTTP/2 clients send it, hashes the same each time).
/// aHash with keys random per process (a 64-bit key nobody can aim at another person's pool
/// without that person's cookie); one key for the process's life, so a reload keeps the pools.
/// Per request with a 250-byte session cookie this costs ~0.5 k instructions (SipHash: 1.6 k;
/// BENCHMARKS.md).
fn credentials_key(req: &RequestHeader) -> u64 {
    static KEY: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);
    let mut credentials = false;
    let mut hasher = KEY.build_hasher();
    for (tag, name) in [
        (1u8, http::header::COOKIE),
        (2, http::header::AUTHORIZATION),
    ] {
        for value in req.headers.get_all(name) {
            credentials = true;
            hasher.write_u8(tag);
            hasher.write_usize(value.len());
            hasher.write(value.as_bytes());
        }
    }
    if credentials {
        hasher.finish().max(1)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(headers: &[(&str, &str)]) -> u64 {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        credentials_key(&req)
    }

    #[test]
    fn credentials_keys_separate_exactly_what_differs() {
        assert_eq!(key(&[]), 0, "no credentials: the shared pool");
        assert_eq!(key(&[("accept", "*/*")]), 0);
        let alice = key(&[("cookie", "s=alice")]);
        assert_ne!(alice, 0);
        assert_eq!(alice, key(&[("Cookie", "s=alice"), ("accept", "*/*")]));
        assert_ne!(alice, key(&[("cookie", "s=bob")]));
        // The same bytes in the other header, or cut elsewhere, are other credentials.
        assert_ne!(alice, key(&[("authorization", "s=alice")]));
        assert_ne!(
            key(&[("cookie", "s=al"), ("cookie", "ice")]),
            key(&[("cookie", "s=a"), ("cookie", "lice")])
        );
        assert_ne!(
            key(&[("cookie", "s=alice")]),
            key(&[("cookie", "s=alice"), ("authorization", "Bearer t")])
        );
    }
}
