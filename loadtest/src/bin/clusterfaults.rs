//! `clusterfaults`: the load test against the topology `deploy/cluster/up` started, while the
//! stream's JetStream leader, an api process, an extractor and the active projector are killed
//! with SIGKILL in turn and started again; then an audit of every version (see
//! `loadtest::faults`).
//!
//! ```text
//! bash deploy/cluster/up /var/tmp/cluster
//! clusterfaults --dir /var/tmp/cluster --crates 1000
//! bash deploy/cluster/down /var/tmp/cluster
//! ```
//!
//! Exits 1 when an acknowledged version is missing, differs or is half-visible, or publishing
//! did not resume within `--max-resume` of a kill.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use loadtest::cli::parse_size;
use loadtest::faults::{self, FaultConfig};
use rand::Rng as _;

/// The Depot cluster under faults, measured.
#[derive(Debug, Parser)]
#[command(name = "clusterfaults", version)]
struct Args {
    /// The directory given to `deploy/cluster/up`.
    #[arg(long, default_value = "depot-data/cluster")]
    dir: PathBuf,

    /// `deploy/cluster/ctl` (default: found from the current directory).
    #[arg(long, default_value = "deploy/cluster/ctl")]
    ctl: PathBuf,

    /// Crates the load test publishes.
    #[arg(long, default_value_t = 1000)]
    crates: usize,

    /// Concurrent publishers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,

    /// Largest generated `.crate`.
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    max_size: u64,

    /// Seconds from the start of the load to the first kill.
    #[arg(long, default_value_t = 3.0)]
    first_kill: f64,

    /// Seconds a killed process stays down.
    #[arg(long, default_value_t = 2.0)]
    down_for: f64,

    /// Seconds from a restart to the next kill.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,

    /// Seconds between probes.
    #[arg(long, default_value_t = 0.25)]
    probe_every: f64,

    /// Longest acceptable time from a kill until a version published after it is visible.
    #[arg(long, default_value_t = 5.0)]
    max_resume: f64,

    /// The same after the kill of the stream's leader. A follower of nats-server's Raft waits
    /// 4 to 9 s (fixed in the server) without a heartbeat before it stands for election, so no
    /// write can commit sooner; 10 s is one full election timeout and the vote.
    #[arg(long, default_value_t = 10.0)]
    max_resume_leader: f64,

    /// Generator seed (default random).
    #[arg(long)]
    seed: Option<u64>,

    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,

    /// Show the load test's progress bars.
    #[arg(long)]
    progress: bool,
}

fn secs(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{name} must be a duration in seconds"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = (|| -> anyhow::Result<bool> {
        let mut rng = rand::rng();
        let config = FaultConfig {
            dir: args.dir.clone(),
            ctl: args.ctl.clone(),
            crates: args.crates,
            concurrency: args.concurrency,
            max_size: args.max_size,
            seed: args.seed.unwrap_or_else(|| rng.random()),
            prefix: format!("ft{:06x}", rng.random::<u32>() & 0xff_ffff),
            first_kill: secs("first-kill", args.first_kill)?,
            down_for: secs("down-for", args.down_for)?,
            settle: secs("settle", args.settle)?,
            probe_every: secs("probe-every", args.probe_every)?,
            max_resume: secs("max-resume", args.max_resume)?,
            max_resume_leader: secs("max-resume-leader", args.max_resume_leader)?,
            progress: args.progress,
        };
        let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
        let report = runtime.block_on(faults::run(&config))?;
        print!("{}", faults::render(&report));
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(report.violations.is_empty())
    })();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            report_error(&e);
            ExitCode::from(2)
        }
    }
}

#[expect(clippy::print_stderr, reason = "the CLI's error output")]
fn report_error(error: &anyhow::Error) {
    eprintln!("clusterfaults: error: {error:#}");
}
