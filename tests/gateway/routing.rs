//! Which upstream a request goes to: longest segment prefix, host match, no route → 404 page.

use crate::common::*;

async fn served_by(c: &reqwest::Client, url: String, host: Option<&str>) -> (u16, String) {
    let mut req = c.get(url);
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let tag = resp
        .headers()
        .get("x-served-by")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, tag)
}

#[tokio::test(flavor = "multi_thread")]
async fn longest_prefix_segment_boundary_and_host_match() {
    let root = Intranet::start().await;
    let ai = Intranet::start().await;
    let chat = Intranet::start().await;
    let hr = Intranet::start().await;
    let config = format!(
        r#"
[upstreams.root]
servers = ["{root}"]
[upstreams.ai]
servers = ["{ai}"]
[upstreams.chat]
servers = ["{chat}"]
[upstreams.hr]
servers = ["{hr}"]

[[routes]]
path = "/"
upstream = "root"
[[routes]]
path = "/ai"
upstream = "ai"
[[routes]]
path = "/ai/chat/"
upstream = "chat"
[[routes]]
path = "/"
host = "*.hr.example"
upstream = "hr"
"#,
        root = root.server(),
        ai = ai.server(),
        chat = chat.server(),
        hr = hr.server(),
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let cases: &[(&str, Option<&str>, &Intranet)] = &[
        ("/", None, &root),
        ("/aix", None, &root),
        ("/ai", None, &ai),
        ("/ai/", None, &ai),
        ("/ai/x?y=1", None, &ai),
        ("/ai/chatter", None, &ai),
        ("/ai/chat", None, &chat),
        ("/ai/chat/agents/1", None, &chat),
        ("/%61i/chat", None, &chat),
        ("//ai/./chat", None, &chat),
        ("/x/../ai", None, &ai),
        ("/ai", Some("jobs.hr.example"), &hr),
        ("/ai", Some("JOBS.HR.EXAMPLE:8080"), &hr),
        ("/ai", Some("hr.example"), &ai),
    ];
    for (path, host, expected) in cases {
        let (status, served_by) = served_by(&c, gw.url(path), *host).await;
        assert_eq!(status, 200, "{path} {host:?}");
        assert_eq!(served_by, expected.server(), "{path} with host {host:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_gets_a_404_page_and_gateway_endpoints_answer() {
    let intranet = Intranet::start().await;
    let config = format!(
        "[upstreams.intranet]\nservers = [\"{}\"]\n[[routes]]\npath = \"/app\"\nupstream = \"intranet\"\n",
        intranet.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let resp = c
        .get(gw.url("/elsewhere"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("There is nothing at this address."));
    let resp = c.get(gw.url("/elsewhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "no_route");

    let resp = c.get(gw.url("/_handoff/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
    let resp = c.get(gw.url("/_handoff/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["ready"], true);
    let resp = c.get(gw.url("/_handoff/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}
