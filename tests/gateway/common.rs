//! The test harness: the gateway on its own thread, a stand-in intranet, and token helpers.
//! Everything listens on 127.0.0.1 with ports picked by the OS.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::Query;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use serde_json::{json, Value};
use tokio::sync::Notify;

pub use crate::spawned::Spawned;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A port for a gateway to listen on. Taken below the kernel's ephemeral range (32768+), from
/// a counter: a port the OS hands out for `bind(0)` or an outbound connection (tests open
/// thousands) can then never be the one a gateway is about to bind, and two gateways in this
/// process never get the same one.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = 20_000 + (std::process::id() as usize % 100) * 100;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(base + n % 2_800).expect("port below 32768");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn wait_until_connectable(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

struct NotifyShutdown(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for NotifyShutdown {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// Everything the gateways in this test process log (tracing and Pingora's `log` records).
static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    });
}

/// What has been logged so far by every gateway in this process.
pub fn captured_logs() -> String {
    LOGS.get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned())
        .unwrap_or_default()
}

/// The access-log line (target `handoff::access`) holding `marker`, once it is written (the
/// line follows the answer): waits up to 2 s.
pub async fn wait_for_log_line(marker: &str) -> String {
    for _ in 0..100 {
        if let Some(line) = captured_logs()
            .lines()
            .find(|l| l.contains("handoff::access") && l.contains(marker))
        {
            return line.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no access-log line for {marker}");
}

/// The first captured log line that holds every one of `fragments`. Give one fragment only
/// this test can have caused (its stand-in's port, a unique email): the capture is shared by
/// every test in the process.
pub fn log_line_with(fragments: &[&str]) -> Option<String> {
    captured_logs()
        .lines()
        .find(|line| fragments.iter().all(|f| line.contains(f)))
        .map(str::to_string)
}

/// Pingora settings for a host proxy a test builds itself, with its files in `dir`.
pub fn host_server_conf(
    dir: &std::path::Path,
    threads: usize,
) -> pingora::server::configuration::ServerConf {
    pingora::server::configuration::ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        pid_file: dir.join("pid").display().to_string(),
        upgrade_sock: dir.join("upgrade.sock").display().to_string(),
        ..Default::default()
    }
}

/// A running gateway, stopped when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts the gateway with `config` (TOML without `[server]`; `server_extra` is added to the
    /// `[server]` table the harness writes). Relative paths resolve in `tests/fixtures`.
    pub fn start_with(config: &str, server_extra: &str) -> TestGateway {
        capture_logs();
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nthreads = 2\ngrace_period_seconds = 0\n\
             graceful_shutdown_timeout_seconds = 0\npid_file = \"{pid}\"\nupgrade_sock = \"{sock}\"\n\
             {server_extra}\n{config}",
            pid = dir.path().join("pid").display(),
            sock = dir.path().join("upgrade.sock").display(),
        );
        let config = handoff::internals::config::from_toml_str(&text, &fixtures())
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n{text}"));
        let server = handoff::standalone::build_with_config(config, None, None)
            .expect("server builds")
            .into_server();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        TestGateway::run(server, addr, dir)
    }

    /// Runs a bootstrapped `server` (listening on `addr`) on its own thread until dropped;
    /// `dir` holds its files and lives as long as it does.
    pub fn run(server: Server, addr: SocketAddr, dir: tempfile::TempDir) -> TestGateway {
        capture_logs();
        let stop = Arc::new(Notify::new());
        let signal = NotifyShutdown(stop.clone());
        let thread = std::thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            })
        });
        wait_until_connectable(addr);
        TestGateway {
            addr,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn start(config: &str) -> TestGateway {
        Self::start_with(config, "")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client that does not follow redirects (tests look at `Location`).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The stand-in intranet: echoes what it received, sets cookies, streams, sleeps, speaks
/// WebSocket. Counts accepted TCP connections.
pub struct Intranet {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl Intranet {
    pub async fn start() -> Intranet {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let app = Router::new()
            .route("/cookies", get(set_cookies))
            .route("/big", get(big))
            .route("/chunked", get(chunked))
            .route("/slow", get(slow))
            .route("/ws", get(websocket))
            .route("/status/{code}", any(status))
            .route("/pages/{name}", any(page))
            .route("/cached/{name}", get(cached_page))
            .route("/typed/{name}", get(typed_page))
            .fallback(echo)
            .layer(axum::middleware::map_response(
                move |mut r: Response| async move {
                    if let Ok(v) = axum::http::HeaderValue::from_str(&addr.to_string()) {
                        r.headers_mut().insert("x-served-by", v);
                    }
                    r
                },
            ));
        // hyper directly (not axum::serve) so the header limit can be raised above 100.
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .max_headers(1000)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Intranet { addr, connections }
    }

    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

pub fn digest(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": header_list,
        "body_len": body.len(),
        "body_digest": digest(&body).to_string(),
    }))
    .into_response()
}

async fn set_cookies() -> Response {
    Response::builder()
        .header("Set-Cookie", "a=1; Path=/")
        .header("Set-Cookie", "b=2; Path=/; HttpOnly")
        .header("Set-Cookie", "c=3; Path=/; Secure")
        .body(Body::from("cookies"))
        .expect("response")
}

#[derive(serde::Deserialize)]
struct Size {
    n: usize,
}

async fn big(Query(s): Query<Size>) -> Response {
    let body: Vec<u8> = (0..s.n).map(|i| (i % 251) as u8).collect();
    Response::builder()
        .header("X-Digest", digest(&body).to_string())
        .body(Body::from(body))
        .expect("response")
}

async fn chunked() -> Response {
    let chunks = (0..5).map(|i| Ok::<_, std::io::Error>(Bytes::from(format!("chunk-{i};"))));
    Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
}

#[derive(serde::Deserialize)]
struct Delay {
    ms: u64,
}

async fn slow(Query(d): Query<Delay>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(d.ms)).await;
    "slow"
}

