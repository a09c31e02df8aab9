//! Where log lines go. The data plane never waits on a disk: lines are queued to one
//! writer thread per destination, which appends them through a buffer and flushes
//! every flush interval (Envoy's `--file-flush-interval-msec`), or sooner when the
//! buffer fills. When the queue is full, lines are dropped and counted rather than
//! blocking a worker.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::config::access_log::AccessLogSink;

/// How often buffered lines reach the file.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE_CAPACITY: usize = 64 * 1024;

const BUFFER_BYTES: usize = 64 * 1024;

enum Message {
    Line(String),
    Flush(mpsc::Sender<()>),
}

/// One destination (file, stdout or stderr) and its writer thread. The thread flushes
/// and exits once every handle is dropped.
#[derive(Debug)]
pub struct LogSink {
    tx: SyncSender<Message>,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
}

impl LogSink {
    /// Opens `sink` (a file is created if missing and appended to) and starts its
    /// writer thread.
    pub fn open(sink: &AccessLogSink, flush_interval: Duration) -> io::Result<LogSink> {
        let out: Box<dyn Write + Send> = match sink {
            AccessLogSink::File(path) => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
            AccessLogSink::Stdout => Box::new(io::stdout()),
            AccessLogSink::Stderr => Box::new(io::stderr()),
        };
        let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE_CAPACITY);
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(BUFFER_BYTES, out);
                loop {
                    match rx.recv_timeout(flush_interval) {
                        Ok(Message::Line(line)) => {
                            if out.write_all(line.as_bytes()).is_ok() {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Message::Flush(done)) => {
                            let _ = out.flush();
                            let _ = done.send(());
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = out.flush();
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            let _ = out.flush();
                            return;
                        }
                    }
                }
            })?;
        Ok(LogSink {
            tx,
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Queues a line (which carries its own newline); never blocks.
    pub fn write(&self, line: String) {
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until everything queued so far is written out (shutdown, tests,
    /// `/reopen_logs`).
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines handed to the destination.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    File(PathBuf),
    Stdout,
    Stderr,
}

/// Shares one [`LogSink`] per destination between every logger writing there, as
/// Envoy shares one file per path.
#[derive(Debug)]
pub struct LogSinks {
    flush_interval: Duration,
    sinks: Mutex<HashMap<Key, Arc<LogSink>>>,
}

impl Default for LogSinks {
    fn default() -> Self {
        LogSinks::new(DEFAULT_FLUSH_INTERVAL)
    }
}

impl LogSinks {
    pub fn new(flush_interval: Duration) -> LogSinks {
        LogSinks {
            flush_interval,
            sinks: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, sink: &AccessLogSink) -> io::Result<Arc<LogSink>> {
        let key = match sink {
            AccessLogSink::File(p) => Key::File(p.clone()),
            AccessLogSink::Stdout => Key::Stdout,
            AccessLogSink::Stderr => Key::Stderr,
        };
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sinks.get(&key) {
            return Ok(s.clone());
        }
        let s = Arc::new(LogSink::open(sink, self.flush_interval)?);
        sinks.insert(key, s.clone());
        Ok(s)
    }

    /// Flushes every destination.
    pub fn flush_all(&self) {
        let sinks: Vec<Arc<LogSink>> = self
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in sinks {
            s.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_arrive_after_flush_or_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "existing\n").unwrap();
        let sinks = LogSinks::new(Duration::from_millis(50));
        let sink = sinks.get(&AccessLogSink::File(path.clone())).unwrap();
        let again = sinks.get(&AccessLogSink::File(path.clone())).unwrap();
        assert!(Arc::ptr_eq(&sink, &again));
        sink.write("one\n".into());
        again.write("two\n".into());
        sink.flush();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "existing\none\ntwo\n"
        );
        sink.write("three\n".into());
        // The periodic flush, without an explicit one.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&path).unwrap().ends_with("three\n") {
            assert!(std::time::Instant::now() < deadline, "not flushed by timer");
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.written(), 3);
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let e = LogSink::open(
            &AccessLogSink::File("/nonexistent-dir/x/access.log".into()),
            DEFAULT_FLUSH_INTERVAL,
        );
        assert!(e.is_err());
    }
}
