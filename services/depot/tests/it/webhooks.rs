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

/// An admin's personal token (user `root`, made with `depot user create --admin`).
async fn admin_token(depot: &TestDepot) -> String {
    let (ok, _, stderr) = depot.depot(&["user", "create", "root", "--admin"]);
    assert!(ok, "{stderr}");
    depot.token("root").await
}

/// A request to the webhooks API: (status, JSON body or `null`).
async fn api(
    depot: &TestDepot,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = depot
        .http
        .request(method, format!("{}{path}", depot.url))
        .header("Authorization", token);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The `detail` of a cargo-format error body; panics on any other shape.
fn detail(body: &Value) -> &str {
    let errors = body["errors"].as_array().expect("an errors array");
    assert_eq!(errors.len(), 1, "{body}");
    let detail = errors[0]["detail"].as_str().expect("a detail string");
    assert!(!detail.is_empty(), "{body}");
    detail
}

/// The HTTP API end to end: the admin subscribes over HTTP and gets the secret once; the
/// receiver verifies every delivery with it; the listing shows the subscription, the delivery
/// log its deliveries, a replay re-sends one, and after removal nothing more arrives.
async fn managed_over_http(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[("DEPOT_WEBHOOK_RETRY_MS", "100")]).await;
    let root = admin_token(&depot).await;
    let alice = depot.token("alice").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let receiver = Receiver::new();
    let body = json!({
        "url": format!("http://{address}/hook"),
        "event_types": ["crate.published", "crate.yanked"],
        "crates": ["api-*"],
        "description": "made over HTTP",
    })
    .to_string();
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let (status, made) = api(&depot, post.clone(), "/api/v1/webhooks", &root, Some(&body)).await;
    assert_eq!(status, 200, "{made}");
    let secret = made["secret"].as_str().expect("the secret");
    receiver.set_secret(secret);
    receiver.serve(listener);
    let id = made["webhook"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made["webhook"]["crates"], json!(["api-*"]));
    assert_eq!(
        made["webhook"]["event_types"],
        json!(["crate.published", "crate.yanked"])
    );
    let (status, listed) = api(&depot, get.clone(), "/api/v1/webhooks", &root, None).await;
    assert_eq!(status, 200, "{listed}");
    let hooks = listed["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{listed}");
    assert_eq!(hooks[0]["id"], id.as_str());
    assert_eq!(hooks[0]["description"], "made over HTTP");
    assert!(
        hooks[0].get("secret").is_none() && !listed.to_string().contains(secret),
        "the listing shows the secret: {listed}"
    );

    publish(&depot, &alice, "api-one", "1.0.0").await;
    publish(&depot, &alice, "not-api", "1.0.0").await;
    let yank = send(
        &depot,
        reqwest::Method::DELETE,
        "/api/v1/crates/api-one/1.0.0/yank",
        &alice,
        None,
    )
    .await;
    assert_eq!(yank, 200);
    wait_for(&receiver, 2, Duration::from_secs(20)).await;
    let received = receiver.received();
    assert_eq!(
        story(&received, "api-one"),
        ["crate.published 1.0.0", "crate.yanked 1.0.0"],
        "{received:#?}"
    );

    // The delivery log, newest first, bounded by `limit`.
    let path = format!("/api/v1/webhooks/{id}/deliveries");
    let (status, log) = api(&depot, get.clone(), &path, &root, None).await;
    assert_eq!(status, 200, "{log}");
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{log}");
    assert!(
        deliveries.iter().all(|d| d["status"] == "delivered"),
        "{log}"
    );
    assert_eq!(deliveries[0]["type"], "crate.yanked");
    let (_, one) = api(&depot, get.clone(), &format!("{path}?limit=1"), &root, None).await;
    assert_eq!(one["deliveries"].as_array().unwrap().len(), 1, "{one}");

    // Replay exactly the publish: the same webhook-id and body again.
    let publish_seq = received[0].body["data"]["seq"].as_u64().unwrap();
    let replay = json!({"from": publish_seq, "to": publish_seq, "webhook": id}).to_string();
    let (status, queued) = api(
        &depot,
        post.clone(),
        "/api/v1/webhooks/replay",
        &root,
        Some(&replay),
    )
    .await;
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["queued"], 1, "{queued}");
    wait_for(&receiver, 3, Duration::from_secs(20)).await;
    let again = receiver.received();
    assert_eq!(again[2].id, received[0].id);
    assert_eq!(again[2].body, received[0].body);

    // Removed: later events are not delivered; removing again is a 404.
    let delete = reqwest::Method::DELETE;
    let (status, _) = api(
        &depot,
        delete.clone(),
        &format!("/api/v1/webhooks/{id}"),
        &root,
        None,
    )
    .await;
    assert_eq!(status, 200);
    publish(&depot, &alice, "api-one", "1.1.0").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 3);
    let (status, gone) = api(
        &depot,
        delete,
        &format!("/api/v1/webhooks/{id}"),
        &root,
        None,
    )
    .await;
    assert_eq!(status, 404, "{gone}");
    detail(&gone);
    let (_, listed) = api(&depot, get, "/api/v1/webhooks", &root, None).await;
    assert_eq!(listed["webhooks"], json!([]), "{listed}");
}

