//! An in-process Depot, like crates.io's `TestApp`: the api router, the projector and the
//! extractor run inside the test process on the real backends (NATS JetStream + PostgreSQL, or
//! the embedded SQLite log and read models), served on a loopback port. Starting one costs a
//! database and a stream, not a process, so API tests that need many principals and requests
//! (the auth matrix) run fast. Users and tokens of every kind are made by appending their
//! events, as the CLI and the trusted-publishing exchange do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use depot_api::{ApiConfig, AppState, EdgeLimits};
use depot_cratefile::{ManifestLimits, PublishLimits, TarballLimits};
use depot_eventlog::{
    EventLog, Expected, JetStreamConfig, JetStreamLog, LocalNotifier, Notifier, SqliteLog,
};
use depot_events::{
    Envelope, Event, Timestamp, TokenIssued, TokenKind, TokenRevoked, TokenScope, UserChanged,
    UserCreated,
};
use depot_extractor::{Extractor, ExtractorConfig};
use depot_index::Login;
use depot_projector::{CRATE_CHANGED_TOPIC, Projector};
use depot_store::{BlobStore, Store, Target};
use depot_testkit::TestDatabase;
use tokio::sync::watch;

use crate::support::Setup;

/// Settings of a [`TestApp`].
#[derive(Debug, Clone, Default)]
pub(crate) struct AppOptions {
    /// `DEPOT_AUTH_REQUIRED`.
    pub(crate) auth_required: bool,
    /// `DEPOT_UPSTREAM_INDEX` (`None`: off).
    pub(crate) upstream_index: Option<String>,
}

/// A Depot running inside the test process.
pub(crate) struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) store: Store,
    pub(crate) http: reqwest::Client,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _db: Option<TestDatabase>,
    _data: tempfile::TempDir,
}

