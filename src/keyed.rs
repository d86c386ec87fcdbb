//! HMAC-SHA256, the one keyed hash the gateway uses: cache keys for credentials (so a raw
//! cookie or token is never kept) and the log's pseudonym for a person (`[log] person = "hash"`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `value` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `value` under `key`, as 32 hex digits (the first 16 bytes): a stable
/// pseudonym for logs.
pub(crate) fn pseudonym(key: &[u8], value: &[u8]) -> String {
    hmac_sha256(key, value)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
}
