//! Verifying a JWT session token against the `[session]` settings.
//!
//! Key confusion is impossible by construction: an HMAC algorithm is only ever checked against
//! the configured secret, an asymmetric one only against the configured public key, and the
//! algorithm must be on the allow-list before any key is touched. `alg: none` is never allowed.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::SessionError;

/// Tokens longer than this are refused before any parsing (a cookie is at most ~4 KiB anyway).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A public key loaded from PEM, with the family it belongs to.
pub struct PublicKey {
    family: AlgorithmFamily,
    key: DecodingKey,
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
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(PublicKey {
                family: AlgorithmFamily::Ec,
                key,
            });
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(PublicKey {
                family: AlgorithmFamily::Ed,
                key,
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
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
}

struct AlgorithmCheck {
    alg: Algorithm,
    /// The JOSE name, as it appears in a token header.
    name: String,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies tokens. Built once at load time: one ready `Validation` per allowed algorithm.
pub struct JwtVerifier {
    checks: Vec<AlgorithmCheck>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algs: Vec<Algorithm> = self.checks.iter().map(|c| c.alg).collect();
        f.debug_struct("JwtVerifier")
            .field("algorithms", &algs)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Pairs each allowed algorithm with the one key of its family. Fails, naming the algorithm,
    /// when the key it needs is not configured.
    pub fn new(
        algorithms: &[Algorithm],
        hmac_secret: Option<&[u8]>,
        public_key: Option<&PublicKey>,
        rules: &ClaimRules,
    ) -> Result<Self, String> {
        let mut checks = Vec::with_capacity(algorithms.len());
        for &alg in algorithms {
            let family = alg.family();
            let key = match (family, hmac_secret, public_key) {
                (AlgorithmFamily::Hmac, Some(secret), _) => DecodingKey::from_secret(secret),
                (AlgorithmFamily::Hmac, None, _) => {
                    return Err(format!("{alg:?} needs `secret`"));
                }
                (_, _, Some(pk)) if pk.family == family => pk.key.clone(),
                (_, _, Some(pk)) => {
                    return Err(format!(
                        "{alg:?} needs {} public key, but `public_key_file` holds {} key",
                        family_name(family),
                        family_name(pk.family)
                    ));
                }
                (_, _, None) => return Err(format!("{alg:?} needs `public_key_file`")),
            };
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
            match &rules.audience {
                Some(aud) => {
                    validation.set_audience(&[aud]);
                    required.push("aud");
                }
                None => validation.validate_aud = false,
            }
            validation.set_required_spec_claims(&required);
            checks.push(AlgorithmCheck {
                alg,
                name: format!("{alg:?}"),
                key,
                validation,
            });
        }
        Ok(JwtVerifier { checks })
    }

    /// Verifies one token and returns its claims, or the precise reason it was refused.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, SessionError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SessionError::Malformed);
        }
        let alg_name = header_alg(token)?;
        let check = self
            .checks
            .iter()
            .find(|c| c.name == alg_name)
            .ok_or(SessionError::AlgorithmNotAllowed)?;
        match jsonwebtoken::decode::<Map<String, Value>>(token, &check.key, &check.validation) {
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
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "an HMAC",
        AlgorithmFamily::Rsa => "an RSA",
        AlgorithmFamily::Ec => "an EC",
        AlgorithmFamily::Ed => "an Ed25519",
    }
}

/// Reads `alg` from the token's header without trusting anything else in it.
fn header_alg(token: &str) -> Result<String, SessionError> {
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
    }
    serde_json::from_slice::<Header>(&bytes)
        .map(|h| h.alg)
        .map_err(|_| SessionError::Malformed)
}

/// Parses a JOSE algorithm name. `none` and unknown names are refused.
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
        JwtVerifier::new(&[Algorithm::HS256], Some(b"k".as_slice()), None, &rules).unwrap()
    }

    #[test]
    fn valid_token_gives_claims() {
        let v = verifier(ClaimRules::default());
        let claims = v
            .verify(&hs(json!({"sub": "a", "exp": now() + 60}), b"k"))
            .unwrap();
        assert_eq!(claims["sub"], "a");
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let rules = ClaimRules {
            issuer: Some("iss-1".into()),
            audience: Some("aud-1".into()),
            leeway_seconds: 5,
        };
        let v = verifier(rules);
        let good = json!({"iss": "iss-1", "aud": "aud-1", "exp": now() + 60});
        assert!(v.verify(&hs(good.clone(), b"k")).is_ok());
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
            v.verify(&hs(good.clone(), b"other")),
            Err(SessionError::BadSignature)
        );
        assert_eq!(
            v.verify(&with("exp", json!(now() - 10))),
            Err(SessionError::Expired)
        );
        assert!(
            v.verify(&with("exp", json!(now() - 2))).is_ok(),
            "within leeway"
        );
        assert_eq!(
            v.verify(&with("nbf", json!(now() + 60))),
            Err(SessionError::NotYetValid)
        );
        assert_eq!(
            v.verify(&with("iss", json!("evil"))),
            Err(SessionError::WrongIssuer)
        );
        assert_eq!(
            v.verify(&with("aud", json!("evil"))),
            Err(SessionError::WrongAudience)
        );
        assert_eq!(v.verify(&without("iss")), Err(SessionError::MissingClaim));
        assert_eq!(v.verify(&without("aud")), Err(SessionError::MissingClaim));
        assert_eq!(v.verify(&without("exp")), Err(SessionError::MissingClaim));
        assert_eq!(v.verify("a.b"), Err(SessionError::Malformed));
        assert_eq!(v.verify("a.b.c.d"), Err(SessionError::Malformed));
        assert_eq!(v.verify(&"x".repeat(20_000)), Err(SessionError::Malformed));
    }

    #[test]
    fn none_and_unlisted_algorithms_are_refused() {
        let v = verifier(ClaimRules::default());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, now() + 60));
        assert_eq!(
            v.verify(&format!("{header}.{body}.")),
            Err(SessionError::AlgorithmNotAllowed)
        );
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({"exp": now() + 60}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(v.verify(&hs512), Err(SessionError::AlgorithmNotAllowed));
        assert!(parse_algorithm("none").is_err());
        assert!(parse_algorithm("hs256").is_err());
        assert_eq!(parse_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
    }

    #[test]
    fn missing_key_for_an_algorithm_is_named() {
        let err = JwtVerifier::new(
            &[Algorithm::RS256],
            Some(b"k"),
            None,
            &ClaimRules::default(),
        )
        .unwrap_err();
        assert!(err.contains("RS256 needs `public_key_file`"), "{err}");
        let err =
            JwtVerifier::new(&[Algorithm::HS256], None, None, &ClaimRules::default()).unwrap_err();
        assert!(err.contains("HS256 needs `secret`"), "{err}");
    }
}
