//! Junk traffic: floods of requests for index files that do not exist keep memory bounded, and
//! bursts of commands beyond a token's rate limit are refused in cargo's format.

use std::time::Duration;

use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};

use crate::support::{Setup, TestDepot, crate_bytes, details, metadata, publish_body};

/// Junk requests sent after the warm-up.
const JUNK_REQUESTS: usize = 100_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 32;
/// The most the server's resident memory may grow over the junk requests.
const MAX_GROWTH_KIB: u64 = 20 * 1024;

/// The server's resident set size, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// The index path of junk request `i`: mostly valid-looking names of crates that do not exist,
/// the rest names cargo would never ask for (bad characters, too long, wrong directory).
fn junk_path(i: usize) -> String {
    let hash = hex::encode(Sha256::digest(i.to_le_bytes()));
    let len = 1 + i % 40;
    let name = format!("c{}", &hash[..len]);
    match i % 5 {
        0 => format!("zz/{name}"),
        1 => format!("{}/{}", depot_index::index_path(&name), "x".repeat(i % 7)),
        2 => format!("{}{}", "n".repeat(60), hash),
        _ => depot_index::index_path(&name),
    }
}

/// Sends the requests `range` with `CONCURRENCY` in flight on keep-alive connections; returns
/// how many were answered 404 in cargo's format.
async fn flood(depot: &TestDepot, index: &str, range: std::ops::Range<usize>) -> usize {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    futures::stream::iter(range)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}{index}{}", depot.url, junk_path(i));
            async move {
                let res = client.get(url).send().await.expect("the server answers");
                let status = res.status().as_u16();
                let body = res.bytes().await.expect("a body");
                usize::from(status == 404 && body.starts_with(b"{\"errors\""))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |sum, ok| async move { sum + ok })
        .await
}

async fn junk_index_requests_keep_memory_bounded(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    let body = publish_body(
        &metadata("real", "1.0.0"),
        &crate_bytes("real", "1.0.0", ""),
    );
    let (status, json) = depot.publish_raw(&token, body).await;
    assert_eq!(status, 200, "{json}");

    // Warm up connections, allocator arenas and the database pool first.
    let warm = 5_000;
    assert_eq!(flood(&depot, "/index/", 0..warm).await, warm);
    let before = rss_kib(depot.pid());
    let answered = flood(&depot, "/index/", warm..warm + JUNK_REQUESTS).await;
    let after = rss_kib(depot.pid());
    assert_eq!(
        answered, JUNK_REQUESTS,
        "every junk request gets a cargo 404"
    );
    let growth = after.saturating_sub(before);
    println!("VmRSS {before} KiB before, {after} KiB after {JUNK_REQUESTS} junk requests");
    assert!(
        growth < MAX_GROWTH_KIB,
        "RSS grew by {growth} KiB ({before} → {after} KiB) over {JUNK_REQUESTS} junk requests"
    );
    let (status, index) = depot.index_file("real").await;
    assert_eq!(status, 200, "{index}");
}

/// The same through the crates.io cache, whose upstream knows none of the names: every
/// answer is a cargo 404, upstream is asked at most once per name, and the remembered misses
/// stay within the cache's bounds.
async fn junk_upstream_requests_keep_memory_bounded(setup: Setup) {
    let upstream = depot_testkit::StaticRegistry::start().await;
    let index = upstream.index_url();
    let depot = TestDepot::start_on(setup, &[("DEPOT_UPSTREAM_INDEX", index.as_str())]).await;
    let (warm, junk) = (3_000, 20_000);
    assert_eq!(flood(&depot, "/crates-io/index/", 0..warm).await, warm);
    let before = rss_kib(depot.pid());
    let answered = flood(&depot, "/crates-io/index/", warm..warm + junk).await;
    let after = rss_kib(depot.pid());
    assert_eq!(answered, junk, "every junk request gets a cargo 404");
    let growth = after.saturating_sub(before);
    println!("VmRSS {before} KiB before, {after} KiB after {junk} junk requests upstream");
    assert!(
        growth < MAX_GROWTH_KIB,
        "RSS grew by {growth} KiB ({before} → {after} KiB) over {junk} junk requests"
    );
    assert!(
        upstream.requests().index <= warm + junk,
        "no request was amplified"
    );
}

