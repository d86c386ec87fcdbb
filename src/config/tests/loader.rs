//! One broken thing at a time, each with its key path and an explanation: the file, secrets, algorithms and keys, listeners, upstreams, routes, identity headers.

use super::*;

// ---------------------------------------------------------------------------------------------
// The loader: one broken thing at a time, each with its key path and an explanation
// ---------------------------------------------------------------------------------------------

#[test]
fn the_base_pieces_used_below_are_valid() {
    let c = assert_accepted(&format!("{UPSTREAM}{ROUTE}"));
    assert_eq!((c.routes.len(), c.upstreams.len()), (1, 1));
    assert!(c.session.is_none());
    let c = assert_accepted(&format!(
        "{}{UPSTREAM}{}",
        session(""),
        route(
            "/",
            "allow = { groups = [\"staff\"] }\nidentity_headers = true"
        )
    ));
    assert!(c.session.is_some());
    assert!(c.routes[0].require_session);
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    let config = "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[upstreams.intranet\nservers = [\"127.0.0.1:9000\"]\n";
    let e = assert_only_problem(config, "", "not valid TOML (line 4, column 20)");
    assert!(e.message.contains("unclosed table"), "{e}");
    // No key: the Display is the message alone.
    assert_eq!(e.to_string(), e.message);

    let e = assert_only_problem("[server]\nlisten = [\"127.0.0.1:8080\"\n", "", "line 2");
    assert!(e.message.contains("unclosed array"), "{e}");
}

#[test]
fn unknown_top_level_section_is_named() {
    let errors = problems(&format!(
        "{UPSTREAM}{ROUTE}[frobnicate]\nx = 1\n[apps]\nchat = 1\n"
    ));
    assert_eq!(errors.len(), 2, "{}", list(&errors));
    assert_has_problem(
        &errors,
        "frobnicate",
        "unknown section; expected one of server, log, session, identity, identity_headers, upstreams, apps, routes",
    );
    assert_has_problem(&errors, "apps.chat.kind", "missing: say which app this is");
}

#[test]
fn unknown_key_inside_a_section_is_named_with_its_path() {
    let e = assert_only_problem(
        &format!("[server]\nlistn = [\"127.0.0.1:8080\"]\n{UPSTREAM}{ROUTE}"),
        "server.listn",
        "unknown field `listn`",
    );
    assert!(e.message.contains("expected one of `listen`"), "{e}");

    assert_only_problem(
        &format!("{UPSTREAM}{}", route("/", "require_sesion = true")),
        "routes[0].require_sesion",
        "unknown field `require_sesion`",
    );
    assert_only_problem(
        &format!("[upstreams.intranet]\nservers = [\"127.0.0.1:9000\"]\ntimeout = 3\n{ROUTE}"),
        "upstreams.intranet.timeout",
        "unknown field `timeout`",
    );
}

#[test]
fn route_naming_a_missing_upstream() {
    let e = assert_only_problem(
        &format!("{UPSTREAM}[[routes]]\npath = \"/\"\nupstream = \"intrante\"\n"),
        "routes[0].upstream",
        "no upstream named \"intrante\" (defined: intranet)",
    );
    // Shown with the route's path, so the operator finds it without counting entries.
    assert_eq!(
        e.to_string(),
        "routes[0] (/).upstream: no upstream named \"intrante\" (defined: intranet)"
    );
}

#[test]
fn route_with_both_upstream_and_app_or_neither() {
    assert_only_problem(
        &format!("{UPSTREAM}{}", route("/", "app = \"chat\"")),
        "routes[0]",
        "give either `upstream` or `app`, not both",
    );
    assert_only_problem(
        &format!("{UPSTREAM}[[routes]]\npath = \"/\"\n"),
        "routes[0]",
        "needs `upstream = \"NAME\"`",
    );
}

#[test]
fn route_naming_a_missing_app() {
    assert_only_problem(
        &format!("{UPSTREAM}[[routes]]\npath = \"/\"\napp = \"chat\"\n"),
        "routes[0].app",
        "no app named \"chat\" (defined: none)",
    );
}

