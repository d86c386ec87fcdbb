//! `[server]` → [`ServerSettings`].

use std::net::SocketAddr;
use std::path::Path;

use super::raw::*;
use super::validate::Problems;
use super::*;
use crate::routes::parse_route_path;

pub(super) fn server_settings(raw: RawServer, base_dir: &Path, p: &mut Problems) -> ServerSettings {
    let listen = raw
        .listen
        .unwrap_or_else(|| vec!["127.0.0.1:8080".to_string()]);
    for (i, addr) in listen.iter().enumerate() {
        check_listen(&format!("server.listen[{i}]"), addr, p);
    }
    let tls = raw.tls.map(|t| {
        if t.listen.is_empty() {
            p.add("server.tls.listen", "give at least one address");
        }
        for (i, addr) in t.listen.iter().enumerate() {
            check_listen(&format!("server.tls.listen[{i}]"), addr, p);
        }
        let before = p.error_count();
        let cert_file = readable_file("server.tls.cert_file", &t.cert_file, base_dir, p);
        let key_file = readable_file("server.tls.key_file", &t.key_file, base_dir, p);
        if p.error_count() == before {
            if let Err((file, problem)) = super::tls::check_listener_files(&cert_file, &key_file) {
                let key = match file {
                    super::tls::ListenerFile::Cert => "server.tls.cert_file",
                    super::tls::ListenerFile::Key => "server.tls.key_file",
                };
                p.add(key, problem);
            }
        }
        TlsListeners {
            listen: t.listen,
            cert_file,
            key_file,
        }
    });
    if listen.is_empty() && tls.is_none() {
        p.add("server.listen", "no listener: give at least one address");
    }
    let threads = raw.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if threads == 0 {
        p.add("server.threads", "must be at least 1");
    }
    let prefix = raw
        .endpoints_prefix
        .unwrap_or_else(|| "/_handoff".to_string());
    let endpoints_prefix = match parse_route_path(&prefix) {
        Ok(path) if path != "/" => path,
        Ok(_) => {
            p.add("server.endpoints_prefix", "must not be `/`");
            prefix
        }
        Err(e) => {
            p.add("server.endpoints_prefix", e);
            prefix
        }
    };
    if let Some(addr) = &raw.metrics_listen {
        check_listen("server.metrics_listen", addr, p);
    }
    let ca = raw
        .ca_file
        .and_then(|f| ca_file_setting("server.ca_file", &f, base_dir, p));
    ServerSettings {
        listen,
        tls,
        h2c: raw.h2c.unwrap_or(false),
        threads,
        work_stealing: raw.work_stealing.unwrap_or(true),
        grace_period_seconds: raw.grace_period_seconds.unwrap_or(10),
        graceful_shutdown_timeout_seconds: raw.graceful_shutdown_timeout_seconds.unwrap_or(5),
        shutdown_delay: Duration::from_secs(raw.shutdown_delay_seconds.unwrap_or(0)),
        pid_file: raw
            .pid_file
            .unwrap_or_else(|| super::DEFAULT_PID_FILE.to_string()),
        upgrade_sock: raw
            .upgrade_sock
            .unwrap_or_else(|| super::DEFAULT_UPGRADE_SOCK.to_string()),
        daemon: raw.daemon.unwrap_or(false),
        error_log: raw.error_log,
        ca,
        upstream_keepalive_pool_size: raw.upstream_keepalive_pool_size.unwrap_or(1024),
        endpoints_prefix,
        trust_forwarded_headers: raw.trust_forwarded_headers.unwrap_or(false),
        metrics_listen: raw.metrics_listen,
        max_request_header_bytes: match raw.max_request_header_bytes {
            Some(n) if n < 1024 => {
                p.add("server.max_request_header_bytes", "must be at least 1024");
                n
            }
            Some(n) => n,
            None => 65_536,
        },
        escaped_slashes: p
            .escaped_slashes("server.escaped_slashes", raw.escaped_slashes.as_deref())
            .unwrap_or_default(),
        drop_underscore_headers: raw.drop_underscore_headers.unwrap_or(true),
        client_header_timeout: p.positive_seconds(
            "server.client_header_timeout_seconds",
            raw.client_header_timeout_seconds,
            60,
        ),
        keepalive_timeout: Duration::from_secs(raw.keepalive_timeout_seconds.unwrap_or(75)),
        h2_idle_timeout: p.positive_seconds(
            "server.h2_idle_timeout_seconds",
            raw.h2_idle_timeout_seconds,
            75,
        ),
        max_connections: match raw.max_connections {
            Some(0) => {
                p.add(
                    "server.max_connections",
                    "must be at least 1 (leave it out for no cap)",
                );
                None
            }
            n => n,
        },
    }
}

fn check_listen(key: &str, addr: &str, p: &mut Problems) {
    if addr.parse::<SocketAddr>().is_err() {
        p.add(
            key,
            format!("{addr:?} is not an IP:port address (e.g. \"127.0.0.1:8080\" or \"[::]:443\")"),
        );
    }
}

/// A CA file (`file`, relative to `base_dir`): its certificates (and full path), read once; a
/// file that cannot be read or holds no usable certificate is a problem at `key`.
pub(super) fn ca_file_setting(
    key: &str,
    file: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<CaCertificates> {
    let path = base_dir.join(file).display().to_string();
    super::tls::ca_certificates(&path)
        .map_err(|e| p.add(key, e))
        .ok()
}

/// Checks that a file can be read, and returns its path resolved against the config's folder.
pub(super) fn readable_file(key: &str, path: &str, base_dir: &Path, p: &mut Problems) -> String {
    let full = base_dir.join(path);
    if let Err(e) = std::fs::File::open(&full) {
        p.add(key, format!("cannot read {}: {e}", full.display()));
    }
    full.display().to_string()
}
