//! "Who is this?" — recognising the intranet's logged-in user from the request.
//!
//! Today the session is a JWT in a cookie ([`jwt`]); the result is an [`Identity`] or a
//! [`SessionError`] precise enough for logs and metrics, and never containing the token.

pub mod jwt;

use http::header::COOKIE;
use http::HeaderMap;

use crate::identity::{ClaimMapping, Identity};
use jwt::JwtVerifier;

/// How many cookies of the session's name are tried, in the order the client sent them.
const MAX_CANDIDATES: usize = 4;

/// Why a request carries no usable session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no session cookie")]
    Missing,
    #[error("the session token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the session has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token lacks a required claim (exp, iss or aud)")]
    MissingClaim,
}

impl SessionError {
    /// A short stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            SessionError::Missing => "missing",
            SessionError::Malformed => "malformed",
            SessionError::AlgorithmNotAllowed => "algorithm_not_allowed",
            SessionError::BadSignature => "bad_signature",
            SessionError::Expired => "expired",
            SessionError::NotYetValid => "not_yet_valid",
            SessionError::WrongIssuer => "wrong_issuer",
            SessionError::WrongAudience => "wrong_audience",
            SessionError::MissingClaim => "missing_claim",
        }
    }
}

/// Recognises the person from the session cookie: cookie → verified claims → [`Identity`].
#[derive(Debug)]
pub struct SessionVerifier {
    cookie: String,
    jwt: JwtVerifier,
    mapping: ClaimMapping,
}

impl SessionVerifier {
    pub fn new(cookie: String, jwt: JwtVerifier, mapping: ClaimMapping) -> Self {
        SessionVerifier {
            cookie,
            jwt,
            mapping,
        }
    }

    /// How claims become an [`Identity`].
    pub fn mapping(&self) -> &ClaimMapping {
        &self.mapping
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    /// Finds and verifies the session in the request's headers.
    ///
    /// Cookies are read from every `Cookie` header (HTTP/2 clients send several). When the
    /// session cookie appears more than once, the first one that verifies wins; when none does,
    /// the first one's reason is reported. That is deterministic, and it tolerates the stale
    /// duplicate a browser keeps for another path or domain.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Identity, SessionError> {
        let mut first_error = None;
        for token in session_cookies(headers, &self.cookie).take(MAX_CANDIDATES) {
            match self.jwt.verify(&token) {
                Ok(claims) => return Ok(self.mapping.identity(&claims)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(SessionError::Missing))
    }
}

/// The values of every cookie called `name`, across all `Cookie` headers, in order.
pub fn session_cookies<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(move |c| c.name() == name)
        .map(|c| c.value_trimmed().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header_in_order() {
        let h = headers(&["a=1; s=first", "b=2; s=second; s=third"]);
        let found: Vec<String> = session_cookies(&h, "s").collect();
        assert_eq!(found, vec!["first", "second", "third"]);
    }

    #[test]
    fn odd_cookie_headers_do_not_panic() {
        let mut h = headers(&["=; ;;; s", "s=\"quoted\"", "s="]);
        h.append(COOKIE, HeaderValue::from_bytes(b"s=\xff\xfe").unwrap());
        let found: Vec<String> = session_cookies(&h, "s").collect();
        assert_eq!(found, vec!["quoted", ""]);
    }
}
