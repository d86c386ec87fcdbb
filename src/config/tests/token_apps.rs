//! `kind = "jwt_link"` and `kind = "discourse_connect"`: their defaults, and every value
//! `check` refuses, each named by its key path.

use super::*;
use crate::apps::claims::{ClaimSource, PersonField};
use crate::config::{AppKind, Delivery};

fn config_with(app_body: &str) -> String {
    format!(
        "[session]\ncookie = \"s\"\nalgorithms = [\"HS256\"]\nsecret = {{ file = \"session-secret.txt\" }}\n\
         {UPSTREAM}{ROUTE}[apps.app]\n{app_body}\n[[routes]]\npath = \"/apps/app\"\napp = \"app\"\n"
    )
}

const LINK: &str = "kind = \"jwt_link\"\nurl = \"https://acme.zendesk.com/access/jwt\"\n\
                    secret = { file = \"zendesk-secret.txt\" }\n";
const CLAIMS: &str = "[apps.app.claims]\nemail = \"email\"\n";

#[test]
fn a_jwt_link_app_and_its_defaults() {
    let config = assert_accepted(&config_with(&format!(
        "{LINK}return_to_param = \"return_to\"\n[apps.app.claims]\nemail = \"email\"\n\
         tags = {{ field = \"groups\", optional = true }}\nteam = {{ claim = \"org.team\" }}\n\
         organization = {{ value = \"Acme\" }}\nlevel = {{ value = 3 }}\n"
    )));
    let AppKind::JwtLink(s) = &config.apps[0].kind else {
        panic!("{:?}", config.apps[0].kind)
    };
    assert_eq!(s.token_param, "jwt");
    assert_eq!(s.delivery, Delivery::Redirect);
    assert_eq!(s.algorithm, jsonwebtoken::Algorithm::HS256);
    assert_eq!(s.token_ttl, std::time::Duration::from_secs(120));
    assert_eq!(s.kid, None);
    let rt = s.return_to.as_ref().unwrap();
    assert_eq!(
        rt.site.as_str(),
        "https://acme.zendesk.com/",
        "site_url defaults to url's origin"
    );
    let rules: Vec<(&str, &ClaimSource, bool)> = s
        .claims
        .rules
        .iter()
        .map(|r| (r.name.as_str(), &r.source, r.optional))
        .collect();
    assert_eq!(rules.len(), 5);
    assert!(rules.contains(&("tags", &ClaimSource::Field(PersonField::Groups), true)));
    assert!(rules.contains(&("level", &ClaimSource::Value(serde_json::json!(3)), false)));
    // A session claim the template reads is read into the identity.
    assert!(config
        .session
        .as_ref()
        .unwrap()
        .mapping
        .extra
        .iter()
        .any(|p| p.as_str() == "org.team"));
}

#[test]
fn jwt_link_values_that_cannot_work_are_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "url = \"http://acme.zendesk.com/x\"",
            "apps.app.url",
            "must be https://",
        ),
        (
            "url = \"https://u:pw@acme.zendesk.com/x\"",
            "apps.app.url",
            "user name or password",
        ),
        (
            "url = \"acme.zendesk.com/x\"",
            "apps.app.url",
            "absolute https:// URL",
        ),
        (
            "url = \"https://acme.zendesk.com/x#y\"",
            "apps.app.url",
            "#fragment",
        ),
        (
            "url = \"https://acme.zendesk.com/x?jwt=1\"",
            "apps.app.url",
            "already has a \"jwt\" parameter",
        ),
        (
            "delivery = \"post\"",
            "apps.app.delivery",
            "\"redirect\" or \"form_post\"",
        ),
        (
            "token_param = \"\"",
            "apps.app.token_param",
            "not a parameter name",
        ),
        (
            "token_param = \"a b\"",
            "apps.app.token_param",
            "not a parameter name",
        ),
        (
            "return_to_param = \"jwt\"",
            "apps.app.return_to_param",
            "must differ from token_param",
        ),
        (
            "site_url = \"https://acme.zendesk.com\"",
            "apps.app.site_url",
            "only applies with return_to_param",
        ),
        (
            "return_to_param = \"r\"\nsite_url = \"https://x.example/?a=1\"",
            "apps.app.site_url",
            "must not have a query",
        ),
        (
            "algorithm = \"HS257\"",
            "apps.app.algorithm",
            "not a JWT algorithm",
        ),
        (
            "algorithm = \"none\"",
            "apps.app.algorithm",
            "not a JWT algorithm",
        ),
        ("kid = \"\"", "apps.app.kid", "printable"),
        (
            "token_ttl_seconds = 0",
            "apps.app.token_ttl_seconds",
            "out of range",
        ),
        (
            "token_ttl_seconds = 3601",
            "apps.app.token_ttl_seconds",
            "out of range",
        ),
        (
            "private_key = { file = \"rsa_private.pem\" }",
            "apps.app.private_key",
            "does not apply to HS256",
        ),
    ];
    for (line, key, fragment) in cases {
        let body = format!("{LINK}{line}\n{CLAIMS}");
        // A later key of the same name replaces the earlier one.
        let body = if line.starts_with("url = ") {
            body.replace("url = \"https://acme.zendesk.com/access/jwt\"\n", "")
        } else {
            body
        };
        assert_only_problem(&config_with(&body), key, fragment);
    }
    // Plain http is fine on loopback (stand-ins, tests).
    assert_accepted(&config_with(&format!(
        "kind = \"jwt_link\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = {{ file = \"zendesk-secret.txt\" }}\n{CLAIMS}"
    )));
}

