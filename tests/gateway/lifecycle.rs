//! The `handoff` binary's life: config reload (`handoff reload`, SIGHUP), binary upgrade
//! (`run --upgrade` + SIGQUIT) and graceful shutdown (SIGTERM), each under load with zero
//! failed requests; and a log destination that fails (a full disk) costing nothing.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use handoff::internals::standins::yourgpt::{Mode, YourGptStandIn, CLIENT_ID};

fn fixture_session() -> String {
    format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = [\"HS256\"]\n\
         secret = {{ file = \"{}\" }}\n",
        fixtures().join("session-secret.txt").display()
    )
}

fn routes(intranet: &Intranet, paths: &[&str]) -> String {
    let mut text = format!(
        "[upstreams.intranet]\nservers = [\"{}\"]\n",
        intranet.server()
    );
    for path in paths {
        text.push_str(&format!(
            "[[routes]]\npath = \"{path}\"\nupstream = \"intranet\"\n"
        ));
    }
    text
}

/// Requests from `clients` concurrent keep-alive clients until stopped (at most `max` each).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize, max: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed, url) =
                    (stop.clone(), ok.clone(), failed.clone(), url.clone());
                tokio::spawn(async move {
                    let c = client();
                    for _ in 0..max {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match c.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failed.lock().unwrap().push(format!("HTTP {}", r.status())),
                            Err(e) => failed.lock().unwrap().push(format!("{e:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    fn served(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops, and returns (served, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("load task");
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }

    /// Waits until `n` more requests were served.
    async fn wait_for(&self, n: usize) {
        let target = self.served() + n;
        let start = Instant::now();
        while self.served() < target {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the load stalled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn status(url: &str) -> u16 {
    client()
        .get(url)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn wait_ready(port: u16) {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    tokio::task::spawn_blocking(move || wait_until_connectable(addr))
        .await
        .unwrap();
}

fn handoff_reload(config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["reload", "--config"])
        .arg(config)
        .output()
        .expect("handoff reload runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Waits (at most 10 s) until `series` reads `want`.
async fn wait_for_metric(port: u16, series: &str, want: f64, gw: &GatewayProcess) {
    let start = Instant::now();
    while metric(port, series).await != Some(want) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{series} never reached {want}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swaps_routes_under_load_and_a_bad_config_changes_nothing() {
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let server_extra = format!("metrics_listen = \"127.0.0.1:{metrics_port}\"");
    let body = |paths: &[&str]| format!("{}{}", fixture_session(), routes(&intranet, paths));
    let config = write_process_config(dir.path(), port, &server_extra, &body(&["/a"]));
    let gw = GatewayProcess::start(&config, &[]);
    wait_ready(port).await;
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    assert_eq!(status(&url("/a/x")).await, 200);
    assert_eq!(status(&url("/b/x")).await, 404);

    let load = Load::start(url("/a/load"), 8, 5_000);
    load.wait_for(200).await;

    // A good config: /b appears, /a keeps answering throughout.
    write_process_config(dir.path(), port, &server_extra, &body(&["/a", "/b"]));
    let (code, out) = handoff_reload(&config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sent SIGHUP"), "{out}");
    let start = Instant::now();
    while status(&url("/b/x")).await != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/b never appeared:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.wait_for(200).await;

    // A bad config: `handoff reload` refuses to signal, names the key.
    let good = std::fs::read_to_string(&config).unwrap();
    write_process_config(
        dir.path(),
        port,
        &server_extra,
        &format!(
            "{}[[routes]]\npath = \"/c\"\nupstream = \"intrante\"\n",
            body(&["/a", "/b"])
        ),
    );
    let (code, out) = handoff_reload(&config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("routes[2] (/c).upstream") && out.contains("not reloading"),
        "{out}"
    );
    // The same bad file, signalled directly: the gateway refuses it, logs and counts it.
    gw.signal(libc::SIGHUP);
    wait_for_metric(
        metrics_port,
        r#"handoff_config_reloads_total{result="failure"}"#,
        1.0,
        &gw,
    )
    .await;
    load.wait_for(200).await;
    assert_eq!(
        status(&url("/b/x")).await,
        200,
        "the old config still serves"
    );
    assert_eq!(status(&url("/c/x")).await, 404);
    assert_eq!(
        metric(
            metrics_port,
            r#"handoff_config_reloads_total{result="success"}"#
        )
        .await,
        Some(1.0)
    );

    // Back to a good file; reload again: works.
    std::fs::write(&config, good).unwrap();
    gw.signal(libc::SIGHUP);
    wait_for_metric(
        metrics_port,
        r#"handoff_config_reloads_total{result="success"}"#,
        2.0,
        &gw,
    )
    .await;
    let (served, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        served,
        &failed[..failed.len().min(5)]
    );
    assert!(served >= 600, "{served}");
    let log = gw.log();
    assert!(log.contains("config reloaded"), "{log}");
    assert!(
        log.contains("config reload refused") && log.contains("intrante"),
        "{log}"
    );
    // Every line is JSON ([log] format = "json").
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_upgrade_under_load_fails_no_request() {
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let body = format!("{}{}", fixture_session(), routes(&intranet, &["/"]));
    let config = write_process_config(dir.path(), port, "", &body);
    let mut old = GatewayProcess::start(&config, &[]);
    wait_ready(port).await;
    let load = Load::start(format!("http://127.0.0.1:{port}/load"), 8, 20_000);
    load.wait_for(300).await;

    // The new binary waits for the listening sockets; the old one hands them over on SIGQUIT.
    let new = GatewayProcess::start(&config, &["--upgrade"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal(libc::SIGQUIT);
    // The old process drains and exits; the new one serves on the same port meanwhile.
    let exited = tokio::task::spawn_blocking(move || {
        let code = old.wait_exit(Duration::from_secs(20));
        (code, old)
    });
    let (code, old) = exited.await.unwrap();
    assert_eq!(code, Some(0), "old process:\n{}", old.log());
    load.wait_for(300).await;
    let (served, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\nold:\n{}\nnew:\n{}",
        failed.len(),
        served,
        &failed[..failed.len().min(5)],
        old.log(),
        new.log()
    );
    let pid = std::fs::read_to_string(dir.path().join("handoff.pid")).unwrap();
    assert_eq!(
        pid.trim(),
        new.pid().to_string(),
        "the pid file names the new process"
    );
    assert_eq!(status(&format!("http://127.0.0.1:{port}/after")).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_inflight_handoff_finish_then_exits() {
    let api = YourGptStandIn::start(secret_fixture("yourgpt-secret.txt"))
        .await
        .unwrap();
    api.set_verify(Mode::Slow(1200));
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let body = format!(
        "{session}{routes}\
         [apps.yourgpt]\nkind = \"yourgpt\"\nclient_id = \"{CLIENT_ID}\"\n\
         secret = {{ file = \"{secret}\" }}\napi_url = \"{api}\"\n\
         login_url = \"https://chatbot.yourgpt.test/\"\n\
         [[routes]]\npath = \"/ai/yourgpt\"\napp = \"yourgpt\"\n",
        session = fixture_session(),
        routes = routes(&intranet, &["/"]),
        secret = fixtures().join("yourgpt-secret.txt").display(),
        api = api.url(),
    );
    // The grace period outlasts the vendor's answer.
    let config = write_process_config(dir.path(), port, "", &body);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("grace_period_seconds = 1", "grace_period_seconds = 3");
    std::fs::write(&config, text).unwrap();
    let mut gw = GatewayProcess::start(&config, &[]);
    wait_ready(port).await;
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &[]))
    );
    let url = format!("http://127.0.0.1:{port}/ai/yourgpt");
    let inflight = tokio::spawn(async move {
        client()
            .get(url)
            .header("Accept", "text/html")
            .header("Cookie", cookie)
            .send()
            .await
            .map(|r| (r.status().as_u16(), r.headers().get("location").cloned()))
    });
    // The handoff is waiting on the slow vendor when the signal comes.
    let start = Instant::now();
    while api.count("verify") == 0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.signal(libc::SIGTERM);
    let answer = inflight.await.unwrap();
    let (status, location) = answer.unwrap_or_else(|e| {
        std::thread::sleep(Duration::from_secs(3));
        panic!("the in-flight handoff did not complete: {e}\n{}", gw.log())
    });
    assert_eq!(status, 302, "{}", gw.log());
    assert!(location
        .unwrap()
        .to_str()
        .unwrap()
        .contains("process-login"));
    let exited = tokio::task::spawn_blocking(move || (gw.wait_exit(Duration::from_secs(15)), gw));
    let (code, gw) = exited.await.unwrap();
    assert_eq!(code, Some(0), "{}", gw.log());
    assert!(gw.log().contains("handoff stopped"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_for_logs_is_not_fatal() {
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    let body = format!("{}{}", fixture_session(), routes(&intranet, &["/"]));
    let config = write_process_config(
        dir.path(),
        port,
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
        &body,
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[log]\n", "[log]\nfile = \"/dev/full\"\n");
    std::fs::write(&config, text).unwrap();
    let _gw = GatewayProcess::start(&config, &[]);
    wait_ready(port).await;
    let c = client();
    for i in 0..200 {
        let r = c
            .get(format!("http://127.0.0.1:{port}/page/{i}"))
            .send()
            .await
            .expect("served despite the full disk");
        assert_eq!(r.status(), 200);
    }
    // Lines are written (and lost) in batches, at most a flush interval after their request.
    let series = r#"handoff_log_lines_lost_total{cause="write_error"}"#;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lost = 0.0;
    while lost < 200.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lost = metric(metrics_port, series).await.expect("the metric");
    }
    assert!(
        lost >= 200.0,
        "every access line was lost and counted: {lost}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn handoff_reload_says_why_it_cannot_signal() {
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{}{}", fixture_session(), routes(&intranet, &["/"]));
    let config = write_process_config(dir.path(), free_port(), "", &body);
    // Nothing running: no pid file.
    let (code, out) = handoff_reload(&config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cannot read server.pid_file") && out.contains("is the gateway running?"),
        "{out}"
    );
    // A pid file that holds no process id.
    std::fs::write(dir.path().join("handoff.pid"), "not a pid\n").unwrap();
    let (code, out) = handoff_reload(&config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not hold a process id"), "{out}");
    // A process that is gone.
    std::fs::write(dir.path().join("handoff.pid"), "999999999\n").unwrap();
    let (code, out) = handoff_reload(&config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("not signalling process 999999999") && out.contains("stale pid file"),
        "{out}"
    );
    // A stale pid file whose id now belongs to another program: it must not get a SIGHUP
    // (which would end it).
    let mut other = Spawned::start(
        std::process::Command::new("sleep").arg("30"),
        libc::SIGTERM,
        "sleep",
    );
    std::fs::write(dir.path().join("handoff.pid"), format!("{}\n", other.pid())).unwrap();
    let (code, out) = handoff_reload(&config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("it is \"sleep\", not \"handoff\""), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        other.child().try_wait().unwrap().is_none(),
        "the other program was not signalled"
    );
}

#[test]
fn a_log_file_that_cannot_be_opened_stops_the_start_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(
        dir.path(),
        free_port(),
        "",
        "[upstreams.intranet]\nservers = [\"127.0.0.1:9\"]\n[[routes]]\npath = \"/\"\nupstream = \"intranet\"\n",
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[log]\n", "[log]\nfile = \"/nonexistent/handoff/h.log\"\n");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("log.file: cannot open /nonexistent/handoff/h.log"),
        "{stderr}"
    );
}

/// A reload of an unchanged file, under traffic, starts warm: the key set, the remembered
/// tokens and the userinfo cache (and their HTTP clients) carry over — no JWKS fetch, no
/// userinfo call, no token verified again.
#[tokio::test(flavor = "multi_thread")]
async fn reloading_an_unchanged_session_keeps_its_caches_warm() {
    use crate::idp::{IdentityProvider, TestKey};
    let intranet = Intranet::start().await;
    let idp = IdentityProvider::start().await;
    let key = TestKey::rsa("rsa_private.pem", "k1");
    idp.publish(&[&key]);
    idp.add_session(
        "opaque-1",
        serde_json::json!({"sub": "u-ui", "email": "ui@corp.example"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let server_extra = format!("metrics_listen = \"127.0.0.1:{metrics_port}\"");
    let body = format!(
        "[session]\ncookie = \"sid\"\nalgorithms = [\"RS256\"]\nsources = [\"cookie\", \"userinfo\"]\n\
         [session.jwks]\nurl = \"{}\"\n[session.userinfo]\nurl = \"{}\"\n\n{}",
        idp.jwks_url(),
        idp.userinfo_url(),
        routes(&intranet, &["/"])
    );
    let config = write_process_config(dir.path(), port, &server_extra, &body);
    let gw = GatewayProcess::start(&config, &[]);
    wait_ready(port).await;
    let whoami_url = format!("http://127.0.0.1:{port}/_handoff/whoami");
    let token = key.sign(&person("ada@corp.example", &[]));
    let ask = move |cookie: String| {
        let url = whoami_url.clone();
        async move {
            client()
                .get(url)
                .header("Cookie", cookie)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    assert_eq!(ask(format!("sid={token}")).await, 200);
    assert_eq!(ask("sid=opaque-1".to_string()).await, 200);
    let (fetches, calls) = (idp.jwks_fetches(), idp.userinfo_calls());
    let token_hits = "handoff_session_cache_total{cache=\"token\",result=\"hit\"}";

    // Traffic throughout the reload (opaque cookies: the JWT is asked about only after it).
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, failed) = (stop.clone(), failed.clone());
        let ask = ask.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if ask("sid=opaque-1".to_string()).await != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    gw.signal(libc::SIGHUP);
    wait_for_metric(
        metrics_port,
        "handoff_config_reloads_total{result=\"success\"}",
        1.0,
        &gw,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    // The token verified before the reload is still remembered: a hit, not a verification.
    let hits = metric(metrics_port, token_hits).await.unwrap_or(0.0);
    assert_eq!(ask(format!("sid={token}")).await, 200);
    assert_eq!(
        metric(metrics_port, token_hits).await,
        Some(hits + 1.0),
        "the remembered token was verified again"
    );

    assert_eq!(failed.load(Ordering::Relaxed), 0, "{}", gw.log());
    assert_eq!(idp.jwks_fetches(), fetches, "the key set was fetched again");
    assert_eq!(
        idp.userinfo_calls(),
        calls,
        "the userinfo cache started cold"
    );
}

/// A reload whose new key source cannot load is refused: the config in use keeps serving its
/// sessions (before, the swap happened and every session got 503).
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_whose_new_jwks_cannot_load_is_refused_and_sessions_keep_working() {
    let intranet = Intranet::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let server_extra = format!("metrics_listen = \"127.0.0.1:{metrics_port}\"");
    let body = format!("{}{}", fixture_session(), routes(&intranet, &["/"]));
    let config = write_process_config(dir.path(), port, &server_extra, &body);
    let gw = GatewayProcess::start(&config, &[]);
    wait_ready(port).await;
    let cookie = format!(
        "intranet_session={}",
        hs256(&person("ada@corp.example", &[]))
    );
    let whoami = |cookie: String| async move {
        client()
            .get(format!("http://127.0.0.1:{port}/_handoff/whoami"))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(whoami(cookie.clone()).await, 200);

    // The new config takes its keys from a JWKS URL where nothing answers.
    let dead = free_port();
    let new_session = format!(
        "[session]\ncookie = \"intranet_session\"\nalgorithms = [\"RS256\"]\n\
         [session.jwks]\nurl = \"http://127.0.0.1:{dead}/jwks\"\nstartup_wait_ms = 500\n"
    );
    write_process_config(
        dir.path(),
        port,
        &server_extra,
        &format!("{new_session}{}", routes(&intranet, &["/"])),
    );
    let (code, out) = handoff_reload(&config);
    assert_eq!(code, 0, "{out}");
    wait_for_metric(
        metrics_port,
        "handoff_config_reloads_total{result=\"failure\"}",
        1.0,
        &gw,
    )
    .await;
    let expected =
        format!("session.jwks.url: the new key set at http://127.0.0.1:{dead}/jwks did not load");
    let log = gw.log_with(&["config reload refused", &expected]);
    assert!(
        log.contains("config reload refused") && log.contains(&expected),
        "{log}"
    );
    assert_eq!(whoami(cookie).await, 200, "the config in use still serves");
    assert_eq!(
        status(&format!("http://127.0.0.1:{port}/_handoff/readyz")).await,
        200
    );
}