impl TestApp {
    /// Starts the api, projector and extractor on fresh backends of `setup`.
    pub(crate) async fn start(setup: Setup, options: AppOptions) -> TestApp {
        let data = tempfile::tempdir().expect("temp dir");
        let (log, notifier, store, db): (Arc<dyn EventLog>, Arc<dyn Notifier>, Store, _) =
            match setup {
                Setup::Production | Setup::S3 => {
                    let db = TestDatabase::new().await;
                    let prefix = depot_testkit::unique_prefix();
                    let log = JetStreamLog::connect(&JetStreamConfig {
                        stream: prefix.to_ascii_uppercase(),
                        subject_prefix: prefix,
                        ..JetStreamConfig::new(depot_testkit::nats_url())
                    })
                    .await
                    .expect("connect to the test event log");
                    let notifier = Arc::new(log.notifier());
                    let store = Store::connect(db.url(), 8)
                        .await
                        .expect("connect to the test database");
                    (Arc::new(log), notifier, store, Some(db))
                }
                Setup::Embedded => {
                    let log = SqliteLog::open(&data.path().join("events.sqlite"))
                        .await
                        .expect("open the embedded log");
                    let store = Store::open_sqlite(&data.path().join("read-models.sqlite"))
                        .await
                        .expect("open the embedded read models");
                    (Arc::new(log), Arc::new(LocalNotifier::new()), store, None)
                }
            };
        let blobs = BlobStore::open(&data.path().join("blobs"))
            .await
            .expect("open the blob store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let own_index_urls = vec![format!("sparse+{url}/index/"), format!("{url}/index/")];
        let publish_limits = PublishLimits {
            own_index_urls: own_index_urls.clone(),
            ..PublishLimits::default()
        };
        let tarball_limits = TarballLimits {
            own_index_urls,
            manifest: ManifestLimits::from_publish(&publish_limits),
            ..TarballLimits::default()
        };

        let (stop, stop_rx) = watch::channel(false);
        let stopped = || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut tasks = Vec::new();
        let projector = Projector::new(
            log.clone(),
            store.clone(),
            Some(notifier.clone()),
            Target::Active,
        );
        let stop_projector = stopped();
        tasks.spawn_logged(
            "projector",
            async move { projector.run(stop_projector).await },
        );
        let extractor = Extractor::new(
            log.clone(),
            blobs.clone(),
            ExtractorConfig::new(tarball_limits.clone(), publish_limits.clone()),
        );
        let stop_extractor = stopped();
        tasks.spawn_logged(
            "extractor",
            async move { extractor.run(stop_extractor).await },
        );
        let config = ApiConfig {
            public_url: url.clone(),
            max_crate_size: 10 << 20,
            max_json_size: 1 << 20,
            publish_limits,
            tarball_limits,
            publish_wait: Duration::from_secs(30),
            command_wait: Duration::from_secs(10),
            index_cache_ttl: Duration::from_secs(5),
            limits: EdgeLimits::default(),
            auth_required: options.auth_required,
            default_token_lifetime: Some(Duration::from_secs(90 * 24 * 3600)),
            trusted_publishing: depot_api::TrustedPublishingConfig::default(),
            blob_redirect: None,
            upstream: depot_api::UpstreamConfig {
                index: options
                    .upstream_index
                    .as_deref()
                    .map(|url| depot_api::UpstreamIndex::parse(url).expect("an upstream URL")),
                ..depot_api::UpstreamConfig::default()
            },
            docs: depot_api::DocsConfig::default(),
            webhooks: depot_api::WebhooksApiConfig {
                key: Some(depot_webhooks::WebhookKey::generate()),
                ..depot_api::WebhooksApiConfig::default()
            },
        };
        let state = AppState::new(config, log.clone(), store.clone(), blobs);
        let listener_task =
            depot_api::spawn_change_listener(state.clone(), notifier, CRATE_CHANGED_TOPIC);
        let flusher = state.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = flusher.flush_downloads().await;
            }
        }));
        let app = depot_api::router(state);
        let stop_server = stopped();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop_server)
                .await;
        }));
        tasks.push(listener_task);
        TestApp {
            url,
            log,
            store,
            http: reqwest::Client::new(),
            stop,
            tasks,
            _db: db,
            _data: data,
        }
    }

    /// Appends an event as the command line would (`depot:admin`); returns its sequence.
    pub(crate) async fn append(&self, subject: &str, event: Event) -> u64 {
        let envelope = Envelope::new("depot:admin", event);
        self.log
            .append(
                subject,
                Expected::Any,
                &envelope.id.to_string(),
                Bytes::from(envelope.encode()),
            )
            .await
            .expect("append to the test log")
            .seq
    }

    /// Waits until the projector has applied event `seq`.
    pub(crate) async fn projected(&self, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let generation = self.store.active_generation().await.unwrap();
            if self.store.checkpoint(generation).await.unwrap() >= seq {
                return;
            }
            assert!(Instant::now() < deadline, "event {seq} was never projected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Creates a user (an admin if asked).
    pub(crate) async fn user(&self, login: &str, admin: bool) {
        let seq = self
            .append(
                &principal(login),
                Event::UserCreated(UserCreated {
                    login: login.to_owned(),
                    admin,
                }),
            )
            .await;
        self.projected(seq).await;
    }

    /// Disables a user.
    pub(crate) async fn disable(&self, login: &str) {
        let seq = self
            .append(
                &principal(login),
                Event::UserDisabled(UserChanged {
                    login: login.to_owned(),
                }),
            )
            .await;
        self.projected(seq).await;
    }

    /// Issues a token and returns its secret and id once the read models have it.
    pub(crate) async fn token(&self, spec: TokenFor<'_>) -> (String, uuid::Uuid) {
        let secret = depot_auth::generate_secret();
        let (user, subject) = match spec.kind {
            TokenKind::Personal => (spec.holder.to_owned(), principal(spec.holder)),
            TokenKind::Deploy => (
                format!("deploy:{}", spec.holder),
                depot_events::subject::deploy(&Login::parse(spec.holder).unwrap()),
            ),
            TokenKind::Ci => (
                format!("ci:{}", spec.holder),
                depot_events::subject::oidc(&depot_auth::hash_secret(&secret)),
            ),
        };
        let token = TokenIssued {
            token_id: uuid::Uuid::now_v7(),
            user,
            secret_sha256: depot_auth::hash_secret(&secret),
            kind: spec.kind,
            label: None,
            scopes: spec.scopes.to_vec(),
            crates: spec.crates.iter().map(|c| (*c).to_owned()).collect(),
            // As trusted publishing mints them: CI tokens read every crate.
            read_crates: (spec.kind == TokenKind::Ci).then(Vec::new),
            expires_at: spec.expires_at,
            created_by: Some("depot:admin".to_owned()),
            oidc: None,
        };
        let id = token.token_id;
        let seq = self.append(&subject, Event::TokenIssued(token)).await;
        self.projected(seq).await;
        (secret, id)
    }

    /// Revokes a personal token of `login`.
    pub(crate) async fn revoke(&self, login: &str, token_id: uuid::Uuid) {
        let seq = self
            .append(
                &principal(login),
                Event::TokenRevoked(TokenRevoked { token_id }),
            )
            .await;
        self.projected(seq).await;
    }

    /// Sends a request with an optional `Authorization` value and body; returns the status,
    /// the `WWW-Authenticate` header and the body.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Option<String>, Vec<u8>) {
        let mut request = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.url),
        );
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        if body.first() == Some(&b'{') {
            request = request.header("Content-Type", "application/json");
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request.send().await.expect("send a request");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, challenge, response.bytes().await.unwrap().to_vec())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What [`TestApp::token`] issues.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenFor<'a> {
    pub(crate) kind: TokenKind,
    /// A login (personal), a deploy name, or a CI subject.
    pub(crate) holder: &'a str,
    pub(crate) scopes: &'a [TokenScope],
    pub(crate) crates: &'a [&'a str],
    pub(crate) expires_at: Option<Timestamp>,
}

impl<'a> TokenFor<'a> {
    /// A personal token of `login` with every scope, for every crate.
    pub(crate) fn personal(login: &'a str) -> TokenFor<'a> {
        TokenFor {
            kind: TokenKind::Personal,
            holder: login,
            scopes: &[],
            crates: &[],
            expires_at: None,
        }
    }
}

fn principal(login: &str) -> String {
    depot_events::subject::principal(&Login::parse(login).unwrap())
}

trait SpawnLogged {
    fn spawn_logged(
        &mut self,
        role: &'static str,
        task: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    );
}

impl SpawnLogged for Vec<tokio::task::JoinHandle<()>> {
    fn spawn_logged(
        &mut self,
        role: &'static str,
        task: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.push(tokio::spawn(async move {
            if let Err(e) = task.await {
                panic!("the in-process {role} failed: {e:#}");
            }
        }));
    }
}
