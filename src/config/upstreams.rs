//! `[upstreams.NAME]` → [`UpstreamSettings`], addresses resolved once, here.

use std::net::ToSocketAddrs;

use super::raw::*;
use super::validate::Problems;
use super::*;

pub(super) fn upstream_settings(
    name: &str,
    raw: RawUpstream,
    server_ca: Option<&CaCertificates>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<UpstreamSettings> {
    let key = format!("upstreams.{name}");
    let before = p.error_count();
    if raw.servers.is_empty() {
        p.add(format!("{key}.servers"), "list at least one \"host:port\"");
    }
    let mut servers = Vec::new();
    for (i, s) in raw.servers.iter().enumerate() {
        match s.to_socket_addrs() {
            Ok(addrs) => {
                let before = servers.len();
                for addr in addrs {
                    if !servers.contains(&addr) {
                        servers.push(addr);
                    }
                }
                if servers.len() == before {
                    p.add(
                        format!("{key}.servers[{i}]"),
                        format!("{s:?} resolves to nothing new"),
                    );
                }
            }
            Err(e) => p.add(
                format!("{key}.servers[{i}]"),
                format!("cannot resolve {s:?} (write \"host:port\"): {e}"),
            ),
        }
    }
    let tls = raw.tls.unwrap_or(false);
    let sni = raw.sni.unwrap_or_else(|| {
        raw.servers
            .first()
            .and_then(|s| {
                s.rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
            })
            .unwrap_or_default()
    });
    let ms = |field: &str, v: Option<u64>, default: u64, p: &mut Problems| {
        p.positive_ms(&format!("{key}.{field}"), v, default)
    };
    let connect_timeout = ms("connect_timeout_ms", raw.connect_timeout_ms, 3_000, p);
    let read_timeout = ms("read_timeout_ms", raw.read_timeout_ms, 60_000, p);
    let write_timeout = ms("write_timeout_ms", raw.write_timeout_ms, 60_000, p);
    let idle_timeout = ms("idle_timeout_ms", raw.idle_timeout_ms, 60_000, p);
    let connection_reuse = match raw.connection_reuse.as_deref() {
        None | Some("same_credentials") => ConnectionReuse::SameCredentials,
        Some("any") => ConnectionReuse::Any,
        Some(other) => {
            p.add(
                format!("{key}.connection_reuse"),
                format!(
                    "{other:?} is not a way to reuse connections; use \"same_credentials\" or \"any\""
                ),
            );
            ConnectionReuse::SameCredentials
        }
    };
    let hc = raw.health_check;
    let hc_key = format!("{key}.health_check");
    let kind = match hc.as_ref().and_then(|h| h.kind.as_deref()).unwrap_or("tcp") {
        "none" => HealthCheckKind::None,
        "tcp" => HealthCheckKind::Tcp,
        "http" => {
            let path = hc
                .as_ref()
                .and_then(|h| h.path.clone())
                .unwrap_or_else(|| "/".to_string());
            if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                p.add(
                    format!("{hc_key}.path"),
                    format!("{path:?} must be a path starting with `/`"),
                );
            }
            let host = hc
                .as_ref()
                .and_then(|h| h.host.clone())
                .unwrap_or_else(|| sni.clone());
            HealthCheckKind::Http { path, host }
        }
        other => {
            p.add(
                format!("{hc_key}.type"),
                format!("{other:?} is not a health check type; use \"tcp\", \"http\" or \"none\""),
            );
            HealthCheckKind::None
        }
    };
    let health_check = HealthCheckSettings {
        kind,
        interval: ms(
            "health_check.interval_ms",
            hc.as_ref().and_then(|h| h.interval_ms),
            5_000,
            p,
        ),
        timeout: ms(
            "health_check.timeout_ms",
            hc.as_ref().and_then(|h| h.timeout_ms),
            1_000,
            p,
        ),
        consecutive_failures: hc
            .as_ref()
            .and_then(|h| h.consecutive_failures)
            .unwrap_or(1)
            .max(1),
        consecutive_successes: hc
            .as_ref()
            .and_then(|h| h.consecutive_successes)
            .unwrap_or(1)
            .max(1),
    };
    if tls && sni.is_empty() {
        p.add(
            format!("{key}.sni"),
            "TLS upstreams need an `sni` host name",
        );
    }
    let ca = match &raw.ca_file {
        Some(file) => {
            let ca_key = format!("{key}.ca_file");
            super::server::ca_file_setting(&ca_key, file, base_dir, p)
        }
        None => server_ca.cloned(),
    };
    if !tls && (raw.ca_file.is_some() || raw.verify_hostname.is_some()) {
        p.add(
            format!("{key}.tls"),
            "ca_file and verify_hostname apply to TLS upstreams: set tls = true",
        );
    }
    let verify_cert = raw.verify_cert.unwrap_or(true);
    if p.error_count() > before {
        return None;
    }
    Some(UpstreamSettings {
        name: name.to_string(),
        servers,
        tls,
        sni,
        verify_cert,
        verify_hostname: verify_cert && raw.verify_hostname.unwrap_or(true),
        ca,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
        connection_reuse,
        health_check,
    })
}