#[test]
fn literal_secret_is_refused() {
    let e = assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"HS256\"]", "secret = \"hunter2-literal\"")
        ),
        "session.secret",
        "a literal secret is refused; write { env = \"NAME\" } or { file = \"PATH\" }",
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn malformed_secret_references_are_refused() {
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"HS256\"]", "secret = { value = \"x\" }")
        ),
        "session.secret",
        "unknown key `value` in a secret reference",
    );
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"HS256\"]", "secret = { env = \"A\", file = \"b\" }")
        ),
        "session.secret",
        "exactly one of `env` or `file`",
    );
}

#[test]
fn missing_env_secret_is_named() {
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with(
                "[\"HS256\"]",
                &format!("secret = {{ env = \"{UNSET_ENV}\" }}")
            )
        ),
        "session.secret",
        &format!("environment variable {UNSET_ENV} is not set"),
    );
}

#[test]
fn missing_or_empty_secret_file_is_named() {
    let e = assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"HS256\"]", "secret = { file = \"no-such-secret.txt\" }")
        ),
        "session.secret",
        "cannot read secret file",
    );
    assert!(e.message.contains("no-such-secret.txt"), "{e}");

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("empty.txt"), "\n").expect("write");
    let config = format!(
        "{}{UPSTREAM}{ROUTE}",
        session_with("[\"HS256\"]", "secret = { file = \"empty.txt\" }")
    );
    let errors = from_toml_str(&config, dir.path())
        .expect_err("empty secret")
        .errors;
    assert_eq!(errors.len(), 1, "{}", list(&errors));
    assert_eq!(errors[0].key, "session.secret");
    assert!(errors[0].message.contains("is empty"), "{}", errors[0]);
}

#[test]
fn none_algorithm_is_never_allowed() {
    for none in ["none", "None", "NONE"] {
        assert_only_problem(
            &format!(
                "{}{UPSTREAM}{ROUTE}",
                session("").replace("[\"HS256\"]", &format!("[\"HS256\", \"{none}\"]"))
            ),
            "session.algorithms[1]",
            "`none` is never allowed",
        );
    }
}

#[test]
fn unknown_empty_or_repeated_algorithms() {
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session("").replace("[\"HS256\"]", "[\"HS257\"]")
        ),
        "session.algorithms[0]",
        "unknown algorithm \"HS257\"; use one of HS256",
    );
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session("").replace("[\"HS256\"]", "[]")
        ),
        "session.algorithms",
        "list at least one algorithm",
    );
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session("").replace("[\"HS256\"]", "[\"HS256\", \"HS256\"]")
        ),
        "session.algorithms[1]",
        "listed twice",
    );
}

#[test]
fn rs256_without_a_public_key_file() {
    // With an HMAC secret but no public key.
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session("").replace("[\"HS256\"]", "[\"HS256\", \"RS256\"]")
        ),
        "session.algorithms",
        "RS256 needs `public_key_file`",
    );
    // With no key at all.
    assert_only_problem(
        &format!("{}{UPSTREAM}{ROUTE}", session_with("[\"RS256\"]", "")),
        "session",
        "give `secret` (HS256/384/512), `public_key_file` or [session.jwks]",
    );
    // HS256 with only a public key.
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"HS256\"]", "public_key_file = \"rsa_public.pem\"")
        ),
        "session.algorithms",
        "HS256 needs `secret`",
    );
}

#[test]
fn public_key_file_that_is_not_a_public_key() {
    let e = assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"RS256\"]", "public_key_file = \"session-secret.txt\"")
        ),
        "session.public_key_file",
        "not a PEM public key",
    );
    assert!(
        e.message.contains("session-secret.txt"),
        "the message names the file: {e}"
    );
    // Private keys are refused: jsonwebtoken would take an RSA one and then fail every token.
    for file in ["ec_private.pem", "rsa_private.pem", "tls_key.pem"] {
        let e = assert_only_problem(
            &format!(
                "{}{UPSTREAM}{ROUTE}",
                session_with("[\"RS256\"]", &format!("public_key_file = \"{file}\""))
            ),
            "session.public_key_file",
            "holds a private key",
        );
        assert!(e.message.contains(file), "the message names the file: {e}");
    }
    // A certificate carries a public key and is accepted.
    let config = format!(
        "{}{UPSTREAM}{ROUTE}",
        session_with("[\"RS256\"]", "public_key_file = \"tls_cert.pem\"")
    );
    assert!(crate::config::from_toml_str(&config, &fixtures()).is_ok());
    let e = assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"RS256\"]", "public_key_file = \"no-such-key.pem\"")
        ),
        "session.public_key_file",
        "cannot read",
    );
    assert!(e.message.contains("no-such-key.pem"), "{e}");
}

