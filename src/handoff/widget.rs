//! Widget sign-in: a streaming HTML rewriter (lol_html) that writes a per-person
//! `data-external-auth-code` into the TypingMind widget's `<script>` tag as an intranet page
//! passes through, or removes the attribute when there is no one to sign in.
//!
//! Nothing is buffered beyond what lol_html needs to finish a tag; a page without a widget tag
//! comes out byte for byte as it went in. Free of Pingora types.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lol_html::send::HtmlRewriter;
use lol_html::{element, Settings};

/// The attribute TypingMind's widget reads the code from.
pub const CODE_ATTRIBUTE: &str = "data-external-auth-code";

/// One instance whose widget tags are rewritten.
#[derive(Debug, Clone)]
pub struct WidgetTarget {
    /// `https://chat.example.com` (scheme, host and port are compared).
    origin: url::Origin,
    /// The path must end with this (`widget.js`).
    path_suffix: String,
    /// The code to write, or `None` to remove any code found.
    code: Option<String>,
}

impl WidgetTarget {
    pub fn new(instance_url: &str, path_suffix: &str, code: Option<String>) -> Option<Self> {
        let origin = url::Url::parse(instance_url).ok()?.origin();
        Some(WidgetTarget {
            origin,
            path_suffix: path_suffix.to_string(),
            code,
        })
    }

    /// Whether a script `src` is this instance's widget. Only absolute and protocol-relative
    /// URLs can point at another origin; a relative `src` never matches.
    fn matches(&self, src: &str) -> bool {
        let src = src.trim();
        let absolute = if src.starts_with("//") {
            match &self.origin {
                url::Origin::Tuple(scheme, ..) => format!("{scheme}:{src}"),
                url::Origin::Opaque(_) => return false,
            }
        } else {
            src.to_string()
        };
        match url::Url::parse(&absolute) {
            Ok(u) => u.origin() == self.origin && u.path().ends_with(&self.path_suffix),
            Err(_) => false,
        }
    }
}

type Output = Arc<Mutex<Vec<u8>>>;
/// Where lol_html writes the rewritten page: into [`Output`], drained after every chunk.
type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// Rewrites one response body, chunk by chunk.
pub struct WidgetRewriter {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    output: Output,
    seen: usize,
    max_bytes: usize,
}

impl WidgetRewriter {
    /// `max_bytes`: past this many input bytes the rest of the page passes untouched.
    pub fn new(targets: Vec<WidgetTarget>, max_bytes: usize) -> Self {
        let output: Output = Arc::new(Mutex::new(Vec::new()));
        let sink_output = output.clone();
        let sink: Sink = Box::new(move |chunk: &[u8]| {
            sink_output
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(chunk);
        });
        let settings = Settings::new_send().append_element_content_handler(element!(
            "script[src]",
            move |el| {
                let Some(src) = el.get_attribute("src") else {
                    return Ok(());
                };
                if let Some(target) = targets.iter().find(|t| t.matches(&src)) {
                    // Removing first also drops a stale copy whose name differs in case.
                    el.remove_attribute(CODE_ATTRIBUTE);
                    if let Some(code) = &target.code {
                        el.set_attribute(CODE_ATTRIBUTE, code)?;
                    }
                }
                Ok(())
            }
        ));
        WidgetRewriter {
            rewriter: Some(HtmlRewriter::new(settings, sink)),
            output,
            seen: 0,
            max_bytes,
        }
    }

    /// Feeds one chunk; returns what is ready to send.
    pub fn write(&mut self, chunk: &[u8]) -> Bytes {
        self.seen = self.seen.saturating_add(chunk.len());
        match self.rewriter.as_mut() {
            Some(_) if self.seen > self.max_bytes => {
                // Too big to keep rewriting: flush what the rewriter holds, then pass the rest.
                self.end();
                let mut out = self.take();
                out.extend_from_slice(chunk);
                Bytes::from(out)
            }
            Some(r) => {
                if let Err(e) = r.write(chunk) {
                    tracing::warn!(target: "handoff::widget", "widget rewriting stopped: {e}");
                    self.rewriter = None;
                    let mut out = self.take();
                    out.extend_from_slice(chunk);
                    return Bytes::from(out);
                }
                Bytes::from(self.take())
            }
            None => Bytes::copy_from_slice(chunk),
        }
    }

    /// Ends the page; returns the last bytes.
    pub fn finish(&mut self) -> Bytes {
        self.end();
        Bytes::from(self.take())
    }

    fn end(&mut self) {
        if let Some(r) = self.rewriter.take() {
            if let Err(e) = r.end() {
                tracing::warn!(target: "handoff::widget", "widget rewriting stopped: {e}");
            }
        }
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.output.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(html: &str, code: Option<&str>, chunk: usize) -> String {
        let target = WidgetTarget::new(
            "https://chat.example.com",
            "widget.js",
            code.map(String::from),
        )
        .unwrap();
        let mut r = WidgetRewriter::new(vec![target], usize::MAX);
        let mut out = Vec::new();
        for piece in html.as_bytes().chunks(chunk) {
            out.extend_from_slice(&r.write(piece));
        }
        out.extend_from_slice(&r.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_widget_tag_gets_the_code_in_any_chunking() {
        let page = r#"<html><head><script defer src="https://chat.example.com/widget.js" id="w"></script></head></html>"#;
        for chunk in [1, 7, 4096] {
            let out = rewrite(page, Some("CODE"), chunk);
            assert!(
                out.contains(r#"id="w" data-external-auth-code="CODE""#),
                "{out}"
            );
        }
    }

    #[test]
    fn stale_codes_any_case_are_replaced_or_removed_and_others_left_alone() {
        let page = r#"<SCRIPT SRC="//chat.example.com/widget.js" DATA-EXTERNAL-AUTH-CODE="stale"></SCRIPT><script src="https://other.example.com/widget.js" data-external-auth-code="theirs"></script>"#;
        let out = rewrite(page, Some("NEW"), 5);
        assert!(!out.contains("stale"), "{out}");
        assert!(out.contains(r#"data-external-auth-code="NEW""#), "{out}");
        assert!(out.contains(r#"data-external-auth-code="theirs""#), "{out}");
        let out = rewrite(page, None, 5);
        assert!(
            !out.contains("stale") && !out.to_lowercase().contains("=\"new\""),
            "{out}"
        );
        assert!(out.contains("theirs"));
    }

    #[test]
    fn pages_without_a_widget_are_identical() {
        let page = "<!doctype html><html><head><meta charset=utf-8><script src=/app.js></script>\n<title>x</title></head><body><p>Caf\u{e9} &amp; <b>bold</b><!-- c --></p><script src=\"https://chat.example.com/other.js\"></script></body></html>";
        assert_eq!(rewrite(page, Some("C"), 3), page);
    }

    #[test]
    fn matching_needs_the_instance_origin_and_the_suffix() {
        let t = WidgetTarget::new("https://chat.example.com", "widget.js", None).unwrap();
        assert!(t.matches("https://chat.example.com/widget.js"));
        assert!(t.matches("https://CHAT.example.com/agents/a1/widget.js?v=2"));
        assert!(t.matches("//chat.example.com/widget.js"));
        assert!(!t.matches("http://chat.example.com/widget.js"));
        assert!(!t.matches("https://chat.example.com.evil/widget.js"));
        assert!(!t.matches("/widget.js"));
        assert!(!t.matches("https://chat.example.com/widget.jsx"));
        assert!(!t.matches("::garbage::"));
    }
}
