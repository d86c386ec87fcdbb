//! The gateway's own endpoints under `server.endpoints_prefix`: `healthz`, `readyz`, `whoami`.

use http::request::Parts;
use serde::Serialize;

use super::{Decision, Gateway, SessionNote};
use crate::reply::{wants_html, Reply};
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

    pub(super) fn answer_endpoint(&self, endpoint: &str, req: &Parts) -> (Decision, SessionNote) {
        let (reply, note) = match endpoint {
            "healthz" => (Reply::text(200, "ok\n"), SessionNote::NotChecked),
            "readyz" => (self.readiness(), SessionNote::NotChecked),
            "whoami" => self.whoami(req),
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
        }
        let upstreams: Vec<(&str, GroupHealth)> = self
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.health()))
            .collect();
        let ready = upstreams.iter().all(|(_, h)| h.healthy > 0);
        Reply::json(if ready { 200 } else { 503 }, &Ready { ready, upstreams })
    }

    fn whoami(&self, req: &Parts) -> (Reply, SessionNote) {
        let Some(session) = &self.session else {
            let body = serde_json::json!({
                "error": "no_session_config",
                "message": "this gateway has no [session] section",
            });
            return (Reply::json(404, &body), SessionNote::NotChecked);
        };
        match session.verifier.identify(&req.headers) {
            Ok(identity) => (Reply::json(200, &identity), SessionNote::Valid),
            Err(e) => {
                let body = serde_json::json!({
                    "error": "unauthenticated",
                    "reason": e.reason(),
                    "message": e.to_string(),
                });
                (Reply::json(401, &body), SessionNote::Invalid(e))
            }
        }
    }
}
