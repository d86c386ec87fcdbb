//! The standalone gateway's log output: `[log] format` and `file`.
//!
//! Lines are gathered in batches that a background thread writes ([`crate::log_writer`]), so a
//! slow or full disk never stalls a request and no line wakes another thread: a line that
//! cannot be written is counted and dropped, and the gateway keeps serving.
//! `handoff_log_lines_lost_total` says how many.
//!
//! JSON lines are written by [`JsonLines`]: one object per event with its timestamp, level,
//! fields and target — never the source file or module path that `log` records of
//! dependencies carry (`log.file` named a path on the build machine). A panic is one such line
//! too (the panic hook `init` installs).

use std::fmt;
use std::io::{self, Write};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};
use crate::log_writer::{BatchWriter, LogGuard};

static WRITER: OnceLock<BatchWriter> = OnceLock::new();

/// `(lines the destination refused, lines dropped because the writer fell behind)`.
pub fn lost_lines() -> (u64, u64) {
    WRITER.get().map_or((0, 0), BatchWriter::lost)
}

/// Installs the process's log subscriber. `RUST_LOG` filters (default `info`). Keep the guard
/// until the server has stopped: dropping it flushes the last lines.
///
/// A log file that cannot be opened is an error (at start, where the operator sees it).
pub fn init(settings: &LogSettings) -> Result<LogGuard, String> {
    install(settings, "info")
}

/// [`init`] for a console a person reads (`demo`, `check`): Pingora's start-up and stop
/// chatter left out (its warnings and errors stay) unless `RUST_LOG` says otherwise.
pub fn init_for_console(settings: &LogSettings) -> Result<LogGuard, String> {
    install(settings, "info,pingora_core=warn")
}

/// The log filter: `RUST_LOG`, else `default`. Pingora's health-check lines are left out
/// below ERROR (each upstream writes one line of its own, target `handoff::upstream`; Pingora's
/// prints the whole backend as `Debug`) unless `RUST_LOG` names `pingora_load_balancing`.
fn filter(default: &str) -> EnvFilter {
    let asked = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let names_health = asked
        .as_deref()
        .is_some_and(|v| v.contains("pingora_load_balancing"));
    let filter = asked
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    match "pingora_load_balancing=error".parse() {
        Ok(quiet) if !names_health => filter.add_directive(quiet),
        _ => filter,
    }
}

fn install(settings: &LogSettings, default_filter: &str) -> Result<LogGuard, String> {
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
    let (writer, guard) = BatchWriter::start(destination)
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let _ = WRITER.set(writer.clone());
    if settings.format == LogFormat::Json {
        // Access lines skip the event machinery: the same bytes, straight into the batch.
        let lines = writer.clone();
        crate::plugin::write_json_lines_to(Box::new(move |line| lines.append(line)));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default_filter))
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    log_panics();
    Ok(guard)
}

/// A panic becomes one error line in the log (instead of lines on stderr beside it): the
/// message, the thread, and where (a dependency's path cut to its crate).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", short_source_path(l.file()), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            target: "handoff::panic",
            thread = thread.name().unwrap_or("-"),
            location = %location,
            "panic: {message}"
        );
    }));
}

/// A source path as a log may show it: a dependency's from its crate's folder on
/// (`pingora-core-0.9.1/src/lib.rs`), never the build machine's registry path.
fn short_source_path(path: &str) -> &str {
    match path.find("/registry/src/") {
        Some(i) => {
            let rest = &path[i + "/registry/src/".len()..];
            rest.split_once('/')
                .map_or(rest, |(_index, crate_path)| crate_path)
        }
        None => path,
    }
}

