//! HTTP answers a strict client accepts: no upstream hop-by-hop header reaches the client, and
//! a client that half-closes after its request still gets the answer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use crate::common::*;

/// An upstream that answers every request with `response` and closes (like a server that
/// speaks HTTP/1.1 its own way: Apache's `Upgrade: h2,h2c`, a `Keep-Alive` header, …).
fn fixed_upstream(response: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    port
}

fn gateway_to(port: u16) -> TestGateway {
    TestGateway::start(&format!(
        "[upstreams.odd]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"odd\"\n"
    ))
}

/// The header names of a raw HTTP/1 answer, lower-cased.
fn header_names(answer: &str) -> Vec<String> {
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, _)| n.trim().to_ascii_lowercase())
        })
        .collect()
}

#[test]
fn an_upstreams_hop_by_hop_headers_never_reach_the_client() {
    let upstream = fixed_upstream(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
         Connection: keep-alive, X-Internal-Hop\r\nX-Internal-Hop: upstream-secret\r\n\
         Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Trailer: X-Checksum\r\nUpgrade: h2,h2c\r\nX-Kept: yes\r\n\r\nabc",
    );
    let gw = gateway_to(upstream);
    for request in [
        "GET / HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: gw.test\r\n\r\n",
    ] {
        let answer = raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nabc"), "{answer}");
        let names = header_names(&answer);
        for gone in [
            "x-internal-hop",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ] {
            assert!(!names.contains(&gone.to_string()), "{gone} in:\n{answer}");
        }
        for kept in ["content-type", "x-kept", "content-length"] {
            assert!(names.contains(&kept.to_string()), "{kept} lost:\n{answer}");
        }
        // The client's own connection header is the gateway's, not the upstream's.
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{answer}"
        );
    }
}

/// The gateway's own `Date` and `Connection` reach the client spelled as HTTP writes them, once
/// each, over an upstream's lowercase ones (the names are inserted pre-parsed, see
/// vendor/README.md; a raw client reads the case).
#[test]
fn the_gateways_date_and_connection_are_spelled_once_as_written() {
    let upstream = fixed_upstream(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: Mon, 01 Jan 2001 00:00:00 GMT\r\n\
         connection: keep-alive\r\n\r\nok",
    );
    let gw = gateway_to(upstream);
    let answer = raw_exchange(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    let lines: Vec<&str> = head.lines().skip(1).collect();
    let dates: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Date: ")).collect();
    assert_eq!(dates.len(), 1, "{head}");
    assert!(
        !dates[0].contains("2001"),
        "the upstream's date went through:\n{head}"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "Connection: close").count(),
        1,
        "{head}"
    );
    let lowercase = |name: &str| lines.iter().any(|l| l.starts_with(name));
    assert!(!lowercase("date:") && !lowercase("connection:"), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let addr = gw.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /slow?ms=300 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            .unwrap();
        // `nc -q`, `shutdown(SHUT_WR)`: done sending, still listening (RFC 9112 §9.6).
        s.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

/// Log lines at `level` (as the capture writes it) that contain every one of `fragments`.
fn logged(level: &str, fragments: &[&str]) -> Vec<String> {
    captured_logs()
        .lines()
        .filter(|l| l.contains(level) && fragments.iter().all(|f| l.contains(f)))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_upload_ending_with_an_empty_data_frame_is_not_a_warning() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start_with(&upstream_config(&intranet), "h2c = true");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // A stream body of announced length: hyper sends its DATA frames, then an empty DATA frame
    // with END_STREAM once the stream says it is done (httpx and python-h2 do the same).
    let chunks = (0..4).map(|i| Ok::<_, std::io::Error>(vec![b'a' + i; 1000]));
    let resp = h2
        .post(gw.url("/h2-upload-end"))
        .header("content-length", "4000")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = Echo::from(resp).await;
    assert_eq!(echo.0["body_len"], 4000, "the whole upload arrived");
    assert_eq!(
        logged("WARN", &["Upstream body is already finished"]),
        Vec::<String>::new()
    );
}

/// With h2c on, a new connection is read until it is known not to start with HTTP/2's 24-byte
/// preface. An HTTP/1 request shorter than that — the classic probe `GET / HTTP/1.0` and its
/// blank line, 18 bytes — is answered at once: it waited for the request-head timeout (60 s),
/// and half-closed it was dropped unanswered. HTTP/2 with prior knowledge still works, also
/// when its preface arrives in pieces, and a request that begins like the preface (`P…`) is
/// still HTTP/1.
#[tokio::test(flavor = "multi_thread")]
async fn with_h2c_on_a_request_shorter_than_the_http2_preface_is_answered_at_once() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start_with(&upstream_config(&intranet), "h2c = true");
    let addr = gw.addr;
    let (kept_open, half_closed, post, split_preface) = tokio::task::spawn_blocking(move || {
        let timed = |request: &[u8], half_close: bool| {
            let started = std::time::Instant::now();
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(request).unwrap();
            if half_close {
                s.shutdown(Shutdown::Write).unwrap();
            }
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
        };
        // The preface in two pieces, then an empty SETTINGS frame: the gateway answers with
        // its own SETTINGS frame (type 4), so it took the connection for HTTP/2.
        let split_preface = {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(200));
            s.write_all(b"\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
            let mut frame_head = [0u8; 9];
            s.read_exact(&mut frame_head).map(|_| frame_head[3])
        };
        (
            timed(b"GET / HTTP/1.0\r\n\r\n", false),
            timed(b"GET / HTTP/1.0\r\n\r\n", true),
            timed(
                b"POST /p HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
                false,
            ),
            split_preface,
        )
    })
    .await
    .unwrap();
    for (what, (answer, took)) in [("kept open", kept_open), ("half-closed", half_closed)] {
        assert!(
            answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
            "{what}: {answer:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{what}: answered after {took:?}"
        );
    }
    assert!(post.0.contains(" 200 "), "{:?}", post.0);
    assert!(
        post.1 < Duration::from_secs(5),
        "POST answered after {:?}",
        post.1
    );
    assert_eq!(split_preface.ok(), Some(4), "a SETTINGS frame back: HTTP/2");
    // And an HTTP/2 client with prior knowledge is served as before.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(gw.url("/h2c")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

/// An upstream that accepts a WebSocket upgrade and then resets the connection (SO_LINGER 0),
/// as servers do after a close frame.
fn resetting_websocket_upstream() -> u16 {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x88\x00",
            );
            std::thread::sleep(Duration::from_millis(100));
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on our own open socket with a correctly sized linger struct.
            unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(stream);
        }
    });
    port
}

#[test]
fn a_websocket_tunnel_the_upstream_resets_after_its_close_is_not_an_error() {
    let gw = gateway_to(resetting_websocket_upstream());
    let answer = raw_exchange(
        gw.addr,
        b"GET /ws-reset-end HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer:?}");
    // The access line says 101; nothing says the proxying failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while log_line_with(&["ws-reset-end", "101"]).is_none() {
        assert!(std::time::Instant::now() < deadline, "no access line");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(logged("ERROR", &["ws-reset-end"]), Vec::<String>::new());
}
