//! The event log is the only truth: replay rebuilds byte-identical read models, verify proves
//! them consistent with the stored crates, a restarted or killed registry loses nothing.

use std::sync::Arc;

use serde_json::Value;

use crate::support::{Setup, TestDepot, crate_bytes, metadata, publish_body};

/// Fetches every index file over HTTP: (name, status, etag, body).
async fn fetch_all(depot: &TestDepot, names: &[&str]) -> Vec<(String, u16, String, String)> {
    let mut files = Vec::new();
    for name in names {
        let res = depot
            .http
            .get(format!(
                "{}/index/{}",
                depot.url,
                depot_index::index_path(name)
            ))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let etag = res
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        files.push(((*name).to_owned(), status, etag, res.text().await.unwrap()));
    }
    files
}

async fn call(
    depot: &TestDepot,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> u16 {
    let mut req = depot
        .http
        .request(method, format!("{}{path}", depot.url))
        .header("Authorization", token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap().status().as_u16()
}

/// A varied history: several crates and versions, yanks, unyanks, owner changes and a rejected
/// upload.
async fn varied_history(depot: &TestDepot) -> Vec<&'static str> {
    use reqwest::Method;
    let alice = depot.token("alice").await;
    let _bob = depot.token("bob").await;
    let publish =
        |name: &str, vers: &str| publish_body(&metadata(name, vers), &crate_bytes(name, vers, "v"));
    for (name, vers) in [
        ("alpha", "0.1.0"),
        ("alpha", "0.2.0"),
        ("Beta_Crate", "1.0.0"),
        ("alpha", "1.0.0-rc.1"),
        ("gamma", "3.1.4+build.9"),
        ("Beta_Crate", "1.1.0"),
    ] {
        let (status, json) = depot.publish_raw(&alice, publish(name, vers)).await;
        assert_eq!(status, 200, "{name} {vers}: {json}");
    }
    // A rejected upload (the manifest names another crate).
    let bad = crate::support::crate_with_manifest(
        "alpha",
        "0.3.0",
        &crate::support::manifest("other", "0.3.0", ""),
        "",
    );
    let (status, _) = depot
        .publish_raw(&alice, publish_body(&metadata("alpha", "0.3.0"), &bad))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        call(
            depot,
            Method::DELETE,
            "/api/v1/crates/alpha/0.1.0/yank",
            &alice,
            None
        )
        .await,
        200
    );
    assert_eq!(
        call(
            depot,
            Method::DELETE,
            "/api/v1/crates/gamma/3.1.4+build.9/yank",
            &alice,
            None
        )
        .await,
        200
    );
    assert_eq!(
        call(
            depot,
            Method::PUT,
            "/api/v1/crates/gamma/3.1.4+build.9/unyank",
            &alice,
            None
        )
        .await,
        200
    );
    let users = serde_json::json!({"users": ["bob"]});
    assert_eq!(
        call(
            depot,
            Method::PUT,
            "/api/v1/crates/alpha/owners",
            &alice,
            Some(users.clone())
        )
        .await,
        200
    );
    assert_eq!(
        call(
            depot,
            Method::DELETE,
            "/api/v1/crates/alpha/owners",
            &alice,
            Some(users)
        )
        .await,
        200
    );
    vec!["alpha", "Beta_Crate", "gamma", "missing"]
}

