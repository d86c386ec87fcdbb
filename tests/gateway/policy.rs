//! `allow` rules: by email, by domain, by group; everyone else gets a 403 page saying why.

use serde_json::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn allow_and_deny_by_email_domain_and_group() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}[upstreams.intranet]\nservers = [\"{server}\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n\
         [[routes]]\npath = \"/by-email\"\nupstream = \"intranet\"\nallow = {{ emails = [\"Boss@Corp.Example\"] }}\n\
         [[routes]]\npath = \"/by-domain\"\nupstream = \"intranet\"\nallow = {{ domains = [\"eng.corp.example\"] }}\n\
         [[routes]]\npath = \"/by-group\"\nupstream = \"intranet\"\nallow = {{ groups = [\"ai-users\"] }}\n",
        session = session_config(&["HS256"], ""),
        server = intranet.server()
    );
    let gw = TestGateway::start(&config);
    let c = client();
    let get =
        |path: &'static str, email: &'static str, groups: &'static [&'static str], html: bool| {
            let c = c.clone();
            let url = gw.url(path);
            async move {
                let mut req = c.get(url).header(
                    "Cookie",
                    format!("intranet_session={}", hs256(&person(email, groups))),
                );
                if html {
                    req = req.header("Accept", "text/html");
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap())
            }
        };
    assert_eq!(
        get("/by-email", "boss@corp.example", &[], false).await.0,
        200
    );
    assert_eq!(
        get("/by-email", "intern@corp.example", &[], false).await.0,
        403
    );
    assert_eq!(
        get("/by-domain", "dev@ENG.corp.example", &[], false)
            .await
            .0,
        200
    );
    assert_eq!(
        get("/by-domain", "dev@evileng.corp.example", &[], false)
            .await
            .0,
        403
    );
    assert_eq!(
        get("/by-domain", "dev@corp.example", &[], false).await.0,
        403
    );
    assert_eq!(
        get("/by-group", "x@corp.example", &["staff", "ai-users"], false)
            .await
            .0,
        200
    );
    assert_eq!(
        get("/by-group", "x@corp.example", &["AI-USERS"], false)
            .await
            .0,
        403
    );
    assert_eq!(
        get("/by-group/sub/page", "x@corp.example", &["staff"], false)
            .await
            .0,
        403
    );

    // The 403 page says who they are and why, in plain words, without markup injection.
    let (status, page) = get("/by-group", "x@corp.example", &["staff"], true).await;
    assert_eq!(status, 403);
    assert!(
        page.contains("You are signed in as x@corp.example."),
        "{page}"
    );
    assert!(
        page.contains("This page is open to members of ai-users."),
        "{page}"
    );
    let (status, body) = get("/by-group", "x@corp.example", &["staff"], false).await;
    assert_eq!(status, 403);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "forbidden");

    // No session on an allow route: not a 403, a 401.
    let resp = c.get(gw.url("/by-email")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_lists_the_apps_each_person_may_open() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}\
         [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://chat.example.test\"\n\
         secret = {{ file = \"typingmind-secret.txt\" }}\n\
         [apps.research]\nkind = \"typingmind\"\ninstance_url = \"https://research.example.test\"\n\
         secret = {{ file = \"typingmind-secret.txt\" }}\ndisplay_name = \"Research <assistant>\"\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n\
         [[routes]]\npath = \"/ai/research\"\napp = \"research\"\nallow = {{ groups = [\"research\"] }}\n",
        session = session_config(&["HS256"], "login_url = \"/login?next={return_to}\""),
        upstream = upstream_config(&intranet),
    );
    let gw = TestGateway::start(&config);
    let portal = |cookie: Option<String>| {
        let mut req = client()
            .get(gw.url("/_handoff/"))
            .header("Accept", "text/html");
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        async move {
            let resp = req.send().await.expect("portal");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["cache-control"], "no-store");
            resp.text().await.unwrap_or_default()
        }
    };
    let as_person = |groups: &[&str]| {
        Some(format!(
            "intranet_session={}",
            hs256(&person("ada@corp.example", groups))
        ))
    };
    let page = portal(as_person(&["research"])).await;
    assert!(
        page.contains("Signed in to the intranet as <strong>Ada Lovelace (ada@corp.example)"),
        "{page}"
    );
    assert!(
        page.contains("href=\"/ai/chat\"") && page.contains("href=\"/ai/research\""),
        "{page}"
    );
    // Named as people know them: the display name, else the product (with the config's name
    // when it says more).
    assert!(page.contains(">Research &lt;assistant&gt;</a>"), "{page}");
    assert!(
        page.contains(">TypingMind <span class=\"code\">(chat)</span></a>"),
        "{page}"
    );
    let page = portal(as_person(&[])).await;
    assert!(page.contains("href=\"/ai/chat\""), "{page}");
    assert!(
        !page.contains("/ai/research"),
        "policy hides what is closed: {page}"
    );
    let page = portal(None).await;
    assert!(page.contains("not signed in"), "{page}");
    assert!(
        page.contains("href=\"/login?next=%2F%5Fhandoff%2F\""),
        "{page}"
    );
    assert!(!page.contains("/ai/chat"));
}
