//! The standalone gateway — what the `handoff` binary runs: a Pingora server whose one proxy
//! service is a host built on the public [`Handoff`] API and nothing else, the same way an
//! embedding proxy uses it. On top of Handoff it adds what a proxy of its own needs: `[server]`
//! (listeners, TLS, threads …), `X-Forwarded-*`, a 404 page for unrouted requests, error pages
//! for failed proxy attempts, and the access log.

use std::net::IpAddr;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use pingora::apps::{ConnectionLimit, HttpServerOptions};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{
    ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora::services::background::{background_service, BackgroundService};
use pingora::upstreams::peer::HttpPeer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast::error::RecvError;

use crate::config::{self, Config, ConfigErrors, ServerSettings};
pub use crate::https_port::PlainHttpOnTlsPort;
use crate::plugin::{Filtered, Handoff, HandoffCtx, LoadError};

/// A header this proxy adds to every request: its name, parsed at compile time, and the
/// spelling it goes upstream in (added through `insert_parsed_header`: neither is parsed nor
/// copied per request, see vendor/README.md).
struct Forwarding {
    name: HeaderName,
    spelled: &'static [u8],
}

impl Forwarding {
    fn set(&self, upstream: &mut RequestHeader, value: HeaderValue) {
        upstream.insert_parsed_header(&self.name, Bytes::from_static(self.spelled), value);
    }
}

static X_FORWARDED_FOR: Forwarding = Forwarding {
    name: HeaderName::from_static("x-forwarded-for"),
    spelled: b"X-Forwarded-For",
};
static X_FORWARDED_PROTO: Forwarding = Forwarding {
    name: HeaderName::from_static("x-forwarded-proto"),
    spelled: b"X-Forwarded-Proto",
};
static X_FORWARDED_HOST: Forwarding = Forwarding {
    name: HeaderName::from_static("x-forwarded-host"),
    spelled: b"X-Forwarded-Host",
};

/// The standalone gateway, built: [`Standalone::run`] serves until a signal stops it.
pub struct Standalone {
    server: Server,
    handoff: Handoff,
    settings: ServerSettings,
}

/// Builds the standalone gateway from a config file. `opt` carries Pingora's command-line
/// flags (`--upgrade`, `--daemon`). `SIGHUP` reloads the config from `path` (see
/// [`Handoff::reload`]).
pub fn build(path: &Path, opt: Option<Opt>) -> Result<Standalone, LoadError> {
    build_with_config(config::load(path)?, Some(path.to_path_buf()), opt)
}

/// [`build`] from a config already loaded from `source`.
#[doc(hidden)]
pub fn build_with_config(
    config: Config,
    source: Option<std::path::PathBuf>,
    opt: Option<Opt>,
) -> Result<Standalone, LoadError> {
    let settings = config.server.clone();
    let handoff = Handoff::from_config(config, source)?;
    let mut server = Server::new_with_opt_and_conf(opt, pingora_conf(&settings));
    server.bootstrap();
    let dependencies = handoff.add_services(&mut server);
    server.add_service(background_service(
        "reload on SIGHUP",
        ReloadOnHangup {
            handoff: handoff.clone(),
            pid_file: settings.pid_file.clone(),
        },
    ));
    if let Some(addr) = &settings.metrics_listen {
        handoff.add_metrics_service(&mut server, addr);
    }
    let draining = watch_for_draining(&server);
    let options = server_options(&settings);
    if let Some(limit) = options.connection_limit.clone() {
        if settings.max_connections.is_some() {
            handoff.count_connections(limit.clone());
        }
        // A graceful stop ends as soon as the last client connection closes (idle keep-alive
        // connections close at once; `grace_period_seconds` bounds the rest).
        server.end_grace_period_when(move || limit.active() == 0);
    }
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        StandaloneProxy {
            handoff: handoff.clone(),
            trust_forwarded_headers: settings.trust_forwarded_headers,
            keepalive: keepalive_seconds(settings.keepalive_timeout),
            draining,
        },
        "handoff",
    );
    if let Some(app) = proxy.app_logic_mut() {
        app.server_options = Some(options);
    }
    // Client connections are read without Pingora's 64 KiB read buffer: the HTTP session reads
    // into its own buffers anyway, so the extra buffer only copied bytes once more and held
    // memory per idle connection (BENCHMARKS.md, issue 18). Writes keep Pingora's buffer.
    let l4_buffer = L4BufferSettings::default().read(0);
    for addr in &settings.listen {
        proxy.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(l4_buffer));
    }
    if let Some(tls) = &settings.tls {
        for addr in &tls.listen {
            let mut tls_settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)
                .map_err(|e| {
                    ConfigErrors::one(format!(
                        "server.tls: cannot load the certificate or key: {e}"
                    ))
                })?;
            tls_settings.enable_h2();
            proxy.add_listener(
                ListenerConfig::tcp(addr.as_str())
                    .tls(tls_settings)
                    .l4_buffer(l4_buffer),
            );
        }
        // Plain HTTP on these ports gets a plain 400 that says so (runs on TLS listeners only).
        proxy
            .endpoints()
            .set_pre_tls_callback(Arc::new(PlainHttpOnTlsPort {
                first_byte_wait: settings.client_header_timeout,
            }));
    }
    // With `startup_wait_ms`, the listeners open once the first keys are in (or the wait ran out).
    server.add_service(proxy).add_dependencies(&dependencies);
    Ok(Standalone {
        server,
        handoff,
        settings,
    })
}

