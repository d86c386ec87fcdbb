//! The request's end: its metrics, and its one access-log line.

use std::borrow::Cow;

use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Handoff, HandoffCtx};

impl Handoff {
    /// Call from your `logging`: counts the request in the metrics and, unless
    /// `[log] access = false`, writes one access-log line (target `handoff::access`): method,
    /// path (the query only with `[log] query = true`, and never on a handoff route), status,
    /// route, outcome, upstream, session result and source, the person (`[log] person`),
    /// duration. Never a token, a cookie or a secret.
    pub fn log_access(&self, session: &Session, e: Option<&Error>, ctx: &HandoffCtx) {
        let gateway = self.gateway_of(ctx);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.map(|r| gateway.route(r));
        let (route_label, route_metrics) = gateway.route_metrics(ctx.route);
        let seconds = ctx.started.elapsed().as_secs_f64();
        route_metrics.record(status, seconds);
        let log = gateway.log_settings();
        if !log.access {
            return;
        }
        let req = session.req_header();
        let handoff_route = route.is_some_and(|r| r.target.is_app());
        let path = match req.uri.query() {
            Some(q) if log.query && !handoff_route => format!("{}?{q}", req.uri.path()),
            _ => req.uri.path().to_string(),
        };
        let person = ctx
            .identity
            .as_ref()
            .map_or(Cow::Borrowed("-"), |i| gateway.person_for_log(i));
        let upstream = ctx.upstream.as_ref().map(|a| a.to_string());
        let outcome = ctx.outcome.label(e.is_some());
        tracing::info!(
            target: "handoff::access",
            method = %req.method,
            path,
            status,
            route = route_label.as_str(),
            outcome,
            upstream = upstream.as_deref().unwrap_or("-"),
            session = ctx.session.label(),
            source = ctx.session.source(),
            person = &*person,
            duration_ms = (seconds * 1e5).round() / 100.0,
            error = e.map(|e| e.to_string()).as_deref().unwrap_or("-"),
        );
    }
}
