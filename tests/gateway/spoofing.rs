//! Identity headers sent by a client never reach the upstream — on any route, including routes
//! that inject nothing and WebSocket upgrades.

use futures_util::StreamExt;

use crate::common::*;

const SPOOFED: [&str; 5] = [
    "X-Handoff-User",
    "X-Handoff-Email",
    "X-Handoff-Name",
    "X-Handoff-Username",
    "X-Handoff-Groups",
];

#[tokio::test(flavor = "multi_thread")]
async fn client_identity_headers_never_reach_the_upstream() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{}[identity_headers]\nemail = \"X-Remote-Email\"\n\
         [upstreams.intranet]\nservers = [\"{}\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n\
         [[routes]]\npath = \"/with-identity\"\nupstream = \"intranet\"\nidentity_headers = true\n",
        session_config(&["HS256"], ""),
        intranet.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let spoof = |req: reqwest::RequestBuilder| {
        let mut req = req
            .header("X-Remote-Email", "ceo@corp.example")
            .header("x-remote-email", "second@corp.example");
        for name in SPOOFED {
            req = req.header(name, "spoofed");
        }
        req
    };
    // Route that injects nothing, no session.
    let echo = Echo::from(spoof(c.get(gw.url("/plain"))).send().await.unwrap()).await;
    assert!(echo.headers("x-remote-email").is_empty());
    for name in [
        "X-Handoff-User",
        "X-Handoff-Name",
        "X-Handoff-Username",
        "X-Handoff-Groups",
    ] {
        assert!(echo.headers(name).is_empty(), "{name} reached the upstream");
    }
    // Identity route, no session: stripped, nothing injected.
    let echo = Echo::from(spoof(c.get(gw.url("/with-identity"))).send().await.unwrap()).await;
    assert!(echo.headers("x-remote-email").is_empty());
    // Identity route with a session: exactly one value, the real one.
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &["eng"]))
    );
    let echo = Echo::from(
        spoof(c.get(gw.url("/with-identity")))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-remote-email"), vec!["ada@corp.example"]);
    assert_eq!(echo.headers("x-handoff-groups"), vec!["eng"]);
    // A client cannot get an injected header stripped by nominating it in Connection either.
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &[]))
    );
    let echo = Echo::from(
        c.get(gw.url("/with-identity"))
            .header("Cookie", cookie)
            .header("Connection", "keep-alive, X-Remote-Email")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echo.headers("x-remote-email"), vec!["ada@corp.example"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_requests_are_stripped_too() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let intranet = Intranet::start().await;
    let gw = TestGateway::start(&upstream_config(&intranet));
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("X-Handoff-Email", "ceo@corp.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text("hi".into()))
        .await
        .unwrap();
    // The stand-in sends "spoofed" first if it saw the header.
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("an answer in time")
        .expect("the connection stays open")
        .unwrap_or_else(|e| panic!("websocket error: {e}"))
        .into_text()
        .unwrap();
    assert_eq!(first, "echo:hi");
}
