//! What a request without a usable session gets: a 503 when sign-in cannot be asked, a login
//! redirect for a browser, else a 401.

use http::request::Parts;

use super::Gateway;
use crate::intranet_session::SessionError;
use crate::intranet_session::SessionVerifier;
use crate::reply::Reply;

impl Gateway {
    pub(super) fn unauthenticated(
        &self,
        session: &SessionVerifier,
        req: &Parts,
        html: bool,
        e: SessionError,
    ) -> Reply {
        if e == SessionError::Unavailable {
            return Reply::error(
                html,
                503,
                "session_unavailable",
                "Sign-in is not answering",
                "The intranet's sign-in service is not answering right now, so the gateway \
                 cannot tell who you are. Please try again in a minute.",
            )
            .with_header("Retry-After", "10".to_string());
        }
        if e == SessionError::Busy {
            return Reply::error(
                html,
                503,
                "session_busy",
                "Too many sign-ins at once",
                "The gateway is checking many new sessions right now and cannot check yours \
                 yet. Please try again in a few seconds.",
            )
            .with_header("Retry-After", "5".to_string());
        }
        if html {
            if let Some(login) = &session.settings().login_url {
                let return_to = req
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str())
                    .filter(|r| crate::routes::is_local_path(r))
                    .unwrap_or("/");
                return Reply::redirect(login.render(return_to)).with_outcome("login_redirect");
            }
        }
        let message = match e {
            SessionError::Missing => "You are not signed in to the intranet.".to_string(),
            e => format!("Your intranet session is not valid: {e}. Please sign in again."),
        };
        Reply::error(html, 401, "unauthenticated", "Please sign in", &message)
    }
}