#[test]
fn public_key_of_the_wrong_family() {
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session_with("[\"RS256\"]", "public_key_file = \"ec_public.pem\"")
        ),
        "session.algorithms",
        "RS256 needs an RSA public key, but `public_key_file` holds an EC key",
    );
}

#[test]
fn bad_session_cookie_and_login_url() {
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session("").replace("\"intranet_session\"", "\"intranet session\"")
        ),
        "session.cookie",
        "\"intranet session\" is not a valid cookie name",
    );
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{ROUTE}",
            session("login_url = \"javascript:alert(1)\"")
        ),
        "session.login_url",
        "must be an http(s) URL or a path starting with `/`",
    );
    assert_only_problem(
        &format!("{}{UPSTREAM}{ROUTE}", session("issuer = \"\"")),
        "session.issuer",
        "must not be empty",
    );
}

#[test]
fn bad_listen_addresses() {
    let errors = problems(&format!(
        "[server]\nlisten = [\"localhost:8080\", \"127.0.0.1\", \"[::1]:8080\"]\n{UPSTREAM}{ROUTE}"
    ));
    assert_eq!(errors.len(), 2, "{}", list(&errors));
    assert_has_problem(
        &errors,
        "server.listen[0]",
        "\"localhost:8080\" is not an IP:port address (e.g. \"127.0.0.1:8080\" or \"[::]:443\")",
    );
    assert_has_problem(
        &errors,
        "server.listen[1]",
        "\"127.0.0.1\" is not an IP:port address",
    );
    assert_only_problem(
        &format!("[server]\nlisten = []\n{UPSTREAM}{ROUTE}"),
        "server.listen",
        "no listener",
    );
    assert_only_problem(
        &format!("[server]\nthreads = 0\n{UPSTREAM}{ROUTE}"),
        "server.threads",
        "must be at least 1",
    );
}

#[test]
fn tls_listener_files_must_be_readable() {
    assert_only_problem(
        &format!(
            "[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert_file = \"no-such-cert.pem\"\n\
             key_file = \"tls_key.pem\"\n{UPSTREAM}{ROUTE}"
        ),
        "server.tls.cert_file",
        "cannot read",
    );
}

#[test]
fn upstream_servers_that_cannot_be_used() {
    assert_only_problem(
        &format!("[upstreams.intranet]\nservers = [\"127.0.0.1\"]\n{ROUTE}"),
        "upstreams.intranet.servers[0]",
        "cannot resolve \"127.0.0.1\" (write \"host:port\")",
    );
    assert_only_problem(
        &format!("[upstreams.intranet]\nservers = [\"no-such-host.invalid:80\"]\n{ROUTE}"),
        "upstreams.intranet.servers[0]",
        "cannot resolve \"no-such-host.invalid:80\"",
    );
    assert_only_problem(
        &format!("[upstreams.intranet]\nservers = []\n{ROUTE}"),
        "upstreams.intranet.servers",
        "list at least one \"host:port\"",
    );
    assert_only_problem(
        &format!(
            "[upstreams.intranet]\nservers = [\"127.0.0.1:9000\", \"127.0.0.1:9000\"]\n{ROUTE}"
        ),
        "upstreams.intranet.servers[1]",
        "resolves to nothing new",
    );
}

