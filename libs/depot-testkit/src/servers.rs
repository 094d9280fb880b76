//! Private servers a fault test may stop, kill and start again: a PostgreSQL cluster of its own
//! ([`PrivatePostgres`]) and a nats-server of its own ([`PrivateNats`]), each on a free loopback
//! port with its data in a temp dir. The shared test servers are never touched.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::required_var;

/// Environment variable naming the nats-server binary (≥ 2.11) that private servers run.
pub const NATS_SERVER_VAR: &str = "DEPOT_TEST_NATS_SERVER";

/// Environment variable naming PostgreSQL's `bin` directory (with `initdb`, `pg_ctl`); when
/// unset, the newest `/usr/lib/postgresql/*/bin` is used.
pub const PG_BIN_VAR: &str = "DEPOT_TEST_PG_BIN";

/// How long a private server may take to start or stop.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (bound and released; the window for a race is tiny).
///
/// # Panics
///
/// If no port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// Runs a command to completion, panicking with its output if it fails.
#[track_caller]
fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of one test: `initdb` into a temp dir (trust auth, superuser
/// `postgres`), served on a free port of 127.0.0.1. Stopped and deleted on drop.
///
/// As root, the cluster belongs to the system user `postgres` and every server command runs
/// through `runuser -u postgres` (PostgreSQL refuses to run as root).
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_root: bool,
}

impl PrivatePostgres {
    /// Creates the cluster and starts it.
    ///
    /// # Panics
    ///
    /// If PostgreSQL's binaries are missing or the cluster cannot be created or started.
    pub fn start() -> PrivatePostgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("depot-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if as_root {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(dir.path());
            run(chown, "chown of the PostgreSQL dir to user postgres");
        }
        let pg = PrivatePostgres {
            bin,
            dir,
            port: free_port(),
            as_root,
        };
        let mut initdb = pg.command("initdb");
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(pg.data_dir());
        run(initdb, "initdb");
        pg.start_again();
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again on the same port and data, waiting until it accepts
    /// connections.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data_dir())
            .args(["-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &options, "-w", "-t", "30", "start"]);
        run(start, "pg_ctl start");
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server: `fast` ends sessions and checkpoints, `immediate` is a crash (no
    /// checkpoint; recovery from WAL on the next start).
    ///
    /// # Panics
    ///
    /// If `pg_ctl stop` fails.
    pub fn stop(&self, mode: PgStopMode) {
        let mode = match mode {
            PgStopMode::Fast => "fast",
            PgStopMode::Immediate => "immediate",
        };
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "30", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// The server's log so far (for assertion messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// How [`PrivatePostgres::stop`] stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgStopMode {
    /// `pg_ctl stop -m fast`: sessions ended, a clean shutdown.
    Fast,
    /// `pg_ctl stop -m immediate`: like a crash.
    Immediate,
}

/// PostgreSQL's `bin` directory: `DEPOT_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var(PG_BIN_VAR)
        && !dir.trim().is_empty()
    {
        return PathBuf::from(dir.trim());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL binaries: set {PG_BIN_VAR} to the directory of initdb and pg_ctl, or \
             install Debian's postgresql package (/usr/lib/postgresql/*/bin). Tests never skip."
        ),
    }
}

/// A nats-server of one test (the binary named by `DEPOT_TEST_NATS_SERVER`), JetStream with
/// `sync_interval: always`, on a fixed free port with its store in a temp dir, so it can be
/// stopped or killed and started again on the same port and store. Killed on drop.
#[derive(Debug)]
pub struct PrivateNats {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts the server.
    ///
    /// # Panics
    ///
    /// If `DEPOT_TEST_NATS_SERVER` is unset or the server does not start.
    pub fn start() -> PrivateNats {
        let binary = PathBuf::from(required_var(
            NATS_SERVER_VAR,
            "the path of a nats-server >= 2.11 binary (bash .ci/test exports it)",
        ));
        let dir = tempfile::Builder::new()
            .prefix("depot-nats-")
            .tempdir()
            .expect("temp dir for nats-server");
        let port = free_port();
        let config = format!(
            "server_name: depot_fault\nlisten: 127.0.0.1:{port}\n\
             jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n  \
             max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n",
            dir.path().join("jetstream").display()
        );
        std::fs::write(dir.path().join("nats.conf"), config).expect("write nats.conf");
        let mut nats = PrivateNats {
            binary,
            dir,
            port,
            child: None,
        };
        nats.start_again();
        nats
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the (stopped) server again with the same port and store, and waits until it
    /// greets clients with JetStream enabled.
    ///
    /// # Panics
    ///
    /// If it is still running or does not come up.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .arg("-l")
            .arg(self.dir.path().join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !jetstream_greeting(self.port) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "nats-server exited during startup ({status}): {}",
                    self.server_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up: {}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it to exit.
    ///
    /// # Panics
    ///
    /// If it is not running or does not exit within 30 s.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("nats-server is running");
        let mut kill = Command::new("kill");
        kill.args(["-TERM", &child.id().to_string()]);
        run(kill, "kill -TERM nats-server");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server ignored SIGTERM for 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL (a crash) and waits for it.
    ///
    /// # Panics
    ///
    /// If it is not running.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("nats-server is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's log so far (for assertion messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a NATS server on `port` greets with JetStream enabled.
pub(crate) fn jetstream_greeting(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    if BufReader::new(stream).read_line(&mut line).is_err() {
        return false;
    }
    line.strip_prefix("INFO ")
        .and_then(|info| serde_json::from_str::<serde_json::Value>(info.trim()).ok())
        .is_some_and(|info| info["jetstream"].as_bool() == Some(true))
}
