//! A large `.crate` (256 MiB) published to, checked by and downloaded from a real
//! `depot serve`, with its blobs in the local directory and in S3: the bytes come back
//! unchanged and the server's peak RSS stays within 64 MiB of idle. The `bigcrate` binary
//! runs the same path at 3 GiB (PERFORMANCE.md).
//!
//! The S3 case needs a real S3 server: `DEPOT_TEST_S3_*` (set by `.ci/test`).

mod support;

use std::time::Duration;

use depot_testkit::TestBucket;
use support::depot_binary;

use loadtest::big::{self, Backend, BigConfig, BigReport, S3Target};

/// The large file inside the `.crate`.
const DATA_SIZE: u64 = 256 << 20;

/// The most the server's RSS may grow over idle.
const MAX_GROWTH: u64 = 64 << 20;

async fn publish_and_download(backend: Backend) -> BigReport {
    let config = BigConfig {
        depot: depot_binary(),
        backend,
        data_size: DATA_SIZE,
        max_crate_size: 2 * DATA_SIZE,
        work_dir: std::env::temp_dir(),
        keep: false,
        sample_every: Duration::from_millis(100),
    };
    let report = big::run(&config).await.expect("the big crate round trip");
    println!("{report}");
    assert!(report.crate_size > DATA_SIZE, "{report}");
    assert_eq!(report.download_size, report.crate_size, "{report}");
    assert_eq!(report.download_sha256, report.sha256, "{report}");
    assert!(
        report.growth() <= MAX_GROWTH,
        "the server's RSS grew {} bytes over idle, more than {MAX_GROWTH}:\n{report}",
        report.growth()
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_crate_on_the_local_blob_store_stays_within_bounded_memory() {
    publish_and_download(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_crate_on_s3_stays_within_bounded_memory() {
    let bucket = TestBucket::new().await;
    publish_and_download(Backend::S3(S3Target {
        endpoint: bucket.endpoint().to_owned(),
        bucket: bucket.name().to_owned(),
        access_key: bucket.access_key().to_owned(),
        secret_key: bucket.secret_key().to_owned(),
        region: bucket.region().to_owned(),
    }))
    .await;
}
