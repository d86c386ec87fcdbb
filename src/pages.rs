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
    let title = escape(title);
    let message = escape(message);
    let reference = reference
        .map(|r| {
            format!(
                "<p class=\"code\">Reference for the help desk: <strong>{}</strong></p>\n",
                escape(r)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2433}}
main{{max-width:34rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px rgba(0,0,0,.08)}}
h1{{font-size:1.4rem;margin:0 0 .75rem}}
p{{line-height:1.5;margin:0 0 1rem}}
.code{{color:#6b7280;font-size:.85rem}}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{message}</p>
{reference}<p class="code">HTTP {status}</p>
</main>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_text_is_escaped() {
        let html = render(403, "<script>x</script>", "a \"b\" & 'c'", Some("<r>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("a &quot;b&quot; &amp; &#39;c&#39;"));
        assert!(html.contains("<strong>&lt;r&gt;</strong>"));
    }
}
