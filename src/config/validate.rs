//! Raw TOML → validated [`Config`], collecting every problem with its key path.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::raw::*;
use super::routes::{route_settings, RouteContext};
use super::server::server_settings;
use super::session::{claim_mapping, identity_header_names, session_settings};
use super::upstreams::upstream_settings;
use super::*;

/// Collects problems as the sections are converted.
pub(super) struct Problems(Vec<ConfigError>);

impl Problems {
    /// Reads a secret, reporting a missing or unreadable one under `key`.
    pub(super) fn secret(&mut self, key: &str, r: &SecretRef, base_dir: &Path) -> Option<Secret> {
        r.resolve(base_dir).map_err(|e| self.add(key, e)).ok()
    }

    /// An `allow` table (of an app or a route): who may pass. One that lists nobody is a mistake.
    pub(super) fn allow(&mut self, key: &str, raw: Option<RawAllow>) -> Option<AllowRules> {
        let rules = raw.map(|a| AllowRules::new(a.emails, a.domains, a.groups))?;
        if rules.is_empty() {
            self.add(
                format!("{key}.allow"),
                "lists nobody: give `emails`, `domains` or `groups` (or drop `allow`)",
            );
        }
        Some(rules)
    }

    /// An `escaped_slashes` value; `None` when unset or wrong (and then reported under `key`).
    pub(super) fn escaped_slashes(
        &mut self,
        key: &str,
        raw: Option<&str>,
    ) -> Option<EscapedSlashes> {
        EscapedSlashes::parse(raw?)
            .map_err(|e| self.add(key, e))
            .ok()
    }

    /// A duration in milliseconds that must be more than zero (`default` when absent).
    pub(super) fn positive_ms(&mut self, key: &str, value: Option<u64>, default: u64) -> Duration {
        let v = value.unwrap_or(default);
        if v == 0 {
            self.add(key, "must be more than 0");
        }
        Duration::from_millis(v)
    }

    /// A duration in seconds that must be more than zero (`default` when absent).
    pub(super) fn positive_seconds(
        &mut self,
        key: &str,
        value: Option<u64>,
        default: u64,
    ) -> Duration {
        let v = value.unwrap_or(default);
        if v == 0 {
            self.add(key, "must be more than 0");
        }
        Duration::from_secs(v)
    }

    /// An http(s) URL written plainly or as a secret reference (see [`Problems::url_of_kind`]).
    pub(super) fn url_setting(
        &mut self,
        key: &str,
        raw: &RawUrl,
        base_dir: &Path,
    ) -> Option<url::Url> {
        self.url_of_kind(key, raw, base_dir, UrlKind::Http)
    }

    /// A URL of `kind` written plainly or as a secret reference. A plain one that carries a
    /// credential is accepted with a warning (it never reaches a log or a metric label, see
    /// [`redacted_url`], but it sits in the config file): the warning says where it belongs.
    pub(super) fn url_of_kind(
        &mut self,
        key: &str,
        raw: &RawUrl,
        base_dir: &Path,
        kind: UrlKind,
    ) -> Option<url::Url> {
        match raw {
            RawUrl::Plain(text) => {
                let url = kind.parse(text);
                if url.is_none() {
                    self.add(
                        key,
                        format!("{} must be {}", shown_url(text), kind.expected()),
                    );
                }
                let url = url?;
                if let Some(what) = credential_in(&url) {
                    tracing::warn!(
                        target: "handoff::config",
                        "{key} carries a credential ({what}) in the config file; it is kept out \
                         of logs and metrics, but a secret belongs in a secret reference: \
                         {key} = {{ env = \"NAME\" }} or {{ file = \"PATH\" }} holding the whole URL"
                    );
                }
                Some(url)
            }
            RawUrl::Secret(reference) => {
                let secret = match reference.resolve(base_dir) {
                    Ok(secret) => secret,
                    Err(e) => {
                        self.add(key, e);
                        return None;
                    }
                };
                // The value is never echoed: it is secret.
                let url = std::str::from_utf8(secret.expose())
                    .ok()
                    .and_then(|text| kind.parse(text.trim()));
                if url.is_none() {
                    self.add(
                        key,
                        format!("{reference:?} does not hold {}", kind.expected()),
                    );
                }
                url
            }
        }
    }

    /// Text shown as it is (escaped) on pages: 1 to `max` printable characters once trimmed.
    pub(super) fn page_text(
        &mut self,
        key: &str,
        raw: Option<String>,
        max: usize,
    ) -> Option<String> {
        let text = raw?;
        let trimmed = text.trim();
        // No control characters, and none of the marks that reverse or isolate the text
        // around them (a name that reads differently from what it is).
        let bidi = |c: char| matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if trimmed.is_empty()
            || trimmed.chars().any(|c| c.is_control() || bidi(c))
            || trimmed.chars().count() > max
        {
            self.add(key, format!("must be 1 to {max} printable characters"));
            return None;
        }
        Some(trimmed.to_string())
    }

