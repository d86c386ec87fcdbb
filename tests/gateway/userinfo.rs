//! Opaque session cookies recognised through the intranet's userinfo endpoint: what is sent,
//! caching, single flight, both failure modes, timeouts, garbage and huge answers, a flood of
//! made-up cookies — and Bearer tokens and source order. The cache's time rules (expiry,
//! stale-while-revalidate, `max_stale`) are unit tests on a hand-moved clock, next to the
//! cache (src/intranet_session/userinfo.rs).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::common::*;
use crate::idp::{IdentityProvider, Mode, SID};
use handoff::internals::standins::yourgpt::{YourGptStandIn, CLIENT_ID};

/// A gateway recognising `sid` cookies through the stand-in, with `extra` lines in
/// `[session.userinfo]` and `session_extra` lines in `[session]`.
fn config(idp: &IdentityProvider, intranet: &Intranet, session_extra: &str, extra: &str) -> String {
    format!(
        "[session]\ncookie = \"{SID}\"\n{session_extra}\n\
         [session.userinfo]\nurl = \"{}\"\n{extra}\n\n{}\n\
         [[routes]]\npath = \"/private\"\nupstream = \"intranet\"\nrequire_session = true\n\
         identity_headers = true\n",
        idp.userinfo_url(),
        upstream_config(intranet)
    )
}

fn ada(version: &str) -> Value {
    json!({
        "id": 42,
        "profile": { "email": "ada@corp.example", "display": format!("Ada Lovelace {version}") },
        "roles": ["eng"],
    })
}

/// The stand-ins, and a gateway with [`MAPPING`] and `extra` lines in `[session.userinfo]`.
async fn setup(extra: &str) -> (Intranet, IdentityProvider, TestGateway) {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let gw = TestGateway::start(&format!(
        "{}\n{MAPPING}",
        config(&idp, &intranet, "", extra)
    ));
    (intranet, idp, gw)
}

