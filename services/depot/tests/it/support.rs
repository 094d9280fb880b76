//! A Depot started as a real `depot serve` process on a fresh database and a private stream.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use depot_eventlog::{EventLog, JetStreamConfig, JetStreamLog, SqliteLog};
use depot_store::Store;
use depot_testkit::TestDatabase;

/// Declares each listed `async fn name(setup: Setup)` as two tests, `production::name` (NATS +
/// PostgreSQL) and `embedded::name` (the zero-setup SQLite backends).
macro_rules! on_both_setups {
    ($($name:ident),* $(,)?) => {
        mod production {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::support::Setup::Production).await
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::support::Setup::Embedded).await
                }
            )*
        }
    };
}

/// Declares each listed `async fn name(setup: Setup)` as three tests: `production::name`,
/// `embedded::name` and `s3::name` (NATS + PostgreSQL with blobs in a real S3 bucket).
macro_rules! on_all_setups {
    ($($name:ident),* $(,)?) => {
        on_both_setups!($($name),*);
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::support::Setup::S3).await
                }
            )*
        }
    };
}

/// Which backends a test Depot runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// NATS JetStream + PostgreSQL (the test servers).
    Production,
    /// The zero-setup default: SQLite event log and read models in a data directory.
    Embedded,
    /// NATS JetStream + PostgreSQL, with blobs in a bucket of the test S3 server.
    S3,
}

/// A running Depot.
pub(crate) struct TestDepot {
    child: Child,
    /// The subcommand it runs (`serve`, or `api` when the roles run apart).
    role: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The database of its read models (production and S3 setups).
    _db: Option<TestDatabase>,
    /// The bucket of its blobs (S3 setup).
    bucket: Option<depot_testkit::TestBucket>,
    env: Vec<(String, String)>,
    output: Arc<Mutex<String>>,
    data: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    store: Store,
    /// An HTTP client.
    pub(crate) http: reqwest::Client,
}

