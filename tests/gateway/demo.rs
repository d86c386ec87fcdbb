//! `handoff demo`, clicked through in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), against the demo started as the README says, on free ports. Each step
//! asserts what the person sees and saves a screenshot under `target/e2e-screenshots/`. And
//! the demo's own bad input: a port already taken, an app that is not on loopback.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::*;

struct Demo {
    gateway: String,
    yourgpt: u16,
    typingmind: u16,
    _process: Spawned,
    _dir: tempfile::TempDir,
}

/// conf/demo.toml (and its secrets) in `dir`, moved to these ports, with `edit` applied.
fn demo_config(
    dir: &std::path::Path,
    [gateway, intranet, yourgpt, typingmind]: [u16; 4],
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let conf = manifest().join("conf");
    let text = std::fs::read_to_string(conf.join("demo.toml"))
        .expect("conf/demo.toml")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{gateway}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{intranet}"))
        .replace("127.0.0.1:9001", &format!("127.0.0.1:{yourgpt}"))
        .replace("127.0.0.1:9002", &format!("127.0.0.1:{typingmind}"))
        .replace("127.0.0.1:9003", &format!("127.0.0.1:{}", free_port()));
    for secret in [
        "demo-session-secret.txt",
        "demo-yourgpt-secret.txt",
        "demo-typingmind-secret.txt",
        "demo-yourgpt-widget-secret.txt",
    ] {
        std::fs::copy(conf.join(secret), dir.join(secret)).expect("demo secret");
    }
    let config = dir.join("demo.toml");
    std::fs::write(&config, edit(text)).expect("demo config");
    config
}

fn demo_command(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_handoff"));
    cmd.args(["demo", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn");
    cmd
}

/// `handoff demo` with conf/demo.toml moved to free ports.
fn start_demo() -> Demo {
    let ports = [(); 4].map(|_| free_port());
    let [gateway, _, yourgpt, typingmind] = ports;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = demo_config(dir.path(), ports, |t| t);
    let process = Spawned::start(
        demo_command(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        libc::SIGINT,
        "handoff demo",
    );
    wait_until_connectable(SocketAddr::from(([127, 0, 0, 1], gateway)));
    Demo {
        gateway: format!("http://127.0.0.1:{gateway}"),
        yourgpt,
        typingmind,
        _process: process,
        _dir: dir,
    }
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Headless Chromium through a chromedriver of its own.
pub(crate) async fn browser() -> (Client, Spawned) {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
    }
    let port = free_port();
    // Its group holds the Chromium it launches: stopping the driver stops the browser too.
    let driver = Spawned::start(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        libc::SIGTERM,
        "chromedriver",
    );
    wait_until_connectable(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1100,900",
                     "--disable-popup-blocking"],
        }),
    );
    // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    (client, driver)
}

/// Saves what the browser shows as `target/e2e-screenshots/<name>.png`.
pub(crate) async fn shot(c: &Client, name: &str) {
    let dir = manifest().join("target/e2e-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot saved");
}

/// The page's visible text.
pub(crate) async fn text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("a body")
        .text()
        .await
        .expect("its text")
}

async fn click(c: &Client, css: &str) {
    let found = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await;
    let element = match found {
        Ok(e) => e,
        Err(e) => panic!("no {css} on {:?}: {e}", c.current_url().await),
    };
    element
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

/// The YourGPT chatbot stand-in's box once it shows `state` (`signed-in`, `anonymous`,
/// `error`): its text.
async fn chatbot_says(c: &Client, state: &str) -> String {
    let found = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&format!(
            "#yourgpt-widget[data-state=\"{state}\"]"
        )))
        .await;
    match found {
        Ok(e) => e.text().await.expect("chatbot text"),
        Err(_) => {
            let now = match c.find(Locator::Css("#yourgpt-widget")).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => "no chatbot box".into(),
            };
            panic!("the chatbot never showed {state:?}: {now}");
        }
    }
}

