//! The gateway's decisions for one request, made once in `request_filter`: answer it here (own
//! endpoints, no route, login redirect, denial) or proxy it on a route, with or without a
//! recognised person. Works on `http` types only; the `plugin` module is the Pingora glue.

use std::sync::Arc;

use http::header::HOST;
use http::request::Parts;

use crate::apps::limits::EmailLimits;
use crate::apps::App;
use crate::config::{
    Config, IdentityHeaderNames, LogSettings, PersonInLog, RouteSettings, RouteTarget,
    ServerSettings,
};
use crate::identity::Identity;
use crate::intranet_session::jwks::Jwks;
use crate::intranet_session::{BuildError, SessionError, SessionVerifier, Source};
use crate::metrics::{Metrics, RouteMetrics};
use crate::reply::{wants_html, Reply};
use crate::routes::{windows_form, without_format, RouteTable};
use crate::shared_state::SharedState;
use crate::upstream::UpstreamGroup;

mod endpoints;
mod guards;
mod handoffs;
mod identity_headers;
mod inbound;
mod refusals;
mod state;
mod widgets;

pub use state::StateCollector;

pub use inbound::is_host_and_port;

use guards::handoff_guard;

/// Everything the gateway needs at request time, built once from a [`Config`].
pub struct Gateway {
    server: ServerSettings,
    log: LogSettings,
    metrics: Arc<Metrics>,
    /// Per route (by index), then one for requests no route matches; with each route's label.
    route_metrics: Vec<(String, RouteMetrics)>,
    table: RouteTable<usize>,
    /// The same routes with their prefixes lower-cased: Windows' reading of a path.
    folded: RouteTable<usize>,
    /// Prefixes of the routes whose rules other readings of a path must also meet (proxy
    /// routes requiring a session, `path_readings = "all"`); empty: no reading is computed.
    guarded: Vec<String>,
    /// Whether a guarded prefix has upper-case letters (then every path is case-folded for
    /// Windows' reading, not only those with upper-case letters).
    guarded_uppercase: bool,
    routes: Vec<RouteSettings>,
    /// `[session]`, built: who the person is (and, in its settings, where a browser signs in).
    session: Option<SessionVerifier>,
    identity_headers: IdentityHeaderNames,
    upstreams: Vec<UpstreamGroup>,
    apps: Vec<App>,
    /// Indexes of the apps that sign in widgets on proxied pages.
    widget_apps: Vec<usize>,
    /// The smallest `widget_max_page_bytes` of those apps (`None` without one).
    widget_page_cap: Option<usize>,
    /// Set once a group name was left out of the groups header (so it is logged once).
    dropped_group_logged: std::sync::atomic::AtomicBool,
    /// `[state]`, built: the Redis the fleet shares (lent on by a reload that keeps it).
    shared: Option<Arc<SharedState>>,
    /// Set when the process is about to stop: `readyz` answers 503 (shared by every config
    /// the process loads).
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// `[pages]`: what the gateway's pages say and where they lead.
    pages: crate::config::PagesSettings,
}

/// What to do with a request. A handoff borrows what it needs from the gateway that decided
/// it, so running it cannot miss an app or a session.
pub enum Decision<'g> {
    /// Answer it here (`route`: the route the request matched, if any; `identity`: the
    /// person, when one was recognised — a refusal, the portal, `whoami` —, for the log).
    Reply {
        reply: Reply,
        route: Option<usize>,
        identity: Option<Arc<Identity>>,
    },
    /// Proxy it on `route` (`None`: no route matches — the host's own request); `identity` is
    /// set when a session was looked for and found. `widgets`: what happens to widget tags in
    /// the response, if it is an HTML page.
    Proxy {
        route: Option<usize>,
        identity: Option<Arc<Identity>>,
        widgets: Widgets,
    },
    /// Hand the recognised, admitted person on (see [`Gateway::handoff`]).
    Handoff {
        route: usize,
        to: HandoffTo<'g>,
        identity: Arc<Identity>,
    },
}

