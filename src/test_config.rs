//! One config for the unit tests that need a whole gateway (the decision table, the wire
//! tests): a session, one upstream, a TypingMind app with widgets, and a public, a protected and
//! a handoff route — with its secret files written to a folder of its own.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The HS256 key the test sessions are signed with.
pub(crate) const SESSION_SECRET: &str = "unit-test-session-secret-0123456789abcdef";

/// The config text and the folder its relative paths resolve from.
pub(crate) fn config() -> (String, PathBuf) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            // One folder for every run, not one left behind per process: the files are the same
            // each time, written whole under a name of this process's and renamed into place,
            // so a test reading them (here or in a run alongside) never sees half of one.
            let dir = std::env::temp_dir().join("handoff-unit-tests");
            std::fs::create_dir_all(&dir).unwrap();
            for (name, secret) in [
                ("session.txt", SESSION_SECRET),
                ("tm.txt", "unit-test-typingmind-secret"),
            ] {
                let part = dir.join(format!("{name}.{}", std::process::id()));
                std::fs::write(&part, secret).unwrap();
                std::fs::rename(&part, dir.join(name)).unwrap();
            }
            dir
        })
        .clone();
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
