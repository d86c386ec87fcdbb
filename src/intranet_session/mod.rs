//! "Who is this?" — recognising the intranet's logged-in user from the request.
//!
//! A person is recognised by one of several [`Source`]s, tried in the configured order: a JWT
//! in the session cookie or in `Authorization: Bearer` ([`jwt`], with static keys and/or
//! [`jwks`]), or an opaque session cookie looked up at the intranet's [`userinfo`] endpoint.
//! The result is an [`Identity`] and the source that recognised it, or a [`SessionError`]
//! precise enough for logs and metrics, and never containing the token.

pub mod cache;
pub mod jwks;
pub mod jwt;
pub mod token_cache;
pub mod userinfo;

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use std::sync::Arc;

use crate::config::{JwtSettings, SessionSettings};
use crate::identity::{ClaimMapping, Identity};
use jwks::Jwks;
use jwt::{JwtVerifier, VerifyingKeys};
use token_cache::TokenCache;
use userinfo::{Answer, LookupError, Userinfo};

/// How many cookies of the session's name are tried, in the order the client sent them. A
/// browser keeps at least 50 cookies per domain (RFC 6265 §6.1) and sends every one whose
/// path and domain match — stale ones for other paths or parent domains first when their path
/// is longer — so all of them are tried; a token that fails costs one signature check.
const MAX_CANDIDATES: usize = 50;

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
    #[error("the token was signed with a key the intranet does not publish")]
    UnknownKey,
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
    #[error("the token names critical extensions the gateway does not support")]
    UnsupportedCritical,
    #[error("the intranet does not recognise this session")]
    Rejected,
    #[error("the intranet's sign-in service is not answering")]
    Unavailable,
    #[error("too many new sessions are being checked at once")]
    Busy,
}

impl SessionError {
    /// A short stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            SessionError::Missing => "missing",
            SessionError::Malformed => "malformed",
            SessionError::AlgorithmNotAllowed => "algorithm_not_allowed",
            SessionError::BadSignature => "bad_signature",
            SessionError::UnknownKey => "unknown_key",
            SessionError::Expired => "expired",
            SessionError::NotYetValid => "not_yet_valid",
            SessionError::WrongIssuer => "wrong_issuer",
            SessionError::WrongAudience => "wrong_audience",
            SessionError::MissingClaim => "missing_claim",
            SessionError::UnsupportedCritical => "unsupported_crit",
            SessionError::Rejected => "rejected",
            SessionError::Unavailable => "unavailable",
            SessionError::Busy => "busy",
        }
    }

    /// The gateway could not ask (the sign-in service is down, or too busy with new
    /// sessions): nobody is recognised, but the person is not known to be signed out either.
    pub fn is_unavailable(self) -> bool {
        matches!(self, SessionError::Unavailable | SessionError::Busy)
    }
}

/// Where a person can be recognised from (`[session] sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A JWT in the session cookie.
    Cookie,
    /// A JWT in `Authorization: Bearer` (API clients; never on handoff routes).
    Bearer,
    /// The session cookie, looked up at the intranet's userinfo endpoint.
    Userinfo,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Cookie, Source::Bearer, Source::Userinfo];

    /// The name used in the config, logs and `whoami`.
    pub fn label(self) -> &'static str {
        match self {
            Source::Cookie => "cookie",
            Source::Bearer => "bearer",
            Source::Userinfo => "userinfo",
        }
    }
}

/// Recognises the person: sources in order → verified claims → [`Identity`].
#[derive(Debug)]
pub struct SessionVerifier {
    settings: SessionSettings,
    jwt: Option<Arc<JwtSessions>>,
    userinfo: Option<Userinfo>,
}

/// JWT verification and the tokens it has verified, built from one [`JwtSettings`] and
/// [`ClaimMapping`] (the remembered people are only right for both).
#[derive(Debug)]
struct JwtSessions {
    verifier: JwtVerifier,
    tokens: TokenCache,
}

