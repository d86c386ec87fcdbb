//! `handoff check`, the binary: every problem is found, named by its key path, explained, and
//! reported in one run; no secret value ever appears in the output; the reference config's
//! tables load. The loader's rules, section by section, are unit tests next to it
//! (src/config/tests/).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use handoff::internals::config::{from_toml_str, ConfigError};

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A plain upstream that resolves without DNS.
const UPSTREAM: &str = "[upstreams.intranet]\nservers = [\"127.0.0.1:9000\"]\n";

/// A `[session]` with the given algorithm list and key lines (no secret unless given).
fn session_with(algorithms: &str, key_lines: &str) -> String {
    format!("[session]\ncookie = \"intranet_session\"\nalgorithms = {algorithms}\n{key_lines}\n")
}

/// A route to [`UPSTREAM`] at `path` with `extra` lines.
fn route(path: &str, extra: &str) -> String {
    format!("[[routes]]\npath = \"{path}\"\nupstream = \"intranet\"\n{extra}\n")
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}\n"))
        .collect::<String>()
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
        // conf/apps/ and the reference's commented-out apps.
        "ZENDESK_JWT_SECRET",
        "METABASE_JWT_SECRET",
        "CANNY_SSO_KEY",
        "DISCOURSE_CONNECT_SECRET",
    ] {
        // Each its own value: no app may share the session's secret.
        match secret {
            Some(s) => cmd.env(var, format!("{s}-{var}")),
            None => cmd.env_remove(var),
        };
    }
    // The reference's [state] takes its Redis URL from here.
    match secret {
        Some(_) => cmd.env("HANDOFF_REDIS_URL", "redis://127.0.0.1:6379/0"),
        None => cmd.env_remove("HANDOFF_REDIS_URL"),
    };
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
        // Routes are named by their paths too.
        ("routes[0] (/).upstream", "no upstream named \"intrante\""),
        (
            "routes[1] (/_handoff/status).path",
            "is under server.endpoints_prefix",
        ),
        (
            "routes[2] (/chat).host",
            "\"chat example.com\" is not a host name",
        ),
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
    assert!(stderr.contains("routes[0] (/).upstream_typo"), "{stderr}");
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

#[test]
fn the_reference_documents_real_jwks_and_userinfo_keys() {
    // The commented-out [session.jwks], [session.userinfo], [log] and [state] tables, switched
    // on, must load.
    let reference = std::fs::read_to_string(manifest_dir().join("conf/handoff.toml"))
        .expect("reference config");
    let mut config = String::new();
    let mut switched_on = 0;
    let mut on = false;
    for line in reference.lines() {
        if [
            "# [session.jwks]",
            "# [session.userinfo]",
            "# [log]",
            "# [state]",
            "# [apps.help]",
            "# [apps.help.claims]",
            "# [apps.forum]",
            "# [apps.forum.payload]",
        ]
        .contains(&line)
        {
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
    assert_eq!(switched_on, 8, "the eight tables are in the reference");
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

/// Each example in conf/apps/, added to the reference config, passes `check`.
#[test]
fn the_app_examples_load_on_the_reference_config() {
    let reference = std::fs::read_to_string(manifest_dir().join("conf/handoff.toml")).unwrap();
    let examples = std::fs::read_dir(manifest_dir().join("conf/apps")).unwrap();
    let mut seen = Vec::new();
    for entry in examples {
        let path = entry.unwrap().path();
        let example = std::fs::read_to_string(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("handoff.toml");
        std::fs::write(&config, format!("{reference}\n{example}")).unwrap();
        let out = check(&config, Some("reference-config-test-secret"));
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{stdout}\n{}",
            path.display(),
            text(&out.stderr)
        );
        assert!(
            stdout.contains("OK (5 routes, 1 upstream, 3 apps)"),
            "{stdout}"
        );
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "canny.toml",
            "discourse.toml",
            "metabase.toml",
            "zendesk.toml"
        ]
    );
}

/// One wrong value in `[session]` is one line of `check`'s output — not that line and one more
/// for each of the three routes that need a session — and a route's problem names its path.
#[test]
fn check_reports_a_wrong_session_value_once_and_names_routes_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.toml");
    let config = format!(
        "{session}{UPSTREAM}{}{}{}",
        route("/", "require_session = true"),
        route("/wiki", "identity_headers = true"),
        route("/ai/chat", "allow = { groups = [\"ai-users\"] }"),
        session = session_with(
            "[\"HS256\"]",
            "secret = { env = \"INTRANET_SESSION_SECRET\" }\nleeway_seconds = \"a minute\""
        ),
    );
    std::fs::write(&path, config).unwrap();
    let out = check(&path, Some("check-test-session-secret"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let problems: Vec<&str> = stderr.lines().skip(1).collect();
    assert!(
        stderr.starts_with(&format!("{}: 1 problem\n", path.display())),
        "{stderr}"
    );
    assert_eq!(problems.len(), 1, "{stderr}");
    assert!(
        problems[0]
            .trim_start()
            .starts_with("session.leeway_seconds: "),
        "{stderr}"
    );

    // A route's own problem: its index and its path, so nobody counts [[routes]] entries.
    let config = format!(
        "{UPSTREAM}{}{}{}",
        route("/", ""),
        route("/wiki", ""),
        "[[routes]]\npath = \"/ai/chat\"\napp = \"typingmnd\"\n",
    );
    std::fs::write(&path, config).unwrap();
    let stderr = text(&check(&path, None).stderr);
    assert!(
        stderr.contains("\n  routes[2] (/ai/chat).app: no app named \"typingmnd\""),
        "{stderr}"
    );
}