/// Hostile bodies, queries and ids: 4xx in cargo's error format, and no event appended;
/// tokens that are not an unrestricted admin's personal token get 403. Then bodies drawn at
/// random (a proptest strategy over the fields, their types and junk) never answer 5xx, and
/// every refusal leaves the log as it was.
async fn hostile_api_requests_are_refused_without_an_event(setup: Setup) {
    use proptest::strategy::{Strategy, ValueTree};

    let depot = TestDepot::start_on(setup, &[]).await;
    let root = admin_token(&depot).await;
    let alice = depot.token("alice").await;
    let (ok, _, stderr) = depot.depot(&["user", "create", "ops", "--admin"]);
    assert!(ok, "{stderr}");
    let narrow_admin = depot.token_with("ops", &["--scope", "yank"]).await;
    let head = depot.log_head().await;
    let post = reqwest::Method::POST;
    let long = format!("https://example.com/{}", "a".repeat(3000));
    let many_crates: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
    let create = |body: Value, status: u16, expected: &'static str| {
        ("/api/v1/webhooks", body.to_string(), status, expected)
    };
    let replay = |body: Value, status: u16, expected: &'static str| {
        (
            "/api/v1/webhooks/replay",
            body.to_string(),
            status,
            expected,
        )
    };
    let cases = [
        create(json!({"url": "ftp://example.com/x"}), 400, "http or https"),
        create(
            json!({"url": "https://u:pw@example.com/"}),
            400,
            "user name or password",
        ),
        create(json!({"url": "not a url"}), 400, "not a valid URL"),
        create(json!({"url": "https://example.com/#x"}), 400, "fragment"),
        create(json!({"url": long}), 400, "bytes long"),
        create(
            json!({"url": "https://example.com/", "crates": ["a/b"]}),
            400,
            "crate pattern",
        ),
        create(
            json!({"url": "https://example.com/", "crates": many_crates}),
            400,
            "crate patterns",
        ),
        create(
            json!({"url": "https://example.com/", "event_types": ["crate.deleted"]}),
            400,
            "unknown webhook event type",
        ),
        create(
            json!({"url": "https://example.com/", "description": "x".repeat(300)}),
            400,
            "description is longer",
        ),
        create(
            json!({"url": "https://example.com/", "description": "a\u{7}b"}),
            400,
            "control characters",
        ),
        create(
            json!({"url": "https://example.com/", "secret": "mine"}),
            422,
            "unknown field",
        ),
        create(json!({"url": 5}), 422, "invalid type"),
        create(json!({}), 422, "missing field `url`"),
        (
            "/api/v1/webhooks",
            "{\"url\":".to_owned(),
            400,
            "invalid request body",
        ),
        replay(json!({"from": 5, "to": 2}), 400, "before `from`"),
        replay(json!({"from": -1}), 422, "invalid value"),
        replay(
            json!({"from": 1, "webhook": "nope"}),
            404,
            "no webhook subscription",
        ),
        replay(json!({"from": 1, "since": 0}), 422, "unknown field"),
    ];
    for (path, body, status, expected) in &cases {
        let (got, answer) = api(&depot, post.clone(), path, &root, Some(body)).await;
        let shown: String = body.chars().take(120).collect();
        assert_eq!(got, *status, "{path} {shown}: {answer}");
        let detail = detail(&answer);
        assert!(detail.contains(expected), "{path} {shown}: {detail}");
    }
    let get = reqwest::Method::GET;
    for (path, status) in [
        ("/api/v1/webhooks/not-a-uuid/deliveries", 404),
        (
            "/api/v1/webhooks/0190d5c6-8f4e-7a4b-9b1e-0123456789ab/deliveries",
            404,
        ),
        (
            "/api/v1/webhooks/0190d5c6-8f4e-7a4b-9b1e-0123456789ab/deliveries?limit=x",
            400,
        ),
        (
            "/api/v1/webhooks/0190d5c6-8f4e-7a4b-9b1e-0123456789ab/deliveries?limit=-1",
            400,
        ),
    ] {
        let (got, answer) = api(&depot, get.clone(), path, &root, None).await;
        assert_eq!(got, status, "{path}: {answer}");
        detail(&answer);
    }
    let (got, answer) = api(
        &depot,
        reqwest::Method::DELETE,
        "/api/v1/webhooks/..%2F..",
        &root,
        None,
    )
    .await;
    assert_eq!(got, 404, "{answer}");
    detail(&answer);
    // Only an unrestricted admin's personal token manages webhooks.
    let good = json!({"url": "https://example.com/hook"}).to_string();
    for token in [&alice, &narrow_admin] {
        let (got, answer) = api(&depot, post.clone(), "/api/v1/webhooks", token, Some(&good)).await;
        assert_eq!(got, 403, "{answer}");
        detail(&answer);
    }
    assert_eq!(
        depot.log_head().await,
        head,
        "a refused request appended an event"
    );

    // Random bodies: any mix of the fields with values of any JSON type, plus junk fields.
    // URLs that validate point at loopback port 1, so what gets subscribed is never reached.
    let value = proptest::prop_oneof![
        proptest::strategy::Just(Value::Null),
        proptest::arbitrary::any::<bool>().prop_map(Value::from),
        proptest::arbitrary::any::<i64>().prop_map(Value::from),
        "[a-z:/.#@ -]{0,40}".prop_map(Value::from),
        "(https?|ftp|file|javascript)://(127\\.0\\.0\\.1:1|u:p@127\\.0\\.0\\.1:1|\\[::1\\]:1|)/[a-z#?]{0,8}".prop_map(Value::from),
        proptest::collection::vec("[a-z.*/-]{0,12}", 0..4).prop_map(|v| json!(v)),
    ];
    let field = proptest::sample::select(vec![
        "url",
        "event_types",
        "crates",
        "description",
        "from",
        "to",
        "webhook",
        "secret",
        "",
    ]);
    let bodies = proptest::collection::btree_map(field, value, 0..5).prop_map(|fields| {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    });
    let mut runner = proptest::test_runner::TestRunner::default();
    for _ in 0..64 {
        let body = bodies.new_tree(&mut runner).unwrap().current().to_string();
        for path in ["/api/v1/webhooks", "/api/v1/webhooks/replay"] {
            let before = depot.log_head().await;
            let (got, answer) = api(&depot, post.clone(), path, &root, Some(&body)).await;
            assert!(got < 500, "{path} {body}: {got} {answer}");
            if got != 200 {
                detail(&answer);
                assert_eq!(
                    depot.log_head().await,
                    before,
                    "{path} {body}: refused, yet appended"
                );
            }
        }
    }
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
    managed_over_http,
    hostile_api_requests_are_refused_without_an_event,
);