/// A part of the session verifier that could not be built, named by its config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct BuildError {
    pub key: String,
    pub message: String,
}

impl BuildError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<BuildError> for crate::config::ConfigErrors {
    fn from(e: BuildError) -> Self {
        crate::config::ConfigErrors {
            source_name: "config".to_string(),
            errors: vec![crate::config::ConfigError::new(e.key, e.message)],
        }
    }
}

impl SessionVerifier {
    /// Builds the verifier for `settings`. `previous`, the verifier this one replaces on a
    /// reload, lends every part whose settings did not change — the key set (and its running
    /// refresh), the remembered tokens, the userinfo cache and their pooled HTTP clients — so a
    /// reload of an unchanged `[session]` starts warm.
    pub fn build(
        settings: &SessionSettings,
        previous: Option<&SessionVerifier>,
    ) -> Result<Self, BuildError> {
        let error = BuildError::new;
        let jwt = match &settings.jwt {
            None => None,
            Some(jwt) => {
                let unchanged = previous.filter(|p| {
                    p.settings.jwt.as_ref() == Some(jwt) && p.settings.mapping == settings.mapping
                });
                match unchanged.and_then(|p| p.jwt.clone()) {
                    Some(same) => Some(same),
                    None => {
                        let jwks = previous.and_then(|p| p.jwks_for(jwt));
                        let jwks = match (jwks, &jwt.jwks) {
                            (Some(same), _) => Some(same),
                            (None, Some(s)) => Some(Arc::new(
                                Jwks::new(s.clone()).map_err(|e| error("session.jwks", e))?,
                            )),
                            (None, None) => None,
                        };
                        let keys = VerifyingKeys {
                            hmac: jwt.hmac.as_ref().map(|s| s.expose().to_vec()),
                            public_key: jwt.public_key.clone(),
                            jwks,
                        };
                        let verifier = JwtVerifier::new(&jwt.algorithms, keys, &jwt.rules)
                            .map_err(|e| error("session.algorithms", e))?;
                        let tokens = TokenCache::new(jwt.token_cache)
                            .map_err(|e| error("session.token_cache_seconds", e))?;
                        Some(Arc::new(JwtSessions { verifier, tokens }))
                    }
                }
            }
        };
        let userinfo = match &settings.userinfo {
            None => None,
            Some(u) => {
                let unchanged = previous.filter(|p| {
                    p.settings.userinfo.as_ref() == Some(u)
                        && p.settings.mapping == settings.mapping
                });
                match unchanged.and_then(|p| p.userinfo.clone()) {
                    Some(same) => Some(same),
                    None => Some(
                        Userinfo::new(u.clone(), settings.mapping.clone())
                            .map_err(|e| error("session.userinfo", e))?,
                    ),
                }
            }
        };
        Ok(SessionVerifier {
            settings: settings.clone(),
            jwt,
            userinfo,
        })
    }

    /// This verifier's key set, when `jwt` reads the same `[session.jwks]`.
    fn jwks_for(&self, jwt: &JwtSettings) -> Option<Arc<Jwks>> {
        let ours = self.settings.jwt.as_ref()?.jwks.as_ref()?;
        (Some(ours) == jwt.jwks.as_ref())
            .then(|| self.jwks().cloned())
            .flatten()
    }

    /// The settings this verifier was built from.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// How claims become an [`Identity`].
    pub fn mapping(&self) -> &ClaimMapping {
        &self.settings.mapping
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.settings.cookie
    }

    /// The session caches' counters: `("token", …)` and `("userinfo", …)` when configured.
    pub fn cache_counts(&self) -> Vec<(&'static str, &cache::CacheCounts)> {
        let tokens = self.jwt.as_ref().map(|j| ("token", j.tokens.counts()));
        let userinfo = self.userinfo.as_ref().map(|u| ("userinfo", u.counts()));
        tokens.into_iter().chain(userinfo).collect()
    }

