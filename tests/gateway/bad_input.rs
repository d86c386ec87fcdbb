//! Hostile or broken requests get a 4xx (or a closed connection for bytes that are not HTTP at
//! all), never a crash: the gateway serves the next request normally.

use std::time::Duration;

use crate::common::*;

fn status_line(raw: &str) -> &str {
    raw.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_requests_get_4xx_and_the_gateway_keeps_serving() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        session_config(&["HS256"], ""),
        upstream_config(&intranet)
    ));
    let addr = gw.addr;
    let cases: Vec<(&str, Vec<u8>)> =
        vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("no version", b"GET /\r\n\r\n".to_vec()),
        ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("bad header line", b"GET / HTTP/1.1\r\nHost x\r\n\r\n".to_vec()),
        (
            "oversized header",
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1024 * 1024))
                .into_bytes(),
        ),
        (
            "too many headers",
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
        ),
        (
            "conflicting lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"
                .to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let raw =
            tokio::task::spawn_blocking(move || raw_exchange(addr, &bytes, Duration::from_secs(5)))
                .await
                .unwrap();
        let line = status_line(&raw);
        let code: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        assert!(
            (400..500).contains(&code),
            "{name}: expected a 4xx, got {line:?}"
        );
        // Whatever happened, the next request is served.
        let echo = Echo::from(client().get(gw.url("/after")).send().await.unwrap()).await;
        assert_eq!(echo.0["path"], "/after", "after {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_spaces_are_forwarded_percent_encoded_and_control_bytes_refused() {
    // Pingora accepts these leniently; the upstream never sees raw bytes that could split the
    // request line, and a control character (which no upstream agrees on) is refused.
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let addr = gw.addr;
    for (target, expected) in [
        ("/a b", Some("/a%20b")),
        ("/a\x01b", None),
        ("/a\x00b", None),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let raw = tokio::task::spawn_blocking(move || {
            raw_exchange(addr, request.as_bytes(), Duration::from_secs(5))
        })
        .await
        .unwrap();
        match expected {
            Some(path) => {
                assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
                assert!(raw.contains(&format!("\"path\":\"{path}\"")), "{raw}");
            }
            None => assert!(raw.starts_with("HTTP/1.1 400"), "{target:?}: {raw}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_cookies_and_paths_do_not_break_anything() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        session_config(&["HS256"], ""),
        upstream_config(&intranet)
    ));
    let c = client();
    let hostile = [
        "intranet_session=".to_string(),
        "intranet_session=...".to_string(),
        format!("intranet_session={}", "A".repeat(8192)),
        format!("intranet_session={}.{}.{}", "e30", "e30", "x".repeat(6000)),
        "intranet_session=eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig".to_string(),
        ";;;===;;; intranet_session".to_string(),
    ];
    for cookie in &hostile {
        let resp = c
            .get(gw.url("/_handoff/whoami"))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "cookie {:.40}", cookie);
    }
    for path in [
        "/%",
        "/%zz",
        "/..%2f..%2fetc/passwd",
        "/a/../../../../b",
        "/%00",
    ] {
        let resp = c.get(gw.url(path)).send().await.unwrap();
        assert!(resp.status().as_u16() < 500, "{path}: {}", resp.status());
    }
    assert_eq!(
        c.get(gw.url("/_handoff/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
