//! `handoff check` and the config loader: every problem is found, named by its key path,
//! explained, and reported in one run — and no secret value ever appears in the output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use handoff::config::{from_toml_str, ConfigError, ConfigErrors};

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A plain upstream that resolves without DNS.
const UPSTREAM: &str = "[upstreams.intranet]\nservers = [\"127.0.0.1:9000\"]\n";

/// A catch-all route to [`UPSTREAM`].
const ROUTE: &str = "[[routes]]\npath = \"/\"\nupstream = \"intranet\"\n";

/// An environment variable no test ever sets.
const UNSET_ENV: &str = "HANDOFF_CONFIG_CHECK_SURELY_UNSET";

/// A valid `[session]` (HS256, the fixture secret file) followed by `extra` lines.
fn session(extra: &str) -> String {
    format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = [\"HS256\"]\n\
         secret = {{ file = \"session-secret.txt\" }}\n{extra}\n"
    )
}

/// A `[session]` with the given algorithm list and key lines (no secret unless given).
fn session_with(algorithms: &str, key_lines: &str) -> String {
    format!("[session]\ncookie = \"intranet_session\"\nalgorithms = {algorithms}\n{key_lines}\n")
}

/// A route to [`UPSTREAM`] at `path` with `extra` lines.
fn route(path: &str, extra: &str) -> String {
    format!("[[routes]]\npath = \"{path}\"\nupstream = \"intranet\"\n{extra}\n")
}

/// Validates `text` (relative paths in `tests/fixtures`) and returns its problems; fails if the
/// config is accepted.
fn problems(text: &str) -> Vec<ConfigError> {
    match from_toml_str(text, &fixtures()) {
        Ok(_) => panic!("config was accepted but should not be:\n{text}"),
        Err(e) => e.errors,
    }
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}\n"))
        .collect::<String>()
}

/// Asserts that `text` has exactly one problem, at `key`, whose message contains `fragment`.
#[track_caller]
fn assert_only_problem(text: &str, key: &str, fragment: &str) -> ConfigError {
    let errors = problems(text);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one problem ({key}: …{fragment}…), got:\n{}\nconfig:\n{text}",
        list(&errors)
    );
    let e = errors.into_iter().next().expect("one problem");
    assert_eq!(e.key, key, "key path of {e}\nconfig:\n{text}");
    assert!(
        e.message.contains(fragment),
        "message of {key} should contain {fragment:?}, got {:?}\nconfig:\n{text}",
        e.message
    );
    e
}

/// Asserts that among the problems of `text` there is one at `key` containing `fragment`.
#[track_caller]
fn assert_has_problem(errors: &[ConfigError], key: &str, fragment: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.key == key && e.message.contains(fragment)),
        "expected a problem {key}: …{fragment}…, got:\n{}",
        list(errors)
    );
}

