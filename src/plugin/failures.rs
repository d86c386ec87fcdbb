//! When proxying fails: retrying a refused connection on the route's other servers, a clear
//! page for a failed attempt, and the 404 for requests nobody routes.

use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};

use super::{write_reply, Handoff, HandoffCtx, Outcome};
use crate::reply::{wants_html, Reply};

impl Handoff {
    /// Call from your `fail_to_connect`: a refused connection is retried on the route's other
    /// servers, once each.
    pub fn fail_to_connect(&self, ctx: &mut HandoffCtx, mut e: Box<Error>) -> Box<Error> {
        ctx.connect_failures += 1;
        if let Some(route) = ctx.route {
            let servers = self
                .gateway_of(ctx)
                .upstream_for(route)
                .map_or(0, |g| g.server_count());
            if ctx.connect_failures < servers {
                e.set_retry(true);
            }
        }
        e
    }

    /// Optional, from your `fail_to_proxy`: answers a failed proxy attempt with a clear 502 /
    /// 504 / 400 page (HTML for browsers, JSON otherwise; no internals) and closes the
    /// connection.
    pub async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut HandoffCtx,
    ) -> FailToProxy {
        let code = proxy_error_status(e);
        if code > 0 && session.response_written().is_none() {
            let html = wants_html(&session.req_header().headers);
            let (title, message) = match code {
                _ if ctx.outcome == Outcome::Answered("page_too_large") => (
                    "The intranet page is too large",
                    "This page is larger than the gateway checks for sign-in codes \
                     (widget_max_page_bytes), so it was not sent.",
                ),
                _ if ctx.outcome == Outcome::Answered("page_not_checked") => (
                    "The intranet page could not be checked",
                    "The intranet sent this page compressed, but not validly, so the gateway \
                     cannot make sure it carries no stale sign-in code. Reloading the page \
                     usually helps.",
                ),
                502 => (
                    "The intranet is not answering",
                    "The gateway could not reach the intranet server. Please try again in a moment.",
                ),
                504 => (
                    "The intranet is taking too long",
                    "The intranet server did not answer in time. Please try again in a moment.",
                ),
                400..=499 => ("Bad request", "The gateway could not understand this request."),
                _ => (
                    "Something went wrong",
                    "The gateway hit an unexpected problem. Please try again.",
                ),
            };
            let outcome = ctx.outcome.label(true);
            let reply = Reply::error(html, code, outcome, title, message);
            // The connection is not reused after a failed proxy attempt: say so, or the client
            // sends its next request into a closing socket.
            session.set_keepalive(None);
            let gateway = self.gateway_of(ctx).into_owned();
            match write_reply(session, reply, gateway.pages()).await {
                Ok(reference) => ctx.reference = reference,
                Err(write_err) => tracing::debug!("could not send the error page: {write_err}"),
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Optional, for requests Handoff does not route ([`Filtered::NotMine`](crate::Filtered::NotMine)) when you have no
    /// route for them either: a 404 page.
    pub async fn answer_not_found(
        &self,
        session: &mut Session,
        ctx: &mut HandoffCtx,
    ) -> Result<()> {
        let html = wants_html(&session.req_header().headers);
        let gateway = self.gateway_of(ctx).into_owned();
        ctx.outcome = Outcome::Answered("no_route");
        ctx.reference = write_reply(session, gateway.not_found(html), gateway.pages()).await?;
        Ok(())
    }
}

/// The status a failed proxy attempt answers with; 0 when the client is gone.
fn proxy_error_status(e: &Error) -> u16 {
    match e.etype() {
        HTTPStatus(code) => *code,
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
            if e.esource() == &ErrorSource::Downstream {
                0
            } else {
                504
            }
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}
