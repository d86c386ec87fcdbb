//! No person's code or token leaves for anyone but that person, and a route's rules hold
//! however the upstream reads the path: crafted deep links (read back by two WHATWG parsers,
//! the `url` crate's and Node's), the readings of nginx, Rails/Spring and IIS against real
//! servers, the cache fields of a page carrying a code, planted widget codes, odd cookies and
//! speculative loads.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use handoff::internals::standins::yourgpt::{YourGptStandIn, CLIENT_ID};

const INSTANCE_HOST: &str = "chat.example.test";

/// TypingMind (link and widget) and YourGPT, the intranet on `/` and an admins-only `/admin`.
async fn gateway(api: &YourGptStandIn) -> (TestGateway, Intranet) {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}\
         [apps.chat]\nkind = \"typingmind\"\ninstance_url = \"https://{INSTANCE_HOST}/\"\n\
         secret = {{ file = \"typingmind-secret.txt\" }}\nwidget = true\n\
         [apps.gpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"yourgpt-secret.txt\" }}\napi_url = \"{api}\"\n\
         login_url = \"https://chatbot.yourgpt.test/\"\n\
         [[routes]]\npath = \"/ai/chat\"\napp = \"chat\"\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"gpt\"\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
        api = api.url(),
    );
    (TestGateway::start_with(&config, "h2c = true"), intranet)
}

async fn yourgpt() -> YourGptStandIn {
    YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap()
}

fn ada_cookie() -> String {
    format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &["staff"]))
    )
}

