//! The `handoff` binary as a supervisor sees it: how fast it stops, how it drains before a
//! stop, how it fails to start, where it takes its config from, what its log lines hold, and
//! the systemd unit that runs it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const BODY: &str = "[upstreams.intranet]\nservers = [\"127.0.0.1:9\"]\n\
                    [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n";

/// `write_process_config` with `grace_period_seconds = 10`, so a stop that waits it out shows.
fn config_with(dir: &Path, port: u16, server_extra: &str) -> std::path::PathBuf {
    let config = write_process_config(dir, port, server_extra, BODY);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("grace_period_seconds = 1", "grace_period_seconds = 10");
    std::fs::write(&config, text).unwrap();
    config
}

fn wait_listening(port: u16, gw: &GatewayProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "never listened:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(port: u16, path: &str) -> (u16, String) {
    let answer = raw_exchange(
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

#[test]
fn sigterm_on_an_idle_gateway_exits_at_once_not_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut gw = GatewayProcess::start(&config_with(dir.path(), port, ""), &[]);
    wait_listening(port, &gw);
    // One finished request leaves an idle keep-alive connection behind: it must not hold
    // the stop.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(
        &mut idle,
        b"GET /_handoff/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid_file = dir.path().join("handoff.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        gw.pid().to_string(),
        "the pid file names the process while it runs"
    );
    let started = Instant::now();
    gw.signal(libc::SIGTERM);
    let code = gw.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", gw.log());
    assert!(
        !pid_file.exists(),
        "a clean stop removes the pid file (a stale one would send `handoff reload` elsewhere)"
    );
    assert!(
        took < Duration::from_secs(2),
        "grace_period_seconds = 10, idle: stopped in {took:?}\n{}",
        gw.log()
    );
    let log = gw.log();
    assert!(
        log.contains("drained before the grace period ended"),
        "{log}"
    );
    // Every line is JSON and none carries a source path (Pingora's `log` records had
    // `log.file` with the build machine's registry path).
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["log.file", "log.module_path", "log.line", "log.target"] {
            assert!(v.get(key).is_none(), "{key} in {line}");
        }
        assert!(v["target"].is_string() && v["level"].is_string(), "{line}");
    }
    assert!(log.contains("\"target\":\"pingora_core::server\""), "{log}");
    assert!(
        log.contains(&format!("listening on 127.0.0.1:{port} (http)")),
        "{log}"
    );
}

#[test]
fn shutdown_delay_keeps_serving_with_readyz_503_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_with(dir.path(), port, "shutdown_delay_seconds = 2");
    let mut gw = GatewayProcess::start(&config, &[]);
    wait_listening(port, &gw);
    assert_eq!(get(port, "/_handoff/readyz").0, 200);
    let started = Instant::now();
    gw.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Draining: readyz says so, everything else is served, new connections are accepted.
    let (status, body) = get(port, "/_handoff/readyz");
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (body["ready"].clone(), body["draining"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(get(port, "/_handoff/healthz").0, 200);
    assert_eq!(
        get(port, "/anything").0,
        502,
        "proxied as before (its upstream is down)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the checks above ran inside the delay"
    );
    let code = gw.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", gw.log());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "delay 2 s, then an idle stop: {took:?}\n{}",
        gw.log()
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(
        gw.log().contains("shutdown_delay_seconds = 2"),
        "{}",
        gw.log()
    );
}

#[test]
fn a_listen_address_that_cannot_be_bound_fails_the_start_with_one_line_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start(&config_with(dir.path(), port, ""), &[]);
    let code = gw.wait_exit(Duration::from_secs(5));
    assert_eq!(
        code,
        Some(1),
        "exits non-zero within seconds:\n{}",
        gw.log()
    );
    let log = gw.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("\"ERROR\"")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains(&format!("cannot listen on 127.0.0.1:{port} (http)"))
            && errors[0].contains("Address already in use"),
        "{log}"
    );
    // The metrics address is checked too.
    let port = free_port();
    let config = config_with(
        dir.path(),
        port,
        &format!(
            "metrics_listen = \"127.0.0.1:{}\"",
            taken.local_addr().unwrap().port()
        ),
    );
    let mut gw = GatewayProcess::start(&config, &[]);
    assert_eq!(
        gw.wait_exit(Duration::from_secs(5)),
        Some(1),
        "{}",
        gw.log()
    );
    assert!(gw.log().contains("(metrics)"), "{}", gw.log());
}

