//! Slow clients: connections that trickle their headers, and uploads that stall, neither hold
//! Depot hostage nor leave anything behind.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Setup, TestDepot, crate_bytes, details, metadata, publish_body};

/// How many connections trickle their headers.
const SLOW_CONNECTIONS: usize = 200;

fn address(depot: &TestDepot) -> String {
    depot.url.trim_start_matches("http://").to_owned()
}

/// `len` pseudo-random hex digits: a crate carrying them is larger than the blob store holds
/// in memory, so its upload goes to a temporary file.
fn noise(len: usize) -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_digit((state % 16) as u32, 16).expect("a hex digit")
        })
        .collect()
}

fn temp_uploads(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("blobs").join("tmp"))
        .expect("the blob store's tmp directory")
        .count()
}

/// Sends a request's headers one byte every 50 ms, for at most 8 s; returns whether the server
/// closed the connection (it must, after its header read timeout).
async fn trickle_headers(address: String) -> bool {
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        return false;
    };
    let headers = format!(
        "GET /index/config.json HTTP/1.1\r\nhost: {address}\r\nx-padding: {}\r\n\r\n",
        "a".repeat(400)
    );
    let started = Instant::now();
    for byte in headers.as_bytes() {
        if stream.write_all(&[*byte]).await.is_err() || started.elapsed() > Duration::from_secs(8) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

async fn slow_headers_do_not_stop_a_normal_client(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[("DEPOT_HEADER_READ_TIMEOUT_SECS", "2")]).await;
    let token = depot.token("alice").await;
    let slow: Vec<_> = (0..SLOW_CONNECTIONS)
        .map(|_| tokio::spawn(trickle_headers(address(&depot))))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A normal client publishes and fetches while 200 connections trickle.
    for (i, vers) in ["1.0.0", "1.0.1"].into_iter().enumerate() {
        let body = publish_body(
            &metadata("patient", vers),
            &crate_bytes("patient", vers, &i.to_string()),
        );
        let (status, json) = depot.publish_raw(&token, body).await;
        assert_eq!(status, 200, "{json}");
        let (status, index) = depot.index_file("patient").await;
        assert_eq!(status, 200);
        assert!(index.contains(&format!("\"vers\":\"{vers}\"")), "{index}");
    }

    let mut closed = 0;
    for task in slow {
        closed += usize::from(task.await.unwrap());
    }
    assert_eq!(
        closed, SLOW_CONNECTIONS,
        "every trickling connection is closed by the header read timeout"
    );
    let (status, _) = depot.index_file("patient").await;
    assert_eq!(status, 200);
}

async fn a_stalled_upload_is_cut_off_and_leaves_no_temp_file(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[("DEPOT_BODY_IDLE_TIMEOUT_SECS", "3")]).await;
    let token = depot.token("alice").await;
    let body = publish_body(
        &metadata("stalled", "1.0.0"),
        &crate_bytes("stalled", "1.0.0", &noise(200_000)),
    );
    let head = depot.log_head().await;

    let mut stream = TcpStream::connect(address(&depot)).await.unwrap();
    let request = format!(
        "PUT /api/v1/crates/new HTTP/1.1\r\nhost: {}\r\nauthorization: {token}\r\n\
         content-length: {}\r\n\r\n",
        address(&depot),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The framing, the metadata and part of the crate; then silence.
    stream.write_all(&body[..body.len() - 10]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while temp_uploads(depot.data_dir()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        temp_uploads(depot.data_dir()),
        1,
        "the upload is being written to a temporary file"
    );

    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("the server answers a stalled upload");
    read.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let json_start = response.find('{').expect("a JSON body");
    let json: serde_json::Value = serde_json::from_str(&response[json_start..]).unwrap();
    assert!(details(&json).contains("no body data arrived"), "{json}");
    assert_eq!(
        temp_uploads(depot.data_dir()),
        0,
        "no temporary file is left"
    );
    assert_eq!(depot.log_head().await, head, "nothing was appended");

    // The same version can still be published in full.
    let (status, json) = depot.publish_raw(&token, body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(temp_uploads(depot.data_dir()), 0);
}

async fn a_client_that_goes_away_mid_upload_leaves_no_temp_file(setup: Setup) {
    let depot = Arc::new(TestDepot::start_on(setup, &[]).await);
    let token = depot.token("alice").await;
    let body = publish_body(
        &metadata("abandoned", "1.0.0"),
        &crate_bytes("abandoned", "1.0.0", &noise(200_000)),
    );
    let mut stream = TcpStream::connect(address(&depot)).await.unwrap();
    let request = format!(
        "PUT /api/v1/crates/new HTTP/1.1\r\nhost: {}\r\nauthorization: {token}\r\n\
         content-length: {}\r\n\r\n",
        address(&depot),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() - 10]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while temp_uploads(depot.data_dir()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(temp_uploads(depot.data_dir()), 1);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while temp_uploads(depot.data_dir()) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        temp_uploads(depot.data_dir()),
        0,
        "the cancelled upload's temporary file is removed"
    );
}

/// A temporary file left by a killed process is swept when Depot starts again.
async fn stale_temp_files_are_swept_at_start(setup: Setup) {
    let mut depot = TestDepot::start_on(setup, &[]).await;
    let stale = depot
        .data_dir()
        .join("blobs")
        .join("tmp")
        .join("upload-left-by-a-crash");
    let file = std::fs::File::create(&stale).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(file);
    let fresh = depot
        .data_dir()
        .join("blobs")
        .join("tmp")
        .join("upload-of-another-process");
    std::fs::write(&fresh, b"in progress").unwrap();
    depot.restart().await;
    assert!(!stale.exists(), "the stale temporary file is swept");
    assert!(fresh.exists(), "a recent one may belong to a live upload");
}

on_both_setups!(
    slow_headers_do_not_stop_a_normal_client,
    a_stalled_upload_is_cut_off_and_leaves_no_temp_file,
    a_client_that_goes_away_mid_upload_leaves_no_temp_file,
    stale_temp_files_are_swept_at_start,
);
