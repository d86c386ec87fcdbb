//! TLS both ways: an upstream behind a private CA is trusted by its requests and its health
//! checks alike; `check` accepts only the TLS files `run` can serve; plain HTTP on the TLS
//! port gets a plain answer. Certificates come from a CA the test makes (`Pki`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use handoff::internals::config::from_toml_str;

/// nginx serving `200 tls upstream` over TLS with `cert`/`key` on each of `ports`.
fn tls_upstream(cert: &Path, key: &Path, ports: &[u16]) -> Nginx {
    let servers: String = ports
        .iter()
        .map(|port| {
            format!(
                "server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {};\n\
                 location / {{ default_type text/plain; return 200 \"tls upstream $server_port\\n\"; }} }}\n",
                cert.display(),
                key.display()
            )
        })
        .collect();
    Nginx::start(&servers, ports)
}

fn group(name: &str, port: u16, extra: &str, check: &str) -> String {
    format!(
        "[upstreams.{name}]\nservers = [\"127.0.0.1:{port}\"]\ntls = true\nsni = \"localhost\"\n{extra}\n\
         health_check = {{ {check}, interval_ms = 100, timeout_ms = 1000 }}\n\
         [[routes]]\npath = \"/{name}\"\nupstream = \"{name}\"\n"
    )
}

async fn readyz(gw: &TestGateway) -> Value {
    client()
        .get(gw.url("/_handoff/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn healthy(body: &Value, name: &str) -> Option<u64> {
    body["upstreams"]
        .as_array()?
        .iter()
        .find(|g| g[0] == name)
        .and_then(|g| g[1]["healthy"].as_u64())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_upstream_is_trusted_by_requests_and_health_checks_alike() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("upstream", 2);
    let other_ca = Pki::new();
    let (good, wrong, insecure) = (free_port(), free_port(), free_port());
    let _nginx = tls_upstream(&cert, &key, &[good, wrong, insecure]);
    let config = [
        group("tcp", good, "", "type = \"tcp\""),
        group("http", good, "", "type = \"http\", path = \"/\""),
        // Trusts another CA only: its checks and requests must fail alike.
        group(
            "wrong",
            wrong,
            &format!("ca_file = \"{}\"", other_ca.ca().display()),
            "type = \"tcp\"",
        ),
        // verify_cert = false is honoured by the TCP check too.
        group(
            "insecure",
            insecure,
            &format!(
                "verify_cert = false\nca_file = \"{}\"",
                other_ca.ca().display()
            ),
            "type = \"tcp\"",
        ),
    ]
    .concat();
    let gw = TestGateway::start_with(&config, &format!("ca_file = \"{}\"", pki.ca().display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = readyz(&gw).await;
        let states: Vec<Option<u64>> = ["tcp", "http", "wrong", "insecure"]
            .iter()
            .map(|g| healthy(&body, g))
            .collect();
        if states == [Some(1), Some(1), Some(0), Some(1)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health checks never settled: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = client();
    for (path, port) in [("/tcp", good), ("/http", good), ("/insecure", insecure)] {
        let resp = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.text().await.unwrap(), format!("tls upstream {port}\n"));
    }
    assert_eq!(c.get(gw.url("/wrong")).send().await.unwrap().status(), 502);
    // Not one failed check of the servers the gateway trusts.
    let logs = captured_logs();
    for port in [good, insecure] {
        let noise: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(&format!("127.0.0.1:{port}")) && l.contains("unhealthy"))
            .collect();
        assert!(noise.is_empty(), "{noise:?}");
    }
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("127.0.0.1:{wrong}")) && l.contains("unhealthy")),
        "the untrusted server's check failed (the test can tell)"
    );
}

/// A config with a TLS listener on `cert`/`key` and `extra` lines in `[server]`.
fn tls_config(cert: &Path, key: &Path, server_extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:{}\"]\n{server_extra}\n\
         [server.tls]\nlisten = [\"127.0.0.1:{}\"]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [upstreams.intranet]\nservers = [\"127.0.0.1:9\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        free_port(),
        free_port(),
        cert.display(),
        key.display()
    )
}

