//! The gateway's own endpoints under `server.endpoints_prefix`: `healthz`, `readyz`, `whoami`.

use http::request::Parts;
use serde::Serialize;

use super::{Decision, Gateway, SessionNote};
use crate::identity::Identity;
use crate::reply::{wants_html, Reply};
use crate::session::jwks::JwksStatus;
use crate::session::SessionError;
use crate::upstream::GroupHealth;

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
    ) -> (Decision, SessionNote) {
        let (reply, note) = match endpoint {
            "healthz" => (Reply::text(200, "ok\n"), SessionNote::NotChecked),
            "readyz" => (self.readiness(), SessionNote::NotChecked),
            "whoami" => self.whoami(req).await,
            _ => (
                Reply::error(
                    wants_html(&req.headers),
                    404,
                    "no_endpoint",
                    "Page not found",
                    "The gateway has no page at this address.",
                ),
                SessionNote::NotChecked,
            ),
        };
        (Decision::Reply(reply), note)
    }

    fn readiness(&self) -> Reply {
        #[derive(Serialize)]
        struct Ready<'a> {
            ready: bool,
            upstreams: Vec<(&'a str, GroupHealth)>,
            #[serde(skip_serializing_if = "Option::is_none")]
            jwks: Option<JwksStatus>,
        }
        let upstreams: Vec<(&str, GroupHealth)> = self
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.health()))
            .collect();
        let jwks = self.jwks().map(|j| j.status());
        let ready =
            upstreams.iter().all(|(_, h)| h.healthy > 0) && jwks.as_ref().is_none_or(|j| j.loaded);
        let body = Ready {
            ready,
            upstreams,
            jwks,
        };
        Reply::json(if ready { 200 } else { 503 }, &body)
    }

    async fn whoami(&self, req: &Parts) -> (Reply, SessionNote) {
        let Some(session) = &self.session else {
            let body = serde_json::json!({
                "error": "no_session_config",
                "message": "this gateway has no [session] section",
            });
            return (Reply::json(404, &body), SessionNote::NotChecked);
        };
        match session.verifier.identify(&req.headers, true).await {
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
                (Reply::json(200, &body), SessionNote::Valid(source))
            }
            Err(e) => {
                let (status, error) = match e {
                    SessionError::Unavailable => (503, "session_unavailable"),
                    _ => (401, "unauthenticated"),
                };
                let body = serde_json::json!({
                    "error": error,
                    "reason": e.reason(),
                    "message": e.to_string(),
                });
                (Reply::json(status, &body), SessionNote::Invalid(e))
            }
        }
    }
}
