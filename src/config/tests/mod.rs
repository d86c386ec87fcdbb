//! The config loader, one section at a time: every problem is found, named by its key path
//! and explained, in one run; valid configs load to the values they say. (`handoff check`, the
//! binary, is tested end to end in tests/gateway/config_check.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apps;
mod keys;
mod loader;
mod session;
mod state;
mod token_apps;

use std::path::PathBuf;

use super::{from_toml_str, ConfigError, ConfigErrors};

/// The test keys and secrets (tests/fixtures), which relative paths in these configs name.
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

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
fn assert_accepted(text: &str) -> crate::config::Config {
    from_toml_str(text, &fixtures())
        .unwrap_or_else(|e| panic!("config should be accepted:\n{e}\nconfig:\n{text}"))
}