#[track_caller]
fn only_problem(text: &str, key: &str, fragment: &str) {
    let errors = match from_toml_str(text, Path::new("/")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.errors,
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, key, "{errors:?}");
    assert!(errors[0].message.contains(fragment), "{errors:?}");
}

#[test]
fn check_accepts_only_the_tls_files_run_can_load() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("good", 2);
    let (_, other_key) = pki.issue("other", 2);
    let (old_cert, old_key) = pki.issue("old", 0);
    std::thread::sleep(Duration::from_millis(1100));
    from_toml_str(&tls_config(&cert, &key, ""), Path::new("/")).expect("a good pair loads");

    for (cert, key, at, fragment) in [
        (
            &cert,
            &other_key,
            "key_file",
            "is not the key of the certificate",
        ),
        (&key, &key, "cert_file", "holds a private key"),
        (&cert, &cert, "key_file", "holds a certificate"),
        (&old_cert, &old_key, "cert_file", "expired on"),
    ] {
        let config = tls_config(cert, key, "");
        only_problem(&config, &format!("server.tls.{at}"), fragment);
    }

    let text_file = pki.path("notes.txt");
    std::fs::write(&text_file, "not a certificate\n").unwrap();
    let empty = pki.path("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for (ca, fragment) in [
        (
            key.as_path(),
            "holds a private key: a CA file holds certificates only",
        ),
        (empty.as_path(), "holds no PEM block"),
        (text_file.as_path(), "holds no PEM block"),
        (Path::new("/nonexistent/handoff/ca.pem"), "cannot read"),
    ] {
        let extra = format!("ca_file = \"{}\"", ca.display());
        only_problem(&tls_config(&cert, &key, &extra), "server.ca_file", fragment);
    }
    // A group's own CA file is read the same way.
    let text = format!(
        "[upstreams.intranet]\nservers = [\"127.0.0.1:9\"]\ntls = true\nsni = \"localhost\"\n\
         ca_file = \"{}\"\n[[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        key.display()
    );
    only_problem(&text, "upstreams.intranet.ca_file", "holds a private key");
    // ca_file and verify_hostname mean nothing without TLS: said so.
    let text = format!(
        "[upstreams.intranet]\nservers = [\"127.0.0.1:9\"]\nca_file = \"{}\"\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        pki.ca().display()
    );
    only_problem(&text, "upstreams.intranet.tls", "set tls = true");
}

#[test]
fn run_refuses_a_key_that_is_not_the_certificates_at_once() {
    let pki = Pki::new();
    let (cert, _) = pki.issue("good", 2);
    let (_, other_key) = pki.issue("other", 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, tls_config(&cert, &other_key, "")).unwrap();
    let mut gw = GatewayProcess::start(&path, &[]);
    let code = gw.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(2), "{}", gw.log());
    assert!(
        gw.log().contains("server.tls.key_file") && gw.log().contains("is not the key"),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_the_tls_port_gets_a_plain_400_and_https_is_served() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("listener", 2);
    let tls_port = free_port();
    let gw = TestGateway::start_with(
        "[upstreams.intranet]\nservers = [\"127.0.0.1:9\"]\nhealth_check = { type = \"none\" }\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        &format!(
            "[server.tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let tls_addr = std::net::SocketAddr::from(([127, 0, 0, 1], tls_port));
    wait_until_connectable(tls_addr);
    let answer = raw_exchange(
        tls_addr,
        b"GET /_handoff/healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:?}"
    );
    assert!(
        answer.contains("a plain HTTP request was sent to an HTTPS port"),
        "{answer}"
    );
    // Framed as a strict client reads it: the body is exactly Content-Length long.
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(length, body.len(), "{answer:?}");
    // Bytes that are neither TLS nor HTTP: closed without an answer.
    let answer = raw_exchange(tls_addr, b"\x00\x01\x02", Duration::from_secs(5));
    assert_eq!(answer, "");
    // HTTPS itself, with the test CA trusted.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    for _ in 0..3 {
        let resp = https
            .get(format!("https://localhost:{tls_port}/_handoff/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok\n");
    }
    // The plain port still speaks plain HTTP.
    let resp = client()
        .get(gw.url("/_handoff/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A failed handshake is not an error of the gateway's.
    assert!(
        !captured_logs()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("handshake")),
        "{}",
        captured_logs()
    );
}
