//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): a client that sends its next requests before reading
//! the answers gets every answer, in order, each request read and checked on its own — forged
//! identity headers removed from each, a refused one ending the connection. The upstream is
//! nginx (real framing of HEAD, chunked and sized bodies); the client writes each batch at once.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;
use crate::keepalive::read_answer;

/// nginx answering each request with its method, path and any `X-Handoff-User` it was sent.
fn upstream() -> (Nginx, u16) {
    let port = free_port();
    let nginx = Nginx::start(
        &format!(
            "server {{ listen 127.0.0.1:{port}; location / {{ default_type text/plain;\n\
             return 200 \"$request_method $uri user=$http_x_handoff_user\\n\"; }} }}"
        ),
        &[port],
    );
    (nginx, port)
}

fn gateway(port: u16) -> TestGateway {
    TestGateway::start(&format!(
        "[upstreams.nginx]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"nginx\"\n"
    ))
}

/// Writes `batch` at once, then reads one answer per entry of `heads` (true: a HEAD, no
/// body); returns them, and whether the gateway then closed the connection.
fn exchange(gw: &TestGateway, batch: &str, heads: &[bool]) -> (Vec<(u16, String)>, bool) {
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(batch.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let answers: Vec<(u16, String)> = heads
        .iter()
        .map_while(|&head| read_answer(&mut reader, head))
        .collect();
    let closed = read_answer(&mut reader, false).is_none();
    (answers, closed)
}

#[test]
fn pipelined_requests_are_each_answered_in_order() {
    let (_nginx, port) = upstream();
    let gw = gateway(port);
    let batch = "GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\n\
                 HEAD /b HTTP/1.1\r\nHost: gw.test\r\n\r\n\
                 POST /c HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello\
                 POST /d HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n\
                 GET /e HTTP/1.1\r\nHost: gw.test\r\nX-Handoff-User: admin\r\n\r\n\
                 GET /_handoff/healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n\
                 GET /f HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    let (answers, closed) = exchange(
        &gw,
        batch,
        &[false, true, false, false, false, false, false],
    );
    let expected = [
        (200, "GET /a user=\n"),
        (200, ""),
        (200, "POST /c user=\n"),
        (200, "POST /d user=\n"),
        (200, "GET /e user=\n"),
        (200, "ok\n"),
        (200, "GET /f user=\n"),
    ];
    let got: Vec<(u16, &str)> = answers.iter().map(|(s, b)| (*s, b.as_str())).collect();
    assert_eq!(got[..5], expected[..5]);
    assert_eq!(got[5].0, 200, "healthz: {got:?}");
    assert_eq!(got[6], expected[6]);
    assert!(closed, "Connection: close ends it");
}

#[test]
fn a_burst_and_an_http_1_0_keep_alive_are_answered_whole() {
    let (_nginx, port) = upstream();
    let gw = gateway(port);
    let burst: String = (0..50)
        .map(|i| {
            let last = if i == 49 { "Connection: close\r\n" } else { "" };
            format!("GET /n{i} HTTP/1.1\r\nHost: gw.test\r\n{last}\r\n")
        })
        .collect();
    let (answers, closed) = exchange(&gw, &burst, &[false; 50]);
    assert!(closed);
    let paths: Vec<String> = answers.iter().map(|(_, b)| b.clone()).collect();
    let expected: Vec<String> = (0..50).map(|i| format!("GET /n{i} user=\n")).collect();
    assert_eq!(paths, expected);

    let batch = "GET /old HTTP/1.0\r\nHost: gw.test\r\nConnection: keep-alive\r\n\r\n\
                 GET /next HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    let (answers, closed) = exchange(&gw, batch, &[false, false]);
    let bodies: Vec<&str> = answers.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, ["GET /old user=\n", "GET /next user=\n"]);
    assert!(closed);
}

#[test]
fn a_refused_request_ends_the_pipeline() {
    let (_nginx, port) = upstream();
    let gw = gateway(port);
    // Two Host headers: no agreed meaning, 400 and the connection closed; what follows it is
    // never read as a request.
    let batch = "GET /first HTTP/1.1\r\nHost: gw.test\r\n\r\n\
                 GET /two-hosts HTTP/1.1\r\nHost: gw.test\r\nHost: other.test\r\n\r\n\
                 GET /never HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let (answers, closed) = exchange(&gw, batch, &[false, false]);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0], (200, "GET /first user=\n".to_string()));
    assert_eq!(answers[1].0, 400);
    assert!(closed, "nothing after the refusal is answered");
}
