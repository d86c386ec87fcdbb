//! The log writer: lines are appended to one in-memory batch and written out by a background
//! thread every [`FLUSH_EVERY`] or as soon as the batch passes [`HIGH_WATER`] — nginx's
//! `access_log … buffer= flush=` model. A request never waits on the disk and never wakes
//! another thread: appending a line is a short lock and a copy; only a batch past the high
//! water mark signals the writer. A batch that would grow past [`MAX_PENDING`] (the disk fell
//! far behind) drops the line and counts it; a write that fails counts the batch's lines.
//! An ERROR line is written before its `write` returns (with the batch before it, in order),
//! so the line that explains an exit is never lost; dropping the [`LogGuard`] writes what is
//! left: nothing is lost on a clean stop.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How often the writer writes what has gathered.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A batch this large is written at once.
pub const HIGH_WATER: usize = 64 * 1024;
/// Lines that would make the pending batch larger are dropped (and counted).
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

/// What the request threads and the writer thread share.
struct Shared {
    /// Taken before `batch` by whoever writes a batch out, so batches leave in order.
    destination: Mutex<Box<dyn Write + Send>>,
    batch: Mutex<Vec<u8>>,
    wake: Condvar,
    stopping: AtomicBool,
    /// Lines dropped because the batch was full.
    dropped: AtomicU64,
    /// Lines the destination refused (a full disk).
    failed: AtomicU64,
}

/// The writer the log subscriber writes each formatted line to (one `write` per line).
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
    /// Write through (an ERROR line).
    urgent: bool,
}

/// Stops the writer thread and writes the last batch when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchWriter {
    /// Starts the writer thread, writing to `destination`.
    pub fn start(destination: Box<dyn Write + Send>) -> io::Result<(BatchWriter, LogGuard)> {
        let shared = Arc::new(Shared {
            destination: Mutex::new(destination),
            batch: Mutex::new(Vec::with_capacity(HIGH_WATER)),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("handoff-log".to_string())
            .spawn({
                let shared = shared.clone();
                move || write_batches(&shared)
            })?;
        Ok((
            BatchWriter {
                shared: shared.clone(),
                urgent: false,
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// `(lines the destination refused, lines dropped because the batch was full)`.
    pub fn lost(&self) -> (u64, u64) {
        (
            self.shared.failed.load(Relaxed),
            self.shared.dropped.load(Relaxed),
        )
    }

    /// Adds one line (or several whole lines) to the batch; an urgent writer writes it out
    /// before returning.
    pub fn append(&self, line: &[u8]) {
        let shared = &self.shared;
        {
            let mut batch = lock(&shared.batch);
            if batch.len() + line.len() > MAX_PENDING {
                shared.dropped.fetch_add(1, Relaxed);
                return;
            }
            let was_below = batch.len() < HIGH_WATER;
            batch.extend_from_slice(line);
            if was_below && batch.len() >= HIGH_WATER {
                shared.wake.notify_one();
            }
        }
        if self.urgent {
            write_out(shared, &mut Vec::new());
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> BatchWriter {
        self.clone()
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> BatchWriter {
        BatchWriter {
            shared: self.shared.clone(),
            urgent: *meta.level() == Level::ERROR,
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Relaxed);
        // Taken under the lock, so the writer is either waiting (and wakes) or sees the flag.
        drop(lock(&self.shared.batch));
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: every [`FLUSH_EVERY`], at the high water mark, and at the stop, writes
/// the batch out.
fn write_batches(shared: &Shared) {
    let mut spare = Vec::with_capacity(HIGH_WATER);
    loop {
        {
            let batch = lock(&shared.batch);
            let _woken = shared
                .wake
                .wait_timeout_while(batch, FLUSH_EVERY, |b| {
                    b.len() < HIGH_WATER && !shared.stopping.load(Relaxed)
                })
                .unwrap_or_else(|e| e.into_inner());
        }
        let stopping = shared.stopping.load(Relaxed);
        write_out(shared, &mut spare);
        if stopping {
            // The stop is seen before this last write: every line before it is out.
            write_out(shared, &mut spare);
            return;
        }
    }
}

/// Swaps the batch for `spare` (empty) and writes it whole. The destination's lock is taken
/// first, so two writers never reorder batches.
fn write_out(shared: &Shared, spare: &mut Vec<u8>) {
    let mut destination = lock(&shared.destination);
    std::mem::swap(&mut *lock(&shared.batch), spare);
    if spare.is_empty() {
        return;
    }
    if destination
        .write_all(spare)
        .and_then(|()| destination.flush())
        .is_err()
    {
        let lines = spare.iter().filter(|b| **b == b'\n').count() as u64;
        shared.failed.fetch_add(lines.max(1), Relaxed);
    }
    spare.clear();
    // A batch that grew far past the usual is not kept around.
    spare.shrink_to(HIGH_WATER * 2);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that keeps what it is given, or refuses everything.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>, bool);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.1 {
                return Err(io::Error::other("disk full"));
            }
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_by_the_stop_and_in_order() {
        let sink = Sink::default();
        let (writer, guard) = BatchWriter::start(Box::new(sink.clone())).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        w.write_all(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 20_000, "nothing lost on a clean stop");
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..5_000).collect::<Vec<_>>(), "thread {t} in order");
        }
        assert_eq!(writer.lost(), (0, 0));
    }

    #[test]
    fn an_error_line_is_out_before_its_write_returns_with_what_came_before() {
        let sink = Sink::default();
        let (writer, _guard) = BatchWriter::start(Box::new(sink.clone())).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first, batched");
            tracing::error!("then the reason for an exit");
        });
        // No waiting: `std::process::exit` may follow at once.
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("first, batched") && lines[1].contains("reason for an exit"));
    }

    #[test]
    fn lines_wait_at_most_a_flush_interval() {
        let sink = Sink::default();
        let (mut writer, _guard) = BatchWriter::start(Box::new(sink.clone())).unwrap();
        writer.write_all(b"one line\n").unwrap();
        std::thread::sleep(FLUSH_EVERY * 3);
        assert_eq!(&*sink.0.lock().unwrap(), b"one line\n");
    }

    #[test]
    fn a_refusing_destination_counts_its_lines_and_a_full_batch_drops_more() {
        let (mut writer, guard) =
            BatchWriter::start(Box::new(Sink(Default::default(), true))).unwrap();
        for _ in 0..10 {
            writer.write_all(b"x\n").unwrap();
        }
        drop(guard);
        assert_eq!(writer.lost(), (10, 0));
        // The writer is gone: the batch only fills, then drops.
        let line = vec![b'y'; 1024 * 1024 - 1]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        for _ in 0..10 {
            writer.write_all(&line).unwrap();
        }
        assert_eq!(writer.lost().1, 2, "8 MiB pending at most");
    }
}
