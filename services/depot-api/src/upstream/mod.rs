//! The upstream-registry cache: a pull-through proxy of crates.io, or of any sparse registry,
//! served as its own sparse index under `/crates-io/index/` for cargo's source replacement.
//!
//! - **Index files** are fetched on demand and passed through byte for byte: the body served is
//!   the body upstream sent, stored as a blob. A file is revalidated with a conditional request
//!   (`If-None-Match` / `If-Modified-Since`) once it is older than `max_age`; "not found" is
//!   remembered for `negative_ttl`; when upstream fails, the stored copy is served stale (with
//!   a metric and a log line) and upstream is asked again after a short back-off.
//! - **`.crate` files** are fetched on first download, streamed into the blob store while
//!   hashed, and kept only if their sha256 equals the `cksum` of their index line; a mismatch is
//!   refused and reported. Later downloads are served from the blob store.
//! - **The log** records what entered the cache (`upstream_index_stored` when a file's content
//!   changed, `upstream_crate_stored` once per version), on `upstream.<name>` subjects; the
//!   bodies stay in blobs. Replay and `depot verify` cover the cache like everything else.
//! - **Fetches run detached** from the request that started them, one per file or version at a
//!   time however many requests want it (they share its outcome), and at most
//!   [`UpstreamConfig::max_fetches`] at once: a client that gives up or times out neither
//!   cancels a download other requests wait for nor leaves half a blob behind.
//!
//! With the upstream `off`, the routes serve what is cached (an imported offline mirror) and
//! never go out.

mod routes;

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use bytes::{Bytes, BytesMut};
use depot_eventlog::Expected;
use depot_events::{Envelope, Event, UpstreamCrateStored, UpstreamIndexStored};
use depot_index::CrateName;
use depot_store::BlobStore;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::{ApiError, AppState};

pub(crate) use routes::{config_json, download, index_file};

/// The actor of the events the cache appends.
const ACTOR: &str = "depot:upstream";
/// The most bytes of an upstream `config.json`.
const MAX_CONFIG_SIZE: usize = 64 << 10;
/// After an upstream failure, how long a stale copy is served before upstream is asked again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Without an upstream, how long the stored copy of a file (or its absence) is remembered
/// before the read models are asked again (an import may have added it).
const OFFLINE_RECHECK: Duration = Duration::from_secs(2);
/// Upstream fetches in progress (running or waiting for a turn) per kind and api process.
const MAX_FLIGHTS: usize = 1024;
/// Bookkeeping bytes counted per cached file on top of its body.
const ENTRY_OVERHEAD: usize = 256;

/// Settings of the upstream-registry cache.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The upstream sparse index; `None` (`off`) serves only what is cached.
    pub index: Option<UpstreamIndex>,
    /// How long a fetched index file is served before it is revalidated upstream.
    pub max_age: Duration,
    /// How long upstream's "no such crate" is remembered.
    pub negative_ttl: Duration,
    /// Connect and read timeout of upstream requests (a whole index file or `config.json`
    /// must arrive within it too; a `.crate` may take longer while bytes keep coming).
    pub timeout: Duration,
    /// The largest upstream index file accepted, in bytes.
    pub max_index_size: u64,
    /// The largest upstream `.crate` accepted, in bytes.
    pub max_crate_size: u64,
    /// Sent as `Authorization` to the upstream (a registry that requires authentication,
    /// such as another Depot with `auth-required`).
    pub token: Option<String>,
    /// Upstream fetches running at once in this process; more wait for a turn.
    pub max_fetches: usize,
    /// Memory for index files, in bytes (bodies and bookkeeping); as much again for the bytes of
    /// small stored crates.
    pub cache_bytes: usize,
    /// Index files (and remembered misses) kept in memory; as many stored crates too (within
    /// another `cache_bytes`).
    pub cache_entries: usize,
    /// The dependency-confusion guard: refuse the first publish of a crate whose name (in any
    /// `-`/`_` spelling) exists upstream, unless an admin allowed the name.
    pub guard: bool,
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig {
            index: None,
            max_age: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            max_index_size: 32 << 20,
            max_crate_size: 10 << 20,
            token: None,
            max_fetches: 32,
            cache_bytes: 64 << 20,
            cache_entries: 10_000,
            guard: true,
        }
    }
}

/// An upstream sparse index URL: `sparse+http(s)://…/`, kept with a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIndex {
    sparse: String,
    base: reqwest::Url,
}

impl UpstreamIndex {
    /// The crates.io index.
    pub const CRATES_IO: &'static str = "sparse+https://index.crates.io/";

