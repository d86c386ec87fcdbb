//! What the gateway answers by itself: pages, JSON, redirects. Free of Pingora types; the proxy
//! glue writes a [`Reply`] to the connection.

use bytes::Bytes;
use serde::Serialize;

use crate::pages::{self, Page};

/// A complete response: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// What happened, for the access log: `answered`, `redirect`, an error's code
    /// (`forbidden`, `unauthenticated` …), or how a handoff ended (`redirected` …).
    pub outcome: &'static str,
    /// Close the connection after this answer.
    pub close: bool,
    /// An HTML page still to be rendered for the request it answers (its way back, the help
    /// desk); `body` is empty until then. See [`Reply::render_page`].
    pub page: Option<Box<Page>>,
    /// The help-desk reference the answer shows (a page's, a JSON error's) or shares with its
    /// log lines (a handoff's redirect), for the access log.
    pub reference: Option<Box<str>>,
}

impl Reply {
    fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![
                ("Content-Type", content_type.to_string()),
                ("Cache-Control", "no-store".to_string()),
                // Every answer of the gateway's: no browser reads JSON or text as a script.
                ("X-Content-Type-Options", "nosniff".to_string()),
            ],
            body: body.into(),
            outcome: "answered",
            close: false,
            page: None,
            reference: None,
        }
    }

    /// An HTML page for a person (see [`pages::Page`]): rendered when it is written, with the
    /// way back and the help desk of the request it answers.
    pub fn page(status: u16, title: &str, message: &str) -> Reply {
        Reply::deferred(Page::new(status, title, message))
    }

    /// A page that is not an error ("check your email"): a heading, the message, the way back.
    pub fn notice(status: u16, title: &str, message: &str) -> Reply {
        Reply::deferred(Page {
            notice: true,
            ..Page::new(status, title, message)
        })
    }

    fn deferred(page: Page) -> Reply {
        let mut r = Reply::html(page.status, String::new());
        r.page = Some(Box::new(page));
        r
    }

    /// Renders a deferred page for the request it answers (`host`, `path_and_query`,
    /// `referer`) under `[pages]`; an error page without a reference gets one. A reply that is
    /// not such a page is left as it is.
    pub fn render_page(
        &mut self,
        settings: &crate::config::PagesSettings,
        host: Option<&str>,
        path_and_query: &str,
        referer: Option<&str>,
    ) {
        let Some(page) = self.page.take() else {
            return;
        };
        if !page.notice && self.reference.is_none() {
            self.reference = Some(pages::short_reference().into());
        }
        let back = pages::Back::for_request(settings, host, path_and_query, referer);
        self.body = Bytes::from(page.render(settings, &back, self.reference.as_deref()));
    }

    /// The help-desk reference the log lines of this answer share (see [`Reply::reference`]).
    pub fn with_reference(mut self, reference: &str) -> Reply {
        self.reference = Some(reference.into());
        self
    }

    /// On a 403 page: what access is asked for (for `[pages] request_access_url`).
    pub fn with_access_to(mut self, what: &str) -> Reply {
        if let Some(page) = &mut self.page {
            page.access_to = Some(what.to_string());
        }
        self
    }

    /// An HTML document (a rendered [`Page`], the portal), with the pages' CSP.
    pub fn html(status: u16, body: String) -> Reply {
        let mut r = Reply::new(status, "text/html; charset=utf-8", body);
        r.headers
            .push(("Content-Security-Policy", pages::CSP.to_string()));
        r
    }

    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Reply::new(status, "application/json", body)
    }

    /// A script for one person: `private, no-store` (it is theirs alone).
    pub fn javascript(body: String) -> Reply {
        let mut r = Reply::new(200, "text/javascript; charset=utf-8", body);
        for (name, value) in &mut r.headers {
            if *name == "Cache-Control" {
                *value = "private, no-store".to_string();
            }
        }
        r
    }

    pub fn text(status: u16, text: &str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", text.to_string())
    }

    /// A 302. The body is empty; `no-store` keeps it out of caches.
    pub fn redirect(location: String) -> Reply {
        Reply {
            status: 302,
            headers: vec![
                ("Location", location),
                ("Cache-Control", "no-store".to_string()),
                ("X-Content-Type-Options", "nosniff".to_string()),
            ],
            body: Bytes::new(),
            outcome: "redirect",
            close: false,
            page: None,
            reference: None,
        }
    }

    /// A 302 whose `Location` may carry a token: never cached, never sent on as a Referer.
    pub fn token_redirect(location: String) -> Reply {
        let mut r = Reply::redirect(location);
        r.headers
            .push(("Referrer-Policy", "no-referrer".to_string()));
        r
    }

    /// The page that posts a sign-in to `action` (see [`pages::form_post`]): never cached,
    /// never sent on as a Referer, only its own nonce'd script runs, and no other page of the
    /// origin can reach into it.
    pub fn form_post(title: &str, action: &str, fields: &[(String, String)]) -> Reply {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).unwrap_or_else(|_| unreachable!("the OS has randomness"));
        let nonce = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        let mut r = Reply::new(
            200,
            "text/html; charset=utf-8",
            pages::form_post(title, action, fields, &nonce),
        );
        r.headers
            .push(("Content-Security-Policy", pages::form_post_csp(&nonce)));
        r.headers
            .push(("Referrer-Policy", "no-referrer".to_string()));
        // The page is on the intranet's own origin: a script of any intranet page could open it
        // with `window.open` and read the token out of the form before it posts. A browsing
        // context group of its own leaves the opener a closed handle.
        r.headers
            .push(("Cross-Origin-Opener-Policy", "same-origin".to_string()));
        r.outcome = "redirected";
        r
    }

    /// Closes the connection after this answer (the request's framing cannot be trusted).
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    /// Names what happened, for the access log.
    pub fn with_outcome(mut self, outcome: &'static str) -> Reply {
        self.outcome = outcome;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    /// An error for either kind of client: a page for browsers, JSON for the rest.
    pub fn error(
        wants_html: bool,
        status: u16,
        code: &'static str,
        title: &str,
        message: &str,
    ) -> Reply {
        Reply::error_with_reference(wants_html, status, code, title, message, None)
    }

    /// A 400 "Bad request" for a request the gateway will not pass on: `code` names why.
    pub fn bad_request(headers: &http::HeaderMap, code: &'static str, message: &str) -> Reply {
        Reply::error(wants_html(headers), 400, code, "Bad request", message)
    }

    /// [`Reply::error`] carrying a support reference: a line on the page, a `reference` field
    /// in JSON.
    pub fn error_with_reference(
        wants_html: bool,
        status: u16,
        code: &'static str,
        title: &str,
        message: &str,
        reference: Option<&str>,
    ) -> Reply {
        let r = if wants_html {
            Reply::deferred(Page::new(status, title, message))
        } else {
            Reply::json_error(status, code, message, reference)
        }
        .with_outcome(code);
        match reference {
            Some(reference) => r.with_reference(reference),
            None => r,
        }
    }

    fn json_error(status: u16, code: &str, message: &str, reference: Option<&str>) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reference: Option<&'a str>,
        }
        Reply::json(
            status,
            &Body {
                error: code,
                message,
                reference,
            },
        )
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether the client is a browser navigating (it accepts HTML).
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}
