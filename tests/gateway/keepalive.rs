//! Requests without a body take their own path through the proxy (no task channels, see
//! vendor/README.md): every kind of answer still arrives whole, both connections stay in use
//! after a complete answer, and a broken one is never pooled. Read off raw sockets on both
//! sides, so framing and connection counts are the wire's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

/// An upstream that answers by path, keeps its connections alive, and counts the ones that
/// carried a request for `gw.test` (a connection some other test's gateway makes to a port it
/// once had is not this test's). `/cut` announces ten bytes, sends three and closes.
fn scripted_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let counted = counted.clone();
            std::thread::spawn(move || serve(stream, &counted));
        }
    });
    (port, connections)
}

fn serve(stream: TcpStream, connections: &AtomicUsize) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut counted = false;
    loop {
        let Some((path, lines)) = read_request_head(&mut reader) else {
            return;
        };
        if !counted
            && lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("host: gw.test\r\n"))
        {
            counted = true;
            connections.fetch_add(1, Ordering::SeqCst);
        }
        let answer: &[u8] = match path.as_str() {
            "/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            }
            "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n",
            "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
            "/early-hints" => {
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
                HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints"
            }
            "/cut" => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
                return;
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// One answer read off a kept-alive client connection: status, and the body by its framing
/// (none for HEAD, 1xx-then-final, 204 and 304). `None` when the connection ends first.
pub(crate) fn read_answer(reader: &mut BufReader<TcpStream>, head: bool) -> Option<(u16, String)> {
    loop {
        let mut status_line = String::new();
        if reader.read_line(&mut status_line).ok()? == 0 {
            return None;
        }
        let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().ok()?;
            }
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
        }
        if (100..200).contains(&status) {
            continue;
        }
        if head || status == 204 || status == 304 {
            return Some((status, String::new()));
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).ok()?;
                let size = usize::from_str_radix(size.trim(), 16).ok()?;
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).ok()?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body).ok()?;
        }
        return Some((status, String::from_utf8_lossy(&body).into_owned()));
    }
}

#[test]
fn every_kind_of_answer_to_a_bodyless_request_arrives_whole_on_kept_connections() {
    let (port, upstream_connections) = scripted_upstream();
    let gw = TestGateway::start(&format!(
        "[upstreams.scripted]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"scripted\"\n"
    ));
    let client = TcpStream::connect(gw.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);
    let mut ask = |method: &str, path: &str| {
        writer
            .write_all(format!("{method} {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n").as_bytes())
            .unwrap();
        read_answer(&mut reader, method == "HEAD")
    };
    // Twice over, on one client connection: each answer whole, the next one still served.
    for round in 0..2 {
        assert_eq!(
            ask("GET", "/chunked"),
            Some((200, "hello world".into())),
            "round {round}"
        );
        assert_eq!(
            ask("HEAD", "/head"),
            Some((200, String::new())),
            "round {round}"
        );
        assert_eq!(
            ask("GET", "/204"),
            Some((204, String::new())),
            "round {round}"
        );
        assert_eq!(
            ask("GET", "/304"),
            Some((304, String::new())),
            "round {round}"
        );
        assert_eq!(
            ask("GET", "/early-hints"),
            Some((200, "hints".into())),
            "round {round}"
        );
        assert_eq!(
            ask("GET", "/plain"),
            Some((200, "ok".into())),
            "round {round}"
        );
    }
    assert_eq!(
        upstream_connections.load(Ordering::SeqCst),
        1,
        "twelve complete answers, one pooled upstream connection{}",
        lost_pooled_connections()
    );

    // An answer cut short ends the client's connection, and its upstream connection is not
    // pooled: the next request gets a new one, and its whole answer.
    assert_eq!(
        ask("GET", "/cut"),
        None,
        "a cut answer is not passed off as whole"
    );
    let fresh = TcpStream::connect(gw.addr).unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut fresh_writer = fresh.try_clone().unwrap();
    let mut fresh_reader = BufReader::new(fresh);
    fresh_writer
        .write_all(b"GET /chunked HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_answer(&mut fresh_reader, false),
        Some((200, "hello world".into()))
    );
    assert_eq!(upstream_connections.load(Ordering::SeqCst), 2);
}

/// What the connector logs when it finds a pooled connection it cannot take (for a failing
/// count's message): what cloudflare/pingora#998 did (vendor/README.md).
fn lost_pooled_connections() -> String {
    let lost = captured_logs()
        .matches("failed to acquire reusable stream")
        .count();
    if lost == 0 {
        String::new()
    } else {
        format!(" ({lost} pooled connections lost on taking them)")
    }
}

