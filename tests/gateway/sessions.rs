//! Recognising the person from the intranet's JWT session cookie, and refusing with the right
//! reason. `whoami` shows what the gateway saw; a route that requires a session shows it too.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::common::*;

/// `whoami` with one `Cookie` header per entry of `cookies`.
async fn whoami_cookies(gw: &TestGateway, cookies: &[&str]) -> (u16, Value) {
    let mut req = client().get(gw.url("/_handoff/whoami"));
    for c in cookies {
        req = req.header("Cookie", *c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn reason(gw: &TestGateway, token: &str) -> String {
    let (status, body) = whoami_cookies(gw, &[&format!("intranet_session={token}")]).await;
    if status == 200 {
        return "valid".to_string();
    }
    assert_eq!(status, 401, "{body}");
    body["reason"].as_str().unwrap().to_string()
}

fn gateway(algorithms: &[&str], extra: &str, intranet: &Intranet) -> TestGateway {
    TestGateway::start(&format!(
        "{}{}",
        session_config(algorithms, extra),
        upstream_config(intranet)
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_hs256_rs256_and_es256_cookies_are_accepted() {
    let intranet = Intranet::start().await;
    let claims = person("ada@corp.example", &["eng"]);
    for (alg, algorithm) in [
        ("HS256", Algorithm::HS256),
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
    ] {
        let gw = gateway(&[alg], "", &intranet);
        let token = sign(algorithm, &claims);
        let (status, body) = whoami_cookies(&gw, &[&format!("intranet_session={token}")]).await;
        assert_eq!(status, 200, "{alg}: {body}");
        assert_eq!(body["email"], "ada@corp.example");
        assert_eq!(body["id"], "id-ada@corp.example");
        assert_eq!(body["first_name"], "Ada");
        assert_eq!(body["groups"], json!(["eng"]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_refused_with_the_right_reason() {
    let intranet = Intranet::start().await;
    let gw = gateway(
        &["RS256"],
        "issuer = \"https://sso.corp.example\"\naudience = \"intranet\"\nleeway_seconds = 5\n",
        &intranet,
    );
    let good = || {
        let mut c = person("ada@corp.example", &[]);
        c["iss"] = json!("https://sso.corp.example");
        c["aud"] = json!("intranet");
        c
    };
    assert_eq!(reason(&gw, &sign(Algorithm::RS256, &good())).await, "valid");

    // alg: none
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(good().to_string());
    assert_eq!(
        reason(&gw, &format!("{header}.{payload}.")).await,
        "algorithm_not_allowed"
    );

    // Key confusion: HS256 signed with the RSA public key's bytes.
    let public_pem = read_fixture("rsa_public.pem");
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    assert_eq!(reason(&gw, &confused).await, "algorithm_not_allowed");

    let mut expired = good();
    expired["exp"] = json!(now() - 60);
    assert_eq!(
        reason(&gw, &sign(Algorithm::RS256, &expired)).await,
        "expired"
    );
    let mut early = good();
    early["nbf"] = json!(now() + 600);
    assert_eq!(
        reason(&gw, &sign(Algorithm::RS256, &early)).await,
        "not_yet_valid"
    );
    let mut issuer = good();
    issuer["iss"] = json!("https://evil.example");
    assert_eq!(
        reason(&gw, &sign(Algorithm::RS256, &issuer)).await,
        "wrong_issuer"
    );
    let mut audience = good();
    audience["aud"] = json!("someone-else");
    assert_eq!(
        reason(&gw, &sign(Algorithm::RS256, &audience)).await,
        "wrong_audience"
    );

    let token = sign(Algorithm::RS256, &good());
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    assert_eq!(reason(&gw, &tampered).await, "bad_signature");
    let mut other_claims = good();
    other_claims["email"] = json!("boss@corp.example");
    let forged_payload = URL_SAFE_NO_PAD.encode(other_claims.to_string());
    let parts: Vec<&str> = token.split('.').collect();
    let swapped = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(reason(&gw, &swapped).await, "bad_signature");

    assert_eq!(reason(&gw, &token[..token.len() / 2]).await, "malformed");
    let garbage: String = (0..8192).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    assert_eq!(reason(&gw, &garbage).await, "malformed");
    assert_eq!(reason(&gw, "a.b.c").await, "malformed");
    let (status, body) = whoami_cookies(&gw, &[]).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("missing")));
}

#[tokio::test(flavor = "multi_thread")]
async fn hs256_key_confusion_with_hs_allowed_still_fails() {
    // Even with HS256 and RS256 both allowed, an HS256 token signed with the public key's
    // bytes is checked against the HMAC secret only.
    let intranet = Intranet::start().await;
    let session = session_config(&["HS256", "RS256"], "");
    let gw = TestGateway::start(&format!("{session}{}", upstream_config(&intranet)));
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &person("a@corp.example", &[]),
        &jsonwebtoken::EncodingKey::from_secret(&read_fixture("rsa_public.pem")),
    )
    .unwrap();
    assert_eq!(reason(&gw, &confused).await, "bad_signature");
    assert_eq!(
        reason(&gw, &sign(Algorithm::RS256, &person("a@corp.example", &[]))).await,
        "valid"
    );
    assert_eq!(
        reason(&gw, &hs256(&person("a@corp.example", &[]))).await,
        "valid"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_and_split_cookies_are_handled_deterministically() {
    let intranet = Intranet::start().await;
    let gw = gateway(&["HS256"], "", &intranet);
    let ada = hs256(&person("ada@corp.example", &[]));
    let bob = hs256(&person("bob@corp.example", &[]));
    // The session cookie in a second Cookie header (HTTP/2 style) is found.
    let (status, body) =
        whoami_cookies(&gw, &["theme=dark", &format!("intranet_session={ada}")]).await;
    assert_eq!(
        (status, body["email"].as_str()),
        (200, Some("ada@corp.example"))
    );
    // Two valid ones: the first wins, every time.
    for _ in 0..3 {
        let (_, body) = whoami_cookies(
            &gw,
            &[&format!("intranet_session={ada}; intranet_session={bob}")],
        )
        .await;
        assert_eq!(body["email"], "ada@corp.example");
        let (_, body) = whoami_cookies(
            &gw,
            &[
                &format!("intranet_session={bob}"),
                &format!("intranet_session={ada}"),
            ],
        )
        .await;
        assert_eq!(body["email"], "bob@corp.example");
    }
    // A stale (invalid) duplicate before a valid one does not lock the person out.
    let (status, body) = whoami_cookies(
        &gw,
        &[&format!("intranet_session=stale; intranet_session={ada}")],
    )
    .await;
    assert_eq!(
        (status, body["email"].as_str()),
        (200, Some("ada@corp.example"))
    );
    // Two invalid ones: the first one's reason.
    let mut expired = person("ada@corp.example", &[]);
    expired["exp"] = json!(now() - 3600);
    let (status, body) = whoami_cookies(
        &gw,
        &[&format!(
            "intranet_session={}; intranet_session=junk",
            hs256(&expired)
        )],
    )
    .await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("expired")));
}

#[tokio::test(flavor = "multi_thread")]
async fn required_session_redirects_browsers_and_answers_401_json_to_apis() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{}[upstreams.intranet]\nservers = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"intranet\"\n\
         [[routes]]\npath = \"/private\"\nupstream = \"intranet\"\nrequire_session = true\nidentity_headers = true\n",
        session_config(&["HS256"], "login_url = \"https://intranet.example.com/login?next={return_to}\""),
        intranet.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let resp = c
        .get(gw.url("/private/report?year=2026&q=a b"))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "https://intranet.example.com/login?next=%2Fprivate%2Freport%3Fyear%3D2026%26q%3Da%2520b"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");

    let resp = c.get(gw.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");

    let mut expired = person("ada@corp.example", &[]);
    expired["exp"] = json!(now() - 3600);
    let resp = c
        .get(gw.url("/private"))
        .header("Cookie", format!("intranet_session={}", hs256(&expired)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("expired"));

    // With a valid session the request reaches the intranet, carrying the person.
    let resp = c
        .get(gw.url("/private"))
        .header(
            "Cookie",
            format!(
                "intranet_session={}",
                hs256(&person("ada@corp.example", &["eng", "ai"]))
            ),
        )
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert_eq!(
        echo.header("x-handoff-email").as_deref(),
        Some("ada@corp.example")
    );
    assert_eq!(
        echo.header("x-handoff-user").as_deref(),
        Some("id-ada@corp.example")
    );
    assert_eq!(
        echo.header("x-handoff-name").as_deref(),
        Some("Ada Lovelace")
    );
    assert_eq!(echo.header("x-handoff-groups").as_deref(), Some("eng,ai"));

    // The public route does not ask for a session and injects nothing.
    let echo = Echo::from(c.get(gw.url("/public")).send().await.unwrap()).await;
    assert!(echo.header("x-handoff-email").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_login_url_browsers_get_a_401_page() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{}[upstreams.intranet]\nservers = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"intranet\"\nrequire_session = true\n",
        session_config(&["HS256"], ""),
        intranet.server()
    );
    let gw = TestGateway::start(&config);
    let resp = client()
        .get(gw.url("/"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("You are not signed in to the intranet."),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remembered_token_still_expires_on_time() {
    let intranet = Intranet::start().await;
    let gw = gateway(
        &["HS256"],
        "leeway_seconds = 0\ntoken_cache_seconds = 600",
        &intranet,
    );
    let mut claims = person("ada@corp.example", &[]);
    claims["exp"] = json!(now() + 2);
    let token = hs256(&claims);
    assert_eq!(reason(&gw, &token).await, "valid");
    assert_eq!(reason(&gw, &token).await, "valid", "remembered");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(reason(&gw, &token).await, "expired");
}