const MAPPING: &str = "[identity]\nid = \"id\"\nemail = \"profile.email\"\n\
                       name = \"profile.display\"\ngroups = \"roles\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn an_opaque_cookie_is_looked_up_once_and_cached() {
    let (_intranet, idp, gw) = setup("negative_cache_seconds = 1").await;
    let secret_sid = "opaque-session-5f2c9a7e1d";
    idp.add_session(secret_sid, ada("v1"));
    let cookie = format!("theme=dark; {SID}={secret_sid}; tracking=abc");
    let (status, body) = whoami(&gw, &cookie).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "userinfo");
    assert_eq!(body["id"], "42");
    assert_eq!(body["email"], "ada@corp.example", "dotted path");
    assert_eq!(body["last_name"], "v1");
    assert_eq!(body["groups"], json!(["eng"]));
    // Only the session cookie goes to the endpoint.
    assert_eq!(
        idp.last_cookie_header(),
        Some(format!("{SID}={secret_sid}"))
    );
    // Cached: a proxied request with identity headers makes no second call.
    for _ in 0..5 {
        let echo = Echo::from(
            client()
                .get(gw.url("/private/page"))
                .header("Cookie", &cookie)
                .send()
                .await
                .expect("page"),
        )
        .await;
        assert_eq!(
            echo.header("x-handoff-email").as_deref(),
            Some("ada@corp.example")
        );
    }
    assert_eq!(idp.userinfo_calls(), 1);

    // 401 from the endpoint: not signed in, remembered for the negative lifetime.
    for _ in 0..3 {
        let (status, body) = whoami(&gw, &format!("{SID}=nobody")).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("rejected")));
    }
    assert_eq!(idp.userinfo_calls(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    whoami(&gw, &format!("{SID}=nobody")).await;
    assert_eq!(idp.userinfo_calls(), 3, "negative entry expired");
    // No cookie at all: no call.
    let (status, body) = whoami(&gw, "theme=dark").await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("missing")));
    assert_eq!(idp.userinfo_calls(), 3);
    // The raw cookie value never reaches the logs.
    assert!(!captured_logs().contains(secret_sid));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_requests_with_a_new_cookie_make_one_call() {
    let (_intranet, idp, gw) = setup("").await;
    idp.add_session("fresh", ada("v1"));
    idp.set_userinfo_mode(Mode::Slow(Duration::from_millis(300)));
    let cookie = format!("{SID}=fresh");
    let answers = join_all((0..1000).map(|_| whoami(&gw, &cookie))).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1000, "{:?}", answers.iter().find(|(s, _)| *s != 200));
    assert_eq!(idp.userinfo_calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_failure_mode_answers_503_for_each_kind_of_failure() {
    let (intranet, idp, gw) = setup(
        "timeout_ms = 300\ncache_seconds = 1\n\
                                     stale_while_revalidate_seconds = 0\nmax_body_bytes = 4096",
    )
    .await;
    idp.add_session("s1", ada("v1"));
    let cookie = format!("{SID}=s1");
    assert_eq!(whoami(&gw, &cookie).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (mode, log) in [
        (Mode::Down, "answered HTTP 500"),
        (Mode::Slow(Duration::from_secs(3)), "timed out"),
        (Mode::Garbage, "not a JSON object"),
        (Mode::Huge, "answered more than 4096 bytes"),
    ] {
        idp.set_userinfo_mode(mode);
        let started = Instant::now();
        let (status, body) = whoami(&gw, &cookie).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (503, Some("unavailable")),
            "{mode:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{mode:?}");
        let ours = format!("userinfo http://{}/userinfo", idp.addr);
        assert!(
            log_line_with(&[&ours, log]).is_some(),
            "{mode:?}: no {log:?} from {ours} in the logs"
        );
        // A browser on a protected route gets a clear page with Retry-After.
        let page = client()
            .get(gw.url("/private/x"))
            .header("Accept", "text/html")
            .header("Cookie", &cookie)
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 503, "{mode:?}");
        assert!(page.headers().contains_key("retry-after"));
        let text = page.text().await.unwrap_or_default();
        assert!(text.contains("not answering"), "{text}");
        // Routes that need no session keep working.
        let open = client().get(gw.url("/open")).send().await.expect("open");
        assert_eq!(open.status(), 200);
    }
    // An unreachable endpoint too.
    let dead = TestGateway::start(&format!(
        "[session]\ncookie = \"{SID}\"\n[session.userinfo]\nurl = \"http://127.0.0.1:{}/userinfo\"\n\n{}",
        free_port(),
        upstream_config(&intranet)
    ));
    let (status, body) = whoami(&dead, &cookie).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("unavailable"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn open_with_stale_serves_a_known_person_up_to_the_bound() {
    let (_intranet, idp, gw) = setup(
        "cache_seconds = 1\nstale_while_revalidate_seconds = 0\n\
             on_error = \"open_with_stale\"\nmax_stale_seconds = 2",
    )
    .await;
    idp.add_session("s1", ada("v1"));
    let cookie = format!("{SID}=s1");
    assert_eq!(whoami(&gw, &cookie).await.0, 200);
    idp.set_userinfo_mode(Mode::Down);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = whoami(&gw, &cookie).await;
    assert_eq!(status, 200, "stale answer stands in: {body}");
    assert_eq!(body["last_name"], "v1");
    let ours = format!("userinfo http://{}/userinfo", idp.addr);
    assert!(log_line_with(&[&ours, "serving the person's last known answer"]).is_some());
    // Nobody new gets in on a guess. (Past cache + max_stale, and the rest of the time rules:
    // src/intranet_session/userinfo.rs's unit tests, on a hand-moved clock.)
    idp.add_session("s2", ada("v1"));
    assert_eq!(whoami(&gw, &format!("{SID}=s2")).await.0, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_count_on_proxy_routes_but_not_for_handoffs() {
    let intranet = Intranet::start().await;
    let yourgpt = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .expect("stand-in");
    let config = format!(
        "{session}{upstream}\n[[routes]]\npath = \"/api\"\nupstream = \"intranet\"\n\
         require_session = true\nidentity_headers = true\n\n\
         [apps.yourgpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{api}\"\n\
         login_url = \"https://chatbot.yourgpt.test/\"\n\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"yourgpt\"\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
        api = yourgpt.url(),
    );
    let gw = TestGateway::start(&config);
    let token = hs256(&person("ada@corp.example", &["eng"]));
    let echo = Echo::from(
        client()
            .get(gw.url("/api/items"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .expect("api"),
    )
    .await;
    assert_eq!(
        echo.header("x-handoff-email").as_deref(),
        Some("ada@corp.example")
    );
    assert_eq!(
        echo.header("authorization"),
        Some(format!("Bearer {token}")),
        "the request itself is forwarded unchanged"
    );
    let resp = client()
        .get(gw.url("/_handoff/whoami"))
        .header("Authorization", format!("bearer {token}"))
        .send()
        .await
        .expect("whoami");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["source"], "bearer");
    // A bad bearer token is refused with its reason.
    let resp = client()
        .get(gw.url("/api/items"))
        .header("Authorization", format!("Bearer {token}x"))
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("signature does not verify"), "{body}");
    // A handoff is a browser navigation: a bearer token alone does not start one.
    let resp = client()
        .get(gw.url("/ai/yourgpt"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("handoff");
    assert_eq!(resp.status(), 401);
    assert_eq!(yourgpt.calls().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sources_are_tried_in_the_configured_order() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    idp.add_session(
        "bob-sid",
        json!({"sub": "bob", "email": "bob@corp.example"}),
    );
    let jwt = hs256(&person("ada@corp.example", &[]));
    let both = format!("intranet_session={jwt}; {SID}=bob-sid");
    let gateway = |sources: &str| {
        TestGateway::start(&format!(
            "{}sources = {sources}\n[session.userinfo]\nurl = \"{}\"\ncookies = [\"{SID}\"]\n\n{}",
            session_config(&["HS256"], ""),
            idp.userinfo_url(),
            upstream_config(&intranet)
        ))
    };
    let cookie_first = gateway("[\"cookie\", \"userinfo\"]");
    let (_, body) = whoami(&cookie_first, &both).await;
    assert_eq!(
        (body["source"].as_str(), body["email"].as_str()),
        (Some("cookie"), Some("ada@corp.example"))
    );
    assert_eq!(idp.userinfo_calls(), 0, "the first source recognised Ada");
    // Only the opaque cookie: the next source recognises Bob.
    let (_, body) = whoami(&cookie_first, &format!("{SID}=bob-sid")).await;
    assert_eq!(body["source"], "userinfo");
    // An expired JWT falls through to the next source too.
    let mut expired = person("ada@corp.example", &[]);
    expired["exp"] = json!(now() - 3600);
    let (_, body) = whoami(
        &cookie_first,
        &format!("intranet_session={}; {SID}=bob-sid", hs256(&expired)),
    )
    .await;
    assert_eq!(body["email"], "bob@corp.example");

    let userinfo_first = gateway("[\"userinfo\", \"cookie\"]");
    let (_, body) = whoami(&userinfo_first, &both).await;
    assert_eq!(
        (body["source"].as_str(), body["email"].as_str()),
        (Some("userinfo"), Some("bob@corp.example"))
    );

    let cookie_only = gateway("[\"cookie\"]");
    let (status, body) = whoami(&cookie_only, &format!("{SID}=bob-sid")).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("missing")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_is_bounded_and_drops_the_oldest_first() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    for i in 0..30 {
        idp.add_session(&format!("s{i}"), json!({"sub": format!("user-{i}")}));
    }
    let gw = TestGateway::start(&config(&idp, &intranet, "", "max_entries = 10"));
    for i in 0..30 {
        let (status, body) = whoami(&gw, &format!("{SID}=s{i}")).await;
        assert_eq!(
            (status, body["id"].as_str()),
            (200, Some(format!("user-{i}").as_str()))
        );
    }
    assert_eq!(idp.userinfo_calls(), 30);
    for i in 25..30 {
        whoami(&gw, &format!("{SID}=s{i}")).await;
    }
    assert_eq!(idp.userinfo_calls(), 30, "the newest entries are kept");
    whoami(&gw, &format!("{SID}=s0")).await;
    assert_eq!(idp.userinfo_calls(), 31, "the oldest was dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_new_cookies_neither_evicts_nor_starves_a_known_person() {
    let metrics_port = free_port();
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let gw = TestGateway::start_with(
        &format!(
            "{}\n{MAPPING}",
            config(
                &idp,
                &intranet,
                "",
                "cache_seconds = 2\nstale_while_revalidate_seconds = 0\n\
                 on_error = \"open_with_stale\"\nmax_stale_seconds = 60\nmax_entries = 10\n\
                 max_negative_entries = 10\nmax_new_lookups = 8",
            )
        ),
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    idp.add_session("s1", ada("v1"));
    let ada_cookie = format!("{SID}=s1");
    assert_eq!(whoami(&gw, &ada_cookie).await.0, 200);
    let before = idp.userinfo_calls();

    // 2,000 cookies never seen before, 200 at a time, against a slow endpoint.
    idp.set_userinfo_mode(Mode::Slow(Duration::from_millis(20)));
    let (mut rejected, mut busy) = (0, 0);
    for batch in 0..10 {
        let answers = join_all((0..200).map(|i| {
            let cookie = format!("{SID}=made-up-{batch}-{i}");
            let gw = &gw;
            async move { whoami(gw, &cookie).await }
        }))
        .await;
        for (status, body) in answers {
            match (status, body["reason"].as_str()) {
                (401, Some("rejected")) => rejected += 1,
                (503, Some("busy")) => busy += 1,
                other => panic!("a made-up cookie got {other:?}: {body}"),
            }
        }
        // Ada, known and fresh, is served from the cache throughout.
        assert_eq!(whoami(&gw, &ada_cookie).await.0, 200);
    }
    assert_eq!(rejected + busy, 2000);
    assert!(busy > 0 && rejected > 0, "rejected {rejected}, busy {busy}");
    // One call per answered cookie, none for refused ones (and, on a slow machine, one per
    // batch for Ada if her entry expired meanwhile).
    let calls = idp.userinfo_calls() - before;
    assert!(
        (rejected..=rejected + 10).contains(&calls),
        "{calls} calls for {rejected} answered cookies"
    );
    assert!(
        idp.userinfo_most_in_flight() <= 8,
        "{} lookups at once",
        idp.userinfo_most_in_flight()
    );
    assert_eq!(
        metric(
            metrics_port,
            "handoff_session_cache_total{cache=\"userinfo\",result=\"refused\"}"
        )
        .await,
        Some(busy as f64)
    );
    let ours = format!("userinfo http://{}/userinfo", idp.addr);
    assert!(
        log_line_with(&[&ours, "lookups of new cookies already in flight"]).is_some(),
        "the refusals are logged"
    );

    // The endpoint goes down after Ada's entry expired: her answer stands in, although
    // 2,000 "not signed in" answers passed through a cache of 10.
    idp.set_userinfo_mode(Mode::Down);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = whoami(&gw, &ada_cookie).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["last_name"], "v1");
}