/// Clients on kept-alive connections, side by side on both worker threads: each answer whole,
/// and the upstream never sees more connections than there are clients, because no pooled
/// connection is lost on the way out of the pool. Pingora took a pooled connection with
/// `Arc::try_unwrap` once the idle poll had unlocked it; when the poll ran on the other thread
/// and had unlocked but not yet dropped its `Arc`, the healthy connection was closed and a new
/// one dialled (cloudflare/pingora#998, about 1 in 16,000 requests on this box under load).
#[test]
fn concurrent_kept_alive_clients_never_lose_a_pooled_connection() {
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 250;
    let (port, upstream_connections) = scripted_upstream();
    let gw = TestGateway::start(&format!(
        "[upstreams.scripted]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"scripted\"\n"
    ));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let addr = gw.addr;
            std::thread::spawn(move || {
                let client = TcpStream::connect(addr).unwrap();
                client
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut writer = client.try_clone().unwrap();
                let mut reader = BufReader::new(client);
                for i in 0..REQUESTS {
                    let path = if i % 2 == 0 { "/plain" } else { "/chunked" };
                    writer
                        .write_all(
                            format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n").as_bytes(),
                        )
                        .unwrap();
                    let expected = if i % 2 == 0 { "ok" } else { "hello world" };
                    assert_eq!(
                        read_answer(&mut reader, false),
                        Some((200, expected.into())),
                        "request {i}"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client got every answer whole");
    }
    let connections = upstream_connections.load(Ordering::SeqCst);
    assert!(
        connections <= CLIENTS,
        "{} answers to {CLIENTS} kept-alive clients took {connections} upstream connections{}",
        CLIENTS * REQUESTS,
        lost_pooled_connections()
    );
    assert_eq!(lost_pooled_connections(), "");
}

/// An HTTP/2 client that gives up on a request (its stream reset) while the upstream is still
/// thinking: the gateway lets go of the upstream request at once, as it does for requests with
/// a body, instead of holding the connection until the upstream answers or times out.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_http2_request_releases_its_upstream_at_once() {
    // An upstream that reads a request head, never answers, and reports when the gateway
    // closes the connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed, closed_rx) = std::sync::mpsc::channel::<Duration>();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let asked = std::time::Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.read(&mut byte); // 0 (closed) or the timeout
        let _ = closed.send(asked.elapsed());
    });
    let gw = TestGateway::start_with(
        &format!(
            "[upstreams.silent]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
             read_timeout_ms = 30000\n[[routes]]\npath = \"/\"\nupstream = \"silent\"\n"
        ),
        "h2c = true",
    );
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let request = h2.get(gw.url("/never")).send();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), request)
            .await
            .is_err(),
        "the upstream never answers"
    );
    // The dropped request future reset its stream.
    let held = tokio::task::spawn_blocking(move || closed_rx.recv_timeout(Duration::from_secs(25)))
        .await
        .unwrap()
        .expect("the upstream saw the connection end");
    assert!(
        held < Duration::from_secs(5),
        "the upstream request was held {held:?} after the client gave up"
    );
}

/// An HTTP/2 upload of unknown length that ends with an empty `DATA` frame (how hyper, httpx
/// and python-h2 end a stream body) goes upstream as a chunked body with one last chunk, not
/// two: a second `0\r\n\r\n` would sit in front of the next request on that pooled connection,
/// and the upstream would read it as the start of that request (a desync).
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_upload_of_unknown_length_ends_once_on_the_upstream_wire() {
    // An upstream that reads chunked uploads and plain requests off one connection and
    // reports, for each request, the bytes its head started with.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (starts, started) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let starts = starts.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let _ = starts.send(head.chars().take(8).collect());
                    if head
                        .to_ascii_lowercase()
                        .contains("transfer-encoding: chunked")
                    {
                        // The chunks, up to and including the last one.
                        loop {
                            let mut size = String::new();
                            reader.read_line(&mut size).unwrap_or(0);
                            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                            let mut chunk = vec![0; size + 2];
                            if reader.read_exact(&mut chunk).is_err() {
                                return;
                            }
                            if size == 0 {
                                break;
                            }
                        }
                    }
                    if writer
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let gw = TestGateway::start_with(
        &format!(
            "[upstreams.reader]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
             [[routes]]\npath = \"/\"\nupstream = \"reader\"\n"
        ),
        "h2c = true",
    );
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let chunks = (0..3).map(|i| Ok::<_, std::io::Error>(vec![b'a' + i; 100]));
    let upload = h2
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    for path in ["/after-1", "/after-2"] {
        let next = h2.get(gw.url(path)).send().await.unwrap();
        assert_eq!(next.status(), 200, "{path}");
    }
    let heads: Vec<String> = started.try_iter().collect();
    assert_eq!(heads.len(), 3, "{heads:?}");
    for head in &heads {
        assert!(
            head.starts_with("POST ") || head.starts_with("GET "),
            "a request started with {head:?}: {heads:?}"
        );
    }
}
