//! YourGPT's chatbot widget signed in on intranet pages: the contact script inserted before
//! the widget's tag, answered only to the person's own page, its `user_hash` checked with
//! Python's `hmac` (an independent implementation).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use handoff::internals::standins::yourgpt::{YourGptStandIn, CLIENT_ID};

const WIDGET_SECRET: &str = "w1dget-secret-for-tests-only";
const CONTACT: &str = "/_handoff/yourgpt-contact/gpt.js";

async fn gateway(
    widget_extra: &str,
    app_extra: &str,
) -> (TestGateway, Intranet, tempfile::TempDir) {
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("widget-secret.txt");
    std::fs::write(&secret, WIDGET_SECRET).unwrap();
    let config = format!(
        "{session}{upstream}\
         [apps.gpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{api}\"\n{app_extra}\n\
         [apps.gpt.widget]\nsecret = {{ file = \"{secret}\" }}\nwidget_ids = [\"w-intranet\"]\n{widget_extra}\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"gpt\"\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
        api = api.url(),
        secret = secret.display(),
    );
    (TestGateway::start(&config), intranet, dir)
}

fn cookie(claims: &Value) -> String {
    format!("intranet_session={}", hs256(claims))
}

async fn page(
    gw: &TestGateway,
    path: &str,
    claims: Option<&Value>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .get(gw.url(path))
        .header("Accept", "text/html")
        .header("Sec-Fetch-Dest", "document")
        .header("Sec-Fetch-Mode", "navigate");
    if let Some(c) = claims {
        req = req.header("Cookie", cookie(c));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn contact(
    gw: &TestGateway,
    claims: Option<&Value>,
    site: Option<&str>,
    dest: Option<&str>,
) -> reqwest::Response {
    let mut req = client().get(gw.url(CONTACT));
    if let Some(c) = claims {
        req = req.header("Cookie", cookie(c));
    }
    if let Some(s) = site {
        req = req.header("Sec-Fetch-Site", s);
    }
    if let Some(d) = dest {
        req = req.header("Sec-Fetch-Dest", d);
    }
    req.send().await.unwrap()
}

/// The `contact:data` object a contact script hands the widget.
fn data_of(js: &str) -> Value {
    let start = js.rfind("})(").expect("the data argument") + 3;
    let end = js.rfind(");").unwrap();
    serde_json::from_str(&js[start..end]).unwrap()
}

/// HMAC-SHA256 hex of `value` with the widget secret, computed by Python's `hmac`.
fn python_hmac(value: &str) -> String {
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; k,v=sys.stdin.read().split('\\n',1); \
             print(hmac.new(k.encode(),v.encode(),hashlib.sha256).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    py.stdin
        .take()
        .unwrap()
        .write_all(format!("{WIDGET_SECRET}\n{value}").as_bytes())
        .unwrap();
    let out = py.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn ada() -> Value {
    let mut p = person("ada@corp.example", &["staff"]);
    p["name"] = json!("Ada Lovelace");
    p["phone_no"] = json!("5550100");
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn the_widget_tag_gets_the_contact_script_and_it_carries_a_true_hash() {
    let (gw, _i, _d) = gateway("", "").await;
    let resp = page(&gw, "/pages/yourgpt", Some(&ada()), &[]).await;
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let html = resp.text().await.unwrap();
    let inserted = format!("<script src=\"{CONTACT}\" nonce=\"n0nce\"></script><script src=\"https://widget.yourgpt.ai/script.js\"");
    assert!(html.contains(&inserted), "{html}");
    assert_eq!(html.matches(CONTACT).count(), 1);

    let resp = contact(&gw, Some(&ada()), Some("same-origin"), Some("script")).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(h["cache-control"], "private, no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let data = data_of(&resp.text().await.unwrap());
    assert_eq!(data["ext_user_id"], "id-ada@corp.example");
    assert_eq!(data["email"], "ada@corp.example");
    assert_eq!(data["name"], "Ada Lovelace");
    assert_eq!(data["user_hash"], python_hmac("id-ada@corp.example"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hash_follows_the_identifier_priority() {
    // ext_user_id from the id (default) → email when no id is sent → phone when neither.
    for (widget_extra, field, want) in [
        ("", "ext_user_id", "id-ada@corp.example"),
        ("ext_user_id = \"none\"", "email", "ada@corp.example"),
        (
            "ext_user_id = \"none\"\nfields = [\"name\", \"phone\"]",
            "phone",
            "5550100",
        ),
    ] {
        let (gw, _i, _d) = gateway(widget_extra, "").await;
        let resp = contact(&gw, Some(&ada()), Some("same-origin"), Some("script")).await;
        assert_eq!(resp.status(), 200, "{widget_extra}");
        let data = data_of(&resp.text().await.unwrap());
        assert_eq!(data[field], want, "{widget_extra}");
        assert_eq!(data["user_hash"], python_hmac(want), "{widget_extra}");
    }
    // A person with none of the identifiers sent: no script on the page, 422 at the endpoint,
    // and a log line naming the claims to map.
    let (gw, _i, _d) = gateway("ext_user_id = \"none\"\nfields = [\"name\", \"phone\"]", "").await;
    let mut nobody = ada();
    nobody.as_object_mut().unwrap().remove("phone_no");
    let html = page(&gw, "/pages/yourgpt", Some(&nobody), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(CONTACT), "{html}");
    let resp = contact(&gw, Some(&nobody), Some("same-origin"), Some("script")).await;
    assert_eq!(resp.status(), 422);
    assert!(
        log_line_with(&[
            "chatbot widget is not signed in",
            "phone (claim \"phone_no\")"
        ])
        .is_some(),
        "{}",
        captured_logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_site_or_an_old_browser_gets_no_contact_data() {
    let (gw, _i, _d) = gateway("", "").await;
    for (site, dest) in [
        (Some("cross-site"), Some("script")),
        (Some("same-site"), Some("script")),
        (Some("none"), Some("script")),
        (Some("same-origin"), Some("document")),
        (Some("same-origin"), Some("empty")),
        (None, Some("script")),
        (Some("same-origin"), None),
        (None, None),
    ] {
        let resp = contact(&gw, Some(&ada()), site, dest).await;
        assert_eq!(resp.status(), 403, "{site:?} {dest:?}");
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("user_hash") && !body.contains("ada@"),
            "{body}"
        );
    }
    // Nobody signed in.
    let resp = contact(&gw, None, Some("same-origin"), Some("script")).await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_anonymous_and_non_navigations_get_nothing_added() {
    let (gw, _i, _d) = gateway("", "[apps.gpt.allow]\ngroups = [\"ai-users\"]").await;
    // Refused by the app's rules: no script on the page, 403 at the endpoint.
    let html = page(&gw, "/pages/yourgpt", Some(&ada()), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains(CONTACT), "{html}");
    let resp = contact(&gw, Some(&ada()), Some("same-origin"), Some("script")).await;
    assert_eq!(resp.status(), 403);
    let mut admitted = ada();
    admitted["groups"] = json!(["ai-users"]);
    // Anonymous, a fetch(), a frame, a prefetch, another widget id: nothing.
    type Probe<'a> = (Option<&'a Value>, &'a str, Vec<(&'a str, &'a str)>);
    let none: Vec<Probe> = vec![
        (None, "/pages/yourgpt", vec![]),
        (
            Some(&admitted),
            "/pages/yourgpt",
            vec![("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty")],
        ),
        (
            Some(&admitted),
            "/pages/yourgpt",
            vec![("Sec-Fetch-Dest", "iframe")],
        ),
        (
            Some(&admitted),
            "/pages/yourgpt",
            vec![("Sec-Purpose", "prefetch")],
        ),
        (Some(&admitted), "/pages/yourgpt-other", vec![]),
    ];
    for (who, path, headers) in none {
        let mut req = client().get(gw.url(path)).header("Accept", "text/html");
        if let Some(c) = who {
            req = req.header("Cookie", cookie(c));
        }
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let html = req.send().await.unwrap().text().await.unwrap();
        assert!(!html.contains(CONTACT), "{path} {headers:?}: {html}");
    }
    let html = page(&gw, "/pages/yourgpt", Some(&admitted), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(CONTACT), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_stay_data() {
    let (gw, _i, _d) = gateway("", "").await;
    let mut mallory = ada();
    mallory["name"] = json!("</script><script>alert(1)</script>\u{2028}\"');//");
    let resp = contact(&gw, Some(&mallory), Some("same-origin"), Some("script")).await;
    let js = resp.text().await.unwrap();
    assert!(!js.contains("</script") && !js.contains('\u{2028}'), "{js}");
    assert_eq!(data_of(&js)["name"], mallory["name"]);
}
