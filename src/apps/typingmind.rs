//! TypingMind's `externalAuthCode` (the protocol: README, `[apps.NAME]`): an HS256 JWT with the instance's
//! secret, delivered in a link (`?externalAuthCode=`) or in the chat widget's script tag
//! (`data-external-auth-code`, see [`super::widget`]).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::mint::mint_hs256;
use super::widget::WidgetSite;
use super::{HandoffOutcome, IdentityField};
use crate::config::{IdentifyBy, TypingMindSettings};
use crate::identity::Identity;

/// The query parameter TypingMind reads the code from.
pub const CODE_PARAM: &str = "externalAuthCode";

/// One TypingMind instance.
pub struct TypingMind {
    settings: TypingMindSettings,
    /// Where its widget script lives (`None` when `instance_url` is not a URL, which the
    /// config check refuses).
    widget_site: Option<Arc<WidgetSite>>,
}

impl TypingMind {
    pub fn new(settings: TypingMindSettings) -> Self {
        let widget_site =
            WidgetSite::new(&settings.instance_url, &settings.widget_script_suffix).map(Arc::new);
        TypingMind {
            settings,
            widget_site,
        }
    }

    pub fn widget_site(&self) -> Option<&Arc<WidgetSite>> {
        self.widget_site.as_ref()
    }

    pub fn settings(&self) -> &TypingMindSettings {
        &self.settings
    }

    /// The payload for `identify_by`, or the fields the identity lacks for it.
    pub fn payload(&self, identity: &Identity) -> Result<Map<String, Value>, Vec<IdentityField>> {
        let mut payload = Map::new();
        match &self.settings.identify_by {
            IdentifyBy::User => {
                if identity.id.is_empty() {
                    return Err(vec![IdentityField::Id]);
                }
                let mut user = Map::new();
                user.insert("id".into(), identity.id.clone().into());
                for (k, v) in [("email", &identity.email), ("name", &identity.name)] {
                    if !v.is_empty() {
                        user.insert(k.into(), v.clone().into());
                    }
                }
                for (field, claim) in &self.settings.user_fields {
                    if let Some(v) = identity.extra.get(claim.as_str()) {
                        user.insert(field.clone(), v.clone());
                    }
                }
                payload.insert("user".into(), Value::Object(user));
            }
            IdentifyBy::Email => {
                if identity.email.is_empty() {
                    return Err(vec![IdentityField::Email]);
                }
                payload.insert("email".into(), identity.email.clone().into());
            }
            IdentifyBy::Id { claim } => match identity.extra.get(claim.as_str()) {
                Some(v @ Value::Number(_)) => {
                    payload.insert("id".into(), v.clone());
                }
                Some(Value::String(s)) if !s.is_empty() => {
                    payload.insert("id".into(), s.clone().into());
                }
                _ => return Err(vec![IdentityField::TypingMindId]),
            },
        }
        Ok(payload)
    }

    /// A fresh code for this person.
    pub fn mint_code(&self, identity: &Identity) -> Result<String, HandoffOutcome> {
        let payload = self
            .payload(identity)
            .map_err(HandoffOutcome::MissingIdentity)?;
        mint_hs256(
            payload,
            self.settings.secret.expose(),
            self.settings.code_ttl,
        )
        .map_err(HandoffOutcome::Internal)
    }

    /// The link handoff: `{instance_url}{tail}?{query without any old code}&externalAuthCode=…`.
    pub fn link(&self, identity: &Identity, tail: &str, query: Option<&str>) -> HandoffOutcome {
        match self.mint_code(identity) {
            Ok(code) => {
                HandoffOutcome::Redirect(link_url(&self.settings.instance_url, tail, query, &code))
            }
            Err(outcome) => outcome,
        }
    }
}

/// Builds the link. The client's query is kept byte for byte, except that any existing
/// `externalAuthCode` parameter is dropped so the fresh one is the only one.
pub fn link_url(instance_url: &str, tail: &str, query: Option<&str>, code: &str) -> String {
    let mut url = String::with_capacity(instance_url.len() + tail.len() + code.len() + 64);
    url.push_str(instance_url);
    url.push_str(if tail.is_empty() { "/" } else { tail });
    url.push('?');
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() || is_code_param(pair) {
            continue;
        }
        url.push_str(pair);
        url.push('&');
    }
    url.push_str(CODE_PARAM);
    url.push('=');
    url.push_str(code);
    url
}

fn is_code_param(pair: &str) -> bool {
    let key = pair.split('=').next().unwrap_or_default().replace('+', " ");
    percent_encoding::percent_decode_str(&key).decode_utf8_lossy() == CODE_PARAM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_links_keep_their_tail_and_replace_an_old_code() {
        let base = "https://chat.example.com";
        assert_eq!(
            link_url(base, "", None, "C"),
            "https://chat.example.com/?externalAuthCode=C"
        );
        assert_eq!(
            link_url(base, "/agents/x", Some("y=1"), "C"),
            "https://chat.example.com/agents/x?y=1&externalAuthCode=C"
        );
        assert_eq!(
            link_url(
                base,
                "/a%20b/",
                Some("externalAuthCode=old&q=%26x&&externalAuth%43ode=old2&z"),
                "C"
            ),
            "https://chat.example.com/a%20b/?q=%26x&z&externalAuthCode=C"
        );
        assert_eq!(
            link_url(base, "/", Some("externalAuthCodeX=1"), "C"),
            "https://chat.example.com/?externalAuthCodeX=1&externalAuthCode=C"
        );
    }
}
