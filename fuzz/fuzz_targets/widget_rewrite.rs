//! HTML widget rewriting: arbitrary pages in arbitrary chunks. A page without the widget must
//! come out byte for byte as it went in; a page with it must not lose what follows it; and the
//! rewriter that starts lol_html only at a tag it may change writes exactly what lol_html
//! writes reading every byte.
#![no_main]

use bytes::Bytes;
use handoff::internals::apps::widget::{WidgetRewriter, WidgetTarget};
use libfuzzer_sys::fuzz_target;

/// The rewritten page, or `None` when the rewriter gave up on it (the answer then ends there:
/// never a doubled or lost byte).
fn rewrite(
    page: &[u8],
    cuts: &[u8],
    code: Option<&str>,
    max: usize,
    every_byte: bool,
) -> Option<Vec<u8>> {
    let target = WidgetTarget::new(
        "https://chat.example.com",
        "widget.js",
        code.map(str::to_string),
    )
    .expect("a valid instance URL");
    let mut rewriter = if every_byte {
        WidgetRewriter::reading_every_byte(vec![target], max)
    } else {
        WidgetRewriter::new(vec![target], max)
    };
    let mut out = Vec::new();
    let mut rest = page;
    for &cut in cuts {
        let n = usize::from(cut).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        out.extend_from_slice(&rewriter.write(Bytes::copy_from_slice(chunk)).ok()?);
        rest = tail;
    }
    out.extend_from_slice(&rewriter.write(Bytes::copy_from_slice(rest)).ok()?);
    out.extend_from_slice(&rewriter.finish().ok()?);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many chunk sizes follow; then the sizes; then the page.
    let (cuts, page) = match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n % 8).min(rest.len())),
        None => (&[][..], data),
    };
    // As a browser reads a URL: tabs and newlines inside it do not count (the fuzzer found a
    // `src` of `…/wid\r\r…get.js`, which the rewriter rightly treats as the widget).
    let lower: String = String::from_utf8_lossy(page)
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    // A `src` is matched after its character references are decoded (`widget&#46;js`), so a
    // page with any `&` may hold the widget too.
    let may_hold_widget =
        lower.contains("widget") || lower.contains("data-") || lower.contains('&');
    let signed_in = rewrite(page, cuts, Some("code-123"), 1 << 20, false);
    if let Some(out) = &signed_in {
        if !may_hold_widget {
            assert_eq!(out, page, "a page without the widget was changed");
        }
    }
    // Writing a code, lol_html starts before any script tag could have gone out: it never
    // fails where lol_html reading every byte would not.
    let every = rewrite(page, cuts, Some("code-123"), 1 << 20, true);
    assert!(
        signed_in.is_some() || every.is_none(),
        "gave up on a page lol_html reads"
    );
    if let (Some(out), Some(every)) = (&signed_in, &every) {
        assert_eq!(out, every, "not what lol_html writes reading every byte");
    }
    // Nobody signed in: codes are removed, never added. Giving up is allowed here (a tag built
    // to look closed while watching), a different page is not.
    let stripped = rewrite(page, cuts, None, 64, false);
    let every = rewrite(page, cuts, None, 64, true);
    if let (Some(out), Some(every)) = (&stripped, &every) {
        assert_eq!(out, every, "not what lol_html writes reading every byte");
    }
});
