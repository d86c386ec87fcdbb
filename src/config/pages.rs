//! `[pages]` → [`PagesSettings`]: what the gateway's own pages say about the organisation and
//! where they lead — the way back, the help desk, a request-access form.

use serde::Deserialize;

use super::validate::Problems;
use crate::routes::is_local_path;

/// `[pages]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPages {
    pub organisation: Option<String>,
    pub home_url: Option<String>,
    pub help_desk: Option<String>,
    pub help_desk_url: Option<String>,
    pub request_access_url: Option<String>,
}

/// `[pages]`: every key optional; the defaults make pages that need no configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagesSettings {
    /// The organisation's name, shown on every page (`None`: none shown).
    pub organisation: Option<String>,
    /// The way back when the request came from no page on the same host: a local path or an
    /// absolute http(s) URL (default `/`).
    pub home_url: String,
    /// Who to contact, as plain text (`None`: "your help desk").
    pub help_desk: Option<String>,
    /// A link for the help desk: `https:`, `http:` or `mailto:`.
    pub help_desk_url: Option<url::Url>,
    /// On a 403 page, a "Request access" link; `{app}` becomes the app's name, URL-encoded.
    pub request_access_url: Option<String>,
}

impl Default for PagesSettings {
    fn default() -> Self {
        PagesSettings {
            organisation: None,
            home_url: "/".to_string(),
            help_desk: None,
            help_desk_url: None,
            request_access_url: None,
        }
    }
}

/// What `{app}` stands for in `request_access_url`.
pub const APP_PLACEHOLDER: &str = "{app}";

impl PagesSettings {
    /// `request_access_url` for `app` (an app's config name or a route's path), `{app}`
    /// percent-encoded as a query value and the result parsed as a URL.
    pub fn request_access(&self, app: &str) -> Option<url::Url> {
        let template = self.request_access_url.as_deref()?;
        let encoded: String = url::form_urlencoded::byte_serialize(app.as_bytes()).collect();
        url::Url::parse(&template.replace(APP_PLACEHOLDER, &encoded)).ok()
    }
}

pub(super) fn pages_settings(raw: RawPages, p: &mut Problems) -> PagesSettings {
    let defaults = PagesSettings::default();
    let home_url = match raw.home_url {
        None => defaults.home_url,
        Some(home) if is_local_path(&home) => home,
        Some(home) if web_url(&home).is_some() => home,
        Some(home) => {
            p.add(
                "pages.home_url",
                format!(
                    "{home:?} must be a local path (\"/\", \"/home\") or an absolute http(s) URL"
                ),
            );
            defaults.home_url
        }
    };
    let help_desk_url = raw.help_desk_url.and_then(|text| {
        let url = url::Url::parse(&text).ok().filter(|u| match u.scheme() {
            _ if !plain(&text) => false,
            "http" | "https" => web_url(&text).is_some(),
            "mailto" => !u.path().is_empty(),
            _ => false,
        });
        if url.is_none() {
            p.add(
                "pages.help_desk_url",
                format!("{text:?} must be an absolute https:, http: or mailto: URL"),
            );
        }
        url
    });
    let request_access_url = raw.request_access_url.and_then(|template| {
        // Checked as it will be used: with `{app}` filled in, and never in the host (a name
        // would pick the site the link leads to).
        const MARK: &str = "handoffappname";
        let host_free = web_url(&template.replace(APP_PLACEHOLDER, MARK))
            .is_some_and(|u| !u.host_str().unwrap_or_default().contains(MARK));
        if !host_free {
            p.add(
                "pages.request_access_url",
                format!(
                    "{template:?} must be an absolute http(s) URL ({APP_PLACEHOLDER} may stand \
                     for the app's name in its path or query, not its host)"
                ),
            );
            return None;
        }
        Some(template)
    });
    PagesSettings {
        organisation: p.page_text("pages.organisation", raw.organisation, 80),
        home_url,
        help_desk: p.page_text("pages.help_desk", raw.help_desk, 200),
        help_desk_url,
        request_access_url,
    }
}

/// An absolute http(s) URL with a host, written as a browser shows it: `http://` or
/// `https://` then the host (no `http:/\host` or `https:host` that a parser repairs), no
/// spaces, backslashes or control characters.
fn web_url(text: &str) -> Option<url::Url> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let spelled = lower.starts_with("https://") || lower.starts_with("http://");
    let after_scheme = text.split_once("://").map_or("", |(_, rest)| rest);
    (spelled && plain(text) && !after_scheme.starts_with('/'))
        .then(|| url::Url::parse(text).ok())
        .flatten()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// No spaces, backslashes or control characters: a link exactly as written.
fn plain(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}