    /// The JWKS key cache, when keys are published at a URL.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwt.as_ref().and_then(|j| j.verifier.jwks())
    }

    /// Finds the person in the request's headers, trying each source in order; the first that
    /// recognises them wins. `bearer` is false where a bearer token must not count (handoff
    /// routes: a browser navigation carries the cookie).
    ///
    /// When no source recognises the person, the reason reported is "unavailable" if a source
    /// could not ask (so a browser is not sent to a login page that would send it straight
    /// back), else that of the last source that found a credential, else "missing".
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        bearer: bool,
    ) -> Result<(Arc<Identity>, Source), SessionError> {
        let mut error = SessionError::Missing;
        for &source in &self.settings.sources {
            let result = match source {
                Source::Cookie => self.by_cookie(headers).await,
                Source::Bearer if bearer => self.by_bearer(headers).await,
                Source::Bearer => Err(SessionError::Missing),
                Source::Userinfo => self.by_userinfo(headers).await,
            };
            match result {
                Ok(identity) => return Ok((identity, source)),
                Err(SessionError::Missing) => {}
                Err(e) if !error.is_unavailable() => error = e,
                Err(_) => {}
            }
        }
        Err(error)
    }

    /// Cookies are read from every `Cookie` header (HTTP/2 clients send several). When the
    /// session cookie appears more than once, the first one that verifies wins; when none does,
    /// the first one's reason is reported. That is deterministic, and it tolerates the stale
    /// duplicate a browser keeps for another path or domain.
    async fn by_cookie(&self, headers: &HeaderMap) -> Result<Arc<Identity>, SessionError> {
        let mut first_error = None;
        let mut tried: Vec<String> = Vec::new();
        for token in session_cookies(headers, &self.settings.cookie) {
            if tried.len() == MAX_CANDIDATES {
                break;
            }
            // Once one failed: copies that cannot be a JWT (empty, a stray value) or were tried
            // already do not count, so a page that tosses junk cookies of this name cannot push
            // the real one out. (The first copy, nearly always the one that verifies, is not
            // looked at twice.)
            if first_error.is_some() && (!jwt::looks_like_jwt(&token) || tried.contains(&token)) {
                continue;
            }
            match self.by_jwt(&token).await {
                Ok(identity) => return Ok(identity),
                Err(e) => {
                    first_error.get_or_insert(e);
                    if jwt::looks_like_jwt(&token) {
                        tried.push(token);
                    }
                }
            }
        }
        Err(first_error.unwrap_or(SessionError::Missing))
    }

    async fn by_bearer(&self, headers: &HeaderMap) -> Result<Arc<Identity>, SessionError> {
        match bearer_token(headers) {
            Some(token) => self.by_jwt(token).await,
            None => Err(SessionError::Missing),
        }
    }

    /// A JWT's person: remembered from an earlier verification, or verified now.
    async fn by_jwt(&self, token: &str) -> Result<Arc<Identity>, SessionError> {
        let Some(JwtSessions {
            verifier: jwt,
            tokens,
        }) = self.jwt.as_deref()
        else {
            return Err(SessionError::Missing);
        };
        let generation = jwt.jwks().and_then(|j| j.generation());
        if let Some(identity) = tokens.get(token, generation) {
            return Ok(identity);
        }
        let claims = jwt.verify(token).await?;
        let identity = Arc::new(self.settings.mapping.identity(&claims));
        tokens.put(token, &claims, jwt.leeway_seconds(), &identity, generation);
        Ok(identity)
    }

    async fn by_userinfo(&self, headers: &HeaderMap) -> Result<Arc<Identity>, SessionError> {
        let Some(userinfo) = &self.userinfo else {
            return Err(SessionError::Missing);
        };
        match userinfo.lookup(headers).await {
            Ok(Answer::Person(identity)) => Ok(identity),
            Ok(Answer::NotSignedIn) => Err(SessionError::Rejected),
            Err(LookupError::NoCookie) => Err(SessionError::Missing),
            Err(LookupError::Unavailable) => Err(SessionError::Unavailable),
            Err(LookupError::Busy) => Err(SessionError::Busy),
        }
    }
}

