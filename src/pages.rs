//! The gateway's own HTML pages: small, self-contained, written with `maud` (every dynamic
//! string escaped by construction).
//!
//! Pages never show error internals, peer addresses or tokens — only what the person can act
//! on: what happened, the way back (the page they came from when it is on the same host, else
//! the intranet's home), and who can help, with a reference the help desk finds in the log.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::config::PagesSettings;

/// Pages load nothing from elsewhere and run no script.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const STYLE: &str = r#"body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2433}
main{max-width:34rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.08)}
@media (max-width:36rem){main{margin:0;border-radius:0;min-height:100vh;box-sizing:border-box}}
h1{font-size:1.4rem;margin:0 0 .75rem}
p{line-height:1.5;margin:0 0 1rem}
ul.apps{list-style:none;padding:0;margin:0 0 1rem}
ul.apps li{margin:0 0 .5rem}
a.button,button{display:block;width:100%;box-sizing:border-box;padding:.8rem 1rem;border:1px solid #c9ced6;border-radius:8px;background:#fff;color:#1d4ed8;font:inherit;text-align:left;text-decoration:none;cursor:pointer}
a.button:hover,button:hover,a.button:focus,button:focus{background:#eef2ff;outline:2px solid #1d4ed8}
a.button.primary{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.org{color:#6b7280;font-size:.9rem;margin:0 0 1rem}
.code{color:#6b7280;font-size:.85rem}
.banner{background:#fef3c7;border-radius:8px;padding:.5rem .75rem;font-size:.9rem}"#;

/// Escapes text for HTML element content and quoted attribute values (for the demo's pages,
/// which are written as strings).
pub fn escape(text: &str) -> String {
    html! { (text) }
        .into_string()
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// An error or notice page before it is written: the request it answers decides its way back,
/// and `[pages]` its help-desk line (see [`Page::render`]). Its reference is the reply's
/// ([`crate::reply::Reply::reference`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub title: String,
    pub message: String,
    /// On a 403: what access is asked for (an app's config name, or a route's path), for
    /// `request_access_url`.
    pub access_to: Option<String>,
    /// Not an error (e.g. "check your email"): no status line, no reference.
    pub notice: bool,
}

/// Where a page's way back leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Back {
    pub href: String,
    pub label: &'static str,
}

impl Back {
    /// The referring page when it is on the request's own host (and is not this very
    /// address), else `[pages] home_url`. The link is built from the parsed URL: its path and
    /// query, never its host, so no Referer can make it lead off the site.
    pub fn for_request(
        settings: &PagesSettings,
        host: Option<&str>,
        path_and_query: &str,
        referer: Option<&str>,
    ) -> Back {
        let home = Back {
            href: settings.home_url.clone(),
            label: "Back to the intranet",
        };
        let (Some(host), Some(referer)) = (host, referer) else {
            return home;
        };
        let Ok(from) = url::Url::parse(referer) else {
            return home;
        };
        // The request's host as a URL reads it (case, IDNA, a default port), so both sides
        // are compared in one form.
        let Ok(own) = url::Url::parse(&format!("http://{host}/")) else {
            return home;
        };
        let same_host = matches!(from.scheme(), "http" | "https")
            && from.host() == own.host()
            && from.port() == own.port();
        if !same_host {
            return home;
        }
        let local = match from.query() {
            Some(q) => format!("{}?{q}", from.path()),
            None => from.path().to_string(),
        };
        if local == path_and_query || !crate::routes::is_local_path(&local) {
            return home;
        }
        Back {
            href: local,
            label: "Back to the page you came from",
        }
    }
}

impl Page {
    /// An error page.
    pub fn new(status: u16, title: &str, message: &str) -> Page {
        Page {
            status,
            title: title.to_string(),
            message: message.to_string(),
            access_to: None,
            notice: false,
        }
    }

    /// The page as HTML: the organisation, the message, a request-access link on a 403 when
    /// `[pages]` has one, the way back, and the help desk with `reference`.
    pub fn render(&self, settings: &PagesSettings, back: &Back, reference: Option<&str>) -> String {
        let request_access = (self.status == 403)
            .then(|| settings.request_access(self.access_to.as_deref().unwrap_or_default()))
            .flatten();
        let body = html! {
            h1 { (self.title) }
            p { (self.message) }
            @if let Some(url) = &request_access {
                p { a.button.primary href=(url.as_str()) { "Request access" } }
            }
            p { a.button href=(back.href) { (back.label) } }
            @if !self.notice {
                (help_line(settings, reference))
                p.code { "HTTP " (self.status) }
            }
        };
        document_markup(&self.title, settings.organisation.as_deref(), body)
    }
}

/// "Need help? Contact the IT Service Desk (link) and quote reference ABC123."
fn help_line(settings: &PagesSettings, reference: Option<&str>) -> Markup {
    let desk = settings.help_desk.as_deref().unwrap_or("your help desk");
    html! {
        p.code {
            "Need help? Contact "
            @match &settings.help_desk_url {
                Some(url) => a href=(url.as_str()) { (desk) },
                None => (desk),
            }
            @if let Some(reference) = reference {
                " and quote reference " strong { (reference) } "."
            } @else {
                "."
            }
        }
    }
}

/// The page that posts a sign-in to an app (`delivery = "form_post"`): a form with the fields
/// as hidden inputs, submitted at once by the one script the page's CSP lets run (`nonce`);
/// without script, a button does it. `title` is what the app is called.
pub fn form_post(title: &str, action: &str, fields: &[(String, String)], nonce: &str) -> String {
    let heading = format!("Signing you in to {title}");
    let body = html! {
        h1 { (heading) "…" }
        form method="post" action=(action) {
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            p { "If nothing happens in a moment, continue yourself:" }
            button type="submit" { "Continue to " (title) }
        }
    };
    let script = html! {
        script nonce=(nonce) { (PreEscaped("document.forms[0].submit();")) }
    };
    page_shell(
        &heading,
        None,
        html! { meta name="referrer" content="no-referrer"; },
        body,
        script,
    )
}

/// The CSP of a [`form_post`] page: nothing loads, only the nonce'd script runs. No
/// `form-action`: browsers apply it to the redirects that follow the post, and an app may
/// answer the post with a redirect to another of its hosts (a help centre's own domain).
pub fn form_post_csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
         base-uri 'none'; frame-ancestors 'none'"
    )
}

/// The page shell every HTML page of the gateway (and of the demo) shares: a plain, readable
/// card that works on a laptop and a phone, with no external assets. `title` is plain text;
/// `body` is HTML the caller has escaped.
#[cfg(feature = "demo")]
pub fn document(title: &str, body: &str) -> String {
    document_with_scripts(title, "", body, "")
}

/// [`document`] with HTML put at the start of `<head>` (`head_start`) and at the end of
/// `<body>` (`body_end`), as pages carrying vendor widgets have them.
#[cfg(feature = "demo")]
pub fn document_with_scripts(title: &str, head_start: &str, body: &str, body_end: &str) -> String {
    page_shell(
        title,
        None,
        PreEscaped(head_start.to_string()),
        PreEscaped(body.to_string()),
        PreEscaped(body_end.to_string()),
    )
}

fn document_markup(title: &str, organisation: Option<&str>, body: Markup) -> String {
    page_shell(title, organisation, html! {}, body, html! {})
}

fn page_shell(
    title: &str,
    organisation: Option<&str>,
    head_start: Markup,
    body: Markup,
    body_end: Markup,
) -> String {
    let full_title = match organisation {
        Some(org) => format!("{title} · {org}"),
        None => title.to_string(),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head_start)
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (full_title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    @if let Some(org) = organisation {
                        p.org { (org) }
                    }
                    (body)
                }
                (body_end)
            }
        }
    }
    .into_string()
}