#[test]
fn bad_health_check() {
    assert_only_problem(
        &format!("{UPSTREAM}[upstreams.intranet.health_check]\ntype = \"icmp\"\n{ROUTE}"),
        "upstreams.intranet.health_check.type",
        "\"icmp\" is not a health check type; use \"tcp\", \"http\" or \"none\"",
    );
    assert_only_problem(
        &format!("{UPSTREAM}[upstreams.intranet.health_check]\ninterval_ms = 0\n{ROUTE}"),
        "upstreams.intranet.health_check.interval_ms",
        "must be more than 0",
    );
    assert_only_problem(
        &format!(
            "{UPSTREAM}[upstreams.intranet.health_check]\ntype = \"http\"\npath = \"health\"\n{ROUTE}"
        ),
        "upstreams.intranet.health_check.path",
        "\"health\" must be a path starting with `/`",
    );
}

#[test]
fn unknown_connection_reuse() {
    assert_only_problem(
        &format!("{UPSTREAM}connection_reuse = \"per_person\"\n{ROUTE}"),
        "upstreams.intranet.connection_reuse",
        "\"per_person\" is not a way to reuse connections; use \"same_credentials\" or \"any\"",
    );
}

#[test]
fn route_path_must_be_a_plain_absolute_path() {
    assert_only_problem(
        &format!("{UPSTREAM}{}", route("ai", "")),
        "routes[0].path",
        "\"ai\" must start with `/`",
    );
    assert_only_problem(
        &format!("{UPSTREAM}{}", route("/ai?x=1", "")),
        "routes[0].path",
        "must be a plain path (no query, fragment, spaces or control characters)",
    );
    assert_only_problem(
        &format!("{UPSTREAM}[[routes]]\nupstream = \"intranet\"\n"),
        "routes[0]",
        "missing field `path`",
    );
}

#[test]
fn bad_host_pattern() {
    for host in [
        "exa mple.com",
        "foo.*.example.com",
        "*.",
        "intranet_example.com",
    ] {
        assert_only_problem(
            &format!("{UPSTREAM}{}", route("/", &format!("host = \"{host}\""))),
            "routes[0].host",
            &format!(
                "{host:?} is not a host name; write `intranet.example.com` or `*.example.com`"
            ),
        );
    }
    assert_accepted(&format!(
        "{UPSTREAM}{}",
        route("/", "host = \"*.intranet.example.com\"")
    ));
}

#[test]
fn route_under_the_endpoints_prefix() {
    for path in [
        "/_handoff",
        "/_handoff/healthz",
        "/x/../_handoff/",
        "/%5Fhandoff",
    ] {
        assert_only_problem(
            &format!("{UPSTREAM}{ROUTE}{}", route(path, "")),
            "routes[1].path",
            "\"/_handoff",
        );
        let errors = problems(&format!("{UPSTREAM}{ROUTE}{}", route(path, "")));
        assert!(
            errors[0]
                .message
                .contains("is under server.endpoints_prefix (\"/_handoff\"), which the gateway answers itself"),
            "{}",
            errors[0]
        );
    }
    // Whole segments only.
    assert_accepted(&format!("{UPSTREAM}{ROUTE}{}", route("/_handoffs", "")));
    // A custom prefix moves the fence.
    assert_only_problem(
        &format!(
            "[server]\nendpoints_prefix = \"/gw\"\n{UPSTREAM}{ROUTE}{}",
            route("/gw/x", "")
        ),
        "routes[1].path",
        "is under server.endpoints_prefix (\"/gw\")",
    );
    assert_accepted(&format!(
        "[server]\nendpoints_prefix = \"/gw\"\n{UPSTREAM}{ROUTE}{}",
        route("/_handoff", "")
    ));
}

#[test]
fn duplicate_routes() {
    assert_only_problem(
        &format!("{UPSTREAM}{ROUTE}{}{}", route("/ai", ""), route("/ai/", "")),
        "routes[2].path",
        "another route already has the same host and path",
    );
    assert_only_problem(
        &format!(
            "{UPSTREAM}{}{}",
            route("/", "host = \"Chat.Example.com\""),
            route("/", "host = \"chat.example.com.\"")
        ),
        "routes[1].path",
        "another route already has the same host and path",
    );
    // Same path on different hosts is fine.
    assert_accepted(&format!(
        "{UPSTREAM}{ROUTE}{}",
        route("/", "host = \"chat.example.com\"")
    ));
}

