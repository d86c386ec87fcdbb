//! Running a handoff the decision chose: the app's connector, its metrics and its page.

use http::request::Parts;

use super::{Gateway, HandoffTo};
use crate::apps::HandoffRequest;
use crate::identity::Identity;
use crate::reply::{wants_html, Reply};
use crate::routes::normalize_path;

impl Gateway {
    /// Runs a handoff decided by [`Gateway::decide`] and returns what the person sees. A `HEAD`
    /// request stops here with an empty 200: it never calls the app or sends an email.
    pub async fn handoff(&self, to: HandoffTo<'_>, identity: &Identity, req: &Parts) -> Reply {
        let HandoffTo {
            app,
            prefix,
            session,
        } = to;
        if req.method == http::Method::HEAD {
            return Reply::text(200, "");
        }
        let path = normalize_path(req.uri.path());
        let tail = if prefix == "/" {
            &path[..]
        } else {
            path.get(prefix.len()..).unwrap_or_default()
        };
        let request = HandoffRequest {
            tail,
            query: req.uri.query(),
        };
        let outcome = app.handoff(identity, &request, session.mapping()).await;
        let (label, code) = outcome.labels();
        self.metrics
            .handoffs
            .with_label_values(&[app.name.as_str(), label, code.as_str()])
            .inc();
        let user = self.person_for_log(identity);
        app.reply(
            outcome,
            identity,
            &user,
            session.mapping(),
            wants_html(&req.headers),
        )
        .with_outcome(label)
    }
}
