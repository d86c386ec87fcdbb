//! [`Handoff`]: the library's face — what a Pingora proxy calls from its own phases.

mod live;
mod screen;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::proxy::{FailToProxy, Session};
use pingora::server::Server;
use pingora::services::ServiceHandle;
use pingora::upstreams::peer::{HttpPeer, Peer};

use crate::config::{self, Config, ConfigErrors};
use crate::gateway::{Decision, Gateway, SessionNote, Widgets};
use crate::handoff::inflate::{InflateError, Inflater};
use crate::handoff::widget::WidgetRewriter;
use crate::identity::Identity;
use crate::reply::{wants_html, Reply};

/// Why a [`Handoff`] could not be built: every problem of the settings, each named by its key
/// path (`routes[2].app: unknown app "yourgtp"`). `Display` lists them one per line; no secret
/// value ever appears. The same type as [`ConfigErrors`].
pub type LoadError = ConfigErrors;

/// Handoff's session recognition, YourGPT and TypingMind handoffs and widget sign-in, ready to
/// be called from a Pingora proxy's phases. Cheap to clone (one shared state).
///
/// Build it once at start-up, keep a clone in your `ProxyHttp`, and keep a [`HandoffCtx`] in
/// your per-request context. See the crate documentation for the phase-by-phase wiring.
#[derive(Clone)]
pub struct Handoff {
    live: Arc<live::Live>,
}

/// Per-request state: make one with [`Handoff::new_ctx`] in your `new_ctx` and keep it inside
/// your own CTX. Handoff decides once, in [`Handoff::request_filter`]; later phases read it.
pub struct HandoffCtx {
    started: Instant,
    /// The config this request is decided by (set in `request_filter`).
    gateway: Option<Arc<Gateway>>,
    /// What happened: `proxied`, or what Handoff answered (see `Reply::outcome`).
    outcome: &'static str,
    upstream: Option<PeerAddr>,
    route: Option<usize>,
    identity: Option<Identity>,
    session: SessionNote,
    connect_failures: usize,
    /// What an HTML answer's widget tags get.
    widgets: Widgets,
    /// Set once the response turned out to be a rewritable HTML page.
    rewriter: Option<Mutex<WidgetRewriter>>,
    /// Set when that page came compressed: undoes the encoding, up to the page cap.
    inflater: Option<Mutex<Inflater>>,
    /// Set when the response is an HTML page that cannot be rewritten (an encoding the gateway
    /// cannot undo, or a byte range): its body is replaced by this error page.
    replacement: Option<Bytes>,
}

impl HandoffCtx {
    /// Who the request is from, when Handoff looked for a session and found one.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The session outcome, for your logs: `-` (not looked for), `valid`, or the reason it
    /// was refused (`missing`, `expired`, `bad_signature`, `unavailable`, …).
    pub fn session_outcome(&self) -> &'static str {
        self.session.label()
    }

    /// Which source recognised the person (`cookie`, `bearer`, `userinfo`), or `-`.
    pub fn session_source(&self) -> &'static str {
        self.session.source()
    }
}

/// What [`Handoff::request_filter`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    /// Handoff wrote the whole response: a handoff redirect or page, a login redirect, a
    /// refusal, or one of its own endpoints. Return `Ok(true)` from your `request_filter`.
    Answered,
    /// One of Handoff's proxy routes: proxy it, to [`Handoff::upstream_peer`] (or your own).
    Proxy,
    /// None of Handoff's routes: yours to route as you like.
    NotMine,
}