/// One raw HTTP/1.1 request for `target` as a signed-in person's browser navigation.
fn navigate(addr: SocketAddr, target: &[u8], cookie: &str) -> String {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: intranet.test\r\nAccept: text/html\r\nSec-Fetch-Dest: document\r\n\
             Cookie: {cookie}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    raw_exchange(addr, &request, Duration::from_secs(5))
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response
        .split("\r\n\r\n")
        .next()?
        .lines()
        .skip(1)
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The hosts Node's WHATWG `URL` reads from each of `urls`.
fn node_hosts(urls: &[String]) -> Vec<String> {
    let mut node = Command::new("node")
        .args([
            "-e",
            "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{\
             for(const u of JSON.parse(s)){let h;try{h=new URL(u).host}catch(e){h='!'+e.message}\
             console.log(h)}})",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (the machine's Node.js; .ci/run installs nodejs when missing)");
    let input = serde_json::to_vec(urls).unwrap();
    node.stdin.take().unwrap().write_all(&input).unwrap();
    let out = node.wait_with_output().unwrap();
    assert!(out.status.success(), "node failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Deep-link tails an attacker may put after `/ai/chat`: the reported ones and a generated set.
fn hostile_tails() -> Vec<String> {
    let mut tails: Vec<String> = [
        ";@evil.example/steal",
        ";x:y@evil.example/steal",
        ";@evil.example",
        "%40evil.example/steal",
        ";%40evil.example",
        "%3B@evil.example",
        "/..;@evil.example/",
        "/\\evil.example/x",
        "/%5Cevil.example",
        "//evil.example/x",
    ]
    .map(String::from)
    .to_vec();
    let pieces = [
        ";", "@", ":", "\\", "%2F", "%40", "%3B", "%3A", "%5C", "%09", "%0A", "é", "%C3%A9", "x",
    ];
    for a in pieces {
        for b in pieces {
            tails.push(format!("{a}{b}evil.example/x"));
            tails.push(format!("{a}x:y{b}@evil.example"));
        }
    }
    tails
}

#[tokio::test(flavor = "multi_thread")]
async fn no_crafted_deep_link_sends_a_code_off_the_instance() {
    let api = yourgpt().await;
    let (gw, _i) = gateway(&api).await;
    let cookie = ada_cookie();
    let mut locations = Vec::new();
    let (mut redirected, mut refused) = (0, 0);
    for tail in hostile_tails() {
        for target in [
            format!("/ai/chat{tail}"),
            format!("http://intranet.test/ai/chat{tail}"),
        ] {
            let response = navigate(gw.addr, target.as_bytes(), &cookie);
            match status_of(&response) {
                302 => {
                    let location = header_of(&response, "location").unwrap().to_string();
                    let read = url::Url::parse(&location).unwrap();
                    assert_eq!(
                        read.host_str(),
                        Some(INSTANCE_HOST),
                        "{target} → {location}"
                    );
                    assert!(read.username().is_empty() && read.password().is_none());
                    locations.push(location);
                    redirected += 1;
                }
                // 200: a path that is not under the route (`/ai/chat%40…`) is the intranet's.
                200 | 400 | 404 => {
                    assert!(!response.contains("externalAuthCode"), "{response}");
                    refused += 1;
                }
                other => panic!("{target}: {other}\n{response}"),
            }
        }
    }
    // Over h2c too.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for tail in [
        ";@evil.example/steal",
        ";x:y@evil.example",
        "%40evil.example",
    ] {
        let resp = h2
            .get(gw.url(&format!("/ai/chat{tail}")))
            .header("Accept", "text/html")
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        if resp.status() == 302 {
            locations.push(resp.headers()["location"].to_str().unwrap().to_string());
        }
    }
    assert!(
        redirected > 50,
        "{redirected} redirected, {refused} refused"
    );
    for (location, host) in locations.iter().zip(node_hosts(&locations)) {
        assert_eq!(host, INSTANCE_HOST, "Node reads {location} as {host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deep_link_keeps_its_path_and_query_on_the_instance() {
    let api = yourgpt().await;
    let (gw, _i) = gateway(&api).await;
    let response = navigate(
        gw.addr,
        b"/ai/chat/agents/a%20b?x=1&externalAuthCode=old",
        &ada_cookie(),
    );
    assert_eq!(status_of(&response), 302, "{response}");
    let location = url::Url::parse(header_of(&response, "location").unwrap()).unwrap();
    assert_eq!(location.path(), "/agents/a%20b");
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    assert_eq!(pairs[0], ("x".into(), "1".into()));
    assert_eq!(pairs[1].0, "externalAuthCode");
    assert_ne!(pairs[1].1, "old");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_with_a_minted_code_is_uncacheable_everywhere() {
    let api = yourgpt().await;
    let (gw, _i) = gateway(&api).await;
    for path in [
        "/cached/widget",
        "/cached/widget?status=404",
        "/cached/widget?status=500",
    ] {
        let resp = client()
            .get(gw.url(path))
            .header("Accept", "text/html")
            .header("Sec-Fetch-Dest", "document")
            .header("Cookie", ada_cookie())
            .header("If-None-Match", "\"v1\"")
            .header("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")
            .send()
            .await
            .unwrap();
        assert_ne!(
            resp.status(),
            304,
            "{path}: a 304 would keep another page's code"
        );
        let h = resp.headers().clone();
        assert_eq!(
            h["x-saw-conditional"], "",
            "{path}: conditional headers reached the intranet"
        );
        for gone in [
            "surrogate-control",
            "surrogate-key",
            "cdn-cache-control",
            "cloudflare-cdn-cache-control",
            "vercel-cdn-cache-control",
            "x-accel-expires",
            "edge-control",
            "x-litespeed-cache-control",
            "expires",
            "etag",
            "last-modified",
            "age",
        ] {
            assert!(!h.contains_key(gone), "{path}: {gone} kept: {h:?}");
        }
        assert_eq!(h["cache-control"], "private, no-store", "{path}");
        let vary: Vec<&str> = h
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            vary.iter()
                .any(|v| v.to_ascii_lowercase().contains("cookie")),
            "{path}: {vary:?}"
        );
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("data-external-auth-code=\""),
            "{path}: {body}"
        );
    }
    // Without a person nothing is minted: the page keeps its validators.
    let resp = client()
        .get(gw.url("/cached/widget"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["etag"], "\"v1\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_codes_are_removed_in_every_shape_the_browser_loads() {
    let api = yourgpt().await;
    let (gw, _i) = gateway(&api).await;
    for page in [
        "/pages/base",
        "/pages/svg",
        "/pages/decoy-base",
        "/pages/root-dot",
        // Types a browser runs scripts in (or sniffs), whatever else the headers say.
        "/typed/base",
        "/typed/base?ct=",
        "/typed/base?ct=text/plain|text/html",
        "/typed/base?ct=text/plain,%20text/html",
        "/typed/base?ct=unknown/unknown",
        "/typed/base?ct=*/*",
        "/typed/base?ct=application/xml",
        "/typed/base?ct=image/svg%2Bxml",
    ] {
        for cookie in [None, Some(ada_cookie())] {
            let mut req = client().get(gw.url(page)).header("Accept", "text/html");
            if let Some(c) = &cookie {
                req = req.header("Cookie", c);
            }
            let body = req.send().await.unwrap().text().await.unwrap();
            assert!(
                !body.contains("planted-code"),
                "{page} ({cookie:?}): {body}"
            );
            if cookie.is_some() {
                assert!(
                    body.contains("data-external-auth-code=\""),
                    "{page}: {body}"
                );
            }
        }
    }
}

/// `whoami`'s status for a raw `Cookie` header.
fn whoami_raw(addr: SocketAddr, cookie: &[u8]) -> (u16, String) {
    let mut request = b"GET /_handoff/whoami HTTP/1.1\r\nHost: intranet.test\r\nCookie: ".to_vec();
    request.extend_from_slice(cookie);
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let response = raw_exchange(addr, &request, Duration::from_secs(5));
    (status_of(&response), response)
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_or_stale_cookies_never_hide_a_valid_session() {
    let api = yourgpt().await;
    let (gw, _i) = gateway(&api).await;
    let valid = ada_cookie();
    for other in [
        &b"city=Z\xc3\xbcrich"[..],
        b"latin=Z\xfcrich",
        b"x=\xff\xfe",
    ] {
        for cookie in [
            [valid.as_bytes(), b"; ", other].concat(),
            [other, b"; ", valid.as_bytes()].concat(),
        ] {
            let (status, response) = whoami_raw(gw.addr, &cookie);
            assert_eq!(status, 200, "{response}");
            assert!(response.contains("ada@corp.example"), "{response}");
            assert_eq!(
                header_of(&response, "x-content-type-options"),
                Some("nosniff")
            );
        }
    }
    // Stale copies for other paths or parent domains come first; a browser sends up to 50.
    let mut stale = person("ada@corp.example", &["staff"]);
    stale["exp"] = json!(now() - 3600);
    let stale = format!("intranet_session={}", hs256(&stale));
    for n in [4, 20, 49] {
        let mut cookies = vec![stale.clone(); n];
        cookies.push(valid.clone());
        let (status, response) = whoami_raw(gw.addr, cookies.join("; ").as_bytes());
        assert_eq!(status, 200, "{n} stale cookies first: {response}");
    }
    // Junk copies (empty, not a JWT, repeats) do not count against the bound.
    let mut cookies = vec!["intranet_session=".to_string(); 500];
    cookies.extend(vec!["intranet_session=junk".to_string(); 100]);
    cookies.extend(vec![stale.clone(); 100]);
    cookies.push(valid.clone());
    let (status, response) = whoami_raw(gw.addr, cookies.join("; ").as_bytes());
    assert_eq!(status, 200, "tossed junk cookies first: {response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn speculative_loads_start_nothing_and_get_no_code() {
    let api = yourgpt().await;
    api.add_unconfirmed("linus@corp.example");
    let (gw, _i) = gateway(&api).await;
    let linus = format!(
        "intranet_session={}",
        hs256(&person("linus@corp.example", &["staff"]))
    );
    let speculative = [
        ("Sec-Purpose", "prefetch"),
        ("Sec-Purpose", "prefetch;prerender"),
        ("Sec-Purpose", "prefetch; anonymous-client-ip"),
        ("Purpose", "prefetch"),
        ("Purpose", "preview"),
        ("X-Purpose", "preview"),
        ("X-Moz", "prefetch"),
    ];
    for (name, value) in speculative {
        for path in ["/ai/yourgpt", "/ai/chat"] {
            let resp = client()
                .get(gw.url(path))
                .header("Accept", "text/html")
                .header("Sec-Fetch-Dest", "document")
                .header("Cookie", &linus)
                .header(name, value)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 503, "{path} with {name}: {value}");
            assert_eq!(resp.headers()["cache-control"], "no-store");
            assert!(!resp.headers().contains_key("location"));
        }
        let html = client()
            .get(gw.url("/pages/widget"))
            .header("Accept", "text/html")
            .header("Cookie", ada_cookie())
            .header(name, value)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !html.contains("data-external-auth-code"),
            "{name}: {value}: {html}"
        );
    }
    assert_eq!(api.count("verify"), 0, "no vendor call");
    assert!(api.emails_sent().is_empty(), "no email");
    // The real navigation goes through.
    let resp = client()
        .get(gw.url("/ai/yourgpt"))
        .header("Accept", "text/html")
        .header("Sec-Fetch-Dest", "document")
        .header("Cookie", &linus)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(api.emails_sent().len(), 1);
}

/// nginx as intranets configure it: `location /admin` (a string prefix) and `location /admin/`
/// beside `location /`, each saying which area served the request; with `folded`, the admin
/// area is `location ~* ^/admin` (case-blind, as nginx's prefixes are on macOS and Windows).
fn nginx_areas(port: u16, folded: bool) -> Nginx {
    let area =
        |name: &str| format!("default_type text/plain; return 200 \"area={name} uri=$uri\\n\";");
    let admin = if folded {
        format!("location ~* ^/admin {{ {} }}", area("admin"))
    } else {
        format!(
            "location /admin {{ {} }}\nlocation /admin/ {{ {} }}",
            area("admin"),
            area("admin")
        )
    };
    let server = format!(
        "server {{ listen 127.0.0.1:{port}; server_name _;\n{admin}\nlocation / {{ {} }} }}\n",
        area("public"),
    );
    Nginx::start(&server, &[port])
}

/// A WSGI app that says, for each reading a common upstream applies to `PATH_INFO`, whether
/// it lands in the admin area: as it is (segments), Rails/Spring (a `.format` removed), a
/// servlet container (`;params` cut, suffix patterns), IIS (trailing dots and spaces dropped,
/// case folded).
const READINGS_APP: &str = r#"
import sys, threading, time
from wsgiref.simple_server import make_server, WSGIRequestHandler, WSGIServer
from socketserver import ThreadingMixIn

class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

def admin(path):
    first = path.lstrip("/").split("/")[0]
    return first == "admin"

def readings(path):
    segs = path.split("/")
    last = segs[-1]
    rails = "/".join(segs[:-1] + [last.split(".")[0] if "." in last[1:] else last])
    servlet = "/".join(s.split(";")[0] for s in segs)
    servlet_suffix = "/".join(servlet.split("/")[:-1] + [servlet.split("/")[-1].split(".")[0]])
    iis = "/".join(s.rstrip(". ") for s in segs).lower()
    return {"segments": path, "rails": rails, "servlet": servlet_suffix, "iis": iis}

def app(environ, start):
    path = environ["PATH_INFO"]
    areas = [name for name, p in readings(path).items() if admin(p)]
    body = ("admin-by=" + ",".join(areas) + "\n").encode()
    start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

server = make_server("127.0.0.1", int(sys.argv[1]), app, server_class=Server, handler_class=Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()
while True:
    time.sleep(3600)
"#;

/// Paths around `/admin` that a common upstream serves from its admin area.
const ADMIN_SHAPES: &[&[u8]] = &[
    b"/admin.json",
    b"/admin.",
    b"/admin./x",
    b"/admin../x",
    b"/admin%2e/x",
    b"/admin%2E",
    b"/admin%20/x",
    b"/admin /x",
    b"/admin.%20/x",
    b"/adminx",
    b"/admin-panel",
    b"/ADMIN/x",
    b"/Admin.json",
    b"/aDmIn./x",
    b"/admin.json/x",
    b"/admin;x.json",
    b"/ADMINx",
    b"/ADMIN-panel",
    b"/aDmIn_secret",
    b"/Admin.x/y",
];

fn admin_gateway(port: u16) -> TestGateway {
    let config = format!(
        "{session}[upstreams.intranet]\nservers = [\"127.0.0.1:{port}\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n\
         [[routes]]\npath = \"/admin\"\nupstream = \"intranet\"\n\
         [routes.allow]\ngroups = [\"admins\"]\n",
        session = session_config(&["HS256"], ""),
    );
    TestGateway::start(&config)
}

/// Every shape, anonymous and as a non-admin: refused, stopped, or served outside the admin
/// area by the upstream's own reading; an admin is served.
fn check_admin_area(gw: &TestGateway, upstream: &str) {
    let staff = format!(
        "intranet_session={}",
        hs256(&person("s@corp.example", &["staff"]))
    );
    let boss = format!(
        "intranet_session={}",
        hs256(&person("b@corp.example", &["admins"]))
    );
    for &shape in ADMIN_SHAPES {
        let shown = String::from_utf8_lossy(shape);
        for cookie in ["", staff.as_str()] {
            let response = navigate(gw.addr, shape, cookie);
            let status = status_of(&response);
            let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let admin_served = body.contains("area=admin")
                || (body.starts_with("admin-by=") && !body.starts_with("admin-by=\n"));
            match status {
                200 => assert!(
                    !admin_served,
                    "{upstream}: {shown} served its admin area (signed in: {}): {body}",
                    !cookie.is_empty()
                ),
                302 | 400 | 401 | 403 => {}
                other => panic!("{upstream}: {shown}: {other}\n{response}"),
            }
        }
        let response = navigate(gw.addr, shape, &boss);
        let status = status_of(&response);
        assert!(
            matches!(status, 200 | 400),
            "{upstream}: {shown} refused an admin: {response}"
        );
    }
}

#[test]
fn route_rules_hold_for_nginx_string_prefixes() {
    for folded in [false, true] {
        let port = free_port();
        let _nginx = nginx_areas(port, folded);
        let gw = admin_gateway(port);
        check_admin_area(&gw, if folded { "nginx ~*" } else { "nginx" });
    }
}

#[test]
fn route_rules_hold_for_rails_servlet_and_iis_readings() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("readings.py");
    std::fs::write(&script, READINGS_APP).unwrap();
    let port = free_port();
    let _wsgi = Spawned::start(
        Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        libc::SIGTERM,
        "python3",
    );
    wait_until_connectable(SocketAddr::from(([127, 0, 0, 1], port)));
    let gw = admin_gateway(port);
    check_admin_area(&gw, "wsgi");
}

#[tokio::test(flavor = "multi_thread")]
async fn path_readings_segments_opts_a_route_out() {
    let intranet = Intranet::start().await;
    let config = format!(
        "{session}{upstream}\
         [[routes]]\npath = \"/admin\"\nupstream = \"intranet\"\npath_readings = \"segments\"\n\
         [routes.allow]\ngroups = [\"admins\"]\n",
        session = session_config(&["HS256"], ""),
        upstream = upstream_config(&intranet),
    );
    let gw = TestGateway::start(&config);
    let resp = client().get(gw.url("/admin.json")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a segments-only route does not claim /admin.json"
    );
    let resp = client().get(gw.url("/admin/x")).send().await.unwrap();
    assert_ne!(resp.status(), 200);
}
