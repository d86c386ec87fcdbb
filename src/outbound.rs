//! Every call the gateway makes to another service — the JWKS URL, the userinfo endpoint,
//! YourGPT's API — goes through here: one way to build the pooled HTTP client, one way to read
//! an answer without trusting its size (refused past the cap, never truncated), one error type
//! that keeps the cause and never the URL (a query may carry a token or a key).

use std::time::Duration;

/// A pooled client: `timeout` for a whole call (body included), `connect_timeout` for the
/// connection, at most `redirects` redirects followed. `what` names it in the error.
pub(crate) fn client(
    what: &str,
    timeout: Duration,
    connect_timeout: Option<Duration>,
    redirects: usize,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(match redirects {
            0 => reqwest::redirect::Policy::none(),
            n => reqwest::redirect::Policy::limited(n),
        });
    if let Some(connect) = connect_timeout {
        builder = builder.connect_timeout(connect);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the {what} HTTP client: {e}"))
}

/// Why a call gave no usable answer. Shown in logs (never with a cookie, a token or the URL), so
/// each names its cause plainly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("timed out")]
    Timeout,
    #[error("unreachable ({0})")]
    Unreachable(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answered more than {0} bytes")]
    TooBig(usize),
    #[error("answered something that is not a JSON object")]
    NotJson,
}

impl FetchError {
    pub fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return FetchError::Timeout;
        }
        // The whole cause chain ("error sending request: client error (Connect): tcp connect
        // error: Connection refused"), without the URL: its query may hold a token or a key.
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        FetchError::Unreachable(detail)
    }
}

/// Reads a response body, refusing one larger than `cap` bytes (checked against
/// `Content-Length` first, then while streaming).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, FetchError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(FetchError::TooBig(cap));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(FetchError::TooBig(cap));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(FetchError::from_reqwest(e)),
        }
    }
}
