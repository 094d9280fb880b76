//! The report: per-operation latency percentiles and throughput, integrity checks, SLO
//! verdicts and metric deltas; rendered as a table for people ([`Report::render_table`]) and
//! serialised as JSON for machines (the same [`Report`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::Slo;
use crate::metrics::MetricDelta;
use crate::stats::{Op, Recorder, Summary, summarize};

/// The registry under test.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Index URL as given (normalised, `sparse+…/`).
    pub index: String,
    /// `api` from config.json.
    pub api: String,
    /// `dl` from config.json.
    pub dl: String,
}

/// What was run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Crate name prefix.
    pub prefix: String,
    /// Generator seed.
    pub seed: u64,
    /// Crates generated.
    pub crates: usize,
    /// Versions planned (publish units).
    pub versions: usize,
    /// Concurrency.
    pub concurrency: usize,
    /// Hot-phase requests.
    pub hot_requests: usize,
    /// Largest crate aimed at, bytes.
    pub max_size: u64,
    /// Wall-clock duration of the whole run, seconds.
    pub duration_secs: f64,
}

/// Counts of the correctness checks made along the way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checks {
    /// Versions planned.
    pub versions_planned: u64,
    /// Versions acknowledged by the registry (publish 2xx).
    pub published: u64,
    /// Versions not attempted because a prerequisite failed.
    pub skipped: u64,
    /// Published versions seen in the index.
    pub visible: u64,
    /// Published versions never seen in the index within the timeout.
    pub not_visible: u64,
    /// Index lines whose `cksum` differs from the uploaded bytes.
    pub index_cksum_mismatches: u64,
    /// Versions missing from the index file in the fetch phase.
    pub index_missing_versions: u64,
    /// Conditional fetches that did not answer 304.
    pub conditional_not_304: u64,
    /// Downloads whose sha256 matched the index `cksum`.
    pub checksums_verified: u64,
    /// Downloads whose sha256 did not match.
    pub checksum_mismatches: u64,
    /// Versions yanked (request succeeded).
    pub yanked: u64,
    /// Yanked versions shown with `"yanked":true` afterwards.
    pub yank_verified: u64,
    /// Versions unyanked (request succeeded).
    pub unyanked: u64,
    /// Unyanked versions shown as not yanked afterwards.
    pub unyank_verified: u64,
    /// Yank or unyank not reflected in the index within the timeout.
    pub yank_state_wrong: u64,
    /// Publish answers that carried warnings.
    pub publish_warnings: u64,
    /// Publishes sent again after no answer, a 5xx or a 429 (`--publish-retries`).
    pub publish_retries: u64,
}

/// An error message and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorKind {
    /// The message.
    pub message: String,
    /// Occurrences.
    pub count: u64,
}

/// One row of the operations table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpRow {
    /// Machine name.
    pub op: Op,
    /// Human label.
    pub label: &'static str,
    /// Successful operations.
    pub count: u64,
    /// Failed operations.
    pub errors: u64,
    /// Latency of the successes, ms (`None` without successes).
    pub latency: Option<Summary>,
    /// Successes per second of the phase's wall time.
    pub ops_per_sec: f64,
    /// Bytes moved by the successes.
    pub bytes: u64,
    /// MiB per second of the phase's wall time (for operations that move crates).
    pub mb_per_sec: Option<f64>,
    /// The errors, by message.
    pub error_kinds: Vec<ErrorKind>,
}

/// Totals over every operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// Operations attempted.
    pub operations: u64,
    /// Operations failed.
    pub errors: u64,
    /// `errors / operations`.
    pub error_rate: f64,
}

/// One SLO verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloCheck {
    /// What is checked.
    pub name: String,
    /// The threshold.
    pub threshold: f64,
    /// The measured value (`None`: nothing measured, so nothing to violate).
    pub actual: Option<f64>,
    /// `ms` or `ratio`.
    pub unit: &'static str,
    /// Whether it holds.
    pub passed: bool,
}

