//! The config file's format: serde structs that mirror the TOML one to one.
//!
//! Nothing here is trusted: `validate.rs` turns these into the internal types once, at load
//! time, and reports every problem with its key path. Every section is deserialized on its own
//! (and every route on its own) so that one typo does not hide the next one.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::secret::SecretRef;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Vec<String>>,
    pub tls: Option<RawTls>,
    pub h2c: Option<bool>,
    pub threads: Option<usize>,
    pub work_stealing: Option<bool>,
    pub grace_period_seconds: Option<u64>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    pub shutdown_delay_seconds: Option<u64>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub daemon: Option<bool>,
    pub error_log: Option<String>,
    pub ca_file: Option<String>,
    pub upstream_keepalive_pool_size: Option<usize>,
    pub endpoints_prefix: Option<String>,
    pub trust_forwarded_headers: Option<bool>,
    pub metrics_listen: Option<String>,
    pub max_request_header_bytes: Option<usize>,
    pub escaped_slashes: Option<String>,
    pub drop_underscore_headers: Option<bool>,
    pub client_header_timeout_seconds: Option<u64>,
    pub keepalive_timeout_seconds: Option<u64>,
    pub h2_idle_timeout_seconds: Option<u64>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub file: Option<String>,
    pub access: Option<bool>,
    pub person: Option<String>,
    pub person_hash_key: Option<SecretRef>,
    pub query: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Vec<String>,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub cookie: String,
    pub sources: Option<Vec<String>>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    pub secret: Option<SecretRef>,
    pub public_key_file: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: Option<u64>,
    pub token_cache_seconds: Option<u64>,
    pub token_cache_entries: Option<usize>,
    pub login_url: Option<String>,
    pub jwks: Option<RawJwks>,
    pub userinfo: Option<RawUserinfo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    pub url: RawUrl,
    pub cache_seconds: Option<u64>,
    pub min_cache_seconds: Option<u64>,
    pub max_cache_seconds: Option<u64>,
    pub unknown_kid_cooldown_seconds: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub startup_wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserinfo {
    pub url: RawUrl,
    pub cookies: Option<Vec<String>>,
    pub timeout_ms: Option<u64>,
    pub cache_seconds: Option<u64>,
    pub negative_cache_seconds: Option<u64>,
    pub stale_while_revalidate_seconds: Option<u64>,
    pub on_error: Option<String>,
    pub max_stale_seconds: Option<u64>,
    pub max_entries: Option<usize>,
    pub max_negative_entries: Option<usize>,
    pub max_new_lookups: Option<usize>,
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub id: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub groups: Option<String>,
    pub profile_pic: Option<String>,
    pub phone_no: Option<String>,
    pub phone_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityHeaders {
    pub id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub groups: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub servers: Vec<String>,
    pub tls: Option<bool>,
    pub sni: Option<String>,
    pub verify_cert: Option<bool>,
    pub verify_hostname: Option<bool>,
    pub ca_file: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub read_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub connection_reuse: Option<String>,
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub consecutive_failures: Option<usize>,
    pub consecutive_successes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    pub host: Option<String>,
    pub upstream: Option<String>,
    pub app: Option<String>,
    pub require_session: Option<bool>,
    pub allow: Option<RawAllow>,
    pub identity_headers: Option<bool>,
    pub escaped_slashes: Option<String>,
    pub path_readings: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The top-level tables, each kept as TOML until it is deserialized on its own.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "server",
    "log",
    "session",
    "identity",
    "identity_headers",
    "upstreams",
    "apps",
    "routes",
    "state",
    "pages",
];

/// `[apps.NAME]` with `kind = "yourgpt"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawYourGpt {
    /// Already dispatched on; present so `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    pub kind: String,
    pub client_id: RawPlainOrSecret,
    pub secret: SecretRef,
    pub api_url: Option<String>,
    pub login_url: Option<String>,
    pub partner_id: Option<String>,
    pub token_ttl_seconds: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub emails_per_minute: Option<u32>,
    pub email_resend_window_seconds: Option<u64>,
    pub allow: Option<RawAllow>,
    pub widget: Option<RawYourGptWidget>,
    pub display_name: Option<String>,
}

/// `[apps.NAME.widget]` of a YourGPT app: the chatbot widget signed in on intranet pages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawYourGptWidget {
    pub secret: SecretRef,
    pub widget_ids: Vec<String>,
    pub ext_user_id: Option<String>,
    pub fields: Option<Vec<String>>,
    pub script_url: Option<String>,
    pub max_page_bytes: Option<u64>,
}

/// A value that is not secret but may still come from the environment or a file
/// (`client_id = "abc"` or `client_id = { env = "YOURGPT_CLIENT_ID" }`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPlainOrSecret {
    Plain(String),
    Reference(SecretRef),
}

/// Upstreams keyed by name, in name order (so error messages are stable).
pub type RawUpstreams = BTreeMap<String, toml::Value>;

/// `[apps.NAME]` with `kind = "typingmind"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTypingMind {
    /// Already dispatched on; present so `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    pub kind: String,
    pub instance_url: String,
    pub secret: SecretRef,
    pub identify_by: Option<String>,
    pub id_claim: Option<String>,
    pub user_fields: Option<BTreeMap<String, String>>,
    pub code_ttl_seconds: Option<u64>,
    pub widget_code_ttl_seconds: Option<u64>,
    pub display_name: Option<String>,
    pub widget: Option<bool>,
    pub widget_script_suffix: Option<String>,
    pub widget_max_page_bytes: Option<u64>,
    pub allow: Option<RawAllow>,
}

/// A URL written plainly (`"https://sso.example.com/userinfo"`) or, when it carries a
/// credential (`user:password@`, `?api_key=`), as a secret reference (`{ env = "NAME" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawUrl {
    Plain(String),
    Secret(SecretRef),
}

impl<'de> Deserialize<'de> for RawUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UrlVisitor;
        impl<'de> serde::de::Visitor<'de> for UrlVisitor {
            type Value = RawUrl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"a URL ("https://…"), or a secret reference: { env = "NAME" } or { file = "PATH" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawUrl, E> {
                Ok(RawUrl::Plain(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawUrl, A::Error> {
                SecretRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawUrl::Secret)
            }
        }
        deserializer.deserialize_any(UrlVisitor)
    }
}

/// `[apps.NAME]` with `kind = "jwt_link"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtLink {
    /// Already dispatched on; present so `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    pub kind: String,
    pub url: String,
    pub token_param: Option<String>,
    pub delivery: Option<String>,
    pub return_to_param: Option<String>,
    pub site_url: Option<String>,
    pub algorithm: Option<String>,
    pub secret: Option<SecretRef>,
    pub private_key: Option<SecretRef>,
    pub kid: Option<String>,
    pub token_ttl_seconds: Option<u64>,
    /// Claim name → source, each read on its own (see `apps::claims`).
    pub claims: Option<BTreeMap<String, toml::Value>>,
    pub display_name: Option<String>,
    pub allow: Option<RawAllow>,
}

/// `[apps.NAME]` with `kind = "discourse_connect"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscourse {
    /// Already dispatched on; present so `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    pub kind: String,
    pub forum_url: String,
    pub secret: SecretRef,
    /// Payload field → source, as `claims` of a `jwt_link` app.
    pub payload: Option<BTreeMap<String, toml::Value>>,
    pub display_name: Option<String>,
    pub allow: Option<RawAllow>,
}
