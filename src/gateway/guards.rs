//! Requests refused before any routing: framing that two HTTP parsers could read differently,
//! oversized headers, and handoff routes opened by anything but a top-level navigation.

use http::request::Parts;

use super::Gateway;
use crate::reply::{wants_html, Reply};

impl Gateway {
    /// Requests whose framing two HTTP parsers could read differently (the shapes of request
    /// smuggling), and requests whose headers are over `server.max_request_header_bytes`: a
    /// 400 / 431 that closes the connection, before anything is proxied.
    pub(super) fn hostile_framing(&self, req: &Parts) -> Option<Reply> {
        let refuse = |message| {
            Some(Reply::bad_request(&req.headers, "ambiguous_framing", message).closing())
        };
        let te = req.headers.get_all(http::header::TRANSFER_ENCODING);
        let mut te = te.iter();
        if let Some(first) = te.next() {
            let plain_chunked = te.next().is_none()
                && first
                    .to_str()
                    .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
            let with_length = req.headers.contains_key(http::header::CONTENT_LENGTH);
            if !plain_chunked || with_length || req.version == http::Version::HTTP_10 {
                return refuse(
                    "The request's length is ambiguous (Transfer-Encoding with Content-Length, \
                     or an encoding other than chunked).",
                );
            }
        }
        let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
        if let Some(first) = lengths.next() {
            // `5, 5` or two headers: upstreams reconcile lists differently (or not at all).
            let one_number = !first.is_empty() && first.as_bytes().iter().all(u8::is_ascii_digit);
            if lengths.next().is_some() || !one_number {
                return refuse("The request's Content-Length is not one plain number.");
            }
        }
        let max = self.server.max_request_header_bytes;
        let mut total = 0usize;
        for (name, value) in &req.headers {
            total += name.as_str().len() + value.len() + 4;
            if total > max {
                let reply = Reply::error(
                    wants_html(&req.headers),
                    431,
                    "headers_too_large",
                    "Request headers too large",
                    "The request's headers (cookies, most likely) are too large. Clearing this \
                     site's cookies usually helps.",
                );
                return Some(reply.closing());
            }
        }
        None
    }
}

/// Whether a request is a browser's speculative load — a prefetch or prerender of a page the
/// person may never open (speculation rules, `<link rel=prefetch>`, a hover): `Sec-Purpose`
/// naming `prefetch` or `prerender`, or the older `Purpose: prefetch`, `X-Purpose: preview`
/// (Safari's Top Sites) and `X-Moz: prefetch`.
pub(super) fn is_speculative(headers: &http::HeaderMap) -> bool {
    let names = |name: &str, words: &[&[u8]]| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b';' || b == b',' || b == b' ')
                .any(|w| words.iter().any(|word| w.eq_ignore_ascii_case(word)))
        })
    };
    names("sec-purpose", &[b"prefetch", b"prerender"])
        || names("purpose", &[b"prefetch", b"prerender", b"preview"])
        || names("x-purpose", &[b"prefetch", b"prerender", b"preview"])
        || names("x-moz", &[b"prefetch"])
}

/// Only a top-level navigation may start a handoff: `GET` or `HEAD`, no `Sec-Fetch-Dest`
/// other than `document` (an `<img src>` on another site or a `fetch` must not trigger a vendor
/// call or an email), and no speculative load (a 503 that no cache keeps: the browser then
/// navigates for real when the person clicks).
pub(super) fn handoff_guard(req: &Parts) -> Option<Reply> {
    let html = wants_html(&req.headers);
    if is_speculative(&req.headers) {
        // Gateway answers are `no-store` already: the real navigation asks again.
        return Some(Reply::error(
            html,
            503,
            "speculative_load",
            "Open this page from a link",
            "Signing in to an app only happens when you open this address yourself, not \
             when your browser loads it ahead of time.",
        ));
    }
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Some(
            Reply::error(
                html,
                405,
                "method_not_allowed",
                "Open this page from a link",
                "This address signs you in to an app when you open it in your browser.",
            )
            .with_header("Allow", "GET, HEAD".to_string()),
        );
    }
    let dest = req
        .headers
        .get("sec-fetch-dest")
        .map(|v| v.to_str().unwrap_or("?"));
    match dest {
        None | Some("document") => None,
        Some(_) => Some(Reply::error(
            html,
            400,
            "not_a_navigation",
            "Open this page from a link",
            "Signing in to an app only happens when you open this address yourself, \
             not when another page loads it.",
        )),
    }
}