/// On a gateway page: its way back (the last button) leads to `expected` (a path), with the
/// help-desk line above it; follows it and waits for the intranet's home.
async fn way_back_leads_to(c: &Client, expected: &str) {
    let page = text(c).await;
    assert!(
        page.contains("Need help? Contact"),
        "no help-desk line: {page}"
    );
    let buttons = c
        .find_all(Locator::Css("main a.button"))
        .await
        .expect("the page's buttons");
    let back = buttons.last().expect("a way back");
    let href = back.attr("href").await.expect("href").expect("an href");
    assert_eq!(href, expected, "{page}");
    back.click().await.expect("the way back can be followed");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#hello"))
        .await
        .expect("the way back leads to the intranet's home");
}

/// Signs out (if signed in) and in again as a demo person, from the gateway's front page.
async fn log_in_as(c: &Client, demo: &Demo, who: &str) {
    c.goto(&format!("{}/logout", demo.gateway))
        .await
        .expect("logout");
    click(c, &format!("#login-{who}")).await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#hello"))
        .await
        .expect("the intranet's home page");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_clicked_through_in_chromium() {
    let demo = start_demo();
    let (c, _driver) = browser().await;

    // The gateway sends a stranger to the intranet's login page.
    c.goto(&format!("{}/", demo.gateway))
        .await
        .expect("front page");
    assert_eq!(c.current_url().await.expect("url").path(), "/login");
    let page = text(&c).await;
    assert!(page.contains("Sign in to the intranet"), "{page}");
    shot(&c, "01-login").await;

    // Ada logs in; the TypingMind widget on the intranet home is signed in as her.
    click(&c, "#login-ada").await;
    let widget = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#typingmind-widget"))
        .await
        .expect("the widget renders");
    let widget_text = widget.text().await.expect("widget text");
    assert!(
        widget_text.contains("signed in as ada@demo.example"),
        "{widget_text}"
    );
    assert!(text(&c).await.contains("Hello, Ada"));
    // The YourGPT chatbot too: the stand-in checked the user_hash with the widget's secret.
    let chatbot = chatbot_says(&c, "signed-in").await;
    assert!(
        chatbot.contains("signed in as Ada Lovelace (ada@demo.example)"),
        "{chatbot}"
    );
    shot(&c, "02-intranet-home-widget-signed-in").await;

    // The same page under a strict CSP (scripts by nonce only): both widgets still signed in.
    click(&c, "#strict").await;
    let widget = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#typingmind-widget"))
        .await
        .expect("the widget renders under the strict CSP");
    let widget_text = widget.text().await.expect("widget text");
    assert!(
        widget_text.contains("signed in as ada@demo.example"),
        "{widget_text}"
    );
    let chatbot = chatbot_says(&c, "signed-in").await;
    assert!(chatbot.contains("ada@demo.example"), "{chatbot}");
    assert!(text(&c).await.contains("strict Content-Security-Policy"));
    shot(&c, "02b-strict-csp-widgets-signed-in").await;
    c.goto(&format!("{}/", demo.gateway)).await.expect("home");

    // YourGPT: logged in there as Ada.
    click(&c, "#open-yourgpt").await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.port(), Some(demo.yourgpt), "{url}");
    let page = text(&c).await;
    assert!(
        page.contains("You are signed in as ada@demo.example"),
        "{page}"
    );
    assert!(page.contains("Stand-in of YourGPT"));
    shot(&c, "03-yourgpt-signed-in").await;

    // TypingMind: the same.
    c.goto(&format!("{}/", demo.gateway)).await.expect("home");
    click(&c, "#open-typingmind").await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.port(), Some(demo.typingmind), "{url}");
    let page = text(&c).await;
    assert!(
        page.contains("You are signed in as ada@demo.example"),
        "{page}"
    );
    shot(&c, "04-typingmind-signed-in").await;

    // The portal lists both apps and who she is.
    c.goto(&format!("{}/_handoff/", demo.gateway))
        .await
        .expect("portal");
    let page = text(&c).await;
    assert!(page.contains("Signed in to the intranet as Ada"), "{page}");
    assert!(
        page.contains("YourGPT") && page.contains("TypingMind"),
        "{page}"
    );
    shot(&c, "05-portal").await;
    // On a phone-sized screen too.
    c.set_window_size(390, 844).await.expect("phone size");
    shot(&c, "05-portal-phone").await;
    c.set_window_size(1100, 900).await.expect("laptop size");

    // Mallory is outside the AI group: her home page links to no app; a link someone shared
    // gets a clear 403 page, and her portal is empty.
    log_in_as(&c, &demo, "mallory").await;
    let page = text(&c).await;
    assert!(page.contains("open to the ai-users group"), "{page}");
    assert!(
        page.contains("anonymous visitor for the same reason"),
        "{page}"
    );
    let chatbot = chatbot_says(&c, "anonymous").await;
    assert!(chatbot.contains("anonymous visitor"), "{chatbot}");
    shot(&c, "05b-mallory-home-anonymous-chatbot").await;
    assert!(
        c.find(Locator::Css("#open-typingmind")).await.is_err(),
        "Mallory's home links to an app she cannot open"
    );
    c.goto(&format!("{}/ai/chat", demo.gateway))
        .await
        .expect("a shared link");
    let page = text(&c).await;
    assert!(
        page.contains("You do not have access to TypingMind"),
        "{page}"
    );
    assert!(
        page.contains("mallory@demo.example") && page.contains("ai-users"),
        "{page}"
    );
    shot(&c, "06-forbidden").await;
    // Opened without a page to return to: the way back is the intranet's home.
    way_back_leads_to(&c, "/").await;
    c.goto(&format!("{}/_handoff/", demo.gateway))
        .await
        .expect("portal");
    assert!(text(&c).await.contains("No AI app is open to you"));
    shot(&c, "06b-portal-nothing-open").await;
    // The login page says who is signed in already.
    c.goto(&format!("{}/login", demo.gateway))
        .await
        .expect("login");
    let page = text(&c).await;
    assert!(
        page.contains("You are already signed in as mallory@demo.example"),
        "{page}"
    );
    shot(&c, "06c-login-already-signed-in").await;

    // Grace has no last name: the clear "missing data" page, no YourGPT call made for nothing.
    log_in_as(&c, &demo, "grace").await;
    click(&c, "#open-yourgpt").await;
    let page = text(&c).await;
    assert!(page.contains("Some of your details are missing"), "{page}");
    assert!(page.contains("your last name"), "{page}");
    shot(&c, "07-missing-data").await;
    // Clicked from the intranet's home: the way back is that page.
    way_back_leads_to(&c, "/").await;
    // A gateway address that does not exist, and one the gateway will not read: pages too.
    c.goto(&format!("{}/_handoff/no-such-page", demo.gateway))
        .await
        .expect("a wrong address");
    assert!(text(&c).await.contains("Page not found"));
    shot(&c, "07b-gateway-not-found").await;
    way_back_leads_to(&c, "/").await;
    c.goto(&format!("{}/ai/chat/%00", demo.gateway))
        .await
        .expect("a bad address");
    assert!(text(&c).await.contains("Bad request"));
    shot(&c, "07c-bad-request").await;
    way_back_leads_to(&c, "/").await;

    // Linus is already registered at YourGPT: the confirmation email, then the confirm link.
    log_in_as(&c, &demo, "linus").await;
    click(&c, "#open-yourgpt").await;
    let page = text(&c).await;
    assert!(page.contains("Check your email"), "{page}");
    assert!(page.contains("To: linus@demo.example"), "{page}");
    shot(&c, "08-yourgpt-check-email").await;
    click(&c, "#confirm").await;
    let page = text(&c).await;
    assert!(
        page.contains("Email confirmed") && page.contains("linus@demo.example"),
        "{page}"
    );
    shot(&c, "09-yourgpt-email-confirmed").await;

    c.close().await.expect("browser closes");
}

