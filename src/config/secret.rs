//! Secrets in the config file are references, never literals.
//!
//! A secret is written `{ env = "NAME" }` or `{ file = "PATH" }`. A literal string is refused
//! when the file is parsed, so a secret can never end up committed in a config file. Once
//! resolved, the bytes live in [`Secret`], whose `Debug` never shows them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

const LITERAL_REFUSED: &str =
    r#"a literal secret is refused; write { env = "NAME" } or { file = "PATH" }"#;

/// Where a secret comes from, as written in the config file.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `{ env = "NAME" }`: the value of an environment variable.
    Env(String),
    /// `{ file = "PATH" }`: the contents of a file (one trailing newline is dropped).
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "{{ env = {name:?} }}"),
            SecretRef::File(path) => write!(f, "{{ file = {:?} }}", path.display().to_string()),
        }
    }
}

impl SecretRef {
    /// Reads the secret. Relative file paths are taken from `base_dir` (the config file's folder).
    /// The error names the variable or the file, never the value.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, String> {
        let bytes = match self {
            SecretRef::Env(name) => match std::env::var_os(name) {
                Some(v) => v.into_encoded_bytes(),
                None => return Err(format!("environment variable {name} is not set")),
            },
            SecretRef::File(path) => {
                let full = base_dir.join(path);
                let mut bytes = read_capped(&full)
                    .map_err(|e| format!("cannot read secret file {}: {e}", full.display()))?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                bytes
            }
        };
        if bytes.is_empty() {
            return Err(match self {
                SecretRef::Env(name) => format!("environment variable {name} is empty"),
                SecretRef::File(path) => format!("secret file {} is empty", path.display()),
            });
        }
        Ok(Secret(bytes.into_boxed_slice()))
    }
}

/// The most a secret file may hold: a 4096-bit PEM key is about 3 kB. A larger file (or one
/// that never ends, such as `/dev/zero`) is not a secret, and is not read whole.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "it holds more than {} KiB, more than any secret or key",
            MAX_SECRET_FILE_BYTES / 1024
        )));
    }
    Ok(bytes)
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl<'de> Visitor<'de> for RefVisitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a secret reference: { env = "NAME" } or { file = "PATH" }"#)
            }
            // Literal values are refused without ever being echoed in the error.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_REFUSED))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_REFUSED))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_REFUSED))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_REFUSED))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_REFUSED))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
                Err(de::Error::custom(LITERAL_REFUSED))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found: Option<SecretRef> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let next = match key.as_str() {
                        "env" => SecretRef::Env(value),
                        "file" => SecretRef::File(PathBuf::from(value)),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a secret reference; use `env` or `file`"
                            )))
                        }
                    };
                    if found.replace(next).is_some() {
                        return Err(de::Error::custom(
                            "a secret reference takes exactly one of `env` or `file`",
                        ));
                    }
                }
                match found {
                    Some(SecretRef::Env(ref n)) if n.is_empty() => {
                        Err(de::Error::custom("`env` needs a variable name"))
                    }
                    Some(SecretRef::File(ref p)) if p.as_os_str().is_empty() => {
                        Err(de::Error::custom("`file` needs a path"))
                    }
                    Some(r) => Ok(r),
                    None => Err(de::Error::custom(
                        r#"empty secret reference; write { env = "NAME" } or { file = "PATH" }"#,
                    )),
                }
            }
        }
        deserializer.deserialize_any(RefVisitor)
    }
}

/// Secret bytes. `Debug` and `Display` never show them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Wraps bytes given in code (typed settings); the same redaction applies.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into().into_boxed_slice())
    }

    /// The secret bytes. Use them; never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Holder {
        secret: SecretRef,
    }

    #[test]
    fn an_endless_or_huge_file_is_not_read_whole() {
        let e = SecretRef::File("/dev/zero".into())
            .resolve(Path::new("/"))
            .unwrap_err();
        assert!(e.contains("more than 64 KiB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![b'k'; 64 * 1024 + 1]).unwrap();
        assert!(SecretRef::File("big".into()).resolve(dir.path()).is_err());
        std::fs::write(dir.path().join("ok"), vec![b'k'; 64 * 1024]).unwrap();
        assert!(SecretRef::File("ok".into()).resolve(dir.path()).is_ok());
    }

    fn parse(s: &str) -> Result<SecretRef, String> {
        toml::from_str::<Holder>(s)
            .map(|h| h.secret)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn env_and_file_references_parse() {
        assert_eq!(
            parse(r#"secret = { env = "X" }"#),
            Ok(SecretRef::Env("X".into()))
        );
        assert_eq!(
            parse(r#"secret = { file = "/run/s" }"#),
            Ok(SecretRef::File("/run/s".into()))
        );
    }

    #[test]
    fn literal_and_malformed_references_are_refused() {
        assert!(parse(r#"secret = "hunter2""#)
            .unwrap_err()
            .contains("literal secret is refused"));
        let numeric = parse("secret = 84613927").unwrap_err();
        assert!(numeric.contains("literal secret is refused"), "{numeric}");
        assert!(!numeric.contains("84613927"), "{numeric}");
        assert!(parse(r#"secret = { env = "A", file = "b" }"#)
            .unwrap_err()
            .contains("exactly one"));
        assert!(parse(r#"secret = { value = "x" }"#)
            .unwrap_err()
            .contains("unknown key `value`"));
        assert!(parse(r#"secret = {}"#)
            .unwrap_err()
            .contains("empty secret"));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(b"super-secret-value".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn file_secret_drops_one_trailing_newline_and_missing_env_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "abc\n").unwrap();
        let s = SecretRef::File("s.txt".into()).resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), b"abc");
        let err = SecretRef::Env("HANDOFF_TEST_SURELY_UNSET".into())
            .resolve(dir.path())
            .unwrap_err();
        assert!(err.contains("HANDOFF_TEST_SURELY_UNSET is not set"));
    }
}
