//! Return-to validation: whatever `is_local_path` accepts must stay on this site once a
//! browser resolves it (WHATWG URL parsing, which strips tabs and newlines and reads `\` as
//! `/`), and the login URL must carry it encoded.
#![no_main]

use handoff::internals::config::LoginUrl;
use handoff::internals::routes::is_local_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let base = url::Url::parse("https://intranet.example/app/page").expect("a valid base");
    if is_local_path(s) {
        match base.join(s) {
            Ok(resolved) => assert_eq!(
                resolved.host_str(),
                Some("intranet.example"),
                "{s:?} was accepted as local but leads to {resolved}"
            ),
            Err(_) => {}
        }
    }
    let login = LoginUrl::new("https://login.example/sso?next={return_to}".to_string());
    let rendered = login.render(s);
    let parsed = url::Url::parse(&rendered).expect("the rendered login URL parses");
    assert_eq!(parsed.host_str(), Some("login.example"));
    let next = parsed
        .query_pairs()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        next.as_deref(),
        Some(s),
        "the return-to did not survive encoding"
    );
});
