//! The config file: one TOML file → validated internal types, once, at load time.
//!
//! [`load`] reads the file; `validate.rs` converts each section and reports **every** problem,
//! each with its key path (`routes[2].upstream: no upstream named "intrante"`). Nothing
//! downstream re-validates: a [`Config`] that exists is a config that works (keys loaded,
//! addresses resolved, references checked).

mod apps;
mod log;
mod pages;
mod raw;
mod routes;
pub mod secret;
mod server;
mod session;
mod state;
mod tls;
mod token_apps;
mod upstreams;
mod validate;

pub use validate::redacted_url;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

use crate::apps::claims::ClaimTemplate;
use crate::identity::ClaimMapping;
use crate::identity::ClaimPath;
use crate::intranet_session::jwks::JwksSettings;
use crate::intranet_session::jwt::{ClaimRules, PublicKey};
use crate::intranet_session::token_cache::TokenCacheSettings;
use crate::intranet_session::userinfo::UserinfoSettings;
#[cfg(doc)]
use crate::intranet_session::SessionVerifier;
use crate::intranet_session::Source;
use crate::paths::EscapedSlashes;
use crate::policy::AllowRules;
use crate::routes::HostPattern;

pub use log::{LogFormat, LogSettings, PersonInLog};
pub use pages::PagesSettings;
pub use secret::{Secret, SecretRef};
pub use state::{StateSettings, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_MS};
pub use tls::CaCertificates;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub session: Option<SessionSettings>,
    pub identity_headers: IdentityHeaderNames,
    pub upstreams: Vec<UpstreamSettings>,
    pub apps: Vec<AppSettings>,
    pub routes: Vec<RouteSettings>,
    /// `[state]`: the Redis a fleet shares; `None`: every limit is per process.
    pub state: Option<StateSettings>,
    /// `[pages]`: the organisation, the way back and the help desk on the gateway's pages.
    pub pages: PagesSettings,
}

/// `[apps.NAME]`: a SaaS app people are handed on to.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSettings {
    pub name: String,
    /// What people see the app called (`display_name`); `None`: the product's name.
    pub display_name: Option<String>,
    pub kind: AppKind,
    /// `[apps.NAME.allow]`: who the app admits, on every way into it (its routes, its widget,
    /// the portal).
    pub allow: Option<AllowRules>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AppKind {
    YourGpt(YourGptSettings),
    TypingMind(TypingMindSettings),
    JwtLink(JwtLinkSettings),
    DiscourseConnect(DiscourseSettings),
}

impl AppSettings {
    /// The HMAC keys the app signs with, each with its key's name under `[apps.NAME]`.
    pub fn hmac_secrets(&self) -> Vec<(&'static str, &Secret)> {
        match &self.kind {
            AppKind::YourGpt(y) => {
                let mut keys = vec![("secret", &y.secret)];
                keys.extend(y.widget.as_ref().map(|w| ("widget.secret", &w.secret)));
                keys
            }
            AppKind::TypingMind(t) => vec![("secret", &t.secret)],
            AppKind::JwtLink(j) if j.algorithm.family() == jsonwebtoken::AlgorithmFamily::Hmac => {
                vec![("secret", &j.key)]
            }
            AppKind::JwtLink(_) => Vec::new(),
            AppKind::DiscourseConnect(d) => vec![("secret", &d.secret)],
        }
    }

    /// Claims this app needs with their JSON type kept (see [`crate::identity::ClaimMapping::extra`]).
    pub fn needed_claims(&self) -> Vec<ClaimPath> {
        match &self.kind {
            AppKind::YourGpt(_) => Vec::new(),
            AppKind::JwtLink(j) => j.claims.session_claims().cloned().collect(),
            AppKind::DiscourseConnect(d) => d.payload.session_claims().cloned().collect(),
            AppKind::TypingMind(t) => {
                let mut paths: Vec<ClaimPath> =
                    t.user_fields.iter().map(|(_, p)| p.clone()).collect();
                if let IdentifyBy::Id { claim } = &t.identify_by {
                    paths.push(claim.clone());
                }
                paths
            }
        }
    }
}

