//! The plugin's wire code on a mock connection (an in-memory duplex stream, no sockets):
//! what a host's `request_filter` and `fail_to_proxy` put on the wire.

use pingora::prelude::*;
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Filtered, Handoff};

fn handoff() -> Handoff {
    let (text, dir) = crate::test_config::config();
    Handoff::from_toml(&text, &dir).unwrap()
}

/// A session that has read `request` from a mock client, and the client's end.
async fn session_for(request: &str) -> (Session, tokio::io::DuplexStream) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(request.as_bytes()).await.unwrap();
    let mut session = Session::new_h1(Box::new(server));
    assert!(session.read_request().await.unwrap());
    (session, client)
}

/// What the client has received so far (the session is dropped first: end of stream).
async fn received(session: Session, mut client: tokio::io::DuplexStream) -> String {
    drop(session);
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_answer_is_written_whole_and_head_gets_no_body() {
    let h = handoff();
    for (method, body_expected) in [("GET", true), ("HEAD", false)] {
        let (mut session, client) = session_for(&format!(
            "{method} /_handoff/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        ))
        .await;
        let mut ctx = h.new_ctx();
        let filtered = h.request_filter(&mut session, &mut ctx).await.unwrap();
        assert_eq!(filtered, Filtered::Answered);
        let wire = received(session, client).await;
        assert!(wire.starts_with("HTTP/1.1 200"), "{wire}");
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_string)
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(length > 0, "{head}");
        assert_eq!(
            body.len(),
            if body_expected { length } else { 0 },
            "{method}: {wire}"
        );
    }
}

#[tokio::test]
async fn a_refused_request_closes_the_connection() {
    let h = handoff();
    // A Host with two ports: refused, and the connection is not kept.
    let (mut session, client) = session_for("GET / HTTP/1.1\r\nHost: x:1:2\r\n\r\n").await;
    let mut ctx = h.new_ctx();
    let filtered = h.request_filter(&mut session, &mut ctx).await.unwrap();
    assert_eq!(filtered, Filtered::Answered);
    let wire = received(session, client).await;
    assert!(wire.starts_with("HTTP/1.1 400"), "{wire}");
    assert!(
        wire.to_ascii_lowercase().contains("connection: close"),
        "{wire}"
    );
}

#[tokio::test]
async fn a_failed_proxy_attempt_gets_a_page_and_closes() {
    let h = handoff();
    let (mut session, client) =
        session_for("GET /page HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n").await;
    let mut ctx = h.new_ctx();
    assert_eq!(
        h.request_filter(&mut session, &mut ctx).await.unwrap(),
        Filtered::Proxy
    );
    let mut e = Error::new(ConnectRefused);
    e.as_up();
    let failed = h.fail_to_proxy(&mut session, &e, &mut ctx).await;
    assert_eq!(failed.error_code, 502);
    assert!(!failed.can_reuse_downstream);
    let wire = received(session, client).await;
    assert!(wire.starts_with("HTTP/1.1 502"), "{wire}");
    assert!(wire.contains("The intranet is not answering"), "{wire}");
    assert!(
        wire.to_ascii_lowercase().contains("connection: close"),
        "{wire}"
    );
    assert!(
        !wire.contains("ConnectRefused"),
        "no internals on the page: {wire}"
    );
}
