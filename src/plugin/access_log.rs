//! The request's end: its metrics, and its one access-log line.
//!
//! The line is a tracing event (target `handoff::access`), so an embedding proxy's subscriber
//! gets it like any other. The `handoff` binary, whose JSON lines go to its batch writer,
//! registers that writer with [`write_json_lines_to`]: the line is then written straight into
//! the batch — the same bytes its JSON formatter would write for the event, without the
//! event's dispatch, field visiting and per-field formatting, which cost most of the line.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora::prelude::*;
use pingora::proxy::Session;
use tracing::Level;

use super::{Handoff, HandoffCtx, PeerAddr};

/// The access log's tracing target.
pub const TARGET: &str = "handoff::access";

/// Takes one whole JSON line.
pub(crate) type LineSink = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Where JSON access lines go when the process's own JSON log writer is installed.
static JSON_SINK: OnceLock<LineSink> = OnceLock::new();

/// Sends every later access line, as one JSON line, to `sink` instead of the tracing
/// dispatcher (which still decides whether `handoff::access` at INFO is on: `RUST_LOG`).
/// Call it only when the installed subscriber writes [`crate::logging::JsonLines`] to the
/// same place, so the log reads the same either way. The first call wins.
#[cfg(feature = "cli")]
pub(crate) fn write_json_lines_to(sink: LineSink) {
    let _ = JSON_SINK.set(sink);
}

impl Handoff {
    /// Call from your `logging`: counts the request in the metrics and, unless
    /// `[log] access = false`, writes one access-log line (target `handoff::access`): method,
    /// path (the query only with `[log] query = true`, and never on a handoff route), status,
    /// route, outcome, upstream, session result and source, the person whenever one was
    /// recognised (`[log] person`; refusals, the portal and `whoami` included), duration, the
    /// error, and the help-desk reference the answer's page showed. Never a token, a cookie or
    /// a secret.
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
            Some(q) if log.query && !handoff_route => Cow::Owned(format!("{}?{q}", req.uri.path())),
            _ => Cow::Borrowed(req.uri.path()),
        };
        let person = ctx
            .identity
            .as_ref()
            .map_or(Cow::Borrowed("-"), |i| gateway.person_for_log(i));
        let error = e.map(crate::errors::summary);
        AccessLine {
            method: req.method.as_str(),
            path: &path,
            status,
            route: route_label.as_str(),
            outcome: ctx.outcome.label(e.is_some()),
            upstream: ctx.upstream.as_ref(),
            session: ctx.session.label(),
            source: ctx.session.source(),
            person: &person,
            duration_ms: (seconds * 1e5).round() / 100.0,
            error: error.as_deref().unwrap_or("-"),
            reference: ctx.reference.as_deref().unwrap_or("-"),
        }
        .log();
    }
}

impl Handoff {
    /// Whether [`Handoff::log_access`] writes `e` into the request's access line (its `error`
    /// field): the access log is on and the failure is the upstream's or the client's, not
    /// the gateway's own. Return it from your `suppress_error_log` so such a failure is one
    /// line, not that and Pingora's ERROR.
    pub fn error_in_access_log(&self, ctx: &HandoffCtx, e: &Error) -> bool {
        self.gateway_of(ctx).log_settings().access
            && matches!(e.esource(), ErrorSource::Upstream | ErrorSource::Downstream)
    }
}

/// The fields of one access-log line, in the order they are written.
pub(crate) struct AccessLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub route: &'a str,
    pub outcome: &'a str,
    /// Shown as `-` when none.
    pub upstream: Option<&'a PeerAddr>,
    pub session: &'a str,
    pub source: &'a str,
    pub person: &'a str,
    pub duration_ms: f64,
    pub error: &'a str,
    /// The help-desk reference the answer's page showed; `-` when none.
    pub reference: &'a str,
}

