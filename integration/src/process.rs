//! Child processes that cannot outlive the test: spawning, bounded waiting, output capture, and locating
//! the binaries to run.
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the test process even when that process is
//! killed outright (a nextest timeout, a SIGKILL). The kernel delivers that signal when the *thread* that
//! forked the child exits, not the process, so all children are forked by one spawner thread that lives as
//! long as the process; clusters can then be booted in helper threads and handed around freely.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{io_err, Error, Result};

/// The etcdctl that tests compare ours against: `$ETCD_RS_TEST_ETCDCTL_BIN`, else `/usr/bin/etcdctl`.
pub fn real_etcdctl() -> PathBuf {
    std::env::var_os("ETCD_RS_TEST_ETCDCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"))
}

/// Locates binary `name` of this workspace next to the running test executable.
///
/// A test executable lives in `target/<profile>/deps/`, the workspace's binaries in `target/<profile>/`.
/// Cargo only builds a package's binaries for tests of that same package, so a test in another package
/// needs them built first (`cargo build -p etcdctl`, same profile and target dir); the error says so.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(io_err("locate the running test executable"))?;
    let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    let profile_flag = match dir.file_name().and_then(OsStr::to_str) {
        Some("debug") => String::new(),
        Some("release") => " --release".to_owned(),
        Some(other) => format!(" --profile {other}"),
        None => String::new(),
    };
    Err(Error::BinaryNotFound {
        name: name.to_owned(),
        path,
        hint: format!(
            "build it first with the tests' profile and CARGO_TARGET_DIR: `cargo build{profile_flag} --bin {name}`"
        ),
    })
}

/// What a finished command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    pub status: ExitStatus,
    /// Decoded lossily as UTF-8.
    pub stdout: String,
    /// Decoded lossily as UTF-8.
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or None when the process was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `bin` with `args` and extra environment `envs` to completion with the default timeout of [`Cli`].
pub fn run<I, S>(bin: impl Into<PathBuf>, args: I, envs: &[(&str, &str)]) -> Result<CmdOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cli = Cli::new(bin).args(args);
    for (key, value) in envs {
        cli = cli.env(key, value);
    }
    cli.run()
}

