//! Verifying a JWT session token against the `[session]` settings.
//!
//! Key confusion is impossible by construction: an HMAC algorithm is only ever checked against
//! the configured secret, an asymmetric one only against the configured public key, and the
//! algorithm must be on the allow-list before any key is touched. `alg: none` is never allowed.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::{Jwks, KeyMiss};
use super::SessionError;

/// Tokens longer than this are refused before any parsing (a cookie is at most ~4 KiB anyway).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A public key loaded from PEM, with the family it belongs to. Two keys are equal when their
/// PEM is (a reload of an unchanged file keeps what was built from it).
#[derive(Clone)]
pub struct PublicKey {
    family: AlgorithmFamily,
    key: DecodingKey,
    pem: Arc<[u8]>,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("family", &family_name(self.family))
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses a PEM public key (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`, or the key inside
    /// a `CERTIFICATE`) of any family. A private key is refused: it does not belong on the
    /// gateway, and jsonwebtoken would otherwise take it and then fail every token.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        if String::from_utf8_lossy(pem).contains("PRIVATE KEY-----") {
            return Err(
                "holds a private key; give the matching public key (openssl pkey -pubout)"
                    .to_string(),
            );
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(PublicKey {
                family: AlgorithmFamily::Rsa,
                key,
                pem: pem.into(),
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(PublicKey {
                family: AlgorithmFamily::Ec,
                key,
                pem: pem.into(),
            });
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(PublicKey {
                family: AlgorithmFamily::Ed,
                key,
                pem: pem.into(),
            });
        }
        Err(
            "not a PEM public key (RSA, EC or Ed25519; a certificate or private key will not do)"
                .to_string(),
        )
    }

    pub fn family(&self) -> AlgorithmFamily {
        self.family
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
}

struct AlgorithmCheck {
    alg: Algorithm,
    /// The JOSE name, as it appears in a token header.
    name: String,
    validation: Validation,
}

/// At most this many published keys are tried for a token without a `kid`.
const MAX_KEYS_WITHOUT_KID: usize = 8;

/// Verifies tokens. Built once at load time: one ready `Validation` per allowed algorithm.
pub struct JwtVerifier {
    checks: Vec<AlgorithmCheck>,
    hmac: Option<DecodingKey>,
    public_key: Option<PublicKey>,
    jwks: Option<Arc<Jwks>>,
    leeway_seconds: u64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<Algorithm> = self.checks.iter().map(|c| c.alg).collect();
        f.debug_struct("JwtVerifier")
            .field("algorithms", &algs)
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

/// The keys a [`JwtVerifier`] checks signatures with. HMAC algorithms only ever use `hmac`;
/// asymmetric ones only `public_key` (matching family) and `jwks`.
#[derive(Default)]
pub struct VerifyingKeys {
    pub hmac: Option<Vec<u8>>,
    pub public_key: Option<PublicKey>,
    pub jwks: Option<Arc<Jwks>>,
}

/// Checks that each allowed algorithm has a key it can use: an HMAC one the `secret`, an
/// asymmetric one a published key set or a `public_key_file` of its family. The error names
/// the algorithm and what it lacks.
pub fn check_keys(
    algorithms: &[Algorithm],
    hmac: bool,
    public_key: Option<AlgorithmFamily>,
    jwks: bool,
) -> Result<(), String> {
    for &alg in algorithms {
        let family = alg.family();
        match (family, hmac, public_key, jwks) {
            (AlgorithmFamily::Hmac, true, _, _) => {}
            (AlgorithmFamily::Hmac, false, _, _) => {
                return Err(format!("{alg:?} needs `secret`"));
            }
            (_, _, _, true) => {}
            (_, _, Some(pk), false) if pk == family => {}
            (_, _, Some(pk), false) => {
                return Err(format!(
                    "{alg:?} needs {} public key, but `public_key_file` holds {} key",
                    family_name(family),
                    family_name(pk)
                ));
            }
            (_, _, None, false) => {
                return Err(format!("{alg:?} needs `public_key_file` or [session.jwks]"));
            }
        }
    }
    Ok(())
}

impl JwtVerifier {
    /// Checks that each allowed algorithm has a key it can use. Fails, naming the algorithm,
    /// when the key it needs is not configured.
    pub fn new(
        algorithms: &[Algorithm],
        keys: VerifyingKeys,
        rules: &ClaimRules,
    ) -> Result<Self, String> {
        check_keys(
            algorithms,
            keys.hmac.is_some(),
            keys.public_key.as_ref().map(PublicKey::family),
            keys.jwks.is_some(),
        )?;
        let mut checks = Vec::with_capacity(algorithms.len());
        for &alg in algorithms {
            let mut validation = Validation::new(alg);
            validation.leeway = rules.leeway_seconds;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            let mut required = vec!["exp"];
            // jsonwebtoken only compares iss/aud when present: make them required when set.
            if let Some(iss) = &rules.issuer {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            // Without `audience`, a token that names one is refused (RFC 7519 §4.1.3: a
            // recipient that does not identify itself with the `aud` claim must reject it).
            if let Some(aud) = &rules.audience {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            validation.set_required_spec_claims(&required);
            checks.push(AlgorithmCheck {
                alg,
                name: format!("{alg:?}"),
                validation,
            });
        }
        Ok(JwtVerifier {
            checks,
            hmac: keys.hmac.as_deref().map(DecodingKey::from_secret),
            public_key: keys.public_key,
            jwks: keys.jwks,
            leeway_seconds: rules.leeway_seconds,
        })
    }

    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub fn leeway_seconds(&self) -> u64 {
        self.leeway_seconds
    }

    /// The JWKS key cache, when configured.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// Verifies one token and returns its claims, or the precise reason it was refused.
    ///
    /// An asymmetric token with a `kid` is checked against the published key of that id (an
    /// unknown id may trigger one refetch, see [`Jwks::key`]), falling back to the static
    /// public key; one without a `kid` against the static key, else each published key of its
    /// algorithm.
    pub async fn verify(&self, token: &str) -> Result<Map<String, Value>, SessionError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SessionError::Malformed);
        }
        let header = read_header(token)?;
        let check = self
            .checks
            .iter()
            .find(|c| c.name == header.alg)
            .ok_or(SessionError::AlgorithmNotAllowed)?;
        if check.alg.family() == AlgorithmFamily::Hmac {
            let key = self
                .hmac
                .as_ref()
                .ok_or(SessionError::AlgorithmNotAllowed)?;
            return decode(token, key, check);
        }
        let static_key = self
            .public_key
            .as_ref()
            .filter(|pk| pk.family == check.alg.family());
        let Some(jwks) = &self.jwks else {
            let pk = static_key.ok_or(SessionError::AlgorithmNotAllowed)?;
            return decode(token, &pk.key, check);
        };
        if let Some(kid) = &header.kid {
            match (jwks.key(kid, check.alg).await, static_key) {
                (Ok(key), _) => return decode(token, key.decoding_key(), check),
                (Err(_), Some(pk)) => return decode(token, &pk.key, check),
                (Err(KeyMiss::Unknown), None) => return Err(SessionError::UnknownKey),
                (Err(KeyMiss::NotLoaded), None) => return Err(SessionError::Unavailable),
            }
        }
        if let Some(pk) = static_key {
            return decode(token, &pk.key, check);
        }
        let keys = jwks
            .keys_for(check.alg)
            .map_err(|_| SessionError::Unavailable)?;
        let mut error = SessionError::UnknownKey;
        for key in keys.iter().take(MAX_KEYS_WITHOUT_KID) {
            match decode(token, key.decoding_key(), check) {
                Err(SessionError::BadSignature) => error = SessionError::BadSignature,
                result => return result,
            }
        }
        Err(error)
    }
}

fn decode(
    token: &str,
    key: &DecodingKey,
    check: &AlgorithmCheck,
) -> Result<Map<String, Value>, SessionError> {
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, &check.validation) {
        // With `issuer` set, `iss` must be one string: jsonwebtoken also takes an array that
        // holds the issuer among others.
        Ok(data)
            if check.validation.iss.is_some()
                && !data.claims.get("iss").is_some_and(Value::is_string) =>
        {
            Err(SessionError::WrongIssuer)
        }
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature => SessionError::BadSignature,
            ErrorKind::ExpiredSignature => SessionError::Expired,
            ErrorKind::ImmatureSignature => SessionError::NotYetValid,
            ErrorKind::InvalidIssuer => SessionError::WrongIssuer,
            ErrorKind::InvalidAudience => SessionError::WrongAudience,
            ErrorKind::MissingRequiredClaim(_) => SessionError::MissingClaim,
            ErrorKind::InvalidAlgorithm => SessionError::AlgorithmNotAllowed,
            _ => SessionError::Malformed,
        }),
    }
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "an HMAC",
        AlgorithmFamily::Rsa => "an RSA",
        AlgorithmFamily::Ec => "an EC",
        AlgorithmFamily::Ed => "an Ed25519",
    }
}

/// The parts of a token's header used to pick the key. Nothing else in it is trusted; a `crit`
/// header is refused (RFC 7515 §4.1.11: extensions listed there must be understood, and this
/// verifier understands none).
struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

/// A `kid` longer than this is refused as malformed (real ones are short ids or thumbprints).
const MAX_KID_BYTES: usize = 256;

fn read_header(token: &str) -> Result<TokenHeader, SessionError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SessionError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| SessionError::Malformed)?;
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
        crit: Option<Value>,
    }
    let h: Header = serde_json::from_slice(&bytes).map_err(|_| SessionError::Malformed)?;
    if h.crit.is_some() {
        return Err(SessionError::UnsupportedCritical);
    }
    if h.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_BYTES) {
        return Err(SessionError::Malformed);
    }
    Ok(TokenHeader {
        alg: h.alg,
        kid: h.kid,
    })
}

/// Parses a JOSE algorithm name. `none` and unknown names are refused.
/// Whether `token` has a JWS compact form's shape: three parts, the first two non-empty (a
/// cheap check before any signature work; the verifier reads the rest).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(c), Some(_), None) if !h.is_empty() && !c.is_empty()
    )
}

pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("`none` is never allowed: unsigned tokens prove nothing".to_string());
    }
    name.parse::<Algorithm>().map_err(|_| {
        format!(
            "unknown algorithm {name:?}; use one of HS256, HS384, HS512, RS256, RS384, RS512, \
             PS256, PS384, PS512, ES256, ES384, EdDSA"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs(claims: Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn verifier(rules: ClaimRules) -> JwtVerifier {
        let keys = VerifyingKeys {
            hmac: Some(b"k".to_vec()),
            ..VerifyingKeys::default()
        };
        JwtVerifier::new(&[Algorithm::HS256], keys, &rules).unwrap()
    }

    #[tokio::test]
    async fn valid_token_gives_claims() {
        let v = verifier(ClaimRules::default());
        let claims = v
            .verify(&hs(json!({"sub": "a", "exp": now() + 60}), b"k"))
            .await
            .unwrap();
        assert_eq!(claims["sub"], "a");
    }

    #[tokio::test]
    async fn each_refusal_has_its_reason() {
        let rules = ClaimRules {
            issuer: Some("iss-1".into()),
            audience: Some("aud-1".into()),
            leeway_seconds: 5,
        };
        let v = verifier(rules);
        let good = json!({"iss": "iss-1", "aud": "aud-1", "exp": now() + 60});
        assert!(v.verify(&hs(good.clone(), b"k")).await.is_ok());
        let with = |k: &str, val: Value| {
            let mut c = good.clone();
            c[k] = val;
            hs(c, b"k")
        };
        let without = |k: &str| {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(k);
            hs(c, b"k")
        };
        assert_eq!(
            v.verify(&hs(good.clone(), b"other")).await,
            Err(SessionError::BadSignature)
        );
        assert_eq!(
            v.verify(&with("exp", json!(now() - 10))).await,
            Err(SessionError::Expired)
        );
        assert!(
            v.verify(&with("exp", json!(now() - 2))).await.is_ok(),
            "within leeway"
        );
        assert_eq!(
            v.verify(&with("nbf", json!(now() + 60))).await,
            Err(SessionError::NotYetValid)
        );
        assert_eq!(
            v.verify(&with("iss", json!("evil"))).await,
            Err(SessionError::WrongIssuer)
        );
        assert_eq!(
            v.verify(&with("aud", json!("evil"))).await,
            Err(SessionError::WrongAudience)
        );
        assert_eq!(
            v.verify(&without("iss")).await,
            Err(SessionError::MissingClaim)
        );
        assert_eq!(
            v.verify(&without("aud")).await,
            Err(SessionError::MissingClaim)
        );
        assert_eq!(
            v.verify(&without("exp")).await,
            Err(SessionError::MissingClaim)
        );
        assert_eq!(v.verify("a.b").await, Err(SessionError::Malformed));
        assert_eq!(v.verify("a.b.c.d").await, Err(SessionError::Malformed));
        assert_eq!(
            v.verify(&"x".repeat(20_000)).await,
            Err(SessionError::Malformed)
        );
    }

    #[tokio::test]
    async fn none_and_unlisted_algorithms_are_refused() {
        let v = verifier(ClaimRules::default());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, now() + 60));
        assert_eq!(
            v.verify(&format!("{header}.{body}.")).await,
            Err(SessionError::AlgorithmNotAllowed)
        );
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({"exp": now() + 60}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(
            v.verify(&hs512).await,
            Err(SessionError::AlgorithmNotAllowed)
        );
        assert!(parse_algorithm("none").is_err());
        assert!(parse_algorithm("hs256").is_err());
        assert_eq!(parse_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
    }

    #[test]
    fn missing_key_for_an_algorithm_is_named() {
        let hmac_only = VerifyingKeys {
            hmac: Some(b"k".to_vec()),
            ..VerifyingKeys::default()
        };
        let err =
            JwtVerifier::new(&[Algorithm::RS256], hmac_only, &ClaimRules::default()).unwrap_err();
        assert!(
            err.contains("RS256 needs `public_key_file` or [session.jwks]"),
            "{err}"
        );
        let err = JwtVerifier::new(
            &[Algorithm::HS256],
            VerifyingKeys::default(),
            &ClaimRules::default(),
        )
        .unwrap_err();
        assert!(err.contains("HS256 needs `secret`"), "{err}");
    }
}
