//! YourGPT handoff end to end: gateway → stand-in YourGPT API → redirect or page.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use handoff::internals::standins::yourgpt::{Mode, YourGptStandIn, CLIENT_ID};

const LOGIN: &str = "https://chatbot.yourgpt.test";

fn yourgpt_secret() -> Vec<u8> {
    secret_fixture("yourgpt-secret.txt")
}

struct Setup {
    gw: TestGateway,
    api: YourGptStandIn,
}

async fn setup(app_extra: &str, route_extra: &str) -> Setup {
    let api = YourGptStandIn::start(yourgpt_secret()).await.unwrap();
    let gw = setup_with_api(&api, &api.url(), app_extra, route_extra).await;
    Setup { gw, api }
}

async fn setup_with_api(
    _api: &YourGptStandIn,
    api_url: &str,
    app_extra: &str,
    route_extra: &str,
) -> TestGateway {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}\
         [apps.yourgpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{api_url}\"\n\
         login_url = \"{LOGIN}/\"\n{app_extra}\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"yourgpt\"\n{route_extra}\n",
        session = session_config(
            &["HS256"],
            "login_url = \"https://intranet.test/login?next={return_to}\""
        ),
        upstream = upstream_config(&intranet),
    );
    TestGateway::start(&config)
}

fn cookie_for(claims: &Value) -> String {
    format!("intranet_session={}", hs256(claims))
}

