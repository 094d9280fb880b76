//! Depot on a three-node JetStream cluster (`DEPOT_NATS_URL` listing every server,
//! `DEPOT_NATS_REPLICAS=3`): the stream and the durable consumer Depot creates are R3; the
//! stream's leader is killed (SIGKILL) while crates are being published; publishing goes on
//! after the election (a 503 during it is retried with the same bytes, a few times at most);
//! every acknowledged version ends up in the index with its checksum and downloadable with the
//! right sha256; the killed server rejoins and catches up; `depot replay` and `depot verify`
//! work against the cluster. Bounded to [`TEST_BOUND`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use depot_testkit::{PrivateNatsCluster, TestDatabase};
use sha2::{Digest as _, Sha256};

use crate::support::{Setup, TestDepot, crate_bytes, details, metadata, publish_body};

/// The crate whose versions are published.
const CRATE: &str = "replicated";
/// Versions published in all.
const PUBLISHES: usize = 30;
/// Versions acknowledged before the stream leader is killed.
const KILL_AFTER: usize = 8;
/// How long one publish is retried while it gets 503s (the stream electing a new leader takes
/// several seconds: NATS's election timeouts are 4 to 9 s).
const RETRY_WINDOW: Duration = Duration::from_secs(20);
/// Pause before retrying a publish that got a 503.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Bound on one publish request (Depot's own wait is below it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a publish waits to be visible (`DEPOT_PUBLISH_WAIT_SECS`).
const PUBLISH_WAIT_SECS: &str = "10";
/// Bound on waiting for an election, a catch-up, or the index to show every version.
const SETTLE: Duration = Duration::from_secs(30);
/// Bound on the whole test.
const TEST_BOUND: Duration = Duration::from_secs(100);

/// One acknowledged publish.
#[derive(Debug)]
struct Acknowledged {
    vers: String,
    /// The sha256 of the `.crate` sent.
    cksum: String,
    /// What the failed attempts before the acknowledgement got.
    failed: Vec<String>,
    at: Instant,
}

/// Publishes `CRATE@vers` until it gets a 200, retrying 503s with the same bytes for at most
/// [`RETRY_WINDOW`]; anything but a 200 or a 503 fails the test.
async fn publish(http: &reqwest::Client, url: &str, token: &str, vers: &str) -> Acknowledged {
    let krate = crate_bytes(CRATE, vers, "replicated");
    let cksum = hex::encode(Sha256::digest(&krate));
    let body = publish_body(&metadata(CRATE, vers), &krate);
    let mut failed = Vec::new();
    let deadline = Instant::now() + RETRY_WINDOW;
    while Instant::now() < deadline {
        let res = http
            .put(format!("{url}/api/v1/crates/new"))
            .header("Authorization", token)
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("publish {vers}: no answer ({e}); earlier: {failed:?}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        match status {
            200 => {
                return Acknowledged {
                    vers: vers.to_owned(),
                    cksum,
                    failed,
                    at: Instant::now(),
                };
            }
            503 => {
                let json: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("a 503 in cargo's format, got: {text}"));
                failed.push(format!("503: {}", details(&json)));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            _ => panic!("publish {vers}: {status} {text}; earlier: {failed:?}"),
        }
    }
    panic!("publish {vers} still failing after {RETRY_WINDOW:?}: {failed:?}")
}

