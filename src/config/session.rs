//! `[session]`, `[identity]` and `[identity_headers]` → the session verifier and header names.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use http::HeaderName;

use super::raw::*;
use super::validate::Problems;
use super::*;
use crate::identity::{ClaimMapping, ClaimPath};
use crate::intranet_session::jwks::JwksSettings;
use crate::intranet_session::jwt::{parse_algorithm, ClaimRules, PublicKey};
use crate::intranet_session::token_cache::TokenCacheSettings;
use crate::intranet_session::userinfo::{OnError, UserinfoSettings};
use crate::intranet_session::Source;

pub(super) fn claim_mapping(raw: RawIdentity) -> ClaimMapping {
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

pub(super) fn session_settings(
    raw: RawSession,
    mapping: ClaimMapping,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<SessionSettings> {
    let before = p.error_count();
    if !is_cookie_name(&raw.cookie) {
        p.add(
            "session.cookie",
            format!("{:?} is not a valid cookie name", raw.cookie),
        );
    }
    let uses_jwt = raw.secret.is_some() || raw.public_key_file.is_some() || raw.jwks.is_some();
    if !uses_jwt && raw.userinfo.is_none() {
        p.add(
            "session",
            "give `secret` (HS256/384/512), `public_key_file` or [session.jwks] (RS*, PS*, ES*, \
             EdDSA) for JWT sessions, or [session.userinfo] for opaque session cookies",
        );
    }
    let sources = sources(raw.sources.as_deref(), uses_jwt, raw.userinfo.is_some(), p);
    let algorithms = if uses_jwt {
        algorithms(&raw.algorithms, p)
    } else {
        Vec::new()
    };
    let secret = raw
        .secret
        .as_ref()
        .and_then(|r| p.secret("session.secret", r, base_dir));
    let public_key = raw
        .public_key_file
        .as_ref()
        .and_then(|file| public_key(&base_dir.join(file), p));
    let jwks = raw.jwks.and_then(|j| jwks_settings(j, base_dir, p));
    let userinfo = raw
        .userinfo
        .and_then(|u| userinfo_settings(u, &raw.cookie, base_dir, p));
    let login_url = raw.login_url.and_then(|url| {
        let absolute = url::Url::parse(&url.replace(LoginUrl::PLACEHOLDER, "x"))
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        let relative = crate::routes::is_local_path(&url);
        // It becomes a `Location` header: nothing a header cannot carry.
        let header_safe = !url.chars().any(|c| c.is_control() || c == ' ');
        if (absolute || relative) && header_safe {
            Some(LoginUrl::new(url))
        } else {
            p.add(
                "session.login_url",
                format!(
                    "{url:?} must be an http(s) URL or a path starting with `/`, with no \
                     spaces or control characters"
                ),
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
    let token_cache = TokenCacheSettings {
        ttl: Duration::from_secs(raw.token_cache_seconds.unwrap_or(60)),
        max_entries: raw.token_cache_entries.unwrap_or(10_000),
    };
    if token_cache.max_entries < 10 {
        p.add("session.token_cache_entries", "must be at least 10");
    }
    let rules = ClaimRules {
        issuer: raw.issuer,
        audience: raw.audience,
        leeway_seconds: raw.leeway_seconds.unwrap_or(60),
    };
    if p.error_count() > before {
        return None;
    }
    let jwt = if uses_jwt {
        let checked = crate::intranet_session::jwt::check_keys(
            &algorithms,
            secret.is_some(),
            public_key.as_ref().map(|k| k.family()),
            jwks.is_some(),
        );
        if let Err(e) = checked {
            p.add("session.algorithms", e);
            return None;
        }
        Some(JwtSettings {
            algorithms,
            hmac: secret,
            public_key,
            jwks,
            rules,
            token_cache,
        })
    } else {
        None
    };
    Some(SessionSettings {
        cookie: raw.cookie,
        sources,
        jwt,
        userinfo,
        mapping,
        login_url,
    })
}

/// `[session] sources`, or the default: the JWT sources when JWT keys are configured, then
/// userinfo when it is.
fn sources(
    listed: Option<&[String]>,
    uses_jwt: bool,
    uses_userinfo: bool,
    p: &mut Problems,
) -> Vec<Source> {
    let available = |s: Source| match s {
        Source::Cookie | Source::Bearer => uses_jwt,
        Source::Userinfo => uses_userinfo,
    };
    let Some(listed) = listed else {
        return Source::ALL.into_iter().filter(|&s| available(s)).collect();
    };
    if listed.is_empty() {
        p.add(
            "session.sources",
            "list at least one of \"cookie\", \"bearer\", \"userinfo\"",
        );
    }
    let mut sources = Vec::new();
    for (i, name) in listed.iter().enumerate() {
        let key = format!("session.sources[{i}]");
        match Source::ALL.into_iter().find(|s| s.label() == name) {
            None => p.add(
                key,
                format!("unknown source {name:?}; use \"cookie\", \"bearer\" or \"userinfo\""),
            ),
            Some(s) if sources.contains(&s) => p.add(key, "listed twice"),
            Some(s) if !available(s) => p.add(
                key,
                match s {
                    Source::Userinfo => "\"userinfo\" needs [session.userinfo]",
                    _ => "JWT sources need `secret`, `public_key_file` or [session.jwks]",
                },
            ),
            Some(s) => sources.push(s),
        }
    }
    sources
}

fn algorithms(names: &[String], p: &mut Problems) -> Vec<Algorithm> {
    if names.is_empty() {
        p.add(
            "session.algorithms",
            "list at least one algorithm, e.g. [\"HS256\"]",
        );
    }
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match parse_algorithm(name) {
            Ok(a) if algorithms.contains(&a) => {
                p.add(format!("session.algorithms[{i}]"), "listed twice");
            }
            Ok(a) => algorithms.push(a),
            Err(e) => p.add(format!("session.algorithms[{i}]"), e),
        }
    }
    algorithms
}

fn public_key(full: &Path, p: &mut Problems) -> Option<PublicKey> {
    let key = "session.public_key_file";
    match std::fs::read(full) {
        Err(e) => {
            p.add(key, format!("cannot read {}: {e}", full.display()));
            None
        }
        Ok(pem) => PublicKey::from_pem(&pem)
            .map_err(|e| p.add(key, format!("{}: {e}", full.display())))
            .ok(),
    }
}

fn jwks_settings(raw: RawJwks, base_dir: &Path, p: &mut Problems) -> Option<JwksSettings> {
    let url = p.url_setting("session.jwks.url", &raw.url, base_dir);
    let min_cache = p.positive_seconds("session.jwks.min_cache_seconds", raw.min_cache_seconds, 60);
    let max_cache = p.positive_seconds(
        "session.jwks.max_cache_seconds",
        raw.max_cache_seconds,
        86_400,
    );
    let cache = p.positive_seconds("session.jwks.cache_seconds", raw.cache_seconds, 600);
    if min_cache > max_cache {
        p.add(
            "session.jwks.min_cache_seconds",
            "must not be more than max_cache_seconds",
        );
    }
    let settings = JwksSettings {
        cache,
        min_cache,
        max_cache,
        unknown_kid_cooldown: p.positive_seconds(
            "session.jwks.unknown_kid_cooldown_seconds",
            raw.unknown_kid_cooldown_seconds,
            30,
        ),
        timeout: p.positive_ms("session.jwks.timeout_ms", raw.timeout_ms, 2000),
        startup_wait: Duration::from_millis(raw.startup_wait_ms.unwrap_or(5000)),
        url: url?,
    };
    Some(settings)
}

fn userinfo_settings(
    raw: RawUserinfo,
    session_cookie: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<UserinfoSettings> {
    let url = p.url_setting("session.userinfo.url", &raw.url, base_dir);
    let cookies = raw
        .cookies
        .unwrap_or_else(|| vec![session_cookie.to_string()]);
    if cookies.is_empty() {
        p.add(
            "session.userinfo.cookies",
            "list at least one cookie (leave the key out to send the session cookie)",
        );
    }
    for (i, c) in cookies.iter().enumerate() {
        if !is_cookie_name(c) {
            p.add(
                format!("session.userinfo.cookies[{i}]"),
                format!("{c:?} is not a valid cookie name"),
            );
        }
    }
    let on_error = match raw.on_error.as_deref() {
        None | Some("closed") => OnError::Closed,
        Some("open_with_stale") => OnError::OpenWithStale,
        Some(other) => {
            p.add(
                "session.userinfo.on_error",
                format!("{other:?} is not a failure mode; use \"closed\" or \"open_with_stale\""),
            );
            OnError::Closed
        }
    };
    let max_entries = raw.max_entries.unwrap_or(10_000);
    if max_entries < 10 {
        p.add("session.userinfo.max_entries", "must be at least 10");
    }
    let max_negative_entries = raw.max_negative_entries.unwrap_or(1_000);
    if max_negative_entries < 10 {
        p.add(
            "session.userinfo.max_negative_entries",
            "must be at least 10",
        );
    }
    let max_new_lookups = raw.max_new_lookups.unwrap_or(100);
    if max_new_lookups == 0 {
        p.add("session.userinfo.max_new_lookups", "must be at least 1");
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(64 * 1024);
    if max_body_bytes == 0 {
        p.add("session.userinfo.max_body_bytes", "must be more than 0");
    }
    let settings = UserinfoSettings {
        cookies,
        timeout: p.positive_ms("session.userinfo.timeout_ms", raw.timeout_ms, 2000),
        cache: p.positive_seconds("session.userinfo.cache_seconds", raw.cache_seconds, 60),
        negative_cache: Duration::from_secs(raw.negative_cache_seconds.unwrap_or(5)),
        stale_while_revalidate: Duration::from_secs(
            raw.stale_while_revalidate_seconds.unwrap_or(30),
        ),
        on_error,
        max_stale: Duration::from_secs(raw.max_stale_seconds.unwrap_or(300)),
        max_entries,
        max_negative_entries,
        max_new_lookups,
        max_body_bytes,
        url: url?,
    };
    Some(settings)
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_cookie_name_byte)
}

/// RFC 6265 cookie-name (an RFC 7230 token).
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(super) fn identity_header_names(
    raw: RawIdentityHeaders,
    p: &mut Problems,
) -> IdentityHeaderNames {
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
                HeaderName::from_static(default)
            }
        }
    };
    let spelled = |raw: &Option<String>, default: &'static str| match raw {
        Some(text) => bytes::Bytes::from(text.clone()),
        None => bytes::Bytes::from_static(default.as_bytes()),
    };
    let spellings = [
        spelled(&raw.id, "X-Handoff-User"),
        spelled(&raw.email, "X-Handoff-Email"),
        spelled(&raw.name, "X-Handoff-Name"),
        spelled(&raw.username, "X-Handoff-Username"),
        spelled(&raw.groups, "X-Handoff-Groups"),
    ];
    IdentityHeaderNames {
        id: name("id", raw.id, "x-handoff-user"),
        email: name("email", raw.email, "x-handoff-email"),
        name: name("name", raw.name, "x-handoff-name"),
        username: name("username", raw.username, "x-handoff-username"),
        groups: name("groups", raw.groups, "x-handoff-groups"),
        spellings,
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
