//! `keepalive`: sequential small requests on one kept-alive connection per kind of response,
//! reporting any request that took at least `--stall-ms` (see `loadtest::keepalive`).
//!
//! ```sh
//! keepalive --probe index=http://127.0.0.1:18810/index/config.json \
//!     --probe download=http://127.0.0.1:18810/api/v1/crates/foo/1.0.0/download \
//!     --probe api=http://127.0.0.1:18810/api/v1/crates?q=foo \
//!     --probe metrics=http://127.0.0.1:18811/metrics
//! ```
//!
//! Exit status: 0 no stall and no error, 1 a stall or an error, 2 bad arguments.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use loadtest::keepalive::{Probe, render, run};

/// Sequential requests on one kept-alive connection per `--probe`, each timed.
#[derive(Debug, Parser)]
#[command(name = "keepalive", version)]
struct Args {
    /// `LABEL=URL` (http only); one connection each. Repeatable.
    #[arg(long, required = true)]
    probe: Vec<String>,

    /// Requests per probe.
    #[arg(long, default_value_t = 200)]
    requests: usize,

    /// A request taking at least this long is a stall.
    #[arg(long, default_value_t = 20)]
    stall_ms: u64,

    /// Sent as `Authorization` (for a registry that requires authentication).
    #[arg(long, env = "LOADTEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[expect(clippy::print_stderr, reason = "the CLI's error output")]
fn main() -> ExitCode {
    let args = Args::parse();
    let probes = match args
        .probe
        .iter()
        .map(|p| Probe::parse(p))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(probes) => probes,
        Err(e) => {
            eprintln!("keepalive: {e:#}");
            return ExitCode::from(2);
        }
    };
    let stall = Duration::from_millis(args.stall_ms);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keepalive: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let results = runtime.block_on(run(&probes, args.requests, stall, args.token.as_deref()));
    print!("{}", render(&results, stall));
    if results.iter().all(|r| r.stalls == 0 && r.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