/// Where a handoff goes: the app, the route's prefix (what follows it is a deep link), and the
/// session settings its page and log line use.
pub struct HandoffTo<'g> {
    app: &'g App,
    prefix: &'g str,
    session: &'g SessionVerifier,
}

/// What a proxied HTML page's widget tags get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Widgets {
    /// No app signs in widgets: pages pass as they are.
    Off,
    /// Any `data-external-auth-code` on a widget tag is removed: the request is not a
    /// top-level navigation, or nobody is signed in.
    Strip,
    /// The widget tag gets a fresh code for the person, when the app admits them.
    SignIn,
}

/// The session part of a decision, for the access log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionNote {
    /// The route did not look for a session.
    NotChecked,
    /// Recognised, by this source.
    Valid(Source),
    Invalid(SessionError),
}

impl SessionNote {
    pub fn label(self) -> &'static str {
        match self {
            SessionNote::NotChecked => "-",
            SessionNote::Valid(_) => "valid",
            SessionNote::Invalid(e) => e.reason(),
        }
    }

    /// The source that recognised the person, or `-`.
    pub fn source(self) -> &'static str {
        match self {
            SessionNote::Valid(source) => source.label(),
            _ => "-",
        }
    }
}

impl Gateway {
    /// Builds the gateway for `config`, counting into `metrics`. `previous`, the gateway this
    /// one replaces on a reload, lends what did not change: the session verifier's parts (see
    /// [`SessionVerifier::build`]: warm caches, pooled clients, the key set), and its JWKS keys
    /// when only other key-set settings changed, so tokens keep verifying across the swap.
    pub fn build(
        config: Config,
        metrics: Arc<Metrics>,
        previous: Option<&Gateway>,
    ) -> Result<Self, BuildError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                UpstreamGroup::new(u)
                    .map_err(|e| BuildError::new(format!("upstreams.{}", u.name), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let session = match &config.session {
            Some(settings) => Some(SessionVerifier::build(
                settings,
                previous.and_then(|p| p.session.as_ref()),
            )?),
            None => None,
        };
        // The routes by prefix as written, and lower-cased (Windows' reading).
        let table_of = |prefix: fn(&str) -> String| {
            RouteTable::new(
                config
                    .routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.host.clone(), prefix(&r.path), i)),
            )
        };
        let table = table_of(str::to_string);
        let folded = table_of(str::to_ascii_lowercase);
        let guarded: Vec<String> = config
            .routes
            .iter()
            .filter(|r| r.guards_other_readings())
            .map(|r| r.path.clone())
            .collect();
        let guarded_uppercase = guarded
            .iter()
            .any(|p| p.bytes().any(|b| b.is_ascii_uppercase()));
        let shared = match (&config.state, previous.and_then(|p| p.shared.as_ref())) {
            (Some(settings), Some(old)) if old.settings() == settings => Some(old.clone()),
            (Some(settings), _) => Some(Arc::new(
                SharedState::new(settings.clone())
                    .map_err(|e| BuildError::new("state.redis_url", e))?,
            )),
            (None, _) => None,
        };
        let mut limits = EmailLimits::new(shared.clone());
        let mut apps = config
            .apps
            .into_iter()
            .map(|app| {
                let key = format!("apps.{}", app.name);
                App::new(
                    app,
                    &mut limits,
                    &metrics.vendor_seconds,
                    &config.server.endpoints_prefix,
                )
                .map_err(|e| BuildError::new(key, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for route in &config.routes {
            if let (RouteTarget::App(i), Some(rules)) = (route.target, &route.allow) {
                if let Some(app) = apps.get_mut(i) {
                    app.add_route_rules(rules);
                }
            }
        }
        let widget_apps: Vec<usize> = (0..apps.len())
            .filter(|&i| apps[i].signs_in_widgets())
            .collect();
        let widget_page_cap = widget_apps
            .iter()
            .filter_map(|&i| apps[i].widget_page_cap())
            .min();
        let route_metrics = config
            .routes
            .iter()
            .map(RouteSettings::label)
            .chain(std::iter::once("-".to_string()))
            .map(|label| {
                let m = metrics.for_route(&label);
                (label, m)
            })
            .collect();
        let gateway = Gateway {
            route_metrics,
            widget_apps,
            widget_page_cap,
            apps,
            server: config.server,
            log: config.log,
            metrics,
            table,
            folded,
            guarded,
            guarded_uppercase,
            routes: config.routes,
            session,
            identity_headers: config.identity_headers,
            upstreams,
            dropped_group_logged: Default::default(),
            shared,
            draining: previous.map(|p| p.draining.clone()).unwrap_or_default(),
            pages: config.pages,
        };
        if let (Some(new), Some(old)) = (gateway.jwks(), previous.and_then(Gateway::jwks)) {
            new.adopt_keys(old);
        }
        Ok(gateway)
    }

    /// The label and the request metrics of `route` (`None`: no route matched).
    pub fn route_metrics(&self, route: Option<usize>) -> &(String, RouteMetrics) {
        let unrouted = self.route_metrics.len() - 1;
        &self.route_metrics[route.map_or(unrouted, |r| r.min(unrouted))]
    }

    pub fn log_settings(&self) -> &LogSettings {
        &self.log
    }

    /// `[pages]`.
    pub fn pages(&self) -> &crate::config::PagesSettings {
        &self.pages
    }

    /// The person as the logs may name them (`[log] person`): their id, a keyed hash of it,
    /// or `-`.
    pub fn person_for_log<'a>(&self, identity: &'a Identity) -> std::borrow::Cow<'a, str> {
        match &self.log.person {
            PersonInLog::Id => std::borrow::Cow::Borrowed(identity.id.as_str()),
            PersonInLog::Hash(key) => std::borrow::Cow::Owned(crate::keyed::pseudonym(
                key.expose(),
                identity.id.as_bytes(),
            )),
            PersonInLog::None => std::borrow::Cow::Borrowed("-"),
        }
    }

    pub fn server_settings(&self) -> &ServerSettings {
        &self.server
    }

    pub fn route(&self, index: usize) -> &RouteSettings {
        &self.routes[index]
    }

    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    pub fn upstreams(&self) -> &[UpstreamGroup] {
        &self.upstreams
    }

    /// The JWKS key cache, when the session's keys are published at a URL.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.session.as_ref().and_then(|s| s.jwks())
    }

