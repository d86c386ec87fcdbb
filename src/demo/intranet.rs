//! The demo intranet: a login page where you pick a demo person and get a signed session cookie
//! (HS256, the gateway's session secret), and a home page that links to the AI apps and embeds
//! the TypingMind widget. It knows nothing about Handoff: the gateway in front does the rest.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::pages::{document, document_with_scripts, escape};
use crate::routes::is_local_path;

/// The session cookie the gateway reads (`[session] cookie` in conf/demo.toml).
pub const COOKIE: &str = "intranet_session";

/// A demo person.
pub struct Person {
    pub key: &'static str,
    pub email: &'static str,
    pub given_name: &'static str,
    /// `None`: the intranet has no last name for them (YourGPT needs one).
    pub family_name: Option<&'static str>,
    pub groups: &'static [&'static str],
    /// What clicking through as them shows.
    pub note: &'static str,
}

/// The group conf/demo.toml admits to the AI apps.
pub const AI_GROUP: &str = "ai-users";

pub const PEOPLE: [Person; 4] = [
    Person {
        key: "ada",
        email: "ada@demo.example",
        given_name: "Ada",
        family_name: Some("Lovelace"),
        groups: &["staff", AI_GROUP],
        note: "everything works",
    },
    Person {
        key: "linus",
        email: "linus@demo.example",
        given_name: "Linus",
        family_name: Some("Torvalds"),
        groups: &["staff", AI_GROUP],
        note: "YourGPT already knows this email: confirmation email first",
    },
    Person {
        key: "grace",
        email: "grace@demo.example",
        given_name: "Grace",
        family_name: None,
        groups: &["staff", AI_GROUP],
        note: "no last name on file: YourGPT cannot take her",
    },
    Person {
        key: "mallory",
        email: "mallory@demo.example",
        given_name: "Mallory",
        family_name: Some("Jones"),
        groups: &["contractors"],
        note: "not in the AI group: the apps are closed to her",
    },
];

#[derive(Clone)]
struct Demo {
    secret: Arc<Vec<u8>>,
    /// The TypingMind instance's `widget.js`, embedded in the home page.
    widget_src: Arc<str>,
    /// The YourGPT chatbot widget's script and widget id, embedded in the home page.
    chatbot: Option<Arc<(String, String)>>,
}

/// Serves the demo intranet on `addr` until the runtime stops.
pub async fn start(
    addr: SocketAddr,
    secret: Vec<u8>,
    widget_src: String,
    chatbot: Option<(String, String)>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let demo = Demo {
        secret: Arc::new(secret),
        widget_src: widget_src.into(),
        chatbot: chatbot.map(Arc::new),
    };
    let app = Router::new()
        .route("/", get(home))
        .route("/strict", get(strict))
        .route("/login", get(login_page).post(log_in))
        .route("/logout", get(log_out))
        .fallback(not_found)
        .with_state(demo);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

/// A wrong address gets a page a newcomer can read, with the way home (axum's is empty).
async fn not_found() -> Response {
    let page = document(
        "Page not found",
        "<h1>Page not found</h1>\n<p>The demo intranet has no page at this address.</p>\n\
         <p><a class=\"button\" href=\"/\">Back to the intranet</a></p>\n",
    );
    (StatusCode::NOT_FOUND, html(page)).into_response()
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response();
    if let Some(c) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

/// Only a path on this site is a place to return to.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if is_local_path(n) => n,
        _ => "/",
    }
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

async fn login_page(
    State(demo): State<Demo>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Response {
    let next = escape(safe_next(q.next.as_deref()));
    let mut body = String::from(
        "<p class=\"banner\">Demo intranet — pick a demo person; no passwords, nothing real.</p>\n\
         <h1>Sign in to the intranet</h1>\n",
    );
    // Someone who is signed in already is told so, with the way on.
    if let Some(claims) = session(&demo, &headers) {
        let who = claims["email"].as_str().unwrap_or("someone");
        body.push_str(&format!(
            "<p id=\"signed-in\">You are already signed in as <strong>{who}</strong>.</p>\n\
             <p><a class=\"button\" href=\"{next}\">Continue as {who}</a></p>\n\
             <p>Or sign in as another demo person:</p>\n",
            who = escape(who),
        ));
    }
    body.push_str("<ul class=\"apps\">\n");
    for p in &PEOPLE {
        let name = match p.family_name {
            Some(last) => format!("{} {last}", p.given_name),
            None => p.given_name.to_string(),
        };
        body.push_str(&format!(
            "<li><form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"person\" \
             value=\"{key}\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <button id=\"login-{key}\" type=\"submit\"><strong>{name}</strong> \
             <span class=\"code\">{email} — {note}</span></button></form></li>\n",
            key = p.key,
            name = escape(&name),
            email = escape(p.email),
            note = escape(p.note),
        ));
    }
    body.push_str("</ul>\n");
    html(document("Sign in — demo intranet", &body))
}

#[derive(Deserialize)]
struct LogIn {
    person: String,
    next: Option<String>,
}

async fn log_in(State(demo): State<Demo>, Form(form): Form<LogIn>) -> Response {
    let Some(p) = PEOPLE.iter().find(|p| p.key == form.person) else {
        return see_other("/login", None);
    };
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({
        "sub": format!("demo-{}", p.key),
        "email": p.email,
        "given_name": p.given_name,
        "groups": p.groups,
        "iat": now,
        "exp": now + 8 * 3600,
    });
    if let Some(last) = p.family_name {
        claims["family_name"] = json!(last);
    }
    let token = match jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&demo.secret),
    ) {
        Ok(t) => t,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "cannot sign").into_response(),
    };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax");
    see_other(safe_next(form.next.as_deref()), Some(cookie))
}

