//! The gateway's own endpoints under `server.endpoints_prefix`: `healthz`, `readyz`, `whoami`.

use std::sync::Arc;

use http::request::Parts;
use serde::Serialize;

use super::{Decision, Gateway, SessionNote};
use crate::apps::NoContact;
use crate::config::{redacted_url, RouteTarget};
use crate::identity::Identity;
use crate::intranet_session::jwks::JwksStatus;
use crate::intranet_session::SessionError;
use crate::pages;
use crate::reply::{wants_html, Reply};
use crate::upstream::GroupHealth;

/// An endpoint's answer, the session it looked for, and the person it recognised (for the log).
type Answer = (Reply, SessionNote, Option<Arc<Identity>>);

impl Gateway {
    /// `Some("healthz")` for `/_handoff/healthz`; `Some("")` for the prefix itself.
    pub(super) fn own_endpoint<'a>(&self, path: &'a str) -> Option<&'a str> {
        let prefix = self.server.endpoints_prefix.as_str();
        let rest = path.strip_prefix(prefix)?;
        if rest.is_empty() {
            return Some("");
        }
        rest.strip_prefix('/')
    }

    pub(super) async fn answer_endpoint(
        &self,
        endpoint: &str,
        req: &Parts,
    ) -> (Decision<'_>, SessionNote) {
        let nobody = |reply| (reply, SessionNote::NotChecked, None);
        let (reply, note, identity) = match endpoint {
            "healthz" => nobody(Reply::text(200, "ok\n")),
            "readyz" => nobody(self.readiness()),
            "whoami" => self.whoami(req).await,
            "" => self.portal(req).await,
            e if e.starts_with("yourgpt-contact/") => self.contact_script(req).await,
            _ => nobody(Reply::error(
                wants_html(&req.headers),
                404,
                "no_endpoint",
                "Page not found",
                "The gateway has no page at this address.",
            )),
        };
        let decision = Decision::Reply {
            reply,
            route: None,
            identity,
        };
        (decision, note)
    }

    /// A YourGPT chatbot widget's contact script, for the signed-in person's own page only:
    /// `Sec-Fetch-Site: same-origin` and `Sec-Fetch-Dest: script` (a page on another site that
    /// includes it with the person's cookies, or a browser that sends neither, gets a 403 — a
    /// `user_hash` never expires), a person the app admits, `private, no-store`.
    async fn contact_script(&self, req: &Parts) -> Answer {
        let path = crate::routes::normalize_path(req.uri.path());
        let refuse = |status, code, message: &str| {
            Reply::error(false, status, code, "Not available", message)
        };
        let Some(app) = self.apps.iter().find(|a| a.serves_contact_at(&path)) else {
            return (
                refuse(
                    404,
                    "no_endpoint",
                    "No chatbot widget is signed in at this address.",
                ),
                SessionNote::NotChecked,
                None,
            );
        };
        let header = |name| {
            req.headers
                .get(name)
                .map(|v: &http::HeaderValue| v.as_bytes())
        };
        if header("sec-fetch-site") != Some(b"same-origin")
            || header("sec-fetch-dest") != Some(b"script")
        {
            return (
                refuse(
                    403,
                    "not_same_origin_script",
                    "This script is only for the intranet's own pages.",
                ),
                SessionNote::NotChecked,
                None,
            );
        }
        let Some(session) = &self.session else {
            return (
                refuse(
                    404,
                    "no_session_config",
                    "This gateway has no [session] section.",
                ),
                SessionNote::NotChecked,
                None,
            );
        };
        let (identity, source) = match session.identify(&req.headers, true).await {
            Ok(found) => found,
            Err(e) => {
                return (
                    refuse(
                        401,
                        "unauthenticated",
                        "You are not signed in to the intranet.",
                    ),
                    SessionNote::Invalid(e),
                    None,
                )
            }
        };
        let note = SessionNote::Valid(source);
        let reply = match app.contact_for(&identity, session.mapping()) {
            Ok(data) => Reply::javascript(crate::apps::contact::contact_script(&data))
                .with_header("Vary", "Cookie".to_string()),
            Err(NoContact::Incomplete) => refuse(
                422,
                "identity_incomplete",
                "Your intranet profile has no email, phone or id for the chatbot.",
            ),
            Err(NoContact::Refused | NoContact::NoWidget) => {
                refuse(403, "forbidden", "The chatbot is not signed in for you.")
            }
        };
        (reply, note, Some(identity))
    }

    /// The portal: who the person is signed in as, and links to the apps their policy opens.
    async fn portal(&self, req: &Parts) -> Answer {
        let Some(session) = &self.session else {
            let page = pages::portal(&self.pages, None, &[], None);
            return (Reply::html(200, page), SessionNote::NotChecked, None);
        };
        let (identity, note) = match session.identify(&req.headers, false).await {
            Ok((identity, source)) => (Some(identity), SessionNote::Valid(source)),
            Err(e) => (None, SessionNote::Invalid(e)),
        };
        let Some(identity) = identity else {
            let own = format!("{}/", self.server.endpoints_prefix);
            let login = session
                .settings()
                .login_url
                .as_ref()
                .map(|l| l.render(&own));
            let page = pages::portal(&self.pages, None, &[], login.as_deref());
            return (Reply::html(200, page), note, None);
        };
        let apps: Vec<pages::PortalApp<'_>> = self
            .routes
            .iter()
            .filter_map(|route| match route.target {
                RouteTarget::App(i) => Some((route, &self.apps[i])),
                RouteTarget::Upstream(_) => None,
            })
            .filter(|(route, app)| app.admits(&identity, route.allow.as_ref()).is_ok())
            .map(|(route, app)| pages::PortalApp {
                name: app.display_name(),
                // Two apps of one product without display names: their config names tell them apart.
                detail: (!app.has_display_name() && !app.name.eq_ignore_ascii_case(app.title()))
                    .then_some(app.name.as_str()),
                path: route.path.as_str(),
            })
            .collect();
        let who = match (identity.name.is_empty(), identity.email.is_empty()) {
            (false, false) => format!("{} ({})", identity.name, identity.email),
            (true, false) => identity.email.clone(),
            (false, true) => identity.name.clone(),
            (true, true) => identity.id.clone(),
        };
        let page = pages::portal(&self.pages, Some(&who), &apps, None);
        (Reply::html(200, page), note, Some(identity))
    }

    /// `readyz`: 200 when this instance can serve — its config is loaded (it is: this code
    /// runs), its session keys are in, and it is not draining before a stop. The upstreams'
    /// health and the fleet's Redis are in the body but do not make it unready: with the
    /// intranet down the portal and the handoffs still work, and a fleet whose every instance
    /// turned unready at once would answer nothing at all; without Redis the limits fall back
    /// to each instance's own.
    fn readiness(&self) -> Reply {
        #[derive(Serialize)]
        struct Ready<'a> {
            ready: bool,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            draining: bool,
            upstreams: Vec<(&'a str, GroupHealth)>,
            #[serde(skip_serializing_if = "Option::is_none")]
            jwks: Option<JwksStatus>,
            #[serde(skip_serializing_if = "Option::is_none")]
            state: Option<SharedStatus>,
        }
        #[derive(Serialize)]
        struct SharedStatus {
            backend: &'static str,
            url: String,
            /// `null` until the first round trip.
            up: Option<bool>,
            errors: u64,
        }
        let upstreams: Vec<(&str, GroupHealth)> = self
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.health()))
            .collect();
        let jwks = self.jwks().map(|j| j.status());
        let draining = self.is_draining();
        let ready = !draining && jwks.as_ref().is_none_or(|j| j.loaded);
        let state = self.shared_state().map(|s| SharedStatus {
            backend: "redis",
            url: redacted_url(&s.settings().redis_url),
            up: s.is_up(),
            errors: s.errors(),
        });
        let body = Ready {
            ready,
            draining,
            upstreams,
            jwks,
            state,
        };
        Reply::json(if ready { 200 } else { 503 }, &body)
    }

    async fn whoami(&self, req: &Parts) -> Answer {
        let Some(session) = &self.session else {
            let body = serde_json::json!({
                "error": "no_session_config",
                "message": "this gateway has no [session] section",
            });
            return (Reply::json(404, &body), SessionNote::NotChecked, None);
        };
        match session.identify(&req.headers, true).await {
            Ok((identity, source)) => {
                #[derive(Serialize)]
                struct Whoami<'a> {
                    source: &'static str,
                    #[serde(flatten)]
                    identity: &'a Identity,
                }
                let body = Whoami {
                    source: source.label(),
                    identity: &identity,
                };
                let reply = Reply::json(200, &body);
                (reply, SessionNote::Valid(source), Some(identity))
            }
            Err(e) => {
                let (status, error) = match e {
                    SessionError::Unavailable => (503, "session_unavailable"),
                    SessionError::Busy => (503, "session_busy"),
                    _ => (401, "unauthenticated"),
                };
                let body = serde_json::json!({
                    "error": error,
                    "reason": e.reason(),
                    "message": e.to_string(),
                });
                (Reply::json(status, &body), SessionNote::Invalid(e), None)
            }
        }
    }
}
