//! Undoing an HTML page's content encoding so its widget tags can be rewritten — never past a
//! cap. A 1 MiB gzip answer can hold 1 GiB; every decoder here writes into a sink that refuses
//! to grow past the cap, so a page inflates to at most the cap, whatever the upstream sends.
//!
//! `gzip` (and `x-gzip`), `br` and `zstd` are undone; anything else (`deflate`, whose framing
//! servers disagree on, or a list of encodings) is not. Free of Pingora types.

use std::io::{self, Write};

/// Why a page could not be inflated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    /// The page inflates to more than the cap; inflating stopped there.
    #[error("the page inflates to more than {cap} bytes (widget_max_page_bytes)")]
    TooLarge { cap: usize },
    /// The bytes are not valid in the encoding the upstream named.
    #[error("the page is not valid {encoding}: {reason}")]
    Corrupt {
        encoding: &'static str,
        reason: String,
    },
}

/// A streaming decoder of one response body whose output never passes `cap` bytes in all.
pub struct Inflater {
    decoder: Decoder,
    encoding: &'static str,
}

enum Decoder {
    Gzip(flate2::write::GzDecoder<Capped>),
    Brotli(Box<brotli::DecompressorWriter<Capped>>),
    Zstd(zstd::stream::write::Decoder<'static, Capped>),
}

/// The largest zstd window accepted: 8 MiB, the bound RFC 8878 sets for HTTP (a frame may ask
/// for up to 2 GiB of window otherwise).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// The brotli decoder's input buffer.
const BROTLI_BUFFER: usize = 4096;

impl Inflater {
    /// A decoder for a `Content-Encoding` value (trimmed, any case), or `None` when the
    /// gateway cannot undo it.
    pub fn new(content_encoding: &str, cap: usize) -> Option<Self> {
        let sink = Capped {
            out: Vec::new(),
            total: 0,
            cap,
        };
        let encoding = content_encoding.trim().to_ascii_lowercase();
        let (decoder, encoding) = match encoding.as_str() {
            "gzip" | "x-gzip" => (Decoder::Gzip(flate2::write::GzDecoder::new(sink)), "gzip"),
            "br" => (
                Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(
                    sink,
                    BROTLI_BUFFER,
                ))),
                "br",
            ),
            "zstd" => {
                let mut raw = zstd::stream::raw::Decoder::new().ok()?;
                raw.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                    ZSTD_WINDOW_LOG_MAX,
                ))
                .ok()?;
                (
                    Decoder::Zstd(zstd::stream::write::Decoder::with_decoder(sink, raw)),
                    "zstd",
                )
            }
            _ => return None,
        };
        Some(Inflater { decoder, encoding })
    }

    /// Feeds one chunk of the encoded body; returns what it decodes to so far.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, InflateError> {
        let written = match &mut self.decoder {
            Decoder::Gzip(d) => d.write_all(chunk),
            Decoder::Brotli(d) => d.write_all(chunk),
            Decoder::Zstd(d) => d.write_all(chunk).and_then(|()| d.flush()),
        };
        self.settle(written)
    }

    /// Ends the body; returns the last decoded bytes. A body cut short is an error.
    pub fn finish(&mut self) -> Result<Vec<u8>, InflateError> {
        let finished = match &mut self.decoder {
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Brotli(d) => d.close(),
            Decoder::Zstd(d) => d.do_finish(),
        };
        self.settle(finished)
    }

    fn sink(&mut self) -> &mut Capped {
        match &mut self.decoder {
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Brotli(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
        }
    }

    fn settle(&mut self, result: io::Result<()>) -> Result<Vec<u8>, InflateError> {
        let sink = self.sink();
        let out = std::mem::take(&mut sink.out);
        match result {
            Ok(()) => Ok(out),
            Err(_) if sink.total > sink.cap => Err(InflateError::TooLarge { cap: sink.cap }),
            Err(e) => Err(InflateError::Corrupt {
                encoding: self.encoding,
                reason: e.to_string(),
            }),
        }
    }
}

/// Collects decoded bytes, refusing (with an I/O error) any write that would take the total
/// past `cap`. `total` then says by how much it was asked to go over.
struct Capped {
    out: Vec<u8>,
    total: usize,
    cap: usize,
}

impl Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.total = self.total.saturating_add(bytes.len());
        if self.total > self.cap {
            return Err(io::Error::other("inflated past the cap"));
        }
        self.out.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(data).unwrap();
        }
        out
    }

    fn inflate_all(
        encoding: &str,
        body: &[u8],
        cap: usize,
        chunk: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let mut inflater = Inflater::new(encoding, cap).expect("a known encoding");
        let mut out = Vec::new();
        for piece in body.chunks(chunk) {
            out.extend(inflater.write(piece)?);
        }
        out.extend(inflater.finish()?);
        Ok(out)
    }

    #[test]
    fn each_encoding_round_trips_in_any_chunking() {
        let page = "<html><body>".to_string() + &"caf\u{e9} ".repeat(5000) + "</body></html>";
        let zstd = zstd::encode_all(page.as_bytes(), 3).unwrap();
        for (encoding, body) in [
            ("gzip", gzip(page.as_bytes())),
            (" X-GZIP ", gzip(page.as_bytes())),
            ("br", brotli(page.as_bytes())),
            ("zstd", zstd),
        ] {
            for chunk in [1, 100, 1 << 20] {
                let out = inflate_all(encoding, &body, 1 << 20, chunk).unwrap();
                assert_eq!(out, page.as_bytes(), "{encoding} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        // 64 MiB of zeros: about 64 KiB of gzip.
        let zeros = vec![0u8; 64 << 20];
        for (encoding, body) in [
            ("gzip", gzip(&zeros)),
            ("br", brotli(&zeros)),
            ("zstd", zstd::encode_all(&zeros[..], 3).unwrap()),
        ] {
            assert!(body.len() < 1 << 20, "{encoding}: {}", body.len());
            let mut inflater = Inflater::new(encoding, 1 << 20).unwrap();
            let mut produced = 0;
            let mut error = None;
            for piece in body.chunks(16 * 1024) {
                match inflater.write(piece) {
                    Ok(out) => produced += out.len(),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            assert_eq!(
                error,
                Some(InflateError::TooLarge { cap: 1 << 20 }),
                "{encoding}"
            );
            assert!(produced <= 1 << 20, "{encoding}: {produced}");
        }
    }

    #[test]
    fn garbage_and_truncated_bodies_are_errors() {
        let body = gzip(b"<html>hello</html>");
        assert!(matches!(
            inflate_all("gzip", b"not gzip at all", 1024, 4),
            Err(InflateError::Corrupt {
                encoding: "gzip",
                ..
            })
        ));
        assert!(matches!(
            inflate_all("gzip", &body[..body.len() - 6], 1024, 4),
            Err(InflateError::Corrupt { .. })
        ));
        let zstd = zstd::encode_all(&b"<html>hello</html>"[..], 3).unwrap();
        assert!(matches!(
            inflate_all("zstd", &zstd[..zstd.len() - 3], 1024, 4),
            Err(InflateError::Corrupt {
                encoding: "zstd",
                ..
            })
        ));
        assert!(matches!(
            inflate_all("br", b"\xff\xff\xff\xff garbage", 1024, 4),
            Err(InflateError::Corrupt { encoding: "br", .. })
        ));
    }

    #[test]
    fn unknown_encodings_are_not_undone() {
        for encoding in ["deflate", "compress", "gzip, br", "identity", ""] {
            assert!(Inflater::new(encoding, 1024).is_none(), "{encoding}");
        }
    }
}
