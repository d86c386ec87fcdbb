//! Everything not answered by Handoff reaches the intranet unchanged, and comes back unchanged.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn methods_paths_queries_and_bodies_arrive_unchanged() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let c = client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let echo = Echo::from(c.request(m, gw.url("/a/b")).send().await.unwrap()).await;
        assert_eq!(echo.0["method"], method);
        assert_eq!(echo.0["path"], "/a/b");
    }
    // HEAD: status and headers only.
    let head = c.head(gw.url("/a")).send().await.unwrap();
    assert_eq!(head.status(), 200);

    // Odd query encodings pass byte for byte.
    for query in [
        "a=1&b=2",
        "q=%E2%9C%93&x=%2F%3F%26",
        "empty=&=novalue&flag",
        "plus=a+b&pct=100%25",
        "dup=1&dup=2",
    ] {
        let echo = Echo::from(c.get(gw.url(&format!("/q?{query}"))).send().await.unwrap()).await;
        assert_eq!(echo.0["query"], query);
    }

    // Bodies: empty, 1 MiB, and streamed (chunked) upload.
    let empty = Echo::from(c.post(gw.url("/up")).body("").send().await.unwrap()).await;
    assert_eq!(empty.0["body_len"], 0);
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    let echo = Echo::from(
        c.post(gw.url("/up"))
            .body(big.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.0["body_len"], big.len());
    assert_eq!(echo.0["body_digest"], digest(&big).to_string());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|i| Ok(vec![i as u8; 4096])).collect();
    let streamed: Vec<u8> = (0..64).flat_map(|i| vec![i as u8; 4096]).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let echo = Echo::from(c.put(gw.url("/up")).body(body).send().await.unwrap()).await;
    assert_eq!(echo.0["body_len"], streamed.len());
    assert_eq!(echo.0["body_digest"], digest(&streamed).to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_come_back_unchanged() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let c = client();

    let resp = c.get(gw.url("/cookies")).send().await.unwrap();
    let cookies: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        vec![
            "a=1; Path=/",
            "b=2; Path=/; HttpOnly",
            "c=3; Path=/; Secure"
        ]
    );

    let resp = c.get(gw.url("/big?n=1048576")).send().await.unwrap();
    let digest_header = resp.headers()["x-digest"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 1024 * 1024);
    assert_eq!(digest(&body).to_string(), digest_header);

    let resp = c.get(gw.url("/big?n=0")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = c.get(gw.url("/chunked")).send().await.unwrap();
    assert_eq!(
        resp.text().await.unwrap(),
        "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"
    );

    for code in [201u16, 204, 301, 404, 418, 500, 503] {
        let resp = c
            .get(gw.url(&format!("/status/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            code,
            "upstream status {code} passes through"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_cookies_and_many_headers_are_preserved_and_forwarded_headers_added() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let c = client();
    let mut req = c
        .get(gw.url("/h"))
        .header("Host", "intranet.example.com")
        .header("Cookie", "intranet_session=abc; theme=dark")
        .header("X-Forwarded-For", "6.6.6.6");
    for i in 0..100 {
        req = req.header(format!("X-Custom-{i}"), format!("value-{i}"));
    }
    let echo = Echo::from(req.send().await.unwrap()).await;
    assert_eq!(echo.header("host").as_deref(), Some("intranet.example.com"));
    assert_eq!(
        echo.header("cookie").as_deref(),
        Some("intranet_session=abc; theme=dark")
    );
    for i in 0..100 {
        assert_eq!(
            echo.header(&format!("x-custom-{i}")),
            Some(format!("value-{i}"))
        );
    }
    // The client's own X-Forwarded-For is not trusted by default.
    assert_eq!(echo.headers("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        echo.header("x-forwarded-host").as_deref(),
        Some("intranet.example.com")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_forwarded_headers_are_appended_to() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start_with(
        &upstream_config(&intranet),
        "trust_forwarded_headers = true",
    );
    let echo = Echo::from(
        client()
            .get(gw.url("/h"))
            .header("X-Forwarded-For", "10.1.2.3")
            .header("X-Forwarded-Proto", "https")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-forwarded-for"), vec!["10.1.2.3, 127.0.0.1"]);
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    // A chain the trusted proxy sent on two lines is kept whole, in order, on one.
    let mut chain = reqwest::header::HeaderMap::new();
    chain.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
    chain.append("x-forwarded-for", "10.0.0.2, 10.0.0.3".parse().unwrap());
    let echo = Echo::from(
        client()
            .get(gw.url("/h"))
            .headers(chain)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        echo.headers("x-forwarded-for"),
        vec!["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"]
    );
    // A chain with a line that is not text is not passed on: the address it came from is.
    let mut odd = reqwest::header::HeaderMap::new();
    odd.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
    odd.append(
        "x-forwarded-for",
        reqwest::header::HeaderValue::from_bytes(b"9.9.9.9\xe9").unwrap(),
    );
    let echo = Echo::from(
        client()
            .get(gw.url("/h"))
            .headers(odd)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-forwarded-for"), vec!["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_is_reused_on_both_sides() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    // Warm up, then ten sequential requests on one client connection.
    Echo::from(c.get(gw.url("/warm")).send().await.unwrap()).await;
    let before = intranet.connection_count();
    for i in 0..10 {
        Echo::from(c.get(gw.url(&format!("/k/{i}"))).send().await.unwrap()).await;
    }
    let opened = intranet.connection_count() - before;
    assert!(
        opened <= 1,
        "upstream connections are pooled; {opened} new ones opened for 10 requests"
    );

    // Downstream: two requests, one after the other, on one raw TCP connection.
    let addr = gw.addr;
    let (first, second) = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let read_response = |reader: &mut BufReader<std::net::TcpStream>| {
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            head + &String::from_utf8_lossy(&body)
        };
        stream
            .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = read_response(&mut reader);
        stream
            .write_all(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let second = read_response(&mut reader);
        (first, second)
    })
    .await
    .unwrap();
    assert!(
        first.starts_with("HTTP/1.1 200") && first.contains("\"path\":\"/one\""),
        "{first}"
    );
    assert!(
        second.starts_with("HTTP/1.1 200") && second.contains("\"path\":\"/two\""),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_pass_through() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let url = format!("ws://{}/ws", gw.addr);
    let (mut ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::Text(format!("hello {i}").into()))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("reply in time")
            .expect("a message")
            .expect("ok");
        assert_eq!(reply.into_text().unwrap(), format!("echo:hello {i}"));
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.into_data().as_ref(), &[0u8, 1, 2, 255]);
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn https_listener_speaks_http2_and_h2c_works_when_enabled() {
    let intranet = Intranet::start().await;
    let tls_port = free_port();
    let gw = TestGateway::start_with(
        &upstream_config(&intranet),
        &format!(
            "h2c = true\n[server.tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\n\
             cert_file = \"tls_cert.pem\"\nkey_file = \"tls_key.pem\"\n"
        ),
    );
    wait_until_connectable(format!("127.0.0.1:{tls_port}").parse().unwrap());
    let tls_client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = tls_client
        .get(format!("https://localhost:{tls_port}/over-tls?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let echo = Echo::from(resp).await;
    assert_eq!(echo.0["path"], "/over-tls");
    assert_eq!(echo.0["query"], "x=1");
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        echo.header("host").as_deref(),
        Some(format!("localhost:{tls_port}").as_str())
    );

    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2c.get(gw.url("/over-h2c")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let echo = Echo::from(resp).await;
    assert_eq!(echo.0["path"], "/over-h2c");
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
}

async fn websocket_round_trip(url: String) -> Result<(), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    ws.send(Message::Text("ping".into()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(m))) if m.to_text().ok() == Some("echo:ping") => Ok(()),
        Ok(Some(Ok(m))) => Err(format!("unexpected message {m:?}")),
        Ok(Some(Err(e))) => Err(format!("receive: {e}")),
        Ok(None) => Err("closed right after the upgrade".to_string()),
        Err(_) => Err("no answer in 5 s".to_string()),
    }
}

/// Regression test for cloudflare/pingora#946 (patched in vendor/pingora-proxy): a fast
/// upstream's 101 used to race the request's empty body and tear the tunnel down.
#[tokio::test(flavor = "multi_thread")]
async fn websocket_tunnels_survive_a_burst() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let mut failures = Vec::new();
    for _ in 0..10 {
        let tasks: Vec<_> = (0..20)
            .map(|_| tokio::spawn(websocket_round_trip(format!("ws://{}/ws", gw.addr))))
            .collect();
        for t in tasks {
            if let Err(e) = t.await.expect("task") {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 200 tunnels failed: {failures:?}",
        failures.len()
    );
}