#[test]
fn allow_that_lists_nobody() {
    assert_only_problem(
        &format!("{}{UPSTREAM}{}", session(""), route("/", "allow = {}")),
        "routes[0].allow",
        "lists nobody: give `emails`, `domains` or `groups`",
    );
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{}",
            session(""),
            route("/", "allow = { emails = [], groups = [] }")
        ),
        "routes[0].allow",
        "lists nobody",
    );
}

#[test]
fn require_session_false_with_allow() {
    assert_only_problem(
        &format!(
            "{}{UPSTREAM}{}",
            session(""),
            route(
                "/",
                "require_session = false\nallow = { groups = [\"staff\"] }"
            )
        ),
        "routes[0].require_session",
        "is false, but `allow` rules need a session",
    );
}

#[test]
fn routes_needing_a_session_without_a_session_section() {
    let errors = problems(&format!(
        "{UPSTREAM}{}{}{}",
        route("/", "require_session = true"),
        route("/a", "identity_headers = true"),
        route("/b", "allow = { emails = [\"ada@example.com\"] }")
    ));
    assert_eq!(errors.len(), 3, "{}", list(&errors));
    for (i, e) in errors.iter().enumerate() {
        assert_eq!(e.key, format!("routes[{i}]"));
        assert!(
            e.message
                .contains("needs a session (require_session, allow or identity_headers), but there is no [session] section"),
            "{e}"
        );
    }
}

#[test]
fn a_wrong_session_section_is_one_problem_not_one_per_route() {
    let errors = problems(&format!(
        "{UPSTREAM}[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ env = \"HANDOFF_TEST_UNSET_SECRET\" }}\nleeway_seconds = -1\n{}{}{}",
        route("/", "require_session = true"),
        route("/a", "identity_headers = true"),
        route("/b", "allow = { emails = [\"ada@example.com\"] }")
    ));
    assert_eq!(errors.len(), 1, "{}", list(&errors));
    assert_eq!(errors[0].key, "session.leeway_seconds");
}

#[test]
fn bad_identity_header_names() {
    assert_only_problem(
        &format!("{UPSTREAM}{ROUTE}[identity_headers]\nemail = \"X Handoff Email\"\n"),
        "identity_headers.email",
        "\"X Handoff Email\" is not a valid header name",
    );
    assert_only_problem(
        &format!("{UPSTREAM}{ROUTE}[identity_headers]\ngroups = \"Cookie\"\n"),
        "identity_headers.groups",
        "\"Cookie\" is a standard header; pick a custom name",
    );
    assert_only_problem(
        &format!("{UPSTREAM}{ROUTE}[identity_headers]\nemail = \"X-Handoff-User\"\n"),
        "identity_headers.email",
        "\"X-Handoff-User\" is used twice",
    );
}

#[test]
fn no_routes_at_all() {
    assert_only_problem(
        UPSTREAM,
        "routes",
        "at least one [[routes]] entry is needed",
    );
    assert_only_problem("", "routes", "at least one [[routes]] entry is needed");
}

#[test]
fn wrong_value_types_name_the_key() {
    let e = assert_only_problem(
        &format!("{}{UPSTREAM}{ROUTE}", session("leeway_seconds = \"sixty\"")),
        "session.leeway_seconds",
        "invalid type: string \"sixty\", expected u64",
    );
    assert!(e
        .to_string()
        .starts_with("session.leeway_seconds: invalid type"));
    assert_only_problem(
        &format!("[server]\nlisten = \"127.0.0.1:8080\"\n{UPSTREAM}{ROUTE}"),
        "server.listen",
        "expected a sequence",
    );
    assert_only_problem(
        &format!("{UPSTREAM}{}", route("/", "require_session = \"yes\"")),
        "routes[0].require_session",
        "invalid type: string \"yes\", expected a boolean",
    );
    assert_only_problem(
        &format!("[session]\nalgorithms = [\"HS256\"]\nsecret = {{ file = \"session-secret.txt\" }}\n{UPSTREAM}{ROUTE}"),
        "session",
        "missing field `cookie`",
    );
}

