//! [`Handoff`]: the library's face — what a Pingora proxy calls from its own phases.

mod access_log;
#[cfg(all(test, feature = "cli"))]
pub(crate) use access_log::AccessLine;
#[cfg(feature = "cli")]
pub(crate) use access_log::{write_json_lines_to, write_timestamp};
mod failures;
mod hop_by_hop;
mod live;
mod screen;
mod widgets;
mod wire;

use wire::write_reply;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::proxy::Session;
use pingora::server::Server;
use pingora::services::ServiceHandle;
use pingora::upstreams::peer::{HttpPeer, Peer};

use crate::apps::inflate::Inflater;
use crate::apps::widget::WidgetRewriter;
use crate::config::{self, Config, ConfigErrors};
use crate::gateway::{Decision, Gateway, SessionNote, Widgets};
use crate::identity::Identity;

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
    /// What happened to the request, for the access log and the failure page.
    outcome: Outcome,
    upstream: Option<PeerAddr>,
    route: Option<usize>,
    identity: Option<Arc<Identity>>,
    session: SessionNote,
    connect_failures: usize,
    /// The help-desk reference of the page the request was answered with, for the log.
    reference: Option<Box<str>>,
    /// What an HTML answer's widget tags get.
    widgets: Widgets,
    /// Set once the response turned out to be a rewritable HTML page. Boxed: most answers are
    /// not such pages, and every request's state (its future) is moved into a box once.
    page: Option<Box<PageRewrite>>,
    /// Set when the response is an HTML page that cannot be rewritten (an encoding the gateway
    /// cannot undo, or a byte range): its body is replaced by this error page.
    replacement: Option<Bytes>,
}

/// How an HTML page's body is rewritten as it streams.
struct PageRewrite {
    rewriter: Mutex<WidgetRewriter>,
    /// Set when the page came compressed: undoes the encoding, up to the page cap.
    inflater: Option<Mutex<Inflater>>,
}

impl HandoffCtx {
    /// Who the request is from, when Handoff looked for a session and found one.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
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

/// What happened to a request: proxied (so far), or answered or cut short by Handoff with the
/// reply's code (`login_redirect`, `forbidden`, `redirected`, `page_too_large`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Proxied,
    Answered(&'static str),
}

impl Outcome {
    /// The access log's `outcome`: a proxied request that failed is `proxy_error`.
    fn label(self, failed: bool) -> &'static str {
        match self {
            Outcome::Proxied if failed => "proxy_error",
            Outcome::Proxied => "proxied",
            Outcome::Answered(code) => code,
        }
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

    /// Tells load balancers this instance is about to stop: from now on `readyz` answers 503
    /// (`"draining": true`), while everything else is served as before. Call it when your
    /// process is told to stop, some seconds before it stops listening (the `handoff` binary
    /// does so on SIGTERM, for `server.shutdown_delay_seconds`).
    pub fn drain(&self) {
        self.gateway().start_draining();
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
            outcome: Outcome::Proxied,
            upstream: None,
            route: None,
            identity: None,
            session: SessionNote::NotChecked,
            connect_failures: 0,
            reference: None,
            widgets: Widgets::Off,
            page: None,
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
            ctx.outcome = Outcome::Answered(reply.outcome);
            ctx.reference = write_reply(session, reply, gateway.pages()).await?;
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
            Decision::Reply {
                reply,
                route,
                identity,
            } => {
                ctx.route = route;
                ctx.identity = identity;
                ctx.outcome = Outcome::Answered(reply.outcome);
                ctx.reference = write_reply(session, reply, gateway.pages()).await?;
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
                to,
                identity,
            } => {
                ctx.route = Some(route);
                let reply = gateway.handoff(to, &identity, session.req_header()).await;
                ctx.outcome = Outcome::Answered(reply.outcome);
                ctx.identity = Some(identity);
                ctx.reference = write_reply(session, reply, gateway.pages()).await?;
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
            .and_then(|group| group.select(session.req_header(), upgrade))?;
        ctx.upstream = Some(peer.address().clone());
        Some(peer)
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
                // Room for all five at once; each name parsed once, at load (see vendor/).
                upstream.reserve_headers(5);
                for h in gateway.identity_header_values(identity) {
                    upstream.insert_parsed_header(h.name, h.spelled.clone(), h.value);
                }
            }
        }
        if ctx.widgets != Widgets::Off {
            // The page is rewritten as it streams: ask for it uncompressed (one that comes
            // compressed anyway is inflated up to the page cap, see response_filter).
            upstream.remove_header(&http::header::ACCEPT_ENCODING);
        }
        if ctx.widgets == Widgets::SignIn && ctx.identity.is_some() {
            // The answer may carry a code minted now: a 304 would keep an old page (another
            // person's, from a cache) and its code; ask for the page itself.
            upstream.remove_header(&http::header::IF_NONE_MATCH);
            upstream.remove_header(&http::header::IF_MODIFIED_SINCE);
        }
        Ok(())
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

#[cfg(test)]
mod tests;
