//! The decision as a table, without sockets: route × session × `allow` × method ×
//! `Sec-Fetch-*` → what the gateway does. The integration tests prove the same over the wire;
//! here every combination is cheap to state and to read.

use std::sync::Arc;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::{Decision, Gateway, SessionNote, Widgets};
use crate::metrics::Metrics;

fn gateway() -> Gateway {
    let (text, dir) = crate::test_config::config();
    let config = crate::config::from_toml_str(&text, &dir).unwrap();
    Gateway::build(config, Metrics::new(), None).unwrap()
}

fn token(groups: &[&str], exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "sub": "u-1", "email": "ada@corp.example", "given_name": "Ada",
        "family_name": "Lovelace", "groups": groups, "iat": now, "exp": now + exp_offset,
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(crate::test_config::SESSION_SECRET.as_bytes()),
    )
    .unwrap()
}

/// One line per outcome: `proxy <route> <who> <widgets>`, `handoff <route>`, `reply <status>
/// <outcome>`.
fn describe(g: &Gateway, decision: &Decision) -> String {
    match decision {
        Decision::Proxy {
            route,
            identity,
            widgets,
        } => format!(
            "proxy {} {} {}",
            route.map_or("-", |r| g.route(r).path.as_str()),
            identity.as_ref().map_or("-", |i| i.email().unwrap_or("?")),
            match widgets {
                Widgets::Off => "off",
                Widgets::Strip => "strip",
                Widgets::SignIn => "sign_in",
            }
        ),
        Decision::Handoff { route, .. } => format!("handoff {}", g.route(*route).path),
        Decision::Reply { reply, .. } => format!("reply {} {}", reply.status, reply.outcome),
    }
}

/// (method, path, cookie, `Sec-Fetch-Dest`, `Accept`, what the gateway does)
type Row<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
);

#[tokio::test]
async fn the_decision_table() {
    let g = Arc::new(gateway());
    let eng = format!("sid={}", token(&["eng"], 600));
    let sales = format!("sid={}", token(&["sales"], 600));
    let expired = format!("sid={}", token(&["eng"], -3600));
    let table: &[Row] = &[
        // A public route: proxied, no session looked for; widgets follow the navigation.
        // (A navigation may get a signed-in widget; with nobody signed in, codes are stripped.)
        (
            "GET",
            "/page",
            None,
            Some("document"),
            "text/html",
            "proxy / - sign_in",
        ),
        (
            "GET",
            "/page",
            Some(&eng),
            Some("document"),
            "text/html",
            "proxy / ada@corp.example sign_in",
        ),
        (
            "GET",
            "/page",
            Some(&eng),
            Some("empty"),
            "*/*",
            "proxy / - strip",
        ),
        (
            "POST",
            "/page",
            Some(&eng),
            None,
            "text/html",
            "proxy / - strip",
        ),
        // A protected route: session and allow.
        (
            "GET",
            "/private/x",
            Some(&eng),
            None,
            "*/*",
            "proxy /private ada@corp.example strip",
        ),
        (
            "GET",
            "/private/x",
            Some(&sales),
            None,
            "*/*",
            "reply 403 forbidden",
        ),
        (
            "GET",
            "/private/x",
            None,
            None,
            "*/*",
            "reply 401 unauthenticated",
        ),
        (
            "GET",
            "/private/x",
            None,
            Some("document"),
            "text/html",
            "reply 302 login_redirect",
        ),
        (
            "GET",
            "/private/x",
            Some(&expired),
            None,
            "application/json",
            "reply 401 unauthenticated",
        ),
        (
            "GET",
            "/private/x",
            Some(&expired),
            Some("document"),
            "text/html",
            "reply 302 login_redirect",
        ),
        // A handoff route: only a top-level navigation by a signed-in person.
        (
            "GET",
            "/ai/chat",
            Some(&eng),
            Some("document"),
            "text/html",
            "handoff /ai/chat",
        ),
        (
            "HEAD",
            "/ai/chat",
            Some(&eng),
            None,
            "text/html",
            "handoff /ai/chat",
        ),
        (
            "POST",
            "/ai/chat",
            Some(&eng),
            Some("document"),
            "text/html",
            "reply 405 method_not_allowed",
        ),
        (
            "GET",
            "/ai/chat",
            Some(&eng),
            Some("iframe"),
            "text/html",
            "reply 400 not_a_navigation",
        ),
        (
            "GET",
            "/ai/chat",
            Some(&eng),
            Some("empty"),
            "*/*",
            "reply 400 not_a_navigation",
        ),
        (
            "GET",
            "/ai/chat",
            None,
            Some("document"),
            "text/html",
            "reply 302 login_redirect",
        ),
        (
            "GET",
            "/ai/chat",
            Some(&expired),
            None,
            "application/json",
            "reply 401 unauthenticated",
        ),
    ];
    let mut wrong = Vec::new();
    for &(method, path, cookie, dest, accept, want) in table {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "intranet.example")
            .header("accept", accept);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if let Some(d) = dest {
            req = req.header("sec-fetch-dest", d);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let (decision, note) = g.decide(&parts).await;
        let got = describe(&g, &decision);
        if got != want {
            wrong.push(format!(
                "{method} {path} cookie={} dest={dest:?} accept={accept}: got {got:?} ({}), want {want:?}",
                cookie.map_or("none", |c| if c == eng { "eng" } else if c == sales { "sales" } else { "expired" }),
                match note { SessionNote::NotChecked => "-", other => other.label() }
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