/// `kind = "jwt_link"`: any app that signs people in from a JWT it is sent (Zendesk, Metabase,
/// Canny …): the token in a link or an auto-submitted form.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtLinkSettings {
    /// Where the token is sent (its own query, e.g. Canny's `companyID`, is kept).
    pub url: url::Url,
    /// The parameter (query or form field) that carries the token.
    pub token_param: String,
    pub delivery: Delivery,
    /// Where deep links lead, and the parameter that says so (`return_to`).
    pub return_to: Option<ReturnTo>,
    pub algorithm: jsonwebtoken::Algorithm,
    /// The HMAC secret (HS*), or the PEM private key (RS*, PS*, ES*, EdDSA).
    pub key: Secret,
    /// The token header's `kid`.
    pub kid: Option<String>,
    /// The claims besides `iat`, `exp` and `jti`.
    pub claims: ClaimTemplate,
    pub token_ttl: Duration,
}

/// How a `jwt_link` token reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A 302 to the URL with the token in its query.
    Redirect,
    /// A page whose form posts the token to the URL at once (the token stays out of URLs,
    /// and so out of the app's and any proxy's access logs).
    FormPost,
}

/// `return_to_param` and `site_url` of a `jwt_link` app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnTo {
    pub param: String,
    /// The app's site: deep links are built on it and must stay on its origin.
    pub site: url::Url,
}

/// `kind = "discourse_connect"`: a Discourse forum's DiscourseConnect.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscourseSettings {
    /// The forum's base URL (its `/session/sso` and `/session/sso_login` are below it).
    pub forum_url: url::Url,
    /// `discourse connect secret` of the forum.
    pub secret: Secret,
    /// The payload's fields besides `nonce`.
    pub payload: ClaimTemplate,
}

/// `kind = "typingmind"`: TypingMind's `externalAuthCode`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypingMindSettings {
    /// Without a trailing slash.
    pub instance_url: String,
    pub secret: Secret,
    pub identify_by: IdentifyBy,
    /// Extra `user` metadata: field name → claim (for `identify_by = "user"`).
    pub user_fields: Vec<(String, ClaimPath)>,
    pub code_ttl: Duration,
    /// The longest a widget code lives: it lives as long as the person's intranet session
    /// (its token's `exp`) up to this, and never less than `code_ttl`.
    pub widget_code_ttl: Duration,
    /// Sign in widgets on proxied intranet pages.
    pub widget: bool,
    /// A script is this instance's widget when its `src` has the instance's origin and its
    /// path ends with this (default `widget.js`).
    pub widget_script_suffix: String,
    /// Pages larger than this pass untouched.
    pub widget_max_page_bytes: usize,
}

/// Which payload shape identifies the person to TypingMind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentifyBy {
    /// `{"user": {"id": <identity id>, "email", "name", ...metadata}}`: create or identify.
    User,
    /// `{"email": ...}`: an existing user by email.
    Email,
    /// `{"id": <TypingMind's own id>}` from a claim, its JSON type kept.
    Id { claim: ClaimPath },
}

