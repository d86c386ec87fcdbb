//! The gateway's own pages lead somewhere, and the log says who they were shown to: every
//! error page has a way back (the referring page when it is on the same host, else
//! `[pages] home_url`) and a help-desk line with a reference that the request's access-log
//! line carries; a 403 names the person in the log and may offer a request-access link; the
//! portal and `whoami` lines name the person too.

use crate::common::*;

const PAGES: &str = "[pages]\norganisation = \"Acme <Intranet>\"\n\
                     help_desk = \"the IT Service Desk, ext. 4357\"\n\
                     help_desk_url = \"mailto:help@acme.example\"\n\
                     request_access_url = \"https://forms.acme.example/access?app={app}\"\n";

async fn gateway(pages: &str) -> (TestGateway, Intranet) {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}{pages}\
         [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://chat.example.test\"\n\
         secret = {{ file = \"typingmind-secret.txt\" }}\ndisplay_name = \"Acme Chat\"\n\
         [[routes]]\npath = \"/admin\"\nupstream = \"intranet\"\nallow = {{ groups = [\"admins\"] }}\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\nallow = {{ groups = [\"ai-users\"] }}\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
    );
    (TestGateway::start(&config), intranet)
}

/// Signed in as `email`, in the `staff` group only (the apps are for `ai-users`).
const STAFF: &[&str] = &["staff"];
const AI_USER: &[&str] = &["staff", "ai-users"];

/// Who a request is from: email and groups.
type Who<'a> = Option<(&'a str, &'a [&'a str])>;