/// The widget tag as TypingMind documents it, for the test instance.
pub const WIDGET_TAG: &str =
    r#"<script defer data-agent="a1" src="https://chat.example.test/widget.js"></script>"#;

/// Real-looking intranet pages for widget sign-in, by name; each also served gzip-compressed
/// (`NAME.gz`, regardless of Accept-Encoding) and streamed in small chunks (`NAME.chunked`).
pub fn page_body(name: &str) -> Option<String> {
    let head = "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Intranet</title>\n";
    let body = "</head>\n<body><h1>Welcome</h1><p>Caf\u{e9} &amp; news</p><script src=\"/app.js\"></script></body>\n</html>\n";
    Some(match name {
        "widget" => format!("{head}{WIDGET_TAG}\n{body}"),
        "upper" => format!(
            "{head}<SCRIPT DEFER SRC=\"https://chat.example.test/widget.js\" DATA-EXTERNAL-AUTH-CODE=\"stale-code\"></SCRIPT>\n{body}"
        ),
        "two" => format!(
            "{head}{WIDGET_TAG}\n<script src=\"https://chat.example.test/agents/b2/widget.js\" data-external-auth-code=\"stale-code\"></script>\n{body}"
        ),
        // The widget's address written with character references, as a browser decodes them.
        "encoded" => format!(
            "{head}<script src=\"https&colon;//chat.example.test/widget&#46;js\" data-external-auth-code=\"stale-code\"></script>\n{body}"
        ),
        "foreign" => format!(
            "{head}<script src=\"https://other.example.test/widget.js\" data-external-auth-code=\"theirs\"></script>\n{body}"
        ),
        "plain" => format!("{head}{body}"),
        // An intranet page whose script (an XSS, say) opens the help centre's route and tries
        // to read the posted token out of the form before it is sent; its title says how far
        // it got.
        "opener" => format!(
            "{head}<script>\n\
             const w = window.open('/apps/support/hc/x'); let n = 0;\n\
             const t = setInterval(() => {{ n++;\n\
               try {{ const i = w.document.querySelector('input[name=jwt]');\n\
                 if (i) {{ w.stop(); document.title = 'STOLEN'; clearInterval(t); return; }} }}\n\
               catch (e) {{ document.title = 'BLOCKED ' + e.name; clearInterval(t); return; }}\n\
               if (w.closed) {{ document.title = 'CLOSED'; clearInterval(t); return; }}\n\
               if (n > 500) {{ document.title = 'TIMEOUT'; clearInterval(t); }} }}, 2);\n\
             </script>\n{body}"
        ),
        // YourGPT's chatbot widget as its docs embed it (a nonce as a CSP-strict page gives it).
        "yourgpt" => format!(
            "{head}{body}<script src=\"https://widget.yourgpt.ai/script.js\" id=\"yourgpt-chatbot\" data-widget=\"w-intranet\" nonce=\"n0nce\"></script>\n"
        ),
        "yourgpt-other" => format!(
            "{head}{body}<script src=\"https://widget.yourgpt.ai/script.js\" id=\"yourgpt-chatbot\" data-widget=\"w-elsewhere\"></script>\n"
        ),
        // Codes planted where the browser loads the widget though the tag does not say so.
        "base" => format!(
            "{head}<base href=\"https://chat.example.test/\">\n<script src=\"widget.js\" data-external-auth-code=\"planted-code\"></script>\n{body}"
        ),
        // A decoy <base> in SVG (not the document's base) before the one the browser takes.
        "decoy-base" => format!(
            "{head}</head><body><svg><base href=\"https://other.example.test/\"></base></svg><base href=\"https://chat.example.test/\"><script src=\"widget.js\" data-external-auth-code=\"planted-code\"></script></body></html>\n"
        ),
        "root-dot" => format!(
            "{head}<script src=\"https://chat.example.test./widget.js\" data-external-auth-code=\"planted-code\"></script>\n{body}"
        ),
        "svg" => format!(
            "{head}</head><body><svg><script href=\"https://chat.example.test/widget.js\" data-external-auth-code=\"planted-code\"></script><script xlink:href=\"https://chat.example.test/WIDGET.JS/\" data-external-auth-code=\"planted-code\"></script></svg></body></html>\n"
        ),
        // A stale code far down a page, past what the rewriter keeps while watching.
        "late" => {
            let filler = "<p>lorem ipsum</p>\n".repeat(6_000);
            format!(
                "{head}</head><body>{filler}<script src=\"https://chat.example.test/widget.js\" data-external-auth-code=\"stale-code\"></script></body></html>\n"
            )
        }
        "big" => {
            let filler = "<p>lorem ipsum dolor sit amet, consectetur adipiscing elit</p>\n".repeat(85_000);
            format!("{head}{WIDGET_TAG}\n</head><body>{filler}</body></html>\n")
        }
        _ => return None,
    })
}

