//! The route table: which route a request belongs to.
//!
//! A request first looks at routes for its host, most specific first (an exact host, then the
//! longest `*.suffix`, then routes without a host); among those, the longest path prefix wins.
//! Prefixes match whole segments: `/ai` matches `/ai`, `/ai/` and `/ai/x`, never `/aix`. Common
//! upstreams read further, and the gateway holds a protected route's rules for every path such
//! a reading lands on it (`Gateway::decide`, `path_readings`): a plain string prefix (nginx
//! `location /admin`, Envoy `prefix` serve `/adminx`, `/admin.json`, `/admin%20/x` from
//! `/admin`; [`RouteTable::find_string_prefix`]), a `.format` suffix removed (Rails, Spring;
//! [`without_format`]), and Windows/IIS — trailing dots and spaces of every segment dropped,
//! case folded ([`windows_form`]).
//!
//! Paths are compared in a normal form, so that `/%61i`, `//ai` and `/x/../ai` cannot slip past
//! a route meant for `/ai`: unreserved percent-escapes are decoded, repeated slashes are merged
//! and dot segments are removed. The gateway forwards that same form (see [`crate::paths`]), so
//! the route decided on is the route the upstream serves.

use std::borrow::Cow;
use std::collections::HashMap;

/// A route's `host`: `intranet.example.com` (exact) or `*.example.com` (any subdomain, not the
/// bare domain). Matching ignores case, a port and a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// Stored with its leading dot: `.example.com`.
    Suffix(String),
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(format!(
                "{raw:?} is not a host name; write `intranet.example.com` or `*.example.com`"
            ));
        }
        Ok(if wild {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// `host` must already be normalised by [`normalize_host`].
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// Higher is more specific.
    fn rank(&self) -> (u8, usize) {
        match self {
            HostPattern::Exact(_) => (2, 0),
            HostPattern::Suffix(s) => (1, s.len()),
        }
    }
}

/// Lowercases a `Host` value and drops its port and trailing dot.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let trimmed = without_port.trim_end_matches('.');
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// Checks a route's configured `path` and returns it in normal form (no trailing slash except
/// for `/` itself).
pub fn parse_route_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("{raw:?} must start with `/`"));
    }
    if raw.contains(['?', '#']) || raw.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "{raw:?} must be a plain path (no query, fragment, spaces or control characters)"
        ));
    }
    let normal = normalize_path(raw);
    let trimmed = normal.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// The normal form used for matching (see the module docs). Allocates only when it must.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let needs_work = path.contains('%') || path.contains("//") || path.contains("/.");
    if !needs_work {
        return Cow::Borrowed(path);
    }
    Cow::Owned(crate::paths::resolve(&crate::paths::decode_unreserved(
        path,
    )))
}

/// The path with its last segment's `.format` suffix removed (from its first dot on), when it
/// has one after at least one other character: `/admin.json` → `/admin`.
pub fn without_format(path: &str) -> Option<&str> {
    let last = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[last..].find('.')?;
    (dot > 0).then(|| &path[..last + dot])
}

/// The path as Windows/IIS reads it (trailing dots and spaces of every segment dropped:
/// `/admin./x`, `/admin%20/x` are `/admin/x`), lower-cased; `None` when that is
/// the path itself.
pub fn windows_form(path: &str) -> Option<String> {
    let trimmed = |seg: &str| -> usize {
        let mut s = seg;
        loop {
            if let Some(rest) = s.strip_suffix(['.', ' ']) {
                s = rest;
            } else if let Some(rest) = s.strip_suffix("%20") {
                s = rest;
            } else {
                return s.len();
            }
        }
    };
    let changes = path.bytes().any(|b| b.is_ascii_uppercase())
        || path
            .split('/')
            .any(|seg| !matches!(seg, "." | "..") && trimmed(seg) != seg.len());
    if !changes {
        return None;
    }
    let folded: Vec<&str> = path
        .split('/')
        .map(|seg| {
            if matches!(seg, "." | "..") {
                seg
            } else {
                &seg[..trimmed(seg)]
            }
        })
        .collect();
    Some(normalize_path(&folded.join("/")).to_ascii_lowercase())
}

/// A path on this site: starts with `/`, and is not `//host` or `/\\host` (which browsers
/// read as another site). Control characters are refused anywhere: browsers drop tabs and
/// newlines before reading a URL, so `/<TAB>/host` is `//host` to them.
pub fn is_local_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.starts_with("//")
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
}

/// `"ai"` for `/ai/chat` and `/ai;x/chat`; `""` for `/`.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split(['/', ';']).next().unwrap_or_default()
}

/// Whether `prefix` (in normal form) matches `path` (in normal form) on a segment boundary. A
/// `;` ends a segment too: `/ai;jsessionid=1/x` is under `/ai`, as a servlet container reads it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/' | b';')))
}

/// Whether a route's host pattern admits a request's (normalised) host.
fn host_matches(pattern: Option<&HostPattern>, host: Option<&str>) -> bool {
    match (pattern, host) {
        (None, _) => true,
        (Some(p), Some(h)) => p.matches(h),
        (Some(_), None) => false,
    }
}

