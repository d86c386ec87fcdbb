//! When the intranet fails: clear 502/504 pages, other routes keep working, readyz tells.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn dead_upstream_gets_a_502_page_and_the_gateway_keeps_serving() {
    let live = Intranet::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[upstreams.live]\nservers = [\"{}\"]\n[upstreams.dead]\nservers = [\"{dead}\"]\n\
         health_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"live\"\n[[routes]]\npath = \"/dead\"\nupstream = \"dead\"\n",
        live.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    for _ in 0..3 {
        let resp = c
            .get(gw.url("/dead/page"))
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["connection"], "close");
        let page = resp.text().await.unwrap();
        assert!(page.contains("The intranet is not answering"), "{page}");
        assert!(
            !page.contains(&dead),
            "the page must not show upstream addresses"
        );
        assert!(!page.to_lowercase().contains("pingora"));
        let resp = c.get(gw.url("/dead")).send().await.unwrap();
        assert_eq!(resp.status(), 502);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "proxy_error");
        Echo::from(c.get(gw.url("/still-fine")).send().await.unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_gets_a_504_page() {
    let intranet = Intranet::start().await;
    let config = format!(
        "[upstreams.intranet]\nservers = [\"{}\"]\nread_timeout_ms = 300\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        intranet.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let started = Instant::now();
    let resp = c
        .get(gw.url("/slow?ms=3000"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(resp.text().await.unwrap().contains("taking too long"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let resp = c.get(gw.url("/slow?ms=10")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_server_in_a_group_is_skipped() {
    let live = Intranet::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[upstreams.intranet]\nservers = [\"{dead}\", \"{}\"]\nhealth_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        live.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    for i in 0..6 {
        let resp = c.get(gw.url(&format!("/r/{i}"))).send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "request {i} is retried on the live server"
        );
    }
}

async fn readyz(c: &reqwest::Client, gw: &TestGateway) -> (u16, Value) {
    let resp = c.get(gw.url("/_handoff/readyz")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// readyz shows the upstreams' health but stays ready while they are down: the portal and the
/// handoffs still work, and a fleet whose every instance went unready together would answer
/// nothing at all.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_shows_health_checks_but_stays_ready_when_the_intranet_is_down() {
    // A listener we control: health checks pass while it is open.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let config = format!(
        "[upstreams.intranet]\nservers = [\"{addr}\"]\n\
         health_check = {{ type = \"tcp\", interval_ms = 100, timeout_ms = 200 }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n"
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let (status, body) = readyz(&c, &gw).await;
    assert_eq!(status, 200, "{body}");
    drop(std_listener);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(&c, &gw).await;
        if body["upstreams"][0][1]["healthy"] == 0 {
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["ready"], true);
            assert_eq!(body["upstreams"][0][0], "intranet");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never showed the upstream down: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gateway itself is alive, and the failing group still answers with a page.
    assert_eq!(
        c.get(gw.url("/_handoff/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(c.get(gw.url("/x")).send().await.unwrap().status(), 502);
}

/// An upstream that goes down and comes back on the same address: a clear 502 while it is
/// down, served again as soon as it is back, never a hang.
#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_upstream_gets_502_pages_then_recovers() {
    use axum::{routing::get, Router};
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = format!(
        "[upstreams.flappy]\nservers = [\"{addr}\"]\n\
         health_check = {{ type = \"tcp\", interval_ms = 100 }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"flappy\"\n"
    );
    let gw = TestGateway::start(&config);
    let c = client();
    for round in 0..3 {
        // Up: served.
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        let app = Router::new().route("/{*rest}", get(|| async { "up" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let started = Instant::now();
        loop {
            let resp = c.get(gw.url("/page")).send().await.unwrap();
            if resp.status() == 200 {
                assert_eq!(resp.text().await.unwrap(), "up");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "round {round}: never recovered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Down: a 502 page, quickly.
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let resp = c
            .get(gw.url("/page"))
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502, "round {round}");
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("The intranet is not answering"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

/// Pingora's own warning about a request it retries (`Fail to proxy: …, retry: true, GET
/// /path, Host: …`) names its path, never its query: a query can carry a credential, and the
/// retry succeeding does not make the line go away.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_request_is_logged_without_its_query() {
    use std::io::{BufRead, BufReader, Write};
    // An upstream that answers the first request on each connection and closes the
    // connection when a second one arrives: the gateway's reuse of it fails and is retried.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut read_head = || loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        return;
                    }
                };
                read_head();
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                read_head();
            });
        }
    });
    let gw = TestGateway::start(&format!(
        "[upstreams.once]\nservers = [\"127.0.0.1:{port}\"]\nhealth_check = {{ type = \"none\" }}\n\
         [[routes]]\npath = \"/\"\nupstream = \"once\"\n"
    ));
    let c = client();
    let first = c.get(gw.url("/first")).send().await.unwrap();
    assert_eq!(first.text().await.unwrap(), "ok");
    let retried = c
        .get(gw.url("/retried-query-path?access_token=query-secret-7f3a"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        retried.status(),
        200,
        "the retry on a new connection answers"
    );
    let logs = captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("Fail to proxy") && l.contains("GET /retried-query-path,")),
        "Pingora's warning about the retry names the path"
    );
    assert!(
        !logs.contains("query-secret-7f3a"),
        "the query is not logged"
    );
}