impl Handoff {
    /// Loads and validates a config file (relative paths in it resolve from its folder).
    /// [`Handoff::reload`] reads the same file again.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        Self::build(config::load(path)?, Some(path.to_path_buf()))
    }

    /// Validates a config given as TOML text; relative paths resolve from `base_dir`.
    pub fn from_toml(text: &str, base_dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::build(config::from_toml_str(text, base_dir.as_ref())?, None)
    }

    /// Validates settings given in code: any value that serializes to the config file's shape
    /// (your own serde types, `serde_json::json!`, a `toml::Table`). The same checks as a file,
    /// with the same key paths in errors.
    pub fn from_settings(
        settings: impl serde::Serialize,
        base_dir: impl AsRef<Path>,
    ) -> Result<Self, LoadError> {
        let text = toml::to_string(&settings).map_err(|e| {
            ConfigErrors::one(format!("the settings do not fit a TOML document: {e}"))
        })?;
        Self::from_toml(&text, base_dir)
    }

    /// Builds from a config already loaded from `source` (see [`Handoff::from_file`]).
    #[doc(hidden)]
    pub fn from_config(config: Config, source: Option<PathBuf>) -> Result<Self, LoadError> {
        Self::build(config, source)
    }

    fn build(config: Config, source: Option<PathBuf>) -> Result<Self, LoadError> {
        Ok(Handoff {
            live: live::Live::new(config, source)?,
        })
    }

    /// The config in use.
    fn gateway(&self) -> Arc<Gateway> {
        self.live.gateway()
    }

    /// The config `ctx`'s request is decided by (the current one before `request_filter`);
    /// borrowed from `ctx` once set, so the later phases take no reference of their own.
    fn gateway_of<'a>(&self, ctx: &'a HandoffCtx) -> Cow<'a, Arc<Gateway>> {
        match &ctx.gateway {
            Some(gateway) => Cow::Borrowed(gateway),
            None => Cow::Owned(self.gateway()),
        }
    }

    /// Re-reads the config file, validates it and swaps it in: routes, upstreams, apps,
    /// sessions and policies. Requests in flight finish on the config they started with. A
    /// config with a new JWKS URL serves once its keys are in (or `startup_wait_ms` passed).
    /// On any problem the config in use stays and the problems come back (and are logged and
    /// counted in `handoff_config_reloads_total{result="failure"}`). Returns the new config's
    /// [`Handoff::summary`].
    ///
    /// `[server]` and `[log]`'s `format` and `file` are read at start only (a warning says
    /// when they changed); `server.endpoints_prefix` reloads.
    pub async fn reload(&self) -> Result<String, LoadError> {
        self.live.reload().await
    }

    /// Shows a Pingora connection cap (`HttpServerOptions::connection_limit`) in the metrics:
    /// `handoff_client_connections`, `handoff_client_connections_max` and
    /// `handoff_client_connections_refused_total`.
    pub fn count_connections(&self, limit: Arc<pingora::apps::ConnectionLimit>) {
        match crate::metrics::ConnectionsCollector::new(limit) {
            Ok(collector) => self.live.metrics().register(Box::new(collector)),
            Err(e) => tracing::error!(target: "handoff::metrics", "cannot count connections: {e}"),
        }
    }

    /// Prometheus' text format of Handoff's metrics, for a host that serves them itself.
    pub fn metrics_text(&self) -> String {
        self.live.metrics().render()
    }

    /// Adds a listener at `addr` that answers Prometheus scrapes (any path) with Handoff's
    /// metrics.
    pub fn add_metrics_service(&self, server: &mut Server, addr: &str) {
        let mut service = pingora::services::listening::Service::new(
            "handoff metrics".to_string(),
            crate::metrics::MetricsApp(self.live.metrics().clone()),
        );
        service.add_tcp(addr);
        service.threads = Some(1);
        server.add_service(service);
    }

    /// What the config holds, for a start-up line: `4 routes, 1 upstream, 2 apps`.
    pub fn summary(&self) -> String {
        summary_of(&self.gateway())
    }

    /// Adds Handoff's background service to `server`: upstream health checks and, with
    /// `[session.jwks]`, the key-set refresher, for the config in use (a reload swaps them).
    /// Returns the services your proxy service should depend on
    /// (`handle.add_dependencies(...)`), so that its listeners open once the first signing keys
    /// are in (or `startup_wait_ms` has passed).
    pub fn add_services(&self, server: &mut Server) -> Vec<ServiceHandle> {
        vec![server.add_service(self.live.background_service())]
    }

    /// A fresh per-request context.
    pub fn new_ctx(&self) -> HandoffCtx {
        HandoffCtx {
            started: Instant::now(),
            gateway: None,
            outcome: "proxied",
            upstream: None,
            route: None,
            identity: None,
            session: SessionNote::NotChecked,
            connect_failures: 0,
            widgets: Widgets::Off,
            rewriter: None,
            inflater: None,
            replacement: None,
        }
    }

    /// Call first in your `request_filter`. Settles the request as the upstream will read it —
    /// removes client headers that could pass for Handoff's identity headers or (unless
    /// `server.trust_forwarded_headers`) for forwarding headers, in any spelling; refuses a
    /// malformed host; puts the path in the one form both the routes and the upstream act on —
    /// then decides what the request is to Handoff: answers it ([`Filtered::Answered`]: return
    /// `Ok(true)`), or leaves it to be proxied — on one of Handoff's routes
    /// ([`Filtered::Proxy`]) or yours ([`Filtered::NotMine`]). Route your own requests on the
    /// path as it is after this call.
    pub async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut HandoffCtx,
    ) -> Result<Filtered> {
        let gateway = self.gateway();
        ctx.gateway = Some(gateway.clone());
        if let Some(reply) = screen::screen(&gateway, session.req_header_mut()) {
            ctx.outcome = reply.outcome;
            write_reply(session, reply).await?;
            return Ok(Filtered::Answered);
        }
        let (decision, note) = gateway.decide(session.req_header()).await;
        ctx.session = note;
        if note != SessionNote::NotChecked {
            let source = match note {
                SessionNote::Valid(source) => source.label(),
                _ => "none",
            };
            self.live
                .metrics()
                .sessions
                .with_label_values(&[source, note.label()])
                .inc();
        }
        match decision {
            Decision::Reply { reply, route } => {
                ctx.route = route;
                ctx.outcome = reply.outcome;
                write_reply(session, reply).await?;
                Ok(Filtered::Answered)
            }
            Decision::Proxy {
                route,
                identity,
                widgets,
            } => {
                ctx.route = route;
                ctx.identity = identity;
                ctx.widgets = widgets;
                Ok(match route {
                    Some(_) => Filtered::Proxy,
                    None => Filtered::NotMine,
                })
            }
            Decision::Handoff {
                route,
                app,
                identity,
            } => {
                ctx.route = Some(route);
                let reply = gateway
                    .handoff(route, app, &identity, session.req_header())
                    .await;
                ctx.outcome = reply.outcome;
                ctx.identity = Some(identity);
                write_reply(session, reply).await?;
                Ok(Filtered::Answered)
            }
        }
    }

    /// The upstream server for a [`Filtered::Proxy`] request: the route's group, round-robin,
    /// skipping servers that fail their health check. `None` for a request Handoff does not
    /// route.
    pub fn upstream_peer(&self, session: &Session, ctx: &mut HandoffCtx) -> Option<Box<HttpPeer>> {
        let upgrade = session.is_upgrade_req();
        let peer = self
            .gateway_of(ctx)
            .upstream_for(ctx.route?)
            .and_then(|group| group.select(upgrade))?;
        ctx.upstream = Some(peer.address().clone());
        Some(peer)
    }

    /// Call from your `fail_to_connect`: a refused connection is retried on the route's other
    /// servers, once each.
    pub fn fail_to_connect(&self, ctx: &mut HandoffCtx, mut e: Box<Error>) -> Box<Error> {
        ctx.connect_failures += 1;
        if let Some(route) = ctx.route {
            let servers = self
                .gateway_of(ctx)
                .upstream_for(route)
                .map_or(0, |g| g.server_count());
            if ctx.connect_failures < servers {
                e.set_retry(true);
            }
        }
        e
    }

    /// Call from your `upstream_request_filter`, for every request. Adds the person's identity
    /// headers on routes with `identity_headers = true`, and asks for an uncompressed page when
    /// the answer may carry a widget. (Client-sent identity headers are already gone:
    /// [`Handoff::request_filter`] removes them, so a host that skips this call forwards none.)
    pub fn upstream_request_filter(
        &self,
        upstream: &mut RequestHeader,
        ctx: &HandoffCtx,
    ) -> Result<()> {
        let gateway = self.gateway_of(ctx);
        if let (Some(identity), Some(route)) = (&ctx.identity, ctx.route) {
            if gateway.route(route).identity_headers {
                for (name, value) in gateway.identity_header_values(identity) {
                    upstream.insert_header(name, value)?;
                }
            }
        }
        if ctx.widgets != Widgets::Off {
            // The page is rewritten as it streams: ask for it uncompressed (one that comes
            // compressed anyway is inflated up to the page cap, see response_filter).
            upstream.remove_header(&http::header::ACCEPT_ENCODING);
        }
        Ok(())
    }

    /// Call from your `response_filter`: with widget apps configured, every HTML page gets
    /// its widget tags rewritten — a fresh code for a signed-in, admitted person's top-level
    /// navigation, any other code removed (length becomes chunked; `Cache-Control: private,
    /// no-store` when it will carry a per-person code). A page compressed with gzip, br or
    /// zstd is inflated, never past `widget_max_page_bytes` (see
    /// [`Handoff::response_body_filter`]); nothing else is ever decompressed. An HTML page that
    /// cannot be rewritten (another encoding, or a byte range) is replaced by a 502 page.
    pub fn response_filter(
        &self,
        session: &Session,
        response: &mut ResponseHeader,
        ctx: &mut HandoffCtx,
    ) -> Result<()> {
        let status = response.status;
        let has_body = !(status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
            || session.req_header().method == http::Method::HEAD);
        if ctx.widgets == Widgets::Off || !has_body || !is_html(response) {
            return Ok(());
        }
        let Some(cap) = self.gateway_of(ctx).widget_page_cap() else {
            return Ok(());
        };
        let length = response
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|n| n > cap) {
            // Too large to rewrite (compressed, larger still): it goes out as it came.
            return Ok(());
        }
        // Decided before the rewriter is built, so no code is minted for a page replaced.
        let encoding =
            header_lower(response, http::header::CONTENT_ENCODING).filter(|e| e != "identity");
        let inflater = match encoding {
            _ if status == http::StatusCode::PARTIAL_CONTENT => {
                return self.replace_unreadable_page(session, response, ctx)
            }
            Some(encoding) => match Inflater::new(&encoding, cap) {
                Some(inflater) => Some(inflater),
                None => return self.replace_unreadable_page(session, response, ctx),
            },
            None => None,
        };
        let person = match ctx.widgets {
            Widgets::SignIn => ctx.identity.as_ref(),
            _ => None,
        };
        let Some(rewriter) = self.gateway_of(ctx).widget_rewriter(person) else {
            return Ok(());
        };
        if inflater.is_some() {
            response.remove_header(&http::header::CONTENT_ENCODING);
            // Another representation now: a strong validator would be a lie.
            if let Some(etag) = response.headers.get(http::header::ETAG).cloned() {
                if !etag.as_bytes().starts_with(b"W/") {
                    let mut weak = b"W/".to_vec();
                    weak.extend_from_slice(etag.as_bytes());
                    response.insert_header(http::header::ETAG, weak)?;
                }
            }
        }
        // The body changes length as it streams.
        response.remove_header(&http::header::CONTENT_LENGTH);
        if !session.is_http2() {
            response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        if person.is_some() {
            // The page may now carry a per-person code: no shared cache may keep it.
            response.insert_header(http::header::CACHE_CONTROL, "private, no-store")?;
        }
        ctx.rewriter = Some(Mutex::new(rewriter));
        ctx.inflater = inflater.map(Mutex::new);
        Ok(())
    }

    /// An HTML page whose widget tags cannot be checked: its headers become a 502 page's, and
    /// [`Handoff::response_body_filter`] sends that page instead of the body.
    fn replace_unreadable_page(
        &self,
        session: &Session,
        response: &mut ResponseHeader,
        ctx: &mut HandoffCtx,
    ) -> Result<()> {
        let reply = Reply::error(
            true,
            502,
            "page_not_checked",
            "The intranet page could not be checked",
            "The intranet sent this page in a form the gateway cannot read (an unknown \
             compression, or only a part of it), so it cannot make sure the page carries no \
             stale sign-in code. Reloading the page usually helps.",
        );
        tracing::warn!(
            target: "handoff::widget",
            "an HTML page came compressed with an encoding the gateway cannot undo, or as a \
             byte range; sent a 502 page instead (widget codes cannot be checked in it)"
        );
        response.set_status(502)?;
        for name in [
            http::header::CONTENT_ENCODING,
            http::header::CONTENT_LENGTH,
            http::header::CONTENT_RANGE,
            http::header::ETAG,
            http::header::LAST_MODIFIED,
        ] {
            response.remove_header(&name);
        }
        for (name, value) in reply.headers {
            response.insert_header(name, value)?;
        }
        response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        if !session.is_http2() {
            response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        ctx.outcome = "page_not_checked";
        ctx.replacement = Some(reply.body);
        Ok(())
    }

    /// Call from your `response_body_filter` (and return its error): streams the page through
    /// the widget rewriter (signs the widget in, or strips a stale code when nobody is signed
    /// in), inflating it first when it came compressed. A compressed page that inflates past
    /// `widget_max_page_bytes`, or is not valid in its encoding, is an error: its answer ends
    /// there, cut short (the client sees an incomplete response, never the rest inflated).
    pub fn response_body_filter(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut HandoffCtx,
    ) -> Result<()> {
        if let Some(page) = &ctx.replacement {
            *body = end_of_stream.then(|| page.clone());
            return Ok(());
        }
        let Some(rewriter) = ctx.rewriter.as_mut() else {
            return Ok(());
        };
        if let Some(inflater) = ctx.inflater.as_mut() {
            let inflater = inflater.get_mut().unwrap_or_else(|e| e.into_inner());
            let mut plain = match body.as_deref() {
                Some(chunk) => inflater.write(chunk),
                None => Ok(Vec::new()),
            };
            if end_of_stream {
                plain = plain.and_then(|mut p| {
                    p.extend(inflater.finish()?);
                    Ok(p)
                });
            }
            match plain {
                Ok(plain) => *body = Some(Bytes::from(plain)),
                Err(e) => {
                    let too_large = matches!(e, InflateError::TooLarge { .. });
                    ctx.outcome = if too_large {
                        "page_too_large"
                    } else {
                        "page_not_checked"
                    };
                    tracing::warn!(
                        target: "handoff::widget",
                        "a compressed HTML page was cut short: {e} (widget_max_page_bytes)"
                    );
                    // A 502 page when nothing was sent yet, else the answer is cut short.
                    return Error::e_explain(
                        HTTPStatus(502),
                        format!("compressed HTML page not rewritten: {e}"),
                    );
                }
            }
        }
        let rewriter = rewriter.get_mut().unwrap_or_else(|e| e.into_inner());
        let rewritten = match body.take() {
            Some(chunk) => rewriter.write(&chunk),
            None => Ok(Bytes::new()),
        };
        let finished = match rewritten {
            Ok(out) if end_of_stream => rewriter.finish().map(|last| (out, last)),
            Ok(out) => Ok((out, Bytes::new())),
            Err(e) => Err(e),
        };
        let (out, last) = match finished {
            Ok(both) => both,
            Err(e) => {
                ctx.outcome = "page_not_checked";
                tracing::warn!(target: "handoff::widget", "an HTML page was cut short: {e}");
                // A 502 page when nothing was sent yet, else the answer is cut short.
                return Error::e_explain(HTTPStatus(502), e.to_string());
            }
        };
        *body = Some(if end_of_stream {
            if out.is_empty() {
                last
            } else {
                let mut both = Vec::with_capacity(out.len() + last.len());
                both.extend_from_slice(&out);
                both.extend_from_slice(&last);
                Bytes::from(both)
            }
        } else {
            out
        });
        Ok(())
    }

    /// Optional, from your `fail_to_proxy`: answers a failed proxy attempt with a clear 502 /
    /// 504 / 400 page (HTML for browsers, JSON otherwise; no internals) and closes the
    /// connection.
    pub async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &HandoffCtx,
    ) -> FailToProxy {
        let code = proxy_error_status(e);
        if code > 0 && session.response_written().is_none() {
            let html = wants_html(&session.req_header().headers);
            let (title, message) = match code {
                _ if ctx.outcome == "page_too_large" => (
                    "The intranet page is too large",
                    "This page is larger than the gateway checks for sign-in codes \
                     (widget_max_page_bytes), so it was not sent.",
                ),
                _ if ctx.outcome == "page_not_checked" => (
                    "The intranet page could not be checked",
                    "The intranet sent this page compressed, but not validly, so the gateway \
                     cannot make sure it carries no stale sign-in code. Reloading the page \
                     usually helps.",
                ),
                502 => (
                    "The intranet is not answering",
                    "The gateway could not reach the intranet server. Please try again in a moment.",
                ),
                504 => (
                    "The intranet is taking too long",
                    "The intranet server did not answer in time. Please try again in a moment.",
                ),
                400..=499 => ("Bad request", "The gateway could not understand this request."),
                _ => (
                    "Something went wrong",
                    "The gateway hit an unexpected problem. Please try again.",
                ),
            };
            let outcome = match ctx.outcome {
                "proxied" => "proxy_error",
                outcome => outcome,
            };
            let reply = Reply::error(html, code, outcome, title, message);
            // The connection is not reused after a failed proxy attempt: say so, or the client
            // sends its next request into a closing socket.
            session.set_keepalive(None);
            if let Err(write_err) = write_reply(session, reply).await {
                tracing::debug!("could not send the error page: {write_err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Optional, for requests Handoff does not route ([`Filtered::NotMine`]) when you have no
    /// route for them either: a 404 page.
    pub async fn answer_not_found(&self, session: &mut Session) -> Result<()> {
        let html = wants_html(&session.req_header().headers);
        write_reply(session, self.gateway().not_found(html)).await
    }

    /// Call from your `logging`: counts the request in the metrics and, unless
    /// `[log] access = false`, writes one access-log line (target `handoff::access`): method,
    /// path (the query only with `[log] query = true`, and never on a handoff route), status,
    /// route, outcome, upstream, session result and source, the person (`[log] person`),
    /// duration. Never a token, a cookie or a secret.
    pub fn log_access(&self, session: &Session, e: Option<&Error>, ctx: &HandoffCtx) {
        let gateway = self.gateway_of(ctx);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.map(|r| gateway.route(r));
        let (route_label, route_metrics) = gateway.route_metrics(ctx.route);
        let seconds = ctx.started.elapsed().as_secs_f64();
        route_metrics.record(status, seconds);
        let log = gateway.log_settings();
        if !log.access {
            return;
        }
        let req = session.req_header();
        let handoff_route = route.is_some_and(|r| r.target.is_app());
        let path = match req.uri.query() {
            Some(q) if log.query && !handoff_route => format!("{}?{q}", req.uri.path()),
            _ => req.uri.path().to_string(),
        };
        let person = ctx
            .identity
            .as_ref()
            .map_or(Cow::Borrowed("-"), |i| gateway.person_for_log(i));
        let upstream = ctx.upstream.as_ref().map(|a| a.to_string());
        let outcome = if e.is_some() && ctx.outcome == "proxied" {
            "proxy_error"
        } else {
            ctx.outcome
        };
        tracing::info!(
            target: "handoff::access",
            method = %req.method,
            path,
            status,
            route = route_label.as_str(),
            outcome,
            upstream = upstream.as_deref().unwrap_or("-"),
            session = ctx.session.label(),
            source = ctx.session.source(),
            person = &*person,
            duration_ms = (seconds * 1e5).round() / 100.0,
            error = e.map(|e| e.to_string()).as_deref().unwrap_or("-"),
        );
    }
}

/// `4 routes, 1 upstream, 2 apps`.
pub(crate) fn summary_of(g: &Gateway) -> String {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}, {}",
        count(g.route_count(), "route"),
        count(g.upstreams().len(), "upstream"),
        count(g.app_count(), "app")
    )
}

/// The status a failed proxy attempt answers with; 0 when the client is gone.
fn proxy_error_status(e: &Error) -> u16 {
    match e.etype() {
        HTTPStatus(code) => *code,
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
            if e.esource() == &ErrorSource::Downstream {
                0
            } else {
                504
            }
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// A header's value, trimmed and lower-cased.
fn header_lower(response: &ResponseHeader, name: http::header::HeaderName) -> Option<String> {
    response
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// An HTML (or XHTML) page: one a browser runs scripts in.
fn is_html(response: &ResponseHeader) -> bool {
    header_lower(response, http::header::CONTENT_TYPE)
        .is_some_and(|t| t.starts_with("text/html") || t.starts_with("application/xhtml+xml"))
}

/// Writes a complete [`Reply`], keeping the connection open for the next request unless the
/// reply says to close it.
async fn write_reply(session: &mut Session, reply: Reply) -> Result<()> {
    if reply.close {
        session.set_keepalive(None);
    }
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
    for (name, value) in reply.headers {
        resp.insert_header(name, value)?;
    }
    resp.insert_header("Content-Length", reply.body.len().to_string())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    if reply.body.is_empty() || head_only {
        session.write_response_header(Box::new(resp), true).await
    } else {
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(reply.body), true).await
    }
}
