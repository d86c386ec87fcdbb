//! `[session]` sources, `[session.jwks]`, `[session.userinfo]`.

use super::*;

// ---------------------------------------------------------------------------------------------
// [session] sources, [session.jwks], [session.userinfo]
// ---------------------------------------------------------------------------------------------

/// An opaque-cookie `[session]` with `extra` lines in `[session.userinfo]`.
fn userinfo_session(session_extra: &str, extra: &str) -> String {
    format!(
        "[session]\ncookie = \"sid\"\n{session_extra}\n[session.userinfo]\n\
         url = \"https://intranet.example/api/me\"\n{extra}\n{UPSTREAM}{ROUTE}"
    )
}

/// A JWKS-only `[session]` with `extra` lines in `[session.jwks]`.
fn jwks_session(extra: &str) -> String {
    format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = [\"RS256\"]\n[session.jwks]\n\
         url = \"https://sso.example/jwks.json\"\n{extra}\n{UPSTREAM}{ROUTE}"
    )
}

#[test]
fn jwks_userinfo_and_sources_that_are_valid() {
    assert_accepted(&userinfo_session("", ""));
    assert_accepted(&userinfo_session(
        "",
        "cookies = [\"sid\", \"sid_legacy\"]\ntimeout_ms = 500\ncache_seconds = 30\n\
         negative_cache_seconds = 0\nstale_while_revalidate_seconds = 0\n\
         on_error = \"open_with_stale\"\nmax_stale_seconds = 600\nmax_entries = 100\n\
         max_body_bytes = 1024",
    ));
    let c = assert_accepted(&jwks_session(
        "cache_seconds = 300\nmin_cache_seconds = 30\nmax_cache_seconds = 3600\n\
         unknown_kid_cooldown_seconds = 10\ntimeout_ms = 1000\nstartup_wait_ms = 0",
    ));
    let secs = std::time::Duration::from_secs;
    let jwks = c.session.unwrap().jwt.unwrap().jwks.unwrap();
    assert_eq!(
        (
            jwks.cache,
            jwks.min_cache,
            jwks.max_cache,
            jwks.unknown_kid_cooldown
        ),
        (secs(300), secs(30), secs(3600), secs(10))
    );
    assert_eq!((jwks.timeout, jwks.startup_wait), (secs(1), secs(0)));
    // And the defaults.
    let c = assert_accepted(&jwks_session(""));
    let jwt = c.session.unwrap().jwt.unwrap();
    let jwks = jwt.jwks.unwrap();
    assert_eq!(
        (
            jwks.cache,
            jwks.min_cache,
            jwks.max_cache,
            jwks.unknown_kid_cooldown
        ),
        (secs(600), secs(60), secs(86_400), secs(30))
    );
    assert_eq!((jwks.timeout, jwks.startup_wait), (secs(2), secs(5)));
    assert_eq!(jwt.token_cache.ttl, secs(60));
    assert_eq!(jwt.token_cache.max_entries, 10_000);
    assert_eq!(jwt.rules.leeway_seconds, 60);
    // JWT cookie first, then the userinfo endpoint for the same cookie.
    assert_accepted(&format!(
        "{}sources = [\"cookie\", \"userinfo\"]\n[session.userinfo]\nurl = \"http://127.0.0.1:9/me\"\n\
         {UPSTREAM}{ROUTE}",
        session("")
    ));
}

#[test]
fn broken_jwks_settings_name_their_key() {
    assert_only_problem(
        &jwks_session("").replace("https://sso.example/jwks.json", "sso.example/jwks"),
        "session.jwks.url",
        "must be an http(s) URL",
    );
    assert_only_problem(
        &jwks_session("min_cache_seconds = 600\nmax_cache_seconds = 60"),
        "session.jwks.min_cache_seconds",
        "must not be more than max_cache_seconds",
    );
    assert_only_problem(
        &jwks_session("refresh = 1"),
        "session.jwks.refresh",
        "unknown field `refresh`",
    );
    // HMAC never comes from a published key set.
    assert_only_problem(
        &jwks_session("").replace("[\"RS256\"]", "[\"HS256\"]"),
        "session.algorithms",
        "HS256 needs `secret`",
    );
}

#[test]
fn zero_durations_in_jwks_are_refused() {
    let errors = problems(&jwks_session(
        "unknown_kid_cooldown_seconds = 0\ntimeout_ms = 0\ncache_seconds = 0",
    ));
    assert_has_problem(
        &errors,
        "session.jwks.unknown_kid_cooldown_seconds",
        "more than 0",
    );
    assert_has_problem(&errors, "session.jwks.timeout_ms", "more than 0");
    assert_has_problem(&errors, "session.jwks.cache_seconds", "more than 0");
}

#[test]
fn broken_userinfo_settings_name_their_key() {
    assert_only_problem(
        &userinfo_session("", "on_error = \"open\""),
        "session.userinfo.on_error",
        "use \"closed\" or \"open_with_stale\"",
    );
    assert_only_problem(
        &userinfo_session("", "cookies = []"),
        "session.userinfo.cookies",
        "list at least one cookie",
    );
    assert_only_problem(
        &userinfo_session("", "cookies = [\"bad name\"]"),
        "session.userinfo.cookies[0]",
        "not a valid cookie name",
    );
    assert_only_problem(
        &userinfo_session("", "max_entries = 1"),
        "session.userinfo.max_entries",
        "at least 10",
    );
    assert_only_problem(
        &userinfo_session("", "").replace("https://intranet.example/api/me", "ftp://x/me"),
        "session.userinfo.url",
        "must be an http(s) URL",
    );
    assert_only_problem(
        &userinfo_session("", "timeout_ms = 0"),
        "session.userinfo.timeout_ms",
        "more than 0",
    );
}

#[test]
fn a_token_cache_too_small_is_refused() {
    assert_only_problem(
        &format!("{}{UPSTREAM}{ROUTE}", session("token_cache_entries = 3")),
        "session.token_cache_entries",
        "at least 10",
    );
    assert_accepted(&format!(
        "{}{UPSTREAM}{ROUTE}",
        session("token_cache_seconds = 0\ntoken_cache_entries = 10")
    ));
}

#[test]
fn sources_must_exist_and_be_configured() {
    assert_only_problem(
        &userinfo_session("sources = [\"cookie\"]", ""),
        "session.sources[0]",
        "JWT sources need `secret`, `public_key_file` or [session.jwks]",
    );
    assert_only_problem(
        &format!("{}sources = [\"userinfo\"]\n{UPSTREAM}{ROUTE}", session("")),
        "session.sources[0]",
        "\"userinfo\" needs [session.userinfo]",
    );
    assert_only_problem(
        &format!(
            "{}sources = [\"cookie\", \"cookie\"]\n{UPSTREAM}{ROUTE}",
            session("")
        ),
        "session.sources[1]",
        "listed twice",
    );
    assert_only_problem(
        &format!("{}sources = [\"header\"]\n{UPSTREAM}{ROUTE}", session("")),
        "session.sources[0]",
        "unknown source \"header\"",
    );
    assert_only_problem(
        &format!("{}sources = []\n{UPSTREAM}{ROUTE}", session("")),
        "session.sources",
        "list at least one",
    );
}
