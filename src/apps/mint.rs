//! Minting the short-lived HS256 tokens the vendors verify.

use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{Map, Value};

/// Signs `claims` with HS256 and `secret`, adding `iat`, `exp = iat + ttl` and a random `jti`.
pub fn mint_hs256(
    mut claims: Map<String, Value>,
    secret: &[u8],
    ttl: Duration,
) -> Result<String, String> {
    let now = jsonwebtoken::get_current_timestamp();
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl.as_secs()).into());
    claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| format!("cannot sign the token: {e}"))
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
