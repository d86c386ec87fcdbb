//! Widget sign-in in the response phases: arming the rewriter for an HTML page (inflating one
//! that came compressed, up to the page cap), replacing a page that cannot be checked, and
//! streaming the body through.

use std::sync::Mutex;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Handoff, HandoffCtx, Outcome, PageRewrite};
use crate::apps::inflate::{InflateError, Inflater};
use crate::gateway::Widgets;
use crate::reply::Reply;

impl Handoff {
    /// Call from your `response_filter`: removes the upstream's hop-by-hop headers (`Connection`
    /// and those it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade` but on
    /// a `101`); and, with widget apps configured, every HTML page gets
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
        super::hop_by_hop::strip(response);
        let status = response.status;
        let has_body = !(status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED
            || session.req_header().method == http::Method::HEAD);
        if ctx.widgets == Widgets::Off || !has_body || !may_run_scripts(response) {
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
            Widgets::SignIn => ctx.identity.as_deref(),
            _ => None,
        };
        let Some(mut rewriter) = self.gateway_of(ctx).widget_rewriter(person) else {
            return Ok(());
        };
        if let Some(length) = length {
            rewriter.expect_bytes(length);
        }
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
            uncacheable(response)?;
        }
        ctx.page = Some(Box::new(PageRewrite {
            rewriter: Mutex::new(rewriter),
            inflater: inflater.map(Mutex::new),
        }));
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
        let mut reply = Reply::error(
            true,
            502,
            "page_not_checked",
            "The intranet page could not be checked",
            "The intranet sent this page in a form the gateway cannot read (an unknown \
             compression, or only a part of it), so it cannot make sure the page carries no \
             stale sign-in code. Reloading the page usually helps.",
        );
        let gateway = self.gateway_of(ctx).into_owned();
        super::wire::render_page(session, &mut reply, gateway.pages());
        ctx.reference = reply.reference.take();
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
        ctx.outcome = Outcome::Answered("page_not_checked");
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
        let Some(page) = ctx.page.as_mut() else {
            return Ok(());
        };
        let rewriter = &mut page.rewriter;
        if let Some(inflater) = page.inflater.as_mut() {
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
                    let outcome = match e {
                        InflateError::TooLarge { .. } => "page_too_large",
                        InflateError::Corrupt { .. } => "page_not_checked",
                    };
                    return cut_short(ctx, outcome, &e);
                }
            }
        }
        let rewriter = rewriter.get_mut().unwrap_or_else(|e| e.into_inner());
        let rewritten = match body.take() {
            Some(chunk) => rewriter.write(chunk),
            None => Ok(Bytes::new()),
        };
        let finished = match rewritten {
            Ok(out) if end_of_stream => rewriter.finish().map(|last| (out, last)),
            Ok(out) => Ok((out, Bytes::new())),
            Err(e) => Err(e),
        };
        let (out, last) = match finished {
            Ok(both) => both,
            Err(e) => return cut_short(ctx, "page_not_checked", &e),
        };
        *body = Some(if end_of_stream {
            if out.is_empty() {
                last
            } else if last.is_empty() {
                out
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
}

/// Ends a page that cannot be finished (`outcome` says why): a 502 page when nothing was sent
/// yet (the host's `fail_to_proxy`), else the answer is cut short.
fn cut_short(ctx: &mut HandoffCtx, outcome: &'static str, e: &dyn std::fmt::Display) -> Result<()> {
    ctx.outcome = Outcome::Answered(outcome);
    tracing::warn!(target: "handoff::widget", "an HTML page was cut short ({outcome}): {e}");
    Error::e_explain(HTTPStatus(502), format!("HTML page not rewritten: {e}"))
}

/// The page may now carry something minted for the person: no cache anywhere may keep it or
/// answer for it. A CDN or cache obeys its own fields over `Cache-Control` (RFC 9213; nginx's
/// `X-Accel-Expires`, Akamai's `Edge-Control`), and a validator
/// would let a cache answer the next visitor's conditional request with this page — so they
/// go, with `Expires` and `Age`; `Vary: Cookie` tells any cache that ignores `no-store` that
/// the page is one person's.
fn uncacheable(response: &mut ResponseHeader) -> Result<()> {
    let cdn: Vec<http::header::HeaderName> = response
        .headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            // Surrogate-Control/-Key, CDN-Cache-Control and every vendor's *-Cache-Control
            // (Cloudflare-CDN-, X-LiteSpeed-…), nginx's X-Accel-Expires, Akamai's Edge-Control.
            n.starts_with("surrogate-")
                || (n.ends_with("cache-control") && n != "cache-control")
                || n == "x-accel-expires"
                || n == "edge-control"
        })
        .cloned()
        .collect();
    for name in cdn.iter().chain(&[
        http::header::EXPIRES,
        http::header::ETAG,
        http::header::LAST_MODIFIED,
        http::header::AGE,
    ]) {
        response.remove_header(name);
    }
    response.insert_header(http::header::CACHE_CONTROL, "private, no-store")?;
    let vary = response
        .headers
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|v| {
            let v = v.trim_ascii();
            v == b"*" || v.eq_ignore_ascii_case(b"cookie")
        });
    if !vary {
        response.append_header(http::header::VARY, "Cookie")?;
    }
    Ok(())
}

/// A header's value, trimmed and lower-cased.
fn header_lower(response: &ResponseHeader, name: http::header::HeaderName) -> Option<String> {
    response
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// A document a browser may run scripts in, as the browser reads its type: HTML, XHTML, XML
/// and SVG (`+xml`) documents, and any answer whose type the browser sniffs — none, an empty
/// or malformed one, `*/*`, `unknown/unknown`, `application/unknown`. Every `Content-Type`
/// value and every comma-separated item counts (Fetch takes the last valid one; the strict
/// reading is that any of them may be it).
fn may_run_scripts(response: &ResponseHeader) -> bool {
    let mut values = response
        .headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|item| {
            let essence = item
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let essence = essence.to_ascii_lowercase();
            let Some((kind, sub)) = std::str::from_utf8(&essence)
                .ok()
                .and_then(|e| e.split_once('/'))
            else {
                return true;
            };
            matches!(
                (kind, sub),
                ("text", "html")
                    | ("application", "xhtml+xml")
                    | ("text" | "application", "xml")
                    | ("*", "*")
                    | ("unknown", "unknown")
                    | ("application", "unknown")
            ) || sub.ends_with("+xml")
                || kind.is_empty()
                || sub.is_empty()
        })
}