    /// From now on `readyz` answers 503, in this config and every one a reload brings.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `[state]`'s Redis, when the fleet shares one.
    pub fn shared_state(&self) -> Option<&Arc<SharedState>> {
        self.shared.as_ref()
    }

    /// The session caches' counters, for the metrics.
    pub fn session_cache_counts(
        &self,
    ) -> Vec<(&'static str, &crate::intranet_session::cache::CacheCounts)> {
        self.session
            .as_ref()
            .map(|s| s.cache_counts())
            .unwrap_or_default()
    }

    /// The upstream group a proxy route sends to; `None` for a handoff route.
    pub fn upstream_for(&self, route: usize) -> Option<&UpstreamGroup> {
        match self.routes[route].target {
            RouteTarget::Upstream(i) => self.upstreams.get(i),
            RouteTarget::App(_) => None,
        }
    }

    /// Decides what to do with a request. Only waits when the session must be looked up (a
    /// JWKS refetch for an unknown key, or a userinfo call that is not cached).
    pub async fn decide(&self, req: &Parts) -> (Decision<'_>, SessionNote) {
        if let Some(reply) = self.hostile_framing(req) {
            return (
                Decision::Reply {
                    reply,
                    route: None,
                    identity: None,
                },
                SessionNote::NotChecked,
            );
        }
        let path = req.uri.path();
        if let Some(endpoint) = self.own_endpoint(path) {
            return self.answer_endpoint(endpoint, req).await;
        }
        // Only replies need to know; proxied requests never pay for the Accept scan.
        let html = || wants_html(&req.headers);
        let Some(&index) = self.table.find(request_host(req), path) else {
            return self.unrouted(req).await;
        };
        let route = &self.routes[index];
        if matches!(route.target, RouteTarget::App(_)) {
            if let Some(refusal) = handoff_guard(req) {
                let decision = Decision::Reply {
                    reply: refusal,
                    route: Some(index),
                    identity: None,
                };
                return (decision, SessionNote::NotChecked);
            }
        }
        let widgets = self.widgets_for(req);
        let sign_in =
            matches!(route.target, RouteTarget::Upstream(_)) && widgets == Widgets::SignIn;
        // Routes another reading of the path lands on, whose rules must admit the person too.
        let stricter = match route.target {
            RouteTarget::Upstream(_) => self.other_readings(request_host(req), path, index),
            RouteTarget::App(_) => [None; 4],
        };
        let stricter = stricter.iter().flatten().map(|&i| &self.routes[i]);
        let require_session = route.require_session || stricter.clone().any(|r| r.require_session);
        let (Some(session), true) = (
            &self.session,
            require_session || route.identity_headers || sign_in,
        ) else {
            return (
                Decision::Proxy {
                    route: Some(index),
                    identity: None,
                    widgets,
                },
                SessionNote::NotChecked,
            );
        };
        let handoff = matches!(route.target, RouteTarget::App(_));
        match session.identify(&req.headers, !handoff).await {
            Ok((identity, source)) => {
                let admitted = match route.target {
                    RouteTarget::App(app) => self.apps[app].admits(&identity, route.allow.as_ref()),
                    RouteTarget::Upstream(_) => std::iter::once(route)
                        .chain(stricter)
                        .filter_map(|r| r.allow.as_ref())
                        .try_for_each(|rules| rules.check(&identity)),
                };
                if let Err(denial) = admitted {
                    let who = if identity.email.is_empty() {
                        identity.id.as_str()
                    } else {
                        identity.email.as_str()
                    };
                    let message = format!("You are signed in as {who}. {}", denial.explanation);
                    let (access_to, title) = match route.target {
                        RouteTarget::App(app) => (
                            self.apps[app].name.as_str(),
                            format!(
                                "You do not have access to {}",
                                self.apps[app].display_name()
                            ),
                        ),
                        RouteTarget::Upstream(_) => (
                            route.path.as_str(),
                            "You do not have access to this page".to_string(),
                        ),
                    };
                    let reply = Reply::error(html(), 403, "forbidden", &title, &message)
                        .with_access_to(access_to);
                    let decision = Decision::Reply {
                        reply,
                        route: Some(index),
                        identity: Some(identity),
                    };
                    return (decision, SessionNote::Valid(source));
                }
                let decision = match route.target {
                    RouteTarget::Upstream(_) => Decision::Proxy {
                        route: Some(index),
                        identity: Some(identity),
                        widgets,
                    },
                    RouteTarget::App(app) => Decision::Handoff {
                        route: index,
                        to: HandoffTo {
                            app: &self.apps[app],
                            prefix: route.path.as_str(),
                            session,
                        },
                        identity,
                    },
                };
                (decision, SessionNote::Valid(source))
            }
            Err(e) if require_session => (
                Decision::Reply {
                    reply: self.unauthenticated(session, req, html(), e),
                    route: Some(index),
                    identity: None,
                },
                SessionNote::Invalid(e),
            ),
            Err(e) => (
                Decision::Proxy {
                    route: Some(index),
                    identity: None,
                    widgets,
                },
                SessionNote::Invalid(e),
            ),
        }
    }

