//! The Pingora `ProxyHttp` implementation: glue only. Decisions live in [`Gateway`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HOST;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::gateway::{Decision, Gateway, SessionNote};
use crate::handoff::widget::WidgetRewriter;
use crate::identity::Identity;
use crate::reply::{wants_html, Reply};

const X_FORWARDED_FOR: &str = "X-Forwarded-For";
const X_FORWARDED_PROTO: &str = "X-Forwarded-Proto";
const X_FORWARDED_HOST: &str = "X-Forwarded-Host";

/// The proxy service's logic.
pub struct HandoffProxy {
    gateway: Arc<Gateway>,
}

impl HandoffProxy {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        HandoffProxy { gateway }
    }
}

/// Per-request state, decided once in `request_filter`.
pub struct RequestCtx {
    started: Instant,
    route: Option<usize>,
    identity: Option<Identity>,
    session: SessionNote,
    connect_failures: usize,
    /// The response may get widget sign-in (a browser GET with widget apps configured).
    widgets: bool,
    /// Set once the response turned out to be a rewritable HTML page.
    rewriter: Option<Mutex<WidgetRewriter>>,
}

#[async_trait]
impl ProxyHttp for HandoffProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            route: None,
            identity: None,
            session: SessionNote::NotChecked,
            connect_failures: 0,
            widgets: false,
            rewriter: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let (decision, note) = self.gateway.decide(session.req_header()).await;
        ctx.session = note;
        match decision {
            Decision::Reply(reply) => {
                write_reply(session, reply).await?;
                Ok(true)
            }
            Decision::Proxy {
                route,
                identity,
                widgets,
            } => {
                ctx.route = Some(route);
                ctx.identity = identity;
                ctx.widgets = widgets;
                if widgets {
                    // The page is rewritten as it streams: undo any upstream compression.
                    session.upstream_compression.adjust_decompression(true);
                }
                Ok(false)
            }
            Decision::Handoff {
                route,
                app,
                identity,
            } => {
                ctx.route = Some(route);
                let reply = self
                    .gateway
                    .handoff(route, app, &identity, session.req_header())
                    .await;
                ctx.identity = Some(identity);
                write_reply(session, reply).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .ok_or_else(|| Error::explain(InternalError, "no route decided"))?;
        let upgrade = session.is_upgrade_req();
        self.gateway
            .upstream_for(route)
            .and_then(|group| group.select(upgrade))
            .ok_or_else(|| Error::explain(ConnectNoRoute, "upstream group has no server"))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Try the group's other servers once each before giving up.
        ctx.connect_failures += 1;
        if let Some(route) = ctx.route {
            let servers = self
                .gateway
                .upstream_for(route)
                .map_or(0, |g| g.server_count());
            if ctx.connect_failures < servers {
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Never trust a client's copy of an identity header, on any route.
        for name in self.gateway.identity_header_names().all() {
            upstream.remove_header(name);
        }
        if let (Some(identity), Some(route)) = (&ctx.identity, ctx.route) {
            if self.gateway.route(route).identity_headers {
                for (name, value) in self.gateway.identity_header_values(identity) {
                    upstream.insert_header(name, value)?;
                }
            }
        }
        self.forwarded_headers(session, upstream)?;
        if ctx.widgets {
            // Ask for an uncompressed page; whatever still comes compressed is decompressed.
            upstream.remove_header(&http::header::ACCEPT_ENCODING);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !ctx.widgets || response.status != http::StatusCode::OK || !is_plain_html(response) {
            return Ok(());
        }
        let Some((rewriter, cap)) = self.gateway.widget_rewriter(ctx.identity.as_ref()) else {
            return Ok(());
        };
        let length = response
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|n| n > cap) {
            return Ok(());
        }
        // The body changes length as it streams.
        response.remove_header(&http::header::CONTENT_LENGTH);
        if !session.is_http2() {
            response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        if ctx.identity.is_some() {
            // The page may now carry a per-person code: no shared cache may keep it.
            response.insert_header(http::header::CACHE_CONTROL, "private, no-store")?;
        }
        ctx.rewriter = Some(Mutex::new(rewriter));
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        let Some(rewriter) = ctx.rewriter.as_mut() else {
            return Ok(None);
        };
        let rewriter = rewriter.get_mut().unwrap_or_else(|e| e.into_inner());
        let out = match body.take() {
            Some(chunk) => rewriter.write(&chunk),
            None => Bytes::new(),
        };
        *body = Some(if end_of_stream {
            let last = rewriter.finish();
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
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.etype() {
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
        };
        if code > 0 && session.response_written().is_none() {
            let html = wants_html(&session.req_header().headers);
            let (title, message) = match code {
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
            let reply = Reply::error(html, code, "proxy_error", title, message);
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let route = ctx
            .route
            .map_or("-", |r| self.gateway.route(r).key.as_str());
        let elapsed_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
        let user = ctx.identity.as_ref().map_or("-", |i| i.id.as_str());
        match e {
            None => tracing::info!(
                target: "handoff::access",
                method = %req.method,
                path = req.uri.path(),
                status,
                route,
                session = ctx.session.label(),
                source = ctx.session.source(),
                user,
                ms = format_args!("{elapsed_ms:.2}"),
            ),
            Some(e) => tracing::warn!(
                target: "handoff::access",
                method = %req.method,
                path = req.uri.path(),
                status,
                route,
                session = ctx.session.label(),
                source = ctx.session.source(),
                user,
                ms = format_args!("{elapsed_ms:.2}"),
                error = %e,
            ),
        }
    }
}

impl HandoffProxy {
    /// `X-Forwarded-For`/`-Proto`/`-Host`. A client's own values are replaced unless
    /// `server.trust_forwarded_headers` says this gateway sits behind a trusted proxy.
    fn forwarded_headers(&self, session: &Session, upstream: &mut RequestHeader) -> Result<()> {
        let trust = self.gateway.server_settings().trust_forwarded_headers;
        let client_ip = match session.client_addr() {
            Some(PingoraAddr::Inet(addr)) => Some(addr.ip().to_string()),
            _ => None,
        };
        if let Some(ip) = client_ip {
            let value = match upstream.headers.get(X_FORWARDED_FOR) {
                Some(prior) if trust => match prior.to_str() {
                    Ok(prior) => format!("{prior}, {ip}"),
                    Err(_) => ip,
                },
                _ => ip,
            };
            upstream.insert_header(X_FORWARDED_FOR, value)?;
        }
        if !(trust && upstream.headers.contains_key(X_FORWARDED_PROTO)) {
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            upstream.insert_header(X_FORWARDED_PROTO, if tls { "https" } else { "http" })?;
        }
        if !(trust && upstream.headers.contains_key(X_FORWARDED_HOST)) {
            let host = upstream.headers.get(HOST).cloned().or_else(|| {
                upstream
                    .uri
                    .authority()
                    .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            });
            match host {
                Some(host) => upstream.insert_header(X_FORWARDED_HOST, host)?,
                None => {
                    upstream.remove_header(X_FORWARDED_HOST);
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

/// An HTML page with no content encoding left on it (decompression already happened).
fn is_plain_html(response: &ResponseHeader) -> bool {
    let header = |name| {
        response
            .headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let html = header(http::header::CONTENT_TYPE).is_some_and(|t| t.starts_with("text/html"));
    let encoded = header(http::header::CONTENT_ENCODING).is_some_and(|e| e != "identity");
    html && !encoded
}

/// Writes a complete [`Reply`], keeping the connection open for the next request.
pub async fn write_reply(session: &mut Session, reply: Reply) -> Result<()> {
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
