//! The shipped Prometheus setup against what Depot really exports: serves
//! `depot_telemetry::encode()` (with made-up traffic recorded through `depot_telemetry::metrics()`)
//! on a loopback port, starts the real Prometheus with `deploy/prometheus/run --scrape-interval 1s
//! --evaluation-interval 1s`, and checks that
//!
//! - every recording rule and alert evaluates without error;
//! - the SLI recording rules produce the ratios the traffic implies;
//! - every query of the Grafana dashboard is valid and, where it reads Depot's metrics, returns
//!   data;
//! - `run` stops Prometheus and removes its temp dir on SIGTERM.
//!
//! This is also the recipe for checking the rules against a real Depot: start it, start
//! `deploy/prometheus/run --target <its DEPOT_METRICS_LISTEN> …` and query
//! `http://127.0.0.1:PORT/api/v1/query?query=depot:sli_availability_errors:ratio_rate5m`
//! (or use `deploy/prometheus/query`). `run` installs Debian's prometheus when it is missing
//! (as root), or takes PROMETHEUS_BIN.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use depot_telemetry::metrics;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Serves the process-wide registry on a loopback port, as a Depot metrics listener does.
fn start_exporter() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exporter");
    let addr = listener.local_addr().expect("local addr").to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = depot_telemetry::encode();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// One tick of made-up traffic. Per tick, among cargo-facing requests (103): 1 answered 500