async fn a_burst_beyond_the_rate_limit_gets_429(setup: Setup) {
    let depot = TestDepot::start_on(
        setup,
        &[
            ("DEPOT_PUBLISH_RATE_PER_MIN", "1"),
            ("DEPOT_PUBLISH_BURST", "2"),
            ("DEPOT_COMMAND_RATE_PER_MIN", "1"),
            ("DEPOT_COMMAND_BURST", "2"),
        ],
    )
    .await;
    let token = depot.token("alice").await;
    let publish =
        |vers: &str| publish_body(&metadata("bursty", vers), &crate_bytes("bursty", vers, ""));
    for vers in ["1.0.0", "1.0.1"] {
        let (status, json) = depot.publish_raw(&token, publish(vers)).await;
        assert_eq!(status, 200, "{json}");
    }
    let head = depot.log_head().await;
    let res = depot
        .http
        .put(format!("{}/api/v1/crates/new", depot.url))
        .header("Authorization", &token)
        .body(publish("1.0.2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let json: serde_json::Value = res.json().await.unwrap();
    assert!(details(&json).contains("too many publishes"), "{json}");
    assert_eq!(
        depot.log_head().await,
        head,
        "a refused publish appends nothing"
    );

    // Another token has its own budget.
    let other = depot.token("bob").await;
    let body = publish_body(
        &metadata("other", "1.0.0"),
        &crate_bytes("other", "1.0.0", ""),
    );
    let (status, json) = depot.publish_raw(&other, body).await;
    assert_eq!(status, 200, "{json}");

    // Yank, unyank and owner changes share one budget.
    let yank = format!("{}/api/v1/crates/bursty/1.0.0/yank", depot.url);
    let unyank = format!("{}/api/v1/crates/bursty/1.0.0/unyank", depot.url);
    let res = depot
        .http
        .delete(&yank)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let res = depot
        .http
        .put(&unyank)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let res = depot
        .http
        .delete(&yank)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let json: serde_json::Value = res.json().await.unwrap();
    assert!(details(&json).contains("too many yanks"), "{json}");
}

async fn long_search_queries_and_owner_lists_are_refused(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    let res = depot
        .http
        .get(format!("{}/api/v1/crates", depot.url))
        .query(&[("q", "q".repeat(257))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let json: serde_json::Value = res.json().await.unwrap();
    assert!(details(&json).contains("search query"), "{json}");
    let res = depot
        .http
        .get(format!("{}/api/v1/crates", depot.url))
        .query(&[("q", "q".repeat(256))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    let body = publish_body(
        &metadata("owned", "1.0.0"),
        &crate_bytes("owned", "1.0.0", ""),
    );
    let (status, json) = depot.publish_raw(&token, body).await;
    assert_eq!(status, 200, "{json}");
    let head = depot.log_head().await;
    let many: Vec<String> = (0..33).map(|i| format!("user{i}")).collect();
    let res = depot
        .http
        .put(format!("{}/api/v1/crates/owned/owners", depot.url))
        .header("Authorization", &token)
        .json(&serde_json::json!({ "users": [many.join(",")] }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let json: serde_json::Value = res.json().await.unwrap();
    assert!(details(&json).contains("at most 32 users"), "{json}");
    assert_eq!(depot.log_head().await, head);
}

on_both_setups!(
    junk_index_requests_keep_memory_bounded,
    junk_upstream_requests_keep_memory_bounded,
    a_burst_beyond_the_rate_limit_gets_429,
    long_search_queries_and_owner_lists_are_refused,
);
