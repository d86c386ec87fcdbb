//! What the operator sees: the Prometheus metrics answer "is it working?", and the logs never
//! carry a token, a cookie, a secret or a handoff redirect's query.

use serde_json::{json, Value};

use crate::common::*;
use handoff::internals::standins::yourgpt::{Mode, YourGptStandIn, CLIENT_ID};

const TYPINGMIND: &str = "https://chat.example.test";

/// A gateway with YourGPT and TypingMind handoffs, a proxied intranet with identity headers, a
/// metrics listener, and `extra` appended to the config.
async fn gateway(api: &YourGptStandIn, extra: &str) -> (TestGateway, Intranet, u16) {
    let intranet = Intranet::start().await;
    let metrics_port = free_port();
    let config = format!(
        "{session}\
         [upstreams.intranet]\nservers = [\"{server}\"]\n\
         [upstreams.intranet.health_check]\ntype = \"tcp\"\ninterval_ms = 200\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\nidentity_headers = true\n\
         [apps.yourgpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{api}\"\n\
         login_url = \"https://chatbot.yourgpt.test/\"\n\
         [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"{TYPINGMIND}/\"\n\
         secret = {{ file = \"typingmind-secret.txt\" }}\nwidget = true\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"yourgpt\"\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n{extra}",
        session = session_config(
            &["HS256"],
            "login_url = \"https://intranet.test/login?next={return_to}\"\n\
             sources = [\"cookie\", \"bearer\"]"
        ),
        server = intranet.server(),
        api = api.url(),
    );
    let gw = TestGateway::start_with(
        &config,
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    (gw, intranet, metrics_port)
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn browser(req: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    req.header("Accept", "text/html")
        .header("Sec-Fetch-Dest", "document")
        .header("Cookie", cookie)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_say_what_happened() {
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let (gw, _intranet, port) = gateway(&api, "").await;
    let c = client();
    let ada = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &["eng"]))
    );
    let expired = {
        let mut claims = person("old@corp.example", &[]);
        claims["exp"] = json!(now() - 3600);
        format!("intranet_session={}", hs256(&claims))
    };

    for _ in 0..3 {
        let r = c
            .get(gw.url("/page"))
            .header("Cookie", &ada)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = browser(c.get(gw.url("/ai/yourgpt")), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    api.set_verify(Mode::CodeInBody(403));
    let r = browser(c.get(gw.url("/ai/yourgpt")), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = browser(c.get(gw.url("/ai/chat")), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let r = browser(c.get(gw.url("/ai/chat")), &expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "to the login page");
    let r = c
        .get(gw.url("/page"))
        .header(
            "Authorization",
            format!("Bearer {}", hs256(&person("bot@corp.example", &[]))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // (Ada's token was verified once and remembered for the other five requests.)
    let expected = [
        (r#"handoff_requests_total{route="/",status="2xx"}"#, 4.0),
        (
            r#"handoff_requests_total{route="/ai/yourgpt",status="3xx"}"#,
            1.0,
        ),
        (
            r#"handoff_requests_total{route="/ai/yourgpt",status="5xx"}"#,
            1.0,
        ),
        (
            r#"handoff_requests_total{route="/ai/chat",status="3xx"}"#,
            2.0,
        ),
        (r#"handoff_request_duration_seconds_count{route="/"}"#, 4.0),
        (
            r#"handoff_handoffs_total{app="yourgpt",code="",outcome="redirected"}"#,
            1.0,
        ),
        (
            r#"handoff_handoffs_total{app="yourgpt",code="403",outcome="vendor_error"}"#,
            1.0,
        ),
        (
            r#"handoff_handoffs_total{app="chat",code="",outcome="redirected"}"#,
            1.0,
        ),
        (
            r#"handoff_vendor_request_duration_seconds_count{app="yourgpt",call="verify"}"#,
            2.0,
        ),
        (
            r#"handoff_sessions_total{result="valid",source="cookie"}"#,
            6.0,
        ),
        (
            r#"handoff_sessions_total{result="valid",source="bearer"}"#,
            1.0,
        ),
        (
            r#"handoff_sessions_total{result="expired",source="none"}"#,
            1.0,
        ),
        (
            r#"handoff_session_cache_total{cache="token",result="hit"}"#,
            5.0,
        ),
        (
            r#"handoff_upstream_servers{state="healthy",upstream="intranet"}"#,
            1.0,
        ),
        (
            r#"handoff_upstream_servers{state="unhealthy",upstream="intranet"}"#,
            0.0,
        ),
    ];
    // A request is counted in the logging phase, after its answer went out, and the health
    // check runs every 200 ms (one may time out on a loaded machine): scrape until the counts
    // are in, for up to 10 s, then say what differs.
    let started = std::time::Instant::now();
    let text = loop {
        let text = scrape(port).await;
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(series, want)| sample(&text, series) != Some(*want))
            .collect();
        if wrong.is_empty() {
            break text;
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "{wrong:?} differ in\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let loaded = sample(
        &text,
        "handoff_config_last_reload_success_timestamp_seconds",
    )
    .expect("load time");
    assert!((loaded - now() as f64).abs() < 120.0, "{loaded}");
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    // Nothing in the metrics names a person or carries a credential.
    assert!(!text.contains("ada@corp.example") && !text.contains("id-ada"));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_listener_is_separate_from_the_gateway() {
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let (gw, _intranet, port) = gateway(&api, "").await;
    // The gateway's own port proxies /metrics to the intranet like any other path.
    let r = client().get(gw.url("/metrics")).send().await.unwrap();
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["path"], "/metrics");
    assert!(scrape(port).await.contains("handoff_requests_total"));
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_line_has_the_fields_and_no_query() {
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let (gw, _intranet, _) = gateway(&api, "").await;
    let marker = format!("/access-log-{}", free_port());
    let r = client()
        .get(gw.url(&format!("{marker}?q=private-search-term")))
        .header(
            "Cookie",
            format!(
                "intranet_session={}",
                hs256(&person("grace@corp.example", &[]))
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = wait_for_log_line(&marker).await;
    for field in [
        "method=GET",
        &format!("path=\"{marker}\""),
        "status=200",
        "route=\"/\"",
        "outcome=\"proxied\"",
        "session=\"valid\"",
        "source=\"cookie\"",
        "person=\"id-grace@corp.example\"",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(
        line.contains(&format!("upstream=\"{}\"", _intranet.server())),
        "{line}"
    );
    assert!(!line.contains("private-search-term"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_can_name_people_by_keyed_hash_only() {
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let (gw, _intranet, _) = gateway(
        &api,
        "[log]\nperson = \"hash\"\nperson_hash_key = { file = \"session-secret.txt\" }\nquery = true\n",
    )
    .await;
    let marker = format!("/hashed-{}", free_port());
    client()
        .get(gw.url(&format!("{marker}?page=2")))
        .header(
            "Cookie",
            format!(
                "intranet_session={}",
                hs256(&person("hedy@corp.example", &[]))
            ),
        )
        .send()
        .await
        .unwrap();
    let line = wait_for_log_line(&marker).await;
    assert!(!line.contains("hedy"), "{line}");
    // HMAC-SHA256 of the id under the key, first 16 bytes in hex — computed here, not by
    // the gateway's own code.
    let expected: String = {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret_fixture("session-secret.txt"))
                .unwrap();
        mac.update(b"id-hedy@corp.example");
        mac.finalize().into_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert!(line.contains(&format!("person=\"{expected}\"")), "{line}");
    assert!(
        line.contains(&format!("path=\"{marker}?page=2\"")),
        "query = true: {line}"
    );
}

/// Every flow, with known secrets and credentials: none of them may appear anywhere in what
/// the gateway logged.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_token_or_cookie_reaches_the_logs() {
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let (gw, _intranet, port) = gateway(&api, "").await;
    let c = client();
    let ada_token = hs256(&person("ada.secrets@corp.example", &["eng"]));
    let ada = format!("intranet_session={ada_token}");
    let mut seen: Vec<String> = vec![ada_token.clone()];

    // YourGPT: redirected with a session token in the query.
    let r = browser(c.get(gw.url("/ai/yourgpt?ref=x")), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let (_, query) = location.split_once('?').expect("a query");
    seen.push(query.to_string());
    seen.extend(api.calls().into_iter().map(|call| call.token));
    // YourGPT: the email path (registered, not confirmed: sent on to verify their email).
    let linus_token = hs256(&person("linus.secrets@corp.example", &["eng"]));
    api.add_unconfirmed("linus.secrets@corp.example");
    let r = browser(
        c.get(gw.url("/ai/yourgpt")),
        &format!("intranet_session={linus_token}"),
    )
    .send()
    .await
    .unwrap();
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.contains("should-verify-email=true"), "{location}");
    seen.push(linus_token);
    seen.extend(api.calls().into_iter().map(|call| call.token));
    // TypingMind link and deep link with a query.
    let r = browser(c.get(gw.url("/ai/chat/c/123?x=deep-query-value")), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let code = location
        .rsplit_once("externalAuthCode=")
        .unwrap()
        .1
        .to_string();
    seen.push(code);
    seen.push("deep-query-value".to_string());
    // Widget sign-in on a proxied page.
    let r = browser(c.get(gw.url("/page/widget")), &ada)
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    if let Some((_, rest)) = page.split_once("data-external-auth-code=\"") {
        seen.push(rest.split('"').next().unwrap().to_string());
    }
    // Bearer token, a bad token, a login redirect with a query.
    let bearer = hs256(&person("bot.secrets@corp.example", &[]));
    c.get(gw.url("/api/x"))
        .header("Authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap();
    seen.push(bearer);
    let forged = format!("{}x", &ada_token[..ada_token.len() - 1]);
    c.get(gw.url("/ai/chat"))
        .header(
            "Cookie",
            format!("intranet_session={forged}; other_cookie=other-cookie-value"),
        )
        .send()
        .await
        .unwrap();
    seen.push(forged);
    seen.push("other-cookie-value".to_string());
    browser(c.get(gw.url("/ai/chat?next-secret=login-query-value")), "")
        .send()
        .await
        .unwrap();
    seen.push("login-query-value".to_string());
    // The gateway's own endpoints with the cookie.
    c.get(gw.url("/_handoff/whoami"))
        .header("Cookie", &ada)
        .send()
        .await
        .unwrap();
    c.get(gw.url("/_handoff/"))
        .header("Cookie", &ada)
        .send()
        .await
        .unwrap();
    let metrics = scrape(port).await;

    let mut secrets = seen;
    secrets.push(
        String::from_utf8(session_secret())
            .unwrap()
            .trim()
            .to_string(),
    );
    secrets.push(String::from_utf8(secret_fixture("yourgpt-secret.txt")).unwrap());
    secrets.push(String::from_utf8(secret_fixture("typingmind-secret.txt")).unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let logs = captured_logs();
    assert!(logs.contains("ada.secrets"), "the flows ran and logged");
    for secret in &secrets {
        assert!(secret.len() >= 8, "a meaningful needle: {secret:?}");
        assert!(!logs.contains(secret.as_str()), "{secret:?} is in the logs");
        assert!(
            !metrics.contains(secret.as_str()),
            "{secret:?} is in the metrics"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_identity_urls_reach_no_log_and_no_metric() {
    use crate::idp::{IdentityProvider, Mode as IdpMode, TestKey};
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    idp.publish(&[&TestKey::rsa("rsa_private.pem", "k1")]);
    idp.set_userinfo_mode(IdpMode::Down);
    let metrics_port = free_port();
    let with_secrets = |url: String, user: &str, pass: &str, query: &str| {
        url.replacen("http://", &format!("http://{user}:{pass}@"), 1) + query
    };
    let jwks = with_secrets(
        idp.jwks_url(),
        "jwksuser",
        "Jwks-Pass-1",
        "?api_key=Jwks-Key-2",
    );
    let userinfo = with_secrets(
        idp.userinfo_url(),
        "uiuser",
        "Ui-Pass-3",
        "?token=Ui-Token-4",
    );
    let secrets = ["Jwks-Pass-1", "Jwks-Key-2", "Ui-Pass-3", "Ui-Token-4"];
    let config = format!(
        "[session]\ncookie = \"sid\"\nalgorithms = [\"RS256\"]\n\
         [session.jwks]\nurl = \"{jwks}\"\n[session.userinfo]\nurl = \"{userinfo}\"\n\n{}",
        upstream_config(&intranet)
    );
    let gw = TestGateway::start_with(
        &config,
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    // A cookie that is not a JWT goes to the userinfo endpoint, which is down: logged.
    let (status, _) = whoami(&gw, "sid=opaque-1").await;
    assert_eq!(status, 503);
    let metrics = scrape(metrics_port).await;
    let jwks_shown = format!("http://{}/jwks.json", idp.addr);
    assert_eq!(
        sample(
            &metrics,
            &format!("handoff_jwks_keys{{url=\"{jwks_shown}\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    let logs = captured_logs();
    assert!(
        logs.contains(&format!("userinfo http://{}/userinfo", idp.addr)),
        "{logs}"
    );
    assert!(logs.contains(&format!("JWKS {jwks_shown}")), "{logs}");
    for secret in secrets {
        assert!(!metrics.contains(secret), "{secret} in the metrics");
        assert!(!logs.contains(secret), "{secret} in the logs");
    }

    // The loaded config's Debug output (a panic message, a log of the settings) holds none.
    let debug = format!(
        "{:?}",
        handoff::internals::config::from_toml_str(&config, &fixtures()).unwrap()
    );
    assert!(debug.contains(&jwks_shown), "{debug}");
    for secret in secrets {
        assert!(
            !debug.contains(secret),
            "{secret} in the config's Debug output"
        );
    }

    // `check` says where such a URL belongs, without echoing it; a secret reference is quiet.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("session.jwks.url carries a credential (user:password@)")
            && said.contains("session.userinfo.url carries a credential")
            && said.contains("{ env = \"NAME\" }"),
        "{said}"
    );
    for secret in secrets {
        assert!(!said.contains(secret), "{secret} in check's output: {said}");
    }
    let by_reference = config
        .replace(
            &format!("url = \"{jwks}\""),
            "url = { env = \"TEST_JWKS_URL\" }",
        )
        .replace(
            &format!("url = \"{userinfo}\""),
            "url = { file = \"userinfo-url.txt\" }",
        );
    std::fs::write(dir.path().join("userinfo-url.txt"), format!("{userinfo}\n")).unwrap();
    std::fs::write(&path, &by_reference).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["check", "--config"])
        .arg(&path)
        .env("TEST_JWKS_URL", &jwks)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("carries a credential"), "{said}");
    // A reference that does not hold a URL is named, its value never shown.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["check", "--config"])
        .arg(&path)
        .env("TEST_JWKS_URL", "not a url Jwks-Pass-1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        said.contains("session.jwks.url") && said.contains("does not hold an http(s) URL"),
        "{said}"
    );
    assert!(!said.contains("Jwks-Pass-1"), "{said}");
}

#[test]
fn a_client_leaving_in_the_middle_of_a_head_is_no_error() {
    use std::io::{Read, Write};
    let gw = TestGateway::start(
        "[upstreams.u]\nservers = [\"127.0.0.1:9\"]\nhealth_check = { type = \"none\" }\n\
         [[routes]]\npath = \"/\"\nupstream = \"u\"\n",
    );
    // A head cut off after 173 bytes (the count names this test's line in the shared capture),
    // then the client's FIN: the gateway closes too, without an answer and without an ERROR.
    let head = format!(
        "GET /left HTTP/1.1\r\nHost: gw.test\r\nX-Pad: {}",
        "p".repeat(131)
    );
    assert_eq!(head.len(), 173);
    let mut client = std::net::TcpStream::connect(gw.addr).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    client.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let line = log_line_with(&["bytes already read: 173"]);
    assert!(
        line.is_none(),
        "a client that left is logged as a fault: {line:?}"
    );
}
