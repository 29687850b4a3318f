use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use super::background::Background;
use super::capture::Capture;
use super::child::{kill_and_reap, shell_words, spawn_tied, wait_timeout};
use super::error::{io_err, ProcessError};
use super::output::CmdOutput;

type Result<T, E = ProcessError> = std::result::Result<T, E>;

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
    Err(ProcessError::BinaryNotFound {
        name: name.to_owned(),
        path,
        hint: format!(
            "build it first with the tests' profile and CARGO_TARGET_DIR: `cargo build{profile_flag} --bin {name}`"
        ),
    })
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

    /// Runs to completion, or kills the child and fails with [`ProcessError::CommandTimedOut`] after the timeout.
    pub fn run(&self) -> Result<CmdOutput> {
        let mut running = self.start()?;
        let finished = wait_timeout(&mut running.child, self.timeout)
            .map_err(io_err(format!("wait for `{self}`")))?;
        let Some(status) = finished else {
            kill_and_reap(&mut running.child);
            return Err(ProcessError::CommandTimedOut {
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
        Err(ProcessError::CommandFailed {
            command: self.to_string(),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Starts the command in the background; it is killed when the returned value is dropped.
    pub fn spawn(&self) -> Result<Background> {
        let running = self.start()?;
        Ok(Background::new(
            self.to_string(),
            running.child,
            running.stdout,
            running.stderr,
        ))
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
                Err(ProcessError::Io {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
            ProcessError::CommandTimedOut { stdout, .. } => assert_eq!(stdout, "partial\n"),
            other => panic!("expected CommandTimedOut, got {other}"),
        }
    }

    #[test]
    fn missing_program_is_an_error() {
        let err = run("/nonexistent/etcdctl", ["get", "x"], &[]).unwrap_err();
        assert!(matches!(err, ProcessError::Io { .. }), "{err}");
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
            Err(ProcessError::LineTimedOut { .. })
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