/// The servers of a stream's or consumer's RAFT group in the `/jsz` detail reported by
/// `server`: the leader, the replicas listed (the reporting server may leave itself out) and
/// `server` itself.
fn peers(detail: &serde_json::Value, server: &str) -> BTreeSet<String> {
    let cluster = &detail["cluster"];
    cluster["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|peer| peer["name"].as_str())
        .chain(cluster["leader"].as_str())
        .chain([server])
        .map(str::to_owned)
        .collect()
}

/// Checks on every server that the stream and its durable consumers are replicated three
/// times; returns the durable consumers' names. Waits (bounded) for Depot's work queue, which
/// its extractor creates at startup.
async fn check_replication(cluster: &PrivateNatsCluster, stream: &str) -> Vec<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let details: Vec<_> = (0..cluster.size())
            .map(|i| cluster.stream_detail(i, stream))
            .collect();
        let durables = |detail: &serde_json::Value| -> Vec<serde_json::Value> {
            detail["consumer_detail"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["config"]["durable_name"].is_string())
                .cloned()
                .collect()
        };
        let ready = details
            .iter()
            .all(|d| d.as_ref().is_some_and(|d| !durables(d).is_empty()));
        if ready {
            let mut names = BTreeSet::new();
            for (i, detail) in details.iter().flatten().enumerate() {
                let server = cluster.server_name(i);
                assert_eq!(
                    detail["config"]["num_replicas"], 3,
                    "stream on {server}: {detail}"
                );
                assert_eq!(
                    peers(detail, server).len(),
                    3,
                    "stream on {server}: {detail}"
                );
                for consumer in durables(detail) {
                    // 0: as many as the stream.
                    let configured = &consumer["config"]["num_replicas"];
                    assert!(
                        *configured == 0 || *configured == 3,
                        "durable consumer on {server}: {consumer}"
                    );
                    assert_eq!(
                        peers(&consumer, server).len(),
                        3,
                        "durable consumer on {server}: {consumer}"
                    );
                    names.insert(consumer["name"].as_str().unwrap_or_default().to_owned());
                }
            }
            return names.into_iter().collect();
        }
        assert!(
            Instant::now() < deadline,
            "stream {stream} with a durable consumer not on every server within {SETTLE:?}: \
             {details:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The index lines of [`CRATE`] as served: vers → cksum.
async fn served_index(depot: &TestDepot) -> BTreeMap<String, String> {
    let (status, body) = depot.index_file(CRATE).await;
    if status != 200 {
        return BTreeMap::new();
    }
    body.lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON index line");
            (
                entry["vers"].as_str().expect("vers").to_owned(),
                entry["cksum"].as_str().expect("cksum").to_owned(),
            )
        })
        .collect()
}

