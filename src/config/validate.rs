//! Raw TOML → validated [`Config`], collecting every problem with its key path.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use http::HeaderName;
use serde::de::DeserializeOwned;

use super::raw::*;
use super::*;
use crate::identity::{ClaimMapping, ClaimPath};
use crate::routes::{normalize_path, parse_route_path, HostPattern};
use crate::session::jwt::{parse_algorithm, ClaimRules, JwtVerifier, PublicKey};

/// Collects problems as the sections are converted.
pub(super) struct Problems(Vec<ConfigError>);

impl Problems {
    /// A duration in milliseconds that must be more than zero (`default` when absent).
    pub(super) fn positive_ms(&mut self, key: &str, value: Option<u64>, default: u64) -> Duration {
        let v = value.unwrap_or(default);
        if v == 0 {
            self.add(key, "must be more than 0");
        }
        Duration::from_millis(v)
    }

    pub(super) fn error_count(&self) -> usize {
        self.0.len()
    }

    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Deserializes one TOML value, reporting a failure under `key` (plus the path inside).
    pub(super) fn parse<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: toml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." || inner.is_empty() {
                    key.to_string()
                } else {
                    format!("{key}.{inner}")
                };
                // toml appends "\nin `field`" to value errors; the key path already says it.
                let message = e.into_inner().to_string();
                let first = message.split("\nin `").next().unwrap_or_default();
                self.add(full, first.trim().to_string());
                None
            }
        }
    }
}

