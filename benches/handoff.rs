//! Criterion micro-benchmarks of the handoff path:
//! - minting a YourGPT token (HS256, claims + iat/exp/jti);
//! - a whole YourGPT handoff (mint → verify over loopback HTTP → redirect URL) against the
//!   local stand-in, which verifies the token as YourGPT does.
//!
//! - the confirmation-email path of a YourGPT handoff (verify answers 404 → claim the resend
//!   window → take an email slot → send), with per-process limits and with `[state]` on a
//!   `redis-server` the bench starts on a free loopback port (skipped, said so, without one).
//!
//! - widget sign-in: streaming a page through the lol_html rewriter (MB/s, and time per page)
//!   versus copying the same chunks untouched (plain pass-through).
//!
//! - any app that takes a signed token (`jwt_link`): a handoff from the claims template to the
//!   redirect URL or the posted form, HS256/RS256/ES256, next to TypingMind's link (the same
//!   work for a fixed payload) in the same run; DiscourseConnect's answer to the forum
//!   (verify its sso/sig, sign the payload).
//!
//! Run: `cargo bench --bench handoff`
// Test, bench and example code may unwrap and panic; the library may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use handoff::internals::apps::limits::EmailLimits;
use handoff::internals::apps::mint::mint_hs256;
use handoff::internals::apps::widget::{WidgetRewriter, WidgetTarget};
use handoff::internals::apps::yourgpt::YourGpt;
use handoff::internals::apps::HandoffOutcome;
use handoff::internals::config::{Secret, StateSettings, YourGptSettings};
use handoff::internals::identity::Identity;
use handoff::internals::shared_state::SharedState;
use handoff::internals::standins::yourgpt::{YourGptStandIn, CLIENT_ID};

const SECRET: &[u8] = b"bench-yourgpt-sso-secret-0123456789";

fn ada() -> Identity {
    person("ada@corp.example")
}

fn person(email: &str) -> Identity {
    let claims = serde_json::json!({
        "sub": "u-1",
        "email": email,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "name": "Ada Lovelace",
        "preferred_username": "ada",
    });
    let claims = claims.as_object().expect("an object").clone();
    handoff::internals::identity::ClaimMapping::default().identity(&claims)
}

fn settings(api_url: String) -> YourGptSettings {
    YourGptSettings {
        client_id: CLIENT_ID.into(),
        secret: Secret::new(SECRET.to_vec()),
        api_url,
        login_url: "https://chatbot.yourgpt.test".into(),
        partner_id: None,
        token_ttl: Duration::from_secs(300),
        connect_timeout: Duration::from_secs(3),
        timeout: Duration::from_secs(10),
        emails_per_minute: 5,
        email_resend_window: Duration::from_secs(60),
        widget: None,
    }
}

fn mint(c: &mut Criterion) {
    let claims = YourGpt::claims(&ada());
    c.bench_function("mint_yourgpt_token_hs256", |b| {
        b.iter(|| mint_hs256(claims.clone(), SECRET, Duration::from_secs(300)))
    });
}

/// A 2-thread runtime and the YourGPT stand-in on it.
fn runtime_and_standin() -> (tokio::runtime::Runtime, YourGptStandIn) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let standin = rt
        .block_on(YourGptStandIn::start(SECRET.to_vec()))
        .expect("stand-in");
    (rt, standin)
}

fn whole_handoff(c: &mut Criterion) {
    let (rt, standin) = runtime_and_standin();
    let limits = EmailLimits::default();
    let yourgpt = yourgpt_with(limits, settings(standin.url()));
    let who = ada();
    c.bench_function("yourgpt_handoff_against_standin", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = yourgpt.handoff(&who).await;
            assert!(
                matches!(outcome, HandoffOutcome::Redirect(_)),
                "{outcome:?}"
            );
        })
    });
}

fn yourgpt_with(mut limits: EmailLimits, s: YourGptSettings) -> YourGpt {
    let emails = limits.for_client(CLIENT_ID, s.emails_per_minute, SECRET);
    let recent = limits.resend_window(s.email_resend_window, CLIENT_ID, SECRET);
    YourGpt::new(s, emails, recent).expect("client")
}