async fn page(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (base, variant) = name.split_once('.').unwrap_or((name.as_str(), ""));
    let Some(html) = page_body(base) else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    let builder = Response::builder().header("content-type", "text/html; charset=utf-8");
    match variant {
        "gz" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(html.as_bytes()).expect("gzip");
            let bytes = gz.finish().expect("gzip");
            builder
                .header("content-encoding", "gzip")
                .body(Body::from(bytes))
                .expect("response")
        }
        "deflate" => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(html.as_bytes()).expect("deflate");
            builder
                .header("content-encoding", "deflate")
                .body(Body::from(z.finish().expect("deflate")))
                .expect("response")
        }
        "chunked" => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = html
                .into_bytes()
                .chunks(7)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            builder
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .expect("response")
        }
        _ => builder.body(Body::from(html)).expect("response"),
    }
}

#[derive(serde::Deserialize)]
struct CachedQuery {
    status: Option<u16>,
}

/// A page (see [`page_body`]) with every field a cache or CDN acts on, as an intranet behind
/// a CDN sends it; `x-saw-conditional` says which conditional headers reached the intranet.
async fn cached_page(
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<CachedQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(html) = page_body(&name) else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    let saw: Vec<&str> = ["if-none-match", "if-modified-since"]
        .into_iter()
        .filter(|h| headers.contains_key(*h))
        .collect();
    if headers.contains_key("if-none-match") {
        return Response::builder()
            .status(304)
            .header("etag", "\"v1\"")
            .header("x-saw-conditional", saw.join(","))
            .body(Body::empty())
            .expect("response");
    }
    Response::builder()
        .status(q.status.unwrap_or(200))
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "public, max-age=600")
        .header("surrogate-control", "max-age=3600")
        .header("surrogate-key", "intranet-home")
        .header("cdn-cache-control", "max-age=3600")
        .header("cloudflare-cdn-cache-control", "max-age=3600")
        .header("vercel-cdn-cache-control", "max-age=3600")
        .header("expires", "Thu, 01 Dec 2050 16:00:00 GMT")
        .header("etag", "\"v1\"")
        .header("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT")
        .header("age", "12")
        .header("vary", "Accept-Encoding")
        .header("x-accel-expires", "3600")
        .header("edge-control", "cache-maxage=3600")
        .header("x-litespeed-cache-control", "public, max-age=3600")
        .header("x-saw-conditional", saw.join(","))
        .body(Body::from(html))
        .expect("response")
}

