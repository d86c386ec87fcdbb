//! `[log]` → [`LogSettings`]: the log format and destination, and what the access log may say
//! about a person and a request.

use std::path::Path;

use super::raw::RawLog;
use super::validate::Problems;
use super::Secret;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default: for log shippers).
    Json,
    /// `tracing`'s human-readable lines.
    Text,
}

/// How the access log names the person a request came from.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonInLog {
    /// Their id, as the session gives it.
    Id,
    /// HMAC-SHA256 of their id under `person_hash_key`, hex (the same person hashes the same
    /// way across restarts and instances that share the key).
    Hash(Secret),
    /// Not at all.
    None,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Append to this file instead of writing to stderr.
    pub file: Option<String>,
    /// One access-log line per request.
    pub access: bool,
    pub person: PersonInLog,
    /// Log the query string of proxied requests (never of handoff routes).
    pub query: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Json,
            file: None,
            access: true,
            person: PersonInLog::Id,
            query: false,
        }
    }
}

pub(super) fn log_settings(raw: RawLog, base_dir: &Path, p: &mut Problems) -> LogSettings {
    let format = match raw.format.as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            p.add(
                "log.format",
                format!("{other:?}: expected \"json\" or \"text\""),
            );
            LogFormat::Json
        }
    };
    let person = match raw.person.as_deref() {
        None | Some("id") => PersonInLog::Id,
        Some("none") => PersonInLog::None,
        Some("hash") => match &raw.person_hash_key {
            Some(r) => match p.secret("log.person_hash_key", r, base_dir) {
                Some(key) if key.expose().len() >= 16 => PersonInLog::Hash(key),
                Some(_) => {
                    p.add("log.person_hash_key", "must be at least 16 bytes long");
                    PersonInLog::None
                }
                None => PersonInLog::None,
            },
            None => {
                p.add(
                    "log.person_hash_key",
                    "person = \"hash\" needs a key: { env = \"NAME\" } or { file = \"path\" }",
                );
                PersonInLog::None
            }
        },
        Some(other) => {
            p.add(
                "log.person",
                format!("{other:?}: expected \"id\", \"hash\" or \"none\""),
            );
            PersonInLog::Id
        }
    };
    if raw.person_hash_key.is_some() && raw.person.as_deref() != Some("hash") {
        p.add("log.person_hash_key", "only used with person = \"hash\"");
    }
    let file = raw.file.map(|f| base_dir.join(f).display().to_string());
    LogSettings {
        format,
        file,
        access: raw.access.unwrap_or(true),
        person,
        query: raw.query.unwrap_or(false),
    }
}