impl TestDepot {
    /// Starts `depot serve` on `setup` with extra `DEPOT_*` settings.
    pub(crate) async fn start_on(setup: Setup, extra: &[(&str, &str)]) -> TestDepot {
        let data = tempfile::tempdir().expect("temp dir");
        let prefix = depot_testkit::unique_prefix();
        let mut env: Vec<(String, String)> = vec![
            ("DEPOT_DATA_DIR".into(), data.path().display().to_string()),
            ("DEPOT_LISTEN".into(), "127.0.0.1:0".into()),
            ("DEPOT_METRICS_LISTEN".into(), "127.0.0.1:0".into()),
            ("RUST_LOG".into(), "info".into()),
            // No test reaches the internet: the crates.io cache is off unless a test gives it
            // a local upstream.
            ("DEPOT_UPSTREAM_INDEX".into(), "off".into()),
        ];
        let bucket = match setup {
            Setup::S3 => {
                let bucket = depot_testkit::TestBucket::new().await;
                env.extend([
                    ("DEPOT_BLOB_URL".into(), format!("{}/blobs", bucket.url())),
                    ("AWS_ENDPOINT_URL".into(), bucket.endpoint().to_owned()),
                    ("AWS_REGION".into(), bucket.region().to_owned()),
                    ("AWS_ACCESS_KEY_ID".into(), bucket.access_key().to_owned()),
                    (
                        "AWS_SECRET_ACCESS_KEY".into(),
                        bucket.secret_key().to_owned(),
                    ),
                ]);
                Some(bucket)
            }
            Setup::Production | Setup::Embedded => None,
        };
        let db = match setup {
            Setup::Production | Setup::S3 => {
                let db = TestDatabase::new().await;
                env.extend([
                    ("DEPOT_NATS_URL".into(), depot_testkit::nats_url()),
                    ("DEPOT_NATS_STREAM".into(), prefix.to_ascii_uppercase()),
                    ("DEPOT_NATS_PREFIX".into(), prefix.clone()),
                    ("DEPOT_DATABASE_URL".into(), db.url().to_owned()),
                ]);
                Some(db)
            }
            Setup::Embedded => None,
        };
        for (k, v) in extra {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let (child, url, output) = spawn_serve(&env);
        let (log, store): (Arc<dyn EventLog>, Store) = match &db {
            Some(db) => (
                Arc::new(
                    JetStreamLog::connect(&JetStreamConfig {
                        stream: prefix.to_ascii_uppercase(),
                        subject_prefix: prefix,
                        ..JetStreamConfig::new(depot_testkit::nats_url())
                    })
                    .await
                    .expect("connect to the test event log"),
                ),
                Store::connect(db.url(), 2)
                    .await
                    .expect("connect to the test db"),
            ),
            None => (
                Arc::new(
                    SqliteLog::open(&data.path().join("events.sqlite"))
                        .await
                        .expect("open the embedded log"),
                ),
                Store::open_sqlite(&data.path().join("read-models.sqlite"))
                    .await
                    .expect("open the embedded read models"),
            ),
        };
        TestDepot {
            child,
            role: "serve",
            url,
            _db: db,
            bucket,
            env,
            output,
            data,
            log,
            store,
            http: reqwest::Client::new(),
        }
    }

    /// The blob store this Depot uses (its directory, or its S3 bucket).
    pub(crate) async fn blobs(&self) -> depot_store::BlobStore {
        match &self.bucket {
            Some(bucket) => depot_store::BlobStore::open_s3(&depot_store::S3Config {
                endpoint: Some(bucket.endpoint().to_owned()),
                region: bucket.region().to_owned(),
                access_key_id: Some(bucket.access_key().to_owned()),
                secret_access_key: Some(bucket.secret_key().to_owned()),
                ..depot_store::S3Config::from_url(&format!("{}/blobs", bucket.url())).unwrap()
            })
            .await
            .expect("open the test bucket"),
            None => depot_store::BlobStore::open(self.data_dir().join("blobs"))
                .await
                .expect("open the blob directory"),
        }
    }

    /// What the server printed on standard output so far.
    pub(crate) fn stdout(&self) -> String {
        self.output
            .lock()
            .unwrap()
            .lines()
            .filter_map(|line| line.strip_prefix("stdout: "))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// The Prometheus metrics URL (`http://127.0.0.1:PORT/metrics`), from the server's log.
    pub(crate) fn metrics_url(&self) -> String {
        let output = self.output.lock().unwrap();
        output
            .lines()
            .filter_map(|line| line.split("metrics on ").nth(1))
            .next_back()
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the server logs its metrics address")
            .to_owned()
    }

    /// Stops the server (like a crash: SIGKILL) and starts it again on the same data.
    pub(crate) async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, url, output) = spawn_role(&self.env, self.role);
        self.child = child;
        self.url = url;
        self.output = output;
    }

    /// Starts one more `depot api` process on this Depot's backends, on its own port; returns
    /// its URL. It stops when the guard is dropped.
    pub(crate) fn another_api(&self) -> (String, ApiProcess) {
        let (child, url, _) = spawn_role(&self.env, "api");
        (url, ApiProcess(child))
    }

    /// Sends SIGKILL to the server.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id of the running server.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The read models, for checks that the projector applied something.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// Runs a `depot` subcommand with this Depot's settings: (success, stdout, stderr).
    pub(crate) fn depot(&self, args: &[&str]) -> (bool, String, String) {
        let out = depot_command(&self.env)
            .args(args)
            .output()
            .expect("run depot");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Starts `depot serve` and waits for its listening line: (child, url, output).
fn spawn_serve(env: &[(String, String)]) -> (Child, String, Arc<Mutex<String>>) {
    spawn_role(env, "serve")
}

/// Starts `depot <role>` (`serve` or `api`) and waits for its listening line.
fn spawn_role(env: &[(String, String)], role: &str) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = depot_command(env)
        .arg(role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start depot serve");
    let output = Arc::new(Mutex::new(String::new()));
    // Standard output (the first-start welcome) goes to the same buffer, marked.
    let stdout = child.stdout.take().expect("stdout");
    let stdout_sink = Arc::clone(&output);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut out = stdout_sink.lock().unwrap();
            out.push_str("stdout: ");
            out.push_str(&line);
            out.push('\n');
        }
    });
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let sink = Arc::clone(&output);
    std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("depot listening on ").nth(1)
                && let Some(tx) = addr_tx.take()
            {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(url);
            }
            let mut out = sink.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
    let url = match addr_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "depot {role} did not start; its output:\n{}",
                output.lock().unwrap()
            );
        }
    };
    (child, url, output)
}

