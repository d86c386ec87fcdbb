//! One config for the unit tests that need a whole gateway (the decision table, the wire
//! tests): a session, one upstream, a TypingMind app with widgets, and a public, a protected and
//! a handoff route — with its secret files written to a folder of its own.

use std::path::PathBuf;

/// The HS256 key the test sessions are signed with.
pub(crate) const SESSION_SECRET: &str = "unit-test-session-secret-0123456789abcdef";

/// The config text and the folder its relative paths resolve from.
pub(crate) fn config() -> (String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("handoff-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("session.txt"), SESSION_SECRET).unwrap();
    std::fs::write(dir.join("tm.txt"), "unit-test-typingmind-secret").unwrap();
    let text = r#"
[session]
cookie = "sid"
algorithms = ["HS256"]
secret = { file = "session.txt" }
login_url = "https://sso.example/login?next={return_to}"

[upstreams.intranet]
servers = ["127.0.0.1:9"]
health_check = { type = "none" }

[apps.chat]
kind = "typingmind"
instance_url = "https://chat.example"
secret = { file = "tm.txt" }
widget = true

[[routes]]
path = "/"
upstream = "intranet"

[[routes]]
path = "/private"
upstream = "intranet"
require_session = true
allow = { groups = ["eng"] }

[[routes]]
path = "/ai/chat"
app = "chat"
"#;
    (text.to_string(), dir)
}
