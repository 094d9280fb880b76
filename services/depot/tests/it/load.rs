//! A short load test against Depot on NATS + PostgreSQL: 120 generated crates with a dependency
//! graph, published by 8 concurrent publishers, fetched, downloaded and yanked. Correctness is
//! asserted here (zero errors, every checksum verified, every version visible); latency figures
//! are measured on a quiet machine and written down in PERFORMANCE.md, not asserted in a test.

use clap::Parser as _;
use loadtest::Args;

use crate::support::{Setup, TestDepot};

#[tokio::test(flavor = "multi_thread")]
async fn short_load_test_on_nats_and_postgres() {
    let depot = TestDepot::start_on(Setup::Production, &[("DEPOT_MAX_CRATE_SIZE", "8MiB")]).await;
    let token = depot.token("loader").await;
    let metrics = depot.metrics_url();
    let argv = [
        "loadtest",
        "--index",
        &depot.index_url(),
        "--token",
        &token,
        "--crates",
        "120",
        "--concurrency",
        "8",
        "--max-size",
        "4MiB",
        "--hot-requests",
        "500",
        "--metrics-url",
        &metrics,
        "--quiet",
        "--slo-publish-visible-p99-ms",
        "60000",
        "--slo-index-p99-ms",
        "60000",
    ];
    let config = Args::try_parse_from(argv)
        .expect("valid arguments")
        .into_config()
        .expect("a valid configuration");
    let report = loadtest::run(&config).await.expect("the load test runs");
    let table = report.render_table();
    assert_eq!(report.totals.errors, 0, "{table}");
    let checks = &report.checks;
    assert!(checks.versions_planned >= 120, "{table}");
    assert_eq!(checks.published, checks.versions_planned, "{table}");
    assert_eq!(
        checks.visible, checks.published,
        "every version visible: {table}"
    );
    assert_eq!(
        checks.checksums_verified, checks.published,
        "every checksum verified: {table}"
    );
    assert_eq!(
        checks.checksum_mismatches + checks.index_cksum_mismatches + checks.not_visible,
        0,
        "{table}"
    );
    assert!(report.passed, "{table}");
}
