//! Cookie and JWT parsing: arbitrary `Cookie` and `Authorization` headers through the session
//! verifier (HS256 cookie + bearer sources). Must never panic; a forged token never verifies.
#![no_main]

use std::sync::OnceLock;

use handoff::internals::intranet_session::SessionVerifier;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[session]
cookie = "intranet_session"
secret = { env = "HANDOFF_FUZZ_SECRET" }
algorithms = ["HS256"]
sources = ["cookie", "bearer"]

[upstreams.intranet]
servers = ["127.0.0.1:9"]

[[routes]]
path = "/"
upstream = "intranet"
"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: SessionVerifier,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // SAFETY: set once, before any other thread of this process reads the environment.
        unsafe { std::env::set_var("HANDOFF_FUZZ_SECRET", "fuzz-secret-0123456789abcdef0123") };
        let config = handoff::internals::config::from_toml_str(CONFIG, std::path::Path::new("."))
            .expect("the fuzz config is valid");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let settings = config.session.expect("[session] is set");
        let verifier =
            handoff::internals::intranet_session::SessionVerifier::build(&settings, None)
                .expect("a verifier");
        Fixture { runtime, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    // First line: the Cookie header; the rest: the Authorization header.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (cookie, rest) = data.split_at(split);
    let authorization = rest.get(1..).unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        headers.insert(http::header::COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(authorization) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let f = fixture();
    let result = f.runtime.block_on(f.verifier.identify(&headers, true));
    // No input the fuzzer makes up is signed with the secret: nothing may verify.
    assert!(result.is_err(), "an unsigned credential verified");
});
