//! `[log]`, `[server]`'s operational keys and client bounds, the userinfo flood bounds, `escaped_slashes`, `[apps.NAME.allow]`: checked, with their defaults.

use super::*;

#[test]
fn log_and_operations_keys_are_checked() {
    let base = format!("{UPSTREAM}{ROUTE}");
    let with = |extra: &str| format!("{extra}\n{base}");
    assert_only_problem(
        &with("[log]\nformat = \"xml\""),
        "log.format",
        "expected \"json\" or \"text\"",
    );
    assert_only_problem(
        &with("[log]\nperson = \"email\""),
        "log.person",
        "expected \"id\", \"hash\" or \"none\"",
    );
    assert_only_problem(
        &with("[log]\nperson = \"hash\""),
        "log.person_hash_key",
        "needs a key",
    );
    assert_only_problem(
        &with(&format!(
            "[log]\nperson = \"hash\"\nperson_hash_key = {{ env = \"{UNSET_ENV}\" }}"
        )),
        "log.person_hash_key",
        UNSET_ENV,
    );
    assert_only_problem(
        &with("[log]\nperson_hash_key = { file = \"session-secret.txt\" }"),
        "log.person_hash_key",
        "only used with person = \"hash\"",
    );
    assert_only_problem(
        &with("[log]\nlevel = \"debug\""),
        "log.level",
        "unknown field `level`",
    );
    assert_only_problem(
        &with("[server]\nmetrics_listen = \"localhost:9100\""),
        "server.metrics_listen",
        "is not an IP:port address",
    );
    assert_only_problem(
        &with("[server]\nmax_request_header_bytes = 100"),
        "server.max_request_header_bytes",
        "at least 1024",
    );
    // The defaults.
    let config = from_toml_str(&base, &fixtures()).unwrap();
    assert_eq!(config.log.format, crate::config::LogFormat::Json);
    assert!(config.log.access && !config.log.query && config.log.file.is_none());
    assert!(matches!(config.log.person, crate::config::PersonInLog::Id));
    assert_eq!(config.server.metrics_listen, None);
    assert_eq!(config.server.max_request_header_bytes, 65_536);
}

#[test]
fn client_bounds_are_checked_and_default_like_nginx() {
    let base = format!("{UPSTREAM}{ROUTE}");
    let with = |extra: &str| format!("[server]\n{extra}\n{base}");
    for (extra, key, says) in [
        (
            "client_header_timeout_seconds = 0",
            "server.client_header_timeout_seconds",
            "more than 0",
        ),
        (
            "h2_idle_timeout_seconds = 0",
            "server.h2_idle_timeout_seconds",
            "more than 0",
        ),
        (
            "max_connections = 0",
            "server.max_connections",
            "at least 1",
        ),
        (
            "keepalive_timeout_seconds = -1",
            "server.keepalive_timeout_seconds",
            "invalid value",
        ),
        (
            "max_connections = \"many\"",
            "server.max_connections",
            "invalid type",
        ),
    ] {
        assert_only_problem(&with(extra), key, says);
    }
    let config = from_toml_str(&base, &fixtures()).unwrap();
    let s = &config.server;
    assert_eq!(s.client_header_timeout, std::time::Duration::from_secs(60));
    assert_eq!(s.keepalive_timeout, std::time::Duration::from_secs(75));
    assert_eq!(s.h2_idle_timeout, std::time::Duration::from_secs(75));
    assert_eq!(s.max_connections, None);
    let config = from_toml_str(
        &with("keepalive_timeout_seconds = 0\nmax_connections = 5"),
        &fixtures(),
    )
    .unwrap();
    assert_eq!(config.server.keepalive_timeout, std::time::Duration::ZERO);
    assert_eq!(config.server.max_connections, Some(5));
}

