//! A response's hop-by-hop headers (RFC 9110 §7.6.1) end at the gateway: they describe the
//! upstream's connection, not the client's. Pingora cleans requests; responses are ours.

use http::header::{
    HeaderName, CONNECTION, CONTENT_LENGTH, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::StatusCode;
use pingora::http::ResponseHeader;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes `Connection` and every header it names (a `Connection` that names none is left for
/// Pingora to overwrite with the client's own), `Keep-Alive`, `Proxy-Connection`, `TE`,
/// `Trailer` (trailers are not passed on: announcing them would promise fields that never
/// come) and `Upgrade` — except on a `101`, whose `Connection: upgrade` and `Upgrade` are the
/// switch itself. `Content-Length` and `Transfer-Encoding` stay even when named: they are the
/// framing, which Pingora writes anew for the client's connection (as it writes its own
/// `Connection`).
pub(super) fn strip(response: &mut ResponseHeader) {
    let switching = response.status == StatusCode::SWITCHING_PROTOCOLS;
    let hop_by_hop = |name: &HeaderName| {
        *name == KEEP_ALIVE
            || *name == PROXY_CONNECTION
            || (!switching && [CONNECTION, TE, TRAILER, UPGRADE].contains(name))
    };
    // One pass over the names, no allocation: most answers carry `Connection: keep-alive` at
    // most, which names nothing and is left to Pingora (below).
    let (mut connection, mut others) = (false, false);
    for name in response.headers.keys().filter(|name| hop_by_hop(name)) {
        if *name == CONNECTION {
            connection = true;
        } else {
            others = true;
        }
    }
    let named: Vec<HeaderName> = if connection {
        response
            .headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // The options that name no header (or one removed anyway).
            .filter(|token| {
                !token.is_empty()
                    && !token.eq_ignore_ascii_case("close")
                    && !token.eq_ignore_ascii_case("keep-alive")
            })
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .filter(|name| *name != CONTENT_LENGTH && *name != TRANSFER_ENCODING)
            .filter(|name| response.headers.contains_key(name))
            .collect()
    } else {
        Vec::new()
    };
    if !others && named.is_empty() {
        // Nothing to take out. A `Connection: keep-alive` or `close` that names nothing is
        // left: Pingora writes the client's own value over it (HTTP/1) or drops it (HTTP/2).
        // Taking it out first costs ~1.5 k instructions per answer (BENCHMARKS.md, issue 19).
        return;
    }
    let mut gone: Vec<HeaderName> = response
        .headers
        .keys()
        .filter(|name| hop_by_hop(name) && (**name != CONNECTION || !named.is_empty()))
        .cloned()
        .collect();
    gone.extend(named);
    for name in &gone {
        response.remove_header(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn names(r: &ResponseHeader) -> Vec<String> {
        let mut n: Vec<String> = r.headers.keys().map(|k| k.as_str().to_string()).collect();
        n.sort();
        n
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_go_framing_and_end_to_end_stay() {
        let mut r = response(
            200,
            &[
                ("Connection", "close, X-Secret-Hop"),
                ("connection", "Content-Length, x-other"),
                ("X-Secret-Hop", "1"),
                ("X-Other", "2"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
                ("Trailer", "X-Checksum"),
                ("Upgrade", "h2,h2c"),
                ("Content-Length", "3"),
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=b"),
            ],
        );
        strip(&mut r);
        assert_eq!(names(&r), ["content-length", "content-type", "set-cookie"]);
    }

    #[test]
    fn a_101_keeps_its_switch() {
        let mut r = response(
            101,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Keep-Alive", "timeout=5"),
                ("Sec-WebSocket-Accept", "x"),
            ],
        );
        strip(&mut r);
        assert_eq!(names(&r), ["connection", "sec-websocket-accept", "upgrade"]);
    }

    #[test]
    fn a_connection_that_names_nothing_is_left_for_pingora_to_overwrite() {
        let mut r = response(
            200,
            &[("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")],
        );
        strip(&mut r);
        assert_eq!(names(&r), ["connection"]);
    }

    #[test]
    fn garbage_in_connection_is_not_a_panic() {
        let mut r = response(200, &[("Connection", ",,, ,x y,"), ("X-Y", "1")]);
        let opaque = http::HeaderValue::from_bytes(b"close, caf\xe9").unwrap();
        r.append_header("Connection", opaque).unwrap();
        strip(&mut r);
        // Nothing it names is a header here: only Pingora's own value will replace it.
        assert_eq!(names(&r), ["connection", "x-y"]);
    }
}
