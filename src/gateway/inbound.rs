//! The request as the upstream will read it, settled before anything decides on it: client
//! headers an upstream could take for Handoff's own (identity, forwarding) are found for
//! removal, the host is checked, and the path is put in the one form the route table and the
//! upstream both act on (see [`crate::paths`]).

use std::borrow::Cow;

use http::header::HOST;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Uri};

use super::Gateway;
use crate::paths::canonical_path;
use crate::reply::Reply;

/// Forwarding headers frameworks trust for the client's address, scheme, host or path, besides
/// the `x-forwarded-*` family.
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
];

/// Whether a (lower-case, `-`-spelled) header name is one a framework may take for the client's
/// address, scheme, host or path.
pub fn is_forwarding_header(name: &str) -> bool {
    name.starts_with("x-forwarded-") || FORWARDING.contains(&name)
}

impl Gateway {
    /// The client headers to remove before the request goes anywhere: every identity header
    /// name in any spelling an upstream reads as the same (`X_Handoff_User` is
    /// `HTTP_X_HANDOFF_USER` to CGI/WSGI), every header with `_` in its name unless
    /// `server.drop_underscore_headers = false`, and — unless `server.trust_forwarded_headers`
    /// — the forwarding family. Empty (no allocation) for an ordinary request.
    pub fn forged_headers(&self, headers: &HeaderMap) -> Vec<HeaderName> {
        let mut drop = Vec::new();
        for name in headers.keys() {
            let n = name.as_str();
            let spelled: Cow<'_, str> = if n.contains('_') {
                if self.server.drop_underscore_headers {
                    drop.push(name.clone());
                    continue;
                }
                Cow::Owned(n.replace('_', "-"))
            } else {
                Cow::Borrowed(n)
            };
            let identity = self
                .identity_headers
                .all()
                .iter()
                .any(|h| h.as_str() == spelled);
            if identity || (!self.server.trust_forwarded_headers && is_forwarding_header(&spelled))
            {
                drop.push(name.clone());
            }
        }
        drop
    }

    /// Refuses a request whose host has no one meaning: several `Host` headers, a `Host` or
    /// authority that is not `host[:port]` (a second port, commas, spaces, userinfo, non-ASCII,
    /// an empty port), or an HTTP/1.1 request with no host at all (RFC 9112 §3.2).
    pub fn check_host(&self, req: &Parts) -> Option<Reply> {
        let mut hosts = req.headers.get_all(HOST).iter();
        let first = hosts.next();
        let several = hosts.next().is_some();
        let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
        let bad = several
            || first.is_some_and(|h| !is_host_and_port(h.as_bytes()))
            || authority.is_some_and(|a| !is_host_and_port(a))
            || (first.is_none() && authority.is_none() && req.version == http::Version::HTTP_11);
        bad.then(|| {
            Reply::bad_request(
                &req.headers,
                "bad_host",
                "The request's host is missing or malformed (one Host header of the form \
                 name[:port] is expected).",
            )
            .closing()
        })
    }

    /// The request's URI with its path in normal form, when that differs from what the client
    /// sent; `Ok(None)` when the path is already normal (the common case, no allocation). A
    /// path that cannot be given one meaning gets a 400 page.
    pub fn canonical_uri(&self, req: &Parts) -> Result<Option<Uri>, Reply> {
        let path = req.uri.path();
        let host = super::request_host(req);
        let route_of = |p: &str| self.table.find(host, p).copied();
        let action_of = |r: &Option<usize>| {
            r.map_or(self.server.escaped_slashes, |i| {
                self.routes[i].escaped_slashes
            })
        };
        let canonical = match canonical_path(path, route_of, action_of) {
            Ok(Cow::Borrowed(_)) => return Ok(None),
            Ok(Cow::Owned(p)) => p,
            Err(refusal) => {
                return Err(Reply::bad_request(
                    &req.headers,
                    refusal.code(),
                    refusal.explanation(),
                ))
            }
        };
        let path_and_query = match req.uri.query() {
            Some(q) => format!("{canonical}?{q}"),
            None => canonical,
        };
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        Uri::from_parts(parts).map(Some).map_err(|_| {
            Reply::bad_request(
                &req.headers,
                "bad_path",
                "The gateway could not understand this address.",
            )
        })
    }
}

/// `host[:port]`: a registered name or IPv4 address (letters, digits, `-`, `.`, `_`) or a
/// bracketed IPv6 address, then at most one port of 1 to 5 digits.
pub fn is_host_and_port(value: &[u8]) -> bool {
    let (host_ok, rest) = if let Some(inner) = value.strip_prefix(b"[") {
        let Some(end) = inner.iter().position(|&b| b == b']') else {
            return false;
        };
        let ip = &inner[..end];
        let ok = !ip.is_empty()
            && ip
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        (ok, &inner[end + 1..])
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let name = &value[..end];
        let ok = !name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        (ok, &value[end..])
    };
    let port_ok = match rest {
        [] => true,
        [b':', port @ ..] => (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_with_one_meaning_only() {
        for good in [
            "a.example",
            "a.example:8080",
            "127.0.0.1:1",
            "[::1]:443",
            "[::1]",
            "x_y.corp",
        ] {
            assert!(is_host_and_port(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "a.example:80:80",
            "a.example,b.example",
            "a b",
            "user@a.example",
            "a.example:",
            "é.example",
            ":80",
            "[::1",
            "[::1]x",
            "a.example:123456",
            "a/b",
            "[]:1",
        ] {
            assert!(!is_host_and_port(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn the_forwarding_family() {
        for name in [
            "forwarded",
            "x-forwarded-prefix",
            "x-real-ip",
            "x-original-url",
            "true-client-ip",
        ] {
            assert!(is_forwarding_header(name), "{name}");
        }
        assert!(!is_forwarding_header("x-request-id"));
    }
}
