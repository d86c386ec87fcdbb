//! Identity headers sent by a client never reach the upstream — on any route, including routes
//! that inject nothing and WebSocket upgrades.

use futures_util::StreamExt;

use crate::common::*;

const SPOOFED: [&str; 5] = [
    "X-Handoff-User",
    "X-Handoff-Email",
    "X-Handoff-Name",
    "X-Handoff-Username",
    "X-Handoff-Groups",
];

#[tokio::test(flavor = "multi_thread")]
async fn client_identity_headers_never_reach_the_upstream() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{}[identity_headers]\nemail = \"X-Remote-Email\"\n\
         [upstreams.intranet]\nservers = [\"{}\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n\
         [[routes]]\npath = \"/with-identity\"\nupstream = \"intranet\"\nidentity_headers = true\n",
        session_config(&["HS256"], ""),
        intranet.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let spoof = |req: reqwest::RequestBuilder| {
        let mut req = req
            .header("X-Remote-Email", "ceo@corp.example")
            .header("x-remote-email", "second@corp.example");
        for name in SPOOFED {
            req = req.header(name, "spoofed");
        }
        req
    };
    // Route that injects nothing, no session.
    let echo = Echo::from(spoof(c.get(gw.url("/plain"))).send().await.unwrap()).await;
    assert!(echo.headers("x-remote-email").is_empty());
    for name in [
        "X-Handoff-User",
        "X-Handoff-Name",
        "X-Handoff-Username",
        "X-Handoff-Groups",
    ] {
        assert!(echo.headers(name).is_empty(), "{name} reached the upstream");
    }
    // Identity route, no session: stripped, nothing injected.
    let echo = Echo::from(spoof(c.get(gw.url("/with-identity"))).send().await.unwrap()).await;
    assert!(echo.headers("x-remote-email").is_empty());
    // Identity route with a session: exactly one value, the real one.
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &["eng"]))
    );
    let echo = Echo::from(
        spoof(c.get(gw.url("/with-identity")))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-remote-email"), vec!["ada@corp.example"]);
    assert_eq!(echo.headers("x-handoff-groups"), vec!["eng"]);
    // A client cannot get an injected header stripped by nominating it in Connection either.
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &[]))
    );
    let echo = Echo::from(
        c.get(gw.url("/with-identity"))
            .header("Cookie", cookie)
            .header("Connection", "keep-alive, X-Remote-Email")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-remote-email"), vec!["ada@corp.example"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_requests_are_stripped_too() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("X-Handoff-Email", "ceo@corp.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text("hi".into()))
        .await
        .unwrap();
    // The stand-in sends "spoofed" first if it saw the header.
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("an answer in time")
        .expect("the connection stays open")
        .unwrap_or_else(|e| panic!("websocket error: {e}"))
        .into_text()
        .unwrap();
    assert_eq!(first, "echo:hi");
}

/// The identity headers reach an HTTP/1 upstream spelled as the config writes them (defaults
/// `X-Handoff-User` …, a custom `X-Remote-Email` as written), once each, with the person's
/// values — and a client's own identity headers, in any case, are gone. So do the forwarding
/// headers (`X-Forwarded-For` …, the client's own lowercase ones replaced). Read off the wire
/// of a raw upstream (an HTTP library would fold the case).
#[tokio::test(flavor = "multi_thread")]
async fn identity_headers_reach_the_wire_spelled_as_configured() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let (heads, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        // Two requests at most: the one with a session and the one without.
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let config = format!(
        "{}[identity_headers]\nemail = \"X-Remote-Email\"\n\
         [upstreams.intranet]\nservers = [\"{upstream}\"]\nhealth_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\nidentity_headers = true\n",
        session_config(&["HS256"], ""),
    );
    let gw = TestGateway::start(&config);
    let mut ada = person("ada@corp.example", &["eng", "ai"]);
    ada["name"] = serde_json::json!("Ada Lovelace");
    ada["preferred_username"] = serde_json::json!("ada");
    let resp = client()
        .get(gw.url("/page"))
        .header("Cookie", format!("intranet_session={}", hs256(&ada)))
        .header("x-handoff-user", "spoofed")
        .header("X-REMOTE-EMAIL", "spoofed")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "spoofed.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let head = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the upstream got the request");
    for line in [
        "X-Handoff-User: id-ada@corp.example\r\n",
        "X-Remote-Email: ada@corp.example\r\n",
        "X-Handoff-Name: Ada Lovelace\r\n",
        "X-Handoff-Username: ada\r\n",
        "X-Handoff-Groups: eng,ai\r\n",
        "X-Forwarded-For: 127.0.0.1\r\n",
        "X-Forwarded-Proto: http\r\n",
        &format!("X-Forwarded-Host: {}\r\n", gw.addr),
    ] {
        assert_eq!(head.matches(line).count(), 1, "{line:?} once in:\n{head}");
    }
    assert!(!head.to_ascii_lowercase().contains("spoofed"), "{head}");
    assert!(!head.contains("6.6.6.6"), "{head}");
}