impl Standalone {
    /// The Pingora server, to run with signals of your own (tests do).
    #[doc(hidden)]
    pub fn into_server(self) -> Server {
        self.server
    }

    /// Serves until a signal stops it: `SIGTERM` drains (`readyz` answers 503 for
    /// `shutdown_delay_seconds` while serving goes on, then the listeners close and the process
    /// exits once no connection is open, `grace_period_seconds` at the most), `SIGINT` stops at
    /// once, `SIGQUIT` hands the listeners to a new process (`run --upgrade`). First checks that
    /// every listen address can be bound (unless `upgrade`: the sockets come from the running
    /// process), so a taken or foreign address fails the start with one line that names it.
    pub fn run(self, upgrade: bool) -> Result<(), StartError> {
        if !upgrade {
            for (what, addr) in self.addresses() {
                // Bound and closed again: Pingora opens it a moment later.
                std::net::TcpListener::bind(addr.as_str()).map_err(|error| StartError {
                    what,
                    addr: addr.clone(),
                    error,
                })?;
            }
        }
        let listening: Vec<String> = self
            .addresses()
            .map(|(what, addr)| format!("{addr} ({what})"))
            .collect();
        tracing::info!(
            target: "handoff::server",
            "listening on {} ({})",
            listening.join(", "),
            self.handoff.summary()
        );
        let signals = Signals {
            handoff: self.handoff,
            delay: self.settings.shutdown_delay,
        };
        let pid_file = self.settings.pid_file.clone();
        self.server.run(RunArgs {
            shutdown_signal: Box::new(signals),
        });
        // The services may have stopped before they saw the stop: the run is over either way.
        remove_own_pid_file(&pid_file);
        Ok(())
    }

    /// Every address the gateway listens on, with what it serves.
    fn addresses(&self) -> impl Iterator<Item = (&'static str, &String)> {
        let s = &self.settings;
        let tls = s.tls.iter().flat_map(|t| t.listen.iter());
        s.listen
            .iter()
            .map(|a| ("http", a))
            .chain(tls.map(|a| ("https", a)))
            .chain(s.metrics_listen.iter().map(|a| ("metrics", a)))
    }
}

/// A listen address that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {error}")]
pub struct StartError {
    what: &'static str,
    addr: String,
    error: std::io::Error,
}

