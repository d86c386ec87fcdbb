//! TypingMind: externalAuthCode links and widget sign-in on proxied intranet pages. Every code
//! is decoded here, independently, with the instance secret.

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};

use crate::common::*;

const INSTANCE: &str = "https://chat.example.test";

fn secret() -> Vec<u8> {
    secret_fixture("typingmind-secret.txt")
}

/// Verifies a code as TypingMind would and returns its payload.
fn decode_code(code: &str) -> Map<String, Value> {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    v.leeway = 0;
    decode::<Map<String, Value>>(code, &DecodingKey::from_secret(&secret()), &v)
        .unwrap_or_else(|e| panic!("the code does not verify: {e}"))
        .claims
}

async fn gateway(app_extra: &str) -> (TestGateway, Intranet) {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}\
         [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"{INSTANCE}/\"\n\
         secret = {{ file = \"typingmind-secret.txt\" }}\n{app_extra}\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
    );
    (TestGateway::start(&config), intranet)
}

async fn get(gw: &TestGateway, path: &str, claims: Option<&Value>) -> reqwest::Response {
    let mut req = client()
        .get(gw.url(path))
        .header("Accept", "text/html,application/xhtml+xml")
        .header("Sec-Fetch-Dest", "document");
    if let Some(c) = claims {
        req = req.header("Cookie", format!("intranet_session={}", hs256(c)));
    }
    req.send().await.unwrap()
}

/// The widget codes in `page` as `who` gets it, once no stale code is left in it.
async fn fresh_codes(gw: &TestGateway, page: &str, who: Option<&Value>) -> Vec<String> {
    let html = get(gw, page, who).await.text().await.unwrap();
    assert!(!html.contains("stale-code"), "{html}");
    codes_in(&html)
}

fn code_in_location(resp: &reqwest::Response) -> (String, String) {
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let (before, code) = location
        .rsplit_once("externalAuthCode=")
        .unwrap_or_else(|| panic!("no code in {location}"));
    (before.to_string(), code.to_string())
}

fn assert_fresh(payload: &Map<String, Value>, ttl: u64) {
    let iat = payload["iat"].as_u64().unwrap();
    assert_eq!(payload["exp"].as_u64().unwrap() - iat, ttl);
    assert!(iat.abs_diff(now()) < 30);
    assert_eq!(payload["jti"].as_str().unwrap().len(), 36);
}