/// Runs `handoff demo` that is expected to fail at start: (exit code, stderr).
fn failing_demo(config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Spawned::start(
        demo_command(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        libc::SIGINT,
        "handoff demo",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.child().try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.child().stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (status.code(), err);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_demo_port_already_taken_is_named_and_nothing_starts() {
    let ports = [(); 4].map(|_| free_port());
    let taken = std::net::TcpListener::bind(("127.0.0.1", ports[1])).expect("occupy a port");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = demo_config(dir.path(), ports, |t| t);
    let (code, err) = failing_demo(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen for the demo intranet on 127.0.0.1:{}",
            ports[1]
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    drop(taken);
}

#[test]
fn a_demo_app_that_is_not_on_loopback_is_refused() {
    let ports = [(); 4].map(|_| free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = demo_config(dir.path(), ports, |t| {
        t.replace(
            &format!("api_url = \"http://127.0.0.1:{}\"", ports[2]),
            "api_url = \"https://api.yourgpt.ai\"",
        )
    });
    let (code, err) = failing_demo(&config);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("https://api.yourgpt.ai") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn the_demo_reads_its_config_from_handoff_config_when_no_flag_is_given() {
    // The demo's config taken from $HANDOFF_CONFIG: a port already taken there is the one named.
    let ports = [(); 4].map(|_| free_port());
    let taken = std::net::TcpListener::bind(("127.0.0.1", ports[1])).expect("occupy a port");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = demo_config(dir.path(), ports, |t| t);
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("demo")
        .env("HANDOFF_CONFIG", &config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("handoff demo runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", ports[1])),
        "the demo did not read $HANDOFF_CONFIG: {err}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_address_in_the_demo_gets_a_readable_page_and_the_portal_leads_home() {
    let demo = tokio::task::spawn_blocking(start_demo).await.unwrap();
    let resp = client()
        .get(format!("{}/no/such/page", demo.gateway))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("The demo intranet has no page at this address")
            && page.contains("href=\"/\""),
        "{page}"
    );
    let portal = client()
        .get(format!("{}/_handoff/", demo.gateway))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(portal.contains("Back to the intranet"), "{portal}");
}

/// `handoff demo --listen IP --public-url URL`: the gateway and the stand-ins listen where
/// asked (here another loopback address, as a server's own address would be), the handoffs
/// and the widget tags send the browser to the public host, and the demo intranet — which
/// believes identity headers — stays on 127.0.0.1. A `--public-url` that is not an address
/// is refused with exit 2 and the flag named.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_opened_from_elsewhere_sends_the_browser_to_its_public_host() {
    let ports = [(); 4].map(|_| free_port());
    let [gateway, intranet, yourgpt, typingmind] = ports;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = demo_config(dir.path(), ports, |t| t);
    let public = format!("http://127.0.0.2:{gateway}");
    let mut cmd = demo_command(&config);
    cmd.args(["--listen", "127.0.0.2", "--public-url", &public])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _demo = Spawned::start(&mut cmd, libc::SIGINT, "handoff demo");
    wait_until_connectable(SocketAddr::from(([127, 0, 0, 2], gateway)));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gateway)).is_err(),
        "the gateway listens only where --listen says"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", intranet)).is_ok(),
        "the demo intranet stays on loopback's 127.0.0.1"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.2", intranet)).is_err());

    let c = client();
    let login = c
        .post(format!("{public}/login"))
        .form(&[("person", "ada"), ("next", "/")])
        .send()
        .await
        .expect("login");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let open = |path: &'static str| {
        let (c, cookie, public) = (c.clone(), cookie.clone(), public.clone());
        async move {
            c.get(format!("{public}{path}"))
                .header("Cookie", cookie)
                .header("Accept", "text/html")
                .send()
                .await
                .expect("a handoff")
        }
    };
    for (path, port) in [("/ai/yourgpt", yourgpt), ("/ai/chat", typingmind)] {
        let resp = open(path).await;
        assert_eq!(resp.status(), 302, "{path}");
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let url = url::Url::parse(&location).unwrap();
        assert_eq!(
            (url.host_str(), url.port()),
            (Some("127.0.0.2"), Some(port)),
            "{path} → {location}"
        );
        // The stand-in is there and signs the person in.
        let landed = c.get(location).send().await.expect("the stand-in answers");
        assert!(landed.status().is_success(), "{path}");
    }
    let home = open("/").await.text().await.unwrap();
    assert!(
        home.contains(&format!("src=\"http://127.0.0.2:{typingmind}/widget.js\""))
            && home.contains(&format!(
                "src=\"http://127.0.0.2:{yourgpt}/widget/script.js\""
            )),
        "the widgets load from the public host: {home}"
    );

    let out = demo_command(&config)
        .args(["--public-url", "demo.example.net:8080"])
        .output()
        .expect("handoff demo");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--public-url"), "{err}");
}