/// The process signals, as the standalone gateway reads them (see [`Standalone::run`]).
struct Signals {
    handoff: Handoff,
    delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (mut quit, mut term, mut int) = match (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(quit), Ok(term), Ok(int)) => (quit, term, int),
            _ => {
                tracing::error!(target: "handoff::server", "cannot listen for signals: stopping");
                return ShutdownSignal::FastShutdown;
            }
        };
        tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => {
                self.handoff.drain();
                if self.delay.is_zero() {
                    return ShutdownSignal::GracefulTerminate;
                }
                tracing::info!(
                    target: "handoff::server",
                    "SIGTERM: readyz answers 503; still serving for shutdown_delay_seconds = {}",
                    self.delay.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(self.delay) => ShutdownSignal::GracefulTerminate,
                    _ = int.recv() => ShutdownSignal::FastShutdown,
                }
            }
        }
    }
}

/// Set once the server starts to hand its sockets over (`SIGQUIT`) or to shut down: from then
/// on every answer says `Connection: close`, so clients move to new connections (served by
/// the new process) instead of sending their next request into a connection about to close.
fn watch_for_draining(server: &Server) -> Arc<AtomicBool> {
    let draining = Arc::new(AtomicBool::new(false));
    let flag = draining.clone();
    let mut phases = server.watch_execution_phase();
    let watcher = std::thread::Builder::new()
        .name("handoff-phases".to_string())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(
                    ExecutionPhase::GracefulUpgradeTransferringFds
                    | ExecutionPhase::GracefulUpgradeCloseTimeout
                    | ExecutionPhase::GracefulTerminate
                    | ExecutionPhase::ShutdownStarted,
                ) => flag.store(true, Ordering::Relaxed),
                Ok(ExecutionPhase::Terminated) | Err(RecvError::Closed) => return,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
            }
        });
    if let Err(e) = watcher {
        tracing::warn!("cannot watch the server's phases, connections will not drain: {e}");
    }
    draining
}

/// Reloads the config on `SIGHUP`; writes the process id to `server.pid_file` (which
/// `handoff reload` reads) once the signal handler is in place, and removes it at the stop.
struct ReloadOnHangup {
    handoff: Handoff,
    pid_file: String,
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(target: "handoff::config", "cannot listen for SIGHUP, reload is off: {e}");
                return;
            }
        };
        if let Err(e) = std::fs::write(&self.pid_file, format!("{}\n", std::process::id())) {
            tracing::warn!(
                target: "handoff::config",
                "cannot write server.pid_file {}: {e}; `handoff reload` will not find this process",
                self.pid_file
            );
        }
        loop {
            tokio::select! {
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!(target: "handoff::config", "SIGHUP: reloading the config");
                    // The outcome is logged and counted by `reload` itself.
                    let _ = self.handoff.reload().await;
                }
                _ = shutdown.changed() => {
                    remove_own_pid_file(&self.pid_file);
                    return;
                }
            }
        }
    }
}

/// At a clean stop: removes the pid file if it still names this process (after a binary
/// upgrade it names the new one, which must keep it).
fn remove_own_pid_file(pid_file: &str) {
    let ours = std::fs::read_to_string(pid_file)
        .is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        if let Err(e) = std::fs::remove_file(pid_file) {
            tracing::debug!(target: "handoff::server", "cannot remove server.pid_file {pid_file}: {e}");
        }
    }
}

/// Maps `[server]` onto Pingora's own settings (there is no second YAML file).
fn pingora_conf(s: &ServerSettings) -> ServerConf {
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        daemon: s.daemon,
        error_log: s.error_log.clone(),
        ca_file: s.ca.as_ref().map(|ca| ca.path.clone()),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        ..ServerConf::default()
    }
}