#[test]
fn a_key_must_fit_its_algorithm() {
    let with = |alg: &str, key: &str| {
        config_with(&format!(
            "kind = \"jwt_link\"\nurl = \"https://metabase.example/auth/sso\"\nalgorithm = \"{alg}\"\n{key}\n{CLAIMS}"
        ))
    };
    assert_accepted(&with(
        "RS256",
        "private_key = { file = \"rsa_private.pem\" }",
    ));
    assert_accepted(&with(
        "PS256",
        "private_key = { file = \"rsa_private.pem\" }",
    ));
    assert_accepted(&with(
        "ES256",
        "private_key = { file = \"ec_private.pem\" }",
    ));
    assert_only_problem(
        &with("ES256", "private_key = { file = \"rsa_private.pem\" }"),
        "apps.app.private_key",
        "cannot sign ES256 with it",
    );
    assert_only_problem(
        &with("RS256", "private_key = { file = \"zendesk-secret.txt\" }"),
        "apps.app.private_key",
        "cannot sign RS256 with it",
    );
    assert_only_problem(
        &with("RS256", ""),
        "apps.app.private_key",
        "missing: RS256 signs with a PEM private key",
    );
    assert_only_problem(
        &with("HS512", ""),
        "apps.app.secret",
        "missing: HS512 signs with the shared secret",
    );
    let both = with(
        "RS256",
        "private_key = { file = \"rsa_private.pem\" }\nsecret = { file = \"zendesk-secret.txt\" }",
    );
    assert_only_problem(&both, "apps.app.secret", "does not apply to RS256");
    // A key is never echoed.
    let errors = problems(&with(
        "ES256",
        "private_key = { file = \"rsa_private.pem\" }",
    ));
    let pem = std::fs::read_to_string(fixtures().join("rsa_private.pem")).unwrap();
    let line = pem.lines().nth(1).unwrap();
    assert!(!list(&errors).contains(line));
}

#[test]
fn claim_templates_are_checked_line_by_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "email = \"mail\"",
            "apps.app.claims.email",
            "\"mail\" is not an [identity] field",
        ),
        (
            "email = { field = \"e-mail\" }",
            "apps.app.claims.email",
            "not an [identity] field",
        ),
        (
            "org = { value = \"\" }",
            "apps.app.claims.org.value",
            "is empty",
        ),
        (
            "org = { value = [] }",
            "apps.app.claims.org.value",
            "is empty",
        ),
        (
            "team = { claim = \" \" }",
            "apps.app.claims.team.claim",
            "must name a session claim",
        ),
        (
            "iat = { value = 1 }",
            "apps.app.claims.iat",
            "set by the gateway",
        ),
        ("jti = \"id\"", "apps.app.claims.jti", "set by the gateway"),
        ("exp = \"id\"", "apps.app.claims.exp", "set by the gateway"),
        ("x = 3", "apps.app.claims.x", "must be an [identity] field"),
        (
            "x = { field = \"id\", value = 1 }",
            "apps.app.claims.x",
            "exactly one of field, claim or value",
        ),
        (
            "x = { optional = true }",
            "apps.app.claims.x",
            "exactly one of field, claim or value",
        ),
        (
            "x = { fields = \"id\" }",
            "apps.app.claims.x.fields",
            "unknown key",
        ),
        (
            "x = { field = \"id\", optional = \"yes\" }",
            "apps.app.claims.x.optional",
            "true or false",
        ),
        (
            "x = { value = 1, optional = true }",
            "apps.app.claims.x.optional",
            "always there",
        ),
    ];
    for (line, key, fragment) in cases {
        let body = format!("{LINK}[apps.app.claims]\nemail = \"email\"\n{line}\n");
        // `email = …` twice is a TOML error: those cases replace the first.
        let body = if line.starts_with("email") {
            body.replace("email = \"email\"\n", "")
        } else {
            body
        };
        assert_only_problem(&config_with(&body), key, fragment);
    }
    assert_only_problem(&config_with(LINK), "apps.app.claims", "missing");
    assert_only_problem(
        &config_with(&format!("{LINK}[apps.app.claims]\n")),
        "apps.app.claims",
        "at least one claim",
    );
}

