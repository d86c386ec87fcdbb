//! What a log line may say about a Pingora error: its kind and its root cause, on one line.
//!
//! Pingora's own `Display` walks the whole chain with every context, and contexts hold what
//! was at hand: a peer as `Debug`, or the raw bytes of a malformed upstream head — which may
//! carry a `Set-Cookie` with a session. Logs get this summary instead.

use pingora::{Error, ErrorType};

/// `Upstream ConnectRefused: Connection refused (os error 111)`, `Upstream InvalidHTTPHeader`,
/// `non 200 code (503)`: the source, the kind of each error in the chain, and the innermost
/// cause when it is not one of Pingora's own (an I/O error) — never a context.
pub fn summary(e: &Error) -> String {
    let mut text = format!("{:?} {}", e.esource(), kind(e.etype()));
    let mut cause = e.cause.as_deref();
    while let Some(c) = cause {
        let pingora_error = c
            .downcast_ref::<Box<Error>>()
            .map(|b| &**b)
            .or_else(|| c.downcast_ref::<Error>());
        match pingora_error {
            Some(inner) => {
                text.push_str(": ");
                text.push_str(&kind(inner.etype()));
                cause = inner.cause.as_deref();
            }
            None => {
                text.push_str(": ");
                text.push_str(&c.to_string());
                break;
            }
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn kind(etype: &ErrorType) -> String {
    match etype {
        ErrorType::CustomCode(what, code) => format!("{what} ({code})"),
        other => other.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::{ErrorSource, OrErr};

    #[test]
    fn a_summary_keeps_kinds_and_the_root_cause_never_a_context() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let inner: pingora::Result<()> = Err(io).or_err_with(ConnectRefused, || {
            "Fail to connect to HttpPeer { secret-looking Debug }".to_string()
        });
        let mut outer = Error::because(
            ConnectRefused,
            "Set-Cookie: session=eyJ",
            inner.unwrap_err(),
        );
        outer.esource = ErrorSource::Upstream;
        let text = summary(&outer);
        assert_eq!(
            text,
            "Upstream ConnectRefused: ConnectRefused: Connection refused"
        );
        let code = Error::explain(ErrorType::CustomCode("non 200 code", 503), "buf: HTTP/1.1");
        assert_eq!(summary(&code), "Unset non 200 code (503)");
    }

    use ErrorType::ConnectRefused;
}
