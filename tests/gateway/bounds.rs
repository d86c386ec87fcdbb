//! Bounds under hostile load, measured from outside: the gateway runs as its own process and
//! its memory is read from /proc while hostile clients and a hostile upstream do their worst.
//! Limits are small in these configs so every test stays fast.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;

/// A field of /proc/PID/status, in KiB (`VmRSS`: now; `VmHWM`: the peak so far).
fn proc_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

const MIB: u64 = 1024;

/// A hostile upstream: answers every request with a gzip bomb (64 MiB of zeros in ~64 KiB),
/// as `text/html` under `/bomb.html` and as `application/octet-stream` otherwise.
async fn bomb_upstream() -> (SocketAddr, Vec<u8>) {
    let bomb = tokio::task::spawn_blocking(|| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        gz.finish().unwrap()
    })
    .await
    .unwrap();
    assert!(bomb.len() < 1 << 20, "the bomb is {} bytes", bomb.len());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = bomb.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let bomb = served.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let kind = if text.starts_with("GET /bomb.html ") {
                    "text/html; charset=utf-8"
                } else {
                    "application/octet-stream"
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Encoding: gzip\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    bomb.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.write_all(&bomb).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, bomb)
}

/// Reads a whole answer body; how many bytes came, and whether it ended cleanly.
async fn drain(resp: reqwest::Response) -> (usize, bool) {
    let mut resp = resp;
    let mut got = 0;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => got += chunk.len(),
            Ok(None) => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_bomb_is_never_inflated_past_the_page_cap() {
    let (upstream, bomb) = bomb_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cap = 1 << 20;
    let config = write_process_config(
        dir.path(),
        port,
        "",
        &format!(
            "[upstreams.intranet]\nservers = [\"{upstream}\"]\n\
             [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://chat.example.test/\"\n\
             secret = {{ file = \"{secret}\" }}\nwidget = true\nwidget_max_page_bytes = {cap}\n\
             [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
            secret = fixtures().join("typingmind-secret.txt").display(),
        ),
    );
    let gw = GatewayProcess::start(&config, &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::task::spawn_blocking(move || wait_until_connectable(addr))
        .await
        .unwrap();
    let browser = |path: &str| {
        client()
            .get(format!("http://{addr}{path}"))
            .header("Accept", "text/html")
            .header("Sec-Fetch-Dest", "document")
            .send()
    };
    // Warm up every worker thread's allocator before the baseline.
    for _ in 0..4 {
        let (got, _) = drain(browser("/file.bin").await.unwrap()).await;
        assert_eq!(got, bomb.len());
    }
    let before = proc_kib(gw.pid(), "VmHWM");

    // Not HTML: passed on as the upstream sent it, still compressed, byte for byte.
    let answers = futures_util::future::join_all((0..4).map(|_| browser("/file.bin"))).await;
    for resp in answers {
        let resp = resp.unwrap();
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        assert_eq!(resp.bytes().await.unwrap(), bomb);
    }
    // HTML that may carry a widget: inflated up to the cap, then refused — with a 502 page
    // when nothing was sent yet, else by cutting the answer short.
    let answers = futures_util::future::join_all((0..4).map(|_| browser("/bomb.html"))).await;
    for resp in answers {
        let resp = resp.unwrap();
        assert!(resp.headers().get("content-encoding").is_none());
        match resp.status().as_u16() {
            502 => {
                let page = resp.text().await.unwrap();
                assert!(page.contains("too large"), "{page}");
            }
            200 => {
                let (got, clean) = drain(resp).await;
                assert!(!clean, "a page cut at the cap must not look complete");
                assert!(got <= cap, "{got} bytes went out, over the {cap}-byte cap");
            }
            other => panic!("a bomb page answered {other}"),
        }
    }
    let grown = proc_kib(gw.pid(), "VmHWM").saturating_sub(before);
    eprintln!("gzip bombs: peak RSS grew by {grown} KiB");
    // 4 pages at once, each at most the cap (1 MiB) inflated, plus a small constant. Without
    // the cap one page alone took ~400 MiB.
    assert!(
        grown < 20 * MIB,
        "peak RSS grew by {grown} KiB for 4 pages of a 1 MiB cap"
    );
    let log = gw.log_with(&["page_too_large", "inflates to more than 1048576 bytes"]);
    assert!(
        log.contains("page_too_large") && log.contains("inflates to more than 1048576 bytes"),
        "{log}"
    );
}

/// Opens `n` connections that each send `bytes` of a request head that never ends.
fn unterminated_heads(addr: SocketAddr, n: usize, bytes: usize) -> Vec<TcpStream> {
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(bytes, b'a');
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&head)
                .expect("the gateway reads a head under its limit");
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_heads_are_bounded_while_they_are_read() {
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A head may take 16 KiB of headers + 8 KiB of request line.
    let config = write_process_config(
        dir.path(),
        port,
        "max_request_header_bytes = 16384",
        &upstream_config(&intranet),
    );
    let gw = GatewayProcess::start(&config, &[]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pid = gw.pid();
    let (held_growth, refused) = tokio::task::spawn_blocking(move || {
        wait_until_connectable(addr);
        let _ = raw_exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        let before = proc_kib(pid, "VmHWM");
        // 300 connections that began a head: what a connection costs anyway...
        let held = unterminated_heads(addr, 300, 40);
        std::thread::sleep(Duration::from_millis(300));
        let idle = proc_kib(pid, "VmRSS").saturating_sub(before);
        // ...each head grows to 20 KiB (under the limit)...
        for mut s in &held {
            s.write_all(&[b'a'; 20 * 1024]).expect("under the limit");
        }
        std::thread::sleep(Duration::from_millis(300));
        // ...then to 60 KiB: refused as it passes the limit, and closed.
        let mut refused = 0;
        for mut s in held {
            let _ = s.write_all(&[b'a'; 40 * 1024]);
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            if answer.starts_with(b"HTTP/1.1 400") {
                refused += 1;
            }
        }
        let peak = proc_kib(pid, "VmHWM").saturating_sub(before);
        eprintln!("300 connections: RSS +{idle} KiB with heads begun, peak +{peak} KiB");
        (peak.saturating_sub(idle), refused)
    })
    .await
    .unwrap();
    // What the heads cost, per connection: at most the head limit (24 KiB) in the head
    // buffer and as much in Pingora's read buffer — never the 60 KiB sent (before the limit
    // was enforced while reading, a connection could buffer up to 1 MiB).
    assert!(
        held_growth < 300 * 80,
        "300 heads growing to 60 KiB raised peak RSS by {held_growth} KiB over idle connections"
    );
    assert_eq!(refused, 300, "every head over the limit is refused");
    // And the gateway still serves.
    let r = client()
        .get(format!("http://{addr}/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(proc_kib(pid, "VmHWM") < 200 * MIB);
}

/// Reads until the peer closes; how long that took, and what came.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (start.elapsed(), out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (start.elapsed(), out)
            }
            Err(e) => panic!("still open after {:?}: {e}", start.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_slow_and_silent_clients_are_cut_off() {
    let intranet = Intranet::start().await;
    let gw = TestGateway::start_with(
        &upstream_config(&intranet),
        "client_header_timeout_seconds = 1\nkeepalive_timeout_seconds = 1\n\
         h2_idle_timeout_seconds = 1\nh2c = true",
    );
    let addr = gw.addr;
    tokio::task::spawn_blocking(move || {
        // Idle keep-alive: closed about a second after the answer, whatever the client asks.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\nKeep-Alive: timeout=600\r\n\r\n")
            .unwrap();
        let (took, answer) = until_closed(&mut s, Duration::from_secs(5));
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(3),
            "{took:?}"
        );

        // A head trickled one byte at a time: cut off a second after it started, although
        // bytes keep coming.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /a HTTP/1.1\r\nX-Slow: ").unwrap();
        let start = Instant::now();
        let mut cut = None;
        while start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(200));
            if s.write_all(b"a").is_err() {
                cut = Some(start.elapsed());
                break;
            }
            s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(n) => {
                    assert!(
                        n == 0 || buf.starts_with(b"HTTP/1.1 408"),
                        "{:?}",
                        &buf[..n]
                    );
                    cut = Some(start.elapsed());
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    cut = Some(start.elapsed());
                    break;
                }
                Err(_) => {}
            }
        }
        let cut = cut.expect("a trickled head was never cut off");
        assert!(cut < Duration::from_millis(2500), "{cut:?}");

        // A connection that says nothing (h2c on: the preface is waited for).
        let mut s = TcpStream::connect(addr).unwrap();
        let (took, answer) = until_closed(&mut s, Duration::from_secs(5));
        assert!(answer.is_empty(), "{answer:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");

        // An h2c client that sends its preface and settings, then nothing.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
        let (took, _) = until_closed(&mut s, Duration::from_secs(6));
        assert!(took < Duration::from_secs(4), "{took:?}");
    })
    .await
    .unwrap();
    // Normal requests are untouched.
    let r = client().get(gw.url("/fine")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_closed_and_counted() {
    let intranet = Intranet::start().await;
    let metrics_port = free_port();
    let gw = TestGateway::start_with(
        &upstream_config(&intranet),
        &format!("max_connections = 4\nmetrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    let addr = gw.addr;
    // The harness's readiness probe may still hold a place: wait until it is gone.
    let start = Instant::now();
    while metric(metrics_port, "handoff_client_connections").await != Some(0.0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the probe never left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Wait until the gateway has taken all four in (on a loaded machine accepting takes a while).
    let start = Instant::now();
    while metric(metrics_port, "handoff_client_connections").await != Some(4.0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the four were never all open: {:?}",
            metric(metrics_port, "handoff_client_connections").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fifth = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        until_closed(&mut s, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(fifth.1.is_empty(), "answered over the cap: {:?}", fifth.1);
    assert!(fifth.0 < Duration::from_secs(1), "{:?}", fifth.0);
    assert_eq!(
        metric(metrics_port, "handoff_client_connections_refused_total").await,
        Some(1.0)
    );
    assert_eq!(
        metric(metrics_port, "handoff_client_connections").await,
        Some(4.0)
    );
    assert_eq!(
        metric(metrics_port, "handoff_client_connections_max").await,
        Some(4.0)
    );
    drop(open);
    // Room again once they are gone.
    let start = Instant::now();
    loop {
        match client().get(gw.url("/after")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if start.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("no room after the connections closed: {other:?}"),
        }
    }
}