/// `kind = "yourgpt"`: YourGPT Custom SSO.
#[derive(Debug, Clone, PartialEq)]
pub struct YourGptSettings {
    pub client_id: String,
    pub secret: Secret,
    /// Without a trailing slash.
    pub api_url: String,
    /// Without a trailing slash.
    pub login_url: String,
    pub partner_id: Option<String>,
    pub token_ttl: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Confirmation emails allowed per minute for this client id (YourGPT's limit is 5).
    pub emails_per_minute: u32,
    /// A person who reloads within this window after an email was sent sees the
    /// "check your email" page again instead of triggering a second email.
    pub email_resend_window: Duration,
    /// `[apps.NAME.widget]`: the chatbot widget signed in on intranet pages.
    pub widget: Option<YourGptWidgetSettings>,
}

/// `[apps.NAME.widget]` of a YourGPT app (YourGPT's "Identity Verification").
#[derive(Debug, Clone, PartialEq)]
pub struct YourGptWidgetSettings {
    /// The widget's Secret Key (not the SSO secret): `user_hash` is its HMAC-SHA256.
    pub secret: Secret,
    /// The `data-widget` values (widget ids) signed in.
    pub widget_ids: Vec<String>,
    /// The identity field sent as `ext_user_id`; `None`: none is sent.
    pub ext_user_id: Option<ContactField>,
    /// The other fields sent (`email`, `name`, `phone`).
    pub fields: Vec<ContactField>,
    /// The widget's script (`https://widget.yourgpt.ai/script.js`).
    pub script_url: String,
    /// Pages larger than this pass untouched.
    pub max_page_bytes: usize,
}

/// A field of YourGPT's `contact:data`, from the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactField {
    Id,
    Email,
    Name,
    Username,
    Phone,
}

impl ContactField {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "id" => ContactField::Id,
            "email" => ContactField::Email,
            "name" => ContactField::Name,
            "username" => ContactField::Username,
            "phone" => ContactField::Phone,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            ContactField::Id => "id",
            ContactField::Email => "email",
            ContactField::Name => "name",
            ContactField::Username => "username",
            ContactField::Phone => "phone",
        }
    }
}

/// `[server]`: listeners and the Pingora server settings they map onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: Vec<String>,
    pub tls: Option<TlsListeners>,
    pub h2c: bool,
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    /// After SIGTERM, keep accepting this long while `readyz` answers 503, so load balancers
    /// drop the instance before it stops listening.
    pub shutdown_delay: Duration,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub daemon: bool,
    pub error_log: Option<String>,
    /// `ca_file`'s certificates (and path): the roots TLS upstreams trust unless they name
    /// their own.
    pub ca: Option<CaCertificates>,
    pub upstream_keepalive_pool_size: usize,
    /// The gateway's own endpoints live under this prefix (`/_handoff`).
    pub endpoints_prefix: String,
    /// Append to a client's `X-Forwarded-For` instead of replacing it.
    pub trust_forwarded_headers: bool,
    /// Where Prometheus scrapes `/metrics` (off when unset).
    pub metrics_listen: Option<String>,
    /// Requests whose headers are larger get a 431; a head longer than this plus
    /// [`REQUEST_LINE_ALLOWANCE`] is refused while it is read, so no connection buffers more.
    pub max_request_header_bytes: usize,
    /// What routes without their own `escaped_slashes` do with `%2F`, `%5C` and `\`.
    pub escaped_slashes: EscapedSlashes,
    /// Drop every client header whose name contains `_` (CGI/WSGI read `_` as `-`).
    pub drop_underscore_headers: bool,
    /// A new connection must send its first byte, and any HTTP/1 request head all of it once
    /// started, within this long (nginx's `client_header_timeout`).
    pub client_header_timeout: Duration,
    /// How long an HTTP/1 connection may sit idle between requests; zero: no keep-alive.
    pub keepalive_timeout: Duration,
    /// How long an HTTP/2 connection may have no stream open before it is closed.
    pub h2_idle_timeout: Duration,
    /// At most this many client connections at once (`None`: no cap).
    pub max_connections: Option<usize>,
}

/// Where `server.pid_file` and `server.upgrade_sock` are by default: the private runtime
/// directory of the systemd unit (`RuntimeDirectory=handoff`), not a world-writable one.
pub const DEFAULT_PID_FILE: &str = "/run/handoff/handoff.pid";
pub const DEFAULT_UPGRADE_SOCK: &str = "/run/handoff/upgrade.sock";

/// What a request head may hold beyond `server.max_request_header_bytes`: the request line
/// (nginx reads it into a buffer of 8 KiB too).
pub const REQUEST_LINE_ALLOWANCE: usize = 8 * 1024;

