//! Who may reuse a kept-alive upstream connection. An HTTP/1 upstream that writes past the end
//! of an answer (a body on a HEAD, a Content-Length counted in characters, an error page
//! appended after a streamed one) leaves bytes on the connection that the next request on it
//! reads as its answer. When those bytes arrive after the gateway has checked the idle
//! connection, no check can tell them apart; so by default a connection is only reused for
//! requests that carry the same credentials, and one person's stray answer can never reach
//! another person. Raw sockets on both sides; the upstream plays the race as lost, every time.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

/// An upstream that numbers its connections and answers `conn=N path=P`. After answering
/// `/poison` it waits for the next request on that connection and sends a stray answer
/// before the real one: the bytes a buggy upstream leaves behind, arriving just too late
/// for the gateway's check of the idle connection.
fn poisoning_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let numbered = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let conn = numbered.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::spawn(move || serve(stream, conn));
        }
    });
    port
}

fn serve(stream: TcpStream, conn: usize) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut poisoned = false;
    loop {
        let Some((path, _)) = read_request_head(&mut reader) else {
            return;
        };
        let mut out = Vec::new();
        if poisoned {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray");
        }
        let body = format!("conn={conn} path={path}");
        out.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        poisoned = path == "/poison";
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// One request on its own client connection; the answer's body.
fn get(gw: &TestGateway, path: &str, credentials: &str) -> String {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n{credentials}Connection: close\r\n\r\n");
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer to {path}: {answer:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_string()
}

fn gateway(port: u16, reuse: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[upstreams.buggy]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
         {reuse}\n[[routes]]\npath = \"/\"\nupstream = \"buggy\"\n"
    ))
}

const ALICE: &str = "Cookie: intranet_session=alice\r\n";
const BOB: &str = "Cookie: intranet_session=bob\r\n";

#[test]
fn a_stray_answer_never_reaches_another_person() {
    let gw = gateway(poisoning_upstream(), "");
    assert_eq!(get(&gw, "/poison", ALICE), "conn=1 path=/poison");
    // Bob's request must not ride Alice's connection, nor read what it still holds.
    assert_eq!(get(&gw, "/mine", BOB), "conn=2 path=/mine");
    // Another credential carrier, and none at all: each gets a pool of its own.
    let token = "Authorization: Bearer alice-token\r\n";
    assert_eq!(get(&gw, "/api", token), "conn=3 path=/api");
    assert_eq!(get(&gw, "/public", ""), "conn=4 path=/public");
    // Alice's own connection is still reused for Alice (and she reads her own stray bytes:
    // that upstream is broken, and nobody else sees it).
    assert_eq!(get(&gw, "/again", ALICE), "stray");
}

#[test]
fn connections_are_reused_for_the_same_credentials() {
    let gw = gateway(poisoning_upstream(), "");
    // Cookies split over several headers (as HTTP/2 clients send them) are one credential.
    let split = "Cookie: a=1\r\nCookie: b=2\r\n";
    for (i, (credentials, conn)) in [
        (ALICE, 1),
        (BOB, 2),
        (ALICE, 1),
        ("", 3),
        (BOB, 2),
        ("", 3),
        (split, 4),
        (split, 4),
        (ALICE, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/r{i}");
        assert_eq!(
            get(&gw, &path, credentials),
            format!("conn={conn} path={path}"),
            "request {i} with {credentials:?}"
        );
    }
}

#[test]
fn with_connection_reuse_any_one_pool_serves_everyone() {
    // The trade the setting makes, shown: one pool, fewer connections, and a broken
    // upstream's stray answer goes to whoever comes next.
    let gw = gateway(poisoning_upstream(), "connection_reuse = \"any\"");
    assert_eq!(get(&gw, "/poison", ALICE), "conn=1 path=/poison");
    assert_eq!(get(&gw, "/mine", BOB), "stray");
}
