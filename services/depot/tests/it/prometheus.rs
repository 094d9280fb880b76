//! Prometheus for real: the shipped configuration and rules, run by `deploy/prometheus/run`
//! against a Depot under a short load, produce values for every SLI recording rule.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Setup, TestDepot, crate_bytes, metadata, publish_body};

/// Stops the Prometheus process group when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn query(http: &reqwest::Client, url: &str, expr: &str) -> Option<f64> {
    let res: Value = http
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let value = res["data"]["result"].as_array()?.first()?["value"][1].as_str()?;
    value.parse().ok().filter(|v: &f64| v.is_finite())
}

#[tokio::test(flavor = "multi_thread")]
async fn recording_rules_produce_values_for_a_short_load() {
    let depot = TestDepot::start_on(Setup::Production, &[]).await;
    let token = depot.token("alice").await;
    let target = depot
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/run");
    let child = Command::new("bash")
        .arg(script)
        .args(["--target", &target, "--listen", &listen])
        .args(["--scrape-interval", "1s", "--evaluation-interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start deploy/prometheus/run");
    let prometheus = Prometheus {
        child,
        url: format!("http://{listen}"),
    };

    // Wait until Prometheus scrapes Depot, so the load below is seen as rates.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while query(&http, &prometheus.url, r#"up{job="depot"}"#).await != Some(1.0) {
        assert!(Instant::now() < deadline, "Prometheus never scraped Depot");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A short load: publishes and index fetches, over a few scrapes.
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let vers = format!("1.0.{round}");
        let body = publish_body(
            &metadata("promload", &vers),
            &crate_bytes("promload", &vers, ""),
        );
        let (status, json) = depot.publish_raw(&token, body).await;
        assert_eq!(status, 200, "{json}");
        for _ in 0..10 {
            assert_eq!(depot.index_file("promload").await.0, 200);
        }
        round += 1;
    }

    let sli = [
        "depot:sli_availability_errors:ratio_rate5m",
        "depot:sli_index_latency_errors:ratio_rate5m",
        "depot:sli_publish_freshness_errors:ratio_rate5m",
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    for expr in sli {
        let value = loop {
            if let Some(value) = query(&http, &prometheus.url, expr).await {
                break value;
            }
            assert!(Instant::now() < deadline, "{expr} never got a value");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!((0.0..=1.0).contains(&value), "{expr} = {value}");
    }
    // Nothing failed under this load: no 5xx.
    assert_eq!(
        query(&http, &prometheus.url, sli[0]).await,
        Some(0.0),
        "availability errors"
    );
    let rules: Value = http
        .get(format!("{}/api/v1/rules", prometheus.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    let mut count = 0;
    for group in groups {
        for rule in group["rules"].as_array().unwrap() {
            count += 1;
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    assert!(count >= 30, "only {count} rules loaded");
}