#[track_caller]
fn assert_accepted(text: &str) -> handoff::config::Config {
    from_toml_str(text, &fixtures())
        .unwrap_or_else(|e| panic!("config should be accepted:\n{e}\nconfig:\n{text}"))
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `handoff check --config PATH`, with the reference config's secrets (`INTRANET_SESSION_SECRET`,
/// `YOURGPT_SSO_SECRET`, `TYPINGMIND_JWT_SECRET`) set to `secret` (or removed).
fn check(path: &Path, secret: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_handoff"));
    cmd.args(["check", "--config"])
        .arg(path)
        .env_remove("HANDOFF_CONFIG")
        .env("RUST_LOG", "warn");
    for var in [
        "INTRANET_SESSION_SECRET",
        "YOURGPT_SSO_SECRET",
        "TYPINGMIND_JWT_SECRET",
        "HANDOFF_LOG_HASH_KEY",
    ] {
        match secret {
            Some(s) => cmd.env(var, s),
            None => cmd.env_remove(var),
        };
    }
    cmd.output().expect("the handoff binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The binary: `handoff check`
// ---------------------------------------------------------------------------------------------

#[test]
fn check_accepts_the_demo_config() {
    let out = check(&manifest_dir().join("conf/demo.toml"), None);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("OK"), "stdout: {stdout}");
    assert!(
        stdout.contains("3 routes, 1 upstream, 2 apps"),
        "stdout: {stdout}"
    );
}

#[test]
fn check_accepts_the_reference_config_when_its_secret_is_set() {
    let out = check(
        &manifest_dir().join("conf/handoff.toml"),
        Some("reference-config-test-secret"),
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("OK (4 routes, 1 upstream, 2 apps)"),
        "stdout: {stdout}"
    );
}

#[test]
fn check_names_the_missing_secret_variable_and_exits_2() {
    let out = check(&manifest_dir().join("conf/handoff.toml"), None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("session.secret: environment variable INTRANET_SESSION_SECRET is not set"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("apps.yourgpt.secret: environment variable YOURGPT_SSO_SECRET is not set"),
        "stderr:\n{stderr}"
    );
    assert!(stderr.contains("conf/handoff.toml"), "stderr:\n{stderr}");
    assert!(!text(&out.stdout).contains("OK"));
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}

#[test]
fn check_reports_every_problem_in_one_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = r#"
[server]
listen = ["localhost:8080"]

[session]
cookie = "intranet_session"
algorithms = ["HS256", "none"]
secret = { file = "missing-secret.txt" }

[identity_headers]
email = "X Handoff Email"

[upstreams.intranet]
servers = ["127.0.0.1:9000"]

[upstreams.intranet.health_check]
type = "icmp"

[[routes]]
path = "/"
upstream = "intrante"

[[routes]]
path = "/_handoff/status"
upstream = "intranet"

[[routes]]
path = "/chat"
host = "chat example.com"
upstream = "intranet"

[apps.chat]
vendor = "x"
"#;
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, config).expect("write config");
    let out = check(&path, None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    assert!(!text(&out.stdout).contains("OK"));

    let expected = [
        ("apps.chat.kind", "missing: say which app this is"),
        (
            "server.listen[0]",
            "\"localhost:8080\" is not an IP:port address",
        ),
        ("session.algorithms[1]", "`none` is never allowed"),
        ("session.secret", "cannot read secret file"),
        (
            "identity_headers.email",
            "\"X Handoff Email\" is not a valid header name",
        ),
        (
            "upstreams.intranet.health_check.type",
            "\"icmp\" is not a health check type",
        ),
        ("routes[0].upstream", "no upstream named \"intrante\""),
        ("routes[1].path", "is under server.endpoints_prefix"),
        ("routes[2].host", "\"chat example.com\" is not a host name"),
    ];
    for (key, fragment) in expected {
        assert!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{key}: ")) && l.contains(fragment)),
            "stderr should list `{key}: …{fragment}…`:\n{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!("{}: 9 problems", path.display())),
        "stderr:\n{stderr}"
    );
    // The secret file is looked for next to the config file, not in the working directory.
    assert!(
        stderr.contains(&dir.path().join("missing-secret.txt").display().to_string()),
        "stderr:\n{stderr}"
    );
}

#[test]
fn check_resolves_relative_paths_from_the_config_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("secret.txt"), "a-relative-secret\n").expect("secret");
    std::fs::copy(
        fixtures().join("rsa_public.pem"),
        dir.path().join("sso.pem"),
    )
    .expect("key");
    let config = format!(
        "{}{UPSTREAM}{}",
        session_with(
            "[\"HS256\", \"RS256\"]",
            "secret = { file = \"secret.txt\" }\npublic_key_file = \"sso.pem\""
        ),
        route("/", "identity_headers = true")
    );
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, config).expect("write config");
    let out = check(&path, None);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("OK (1 route, 1 upstream, 0 apps)"));
}