    pub(super) fn error_count(&self) -> usize {
        self.0.len()
    }

    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let problem = ConfigError::new(key, message);
        // One problem, one line, however many ways lead to it.
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
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

/// A URL as written, quoted for a problem's message — a URL that does not parse may still hold
/// a password, so anything before its last `@` is left out.
pub(super) fn shown_url(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((_, host)) => format!("\"…@{host}\""),
        None => format!("{text:?}"),
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
    // A [session] that is written but wrong is reported once, under its own keys: routes that
    // need a session are not each reported again for it.
    let session_written = table.contains_key("session");
    let mut take = |k: &str| table.remove(k);

    let server = take("server")
        .and_then(|v| p.parse::<RawServer>("server", v))
        .unwrap_or_default();
    let server = server_settings(server, base_dir, &mut p);

    let log = take("log")
        .and_then(|v| p.parse::<RawLog>("log", v))
        .unwrap_or_default();
    let log = super::log::log_settings(log, base_dir, &mut p);

    let pages = take("pages")
        .and_then(|v| p.parse::<super::pages::RawPages>("pages", v))
        .unwrap_or_default();
    let pages = super::pages::pages_settings(pages, &mut p);

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
    // A token an app is handed, or shows in a URL, must never open the intranet too.
    if let Some(session_key) = session.as_ref().and_then(|s| s.jwt.as_ref()?.hmac.as_ref()) {
        for app in &apps {
            for (name, key) in app.hmac_secrets() {
                if key == session_key {
                    p.add(
                        format!("apps.{}.{name}", app.name),
                        "is the [session] secret: a token minted for the app would also be a \
                         valid intranet session; give the app the secret its vendor gave you",
                    );
                }
            }
        }
    }

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
            if let Some(u) = upstream_settings(&name, raw, server.ca.as_ref(), base_dir, &mut p) {
                upstreams.push(u);
                continue;
            }
        }
        upstream_names.insert(name, usize::MAX);
    }

    let state = take("state")
        .and_then(|v| p.parse::<super::state::RawState>("state", v))
        .and_then(|raw| super::state::state_settings(raw, base_dir, &mut p));

    let raw_routes: Vec<toml::Value> = take("routes")
        .and_then(|v| p.parse("routes", v))
        .unwrap_or_default();
    if raw_routes.is_empty() {
        p.add("routes", "at least one [[routes]] entry is needed");
    }
    let mut routes = Vec::new();
    let mut route_paths = Vec::new();
    let mut seen = HashSet::new();
    for (i, value) in raw_routes.into_iter().enumerate() {
        route_paths.push(
            value
                .get("path")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        );
        let key = format!("routes[{i}]");
        let Some(raw) = p.parse::<RawRoute>(&key, value) else {
            continue;
        };
        let ctx = RouteContext {
            upstreams: &upstream_names,
            apps: &app_names,
            has_session: session_written,
            endpoints_prefix: &server.endpoints_prefix,
            escaped_slashes: server.escaped_slashes,
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

    // A route's problems name it by its path too: the operator finds it without counting.
    for problem in &mut p.0 {
        problem.route_path =
            route_index(&problem.key).and_then(|i| route_paths.get(i).cloned().flatten());
    }

    if p.0.is_empty() {
        Ok(Config {
            server,
            log,
            session,
            identity_headers,
            upstreams,
            apps,
            routes,
            state,
            pages,
        })
    } else {
        Err(p.0)
    }
}

/// `Some(3)` for `routes[3]` and `routes[3].app`.
fn route_index(key: &str) -> Option<usize> {
    let (index, rest) = key.strip_prefix("routes[")?.split_once(']')?;
    (rest.is_empty() || rest.starts_with('.'))
        .then(|| index.parse().ok())
        .flatten()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// An absolute http(s) URL with a host and no fragment.
fn parse_http_url(raw: &str) -> Option<url::Url> {
    url::Url::parse(raw).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.fragment().is_none()
    })
}

/// What a URL setting holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum UrlKind {
    /// `http(s)://host/...` (see [`parse_http_url`]).
    Http,
    /// `redis://[:password@]host[:port][/db]`: a plain TCP Redis (the database a number).
    Redis,
}

impl UrlKind {
    fn parse(self, raw: &str) -> Option<url::Url> {
        match self {
            UrlKind::Http => parse_http_url(raw),
            UrlKind::Redis => url::Url::parse(raw).ok().filter(|u| {
                let db = u.path().trim_start_matches('/');
                u.scheme() == "redis"
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && (db.is_empty() || db.parse::<u16>().is_ok())
            }),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            UrlKind::Http => "an http(s) URL like \"https://sso.example.com/path\"",
            UrlKind::Redis => "a Redis URL like \"redis://:password@10.0.0.5:6379/0\" (redis://, a host, an optional database number)",
        }
    }
}

/// What in `url` looks like a credential: a user name or password, or a query parameter
/// named like a key (`api_key`, `token`, `secret`, `password`, `sig`, …).
fn credential_in(url: &url::Url) -> Option<&'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        return Some("user:password@");
    }
    const NAMES: [&str; 7] = [
        "key",
        "token",
        "secret",
        "pass",
        "auth",
        "sig",
        "credential",
    ];
    url.query_pairs()
        .any(|(name, _)| {
            let name = name.to_ascii_lowercase();
            NAMES.iter().any(|n| name.contains(n))
        })
        .then_some("a key in the query string")
}

/// A URL as logs and metric labels show it: `scheme://host[:port]/path` — never a user name,
/// a password, a query or a fragment.
pub fn redacted_url(url: &url::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?"));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}
