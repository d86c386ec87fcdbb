//! Handoff embedded in another Pingora proxy: `examples/embedded.rs`, compiled here as it is,
//! run on loopback with the stand-in intranet as its upstream and the vendor stand-ins. The
//! host's own routes stay the host's; Handoff's routes, endpoints, header stripping and widget
//! sign-in work through it. Handoff is built from settings given in code.

use serde_json::{json, Value};

use crate::common::*;
use handoff::internals::standins::yourgpt::{YourGptStandIn, CLIENT_ID};
use handoff::Handoff;

#[path = "../../examples/embedded.rs"]
mod example;

const LOGIN: &str = "https://chatbot.yourgpt.test";
const INSTANCE: &str = "https://chat.example.test";

/// Handoff's part of the host: session, both apps (TypingMind signing widgets in), two routes.
fn settings(yourgpt: &YourGptStandIn) -> Value {
    json!({
        "session": {
            "cookie": "intranet_session",
            "algorithms": ["HS256"],
            "secret": { "file": "session-secret.txt" },
            "login_url": "/login?next={return_to}",
        },
        "apps": {
            "yourgpt": {
                "kind": "yourgpt",
                "client_id": CLIENT_ID,
                "secret": { "file": "yourgpt-secret.txt" },
                "api_url": yourgpt.url(),
                "login_url": format!("{LOGIN}/"),
            },
            "chat": {
                "kind": "typingmind",
                "instance_url": INSTANCE,
                "secret": { "file": "typingmind-secret.txt" },
                "widget": true,
            },
        },
        "routes": [
            { "path": "/ai/yourgpt", "app": "yourgpt" },
            { "path": "/ai/chat", "app": "chat" },
        ],
    })
}

/// The example host on a free port, proxying to `intranet`.
fn host(handoff: Handoff, intranet: &Intranet) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = host_server_conf(dir.path(), 2);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server =
        example::host_server(handoff, &listen, &intranet.server(), conf).expect("the host builds");
    TestGateway::run(server, listen.parse().expect("addr"), dir)
}

fn cookie() -> String {
    format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &["eng"]))
    )
}

fn browser(gw: &TestGateway, path: &str) -> reqwest::RequestBuilder {
    client()
        .get(gw.url(path))
        .header("Accept", "text/html")
        .header("Cookie", cookie())
}

#[tokio::test(flavor = "multi_thread")]
async fn handoff_works_through_a_host_that_keeps_its_own_routes() {
    let intranet = Intranet::start().await;
    let yourgpt = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .expect("stand-in");
    let handoff = Handoff::from_settings(settings(&yourgpt), fixtures()).expect("settings load");
    assert_eq!(handoff.summary(), "2 routes, 0 upstreams, 2 apps");
    let gw = host(handoff, &intranet);

    // YourGPT handoff, answered by Handoff inside the host.
    let resp = browser(&gw, "/ai/yourgpt").send().await.expect("yourgpt");
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap_or_default();
    assert!(
        location.starts_with(&format!("{LOGIN}/process-login?token=")),
        "{location}"
    );
    assert_eq!(yourgpt.count("verify"), 1);

    // TypingMind link with a fresh code.
    let resp = browser(&gw, "/ai/chat").send().await.expect("chat");
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap_or_default();
    assert!(
        location.starts_with(&format!("{INSTANCE}/?externalAuthCode=")),
        "{location}"
    );

    // Without a session, Handoff's routes send the browser to the login page.
    let resp = client()
        .get(gw.url("/ai/chat"))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("anonymous");
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/login?next=%2Fai%2Fchat");

    // Widget sign-in on a page the host proxies from its own upstream.
    let resp = browser(&gw, "/pages/widget").send().await.expect("page");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-served-by-host"], "embedded");
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let page = resp.text().await.unwrap_or_default();
    assert!(page.contains("data-external-auth-code=\""), "{page}");
    assert!(page.contains("<h1>Welcome</h1>"));

    // Forged identity headers never reach the host's upstream; the host's own header does.
    let echo = Echo::from(
        client()
            .post(gw.url("/reports/q3?x=1"))
            .header("X-Handoff-User", "admin")
            .header("X-Handoff-Email", "ceo@corp.example")
            .header("Cookie", cookie())
            .body("payload")
            .send()
            .await
            .expect("echo"),
    )
    .await;
    assert!(echo.header("x-handoff-user").is_none(), "{:?}", echo.0);
    assert!(echo.header("x-handoff-email").is_none());
    assert_eq!(echo.header("x-host-route").as_deref(), Some("intranet"));
    assert_eq!(echo.0["method"], "POST");
    assert_eq!(echo.0["path"], "/reports/q3");
    assert_eq!(echo.0["query"], "x=1");
    assert_eq!(echo.0["body_digest"], digest(b"payload").to_string());

    // The host's own route and Handoff's own endpoints side by side.
    let health = client()
        .get(gw.url("/host/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.text().await.unwrap_or_default(), "host ok\n");
    let (status, who) = whoami(&gw, &cookie()).await;
    assert_eq!(
        (status, who["email"].as_str()),
        (200, Some("ada@corp.example"))
    );
}

#[test]
fn settings_in_code_are_checked_like_a_file() {
    let bad = json!({
        "session": { "cookie": "s", "algorithms": ["none"], "secret": { "file": "session-secret.txt" } },
        "routes": [{ "path": "/ai/x", "app": "nope" }],
    });
    let err = Handoff::from_settings(bad, fixtures())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("session.algorithms[0]"), "{err}");
    assert!(err.contains("routes[0] (/ai/x).app"), "{err}");
    // A value TOML cannot hold is a clear error, not a panic.
    let err = Handoff::from_settings(json!([1, 2]), fixtures())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("do not fit a TOML document"), "{err}");
}