impl TestDepot {
    /// The sparse index URL for cargo.
    pub(crate) fn index_url(&self) -> String {
        format!("sparse+{}/index/", self.url)
    }

    /// Creates a token for `user` with `depot token create` and waits until it works.
    pub(crate) async fn token(&self, user: &str) -> String {
        self.token_with(user, &[]).await
    }

    /// Like [`TestDepot::token`], with extra arguments (`--scope`, `--crate`, …).
    pub(crate) async fn token_with(&self, user: &str, args: &[&str]) -> String {
        let mut all = vec!["token", "create", "--user", user];
        all.extend_from_slice(args);
        self.token_with_args(&all).await
    }

    /// Runs `depot` with `args` (a `token create` command), and waits until the printed token
    /// works.
    pub(crate) async fn token_with_args(&self, args: &[&str]) -> String {
        let out = depot_command(&self.env)
            .args(args)
            .output()
            .expect("run depot token create");
        assert!(
            out.status.success(),
            "depot token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let token = stdout.lines().last().expect("token line").trim().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let res = self
                .http
                .get(format!("{}/api/v1/me", self.url))
                .header("Authorization", &token)
                .send()
                .await
                .unwrap();
            if res.status().is_success() {
                return token;
            }
            assert!(Instant::now() < deadline, "token never became usable");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The events after `seq`, one `seq subject type` line each (for assertion messages).
    pub(crate) async fn events_after(&self, seq: u64) -> String {
        let mut out = String::new();
        let head = self.log_head().await;
        if head <= seq {
            return out;
        }
        let mut stream = self.log.read_from(seq + 1).await.expect("read the log");
        while let Some(Ok(event)) = futures::StreamExt::next(&mut stream).await {
            let kind = depot_events::Envelope::decode(&event.payload)
                .map(|e| e.kind().to_owned())
                .unwrap_or_else(|e| e.to_string());
            out.push_str(&format!("{} {} {kind}\n", event.seq, event.subject));
            if event.seq >= head {
                break;
            }
        }
        out
    }

    /// Appends `event` to the crate `canon`'s subject directly (as if the api had, without
    /// the projector having folded it yet when the server is stopped).
    pub(crate) async fn append_crate_event(&self, name: &str, event: depot_events::Event) {
        let canon = depot_index::CrateName::parse(name)
            .expect("a valid crate name")
            .canonical();
        let envelope = depot_events::Envelope::new("alice", event);
        self.log
            .append(
                &depot_events::subject::krate(&canon),
                depot_eventlog::Expected::Any,
                &envelope.id.to_string(),
                bytes::Bytes::from(envelope.encode()),
            )
            .await
            .expect("append an event");
    }

    /// The last sequence of the event log.
    pub(crate) async fn log_head(&self) -> u64 {
        self.log.head().await.expect("log head")
    }

    /// Every index file: (canonical name, body, etag).
    pub(crate) async fn index_snapshot(&self) -> Vec<(String, Vec<u8>, String)> {
        let generation = self.store.active_generation().await.expect("generation");
        self.store
            .index_files(generation)
            .await
            .expect("index files")
            .into_iter()
            .map(|(canon, row)| (canon, row.body, row.etag))
            .collect()
    }

    /// GETs an index file by crate name: (status, body).
    pub(crate) async fn index_file(&self, name: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!(
                "{}/index/{}",
                self.url,
                depot_index::index_path(name)
            ))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// PUTs a raw publish body.
    /// Publishes a minimal `name` `vers` with `token` and asserts it was accepted.
    pub(crate) async fn publish_ok(&self, token: &str, name: &str, vers: &str) {
        let body = publish_body(&metadata(name, vers), &crate_bytes(name, vers, ""));
        let (status, json) = self.publish_raw(token, body).await;
        assert_eq!(status, 200, "publish of {name} {vers}: {json}");
    }

    pub(crate) async fn publish_raw(&self, token: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let res = self
            .http
            .put(format!("{}/api/v1/crates/new", self.url))
            .header("Authorization", token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("publish answered non-JSON ({status}): {text}"));
        (status, json)
    }
}

impl Drop for TestDepot {
    #[expect(
        clippy::print_stderr,
        reason = "shows the server's log when a test fails"
    )]
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- depot serve output ---\n{}",
                self.output.lock().unwrap()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn depot_command(env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_depot"));
    for (key, _) in std::env::vars() {
        if key.starts_with("DEPOT_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// The details of a cargo-format error body.
pub(crate) fn details(json: &serde_json::Value) -> String {
    json["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["detail"].as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// A publish request body: metadata JSON plus `.crate` bytes, framed as cargo frames them.
pub(crate) fn publish_body(metadata: &serde_json::Value, krate: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(metadata).unwrap();
    let mut body = Vec::with_capacity(8 + json.len() + krate.len());
    body.extend_from_slice(&(json.len() as u32).to_le_bytes());
    body.extend_from_slice(&json);
    body.extend_from_slice(&(krate.len() as u32).to_le_bytes());
    body.extend_from_slice(krate);
    body
}

/// Publish metadata as cargo sends it, for a crate without dependencies.
pub(crate) fn metadata(name: &str, vers: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name, "vers": vers, "deps": [], "features": {}, "authors": [],
        "description": "test crate", "documentation": null, "homepage": null,
        "readme": null, "readme_file": null, "keywords": [], "categories": [],
        "license": "MIT", "license_file": null, "repository": null, "badges": {},
        "links": null, "rust_version": null
    })
}

/// A minimal valid `.crate` for `name`/`vers` (with `extra` appended to `src/lib.rs` so
/// different calls can produce different bytes).
pub(crate) fn crate_bytes(name: &str, vers: &str, extra: &str) -> Vec<u8> {
    crate_with_manifest(name, vers, &manifest(name, vers, ""), extra)
}

/// A normalised-looking `Cargo.toml`.
pub(crate) fn manifest(name: &str, vers: &str, rest: &str) -> String {
    format!(
        "[package]\nedition = \"2021\"\nname = \"{name}\"\nversion = \"{vers}\"\n\
         description = \"test crate\"\nlicense = \"MIT\"\n{rest}"
    )
}

/// A `.crate` with the given manifest.
pub(crate) fn crate_with_manifest(name: &str, vers: &str, manifest: &str, extra: &str) -> Vec<u8> {
    let root = format!("{name}-{vers}");
    depot_cratefile::TarballBuilder::new()
        .add_file(&format!("{root}/Cargo.toml"), manifest.as_bytes())
        .add_file(
            &format!("{root}/src/lib.rs"),
            format!("// {extra}\n").as_bytes(),
        )
        .build()
}

impl TestDepot {
    /// Starts `depot <role>` (`serve`, or `api` with the other roles run apart by
    /// [`RoleProcess`]) on NATS + PostgreSQL at the given URLs (private servers of a fault test)
    /// with extra `DEPOT_*` settings.
    pub(crate) async fn start_on_servers(
        nats_url: &str,
        database_url: &str,
        role: &'static str,
        extra: &[(&str, &str)],
    ) -> TestDepot {
        let data = tempfile::tempdir().expect("temp dir");
        let prefix = depot_testkit::unique_prefix();
        let mut env: Vec<(String, String)> = vec![
            ("DEPOT_DATA_DIR".into(), data.path().display().to_string()),
            ("DEPOT_LISTEN".into(), "127.0.0.1:0".into()),
            ("DEPOT_METRICS_LISTEN".into(), "127.0.0.1:0".into()),
            ("RUST_LOG".into(), "info".into()),
            ("DEPOT_UPSTREAM_INDEX".into(), "off".into()),
            ("DEPOT_NATS_URL".into(), nats_url.to_owned()),
            ("DEPOT_NATS_STREAM".into(), prefix.to_ascii_uppercase()),
            ("DEPOT_NATS_PREFIX".into(), prefix.clone()),
            ("DEPOT_DATABASE_URL".into(), database_url.to_owned()),
        ];
        for (k, v) in extra {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let (child, url, output) = spawn_role(&env, role);
        let log = JetStreamLog::connect(&JetStreamConfig {
            stream: prefix.to_ascii_uppercase(),
            subject_prefix: prefix,
            ..JetStreamConfig::new(nats_url.to_owned())
        })
        .await
        .expect("connect to the event log");
        let store = Store::connect(database_url, 2)
            .await
            .expect("connect to the read models");
        TestDepot {
            child,
            role,
            url,
            _db: None,
            bucket: None,
            env,
            output,
            data,
            log: Arc::new(log),
            store,
            http: reqwest::Client::new(),
        }
    }

    /// Whether the process has exited, and how.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The value of one of its settings (`DEPOT_NATS_STREAM`, …), if set.
    pub(crate) fn setting(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// What the process printed so far (standard error, standard output marked `stdout: `).
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Starts another role (`projector` or `extractor`) with this Depot's settings.
    pub(crate) fn spawn_role_process(&self, role: &'static str) -> RoleProcess {
        RoleProcess::start(&self.env, role)
    }

    /// Every event of the log, in order.
    pub(crate) async fn events(&self) -> Vec<(u64, depot_events::Envelope)> {
        let head = self.log_head().await;
        let mut events = Vec::new();
        if head == 0 {
            return events;
        }
        let mut stream = self.log.read_from(1).await.expect("read the log");
        while let Some(event) = futures::StreamExt::next(&mut stream).await {
            let event = event.expect("read an event");
            let envelope =
                depot_events::Envelope::decode(&event.payload).expect("a decodable event");
            events.push((event.seq, envelope));
            if event.seq >= head {
                break;
            }
        }
        events
    }

    /// GETs `path` (from the root): (status, body).
    pub(crate) async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let res = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request to depot");
        let status = res.status().as_u16();
        (status, res.bytes().await.expect("body").to_vec())
    }

    /// GETs a `.crate` through the download endpoint: (status, bytes).
    pub(crate) async fn download(&self, name: &str, vers: &str) -> (u16, Vec<u8>) {
        let res = self
            .http
            .get(format!("{}/api/v1/crates/{name}/{vers}/download", self.url))
            .send()
            .await
            .expect("download request");
        let status = res.status().as_u16();
        (status, res.bytes().await.expect("download body").to_vec())
    }
}

/// A role of Depot run as its own process (`depot projector`, `depot extractor`), killed on
/// drop.
pub(crate) struct RoleProcess {
    child: Child,
    role: &'static str,
    env: Vec<(String, String)>,
    output: Arc<Mutex<String>>,
}

impl RoleProcess {
    fn start(env: &[(String, String)], role: &'static str) -> RoleProcess {
        let mut child = depot_command(env)
            .arg(role)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a depot role");
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        RoleProcess {
            child,
            role,
            env: env.to_vec(),
            output,
        }
    }

    /// Sends SIGKILL (a crash) and waits for the process.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the role again with the same settings (after [`RoleProcess::kill`]).
    pub(crate) fn start_again(&mut self) {
        self.kill();
        let fresh = RoleProcess::start(&self.env, self.role);
        let old = std::mem::replace(self, fresh);
        self.output
            .lock()
            .unwrap()
            .insert_str(0, &old.output.lock().unwrap());
    }

    /// Whether the process has exited, and how.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What the process logged so far.
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for RoleProcess {
    #[expect(
        clippy::print_stderr,
        reason = "shows the role's log when a test fails"
    )]
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- depot {} output ---\n{}",
                self.role,
                self.output.lock().unwrap()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `depot api` process started by [`TestDepot::another_api`], killed on drop.
pub(crate) struct ApiProcess(Child);

impl Drop for ApiProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
