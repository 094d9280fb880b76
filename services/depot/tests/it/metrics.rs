//! `/metrics` after a publish / fetch / download / yank cycle: every declared series exists,
//! with values that match what happened.

use std::collections::BTreeMap;

use crate::support::{Setup, TestDepot, crate_bytes, metadata, publish_body};

/// Parses the text format into `name{labels}` → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("series {series} is missing; have:\n{metrics:#?}"))
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
    parse(&text)
}

async fn metrics_tell_the_story(setup: Setup) {
    // The crates.io cache's upstream: one crate, whose download is missing.
    let upstream = depot_testkit::StaticRegistry::start().await;
    upstream.put_index_file(
        "up/st/upstream-only",
        format!(
            "{{\"name\":\"upstream-only\",\"vers\":\"1.0.0\",\"deps\":[],\"cksum\":\"{}\",\
             \"features\":{{}},\"yanked\":false}}\n",
            "ab".repeat(32)
        )
        .as_bytes(),
    );
    let upstream_index = upstream.index_url();
    let depot = TestDepot::start_on(
        setup,
        &[
            ("DEPOT_UPSTREAM_INDEX", upstream_index.as_str()),
            ("DEPOT_WEBHOOK_RETRY_MS", "100"),
        ],
    )
    .await;
    // A webhook whose receiver is down: a port that was just free.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, _, stderr) = depot.depot(&["webhook", "add", "--url", &format!("http://{dead}/hook")]);
    assert!(ok, "webhook add failed: {stderr}");
    let token = depot.token("alice").await;
    let krate = crate_bytes("metered", "1.0.0", "");
    let (status, json) = depot
        .publish_raw(&token, publish_body(&metadata("metered", "1.0.0"), &krate))
        .await;
    assert_eq!(status, 200, "{json}");
    let (status, _) = depot
        .publish_raw(&token, publish_body(&metadata("metered", "1.0.0"), &krate))
        .await;
    assert_eq!(status, 200, "identical bytes again");
    let (status, _) = depot
        .publish_raw(&token, publish_body(&metadata("1bad", "1.0.0"), &krate))
        .await;
    assert_eq!(status, 400);
    for _ in 0..3 {
        assert_eq!(depot.index_file("metered").await.0, 200);
    }
    assert_eq!(depot.index_file("nothere").await.0, 404);
    let download = depot
        .http
        .get(format!(
            "{}/api/v1/crates/metered/1.0.0/download",
            depot.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(download.bytes().await.unwrap().len(), krate.len());
    let yank = depot
        .http
        .delete(format!("{}/api/v1/crates/metered/1.0.0/yank", depot.url))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(yank.status(), 200);
    let docs = depot
        .http
        .put(format!("{}/api/v1/crates/metered/1.0.0/docs", depot.url))
        .header("Authorization", &token)
        .body("not a gzip archive")
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 400, "a refused docs archive");
    for _ in 0..2 {
        let (status, _) = depot.get("/crates-io/index/up/st/upstream-only").await;
        assert_eq!(status, 200);
    }
    let (status, _) = depot
        .get("/crates-io/dl/upstream-only/1.0.0/download")
        .await;
    assert_eq!(status, 404, "upstream has no such download");
    // The lag samplers run every 5 s: wait (boundedly) for samples taken after the last
    // event was handled — the sampled head is the log's, and nothing is pending (a sample
    // from before the last events may also read 0 pending).
    let head = depot.log_head().await as f64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let m = loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let m = scrape(&depot).await;
        let settled = m.get("depot_event_log_head_sequence") == Some(&head)
            && m.get("depot_projector_applied_sequence") == Some(&head)
            && ["projector", "extractor"].iter().all(|consumer| {
                m.get(&format!(
                    r#"depot_consumer_pending_events{{consumer="{consumer}"}}"#
                )) == Some(&0.0)
            });
        if settled || std::time::Instant::now() > deadline {
            break m;
        }
    };
    let publish = r#"route="/api/v1/crates/new""#;
    let index = r#"route="/index/{*path}""#;
    assert_eq!(
        value(
            &m,
            &format!(r#"depot_http_requests_total{{method="PUT",{publish},status="200"}}"#)
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"depot_http_requests_total{{method="PUT",{publish},status="400"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"depot_http_requests_total{{method="GET",{index},status="200"}}"#)
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            &format!(r#"depot_http_requests_total{{method="GET",{index},status="404"}}"#)
        ),
        1.0
    );
    assert!(
        value(
            &m,
            &format!(r#"depot_http_request_duration_seconds_count{{method="GET",{index}}}"#)
        ) >= 4.0
    );
    assert_eq!(value(&m, r#"depot_publish_total{outcome="accepted"}"#), 1.0);
    assert_eq!(
        value(&m, r#"depot_publish_total{outcome="duplicate"}"#),
        1.0
    );
    assert_eq!(value(&m, r#"depot_publish_total{outcome="invalid"}"#), 1.0);
    assert_eq!(value(&m, "depot_publish_visible_seconds_count"), 1.0);
    assert!(value(&m, "depot_publish_visible_seconds_sum") > 0.0);
    assert_eq!(value(&m, "depot_upload_bytes_count"), 2.0);
    assert_eq!(
        value(&m, "depot_upload_bytes_sum"),
        2.0 * krate.len() as f64
    );
    assert_eq!(
        value(
            &m,
            r#"depot_events_appended_total{type="version_uploaded"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"depot_events_appended_total{type="version_accepted"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&m, r#"depot_events_appended_total{type="version_yanked"}"#),
        1.0
    );
    assert!(value(&m, "depot_event_append_duration_seconds_count") >= 3.0);
    assert_eq!(value(&m, "depot_event_append_conflicts_total"), 0.0);
    assert_eq!(value(&m, "depot_extraction_duration_seconds_count"), 1.0);
    assert_eq!(
        value(
            &m,
            r#"depot_projector_events_applied_total{type="version_accepted"}"#
        ),
        1.0
    );
    assert!(value(&m, "depot_projector_batch_duration_seconds_count") >= 1.0);
    assert_eq!(
        depot.log_head().await as f64,
        head,
        "events appended while settling"
    );
    assert_eq!(value(&m, "depot_event_log_head_sequence"), head);
    assert_eq!(value(&m, "depot_projector_applied_sequence"), head);
    assert_eq!(
        value(&m, r#"depot_consumer_pending_events{consumer="projector"}"#),
        0.0
    );
    assert_eq!(
        value(&m, r#"depot_consumer_pending_events{consumer="extractor"}"#),
        0.0
    );
    assert!(value(&m, r#"depot_index_cache_requests_total{result="hit"}"#) >= 1.0);
    assert!(value(&m, r#"depot_index_cache_requests_total{result="miss"}"#) >= 1.0);
    assert_eq!(value(&m, "depot_downloads_total"), 1.0);
    assert_eq!(value(&m, "depot_download_bytes_total"), krate.len() as f64);
    assert!(m.keys().any(|k| k.starts_with("depot_build_info{")));
    // An extractor rejection is counted by reason.
    let bad = crate::support::crate_with_manifest(
        "metered",
        "2.0.0",
        &crate::support::manifest("other", "2.0.0", ""),
        "",
    );
    let (status, _) = depot
        .publish_raw(&token, publish_body(&metadata("metered", "2.0.0"), &bad))
        .await;
    assert_eq!(status, 400);
    // A request with a revoked-looking unknown token, and an ID token no crate trusts.
    let refused = depot
        .http
        .get(format!("{}/api/v1/me", depot.url))
        .header("Authorization", "depot_unknown")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let exchange = depot
        .http
        .post(format!("{}/api/v1/trusted_publishing/tokens", depot.url))
        .json(&serde_json::json!({"jwt": "not.a.token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(exchange.status(), 401);
    let m = scrape(&depot).await;
    // (Waiting for the test's tokens to work counted some already.)
    assert!(value(&m, r#"depot_auth_refusals_total{reason="unknown"}"#) >= 1.0);
    assert_eq!(
        value(
            &m,
            r#"depot_trusted_publishing_exchanges_total{outcome="invalid_token"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, r#"depot_publish_total{outcome="rejected"}"#), 1.0);
    assert_eq!(
        value(
            &m,
            r#"depot_extraction_failures_total{reason="manifest_mismatch"}"#
        ),
        1.0
    );
    let cache = |result: &str| {
        value(
            &m,
            &format!(r#"depot_upstream_requests_total{{kind="index",result="{result}"}}"#),
        )
    };
    assert_eq!((cache("fetched"), cache("hit")), (1.0, 2.0));
    assert_eq!(
        value(
            &m,
            r#"depot_upstream_errors_total{kind="crate",reason="status"}"#
        ),
        1.0
    );
    assert!(value(&m, r#"depot_upstream_bytes_served_total{kind="index"}"#) > 100.0);
    // Two index requests went upstream: the file fetched, and the dependency-confusion
    // guard's question about `metered` before its first publish.
    assert_eq!(
        value(
            &m,
            r#"depot_upstream_fetch_duration_seconds_count{kind="index"}"#
        ),
        2.0
    );
    assert_eq!(cache("not_found"), 1.0);
    assert_eq!(
        value(&m, r#"depot_docs_uploads_total{outcome="invalid"}"#),
        1.0
    );
    // Every attempt at the dead receiver failed and is retried (none given up yet).
    let attempts = value(&m, "depot_webhook_attempts_total");
    assert!(attempts >= 1.0, "{attempts} webhook attempts");
    assert_eq!(
        value(&m, r#"depot_webhook_deliveries_total{result="retried"}"#),
        attempts
    );
    // Every declared metric is exported (labelled ones once they have a value).
    for spec in depot_telemetry::METRICS {
        assert!(
            m.keys().any(|k| k.starts_with(spec.name)),
            "{} is not exported",
            spec.name
        );
    }
}

on_both_setups!(metrics_tell_the_story);
