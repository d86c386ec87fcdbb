//! Local stand-ins of the vendor APIs, faithful to what the vendors document. The test suite,
//! the benchmarks and the demo use these same implementations.

pub mod typingmind;
pub mod yourgpt;

use axum::response::{IntoResponse, Response};

/// A stand-in's HTML page: the gateway's page shell, with a banner saying what it stands in
/// for. `body` is HTML the caller has escaped.
fn page(title: &str, service: &str, body: &str) -> Response {
    let body = format!(
        "<p class=\"banner\">Stand-in of {service}, running locally — not the real service.</p>\n{body}"
    );
    (
        [("content-type", "text/html; charset=utf-8")],
        crate::pages::document(title, &body),
    )
        .into_response()
}
