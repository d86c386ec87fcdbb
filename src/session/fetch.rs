//! What can go wrong when the gateway asks the intranet's identity services something, and
//! reading their answers without trusting their size.

/// Why a call to the identity provider or the userinfo endpoint gave no usable answer. Shown
/// in logs (never with a cookie or token), so each names its cause plainly.
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
    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            return FetchError::Timeout;
        }
        // The innermost cause says what happened ("Connection refused"); reqwest's own text
        // carries the URL, which may hold a query string.
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        FetchError::Unreachable(cause.to_string())
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
            Err(e) => return Err(FetchError::from_reqwest(&e)),
        }
    }
}
