//! Plain HTTP sent to a TLS listener gets a short plain-HTTP `400` that says so (nginx's "The
//! plain HTTP request was sent to HTTPS port"), instead of a TLS alert a browser or curl
//! shows as gibberish. Runs before the TLS handshake (Pingora's pre-TLS hook), on the first
//! byte: a TLS connection starts with a handshake record (`0x16`).

use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Of a plain-HTTP request, read at most this much before answering (so the answer is not lost
/// to a reset for unread bytes), and for at most this long.
const MAX_HEAD: usize = 16 * 1024;
const HEAD_WAIT: Duration = Duration::from_secs(2);

const BODY: &str = "This port speaks HTTPS: a plain HTTP request was sent to an HTTPS port.\n";

/// The whole plain-HTTP answer (made when needed: this is no hot path).
fn answer() -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    )
}

/// The pre-TLS check of the standalone's TLS listeners; give it to your own service's
/// listeners with `service.endpoints().set_pre_tls_callback(Arc::new(…))` (it runs on TLS
/// endpoints only).
pub struct PlainHttpOnTlsPort {
    /// How long a new connection may stay silent before its first byte (the standalone uses
    /// `server.client_header_timeout_seconds`).
    pub first_byte_wait: Duration,
}

#[async_trait]
impl PreTlsProcess for PlainHttpOnTlsPort {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.first_byte_wait, stream.read_exact(&mut first)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(closed(format!("closed before a byte: {e}"))),
            Err(_) => return Err(closed("silent past client_header_timeout_seconds".into())),
        }
        stream.rewind(&first);
        if first[0] == TLS_HANDSHAKE {
            return Ok(());
        }
        if first[0].is_ascii_uppercase() {
            // Looks like a request line (`GET / HTTP/1.1`): read its head, then answer.
            let _ = tokio::time::timeout(HEAD_WAIT, read_head(stream)).await;
            let _ = stream.write_all(answer().as_bytes()).await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
            return Err(closed("plain HTTP on the TLS port: answered 400".into()));
        }
        Err(closed(format!(
            "neither TLS nor HTTP (first byte {:#04x})",
            first[0]
        )))
    }
}

/// Reads until the end of a request head (`\r\n\r\n`), [`MAX_HEAD`] bytes or the end of the
/// stream, whichever comes first.
async fn read_head(stream: &mut L4Stream) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

fn closed(why: String) -> Box<Error> {
    Error::explain(ErrorType::ConnectionClosed, why)
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn the_answer_is_well_framed() {
        let answer = answer();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
    }
}