    /// The guarded routes other than `index` that a common upstream's reading of `path` lands
    /// on (see [`crate::routes`]): a string prefix, a `.format` suffix removed, the
    /// Windows reading, and a string prefix without regard to case (nginx on a case-insensitive
    /// file system, `location ~* ^/admin`, Caddy, HAProxy `path_beg -i`). Nothing is computed
    /// unless a guarded prefix begins the path (case folded) or the path has something Windows
    /// reads away.
    fn other_readings(&self, host: Option<&str>, path: &str, index: usize) -> [Option<usize>; 4] {
        if self.guarded.is_empty() {
            return [None; 4];
        }
        let path = crate::routes::normalize_path(path);
        // One look at the path says which readings can differ from whole segments.
        let (mut upper, mut dots) = (false, false);
        for b in path.bytes() {
            upper |= b.is_ascii_uppercase();
            dots |= matches!(b, b'.' | b' ' | b'%');
        }
        // A guarded prefix that ends inside one of the path's segments: only then can a string
        // prefix land elsewhere than whole segments do (which the route table already did).
        let mid_segment = |path: &str, g: &str, starts: bool| {
            starts && !matches!(path.as_bytes().get(g.len()), None | Some(b'/' | b';'))
        };
        let string = self
            .guarded
            .iter()
            .any(|g| mid_segment(&path, g, path.starts_with(g.as_str())))
            .then(|| self.table.find_string_prefix(host, &path))
            .flatten();
        // `/admin.json` → `/admin`: only a path whose last segment has a dot.
        let format = dots
            .then(|| without_format(&path))
            .flatten()
            .filter(|p| self.guarded.iter().any(|g| p.starts_with(g.as_str())))
            .and_then(|p| self.table.find(host, p));
        let fold = upper || self.guarded_uppercase;
        let windows = (fold || dots)
            .then(|| windows_form(&path).or_else(|| fold.then(|| path.to_ascii_lowercase())))
            .flatten()
            .and_then(|p| self.folded.find(host, &p));
        // Case-blind string prefixes differ from the plain ones only when case is in play.
        let folded_string = fold
            .then(|| {
                let folded = path.to_ascii_lowercase();
                self.guarded
                    .iter()
                    .any(|g| mid_segment(&folded, g, starts_with_folded(&folded, g)))
                    .then(|| self.folded.find_string_prefix(host, &folded))
                    .flatten()
            })
            .flatten();
        [string, format, windows, folded_string].map(|r| {
            r.copied()
                .filter(|&r| r != index && self.routes[r].guards_other_readings())
        })
    }