/// Metric deltas from the registry's Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsReport {
    /// The endpoint.
    pub url: String,
    /// Non-zero changes of counters, `_count` and `_sum` series.
    pub deltas: Vec<MetricDelta>,
    /// Why scraping failed, if it did.
    pub error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The registry.
    pub target: Target,
    /// The run.
    pub run: RunInfo,
    /// One row per operation.
    pub operations: Vec<OpRow>,
    /// Totals.
    pub totals: Totals,
    /// Correctness checks.
    pub checks: Checks,
    /// SLO verdicts.
    pub slos: Vec<SloCheck>,
    /// Metric deltas, when `--metrics-url` was given.
    pub metrics: Option<MetricsReport>,
    /// Why the run failed (empty when it passed).
    pub violations: Vec<String>,
    /// Whether every SLO held and every check passed.
    pub passed: bool,
}

/// Builds the operation rows from the recorders.
pub fn op_rows(recorders: &BTreeMap<Op, Recorder>) -> Vec<OpRow> {
    Op::ALL
        .iter()
        .map(|&op| {
            let empty = Recorder::default();
            let rec = recorders.get(&op).unwrap_or(&empty);
            let secs = rec.wall.as_secs_f64();
            let per_sec = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
            let mut error_kinds: Vec<ErrorKind> = rec
                .error_kinds
                .iter()
                .map(|(message, &count)| ErrorKind {
                    message: message.clone(),
                    count,
                })
                .collect();
            error_kinds.sort_by(|a, b| b.count.cmp(&a.count).then(a.message.cmp(&b.message)));
            OpRow {
                op,
                label: op.label(),
                count: rec.samples.len() as u64,
                errors: rec.errors,
                latency: summarize(&rec.samples),
                ops_per_sec: per_sec(rec.samples.len() as f64),
                bytes: rec.bytes,
                mb_per_sec: op
                    .has_bytes()
                    .then(|| per_sec(rec.bytes as f64 / (1024.0 * 1024.0))),
                error_kinds,
            }
        })
        .collect()
}

/// Totals over the rows. `response→visible` repeats the visibility of the publishes already
/// counted under `publish→visible`, so it is left out.
pub fn totals(rows: &[OpRow]) -> Totals {
    let (mut operations, mut errors) = (0, 0);
    for row in rows.iter().filter(|r| r.op != Op::VisibleAfterResponse) {
        operations += row.count + row.errors;
        errors += row.errors;
    }
    Totals {
        operations,
        errors,
        error_rate: if operations == 0 {
            0.0
        } else {
            errors as f64 / operations as f64
        },
    }
}

fn p99(rows: &[OpRow], op: Op) -> Option<f64> {
    rows.iter()
        .find(|r| r.op == op)
        .and_then(|r| r.latency)
        .map(|l| l.p99_ms)
}

/// Checks the SLOs against the rows.
pub fn check_slos(slo: &Slo, rows: &[OpRow], totals: &Totals) -> Vec<SloCheck> {
    let mut checks = Vec::new();
    let mut latency = |name: &str, threshold: f64, op: Op| {
        let actual = p99(rows, op);
        checks.push(SloCheck {
            name: format!("{name} p99"),
            threshold,
            actual,
            unit: "ms",
            passed: actual.is_none_or(|a| a <= threshold),
        });
    };
    latency(
        "publish→visible (small)",
        slo.publish_visible_p99_ms,
        Op::VisibleSmall,
    );
    if let Some(t) = slo.publish_large_visible_p99_ms {
        latency("publish→visible (large)", t, Op::VisibleLarge);
    }
    latency("index fetch", slo.index_p99_ms, Op::IndexFetch);
    latency("index conditional", slo.index_p99_ms, Op::IndexConditional);
    latency("index hot file", slo.index_p99_ms, Op::IndexHot);
    if let Some(t) = slo.download_p99_ms {
        latency("download", t, Op::Download);
    }
    if let Some(t) = slo.yank_p99_ms {
        latency("yank", t, Op::Yank);
        latency("unyank", t, Op::Unyank);
    }
    checks.push(SloCheck {
        name: "error rate".to_owned(),
        threshold: slo.error_rate,
        actual: Some(totals.error_rate),
        unit: "ratio",
        passed: totals.error_rate <= slo.error_rate,
    });
    checks
}