#[test]
fn one_broken_entry_does_not_hide_the_next() {
    // A typo in one route, a bad upstream name in the next, a bad path in the third, and a
    // broken upstream body: all four are reported.
    let config = format!(
        "[upstreams.intranet]\nservers = [\"127.0.0.1:9000\"]\n\
         [upstreams.broken]\nservers = [\"127.0.0.1:9001\"]\nread_timeout_ms = 0\n\
         {}{}{}{}",
        route("/a", "identity_header = true"),
        "[[routes]]\npath = \"/b\"\nupstream = \"intrante\"\n",
        route("b", ""),
        "[[routes]]\npath = \"/c\"\nupstream = \"broken\"\n",
    );
    let errors = problems(&config);
    assert_has_problem(
        &errors,
        "upstreams.broken.read_timeout_ms",
        "must be more than 0",
    );
    assert_has_problem(&errors, "routes[0].identity_header", "unknown field");
    assert_has_problem(
        &errors,
        "routes[1].upstream",
        "no upstream named \"intrante\" (defined: broken, intranet)",
    );
    assert_has_problem(&errors, "routes[2].path", "must start with `/`");
    // The route to the broken upstream is not blamed for it.
    assert_eq!(errors.len(), 4, "{}", list(&errors));
}

#[test]
fn errors_display_as_key_colon_message() {
    let err: ConfigErrors = from_toml_str(
        &format!(
            "[server]\nlisten = [\"nowhere\"]\n{UPSTREAM}{}",
            route("ai", "")
        ),
        &fixtures(),
    )
    .expect_err("two problems");
    let shown = err.to_string();
    assert!(shown.starts_with("config: 2 problems\n"), "{shown}");
    assert!(
        shown.contains("\n  server.listen[0]: \"nowhere\" is not an IP:port address"),
        "{shown}"
    );
    assert!(
        shown.contains("\n  routes[0] (ai).path: \"ai\" must start with `/`"),
        "{shown}"
    );
}

#[test]
fn path_readings_takes_all_or_segments() {
    assert_only_problem(
        &format!("{UPSTREAM}{}", route("/", "path_readings = \"strict\"")),
        "routes[0].path_readings",
        "unknown value \"strict\"; use \"all\" or \"segments\"",
    );
    let config = assert_accepted(&format!(
        "{UPSTREAM}{}{}{}",
        session(""),
        route("/a", "require_session = true"),
        route("/b", "require_session = true\npath_readings = \"segments\""),
    ));
    let readings: Vec<_> = config.routes.iter().map(|r| r.path_readings).collect();
    use crate::config::PathReadings;
    assert_eq!(readings, [PathReadings::All, PathReadings::Segments]);
    assert!(config.routes[0].guards_other_readings());
    assert!(!config.routes[1].guards_other_readings());
}

#[test]
fn display_name_is_printable_and_short() {
    let long = format!("\"{}\"", "x".repeat(81));
    for bad in ["\"\"", "\"   \"", "\"a\\u0007b\"", long.as_str()] {
        let text = format!(
            "[apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://chat.example.com\"\n\
             secret = {{ file = \"typingmind-secret.txt\" }}\ndisplay_name = {bad}\n{UPSTREAM}{}",
            route("/", "")
        );
        assert_only_problem(
            &text,
            "apps.chat.display_name",
            "1 to 80 printable characters",
        );
    }
}

