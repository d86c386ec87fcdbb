//! A stand-in for a TypingMind instance, checking `externalAuthCode` as TypingMind documents it:
//! an HS256 JWT signed with the instance's JWT secret (`exp` honoured when present), naming the
//! person by `{"email"}`, `{"id"}` (TypingMind's own id, which wins over `email`) or
//! `{"user": {"id", …}}`. Its instance page shows who is signed in; its `widget.js` shows, on
//! the page that embeds it, the code it was given and whom the instance says it names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

use crate::pages::escape;

#[derive(Clone)]
pub struct TypingMindStandIn {
    pub addr: SocketAddr,
    secret: Arc<Vec<u8>>,
}

impl TypingMindStandIn {
    /// Listens on `addr` and serves until the runtime stops.
    pub async fn start_on(addr: SocketAddr, secret: Vec<u8>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let standin = TypingMindStandIn {
            addr: listener.local_addr()?,
            secret: Arc::new(secret),
        };
        let app = Router::new()
            .route("/widget.js", get(widget_js))
            .route("/api/whois", get(whois))
            .fallback(get(instance_page))
            .with_state(standin.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(standin)
    }

    /// Who a code names, or why it is refused.
    pub fn check(&self, code: &str) -> Result<String, &'static str> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = decode::<Map<String, Value>>(
            code,
            &DecodingKey::from_secret(&self.secret),
            &validation,
        )
        .map_err(|_| "the code is not signed with this instance's secret, or expired")?
        .claims;
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let Some(id) = claims.get("id").and_then(text) {
            return Ok(format!("TypingMind user #{id}"));
        }
        if let Some(email) = claims.get("email").and_then(text) {
            return Ok(email);
        }
        if let Some(user) = claims.get("user").and_then(Value::as_object) {
            let id = user.get("id").and_then(text);
            let email = user.get("email").and_then(text);
            return match (id, email) {
                (Some(id), Some(email)) => Ok(format!("{email} (your id {id})")),
                (Some(id), None) => Ok(format!("your id {id}")),
                _ => Err("`user` has no `id`"),
            };
        }
        Err("the code names nobody (no id, email or user)")
    }
}

fn page(body: &str) -> Response {
    super::page("TypingMind", "a TypingMind instance", body)
}

/// Any page of the instance: `?externalAuthCode=` signs the person in.
async fn instance_page(
    State(s): State<TypingMindStandIn>,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = escape(uri.path());
    match q.get("externalAuthCode").map(|c| s.check(c)) {
        Some(Ok(who)) => page(&format!(
            "<h1>TypingMind</h1>\n<p>You are signed in as <strong>{}</strong>.</p>\n\
             <p class=\"code\">Page: {path}</p>\n",
            escape(&who)
        )),
        Some(Err(why)) => page(&format!(
            "<h1>Sign-in failed</h1>\n<p>{}</p>\n",
            escape(why)
        )),
        None => page(&format!(
            "<h1>TypingMind</h1>\n<p>You are not signed in.</p>\n<p class=\"code\">Page: {path}</p>\n"
        )),
    }
}

/// What the widget asks the instance about its code (CORS-open, like a real widget API).
async fn whois(
    State(s): State<TypingMindStandIn>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let body = match q.get("code").map(|c| s.check(c)) {
        Some(Ok(who)) => json!({ "signed_in": true, "who": who }),
        Some(Err(why)) => json!({ "signed_in": false, "why": why }),
        None => json!({ "signed_in": false, "why": "no code" }),
    };
    ([("access-control-allow-origin", "*")], axum::Json(body)).into_response()
}

/// The widget: a box in the page's corner saying whether it was given a code and whom the
/// instance says it names.
async fn widget_js() -> Response {
    let script = r#"(function () {
  var me = document.currentScript;
  // Where this script came from is where the stand-in is, however the browser reached it.
  var base = me && me.src ? new URL(me.src, location.href).origin : "";
  var code = me && me.getAttribute("data-external-auth-code");
  function show(text) {
    var box = document.createElement("aside");
    box.id = "typingmind-widget";
    box.setAttribute("role", "status");
    box.style.cssText = "position:fixed;right:1rem;bottom:1rem;max-width:20rem;padding:.75rem 1rem;background:#111827;color:#fff;border-radius:10px;font:14px system-ui,sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.3)";
    box.textContent = text;
    document.body.appendChild(box);
  }
  function ready(f) {
    if (document.body) f(); else document.addEventListener("DOMContentLoaded", f);
  }
  ready(function () {
    if (!code) { show("TypingMind widget (stand-in): no sign-in code, not signed in"); return; }
    fetch(base + "/api/whois?code=" + encodeURIComponent(code))
      .then(function (r) { return r.json(); })
      .then(function (a) {
        show(a.signed_in
          ? "TypingMind widget (stand-in): signed in as " + a.who + " (code " + code.slice(0, 12) + "…)"
          : "TypingMind widget (stand-in): code refused: " + a.why);
      })
      .catch(function () { show("TypingMind widget (stand-in): instance unreachable"); });
  });
})();
"#;
    (
        [("content-type", "application/javascript; charset=utf-8")],
        script,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn standin() -> TypingMindStandIn {
        TypingMindStandIn {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret: Arc::new(b"tm-secret".to_vec()),
        }
    }

    fn code(payload: Value, secret: &[u8]) -> String {
        encode(
            &Header::default(),
            &payload,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn each_documented_payload_shape_names_its_person() {
        let s = standin();
        let k = b"tm-secret";
        assert_eq!(s.check(&code(json!({"email": "a@x"}), k)), Ok("a@x".into()));
        assert_eq!(
            s.check(&code(json!({"id": 1234, "email": "a@x"}), k)),
            Ok("TypingMind user #1234".into()),
            "top-level id wins over email"
        );
        assert_eq!(
            s.check(&code(json!({"user": {"id": "u-1", "email": "a@x"}}), k)),
            Ok("a@x (your id u-1)".into())
        );
        assert!(s
            .check(&code(json!({"user": {"email": "a@x"}}), k))
            .is_err());
        assert!(s.check(&code(json!({"email": "a@x"}), b"other")).is_err());
        let expired = json!({"email": "a@x", "exp": 1});
        assert!(s.check(&code(expired, k)).is_err());
        assert!(s.check("garbage").is_err());
    }
}