#[test]
fn check_with_a_missing_config_file_fails_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such-config.toml");
    let out = check(&path, None);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(out.status.code().is_some(), "killed by a signal");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "stderr should name the path:\n{stderr}"
    );
    assert!(
        stderr.contains("cannot read the config file"),
        "stderr:\n{stderr}"
    );

    // A folder instead of a file: same clean refusal.
    let out = check(dir.path(), None);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    assert!(
        stderr.contains("cannot read the config file"),
        "stderr:\n{stderr}"
    );
}

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
    assert_eq!(
        e.to_string(),
        "routes[0].upstream: no upstream named \"intrante\" (defined: intranet)"
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
    assert!(handoff::config::from_toml_str(&config, &fixtures()).is_ok());
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
                .contains("needs a session (require_session, allow or identity_headers), but there is no valid [session] section"),
            "{e}"
        );
    }
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
        shown.contains("\n  routes[0].path: \"ai\" must start with `/`"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets never leak into error output
// ---------------------------------------------------------------------------------------------

const CANARY: &str = "canary-S3CR3T-7f9e2d41";

#[test]
fn secret_values_never_appear_in_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("secret.txt"), format!("{CANARY}\n")).expect("secret");
    // The secret is read fine, but the config has other problems — some of them in the session
    // section itself, and the secret file is also (wrongly) used where a key or cert is expected.
    let config = format!(
        "[server]\nlisten = [\"nowhere\"]\n\
         [server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert_file = \"secret.txt\"\nkey_file = \"missing.pem\"\n\
         [session]\ncookie = \"bad cookie\"\nalgorithms = [\"HS256\", \"RS256\", \"none\"]\n\
         secret = {{ file = \"secret.txt\" }}\npublic_key_file = \"secret.txt\"\n\
         login_url = \"ftp://x\"\n\
         {UPSTREAM}{}",
        route("/_handoff/x", "allow = {}")
    );
    let err = from_toml_str(&config, dir.path()).expect_err("broken config");
    assert!(err.errors.len() >= 6, "{err}");
    assert_has_problem(
        &err.errors,
        "session.public_key_file",
        "not a PEM public key",
    );
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains(CANARY), "the secret leaked:\n{shown}");
    assert!(
        !shown.contains("S3CR3T"),
        "part of the secret leaked:\n{shown}"
    );

    // The same config through the binary.
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, &config).expect("write config");
    let out = check(&path, None);
    assert_eq!(out.status.code(), Some(2));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("session.public_key_file"), "{all}");
    assert!(!all.contains(CANARY), "the secret leaked:\n{all}");
}

#[test]
fn env_and_literal_secrets_never_appear_in_errors() {
    // An env secret that is set, in a config with other problems, through the binary.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = [\"HS256\", \"none\"]\n\
         secret = {{ env = \"INTRANET_SESSION_SECRET\" }}\n{UPSTREAM}{}",
        route("/", "upstream_typo = 1")
    );
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, config).expect("write config");
    let out = check(&path, Some(CANARY));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("session.algorithms[1]"), "{stderr}");
    assert!(stderr.contains("routes[0].upstream_typo"), "{stderr}");
    assert!(!stderr.contains(CANARY), "the secret leaked:\n{stderr}");

    // A literal string secret is refused without being repeated.
    let err = from_toml_str(
        &format!(
            "{}{UPSTREAM}{}",
            session_with("[\"HS256\"]", &format!("secret = \"{CANARY}\"")),
            route("ai", "")
        ),
        &fixtures(),
    )
    .expect_err("literal secret");
    assert_has_problem(&err.errors, "session.secret", "literal secret is refused");
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains(CANARY), "the secret leaked:\n{shown}");
}

// ---------------------------------------------------------------------------------------------
// [apps]
// ---------------------------------------------------------------------------------------------

fn app_config(app_body: &str, route_extra: &str) -> String {
    format!(
        "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ file = \"session-secret.txt\" }}\n\
         {UPSTREAM}{ROUTE}[apps.gpt]\n{app_body}\n[[routes]]\npath = \"/ai/gpt\"\napp = \"gpt\"\n{route_extra}\n"
    )
}

const GOOD_APP: &str =
    "kind = \"yourgpt\"\nclient_id = \"cid\"\nsecret = { file = \"yourgpt-secret.txt\" }\n";

#[test]
fn a_valid_yourgpt_app_and_route() {
    let config = handoff::config::from_toml_str(&app_config(GOOD_APP, ""), &fixtures())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.apps.len(), 1);
    let route = config.routes.iter().find(|r| r.path == "/ai/gpt").unwrap();
    assert!(
        route.require_session,
        "a handoff route always requires a session"
    );
}