/// (availability errors 1/103); of 100 index fetches 10 took longer than 50 ms (latency errors
/// 10 %); of 20 accepted publishes 1 became visible after more than 5 s (freshness errors 5 %).
/// /health and unmatched requests, which the SLIs ignore, fail a lot.
fn record_tick(tick: i64) {
    let m = metrics();
    let request = |route: &str, method: &str, status: &str, n: u64, seconds: f64| {
        m.http_requests
            .with_label_values(&[route, method, status])
            .inc_by(n);
        for _ in 0..n {
            m.http_duration
                .with_label_values(&[route, method])
                .observe(seconds);
        }
    };
    request("/index/{*path}", "GET", "200", 89, 0.004);
    request("/index/{*path}", "GET", "200", 9, 0.2);
    request("/index/{*path}", "GET", "404", 1, 0.003);
    request("/index/{*path}", "GET", "500", 1, 0.3);
    request("/index/config.json", "GET", "200", 1, 0.001);
    request("/api/v1/crates/new", "PUT", "200", 1, 1.5);
    request(
        "/api/v1/crates/{name}/{version}/download",
        "GET",
        "200",
        1,
        0.01,
    );
    request("/health", "GET", "503", 5, 0.001);
    request("unmatched", "GET", "500", 3, 0.001);

    m.publishes.with_label_values(&["accepted"]).inc_by(2);
    m.publishes.with_label_values(&["rejected"]).inc();
    for _ in 0..19 {
        m.publish_visible.observe(0.3);
    }
    m.publish_visible.observe(8.0);
    m.upload_bytes.observe(20_000.0);
    m.events_appended
        .with_label_values(&["version_uploaded"])
        .inc();
    m.events_appended
        .with_label_values(&["version_accepted"])
        .inc();
    m.append_conflicts.inc();
    m.append_duration.observe(0.003);
    m.extraction_duration.observe(0.05);
    m.extraction_failures
        .with_label_values(&["invalid_path"])
        .inc();
    m.consumer_pending.with_label_values(&["extractor"]).set(2);
    m.consumer_pending.with_label_values(&["projector"]).set(3);
    m.log_head.set(3 * tick + 3);
    m.projector_applied.set(3 * tick);
    m.projector_events
        .with_label_values(&["version_uploaded"])
        .inc();
    m.projector_batch.observe(0.01);
    m.index_cache.with_label_values(&["hit"]).inc_by(9);
    m.index_cache.with_label_values(&["miss"]).inc();
    m.downloads.inc();
    m.download_bytes.inc_by(20_000);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `deploy/prometheus/run` in its own process group; stopped with SIGTERM when dropped.
#[derive(Debug)]
struct Prometheus {
    child: Child,
    log: PathBuf,
    addr: String,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!(
            "depot-telemetry-prometheus-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let out = std::fs::File::create(&log).expect("create the log");
        let child = Command::new("bash")
            .arg(repo_root().join("deploy/prometheus/run"))
            .args(["--target", target, "--listen", &addr])
            .args(["--scrape-interval", "1s", "--evaluation-interval", "1s"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start deploy/prometheus/run");
        Prometheus { child, log, addr }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics with the log of `run` and Prometheus.
    fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n--- deploy/prometheus/run (last 40 lines) ---\n{}",
            self.log()
        );
    }

    fn get(&self, path_and_query: &str) -> Option<Value> {
        let mut stream = TcpStream::connect(&self.addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path_and_query} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    }

    fn query(&self, expr: &str) -> Option<Value> {
        self.get(&format!("/api/v1/query?query={}", encode(expr)))
    }

    /// Sends SIGTERM to the process group and waits for `run` to exit.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The one value of an instant-vector answer, if it is a number.
fn single_value(answer: &Value) -> Option<f64> {
    let result = answer["data"]["result"].as_array()?;
    let [series] = result.as_slice() else {
        return None;
    };
    series["value"][1]
        .as_str()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// Grafana's variables, as a dashboard with "All" selected sends them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

#[test]
fn prometheus_evaluates_the_rules_and_the_dashboard_on_real_exposition() {
    let target = start_exporter();
    thread::spawn(|| {
        for tick in 0.. {
            record_tick(tick);
            thread::sleep(Duration::from_millis(50));
        }
    });
    let mut prometheus = Prometheus::start(&target);
    let deadline = Instant::now() + Duration::from_secs(120);

    // 1. Every rule has been evaluated, without error.
    let rules = loop {
        if let Ok(Some(status)) = prometheus.child.try_wait() {
            prometheus.fail(&format!("deploy/prometheus/run exited early: {status}"));
        }
        let rules: Vec<Value> = prometheus
            .get("/api/v1/rules")
            .and_then(|a| a["data"]["groups"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
            prometheus.fail(&format!(
                "rule {} fails to evaluate: {}",
                bad["name"], bad["lastError"]
            ));
        }
        if !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok") {
            break rules;
        }
        if Instant::now() > deadline {
            prometheus.fail(&format!("rules not evaluated within 120 s: {rules:?}"));
        }
        thread::sleep(Duration::from_millis(500));
    };
    let recording = rules.iter().filter(|r| r["type"] == "recording").count();
    let alerting = rules.iter().filter(|r| r["type"] == "alerting").count();
    assert_eq!(recording, 21, "3 SLIs x 7 windows");
    assert!(alerting >= 10, "only {alerting} alerts loaded");

    // 2. The SLIs have the values the traffic implies (scrapes can land mid-tick: +-30 %).
    for (rule, expected) in [
        ("depot:sli_availability_errors:ratio_rate5m", 1.0 / 103.0),
        ("depot:sli_index_latency_errors:ratio_rate5m", 0.1),
        ("depot:sli_publish_freshness_errors:ratio_rate5m", 0.05),
        ("depot:sli_availability_errors:ratio_rate3d", 1.0 / 103.0),
    ] {
        let value = loop {
            let answer = prometheus.query(rule);
            if let Some(v) = answer.as_ref().and_then(single_value) {
                break v;
            }
            if Instant::now() > deadline {
                prometheus.fail(&format!("{rule} has no value within 120 s: {answer:?}"));
            }
            thread::sleep(Duration::from_millis(500));
        };
        assert!(
            (value - expected).abs() <= expected * 0.3,
            "{rule} = {value}, expected about {expected}"
        );
    }

    // 3. Every dashboard query is valid; those on Depot's metrics return data.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/depot.json"))
            .expect("read the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut empty = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let answer = prometheus.query(&substitute(expr));
            let Some(answer) = answer.filter(|a| a["status"] == "success") else {
                prometheus.fail(&format!(
                    "panel {}: query {expr:?} failed: {:?}",
                    panel["title"].as_str().unwrap_or("?"),
                    prometheus.query(&substitute(expr))
                ));
            };
            let has_data = answer["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            if !has_data && (expr.contains("depot_") || expr.contains("depot:")) {
                empty.push(format!(
                    "{}: {expr}",
                    panel["title"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );

    // 4. `run` stops Prometheus and cleans up on SIGTERM.
    let log = std::fs::read_to_string(&prometheus.log).unwrap_or_default();
    let config = log
        .lines()
        .find_map(|l| l.split("(config ").nth(1))
        .and_then(|rest| rest.strip_suffix(')'))
        .map(PathBuf::from);
    let status = prometheus.stop();
    assert!(status.is_some(), "run did not stop within 15 s of SIGTERM");
    if let Some(dir) = config.as_deref().and_then(Path::parent) {
        assert!(
            !dir.exists(),
            "run left its temp dir {} behind",
            dir.display()
        );
    } else {
        prometheus.fail("run did not print its config path");
    }
}
