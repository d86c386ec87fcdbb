//! A stand-in for YourGPT's Custom SSO API, checking tokens as the real service documents:
//! HS256 with the SSO secret, `exp`, and the required claims `email`, `first_name`,
//! `last_name`. It records every call and can be told how to answer each endpoint
//! (see [`Mode`]), including every documented error code.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

/// The client id the stand-in accepts; any other gets YourGPT's 401.
pub const CLIENT_ID: &str = "test-sso-client";

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As the real service: check the token and answer accordingly.
    Real,
    /// HTTP 200 with `{"type":"RXERROR","code":N}`.
    CodeInBody(u16),
    /// HTTP N with `{"type":"RXERROR"}` and no code in the body.
    CodeInStatus(u16),
    /// An HTML error page from a load balancer.
    Html,
    /// Answers as `Real`, after this many milliseconds.
    Slow(u64),
}

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub endpoint: &'static str,
    pub token: String,
    pub client_id: Option<String>,
    pub partner_id: Option<String>,
    /// The token's claims when it verified, else `None`.
    pub claims: Option<Map<String, Value>>,
}

#[derive(Default)]
struct Inner {
    verify_mode: Option<Mode>,
    email_mode: Option<Mode>,
    calls: Vec<Call>,
    /// Emails YourGPT knows but wants confirmed: verify answers 404.
    unconfirmed: HashSet<String>,
}

#[derive(Clone)]
pub struct YourGptStandIn {
    pub addr: SocketAddr,
    secret: Arc<Vec<u8>>,
    inner: Arc<Mutex<Inner>>,
}

impl YourGptStandIn {
    /// Listens on `127.0.0.1:0` and serves until the runtime stops.
    pub async fn start(secret: Vec<u8>) -> std::io::Result<YourGptStandIn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let standin = YourGptStandIn {
            addr,
            secret: Arc::new(secret),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = Router::new()
            .route("/api/v1/verify/custom-sso", post(verify))
            .route("/api/v1/sendConfirmLoginAccessEmail", post(send_email))
            .with_state(standin.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(standin)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The base URL to configure as `api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How the verify endpoint answers from now on.
    pub fn set_verify(&self, mode: Mode) {
        self.lock().verify_mode = Some(mode);
    }

    /// How the confirmation-email endpoint answers from now on.
    pub fn set_email(&self, mode: Mode) {
        self.lock().email_mode = Some(mode);
    }

    /// YourGPT will answer 404 on verify for this address (registered, not yet confirmed).
    pub fn add_unconfirmed(&self, email: &str) {
        self.lock().unconfirmed.insert(email.to_lowercase());
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// How many calls an endpoint (`"verify"` or `"email"`) received.
    pub fn count(&self, endpoint: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.endpoint == endpoint)
            .count()
    }

    fn check_token(&self, token: &str) -> Result<Map<String, Value>, (u16, &'static str)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = decode::<Map<String, Value>>(
            token,
            &DecodingKey::from_secret(&self.secret),
            &validation,
        )
        .map_err(|_| (402, "Invalid SSO token"))?
        .claims;
        for required in ["email", "first_name", "last_name"] {
            if claims
                .get(required)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err((403, "Not enough data to create user"));
            }
        }
        Ok(claims)
    }
}

/// YourGPT's 400 and 401: both endpoints check their parameters the same way.
fn check_params(token: &str, client_id: Option<&str>) -> Option<Response> {
    match client_id {
        _ if token.is_empty() => Some(axum::Json(error(400, "Invalid params")).into_response()),
        None => Some(axum::Json(error(400, "Invalid params")).into_response()),
        Some(CLIENT_ID) => None,
        Some(_) => Some(axum::Json(error(401, "Invalid SSO client id")).into_response()),
    }
}

fn error(code: u16, message: &str) -> Value {
    json!({"type": "RXERROR", "message": message, "code": code})
}

/// Applies a non-`Real` mode; `None` means answer for real.
async fn forced(mode: Mode) -> Option<Response> {
    match mode {
        Mode::Real => None,
        Mode::Slow(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        Mode::CodeInBody(code) => {
            Some((StatusCode::OK, axum::Json(error(code, "forced error"))).into_response())
        }
        Mode::CodeInStatus(code) => Some(
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"type": "RXERROR", "message": "forced error"})),
            )
                .into_response(),
        ),
        Mode::Html => Some(
            (
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
        ),
    }
}

async fn verify(
    State(s): State<YourGptStandIn>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let token = q.get("token").cloned().unwrap_or_default();
    let client_id = q.get("sso_client_id").cloned();
    let checked = s.check_token(&token);
    let (mode, unconfirmed) = {
        let mut inner = s.lock();
        inner.calls.push(Call {
            endpoint: "verify",
            token: token.clone(),
            client_id: client_id.clone(),
            partner_id: None,
            claims: checked.clone().ok(),
        });
        (
            inner.verify_mode.unwrap_or(Mode::Real),
            inner.unconfirmed.clone(),
        )
    };
    if let Some(r) = forced(mode).await {
        return r;
    }
    if let Some(refusal) = check_params(&token, client_id.as_deref()) {
        return refusal;
    }
    let claims = match checked {
        Ok(c) => c,
        Err((code, message)) => return axum::Json(error(code, message)).into_response(),
    };
    let email = claims["email"].as_str().unwrap_or_default().to_lowercase();
    if unconfirmed.contains(&email) {
        return axum::Json(error(
            404,
            "Your email is already registered. Please verify it to ensure a seamless login experience",
        ))
        .into_response();
    }
    axum::Json(json!({
        "type": "RXSUCCESS",
        "message": "Login successful",
        "token": format!("yg session/{email}"),
        "code": 200
    }))
    .into_response()
}

async fn send_email(State(s): State<YourGptStandIn>, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = parsed["token"].as_str().unwrap_or_default().to_string();
    let client_id = parsed["sso_client_id"].as_str().map(str::to_string);
    let checked = s.check_token(&token);
    let mode = {
        let mut inner = s.lock();
        inner.calls.push(Call {
            endpoint: "email",
            token: token.clone(),
            client_id: client_id.clone(),
            partner_id: parsed["partner_id"].as_str().map(str::to_string),
            claims: checked.clone().ok(),
        });
        inner.email_mode.unwrap_or(Mode::Real)
    };
    if let Some(r) = forced(mode).await {
        return r;
    }
    if let Some(refusal) = check_params(&token, client_id.as_deref()) {
        return refusal;
    }
    if let Err((code, message)) = checked {
        return axum::Json(error(code, message)).into_response();
    }
    axum::Json(json!({"type": "RXSUCCESS", "message": "Invitation Sent Successfully", "code": 200}))
        .into_response()
}