/// A `redis-server` on a free loopback port, stopped on drop.
struct Redis(std::process::Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Redis(child, port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The email path, per process and shared on Redis: 1,000 unconfirmed people in turn, a resend
/// window of 1 ms (each claim is free again by a person's next turn) and no effective rate
/// limit, so every iteration makes the same calls.
fn email_path(c: &mut Criterion) {
    let (rt, standin) = runtime_and_standin();
    let people: Vec<Identity> = (0..1000)
        .map(|i| {
            let email = format!("person{i}@corp.example");
            standin.add_unconfirmed(&email);
            person(&email)
        })
        .collect();
    let mut s = settings(standin.url());
    s.emails_per_minute = u32::MAX;
    s.email_resend_window = Duration::from_millis(1);
    let redis = Redis::start();
    let mut variants = vec![("per_process", EmailLimits::default())];
    match &redis {
        Some(r) => {
            let state = SharedState::new(StateSettings {
                redis_url: format!("redis://127.0.0.1:{}/0", r.1).parse().expect("url"),
                key_prefix: "bench:".into(),
                timeout: Duration::from_millis(200),
            })
            .expect("state");
            variants.push(("redis", EmailLimits::new(Some(Arc::new(state)))));
        }
        None => eprintln!("yourgpt_email_path/redis skipped: redis-server did not start"),
    }
    let mut group = c.benchmark_group("yourgpt_email_path");
    for (name, limits) in variants {
        let yourgpt = yourgpt_with(limits, s.clone());
        let next = std::sync::atomic::AtomicUsize::new(0);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let outcome = yourgpt.handoff(&people[i % people.len()]).await;
                assert!(
                    matches!(outcome, HandoffOutcome::EmailSent(_)),
                    "{outcome:?}"
                );
            })
        });
    }
    group.finish();
}

/// A real-looking page of about `size` bytes with the widget tag in its head.
fn page(size: usize) -> Vec<u8> {
    let head = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Intranet</title>
<link rel="stylesheet" href="/style.css"><script defer data-agent="a1" src="https://chat.example.test/widget.js"></script>
</head><body><nav><a href="/">Home</a> <a href="/ai/chat">Chat</a></nav>"#;
    let row = r#"<div class="item"><h2>News item</h2><p>Lorem ipsum <b>dolor</b> sit amet, <a href="/x?y=1&amp;z=2">link</a>.</p></div>
"#;
    let mut html = head.to_string();
    while html.len() < size {
        html.push_str(row);
    }
    html.push_str("</body></html>");
    html.into_bytes()
}

fn widget_target(code: &str) -> WidgetTarget {
    WidgetTarget::new(
        "https://chat.example.test",
        "widget.js",
        Some(code.to_string()),
    )
    .expect("target")
}