struct Entry<T> {
    host: Option<HostPattern>,
    prefix: String,
    value: T,
}

/// Routes in match order. Built once at load time.
///
/// A request only looks at the routes that can match it: those whose prefix starts with the
/// path's first segment, and the catch-alls (`/`), merged in match order — so a table of a
/// thousand routes costs about what a table of ten does.
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
    /// First path segment → indexes into `entries`, ascending.
    by_segment: HashMap<String, Vec<usize>>,
    /// Indexes of the `/` routes, ascending.
    catch_all: Vec<usize>,
}

impl<T> RouteTable<T> {
    /// `routes` are (host, normal-form path prefix, value). Earlier routes win exact ties.
    pub fn new(routes: impl IntoIterator<Item = (Option<HostPattern>, String, T)>) -> Self {
        let mut entries: Vec<Entry<T>> = routes
            .into_iter()
            .map(|(host, prefix, value)| Entry {
                host,
                prefix,
                value,
            })
            .collect();
        // Stable sort: most specific host first, then the longest prefix.
        entries.sort_by(|a, b| {
            let rank = |e: &Entry<T>| e.host.as_ref().map_or((0, 0), HostPattern::rank);
            rank(b)
                .cmp(&rank(a))
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        let mut by_segment: HashMap<String, Vec<usize>> = HashMap::new();
        let mut catch_all = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if e.prefix == "/" {
                catch_all.push(i);
            } else {
                by_segment
                    .entry(first_segment(&e.prefix).to_string())
                    .or_default()
                    .push(i);
            }
        }
        RouteTable {
            entries,
            by_segment,
            catch_all,
        }
    }

    /// The route a plain string prefix lands `path` on (nginx's `location /prefix`): the
    /// first route in match order whose host matches and whose prefix begins the path. Reads
    /// every route: for the rare path that a string prefix may take elsewhere.
    pub fn find_string_prefix(&self, host: Option<&str>, path: &str) -> Option<&T> {
        let host = host.map(normalize_host);
        let path = normalize_path(path);
        self.entries
            .iter()
            .find(|e| host_matches(e.host.as_ref(), host.as_deref()) && path.starts_with(&e.prefix))
            .map(|e| &e.value)
    }

    /// Finds the route for a request. `host` is the raw `Host` (or `:authority`) value.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&T> {
        let host = host.map(normalize_host);
        let path = normalize_path(path);
        let same_segment = self
            .by_segment
            .get(first_segment(&path))
            .map_or(&[][..], Vec::as_slice);
        let matches = |i: usize| {
            let e = &self.entries[i];
            host_matches(e.host.as_ref(), host.as_deref()) && prefix_matches(&e.prefix, &path)
        };
        // Both lists ascend in match order: walk them merged.
        let (mut a, mut b) = (
            same_segment.iter().peekable(),
            self.catch_all.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => return None,
            };
            if let Some(&i) = next {
                if matches(i) {
                    return Some(&self.entries[i].value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(Option<&str>, &str, u32)]) -> RouteTable<u32> {
        RouteTable::new(routes.iter().map(|(h, p, v)| {
            (
                h.map(|h| HostPattern::parse(h).unwrap()),
                parse_route_path(p).unwrap(),
                *v,
            )
        }))
    }

    #[test]
    fn the_segment_index_finds_what_a_full_scan_finds() {
        let t = table(&[
            (None, "/", 1),
            (Some("intranet.example"), "/", 2),
            (None, "/ai", 3),
            (Some("*.example"), "/ai/chat", 4),
            (None, "/ai/chat/x", 5),
            (Some("other.example"), "/docs", 6),
            (None, "/docs/api", 7),
        ]);
        let scan = |host: Option<&str>, path: &str| {
            let host = host.map(normalize_host);
            let path = normalize_path(path);
            t.entries
                .iter()
                .find(|e| {
                    let host_ok = match (&e.host, &host) {
                        (None, _) => true,
                        (Some(p), Some(h)) => p.matches(h),
                        (Some(_), None) => false,
                    };
                    host_ok && prefix_matches(&e.prefix, &path)
                })
                .map(|e| e.value)
        };
        for host in [
            None,
            Some("intranet.example"),
            Some("a.example"),
            Some("other.example"),
        ] {
            for path in [
                "/",
                "/ai",
                "/ai/",
                "/aix",
                "/ai/chat",
                "/ai/chat/x/y",
                "/ai/%63hat",
                "/docs",
                "/docs/api/v1",
                "//docs/api",
                "/x/../ai/chat",
                "",
                "/nothing",
            ] {
                assert_eq!(
                    t.find(host, path).copied(),
                    scan(host, path),
                    "{host:?} {path}"
                );
            }
        }
        // A host's catch-all ranks above a hostless longer prefix.
        assert_eq!(t.find(Some("intranet.example"), "/docs/api"), Some(&2));
    }

    #[test]
    fn longest_segment_prefix_wins() {
        let t = table(&[(None, "/", 1), (None, "/ai", 2), (None, "/ai/chat/", 3)]);
        assert_eq!(t.find(None, "/"), Some(&1));
        assert_eq!(t.find(None, "/aix"), Some(&1));
        assert_eq!(t.find(None, "/ai"), Some(&2));
        assert_eq!(t.find(None, "/ai/"), Some(&2));
        assert_eq!(t.find(None, "/ai/chatter"), Some(&2));
        assert_eq!(t.find(None, "/ai/chat"), Some(&3));
        assert_eq!(t.find(None, "/ai/chat/x"), Some(&3));
    }

    #[test]
    fn no_route_is_none() {
        let t = table(&[(None, "/app", 1)]);
        assert_eq!(t.find(None, "/other"), None);
        assert_eq!(t.find(None, "/"), None);
    }

    #[test]
    fn host_specificity_before_path_length() {
        let t = table(&[
            (None, "/", 1),
            (None, "/api", 2),
            (Some("*.corp.example"), "/", 3),
            (Some("ai.corp.example"), "/", 4),
            (Some("ai.corp.example"), "/x", 5),
        ]);
        assert_eq!(t.find(Some("AI.corp.example:8080"), "/api"), Some(&4));
        assert_eq!(t.find(Some("ai.corp.example."), "/x/y"), Some(&5));
        assert_eq!(t.find(Some("hr.corp.example"), "/api"), Some(&3));
        assert_eq!(t.find(Some("a.b.corp.example"), "/"), Some(&3));
        assert_eq!(t.find(Some("corp.example"), "/api"), Some(&2));
        assert_eq!(t.find(None, "/"), Some(&1));
    }

    #[test]
    fn encoded_and_dotted_paths_cannot_dodge_a_route() {
        let t = table(&[(None, "/", 1), (None, "/admin", 2)]);
        assert_eq!(t.find(None, "/%61dmin"), Some(&2));
        assert_eq!(t.find(None, "/%61DMIN"), Some(&1));
        assert_eq!(t.find(None, "//admin"), Some(&2));
        assert_eq!(t.find(None, "/public/../admin/x"), Some(&2));
        assert_eq!(t.find(None, "/public/%2e%2e/admin"), Some(&2));
        assert_eq!(t.find(None, "/./admin"), Some(&2));
        // Escaped slashes are the gateway's to refuse or decode first (crate::paths).
        assert_eq!(t.find(None, "/admin%2Fx"), Some(&1));
        assert_eq!(t.find(None, "/admin;jsessionid=1/x"), Some(&2));
        assert_eq!(t.find(None, "/../../admin"), Some(&2));
    }

    #[test]
    fn the_readings_of_common_upstreams() {
        assert_eq!(without_format("/admin.json"), Some("/admin"));
        assert_eq!(without_format("/admin."), Some("/admin"));
        assert_eq!(without_format("/x/admin.tar.gz"), Some("/x/admin"));
        assert_eq!(without_format("/.well-known"), None);
        assert_eq!(without_format("/admin"), None);
        assert_eq!(without_format("/a.b/c"), None);
        assert_eq!(windows_form("/admin/x"), None);
        assert_eq!(windows_form("/admin./x").as_deref(), Some("/admin/x"));
        assert_eq!(windows_form("/admin../x").as_deref(), Some("/admin/x"));
        assert_eq!(windows_form("/admin%20/x").as_deref(), Some("/admin/x"));
        assert_eq!(windows_form("/admin .%20").as_deref(), Some("/admin"));
        assert_eq!(windows_form("/ADMIN/X").as_deref(), Some("/admin/x"));
        let t = table(&[
            (None, "/", 1),
            (None, "/admin", 2),
            (None, "/adminpublic", 3),
        ]);
        assert_eq!(t.find_string_prefix(None, "/adminx"), Some(&2));
        assert_eq!(t.find_string_prefix(None, "/admin%20/x"), Some(&2));
        assert_eq!(t.find_string_prefix(None, "/adminpublic/x"), Some(&3));
        assert_eq!(t.find_string_prefix(None, "/other"), Some(&1));
    }

    #[test]
    fn normalize_path_edges() {
        assert_eq!(normalize_path("/a/b"), "/a/b");
        assert_eq!(normalize_path("/a/./b/"), "/a/b/");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/%"), "/%");
        assert_eq!(normalize_path("/%4"), "/%4");
        assert_eq!(normalize_path("/%zz/é%41"), "/%zz/éA");
    }

    #[test]
    fn bad_route_paths_and_hosts_are_refused() {
        assert!(parse_route_path("ai").is_err());
        assert!(parse_route_path("/ai?x").is_err());
        assert!(parse_route_path("/a i").is_err());
        assert_eq!(parse_route_path("/ai/").unwrap(), "/ai");
        assert_eq!(parse_route_path("/").unwrap(), "/");
        assert!(HostPattern::parse("*.").is_err());
        assert!(HostPattern::parse("a..b").is_err());
        assert!(HostPattern::parse("http://x").is_err());
        assert!(HostPattern::parse("a*.b").is_err());
    }
}
