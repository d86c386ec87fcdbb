//! Widget sign-in: a streaming HTML rewriter (lol_html) that writes a per-person
//! `data-external-auth-code` into the TypingMind widget's `<script>` tag as an intranet page
//! passes through, or removes the attribute when there is no one to sign in.
//!
//! Nothing is buffered beyond what lol_html needs to finish a tag; a page without a widget tag
//! comes out byte for byte as it went in. Free of Pingora types.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lol_html::send::HtmlRewriter;
use lol_html::{element, MemorySettings, Settings};

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
    /// URLs can point at another origin; a relative `src` never matches. `src` is the raw
    /// attribute text: its character references are decoded first, as the browser does
    /// (`widget&#46;js` loads `widget.js`), so an encoded tag cannot slip past the rewriter.
    fn matches(&self, src: &str) -> bool {
        let src = htmlize::unescape_attribute(src);
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

/// lol_html could not go on with a page (its memory limit, or bytes it cannot parse): what it
/// emitted for the chunk is a prefix nobody can line up with the input, so the page cannot be
/// finished faithfully — the answer must end there.
#[derive(Debug, thiserror::Error)]
#[error("widget rewriting stopped: {0}")]
pub struct RewriteFailed(String);

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
        Self::with_memory_limit(targets, max_bytes, usize::MAX)
    }

    /// [`WidgetRewriter::new`] with lol_html's memory for one page capped at `memory` bytes.
    fn with_memory_limit(targets: Vec<WidgetTarget>, max_bytes: usize, memory: usize) -> Self {
        let output: Output = Arc::new(Mutex::new(Vec::new()));
        let sink_output = output.clone();
        let sink: Sink = Box::new(move |chunk: &[u8]| {
            sink_output
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(chunk);
        });
        let settings = Settings::new_send()
            .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(memory))
            .append_element_content_handler(element!("script[src]", move |el| {
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
            }));
        WidgetRewriter {
            rewriter: Some(HtmlRewriter::new(settings, sink)),
            output,
            seen: 0,
            max_bytes,
        }
    }

    /// Feeds one chunk; returns what is ready to send.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Bytes, RewriteFailed> {
        self.seen = self.seen.saturating_add(chunk.len());
        match self.rewriter.as_mut() {
            Some(_) if self.seen > self.max_bytes => {
                // Too big to keep rewriting: flush what the rewriter holds (all of the earlier
                // chunks), then pass this chunk and the rest as they come.
                self.end()?;
                let mut out = self.take();
                out.extend_from_slice(chunk);
                Ok(Bytes::from(out))
            }
            Some(r) => {
                if let Err(e) = r.write(chunk) {
                    self.rewriter = None;
                    self.take();
                    return Err(RewriteFailed(e.to_string()));
                }
                Ok(Bytes::from(self.take()))
            }
            None => Ok(Bytes::copy_from_slice(chunk)),
        }
    }

    /// Ends the page; returns the last bytes.
    pub fn finish(&mut self) -> Result<Bytes, RewriteFailed> {
        self.end()?;
        Ok(Bytes::from(self.take()))
    }

    fn end(&mut self) -> Result<(), RewriteFailed> {
        match self.rewriter.take() {
            Some(r) => r.end().map_err(|e| RewriteFailed(e.to_string())),
            None => Ok(()),
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
            out.extend_from_slice(&r.write(piece).unwrap());
        }
        out.extend_from_slice(&r.finish().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_failure_mid_page_is_an_error_never_duplicated_bytes() {
        let target = WidgetTarget::new("https://chat.example.com", "widget.js", None).unwrap();
        // A start tag split over chunks, larger than lol_html may buffer: it fails mid-page.
        let mut r = WidgetRewriter::with_memory_limit(vec![target], usize::MAX, 4096);
        let a = "a".repeat(32 * 1024);
        let chunks = [
            "<html><body><p>before</p>".to_string(),
            format!("<script src=\"{a}"),
            format!("{a}\"></script><p>after</p>"),
        ];
        let page = chunks.concat();
        let mut out = Vec::new();
        let mut failed = false;
        for chunk in &chunks {
            match r.write(chunk.as_bytes()) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the rewriter must fail on a tag over its memory");
        assert!(
            page.as_bytes().starts_with(&out),
            "what went out is a prefix of the page, nothing doubled"
        );
    }

    #[test]
    fn past_the_cap_the_rest_passes_once() {
        let target = WidgetTarget::new("https://chat.example.com", "widget.js", None).unwrap();
        let mut r = WidgetRewriter::new(vec![target], 10);
        let mut out = Vec::new();
        for piece in ["<p>one</p>", "<p>two</p>", "<p>three</p>"] {
            out.extend_from_slice(&r.write(piece.as_bytes()).unwrap());
        }
        out.extend_from_slice(&r.finish().unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<p>one</p><p>two</p><p>three</p>"
        );
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
    fn character_references_in_src_do_not_hide_a_widget() {
        for src in [
            "https://chat.example.com/widget&#46;js",
            "https://chat.example.com/widget&period;js",
            "https&colon;//chat&#x2E;example&#46;com/widget.js",
            "&#x68;ttps://chat.example.com/widget.js",
            "&NewLine;https://chat.example.com/widget.js",
        ] {
            let page = format!(r#"<script src="{src}" data-external-auth-code="stale"></script>"#);
            let stripped = rewrite(&page, None, 4);
            assert!(!stripped.contains("stale"), "{src}: {stripped}");
            let signed = rewrite(&page, Some("NEW"), 4);
            assert!(
                !signed.contains("stale") && signed.contains(r#"data-external-auth-code="NEW""#),
                "{src}: {signed}"
            );
        }
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
