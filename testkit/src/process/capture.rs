use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// How long to keep reading a dead child's pipes: they normally hit EOF at once, but a grandchild that
/// inherited them could keep them open forever.
pub(super) const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Collects one output pipe on a thread, so the child never blocks on a full pipe.
#[derive(Debug)]
pub(super) struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Receiver<()>,
    lines: Option<Receiver<String>>,
}

impl Capture {
    pub(super) fn start(pipe: impl Read + Send + 'static) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = mpsc::channel();
        let (line_tx, lines) = mpsc::channel();
        let sink = Arc::clone(&buf);
        thread::spawn(move || read_lines(pipe, &sink, &line_tx, done_tx));
        Capture {
            buf,
            done,
            lines: Some(lines),
        }
    }

    pub(super) fn snapshot(&self) -> String {
        let buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }

    pub(super) fn finish(self) -> String {
        self.finish_ref()
    }

    pub(super) fn finish_ref(&self) -> String {
        let _ = self.done.recv_timeout(PIPE_DRAIN_GRACE);
        self.snapshot()
    }

    pub(super) fn into_lines(mut self) -> Receiver<String> {
        self.lines.take().unwrap_or_else(|| mpsc::channel().1)
    }
}

fn read_lines(pipe: impl Read, sink: &Mutex<Vec<u8>>, lines: &Sender<String>, done: Sender<()>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&line);
                let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
                // Nobody listening (a `run`, not a `spawn`) is fine: the bytes are in `sink`.
                let _ = lines.send(text.into_owned());
            }
        }
    }
    let _ = done.send(());
}
