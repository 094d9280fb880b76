//! Webhooks end to end on `depot` processes: a local receiver verifies every signature with
//! its own implementation of the Standard Webhooks check, sees each crate's events in log
//! order, is down for a while (connection refused, then 500s) and still receives everything;
//! a replay re-delivers exactly a range; hostile subscriptions are refused without an event;
//! a receiver that never answers does not slow publishing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Value, json};

use crate::support::{Setup, TestDepot, crate_bytes, metadata, publish_body};

/// One delivery as the receiver accepted it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    secret: Arc<Mutex<Vec<u8>>>,
    failing: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<u32>>,
}

/// Verifies a delivery as a receiver would, independently of Depot's code: the secret's
/// base64 after `whsec_`, HMAC-SHA256 over `id.timestamp.body`, compared in constant time
/// (`verify_slice`), and a timestamp within five minutes.
fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let sent: i64 = timestamp.parse().map_err(|_| "bad timestamp")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - sent).abs() > 300 {
        return Err("timestamp too far off".into());
    }
    for signature in signatures.split(' ') {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            continue;
        };
        let Ok(raw) = BASE64.decode(encoded) else {
            continue;
        };
        let mut mac = hmac::Hmac::<hmac_sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        if mac.verify_slice(&raw).is_ok() {
            return Ok(id);
        }
    }
    Err("no valid signature".into())
}

