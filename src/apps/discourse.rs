//! `kind = "discourse_connect"`: a Discourse forum's DiscourseConnect, with the gateway as the
//! provider.
//!
//! The forum sends the person to the route with `sso` (base64 of `nonce=…&return_sso_url=…`)
//! and `sig` (HMAC-SHA256 hex of the base64 text, under the shared secret). The gateway checks
//! the signature, and sends the person back to `return_sso_url` — which must be on the forum —
//! with a payload of its own: the forum's nonce and the person's fields, signed the same way.
//! A person who opens the route directly (no `sso`) is sent to the forum's `/session/sso`,
//! which starts that round trip with a fresh nonce (`return_path`: the deep link).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::deep_link::deep_link;
use super::{HandoffOutcome, HandoffRequest};
use crate::config::DiscourseSettings;
use crate::identity::{ClaimMapping, Identity};
use crate::keyed::{hmac_sha256_hex, verify_hmac_sha256_hex};

/// The largest `sso` the forum sends (its nonce and return URL: a few hundred bytes).
const MAX_SSO_BYTES: usize = 4096;

/// One forum.
pub struct Discourse {
    settings: DiscourseSettings,
}

/// Why a request from the forum was refused (the operator's log line says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadSso {
    /// `sso` without `sig`, or the reverse, or either twice.
    Incomplete,
    /// `sso` longer than any the forum sends.
    TooLong,
    /// `sig` is not the HMAC of `sso` under the secret: not the forum, or another secret.
    BadSignature,
    /// The payload is not base64 of a query with a nonce.
    Garbled,
    /// `return_sso_url` is not on `forum_url`'s origin.
    OffSite,
}

impl BadSso {
    pub fn detail(self) -> &'static str {
        match self {
            BadSso::Incomplete => "the request has sso without sig (or the reverse, or one twice)",
            BadSso::TooLong => "sso is longer than the 4096 bytes a forum sends",
            BadSso::BadSignature => {
                "sig does not match sso: not from the forum, or the forum's \
                 `discourse connect secret` differs from this app's secret"
            }
            BadSso::Garbled => "sso is not a base64 payload with a nonce",
            BadSso::OffSite => "the payload's return_sso_url is not on forum_url",
        }
    }
}

impl Discourse {
    pub fn new(settings: DiscourseSettings) -> Self {
        Discourse { settings }
    }

    pub fn handoff(
        &self,
        who: &Identity,
        mapping: &ClaimMapping,
        request: &HandoffRequest<'_>,
    ) -> HandoffOutcome {
        let (mut sso, mut sig, mut twice) = (None, None, false);
        for (k, v) in form_urlencoded::parse(request.query.unwrap_or_default().as_bytes()) {
            let slot = match &*k {
                "sso" => &mut sso,
                "sig" => &mut sig,
                _ => continue,
            };
            twice |= slot.is_some();
            *slot = Some(v.into_owned());
        }
        // A person who lacks what the forum requires learns it before the round trip.
        let fields = match self.settings.payload.fill(who, mapping) {
            Ok(f) => f,
            Err(missing) => return HandoffOutcome::MissingClaims(missing),
        };
        let (sso, sig) = match (sso, sig, twice) {
            (None, None, false) => return self.start(request),
            (Some(sso), Some(sig), false) => (sso, sig),
            _ => return HandoffOutcome::BadSso(BadSso::Incomplete),
        };
        let (nonce, back) = match self.verify(&sso, &sig) {
            Ok(found) => found,
            Err(why) => return HandoffOutcome::BadSso(why),
        };
        let mut payload = form_urlencoded::Serializer::new(String::new());
        payload.append_pair("nonce", &nonce);
        for (name, value) in &fields {
            payload.append_pair(name, &text(value));
        }
        let payload = STANDARD.encode(payload.finish());
        let sig = hmac_sha256_hex(self.settings.secret.expose(), payload.as_bytes());
        let mut location = back;
        location
            .query_pairs_mut()
            .append_pair("sso", &payload)
            .append_pair("sig", &sig);
        HandoffOutcome::Redirect(location.into())
    }

    /// The forum's request, checked: its nonce and where the answer goes.
    fn verify(&self, sso: &str, sig: &str) -> Result<(String, url::Url), BadSso> {
        if sso.len() > MAX_SSO_BYTES {
            return Err(BadSso::TooLong);
        }
        if !verify_hmac_sha256_hex(self.settings.secret.expose(), sso.as_bytes(), sig) {
            return Err(BadSso::BadSignature);
        }
        // Ruby's Base64.decode64 (what Discourse reads with) skips line breaks.
        let compact: String = sso.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let decoded = STANDARD.decode(compact).map_err(|_| BadSso::Garbled)?;
        let (mut nonce, mut back) = (None, None);
        for (k, v) in form_urlencoded::parse(&decoded) {
            match &*k {
                "nonce" if !v.is_empty() => nonce = Some(v.into_owned()),
                "return_sso_url" => back = Some(v.into_owned()),
                _ => {}
            }
        }
        let nonce = nonce.ok_or(BadSso::Garbled)?;
        let forum = &self.settings.forum_url;
        let back = back
            .and_then(|b| url::Url::parse(&b).ok())
            .filter(|b| {
                b.origin() == forum.origin() && b.username().is_empty() && b.password().is_none()
            })
            .ok_or(BadSso::OffSite)?;
        Ok((nonce, back))
    }

    /// No `sso` yet: the forum's `/session/sso` asks for one (with a fresh nonce), opening
    /// the deep link afterwards (`return_path`, a path on the forum).
    fn start(&self, request: &HandoffRequest<'_>) -> HandoffOutcome {
        let forum = &self.settings.forum_url;
        let base = forum.path().trim_end_matches('/');
        let mut url = forum.clone();
        url.set_path(&format!("{base}/session/sso"));
        let deep = !request.tail.trim_start_matches('/').is_empty()
            || request.query.is_some_and(|q| !q.is_empty());
        if deep {
            // `deep_link` refuses a path the forum could read as another host (`//evil`).
            let Some(link) = deep_link(forum, request.tail, request.query, &["sso", "sig"]) else {
                return HandoffOutcome::OffSite;
            };
            let mut path = link.path().to_string();
            if let Some(q) = link.query() {
                path.push('?');
                path.push_str(q);
            }
            url.query_pairs_mut().append_pair("return_path", &path);
        }
        HandoffOutcome::NonceRequest(url.into())
    }
}

/// A payload value as text: strings as they are, lists joined with commas (`add_groups`). An
/// item that holds a comma itself is left out: the forum would split it into other items (a
/// group named `x,admins` would add `admins`).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(text)
            .filter(|item| !item.is_empty() && !item.contains(','))
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_item_cannot_become_two() {
        assert_eq!(text(&json!(["eng", "x,admins", "ai", ""])), "eng,ai");
        assert_eq!(text(&json!("a,b")), "a,b", "a plain value is one value");
        assert_eq!(text(&json!(7)), "7");
    }
}
