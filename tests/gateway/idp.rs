//! A stand-in of the intranet's identity services on loopback: a JWKS endpoint that publishes
//! (and rotates) signing keys, and a userinfo endpoint that answers for opaque session cookies.
//! Both count their calls and can be told to be slow, down, or to answer garbage or too much.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::read_fixture;

/// How an endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Answers 500.
    Down,
    /// Answers normally after this long.
    Slow(Duration),
    /// Answers 200 with a body that is not JSON.
    Garbage,
    /// Answers 200 with a JSON body of about 1 MiB.
    Huge,
}

/// A signing key the stand-in can publish and sign with.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    /// An RSA key from a fixture (`rsa_private.pem`, `rsa2_private.pem`) under `kid`.
    pub fn rsa(fixture: &str, kid: &str) -> TestKey {
        let encoding = EncodingKey::from_rsa_pem(&read_fixture(fixture)).expect("rsa key");
        Self::new(encoding, Algorithm::RS256, kid)
    }

    /// The EC fixture key (ES256) under `kid`.
    pub fn ec(kid: &str) -> TestKey {
        let encoding = EncodingKey::from_ec_pem(&read_fixture("ec_private.pem")).expect("ec key");
        Self::new(encoding, Algorithm::ES256, kid)
    }

    fn new(encoding: EncodingKey, alg: Algorithm, kid: &str) -> TestKey {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("jwk");
        jwk.common.key_id = Some(kid.to_string());
        TestKey {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk: serde_json::to_value(jwk).expect("jwk json"),
        }
    }

    /// A token for `claims` signed with this key, its `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(claims, Some(&self.kid))
    }

    /// A token signed with this key whose header lists `crit` extensions.
    pub fn sign_with_crit(&self, claims: &Value, crit: &[&str]) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.crit = Some(crit.iter().map(|c| c.to_string()).collect());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("token")
    }

    /// A token signed with this key but carrying `kid` (or none) in its header.
    pub fn sign_as(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("token")
    }
}

#[derive(Default)]
struct IdpState {
    keys: Vec<Value>,
    max_age: Option<u64>,
    jwks_mode: Option<Mode>,
    sessions: HashMap<String, Value>,
    userinfo_mode: Option<Mode>,
    last_cookie_header: Option<String>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<IdpState>>,
    jwks_fetches: Arc<AtomicUsize>,
    userinfo_calls: Arc<AtomicUsize>,
    /// Userinfo calls being answered now, and the most at once so far.
    userinfo_in_flight: Arc<AtomicUsize>,
    userinfo_most_in_flight: Arc<AtomicUsize>,
}

/// The running stand-in.
pub struct IdentityProvider {
    pub addr: SocketAddr,
    shared: Shared,
}

/// The cookie the userinfo endpoint reads.
pub const SID: &str = "sid";

impl IdentityProvider {
    pub async fn start() -> IdentityProvider {
        let shared = Shared {
            state: Arc::new(Mutex::new(IdpState::default())),
            jwks_fetches: Arc::new(AtomicUsize::new(0)),
            userinfo_calls: Arc::new(AtomicUsize::new(0)),
            userinfo_in_flight: Arc::new(AtomicUsize::new(0)),
            userinfo_most_in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/userinfo", get(userinfo))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        IdentityProvider { addr, shared }
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn userinfo_url(&self) -> String {
        format!("http://{}/userinfo", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut IdpState) -> R) -> R {
        f(&mut self.shared.state.lock().expect("idp state"))
    }

    /// Publishes exactly these keys.
    pub fn publish(&self, keys: &[&TestKey]) {
        let jwks = keys.iter().map(|k| k.jwk.clone()).collect();
        self.with(|s| s.keys = jwks);
    }

    /// Sends `Cache-Control: max-age=N` with the key set.
    pub fn set_max_age(&self, seconds: Option<u64>) {
        self.with(|s| s.max_age = seconds);
    }

    pub fn set_jwks_mode(&self, mode: Mode) {
        self.with(|s| s.jwks_mode = Some(mode));
    }

    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The userinfo endpoint answers `claims` for the cookie `sid=<value>`.
    pub fn add_session(&self, value: &str, claims: Value) {
        self.with(|s| s.sessions.insert(value.to_string(), claims));
    }

    pub fn set_userinfo_mode(&self, mode: Mode) {
        self.with(|s| s.userinfo_mode = Some(mode));
    }

    /// The most userinfo calls that were being answered at once.
    pub fn userinfo_most_in_flight(&self) -> usize {
        self.shared.userinfo_most_in_flight.load(Ordering::SeqCst)
    }

    pub fn userinfo_calls(&self) -> usize {
        self.shared.userinfo_calls.load(Ordering::SeqCst)
    }

    /// The `Cookie` header of the last userinfo call.
    pub fn last_cookie_header(&self) -> Option<String> {
        self.with(|s| s.last_cookie_header.clone())
    }
}

/// Answers per `mode`; `Normal` and `Slow` fall through to `normal`.
async fn misbehave(mode: Mode) -> Option<Response> {
    match mode {
        Mode::Normal => None,
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Mode::Down => Some((StatusCode::INTERNAL_SERVER_ERROR, "down").into_response()),
        Mode::Garbage => Some((StatusCode::OK, "<html>not json").into_response()),
        Mode::Huge => {
            let big = json!({ "sub": "x", "padding": "x".repeat(1024 * 1024) });
            Some((StatusCode::OK, axum::Json(big)).into_response())
        }
    }
}

async fn jwks(State(shared): State<Shared>) -> Response {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let (mode, keys, max_age) = {
        let s = shared.state.lock().expect("idp state");
        (
            s.jwks_mode.unwrap_or(Mode::Normal),
            s.keys.clone(),
            s.max_age,
        )
    };
    if let Some(r) = misbehave(mode).await {
        return r;
    }
    let mut response = axum::Json(json!({ "keys": keys })).into_response();
    if let Some(age) = max_age {
        if let Ok(v) = format!("max-age={age}").parse() {
            response.headers_mut().insert("cache-control", v);
        }
    }
    response
}

/// Counts a userinfo call in flight while it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn userinfo(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.userinfo_calls.fetch_add(1, Ordering::SeqCst);
    let now = shared.userinfo_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared
        .userinfo_most_in_flight
        .fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(shared.userinfo_in_flight.clone());
    let cookie_header = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (mode, claims) = {
        let mut s = shared.state.lock().expect("idp state");
        s.last_cookie_header = cookie_header.clone();
        let sid = cookie_header.as_deref().and_then(|h| {
            h.split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(name, _)| *name == SID)
                .map(|(_, v)| v.to_string())
        });
        let claims = sid.and_then(|v| s.sessions.get(&v).cloned());
        (s.userinfo_mode.unwrap_or(Mode::Normal), claims)
    };
    if let Some(r) = misbehave(mode).await {
        return r;
    }
    match claims {
        Some(c) => axum::Json(c).into_response(),
        None => (StatusCode::UNAUTHORIZED, "not signed in").into_response(),
    }
}
