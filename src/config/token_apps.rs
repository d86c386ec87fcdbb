//! `kind = "jwt_link"` and `kind = "discourse_connect"` → their settings: any SaaS app that
//! signs people in from a token the company signs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::raw::{RawDiscourse, RawJwtLink};
use super::validate::Problems;
use super::{Delivery, DiscourseSettings, JwtLinkSettings, ReturnTo, Secret};
use crate::apps::claims::{ClaimRule, ClaimSource, ClaimTemplate, PersonField};
use crate::identity::ClaimPath;

/// Claims the gateway sets on every token.
const ALWAYS_SET: &[&str] = &["iat", "exp", "jti"];

pub(super) fn jwt_link(
    key: &str,
    mut raw: RawJwtLink,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<JwtLinkSettings> {
    let before = p.error_count();
    let url = app_url(&format!("{key}.url"), &raw.url, true, p);
    let param = |k: &str, raw: Option<String>, default: Option<&str>, p: &mut Problems| {
        let value = raw.or_else(|| default.map(str::to_string))?;
        let fits = |c: char| c.is_ascii_alphanumeric() || "-._~[]".contains(c);
        if value.is_empty() || !value.chars().all(fits) {
            p.add(
                format!("{key}.{k}"),
                format!("{value:?} is not a parameter name (letters, digits and - . _ ~ [ ] only)"),
            );
        }
        Some(value)
    };
    let token_param =
        param("token_param", raw.token_param.take(), Some("jwt"), p).unwrap_or_default();
    let return_param = param("return_to_param", raw.return_to_param.take(), None, p);
    if return_param.as_deref() == Some(token_param.as_str()) {
        p.add(
            format!("{key}.return_to_param"),
            "must differ from token_param",
        );
    }
    if let Some(url) = &url {
        for taken in [Some(&token_param), return_param.as_ref()]
            .into_iter()
            .flatten()
        {
            if url.query_pairs().any(|(k, _)| k == taken.as_str()) {
                p.add(
                    format!("{key}.url"),
                    format!("already has a {taken:?} parameter: the gateway sets it"),
                );
            }
        }
    }
    let delivery = match raw.delivery.as_deref().unwrap_or("redirect") {
        "redirect" => Delivery::Redirect,
        "form_post" => Delivery::FormPost,
        other => {
            p.add(
                format!("{key}.delivery"),
                format!("{other:?} is not a delivery; use \"redirect\" or \"form_post\""),
            );
            Delivery::Redirect
        }
    };
    let site = match &raw.site_url {
        Some(text) => app_url(&format!("{key}.site_url"), text, false, p),
        None => url.as_ref().map(|u| {
            let mut site = u.clone();
            site.set_path("/");
            site.set_query(None);
            site
        }),
    };
    if raw.site_url.is_some() && return_param.is_none() {
        p.add(
            format!("{key}.site_url"),
            "only applies with return_to_param (deep links are sent in it)",
        );
    }
    let return_to = match (return_param, site) {
        (Some(param), Some(site)) => Some(ReturnTo { param, site }),
        _ => None,
    };
    let text = raw.algorithm.as_deref().unwrap_or("HS256");
    let algorithm = match text.parse::<Algorithm>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(
                format!("{key}.algorithm"),
                format!(
                    "{text:?} is not a JWT algorithm; use HS256, HS384, HS512, RS256, RS384, \
                     RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
                ),
            );
            None
        }
    };
    let key_material = algorithm.and_then(|alg| signing_key(key, alg, &raw, base_dir, p));
    if let Some(kid) = &raw.kid {
        if kid.is_empty() || kid.chars().any(char::is_control) {
            p.add(format!("{key}.kid"), "must be printable text");
        }
    }
    let ttl = raw.token_ttl_seconds.unwrap_or(120);
    if !(1..=3600).contains(&ttl) {
        p.add(
            format!("{key}.token_ttl_seconds"),
            format!("{ttl} is out of range: 1 to 3600 seconds"),
        );
    }
    let claims = match raw.claims.take() {
        Some(map) => template(&format!("{key}.claims"), map, ALWAYS_SET, false, p),
        None => {
            p.add(
                format!("{key}.claims"),
                "missing: say what the token carries, e.g. [apps.NAME.claims] email = \"email\"",
            );
            ClaimTemplate::default()
        }
    };
    if p.error_count() > before {
        return None;
    }
    Some(JwtLinkSettings {
        url: url?,
        token_param,
        delivery,
        return_to,
        algorithm: algorithm?,
        key: key_material?,
        kid: raw.kid.take(),
        claims,
        token_ttl: Duration::from_secs(ttl),
    })
}