/// A command line to run against a cluster, either to completion ([`Cli::run`]) or in the background
/// ([`Cli::spawn`]).
///
/// The child does not inherit the test's `ETCDCTL_*` variables, so a developer's shell settings
/// (`ETCDCTL_ENDPOINTS`, `ETCDCTL_API=2`) cannot change what a test sees; pass them with [`Cli::env`].
#[derive(Debug, Clone)]
pub struct Cli {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cli {
    /// Default bound on [`Cli::run`]: above etcdctl's own 5 s command timeout plus dial retries.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn new(program: impl Into<PathBuf>) -> Self {
        Cli {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            stdin: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Bytes written to the child's stdin, which is then closed. Without this, stdin is `/dev/null`.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Bound on [`Cli::run`]; the child is killed when it is exceeded.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs to completion, or kills the child and fails with [`Error::CommandTimedOut`] after the timeout.
    pub fn run(&self) -> Result<CmdOutput> {
        let mut running = self.start()?;
        let finished = wait_timeout(&mut running.child, self.timeout)
            .map_err(io_err(format!("wait for `{self}`")))?;
        let Some(status) = finished else {
            kill_and_reap(&mut running.child);
            return Err(Error::CommandTimedOut {
                command: self.to_string(),
                timeout: self.timeout,
                stdout: running.stdout.finish(),
                stderr: running.stderr.finish(),
            });
        };
        Ok(CmdOutput {
            status,
            stdout: running.stdout.finish(),
            stderr: running.stderr.finish(),
        })
    }

    /// Runs the command to completion and returns its stdout; a non-zero exit is an error quoting the
    /// command and both streams.
    pub fn run_ok(&self) -> Result<String> {
        let out = self.run()?;
        if out.success() {
            return Ok(out.stdout);
        }
        Err(Error::CommandFailed {
            command: self.to_string(),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Starts the command in the background; it is killed when the returned value is dropped.
    pub fn spawn(&self) -> Result<Background> {
        let running = self.start()?;
        Ok(Background {
            command: self.to_string(),
            child: running.child,
            lines: running.stdout.into_lines(),
            seen: Vec::new(),
            stdout_closed: false,
            stderr: running.stderr,
        })
    }

    fn start(&self) -> Result<Running> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        hide_etcdctl_vars(&mut command, std::env::vars_os());
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_tied(command).map_err(io_err(format!("spawn `{self}`")))?;
        if let (Some(input), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            // A separate writer so that a child that does not read its stdin cannot block us.
            thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = child.stdout.take().map(Capture::start);
        let stderr = child.stderr.take().map(Capture::start);
        match (stdout, stderr) {
            (Some(stdout), Some(stderr)) => Ok(Running {
                child,
                stdout,
                stderr,
            }),
            _ => {
                kill_and_reap(&mut child);
                Err(Error::Io {
                    context: format!("spawn `{self}`"),
                    source: io::Error::other("child has no stdout/stderr pipe"),
                })
            }
        }
    }
}

impl fmt::Display for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_words(&self.program, &self.args))
    }
}

fn hide_etcdctl_vars(command: &mut Command, inherited: impl Iterator<Item = (OsString, OsString)>) {
    for (key, _) in inherited {
        if key.to_string_lossy().starts_with("ETCDCTL_") {
            command.env_remove(key);
        }
    }
}

struct Running {
    child: Child,
    stdout: Capture,
    stderr: Capture,
}

/// A long-running child (`etcdctl watch`, `etcdctl lock`) whose stdout is read line by line with a
/// timeout. Killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Background {
    command: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stdout_closed: bool,
    stderr: Capture,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line without its `\n`; `Ok(None)` once stdout is closed (the child exited).
    /// Fails with [`Error::LineTimedOut`] when no line arrives within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>> {
        if self.stdout_closed {
            return Ok(None);
        }
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_closed = true;
                Ok(None)
            }
            Err(RecvTimeoutError::Timeout) => Err(self.line_timeout(timeout)),
        }
    }

    /// Reads lines until one satisfies `wanted` and returns it; lines before it are consumed.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Ok(Some(line)) if wanted(&line) => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) | Err(Error::LineTimedOut { .. }) => {
                    return Err(self.line_timeout(timeout))
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Every stdout line read so far.
    pub fn lines_read(&self) -> &[String] {
        &self.seen
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.snapshot()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGINT (what Ctrl-C does: `etcdctl lock` releases its lock and exits). A child that already
    /// exited is left alone.
    pub fn interrupt(&mut self) -> Result<()> {
        // Once reaped, the pid may belong to someone else: never signal it then.
        if !self.is_running() {
            return Ok(());
        }
        signal(self.child.id(), libc::SIGINT).map_err(io_err(format!("SIGINT `{}`", self.command)))
    }

    /// Waits for the child to exit by itself (after [`Background::interrupt`], say), killing it after
    /// `timeout`. The output holds every stdout line, including those already read, and all of stderr.
    pub fn wait(mut self, timeout: Duration) -> Result<CmdOutput> {
        let finished = wait_timeout(&mut self.child, timeout)
            .map_err(io_err(format!("wait for `{}`", self.command)))?;
        let Some(status) = finished else {
            kill_and_reap(&mut self.child);
            return Err(Error::CommandTimedOut {
                command: self.command.clone(),
                timeout,
                stdout: self.drain_stdout(),
                stderr: self.stderr.snapshot(),
            });
        };
        Ok(CmdOutput {
            status,
            stdout: self.drain_stdout(),
            stderr: self.stderr.finish_ref(),
        })
    }

    /// Kills the child now (SIGKILL) and reaps it. The output holds every stdout line, including those
    /// already read and those the child wrote before the signal landed, and all of stderr.
    pub fn kill(mut self) -> Result<CmdOutput> {
        // Not reaped yet, so the pid is still ours; a child that already exited just gets reaped.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(io_err(format!("reap `{}`", self.command)))?;
        Ok(CmdOutput {
            status,
            stdout: self.drain_stdout(),
            stderr: self.stderr.finish_ref(),
        })
    }

    fn drain_stdout(&mut self) -> String {
        // The child is gone, so its stdout reaches EOF promptly unless a grandchild still holds it.
        while let Ok(line) = self.lines.recv_timeout(PIPE_DRAIN_GRACE) {
            self.seen.push(line);
        }
        self.seen.iter().map(|l| format!("{l}\n")).collect()
    }

    fn line_timeout(&self, timeout: Duration) -> Error {
        Error::LineTimedOut {
            command: self.command.clone(),
            timeout,
            stdout: self.seen.join("\n"),
            stderr: self.stderr.snapshot(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// How long to keep reading a dead child's pipes: they normally hit EOF at once, but a grandchild that
/// inherited them could keep them open forever.
const PIPE_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Collects one output pipe on a thread, so the child never blocks on a full pipe.
#[derive(Debug)]
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Receiver<()>,
    lines: Option<Receiver<String>>,
}

impl Capture {
    fn start(pipe: impl Read + Send + 'static) -> Capture {
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

    fn snapshot(&self) -> String {
        let buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn finish(self) -> String {
        self.finish_ref()
    }

    fn finish_ref(&self) -> String {
        let _ = self.done.recv_timeout(PIPE_DRAIN_GRACE);
        self.snapshot()
    }

    fn into_lines(mut self) -> Receiver<String> {
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

/// Waits up to `timeout` for the child to exit. Polls with a short, growing interval: a blocking wait
/// cannot be given a timeout, and the extra latency is at most a few milliseconds per command.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// SIGKILLs and reaps the child; a child that already exited is only reaped.
pub(crate) fn kill_and_reap(child: &mut Child) {
    if let Err(e) = child.kill() {
        tracing::debug!(pid = child.id(), error = %e, "kill failed (child already exited?)");
    }
    if let Err(e) = child.wait() {
        tracing::warn!(pid = child.id(), error = %e, "could not reap child");
    }
}

/// Sends `sig` to a child that has not been reaped yet (so its pid cannot have been reused).
pub(crate) fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Spawns `command` from the process-lifetime spawner thread with a parent-death signal of SIGKILL.
pub(crate) fn spawn_tied(mut command: Command) -> io::Result<Child> {
    let parent = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect; then no signal will ever come.
            if libc::getppid() != parent {
                return Err(io::Error::other("test process exited while spawning"));
            }
            // A test run started in the background of a shell inherits SIGINT and SIGQUIT
            // ignored, and a child cannot trap a signal ignored on entry; `interrupt` relies on
            // SIGINT reaching the child's handler, as it does for a user pressing Ctrl-C.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()?
        .send(SpawnRequest {
            command,
            reply: reply_tx,
        })
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

struct SpawnRequest {
    command: Command,
    reply: Sender<io::Result<Child>>,
}

fn spawner() -> io::Result<Sender<SpawnRequest>> {
    static SPAWNER: Mutex<Option<Sender<SpawnRequest>>> = Mutex::new(None);
    let mut guard = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sender) = guard.as_ref() {
        return Ok(sender.clone());
    }
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    thread::Builder::new()
        .name("etcd-rs-spawner".into())
        .spawn(move || {
            // The static sender is never dropped, so this loop (and thread) lasts as long as the process.
            for mut request in rx {
                let _ = request.reply.send(request.command.spawn());
            }
        })?;
    *guard = Some(tx.clone());
    Ok(tx)
}

/// Renders a command line for messages, quoting words a shell would split.
pub(crate) fn shell_words(program: &Path, args: &[impl AsRef<OsStr>]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(AsRef::as_ref))
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c));
            if plain {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_captures_status_stdout_stderr_and_stdin() {
        let out = Cli::new("/bin/sh")
            .args(["-c", "cat; echo err >&2; exit 3"])
            .stdin("from stdin\n")
            .run()
            .unwrap();
        assert_eq!(out.code(), Some(3));
        assert!(!out.success());
        assert_eq!(out.stdout, "from stdin\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn run_passes_envs() {
        let out = run("/bin/sh", ["-c", "echo \"$MY_VAR\""], &[("MY_VAR", "set")]).unwrap();
        assert_eq!(out.stdout, "set\n");
    }

    #[test]
    fn inherited_etcdctl_variables_are_hidden() {
        let mut command = Command::new("etcdctl");
        let inherited = [
            ("ETCDCTL_ENDPOINTS", "x:1"),
            ("PATH", "/bin"),
            ("XETCDCTL_", "y"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        hide_etcdctl_vars(&mut command, inherited.into_iter());
        let changed: Vec<_> = command.get_envs().collect();
        assert_eq!(changed, [(OsStr::new("ETCDCTL_ENDPOINTS"), None)]);
    }

    #[test]
    fn run_kills_on_timeout_and_keeps_partial_output() {
        let started = Instant::now();
        let err = Cli::new("/bin/sh")
            .args(["-c", "echo partial; exec sleep 30"])
            .timeout(Duration::from_millis(300))
            .run()
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        match err {
            Error::CommandTimedOut { stdout, .. } => assert_eq!(stdout, "partial\n"),
            other => panic!("expected CommandTimedOut, got {other}"),
        }
    }

    #[test]
    fn missing_program_is_an_error() {
        let err = run("/nonexistent/etcdctl", ["get", "x"], &[]).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn background_lines_interrupt_and_wait() {
        let mut child = Cli::new("/bin/sh")
            .args([
                "-c",
                "trap 'echo bye; exit 0' INT; echo one; echo two; while true; do sleep 0.05; done",
            ])
            .spawn()
            .unwrap();
        let second = child
            .wait_for_line(Duration::from_secs(10), |l| l == "two")
            .unwrap();
        assert_eq!(second, "two");
        assert_eq!(child.lines_read(), ["one", "two"]);
        assert!(matches!(
            child.next_line(Duration::from_millis(100)),
            Err(Error::LineTimedOut { .. })
        ));
        assert!(child.is_running());
        child.interrupt().unwrap();
        let out = child.wait(Duration::from_secs(10)).unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "one\ntwo\nbye\n");
    }

    #[test]
    fn background_child_is_killed_on_drop() {
        let child = Cli::new("/bin/sleep").arg("30").spawn().unwrap();
        let pid = child.pid();
        drop(child);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn shell_words_quotes_only_when_needed() {
        let rendered = shell_words(Path::new("/usr/bin/etcdctl"), &["put", "a key", "it's", ""]);
        assert_eq!(rendered, r"/usr/bin/etcdctl put 'a key' 'it'\''s' ''");
    }
}
