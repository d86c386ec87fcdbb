//! A stand-in for YourGPT's Custom SSO API, checking tokens as the real service documents:
//! HS256 with the SSO secret, `exp`, and the required claims `email`, `first_name`,
//! `last_name`. It records every call and can be told how to answer each endpoint
//! (see [`Mode`]), including every documented error code.
//!
//! It also serves what a browser sees at YourGPT's login address, for the demo: `process-login`
//! (who got logged in with a session token, or "check your email"), the confirmation email it
//! would have sent, and the confirm link — every page labelled as a stand-in.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    /// HTTP 200 with a JSON-looking body of this many bytes that never ends its object.
    Huge(usize),
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
    /// Addresses a confirmation email went to.
    sent: Vec<String>,
    /// The chatbot widget's Secret Key and its widget ids, when the widget is served.
    widget: Option<(Vec<u8>, Vec<String>)>,
}

#[derive(Clone)]
pub struct YourGptStandIn {
    pub addr: SocketAddr,
    secret: Arc<Vec<u8>>,
    client_id: Arc<str>,
    inner: Arc<Mutex<Inner>>,
}

impl YourGptStandIn {
    /// Listens on `127.0.0.1:0`, accepts [`CLIENT_ID`], and serves until the runtime stops.
    pub async fn start(secret: Vec<u8>) -> std::io::Result<YourGptStandIn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(addr, secret, CLIENT_ID).await
    }

    /// Listens on `addr` and accepts `client_id`.
    pub async fn start_on(
        addr: SocketAddr,
        secret: Vec<u8>,
        client_id: &str,
    ) -> std::io::Result<YourGptStandIn> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let standin = YourGptStandIn {
            addr,
            secret: Arc::new(secret),
            client_id: client_id.into(),
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = Router::new()
            .route("/api/v1/verify/custom-sso", post(verify))
            .route("/api/v1/sendConfirmLoginAccessEmail", post(send_email))
            .route("/process-login", get(process_login))
            .route("/confirm", get(confirm))
            .route("/widget/script.js", get(widget_script))
            .route("/widget/verify", post(widget_verify))
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

    /// Serves the chatbot widget (`/widget/script.js`) for `widget_ids`, checking the
    /// `user_hash` of what a page hands it with the widget's `secret`, as YourGPT documents.
    pub fn serve_widget(&self, secret: Vec<u8>, widget_ids: Vec<String>) {
        self.lock().widget = Some((secret, widget_ids));
    }

    /// Who a widget's `contact:data` names, or YourGPT's error for it.
    pub fn check_contact(&self, widget_id: &str, data: &Value) -> Result<String, String> {
        let Some((secret, ids)) = self.lock().widget.clone() else {
            return Err("this stand-in serves no widget".into());
        };
        if !ids.iter().any(|id| id == widget_id) {
            return Err(format!("unknown widget {widget_id:?}"));
        }
        let text = |k: &str| {
            data.get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        // The highest-priority identifier sent: ext_user_id, else email, else phone.
        let Some(identifier) = text("ext_user_id").or(text("email")).or(text("phone")) else {
            return Err("no ext_user_id, email or phone".into());
        };
        let hash = text("user_hash").unwrap_or_default();
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&secret)
            .map_err(|e| e.to_string())?;
        hmac::Mac::update(&mut mac, identifier.as_bytes());
        let want: String = hmac::Mac::finalize(mac)
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if hash != want {
            return Err("invalid hmac hash".into());
        }
        let name = text("name").unwrap_or(identifier);
        Ok(match text("email") {
            Some(email) if email != name => format!("{name} ({email})"),
            _ => name.to_string(),
        })
    }

    /// YourGPT will answer 404 on verify for this address (registered, not yet confirmed).
    pub fn add_unconfirmed(&self, email: &str) {
        self.lock().unconfirmed.insert(email.to_lowercase());
    }

    /// The confirmation emails sent so far (addresses), in order.
    pub fn emails_sent(&self) -> Vec<String> {
        self.lock().sent.clone()
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
fn check_params(token: &str, client_id: Option<&str>, expected: &str) -> Option<Response> {
    match client_id {
        _ if token.is_empty() => Some(axum::Json(error(400, "Invalid params")).into_response()),
        None => Some(axum::Json(error(400, "Invalid params")).into_response()),
        Some(id) if id == expected => None,
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
        Mode::Huge(bytes) => {
            let mut body = b"{\"type\":\"RXSUCCESS\",\"pad\":\"".to_vec();
            body.resize(bytes.max(body.len()), b'x');
            Some((StatusCode::OK, [("content-type", "application/json")], body).into_response())
        }
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
    if let Some(refusal) = check_params(&token, client_id.as_deref(), &s.client_id) {
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
    if let Some(refusal) = check_params(&token, client_id.as_deref(), &s.client_id) {
        return refusal;
    }
    match checked {
        Err((code, message)) => return axum::Json(error(code, message)).into_response(),
        Ok(claims) => {
            let email = claims["email"].as_str().unwrap_or_default().to_lowercase();
            s.lock().sent.push(email);
        }
    }
    axum::Json(json!({"type": "RXSUCCESS", "message": "Invitation Sent Successfully", "code": 200}))
        .into_response()
}

fn page(title: &str, body: &str) -> Response {
    super::page(title, "YourGPT", body)
}

/// `{login}/process-login`: where Handoff sends the browser after verify or the email.
async fn process_login(
    State(s): State<YourGptStandIn>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    use crate::pages::escape;
    if let Some(token) = q.get("token") {
        // The stand-in's session token is "yg session/<email>" (see `verify`).
        return match token.strip_prefix("yg session/") {
            Some(email) => page(
                "YourGPT",
                &format!(
                    "<h1>Welcome to YourGPT</h1>\n<p>You are signed in as <strong>{}</strong>.</p>\n",
                    escape(email)
                ),
            ),
            None => page(
                "YourGPT",
                "<h1>Sign-in failed</h1>\n<p>This session token is not one YourGPT issued.</p>\n",
            ),
        };
    }
    if q.get("should-verify-email").map(String::as_str) == Some("true") {
        let last = s.lock().sent.last().cloned();
        let email = match last {
            Some(to) => format!(
                "<p>The email YourGPT sent:</p>\n<p class=\"banner\">To: <strong>{to}</strong><br>\
                 Subject: Confirm your login<br>Someone asked to sign in to YourGPT through your \
                 company. <a id=\"confirm\" href=\"/confirm?email={link}\">Confirm it's you</a></p>\n",
                to = escape(&to),
                link = escape(&form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>()),
            ),
            None => String::new(),
        };
        return page(
            "YourGPT",
            &format!(
                "<h1>Check your email</h1>\n<p>Your email is already registered with YourGPT. We \
                 sent you a link to confirm it; once you click it, you are signed in.</p>\n{email}"
            ),
        );
    }
    page(
        "YourGPT",
        "<h1>YourGPT</h1>\n<p>Nothing to sign in with.</p>\n",
    )
}

/// The confirm link of the email: the address is confirmed, and the person signed in.
async fn confirm(
    State(s): State<YourGptStandIn>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let email = q.get("email").cloned().unwrap_or_default().to_lowercase();
    let known = s.lock().unconfirmed.remove(&email);
    let body = if known {
        format!(
            "<h1>Email confirmed</h1>\n<p>You are signed in as <strong>{}</strong>. Next time, \
             the intranet link signs you in directly.</p>\n",
            crate::pages::escape(&email)
        )
    } else {
        "<h1>Nothing to confirm</h1>\n<p>This link was already used or is not valid.</p>\n"
            .to_string()
    };
    page("YourGPT", &body)
}

/// The chatbot widget: a box in the page's bottom-left corner. `window.$yourgptChatbot.set(
/// "contact:data", {…})` sends the data to the stand-in, which checks its `user_hash`; with no
/// such call a moment after the page loaded, the visitor is anonymous.
async fn widget_script() -> Response {
    let script = r#"(function () {
  var me = document.currentScript;
  // Where this script came from is where the stand-in is, however the browser reached it.
  var base = me && me.src ? new URL(me.src, location.href).origin : "";
  var widget = (me && me.getAttribute("data-widget")) || window.YGC_WIDGET_ID || "";
  var box = null, told = false;
  function show(text, state) {
    if (!box) {
      box = document.createElement("aside");
      box.id = "yourgpt-widget";
      box.setAttribute("role", "status");
      box.style.cssText = "position:fixed;left:1rem;bottom:1rem;max-width:20rem;padding:.75rem 1rem;background:#4c1d95;color:#fff;border-radius:10px;font:14px system-ui,sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.3)";
      document.body.appendChild(box);
    }
    box.setAttribute("data-state", state);
    box.textContent = text;
  }
  function ready(f) {
    if (document.body) f(); else document.addEventListener("DOMContentLoaded", f);
  }
  window.$yourgptChatbot = {
    set: function (key, data) {
      if (key !== "contact:data") return;
      told = true;
      fetch(base + "/widget/verify", { method: "POST", headers: { "content-type": "text/plain" },
        body: JSON.stringify({ widget: widget, data: data }) })
        .then(function (r) { return r.json(); })
        .then(function (a) {
          ready(function () {
            if (a.ok) show("YourGPT chatbot (stand-in): signed in as " + a.who, "signed-in");
            else show("YourGPT chatbot (stand-in): " + a.error, "error");
          });
        })
        .catch(function () { ready(function () { show("YourGPT chatbot (stand-in): unreachable", "error"); }); });
    }
  };
  ready(function () {
    setTimeout(function () {
      if (!told) show("YourGPT chatbot (stand-in): anonymous visitor (no contact data)", "anonymous");
    }, 1500);
  });
})();
"#;
    (
        [("content-type", "application/javascript; charset=utf-8")],
        script,
    )
        .into_response()
}

/// What the widget asks about the contact data a page handed it (CORS-open, like a widget API).
async fn widget_verify(State(s): State<YourGptStandIn>, body: String) -> Response {
    let answer = match serde_json::from_str::<Value>(&body) {
        Ok(v) => {
            let widget = v.get("widget").and_then(Value::as_str).unwrap_or_default();
            match s.check_contact(widget, v.get("data").unwrap_or(&Value::Null)) {
                Ok(who) => json!({ "ok": true, "who": who }),
                Err(error) => json!({ "ok": false, "error": error }),
            }
        }
        Err(_) => json!({ "ok": false, "error": "not JSON" }),
    };
    ([("access-control-allow-origin", "*")], axum::Json(answer)).into_response()
}
