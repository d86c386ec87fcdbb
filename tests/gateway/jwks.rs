//! Sessions signed with keys the identity provider publishes at a JWKS URL: loading at start,
//! rotation without a failed request, a bounded refetch on unknown `kid`s, keeping the last good
//! keys when the provider is down, `max-age`, readiness, and static keys alongside.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::common::*;
use crate::idp::{IdentityProvider, Mode, TestKey};

/// `[session]` verifying `algorithms` with the stand-in's JWKS, plus `session_extra` lines
/// (before the JWKS table) and `jwks_extra` lines (in it).
fn config(
    idp: &IdentityProvider,
    intranet: &Intranet,
    algorithms: &str,
    session_extra: &str,
    jwks_extra: &str,
) -> String {
    format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = {algorithms}\n{session_extra}\n\
         [session.jwks]\nurl = \"{}\"\n{jwks_extra}\n\n{}",
        idp.jwks_url(),
        upstream_config(intranet)
    )
}

/// `whoami` with the token as the session cookie: (status, body).
async fn whoami_token(gw: &TestGateway, token: &str) -> (u16, Value) {
    whoami(gw, &format!("intranet_session={token}")).await
}

async fn readyz(gw: &TestGateway) -> (u16, Value) {
    let resp = client()
        .get(gw.url("/_handoff/readyz"))
        .send()
        .await
        .expect("readyz");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

/// Polls `check` every 50 ms for up to `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread")]
async fn published_keys_verify_and_a_rotation_fails_no_request() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let old = TestKey::rsa("rsa_private.pem", "key-2025");
    let new = TestKey::rsa("rsa2_private.pem", "key-2026");
    idp.publish(&[&old]);
    let gw = TestGateway::start(&config(&idp, &intranet, "[\"RS256\"]", "", ""));
    // The listeners opened after the first fetch: the very first request verifies.
    let ada = person("ada@corp.example", &["eng"]);
    let (status, body) = whoami_token(&gw, &old.sign(&ada)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "ada@corp.example");
    assert_eq!(body["source"], "cookie");
    assert_eq!(idp.jwks_fetches(), 1);

    // Rotation: the provider publishes both keys and starts signing with the new one. Requests
    // with either key, many at once, all verify; the new `kid` costs exactly one refetch.
    idp.publish(&[&old, &new]);
    // (Two tokens, each sent a hundred times: RSA signing is slow in a debug build.)
    let by_old = old.sign(&ada);
    let by_new = new.sign(&ada);
    let tokens: Vec<&String> = (0..200)
        .map(|i| if i % 2 == 0 { &by_old } else { &by_new })
        .collect();
    let answers = join_all(tokens.iter().map(|t| whoami_token(&gw, t))).await;
    let failed: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "failed during rotation: {failed:?}");
    assert_eq!(idp.jwks_fetches(), 2, "one refetch for the new kid");

    // A token naming the new kid but signed by another key is still refused.
    let forged = old.sign_as(&ada, Some("key-2026"));
    let (status, body) = whoami_token(&gw, &forged).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("bad_signature"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::rsa("rsa_private.pem", "real");
    idp.publish(&[&key]);
    let gw = TestGateway::start(&config(
        &idp,
        &intranet,
        "[\"RS256\"]",
        "",
        "unknown_kid_cooldown_seconds = 3",
    ));
    assert_eq!(idp.jwks_fetches(), 1);
    let claims = person("mallory@evil.example", &[]);
    // One signed token, its header's kid swapped 1,000 ways (the kid is never found, so the
    // signature is never checked; and RSA signing is slow in a debug build).
    let signed = key.sign(&claims);
    let flood = |round: usize| {
        let tokens: Vec<String> = (0..1000)
            .map(|i| with_kid(&signed, &format!("made-up-{round}-{i}")))
            .collect();
        tokens
    };
    let started = Instant::now();
    for chunk in flood(1).chunks(100) {
        let answers = join_all(chunk.iter().map(|t| whoami_token(&gw, t))).await;
        for (status, body) in answers {
            assert_eq!(
                (status, body["reason"].as_str()),
                (401, Some("unknown_key"))
            );
        }
    }
    let first_round = started.elapsed();
    assert_eq!(
        idp.jwks_fetches(),
        2,
        "1,000 unknown kids → one refetch (took {first_round:?})"
    );
    // After the cooldown, one more refetch at most — however many garbage kids arrive.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for chunk in flood(2).chunks(100) {
        join_all(chunk.iter().map(|t| whoami_token(&gw, t))).await;
    }
    assert_eq!(idp.jwks_fetches(), 3);
    // The real key still works throughout.
    let (status, _) = whoami_token(&gw, &key.sign(&claims)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_schedules_refreshes_and_a_provider_outage_keeps_the_last_good_keys() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::ec("ec-1");
    idp.publish(&[&key]);
    idp.set_max_age(Some(1));
    let gw = TestGateway::start(&config(
        &idp,
        &intranet,
        "[\"ES256\"]",
        "",
        "min_cache_seconds = 1\nunknown_kid_cooldown_seconds = 1",
    ));
    // max-age=1 → refreshed in the background about every 0.75 s, with no request at all.
    assert!(
        eventually(Duration::from_secs(5), || idp.jwks_fetches() >= 3).await,
        "refreshes: {}",
        idp.jwks_fetches()
    );

    idp.set_jwks_mode(Mode::Down);
    let at_outage = idp.jwks_fetches();
    assert!(
        eventually(Duration::from_secs(5), || idp.jwks_fetches()
            >= at_outage + 2)
        .await,
        "the gateway keeps retrying"
    );
    let claims = person("ada@corp.example", &[]);
    let (status, body) = whoami_token(&gw, &key.sign(&claims)).await;
    assert_eq!(status, 200, "last good keys still verify: {body}");
    let (status, ready) = readyz(&gw).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["jwks"]["loaded"], true);
    assert_eq!(ready["jwks"]["last_error"], "answered HTTP 500");
    assert!(
        ready["jwks"]["failures"].as_u64().unwrap_or(0) >= 2,
        "{ready}"
    );
    assert!(log_line_with(&[&idp.jwks_url(), "still using the 1 keys fetched"]).is_some());

    // Back up: the error clears.
    idp.set_jwks_mode(Mode::Normal);
    let mut recovered = false;
    for _ in 0..60 {
        let (_, ready) = readyz(&gw).await;
        if ready["jwks"]["last_error"].is_null() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the last error clears once a fetch succeeds");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_max_age_means_no_refetch() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::ec("ec-1");
    idp.publish(&[&key]);
    idp.set_max_age(Some(3600));
    let _gw = TestGateway::start(&config(&idp, &intranet, "[\"ES256\"]", "", ""));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_keys_the_gateway_is_not_ready_and_says_sign_in_is_unavailable() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::rsa("rsa_private.pem", "k1");
    idp.publish(&[&key]);
    idp.set_jwks_mode(Mode::Down);
    let route =
        "[[routes]]\npath = \"/private\"\nupstream = \"intranet\"\nrequire_session = true\n";
    let gw = TestGateway::start(&format!(
        "{}\n{route}",
        config(
            &idp,
            &intranet,
            "[\"RS256\"]",
            "",
            "startup_wait_ms = 0\nunknown_kid_cooldown_seconds = 1",
        )
    ));
    let (status, ready) = readyz(&gw).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["jwks"]["loaded"], false);
    let token = key.sign(&person("ada@corp.example", &[]));
    let (status, body) = whoami_token(&gw, &token).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("unavailable"))
    );
    // A browser gets a clear page, not a login redirect that would come straight back.
    let page = client()
        .get(gw.url("/private/x"))
        .header("Accept", "text/html")
        .header("Cookie", format!("intranet_session={token}"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 503);
    assert!(page.headers().contains_key("retry-after"));
    assert!(page
        .text()
        .await
        .unwrap_or_default()
        .contains("not answering"));
    // Pass-through routes keep working meanwhile.
    let open = client().get(gw.url("/open")).send().await.expect("open");
    assert_eq!(open.status(), 200);

    idp.set_jwks_mode(Mode::Normal);
    let mut ready_now = false;
    for _ in 0..50 {
        if readyz(&gw).await.0 == 200 {
            ready_now = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready_now, "ready once the keys load");
    assert_eq!(whoami_token(&gw, &token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_provider_holds_start_up_only_as_long_as_configured() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::rsa("rsa_private.pem", "k1");
    idp.publish(&[&key]);
    idp.set_jwks_mode(Mode::Slow(Duration::from_secs(30)));
    let started = Instant::now();
    let gw = TestGateway::start(&config(
        &idp,
        &intranet,
        "[\"RS256\"]",
        "",
        "startup_wait_ms = 300\ntimeout_ms = 10000",
    ));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(readyz(&gw).await.0, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn static_keys_and_published_keys_work_side_by_side_without_key_confusion() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let published = TestKey::rsa("rsa2_private.pem", "rsa-2");
    idp.publish(&[&published]);
    let gw = TestGateway::start(&config(
        &idp,
        &intranet,
        "[\"HS256\", \"ES256\", \"RS256\"]",
        "secret = { file = \"session-secret.txt\" }\npublic_key_file = \"ec_public.pem\"",
        "",
    ));
    let claims = person("ada@corp.example", &[]);
    for (label, token) in [
        ("HS256 secret", hs256(&claims)),
        ("ES256 static key", sign(Algorithm::ES256, &claims)),
        ("RS256 published key", published.sign(&claims)),
        (
            "RS256 published key, no kid",
            published.sign_as(&claims, None),
        ),
    ] {
        let (status, body) = whoami_token(&gw, &token).await;
        assert_eq!(status, 200, "{label}: {body}");
    }
    // The classic confusion: an HS256 token "signed" with the published RSA key's JSON, naming
    // its kid. HMAC only ever uses the configured secret.
    let jwk_text = serde_json::to_string(&published_jwk(&idp).await).unwrap_or_default();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("rsa-2".into()),
            ..jsonwebtoken::Header::new(Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwk_text.as_bytes()),
    )
    .expect("token");
    let (status, body) = whoami_token(&gw, &confused).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("bad_signature"))
    );
    // A kid that tries to be clever is just an unknown kid.
    for kid in ["../../etc/passwd", "' OR 1=1 --", "rsa-2\r\nX-Injected: 1"] {
        let token = published.sign_as(&claims, Some(kid));
        let (status, body) = whoami_token(&gw, &token).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some("unknown_key")),
            "{kid:?}"
        );
    }
}

