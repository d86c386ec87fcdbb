//! Vendor response parsing: any status and body from YourGPT, and any userinfo answer, must be
//! read or refused, never panic.
#![no_main]

use handoff::internals::apps::yourgpt::parse_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (200, data),
    };
    if let Some(answer) = parse_answer(status, body) {
        // Whatever it says, a debug view of it must be printable (it goes into logs redacted).
        let _ = format!("{answer:?}");
    }
});
