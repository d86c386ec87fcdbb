//! Minting the short-lived tokens the apps verify.

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value};

/// Signs `claims` with `key` under `header`, adding `iat`, `exp = iat + ttl` and a random `jti`
/// (they replace any the claims had).
pub fn mint(
    mut claims: Map<String, Value>,
    header: &Header,
    key: &EncodingKey,
    ttl: Duration,
) -> Result<String, String> {
    let now = jsonwebtoken::get_current_timestamp();
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl.as_secs()).into());
    claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    encode(header, &claims, key).map_err(|e| format!("cannot sign the token: {e}"))
}

/// The `jsonwebtoken` key for `alg` from a secret or a PEM private key.
pub fn encoding_key(alg: Algorithm, key: &crate::config::Secret) -> Result<EncodingKey, String> {
    let pem = key.expose();
    let parsed = match alg.family() {
        AlgorithmFamily::Hmac => return Ok(EncodingKey::from_secret(pem)),
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
    };
    // The error names the format problem, never the key.
    parsed.map_err(|e| format!("not a PEM private key of that type ({e})"))
}

/// Signs `claims` with HS256 and `secret`, adding `iat`, `exp = iat + ttl` and a random `jti`.
pub fn mint_hs256(
    claims: Map<String, Value>,
    secret: &[u8],
    ttl: Duration,
) -> Result<String, String> {
    mint(
        claims,
        &Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(secret),
        ttl,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

    #[test]
    fn minted_token_verifies_and_carries_iat_exp_jti() {
        let mut claims = Map::new();
        claims.insert("email".into(), "a@b.c".into());
        let token = mint_hs256(claims.clone(), b"s3cret", Duration::from_secs(300)).unwrap();
        let other = mint_hs256(claims, b"s3cret", Duration::from_secs(300)).unwrap();
        let data = decode::<Map<String, Value>>(
            &token,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        let c = data.claims;
        assert_eq!(c["email"], "a@b.c");
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
        assert_eq!(c["jti"].as_str().unwrap().len(), 36);
        assert_ne!(token, other, "jti makes every token unique");
    }
}