/// The reasons a run fails: violated SLOs and failed integrity checks (which fail the run
/// whatever the error-rate threshold).
pub fn violations(slos: &[SloCheck], checks: &Checks) -> Vec<String> {
    let mut out: Vec<String> = slos
        .iter()
        .filter(|s| !s.passed)
        .map(|s| match s.unit {
            "ms" => format!(
                "SLO violated: {} is {:.1} ms (threshold {} ms)",
                s.name,
                s.actual.unwrap_or_default(),
                s.threshold
            ),
            _ => format!(
                "SLO violated: {} is {:.4} (threshold {})",
                s.name,
                s.actual.unwrap_or_default(),
                s.threshold
            ),
        })
        .collect();
    let mut integrity = |count: u64, what: &str| {
        if count > 0 {
            out.push(format!("{count} {what}"));
        }
    };
    integrity(
        checks.not_visible,
        "published versions never became visible in the index",
    );
    integrity(
        checks.index_cksum_mismatches,
        "index lines have a cksum different from the uploaded .crate",
    );
    integrity(
        checks.checksum_mismatches,
        "downloads did not match the cksum in the index",
    );
    integrity(
        checks.yank_state_wrong,
        "yanks or unyanks were not reflected in the index",
    );
    integrity(
        checks.index_missing_versions,
        "published versions were missing from their index file",
    );
    integrity(
        checks.conditional_not_304,
        "conditional index fetches with the current ETag did not answer 304",
    );
    out
}

fn fmt_ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
        Some(v) => format!("{v:.1} ms"),
        None => "-".to_owned(),
    }
}

fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