async fn open(gw: &TestGateway, claims: &Value) -> reqwest::Response {
    client()
        .get(gw.url("/ai/yourgpt"))
        .header("Accept", "text/html")
        .header("Sec-Fetch-Dest", "document")
        .header("Cookie", cookie_for(claims))
        .send()
        .await
        .unwrap()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// Pages and logs must never show a minted token, YourGPT's token, or the secret.
fn assert_no_secrets(text: &str, api: &YourGptStandIn) {
    let secret = String::from_utf8(yourgpt_secret()).unwrap();
    assert!(!text.contains(&secret), "the SSO secret leaked");
    for call in api.calls() {
        if !call.token.is_empty() {
            assert!(!text.contains(&call.token), "a minted token leaked");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn success_redirects_with_yourgpts_token_and_the_right_claims() {
    let s = setup("partner_id = \"partner-9\"\ntoken_ttl_seconds = 120", "").await;
    let mut ada = person("ada@corp.example", &["eng"]);
    ada["preferred_username"] = json!("ada");
    ada["picture"] = json!("https://pics.corp.example/ada.png");
    let resp = open(&s.gw, &ada).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        format!("{LOGIN}/process-login?token=yg%20session%2Fada%40corp%2Eexample")
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");

    let calls = s.api.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.endpoint, "verify");
    assert_eq!(call.client_id.as_deref(), Some(CLIENT_ID));
    let claims = call
        .claims
        .as_ref()
        .expect("the token verifies with the secret");
    assert_eq!(claims["email"], "ada@corp.example");
    assert_eq!(claims["first_name"], "Ada");
    assert_eq!(claims["last_name"], "Lovelace");
    assert_eq!(claims["username"], "ada");
    assert_eq!(claims["profile_pic"], "https://pics.corp.example/ada.png");
    assert!(!claims.contains_key("phone_no"));
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - iat, 120);
    assert!(iat.abs_diff(now()) < 30);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 36);
    // The intranet session cookie is never passed on.
    assert!(!claims.contains_key("sub") && !claims.contains_key("groups"));
    assert_no_secrets(&captured_logs(), &s.api);
}

#[tokio::test(flavor = "multi_thread")]
async fn unconfirmed_email_goes_through_the_confirmation_email_then_the_reload_window() {
    let s = setup("partner_id = \"partner-9\"", "").await;
    s.api.add_unconfirmed("bob@corp.example");
    let bob = person("bob@corp.example", &[]);
    let resp = open(&s.gw, &bob).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        format!("{LOGIN}/process-login?should-verify-email=true")
    );
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    let calls = s.api.calls();
    assert_eq!(
        calls.iter().map(|c| c.endpoint).collect::<Vec<_>>(),
        ["verify", "email"]
    );
    assert_eq!(calls[1].token, calls[0].token, "the same minted JWT");
    assert_eq!(calls[1].client_id.as_deref(), Some(CLIENT_ID));
    assert_eq!(calls[1].partner_id.as_deref(), Some("partner-9"));
    assert!(calls[1].claims.is_some());

    // A reload within the window: the "check your email" page, no second email.
    for _ in 0..2 {
        let resp = open(&s.gw, &bob).await;
        assert_eq!(resp.status(), 200);
        let page = resp.text().await.unwrap();
        assert!(page.contains("Check your email"), "{page}");
        assert!(page.contains("bob@corp.example"));
        assert_no_secrets(&page, &s.api);
    }
    assert_eq!(s.api.count("email"), 1);
    assert_eq!(
        s.api.count("verify"),
        3,
        "verify is retried: the person may have confirmed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sixth_email_in_a_minute_never_reaches_yourgpt() {
    let s = setup("", "").await;
    for i in 0..6 {
        s.api.add_unconfirmed(&format!("p{i}@corp.example"));
    }
    for i in 0..5 {
        let resp = open(&s.gw, &person(&format!("p{i}@corp.example"), &[])).await;
        assert_eq!(resp.status(), 302, "person {i}");
    }
    let resp = open(&s.gw, &person("p5@corp.example", &[])).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(&format!("try again in {retry} seconds")),
        "{page}"
    );
    assert_eq!(s.api.count("email"), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_top_level_navigations_start_a_handoff() {
    let s = setup("", "").await;
    let cookie = cookie_for(&person("ada@corp.example", &[]));
    let c = client();
    for dest in ["image", "script", "iframe", "empty", ""] {
        let resp = c
            .get(s.gw.url("/ai/yourgpt"))
            .header("Sec-Fetch-Dest", dest)
            .header("Accept", "text/html")
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "Sec-Fetch-Dest: {dest:?}");
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("Open this page from a link"));
    }
    let resp = c
        .post(s.gw.url("/ai/yourgpt"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    let resp = c
        .head(s.gw.url("/ai/yourgpt"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.api.calls().len(), 0, "no vendor call, no email");
    // Without Sec-Fetch-Dest (older browsers) a GET still works.
    let resp = c
        .get(s.gw.url("/ai/yourgpt"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_identity_fields_show_a_page_and_call_nobody() {
    let s = setup("", "").await;
    let mut cher = person("cher@corp.example", &[]);
    cher.as_object_mut().unwrap().remove("family_name");
    cher["given_name"] = json!("Cher");
    let resp = open(&s.gw, &cher).await;
    assert_eq!(resp.status(), 422);
    let page = resp.text().await.unwrap();
    assert!(page.contains("your last name"), "{page}");
    assert!(page.contains("quote reference"), "{page}");
    assert_eq!(s.api.calls().len(), 0);
    let reference = page
        .split("<strong>")
        .nth(1)
        .and_then(|r| r.split("</strong>").next())
        .expect("a reference on the page");
    assert!(
        log_line_with(&[reference, "last_name (claim \"family_name\")"]).is_some(),
        "the log names the claim mapping that produced nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_is_required_and_allow_rules_apply() {
    let s = setup("", "allow = { groups = [\"ai-users\"] }").await;
    let resp = client()
        .get(s.gw.url("/ai/yourgpt"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert!(location(&resp).starts_with("https://intranet.test/login?next=%2Fai%2Fyourgpt"));
    let resp = open(&s.gw, &person("x@corp.example", &["staff"])).await;
    assert_eq!(resp.status(), 403);
    let resp = open(&s.gw, &person("x@corp.example", &["ai-users"])).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(s.api.count("verify"), 1);
}

/// Each documented error code, with the code in the body (HTTP 200) or only in the status.
#[tokio::test(flavor = "multi_thread")]
async fn every_verify_error_gets_a_clear_page_and_a_log_line_with_the_likely_cause() {
    let s = setup("", "").await;
    let ada = person("ada@corp.example", &[]);
    let causes = [
        (400, "vendor-side"),
        (401, "wrong client_id"),
        (402, "wrong secret, clock skew, or an expired token"),
        (403, "check the [identity] claim mapping"),
        (500, "internal error"),
    ];
    for (code, cause) in causes {
        for mode in [Mode::CodeInBody(code), Mode::CodeInStatus(code)] {
            s.api.set_verify(mode);
            let resp = open(&s.gw, &ada).await;
            assert_eq!(resp.status(), 502, "{mode:?}");
            let page = resp.text().await.unwrap();
            assert!(
                page.contains("YourGPT could not sign you in"),
                "{mode:?}: {page}"
            );
            let reference = page
                .split("<strong>")
                .nth(1)
                .and_then(|r| r.split("</strong>").next())
                .expect("a reference on the page")
                .to_string();
            let logs = captured_logs();
            let line = logs
                .lines()
                .find(|l| l.contains(&reference))
                .unwrap_or_else(|| panic!("no log line for {reference}"));
            assert!(line.contains(&format!("code={code}")), "{line}");
            assert!(line.contains(cause), "{mode:?}: {line}");
            assert_no_secrets(&page, &s.api);
        }
    }
    assert_eq!(s.api.count("email"), 0);
    assert_no_secrets(&captured_logs(), &s.api);
}

#[tokio::test(flavor = "multi_thread")]
async fn email_endpoint_errors_get_pages() {
    // Six email calls here: raise the gateway's own limit so YourGPT's answers are what is seen.
    let s = setup("emails_per_minute = 10", "").await;
    for (i, code) in [400u16, 401, 402, 404, 500].into_iter().enumerate() {
        let who = format!("e{i}@corp.example");
        s.api.add_unconfirmed(&who);
        s.api.set_email(if i % 2 == 0 {
            Mode::CodeInBody(code)
        } else {
            Mode::CodeInStatus(code)
        });
        let resp = open(&s.gw, &person(&who, &[])).await;
        assert_eq!(resp.status(), 502, "email {code}");
        assert!(resp.text().await.unwrap().contains("could not sign you in"));
    }
    // 403 on the email call is YourGPT's own email limit: a "try again" page.
    s.api.add_unconfirmed("late@corp.example");
    s.api.set_email(Mode::CodeInBody(403));
    let resp = open(&s.gw, &person("late@corp.example", &[])).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "60");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_huge_slow_and_unreachable_apis_get_pages_and_other_routes_keep_working() {
    let s = setup("timeout_ms = 400", "").await;
    let ada = person("ada@corp.example", &[]);
    s.api.set_verify(Mode::Html);
    let resp = open(&s.gw, &ada).await;
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().contains("could not sign you in"));

    s.api.set_verify(Mode::Slow(3000));
    let started = std::time::Instant::now();
    let resp = open(&s.gw, &ada).await;
    assert_eq!(resp.status(), 504);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("YourGPT is taking too long"));
    assert!(started.elapsed() < Duration::from_secs(2));

    // 4 MiB that never closes its JSON object: read up to the cap, then refused, quickly.
    s.api.set_verify(Mode::Huge(4 << 20));
    let started = std::time::Instant::now();
    let resp = open(&s.gw, &ada).await;
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().contains("could not sign you in"));
    assert!(started.elapsed() < Duration::from_secs(2));

    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = setup_with_api(&s.api, &dead, "", "").await;
    let resp = open(&gw, &ada).await;
    assert_eq!(resp.status(), 502);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("YourGPT is not answering"));
    let resp = client().get(gw.url("/intranet/page")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the intranet is unaffected");
    assert_no_secrets(&captured_logs(), &s.api);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_handoffs_for_fifty_people() {
    let s = setup("", "").await;
    let c = client();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            let url = s.gw.url("/ai/yourgpt");
            let email = format!("user{}@corp.example", i % 50);
            tokio::spawn(async move {
                let resp = c
                    .get(url)
                    .header("Cookie", cookie_for(&person(&email, &[])))
                    .send()
                    .await
                    .unwrap();
                (email, resp.status().as_u16(), location(&resp))
            })
        })
        .collect();
    for t in tasks {
        let (email, status, location) = t.await.unwrap();
        assert_eq!(status, 302, "{email}");
        let expected = format!(
            "yg%20session%2F{}",
            email.replace('@', "%40").replace('.', "%2E")
        );
        assert!(location.ends_with(&expected), "{email} got {location}");
    }
    assert_eq!(s.api.count("verify"), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_404_only_in_the_http_status_still_takes_the_email_path() {
    let s = setup("timeout_ms = 400", "").await;
    s.api.set_verify(Mode::CodeInStatus(404));
    let resp = open(&s.gw, &person("carol@corp.example", &[])).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        format!("{LOGIN}/process-login?should-verify-email=true")
    );
    assert_eq!(s.api.count("email"), 1);

    // The email endpoint answering HTML, or too slowly: pages, not crashes.
    s.api.set_email(Mode::Html);
    let resp = open(&s.gw, &person("dave@corp.example", &[])).await;
    assert_eq!(resp.status(), 502);
    s.api.set_email(Mode::Slow(3000));
    let resp = open(&s.gw, &person("erin@corp.example", &[])).await;
    assert_eq!(resp.status(), 504);
    assert!(resp.text().await.unwrap().contains("taking too long"));
    assert_no_secrets(&captured_logs(), &s.api);
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_sharing_a_client_id_share_the_email_limit() {
    let api = YourGptStandIn::start(yourgpt_secret()).await.unwrap();
    let intranet = Intranet::start().await;
    let app = |name: &str| {
        format!(
            "[apps.{name}]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
             secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{}\"\nlogin_url = \"{LOGIN}\"\n\
             [[routes]]\npath = \"/ai/{name}\"\napp = \"{name}\"\n",
            api.url()
        )
    };
    let gw = TestGateway::start(&format!(
        "{}{}{}{}",
        session_config(&["HS256"], ""),
        upstream_config(&intranet),
        app("a"),
        app("b"),
    ));
    let mut statuses = Vec::new();
    for i in 0..6 {
        let who = format!("shared{i}@corp.example");
        api.add_unconfirmed(&who);
        let route = if i % 2 == 0 { "/ai/a" } else { "/ai/b" };
        let resp = client()
            .get(gw.url(route))
            .header("Cookie", cookie_for(&person(&who, &[])))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [302, 302, 302, 302, 302, 429]);
    assert_eq!(api.count("email"), 5, "YourGPT counts per organisation");
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_clicks_by_one_person_send_one_email() {
    let s = setup("", "").await;
    s.api.add_unconfirmed("bob@corp.example");
    // The email call takes a while: every click arrives while the first is on its way.
    s.api.set_email(Mode::Slow(300));
    let bob = person("bob@corp.example", &[]);
    let clicks = futures_util::future::join_all((0..20).map(|_| open(&s.gw, &bob))).await;
    let mut statuses: Vec<u16> = clicks.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [vec![200; 19], vec![302]].concat(),
        "one email, 19 'check your email'"
    );
    assert_eq!(s.api.count("email"), 1);
    // The organisation's budget is untouched by the clicks: four others still get theirs.
    for i in 0..4 {
        let who = format!("other{i}@corp.example");
        s.api.add_unconfirmed(&who);
        let resp = open(&s.gw, &person(&who, &[])).await;
        assert_eq!(resp.status(), 302, "{who}");
    }
    assert_eq!(s.api.count("email"), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_email_call_does_not_hold_the_resend_window() {
    let s = setup("", "").await;
    s.api.add_unconfirmed("bob@corp.example");
    let bob = person("bob@corp.example", &[]);
    s.api.set_email(Mode::CodeInStatus(500));
    assert_eq!(open(&s.gw, &bob).await.status(), 502);
    // Nothing was sent: the next click tries again, and this time it goes out.
    s.api.set_email(Mode::Real);
    let resp = open(&s.gw, &bob).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(s.api.count("email"), 2);
    assert_eq!(
        open(&s.gw, &bob).await.status(),
        200,
        "then the window holds"
    );
    assert_eq!(s.api.count("email"), 2);
}

/// Every documented handoff outcome, one of each: the metric, the page's error code and the
/// access log all name it the same way (the README's metric table is what dashboards use).
#[tokio::test(flavor = "multi_thread")]
async fn each_handoff_outcome_has_one_name_in_metrics_pages_and_logs() {
    let api = YourGptStandIn::start(yourgpt_secret()).await.unwrap();
    let intranet = Intranet::start().await;
    let metrics_port = free_port();
    let config = format!(
        "{session}{upstream}\
         [apps.yourgpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{api}\"\n\
         login_url = \"{LOGIN}/\"\nemails_per_minute = 1\ntimeout_ms = 300\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"yourgpt\"\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
        api = api.url(),
    );
    let gw = TestGateway::start_with(
        &config,
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    // A client that does not take HTML gets the outcome as the JSON `error`.
    let json = |claims: Value| {
        client()
            .get(gw.url("/ai/yourgpt"))
            .header("Sec-Fetch-Dest", "document")
            .header("Cookie", cookie_for(&claims))
            .send()
    };
    let error_of = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or_default();
        (status, body["error"].as_str().unwrap_or("-").to_string())
    };

    assert_eq!(
        open(&gw, &person("ada.outcomes@corp.example", &[]))
            .await
            .status(),
        302
    );
    api.add_unconfirmed("bob.outcomes@corp.example");
    let sent = open(&gw, &person("bob.outcomes@corp.example", &[])).await;
    assert_eq!(sent.status(), 302);
    assert!(location(&sent).ends_with("should-verify-email=true"));
    let again = error_of(
        json(person("bob.outcomes@corp.example", &[]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again, (200, "email_already_sent".to_string()));
    api.add_unconfirmed("carol.outcomes@corp.example");
    let limited = error_of(
        json(person("carol.outcomes@corp.example", &[]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(limited, (429, "rate_limited".to_string()));
    let mut nameless = person("dan.outcomes@corp.example", &[]);
    nameless["family_name"] = Value::Null;
    let incomplete = error_of(json(nameless).await.unwrap()).await;
    assert_eq!(incomplete, (422, "identity_incomplete".to_string()));
    api.set_verify(Mode::CodeInBody(402));
    let refused = error_of(
        json(person("eve.outcomes@corp.example", &[]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused, (502, "vendor_error".to_string()));
    api.set_verify(Mode::Slow(2000));
    let slow = error_of(
        json(person("fay.outcomes@corp.example", &[]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(slow, (504, "vendor_unreachable".to_string()));

    for (outcome, code) in [
        ("redirected", ""),
        ("email_sent", ""),
        ("email_already_sent", ""),
        ("rate_limited", ""),
        ("identity_incomplete", ""),
        ("vendor_error", "402"),
        ("vendor_unreachable", "timeout"),
    ] {
        let series = format!(
            "handoff_handoffs_total{{app=\"yourgpt\",code=\"{code}\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(metric(metrics_port, &series).await, Some(1.0), "{series}");
    }
    // The operator's handoff line for each person names the same outcome.
    for (who, outcome) in [
        ("bob.outcomes", "email_sent"),
        ("fay.outcomes", "vendor_unreachable"),
    ] {
        let user = format!("id-{who}@corp.example");
        let line = log_line_with(&[&user, "handoff::handoff"]);
        let line = line.unwrap_or_else(|| panic!("no handoff line for {who}"));
        assert!(line.contains(&format!("outcome=\"{outcome}\"")), "{line}");
    }
}