#[expect(clippy::print_stderr, reason = "the figures of the run")]
fn report(what: std::fmt::Arguments<'_>) {
    eprintln!("cluster report: {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_survives_the_loss_of_the_stream_leader() {
    tokio::time::timeout(TEST_BOUND, stream_leader_killed_mid_publishing())
        .await
        .unwrap_or_else(|_| panic!("the test took longer than {TEST_BOUND:?}"));
}

async fn stream_leader_killed_mid_publishing() {
    let started = Instant::now();
    let mut cluster = tokio::task::block_in_place(|| PrivateNatsCluster::start(3));
    let db = TestDatabase::new().await;
    let depot = TestDepot::start_on_servers(
        &cluster.url(),
        db.url(),
        "serve",
        &[
            ("DEPOT_NATS_REPLICAS", "3"),
            ("DEPOT_PUBLISH_WAIT_SECS", PUBLISH_WAIT_SECS),
        ],
    )
    .await;
    let stream = depot
        .setting("DEPOT_NATS_STREAM")
        .expect("the stream name")
        .to_owned();
    let token = depot.token("alice").await;
    let consumers = check_replication(&cluster, &stream).await;

    // Publish, and kill the stream's leader once the first versions are acknowledged.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn({
        let url = depot.url.clone();
        let acknowledged = Arc::clone(&acknowledged);
        async move {
            let http = reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client");
            let mut done = Vec::new();
            for n in 0..PUBLISHES {
                done.push(publish(&http, &url, &token, &format!("0.1.{n}")).await);
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            done
        }
    });
    let deadline = Instant::now() + SETTLE;
    while acknowledged.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            Instant::now() < deadline && !publisher.is_finished(),
            "{KILL_AFTER} publishes not acknowledged within {SETTLE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = cluster
        .stream_leader(&stream)
        .expect("the stream has a leader");
    let killed = cluster.server_name(leader).to_owned();
    tokio::task::block_in_place(|| cluster.kill(leader));
    let killed_at = Instant::now();
    let acknowledged_before_kill = acknowledged.load(Ordering::SeqCst);

    // The surviving servers elect a new stream leader.
    let new_leader = loop {
        match cluster.stream_leader(&stream) {
            Some(i) if i != leader => break i,
            _ => {}
        }
        assert!(
            killed_at.elapsed() < SETTLE,
            "no new leader of {stream} within {SETTLE:?} after killing {killed}:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let election = killed_at.elapsed();

    let published = publisher.await.expect("the publisher");
    let first_ack_after_kill = published
        .iter()
        .find(|p| p.at > killed_at)
        .map(|p| p.at - killed_at);
    let retried: Vec<(&str, &[String])> = published
        .iter()
        .filter(|p| !p.failed.is_empty())
        .map(|p| (p.vers.as_str(), p.failed.as_slice()))
        .collect();

    // The killed server comes back and catches up with the log.
    let restarted_at = Instant::now();
    tokio::task::block_in_place(|| cluster.start_again(leader));
    let head = depot.log_head().await;
    let caught_up = loop {
        let detail = cluster.stream_detail(leader, &stream);
        let last_seq = detail
            .as_ref()
            .and_then(|d| d["state"]["last_seq"].as_u64());
        if last_seq.is_some_and(|seq| seq >= head) {
            break restarted_at.elapsed();
        }
        assert!(
            restarted_at.elapsed() < SETTLE,
            "{killed} did not catch up with seq {head} within {SETTLE:?}: {detail:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Every acknowledged version is in the index with the checksum of the bytes sent, and
    // downloads as those bytes.
    let deadline = Instant::now() + SETTLE;
    let index = loop {
        let index = served_index(&depot).await;
        let missing: Vec<&str> = published
            .iter()
            .filter(|p| !index.contains_key(&p.vers))
            .map(|p| p.vers.as_str())
            .collect();
        if missing.is_empty() {
            break index;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged versions missing from the index after {SETTLE:?}: {missing:?}\n\
             events:\n{}",
            depot.events_after(0).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(index.len(), PUBLISHES, "{index:?}");
    for p in &published {
        assert_eq!(index[&p.vers], p.cksum, "{CRATE}@{}: index cksum", p.vers);
        let (status, bytes) = depot.download(CRATE, &p.vers).await;
        assert_eq!(status, 200, "{CRATE}@{} is not downloadable", p.vers);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            p.cksum,
            "{CRATE}@{}: the download is not the published .crate",
            p.vers
        );
    }

    // The offline tools work against the cluster. (Verdicts of late uploads may still be
    // appended meanwhile: the replay folds at least what the log held when it started.)
    let before_replay = depot.log_head().await;
    let (ok, stdout, stderr) = depot.depot(&["replay"]);
    assert!(ok, "replay failed:\n{stdout}\n{stderr}");
    let replayed: u64 = stdout
        .split("replayed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no replay count in {stdout}"));
    assert!(replayed >= before_replay, "{stdout}");
    let (ok, stdout, stderr) = depot.depot(&["verify"]);
    assert!(ok, "verify failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("verify: OK"), "{stdout}");

    report(format_args!(
        "durable consumers {consumers:?}; killed stream leader {killed} after \
         {acknowledged_before_kill} acknowledged publishes; new leader {} elected {election:?} \
         after the kill; first acknowledged publish {first_ack_after_kill:?} after the kill; \
         {} of {PUBLISHES} publishes retried: {retried:?}; {killed} caught up {caught_up:?} \
         after its restart; head {head}; total {:?}",
        cluster.server_name(new_leader),
        retried.len(),
        started.elapsed()
    ));
}

/// Two api processes on one backend: every version acknowledged by one is in the index the
/// other serves on the very next request, over 500 publishes (a warm cache on the second
/// process included: it has served the crate's file before each publish).
#[tokio::test(flavor = "multi_thread")]
async fn a_version_acknowledged_by_one_api_is_served_by_another_at_once() {
    let depot = TestDepot::start_on(Setup::Production, &[]).await;
    let (other, _guard) = depot.another_api();
    let token = depot.token("alice").await;
    let http = reqwest::Client::new();
    let fetch = |vers: String| {
        let (http, url) = (http.clone(), format!("{other}/index/cr/os/crossnode"));
        async move {
            let body = http.get(url).send().await.unwrap().text().await.unwrap();
            body.contains(&format!("\"vers\":\"{vers}\""))
        }
    };
    let mut stale = Vec::new();
    let started = Instant::now();
    for minor in 0..500 {
        let vers = format!("0.{minor}.0");
        let (status, reply) = depot
            .publish_raw(
                &token,
                publish_body(
                    &metadata("crossnode", &vers),
                    &crate_bytes("crossnode", &vers, ""),
                ),
            )
            .await;
        assert_eq!(status, 200, "{vers}: {reply}");
        if !fetch(vers.clone()).await {
            stale.push(vers);
        }
    }
    println!(
        "500 publishes through one api, each fetched from the other: {} stale, {:?}",
        stale.len(),
        started.elapsed()
    );
    assert!(stale.is_empty(), "served stale after the reply: {stale:?}");
}
