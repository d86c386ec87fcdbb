//! HMAC-SHA256, the keyed hash for what is kept or shown: cache keys for credentials (so a raw
//! cookie or token is never kept) and the log's pseudonym for a person (`[log] person = "hash"`).
//! (The upstream pool key of a request's credentials, `upstream::credentials_key`, is a 64-bit
//! aHash instead: it is only a bucket, never stored or shown, and it runs on every request.)

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `value` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `value` under `key`, lowercase hex (64 digits).
pub(crate) fn hmac_sha256_hex(key: &[u8], value: &[u8]) -> String {
    hex(&hmac_sha256(key, value))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `hex` is the HMAC-SHA256 of `value` under `key` (hex digits of either case),
/// compared in constant time.
pub(crate) fn verify_hmac_sha256_hex(key: &[u8], value: &[u8], hex: &str) -> bool {
    let digit = |c: u8| (c as char).to_digit(16);
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return false;
    }
    let tag: Option<Vec<u8>> = bytes
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect();
    let Some(tag) = tag else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(value);
    mac.verify_slice(&tag).is_ok()
}

/// HMAC-SHA256 of `value` under `key`, as 32 hex digits (the first 16 bytes): a stable
/// pseudonym for logs.
pub(crate) fn pseudonym(key: &[u8], value: &[u8]) -> String {
    hex(&hmac_sha256(key, value)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_key() {
        assert_eq!(pseudonym(b"k", b"ada"), pseudonym(b"k", b"ada"));
        assert_ne!(pseudonym(b"k", b"ada"), pseudonym(b"k2", b"ada"));
        assert_eq!(pseudonym(b"k", b"ada").len(), 32);
    }

    #[test]
    fn hex_tags_verify_in_either_case_and_nothing_else_does() {
        let tag = hmac_sha256_hex(b"k", b"payload");
        assert!(verify_hmac_sha256_hex(b"k", b"payload", &tag));
        assert!(verify_hmac_sha256_hex(
            b"k",
            b"payload",
            &tag.to_uppercase()
        ));
        assert!(!verify_hmac_sha256_hex(b"k2", b"payload", &tag));
        assert!(!verify_hmac_sha256_hex(b"k", b"payload", &tag[..62]));
        let signed = format!("+{}", &tag[1..]);
        assert!(!verify_hmac_sha256_hex(b"k", b"payload", &signed));
        assert!(!verify_hmac_sha256_hex(
            b"k",
            b"payload",
            "é".repeat(32).as_str()
        ));
    }
}