async fn hook(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if receiver.failing.load(Ordering::SeqCst) {
        *receiver.refused.lock().unwrap() += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let secret = receiver.secret.lock().unwrap().clone();
    let id = verify(&secret, &headers, &body).unwrap_or_else(|e| panic!("bad delivery: {e}"));
    receiver.received.lock().unwrap().push(Received {
        id,
        body: serde_json::from_slice(&body).expect("a JSON body"),
    });
    StatusCode::NO_CONTENT
}

impl Receiver {
    fn new() -> Receiver {
        Receiver {
            secret: Arc::default(),
            failing: Arc::default(),
            received: Arc::default(),
            refused: Arc::default(),
        }
    }

    fn set_secret(&self, whsec: &str) {
        let encoded = whsec.strip_prefix("whsec_").expect("a whsec_ secret");
        *self.secret.lock().unwrap() = BASE64.decode(encoded).unwrap();
    }

    /// Serves on `listener` until the test ends.
    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// `depot webhook add …`: the secret on the last line of standard output.
fn add_webhook(depot: &TestDepot, args: &[&str]) -> String {
    let mut all = vec!["webhook", "add"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = depot.depot(&all);
    assert!(ok, "webhook add failed: {stderr}");
    let secret = stdout.lines().last().unwrap().trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{stdout}");
    secret
}

fn subscription_id(depot: &TestDepot) -> String {
    let (ok, stdout, stderr) = depot.depot(&["webhook", "list"]);
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .nth(1)
        .and_then(|line| line.split('\t').next())
        .expect("a subscription")
        .to_owned()
}

async fn publish(depot: &TestDepot, token: &str, name: &str, vers: &str) {
    let started = Instant::now();
    let (status, json) = depot
        .publish_raw(
            token,
            publish_body(&metadata(name, vers), &crate_bytes(name, vers, "")),
        )
        .await;
    assert_eq!(status, 200, "{name} {vers}: {json}");
    assert!(started.elapsed() < Duration::from_secs(10), "slow publish");
}

async fn send(
    depot: &TestDepot,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> u16 {
    let mut request = depot
        .http
        .request(method, format!("{}{path}", depot.url))
        .header("Authorization", token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status().as_u16()
}

/// The (type, version or owners) of the deliveries for `krate`, in arrival order.
fn story(received: &[Received], krate: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| r.body["data"]["crate"] == krate)
        .map(|r| {
            let data = &r.body["data"];
            let what = if data["owners"].is_array() {
                data["owners"].to_string()
            } else {
                data["version"].as_str().unwrap_or_default().to_owned()
            };
            format!("{} {what}", r.body["type"].as_str().unwrap())
        })
        .collect()
}

async fn wait_for(receiver: &Receiver, count: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while receiver.received().len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} deliveries: {:#?}",
            receiver.received().len(),
            receiver.received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn signed_ordered_and_delivered_after_an_outage(setup: Setup) {
    let depot = TestDepot::start_on(
        setup,
        &[
            ("DEPOT_WEBHOOK_RETRY_MS", "100"),
            ("DEPOT_WEBHOOK_MAX_RETRY_SECS", "1"),
        ],
    )
    .await;
    // The receiver's address, with nothing listening yet: connections are refused.
    let address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let receiver = Receiver::new();
    let secret = add_webhook(
        &depot,
        &[
            "--url",
            &format!("http://{address}/hook"),
            "--crate",
            "hook-*",
            "--description",
            "the test receiver",
        ],
    );
    receiver.set_secret(&secret);
    let id = subscription_id(&depot);

    let alice = depot.token("alice").await;
    let _bob = depot.token("bob").await;
    publish(&depot, &alice, "hook-a", "1.0.0").await;
    publish(&depot, &alice, "hook-b", "1.0.0").await;
    publish(&depot, &alice, "other", "1.0.0").await;
    publish(&depot, &alice, "hook-a", "1.1.0").await;
    let delete = reqwest::Method::DELETE;
    let put = reqwest::Method::PUT;
    assert_eq!(
        send(
            &depot,
            delete,
            "/api/v1/crates/hook-a/1.0.0/yank",
            &alice,
            None
        )
        .await,
        200
    );
    assert_eq!(
        send(
            &depot,
            put.clone(),
            "/api/v1/crates/hook-a/1.0.0/unyank",
            &alice,
            None
        )
        .await,
        200
    );
    let owners = json!({"users": ["bob"]});
    assert_eq!(
        send(
            &depot,
            put,
            "/api/v1/crates/hook-a/owners",
            &alice,
            Some(owners)
        )
        .await,
        200
    );
    publish(&depot, &alice, "hook-b", "2.0.0").await;

    // Down: connections refused for a while, then answers 500 for a while, then up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.failing.store(true, Ordering::SeqCst);
    receiver.serve(tokio::net::TcpListener::bind(address).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while *receiver.refused.lock().unwrap() < 2 {
        assert!(Instant::now() < deadline, "no retries reached the receiver");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.received().is_empty());
    receiver.failing.store(false, Ordering::SeqCst);

    wait_for(&receiver, 7, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert_eq!(
        story(&received, "hook-a"),
        [
            "crate.published 1.0.0",
            "crate.published 1.1.0",
            "crate.yanked 1.0.0",
            "crate.unyanked 1.0.0",
            r#"crate.owners_added ["bob"]"#,
        ],
        "{received:#?}"
    );
    assert_eq!(
        story(&received, "hook-b"),
        ["crate.published 1.0.0", "crate.published 2.0.0"]
    );
    assert_eq!(
        received.len(),
        7,
        "nothing for `other`, nothing twice: {received:#?}"
    );
    let yank = received
        .iter()
        .find(|r| r.body["type"] == "crate.yanked")
        .unwrap();
    assert_eq!(yank.body["data"]["actor"], "alice");
    let timestamp = yank.body["timestamp"].as_str().unwrap();
    assert!(
        timestamp.ends_with('Z') && timestamp.len() == 24,
        "{timestamp}"
    );
    // Every sequence in the payloads is increasing per crate (log order).
    for krate in ["hook-a", "hook-b"] {
        let seqs: Vec<u64> = received
            .iter()
            .filter(|r| r.body["data"]["crate"] == krate)
            .map(|r| r.body["data"]["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{krate}: {seqs:?}");
    }

    // The delivery log shows the retries.
    let (ok, stdout, stderr) = depot.depot(&["webhook", "deliveries", &id]);
    assert!(ok, "{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 7, "{stdout}");
    assert!(rows.iter().all(|r| r[3] == "delivered"), "{stdout}");
    assert!(
        rows.iter().any(|r| r[4].parse::<u32>().unwrap() > 1),
        "{stdout}"
    );

    // Replay exactly the yank and the unyank: the same webhook-ids and bodies again, in order.
    let yank_seq = yank.body["data"]["seq"].as_u64().unwrap();
    let unyank = received
        .iter()
        .find(|r| r.body["type"] == "crate.unyanked")
        .unwrap();
    let unyank_seq = unyank.body["data"]["seq"].as_u64().unwrap();
    let (ok, _, stderr) = depot.depot(&[
        "webhook",
        "replay",
        "--from",
        &yank_seq.to_string(),
        "--to",
        &unyank_seq.to_string(),
        "--subscription",
        &id,
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("queued 2 deliveries"), "{stderr}");
    wait_for(&receiver, 9, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = receiver.received();
    assert_eq!(again.len(), 9, "{again:#?}");
    assert_eq!(again[7].id, yank.id);
    assert_eq!(again[7].body, yank.body);
    assert_eq!(again[8].id, unyank.id);
    assert_eq!(again[8].body, unyank.body);

    // Removed: later events are not delivered.
    let (ok, _, stderr) = depot.depot(&["webhook", "remove", &id]);
    assert!(ok, "{stderr}");
    publish(&depot, &alice, "hook-a", "1.2.0").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 9);
    let (ok, _, _) = depot.depot(&["webhook", "remove", &id]);
    assert!(!ok, "removing twice");
}

async fn hostile_subscriptions_are_refused_without_an_event(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let head = depot.log_head().await;
    let huge = format!("https://example.com/{}", "a".repeat(5000));
    for (args, expected) in [
        (vec!["--url", "ftp://example.com/x"], "http or https"),
        (vec!["--url", "file:///etc/passwd"], "http or https"),
        (
            vec!["--url", "https://user:pw@example.com/"],
            "user name or password",
        ),
        (vec!["--url", "not a url"], "not a valid URL"),
        (vec!["--url", huge.as_str()], "bytes long"),
        (
            vec!["--url", "https://example.com/", "--crate", "a/b"],
            "crate pattern",
        ),
        (
            vec!["--url", "https://example.com/", "--event", "crate.deleted"],
            "unknown webhook event type",
        ),
    ] {
        let mut all = vec!["webhook", "add"];
        all.extend(args.iter().copied());
        let (ok, _, stderr) = depot.depot(&all);
        assert!(!ok && stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(
        depot.log_head().await,
        head,
        "a refused subscription appended an event"
    );
    let (ok, _, stderr) = depot.depot(&["webhook", "deliveries", "not-a-uuid"]);
    assert!(
        !ok && stderr.contains("no webhook subscription"),
        "{stderr}"
    );
    let (ok, _, stderr) =
        depot.depot(&["webhook", "replay", "--from", "1", "--subscription", "nope"]);
    assert!(
        !ok && stderr.contains("no webhook subscription"),
        "{stderr}"
    );
}

/// A receiver that accepts connections and never answers: publishes complete as promptly as
/// without a subscription.
async fn a_dead_receiver_never_slows_publishing(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[("DEPOT_WEBHOOK_TIMEOUT_SECS", "60")]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    add_webhook(&depot, &["--url", &format!("http://{address}/hook")]);
    let alice = depot.token("alice").await;
    let mut times = BTreeMap::new();
    for i in 0..8 {
        let name = format!("dead-{i}");
        let started = Instant::now();
        publish(&depot, &alice, &name, "1.0.0").await;
        times.insert(name, started.elapsed());
    }
    // The dispatcher did try: connections are held open, unanswered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the dispatcher never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (name, took) in &times {
        assert!(*took < Duration::from_secs(3), "{name} took {took:?}");
    }
}

on_both_setups!(
    signed_ordered_and_delivered_after_an_outage,
    hostile_subscriptions_are_refused_without_an_event,
    a_dead_receiver_never_slows_publishing,
);
