//! Downloads: exact `Content-Length` from memory, from a whole read and from a stream, on every
//! backend; the download cache's hit/miss metric; `HEAD` is not a download; hostile paths get
//! cargo-format errors; sequential requests of every kind on one kept-alive connection.

use std::collections::BTreeMap;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::support::{Setup, TestDepot, details, manifest, metadata, publish_body};

/// A `.crate` carrying `random` incompressible bytes (its size is about that).
fn crate_of_size(name: &str, vers: &str, random: usize) -> Vec<u8> {
    let root = format!("{name}-{vers}");
    let mut state = (random as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data: Vec<u8> = (0..random)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    depot_cratefile::TarballBuilder::new()
        .add_file(
            &format!("{root}/Cargo.toml"),
            manifest(name, vers, "").as_bytes(),
        )
        .add_file(&format!("{root}/src/lib.rs"), b"// data\n")
        .add_file(&format!("{root}/data/blob.bin"), &data)
        .build()
}

fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(depot: &TestDepot) -> BTreeMap<String, f64> {
    let text = depot
        .http
        .get(depot.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_metrics(&text)
}

fn metric(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

async fn downloads_are_exact_cached_and_counted(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    // Read whole and cached; read in chunks and cached; streamed (kept as a blob key only).
    let crates = [
        ("dl-small", crate_of_size("dl-small", "1.0.0", 10_000)),
        ("dl-medium", crate_of_size("dl-medium", "1.0.0", 600_000)),
        ("dl-large", crate_of_size("dl-large", "1.0.0", 3_000_000)),
    ];
    for (name, krate) in &crates {
        let (status, json) = depot
            .publish_raw(&token, publish_body(&metadata(name, "1.0.0"), krate))
            .await;
        assert_eq!(status, 200, "{name}: {json}");
    }
    let before = scrape(&depot).await;
    for round in 0..2 {
        for (name, krate) in &crates {
            let url = format!("{}/api/v1/crates/{name}/1.0.0/download", depot.url);
            let head = depot.http.head(&url).send().await.unwrap();
            assert_eq!(head.status(), 200, "{name} HEAD");
            assert_eq!(
                head.headers()["content-length"].to_str().unwrap(),
                krate.len().to_string(),
                "{name} HEAD, round {round}"
            );
            assert!(head.bytes().await.unwrap().is_empty());

            let get = depot.http.get(&url).send().await.unwrap();
            assert_eq!(get.status(), 200, "{name}");
            assert_eq!(
                get.headers()["content-length"].to_str().unwrap(),
                krate.len().to_string(),
                "{name}, round {round}"
            );
            assert_eq!(get.headers()["content-type"], "application/gzip");
            let body = get.bytes().await.unwrap();
            assert!(body[..] == krate[..], "{name}, round {round}: other bytes");
        }
    }
    let after = scrape(&depot).await;
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    // Six GETs, three HEADs per round not counted.
    assert_eq!(delta("depot_downloads_total"), 6.0);
    let total: usize = crates.iter().map(|(_, k)| k.len()).sum();
    assert_eq!(delta("depot_download_bytes_total"), (2 * total) as f64);
    // Small and medium: a miss, then a hit; large: streamed both times.
    assert_eq!(
        delta(r#"depot_download_cache_requests_total{result="hit"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"depot_download_cache_requests_total{result="miss"}"#),
        4.0
    );

    // An unknown version of a known crate, and a yanked version (still downloadable).
    let (status, _) = depot.download("dl-small", "9.9.9").await;
    assert_eq!(status, 404);
    let yank = depot
        .http
        .delete(format!("{}/api/v1/crates/dl-small/1.0.0/yank", depot.url))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(yank.status(), 200);
    let (status, body) = depot.download("dl-small", "1.0.0").await;
    assert_eq!((status, body.len()), (200, crates[0].1.len()));
    // Another spelling of the name finds the same crate.
    let (status, body) = depot.download("DL_small", "1.0.0").await;
    assert_eq!((status, body.len()), (200, crates[0].1.len()));
}

/// Downloads per version and per day in crates.io's API shape; operational data that a replay
/// of the log keeps.
async fn download_counts_per_version_and_day(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    for vers in ["1.0.0", "1.1.0"] {
        let krate = crate_of_size("counted", vers, 1_000);
        let (status, json) = depot
            .publish_raw(&token, publish_body(&metadata("counted", vers), &krate))
            .await;
        assert_eq!(status, 200, "{json}");
    }
    for vers in ["1.0.0", "1.0.0", "1.0.0", "1.1.0"] {
        assert_eq!(depot.download("counted", vers).await.0, 200);
    }
    let info = |depot: &TestDepot| {
        let (http, url) = (
            depot.http.clone(),
            format!("{}/api/v1/crates/counted", depot.url),
        );
        async move {
            let json: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
            json
        }
    };
    // Counts are written in batches every few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let json = loop {
        let json = info(&depot).await;
        if json["crate"]["downloads"] == 4 {
            break json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counts never written: {json}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(json["crate"]["recent_downloads"], 4, "{json}");
    assert_eq!(json["crate"]["newest_version"], "1.1.0", "{json}");
    assert_eq!(json["versions"][0]["num"], "1.1.0", "{json}");
    assert_eq!(json["versions"][0]["downloads"], 1, "{json}");
    assert_eq!(json["versions"][1]["downloads"], 3, "{json}");
    let (status, body) = depot.get("/api/v1/crates/counted/downloads").await;
    assert_eq!(status, 200);
    let days: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let per_day = days["version_downloads"].as_array().unwrap();
    let today = &depot_events::Timestamp::now().to_pubtime()[..10];
    assert!(per_day.iter().all(|d| d["date"] == today), "{days}");
    let sum: u64 = per_day
        .iter()
        .map(|d| d["downloads"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 4, "{days}");
    for path in [
        "/api/v1/crates/nope",
        "/api/v1/crates/nope/downloads",
        "/api/v1/crates/-x",
    ] {
        let (status, body) = depot.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(String::from_utf8_lossy(&body).contains("errors"), "{path}");
    }
    // A replay rebuilds the read models from the log; download counts are kept as they are.
    let (ok, out, err) = depot.depot(&["replay"]);
    assert!(ok, "{out}{err}");
    let json = info(&depot).await;
    assert_eq!(json["crate"]["downloads"], 4, "{json}");
    assert_eq!(json["versions"][1]["downloads"], 3, "{json}");
}

on_all_setups!(
    downloads_are_exact_cached_and_counted,
    download_counts_per_version_and_day
);

/// Bad names and versions in the download path: cargo's error format, never a panic or a 500.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_download_paths_get_cargo_errors() {
    let depot = TestDepot::start_on(Setup::Embedded, &[]).await;
    let long = "a".repeat(5000);
    let paths = [
        "/api/v1/crates/1bad/1.0.0/download".to_owned(),
        "/api/v1/crates/ok/not-a-version/download".to_owned(),
        "/api/v1/crates/ok/1.0/download".to_owned(),
        "/api/v1/crates/ok/01.0.0/download".to_owned(),
        "/api/v1/crates/%ff%fe/1.0.0/download".to_owned(),
        "/api/v1/crates/ok/%00/download".to_owned(),
        "/api/v1/crates/..%2f..%2fetc/1.0.0/download".to_owned(),
        "/api/v1/crates/ok/1.0.0%2f..%2f..%2fx/download".to_owned(),
        format!("/api/v1/crates/{long}/1.0.0/download"),
        format!("/api/v1/crates/ok/1.0.0-{long}/download"),
        "/api/v1/crates/nothere/1.0.0/download".to_owned(),
        "/api/v1/crates/ok/1.0.0/download/extra".to_owned(),
    ];
    for path in &paths {
        for head in [false, true] {
            let url = format!("{}{path}", depot.url);
            let request = if head {
                depot.http.head(&url)
            } else {
                depot.http.get(&url)
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert!(
                (400..500).contains(&status),
                "{path} (HEAD {head}): {status}"
            );
            let body = response.bytes().await.unwrap();
            if head {
                assert!(body.is_empty());
                continue;
            }
            let json: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body:?}"));
            assert!(!details(&json).is_empty(), "{path}: {json}");
        }
    }
    assert_eq!(
        depot
            .http
            .get(format!("{}/health", depot.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Reads one response (`Content-Length` bodies only) from a kept-alive connection:
/// (status, headers, body).
async fn read_response(
    stream: &mut BufReader<tokio::net::TcpStream>,
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut line = String::new();
    assert!(
        stream.read_line(&mut line).await.unwrap() > 0,
        "connection closed"
    );
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let len: usize = headers
        .get("content-length")
        .unwrap_or_else(|| panic!("no content-length: {headers:?}"))
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    (status, headers, body)
}

/// Sequential small requests of every kind on one kept-alive connection each (the api's and
/// the metrics listener's): every response complete with its exact length, and the connection
/// kept open. (That the accepted sockets have TCP_NODELAY is asserted by the accept path's own
/// test; timings are measured by `loadtest`'s `keepalive`, not here.)
#[tokio::test(flavor = "multi_thread")]
async fn sequential_requests_share_one_kept_alive_connection() {
    let depot = TestDepot::start_on(Setup::Embedded, &[]).await;
    let token = depot.token("alice").await;
    let krate = crate_of_size("kept", "1.0.0", 2000);
    let (status, json) = depot
        .publish_raw(&token, publish_body(&metadata("kept", "1.0.0"), &krate))
        .await;
    assert_eq!(status, 200, "{json}");
    let metrics = depot.metrics_url();
    let metrics_addr = metrics
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let api_addr = depot.url.trim_start_matches("http://").to_owned();
    let kinds = [
        (api_addr.as_str(), "/index/ke/pt/kept".to_owned()),
        (api_addr.as_str(), "/index/config.json".to_owned()),
        (
            api_addr.as_str(),
            "/api/v1/crates/kept/1.0.0/download".to_owned(),
        ),
        (api_addr.as_str(), "/api/v1/crates?q=kept".to_owned()),
        (
            api_addr.as_str(),
            "/api/v1/crates/nothere/1.0.0/download".to_owned(),
        ),
        (metrics_addr.as_str(), "/metrics".to_owned()),
    ];
    for (address, path) in &kinds {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        let mut stream = BufReader::new(stream);
        for i in 0..25 {
            let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
            stream
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .unwrap();
            let (status, headers, body) = read_response(&mut stream).await;
            assert_ne!(
                headers.get("connection").map(String::as_str),
                Some("close"),
                "{path}: request {i} closed the connection"
            );
            assert_eq!(stream.get_ref().local_addr().unwrap(), local);
            if path.contains("nothere") {
                assert_eq!(status, 404, "{path}");
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(!details(&json).is_empty());
            } else {
                assert_eq!(status, 200, "{path}: request {i}");
                assert!(!body.is_empty(), "{path}");
            }
            if path.ends_with("/download") && status == 200 {
                assert!(body == krate, "{path}: other bytes");
            }
        }
    }
}
