//! TypingMind's `externalAuthCode` (the protocol: README, `[apps.NAME]`): an HS256 JWT with the instance's
//! secret, delivered in a link (`?externalAuthCode=`) or in the chat widget's script tag
//! (`data-external-auth-code`, see [`super::widget`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::deep_link::deep_link;
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
    /// `instance_url`, parsed once: deep links are built on it (`None` when it is not a URL,
    /// which the config check refuses).
    instance: Option<url::Url>,
    /// Where its widget script lives (`None` when `instance_url` is not a URL).
    widget_site: Option<Arc<WidgetSite>>,
}

impl TypingMind {
    pub fn new(settings: TypingMindSettings) -> Self {
        let widget_site =
            WidgetSite::new(&settings.instance_url, &settings.widget_script_suffix).map(Arc::new);
        let instance = url::Url::parse(&settings.instance_url).ok();
        TypingMind {
            settings,
            instance,
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

    /// A fresh code for this person, for a link (used at once: `code_ttl`).
    pub fn mint_code(&self, identity: &Identity) -> Result<String, HandoffOutcome> {
        self.mint(identity, self.settings.code_ttl)
    }

    /// A fresh code for this person's widget: TypingMind verifies it whenever the widget loads,
    /// which may be long after the page did, so it lives as long as the intranet session does
    /// (see [`widget_code_ttl`]).
    pub fn mint_widget_code(&self, identity: &Identity) -> Result<String, HandoffOutcome> {
        let now = jsonwebtoken::get_current_timestamp();
        let ttl = widget_code_ttl(&self.settings, identity.session_expires, now);
        self.mint(identity, ttl)
    }

    fn mint(&self, identity: &Identity, ttl: Duration) -> Result<String, HandoffOutcome> {
        let payload = self
            .payload(identity)
            .map_err(HandoffOutcome::MissingIdentity)?;
        mint_hs256(payload, self.settings.secret.expose(), ttl).map_err(HandoffOutcome::Internal)
    }

    /// The link handoff: the instance's URL with the deep link's path joined on and the query
    /// kept (any old code dropped), checked to stay on the instance, then a fresh code added.
    /// Nothing is minted for a link that would leave the instance.
    pub fn link(&self, identity: &Identity, tail: &str, query: Option<&str>) -> HandoffOutcome {
        let Some(instance) = &self.instance else {
            return HandoffOutcome::Internal("instance_url is not a URL".to_string());
        };
        let Some(mut url) = deep_link(instance, tail, query, &[CODE_PARAM]) else {
            return HandoffOutcome::OffSite;
        };
        match self.mint_code(identity) {
            Ok(code) => {
                url.query_pairs_mut().append_pair(CODE_PARAM, &code);
                HandoffOutcome::Redirect(url.into())
            }
            Err(outcome) => outcome,
        }
    }
}

/// A widget code's lifetime: until the session ends (`session_expires`), at most
/// `widget_code_ttl`, at least `code_ttl` (a session about to end still gets a usable code; one
/// with no known end gets the cap).
pub fn widget_code_ttl(
    settings: &TypingMindSettings,
    session_expires: Option<u64>,
    now: u64,
) -> Duration {
    let cap = settings.widget_code_ttl;
    let until_session_ends =
        session_expires.map_or(cap, |exp| Duration::from_secs(exp.saturating_sub(now)));
    until_session_ends.min(cap).max(settings.code_ttl.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(tail: &str, query: Option<&str>) -> Option<String> {
        let base = url::Url::parse("https://chat.example.com").unwrap();
        deep_link(&base, tail, query, &[CODE_PARAM]).map(|mut u| {
            u.query_pairs_mut().append_pair(CODE_PARAM, "C");
            u.to_string()
        })
    }

    #[test]
    fn deep_links_keep_their_tail_and_replace_an_old_code() {
        assert_eq!(
            link("", None).unwrap(),
            "https://chat.example.com/?externalAuthCode=C"
        );
        assert_eq!(
            link("/agents/x", Some("y=1")).unwrap(),
            "https://chat.example.com/agents/x?y=1&externalAuthCode=C"
        );
        assert_eq!(
            link(
                "/a%20b/",
                Some("externalAuthCode=old&q=%26x&&externalAuth%43ode=old2&z")
            )
            .unwrap(),
            "https://chat.example.com/a%20b/?q=%26x&z&externalAuthCode=C"
        );
        assert_eq!(
            link("/", Some("externalAuthCodeX=1")).unwrap(),
            "https://chat.example.com/?externalAuthCodeX=1&externalAuthCode=C"
        );
    }

    #[test]
    fn a_widget_code_lives_as_long_as_the_session_within_bounds() {
        let settings = |code, cap| TypingMindSettings {
            instance_url: "https://chat.example.com".into(),
            secret: crate::config::Secret::new(b"s".to_vec()),
            identify_by: IdentifyBy::User,
            user_fields: Vec::new(),
            code_ttl: Duration::from_secs(code),
            widget_code_ttl: Duration::from_secs(cap),
            widget: true,
            widget_script_suffix: "widget.js".into(),
            widget_max_page_bytes: 1,
        };
        let s = settings(300, 28_800);
        let now = 1_000_000;
        assert_eq!(widget_code_ttl(&s, Some(now + 3_600), now).as_secs(), 3_600);
        assert_eq!(
            widget_code_ttl(&s, Some(now + 90_000), now).as_secs(),
            28_800
        );
        assert_eq!(widget_code_ttl(&s, Some(now + 10), now).as_secs(), 300);
        assert_eq!(widget_code_ttl(&s, Some(now - 10), now).as_secs(), 300);
        assert_eq!(widget_code_ttl(&s, None, now).as_secs(), 28_800);
        // A cap below code_ttl wins.
        assert_eq!(
            widget_code_ttl(&settings(300, 60), Some(now + 3_600), now).as_secs(),
            60
        );
    }

    #[test]
    fn an_instance_path_is_kept_before_the_tail() {
        let base = url::Url::parse("https://tools.example.com/chat/").unwrap();
        assert_eq!(
            deep_link(&base, "/agents", None, &[]).unwrap().as_str(),
            "https://tools.example.com/chat/agents"
        );
        assert_eq!(
            deep_link(&base, "", None, &[]).unwrap().as_str(),
            "https://tools.example.com/chat/"
        );
    }

    /// Every hostile tail, read back by the `url` crate (a WHATWG parser, as browsers read a
    /// `Location`): the host is always the instance's.
    #[test]
    fn no_tail_or_query_leads_off_the_instance() {
        let pieces = [
            ";",
            "@",
            ":",
            "\\",
            "%2F",
            "%2f",
            "%40",
            "%3B",
            "%3A",
            "%5C",
            "\t",
            "\n",
            "\r",
            "/",
            "//",
            "?",
            "#",
            "%23",
            "%3F",
            "é",
            "\u{FF0F}",
            "\u{2044}",
            "..",
            "%2e%2e",
            " ",
            "evil.example",
            "x:y",
            "[::1]",
            "%00",
        ];
        let mut tails = vec![
            ";@evil.example/steal".to_string(),
            ";x:y@evil.example".to_string(),
            "@evil.example".to_string(),
            "%40evil.example/x".to_string(),
            "/\\evil.example".to_string(),
            "//evil.example/x".to_string(),
            "/..//evil.example".to_string(),
        ];
        for a in pieces {
            for b in pieces {
                tails.push(format!("{a}{b}evil.example/x"));
                tails.push(format!("/{a}@evil.example{b}"));
            }
        }
        for tail in &tails {
            for query in [
                None,
                Some("a=1"),
                Some("@evil.example"),
                Some("x#@evil.example/"),
            ] {
                let Some(location) = link(tail, query) else {
                    continue;
                };
                let read = url::Url::parse(&location).unwrap();
                assert_eq!(
                    read.host_str(),
                    Some("chat.example.com"),
                    "{tail:?} {query:?} -> {location}"
                );
                assert_eq!(read.scheme(), "https", "{location}");
                assert_eq!(read.port_or_known_default(), Some(443), "{location}");
                assert!(read.username().is_empty() && read.password().is_none());
                let codes = read.query_pairs().filter(|(k, _)| k == CODE_PARAM).count();
                assert_eq!(codes, 1, "{location}");
            }
        }
    }
}
