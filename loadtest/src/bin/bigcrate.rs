//! `bigcrate`: publishes one very large `.crate` to a `depot serve` it starts, downloads it
//! back, and reports throughput and the server's memory growth (see `loadtest::big`).
//!
//! ```text
//! bigcrate --size 3GiB --backend local --depot target/release/depot
//! bigcrate --size 3GiB --backend s3 --s3-endpoint http://127.0.0.1:8333 \
//!     --s3-access-key KEY --s3-secret-key SECRET
//! ```
//!
//! Exits non-zero when the download differs from the upload or the server's peak RSS grew
//! more than `--max-growth` over idle.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use loadtest::big::{self, Backend, BigConfig, S3Target};
use loadtest::cli::parse_size;

/// Depot's memory while publishing, checking and downloading one very large `.crate`.
#[derive(Debug, Parser)]
#[command(name = "bigcrate", version)]
struct Args {
    /// Size of the `.crate` to aim for (suffixes K, M, G, KiB, MiB, GiB); Depot is started
    /// with this as DEPOT_MAX_CRATE_SIZE (at most 3 GiB). The crate's one large file is this
    /// size less 1/128 (room for the tar and gzip framing of incompressible data).
    #[arg(long, value_parser = parse_size, default_value = "3GiB")]
    size: u64,

    /// Size of the large file instead (the `.crate` is then a little larger).
    #[arg(long, value_parser = parse_size)]
    data_size: Option<u64>,

    /// Where Depot keeps the blobs.
    #[arg(long, value_enum, default_value_t = BackendKind::Local)]
    backend: BackendKind,

    /// The `depot` executable (default: `depot` beside this program).
    #[arg(long)]
    depot: Option<PathBuf>,

    /// Fail when the server's peak RSS exceeds its idle RSS by more than this.
    #[arg(long, value_parser = parse_size, default_value = "64MiB")]
    max_growth: u64,

    /// Directory for the `.crate` and Depot's data directory (default: the temp directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,

    /// Keep the `.crate`, the data directory and (with s3) the bucket.
    #[arg(long)]
    keep: bool,

    /// S3 endpoint, `http://HOST:PORT` (with `--backend s3`).
    #[arg(long, env = "DEPOT_TEST_S3_ENDPOINT")]
    s3_endpoint: Option<String>,

    /// S3 access key id.
    #[arg(long, env = "DEPOT_TEST_S3_ACCESS_KEY")]
    s3_access_key: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "DEPOT_TEST_S3_SECRET_KEY", hide_env_values = true)]
    s3_secret_key: Option<String>,

    /// S3 region.
    #[arg(long, env = "DEPOT_TEST_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Local,
    S3,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report_error(&anyhow::Error::new(e).context("cannot start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            report_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Runs the measurement, prints the report; `Ok(false)` when a check failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.size <= 3 << 30,
        "--size may be at most 3GiB (the largest DEPOT_MAX_CRATE_SIZE)"
    );
    let depot = match args.depot {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("depot"),
    };
    let bucket = match args.backend {
        BackendKind::Local => None,
        BackendKind::S3 => {
            let missing = |what: &str| anyhow::anyhow!("--backend s3 needs {what}");
            let target = S3Target {
                endpoint: args
                    .s3_endpoint
                    .ok_or_else(|| missing("--s3-endpoint (or DEPOT_TEST_S3_ENDPOINT)"))?
                    .trim_end_matches('/')
                    .to_owned(),
                bucket: format!(
                    "depot-bigcrate-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs()
                ),
                access_key: args
                    .s3_access_key
                    .ok_or_else(|| missing("--s3-access-key (or DEPOT_TEST_S3_ACCESS_KEY)"))?,
                secret_key: args
                    .s3_secret_key
                    .ok_or_else(|| missing("--s3-secret-key (or DEPOT_TEST_S3_SECRET_KEY)"))?,
                region: args.s3_region,
            };
            big::create_bucket(&target)
                .await
                .with_context(|| format!("creating bucket {}", target.bucket))?;
            Some(target)
        }
    };
    let config = BigConfig {
        depot,
        backend: bucket.clone().map_or(Backend::Local, Backend::S3),
        data_size: args.data_size.unwrap_or(args.size - args.size / 128),
        max_crate_size: args.size,
        work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
        keep: args.keep,
        sample_every: Duration::from_millis(100),
    };
    let outcome = big::run(&config).await;
    if let Some(target) = &bucket {
        if args.keep {
            println!("bucket {} kept", target.bucket);
        } else if let Err(e) = big::delete_bucket(target).await {
            report_error(&e.context(format!("deleting bucket {}", target.bucket)));
        }
    }
    let report = outcome?;
    print!("{report}");
    let mut passed = true;
    if !report.verified() {
        println!("FAIL: the downloaded bytes differ from the published .crate");
        passed = false;
    }
    if report.growth() > args.max_growth {
        println!(
            "FAIL: the server's RSS grew {:.1} MiB over idle, more than --max-growth {:.1} MiB",
            report.growth() as f64 / f64::from(1 << 20),
            args.max_growth as f64 / f64::from(1 << 20)
        );
        passed = false;
    }
    Ok(passed)
}

#[expect(clippy::print_stderr, reason = "the CLI's error output")]
fn report_error(error: &anyhow::Error) {
    eprintln!("bigcrate: error: {error:#}");
}
