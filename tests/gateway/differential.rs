//! The gateway against real upstreams: nginx (with `underscores_in_headers on`, as some sites
//! run it) and a Python WSGI server (stdlib `wsgiref`, which reads `X_Foo` as `X-Foo` like every
//! CGI/WSGI server). Each listens on one port per route, so the port that answers says which
//! route the gateway applied, and the answer says which path the upstream served.
//!
//! For every target of a generated corpus of hostile paths the test asserts: the gateway
//! refused it (400), or a protected route stopped it (401/403), or the route the gateway
//! applied is the route the served path matches — read as nginx/WSGI serve it, as a servlet
//! container does (`;params` cut) and as IIS does (`\` is `/`). Then every spelling of every
//! identity and forwarding header, over HTTP/1.1, h2c, a WebSocket upgrade and `Connection`
//! nominations: the upstream never sees a forged value. A host that embeds Handoff and skips
//! `upstream_request_filter` forwards none either.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use serde_json::Value;

use crate::common::*;

/// Routes, in the order of the upstream ports: `/` and `/pub` are open, `/admin` needs a
/// session, `/private` only admits the `admins` group.
const ROUTES: [&str; 4] = ["/", "/pub", "/admin", "/private"];

/// A real upstream server process (nginx or `wsgiref`), stopped when dropped.
struct RealUpstream {
    _process: Box<dyn Send>,
    ports: Vec<u16>,
}

/// A process stopped when dropped, with the folder it runs from (removed after it).
struct InFolder {
    _process: Spawned,
    _dir: tempfile::TempDir,
}

impl RealUpstream {
    /// nginx answering `port`, `path` (its normalised `$uri`) and the headers of interest.
    fn nginx() -> RealUpstream {
        let ports: Vec<u16> = ROUTES.iter().map(|_| free_port()).collect();
        let listen: String = ports
            .iter()
            .map(|p| format!("listen 127.0.0.1:{p};\n"))
            .collect();
        let headers: String = WATCHED
            .iter()
            .map(|h| format!("{h}=$http_{}\\n", h.replace('-', "_")))
            .collect();
        let server = format!(
            "server {{ {listen} server_name _; underscores_in_headers on;\n\
             location / {{ default_type text/plain;\n\
             return 200 \"port=$server_port\\npath=$uri\\nhost=$host\\n{headers}\"; }} }}\n"
        );
        RealUpstream {
            _process: Box::new(Nginx::start(&server, &ports)),
            ports,
        }
    }

