//! Criterion micro-benchmarks of the handoff path:
//! - minting a YourGPT token (HS256, claims + iat/exp/jti);
//! - a whole YourGPT handoff (mint → verify over loopback HTTP → redirect URL) against the
//!   local stand-in, which verifies the token as YourGPT does.
//!
//! Run: `cargo bench --bench handoff`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use handoff::config::{Secret, YourGptSettings};
use handoff::handoff::mint::mint_hs256;
use handoff::handoff::yourgpt::YourGpt;
use handoff::handoff::HandoffOutcome;
use handoff::identity::Identity;
use handoff::standins::yourgpt::{YourGptStandIn, CLIENT_ID};

const SECRET: &[u8] = b"bench-yourgpt-sso-secret-0123456789";

fn ada() -> Identity {
    Identity {
        id: "u-1".into(),
        email: "ada@corp.example".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        name: "Ada Lovelace".into(),
        username: "ada".into(),
        ..Identity::default()
    }
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
    }
}

fn mint(c: &mut Criterion) {
    let claims = YourGpt::claims(&ada());
    c.bench_function("mint_yourgpt_token_hs256", |b| {
        b.iter(|| mint_hs256(claims.clone(), SECRET, Duration::from_secs(300)))
    });
}

fn whole_handoff(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let standin = rt
        .block_on(YourGptStandIn::start(SECRET.to_vec()))
        .expect("stand-in");
    let yourgpt = YourGpt::new(settings(standin.url())).expect("client");
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

criterion_group!(benches, mint, whole_handoff);
criterion_main!(benches);
