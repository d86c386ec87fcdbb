//! The standalone gateway's log output: `[log] format` and `file`.
//!
//! Lines go through a background writer thread (`tracing_appender::non_blocking`), so a slow or
//! full disk never stalls a request: a line that cannot be written is counted and dropped, and
//! the gateway keeps serving. `handoff_log_lines_lost_total` says how many.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// `(lines the destination refused, lines dropped because the writer fell behind)`.
pub fn lost_lines() -> (u64, u64) {
    let dropped = DROPPED.get().map_or(0, |c| c.dropped_lines() as u64);
    (WRITE_ERRORS.load(Relaxed), dropped)
}

/// A destination that counts and swallows write errors: a log line is not worth a request.
struct Counted<W>(W);

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write_all(buf) {
            Ok(()) => Ok(buf.len()),
            Err(_) => {
                WRITE_ERRORS.fetch_add(1, Relaxed);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Installs the process's log subscriber. `RUST_LOG` filters (default `info`). Keep the guard
/// until the server has stopped: dropping it flushes the last lines.
///
/// A log file that cannot be opened is an error (at start, where the operator sees it).
pub fn init(settings: &LogSettings) -> Result<WorkerGuard, String> {
    let destination: Box<dyn Write + Send> = match &settings.file {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("log.file: cannot open {path}: {e}"))?,
        ),
        None => Box::new(io::stderr()),
    };
    let ansi = settings.file.is_none()
        && settings.format == LogFormat::Text
        && io::IsTerminal::is_terminal(&io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("handoff-log")
        .finish(Counted(destination));
    let _ = DROPPED.set(writer.error_counter());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    Ok(guard)
}