pub(super) fn validate(text: &str, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut p = Problems(Vec::new());
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let e: toml::de::Error = e;
            let at = e
                .span()
                .map(|s| line_col(text, s.start))
                .map(|(l, c)| format!(" (line {l}, column {c})"))
                .unwrap_or_default();
            p.add("", format!("not valid TOML{at}: {}", e.message()));
            return Err(p.0);
        }
    };
    for key in table.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            p.add(
                key.clone(),
                format!(
                    "unknown section; expected one of {}",
                    TOP_LEVEL_KEYS.join(", ")
                ),
            );
        }
    }
    let mut take = |k: &str| table.remove(k);

    let server = take("server")
        .and_then(|v| p.parse::<RawServer>("server", v))
        .unwrap_or_default();
    let server = server_settings(server, base_dir, &mut p);

    let raw_apps: BTreeMap<String, toml::Value> = take("apps")
        .and_then(|v| p.parse("apps", v))
        .unwrap_or_default();
    let mut apps = Vec::new();
    let mut app_names = BTreeMap::new();
    for (name, value) in raw_apps {
        app_names.insert(name.clone(), apps.len());
        match super::apps::app_settings(&name, value, base_dir, &mut p) {
            Some(app) => apps.push(app),
            None => {
                app_names.insert(name, usize::MAX);
            }
        }
    }

    let identity = take("identity")
        .and_then(|v| p.parse::<RawIdentity>("identity", v))
        .unwrap_or_default();
    let mut mapping = claim_mapping(identity);
    for app in &apps {
        for path in app.needed_claims() {
            if !mapping.extra.contains(&path) {
                mapping.extra.push(path);
            }
        }
    }

    let raw_session = take("session").and_then(|v| p.parse::<RawSession>("session", v));
    let session = raw_session.and_then(|s| session_settings(s, mapping, base_dir, &mut p));

    let headers = take("identity_headers")
        .and_then(|v| p.parse::<RawIdentityHeaders>("identity_headers", v))
        .unwrap_or_default();
    let identity_headers = identity_header_names(headers, &mut p);

    let raw_upstreams: RawUpstreams = take("upstreams")
        .and_then(|v| p.parse("upstreams", v))
        .unwrap_or_default();
    let mut upstreams = Vec::new();
    let mut upstream_names = BTreeMap::new();
    for (name, value) in raw_upstreams {
        let key = format!("upstreams.{name}");
        // The name is known even if the body is broken: routes naming it are not also wrong.
        upstream_names.insert(name.clone(), upstreams.len());
        if let Some(raw) = p.parse::<RawUpstream>(&key, value) {
            if let Some(u) = upstream_settings(&name, raw, &mut p) {
                upstreams.push(u);
                continue;
            }
        }
        upstream_names.insert(name, usize::MAX);
    }

    let raw_routes: Vec<toml::Value> = take("routes")
        .and_then(|v| p.parse("routes", v))
        .unwrap_or_default();
    if raw_routes.is_empty() {
        p.add("routes", "at least one [[routes]] entry is needed");
    }
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for (i, value) in raw_routes.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        let Some(raw) = p.parse::<RawRoute>(&key, value) else {
            continue;
        };
        let ctx = RouteContext {
            upstreams: &upstream_names,
            apps: &app_names,
            has_session: session.is_some(),
            endpoints_prefix: &server.endpoints_prefix,
        };
        if let Some(route) = route_settings(key.clone(), raw, &ctx, &mut p) {
            let identity = (route.host.clone(), route.path.clone());
            if !seen.insert(identity) {
                p.add(
                    format!("{key}.path"),
                    "another route already has the same host and path",
                );
            }
            routes.push(route);
        }
    }

    if p.0.is_empty() {
        Ok(Config {
            server,
            session,
            identity_headers,
            upstreams,
            apps,
            routes,
        })
    } else {
        Err(p.0)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn server_settings(raw: RawServer, base_dir: &Path, p: &mut Problems) -> ServerSettings {
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
        TlsListeners {
            listen: t.listen,
            cert_file: readable_file("server.tls.cert_file", &t.cert_file, base_dir, p),
            key_file: readable_file("server.tls.key_file", &t.key_file, base_dir, p),
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
    let ca_file = raw
        .ca_file
        .map(|f| readable_file("server.ca_file", &f, base_dir, p));
    ServerSettings {
        listen,
        tls,
        h2c: raw.h2c.unwrap_or(false),
        threads,
        work_stealing: raw.work_stealing.unwrap_or(true),
        grace_period_seconds: raw.grace_period_seconds.unwrap_or(10),
        graceful_shutdown_timeout_seconds: raw.graceful_shutdown_timeout_seconds.unwrap_or(5),
        pid_file: raw
            .pid_file
            .unwrap_or_else(|| "/tmp/handoff.pid".to_string()),
        upgrade_sock: raw
            .upgrade_sock
            .unwrap_or_else(|| "/tmp/handoff_upgrade.sock".to_string()),
        daemon: raw.daemon.unwrap_or(false),
        error_log: raw.error_log,
        ca_file,
        upstream_keepalive_pool_size: raw.upstream_keepalive_pool_size.unwrap_or(128),
        endpoints_prefix,
        trust_forwarded_headers: raw.trust_forwarded_headers.unwrap_or(false),
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

/// Checks that a file can be read, and returns its path resolved against the config's folder.
fn readable_file(key: &str, path: &str, base_dir: &Path, p: &mut Problems) -> String {
    let full = base_dir.join(path);
    if let Err(e) = std::fs::File::open(&full) {
        p.add(key, format!("cannot read {}: {e}", full.display()));
    }
    full.display().to_string()
}

fn claim_mapping(raw: RawIdentity) -> ClaimMapping {
    let d = ClaimMapping::default();
    let pick = |v: Option<String>, default: ClaimPath| v.map(ClaimPath::new).unwrap_or(default);
    ClaimMapping {
        id: pick(raw.id, d.id),
        email: pick(raw.email, d.email),
        first_name: pick(raw.first_name, d.first_name),
        last_name: pick(raw.last_name, d.last_name),
        name: pick(raw.name, d.name),
        username: pick(raw.username, d.username),
        groups: pick(raw.groups, d.groups),
        profile_pic: pick(raw.profile_pic, d.profile_pic),
        phone_no: pick(raw.phone_no, d.phone_no),
        phone_code: pick(raw.phone_code, d.phone_code),
        extra: Vec::new(),
    }
}

fn session_settings(
    raw: RawSession,
    mapping: ClaimMapping,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<SessionSettings> {
    let before = p.0.len();
    if raw.cookie.is_empty() || !raw.cookie.bytes().all(is_cookie_name_byte) {
        p.add(
            "session.cookie",
            format!("{:?} is not a valid cookie name", raw.cookie),
        );
    }
    if raw.algorithms.is_empty() {
        p.add(
            "session.algorithms",
            "list at least one algorithm, e.g. [\"HS256\"]",
        );
    }
    let mut algorithms = Vec::new();
    for (i, name) in raw.algorithms.iter().enumerate() {
        match parse_algorithm(name) {
            Ok(a) if algorithms.contains(&a) => {
                p.add(format!("session.algorithms[{i}]"), "listed twice");
            }
            Ok(a) => algorithms.push(a),
            Err(e) => p.add(format!("session.algorithms[{i}]"), e),
        }
    }
    let secret = raw.secret.as_ref().and_then(|r| match r.resolve(base_dir) {
        Ok(s) => Some(s),
        Err(e) => {
            p.add("session.secret", e);
            None
        }
    });
    let public_key = raw.public_key_file.as_ref().and_then(|file| {
        let full = base_dir.join(file);
        match std::fs::read(&full) {
            Err(e) => {
                p.add(
                    "session.public_key_file",
                    format!("cannot read {}: {e}", full.display()),
                );
                None
            }
            Ok(pem) => match PublicKey::from_pem(&pem) {
                Ok(k) => Some(k),
                Err(e) => {
                    p.add(
                        "session.public_key_file",
                        format!("{}: {e}", full.display()),
                    );
                    None
                }
            },
        }
    });
    if raw.secret.is_none() && raw.public_key_file.is_none() {
        p.add(
            "session",
            "give `secret` (HS256/384/512) or `public_key_file` (RS*, PS*, ES*, EdDSA)",
        );
    }
    let login_url = raw.login_url.and_then(|url| {
        let absolute = url::Url::parse(&url.replace(LoginUrl::PLACEHOLDER, "x"))
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        let relative = url.starts_with('/') && !url.starts_with("//") && !url.contains('\\');
        if absolute || relative {
            Some(LoginUrl { template: url })
        } else {
            p.add(
                "session.login_url",
                format!("{url:?} must be an http(s) URL or a path starting with `/`"),
            );
            None
        }
    });
    for (key, value) in [("issuer", &raw.issuer), ("audience", &raw.audience)] {
        if value.as_deref() == Some("") {
            p.add(
                format!("session.{key}"),
                "must not be empty (leave it out to skip the check)",
            );
        }
    }
    let rules = ClaimRules {
        issuer: raw.issuer,
        audience: raw.audience,
        leeway_seconds: raw.leeway_seconds.unwrap_or(60),
    };
    if p.0.len() > before {
        return None;
    }
    let hmac = secret.as_ref().map(Secret::expose);
    match JwtVerifier::new(&algorithms, hmac, public_key.as_ref(), &rules) {
        Ok(jwt) => Some(SessionSettings {
            verifier: SessionVerifier::new(raw.cookie, jwt, mapping),
            login_url,
        }),
        Err(e) => {
            p.add("session.algorithms", e);
            None
        }
    }
}

/// RFC 6265 cookie-name (an RFC 7230 token).
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn identity_header_names(raw: RawIdentityHeaders, p: &mut Problems) -> IdentityHeaderNames {
    let mut seen = HashSet::new();
    let mut name = |key: &str, value: Option<String>, default: &'static str| -> HeaderName {
        let text = value.unwrap_or_else(|| default.to_string());
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(h) => {
                if !seen.insert(h.clone()) {
                    p.add(
                        format!("identity_headers.{key}"),
                        format!("{text:?} is used twice"),
                    );
                }
                if is_reserved_header(&h) {
                    p.add(
                        format!("identity_headers.{key}"),
                        format!("{text:?} is a standard header; pick a custom name"),
                    );
                }
                h
            }
            Err(_) => {
                p.add(
                    format!("identity_headers.{key}"),
                    format!("{text:?} is not a valid header name"),
                );
                HeaderName::from_static(default_lower(default))
            }
        }
    };
    IdentityHeaderNames {
        id: name("id", raw.id, "X-Handoff-User"),
        email: name("email", raw.email, "X-Handoff-Email"),
        name: name("name", raw.name, "X-Handoff-Name"),
        username: name("username", raw.username, "X-Handoff-Username"),
        groups: name("groups", raw.groups, "X-Handoff-Groups"),
    }
}

fn default_lower(default: &'static str) -> &'static str {
    match default {
        "X-Handoff-User" => "x-handoff-user",
        "X-Handoff-Email" => "x-handoff-email",
        "X-Handoff-Name" => "x-handoff-name",
        "X-Handoff-Username" => "x-handoff-username",
        _ => "x-handoff-groups",
    }
}

fn is_reserved_header(h: &HeaderName) -> bool {
    use http::header::*;
    [
        HOST,
        COOKIE,
        CONTENT_LENGTH,
        CONTENT_TYPE,
        TRANSFER_ENCODING,
        CONNECTION,
        UPGRADE,
        AUTHORIZATION,
        ACCEPT,
    ]
    .contains(h)
}

fn upstream_settings(name: &str, raw: RawUpstream, p: &mut Problems) -> Option<UpstreamSettings> {
    let key = format!("upstreams.{name}");
    let before = p.0.len();
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
    if p.0.len() > before {
        return None;
    }
    Some(UpstreamSettings {
        name: name.to_string(),
        servers,
        tls,
        sni,
        verify_cert: raw.verify_cert.unwrap_or(true),
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
        health_check,
    })
}

struct RouteContext<'a> {
    /// Name → index; `usize::MAX` for an upstream or app that exists but is itself broken.
    upstreams: &'a BTreeMap<String, usize>,
    apps: &'a BTreeMap<String, usize>,
    has_session: bool,
    endpoints_prefix: &'a str,
}

fn route_settings(
    key: String,
    raw: RawRoute,
    ctx: &RouteContext,
    p: &mut Problems,
) -> Option<RouteSettings> {
    let before = p.0.len();
    let path = parse_route_path(&raw.path)
        .map_err(|e| p.add(format!("{key}.path"), e))
        .ok();
    if let (Some(path), false) = (&path, ctx.endpoints_prefix == "/") {
        let prefix = ctx.endpoints_prefix;
        if normalize_path(path).starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes().get(prefix.len()) == Some(&b'/'))
        {
            p.add(
                format!("{key}.path"),
                format!("{path:?} is under server.endpoints_prefix ({prefix:?}), which the gateway answers itself"),
            );
        }
    }
    let host = raw.host.as_deref().and_then(|h| {
        HostPattern::parse(h)
            .map_err(|e| p.add(format!("{key}.host"), e))
            .ok()
    });
    let target = match (&raw.upstream, &raw.app) {
        (Some(_), Some(_)) => {
            p.add(key.clone(), "give either `upstream` or `app`, not both");
            None
        }
        (None, None) => {
            p.add(
                key.clone(),
                "needs `upstream = \"NAME\"` (proxy) or `app = \"NAME\"` (hand off)",
            );
            None
        }
        (None, Some(name)) => lookup(&key, "app", name, ctx.apps, p).map(RouteTarget::App),
        (Some(name), None) => {
            lookup(&key, "upstream", name, ctx.upstreams, p).map(RouteTarget::Upstream)
        }
    };
    let is_app = matches!(target, Some(RouteTarget::App(_)));
    if is_app && raw.require_session == Some(false) {
        p.add(
            format!("{key}.require_session"),
            "a handoff route always requires a session",
        );
    }
    if is_app && raw.identity_headers == Some(true) {
        p.add(
            format!("{key}.identity_headers"),
            "a handoff route sends nothing upstream; identity headers do not apply",
        );
    }
    let allow = raw
        .allow
        .map(|a| AllowRules::new(a.emails, a.domains, a.groups));
    if allow.as_ref().is_some_and(AllowRules::is_empty) {
        p.add(
            format!("{key}.allow"),
            "lists nobody: give `emails`, `domains` or `groups` (or drop `allow`)",
        );
    }
    if raw.require_session == Some(false) && allow.is_some() {
        p.add(
            format!("{key}.require_session"),
            "is false, but `allow` rules need a session",
        );
    }
    let require_session = raw.require_session.unwrap_or(false) || allow.is_some() || is_app;
    let identity_headers = raw.identity_headers.unwrap_or(false);
    if (require_session || identity_headers) && !ctx.has_session {
        p.add(
            key.clone(),
            "needs a session (require_session, allow or identity_headers), but there is no valid [session] section",
        );
    }
    if p.0.len() > before {
        return None;
    }
    let target = target?;
    if matches!(
        target,
        RouteTarget::Upstream(usize::MAX) | RouteTarget::App(usize::MAX)
    ) {
        // The upstream or app itself is broken and already reported.
        return None;
    }
    Some(RouteSettings {
        key,
        path: path?,
        host,
        target,
        require_session,
        allow,
        identity_headers,
    })
}

/// Resolves a route's `upstream`/`app` name, listing the defined ones when it is unknown.
fn lookup(
    key: &str,
    what: &str,
    name: &str,
    known: &BTreeMap<String, usize>,
    p: &mut Problems,
) -> Option<usize> {
    if let Some(&i) = known.get(name) {
        return Some(i);
    }
    let names: Vec<&str> = known.keys().map(String::as_str).collect();
    p.add(
        format!("{key}.{what}"),
        format!(
            "no {what} named {name:?} (defined: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    );
    None
}