/// The token of the (first) `Authorization: Bearer …` header; the scheme is case-insensitive.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The values of every cookie called `name`, across all `Cookie` headers, in order.
pub fn session_cookies<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    request_cookies(headers)
        .filter(move |c| c.name() == name)
        .map(|c| c.value_trimmed().to_string())
}

/// Every well-formed cookie of the request, across all `Cookie` headers, in order. A header
/// is split into `name=value` pairs as bytes (RFC 6265 values are bytes): a pair that is not
/// UTF-8 (`city=Z\xfcrich`) is skipped alone and never hides the others.
pub fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = cookie::Cookie<'_>> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| split_pairs(v.as_bytes()))
        .filter_map(|pair| std::str::from_utf8(pair).ok())
        .filter_map(|pair| cookie::Cookie::parse(pair.trim_start()).ok())
}

/// `bytes.split(|&b| b == b';')`, found with `memchr`: a session cookie is a JWT of a few
/// hundred bytes, looked through on every request.
fn split_pairs(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let pairs = rest?;
        match memchr::memchr(b';', pairs) {
            Some(end) => {
                rest = Some(&pairs[end + 1..]);
                Some(&pairs[..end])
            }
            None => {
                rest = None;
                Some(pairs)
            }
        }
    })
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
    fn pairs_split_as_the_slice_split_does() {
        for header in [
            "",
            ";",
            "a=1",
            "a=1;",
            ";a=1",
            "a=1; b=2;; c",
            "a=1;b=2 ; ;",
        ] {
            let ours: Vec<&[u8]> = split_pairs(header.as_bytes()).collect();
            let theirs: Vec<&[u8]> = header.as_bytes().split(|&b| b == b';').collect();
            assert_eq!(ours, theirs, "{header:?}");
        }
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header_in_order() {
        let h = headers(&["a=1; s=first", "b=2; s=second; s=third"]);
        let found: Vec<String> = session_cookies(&h, "s").collect();
        assert_eq!(found, vec!["first", "second", "third"]);
    }

    #[test]
    fn only_jwt_shaped_values_are_candidates() {
        assert!(jwt::looks_like_jwt("a.b.c"));
        assert!(jwt::looks_like_jwt("eyJ0.eyJz.")); // unsigned: refused later, by its header
        for junk in ["", "x", "a.b", "a.b.c.d", ".b.c", "..c"] {
            assert!(!jwt::looks_like_jwt(junk), "{junk:?}");
        }
    }

    #[test]
    fn a_non_ascii_cookie_hides_no_other() {
        let mut h = HeaderMap::new();
        for value in [
            &b"a=1; city=Z\xc3\xbcrich; s=one"[..],
            &b"latin=Z\xfcrich; s=two;x=\xff\xfe; s=three"[..],
        ] {
            h.append(COOKIE, HeaderValue::from_bytes(value).unwrap());
        }
        let found: Vec<String> = session_cookies(&h, "s").collect();
        assert_eq!(found, vec!["one", "two", "three"]);
        let city: Vec<String> = session_cookies(&h, "city").collect();
        assert_eq!(city, vec!["Zürich"]);
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(
            bearer_token(&with("Bearer abc.def.ghi")),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(&with("bearer  tok ")), Some("tok"));
        assert_eq!(bearer_token(&with("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer_token(&with("Bearer ")), None);
        assert_eq!(bearer_token(&with("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn odd_cookie_headers_do_not_panic() {
        let mut h = headers(&["=; ;;; s", "s=\"quoted\"", "s="]);
        h.append(COOKIE, HeaderValue::from_bytes(b"s=\xff\xfe").unwrap());
        let found: Vec<String> = session_cookies(&h, "s").collect();
        assert_eq!(found, vec!["quoted", ""]);
    }
}
