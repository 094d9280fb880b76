//! Runs the load test (small) against a real Depot: `depot serve` in embedded mode (SQLite and
//! blobs in a temporary directory), started as a subprocess.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

mod support;

use clap::Parser as _;
use loadtest::generate::{GenParams, LARGE_CRATE, Plan};
use loadtest::{Args, Report};
use support::depot_binary;

/// A running `depot serve`, killed on drop.
struct Depot {
    child: Child,
    url: String,
    token: String,
    metrics_url: Option<String>,
    log: Arc<Mutex<String>>,
    _data: tempfile::TempDir,
}

impl Drop for Depot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Depot {
    fn start() -> Depot {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(depot_binary());
        for (key, _) in std::env::vars() {
            if key.starts_with("DEPOT_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .arg("serve")
            .env("DEPOT_DATA_DIR", data.path())
            .env("DEPOT_LISTEN", "127.0.0.1:0")
            .env("DEPOT_UPSTREAM_INDEX", "off")
            .env("DEPOT_METRICS_LISTEN", "127.0.0.1:0")
            .env("DEPOT_MAX_CRATE_SIZE", "8MiB")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start depot serve");

        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<(&'static str, String)>();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        {
            let (tx, log) = (tx.clone(), Arc::clone(&log));
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                }
                drop(tx);
            });
        }
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    for (marker, what) in
                        [("depot listening on ", "url"), ("metrics on ", "metrics")]
                    {
                        if let Some(rest) = line.split(marker).nth(1) {
                            let value = rest.split_whitespace().next().unwrap_or_default();
                            let _ = tx.send((what, value.to_owned()));
                        }
                    }
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }

        let (mut url, mut metrics_url) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while url.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(("url", value)) => url = Some(value),
                Ok((_, value)) => metrics_url = Some(value),
                Err(_) => {
                    let _ = child.kill();
                    panic!("depot serve did not start:\n{}", log.lock().unwrap());
                }
            }
        }
        // The metrics line comes before the listening line when there is one.
        while let Ok((what, value)) = rx.try_recv() {
            if what == "metrics" {
                metrics_url = Some(value);
            }
        }
        // The first start writes the admin token to a file (before it starts listening).
        let token = std::fs::read_to_string(data.path().join("admin-token"))
            .unwrap_or_else(|e| panic!("no admin token file: {e}\n{}", log.lock().unwrap()))
            .trim()
            .to_owned();
        Depot {
            child,
            url: url.unwrap(),
            token,
            metrics_url,
            log,
            _data: data,
        }
    }

    /// Waits until the first-start token is usable (the projector applied it).
    async fn wait_for_token(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = client
                .get(format!("{}/api/v1/me", self.url))
                .header("Authorization", &self.token)
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the admin token never worked:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn index(&self) -> String {
        format!("sparse+{}/index/", self.url)
    }
}

/// The first seed whose plan of `crates` crates has a large crate, so that the
/// large-crate path is exercised too.
fn seed_with_a_large_crate(crates: usize, max_size: u64) -> u64 {
    (1..)
        .find(|&seed| {
            let plan = Plan::generate(&GenParams {
                crates,
                versions_per_crate: None,
                max_size,
                incompressible_fraction: 0.3,
                crates_io_dep_fraction: 0.1,
                seed,
                prefix: "x".to_owned(),
                registry_index: String::new(),
            });
            plan.units.iter().any(|u| u.target_size >= LARGE_CRATE)
        })
        .unwrap()
}

async fn load_test(depot: &Depot, extra: &[&str]) -> Report {
    let mut argv = vec![
        "loadtest".to_owned(),
        "--index".to_owned(),
        depot.index(),
        "--token".to_owned(),
        depot.token.clone(),
        "--quiet".to_owned(),
    ];
    if let Some(metrics) = &depot.metrics_url {
        argv.extend(["--metrics-url".to_owned(), metrics.clone()]);
    }
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    let config = Args::try_parse_from(argv).unwrap().into_config().unwrap();
    loadtest::run(&config).await.expect("the load test runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_test_against_an_embedded_depot() {
    let depot = Depot::start();
    depot.wait_for_token().await;

    let seed = seed_with_a_large_crate(12, 2 << 20).to_string();
    let report = load_test(
        &depot,
        &[
            "--crates",
            "12",
            "--concurrency",
            "4",
            "--hot-requests",
            "100",
            "--max-size",
            "2MiB",
            "--seed",
            &seed,
            "--prefix",
            "ltit",
            "--yank-fraction",
            "0.2",
            // Latency SLOs generous enough for a loaded CI machine and a debug build.
            "--slo-publish-visible-p99-ms",
            "30000",
            "--slo-index-p99-ms",
            "5000",
        ],
    )
    .await;
    let table = report.render_table();
    let log = depot.log.lock().unwrap().clone();
    println!("{table}");
    assert_eq!(report.totals.errors, 0, "{table}\n--- depot log ---\n{log}");
    assert!(report.passed, "{table}");
    let c = &report.checks;
    assert!(c.versions_planned >= 12);
    assert_eq!(c.published, c.versions_planned, "{table}");
    assert_eq!(c.visible, c.published, "every version visible");
    assert_eq!(c.checksums_verified, c.published, "every checksum verified");
    assert_eq!(
        c.checksum_mismatches + c.index_cksum_mismatches + c.not_visible,
        0
    );
    assert!(c.yanked >= 1 && c.yank_verified == c.yanked, "{table}");
    assert!(
        c.unyanked >= 1 && c.unyank_verified == c.unyanked,
        "{table}"
    );
    let row = |label: &str| report.operations.iter().find(|r| r.label == label).unwrap();
    assert!(row("publish (large)").count >= 1, "{table}");
    assert_eq!(row("index hot file").count, 100);
    assert_eq!(
        row("index conditional (304)").count,
        row("index fetch").count
    );
    assert_eq!(row("download").count, c.published);
    assert!(row("download").mb_per_sec.unwrap() > 0.0);
    if let Some(metrics) = &report.metrics {
        assert_eq!(metrics.error, None);
        let accepted = metrics
            .deltas
            .iter()
            .find(|d| d.series == r#"depot_publish_total{outcome="accepted"}"#)
            .map(|d| d.delta);
        assert_eq!(accepted, Some(c.published as f64), "{table}");
    }

    // The same seed and prefix give the same names and versions; other options give other
    // bytes, which the registry refuses (the versions are taken). The run goes on, counts
    // the errors, skips the dependents and fails.
    let rerun = load_test(
        &depot,
        &[
            "--crates",
            "4",
            "--concurrency",
            "2",
            "--hot-requests",
            "10",
            "--max-size",
            "64KiB",
            "--seed",
            &seed,
            "--prefix",
            "ltit",
            "--incompressible-fraction",
            "1",
            "--crates-io-dep-fraction",
            "1",
        ],
    )
    .await;
    let table = rerun.render_table();
    println!("{table}");
    assert!(!rerun.passed, "{table}");
    let publish_errors: u64 = rerun
        .operations
        .iter()
        .filter(|r| r.label.starts_with("publish ("))
        .map(|r| r.errors)
        .sum();
    assert!(publish_errors > 0, "{table}");
    assert!(
        rerun.violations.iter().any(|v| v.contains("error rate")),
        "{table}"
    );
}
