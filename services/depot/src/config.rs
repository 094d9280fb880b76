//! Settings: every role reads the same ones, from flags or `DEPOT_*` environment variables.
//! This is the only place the environment is read; the roles get typed structs.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use depot_api::{EdgeLimits, RateSpec};
use depot_cratefile::{ManifestLimits, PublishLimits, TarballLimits};
use depot_extractor::ExtractorConfig;

use crate::http::ServerLimits;

/// Where the blob store is.
#[derive(Debug, Clone)]
pub(crate) enum BlobLocation {
    /// A local directory.
    Directory(PathBuf),
    /// An S3-compatible bucket.
    S3(Box<depot_store::S3Config>),
}

/// Settings shared by all subcommands.
#[derive(Debug, Clone, Args)]
pub(crate) struct Settings {
    /// Address the HTTP api listens on.
    #[arg(
        long,
        env = "DEPOT_LISTEN",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub listen: SocketAddr,

    /// Address of the Prometheus metrics listener (`/metrics`); `off` disables it.
    #[arg(
        long,
        env = "DEPOT_METRICS_LISTEN",
        default_value = "127.0.0.1:9898",
        global = true
    )]
    pub metrics_listen: String,

    /// URL cargo reaches Depot at (used in config.json). Defaults to http://<listen address>.
    #[arg(long, env = "DEPOT_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Directory of the embedded backends (event log, read models, blobs) when no NATS or
    /// database URL is given.
    #[arg(
        long,
        env = "DEPOT_DATA_DIR",
        default_value = "depot-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// NATS server URL(s) of the JetStream event log (comma-separated for a cluster). Without
    /// it, the event log is embedded: SQLite in the data directory.
    #[arg(long, env = "DEPOT_NATS_URL", global = true)]
    pub nats_url: Option<String>,

    /// JetStream stream name of the event log.
    #[arg(
        long,
        env = "DEPOT_NATS_STREAM",
        default_value = "DEPOT",
        global = true
    )]
    pub nats_stream: String,

    /// Subject prefix of the event log and notifications.
    #[arg(
        long,
        env = "DEPOT_NATS_PREFIX",
        default_value = "depot",
        global = true
    )]
    pub nats_prefix: String,

    /// Replicas of the stream when Depot creates it (3 in a production cluster).
    #[arg(long, env = "DEPOT_NATS_REPLICAS", default_value_t = 1, global = true)]
    pub nats_replicas: usize,

    /// Database of the read models: `postgres://…` or `sqlite://PATH`. Without it, SQLite in
    /// the data directory.
    #[arg(long, env = "DEPOT_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Directory of the blob store (the uploaded .crate files). Default: `blobs` in the data
    /// directory.
    #[arg(long, env = "DEPOT_BLOB_DIR", global = true)]
    pub blob_dir: Option<PathBuf>,

    /// Where blobs live: `file:///absolute/path` (a directory, like DEPOT_BLOB_DIR) or
    /// `s3://bucket/prefix` (S3-compatible object storage, reached with the AWS_* settings).
    #[arg(long, env = "DEPOT_BLOB_URL", global = true)]
    pub blob_url: Option<String>,

    /// S3 endpoint for S3-compatible servers (SeaweedFS, MinIO …); AWS when unset.
    #[arg(long = "s3-endpoint", env = "AWS_ENDPOINT_URL", global = true)]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(
        long = "s3-region",
        env = "AWS_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub s3_region: String,

    /// S3 access key id.
    #[arg(long = "s3-access-key-id", env = "AWS_ACCESS_KEY_ID", global = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(
        long = "s3-secret-access-key",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true,
        global = true
    )]
    pub s3_secret_access_key: Option<String>,

    /// Address buckets as `https://bucket.host/` (AWS's virtual-hosted style) instead of
    /// `https://host/bucket/` (path style, what S3-compatible servers expect).
    #[arg(long = "s3-virtual-hosted", env = "DEPOT_S3_VIRTUAL_HOSTED", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub s3_virtual_hosted: bool,

    /// Size of the parts of an S3 multipart upload (suffixes allowed; at least 5MiB). An
    /// upload holds at most three parts in memory.
    #[arg(long, env = "DEPOT_S3_PART_SIZE", default_value = "8MiB", value_parser = parse_size, global = true)]
    pub s3_part_size: u64,

    /// Downloads from object storage: answer with a redirect to a presigned URL valid this many
    /// seconds instead of streaming the blob through Depot (0: stream through Depot).
    #[arg(
        long,
        env = "DEPOT_BLOB_REDIRECT_SECS",
        default_value_t = 0,
        global = true
    )]
    pub blob_redirect_secs: u64,

    /// Largest .crate accepted, in bytes (suffixes K, M, G, KiB, MiB, GiB allowed; max 3 GiB).
    #[arg(long, env = "DEPOT_MAX_CRATE_SIZE", default_value = "10MiB", value_parser = parse_size, global = true)]
    pub max_crate_size: u64,

    /// Largest publish metadata JSON accepted, in bytes (suffixes allowed).
    #[arg(long, env = "DEPOT_MAX_JSON_SIZE", default_value = "1MiB", value_parser = parse_size, global = true)]
    pub max_json_size: u64,

    /// Other registries dependencies may come from (index URLs, comma-separated).
    #[arg(
        long,
        env = "DEPOT_ALLOWED_REGISTRIES",
        value_delimiter = ',',
        default_value = "https://github.com/rust-lang/crates.io-index,sparse+https://index.crates.io/",
        global = true
    )]
    pub allowed_registries: Vec<String>,

    /// Uploads up to this size are checked by the api on the publishing request itself (the
    /// extractor's check, run in the api process), so the publisher's wait skips the work
    /// queue; larger ones go to the extractor processes. 0: every upload goes to them.
    #[arg(long, env = "DEPOT_INLINE_CHECK_SIZE", default_value = "1MiB", value_parser = parse_size, global = true)]
    pub inline_check_size: u64,

    /// How many uploads one extractor process checks at the same time.
    #[arg(
        long,
        env = "DEPOT_EXTRACTOR_WORKERS",
        default_value_t = 4,
        global = true
    )]
    pub extractor_workers: usize,

    /// Seconds one extractor check (hashing and reading one .crate) may take before the upload
    /// is rejected with `check_timeout`; the default fits a 3 GiB crate on a slow disk.
    #[arg(
        long,
        env = "DEPOT_EXTRACTOR_CHECK_TIMEOUT_SECS",
        default_value_t = 600,
        global = true
    )]
    pub extractor_check_timeout_secs: u64,

    /// Attempts at an upload that keeps failing transiently before it is rejected with
    /// `processing_failed`.
    #[arg(
        long,
        env = "DEPOT_EXTRACTOR_MAX_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub extractor_max_attempts: u32,

    /// Seconds a publish waits for its version to be visible in the index before answering.
    #[arg(
        long,
        env = "DEPOT_PUBLISH_WAIT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub publish_wait_secs: u64,

    /// Require a valid token for every read too: the index, downloads, search and owner lists
    /// (`auth-required` in config.json). Off by default, so a new registry works at once.
    #[arg(
        long,
        env = "DEPOT_AUTH_REQUIRED",
        default_value_t = false,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub auth_required: bool,

    /// The upstream registry cached under `/crates-io/index/` (a pull-through proxy for
    /// cargo's source replacement): a sparse index URL, or `off` to serve only what is cached.
    #[arg(
        long,
        env = "DEPOT_UPSTREAM_INDEX",
        default_value = depot_api::UpstreamIndex::CRATES_IO,
        global = true
    )]
    pub upstream_index: String,

    /// Seconds an upstream index file is served before it is revalidated upstream.
    #[arg(
        long,
        env = "DEPOT_UPSTREAM_MAX_AGE_SECS",
        default_value_t = 300,
        global = true
    )]
    pub upstream_max_age_secs: u64,

    /// Seconds upstream's "no such crate" is remembered.
    #[arg(
        long,
        env = "DEPOT_UPSTREAM_NEGATIVE_TTL_SECS",
        default_value_t = 60,
        global = true
    )]
    pub upstream_negative_ttl_secs: u64,

    /// Connect and read timeout of upstream requests, in seconds.
    #[arg(
        long,
        env = "DEPOT_UPSTREAM_TIMEOUT_SECS",
        default_value = "30",
        global = true
    )]
    pub upstream_timeout_secs: NonZeroU64,

    /// Largest upstream index file accepted (suffixes allowed).
    #[arg(long, env = "DEPOT_UPSTREAM_MAX_INDEX_SIZE", default_value = "32MiB", value_parser = parse_size, global = true)]
    pub upstream_max_index_size: u64,

    /// Largest hosted-documentation archive accepted, compressed (suffixes allowed).
    #[arg(long, env = "DEPOT_DOCS_MAX_SIZE", default_value = "256MiB", value_parser = parse_size, global = true)]
    pub docs_max_size: u64,

    /// Largest hosted-documentation archive once decompressed (suffixes allowed).
    #[arg(long, env = "DEPOT_DOCS_MAX_UNPACKED_SIZE", default_value = "1GiB", value_parser = parse_size, global = true)]
    pub docs_max_unpacked_size: u64,

    /// Largest single file of a documentation archive (suffixes allowed); a file is held in
    /// memory while it is stored.
    #[arg(long, env = "DEPOT_DOCS_MAX_FILE_SIZE", default_value = "32MiB", value_parser = parse_size, global = true)]
    pub docs_max_file_size: u64,

    /// Most entries (files and directories) of a documentation archive.
    #[arg(
        long,
        env = "DEPOT_DOCS_MAX_FILES",
        default_value = "100000",
        global = true
    )]
    pub docs_max_files: NonZeroU64,

    /// Refuse the first publish of a crate whose name (in any `-`/`_` spelling) exists in the
    /// upstream registry, unless an admin allowed it (`depot mirror allow-name`): the
    /// dependency-confusion guard.
    #[arg(
        long,
        env = "DEPOT_UPSTREAM_GUARD",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub upstream_guard: bool,

    /// Token sent as `Authorization` to the upstream (for an upstream that requires
    /// authentication, such as another Depot).
    #[arg(
        long,
        env = "DEPOT_UPSTREAM_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub upstream_token: Option<String>,

    /// Days a new personal token lives unless another expiry (or `--no-expiry`) is asked for;
    /// 0 means tokens do not expire by default.
    #[arg(
        long,
        env = "DEPOT_TOKEN_EXPIRY_DAYS",
        default_value_t = 90,
        global = true
    )]
    pub token_expiry_days: u32,

    /// Minutes a CI token minted by trusted publishing lives (1 to 720).
    #[arg(
        long,
        env = "DEPOT_CI_TOKEN_MINUTES",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..=720),
        global = true
    )]
    pub ci_token_minutes: u32,

    /// The shortest time between two fetches of one OIDC issuer's keys (seconds): an ID token
    /// signed with a key Depot has not seen makes it refetch, at most this often.
    #[arg(
        long,
        env = "DEPOT_OIDC_REFRESH_SECS",
        default_value_t = 30,
        global = true
    )]
    pub oidc_refresh_secs: u64,

    /// Most keywords per crate.
    #[arg(long, env = "DEPOT_MAX_KEYWORDS", default_value_t = 5, global = true)]
    pub max_keywords: usize,

    /// Most features per crate.
    #[arg(long, env = "DEPOT_MAX_FEATURES", default_value_t = 300, global = true)]
    pub max_features: usize,

    /// Most dependencies per crate.
    #[arg(
        long,
        env = "DEPOT_MAX_DEPENDENCIES",
        default_value_t = 500,
        global = true
    )]
    pub max_dependencies: usize,

    /// Longest description, in bytes.
    #[arg(
        long,
        env = "DEPOT_MAX_DESCRIPTION_BYTES",
        default_value_t = 1000,
        global = true
    )]
    pub max_description_bytes: usize,

    /// Largest unpacked size of a .crate, in bytes (suffixes allowed). Unset, it is the larger
    /// of 512 MiB and 50 times DEPOT_MAX_CRATE_SIZE; it may not be below DEPOT_MAX_CRATE_SIZE.
    #[arg(long, env = "DEPOT_MAX_UNPACKED_SIZE", value_parser = parse_size, global = true)]
    pub max_unpacked_size: Option<u64>,

    /// Seconds a client may take to send a request's headers (also how long an idle keep-alive
    /// connection stays open).
    #[arg(
        long,
        env = "DEPOT_HEADER_READ_TIMEOUT_SECS",
        default_value = "10",
        global = true
    )]
    pub header_read_timeout_secs: NonZeroU64,

    /// Seconds an upload may go without sending body data before it fails with 408.
    #[arg(
        long,
        env = "DEPOT_BODY_IDLE_TIMEOUT_SECS",
        default_value = "30",
        global = true
    )]
    pub body_idle_timeout_secs: NonZeroU64,

    /// Seconds a request other than an upload may take before it is answered with 503.
    #[arg(
        long,
        env = "DEPOT_REQUEST_TIMEOUT_SECS",
        default_value = "30",
        global = true
    )]
    pub request_timeout_secs: NonZeroU64,

    /// HTTP connections open at the same time; more wait until one closes.
    #[arg(
        long,
        env = "DEPOT_MAX_CONNECTIONS",
        default_value = "1024",
        global = true
    )]
    pub max_connections: NonZeroUsize,

    /// Requests handled at the same time; more are answered with 503 and `Retry-After`.
    #[arg(
        long,
        env = "DEPOT_MAX_IN_FLIGHT",
        default_value = "512",
        global = true
    )]
    pub max_in_flight: NonZeroUsize,

    /// Longest search query, in bytes.
    #[arg(
        long,
        env = "DEPOT_MAX_SEARCH_QUERY_BYTES",
        default_value_t = 256,
        global = true
    )]
    pub max_search_query_bytes: usize,

    /// Most users one `cargo owner --add/--remove` may name.
    #[arg(
        long,
        env = "DEPOT_MAX_OWNERS_PER_REQUEST",
        default_value = "32",
        global = true
    )]
    pub max_owners_per_request: NonZeroUsize,

    /// Most bytes of index files kept in memory (suffixes allowed).
    #[arg(long, env = "DEPOT_INDEX_CACHE_SIZE", default_value = "64MiB", value_parser = parse_size, global = true)]
    pub index_cache_size: u64,

    /// Most index files kept in memory.
    #[arg(
        long,
        env = "DEPOT_INDEX_CACHE_ENTRIES",
        default_value = "20000",
        global = true
    )]
    pub index_cache_entries: NonZeroUsize,

    /// Most names without a crate remembered by the index cache.
    #[arg(
        long,
        env = "DEPOT_INDEX_CACHE_MISSES",
        default_value = "10000",
        global = true
    )]
    pub index_cache_misses: NonZeroUsize,

    /// Most bytes kept in memory by the download cache: the `.crate` files of small crates
    /// (up to 1 MiB and an eighth of this size each), the blob keys of larger ones (suffixes
    /// allowed).
    #[arg(long, env = "DEPOT_DOWNLOAD_CACHE_SIZE", default_value = "64MiB", value_parser = parse_size, global = true)]
    pub download_cache_size: u64,

    /// Most versions remembered by the download cache.
    #[arg(
        long,
        env = "DEPOT_DOWNLOAD_CACHE_ENTRIES",
        default_value = "65536",
        global = true
    )]
    pub download_cache_entries: NonZeroUsize,

    /// Publishes per minute per token, sustained.
    #[arg(
        long,
        env = "DEPOT_PUBLISH_RATE_PER_MIN",
        default_value = "12000",
        global = true
    )]
    pub publish_rate_per_min: NonZeroU32,

    /// Publishes per token allowed in a burst.
    #[arg(
        long,
        env = "DEPOT_PUBLISH_BURST",
        default_value = "5000",
        global = true
    )]
    pub publish_burst: NonZeroU32,

    /// Yanks, unyanks and owner changes per minute per token, sustained.
    #[arg(
        long,
        env = "DEPOT_COMMAND_RATE_PER_MIN",
        default_value = "12000",
        global = true
    )]
    pub command_rate_per_min: NonZeroU32,

    /// Yanks, unyanks and owner changes per token allowed in a burst.
    #[arg(
        long,
        env = "DEPOT_COMMAND_BURST",
        default_value = "5000",
        global = true
    )]
    pub command_burst: NonZeroU32,

    /// The key every webhook subscription's signing secret is derived from (at least 32
    /// characters; every process of a deployment needs the same one). Without it, a random
    /// key is generated on first use into `webhook.key` in the data directory.
    #[arg(long, env = "DEPOT_WEBHOOK_KEY", hide_env_values = true, global = true)]
    pub webhook_key: Option<String>,

    /// Whether this process runs the webhook dispatcher beside its projector (one process
    /// of a deployment delivers at a time).
    #[arg(long, env = "DEPOT_WEBHOOKS", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub webhooks: bool,

    /// Webhook requests in flight at once.
    #[arg(
        long,
        env = "DEPOT_WEBHOOK_CONCURRENCY",
        default_value = "16",
        global = true
    )]
    pub webhook_concurrency: NonZeroUsize,

    /// Timeout of one webhook request, in seconds (connecting included).
    #[arg(
        long,
        env = "DEPOT_WEBHOOK_TIMEOUT_SECS",
        default_value = "10",
        global = true
    )]
    pub webhook_timeout_secs: NonZeroU64,

    /// Delay of a webhook's first retry, in milliseconds; it doubles per failure, with jitter.
    #[arg(
        long,
        env = "DEPOT_WEBHOOK_RETRY_MS",
        default_value = "1000",
        global = true
    )]
    pub webhook_retry_ms: NonZeroU64,

    /// Longest delay between two attempts of a webhook delivery, in seconds.
    #[arg(
        long,
        env = "DEPOT_WEBHOOK_MAX_RETRY_SECS",
        default_value = "600",
        global = true
    )]
    pub webhook_max_retry_secs: NonZeroU64,

    /// A webhook delivery not delivered this many seconds after it was queued is given up
    /// (failed in the delivery log).
    #[arg(
        long,
        env = "DEPOT_WEBHOOK_MAX_AGE_SECS",
        default_value = "86400",
        global = true
    )]
    pub webhook_max_age_secs: NonZeroU64,

    /// Most pending deliveries per webhook subscription; further events are recorded as
    /// failed (`backlog full`) until it drains.
    #[arg(
        long,
        env = "DEPOT_WEBHOOK_MAX_BACKLOG",
        default_value = "10000",
        global = true
    )]
    pub webhook_max_backlog: NonZeroU64,

    /// Days delivered and failed webhook deliveries stay in the delivery log.
    #[arg(
        long,
        env = "DEPOT_WEBHOOK_LOG_DAYS",
        default_value = "30",
        global = true
    )]
    pub webhook_log_days: NonZeroU64,
}