#[derive(serde::Deserialize)]
struct TypedQuery {
    /// `Content-Type` values, `|`-separated: one header each; absent: no `Content-Type`.
    ct: Option<String>,
}

/// A page (see [`page_body`]) under whatever `Content-Type` headers the query names.
async fn typed_page(
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(q): Query<TypedQuery>,
) -> Response {
    let Some(html) = page_body(&name) else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    let mut builder = Response::builder();
    for ct in q.ct.iter().flat_map(|c| c.split('|')) {
        builder = builder.header("content-type", ct);
    }
    let mut response = builder.body(Body::from(html)).expect("response");
    if q.ct.is_none() {
        response.headers_mut().remove("content-type");
    }
    response
}

async fn status(axum::extract::Path(code): axum::extract::Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    (status, format!("status {code}")).into_response()
}

async fn websocket(ws: WebSocketUpgrade, req_headers: HeaderMap) -> Response {
    let spoofed = req_headers.contains_key("x-handoff-email");
    ws.on_upgrade(move |mut socket| async move {
        if spoofed {
            let _ = socket.send(Message::Text("spoofed".into())).await;
        }
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo:{t}").into()),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// What the echo endpoint saw.
pub struct Echo(pub Value);

impl Echo {
    pub async fn from(resp: reqwest::Response) -> Echo {
        assert_eq!(resp.status(), 200, "echo answered");
        Echo(resp.json().await.expect("echo JSON"))
    }

    /// All values of a header (names compare case-insensitively).
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|p| p[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    .filter_map(|p| p[1].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
}

/// `whoami` with this `Cookie` header: (status, JSON body).
pub async fn whoami(gw: &TestGateway, cookie: &str) -> (u16, Value) {
    let resp = client()
        .get(gw.url("/_handoff/whoami"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("whoami");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// The test session secret (tests/fixtures/session-secret.txt).
pub fn session_secret() -> Vec<u8> {
    std::fs::read(fixtures().join("session-secret.txt")).expect("secret fixture")
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims for a person, valid for ten minutes.
pub fn person(email: &str, groups: &[&str]) -> Value {
    json!({
        "sub": format!("id-{email}"),
        "email": email,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "groups": groups,
        "iat": now(),
        "exp": now() + 600,
    })
}

pub fn sign(alg: Algorithm, claims: &Value) -> String {
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(&session_secret())
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&read_fixture("ec_private.pem")).expect("ec key")
        }
        _ => EncodingKey::from_rsa_pem(&read_fixture("rsa_private.pem")).expect("rsa key"),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("token")
}

pub fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, claims)
}

/// A secret fixture's bytes, as a `{ file = ... }` reference reads them (newline dropped).
pub fn secret_fixture(name: &str) -> Vec<u8> {
    read_fixture(name)
        .into_iter()
        .filter(|b| *b != b'\n')
        .collect()
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).expect("fixture")
}

/// A `[session]` table using the test secret and, for RS/ES, the fixture public keys.
pub fn session_config(algorithms: &[&str], extra: &str) -> String {
    let algs: Vec<String> = algorithms.iter().map(|a| format!("\"{a}\"")).collect();
    let key = if algorithms.iter().any(|a| a.starts_with("ES")) {
        "public_key_file = \"ec_public.pem\"\n"
    } else if algorithms
        .iter()
        .any(|a| a.starts_with("RS") || a.starts_with("PS"))
    {
        "public_key_file = \"rsa_public.pem\"\n"
    } else {
        ""
    };
    format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = [{}]\n\
         secret = {{ file = \"session-secret.txt\" }}\n{key}{extra}\n",
        algs.join(", ")
    )
}

/// Upstream + catch-all route config for one intranet.
pub fn upstream_config(intranet: &Intranet) -> String {
    format!(
        "[upstreams.intranet]\nservers = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
        intranet.server()
    )
}

/// For a raw upstream a test scripts: one request head off a kept-alive connection, as its
/// path and its header lines (with their `\r\n`). `None` when the connection ends first.
pub fn read_request_head(
    reader: &mut std::io::BufReader<TcpStream>,
) -> Option<(String, Vec<String>)> {
    use std::io::BufRead;
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        lines.push(line);
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    Some((path, lines))
}

/// Sends raw bytes and reads until the peer closes or `timeout` passes.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `handoff run` process, killed if still running when dropped.
pub struct GatewayProcess {
    process: Spawned,
    log: PathBuf,
}

impl GatewayProcess {
    pub fn start(config: &Path, extra_args: &[&str]) -> GatewayProcess {
        let log = config.with_extension(format!("{}.log", free_port()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_handoff"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        // SIGINT: Pingora's fast shutdown (a test that wants the graceful one signals itself).
        let process = Spawned::start(&mut cmd, libc::SIGINT, "the handoff binary");
        GatewayProcess { process, log }
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it holds every one of `fragments` (lines are written in batches, at most
    /// a flush interval late); the log as it is after 5 s otherwise.
    pub fn log_with(&self, fragments: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if fragments.iter().all(|f| log.contains(f)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (at most `limit`); its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.process.child().try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Writes a config for a gateway on `port` in `dir`, with `body` after `[server]`.
pub fn write_process_config(dir: &Path, port: u16, server_extra: &str, body: &str) -> PathBuf {
    let path = dir.join("handoff.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nthreads = 2\n\
         grace_period_seconds = 1\ngraceful_shutdown_timeout_seconds = 1\n\
         pid_file = \"{pid}\"\nupgrade_sock = \"{sock}\"\n{server_extra}\n\
         [log]\nformat = \"json\"\n\n{body}",
        pid = dir.join("handoff.pid").display(),
        sock = dir.join("upgrade.sock").display(),
    );
    // Written whole then renamed: a reload never reads half a file.
    let tmp = dir.join("handoff.toml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, &path).expect("rename config");
    path
}

/// A Prometheus scrape of `127.0.0.1:port/metrics`: 200, the text exposition format.
pub async fn scrape(port: u16) -> String {
    let resp = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    resp.text().await.expect("metrics text")
}

/// One series' value from a Prometheus scrape of `127.0.0.1:port/metrics`.
pub async fn metric(port: u16, series: &str) -> Option<f64> {
    let text = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A `redis-server` of the test's own on a free loopback port (no persistence), stopped when
/// dropped. `.ci/run` installs Debian's `redis-server`.
pub struct RedisServer {
    process: Option<Spawned>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            process: None,
            port: free_port(),
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (as a crash would: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null());
        self.process = Some(Spawned::start(
            &mut cmd,
            libc::SIGKILL,
            "redis-server (Debian package redis-server; .ci/run installs it)",
        ));
        wait_until_connectable(SocketAddr::from(([127, 0, 0, 1], self.port)));
    }
}

/// nginx (Debian puts it in /usr/sbin, outside a plain user's PATH).
pub fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// An nginx of the test's own whose `http` block holds `servers`, on `ports` (waited for);
/// stopped when dropped.
pub struct Nginx {
    // Declared first: stopped before its folder is removed.
    _process: Spawned,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(servers: &str, ports: &[u16]) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1; daemon off; pid {d}/nginx.pid; error_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{ access_log off;\n\
             client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n\
             uwsgi_temp_path {d}; scgi_temp_path {d};\n{servers}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
        let mut cmd = Command::new(nginx_binary());
        cmd.args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SIGTERM: the master stops its workers, then exits.
        let process = Spawned::start(
            &mut cmd,
            libc::SIGTERM,
            "nginx (install it: apt-get install nginx-light)",
        );
        for &port in ports {
            wait_until_connectable(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        Nginx {
            _process: process,
            _dir: dir,
        }
    }
}

/// A private CA of the test's own, made with Debian's `openssl`, and certificates it issues
/// (for `localhost` and `127.0.0.1`). Nothing of it is committed.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.openssl(&[
            "req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        ]);
        pki
    }

    /// A file in the PKI's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// `NAME.pem` and `NAME.key`: a server certificate signed by the CA, valid for `days`
    /// (0: it expires at once).
    pub fn issue(&self, name: &str, days: u32) -> (PathBuf, PathBuf) {
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&["req", "-keyout", &key, "-out", &csr]);
        std::fs::write(
            self.path("san.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("san.cnf");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            &days.to_string(),
            "-extfile",
            "san.cnf",
        ]);
        (self.path(&cert), self.path(&key))
    }

    /// Runs `openssl`; a `req` makes a new P-256 key and names the subject `localhost`, or
    /// the CA for `-x509`.
    fn openssl(&self, args: &[&str]) {
        let mut cmd = Command::new("openssl");
        cmd.args(args);
        if args.first() == Some(&"req") {
            let subject = if args.contains(&"-x509") {
                "/CN=Handoff Test CA"
            } else {
                "/CN=localhost"
            };
            cmd.args([
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", subject]);
        }
        let out = cmd
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