#[test]
fn userinfo_flood_bounds_and_url_references_are_checked() {
    let userinfo = |extra: &str| {
        format!("[session]\ncookie = \"sid\"\n[session.userinfo]\n{extra}\n{UPSTREAM}{ROUTE}")
    };
    let url = "url = \"http://127.0.0.1:9/me\"";
    assert_only_problem(
        &userinfo(&format!("{url}\nmax_negative_entries = 5")),
        "session.userinfo.max_negative_entries",
        "at least 10",
    );
    assert_only_problem(
        &userinfo(&format!("{url}\nmax_new_lookups = 0")),
        "session.userinfo.max_new_lookups",
        "at least 1",
    );
    assert_only_problem(
        &userinfo(&format!("url = {{ env = \"{UNSET_ENV}\" }}")),
        "session.userinfo.url",
        UNSET_ENV,
    );
    assert_only_problem(
        &userinfo("url = { file = \"session-secret.txt\" }"),
        "session.userinfo.url",
        "does not hold an http(s) URL",
    );
    assert_only_problem(
        &userinfo("url = 42"),
        "session.userinfo.url",
        "a URL (\"https://…\"), or a secret reference",
    );
    // The settings are plain data: the defaults, asserted.
    let session = assert_accepted(&userinfo(url)).session.expect("[session]");
    assert_eq!(
        session.sources,
        vec![crate::intranet_session::Source::Userinfo]
    );
    assert!(session.jwt.is_none());
    let u = session.userinfo.expect("[session.userinfo]");
    assert_eq!(u.url.as_str(), "http://127.0.0.1:9/me");
    assert_eq!(u.cookies, vec!["sid".to_string()]);
    assert_eq!(
        (
            u.max_entries,
            u.max_negative_entries,
            u.max_new_lookups,
            u.max_body_bytes
        ),
        (10_000, 1_000, 100, 65_536)
    );
    assert_eq!(
        (
            u.timeout,
            u.cache,
            u.negative_cache,
            u.stale_while_revalidate,
            u.max_stale
        ),
        (
            std::time::Duration::from_millis(2000),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(300)
        )
    );
    assert_eq!(
        u.on_error,
        crate::intranet_session::userinfo::OnError::Closed
    );
    // Loading the same text twice gives equal configs (what a reload compares).
    assert_eq!(
        assert_accepted(&userinfo(url)),
        assert_accepted(&userinfo(url))
    );
}

#[test]
fn escaped_slashes_and_app_allow_are_checked() {
    assert_only_problem(
        &format!("[server]\nescaped_slashes = \"sometimes\"\n{UPSTREAM}{ROUTE}"),
        "server.escaped_slashes",
        "use \"refuse\", \"decode\" or \"keep\"",
    );
    assert_only_problem(
        &format!("{UPSTREAM}{}", route("/", "escaped_slashes = \"Decode\"")),
        "routes[0].escaped_slashes",
        "unknown value \"Decode\"",
    );
    let app = "[apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://chat.example.test/\"\n\
               secret = { file = \"typingmind-secret.txt\" }\n";
    assert_only_problem(
        &format!("{}{UPSTREAM}{ROUTE}{app}[apps.chat.allow]\n", session("")),
        "apps.chat.allow",
        "lists nobody",
    );
    let config = assert_accepted(&format!(
        "[server]\nescaped_slashes = \"decode\"\n{}{UPSTREAM}{ROUTE}{}{app}\
         [apps.chat.allow]\ngroups = [\"ai\"]\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n",
        session(""),
        route("/files", "escaped_slashes = \"keep\""),
    ));
    use crate::paths::EscapedSlashes;
    let slashes: Vec<EscapedSlashes> = config.routes.iter().map(|r| r.escaped_slashes).collect();
    // A route's own value; the server's for a proxy route; `keep` on an app route.
    let expected = [
        EscapedSlashes::Decode,
        EscapedSlashes::Keep,
        EscapedSlashes::Keep,
    ];
    assert_eq!(slashes, expected);
    assert_eq!(config.server.escaped_slashes, EscapedSlashes::Decode);
    assert!(config.apps[0].allow.is_some());
}