/// `handoff <args>` with `HANDOFF_CONFIG` unset, in the crate's folder (where
/// `conf/demo.toml` is): exit code and output.
fn handoff_without_config(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(args)
        .env_remove("HANDOFF_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn run_check_and_reload_never_fall_back_to_the_demo_config() {
    let system = Path::new("/etc/handoff/handoff.toml");
    for command in ["run", "check", "reload"] {
        let (code, out) = handoff_without_config(&[command]);
        assert!(!out.contains("demo.toml"), "{command}: {out}");
        if system.exists() {
            // The system's config is the default.
            assert!(
                out.contains("/etc/handoff/handoff.toml"),
                "{command}: {out}"
            );
        } else {
            assert_eq!(code, 2, "{command}: {out}");
            assert!(
                out.contains("no config: pass --config FILE or set HANDOFF_CONFIG")
                    && out.contains("handoff demo"),
                "{command}: {out}"
            );
        }
    }
    // $HANDOFF_CONFIG is read.
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), free_port(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("check")
        .env("HANDOFF_CONFIG", &config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK ("));
}

#[test]
fn the_systemd_unit_verifies_and_its_service_user_can_check_the_config() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/handoff.service"))
            .unwrap();
    // The install steps give the service's group the config (directory 0750, file 0640).
    for step in [
        "install -d -m 0750 -g handoff /etc/handoff",
        "install -m 0640 -g handoff conf/handoff.toml /etc/handoff/",
    ] {
        assert!(
            unit.contains(step),
            "the unit's install steps lack `{step}`"
        );
    }
    // No credential that must exist: a missing optional secret does not block the start.
    assert!(
        !unit.lines().any(|l| l.starts_with("LoadCredential=")),
        "a LoadCredential= whose file is missing fails the start"
    );
    assert!(unit.contains("EnvironmentFile=-/etc/handoff/handoff.env"));
    // `systemd-analyze verify`, with the binary where this build put it.
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_handoff");
    let local = dir.path().join("handoff.service");
    std::fs::write(&local, unit.replace("/usr/local/bin/handoff", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .expect("systemd-analyze runs (Debian package systemd; .ci/run installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The ExecStartPre check as an unprivileged user, after the install steps (here with
    // Debian's nobody:nogroup standing in for handoff:handoff).
    let etc = dir.path().join("etc-handoff");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = etc.join("handoff.toml");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/handoff.toml");
    let root = unsafe { libc::geteuid() } == 0;
    let install = |args: &[&str]| {
        let mut cmd = Command::new("install");
        if root {
            cmd.args(["-g", "nogroup"]);
        }
        assert!(
            cmd.args(args).status().unwrap().success(),
            "install {args:?}"
        );
    };
    install(&["-d", "-m", "0750", etc.to_str().unwrap()]);
    install(&[
        "-m",
        "0640",
        example.to_str().unwrap(),
        etc.to_str().unwrap(),
    ]);
    let secret = "0123456789abcdef0123456789abcdef";
    let check_as_service = || {
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                .arg(bin);
            c
        } else {
            // Not root: this user is unprivileged already.
            Command::new(bin)
        };
        cmd.args(["check", "--config"])
            .arg(&config)
            .env("INTRANET_SESSION_SECRET", secret)
            .env("YOURGPT_SSO_SECRET", format!("{secret}-yourgpt"))
            .env("TYPINGMIND_JWT_SECRET", format!("{secret}-typingmind"))
            .output()
            .unwrap()
    };
    let out = check_as_service();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if root {
        // The old steps (root's group) leave the service user locked out: the test can tell.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = check_as_service();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{out:?}"
        );
    }
}

/// The intranet down on day one: the health check says so in one line naming the group, the
/// server, the check and the cause (not Pingora's 1,000-character `Debug` dump of the
/// backend), and each failed request is its access line with the error in it — no second
/// line at ERROR from Pingora — until the server is back, which is one line too.
#[test]
fn an_upstream_that_is_down_is_one_warning_and_each_failed_request_one_access_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let intranet_port = free_port();
    let body = format!(
        "[upstreams.intranet]\nservers = [\"127.0.0.1:{intranet_port}\"]\n\
         [upstreams.intranet.health_check]\ntype = \"tcp\"\ninterval_ms = 100\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n"
    );
    let config = write_process_config(dir.path(), port, "", &body);
    let mut gw = GatewayProcess::start(&config, &[]);
    wait_listening(port, &gw);
    let down =
        format!("upstream intranet: 127.0.0.1:{intranet_port} failed its TCP health check: ");
    let log = gw.log_with(&[&down]);
    for _ in 0..3 {
        assert_eq!(get(port, "/down-marker").0, 502);
    }
    // Back: one line saying so.
    let listener = std::net::TcpListener::bind(("127.0.0.1", intranet_port)).unwrap();
    let up =
        format!("upstream intranet: 127.0.0.1:{intranet_port} passes its TCP health check again");
    let log = gw.log_with(&[&up, "\"status\":502"]).to_owned() + &log;
    drop(listener);
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0), "{log}");
    let log = gw.log();
    let health: Vec<&str> = log.lines().filter(|l| l.contains("health check")).collect();
    assert_eq!(health.len(), 2, "one line down, one line up:\n{log}");
    let down_line: Value = serde_json::from_str(health[0]).unwrap();
    assert_eq!(down_line["level"], "WARN", "{log}");
    assert_eq!(down_line["target"], "handoff::upstream");
    assert_eq!(down_line["group"], "intranet");
    assert_eq!(down_line["server"], format!("127.0.0.1:{intranet_port}"));
    assert!(
        down_line["cause"]
            .as_str()
            .unwrap()
            .contains("ConnectRefused"),
        "{log}"
    );
    assert!(health[0].len() < 600, "one short line: {}", health[0]);
    assert!(!log.contains("Backend {"), "no Debug dump:\n{log}");
    assert!(
        !log.contains("pingora_load_balancing"),
        "Pingora's own health lines are left out:\n{log}"
    );
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("/down-marker")).collect();
    assert_eq!(failed.len(), 3, "one line per failed request:\n{log}");
    for line in failed {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["target"], "handoff::access", "{line}");
        assert_eq!(v["status"], 502);
        assert_eq!(v["outcome"], "proxy_error");
        assert!(
            v["error"].as_str().unwrap().contains("ConnectRefused"),
            "{line}"
        );
    }
    assert!(
        !log.contains("\"level\":\"ERROR\""),
        "no ERROR line for an upstream that is down:\n{log}"
    );
}