async fn published_jwk(idp: &IdentityProvider) -> Value {
    let set: Value = reqwest::get(idp.jwks_url())
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    set["keys"][0].clone()
}

/// `token` with its header's `kid` replaced (the signature no longer matches).
fn with_kid(token: &str, kid: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let (header, rest) = token.split_once('.').expect("a JWT");
    let mut h: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("header json");
    h["kid"] = Value::from(kid);
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(h.to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_withdrawn_from_the_set_stops_verifying_even_for_remembered_tokens() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let old = TestKey::rsa("rsa_private.pem", "old");
    let new = TestKey::rsa("rsa2_private.pem", "new");
    idp.publish(&[&old, &new]);
    idp.set_max_age(Some(1));
    let gw = TestGateway::start(&config(
        &idp,
        &intranet,
        "[\"RS256\"]",
        "token_cache_seconds = 600",
        "min_cache_seconds = 1",
    ));
    let token = old.sign(&person("ada@corp.example", &[]));
    assert_eq!(whoami_token(&gw, &token).await.0, 200);
    assert_eq!(whoami_token(&gw, &token).await.0, 200, "remembered");
    idp.publish(&[&new]);
    let fetched = idp.jwks_fetches();
    assert!(eventually(Duration::from_secs(5), || idp.jwks_fetches() > fetched).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = whoami_token(&gw, &token).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("unknown_key")),
        "{body}"
    );
}