    /// `wsgiref` answering `port`, `path` (PATH_INFO) and every `HTTP_*` variable.
    fn wsgi() -> RealUpstream {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<u16> = ROUTES.iter().map(|_| free_port()).collect();
        let script = dir.path().join("app.py");
        std::fs::write(&script, WSGI_APP).expect("app.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script);
        for p in &ports {
            cmd.arg(p.to_string());
        }
        let child = Spawned::start(
            cmd.stdout(Stdio::null()).stderr(Stdio::null()),
            libc::SIGTERM,
            "python3",
        );
        for &port in &ports {
            wait_until_connectable(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        RealUpstream {
            _process: Box::new(InFolder {
                _process: child,
                _dir: dir,
            }),
            ports,
        }
    }
}

const WSGI_APP: &str = r#"
import json, sys, threading, time
from wsgiref.simple_server import make_server, WSGIRequestHandler, WSGIServer
from socketserver import ThreadingMixIn

class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

def app(environ, start):
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps({"port": environ["SERVER_PORT"], "path": environ["PATH_INFO"],
                       "headers": seen}).encode()
    start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

for port in sys.argv[1:]:
    server = make_server("127.0.0.1", int(port), app, server_class=Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
while True:
    time.sleep(3600)
"#;

/// The identity headers (default names) and the forwarding family, as nginx variables see them.
const WATCHED: [&str; 19] = [
    "x-handoff-user",
    "x-handoff-email",
    "x-handoff-name",
    "x-handoff-username",
    "x-handoff-groups",
    "forwarded",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
];

/// What an upstream said it served.
struct Served {
    route: usize,
    path: String,
    /// Every header value the upstream saw, by lower-case `-`-spelled name.
    headers: Vec<(String, String)>,
}

fn parse_served(body: &str, ports: &[u16]) -> Option<Served> {
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        let port: u16 = json["port"].as_str()?.parse().ok()?;
        let headers = json["headers"]
            .as_object()?
            .iter()
            .map(|(k, v)| {
                let name = k
                    .trim_start_matches("HTTP_")
                    .to_lowercase()
                    .replace('_', "-");
                (name, v.as_str().unwrap_or_default().to_string())
            })
            .collect();
        return Some(Served {
            route: ports.iter().position(|&p| p == port)?,
            path: json["path"].as_str()?.to_string(),
            headers,
        });
    }
    let mut served = Served {
        route: usize::MAX,
        path: String::new(),
        headers: Vec::new(),
    };
    for line in body.lines() {
        let (k, v) = line.split_once('=')?;
        match k {
            "port" => served.route = ports.iter().position(|p| p.to_string() == v)?,
            "path" => served.path = v.to_string(),
            "host" => {}
            name => served.headers.push((name.to_string(), v.to_string())),
        }
    }
    (served.route != usize::MAX).then_some(served)
}

/// `.`/`..` resolved and slashes merged, as an upstream serving files or routes reads a path.
fn resolve(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The route a served path matches (segment prefixes; a `;` ends a segment).
fn route_of(path: &str) -> usize {
    let first = path
        .trim_start_matches('/')
        .split(['/', ';'])
        .next()
        .unwrap_or_default();
    ROUTES
        .iter()
        .position(|r| r.trim_start_matches('/') == first && !first.is_empty())
        .unwrap_or(0)
}

/// How common upstreams read a served path: as it is, as a servlet container (`;params` cut)
/// and as IIS (`\` is `/`).
fn readings(path: &str) -> [String; 3] {
    let stripped: Vec<&str> = path
        .split('/')
        .map(|s| s.split(';').next().unwrap_or_default())
        .collect();
    [
        resolve(path),
        resolve(&stripped.join("/")),
        resolve(&path.replace('\\', "/")),
    ]
}

/// At least 300 hostile targets around the protected prefixes.
fn corpus() -> Vec<String> {
    let protected = [
        "admin",
        "private",
        "%61dmin",
        "%41DMIN",
        "ADMIN",
        "priv%61te",
        "admin;jsessionid=1",
        "admin%3Bx",
    ];
    let seps = [
        "/",
        "//",
        "%2F",
        "%2f",
        "%5C",
        "%5c",
        "\\",
        "%252F",
        "%25%32%66",
        "/./",
        "/%2e/",
        ";/",
        ";x=1/",
        "%3B/",
        "/;/",
        "%00/",
        "%2F%2F",
    ];
    let ups = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "..;",
        "%252e%252e",
        "..%00",
        "..%2F..",
        ".;",
    ];
    let mut out = Vec::new();
    for p in protected {
        for sep in seps {
            out.push(format!("/{p}{sep}x"));
            out.push(format!("/{sep}{p}/x"));
        }
        out.push(format!("/{p}"));
        out.push(format!("//{p}/"));
    }
    for p in ["admin", "private"] {
        for q in ["pub", "x", "pub/a"] {
            for up in ups {
                for sep in ["/", "%2F", "%5C", "\\", ";/", "%252F"] {
                    out.push(format!("/{q}/{up}{sep}{p}/x"));
                }
            }
        }
        // Upward from the protected area into the open one.
        for up in ups {
            for sep in ["/", "%2F", "\\", ";/"] {
                out.push(format!("/{p}/{up}{sep}pub/x"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn gateway_for(upstream: &RealUpstream, extra_server: &str) -> TestGateway {
    let upstreams: String = upstream
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[upstreams.u{i}]\nservers = [\"127.0.0.1:{p}\"]\n"))
        .collect();
    let config = format!(
        "{session}{upstreams}\
         [[routes]]\npath = \"/\"\nupstream = \"u0\"\nidentity_headers = true\n\
         [[routes]]\npath = \"/pub\"\nupstream = \"u1\"\nidentity_headers = true\n\
         [[routes]]\npath = \"/admin\"\nupstream = \"u2\"\nrequire_session = true\nidentity_headers = true\n\
         [[routes]]\npath = \"/private\"\nupstream = \"u3\"\nidentity_headers = true\n\
         [routes.allow]\ngroups = [\"admins\"]\n",
        session = session_config(&["HS256"], ""),
    );
    TestGateway::start_with(&config, extra_server)
}

fn status_and_body(response: &str) -> (u16, &str) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

/// Sends every corpus target (anonymous and as a signed-in non-admin) and checks the promise.
fn check_corpus(upstream: &RealUpstream, name: &str) {
    let gw = gateway_for(upstream, "");
    let staff = format!(
        "intranet_session={}",
        hs256(&person("staff@corp.example", &["staff"]))
    );
    let targets = corpus();
    assert!(targets.len() >= 300, "{} targets", targets.len());
    let (mut refused, mut stopped, mut served) = (0, 0, 0);
    for target in &targets {
        for cookie in [None, Some(staff.as_str())] {
            let cookie_line = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: intranet.test\r\n{cookie_line}Connection: close\r\n\r\n"
            );
            let response = raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(5));
            let (status, body) = status_and_body(&response);
            match status {
                400 => refused += 1,
                401 | 403 => stopped += 1,
                200 => {
                    let s = parse_served(body, &upstream.ports)
                        .unwrap_or_else(|| panic!("{name} {target}: unreadable answer {body:?}"));
                    for reading in readings(&s.path) {
                        assert_eq!(
                            route_of(&reading),
                            s.route,
                            "{name}: {target} (cookie: {}) went to route {} but {name} served \
                             {:?}, which is route {}",
                            cookie.is_some(),
                            ROUTES[s.route],
                            s.path,
                            ROUTES[route_of(&reading)],
                        );
                    }
                    // The private area never serves a non-admin.
                    assert_ne!(s.route, 3, "{name}: {target} reached /private");
                    if cookie.is_none() {
                        assert_ne!(s.route, 2, "{name}: {target} reached /admin anonymously");
                    }
                    served += 1;
                }
                other => panic!("{name}: {target}: unexpected status {other}\n{response}"),
            }
        }
    }
    eprintln!(
        "{name}: {} targets × 2: {refused} refused, {stopped} stopped by policy, {served} served",
        targets.len()
    );
    assert!(
        served > 100 && refused > 100,
        "the corpus exercises both outcomes"
    );
}

#[test]
fn hostile_paths_against_nginx_route_as_nginx_serves_them() {
    let nginx = RealUpstream::nginx();
    check_corpus(&nginx, "nginx");
}

#[test]
fn hostile_paths_against_wsgi_route_as_wsgi_serves_them() {
    let wsgi = RealUpstream::wsgi();
    check_corpus(&wsgi, "wsgi");
}

/// Every spelling of `name` an upstream may read as the same header.
fn spellings(name: &str) -> Vec<String> {
    let title: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-");
    let mut out = vec![
        name.to_string(),
        title.clone(),
        name.to_uppercase(),
        name.replace('-', "_"),
        title.replace('-', "_"),
        name.to_uppercase().replace('-', "_"),
    ];
    if let Some((first, rest)) = name.split_once('-') {
        out.push(format!("{first}_{rest}"));
        out.push(format!("{}-{}", first, rest.replace('-', "_")));
    }
    out.sort();
    out.dedup();
    out
}

fn forged_header_lines() -> String {
    let mut lines = String::new();
    for name in WATCHED {
        for spelling in spellings(name) {
            lines.push_str(&format!("{spelling}: forged\r\n"));
        }
    }
    lines
}

/// No header value the upstream saw is forged; the identity is the real one.
fn assert_unforged(name: &str, how: &str, s: &Served, expect_user: &str) {
    for (header, value) in &s.headers {
        assert!(
            !value.contains("forged"),
            "{name} {how}: {header} reached the upstream as {value:?}"
        );
    }
    let user: Vec<&str> = s
        .headers
        .iter()
        .filter(|(h, _)| h == "x-handoff-user")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        user.iter().all(|v| *v == expect_user) && user.contains(&expect_user),
        "{name} {how}: x-handoff-user {user:?}"
    );
    let forwarded_for: Vec<&str> = s
        .headers
        .iter()
        .filter(|(h, _)| h == "x-forwarded-for")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(forwarded_for, vec!["127.0.0.1"], "{name} {how}");
}

fn check_headers(upstream: &RealUpstream, name: &str) {
    let gw = gateway_for(upstream, "h2c = true");
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("staff@corp.example", &["staff"]))
    );
    let forged = forged_header_lines();
    let nominate = "X_Handoff_User, X-Handoff-Email, x_forwarded_for";
    // HTTP/1.1, with and without Connection nominations, and a WebSocket upgrade.
    for (how, connection) in [
        ("http/1.1", "close".to_string()),
        ("connection-nominated", format!("close, {nominate}")),
        ("websocket", format!("Upgrade, {nominate}")),
    ] {
        let upgrade = if how == "websocket" {
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET /admin/x HTTP/1.1\r\nHost: intranet.test\r\nCookie: {cookie}\r\n{forged}{upgrade}Connection: {connection}\r\n\r\n"
        );
        let response = raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(5));
        let (status, body) = status_and_body(&response);
        assert_eq!(status, 200, "{name} {how}: {response}");
        let s = parse_served(body, &upstream.ports).expect("served");
        assert_unforged(name, how, &s, "id-staff@corp.example");
    }
}

#[test]
fn forged_headers_in_any_spelling_never_reach_nginx() {
    let nginx = RealUpstream::nginx();
    check_headers(&nginx, "nginx");
}

#[test]
fn forged_headers_in_any_spelling_never_reach_wsgi() {
    let wsgi = RealUpstream::wsgi();
    check_headers(&wsgi, "wsgi");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_headers_over_h2c_never_reach_wsgi() {
    let wsgi = RealUpstream::wsgi();
    let gw = gateway_for(&wsgi, "h2c = true");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let mut req = h2.get(gw.url("/admin/x")).header(
        "cookie",
        format!(
            "intranet_session={}",
            hs256(&person("staff@corp.example", &["staff"]))
        ),
    );
    for name in WATCHED {
        for spelling in spellings(name) {
            req = req.header(spelling.to_lowercase(), "forged");
        }
    }
    // Two cookie fields, as HTTP/2 clients send them: the upstream gets one Cookie.
    req = req.header("cookie", "theme=dark");
    let resp = req.send().await.expect("h2 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("body");
    let s = parse_served(&body, &wsgi.ports).expect("served");
    assert_unforged("wsgi", "h2c", &s, "id-staff@corp.example");
    let cookie = s
        .headers
        .iter()
        .find(|(h, _)| h == "cookie")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        cookie.starts_with("intranet_session=") && cookie.ends_with("; theme=dark"),
        "{cookie}"
    );
}

/// Hosts in absolute-form targets and malformed `Host` values.
#[test]
fn hosts_route_on_the_authority_the_upstream_serves() {
    let nginx = RealUpstream::nginx();
    let config = format!(
        "[upstreams.open]\nservers = [\"127.0.0.1:{}\"]\n[upstreams.admin]\nservers = [\"127.0.0.1:{}\"]\n\
         {session}\
         [[routes]]\npath = \"/\"\nupstream = \"open\"\n\
         [[routes]]\nhost = \"admin.example.test\"\npath = \"/\"\nupstream = \"admin\"\nrequire_session = true\n",
        nginx.ports[0],
        nginx.ports[1],
        session = session_config(&["HS256"], ""),
    );
    let gw = TestGateway::start(&config);
    let send = |head: &str| {
        let response = raw_exchange(
            gw.addr,
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        let (status, body) = status_and_body(&response);
        (status, body.to_string())
    };
    // Absolute-form: the target's authority decides (Pingora itself refuses a Host that
    // differs from it, with a bare 400).
    for head in [
        "GET http://admin.example.test/ HTTP/1.1\r\n",
        "GET http://ADMIN.example.test:80/x HTTP/1.1\r\n",
        "GET http://admin.example.test/ HTTP/1.1\r\nHost: admin.example.test\r\n",
    ] {
        assert_eq!(send(head).0, 401, "{head}");
    }
    let (status, _) = send("GET http://admin.example.test/ HTTP/1.1\r\nHost: www.example.test\r\n");
    assert!(matches!(status, 400 | 401), "{status}");
    // The open vhost in absolute-form is served, with the authority as the upstream's host.
    let (status, body) = send("GET http://www.example.test/p HTTP/1.1\r\n");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("host=www.example.test\n"), "{body}");
    assert!(body.contains("path=/p\n"), "{body}");
    // Host values with no one meaning are refused.
    for host in [
        "admin.example.test:80:80",
        "admin.example.test,www.example.test",
        "admin.example.test www.example.test",
        "user@admin.example.test",
        "admin.example.test:",
        "admin.exämple.test",
    ] {
        let (status, body) = send(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n"));
        assert_eq!(status, 400, "{host}: {body}");
    }
    let (status, _) =
        send("GET / HTTP/1.1\r\nHost: a.example.test\r\nHost: admin.example.test\r\n");
    assert_eq!(status, 400, "two Host headers");
    let (status, _) = send("GET / HTTP/1.1\r\n");
    assert_eq!(status, 400, "HTTP/1.1 without Host");
    // HTTP/1.0 may omit Host: the gateway passes it (nginx then asks for one itself).
    let (status, body) = send("GET / HTTP/1.0\r\n");
    assert!(status == 200 || body.contains("nginx"), "{status} {body}");
}

/// A host that embeds Handoff, calls its `request_filter` and forgets `upstream_request_filter`.
struct ForgetfulHost {
    handoff: handoff::Handoff,
    upstream: String,
}

#[async_trait]
impl ProxyHttp for ForgetfulHost {
    type CTX = handoff::HandoffCtx;

    fn new_ctx(&self) -> Self::CTX {
        self.handoff.new_ctx()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        Ok(self.handoff.request_filter(session, ctx).await? == handoff::Filtered::Answered)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

#[test]
fn a_host_that_skips_upstream_request_filter_forwards_nothing_forged() {
    let wsgi = RealUpstream::wsgi();
    let handoff = handoff::Handoff::from_toml(
        &format!(
            "{}[upstreams.u]\nservers = [\"127.0.0.1:{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"u\"\n",
            session_config(&["HS256"], ""),
            wsgi.ports[0]
        ),
        fixtures(),
    )
    .expect("settings");
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = host_server_conf(dir.path(), 1);
    let mut server = pingora::server::Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let port = free_port();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        ForgetfulHost {
            handoff,
            upstream: format!("127.0.0.1:{}", wsgi.ports[0]),
        },
    );
    let listen = format!("127.0.0.1:{port}");
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    let gw = TestGateway::run(server, listen.parse().expect("addr"), dir);
    let request = format!(
        "GET /x HTTP/1.1\r\nHost: intranet.test\r\n{}Connection: close\r\n\r\n",
        forged_header_lines()
    );
    let response = raw_exchange(gw.addr, request.as_bytes(), Duration::from_secs(5));
    let (status, body) = status_and_body(&response);
    assert_eq!(status, 200, "{response}");
    let s = parse_served(body, &wsgi.ports).expect("served");
    for (header, value) in &s.headers {
        assert!(
            !value.contains("forged"),
            "{header} reached the upstream as {value:?}"
        );
    }
}
