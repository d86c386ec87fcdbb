//! The first thing done to every request, in `request_filter` (which every embedding host
//! calls): settle it as the upstream will read it, or refuse it. The rules live in
//! `gateway::inbound`; this applies them to Pingora's request header.

use http::header::{COOKIE, HOST};
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::{raw_target_authority, RawTargetAuthority};

use crate::gateway::{is_host_and_port, Gateway};
use crate::reply::Reply;

/// Settles `req` in place; the page to answer with when it has no one meaning.
pub(super) fn screen(gateway: &Gateway, req: &mut RequestHeader) -> Option<Reply> {
    if let Some(reply) = origin_form(req) {
        return Some(reply);
    }
    for name in gateway.forged_headers(&req.headers) {
        req.remove_header(&name);
    }
    join_cookies(req);
    if let Some(reply) = gateway.check_host(req) {
        return Some(reply);
    }
    match gateway.canonical_uri(req) {
        Ok(Some(uri)) => req.set_uri(uri),
        Ok(None) => {}
        Err(reply) => return Some(reply),
    }
    None
}

fn bad_target(req: &RequestHeader) -> Reply {
    Reply::bad_request(
        &req.headers,
        "bad_target",
        "The gateway could not understand this address.",
    )
    .closing()
}

/// An absolute-form target (`GET http://host/path HTTP/1.1`) becomes origin-form with its
/// authority as `Host` (RFC 9112 §3.2.2: the target's authority wins over `Host`), so routing
/// and the upstream see the same host. Targets that are neither, and paths that are not UTF-8
/// (raw bytes ≥ 0x80 are not allowed in a URI), are refused.
fn origin_form(req: &mut RequestHeader) -> Option<Reply> {
    let raw = req.raw_path();
    if raw.starts_with(b"/") || raw == b"*" {
        return (!req.raw_path_is_utf8()).then(|| bad_target(req));
    }
    let host = match raw_target_authority(raw) {
        RawTargetAuthority::Absolute { authority, .. }
            if is_host_and_port(authority) && req.raw_path_is_utf8() =>
        {
            HeaderValue::from_bytes(authority).ok()
        }
        _ => None,
    };
    let Some(host) = host else {
        return Some(bad_target(req));
    };
    // The URI already holds only the path and query; setting it drops the absolute form.
    let uri = req.uri.clone();
    req.set_uri(uri);
    req.insert_header(HOST, host).err().map(|_| bad_target(req))
}

/// Several `Cookie` fields (HTTP/2 sends one per cookie) become one, joined with `; ` (RFC 9113
/// §8.2.3), so an HTTP/1.1 upstream and the session lookup read the same cookies.
fn join_cookies(req: &mut RequestHeader) {
    let cookies = req.headers.get_all(COOKIE);
    if cookies.iter().nth(1).is_none() {
        return;
    }
    let joined = cookies
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        // insert_header replaces every field of the name.
        let _ = req.insert_header(COOKIE, value);
    }
}
