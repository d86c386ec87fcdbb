//! The gateway's own HTML pages: small, self-contained, escaped.
//!
//! Every dynamic string goes through [`escape`]; pages never show error internals, peer
//! addresses or tokens — only what the person can act on.

/// Pages load nothing from elsewhere and run no script.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page with a title and one message, both plain text, and optionally a support reference.
pub fn render(status: u16, title: &str, message: &str, reference: Option<&str>) -> String {
    let reference = reference
        .map(|r| {
            format!(
                "<p class=\"code\">Reference for the help desk: <strong>{}</strong></p>\n",
                escape(r)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>{}</h1>\n<p>{}</p>\n{reference}<p class=\"code\">HTTP {status}</p>\n",
        escape(title),
        escape(message)
    );
    document(title, &body)
}

/// A page that is not an error: a heading, what happened, and a way back (`back`: a local
/// path and its link text). No status code, no help-desk reference.
pub fn notice(title: &str, message: &str, back: (&str, &str)) -> String {
    let body = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><a class=\"button\" href=\"{}\">{}</a></p>\n",
        escape(title),
        escape(message),
        escape(back.0),
        escape(back.1)
    );
    document(title, &body)
}

/// The page shell every HTML page of the gateway (and of the demo) shares: a plain, readable
/// card that works on a laptop and a phone, with no external assets. `title` is plain text;
/// `body` is HTML the caller has escaped.
pub fn document(title: &str, body: &str) -> String {
    let title = escape(title);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2433}}
main{{max-width:34rem;margin:8vh auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.08)}}
@media (max-width:36rem){{main{{margin:0;border-radius:0;min-height:100vh;box-sizing:border-box}}}}
h1{{font-size:1.4rem;margin:0 0 .75rem}}
p{{line-height:1.5;margin:0 0 1rem}}
ul.apps{{list-style:none;padding:0;margin:0 0 1rem}}
ul.apps li{{margin:0 0 .5rem}}
a.button,button{{display:block;width:100%;box-sizing:border-box;padding:.8rem 1rem;border:1px solid #c9ced6;border-radius:8px;background:#fff;color:#1d4ed8;font:inherit;text-align:left;text-decoration:none;cursor:pointer}}
a.button:hover,button:hover,a.button:focus,button:focus{{background:#eef2ff;outline:2px solid #1d4ed8}}
.code{{color:#6b7280;font-size:.85rem}}
.banner{{background:#fef3c7;border-radius:8px;padding:.5rem .75rem;font-size:.9rem}}
</style>
</head>
<body>
<main>
{body}</main>
</body>
</html>
"#
    )
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
pub fn portal(who: Option<&str>, apps: &[PortalApp<'_>], login: Option<&str>) -> String {
    let mut body = String::from("<h1>Your AI apps</h1>\n");
    match who {
        Some(who) => body.push_str(&format!(
            "<p>Signed in to the intranet as <strong>{}</strong>.</p>\n",
            escape(who)
        )),
        None => {
            body.push_str("<p>You are not signed in to the intranet.</p>\n");
            if let Some(login) = login {
                body.push_str(&format!(
                    "<p><a class=\"button\" href=\"{}\">Sign in</a></p>\n",
                    escape(login)
                ));
            }
        }
    }
    if who.is_some() && apps.is_empty() {
        body.push_str("<p>No AI app is open to you. Ask your administrator if you need one.</p>\n");
    }
    if !apps.is_empty() {
        body.push_str("<ul class=\"apps\">\n");
        for app in apps {
            let detail = app
                .detail
                .map(|d| format!(" <span class=\"code\">({})</span>", escape(d)))
                .unwrap_or_default();
            body.push_str(&format!(
                "<li><a class=\"button\" href=\"{}\">{}{detail}</a></li>\n",
                escape(app.path),
                escape(app.name),
            ));
        }
        body.push_str("</ul>\n");
    }
    body.push_str("<p><a href=\"/\">Back to the intranet</a></p>\n");
    document("Your AI apps", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portal_escapes_and_lists_apps() {
        let apps = [PortalApp {
            name: "<b>chat</b>",
            detail: Some("c&d"),
            path: "/ai/chat?a=1&b=2",
        }];
        let html = portal(Some("ada <x>"), &apps, None);
        assert!(html.contains("(c&amp;d)"));
        assert!(html.contains("ada &lt;x&gt;"));
        assert!(html.contains("href=\"/ai/chat?a=1&amp;b=2\""));
        assert!(html.contains("&lt;b&gt;chat&lt;/b&gt;"));
        let anonymous = portal(None, &[], Some("/login?next=%2F"));
        assert!(
            anonymous.contains("not signed in") && anonymous.contains("href=\"/login?next=%2F\"")
        );
    }

    #[test]
    fn dynamic_text_is_escaped() {
        let html = render(403, "<script>x</script>", "a \"b\" & 'c'", Some("<r>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("a &quot;b&quot; &amp; &#39;c&#39;"));
        assert!(html.contains("<strong>&lt;r&gt;</strong>"));
    }
}
