//! Config parsing: arbitrary text through the whole validation path. Must answer with a config
//! or a list of problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative key and secret files resolve under a folder that does not exist.
    match handoff::internals::config::from_toml_str(
        text,
        std::path::Path::new("/nonexistent/handoff-fuzz"),
    ) {
        Ok(_) => {}
        Err(errors) => {
            let shown = errors.to_string();
            assert!(!shown.is_empty(), "an error without a message");
        }
    }
});