/// The signing key for `alg`: `secret` for HMAC, `private_key` (PEM) for the others, tried once
/// here so that a key of the wrong type is a config error, not a failed sign-in.
fn signing_key(
    key: &str,
    alg: Algorithm,
    raw: &RawJwtLink,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Secret> {
    let hmac = alg.family() == jsonwebtoken::AlgorithmFamily::Hmac;
    let ((wanted, given), (unwanted, other)) = {
        let secret = ("secret", &raw.secret);
        let private_key = ("private_key", &raw.private_key);
        if hmac {
            (secret, private_key)
        } else {
            (private_key, secret)
        }
    };
    if other.is_some() {
        p.add(
            format!("{key}.{unwanted}"),
            format!("does not apply to {alg:?}: it signs with `{wanted}`"),
        );
    }
    let Some(reference) = given else {
        p.add(
            format!("{key}.{wanted}"),
            format!(
                "missing: {alg:?} signs with {}",
                if hmac {
                    "the shared secret the app gave you, { env = \"NAME\" } or { file = \"PATH\" }"
                } else {
                    "a PEM private key, { file = \"PATH\" }"
                }
            ),
        );
        return None;
    };
    let secret = p.secret(&format!("{key}.{wanted}"), reference, base_dir)?;
    if !hmac {
        if let Err(why) = crate::apps::mint::encoding_key(alg, &secret).and_then(|k| {
            let header = jsonwebtoken::Header::new(alg);
            jsonwebtoken::encode(&header, &serde_json::json!({}), &k).map_err(|e| e.to_string())
        }) {
            p.add(
                format!("{key}.private_key"),
                format!("cannot sign {alg:?} with it: {why}"),
            );
            return None;
        }
    }
    Some(secret)
}

pub(super) fn discourse(
    key: &str,
    raw: RawDiscourse,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<DiscourseSettings> {
    let before = p.error_count();
    let forum_url = app_url(&format!("{key}.forum_url"), &raw.forum_url, false, p);
    let secret = p.secret(&format!("{key}.secret"), &raw.secret, base_dir);
    if secret.as_ref().is_some_and(|s| s.expose().len() < 10) {
        p.add(
            format!("{key}.secret"),
            "is shorter than the 10 characters Discourse requires of `discourse connect secret`",
        );
    }
    let payload_key = format!("{key}.payload");
    let payload = match raw.payload {
        Some(map) => template(&payload_key, map, &["nonce", "return_sso_url"], true, p),
        None => ClaimTemplate {
            rules: [
                ("external_id", PersonField::Id, false),
                ("email", PersonField::Email, false),
                ("username", PersonField::Username, true),
                ("name", PersonField::Name, true),
            ]
            .into_iter()
            .map(|(name, field, optional)| ClaimRule {
                name: name.to_string(),
                source: ClaimSource::Field(field),
                optional,
            })
            .collect(),
        },
    };
    for needed in ["external_id", "email"] {
        if !payload.rules.is_empty()
            && !payload
                .rules
                .iter()
                .any(|r| r.name == needed && !r.optional)
        {
            p.add(
                format!("{payload_key}.{needed}"),
                "missing: Discourse requires it in every payload (and it must not be optional)",
            );
        }
    }
    if p.error_count() > before {
        return None;
    }
    Some(DiscourseSettings {
        forum_url: forum_url?,
        secret: secret?,
        payload,
    })
}

/// A claims template (see [`crate::apps::claims`]); `reserved` names are the gateway's own.
/// For a DiscourseConnect payload (`flat`) every value is text: constants may not be tables.
fn template(
    key: &str,
    raw: BTreeMap<String, toml::Value>,
    reserved: &[&str],
    flat: bool,
    p: &mut Problems,
) -> ClaimTemplate {
    let mut rules = Vec::new();
    if raw.is_empty() {
        p.add(key, "name at least one claim, e.g. email = \"email\"");
    }
    let fields = || {
        PersonField::ALL
            .iter()
            .map(|f| format!("\"{}\"", f.key()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, value) in raw {
        if name.is_empty() || name.chars().any(char::is_control) {
            // Shown escaped: a name must not write to the operator's terminal.
            p.add(
                format!("{key}.{}", name.escape_debug()),
                "is not a claim name",
            );
            continue;
        }
        let k = format!("{key}.{name}");
        if reserved.contains(&name.as_str()) {
            p.add(&k, "is set by the gateway on every sign-in; remove it");
            continue;
        }
        let field = |text: &str, p: &mut Problems| {
            let found = PersonField::parse(text);
            if found.is_none() {
                p.add(
                    &k,
                    format!(
                        "{text:?} is not an [identity] field; use one of {}, \
                         {{ claim = \"NAME\" }} for a session claim, or {{ value = … }} for a constant",
                        fields()
                    ),
                );
            }
            found
        };
        let rule = match value {
            toml::Value::String(text) => field(&text, p).map(|f| (ClaimSource::Field(f), false)),
            toml::Value::Table(mut table) => {
                let optional = match table.remove("optional") {
                    None => false,
                    Some(toml::Value::Boolean(b)) => b,
                    Some(_) => {
                        p.add(format!("{k}.optional"), "must be true or false");
                        false
                    }
                };
                let keys: Vec<String> = table.keys().cloned().collect();
                match (keys.as_slice(), table.into_iter().next()) {
                    ([_], Some((which, v))) => match (which.as_str(), v) {
                        ("field", toml::Value::String(text)) => {
                            field(&text, p).map(|f| (ClaimSource::Field(f), optional))
                        }
                        ("claim", toml::Value::String(text)) if !text.trim().is_empty() => {
                            Some((ClaimSource::Claim(ClaimPath::new(text)), optional))
                        }
                        ("claim", _) => {
                            p.add(format!("{k}.claim"), "must name a session claim");
                            None
                        }
                        ("value", v) => constant(&k, v, flat, p).map(|v| {
                            if optional {
                                p.add(format!("{k}.optional"), "a constant is always there");
                            }
                            (ClaimSource::Value(v), false)
                        }),
                        (other, _) => {
                            p.add(
                                format!("{k}.{other}"),
                                "unknown key; use field, claim or value (and optional)",
                            );
                            None
                        }
                    },
                    _ => {
                        p.add(
                            &k,
                            "give exactly one of field, claim or value (and optional = true to \
                             leave it out when the person has none)",
                        );
                        None
                    }
                }
            }
            _ => {
                p.add(
                    &k,
                    "must be an [identity] field (\"email\") or a table: { field = … }, \
                     { claim = … } or { value = … }",
                );
                None
            }
        };
        if let Some((source, optional)) = rule {
            rules.push(ClaimRule {
                name,
                source,
                optional,
            });
        }
    }
    ClaimTemplate { rules }
}

/// A constant claim value as JSON; an empty one is refused (it would say nothing).
fn constant(
    key: &str,
    value: toml::Value,
    flat: bool,
    p: &mut Problems,
) -> Option<serde_json::Value> {
    let json = match serde_json::to_value(&value) {
        Ok(v) => v,
        Err(_) => {
            p.add(format!("{key}.value"), "cannot be written in a token");
            return None;
        }
    };
    if crate::apps::claims::is_empty(&json) {
        p.add(
            format!("{key}.value"),
            "is empty: the claim would say nothing; remove it or give a value",
        );
        return None;
    }
    if flat && json.is_object() {
        p.add(
            format!("{key}.value"),
            "a DiscourseConnect payload holds text: use a string, number or boolean",
        );
        return None;
    }
    Some(json)
}

/// An app's URL: absolute `https://` (plain `http://` only on loopback, for tests and
/// stand-ins), no credentials, no fragment; a query only where `query` allows it.
fn app_url(key: &str, raw: &str, query: bool, p: &mut Problems) -> Option<url::Url> {
    let shown = super::validate::shown_url(raw);
    let Ok(url) = url::Url::parse(raw) else {
        p.add(
            key,
            format!("{shown} must be an absolute https:// URL like \"https://app.example.com\""),
        );
        return None;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let problem = if url.host().is_none() || !matches!(url.scheme(), "https" | "http") {
        Some("must be an absolute https:// URL")
    } else if url.scheme() == "http" && !loopback {
        Some("must be https:// (plain http:// only on loopback): the token travels in it")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must not carry a user name or password")
    } else if url.fragment().is_some() {
        Some("must not have a #fragment")
    } else if !query && url.query().is_some() {
        Some("must not have a query")
    } else {
        None
    };
    match problem {
        Some(why) => {
            p.add(key, format!("{shown} {why}"));
            None
        }
        None => Some(url),
    }
}