/// `[server.tls]`: HTTPS listeners (HTTP/1.1 and HTTP/2 by ALPN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListeners {
    pub listen: Vec<String>,
    pub cert_file: String,
    pub key_file: String,
}

/// `[session]`: how the intranet's logged-in user is recognised — plain data; the verifier
/// (HTTP clients, caches, the key set) is built from it by [`SessionVerifier::build`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// The session cookie's name.
    pub cookie: String,
    /// Where the person is looked for, in order.
    pub sources: Vec<Source>,
    /// JWT sessions (`secret`, `public_key_file`, `[session.jwks]`), when configured.
    pub jwt: Option<JwtSettings>,
    /// `[session.userinfo]`, when configured.
    pub userinfo: Option<UserinfoSettings>,
    /// `[identity]`: how claims become the person.
    pub mapping: ClaimMapping,
    pub login_url: Option<LoginUrl>,
}

/// How JWT sessions are verified (part of `[session]`).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// `secret`: the HMAC key.
    pub hmac: Option<Secret>,
    /// `public_key_file`.
    pub public_key: Option<PublicKey>,
    /// `[session.jwks]`.
    pub jwks: Option<JwksSettings>,
    /// `issuer`, `audience`, `leeway_seconds`.
    pub rules: ClaimRules,
    /// `token_cache_seconds`, `token_cache_entries`.
    pub token_cache: TokenCacheSettings,
}

/// Where unauthenticated browsers are sent; `{return_to}` is replaced by the URL-encoded path
/// and query they asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUrl {
    template: String,
}

impl LoginUrl {
    pub const PLACEHOLDER: &'static str = "{return_to}";

    /// A template already validated (see `[session] login_url`).
    pub fn new(template: String) -> Self {
        LoginUrl { template }
    }

    pub fn render(&self, return_to: &str) -> String {
        let encoded =
            percent_encoding::utf8_percent_encode(return_to, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        self.template.replace(Self::PLACEHOLDER, &encoded)
    }
}

/// `[identity_headers]`: the names of the headers that carry the person to the upstream. Every
/// one of them is removed from every client request, whether or not Handoff sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityHeaderNames {
    pub id: HeaderName,
    pub email: HeaderName,
    pub name: HeaderName,
    pub username: HeaderName,
    pub groups: HeaderName,
    /// Each name as written in the config (default `X-Handoff-User` …), in [`Self::all`]'s
    /// order: how it is spelled on the wire to an HTTP/1 upstream.
    pub spellings: [bytes::Bytes; 5],
}

impl IdentityHeaderNames {
    pub fn all(&self) -> [&HeaderName; 5] {
        [
            &self.id,
            &self.email,
            &self.name,
            &self.username,
            &self.groups,
        ]
    }
}

/// `[upstreams.NAME]`: a group of servers, load-balanced round-robin and health-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub name: String,
    /// Resolved at load time.
    pub servers: Vec<SocketAddr>,
    pub tls: bool,
    pub sni: String,
    pub verify_cert: bool,
    /// Check that the certificate names `sni` (with `verify_cert`).
    pub verify_hostname: bool,
    /// The roots this upstream trusts (its `ca_file`, else `[server] ca_file`); `None`: the
    /// system's. Requests and health checks alike.
    pub ca: Option<CaCertificates>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub connection_reuse: ConnectionReuse,
    pub health_check: HealthCheckSettings,
}

/// `connection_reuse`: which requests may reuse a kept-alive connection to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionReuse {
    /// Only requests with the same credentials (their `Cookie` and `Authorization` headers);
    /// requests with neither share one pool. Bytes an upstream writes past the end of an
    /// answer can then only reach the same person.
    SameCredentials,
    /// Any request (nginx's behaviour): fewer connections.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSettings {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub consecutive_failures: usize,
    pub consecutive_successes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    None,
    Tcp,
    Http { path: String, host: String },
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSettings {
    /// `routes[N]`, for logs and errors.
    pub key: String,
    pub path: String,
    pub host: Option<HostPattern>,
    pub target: RouteTarget,
    pub require_session: bool,
    pub allow: Option<AllowRules>,
    pub identity_headers: bool,
    /// `%2F`, `%5C` and `\` in this route's paths (`server.escaped_slashes` when unset).
    pub escaped_slashes: EscapedSlashes,
    /// Whether this route's rules also hold for paths a common upstream reads as under it
    /// (`path_readings`, see [`crate::routes`]).
    pub path_readings: PathReadings,
}