    /// Parses `sparse+http://…` or `sparse+https://…` (a missing trailing `/` is added).
    pub fn parse(text: &str) -> Result<UpstreamIndex, String> {
        let Some(url) = text.strip_prefix("sparse+") else {
            return Err(format!(
                "the upstream index `{text}` is not a sparse registry URL (`sparse+https://…/`)"
            ));
        };
        let mut base = reqwest::Url::parse(url)
            .map_err(|e| format!("the upstream index `{text}` is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(format!(
                "the upstream index `{text}` must be an http(s) URL with a host"
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(format!(
                "the upstream index `{text}` must not have a query or fragment"
            ));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(UpstreamIndex {
            sparse: format!("sparse+{base}"),
            base,
        })
    }

    /// `sparse+…/`, as cargo is configured with it.
    pub fn as_str(&self) -> &str {
        &self.sparse
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, Failure> {
        self.base
            .join(path)
            .map_err(|e| Failure::bad_gateway(format!("bad upstream URL for `{path}`: {e}")))
    }
}

/// An index file as the cache serves it: upstream's body, untouched.
#[derive(Debug)]
pub(crate) struct ProxiedFile {
    body: Bytes,
    /// The blob holding `body`.
    blob: String,
    /// This cache's strong ETag of the body (its sha256).
    etag: HeaderValue,
    /// Upstream's validators of the body, for conditional revalidation.
    upstream_etag: Option<String>,
    upstream_last_modified: Option<String>,
}

impl ProxiedFile {
    fn new(
        body: Bytes,
        upstream_etag: Option<String>,
        upstream_last_modified: Option<String>,
    ) -> ProxiedFile {
        let sha = hex::encode(Sha256::digest(&body));
        ProxiedFile {
            blob: BlobStore::key_for(&sha),
            etag: HeaderValue::from_str(&format!("\"{sha}\"")).expect("hex is a valid header"),
            body,
            upstream_etag,
            upstream_last_modified,
        }
    }
}

/// An upstream `.crate` in the blob store.
#[derive(Debug, Clone)]
pub(crate) struct CachedCrate {
    pub(crate) key: String,
    pub(crate) size: u64,
}

/// Why the cache could not answer; shared by every request waiting on the same fetch.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    status: StatusCode,
    detail: String,
}

impl Failure {
    fn bad_gateway(detail: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_GATEWAY,
            detail: detail.into(),
        }
    }

    fn not_found(detail: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
        }
    }

    fn internal(cause: impl std::fmt::Display) -> Failure {
        let error = ApiError::internal(cause);
        Failure {
            status: error.status(),
            detail: error.details().join(", "),
        }
    }
}