/// An app on the portal: its name, what it is, and the route that opens it.
pub struct PortalApp<'a> {
    /// What people see the app called.
    pub name: &'a str,
    /// A second line of name (the config's name, when two apps would look alike).
    pub detail: Option<&'a str>,
    pub path: &'a str,
}

/// The portal: who the person is signed in as, and the apps they may open.
pub fn portal(
    settings: &PagesSettings,
    who: Option<&str>,
    apps: &[PortalApp<'_>],
    login: Option<&str>,
) -> String {
    let body = html! {
        h1 { "Your AI apps" }
        @match who {
            Some(who) => p { "Signed in to the intranet as " strong { (who) } "." },
            None => {
                p { "You are not signed in to the intranet." }
                @if let Some(login) = login {
                    p { a.button href=(login) { "Sign in" } }
                }
            }
        }
        @if who.is_some() && apps.is_empty() {
            p { "No AI app is open to you yet." }
            (help_line(settings, None))
        }
        @if !apps.is_empty() {
            ul.apps {
                @for app in apps {
                    li {
                        a.button href=(app.path) {
                            (app.name)
                            @if let Some(detail) = app.detail {
                                " " span.code { "(" (detail) ")" }
                            }
                        }
                    }
                }
            }
        }
        p { a href=(settings.home_url) { "Back to the intranet" } }
    };
    document_markup("Your AI apps", settings.organisation.as_deref(), body)
}

/// A short reference for the help desk, shown on a page and written in the log line of the
/// request it answered (`reference`): 8 characters, no look-alikes (no 0/O, 1/I/L).
pub fn short_reference() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut bytes = [0u8; 8];
    // No randomness left is no reason to fail a page: the reference only has to be rare.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = u64::from(nanos).to_le_bytes();
    }
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PagesSettings {
        PagesSettings::default()
    }

    fn page(status: u16) -> Page {
        Page {
            status,
            title: "<script>x</script>".to_string(),
            message: "a \"b\" & 'c'".to_string(),
            access_to: Some("you&gpt".to_string()),
            notice: false,
        }
    }

    #[test]
    fn the_portal_escapes_and_lists_apps() {
        let apps = [PortalApp {
            name: "<b>chat</b>",
            detail: Some("c&d"),
            path: "/ai/chat?a=1&b=2",
        }];
        let html = portal(&settings(), Some("ada <x>"), &apps, None);
        assert!(html.contains("(c&amp;d)"));
        assert!(html.contains("ada &lt;x&gt;"));
        assert!(html.contains("href=\"/ai/chat?a=1&amp;b=2\""));
        assert!(html.contains("&lt;b&gt;chat&lt;/b&gt;"));
        let anonymous = portal(&settings(), None, &[], Some("/login?next=%2F"));
        assert!(
            anonymous.contains("not signed in") && anonymous.contains("href=\"/login?next=%2F\"")
        );
    }

    #[test]
    fn dynamic_text_is_escaped() {
        let home = Back::for_request(&settings(), None, "/x", None);
        let html = page(403).render(&settings(), &home, Some("<r>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("a &quot;b&quot; &amp; 'c'"), "{html}");
        assert!(html.contains("<strong>&lt;r&gt;</strong>"));
        assert_eq!(
            escape("<a href=\"x\">'"),
            "&lt;a href=&quot;x&quot;&gt;&#39;"
        );
    }

    #[test]
    fn every_error_page_has_a_way_back_and_the_help_desk() {
        let mut s = settings();
        let home = Back::for_request(&s, Some("intranet.example"), "/ai/chat", None);
        let html = page(404).render(&s, &home, Some("<r>"));
        assert!(html.contains("href=\"/\"") && html.contains("Back to the intranet"));
        assert!(html.contains("Contact your help desk and quote reference"));
        assert!(!html.contains("Request access"), "only on a 403");
        s.organisation = Some("Acme & Co".to_string());
        s.home_url = "https://portal.example/start".to_string();
        s.help_desk = Some("the IT Service Desk, ext. 4357".to_string());
        s.help_desk_url = url::Url::parse("mailto:help@example.com").ok();
        s.request_access_url = Some("https://forms.example/access?app={app}".to_string());
        let home = Back::for_request(&s, Some("intranet.example"), "/ai/chat", None);
        let html = page(403).render(&s, &home, Some("<r>"));
        assert!(html.contains("<p class=\"org\">Acme &amp; Co</p>"));
        assert!(html.contains("href=\"https://portal.example/start\""));
        assert!(
            html.contains("<a href=\"mailto:help@example.com\">the IT Service Desk, ext. 4357</a>")
        );
        assert!(
            html.contains("href=\"https://forms.example/access?app=you%26gpt\""),
            "{{app}} URL-encoded: {html}"
        );
    }

    #[test]
    fn the_way_back_is_the_referring_page_only_on_the_same_host() {
        let s = settings();
        let back = |host, referer| Back::for_request(&s, Some(host), "/ai/chat", Some(referer));
        assert_eq!(
            back(
                "intranet.example",
                "https://intranet.example/wiki/page?x=1#top"
            )
            .href,
            "/wiki/page?x=1"
        );
        assert_eq!(
            back("Intranet.Example:8080", "http://intranet.example:8080/w").href,
            "/w"
        );
        for (host, referer) in [
            ("intranet.example", "https://evil.example/wiki"),
            ("intranet.example", "https://intranet.example.evil.example/"),
            ("intranet.example", "https://intranet.example:8443/w"),
            ("intranet.example", "javascript:alert(1)//intranet.example/"),
            ("intranet.example", "https://intranet.example/ai/chat"),
            ("intranet.example", "not a url"),
            (
                "intranet.example",
                "https://intranet.example//evil.example/x",
            ),
            ("bad host/", "https://bad host/x"),
        ] {
            let b = back(host, referer);
            assert_eq!(
                (b.href.as_str(), b.label),
                ("/", "Back to the intranet"),
                "{referer}"
            );
        }
    }

    #[test]
    fn references_are_short_and_unambiguous() {
        let a = short_reference();
        assert_eq!(a.len(), 8);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert!(!a.contains(['0', 'O', '1', 'I', 'L']));
        assert_ne!(a, short_reference());
    }
}