/// The library's reload: a host keeps serving while `Handoff::reload` swaps the routes, a bad
/// file changes nothing, and the metrics say both.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_reloads_handoff_from_its_file() {
    let yourgpt = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.toml");
    let session = format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = [\"HS256\"]\n\
         secret = {{ file = \"{}\" }}\n",
        fixtures().join("session-secret.txt").display()
    );
    let app = |name: &str| {
        format!(
            "[apps.{name}]\nkind = \"typingmind\"\ninstance_url = \"{INSTANCE}\"\n\
             secret = {{ file = \"{}\" }}\n[[routes]]\npath = \"/ai/{name}\"\napp = \"{name}\"\n",
            fixtures().join("typingmind-secret.txt").display()
        )
    };
    std::fs::write(&path, format!("{session}{}", app("chat"))).unwrap();
    let handoff = Handoff::from_file(&path).unwrap();
    let gw = host(handoff.clone(), &intranet);
    let open = |p: &'static str| {
        let url = gw.url(p);
        async move {
            client()
                .get(url)
                .header("Accept", "text/html")
                .header("Cookie", cookie())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(open("/ai/chat").await, 302);
    assert_eq!(open("/ai/other").await, 200, "the host's own page");

    std::fs::write(&path, format!("{session}{}{}", app("chat"), app("other"))).unwrap();
    assert_eq!(
        handoff.reload().await.unwrap(),
        "2 routes, 0 upstreams, 2 apps"
    );
    assert_eq!(open("/ai/other").await, 302, "now Handoff's");

    std::fs::write(
        &path,
        format!("{session}[[routes]]\npath = \"/x\"\napp = \"nope\"\n"),
    )
    .unwrap();
    let err = handoff.reload().await.unwrap_err().to_string();
    assert!(err.contains("routes[0] (/x).app"), "{err}");
    assert_eq!(open("/ai/other").await, 302, "the old config stays");

    let metrics = handoff.metrics_text();
    assert!(
        metrics.contains("handoff_config_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("handoff_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("handoff_handoffs_total{app=\"other\",code=\"\",outcome=\"redirected\"} 2"),
        "{metrics}"
    );

    // Built from settings in code: there is no file, and reload says so.
    let in_code = Handoff::from_settings(settings(&yourgpt), fixtures()).unwrap();
    let err = in_code.reload().await.unwrap_err().to_string();
    assert!(err.contains("no file to reload"), "{err}");
}