/// `GET path` as a browser would send it, signed in as `who` when given.
async fn browse(
    gw: &TestGateway,
    path: &str,
    who: Who<'_>,
    referer: Option<&str>,
) -> (u16, String) {
    let mut req = client().get(gw.url(path)).header("Accept", "text/html");
    if let Some((email, groups)) = who {
        req = req.header(
            "Cookie",
            format!("intranet_session={}", hs256(&person(email, groups))),
        );
    }
    if let Some(referer) = referer {
        req = req.header("Referer", referer);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The reference a page shows (`quote reference <strong>REF</strong>`).
fn reference_on(page: &str) -> String {
    page.split("quote reference <strong>")
        .nth(1)
        .and_then(|r| r.split("</strong>").next())
        .unwrap_or_else(|| panic!("no reference on the page:\n{page}"))
        .to_string()
}

/// The `href` of the page's way back (the button after the message).
fn way_back(page: &str) -> (String, String) {
    let link = page
        .split("<a class=\"button\" href=\"")
        .last()
        .unwrap_or_else(|| panic!("no way back on the page:\n{page}"));
    let (href, rest) = link.split_once("\">").expect("a link");
    let label = rest.split("</a>").next().expect("its text");
    (href.to_string(), label.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_leads_back_names_the_person_in_the_log_and_offers_to_request_access() {
    let (gw, _intranet) = gateway(PAGES).await;
    let from = gw.url("/wiki/ai-tools?team=ops");

    // An app the person may not use: 403, the way back to the page the link was on.
    let (status, page) = browse(
        &gw,
        "/ai/chat",
        Some(("mallory@acme.example", STAFF)),
        Some(&from),
    )
    .await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("You do not have access to Acme Chat"),
        "{page}"
    );
    assert!(
        page.contains("You are signed in as mallory@acme.example"),
        "{page}"
    );
    assert_eq!(
        way_back(&page),
        (
            "/wiki/ai-tools?team=ops".to_string(),
            "Back to the page you came from".to_string()
        )
    );
    assert!(
        page.contains("href=\"https://forms.acme.example/access?app=chat\">Request access</a>"),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"mailto:help@acme.example\">the IT Service Desk, ext. 4357</a>"),
        "{page}"
    );
    assert!(
        page.contains("Acme &lt;Intranet&gt;"),
        "the organisation, escaped: {page}"
    );
    let reference = reference_on(&page);
    let line = wait_for_log_line(&format!("reference=\"{reference}\"")).await;
    assert!(line.contains("status=403"), "{line}");
    assert!(line.contains("outcome=\"forbidden\""), "{line}");
    assert!(
        line.contains("person=\"id-mallory@acme.example\""),
        "who was refused: {line}"
    );

    // A protected intranet area: the same, with the route's path as what access is asked for.
    let (status, page) = browse(
        &gw,
        "/admin/users",
        Some(("mallory@acme.example", STAFF)),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        page.contains("You do not have access to this page"),
        "{page}"
    );
    assert!(page.contains("access?app=%2Fadmin\""), "{page}");
    assert_eq!(
        way_back(&page),
        ("/".to_string(), "Back to the intranet".to_string())
    );

    // A handoff that worked: its access line and its handoff line share one reference.
    let (status, _) = browse(
        &gw,
        "/ai/chat",
        Some(("ada.handoff@acme.example", AI_USER)),
        None,
    )
    .await;
    assert_eq!(status, 302);
    let access = wait_for_log_line("person=\"id-ada.handoff@acme.example\"").await;
    let reference = access
        .split("reference=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(reference.len(), 8, "{access}");
    assert!(
        log_line_with(&["handoff::handoff", &reference]).is_some(),
        "the handoff line has the access line's reference {reference}"
    );

    // The portal and whoami name the person in the log too.
    let (status, _) = browse(
        &gw,
        "/_handoff/",
        Some(("ada.portal@acme.example", STAFF)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let line = wait_for_log_line("person=\"id-ada.portal@acme.example\"").await;
    assert!(line.contains("path=\"/_handoff/\""), "{line}");
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("grace@acme.example", &[]))
    );
    assert_eq!(whoami(&gw, &cookie).await.0, 200);
    let line = wait_for_log_line("person=\"id-grace@acme.example\"").await;
    assert!(line.contains("path=\"/_handoff/whoami\""), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_page_has_a_way_back_and_a_reference_and_no_referer_leads_off_site() {
    let (gw, _intranet) =
        gateway("[pages]\nhome_url = \"https://intranet.acme.example/start\"\n").await;
    let home = (
        "https://intranet.acme.example/start".to_string(),
        "Back to the intranet".to_string(),
    );
    let host = gw.addr.to_string();
    let cases: [(&str, Who<'_>, u16); 3] = [
        ("/_handoff/no-such-page", None, 404),
        ("/ai/chat", None, 401),
        ("/ai/chat/%00", Some(("ada@acme.example", AI_USER)), 400),
    ];
    for (path, who, expected) in cases {
        // A Referer on another host — or built to look like this one — never becomes the link.
        for referer in [
            None,
            Some("https://evil.example/phish".to_string()),
            Some(format!("http://{host}.evil.example/")),
            Some(format!("http://evil.example/{host}/")),
            Some(format!("http://{host}//evil.example/x")),
        ] {
            let (status, page) = browse(&gw, path, who, referer.as_deref()).await;
            assert_eq!(status, expected, "{path}: {page}");
            assert_eq!(way_back(&page), home, "{path} from {referer:?}");
            assert!(page.contains("Contact your help desk"), "{page}");
            let reference = reference_on(&page);
            wait_for_log_line(&format!("reference=\"{reference}\"")).await;
        }
        // From a page on the gateway's own host: back to it.
        let from = gw.url("/news");
        let (_, page) = browse(&gw, path, who, Some(&from)).await;
        assert_eq!(way_back(&page).0, "/news", "{path}");
    }
    // A client that wants JSON gets JSON, as before.
    let resp = client().get(gw.url("/ai/chat")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_intranet_gets_a_502_page_with_the_way_back_and_one_access_line() {
    let intranet_gone = free_port();
    let config = format!(
        "{session}[upstreams.intranet]\nservers = [\"127.0.0.1:{intranet_gone}\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        session = session_config(&["HS256"], ""),
    );
    let gw = TestGateway::start(&config);
    let (status, page) = browse(&gw, "/unreachable-marker", None, None).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("The intranet is not answering"), "{page}");
    assert_eq!(way_back(&page).0, "/");
    let reference = reference_on(&page);
    let line = wait_for_log_line("/unreachable-marker").await;
    assert!(
        line.contains(&format!("reference=\"{reference}\"")),
        "{line}"
    );
    assert!(line.contains("outcome=\"proxy_error\""), "{line}");
    assert!(
        line.contains("ConnectRefused"),
        "the cause is in the access line: {line}"
    );
}
