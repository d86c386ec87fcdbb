//! `[apps.NAME]`: YourGPT and TypingMind apps and the routes into them.

use super::*;

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
    let config = crate::config::from_toml_str(&app_config(GOOD_APP, ""), &fixtures())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.apps.len(), 1);
    let route = config.routes.iter().find(|r| r.path == "/ai/gpt").unwrap();
    assert!(
        route.require_session,
        "a handoff route always requires a session"
    );
    // The values, and the defaults of everything not written.
    let crate::config::AppKind::YourGpt(s) = &config.apps[0].kind else {
        panic!("not a YourGPT app: {:?}", config.apps[0].kind)
    };
    assert_eq!(s.client_id, "cid");
    let fixture = std::fs::read(fixtures().join("yourgpt-secret.txt")).unwrap();
    assert_eq!(
        s.secret.expose(),
        fixture.strip_suffix(b"\n").unwrap_or(&fixture)
    );
    assert_eq!(s.api_url, "https://api.yourgpt.ai");
    assert_eq!(s.login_url, "https://chatbot.yourgpt.ai");
    assert_eq!(s.partner_id, None);
    assert_eq!(
        (
            s.token_ttl,
            s.connect_timeout,
            s.timeout,
            s.email_resend_window
        ),
        (
            std::time::Duration::from_secs(300),
            std::time::Duration::from_secs(3),
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(60)
        )
    );
    assert_eq!(s.emails_per_minute, 5);
    assert!(config.apps[0].allow.is_none());
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
    let config = crate::config::from_toml_str(&app_config(&body, ""), &fixtures())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.apps.len(), 1);
    assert_eq!(config.apps[0].needed_claims().len(), 1);
    let crate::config::AppKind::TypingMind(s) = &config.apps[0].kind else {
        panic!("not a TypingMind app: {:?}", config.apps[0].kind)
    };
    assert_eq!(
        s.identify_by,
        crate::config::IdentifyBy::Id {
            claim: crate::identity::ClaimPath::new("tm.id")
        }
    );
    assert_eq!(s.code_ttl, std::time::Duration::from_secs(60));
    assert!(s.widget);
    assert_eq!(s.widget_script_suffix, "widget.js");
    assert_eq!(s.widget_max_page_bytes, 8 * 1024 * 1024);
    assert!(s.user_fields.is_empty());
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
