//! Running the real `cargo` binary with a bounded run time: [`CargoCommand`] and its
//! [`CargoOutput`].

use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::io::{Read, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one cargo invocation may run before it is killed.
pub const DEFAULT_CARGO_TIMEOUT: Duration = Duration::from_secs(180);

/// Environment variable naming the cargo binary to drive (default: `$CARGO`, then `cargo`).
pub const CARGO_BIN_VAR: &str = "DEPOT_TEST_CARGO";

/// Variables that would leak the caller's cargo setup into the driven cargo: besides every
/// `CARGO_*` variable (registries, tokens, target dir, build settings of an enclosing
/// `cargo test`), the compiler wrappers and flags.
const SCRUBBED_VARS: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
];

/// One cargo invocation, ready to run. Obtain it from [`crate::CargoHome::command`].
///
/// Standard input is empty unless [`CargoCommand::stdin`] gives it bytes, so a prompting
/// cargo fails instead of hanging.
#[derive(Debug)]
pub struct CargoCommand {
    program: OsString,
    cwd: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl CargoCommand {
    /// A command running cargo in `cwd` with `CARGO_HOME=cargo_home` and
    /// `CARGO_TARGET_DIR=target_dir`, in an environment scrubbed of the caller's cargo setup.
    pub(crate) fn new(cwd: &Path, cargo_home: &Path, target_dir: &Path) -> Self {
        let program = std::env::var_os(CARGO_BIN_VAR)
            .or_else(|| std::env::var_os("CARGO"))
            .unwrap_or_else(|| "cargo".into());
        let mut envs: Vec<(OsString, Option<OsString>)> = std::env::vars_os()
            .map(|(key, _)| key)
            .filter(|key| {
                let key = key.to_string_lossy();
                key.starts_with("CARGO_")
                    || key.starts_with("__CARGO")
                    || key == "CARGO"
                    || SCRUBBED_VARS.contains(&key.as_ref())
            })
            .map(|key| (key, None))
            .collect();
        for (key, value) in [
            ("CARGO_HOME", cargo_home.as_os_str()),
            ("CARGO_TARGET_DIR", target_dir.as_os_str()),
            ("CARGO_TERM_COLOR", OsStr::new("never")),
            ("CARGO_TERM_PROGRESS_WHEN", OsStr::new("never")),
            ("CARGO_INCREMENTAL", OsStr::new("0")),
        ] {
            envs.push((key.into(), Some(value.to_owned())));
        }
        Self {
            program,
            cwd: cwd.to_owned(),
            args: Vec::new(),
            envs,
            stdin: None,
            timeout: DEFAULT_CARGO_TIMEOUT,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for this invocation.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable for this invocation.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Feeds these bytes to cargo's standard input (for example a token to `cargo login`).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// Overrides the time limit ([`DEFAULT_CARGO_TIMEOUT`] by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs cargo on a blocking thread of the current tokio runtime and returns its output.
    ///
    /// Use this from async tests: the Depot under test usually runs on the same runtime, and
    /// blocking the runtime's thread while cargo talks to it would deadlock.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or if cargo cannot be started.
    pub async fn run(self) -> CargoOutput {
        match tokio::task::spawn_blocking(move || self.run_blocking()).await {
            Ok(output) => output,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("cargo runner task failed: {e}"),
            },
        }
    }

    /// Runs cargo on the current thread and returns its output. For synchronous tests only;
    /// see [`CargoCommand::run`].
    ///
    /// On timeout, cargo and everything it started (its process group) are killed, and the
    /// output so far is returned with [`CargoOutput::timed_out`] set.
    ///
    /// # Panics
    ///
    /// If cargo cannot be started.
    pub fn run_blocking(self) -> CargoOutput {
        let display = self.display();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can kill rustc and friends too.
            .process_group(0);
        for (key, value) in &self.envs {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{display}`: {e}"));
        if let (Some(input), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            // Written from a thread so a cargo that does not read cannot block us.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let (status, timed_out) = wait_with_timeout(&mut child, self.timeout);
        CargoOutput {
            command: display,
            status,
            stdout: collect(stdout),
            stderr: collect(stderr),
            timed_out,
            elapsed: started.elapsed(),
        }
    }

    fn display(&self) -> String {
        let mut text = String::from("cargo");
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.to_string_lossy());
        }
        let _ = write!(text, "  (in {})", self.cwd.display());
        text
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    })
}

fn collect(handle: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = handle.and_then(|h| h.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break,
        }
    }
    // Timed out: kill the whole process group (cargo, rustc, build scripts), then reap.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("cannot reap killed cargo: {e}"));
    (status, true)
}

/// What a cargo invocation did.
#[derive(Debug, Clone)]
#[must_use = "assert on it (e.g. `.assert_success()`), or a failing cargo command goes unnoticed"]
pub struct CargoOutput {
    /// The command line and working directory, for messages.
    pub command: String,
    /// cargo's exit status.
    pub status: ExitStatus,
    /// Everything cargo wrote to standard output.
    pub stdout: String,
    /// Everything cargo wrote to standard error (cargo's progress and errors go here).
    pub stderr: String,
    /// Whether cargo was killed for running past its time limit.
    pub timed_out: bool,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CargoOutput {
    /// Whether cargo exited with status 0 in time.
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// Standard output followed by standard error.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics, showing everything cargo printed, unless cargo succeeded.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        if !self.success() {
            panic!("expected cargo to succeed\n{self}");
        }
        self
    }

    /// Panics, showing everything cargo printed, unless cargo failed (and was not timed out).
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        if self.success() || self.timed_out {
            panic!("expected cargo to fail\n{self}");
        }
        self
    }

    /// Panics unless cargo failed and its output (stdout or stderr) contains `text`.
    #[track_caller]
    pub fn assert_failure_contains(&self, text: &str) -> &Self {
        self.assert_failure();
        if !self.combined().contains(text) {
            panic!("expected cargo's output to contain {text:?}\n{self}");
        }
        self
    }

    /// Panics unless standard output contains `text`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, text: &str) -> &Self {
        if !self.stdout.contains(text) {
            panic!("expected cargo's stdout to contain {text:?}\n{self}");
        }
        self
    }

    /// Panics unless standard error contains `text`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) -> &Self {
        if !self.stderr.contains(text) {
            panic!("expected cargo's stderr to contain {text:?}\n{self}");
        }
        self
    }
}

impl fmt::Display for CargoOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        if self.timed_out {
            writeln!(
                f,
                "status:  KILLED after {:.1?} (time limit reached)",
                self.elapsed
            )?;
        } else {
            writeln!(f, "status:  {} after {:.1?}", self.status, self.elapsed)?;
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(
            f,
            "--- stderr ---\n{}\n--------------",
            self.stderr.trim_end()
        )
    }
}