async fn replay_is_byte_identical_and_verified(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let names = varied_history(&depot).await;
    let before = fetch_all(&depot, &names).await;
    assert_eq!(
        before.iter().filter(|f| f.1 == 200).count(),
        3,
        "{before:?}"
    );
    let head = depot.log_head().await;

    // Replay while the registry keeps running, then fetch again.
    let (ok, stdout, stderr) = depot.depot(&["replay"]);
    assert!(ok, "replay failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("replayed {head} events into generation 2")),
        "{stdout}"
    );
    assert!(stdout.contains("generation 2 is live (was 1)"), "{stdout}");
    let after = fetch_all(&depot, &names).await;
    assert_eq!(after, before, "index files or etags changed by the replay");

    // The running projector keeps working on the new generation.
    let alice = depot.token("alice").await;
    let (status, json) = depot
        .publish_raw(
            &alice,
            publish_body(
                &metadata("delta", "1.0.0"),
                &crate_bytes("delta", "1.0.0", ""),
            ),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(fetch_all(&depot, &["delta"]).await[0].1, 200);

    let (ok, stdout, stderr) = depot.depot(&["verify"]);
    assert!(ok, "verify failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("index files: identical"), "{stdout}");
    assert!(stdout.contains("verify: OK"), "{stdout}");
    assert!(
        stdout.contains("index lines match their stored .crate"),
        "{stdout}"
    );
    // The rejected upload's blob is referenced by its event: not an orphan.
    assert!(stdout.contains("orphan blobs: none"), "{stdout}");

    // The index as of an earlier point in the log: right after alpha 0.1.0 was accepted.
    let history = depot.events_after(0).await;
    let first_accept = history
        .lines()
        .find(|line| line.ends_with("crate.alpha version_accepted"))
        .and_then(|line| line.split(' ').next())
        .expect("alpha was accepted")
        .to_owned();
    let out_dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = depot.depot(&[
        "replay",
        "--until",
        &first_accept,
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "replay --until failed:\n{stdout}\n{stderr}");
    let alpha_then = std::fs::read_to_string(out_dir.path().join("al/ph/alpha")).unwrap();
    assert_eq!(alpha_then.lines().count(), 1, "{alpha_then}");
    assert!(alpha_then.contains(r#""vers":"0.1.0""#) && alpha_then.contains(r#""yanked":false"#));
    assert!(!out_dir.path().join("ga/mm/gamma").exists());

    // Damage one blob: verify must fail and say which. A file can be corrupted in place; an
    // object is removed (object storage has no partial writes). An orphan is listed either way.
    let blobs = depot.blobs().await;
    let (_, index) = depot.index_file("alpha").await;
    let line: serde_json::Value = serde_json::from_str(index.lines().next().unwrap()).unwrap();
    let cksum = line["cksum"].as_str().unwrap().to_owned();
    let damaged = depot_store::BlobStore::key_for(&cksum);
    match blobs.local_path(&damaged) {
        Some(file) => {
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[0] ^= 0xff;
            std::fs::write(&file, bytes).unwrap();
        }
        None => blobs.remove(&damaged).await.unwrap(),
    }
    let orphan = blobs.put(b"orphan").await.unwrap();
    let (ok, stdout, _) = depot.depot(&["verify"]);
    assert!(!ok, "verify must fail on a damaged blob:\n{stdout}");
    assert!(stdout.contains("verify: FAILED"), "{stdout}");
    assert!(stdout.contains(&cksum), "{stdout}");
    assert!(
        stdout.contains(&orphan.key),
        "the orphan is listed: {stdout}"
    );
}

/// `depot gc` on every backend: an unreferenced blob is kept within the grace period and
/// deleted after it; every blob an event refers to is kept.
async fn gc_keeps_referenced_blobs_and_honours_grace(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let (status, json) = depot
        .publish_raw(
            &alice,
            publish_body(
                &metadata("kept", "1.0.0"),
                &crate_bytes("kept", "1.0.0", ""),
            ),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let blobs = depot.blobs().await;
    let referenced: Vec<String> = blobs
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(
        referenced.len(),
        2,
        "the .crate and its metadata: {referenced:?}"
    );
    let orphan = blobs.put(b"an orphan").await.unwrap();

    let (ok, stdout, stderr) = depot.depot(&["gc"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        blobs.open_blob(&orphan.key).await.unwrap().is_some(),
        "within the grace period"
    );
    let (ok, stdout, stderr) = depot.depot(&["gc", "--grace", "0"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        blobs.open_blob(&orphan.key).await.unwrap().is_none(),
        "{stdout}"
    );
    let left: Vec<String> = blobs
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(left, referenced);
    let (status, downloaded) = depot.download("kept", "1.0.0").await;
    assert_eq!(status, 200);
    assert_eq!(downloaded, crate_bytes("kept", "1.0.0", ""));
    let (ok, stdout, _) = depot.depot(&["verify"]);
    assert!(ok, "{stdout}");
}

async fn restart_serves_the_same_index_and_accepts_publishes(setup: Setup) {
    let mut depot = TestDepot::start_on(setup, &[]).await;
    let names = varied_history(&depot).await;
    let before = fetch_all(&depot, &names).await;
    depot.restart().await;
    assert_eq!(fetch_all(&depot, &names).await, before);
    let alice = depot.token("alice").await;
    let (status, json) = depot
        .publish_raw(
            &alice,
            publish_body(
                &metadata("alpha", "2.0.0"),
                &crate_bytes("alpha", "2.0.0", ""),
            ),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let (_, body) = depot.index_file("alpha").await;
    assert!(body.contains(r#""vers":"2.0.0""#), "{body}");
}

async fn killed_during_a_burst_loses_no_acknowledged_publish(setup: Setup) {
    let mut depot = TestDepot::start_on(setup, &[]).await;
    let token = Arc::new(depot.token("alice").await);
    let url = depot.url.clone();
    let http = depot.http.clone();
    // Publish continuously from 4 tasks; kill the server in the middle.
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (token, url, http) = (Arc::clone(&token), url.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..200 {
                let vers = format!("{worker}.{i}.0");
                let body =
                    publish_body(&metadata("burst", &vers), &crate_bytes("burst", &vers, ""));
                let res = http
                    .put(format!("{url}/api/v1/crates/new"))
                    .header("Authorization", token.as_str())
                    .body(body)
                    .send()
                    .await;
                match res {
                    Ok(res) if res.status() == 200 => {
                        let json: Value = res.json().await.unwrap_or_default();
                        // A 200 "still being checked" is acknowledged too.
                        acknowledged.push((vers, json));
                    }
                    Ok(_) => {}
                    Err(_) => break, // the server is gone
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    depot.kill();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 4,
        "the burst did not get going: {acknowledged:?}"
    );

    depot.restart().await;
    // Every acknowledged publish is (or becomes) visible: uploads recorded before the crash are
    // still checked after the restart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let missing = loop {
        let (_, body) = depot.index_file("burst").await;
        let missing: Vec<&String> = acknowledged
            .iter()
            .map(|(vers, _)| vers)
            .filter(|vers| !body.contains(&format!(r#""vers":"{vers}""#)))
            .collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "acknowledged but not in the index: {missing:?}"
    );
    // And nothing half-exists: every line has its blob, the read models equal a replay.
    let (ok, stdout, stderr) = depot.depot(&["verify"]);
    assert!(ok, "verify after the crash:\n{stdout}\n{stderr}");
    // The registry accepts publishes again, including versions that were in flight.
    let token = depot.token("alice").await;
    let (status, json) = depot
        .publish_raw(
            &token,
            publish_body(
                &metadata("burst", "9.0.0"),
                &crate_bytes("burst", "9.0.0", ""),
            ),
        )
        .await;
    assert_eq!(status, 200, "{json}");
}

/// Writes `content` as a stored blob last modified at `modified`; returns its key.
fn put_blob(root: &std::path::Path, content: &[u8], modified: std::time::SystemTime) -> String {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(content));
    let dir = root.join("sha256").join(&hex[..2]).join(&hex[2..4]);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&hex);
    std::fs::write(&path, content).unwrap();
    set_modified(&path, modified);
    format!("sha256/{hex}")
}

fn set_modified(path: &std::path::Path, modified: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}

/// The keys of every stored blob.
fn stored_blobs(root: &std::path::Path) -> Vec<String> {
    let mut keys = Vec::new();
    for first in std::fs::read_dir(root.join("sha256")).unwrap() {
        for second in std::fs::read_dir(first.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(second.unwrap().path()).unwrap() {
                let name = file.unwrap().file_name();
                keys.push(format!("sha256/{}", name.to_str().unwrap()));
            }
        }
    }
    keys
}

fn blob_exists(root: &std::path::Path, key: &str) -> bool {
    let hex = key.strip_prefix("sha256/").unwrap();
    root.join("sha256")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
        .exists()
}

/// `depot gc` deletes only blobs that no event refers to and that are older than the grace
/// period: not the blob of an accepted version, not the blob of an upload the projector has
/// not folded yet, not a recently stored one; and it puts back what an interrupted run left
/// moved aside.
async fn gc_never_deletes_a_referenced_or_recent_blob(setup: Setup) {
    use std::time::{Duration, SystemTime};
    let mut depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    let (status, json) = depot
        .publish_raw(
            &token,
            publish_body(
                &metadata("kept", "1.0.0"),
                &crate_bytes("kept", "1.0.0", ""),
            ),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let root = depot.data_dir().join("blobs");
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    // The accepted version's blobs (the .crate and the publish metadata), made old: kept
    // because its events refer to them.
    let accepted = stored_blobs(&root);
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    for key in &accepted {
        let hex = key.trim_start_matches("sha256/");
        set_modified(
            &root
                .join("sha256")
                .join(&hex[..2])
                .join(&hex[2..4])
                .join(hex),
            old,
        );
    }
    let old_orphan = put_blob(&root, b"an old orphan", old);
    let new_orphan = put_blob(&root, b"a recent orphan", SystemTime::now());
    // An upload appended while the projector is not running: only the log refers to its blob.
    depot.kill();
    let pending = put_blob(&root, b"an upload not projected yet", old);
    depot
        .append_crate_event(
            "pending",
            depot_events::Event::VersionUploaded(depot_events::VersionUploaded {
                name: "pending".into(),
                vers: "1.0.0".into(),
                cksum: pending.trim_start_matches("sha256/").into(),
                size: 27,
                blob: pending.clone(),
                metadata: serde_json::json!({}),
                metadata_blob: None,
                uploader: "alice".into(),
                token_id: None,
            }),
        )
        .await;
    // What an interrupted gc left moved aside is put back first (and kept: it is recent).
    let interrupted = put_blob(
        &root,
        b"moved aside by an interrupted gc",
        SystemTime::now(),
    );
    let interrupted_hex = interrupted.trim_start_matches("sha256/");
    std::fs::create_dir_all(root.join("gc")).unwrap();
    std::fs::rename(
        root.join("sha256")
            .join(&interrupted_hex[..2])
            .join(&interrupted_hex[2..4])
            .join(interrupted_hex),
        root.join("gc").join(interrupted_hex),
    )
    .unwrap();

    let (ok, stdout, stderr) = depot.depot(&["gc"]);
    assert!(ok, "gc failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("put back 1 blobs"), "{stdout}");
    assert!(stdout.contains("removed 1 orphan blobs"), "{stdout}");
    for key in &accepted {
        assert!(blob_exists(&root, key), "the accepted version's blob {key}");
    }
    assert!(blob_exists(&root, &pending), "the pending upload's blob");
    assert!(blob_exists(&root, &new_orphan), "the recent orphan");
    assert!(blob_exists(&root, &interrupted), "the blob put back");
    assert!(!blob_exists(&root, &old_orphan), "the old orphan");

    // With no grace (flag or environment), the recent orphans go too; referenced blobs stay.
    let (ok, stdout, stderr) = depot.depot(&["gc", "--grace", "0"]);
    assert!(ok, "gc --grace 0 failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("removed 2 orphan blobs"), "{stdout}");
    assert!(accepted.iter().all(|key| blob_exists(&root, key)));
    assert!(blob_exists(&root, &pending));
    assert!(!blob_exists(&root, &new_orphan) && !blob_exists(&root, &interrupted));

    // The registry still serves and verifies after a restart (the pending upload is checked).
    depot.restart().await;
    let (status, body) = depot.index_file("kept").await;
    assert_eq!(status, 200, "{body}");
}

on_both_setups!(
    gc_never_deletes_a_referenced_or_recent_blob,
    restart_serves_the_same_index_and_accepts_publishes,
    killed_during_a_burst_loses_no_acknowledged_publish,
);

/// The replay, `verify` and `gc` on every backend, object storage included.
mod all {
    use super::*;

    on_all_setups!(
        replay_is_byte_identical_and_verified,
        gc_keeps_referenced_blobs_and_honours_grace
    );
}