/// Published keys follow the same token rules as static ones: `aud` without a configured
/// audience, an unknown `crit`, an `iss` array.
#[tokio::test(flavor = "multi_thread")]
async fn published_keys_refuse_aud_crit_and_issuer_arrays() {
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::rsa("rsa_private.pem", "key-1");
    idp.publish(&[&key]);
    let gw = TestGateway::start(&config(
        &idp,
        &intranet,
        "[\"RS256\"]",
        "issuer = \"https://sso.corp.example\"",
        "",
    ));
    let mut ada = person("ada@corp.example", &[]);
    ada["iss"] = "https://sso.corp.example".into();
    assert_eq!(whoami_token(&gw, &key.sign(&ada)).await.0, 200);
    let reason = |(status, body): (u16, Value)| {
        assert_eq!(status, 401, "{body}");
        body["reason"].as_str().unwrap_or_default().to_string()
    };
    let mut with_aud = ada.clone();
    with_aud["aud"] = "another-app".into();
    assert_eq!(
        reason(whoami_token(&gw, &key.sign(&with_aud)).await),
        "wrong_audience"
    );
    let crit = key.sign_with_crit(&ada, &["b64"]);
    assert_eq!(reason(whoami_token(&gw, &crit).await), "unsupported_crit");
    let mut two_issuers = ada.clone();
    two_issuers["iss"] = serde_json::json!(["https://sso.corp.example", "https://evil.example"]);
    assert_eq!(
        reason(whoami_token(&gw, &key.sign(&two_issuers)).await),
        "wrong_issuer"
    );
}
