//! `[state]`: the fleet's Redis.

use std::time::Duration;

use super::*;

fn with_state(lines: &str) -> String {
    format!("{UPSTREAM}{ROUTE}[state]\n{lines}\n")
}

#[test]
fn a_valid_state_section_loads_with_its_defaults() {
    let config = assert_accepted(&with_state("redis_url = \"redis://10.0.0.5:6379/2\""));
    let state = config.state.expect("[state]");
    assert_eq!(state.redis_url.as_str(), "redis://10.0.0.5:6379/2");
    assert_eq!(state.key_prefix, "handoff:");
    assert_eq!(state.timeout, Duration::from_millis(200));
    let config = assert_accepted(&with_state(
        "redis_url = \"redis://:pw@redis.internal\"\nkey_prefix = \"fleet-a:\"\ntimeout_ms = 50",
    ));
    let state = config.state.expect("[state]");
    assert_eq!(
        (state.key_prefix.as_str(), state.timeout),
        ("fleet-a:", Duration::from_millis(50))
    );
    // Debug never shows the password.
    assert!(!format!("{state:?}").contains("pw"), "{state:?}");
    assert!(assert_accepted(&format!("{UPSTREAM}{ROUTE}"))
        .state
        .is_none());
}

#[test]
fn the_url_may_be_a_secret_reference_whose_value_is_never_echoed() {
    let config = assert_accepted(&with_state("redis_url = { file = \"redis-url.txt\" }"));
    assert_eq!(
        config.state.expect("[state]").redis_url.as_str(),
        "redis://:fixture-password@127.0.0.1:6390/0"
    );
    let e = assert_only_problem(
        &with_state("redis_url = { file = \"session-secret.txt\" }"),
        "state.redis_url",
        "does not hold a Redis URL",
    );
    assert!(!e.message.contains(
        &String::from_utf8_lossy(&std::fs::read(fixtures().join("session-secret.txt")).unwrap())
            .trim()
            .to_string()
    ));
    assert_only_problem(
        &with_state(&format!("redis_url = {{ env = \"{UNSET_ENV}\" }}")),
        "state.redis_url",
        UNSET_ENV,
    );
}

#[test]
fn broken_state_settings_name_their_key() {
    for (url, why) in [
        ("http://10.0.0.5:6379", "a Redis URL"),
        ("rediss://10.0.0.5:6379", "a Redis URL"),
        ("redis://10.0.0.5:6379/zero", "database number"),
        ("redis:///tmp/redis.sock", "a host"),
        ("not a url", "a Redis URL"),
    ] {
        assert_only_problem(
            &with_state(&format!("redis_url = \"{url}\"")),
            "state.redis_url",
            why,
        );
    }
    assert_only_problem(&with_state(""), "state", "redis_url");
    assert_only_problem(
        &with_state("redis_url = \"redis://r:6379\"\ncolour = 1"),
        "state.colour",
        "unknown field",
    );
    let errors = problems(&with_state(
        "redis_url = \"redis://r:6379\"\nkey_prefix = \"has space\"\ntimeout_ms = 0",
    ));
    assert_has_problem(&errors, "state.key_prefix", "visible ASCII");
    assert_has_problem(&errors, "state.timeout_ms", "between 1 and 10000");
}