/// An upstream whose answer head is malformed — and carries a session cookie — is a 502 whose
/// log lines name the kind of failure, never the bytes Pingora kept as its context.
#[test]
fn a_malformed_upstream_head_never_puts_its_bytes_in_the_log() {
    const SECRET: &str = "eyJmalformed-head-session-value";
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    // Answers every connection it gets (Pingora may retry once) until the test ends; never
    // joined, so a connection that does not come cannot hold the test.
    std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((mut conn, _)) = upstream.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nSet-Cookie: intranet_session={SECRET}\r\nX: a\x01b\r\n\r\n"
            );
            let _ = std::io::Write::write_all(&mut conn, head.as_bytes());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let body = format!(
        "[upstreams.intranet]\nservers = [\"127.0.0.1:{upstream_port}\"]\n\
         [upstreams.intranet.health_check]\ntype = \"none\"\n\
         [[routes]]\npath = \"/\"\nupstream = \"intranet\"\n"
    );
    let config = write_process_config(dir.path(), port, "", &body);
    let mut gw = GatewayProcess::start(&config, &[]);
    wait_listening(port, &gw);
    assert_eq!(get(port, "/malformed-marker").0, 502);
    let log = gw.log_with(&["/malformed-marker"]);
    gw.signal(libc::SIGTERM);
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0), "{log}");
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("/malformed-marker"))
        .unwrap_or_else(|| panic!("no access line:\n{log}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert!(
        v["error"].as_str().unwrap().starts_with("Upstream "),
        "{line}"
    );
    assert!(
        !log.contains(SECRET),
        "the upstream's bytes reached the log:\n{log}"
    );
}