#[tokio::test(flavor = "multi_thread")]
async fn link_with_the_user_shape_and_metadata() {
    let (gw, _i) = gateway("user_fields = { department = \"dept\", level = \"org.level\" }").await;
    let mut ada = person("ada@corp.example", &["eng"]);
    ada["name"] = json!("Ada Lovelace");
    ada["dept"] = json!("R&D");
    ada["org"] = json!({"level": 7});
    let resp = get(&gw, "/ai/chat", Some(&ada)).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    let (before, code) = code_in_location(&resp);
    assert_eq!(before, format!("{INSTANCE}/?"));
    let payload = decode_code(&code);
    assert_eq!(
        payload["user"],
        json!({"id": "id-ada@corp.example", "email": "ada@corp.example",
               "name": "Ada Lovelace", "department": "R&D", "level": 7})
    );
    assert!(!payload.contains_key("email") && !payload.contains_key("id"));
    assert_fresh(&payload, 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn link_with_the_email_and_id_shapes() {
    let (gw, _i) = gateway("identify_by = \"email\"\ncode_ttl_seconds = 90").await;
    let resp = get(&gw, "/ai/chat", Some(&person("bob@corp.example", &[]))).await;
    let payload = decode_code(&code_in_location(&resp).1);
    assert_eq!(payload["email"], "bob@corp.example");
    assert!(!payload.contains_key("user"));
    assert_fresh(&payload, 90);

    let (gw, _i) = gateway("identify_by = \"id\"\nid_claim = \"tm_id\"").await;
    let mut numeric = person("c@corp.example", &[]);
    numeric["tm_id"] = json!(1234);
    let payload = decode_code(&code_in_location(&get(&gw, "/ai/chat", Some(&numeric)).await).1);
    assert_eq!(payload["id"], json!(1234), "a number stays a number");
    let mut text = person("c@corp.example", &[]);
    text["tm_id"] = json!("tm-77");
    let payload = decode_code(&code_in_location(&get(&gw, "/ai/chat", Some(&text)).await).1);
    assert_eq!(payload["id"], json!("tm-77"), "a string stays a string");
    assert!(!payload.contains_key("email"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_links_keep_their_tail_and_query() {
    let (gw, _i) = gateway("").await;
    let ada = person("ada@corp.example", &[]);
    let cases = [
        ("/ai/chat/agents/x?y=1", format!("{INSTANCE}/agents/x?y=1&")),
        ("/ai/chat/", format!("{INSTANCE}/?")),
        (
            "/ai/chat/c/a%20b%2Fc?q=%E2%9C%93&empty=&flag",
            format!("{INSTANCE}/c/a%20b%2Fc?q=%E2%9C%93&empty=&flag&"),
        ),
        (
            "/ai/chat/x?externalAuthCode=stolen&keep=1&externalAuth%43ode=again",
            format!("{INSTANCE}/x?keep=1&"),
        ),
        ("/ai/chat//agents/./y/../z", format!("{INSTANCE}/agents/z?")),
    ];
    for (path, expected) in cases {
        let resp = get(&gw, path, Some(&ada)).await;
        assert_eq!(resp.status(), 302, "{path}");
        let (before, code) = code_in_location(&resp);
        assert_eq!(before, expected, "{path}");
        decode_code(&code);
        let location = resp.headers()["location"].to_str().unwrap();
        assert_eq!(
            location.matches("externalAuthCode=").count(),
            1,
            "{location}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_identity_fields_get_a_page_and_no_code() {
    let (gw, _i) = gateway("identify_by = \"id\"\nid_claim = \"tm_id\"").await;
    let resp = get(&gw, "/ai/chat", Some(&person("ada@corp.example", &[]))).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.headers().get("location").is_none());
    let page = resp.text().await.unwrap();
    assert!(page.contains("your TypingMind user id"), "{page}");
    let reference = page
        .split("<strong>")
        .nth(1)
        .and_then(|r| r.split("</strong>").next())
        .expect("a reference on the page");
    assert!(log_line_with(&[reference, "typingmind_id (claim \"tm_id\")"]).is_some());

    let (gw, _i) = gateway("identify_by = \"email\"").await;
    let mut no_email = person("x@corp.example", &[]);
    no_email.as_object_mut().unwrap().remove("email");
    let resp = get(&gw, "/ai/chat", Some(&no_email)).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.text().await.unwrap().contains("your email address"));

    let (gw, _i) = gateway("").await;
    let mut no_id = person("x@corp.example", &[]);
    no_id.as_object_mut().unwrap().remove("sub");
    let resp = get(&gw, "/ai/chat", Some(&no_id)).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.text().await.unwrap().contains("your user id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_top_level_navigations_get_a_link() {
    let (gw, _i) = gateway("").await;
    let resp = client()
        .get(gw.url("/ai/chat"))
        .header("Sec-Fetch-Dest", "image")
        .header(
            "Cookie",
            format!("intranet_session={}", hs256(&person("a@corp.example", &[]))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

// ----------------------------------------------------------------------------------------------
// Widget sign-in
// ----------------------------------------------------------------------------------------------

/// The code written into each widget tag of a page, in order.
fn codes_in(html: &str) -> Vec<String> {
    html.split("data-external-auth-code=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn widget_tags_get_a_fresh_code_for_the_person() {
    let (gw, _i) = gateway("widget = true").await;
    let ada = person("ada@corp.example", &[]);
    let resp = get(&gw, "/pages/widget", Some(&ada)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let html = resp.text().await.unwrap();
    assert!(html.contains(r#"<script defer data-agent="a1" src="https://chat.example.test/widget.js" data-external-auth-code=""#), "{html}");
    let codes = codes_in(&html);
    assert_eq!(codes.len(), 1);
    let payload = decode_code(&codes[0]);
    assert_eq!(payload["user"]["email"], "ada@corp.example");
    // A widget code lives as long as the session (person() tokens end in 600 s).
    assert!(
        payload["exp"]
            .as_u64()
            .unwrap()
            .abs_diff(ada["exp"].as_u64().unwrap())
            <= 1
    );
    assert_eq!(payload["jti"].as_str().unwrap().len(), 36);
    // Everything else is as the intranet sent it.
    let expected = page_body("widget").unwrap().replace(
        "widget.js\"></script>",
        &format!(
            "widget.js\" data-external-auth-code=\"{}\"></script>",
            codes[0]
        ),
    );
    assert_eq!(html, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn upper_case_two_tags_foreign_instances_and_stale_codes() {
    let (gw, _i) = gateway("widget = true").await;
    let ada = person("ada@corp.example", &[]);

    let codes = fresh_codes(&gw, "/pages/upper", Some(&ada)).await;
    assert_eq!(codes.len(), 1, "{codes:?}");
    decode_code(&codes[0]);

    let codes = fresh_codes(&gw, "/pages/two", Some(&ada)).await;
    assert_eq!(codes.len(), 2, "{codes:?}");
    for c in &codes {
        assert_eq!(decode_code(c)["user"]["email"], "ada@corp.example");
    }

    // A tag whose address is written with character references is the widget all the same:
    // signed in for Ada, stripped without a session.
    let codes = fresh_codes(&gw, "/pages/encoded", Some(&ada)).await;
    assert_eq!(codes.len(), 1, "{codes:?}");
    assert_eq!(decode_code(&codes[0])["user"]["email"], "ada@corp.example");
    let codes = fresh_codes(&gw, "/pages/encoded", None).await;
    assert!(codes.is_empty(), "{codes:?}");

    // Far down a page (past what is kept while watching for a script tag), chunked or not.
    for path in ["/pages/late", "/pages/two.chunked"] {
        let codes = fresh_codes(&gw, path, Some(&ada)).await;
        assert!(!codes.is_empty(), "{path}");
        for c in &codes {
            assert_eq!(
                decode_code(c)["user"]["email"],
                "ada@corp.example",
                "{path}"
            );
        }
    }

    let resp = get(&gw, "/pages/foreign", Some(&ada)).await;
    let html = resp.text().await.unwrap();
    assert_eq!(
        codes_in(&html),
        vec!["theirs"],
        "another instance's tag is left alone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_chunked_and_big_pages_are_signed_in_too() {
    let (gw, _i) = gateway("widget = true").await;
    let ada = person("ada@corp.example", &[]);
    for path in ["/pages/widget.gz", "/pages/widget.chunked", "/pages/big"] {
        let resp = get(&gw, path, Some(&ada)).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().get("content-encoding").is_none(), "{path}");
        let html = resp.text().await.unwrap();
        let codes = codes_in(&html);
        assert_eq!(codes.len(), 1, "{path}");
        decode_code(&codes[0]);
        let base = path
            .trim_start_matches("/pages/")
            .split('.')
            .next()
            .unwrap();
        let original = page_body(base).unwrap();
        assert_eq!(
            html.len(),
            original.len() + r#" data-external-auth-code="""#.len() + codes[0].len(),
            "{path}: nothing else changed in length"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_without_a_widget_come_back_byte_for_byte() {
    let (gw, _i) = gateway("widget = true").await;
    let ada = person("ada@corp.example", &[]);
    for path in ["/pages/plain", "/pages/plain.chunked", "/pages/plain.gz"] {
        let html = get(&gw, path, Some(&ada)).await.bytes().await.unwrap();
        assert_eq!(html, page_body("plain").unwrap().as_bytes(), "{path}");
    }
    // Not a browser navigation: the page is read (its widget tag carries no code) but
    // otherwise comes back byte for byte.
    let resp = client().get(gw.url("/pages/widget")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), page_body("widget").unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_session_codes_are_removed_never_left_stale() {
    let (gw, _i) = gateway("widget = true").await;
    // In 7-byte chunks too: the attribute's name arrives cut in pieces.
    for path in [
        "/pages/upper",
        "/pages/two",
        "/pages/widget",
        "/pages/encoded",
        "/pages/late",
        "/pages/upper.chunked",
        "/pages/two.chunked",
        "/pages/encoded.chunked",
    ] {
        let resp = get(&gw, path, None).await;
        assert_eq!(resp.status(), 200);
        let html = resp.text().await.unwrap();
        assert!(codes_in(&html).is_empty(), "{path}: {html}");
        assert!(
            !html.to_lowercase().contains("data-external-auth-code"),
            "{path}"
        );
    }
    // An expired session is no session.
    let mut expired = person("ada@corp.example", &[]);
    expired["exp"] = json!(now() - 3600);
    let html = get(&gw, "/pages/two", Some(&expired))
        .await
        .text()
        .await
        .unwrap();
    assert!(codes_in(&html).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn widget_pages_still_strip_spoofed_identity_headers() {
    let (gw, _i) = gateway("widget = true").await;
    let resp = client()
        .get(gw.url("/echo"))
        .header("Accept", "text/html")
        .header("X-Handoff-Email", "ceo@corp.example")
        .header("Accept-Encoding", "gzip")
        .header(
            "Cookie",
            format!(
                "intranet_session={}",
                hs256(&person("ada@corp.example", &[]))
            ),
        )
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert!(echo.header("x-handoff-email").is_none());
    assert!(
        echo.header("accept-encoding").is_none(),
        "rewritable requests ask for an uncompressed page"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn widgets_off_leaves_pages_alone() {
    let (gw, _i) = gateway("").await;
    let resp = get(&gw, "/pages/upper", Some(&person("ada@corp.example", &[]))).await;
    assert_eq!(resp.text().await.unwrap(), page_body("upper").unwrap());
}

/// A widget code is a way into the app: only a top-level navigation of a person the app admits
/// gets one, and a code Handoff did not mint for this person never reaches a browser — not on a
/// `fetch()`, a POST, a request that does not ask for HTML, nor a page compressed in a way the
/// gateway cannot undo.
#[tokio::test(flavor = "multi_thread")]
async fn widget_codes_only_for_admitted_navigations_and_stale_codes_never_leak() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}\
         [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"{INSTANCE}/\"\n\
         secret = {{ file = \"typingmind-secret.txt\" }}\nwidget = true\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n[routes.allow]\ngroups = [\"ai-users\"]\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
    );
    let gw = TestGateway::start(&config);
    let ada = person("ada@corp.example", &["ai-users"]);
    let mallory = person("mallory@corp.example", &["staff"]);
    // Ada, admitted, navigating: a code. Mallory, refused at /ai/chat: none, and no stale one.
    let html = get(&gw, "/pages/upper", Some(&ada))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(codes_in(&html.to_lowercase()).len(), 1, "{html}");
    assert!(!html.contains("stale-code"));
    let html = get(&gw, "/pages/upper", Some(&mallory))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !html.to_lowercase().contains("data-external-auth-code"),
        "{html}"
    );
    let resp = get(&gw, "/ai/chat", Some(&mallory)).await;
    assert_eq!(resp.status(), 403);

    let cookie = format!("intranet_session={}", hs256(&ada));
    let page = |req: reqwest::RequestBuilder| {
        let cookie = cookie.clone();
        async move {
            let resp = req.header("Cookie", cookie).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    // Not top-level navigations: the stale code is stripped and no code is written.
    for (mode, dest) in [
        ("cors", "empty"),
        ("no-cors", "script"),
        ("navigate", "iframe"),
    ] {
        let (status, html) = page(
            client()
                .get(gw.url("/pages/upper"))
                .header("Accept", "text/html")
                .header("Sec-Fetch-Mode", mode)
                .header("Sec-Fetch-Dest", dest),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            !html.to_lowercase().contains("data-external-auth-code"),
            "{mode}/{dest}: {html}"
        );
    }
    // POST, and a request that does not ask for HTML: stripped too.
    let (_, html) = page(
        client()
            .post(gw.url("/pages/upper"))
            .header("Accept", "text/html"),
    )
    .await;
    assert!(
        !html.to_lowercase().contains("data-external-auth-code"),
        "POST: {html}"
    );
    let (_, html) = page(client().get(gw.url("/pages/upper")).header("Accept", "*/*")).await;
    assert!(
        !html.to_lowercase().contains("data-external-auth-code"),
        "*/*: {html}"
    );
    // An encoding Pingora cannot undo: a 502 page, never the stale code.
    let (status, html) = page(
        client()
            .get(gw.url("/pages/upper.deflate"))
            .header("Accept", "text/html"),
    )
    .await;
    assert_eq!(status, 502, "{html}");
    assert!(html.contains("could not be checked"), "{html}");
    // The portal lists the app for Ada, not for Mallory.
    let portal = |claims: &Value| {
        client()
            .get(gw.url("/_handoff/"))
            .header("Cookie", format!("intranet_session={}", hs256(claims)))
    };
    let ada_portal = portal(&ada).send().await.unwrap().text().await.unwrap();
    assert!(ada_portal.contains("/ai/chat"), "{ada_portal}");
    let mallory_portal = portal(&mallory).send().await.unwrap().text().await.unwrap();
    assert!(!mallory_portal.contains("/ai/chat"), "{mallory_portal}");
}

/// `[apps.NAME.allow]` holds on the link, the widget and the portal alike.
#[tokio::test(flavor = "multi_thread")]
async fn the_apps_own_allow_holds_on_every_way_in() {
    let (gw, _i) = gateway("widget = true\n[apps.chat.allow]\ndomains = [\"corp.example\"]").await;
    let insider = person("ada@corp.example", &[]);
    let outsider = person("eve@partner.example", &[]);
    assert_eq!(get(&gw, "/ai/chat", Some(&insider)).await.status(), 302);
    assert_eq!(get(&gw, "/ai/chat", Some(&outsider)).await.status(), 403);
    let html = get(&gw, "/pages/widget", Some(&insider))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(codes_in(&html).len(), 1);
    let html = get(&gw, "/pages/widget", Some(&outsider))
        .await
        .text()
        .await
        .unwrap();
    assert!(codes_in(&html).is_empty(), "{html}");
}

/// TypingMind verifies a widget's code whenever the widget loads, which may be long after the
/// page did: a page's widget code lives as long as the intranet session (up to the cap), not
/// the link's 300 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_widget_code_outlives_a_long_open_page_as_long_as_the_session() {
    let (gw, _i) = gateway("widget = true\nwidget_code_ttl_seconds = 14400").await;
    for (session_left, want) in [(7_200, 7_200), (100_000, 14_400), (60, 300)] {
        let mut ada = person("ada@corp.example", &[]);
        ada["exp"] = json!(now() + session_left);
        let codes = fresh_codes(&gw, "/pages/widget", Some(&ada)).await;
        assert_eq!(codes.len(), 1);
        let payload = decode_code(&codes[0]);
        let lives = payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap();
        assert!(
            lives.abs_diff(want) <= 2,
            "session {session_left} s: code lives {lives} s"
        );
        // Past the link's 300 s the widget still signs in (a page opened 5 minutes ago).
        if session_left > 300 {
            assert!(payload["exp"].as_u64().unwrap() > now() + 300);
        }
    }
    // The link is used at once: its code keeps code_ttl_seconds.
    let resp = get(&gw, "/ai/chat", Some(&person("ada@corp.example", &[]))).await;
    let (_, code) = code_in_location(&resp);
    let payload = decode_code(&code);
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        300
    );
}