/// One JSON object per line: `timestamp`, `level`, the event's fields (`message` first when
/// it has one), `target`. Fields named `log.*` — the file, line and module path tracing-log
/// attaches to a `log` record — are left out; the record's target becomes `target`.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        // The timestamp (RFC 3339, the access line's own) holds nothing JSON must escape.
        let mut stamp = Vec::with_capacity(32);
        crate::plugin::write_timestamp(&mut stamp, std::time::SystemTime::now());
        writer.write_str("{\"timestamp\":\"")?;
        writer.write_str(std::str::from_utf8(&stamp).map_err(|_| fmt::Error)?)?;
        writer.write_str("\",\"level\":")?;
        let mut fields = JsonFields {
            out: Json(&mut writer),
            result: Ok(()),
        };
        fields.out.value(meta.level().as_str())?;
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        Json(&mut writer).value(meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes JSON values straight into the log line (serde_json escapes; no buffer of its own).
struct Json<'a, 'w>(&'a mut Writer<'w>);

impl Json<'_, '_> {
    fn value(&mut self, value: impl serde::Serialize) -> fmt::Result {
        serde_json::to_writer(&mut *self, &value).map_err(|_| fmt::Error)
    }
}

impl io::Write for Json<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // serde_json writes whole UTF-8 sequences (it splits strings only at ASCII escapes).
        let text = std::str::from_utf8(buf).map_err(io::Error::other)?;
        fmt::Write::write_str(self.0, text).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends `,"name":value` for each field but `log.*`.
struct JsonFields<'a, 'w> {
    out: Json<'a, 'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn field(&mut self, field: &Field, value: impl serde::Serialize) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = fmt::Write::write_char(self.out.0, ',')
            .and_then(|()| self.out.value(field.name()))
            .and_then(|()| fmt::Write::write_char(self.out.0, ':'))
            .and_then(|()| self.out.value(value));
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
    use std::sync::{Arc, Mutex};

    /// Lines written by a subscriber with [`JsonLines`], kept in memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `emit` logs, as [`JsonLines`] writes it.
    fn json_lines_of(emit: impl FnOnce()) -> String {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = lines.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_panic_is_one_json_line_and_log_fields_are_left_out() {
        let text = json_lines_of(|| {
            // A `log` record as Pingora writes one, through tracing-log as in the binary.
            tracing_log::format_trace(
                &log::Record::builder()
                    .level(log::Level::Info)
                    .target("pingora_core::server")
                    .module_path_static(Some("pingora_core::server"))
                    .file_static(Some(
                        "/root/.cargo/registry/src/x/pingora-core-0.9.1/src/server/mod.rs",
                    ))
                    .line(Some(657))
                    .args(format_args!("Server \"starting\""))
                    .build(),
            )
            .unwrap();
            tracing::info!(count = 3, "counted");
            log_panics();
            let caught = std::panic::catch_unwind(|| panic!("boom {}", 42));
            let _ = std::panic::take_hook();
            assert!(caught.is_err());
        });
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"], "Server \"starting\"");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["target"], "pingora_core::server");
        assert!(
            !text.contains("registry") && !text.contains("log."),
            "{text}"
        );
        assert_eq!(lines[1]["message"], "counted");
        assert_eq!(lines[1]["count"], 3);
        assert_eq!(lines[2]["level"], "ERROR");
        assert_eq!(lines[2]["target"], "handoff::panic");
        assert_eq!(lines[2]["message"], "panic: boom 42");
        assert!(
            lines[2]["location"]
                .as_str()
                .is_some_and(|l| l.contains("logging.rs:")),
            "{text}"
        );
    }

    #[test]
    fn access_lines_are_written_as_the_formatter_writes_their_event() {
        let v4 = PeerAddr::Inet("127.0.0.1:8081".parse().unwrap());
        let v6 = PeerAddr::Inet("[fe80::1%2]:65535".parse().unwrap());
        for upstream in [Some(&v4), Some(&v6), None] {
            same_bytes(upstream);
        }
    }

    /// One access line, written directly and through the formatter.
    fn same_bytes(upstream: Option<&PeerAddr>) {
        let line = crate::plugin::AccessLine {
            method: "GET",
            path: "/a \"b\"\\c\u{1}é?q=1",
            status: 502,
            route: "intranet",
            outcome: "proxy_error",
            upstream,
            session: "valid",
            source: "cookie",
            person: "alice@example.com",
            duration_ms: 12.34,
            error: "Upstream ConnectRefused\ncontext: x",
            reference: "K7QW2MZP",
        };
        let traced = json_lines_of(|| line.trace());
        let mut direct = Vec::new();
        line.write_json(&mut direct, std::time::SystemTime::now());
        let direct = String::from_utf8(direct).unwrap();
        // Everything but the timestamp's value is the same, byte for byte.
        let after_time = |l: &str| l.split_once("\",\"level\"").unwrap().1.to_string();
        assert_eq!(
            after_time(&direct),
            after_time(&traced),
            "{direct}\n{traced}"
        );
        let stamp = |l: &str| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["timestamp"].as_str().unwrap().to_string()
        };
        let (a, b) = (stamp(&direct), stamp(&traced));
        // The same shape (the value itself: the access-log module's own test).
        let shape = |t: &str| t.replace(|c: char| c.is_ascii_digit(), "0");
        assert_eq!(shape(&a), shape(&b), "{a} {b}");
        assert!(direct.ends_with("}\n") && direct.matches('\n').count() == 1);
    }

    #[test]
    fn dependency_paths_are_cut_to_their_crate() {
        assert_eq!(
            short_source_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pingora-core-0.9.1/src/lib.rs"
            ),
            "pingora-core-0.9.1/src/lib.rs"
        );
        assert_eq!(short_source_path("src/main.rs"), "src/main.rs");
    }
}