impl Report {
    /// The report as a human-readable table.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let r = &self.run;
        let _ = writeln!(out, "Depot load test against {}", self.target.index);
        let _ = writeln!(out, "  api {}  dl {}", self.target.api, self.target.dl);
        let _ = writeln!(
            out,
            "  {} crates, {} versions, concurrency {}, max size {}, hot requests {}, prefix {}, seed {}, {:.1} s\n",
            r.crates,
            r.versions,
            r.concurrency,
            fmt_bytes(r.max_size),
            r.hot_requests,
            r.prefix,
            r.seed,
            r.duration_secs
        );
        let _ = writeln!(
            out,
            "{:<25} {:>7} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "operation", "count", "errors", "p50", "p95", "p99", "max", "ops/s", "MiB/s"
        );
        let _ = writeln!(out, "{}", "-".repeat(103));
        for row in &self.operations {
            if row.count == 0 && row.errors == 0 {
                continue;
            }
            let l = row.latency;
            let _ = writeln!(
                out,
                "{:<25} {:>7} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9.1} {:>9}",
                row.label,
                row.count,
                row.errors,
                fmt_ms(l.map(|l| l.p50_ms)),
                fmt_ms(l.map(|l| l.p95_ms)),
                fmt_ms(l.map(|l| l.p99_ms)),
                fmt_ms(l.map(|l| l.max_ms)),
                row.ops_per_sec,
                row.mb_per_sec
                    .map_or_else(|| "-".to_owned(), |m| format!("{m:.1}")),
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "\ntotal: {} operations, {} errors, error rate {:.4}%",
            t.operations,
            t.errors,
            t.error_rate * 100.0
        );

        let c = &self.checks;
        let _ = writeln!(
            out,
            "checks: {}/{} versions published ({} skipped), {} visible ({} not), {} checksums verified ({} mismatched), \
             {} yanked ({} verified), {} unyanked ({} verified), {} publish warnings, {} publishes retried",
            c.published,
            c.versions_planned,
            c.skipped,
            c.visible,
            c.not_visible,
            c.checksums_verified,
            c.checksum_mismatches,
            c.yanked,
            c.yank_verified,
            c.unyanked,
            c.unyank_verified,
            c.publish_warnings,
            c.publish_retries
        );

        let errors: Vec<&OpRow> = self.operations.iter().filter(|r| r.errors > 0).collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "\nerrors:");
            for row in errors {
                for kind in &row.error_kinds {
                    let _ = writeln!(
                        out,
                        "  {:<25} {:>6} × {}",
                        row.label, kind.count, kind.message
                    );
                }
            }
        }

        let _ = writeln!(out, "\nSLOs:");
        for slo in &self.slos {
            let actual = match (slo.unit, slo.actual) {
                ("ms", a) => fmt_ms(a),
                (_, Some(a)) => format!("{a:.4}"),
                (_, None) => "-".to_owned(),
            };
            let threshold = if slo.unit == "ms" {
                format!("{} ms", slo.threshold)
            } else {
                format!("{}", slo.threshold)
            };
            let _ = writeln!(
                out,
                "  [{}] {:<32} {:>10}  (threshold ≤ {})",
                match (slo.passed, slo.actual) {
                    (_, None) => "n/a ",
                    (true, _) => "PASS",
                    (false, _) => "FAIL",
                },
                slo.name,
                actual,
                threshold
            );
        }

        if let Some(metrics) = &self.metrics {
            let _ = writeln!(out, "\nmetrics deltas ({}):", metrics.url);
            if let Some(error) = &metrics.error {
                let _ = writeln!(out, "  unavailable: {error}");
            } else if metrics.deltas.is_empty() {
                let _ = writeln!(out, "  no counter changed");
            }
            for d in &metrics.deltas {
                let _ = writeln!(out, "  {:>14} {}", format_number(d.delta), d.series);
            }
        }

        if self.passed {
            let _ = writeln!(out, "\nRESULT: PASS");
        } else {
            let _ = writeln!(out, "\nRESULT: FAIL");
            for v in &self.violations {
                let _ = writeln!(out, "  - {v}");
            }
        }
        out
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::Stats;

    fn slo() -> Slo {
        Slo {
            publish_visible_p99_ms: 100.0,
            publish_large_visible_p99_ms: None,
            index_p99_ms: 50.0,
            download_p99_ms: Some(1000.0),
            yank_p99_ms: None,
            error_rate: 0.0,
        }
    }

    fn stats() -> Stats {
        let stats = Stats::default();
        for ms in 1..=100 {
            stats.ok(Op::VisibleSmall, Duration::from_millis(ms), 0);
            stats.ok(Op::IndexFetch, Duration::from_micros(ms * 100), 1000);
        }
        stats.ok(Op::Download, Duration::from_millis(20), 2 * 1024 * 1024);
        stats.set_wall(Op::Download, Duration::from_secs(2));
        stats.set_wall(Op::IndexFetch, Duration::from_secs(4));
        stats
    }

    #[test]
    fn rows_totals_and_throughput() {
        let rows = op_rows(&stats().snapshot());
        assert_eq!(rows.len(), Op::ALL.len());
        let download = rows.iter().find(|r| r.op == Op::Download).unwrap();
        assert_eq!(download.count, 1);
        assert_eq!(download.mb_per_sec, Some(1.0));
        assert_eq!(download.ops_per_sec, 0.5);
        let index = rows.iter().find(|r| r.op == Op::IndexFetch).unwrap();
        assert_eq!(index.ops_per_sec, 25.0);
        assert_eq!(index.latency.unwrap().p99_ms, 9.9);
        let visible = rows.iter().find(|r| r.op == Op::VisibleSmall).unwrap();
        assert_eq!(visible.latency.unwrap().p50_ms, 50.0);
        assert_eq!(visible.mb_per_sec, None);
        let t = totals(&rows);
        assert_eq!(t.operations, 201);
        assert_eq!(t.errors, 0);
        assert_eq!(t.error_rate, 0.0);
    }

    #[test]
    fn slos_pass_and_fail() {
        let stats = stats();
        let rows = op_rows(&stats.snapshot());
        let t = totals(&rows);
        let checks = check_slos(&slo(), &rows, &t);
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        // No hot-phase samples: nothing measured, nothing violated.
        let hot = checks
            .iter()
            .find(|c| c.name == "index hot file p99")
            .unwrap();
        assert_eq!(hot.actual, None);
        assert!(violations(&checks, &Checks::default()).is_empty());

        // A slow tail and one error.
        stats.ok(Op::VisibleSmall, Duration::from_millis(500), 0);
        stats.ok(Op::VisibleSmall, Duration::from_millis(500), 0);
        stats.error(Op::Download, "HTTP 500: boom");
        let rows = op_rows(&stats.snapshot());
        let t = totals(&rows);
        assert_eq!(t.errors, 1);
        let checks = check_slos(&slo(), &rows, &t);
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["publish→visible (small) p99", "error rate"]);
        let v = violations(
            &checks,
            &Checks {
                checksum_mismatches: 2,
                ..Checks::default()
            },
        );
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(
            v[0].contains("publish→visible (small) p99 is 500.0 ms"),
            "{}",
            v[0]
        );
        assert!(v[2].starts_with("2 downloads did not match"), "{}", v[2]);

        // A tolerated error rate.
        let lenient = Slo {
            error_rate: 0.01,
            publish_visible_p99_ms: 1000.0,
            ..slo()
        };
        assert!(check_slos(&lenient, &rows, &t).iter().all(|c| c.passed));
    }

    #[test]
    fn table_and_json_render() {
        let stats = stats();
        stats.error(Op::Download, "HTTP 500: boom");
        let rows = op_rows(&stats.snapshot());
        let t = totals(&rows);
        let slos = check_slos(&slo(), &rows, &t);
        let checks = Checks::default();
        let violations = violations(&slos, &checks);
        let report = Report {
            target: Target {
                index: "sparse+http://x/index/".to_owned(),
                api: "http://x".to_owned(),
                dl: "http://x/api/v1/crates".to_owned(),
            },
            run: RunInfo {
                prefix: "ltabc".to_owned(),
                seed: 1,
                crates: 1,
                versions: 1,
                concurrency: 1,
                hot_requests: 0,
                max_size: 1 << 20,
                duration_secs: 1.0,
            },
            passed: violations.is_empty(),
            operations: rows,
            totals: t,
            checks,
            slos,
            metrics: Some(MetricsReport {
                url: "http://x/metrics".to_owned(),
                deltas: vec![MetricDelta {
                    series: "a_total".to_owned(),
                    before: 1.0,
                    after: 3.0,
                    delta: 2.0,
                }],
                error: None,
            }),
            violations,
        };
        let table = report.render_table();
        assert!(table.contains("download"), "{table}");
        assert!(table.contains("1 × HTTP 500: boom"), "{table}");
        assert!(table.contains("[FAIL] error rate"), "{table}");
        assert!(table.contains("RESULT: FAIL"), "{table}");
        assert!(table.contains("2 a_total"), "{table}");
        assert!(
            !table.contains("yank "),
            "rows without data are hidden:\n{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["passed"], false);
        assert_eq!(json["operations"][8]["op"], "download");
        assert_eq!(json["operations"][8]["errors"], 1);
        assert_eq!(json["totals"]["errors"], 1);
        assert_eq!(json["metrics"]["deltas"][0]["delta"], 2.0);
    }
}