/// Settings of `depot gc`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GcSettings {
    /// Keep unreferenced blobs written less than this many seconds ago: an upload stores its
    /// blob before it appends its event.
    #[arg(
        long = "grace",
        alias = "min-age-secs",
        env = "DEPOT_GC_GRACE_SECS",
        default_value_t = 3600
    )]
    pub(crate) grace_secs: u64,
}

impl GcSettings {
    /// The grace period.
    pub(crate) fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.grace_secs)
    }
}

/// The unpacked cap when none is configured: at least this many bytes …
const DEFAULT_MAX_UNPACKED_SIZE: u64 = 512 * 1024 * 1024;

/// … and at least this many times the crate cap (well-compressed source is rarely more than
/// 10 times smaller; crates.io's 10 MB upload and 512 MB unpacked caps are about 50 times).
const UNPACKED_PER_CRATE_SIZE: u64 = 50;

/// The most a crate may weigh, whatever is configured.
const MAX_CRATE_SIZE_LIMIT: u64 = 3 * 1024 * 1024 * 1024;

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 1048576, 10MiB, 3G)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl Settings {
    /// The public URL without a trailing slash.
    pub(crate) fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The embedded event log's file.
    pub(crate) fn embedded_log_path(&self) -> PathBuf {
        self.data_dir.join("events.sqlite")
    }

    /// The database URL of the read models.
    pub(crate) fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("read-models.sqlite").display()
            )
        })
    }

    /// The blob directory of the local backend.
    pub(crate) fn blob_dir(&self) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// Where blobs live.
    pub(crate) fn blob_location(&self) -> anyhow::Result<BlobLocation> {
        let Some(url) = self.blob_url.as_deref() else {
            return Ok(BlobLocation::Directory(self.blob_dir()));
        };
        if let Some(path) = url.strip_prefix("file://") {
            anyhow::ensure!(
                path.starts_with('/'),
                "DEPOT_BLOB_URL `{url}`: a file URL names an absolute path (file:///srv/blobs)"
            );
            return Ok(BlobLocation::Directory(PathBuf::from(path)));
        }
        let mut config = depot_store::S3Config::from_url(url)
            .map_err(|e| anyhow::anyhow!("DEPOT_BLOB_URL: {e}"))?;
        config.endpoint = self.s3_endpoint.clone();
        config.region = self.s3_region.clone();
        config.access_key_id = self.s3_access_key_id.clone();
        config.secret_access_key = self.s3_secret_access_key.clone();
        config.path_style = !self.s3_virtual_hosted;
        config.part_size = usize::try_from(self.s3_part_size).unwrap_or(usize::MAX);
        Ok(BlobLocation::S3(Box::new(config)))
    }

    /// Checks values that clap cannot.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.blob_location()?;
        if self.max_crate_size > MAX_CRATE_SIZE_LIMIT {
            anyhow::bail!(
                "DEPOT_MAX_CRATE_SIZE is {} bytes; the most Depot supports is 3 GiB",
                self.max_crate_size
            );
        }
        if let Some(unpacked) = self.max_unpacked_size
            && unpacked < self.max_crate_size
        {
            anyhow::bail!(
                "DEPOT_MAX_UNPACKED_SIZE ({unpacked} bytes) is below DEPOT_MAX_CRATE_SIZE ({} \
                 bytes): a .crate that may be uploaded could never be unpacked; raise \
                 DEPOT_MAX_UNPACKED_SIZE or unset it (the default is the larger of 512 MiB and 50 \
                 times DEPOT_MAX_CRATE_SIZE)",
                self.max_crate_size
            );
        }
        if self.extractor_check_timeout_secs == 0 || self.extractor_max_attempts == 0 {
            anyhow::bail!(
                "DEPOT_EXTRACTOR_CHECK_TIMEOUT_SECS and DEPOT_EXTRACTOR_MAX_ATTEMPTS must be positive"
            );
        }
        if self.max_json_size > u64::from(u32::MAX) {
            anyhow::bail!("DEPOT_MAX_JSON_SIZE must fit in 32 bits");
        }
        Ok(())
    }

    /// The webhook key: DEPOT_WEBHOOK_KEY, else the key file `webhook.key` of the data
    /// directory, created (random, mode 0600) if missing.
    pub(crate) fn webhook_key(&self) -> anyhow::Result<depot_webhooks::WebhookKey> {
        if let Some(key) = &self.webhook_key {
            return depot_webhooks::WebhookKey::new(key.as_bytes().to_vec())
                .map_err(|e| anyhow::anyhow!("DEPOT_WEBHOOK_KEY: {e}"));
        }
        let path = self.data_dir.join("webhook.key");
        match std::fs::read(&path) {
            Ok(bytes) => depot_webhooks::WebhookKey::new(bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.data_dir)?;
                let key = depot_webhooks::WebhookKey::generate();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(&path) {
                    Ok(mut file) => {
                        std::io::Write::write_all(&mut file, key.as_bytes())?;
                        file.sync_all()?;
                        Ok(key)
                    }
                    // Another process created it first: use that one.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let bytes = std::fs::read(&path)?;
                        depot_webhooks::WebhookKey::new(bytes)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                    }
                    Err(e) => Err(anyhow::Error::new(e)
                        .context(format!("cannot create the webhook key {}", path.display()))),
                }
            }
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("cannot read the webhook key {}", path.display()))),
        }
    }

    /// What the api needs for `/api/v1/webhooks`: the webhook key (without one, those
    /// endpoints answer 503 and say why; the process still serves everything else).
    pub(crate) fn webhooks_api(&self) -> depot_api::WebhooksApiConfig {
        let key = self
            .webhook_key()
            .inspect_err(|e| {
                tracing::warn!(error = %format!("{e:#}"), "no webhook key: /api/v1/webhooks is unavailable");
            })
            .ok();
        depot_api::WebhooksApiConfig {
            key,
            max_backlog: self.webhook_max_backlog.get(),
        }
    }

    /// The webhook dispatcher's settings.
    pub(crate) fn webhook_config(&self) -> depot_webhooks::DispatcherConfig {
        depot_webhooks::DispatcherConfig {
            concurrency: self.webhook_concurrency.get(),
            request_timeout: Duration::from_secs(self.webhook_timeout_secs.get()),
            first_retry: Duration::from_millis(self.webhook_retry_ms.get()),
            max_retry: Duration::from_secs(self.webhook_max_retry_secs.get()),
            max_age: Duration::from_secs(self.webhook_max_age_secs.get()),
            max_backlog: self.webhook_max_backlog.get(),
            retention: Duration::from_secs(self.webhook_log_days.get().saturating_mul(86_400)),
            ..depot_webhooks::DispatcherConfig::default()
        }
    }

    /// The unpacked cap: DEPOT_MAX_UNPACKED_SIZE, or the larger of 512 MiB and 50 times the
    /// crate cap.
    pub(crate) fn max_unpacked_size(&self) -> u64 {
        self.max_unpacked_size.unwrap_or_else(|| {
            DEFAULT_MAX_UNPACKED_SIZE
                .max(self.max_crate_size.saturating_mul(UNPACKED_PER_CRATE_SIZE))
        })
    }

    /// The index URLs that mean "this registry".
    pub(crate) fn own_index_urls(&self, public_url: &str) -> Vec<String> {
        vec![
            format!("sparse+{public_url}/index/"),
            format!("{public_url}/index/"),
        ]
    }

    /// Publish metadata limits.
    pub(crate) fn publish_limits(&self, public_url: &str) -> PublishLimits {
        PublishLimits {
            max_keywords: self.max_keywords,
            max_features: self.max_features,
            max_dependencies: self.max_dependencies,
            max_description_bytes: self.max_description_bytes,
            allowed_registries: self.allowed_registries.clone(),
            own_index_urls: self.own_index_urls(public_url),
            ..PublishLimits::default()
        }
    }

    /// Archive limits.
    pub(crate) fn tarball_limits(&self, public_url: &str) -> TarballLimits {
        TarballLimits {
            max_unpacked_size: self.max_unpacked_size(),
            own_index_urls: self.own_index_urls(public_url),
            manifest: ManifestLimits::from_publish(&self.publish_limits(public_url)),
            ..TarballLimits::default()
        }
    }

    /// Extractor settings.
    pub(crate) fn extractor_config(&self, public_url: &str) -> ExtractorConfig {
        ExtractorConfig {
            max_metadata_bytes: self.max_json_size,
            max_attempts: self.extractor_max_attempts,
            workers: self.extractor_workers,
            check_timeout: Duration::from_secs(self.extractor_check_timeout_secs),
            inline_check_size: self.inline_check_size,
            ..ExtractorConfig::new(
                self.tarball_limits(public_url),
                self.publish_limits(public_url),
            )
        }
    }

    /// Limits of the api's HTTP edge.
    pub(crate) fn edge_limits(&self) -> EdgeLimits {
        EdgeLimits {
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs.get()),
            request_timeout: Duration::from_secs(self.request_timeout_secs.get()),
            max_in_flight: self.max_in_flight.get(),
            max_search_query_bytes: self.max_search_query_bytes,
            max_owners_per_request: self.max_owners_per_request.get(),
            index_cache_bytes: usize::try_from(self.index_cache_size).unwrap_or(usize::MAX),
            index_cache_entries: self.index_cache_entries.get(),
            index_cache_misses: self.index_cache_misses.get(),
            download_cache_bytes: usize::try_from(self.download_cache_size).unwrap_or(usize::MAX),
            download_cache_entries: self.download_cache_entries.get(),
            publish_rate: RateSpec {
                per_minute: self.publish_rate_per_min,
                burst: self.publish_burst,
            },
            command_rate: RateSpec {
                per_minute: self.command_rate_per_min,
                burst: self.command_burst,
            },
        }
    }

    /// Limits of the api's connections.
    pub(crate) fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.get()),
            max_connections: self.max_connections.get(),
        }
    }

    /// How long a temporary upload file must be untouched before the sweep at start removes it:
    /// longer than any live upload can go without writing.
    pub(crate) fn stale_upload_age(&self) -> Duration {
        Duration::from_secs(60).max(Duration::from_secs(
            self.body_idle_timeout_secs.get().saturating_mul(2),
        ))
    }

    /// How long a publish waits for visibility.
    pub(crate) fn publish_wait(&self) -> Duration {
        Duration::from_secs(self.publish_wait_secs)
    }

    /// Trusted publishing.
    pub(crate) fn trusted_publishing(&self) -> depot_api::TrustedPublishingConfig {
        let defaults = depot_api::TrustedPublishingConfig::default();
        depot_api::TrustedPublishingConfig {
            ci_token_lifetime: Duration::from_secs(u64::from(self.ci_token_minutes) * 60),
            jwks: depot_api::JwksLimits {
                min_refresh_interval: Duration::from_secs(self.oidc_refresh_secs),
                ..defaults.jwks
            },
        }
    }

    /// Downloads answered with a presigned URL valid this long, if set.
    pub(crate) fn blob_redirect(&self) -> Option<Duration> {
        (self.blob_redirect_secs > 0).then(|| Duration::from_secs(self.blob_redirect_secs))
    }

    /// The upstream-registry cache.
    /// Hosted documentation's limits.
    pub(crate) fn docs(&self) -> depot_api::DocsConfig {
        let defaults = depot_api::DocsConfig::default();
        depot_api::DocsConfig {
            max_archive_size: self.docs_max_size,
            limits: depot_cratefile::DocsLimits {
                max_unpacked_size: self.docs_max_unpacked_size,
                max_file_size: self.docs_max_file_size,
                max_entries: self.docs_max_files.get(),
                ..defaults.limits
            },
            ..defaults
        }
    }

    pub(crate) fn upstream(&self) -> anyhow::Result<depot_api::UpstreamConfig> {
        let index = match self.upstream_index.trim() {
            "off" | "" => None,
            url => Some(depot_api::UpstreamIndex::parse(url).map_err(anyhow::Error::msg)?),
        };
        Ok(depot_api::UpstreamConfig {
            index,
            max_age: Duration::from_secs(self.upstream_max_age_secs),
            negative_ttl: Duration::from_secs(self.upstream_negative_ttl_secs),
            timeout: Duration::from_secs(self.upstream_timeout_secs.get()),
            max_crate_size: self.max_crate_size,
            token: self.upstream_token.clone(),
            guard: self.upstream_guard,
            max_index_size: self.upstream_max_index_size,
            ..depot_api::UpstreamConfig::default()
        })
    }

    /// How long a new personal token lives by default (`None`: forever).
    pub(crate) fn default_token_lifetime(&self) -> Option<Duration> {
        (self.token_expiry_days > 0)
            .then(|| Duration::from_secs(u64::from(self.token_expiry_days) * 24 * 3600))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Settings, parse_size};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    /// Settings from flags only (flags win over any `DEPOT_*` variable of the test process).
    fn settings(args: &[&str]) -> Settings {
        Cli::try_parse_from(std::iter::once("depot").chain(args.iter().copied()))
            .expect("valid flags")
            .settings
    }

    #[test]
    fn unpacked_cap_defaults_to_a_multiple_of_the_crate_cap() {
        let small = settings(&["--max-crate-size", "10MiB"]);
        if std::env::var_os("DEPOT_MAX_UNPACKED_SIZE").is_none() {
            assert_eq!(small.max_unpacked_size(), 512 << 20);
            let large = settings(&["--max-crate-size", "1GiB"]);
            assert_eq!(large.max_unpacked_size(), 50 << 30);
            large.validate().expect("the derived cap is valid");
        }
        let explicit = settings(&["--max-crate-size", "1GiB", "--max-unpacked-size", "1GiB"]);
        assert_eq!(explicit.max_unpacked_size(), 1 << 30);
        explicit.validate().expect("equal caps are valid");
    }

    #[test]
    fn unpacked_cap_below_the_crate_cap_is_refused() {
        let settings = settings(&["--max-crate-size", "10MiB", "--max-unpacked-size", "1MiB"]);
        assert_eq!(
            settings.validate().unwrap_err().to_string(),
            "DEPOT_MAX_UNPACKED_SIZE (1048576 bytes) is below DEPOT_MAX_CRATE_SIZE (10485760 \
             bytes): a .crate that may be uploaded could never be unpacked; raise \
             DEPOT_MAX_UNPACKED_SIZE or unset it (the default is the larger of 512 MiB and 50 \
             times DEPOT_MAX_CRATE_SIZE)"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("3G"), Ok(3 << 30));
        assert_eq!(parse_size("512 k"), Ok(512 << 10));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10 parsecs").is_err());
    }
}