#[test]
fn broken_apps_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("kind = \"yourgtp\"\n", "apps.gpt.kind", "unknown app kind \"yourgtp\""),
        ("client_id = \"x\"\n", "apps.gpt.kind", "missing: say which app this is"),
        (
            "kind = \"yourgpt\"\nclient_id = \"cid\"\nsecret = \"literal\"\n",
            "apps.gpt.secret",
            "literal secret is refused",
        ),
        (
            "kind = \"yourgpt\"\nclient_id = \"cid\"\nsecret = { env = \"HANDOFF_TEST_NO_SUCH_VAR\" }\n",
            "apps.gpt.secret",
            "HANDOFF_TEST_NO_SUCH_VAR is not set",
        ),
        (
            "kind = \"yourgpt\"\nclient_id = \"\"\nsecret = { file = \"yourgpt-secret.txt\" }\n",
            "apps.gpt.client_id",
            "must not be empty",
        ),
        (
            "kind = \"yourgpt\"\nsecret = { file = \"yourgpt-secret.txt\" }\n",
            "apps.gpt",
            "missing field `client_id`",
        ),
    ];
    for (body, key, fragment) in cases {
        assert_only_problem(&app_config(body, ""), key, fragment);
    }
    let with = |extra: &str| app_config(&format!("{GOOD_APP}{extra}\n"), "");
    assert_only_problem(
        &with("api_url = \"ftp://api.yourgpt.ai\""),
        "apps.gpt.api_url",
        "must be an http(s) URL",
    );
    assert_only_problem(
        &with("login_url = \"chatbot.yourgpt.ai\""),
        "apps.gpt.login_url",
        "must be an http(s) URL",
    );
    assert_only_problem(
        &with("token_ttl_seconds = 7200"),
        "apps.gpt.token_ttl_seconds",
        "out of range: 1 to 3600",
    );
    assert_only_problem(
        &with("emails_per_minute = 0"),
        "apps.gpt.emails_per_minute",
        "must be at least 1",
    );
    assert_only_problem(
        &with("timeout_ms = 0"),
        "apps.gpt.timeout_ms",
        "more than 0",
    );
    assert_only_problem(
        &with("clientid = \"x\""),
        "apps.gpt.clientid",
        "unknown field `clientid`",
    );
}

#[test]
fn handoff_routes_refuse_what_does_not_apply() {
    assert_only_problem(
        &app_config(GOOD_APP, "require_session = false"),
        "routes[1].require_session",
        "always requires a session",
    );
    assert_only_problem(
        &app_config(GOOD_APP, "identity_headers = true"),
        "routes[1].identity_headers",
        "identity headers do not apply",
    );
    assert_only_problem(
        &app_config(GOOD_APP, "upstream = \"intranet\""),
        "routes[1]",
        "give either `upstream` or `app`, not both",
    );
    // A handoff route without a [session] section.
    let config = format!(
        "{UPSTREAM}{ROUTE}[apps.gpt]\n{GOOD_APP}[[routes]]\npath = \"/ai\"\napp = \"gpt\"\n"
    );
    assert_only_problem(&config, "routes[1]", "needs a session");
    // A route naming an app that is itself broken is not blamed as well.
    let broken = app_config(
        "kind = \"yourgpt\"\nclient_id = \"cid\"\nsecret = \"x\"\n",
        "",
    );
    let errors = problems(&broken);
    assert_eq!(errors.len(), 1, "{}", list(&errors));
}

const TM_APP: &str = "kind = \"typingmind\"\ninstance_url = \"https://chat.example.test\"\nsecret = { file = \"typingmind-secret.txt\" }\n";

#[test]
fn a_valid_typingmind_app_and_the_claims_it_needs() {
    let body = format!(
        "{TM_APP}identify_by = \"id\"\nid_claim = \"tm.id\"\nwidget = true\ncode_ttl_seconds = 60\n"
    );
    let config = handoff::config::from_toml_str(&app_config(&body, ""), &fixtures())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.apps.len(), 1);
    assert_eq!(config.apps[0].needed_claims().len(), 1);
}

