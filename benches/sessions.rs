//! Criterion micro-benchmarks of recognising a person, per request, through the same
//! `SessionVerifier` the gateway uses (built from a TOML config):
//! - `verify_*`: a JWT session cookie verified every time (`token_cache_seconds = 0`): HS256
//!   (secret), RS256 and ES256 (static public keys), RS256 with the key from a JWKS URL (key
//!   set cached, looked up by `kid`);
//! - `cached_*`: the same cookies with the verified-token cache on (the default): keyed hash +
//!   lookup + identity clone; `bearer_hs256`: the HS256 JWT as `Authorization: Bearer`;
//! - an opaque cookie whose userinfo answer is cached (keyed hash + cache lookup + identity
//!   clone), the endpoint being a local HTTP server called once.
//!
//! Run: `cargo bench --bench sessions`
// Test, bench and example code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use handoff::internals::intranet_session::SessionVerifier;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).expect("fixture")
}

fn claims() -> Value {
    json!({
        "sub": "u-1", "email": "ada@corp.example", "given_name": "Ada",
        "family_name": "Lovelace", "groups": ["eng", "staff"],
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
    })
}

fn token(alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims(), key).expect("token")
}

fn cookie(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        HeaderValue::from_str(value).expect("cookie"),
    );
    h
}

/// A verifier from `[session]` lines, with a throwaway upstream and route.
fn verifier(session: &str) -> SessionVerifier {
    let text = format!(
        "{session}\n[upstreams.intranet]\nservers = [\"127.0.0.1:9\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n"
    );
    let settings = handoff::internals::config::from_toml_str(&text, &fixtures())
        .expect("bench config")
        .session
        .expect("a session");
    SessionVerifier::build(&settings, None).expect("a verifier")
}

/// Serves `/jwks.json` (the RSA fixture as kid "k1") and `/userinfo` on loopback.
async fn identity_services() -> std::net::SocketAddr {
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("rsa");
    let mut jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("k1".into());
    let set = json!({ "keys": [jwk] });
    let app = Router::new()
        .route("/jwks.json", get(move || async move { axum::Json(set) }))
        .route("/userinfo", get(|| async { axum::Json(claims()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn sessions(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = rt.block_on(identity_services());
    let secret = fixture("session-secret.txt");
    let secret = String::from_utf8_lossy(&secret);
    let hmac = EncodingKey::from_secret(secret.trim_end_matches('\n').as_bytes());
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("rsa");
    let ec = EncodingKey::from_ec_pem(&fixture("ec_private.pem")).expect("ec");

    // Every JWT verifier twice: cache off (index 0) and on (index 1).
    let cache = ["token_cache_seconds = 0", "token_cache_seconds = 60"];
    let static_keys = |algs: &str, key: &str| {
        cache.map(|c| {
            verifier(&format!(
                "[session]\ncookie = \"s\"\nalgorithms = [{algs}]\n\
                 secret = {{ file = \"session-secret.txt\" }}\n{key}\n{c}"
            ))
        })
    };
    let hs = static_keys("\"HS256\"", "");
    let rs = static_keys("\"RS256\"", "public_key_file = \"rsa_public.pem\"");
    let es = static_keys("\"ES256\"", "public_key_file = \"ec_public.pem\"");
    let jwks = cache.map(|c| {
        rt.block_on(async {
            let v = verifier(&format!(
                "[session]\ncookie = \"s\"\nalgorithms = [\"RS256\"]\n{c}\n\
                 [session.jwks]\nurl = \"http://{addr}/jwks.json\""
            ));
            if let Some(j) = v.jwks() {
                j.refresh().await.expect("jwks loads");
            }
            v
        })
    });
    let userinfo = verifier(&format!(
        "[session]\ncookie = \"sid\"\n[session.userinfo]\nurl = \"http://{addr}/userinfo\""
    ));

    let hs_cookie = cookie(&format!(
        "theme=dark; s={}",
        token(Algorithm::HS256, &hmac, None)
    ));
    let rs_cookie = cookie(&format!("s={}", token(Algorithm::RS256, &rsa, None)));
    let es_cookie = cookie(&format!("s={}", token(Algorithm::ES256, &ec, None)));
    let jwks_cookie = cookie(&format!("s={}", token(Algorithm::RS256, &rsa, Some("k1"))));
    let mut bearer = HeaderMap::new();
    bearer.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", token(Algorithm::HS256, &hmac, None)))
            .expect("bearer"),
    );
    let opaque = cookie("theme=dark; sid=0f3c9e7a-opaque-session-id");
    let cases: Vec<(&str, &SessionVerifier, &HeaderMap)> = vec![
        ("verify_hs256", &hs[0], &hs_cookie),
        ("verify_rs256", &rs[0], &rs_cookie),
        ("verify_es256", &es[0], &es_cookie),
        ("verify_rs256_jwks", &jwks[0], &jwks_cookie),
        ("cached_hs256", &hs[1], &hs_cookie),
        ("cached_rs256", &rs[1], &rs_cookie),
        ("cached_es256", &es[1], &es_cookie),
        ("cached_rs256_jwks", &jwks[1], &jwks_cookie),
        ("bearer_hs256", &hs[1], &bearer),
        ("userinfo_cached", &userinfo, &opaque),
    ];
    let mut group = c.benchmark_group("identify");
    for (name, v, headers) in &cases {
        // The first call fills the userinfo cache; every measured one is a hit.
        let first = rt.block_on(v.identify(headers, true));
        assert!(first.is_ok(), "{name}: {first:?}");
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| v.identify(headers, true))
        });
    }
    group.finish();
}

criterion_group!(benches, sessions);
criterion_main!(benches);