    /// A request none of the routes matches: the host's to serve (the standalone gateway answers
    /// 404). If it may be a page with widgets to sign in, the person is looked for — never
    /// required.
    async fn unrouted(&self, req: &Parts) -> (Decision<'_>, SessionNote) {
        let widgets = self.widgets_for(req);
        let not_checked = |widgets| {
            let decision = Decision::Proxy {
                route: None,
                identity: None,
                widgets,
            };
            (decision, SessionNote::NotChecked)
        };
        if widgets != Widgets::SignIn {
            return not_checked(widgets);
        }
        let Some(session) = &self.session else {
            return not_checked(Widgets::Strip);
        };
        let (identity, note) = match session.identify(&req.headers, true).await {
            Ok((identity, source)) => (Some(identity), SessionNote::Valid(source)),
            Err(e) => (None, SessionNote::Invalid(e)),
        };
        let decision = Decision::Proxy {
            route: None,
            identity,
            widgets,
        };
        (decision, note)
    }

    /// The page for a request no route matches.
    pub fn not_found(&self, html: bool) -> Reply {
        Reply::error(
            html,
            404,
            "no_route",
            "Page not found",
            "There is nothing at this address.",
        )
    }
}

/// Whether `folded` (lower-case) begins with `prefix` compared without regard to ASCII case.
fn starts_with_folded(folded: &str, prefix: &str) -> bool {
    folded
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The request's host: the URI's authority (HTTP/2 `:authority`), else the `Host` header —
/// what Pingora sends upstream as `Host`. An absolute-form HTTP/1.1 target has been turned into
/// origin-form with its authority in `Host` by then (see `Gateway::check_host`).
pub fn request_host(req: &Parts) -> Option<&str> {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(HOST).and_then(|h| h.to_str().ok()))
}

#[cfg(test)]
mod tests;
