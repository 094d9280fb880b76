//! Depot's load test, usable against any Cargo registry that speaks the sparse index and
//! cargo's web API.
//!
//! [`run`] generates a dependency graph of crates ([`generate`]), publishes it in dependency
//! order with C concurrent publishers and waits for each version to be visible, fetches every
//! index file plain and conditionally plus one hot file, downloads and verifies every
//! `.crate`, yanks and unyanks a sample ([`phases`]), and returns a [`Report`] with latency
//! percentiles, throughput, correctness checks and SLO verdicts ([`report`]). The binary
//! (`src/main.rs`) prints it and exits non-zero when it did not pass.
//!
//! Modules: [`cli`] (options and configuration), [`generate`] (crates), [`client`] (the
//! registry protocol), [`phases`], [`stats`] (measurements and percentiles), [`report`],
//! [`metrics`] (Prometheus scrapes), [`progress`].
//!
//! [`big`] is apart: one very large `.crate` published to and downloaded from a Depot it
//! starts, measuring the server's memory (the `bigcrate` binary).

pub mod big;
pub mod cli;
pub mod client;
pub mod compare;
pub mod faults;
pub mod generate;
pub mod keepalive;
pub mod metrics;
pub mod phases;
pub mod progress;
pub mod report;
pub mod stats;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

pub use cli::{Args, Config};
pub use report::Report;

use crate::client::Client;
pub use crate::generate::Plan;
use crate::metrics::Scrape;
use crate::phases::{Counters, Ctx, Published};
use crate::progress::Progress;
use crate::report::{MetricsReport, RunInfo, Target};
use crate::stats::Stats;

/// Runs the whole load test and returns its report. Errors only when the test cannot run at
/// all (the registry's `config.json` is unreachable or invalid); failed operations are counted
/// in the report instead.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    Ok(run_detailed(config).await?.report)
}

/// A finished run: its report, and what was planned and acknowledged, for checks of the
/// registry after the run (the cluster-under-faults audit in [`faults`]).
#[derive(Debug)]
pub struct Outcome {
    /// The report [`run`] returns.
    pub report: Report,
    /// The crates and versions generated.
    pub plan: Plan,
    /// Per unit of [`Plan::units`], what the registry acknowledged (`None`: not published).
    pub published: Vec<Option<Published>>,
}

/// [`run`], returning the plan and the acknowledged versions besides the report.
pub async fn run_detailed(config: &Config) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let progress = Progress::new(config.progress, config.notes);
    let client = Client::connect(
        &config.index_url,
        &config.token,
        config.concurrency,
        config.request_timeout,
    )
    .await
    .context("cannot read the registry's config.json")?;
    let plan = Plan::generate(&config.gen_params);
    progress.note(&format!(
        "registry {} (api {}, dl {}); {} crates, {} versions, prefix {}, seed {}",
        config.registry_index,
        client.api(),
        client.config().dl,
        plan.crates.len(),
        plan.units.len(),
        config.gen_params.prefix,
        config.gen_params.seed
    ));

    let before = match &config.metrics_url {
        Some(url) => Some(scrape(&client, url).await),
        None => None,
    };

    let ctx = Arc::new(Ctx {
        client,
        plan,
        config: config.clone(),
        stats: Stats::default(),
        counters: Counters::default(),
        progress,
    });

    let published = phases::publish::run(&ctx).await;
    let index_cksums = phases::index::run(&ctx, &published).await;
    phases::index::hot(&ctx, &published).await;
    phases::download::run(&ctx, &published, &index_cksums).await;
    phases::yank::run(&ctx, &published).await;

    let metrics = match (&config.metrics_url, before) {
        (Some(url), Some(before)) => {
            let after = scrape(&ctx.client, url).await;
            Some(match (before, after) {
                (Ok(before), Ok(after)) => MetricsReport {
                    url: url.to_string(),
                    deltas: metrics::deltas(&before, &after),
                    error: None,
                },
                (Err(e), _) | (_, Err(e)) => MetricsReport {
                    url: url.to_string(),
                    deltas: Vec::new(),
                    error: Some(e),
                },
            })
        }
        _ => None,
    };

    let rows = report::op_rows(&ctx.stats.snapshot());
    let totals = report::totals(&rows);
    let slos = report::check_slos(&config.slo, &rows, &totals);
    let checks = ctx.counters.checks(ctx.plan.units.len() as u64);
    let mut violations = report::violations(&slos, &checks);
    if checks.skipped > 0 {
        violations.push(format!(
            "{} versions were not published because a dependency failed",
            checks.skipped
        ));
    }
    let report = Report {
        target: Target {
            index: config.registry_index.clone(),
            api: ctx.client.api().to_owned(),
            dl: ctx.client.config().dl.clone(),
        },
        run: RunInfo {
            prefix: config.gen_params.prefix.clone(),
            seed: config.gen_params.seed,
            crates: ctx.plan.crates.len(),
            versions: ctx.plan.units.len(),
            concurrency: config.concurrency,
            hot_requests: config.hot_requests,
            max_size: config.gen_params.max_size,
            duration_secs: started.elapsed().as_secs_f64(),
        },
        passed: violations.is_empty(),
        operations: rows,
        totals,
        checks,
        slos,
        metrics,
        violations,
    };
    Ok(Outcome {
        report,
        plan: ctx.plan.clone(),
        published,
    })
}

/// `--write-crates`: writes every generated `.crate` into `dir` as `{name}-{version}.crate`
/// and returns how many.
pub fn write_crates(config: &Config, dir: &std::path::Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let plan = Plan::generate(&config.gen_params);
    for unit in 0..plan.units.len() {
        let built = plan.build(unit)?;
        let path = dir.join(format!("{}-{}.crate", built.name, built.vers));
        std::fs::write(&path, &built.crate_bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(plan.units.len())
}

/// `--compare-downloads`: the registry against the given servers, every generated version
/// (or the `--compare-crate` ones).
pub async fn compare_downloads(config: &Config) -> anyhow::Result<compare::CompareReport> {
    let client = Client::connect(
        &config.index_url,
        &config.token,
        config.concurrency,
        config.request_timeout,
    )
    .await
    .context("cannot read the registry's config.json")?;
    let items: Vec<compare::Item> = if config.compare_crates.is_empty() {
        let plan = Plan::generate(&config.gen_params);
        (0..plan.units.len())
            .map(|unit| {
                let (name, vers) = plan.name_version(unit);
                compare::Item {
                    name: name.to_owned(),
                    vers: vers.to_owned(),
                }
            })
            .collect()
    } else {
        config
            .compare_crates
            .iter()
            .map(|(name, vers)| compare::Item {
                name: name.clone(),
                vers: vers.clone(),
            })
            .collect()
    };
    let items: Vec<compare::Item> = std::iter::repeat_n(items, config.compare_passes)
        .flatten()
        .collect();
    let registry = compare::Peer {
        label: "registry".to_owned(),
        template: client.config().dl.clone(),
    };
    let token = client
        .config()
        .auth_required
        .then_some(config.token.as_str());
    compare::run(
        &registry,
        token,
        &config.compare,
        &items,
        config.compare_rounds,
        config.concurrency,
        !config.notes,
    )
    .await
}

/// Scrapes the metrics endpoint; the error as text (a failed scrape does not fail the run).
async fn scrape(client: &Client, url: &reqwest::Url) -> Result<Scrape, String> {
    client
        .get_text(url)
        .await
        .map(|text| metrics::parse(&text))
        .map_err(|e| format!("{e:#}"))
}