#[test]
fn a_yourgpt_widget_names_its_ids_fields_and_script() {
    let app = |widget: &str| {
        format!(
            "[apps.gpt]\nkind = \"yourgpt\"\nclient_id = \"c\"\nsecret = {{ file = \"yourgpt-secret.txt\" }}\n\
             [apps.gpt.widget]\nsecret = {{ file = \"yourgpt-secret.txt\" }}\n{widget}\n{UPSTREAM}{}",
            route("/", "")
        )
    };
    assert_only_problem(
        &app("widget_ids = []"),
        "apps.gpt.widget.widget_ids",
        "name at least one widget id",
    );
    assert_only_problem(
        &app("widget_ids = [\"w\"]\nfields = [\"email\", \"shoe_size\"]"),
        "apps.gpt.widget.fields[1]",
        "\"shoe_size\" is not a field",
    );
    assert_only_problem(
        &app("widget_ids = [\"w\"]\next_user_id = \"none\"\nfields = [\"name\"]"),
        "apps.gpt.widget.fields",
        "send \"email\" or \"phone\"",
    );
    assert_only_problem(
        &app("widget_ids = [\"w\"]\nscript_url = \"widget.js\""),
        "apps.gpt.widget.script_url",
        "must be an http(s) URL",
    );
    assert_only_problem(
        &app("widget_ids = [\"w x\"]"),
        "apps.gpt.widget.widget_ids[0]",
        "is not a widget id",
    );
    let config = assert_accepted(&app("widget_ids = [\"w\"]"));
    let crate::config::AppKind::YourGpt(s) = &config.apps[0].kind else {
        panic!("a yourgpt app");
    };
    let w = s.widget.as_ref().unwrap();
    assert_eq!(w.script_url, "https://widget.yourgpt.ai/script.js");
    assert_eq!(w.ext_user_id, Some(crate::config::ContactField::Id));
    assert_eq!(w.fields.len(), 3);
}

#[test]
fn pages_links_are_refused_unless_they_lead_where_they_say() {
    let base = format!("{UPSTREAM}{}", route("/", ""));
    for (key, value) in [
        ("home_url", "//evil.example/"),
        ("home_url", "javascript:alert(1)"),
        ("home_url", "http:/\\\\evil.example/"),
        ("home_url", "https:evil.example"),
        ("home_url", "https:///evil.example"),
        ("home_url", "/\\tx"),
        ("help_desk_url", "javascript:alert(1)"),
        ("help_desk_url", "data:text/html,x"),
        ("help_desk_url", "mailto:help@example.com\\u0000"),
        ("request_access_url", "https:x?app={app}"),
        ("request_access_url", "https://{app}.example.com/"),
        ("request_access_url", "/request?app={app}"),
        ("organisation", "Acme\\u202Eemca"),
        ("help_desk", "line\\nbreak"),
    ] {
        let text = format!("{base}[pages]\n{key} = \"{value}\"\n");
        assert_only_problem(&text, &format!("pages.{key}"), "must");
    }
    let config = assert_accepted(&format!(
        "{base}[pages]\norganisation = \"Acme\"\nhome_url = \"https://intranet.example/\"\n\
         help_desk_url = \"mailto:help@example.com\"\n\
         request_access_url = \"https://forms.example/access?app={{app}}\"\n"
    ));
    assert_eq!(
        config.pages.request_access("/admin").unwrap().as_str(),
        "https://forms.example/access?app=%2Fadmin"
    );
}

#[test]
fn a_login_url_a_header_cannot_carry_is_refused_and_a_password_in_a_bad_url_is_not_echoed() {
    let base = format!("{UPSTREAM}{}", route("/", ""));
    let text = format!(
        "{base}[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\n\
         secret = {{ file = \"session-secret.txt\" }}\n\
         login_url = \"https://login.example/?next={{return_to}}&x=\\u0001\"\n"
    );
    assert_only_problem(
        &text,
        "session.login_url",
        "no spaces or control characters",
    );
    let text = format!("{base}[state]\nredis_url = \"redis://:SUPERPASSWORD@host:99999/0\"\n");
    let e = assert_only_problem(&text, "state.redis_url", "must be");
    assert!(!e.to_string().contains("SUPERPASSWORD"), "{e}");
}

#[test]
fn a_route_path_with_control_characters_cannot_forge_a_line_of_the_output() {
    let text = format!(
        "{UPSTREAM}[[routes]]\npath = \"/ai/\\u001b[31m\\r\\nfake: line\"\nupstream = \"nope\"\n"
    );
    for e in problems(&text) {
        let shown = e.to_string();
        assert!(!shown.contains(['\r', '\n', '\u{1b}']), "{shown:?}");
    }
}
