//! Any SaaS that signs people in from a token the company mints: `jwt_link` (Zendesk's posted
//! form, Metabase's and Canny's links, RS256/ES256 with a key file) and `discourse_connect`
//! (the forum's nonce round trip). Each token is verified by a stand-in written in Python
//! with libraries independent of the gateway's (tests/standins/saas.py: PyJWT, hmac, base64),
//! exactly as the vendor documents it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::spawned::Spawned;

pub const CANNY_COMPANY: &str = "acme-company-id";
pub const KID: &str = "handoff-2026";

/// The four vendors' stand-in, on a port of its own.
pub struct Vendors {
    pub addr: SocketAddr,
    _process: Spawned,
}

impl Vendors {
    pub fn start() -> Vendors {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/saas.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (var, file) in [
            ("ZENDESK_SECRET", "zendesk-secret.txt"),
            ("METABASE_SECRET", "metabase-secret.txt"),
            ("CANNY_SECRET", "canny-secret.txt"),
            ("DISCOURSE_SECRET", "discourse-secret.txt"),
        ] {
            cmd.env(var, String::from_utf8(secret_fixture(file)).unwrap());
        }
        cmd.env("CANNY_COMPANY_ID", CANNY_COMPANY)
            .env("GENERIC_KID", KID)
            .env("RSA_PUBLIC_KEY", fixtures().join("rsa_public.pem"))
            .env("EC_PUBLIC_KEY", fixtures().join("ec_public.pem"));
        let mut process = Spawned::start(
            &mut cmd,
            libc::SIGTERM,
            "python3 tests/standins/saas.py (needs python3-jwt)",
        );
        let stdout = process.child().stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port: u16 = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("the stand-in did not start (python3-jwt installed?): {line:?}")
            });
        Vendors {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _process: process,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Tells the forum where its DiscourseConnect provider (the gateway's route) is.
    async fn set_discourse_connect_url(&self, url: &str) {
        let resp = client()
            .post(self.url("/_settings"))
            .form(&[("discourse_connect_url", url)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

/// The apps of the four protocols, pointing at `v`, each behind `/apps/<name>`.
pub fn apps_config(v: &Vendors, extra_app_lines: &str) -> String {
    let base = v.url("");
    format!(
        r#"
[apps.support]
kind = "jwt_link"
display_name = "Help centre"
url = "{base}/access/jwt"
delivery = "form_post"
token_param = "jwt"
return_to_param = "return_to"
secret = {{ file = "zendesk-secret.txt" }}
{extra_app_lines}
[apps.support.claims]
name = "name"
email = "email"
external_id = {{ field = "id", optional = true }}
organization = {{ value = "Acme" }}
tags = {{ field = "groups", optional = true }}

[apps.metabase]
kind = "jwt_link"
url = "{base}/auth/sso"
return_to_param = "return_to"
secret = {{ file = "metabase-secret.txt" }}
token_ttl_seconds = 2
[apps.metabase.claims]
email = "email"
first_name = "first_name"
last_name = "last_name"
groups = {{ field = "groups", optional = true }}

[apps.canny]
kind = "jwt_link"
url = "{base}/api/redirects/sso?companyID={CANNY_COMPANY}"
token_param = "ssoToken"
return_to_param = "redirect"
site_url = "{base}/"
secret = {{ file = "canny-secret.txt" }}
[apps.canny.claims]
email = "email"
id = "id"
name = "name"
avatarURL = {{ field = "profile_pic", optional = true }}

[apps.forum]
kind = "discourse_connect"
forum_url = "{base}"
secret = {{ file = "discourse-secret.txt" }}

[apps.rs]
kind = "jwt_link"
url = "{base}/generic/RS256"
token_param = "token"
algorithm = "RS256"
kid = "{KID}"
private_key = {{ file = "rsa_private.pem" }}
[apps.rs.claims]
sub = "id"

[apps.es]
kind = "jwt_link"
url = "{base}/generic/ES256"
token_param = "token"
algorithm = "ES256"
kid = "{KID}"
private_key = {{ file = "ec_private.pem" }}
[apps.es.claims]
sub = "id"

[[routes]]
path = "/apps/support"
app = "support"
[[routes]]
path = "/apps/metabase"
app = "metabase"
[[routes]]
path = "/apps/canny"
app = "canny"
[[routes]]
path = "/apps/forum"
app = "forum"
[[routes]]
path = "/apps/rs"
app = "rs"
[[routes]]
path = "/apps/es"
app = "es"
[[routes]]
path = "/apps/staff-only"
app = "support"
allow = {{ groups = ["staff"] }}
"#
    )
}

pub async fn gateway(v: &Vendors) -> (TestGateway, Intranet) {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}{apps}",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
        apps = apps_config(v, ""),
    );
    let gw = TestGateway::start(&config);
    v.set_discourse_connect_url(&gw.url("/apps/forum")).await;
    (gw, intranet)
}

pub fn ada() -> Value {
    let mut p = person("ada@corp.example", &["eng", "ai"]);
    p["name"] = json!("Ada Lovelace");
    p
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser's navigation to `url` as `who`.
async fn navigate(url: &str, who: Option<&Value>) -> reqwest::Response {
    let mut req = no_redirects()
        .get(url)
        .header("Accept", "text/html,application/xhtml+xml")
        .header("Sec-Fetch-Dest", "document")
        .header("Sec-Fetch-Mode", "navigate");
    if let Some(c) = who {
        req = req.header("Cookie", format!("intranet_session={}", hs256(c)));
    }
    req.send().await.unwrap()
}

fn location(resp: &reqwest::Response) -> url::Url {
    let text = resp.headers()["location"].to_str().unwrap();
    url::Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    let found: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect();
    assert!(found.len() <= 1, "{name} twice in {url}");
    found.into_iter().next()
}

/// The form of a posting page: its action and fields, read by an HTML parser.
pub fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    use lol_html::{element, HtmlRewriter, Settings};
    use std::cell::RefCell;
    let action = RefCell::new(Vec::new());
    let fields = RefCell::new(Vec::new());
    let settings = Settings::new()
        .append_element_content_handler(element!("form", |el| {
            assert_eq!(el.get_attribute("method").as_deref(), Some("post"));
            action
                .borrow_mut()
                .push(el.get_attribute("action").unwrap());
            Ok(())
        }))
        .append_element_content_handler(element!("input", |el| {
            fields.borrow_mut().push((
                el.get_attribute("name").unwrap(),
                el.get_attribute("value").unwrap(),
            ));
            Ok(())
        }));
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    rewriter.write(html.as_bytes()).unwrap();
    rewriter.end().unwrap();
    let mut actions = action.into_inner();
    assert_eq!(actions.len(), 1, "one form: {html}");
    // lol_html hands attributes as written: undo the character references.
    let decoded = |s: String| htmlize::unescape_attribute(&s).into_owned();
    (
        decoded(actions.remove(0)),
        fields
            .into_inner()
            .into_iter()
            .map(|(k, v)| (decoded(k), decoded(v)))
            .collect(),
    )
}

/// Posts a page's form as the browser would.
async fn submit(action: &str, fields: &[(String, String)]) -> (u16, Value) {
    let resp = no_redirects()
        .post(action)
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn follow(url: &url::Url) -> (u16, Value) {
    let resp = no_redirects().get(url.as_str()).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn zendesk_gets_a_posted_form_that_signs_in_once() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    let resp = navigate(
        &gw.url("/apps/support/hc/en-us/articles/42?lang=fr"),
        Some(&ada()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cross-origin-opener-policy"], "same-origin");
    let csp = h["content-security-policy"].to_str().unwrap().to_string();
    let html = resp.text().await.unwrap();
    // The only script that may run is the page's own, by its nonce.
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {csp}"));
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline'; script"),
        "{csp}"
    );
    assert!(
        html.contains(&format!("<script nonce=\"{nonce}\">")),
        "{html}"
    );
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<meta name=\"referrer\" content=\"no-referrer\">"));
    let (action, fields) = form_of(&html);
    assert_eq!(action, v.url("/access/jwt"));
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["jwt", "return_to"]);

    let (status, body) = submit(&action, &fields).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["method"], "POST");
    let c = &body["claims"];
    assert_eq!(c["email"], "ada@corp.example");
    assert_eq!(c["name"], "Ada Lovelace");
    assert_eq!(c["external_id"], "id-ada@corp.example");
    assert_eq!(c["organization"], "Acme");
    assert_eq!(c["tags"], json!(["eng", "ai"]));
    assert_eq!(
        body["return_to"],
        v.url("/hc/en-us/articles/42?lang=fr"),
        "the deep link travels in return_to"
    );

    // Zendesk refuses a jti it has seen: the same form posted again.
    let (status, body) = submit(&action, &fields).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("jti replayed"))
    );
    // Each visit mints a fresh token, which signs in.
    let html = navigate(&gw.url("/apps/support"), Some(&ada()))
        .await
        .text()
        .await
        .unwrap();
    let (_, fields) = form_of(&html);
    assert_eq!(fields.len(), 1, "no deep link, no return_to: {fields:?}");
    assert_eq!(submit(&action, &fields).await.0, 200);

    // The token never reaches a log line.
    let token = &fields[0].1;
    assert!(!captured_logs().contains(token.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_and_an_expired_token_are_refused_by_the_vendor() {
    let v = Vendors::start();
    let intranet = Intranet::start().await;
    // The same apps, but the help centre signs with the wrong secret.
    let apps = apps_config(&v, "").replace(
        "secret = { file = \"zendesk-secret.txt\" }",
        "secret = { file = \"canny-secret.txt\" }",
    );
    let gw = TestGateway::start(&format!(
        "{}{}{apps}",
        session_config(&["HS256"], ""),
        upstream_config(&intranet)
    ));
    let html = navigate(&gw.url("/apps/support"), Some(&ada()))
        .await
        .text()
        .await
        .unwrap();
    let (action, fields) = form_of(&html);
    let (status, body) = submit(&action, &fields).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("bad signature"))
    );

    // Metabase's token lives token_ttl_seconds = 2: followed after that, Metabase refuses it.
    let resp = navigate(&gw.url("/apps/metabase"), Some(&ada())).await;
    assert_eq!(resp.status(), 302);
    let late = location(&resp);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = follow(&late).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("expired token"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metabase_and_canny_get_a_link_with_the_deep_link_in_their_parameter() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    // A deep link through the route.
    let resp = navigate(&gw.url("/apps/metabase/dashboard/7"), Some(&ada())).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    let to = location(&resp);
    assert_eq!(to.path(), "/auth/sso");
    assert_eq!(param(&to, "return_to").unwrap(), v.url("/dashboard/7"));
    let (status, body) = follow(&to).await;
    assert_eq!(status, 200, "{body}");
    let c = &body["claims"];
    assert_eq!(
        (&c["email"], &c["first_name"], &c["last_name"]),
        (
            &json!("ada@corp.example"),
            &json!("Ada"),
            &json!("Lovelace")
        )
    );
    assert_eq!(c["groups"], json!(["eng", "ai"]));

    // Metabase's own redirect to the route (`?return_to=/question/2`) is kept.
    let resp = navigate(
        &gw.url("/apps/metabase?return_to=%2Fquestion%2F2"),
        Some(&ada()),
    )
    .await;
    assert_eq!(
        param(&location(&resp), "return_to").unwrap(),
        v.url("/question/2")
    );

    // Canny: companyID kept from the URL, ssoToken and redirect added.
    let board = v.url("/feedback/ideas");
    let resp = navigate(
        &gw.url(&format!(
            "/apps/canny?companyID={CANNY_COMPANY}&redirect={}",
            urlencode(&board)
        )),
        Some(&ada()),
    )
    .await;
    let to = location(&resp);
    assert_eq!(param(&to, "companyID").unwrap(), CANNY_COMPANY);
    assert_eq!(param(&to, "redirect").unwrap(), board);
    let (status, body) = follow(&to).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["claims"]["id"], "id-ada@corp.example");
    assert_eq!(body["claims"]["name"], "Ada Lovelace");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rs256_and_es256_tokens_carry_the_kid_and_verify_with_the_public_key() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    for (route, alg) in [("/apps/rs", "RS256"), ("/apps/es", "ES256")] {
        let resp = navigate(&gw.url(route), Some(&ada())).await;
        assert_eq!(resp.status(), 302, "{route}");
        let (status, body) = follow(&location(&resp)).await;
        assert_eq!(status, 200, "{route}: {body}");
        assert_eq!(body["alg"], alg);
        assert_eq!(body["claims"]["sub"], "id-ada@corp.example");
        let c = &body["claims"];
        let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
        assert_eq!(exp - iat, 120, "the default lifetime");
        assert_eq!(c["jti"].as_str().unwrap().len(), 36);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discourse_connect_round_trips_through_the_forum() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    let mut who = ada();
    who["preferred_username"] = json!("ada");

    // Opened from the intranet: the gateway sends the person to the forum for a nonce…
    let resp = navigate(&gw.url("/apps/forum/t/welcome/5"), Some(&who)).await;
    assert_eq!(resp.status(), 302);
    let start = location(&resp);
    assert_eq!(start.path(), "/session/sso");
    assert_eq!(param(&start, "return_path").unwrap(), "/t/welcome/5");
    assert!(
        param(&start, "sso").is_none(),
        "no payload before the forum asks"
    );

    // …the forum sends them back with sso and sig (and a browser cookie of its own)…
    let resp = no_redirects().get(start.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let forum_cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let to_gateway = location(&resp);
    assert!(to_gateway.as_str().starts_with(&gw.url("/apps/forum?")));

    // …the gateway answers with the signed payload to the forum's return_sso_url…
    let resp = navigate(to_gateway.as_str(), Some(&who)).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    let back = location(&resp);
    assert_eq!(back.path(), "/session/sso_login");
    // …which the forum verifies with its own hmac, nonce and browser check.
    let answer = no_redirects()
        .get(back.as_str())
        .header("Cookie", &forum_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    let p = &body["payload"];
    assert_eq!(p["email"], "ada@corp.example");
    assert_eq!(p["external_id"], "id-ada@corp.example");
    assert_eq!(p["username"], "ada");
    assert_eq!(p["name"], "Ada Lovelace");
    assert_eq!(body["return_path"], "/t/welcome/5");

    // The forum's nonce is good once.
    let again = no_redirects()
        .get(back.as_str())
        .header("Cookie", &forum_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

/// The forum's request, signed with `secret` (as the forum does).
fn forum_request(secret: &[u8], payload: &str) -> String {
    use base64::Engine;
    let sso = base64::engine::general_purpose::STANDARD.encode(payload);
    let sig: String = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(sso.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    format!("sso={}&sig={sig}", urlencode(&sso))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forum_request_that_does_not_check_out_gets_a_page_and_no_payload() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    let secret = secret_fixture("discourse-secret.txt");
    let good = |return_url: &str| {
        forum_request(
            &secret,
            &format!("nonce=abc&return_sso_url={}", urlencode(return_url)),
        )
    };
    let cases = [
        (
            "wrong secret",
            forum_request(b"another-forum-secret", "nonce=abc&return_sso_url=x"),
        ),
        (
            "tampered",
            good(&v.url("/session/sso_login")).replace("&sig=", "&sig=0"),
        ),
        (
            "sig only",
            good(&v.url("/session/sso_login"))
                .split('&')
                .nth(1)
                .unwrap()
                .to_string(),
        ),
        (
            "twice",
            format!("{0}&{0}", good(&v.url("/session/sso_login"))),
        ),
        (
            "off the forum",
            good("https://evil.example/session/sso_login"),
        ),
        (
            "look-alike",
            good(&format!("http://{}.evil.example/", v.addr.ip())),
        ),
        (
            "with credentials",
            good(&format!("http://x@{}/session/sso_login", v.addr)),
        ),
        ("no nonce", forum_request(&secret, "return_sso_url=x")),
        ("not base64", "sso=%%%&sig=00".to_string()),
    ];
    for (what, query) in cases {
        let resp = navigate(&gw.url(&format!("/apps/forum?{query}")), Some(&ada())).await;
        assert_eq!(resp.status(), 400, "{what}");
        assert!(resp.headers().get("location").is_none(), "{what}");
        let page = resp.text().await.unwrap();
        assert!(page.contains("did not come from forum"), "{what}: {page}");
    }
    let line = log_line_with(&["invalid_sso_request", "sig does not match sso"]);
    assert!(line.is_some(), "the operator's line says why");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tails_and_return_tos_never_lead_off_the_apps_site() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    let cookie = format!("intranet_session={}", hs256(&ada()));
    let site = v.addr.to_string();
    let pieces = [
        "",
        "/",
        "//",
        "\\",
        "%2F",
        "%2f",
        "%5C",
        "@",
        "%40",
        ";",
        ":",
        "?",
        "#",
        "%23",
        "..",
        "%2e%2e",
        "\t",
        " ",
        "evil.example",
        "\u{FF0F}",
    ];
    let mut tails = Vec::new();
    for a in pieces {
        for b in pieces {
            tails.push(format!("{a}{b}evil.example/x"));
            tails.push(format!("/{a}@evil.example{b}"));
        }
    }
    let returns = [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "http://127.0.0.1.evil.example/",
        "javascript:alert(1)",
        "http://user@evil.example",
    ];
    let mut checked = 0;
    for route in ["/apps/metabase", "/apps/canny", "/apps/forum"] {
        let param_name = if route == "/apps/canny" {
            "redirect"
        } else {
            "return_to"
        };
        let mut targets: Vec<String> = tails.iter().map(|t| format!("{route}{t}")).collect();
        if route != "/apps/forum" {
            targets.extend(
                returns
                    .iter()
                    .map(|r| format!("{route}?{param_name}={}", urlencode(r))),
            );
        }
        for target in targets {
            // Sent as written: no client library tidies the path first.
            let Some(path) = raw_target(&target) else {
                continue;
            };
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nSec-Fetch-Dest: document\r\n\
                 Cookie: {cookie}\r\nConnection: close\r\n\r\n",
                gw.addr
            );
            let answer = raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(5));
            let status = &answer[9..12];
            if status != "302" {
                // Refused (a page), or not the route at all (`/apps/metabaseX` is the
                // intranet's): no token either way.
                let intranet = answer.contains("x-served-by:");
                assert!(
                    ["400", "404"].contains(&status) || intranet,
                    "{path}: {answer}"
                );
                assert!(
                    !answer.contains("jwt=") && !answer.contains("ssoToken="),
                    "{path}"
                );
                continue;
            }
            let location = answer
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Location: ")
                        .or_else(|| l.strip_prefix("location: "))
                })
                .unwrap();
            let to = url::Url::parse(location).unwrap();
            assert_eq!(to.host_str(), Some("127.0.0.1"), "{path} -> {location}");
            assert_eq!(to.port(), Some(v.addr.port()), "{path} -> {location}");
            for name in ["return_to", "redirect"] {
                if let Some(rt) = param(&to, name) {
                    let read = url::Url::parse(&rt).unwrap();
                    assert_eq!(
                        read.host_str().zip(read.port()),
                        Some(("127.0.0.1", v.addr.port())),
                        "{path} -> {name}={rt}"
                    );
                    assert!(read.username().is_empty());
                }
            }
            if let Some(path_back) = param(&to, "return_path") {
                assert!(
                    path_back.starts_with('/') && !path_back.starts_with("//"),
                    "{path_back}"
                );
                let only_path = path_back.split('?').next().unwrap();
                assert!(!only_path.contains('\\'), "{path_back}");
                let read = url::Url::parse(&v.url("/"))
                    .unwrap()
                    .join(&path_back)
                    .unwrap();
                assert_eq!(read.authority(), site, "{path} -> return_path={path_back}");
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "only {checked} links were built");
}

/// A request target as a client may send it: spaces and controls percent-encoded, the rest
/// as written; `None` for one no HTTP/1.1 request line can carry.
fn raw_target(target: &str) -> Option<String> {
    if target.contains('#') {
        return None;
    }
    Some(
        target
            .chars()
            .map(|c| match c {
                ' ' => "%20".to_string(),
                '\t' => "%09".to_string(),
                c if c.is_ascii() => c.to_string(),
                c => percent_encoding::utf8_percent_encode(
                    c.encode_utf8(&mut [0; 4]),
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .to_string(),
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_people_missing_claims_and_non_navigations_get_no_token() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    // A route that admits only staff: a 403 page naming the app, no form.
    let resp = navigate(&gw.url("/apps/staff-only"), Some(&ada())).await;
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("You do not have access to Help centre"),
        "{page}"
    );
    assert!(!page.contains("<form"));

    // Nobody signed in: no token either.
    let resp = navigate(&gw.url("/apps/support"), None).await;
    assert_eq!(resp.status(), 401);

    // A person without a name: Zendesk requires one; the page names what is missing.
    let mut nameless = person("bob@corp.example", &[]);
    nameless.as_object_mut().unwrap().remove("given_name");
    nameless.as_object_mut().unwrap().remove("family_name");
    let resp = navigate(&gw.url("/apps/support"), Some(&nameless)).await;
    assert_eq!(resp.status(), 422);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(
            "Help centre needs details your intranet profile does not provide: your name (name)."
        ),
        "{page}"
    );
    assert!(
        log_line_with(&["identity_incomplete", "name (claim \\\"name\\\")"]).is_some()
            || log_line_with(&["identity_incomplete", "name (claim \"name\")"]).is_some()
    );

    // The forum requires an email: a person without one learns it before the round trip.
    let mut no_email = ada();
    no_email.as_object_mut().unwrap().remove("email");
    let resp = navigate(&gw.url("/apps/forum"), Some(&no_email)).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.headers().get("location").is_none());
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("your email address (email)"));

    // An empty query is no deep link.
    let resp = navigate(&gw.url("/apps/metabase?"), Some(&ada())).await;
    assert_eq!(param(&location(&resp), "return_to"), None);

    // Only a top-level navigation starts a handoff.
    for (name, value, status) in [
        ("Sec-Fetch-Dest", "image", 400),
        ("Sec-Purpose", "prefetch", 503),
    ] {
        let resp = no_redirects()
            .get(gw.url("/apps/metabase"))
            .header("Cookie", format!("intranet_session={}", hs256(&ada())))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{name}: {value}");
        assert!(resp.headers().get("location").is_none());
    }
    let resp = no_redirects()
        .post(gw.url("/apps/support"))
        .header("Cookie", format!("intranet_session={}", hs256(&ada())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_lists_the_apps_and_metrics_count_each_outcome() {
    let v = Vendors::start();
    let intranet = Intranet::start().await;
    let metrics_port = free_port();
    let gw = TestGateway::start_with(
        &format!(
            "{}{}{}",
            session_config(&["HS256"], ""),
            upstream_config(&intranet),
            apps_config(&v, "")
        ),
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    let portal = navigate(&gw.url("/_handoff"), Some(&ada())).await;
    assert_eq!(portal.status(), 200);
    let page = portal.text().await.unwrap();
    for name in ["Help centre", "metabase", "canny", "forum"] {
        assert!(page.contains(name), "{name} on the portal: {page}");
    }
    navigate(&gw.url("/apps/support"), Some(&ada())).await;
    navigate(&gw.url("/apps/forum"), Some(&ada())).await;
    navigate(&gw.url("/apps/forum?sso=x&sig=y"), Some(&ada())).await;
    let text = scrape(metrics_port).await;
    for series in [
        r#"handoff_handoffs_total{app="support",code="form_post",outcome="redirected"} 1"#,
        r#"handoff_handoffs_total{app="forum",code="nonce_request",outcome="redirected"} 1"#,
        r#"handoff_handoffs_total{app="forum",code="",outcome="invalid_sso_request"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}

/// Chromium with Ada's intranet session cookie, as the intranet's login would have set it.
async fn signed_in_browser(gw: &TestGateway) -> (fantoccini::Client, Spawned) {
    let (c, driver) = crate::demo::browser().await;
    c.goto(&gw.url("/")).await.expect("the intranet");
    c.execute(
        "document.cookie = 'intranet_session=' + arguments[0] + '; path=/'",
        vec![json!(hs256(&ada()))],
    )
    .await
    .expect("cookie set");
    (c, driver)
}

/// The posted form in a real browser: Chromium runs the page's nonce'd script under its CSP,
/// posts the token, and lands on the help centre signed in, at the deep link.
#[tokio::test(flavor = "multi_thread")]
async fn the_posted_form_signs_in_from_chromium() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    let (c, _driver) = signed_in_browser(&gw).await;
    c.goto(&gw.url("/apps/support/hc/en-us/articles/42"))
        .await
        .expect("the help centre route");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let url = c.current_url().await.expect("url");
        if url.port() == Some(v.addr.port()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the form did not post itself: still at {url}: {}",
            crate::demo::text(&c).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = c.current_url().await.expect("url");
    assert_eq!(url.path(), "/access/jwt");
    assert_eq!(
        url.query(),
        None,
        "the token was posted, not put in the URL"
    );
    let shown = crate::demo::text(&c).await;
    let body: Value = serde_json::from_str(shown.trim())
        .unwrap_or_else(|e| panic!("the stand-in's answer is not JSON ({e}): {shown}"));
    assert_eq!(body["method"], "POST", "{body}");
    assert_eq!(body["claims"]["email"], "ada@corp.example");
    assert_eq!(body["return_to"], v.url("/hc/en-us/articles/42"));
    crate::demo::shot(&c, "08-help-centre-signed-in-by-form-post").await;
    c.close().await.expect("browser closes");
}

/// A script on any intranet page shares the posting page's origin: opened with `window.open`,
/// the page must not let it read the token before the form posts (`Cross-Origin-Opener-Policy`
/// leaves the opener a closed handle).
#[tokio::test(flavor = "multi_thread")]
async fn an_intranet_script_cannot_read_the_posted_token_from_its_popup() {
    let v = Vendors::start();
    let (gw, _i) = gateway(&v).await;
    let (c, _driver) = signed_in_browser(&gw).await;
    for attempt in 0..3 {
        c.goto(&gw.url("/pages/opener")).await.expect("the page");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let title = loop {
            let title = c.title().await.expect("title");
            if title != "Intranet" {
                break title;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the script never finished"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            title == "CLOSED" || title.starts_with("BLOCKED"),
            "attempt {attempt}: the opener's script says {title:?}"
        );
        // Close the popup again, whatever it became.
        let windows = c.windows().await.expect("windows");
        let main = c.window().await.expect("this window");
        for w in windows.into_iter().filter(|w| *w != main) {
            c.switch_to_window(w).await.expect("switch");
            c.close_window().await.expect("close");
        }
        c.switch_to_window(main).await.expect("back");
    }
    c.close().await.expect("browser closes");
}