impl From<depot_store::StoreError> for Failure {
    fn from(e: depot_store::StoreError) -> Failure {
        Failure::internal(e)
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> ApiError {
        ApiError::new(failure.status, failure.detail)
    }
}

/// What this process knows of one index file: its body, or that upstream has none.
#[derive(Debug, Clone)]
struct Known {
    file: Option<Arc<ProxiedFile>>,
    /// Until when it is served without asking upstream.
    fresh_until: Instant,
    cost: usize,
}

/// Index files in memory, least recently used evicted first beyond the bounds.
#[derive(Debug)]
struct FileCache {
    files: LruCache<String, Known>,
    bytes: usize,
    max_bytes: usize,
}

impl FileCache {
    fn put(&mut self, name: &str, file: Option<Arc<ProxiedFile>>, fresh_for: Duration) {
        let cost = name.len() + ENTRY_OVERHEAD + file.as_ref().map_or(0, |f| f.body.len());
        if let Some(old) = self.files.pop(name) {
            self.bytes -= old.cost;
        }
        if cost > self.max_bytes {
            return;
        }
        let known = Known {
            file,
            fresh_until: Instant::now() + fresh_for,
            cost,
        };
        if let Some((_, evicted)) = self.files.push(name.to_owned(), known) {
            self.bytes -= evicted.cost;
        }
        self.bytes += cost;
        while self.bytes > self.max_bytes {
            let Some((_, evicted)) = self.files.pop_lru() else {
                break;
            };
            self.bytes -= evicted.cost;
        }
    }
}

/// A fetch shared by every request that wants its outcome.
type Flight<T> = Shared<BoxFuture<'static, Result<T, Failure>>>;

/// Fetches in progress by key: a second request for the same key joins the first one's.
struct Flights<T> {
    running: Arc<Mutex<HashMap<String, Flight<T>>>>,
}

impl<T> std::fmt::Debug for Flights<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.running.lock().map_or(0, |r| r.len());
        f.debug_struct("Flights")
            .field("running", &running)
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    fn new() -> Flights<T> {
        Flights {
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The outcome of the fetch of `key`: joins the one in progress, or spawns `work` (which
    /// then runs to its end even if every request waiting on it goes away). Refused (503) when
    /// [`MAX_FLIGHTS`] fetches are in progress already: fetches outlive their requests, so
    /// without a cap a flood of names upstream answers slowly would pile up tasks.
    fn run(
        &self,
        key: String,
        work: impl Future<Output = Result<T, Failure>> + Send + 'static,
    ) -> Result<Flight<T>, ApiError> {
        let mut running = self.running.lock().expect("flights lock");
        if let Some(flight) = running.get(&key) {
            return Ok(flight.clone());
        }
        if running.len() >= MAX_FLIGHTS {
            return Err(ApiError::unavailable(
                "too many requests to the upstream registry are in progress; try again shortly",
            )
            .with_retry_after(RETRY_AFTER_FAILURE));
        }
        // Leaves the map when the task ends, however it ends (a panic included).
        struct Done<T> {
            running: Arc<Mutex<HashMap<String, Flight<T>>>>,
            key: String,
        }
        impl<T> Drop for Done<T> {
            fn drop(&mut self) {
                if let Ok(mut running) = self.running.lock() {
                    running.remove(&self.key);
                }
            }
        }
        let done = Done {
            running: Arc::clone(&self.running),
            key: key.clone(),
        };
        let task = tokio::spawn(async move {
            let _done = done;
            work.await
        });
        let flight = async move {
            task.await
                .unwrap_or_else(|e| Err(Failure::internal(format!("upstream fetch failed: {e}"))))
        }
        .boxed()
        .shared();
        running.insert(key, flight.clone());
        Ok(flight)
    }
}

/// The cache's state in an api process.
#[derive(Debug)]
pub(crate) struct Proxy {
    config: UpstreamConfig,
    client: reqwest::Client,
    files: Mutex<FileCache>,
    /// Upstream's `dl` template, with when it was read.
    dl: Mutex<Option<(String, Instant)>>,
    index_flights: Flights<Option<Arc<ProxiedFile>>>,
    crate_flights: Flights<CachedCrate>,
    fetches: Arc<Semaphore>,
    /// Stored crates: the bytes of small ones, the blob of larger ones (a stored upstream
    /// version never changes, so nothing is invalidated).
    crates: crate::downloads::DownloadCache,
}

impl Proxy {
    pub(crate) fn new(config: UpstreamConfig) -> Proxy {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout)
            .user_agent(concat!("depot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client's settings are valid");
        Proxy {
            files: Mutex::new(FileCache {
                files: LruCache::new(
                    NonZeroUsize::new(config.cache_entries).unwrap_or(NonZeroUsize::MIN),
                ),
                bytes: 0,
                max_bytes: config.cache_bytes,
            }),
            dl: Mutex::new(None),
            index_flights: Flights::new(),
            crate_flights: Flights::new(),
            fetches: Arc::new(Semaphore::new(config.max_fetches.max(1))),
            crates: crate::downloads::DownloadCache::new(crate::downloads::DownloadCacheBounds {
                max_bytes: config.cache_bytes,
                max_entries: NonZeroUsize::new(config.cache_entries).unwrap_or(NonZeroUsize::MIN),
            }),
            client,
            config,
        }
    }

    /// The file known for `name` while it is fresh: `Some(None)` for a remembered miss.
    fn fresh(&self, name: &str) -> Option<Option<Arc<ProxiedFile>>> {
        let mut files = self.files.lock().expect("upstream cache lock");
        let known = files.files.get(name)?;
        (Instant::now() < known.fresh_until).then(|| known.file.clone())
    }

    /// The file known for `name`, however old.
    fn known(&self, name: &str) -> Option<Arc<ProxiedFile>> {
        let mut files = self.files.lock().expect("upstream cache lock");
        files.files.get(name).and_then(|known| known.file.clone())
    }

    fn remember(&self, name: &str, file: Option<Arc<ProxiedFile>>, fresh_for: Duration) {
        let mut files = self.files.lock().expect("upstream cache lock");
        files.put(name, file, fresh_for);
    }

    fn request(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        let request = self.client.get(url);
        match &self.config.token {
            Some(token) => request.header(reqwest::header::AUTHORIZATION, token),
            None => request,
        }
    }
}

fn count(kind: &str, result: &str) {
    depot_telemetry::metrics()
        .upstream_requests
        .with_label_values(&[kind, result])
        .inc();
}

fn upstream_error(kind: &str, reason: &str) {
    depot_telemetry::metrics()
        .upstream_errors
        .with_label_values(&[kind, reason])
        .inc();
}

/// Reads a response body of at most `max` bytes.
async fn read_capped(response: reqwest::Response, max: u64) -> Result<Bytes, FetchError> {
    if response.content_length().is_some_and(|len| len > max) {
        return Err(FetchError::TooLarge);
    }
    let mut body = BytesMut::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(FetchError::Unreachable)?;
        if (body.len() + chunk.len()) as u64 > max {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Why an upstream request failed.
#[derive(Debug)]
enum FetchError {
    Unreachable(reqwest::Error),
    Status(StatusCode),
    TooLarge,
    Invalid(String),
}

impl FetchError {
    fn reason(&self) -> &'static str {
        match self {
            FetchError::Unreachable(e) if e.is_timeout() => "timeout",
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Status(_) => "status",
            FetchError::TooLarge => "too_large",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(e) => write!(f, "upstream unreachable: {e}"),
            FetchError::Status(status) => write!(f, "upstream answered {status}"),
            FetchError::TooLarge => f.write_str("upstream sent more than the size limit"),
            FetchError::Invalid(why) => write!(f, "upstream sent an invalid answer: {why}"),
        }
    }
}

/// Upstream's answer to an index file request.
enum Fetched {
    NotModified,
    Body {
        body: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotFound,
}

fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 1024)
        .map(str::to_owned)
}

/// Asks upstream for the index file of `name`, conditionally if a copy is known.
async fn fetch_index(
    proxy: &Proxy,
    upstream: &UpstreamIndex,
    name: &CrateName,
    known: Option<&ProxiedFile>,
) -> Result<Fetched, FetchError> {
    let url = upstream
        .url(&name.index_path())
        .map_err(|f| FetchError::Invalid(f.detail))?;
    let mut request = proxy.request(url).timeout(proxy.config.timeout);
    if let Some(known) = known {
        if let Some(etag) = &known.upstream_etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &known.upstream_last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
        }
    }
    let response = request.send().await.map_err(FetchError::Unreachable)?;
    match response.status() {
        StatusCode::OK => {
            let etag = header_text(&response, reqwest::header::ETAG);
            let last_modified = header_text(&response, reqwest::header::LAST_MODIFIED);
            let body = read_capped(response, proxy.config.max_index_size).await?;
            Ok(Fetched::Body {
                body,
                etag,
                last_modified,
            })
        }
        StatusCode::NOT_MODIFIED if known.is_some() => Ok(Fetched::NotModified),
        // What cargo itself reads as "no such crate".
        StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS => {
            Ok(Fetched::NotFound)
        }
        status => Err(FetchError::Status(status)),
    }
}

/// Appends an event about `name` to the log; false if it could not (logged).
async fn record(state: &AppState, name: &CrateName, event: Event, msg_id: String) -> bool {
    let envelope = Envelope::new(ACTOR, event);
    let kind = envelope.kind().to_owned();
    let subject = depot_events::subject::upstream(name);
    match state
        .log()
        .append(
            &subject,
            Expected::Any,
            &msg_id,
            Bytes::from(envelope.encode()),
        )
        .await
    {
        Ok(appended) => {
            if !appended.duplicate {
                depot_telemetry::metrics()
                    .events_appended
                    .with_label_values(&[kind.as_str()])
                    .inc();
            }
            true
        }
        // The bytes are stored and served; the next request records them again.
        Err(e) => {
            tracing::warn!(error = %e, krate.name = %name, event.kind = %kind,
                "could not record what the upstream cache stored");
            false
        }
    }
}

/// The index file of `name` as stored earlier (the read model and its blob).
async fn load_stored(
    state: &AppState,
    name: &CrateName,
) -> Result<Option<Arc<ProxiedFile>>, Failure> {
    let Some(row) = state.store().upstream_index(name.as_str()).await? else {
        return Ok(None);
    };
    let max = state.proxy().config.max_index_size.max(row.size);
    let Some(body) = state.inner.blobs.read_capped(&row.blob, max).await? else {
        tracing::error!(krate.name = %name, blob = %row.blob,
            "the stored upstream index file is missing from the blob store; fetching it again");
        return Ok(None);
    };
    let file = ProxiedFile::new(Bytes::from(body), row.etag, row.last_modified);
    if file.blob != row.blob {
        tracing::error!(krate.name = %name, blob = %row.blob,
            "the stored upstream index file does not match its address; fetching it again");
        return Ok(None);
    }
    Ok(Some(Arc::new(file)))
}

/// The index file of `name` (lowercase): fresh from memory, else revalidated or fetched.
pub(crate) async fn index_lookup(
    state: &AppState,
    name: &CrateName,
) -> Result<Option<Arc<ProxiedFile>>, ApiError> {
    let proxy = state.proxy();
    if let Some(file) = proxy.fresh(name.as_str()) {
        count("index", "hit");
        return Ok(file);
    }
    let flight = proxy
        .index_flights
        .run(name.to_string(), refresh_index(state.clone(), name.clone()))?;
    Ok(flight.await?)
}

/// Revalidates or fetches the index file of `name`, stores a changed body and remembers the
/// outcome.
async fn refresh_index(
    state: AppState,
    name: CrateName,
) -> Result<Option<Arc<ProxiedFile>>, Failure> {
    let proxy = state.proxy();
    // A remembered miss is asked again too: an import may have stored the file since.
    let known = match proxy.known(name.as_str()) {
        Some(known) => Some(known),
        None => load_stored(&state, &name).await?,
    };
    let config = &proxy.config;
    let Some(upstream) = &config.index else {
        count("index", "offline");
        proxy.remember(name.as_str(), known.clone(), OFFLINE_RECHECK);
        return Ok(known);
    };
    let _turn = proxy.fetches.acquire().await.map_err(Failure::internal)?;
    let started = Instant::now();
    let fetched = fetch_index(proxy, upstream, &name, known.as_deref()).await;
    depot_telemetry::metrics()
        .upstream_fetch_duration
        .with_label_values(&["index"])
        .observe(started.elapsed().as_secs_f64());
    match fetched {
        Ok(Fetched::NotModified) => {
            count("index", "revalidated");
            proxy.remember(name.as_str(), known.clone(), config.max_age);
            Ok(known)
        }
        Ok(Fetched::Body {
            body,
            etag,
            last_modified,
        }) => {
            let file = Arc::new(ProxiedFile::new(body, etag, last_modified));
            if known.as_ref().is_some_and(|k| k.blob == file.blob) {
                count("index", "revalidated");
            } else {
                count("index", "fetched");
                state.inner.blobs.put(&file.body).await?;
                let event = Event::UpstreamIndexStored(UpstreamIndexStored {
                    name: name.to_string(),
                    blob: file.blob.clone(),
                    size: file.body.len() as u64,
                    etag: file.upstream_etag.clone(),
                    last_modified: file.upstream_last_modified.clone(),
                    upstream: upstream.as_str().to_owned(),
                });
                if !record(&state, &name, event, uuid::Uuid::now_v7().to_string()).await {
                    // Served, but not remembered: the next request fetches and records it.
                    return Ok(Some(file));
                }
            }
            proxy.remember(name.as_str(), Some(file.clone()), config.max_age);
            Ok(Some(file))
        }
        Ok(Fetched::NotFound) => {
            count("index", "not_found");
            proxy.remember(name.as_str(), None, config.negative_ttl);
            Ok(None)
        }
        Err(e) => {
            upstream_error("index", e.reason());
            match known {
                Some(known) => {
                    count("index", "stale");
                    tracing::warn!(krate.name = %name, error = %e,
                        "upstream failed; serving the stored index file");
                    proxy.remember(
                        name.as_str(),
                        Some(known.clone()),
                        RETRY_AFTER_FAILURE.min(config.max_age),
                    );
                    Ok(Some(known))
                }
                None => {
                    count("index", "unavailable");
                    tracing::warn!(krate.name = %name, error = %e,
                        "upstream failed and no copy of the index file is stored");
                    Err(Failure::bad_gateway(format!(
                        "the upstream registry could not be asked for `{name}` ({e}) and no copy \
                         is cached; try again later"
                    )))
                }
            }
        }
    }
}

/// Upstream's `dl` template: read from its `config.json`, reused for `max_age`, and reused
/// beyond it while upstream cannot be reached.
async fn dl_template(proxy: &Proxy, upstream: &UpstreamIndex) -> Result<String, Failure> {
    let previous = proxy.dl.lock().expect("dl lock").clone();
    if let Some((template, read)) = &previous
        && read.elapsed() < proxy.config.max_age
    {
        return Ok(template.clone());
    }
    let started = Instant::now();
    let fetched = async {
        let response = proxy
            .request(
                upstream
                    .url("config.json")
                    .map_err(|f| FetchError::Invalid(f.detail))?,
            )
            .timeout(proxy.config.timeout)
            .send()
            .await
            .map_err(FetchError::Unreachable)?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let body = read_capped(response, MAX_CONFIG_SIZE as u64).await?;
        #[derive(serde::Deserialize)]
        struct Config {
            dl: String,
        }
        let config: Config = serde_json::from_slice(&body)
            .map_err(|e| FetchError::Invalid(format!("config.json: {e}")))?;
        let url = reqwest::Url::parse(&config.dl.replace(['{', '}'], ""))
            .map_err(|e| FetchError::Invalid(format!("config.json `dl`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Invalid(
                "config.json `dl` is not http(s)".into(),
            ));
        }
        Ok(config.dl)
    }
    .await;
    depot_telemetry::metrics()
        .upstream_fetch_duration
        .with_label_values(&["config"])
        .observe(started.elapsed().as_secs_f64());
    match fetched {
        Ok(template) => {
            *proxy.dl.lock().expect("dl lock") = Some((template.clone(), Instant::now()));
            Ok(template)
        }
        Err(e) => {
            upstream_error("config", e.reason());
            match previous {
                Some((template, _)) => Ok(template),
                None => Err(Failure::bad_gateway(format!(
                    "the upstream registry's config.json could not be read: {e}"
                ))),
            }
        }
    }
}

/// The stored `.crate` of `name` (lowercase) `vers`: from the blob store, else fetched upstream
/// and verified against the `cksum` of its index line.
pub(crate) async fn crate_lookup(
    state: &AppState,
    name: &CrateName,
    vers: &str,
) -> Result<CachedCrate, ApiError> {
    if let Some(row) = state.store().upstream_crate(name.as_str(), vers).await? {
        let key = BlobStore::key_for(&row.cksum);
        if state.inner.blobs.size_of(&key).await?.is_some() {
            count("crate", "hit");
            return Ok(CachedCrate {
                key,
                size: row.size,
            });
        }
        tracing::error!(krate.name = %name, krate.version = vers, blob = %key,
            "a stored upstream .crate is missing from the blob store; fetching it again");
    }
    let Some(file) = index_lookup(state, name).await? else {
        return Err(ApiError::not_found(format!(
            "crate `{name}` is not in the upstream registry"
        )));
    };
    let Some((line_name, cksum)) = depot_index::upstream::cksum_of(&file.body, vers) else {
        return Err(ApiError::not_found(format!(
            "crate `{name}` has no version `{vers}` in the upstream registry"
        )));
    };
    // The name goes into a URL: only a valid spelling of the requested name is used.
    let line_name = if CrateName::parse(&line_name)
        .is_ok_and(|parsed| parsed.as_str().eq_ignore_ascii_case(name.as_str()))
    {
        line_name
    } else {
        name.to_string()
    };
    let flight = state.proxy().crate_flights.run(
        format!("{name} {vers}"),
        fetch_crate(
            state.clone(),
            name.clone(),
            line_name,
            vers.to_owned(),
            cksum,
        ),
    )?;
    Ok(flight.await?)
}

/// Downloads a `.crate` into the blob store if its sha256 is `cksum`, and records it.
async fn fetch_crate(
    state: AppState,
    name: CrateName,
    line_name: String,
    vers: String,
    cksum: String,
) -> Result<CachedCrate, Failure> {
    let proxy = state.proxy();
    let config = &proxy.config;
    let key = BlobStore::key_for(&cksum);
    let upstream_text = config
        .index
        .as_ref()
        .map_or_else(|| "off".to_owned(), |u| u.as_str().to_owned());
    let stored = |size: u64| {
        Event::UpstreamCrateStored(UpstreamCrateStored {
            name: line_name.clone(),
            vers: vers.clone(),
            cksum: cksum.clone(),
            size,
            upstream: upstream_text.clone(),
        })
    };
    let msg_id = format!("upstream-crate {name} {vers} {cksum}");
    // The same bytes may be stored already (fetched by another process, or imported).
    if let Some(size) = state.inner.blobs.size_of(&key).await? {
        count("crate", "hit");
        let _ = record(&state, &name, stored(size), msg_id).await;
        return Ok(CachedCrate { key, size });
    }
    let Some(upstream) = &config.index else {
        count("crate", "offline");
        return Err(Failure::not_found(format!(
            "`{name}` {vers} is not cached, and this registry has no upstream"
        )));
    };
    let template = dl_template(proxy, upstream).await?;
    let url = depot_index::upstream::download_url(&template, &line_name, &vers, &cksum);
    let url = reqwest::Url::parse(&url)
        .map_err(|e| Failure::bad_gateway(format!("bad upstream download URL `{url}`: {e}")))?;
    let _turn = proxy.fetches.acquire().await.map_err(Failure::internal)?;
    let started = Instant::now();
    let outcome = download_verified(&state, url, &cksum).await;
    depot_telemetry::metrics()
        .upstream_fetch_duration
        .with_label_values(&["crate"])
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(size) => {
            count("crate", "fetched");
            let _ = record(&state, &name, stored(size), msg_id).await;
            Ok(CachedCrate { key, size })
        }
        Err(Refusal::Mismatch(actual)) => {
            upstream_error("crate", "checksum");
            count("crate", "refused");
            tracing::error!(krate.name = %name, krate.version = %vers, expected = %cksum,
                %actual, "refused an upstream .crate whose sha256 does not match its index line");
            Err(Failure::bad_gateway(format!(
                "the upstream .crate of `{name}` {vers} has sha256 {actual}, but its index line \
                 says {cksum}; it was refused and not stored"
            )))
        }
        Err(Refusal::Fetch(FetchError::Status(StatusCode::NOT_FOUND))) => {
            upstream_error("crate", "status");
            count("crate", "not_found");
            Err(Failure::not_found(format!(
                "the upstream registry has no download for `{name}` {vers}"
            )))
        }
        Err(Refusal::Fetch(e)) => {
            upstream_error("crate", e.reason());
            count("crate", "unavailable");
            tracing::warn!(krate.name = %name, krate.version = %vers, error = %e,
                "could not download an upstream .crate");
            Err(Failure::bad_gateway(format!(
                "`{name}` {vers} could not be downloaded from the upstream registry ({e}); try \
                 again later"
            )))
        }
        Err(Refusal::Store(e)) => Err(Failure::internal(e)),
    }
}

/// Why a download was not stored.
enum Refusal {
    Mismatch(String),
    Fetch(FetchError),
    Store(depot_store::StoreError),
}

/// Streams `url` into the blob store, hashing it; keeps it only if its sha256 is `cksum`.
async fn download_verified(
    state: &AppState,
    url: reqwest::Url,
    cksum: &str,
) -> Result<u64, Refusal> {
    let proxy = state.proxy();
    let max = proxy.config.max_crate_size;
    let response = proxy
        .request(url)
        .send()
        .await
        .map_err(|e| Refusal::Fetch(FetchError::Unreachable(e)))?;
    if response.status() != StatusCode::OK {
        return Err(Refusal::Fetch(FetchError::Status(response.status())));
    }
    if response.content_length().is_some_and(|len| len > max) {
        return Err(Refusal::Fetch(FetchError::TooLarge));
    }
    let mut writer = state.inner.blobs.writer().await.map_err(Refusal::Store)?;
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                writer.discard().await;
                return Err(Refusal::Fetch(FetchError::Unreachable(e)));
            }
        };
        if writer.size() + chunk.len() as u64 > max {
            writer.discard().await;
            return Err(Refusal::Fetch(FetchError::TooLarge));
        }
        writer.write(&chunk).await.map_err(Refusal::Store)?;
    }
    let actual = writer.sha256_hex();
    if actual != cksum {
        writer.discard().await;
        return Err(Refusal::Mismatch(actual));
    }
    let stored = writer.finish().await.map_err(Refusal::Store)?;
    Ok(stored.size)
}

