//! `loadtest`: see `loadtest --help` and `loadtest/README.md`.
//!
//! Exit status: 0 passed, 1 an SLO or a check failed, 2 the test could not run.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use loadtest::{Args, Report};

fn main() -> ExitCode {
    let args = Args::parse();
    if args.write_crates.is_some() || !args.compare_downloads.is_empty() {
        return match other_mode(args) {
            Ok(code) => code,
            Err(e) => {
                report_error(&e);
                ExitCode::from(2)
            }
        };
    }
    let json_path = args.json.clone();
    match run(args) {
        Ok(report) => {
            print!("{}", report.render_table());
            if let Some(path) = json_path {
                let written = serde_json::to_vec_pretty(&report)
                    .context("cannot encode the report")
                    .and_then(|json| {
                        std::fs::write(&path, json)
                            .with_context(|| format!("cannot write {}", path.display()))
                    });
                if let Err(e) = written {
                    report_error(&e);
                    return ExitCode::from(2);
                }
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            report_error(&e);
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<Report> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(loadtest::run(&config))
}

/// `--write-crates` or `--compare-downloads`.
fn other_mode(args: Args) -> anyhow::Result<ExitCode> {
    let json_path = args.json.clone();
    let config = args.into_config()?;
    if let Some(dir) = &config.write_crates {
        let written = loadtest::write_crates(&config, dir)?;
        println!("wrote {written} .crate files to {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(loadtest::compare_downloads(&config))?;
    print!("{}", report.render());
    if let Some(path) = json_path {
        let json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if report.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[expect(clippy::print_stderr, reason = "the CLI's error output")]
fn report_error(error: &anyhow::Error) {
    eprintln!("loadtest: error: {error:#}");
}