#[test]
fn broken_typingmind_apps_name_their_key() {
    let with = |extra: &str| app_config(&format!("{TM_APP}{extra}\n"), "");
    assert_only_problem(
        &with("identify_by = \"phone\""),
        "apps.gpt.identify_by",
        "\"phone\" is not a payload shape",
    );
    assert_only_problem(
        &with("identify_by = \"id\""),
        "apps.gpt.id_claim",
        "needs `id_claim`",
    );
    assert_only_problem(
        &with("id_claim = \"tm_id\""),
        "apps.gpt.id_claim",
        "only applies with identify_by = \"id\"",
    );
    assert_only_problem(
        &with("identify_by = \"email\"\nuser_fields = { dept = \"d\" }"),
        "apps.gpt.user_fields",
        "only applies with identify_by = \"user\"",
    );
    assert_only_problem(
        &with("user_fields = { email = \"mail\" }"),
        "apps.gpt.user_fields.email",
        "always sent",
    );
    assert_only_problem(
        &with("code_ttl_seconds = 0"),
        "apps.gpt.code_ttl_seconds",
        "out of range",
    );
    assert_only_problem(
        &with("widget_script_suffix = \"widget.js?v=1\""),
        "apps.gpt.widget_script_suffix",
        "end of a path",
    );
    assert_only_problem(
        &with("widget_max_page_bytes = 0"),
        "apps.gpt.widget_max_page_bytes",
        "more than 0",
    );
    assert_only_problem(
        &app_config(
            "kind = \"typingmind\"\ninstance_url = \"chat.example.test\"\nsecret = { file = \"typingmind-secret.txt\" }\n",
            "",
        ),
        "apps.gpt.instance_url",
        "must be an http(s) URL",
    );
    assert_only_problem(
        &app_config(
            "kind = \"typingmind\"\ninstance_url = \"https://x.test\"\nsecret = \"s\"\n",
            "",
        ),
        "apps.gpt.secret",
        "literal secret is refused",
    );
}

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
    assert_accepted(&jwks_session(
        "cache_seconds = 300\nmin_cache_seconds = 30\nmax_cache_seconds = 3600\n\
         unknown_kid_cooldown_seconds = 10\ntimeout_ms = 1000\nstartup_wait_ms = 0",
    ));
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

#[test]
fn the_reference_documents_real_jwks_and_userinfo_keys() {
    // The commented-out [session.jwks], [session.userinfo] and [log] tables, switched on, must
    // load.
    let reference = std::fs::read_to_string(manifest_dir().join("conf/handoff.toml"))
        .expect("reference config");
    let mut config = String::new();
    let mut switched_on = 0;
    let mut on = false;
    for line in reference.lines() {
        if ["# [session.jwks]", "# [session.userinfo]", "# [log]"].contains(&line) {
            on = true;
            switched_on += 1;
        }
        if line.trim().is_empty() {
            on = false;
        }
        match line.strip_prefix("# ") {
            Some(rest) if on => config.push_str(rest),
            _ => config.push_str(line),
        }
        config.push('\n');
    }
    assert_eq!(switched_on, 3, "the three tables are in the reference");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("handoff.toml");
    std::fs::write(&path, &config).expect("write");
    let out = check(&path, Some("reference-config-test-secret"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

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
    assert_eq!(config.log.format, handoff::config::LogFormat::Json);
    assert!(config.log.access && !config.log.query && config.log.file.is_none());
    assert!(matches!(
        config.log.person,
        handoff::config::PersonInLog::Id
    ));
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
            "at least 1",
        ),
        (
            "h2_idle_timeout_seconds = 0",
            "server.h2_idle_timeout_seconds",
            "at least 1",
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
    assert_eq!(session.sources, vec![handoff::session::Source::Userinfo]);
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
    assert_eq!(u.on_error, handoff::session::userinfo::OnError::Closed);
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
    use handoff::paths::EscapedSlashes;
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