/// The spellings of a lowercase name that crates.io counts as the same crate (`-` and `_`
/// are interchangeable there, and each spelling has its own index file): every combination
/// for up to three separators, else the name as given, all `-` and all `_`. At most eight.
pub(crate) fn spellings(lowercase: &str) -> Vec<String> {
    let separators: Vec<usize> = lowercase
        .char_indices()
        .filter(|(_, c)| matches!(c, '-' | '_'))
        .map(|(i, _)| i)
        .collect();
    let with = |pick: &dyn Fn(usize) -> u8| {
        let mut bytes = lowercase.as_bytes().to_vec();
        for (n, &i) in separators.iter().enumerate() {
            bytes[i] = pick(n);
        }
        String::from_utf8(bytes).expect("ASCII separators replaced by ASCII")
    };
    let mut all = vec![lowercase.to_owned()];
    if separators.len() <= 3 {
        for mask in 0..(1u32 << separators.len()) {
            all.push(with(&|n| if mask & (1 << n) == 0 { b'-' } else { b'_' }));
        }
    } else {
        all.push(with(&|_| b'-'));
        all.push(with(&|_| b'_'));
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|spelling| seen.insert(spelling.clone()));
    all
}

/// The dependency-confusion guard, for the first publish of `name`: refused (409) if the
/// upstream registry has a crate of the same name in any spelling, unless an admin allowed the
/// name; refused (503) if upstream cannot be asked and nothing about the name is cached. With
/// the upstream `off`, only the cache is consulted.
pub(crate) async fn check_new_crate_name(
    state: &AppState,
    name: &CrateName,
) -> Result<(), ApiError> {
    let config = &state.proxy().config;
    if !config.guard || state.store().upstream_allowed(&name.canonical()).await? {
        return Ok(());
    }
    let upstream = config
        .index
        .as_ref()
        .map_or("the cached upstream registry", UpstreamIndex::as_str);
    let allow = format!(
        "choose another name, or ask an admin to allow this one with `depot mirror allow-name \
         {name}`"
    );
    for spelling in spellings(&name.to_lowercase()) {
        let Ok(spelling) = CrateName::parse(&spelling) else {
            continue;
        };
        match index_lookup(state, &spelling).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(ApiError::conflict(format!(
                    "crate `{name}` would be a new private crate, but {upstream} has a crate \
                     named `{spelling}`: a build that uses both registries could take one for the \
                     other (dependency confusion); {allow}"
                )));
            }
            Err(e) => {
                return Err(ApiError::unavailable(format!(
                    "cannot tell whether {upstream} has a crate named `{spelling}` ({}); try \
                     again later, or {allow}",
                    e.details().join(", ")
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_cover_every_separator_choice() {
        assert_eq!(spellings("serde"), ["serde"]);
        assert_eq!(spellings("foo-bar"), ["foo-bar", "foo_bar"]);
        let mixed = spellings("a_b-c");
        assert_eq!(mixed[0], "a_b-c");
        let mut sorted = mixed.clone();
        sorted.sort();
        assert_eq!(sorted, ["a-b-c", "a-b_c", "a_b-c", "a_b_c"]);
        assert_eq!(spellings("a-b-c-d-e"), ["a-b-c-d-e", "a_b_c_d_e"]);
    }

    #[tokio::test]
    async fn fetches_are_shared_leave_when_done_and_are_capped() {
        let flights: Flights<u32> = Flights::new();
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let first = flights
            .run("a".into(), async move {
                let _ = wait.await;
                Ok(7)
            })
            .unwrap();
        // A second request for the same key joins the first fetch (its own work never runs).
        let second = flights.run("a".into(), async { Ok(8) }).unwrap();
        release.send(()).unwrap();
        assert_eq!((first.await.unwrap(), second.await.unwrap()), (7, 7));
        // A panicking fetch is an error for its waiters and leaves the map all the same.
        let panicked = flights
            .run("b".into(), async { panic!("a fetch panicked") })
            .unwrap();
        assert!(panicked.await.is_err());
        tokio::task::yield_now().await;
        assert!(flights.running.lock().unwrap().is_empty());
        // Beyond the cap, a new key is refused instead of queued.
        let mut held = Vec::new();
        for i in 0..MAX_FLIGHTS {
            held.push(flights.run(i.to_string(), std::future::pending()).unwrap());
        }
        let refused = flights.run("one more".into(), async { Ok(1) });
        assert_eq!(
            refused.unwrap_err().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn upstream_urls_are_checked() {
        for bad in [
            "https://index.crates.io/",
            "sparse+ftp://x/",
            "sparse+https://",
            "sparse+not a url",
            "sparse+https://x/?q=1",
        ] {
            assert!(UpstreamIndex::parse(bad).is_err(), "{bad}");
        }
        let index = UpstreamIndex::parse("sparse+http://127.0.0.1:9/reg/index").unwrap();
        assert_eq!(index.as_str(), "sparse+http://127.0.0.1:9/reg/index/");
        assert_eq!(
            index.url("3/a/abc").unwrap().as_str(),
            "http://127.0.0.1:9/reg/index/3/a/abc"
        );
    }

    proptest::proptest! {
        /// Any text: a URL or an error, never a panic; a parsed URL is `sparse+http(s)://…/`.
        #[test]
        fn any_upstream_text_is_safe(text in "(sparse\\+)?(https?://)?[ -~]{0,60}") {
            if let Ok(index) = UpstreamIndex::parse(&text) {
                proptest::prop_assert!(index.as_str().starts_with("sparse+http"));
                proptest::prop_assert!(index.as_str().ends_with('/'));
                proptest::prop_assert!(index.url("config.json").is_ok());
            }
        }

        /// Every spelling is the same crate to crates.io; there are at most eight (nine with
        /// the name itself), the name comes first and none repeats.
        #[test]
        fn spellings_are_bounded_and_equivalent(name in "[a-z][a-z0-9_-]{0,63}") {
            let all = spellings(&name);
            proptest::prop_assert_eq!(&all[0], &name);
            proptest::prop_assert!(all.len() <= 8);
            let canonical = depot_index::canonical_name(&name);
            for spelling in &all {
                proptest::prop_assert_eq!(depot_index::canonical_name(spelling), canonical.clone());
            }
            let unique: std::collections::HashSet<_> = all.iter().collect();
            proptest::prop_assert_eq!(unique.len(), all.len());
        }
    }
}
