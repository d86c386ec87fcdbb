//! `[session]`, `[identity]` and `[identity_headers]` → the session verifier and header names.

use std::collections::HashSet;
use std::path::Path;

use http::HeaderName;

use super::raw::*;
use super::validate::Problems;
use super::*;
use crate::identity::{ClaimMapping, ClaimPath};
use crate::session::jwt::{parse_algorithm, ClaimRules, JwtVerifier, PublicKey};
use crate::session::SessionVerifier;

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
    let secret = raw
        .secret
        .as_ref()
        .and_then(|r| p.secret("session.secret", r, base_dir));
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
    if p.error_count() > before {
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
    IdentityHeaderNames {
        id: name("id", raw.id, "x-handoff-user"),
        email: name("email", raw.email, "x-handoff-email"),
        name: name("name", raw.name, "x-handoff-name"),
        username: name("username", raw.username, "x-handoff-username"),
        groups: name("groups", raw.groups, "x-handoff-groups"),
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