fn widget(c: &mut Criterion) {
    let code = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjp7ImlkIjoidS0xIn19.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    c.bench_function("widget_rewriter_setup", |b| {
        b.iter(|| {
            let target = widget_target(code);
            let mut rewriter = WidgetRewriter::new(vec![target], usize::MAX);
            rewriter.finish().map_or(0, |b| b.len())
        })
    });
    let mut group = c.benchmark_group("widget_page");
    for size in [16 * 1024, 256 * 1024] {
        let html = page(size);
        group.throughput(Throughput::Bytes(html.len() as u64));
        group.bench_with_input(BenchmarkId::new("rewrite", size), &html, |b, html| {
            b.iter(|| {
                let target = widget_target(code);
                let mut rewriter = WidgetRewriter::new(vec![target], usize::MAX);
                let mut out = 0;
                for chunk in html.chunks(16 * 1024) {
                    out += rewriter
                        .write(Bytes::copy_from_slice(chunk))
                        .map_or(0, |b| b.len());
                }
                out + rewriter.finish().map_or(0, |b| b.len())
            })
        });
        group.bench_with_input(BenchmarkId::new("pass_through", size), &html, |b, html| {
            b.iter(|| {
                html.chunks(16 * 1024)
                    .map(|chunk| bytes::Bytes::copy_from_slice(chunk).len())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

/// The apps of one config, by name.
fn token_apps() -> Vec<(String, handoff::internals::apps::App)> {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = r#"
[session]
cookie = "s"
algorithms = ["HS256"]
secret = { file = "session-secret.txt" }
[upstreams.intranet]
servers = ["127.0.0.1:9"]
[[routes]]
path = "/"
upstream = "intranet"
[apps.hs256]
kind = "jwt_link"
url = "https://acme.zendesk.example/access/jwt"
return_to_param = "return_to"
secret = { file = "zendesk-secret.txt" }
[apps.hs256.claims]
email = "email"
name = "name"
external_id = "id"
[apps.form]
kind = "jwt_link"
url = "https://acme.zendesk.example/access/jwt"
delivery = "form_post"
return_to_param = "return_to"
secret = { file = "zendesk-secret.txt" }
[apps.form.claims]
email = "email"
name = "name"
external_id = "id"
[apps.rs256]
kind = "jwt_link"
url = "https://app.example/sso"
algorithm = "RS256"
private_key = { file = "rsa_private.pem" }
[apps.rs256.claims]
email = "email"
[apps.es256]
kind = "jwt_link"
url = "https://app.example/sso"
algorithm = "ES256"
private_key = { file = "ec_private.pem" }
[apps.es256.claims]
email = "email"
[apps.typingmind]
kind = "typingmind"
instance_url = "https://chat.example"
secret = { file = "typingmind-secret.txt" }
[apps.forum]
kind = "discourse_connect"
forum_url = "https://forum.example"
secret = { file = "discourse-secret.txt" }
"#;
    let config = handoff::internals::config::from_toml_str(text, &fixtures).expect("bench config");
    let mut limits = EmailLimits::new(None);
    let seconds = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("bench_seconds", "bench"),
        &["app", "call"],
    )
    .unwrap();
    config
        .apps
        .into_iter()
        .map(|a| {
            let name = a.name.clone();
            let app = handoff::internals::apps::App::new(a, &mut limits, &seconds, "/_handoff")
                .expect("app");
            (name, app)
        })
        .collect()
}

fn token_links(c: &mut Criterion) {
    use handoff::internals::apps::HandoffRequest;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let apps = token_apps();
    let who = ada();
    let mapping = handoff::internals::identity::ClaimMapping::default();
    let deep = HandoffRequest {
        tail: "/hc/en-us/articles/42",
        query: Some("lang=fr"),
    };
    let mut group = c.benchmark_group("token_link");
    for (name, app) in &apps {
        if name == "forum" {
            continue;
        }
        group.bench_function(name.as_str(), |b| {
            b.iter(|| match rt.block_on(app.handoff(&who, &deep, &mapping)) {
                HandoffOutcome::Redirect(_) | HandoffOutcome::FormPost { .. } => {}
                other => panic!("{name}: {other:?}"),
            })
        });
    }
    // The forum's request, signed as the forum signs it.
    let secret = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/discourse-secret.txt"),
    )
    .unwrap();
    let sso = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "nonce=cb68251eefb5211e58c00ff1395f0c0b&return_sso_url=https%3A%2F%2Fforum.example%2Fsession%2Fsso_login",
    );
    let sig: String = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.trim().as_bytes()).unwrap();
        mac.update(sso.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let query = format!(
        "sso={}&sig={sig}",
        url::form_urlencoded::byte_serialize(sso.as_bytes()).collect::<String>()
    );
    let forum = &apps.iter().find(|(n, _)| n == "forum").unwrap().1;
    let request = HandoffRequest {
        tail: "",
        query: Some(&query),
    };
    group.bench_function("discourse_connect_answer", |b| {
        b.iter(
            || match rt.block_on(forum.handoff(&who, &request, &mapping)) {
                HandoffOutcome::Redirect(_) => {}
                other => panic!("forum: {other:?}"),
            },
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    mint,
    whole_handoff,
    email_path,
    widget,
    token_links
);
criterion_main!(benches);
