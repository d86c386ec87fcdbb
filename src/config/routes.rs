//! `[[routes]]` → [`RouteSettings`], with references to upstreams and apps resolved.

use std::collections::BTreeMap;

use super::raw::*;
use super::validate::Problems;
use super::*;
use crate::paths::EscapedSlashes;
use crate::routes::{normalize_path, parse_route_path, HostPattern};

pub(super) struct RouteContext<'a> {
    /// Name → index; `usize::MAX` for an upstream or app that exists but is itself broken.
    pub upstreams: &'a BTreeMap<String, usize>,
    pub apps: &'a BTreeMap<String, usize>,
    /// Whether the file has a `[session]` section (a wrong one is reported under its own keys).
    pub has_session: bool,
    pub endpoints_prefix: &'a str,
    /// `server.escaped_slashes`.
    pub escaped_slashes: EscapedSlashes,
}

pub(super) fn route_settings(
    key: String,
    raw: RawRoute,
    ctx: &RouteContext,
    p: &mut Problems,
) -> Option<RouteSettings> {
    let before = p.error_count();
    let path = parse_route_path(&raw.path)
        .map_err(|e| p.add(format!("{key}.path"), e))
        .ok();
    if let (Some(path), false) = (&path, ctx.endpoints_prefix == "/") {
        let prefix = ctx.endpoints_prefix;
        if normalize_path(path).starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes().get(prefix.len()) == Some(&b'/'))
        {
            p.add(
                format!("{key}.path"),
                format!("{path:?} is under server.endpoints_prefix ({prefix:?}), which the gateway answers itself"),
            );
        }
    }
    let host = raw.host.as_deref().and_then(|h| {
        HostPattern::parse(h)
            .map_err(|e| p.add(format!("{key}.host"), e))
            .ok()
    });
    let target = match (&raw.upstream, &raw.app) {
        (Some(_), Some(_)) => {
            p.add(key.clone(), "give either `upstream` or `app`, not both");
            None
        }
        (None, None) => {
            p.add(
                key.clone(),
                "needs `upstream = \"NAME\"` (proxy) or `app = \"NAME\"` (hand off)",
            );
            None
        }
        (None, Some(name)) => lookup(&key, "app", name, ctx.apps, p).map(RouteTarget::App),
        (Some(name), None) => {
            lookup(&key, "upstream", name, ctx.upstreams, p).map(RouteTarget::Upstream)
        }
    };
    let is_app = matches!(target, Some(RouteTarget::App(_)));
    if is_app && raw.require_session == Some(false) {
        p.add(
            format!("{key}.require_session"),
            "a handoff route always requires a session",
        );
    }
    if is_app && raw.identity_headers == Some(true) {
        p.add(
            format!("{key}.identity_headers"),
            "a handoff route sends nothing upstream; identity headers do not apply",
        );
    }
    let allow = p.allow(&key, raw.allow);
    if raw.require_session == Some(false) && allow.is_some() {
        p.add(
            format!("{key}.require_session"),
            "is false, but `allow` rules need a session",
        );
    }
    let escaped_slashes = p
        .escaped_slashes(
            &format!("{key}.escaped_slashes"),
            raw.escaped_slashes.as_deref(),
        )
        .unwrap_or(if is_app {
            // Nothing is forwarded from a handoff route: only the route must be the same under
            // every reading, which `keep` checks; a deep link's `%2F` reaches the app as sent.
            EscapedSlashes::Keep
        } else {
            ctx.escaped_slashes
        });
    let path_readings = match raw.path_readings.as_deref() {
        None | Some("all") => PathReadings::All,
        Some("segments") => PathReadings::Segments,
        Some(other) => {
            p.add(
                format!("{key}.path_readings"),
                format!("unknown value {other:?}; use \"all\" or \"segments\""),
            );
            PathReadings::All
        }
    };
    let require_session = raw.require_session.unwrap_or(false) || allow.is_some() || is_app;
    let identity_headers = raw.identity_headers.unwrap_or(false);
    if (require_session || identity_headers) && !ctx.has_session {
        p.add(
            key.clone(),
            "needs a session (require_session, allow or identity_headers), but there is no [session] section",
        );
    }
    if p.error_count() > before {
        return None;
    }
    let target = target?;
    if matches!(
        target,
        RouteTarget::Upstream(usize::MAX) | RouteTarget::App(usize::MAX)
    ) {
        // The upstream or app itself is broken and already reported.
        return None;
    }
    Some(RouteSettings {
        key,
        path: path?,
        host,
        target,
        require_session,
        allow,
        identity_headers,
        escaped_slashes,
        path_readings,
    })
}

/// Resolves a route's `upstream`/`app` name, listing the defined ones when it is unknown.
fn lookup(
    key: &str,
    what: &str,
    name: &str,
    known: &BTreeMap<String, usize>,
    p: &mut Problems,
) -> Option<usize> {
    if let Some(&i) = known.get(name) {
        return Some(i);
    }
    let names: Vec<&str> = known.keys().map(String::as_str).collect();
    p.add(
        format!("{key}.{what}"),
        format!(
            "no {what} named {name:?} (defined: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    );
    None
}