/// The client-facing bounds of `[server]`, as Pingora's per-service options: how long and how
/// large a request head may be, HTTP/2's idle timeout, the connection cap.
fn server_options(s: &ServerSettings) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = s.h2c;
    options.max_request_header_size =
        Some(s.max_request_header_bytes + config::REQUEST_LINE_ALLOWANCE);
    options.request_header_timeout = Some(s.client_header_timeout);
    options.h2_idle_timeout = Some(s.h2_idle_timeout);
    // Unlimited without `max_connections`: the count still tells a graceful stop when the last
    // connection is gone.
    options.connection_limit = Some(ConnectionLimit::new(
        s.max_connections
            .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    options
}

/// `server.keepalive_timeout` as Pingora's keep-alive setting: whole seconds, `None` for off.
fn keepalive_seconds(idle: Duration) -> Option<u64> {
    match idle.as_secs() {
        0 => None,
        secs => Some(secs),
    }
}

/// The standalone gateway's proxy: Handoff in every phase, plus what a proxy of its own needs.
struct StandaloneProxy {
    handoff: Handoff,
    trust_forwarded_headers: bool,
    /// How long a connection may idle between requests (set on every request: Pingora would
    /// otherwise keep it forever, or as long as the client's `Keep-Alive` asks).
    keepalive: Option<u64>,
    /// See [`watch_for_draining`].
    draining: Arc<AtomicBool>,
}

#[async_trait]
impl ProxyHttp for StandaloneProxy {
    type CTX = HandoffCtx;

    fn new_ctx(&self) -> HandoffCtx {
        self.handoff.new_ctx()
    }

    /// What Pingora's own error and retry lines say about the request: method, path and host,
    /// without the query — a query can carry a credential (`?access_token=…`), and the access
    /// log leaves it out too.
    fn request_summary(&self, session: &Session, _ctx: &HandoffCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {}, Host: {}",
            req.method,
            req.uri.path(),
            String::from_utf8_lossy(session.get_header_bytes(HOST))
        )
    }

    /// No downstream modules. Pingora's default adds its response compression, switched off
    /// (level 0), which still costs every request a context and two header filters (three
    /// allocations). The gateway never compresses for the client: an answer goes out as the
    /// upstream encoded it.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut HandoffCtx) -> Result<bool> {
        // A client may half-close once its request is sent (RFC 9112 §9.6: `shutdown(SHUT_WR)`,
        // `nc -q`): it still gets its answer. A client that is really gone shows when the
        // answer cannot be written.
        if let HttpSession::H1(h1) = session.as_downstream_mut() {
            h1.set_abort_on_close(false);
            // Pipelined requests (RFC 9112 §9.3.2) are answered one after another, in order,
            // each read and checked on its own; Pingora's default drops all but the first.
            h1.set_pipelining_enabled(true);
        }
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        } else if session.get_keepalive().is_some() {
            // Bounds the idle time of a connection Pingora keeps (never revives one it closes:
            // HTTP/1.0 without keep-alive, `Connection: close`, both lengths).
            session.set_keepalive(self.keepalive);
        }
        match self.handoff.request_filter(session, ctx).await? {
            Filtered::Answered => Ok(true),
            Filtered::Proxy => Ok(false),
            Filtered::NotMine => {
                self.handoff.answer_not_found(session, ctx).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut HandoffCtx,
    ) -> Result<Box<HttpPeer>> {
        self.handoff
            .upstream_peer(session, ctx)
            .ok_or_else(|| Error::explain(ConnectNoRoute, "upstream group has no server"))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut HandoffCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.handoff.fail_to_connect(ctx, e)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut HandoffCtx,
    ) -> Result<()> {
        self.handoff.upstream_request_filter(upstream, ctx)?;
        self.forwarded_headers(session, upstream)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut HandoffCtx,
    ) -> Result<()> {
        self.handoff.response_filter(session, response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut HandoffCtx,
    ) -> Result<Option<Duration>> {
        self.handoff
            .response_body_filter(body, end_of_stream, ctx)?;
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut HandoffCtx,
    ) -> FailToProxy {
        self.handoff.fail_to_proxy(session, e, ctx).await
    }

    /// A WebSocket tunnel (the client had its `101` and its frames; the access line says 101)
    /// ends however its two sides end it — often an upstream's reset right after the close
    /// frame. That is no failure to proxy: DEBUG, not Pingora's ERROR. Any other failure that
    /// the request's access line carries (an upstream refusing or timing out, a client gone)
    /// is that one line, not a second one at ERROR.
    fn suppress_error_log(&self, session: &Session, ctx: &HandoffCtx, e: &Error) -> bool {
        let tunnel = session
            .response_written()
            .is_some_and(|r| r.status == http::StatusCode::SWITCHING_PROTOCOLS);
        if tunnel {
            tracing::debug!(target: "handoff::access", "a WebSocket tunnel ended: {e}");
        }
        tunnel || self.handoff.error_in_access_log(ctx, e)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut HandoffCtx) {
        self.handoff.log_access(session, e, ctx);
    }
}

impl StandaloneProxy {
    /// `X-Forwarded-For`/`-Proto`/`-Host`. A client's own values are replaced unless
    /// `server.trust_forwarded_headers` says this gateway sits behind a trusted proxy.
    fn forwarded_headers(&self, session: &Session, upstream: &mut RequestHeader) -> Result<()> {
        let trust = self.trust_forwarded_headers;
        let client_ip = match session.client_addr() {
            Some(PingoraAddr::Inet(addr)) => ip_value(addr.ip()),
            _ => None,
        };
        if let Some(ip) = client_ip {
            let prior = trust.then(|| forwarded_chain(&upstream.headers)).flatten();
            let value = match prior {
                Some(mut chain) => {
                    chain.push_str(", ");
                    chain.push_str(ip.to_str().unwrap_or_default());
                    HeaderValue::try_from(chain).unwrap_or(ip)
                }
                None => ip,
            };
            X_FORWARDED_FOR.set(upstream, value);
        }
        if !(trust && upstream.headers.contains_key(&X_FORWARDED_PROTO.name)) {
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
            X_FORWARDED_PROTO.set(upstream, proto);
        }
        if !(trust && upstream.headers.contains_key(&X_FORWARDED_HOST.name)) {
            let host = upstream.headers.get(HOST).cloned().or_else(|| {
                upstream
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            });
            match host {
                Some(host) => X_FORWARDED_HOST.set(upstream, host),
                None => {
                    upstream.remove_header(&X_FORWARDED_HOST.name);
                }
            }
        }
        // An HTTP/2 client sends `:authority`, not `Host`; an HTTP/1.1 upstream needs `Host`.
        if !upstream.headers.contains_key(HOST) {
            if let Some(authority) = upstream.uri.authority().map(|a| a.to_string()) {
                upstream.insert_header(HOST, authority)?;
            }
        }
        Ok(())
    }
}

/// The `X-Forwarded-For` a trusted proxy sent, its lines joined in order; `None` when it sent
/// none, or a line that is not text (then only the address it came from is passed on).
fn forwarded_chain(headers: &http::HeaderMap) -> Option<String> {
    let mut chain: Option<String> = None;
    for line in headers.get_all(&X_FORWARDED_FOR.name) {
        let line = line.to_str().ok()?;
        match chain.as_mut() {
            Some(chain) => chain.extend([", ", line]),
            None => chain = Some(line.to_string()),
        }
    }
    chain
}

/// A client address as `X-Forwarded-For` carries it. An IPv4 address (the common case, once per
/// request) is written octet by octet with `itoa`: `Display` goes through `fmt`, ten times the
/// work. (Either is always a valid header value: digits, dots, hex and colons.)
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::try_from(ip.to_string()).ok();
    };
    let mut text = String::with_capacity(15);
    let mut octet = itoa::Buffer::new();
    for (i, byte) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        text.push_str(octet.format(byte));
    }
    HeaderValue::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_client_address_reads_as_display_writes_it() {
        let mut addresses = vec![Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST];
        for octet in 0..=255u8 {
            addresses.push(Ipv4Addr::new(octet, 0, 9, 10));
            addresses.push(Ipv4Addr::new(99, octet, 100, 1));
            addresses.push(Ipv4Addr::new(255, 7, octet, 0));
            addresses.push(Ipv4Addr::new(1, 23, 45, octet));
        }
        for v4 in addresses {
            let written = ip_value(IpAddr::V4(v4)).unwrap();
            assert_eq!(written.to_str().unwrap(), v4.to_string());
        }
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(ip_value(v6).unwrap().to_str().unwrap(), "2001:db8::1");
    }
}