/// `path_readings`: which readings of a path bring it under a route's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathReadings {
    /// Every reading a common upstream applies (the default): whole segments, a plain string
    /// prefix (nginx `location /admin`), a `.format` suffix removed (Rails, Spring), trailing
    /// dots and spaces dropped and case folded (IIS).
    #[default]
    All,
    /// Whole segments only, for an upstream known to read paths that way.
    Segments,
}

/// Where a route's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// Proxied to [`Config::upstreams`]`[i]`.
    Upstream(usize),
    /// Handed on to [`Config::apps`]`[i]`.
    App(usize),
}

impl RouteSettings {
    /// Whether other readings of a path bring it under this route's rules: a proxy route that
    /// requires a session (with `allow` or not), unless `path_readings = "segments"`. A handoff
    /// route is the gateway's own (no upstream serves it), so no reading lands there.
    pub fn guards_other_readings(&self) -> bool {
        matches!(self.target, RouteTarget::Upstream(_))
            && self.require_session
            && self.path_readings == PathReadings::All
    }

    /// How metrics and the access log name the route: its path, after its host if it has one
    /// (`/ai/chat`, `*.example.com/ai`).
    pub fn label(&self) -> String {
        match &self.host {
            Some(host) => format!("{host}{}", self.path),
            None => self.path.clone(),
        }
    }
}

impl RouteTarget {
    /// A handoff route.
    pub fn is_app(&self) -> bool {
        matches!(self, RouteTarget::App(_))
    }
}

/// One problem in the config file, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The key path the problem is about (`routes[2].app`); empty for one that belongs to no
    /// key (a file that cannot be read).
    pub key: String,
    /// What is wrong, and what would be right. Never a secret's value.
    pub message: String,
    /// For a problem of a route (`routes[3]…`), that route's `path`: shown after the index.
    pub route_path: Option<String>,
}

impl ConfigError {
    /// A problem with `key` (empty: of the file as a whole).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
            route_path: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            return f.write_str(&self.message);
        }
        match (&self.route_path, self.key.split_once(']')) {
            // `routes[3] (/ai/chat).app: …`
            (Some(path), Some((index, rest))) => {
                write!(
                    f,
                    "{index}] ({}){rest}: {}",
                    path.escape_debug(),
                    self.message
                )
            }
            _ => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in a config file (or settings given in code), each with its key.
/// `Display` lists them one per line after the source's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ConfigErrors {
    /// The file's path, or `config` for text and settings given in code.
    pub source_name: String,
    /// The problems, in the order of the file.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One problem that belongs to no key (a file that cannot be read, a listener's TLS files,
    /// settings that cannot be written as TOML).
    pub fn one(message: impl Into<String>) -> Self {
        ConfigErrors {
            source_name: "config".to_string(),
            errors: vec![ConfigError::new("", message)],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Reads and validates a config file. Relative paths in it (secret files, key files) are taken
/// from the file's own folder.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source_name: path.display().to_string(),
        errors: vec![ConfigError::new(
            "",
            format!("cannot read the config file: {e}"),
        )],
    })?;
    let base: PathBuf = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    from_toml_str(&text, &base).map_err(|mut e| {
        e.source_name = path.display().to_string();
        e
    })
}

/// Validates config text. Relative paths are taken from `base_dir`.
pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    validate::validate(text, base_dir).map_err(|errors| ConfigErrors {
        source_name: "config".to_string(),
        errors,
    })
}

#[cfg(test)]
mod tests;
