//! What a proxied HTML page's widget tags get: which requests may carry a signed-in widget,
//! the rewriter for a page, and the page-size cap.

use http::request::Parts;
use http::HeaderValue;

use super::{Gateway, Widgets};
use crate::apps::widget::WidgetRewriter;
use crate::identity::Identity;
use crate::reply::wants_html;

impl Gateway {
    /// What a request's answer does with widget tags: nothing without widget apps; a fresh code
    /// only for a browser's top-level `GET` navigation for an HTML page (`Sec-Fetch-Mode`
    /// absent or `navigate`, `Sec-Fetch-Dest` absent or `document`) — never for a `fetch()`, a
    /// frame or a sub-resource, whose answer another page's script could read, nor for a
    /// prefetch or prerender nobody may ever look at; otherwise any code is stripped.
    pub fn widgets_for(&self, req: &Parts) -> Widgets {
        if self.widget_apps.is_empty() {
            return Widgets::Off;
        }
        let header = |name| req.headers.get(name).map(|v: &HeaderValue| v.as_bytes());
        let navigation = matches!(header("sec-fetch-mode"), None | Some(b"navigate"))
            && matches!(header("sec-fetch-dest"), None | Some(b"document"));
        if navigation
            && req.method == http::Method::GET
            && wants_html(&req.headers)
            && !super::guards::is_speculative(&req.headers)
        {
            Widgets::SignIn
        } else {
            Widgets::Strip
        }
    }

    /// A rewriter that signs in (or, without a person, strips) the widgets of every app with
    /// `widget = true`, and puts the contact script before the YourGPT chatbot widget of every
    /// app with `[apps.NAME.widget]` that admits the person; past [`Gateway::widget_page_cap`] bytes a page passes untouched.
    pub fn widget_rewriter(&self, identity: Option<&Identity>) -> Option<WidgetRewriter> {
        let cap = self.widget_page_cap?;
        let targets: Vec<_> = self
            .widget_apps
            .iter()
            .filter_map(|&i| self.apps[i].widget_target(identity))
            .collect();
        let contacts: Vec<_> = match (&self.session, identity) {
            (Some(session), Some(_)) => self
                .widget_apps
                .iter()
                .filter_map(|&i| self.apps[i].contact_target(identity, session.mapping()))
                .collect(),
            _ => Vec::new(),
        };
        if targets.is_empty() && contacts.is_empty() {
            return None;
        }
        Some(WidgetRewriter::new(targets, cap).with_contacts(contacts))
    }

    /// The largest page whose widget tags are rewritten (and the most a compressed one is
    /// inflated to): the smallest `widget_max_page_bytes` of the widget apps; `None` without one.
    pub fn widget_page_cap(&self) -> Option<usize> {
        self.widget_page_cap
    }
}