thread_local! {
    /// The line being written, kept between requests (no allocation per line).
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// `YYYY-MM-DDTHH:MM:SS` of the last second a line was written in.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

impl AccessLine<'_> {
    /// Logs the line: written as JSON into the registered sink when there is one and the
    /// access log is enabled, else emitted as a tracing event.
    pub(crate) fn log(&self) {
        match JSON_SINK.get() {
            Some(sink) => {
                if tracing::enabled!(target: TARGET, Level::INFO) {
                    LINE.with_borrow_mut(|line| {
                        line.clear();
                        self.write_json(line, SystemTime::now());
                        sink(line);
                    });
                }
            }
            None => self.trace(),
        }
    }

    /// The line as a tracing event.
    pub(crate) fn trace(&self) {
        let upstream = self
            .upstream
            .map_or(Cow::Borrowed("-"), |a| Cow::Owned(a.to_string()));
        tracing::info!(
            target: TARGET,
            method = %self.method,
            path = self.path,
            status = self.status,
            route = self.route,
            outcome = self.outcome,
            upstream = &*upstream,
            session = self.session,
            source = self.source,
            person = self.person,
            duration_ms = self.duration_ms,
            error = self.error,
            reference = self.reference,
        );
    }

    /// The line as the JSON log formatter writes the event [`AccessLine::trace`] emits (a
    /// test holds the two to the same bytes).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>, now: SystemTime) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\"");
        field(out, "method", self.method);
        field(out, "path", self.path);
        field(out, "status", u64::from(self.status));
        field(out, "route", self.route);
        field(out, "outcome", self.outcome);
        out.extend_from_slice(b",\"upstream\":");
        write_upstream(out, self.upstream);
        field(out, "session", self.session);
        field(out, "source", self.source);
        field(out, "person", self.person);
        field(out, "duration_ms", self.duration_ms);
        field(out, "error", self.error);
        field(out, "reference", self.reference);
        out.extend_from_slice(b",\"target\":\"handoff::access\"}\n");
    }
}

/// The upstream's address as a JSON string, as its `Display` writes it: an IPv4 address and
/// port digit by digit (the usual case, without the formatting machinery), any other through
/// `Display` and escaping.
fn write_upstream(out: &mut Vec<u8>, upstream: Option<&PeerAddr>) {
    match upstream.and_then(PeerAddr::as_inet) {
        Some(std::net::SocketAddr::V4(v4)) => {
            out.push(b'"');
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                json(out, octet);
            }
            out.push(b':');
            json(out, v4.port());
            out.push(b'"');
        }
        _ => json(
            out,
            upstream.map_or(Cow::Borrowed("-"), |a| Cow::Owned(a.to_string())),
        ),
    }
}

/// Appends `,"name":value` (`name` needs no escaping: the line's own field names).
fn field(out: &mut Vec<u8>, name: &str, value: impl serde::Serialize) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    json(out, value);
}

/// Appends one JSON value (serde_json: escapes, integers and floats as the formatter does).
fn json(out: &mut Vec<u8>, value: impl serde::Serialize) {
    // Writing into a Vec cannot fail, and these values always serialize.
    let _ = serde_json::to_writer(out, &value);
}

/// `2026-11-30T19:42:56.123456Z` (UTC, microseconds): the timestamp of every JSON log line
/// (the access line's and [`crate::logging::JsonLines`]'). The date and time of day are
/// formatted once per second per thread.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            *second = secs;
            *text = civil_second(secs);
        }
        out.extend_from_slice(text);
    });
    let micros = since.subsec_micros();
    let mut frac = *b".000000Z";
    let mut rest = micros;
    for digit in frac[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&frac);
}

/// `YYYY-MM-DDTHH:MM:SS` for a second since the epoch (years 0–9999).
fn civil_second(secs: u64) -> [u8; 19] {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut text = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, u32::try_from(at.year()).unwrap_or(0));
    put(5, 2, u32::from(u8::from(at.month())));
    put(8, 2, u32::from(at.day()));
    put(11, 2, u32::from(at.hour()));
    put(14, 2, u32::from(at.minute()));
    put(17, 2, u32::from(at.second()));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let at = UNIX_EPOCH + Duration::new(1_796_067_776, 7_000);
        let mut out = Vec::new();
        write_timestamp(&mut out, at);
        assert_eq!(out, b"2026-11-30T19:42:56.000007Z");
        out.clear();
        // The cached second is not reused for another second.
        write_timestamp(
            &mut out,
            at + Duration::from_micros(999_993 + 3_600_000_000),
        );
        assert_eq!(out, b"2026-11-30T20:42:57.000000Z");
        out.clear();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::new(951_782_400, 0));
        assert_eq!(out, b"2000-02-29T00:00:00.000000Z");
    }
}