async fn log_out() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    see_other("/login", Some(cookie))
}

/// The signed-in person's claims, verified as the intranet app itself would.
fn session(demo: &Demo, headers: &HeaderMap) -> Option<Map<String, Value>> {
    let token = crate::intranet_session::session_cookies(headers, COOKIE).next()?;
    jsonwebtoken::decode::<Map<String, Value>>(
        &token,
        &DecodingKey::from_secret(&demo.secret),
        &Validation::new(Algorithm::HS256),
    )
    .ok()
    .map(|d| d.claims)
}

async fn home(State(demo): State<Demo>, headers: HeaderMap) -> Response {
    let Some(claims) = session(&demo, &headers) else {
        return see_other("/login?next=/", None);
    };
    html(page_for(&demo, &claims, &headers, None))
}

/// The same page under a strict Content-Security-Policy: scripts only by a nonce fresh for
/// each answer (no `'self'`, nothing inline without it), as many intranets run. The widgets'
/// tags carry the nonce; the gateway's contact script gets it from the chatbot's tag.
async fn strict(State(demo): State<Demo>, headers: HeaderMap) -> Response {
    let Some(claims) = session(&demo, &headers) else {
        return see_other("/login?next=/strict", None);
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let csp = format!(
        "default-src 'self'; script-src 'nonce-{nonce}'; connect-src *; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'"
    );
    let page = page_for(&demo, &claims, &headers, Some(&nonce));
    let mut response = html(page);
    if let Ok(v) = axum::http::HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// The home page for the signed-in person, its widget tags with `nonce` when given.
fn page_for(
    demo: &Demo,
    claims: &Map<String, Value>,
    headers: &HeaderMap,
    nonce: Option<&str>,
) -> String {
    let name = claims["given_name"].as_str().unwrap_or("there");
    // What the gateway told this intranet about the person (identity headers).
    let told: String = [
        "x-handoff-user",
        "x-handoff-email",
        "x-handoff-name",
        "x-handoff-groups",
    ]
    .iter()
    .filter_map(|h| {
        let v = headers.get(*h)?.to_str().ok()?;
        Some(format!("<li><code>{h}: {}</code></li>", escape(v)))
    })
    .collect();
    // Like a real intranet, it links each person only to what their groups open.
    let in_ai_group = claims["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g.as_str() == Some(AI_GROUP)));
    let chatbot_line = if demo.chatbot.is_some() {
        "<p>The YourGPT chatbot (bottom left) knows who you are too.</p>\n"
    } else {
        ""
    };
    let apps = if in_ai_group {
        format!(
            "<p>Your AI apps sign you in with your intranet session:</p>\n<ul class=\"apps\">\n\
             <li><a class=\"button\" id=\"open-yourgpt\" href=\"/ai/yourgpt\">Open YourGPT</a></li>\n\
             <li><a class=\"button\" id=\"open-typingmind\" href=\"/ai/chat\">Open TypingMind</a></li>\n\
             </ul>\n<p>The TypingMind chat widget on this page is signed in as you (bottom right).</p>\n\
             {chatbot_line}"
        )
    } else {
        let chatbot = if demo.chatbot.is_some() {
            " The chatbot (bottom left) treats you as an anonymous visitor for the same reason: \
             the gateway signs it in only for people the AI apps admit."
        } else {
            ""
        };
        format!(
            "<p id=\"no-apps\">The AI apps are open to the <code>{AI_GROUP}</code> group; ask the \
             help desk if you need them.{chatbot}</p>\n"
        )
    };
    let strict_link = if nonce.is_some() {
        "<p class=\"code\">This page runs under a strict Content-Security-Policy (scripts by nonce only).</p>\n"
    } else {
        "<p><a id=\"strict\" href=\"/strict\">The same page under a strict CSP</a></p>\n"
    };
    let body = format!(
        "<p class=\"banner\">Demo intranet — behind the Handoff gateway.</p>\n\
         <h1 id=\"hello\">Hello, {name}</h1>\n{apps}\
         <ul class=\"apps\">\n\
         <li><a class=\"button\" id=\"portal\" href=\"/_handoff/\">All your AI apps</a></li>\n\
         <li><a class=\"button\" id=\"logout\" href=\"/logout\">Sign out</a></li>\n</ul>\n\
         {strict_link}\
         <p class=\"code\">What the gateway told the intranet about you:</p>\n<ul class=\"code\">{told}</ul>\n",
        name = escape(name),
    );
    let nonce_attr = nonce
        .map(|n| format!(" nonce=\"{}\"", escape(n)))
        .unwrap_or_default();
    // The widgets' tags, as the vendors document them: TypingMind's right after <head>,
    // YourGPT's chatbot at the end of the body.
    let typingmind = format!(
        "<script defer src=\"{}\"{nonce_attr}></script>\n",
        escape(&demo.widget_src)
    );
    let chatbot = demo
        .chatbot
        .as_deref()
        .map(|(src, id)| {
            format!(
                "<script src=\"{}\" id=\"yourgpt-chatbot\" data-widget=\"{}\"{nonce_attr}></script>\n",
                escape(src),
                escape(id)
            )
        })
        .unwrap_or_default();
    document_with_scripts("Demo intranet", &typingmind, &body, &chatbot)
}