const FORUM: &str = "kind = \"discourse_connect\"\nforum_url = \"https://forum.example\"\n\
                     secret = { file = \"discourse-secret.txt\" }\n";

#[test]
fn a_discourse_app_and_its_default_payload() {
    let config = assert_accepted(&config_with(FORUM));
    let AppKind::DiscourseConnect(s) = &config.apps[0].kind else {
        panic!("{:?}", config.apps[0].kind)
    };
    let names: Vec<(&str, bool)> = s
        .payload
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.optional))
        .collect();
    assert_eq!(
        names,
        [
            ("external_id", false),
            ("email", false),
            ("username", true),
            ("name", true)
        ]
    );
    let cases: &[(&str, &str, &str)] = &[
        ("[apps.app.payload]\nemail = \"email\"", "apps.app.payload.external_id", "Discourse requires it"),
        (
            "[apps.app.payload]\nemail = \"email\"\nexternal_id = { field = \"id\", optional = true }",
            "apps.app.payload.external_id",
            "must not be optional",
        ),
        ("[apps.app.payload]\nemail = \"email\"\nexternal_id = \"id\"\nnonce = \"id\"", "apps.app.payload.nonce", "set by the gateway"),
        (
            "[apps.app.payload]\nemail = \"email\"\nexternal_id = \"id\"\ncustom = { value = { a = 1 } }",
            "apps.app.payload.custom.value",
            "holds text",
        ),
    ];
    for (extra, key, fragment) in cases {
        assert_only_problem(&config_with(&format!("{FORUM}{extra}\n")), key, fragment);
    }
    let body = FORUM.replace("https://forum.example", "https://forum.example/?x=1");
    assert_only_problem(
        &config_with(&body),
        "apps.app.forum_url",
        "must not have a query",
    );
    let body = FORUM.replace("https://forum.example", "http://forum.example");
    assert_only_problem(
        &config_with(&body),
        "apps.app.forum_url",
        "must be https://",
    );
    let body = FORUM.replace("discourse-secret.txt", "short-secret.txt");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short-secret.txt"), "123456789\n").unwrap();
    let errors = match from_toml_str(
        &config_with(&body).replace(
            "session-secret.txt",
            &fixtures().join("session-secret.txt").display().to_string(),
        ),
        dir.path(),
    ) {
        Ok(_) => panic!("a 9-character secret was accepted"),
        Err(e) => e.errors,
    };
    assert_has_problem(&errors, "apps.app.secret", "10 characters");
}

/// A token signed with the session's own secret would be an intranet session wherever the app
/// (or its URL) shows it: every app kind's HMAC key is compared.
#[test]
fn no_app_signs_with_the_session_secret() {
    let session_secret = "{ file = \"session-secret.txt\" }";
    assert_only_problem(
        &config_with(&format!(
            "kind = \"jwt_link\"\nurl = \"https://acme.zendesk.com/access/jwt\"\nsecret = {session_secret}\n{CLAIMS}"
        )),
        "apps.app.secret",
        "is the [session] secret",
    );
    assert_only_problem(
        &config_with(&FORUM.replace("discourse-secret.txt", "session-secret.txt")),
        "apps.app.secret",
        "is the [session] secret",
    );
    assert_only_problem(
        &config_with(&format!(
            "kind = \"typingmind\"\ninstance_url = \"https://chat.example.com\"\nsecret = {session_secret}\n"
        )),
        "apps.app.secret",
        "is the [session] secret",
    );
    // An RS256 app has no HMAC key to compare.
    assert_accepted(&config_with(&format!(
        "kind = \"jwt_link\"\nurl = \"https://x.example/sso\"\nalgorithm = \"RS256\"\n\
         private_key = {{ file = \"rsa_private.pem\" }}\n{CLAIMS}"
    )));
}

#[test]
fn unknown_kinds_list_the_new_ones() {
    assert_only_problem(
        &config_with("kind = \"saml\""),
        "apps.app.kind",
        "\"jwt_link\", \"discourse_connect\"",
    );
}
