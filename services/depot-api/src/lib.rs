//! Cargo's web API and the sparse index over HTTP.
//!
//! [`router`] builds the axum router for a [`AppState`]. Handlers validate requests, check the
//! crate aggregate, append events to the log and wait until the projector made them visible;
//! they read only from the read models and the blob store, never from SQL directly.

mod auth;
mod changes;
mod commands;
mod crates;
mod docs;
mod downloads;
mod error;
mod extract;
mod index;
mod limits;
mod metrics;
mod oidc;
mod openapi;
mod publish;
mod rate_limit;
mod stats;
mod tokens;
mod trusted;
mod upstream;
mod web;
mod webhooks;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, put};
use depot_cratefile::{PublishLimits, TarballLimits};
use depot_eventlog::EventLog;
use depot_store::{BlobStore, Store};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use changes::spawn_change_listener;
pub use docs::DocsConfig;
pub use error::ApiError;
pub use limits::EdgeLimits;
pub use oidc::{JwksCache, JwksError, JwksLimits};
pub use rate_limit::RateSpec;
pub use trusted::TrustedPublishingConfig;
pub use upstream::{UpstreamConfig, UpstreamIndex};
pub use webhooks::WebhooksApiConfig;

/// Settings of the api role.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The URL cargo reaches Depot at, without a trailing slash (e.g. `http://127.0.0.1:8000`).
    pub public_url: String,
    /// The largest `.crate` accepted, in bytes.
    pub max_crate_size: u64,
    /// The largest publish metadata JSON accepted, in bytes.
    pub max_json_size: u32,
    /// Limits on publish metadata (keywords, features, dependencies …) and the registry
    /// allow-list for dependencies.
    pub publish_limits: PublishLimits,
    /// Limits used to read `.crate` files (the extractor applies them; kept for reference).
    pub tarball_limits: TarballLimits,
    /// How long a publish waits for its version to become visible before answering anyway.
    pub publish_wait: Duration,
    /// How long yank/unyank/owner changes wait for the read models.
    pub command_wait: Duration,
    /// How long a cached index file may be served without revalidation against the database,
    /// as a safety net for lost change notifications.
    pub index_cache_ttl: Duration,
    /// Timeouts, caps and rate limits of the HTTP edge.
    pub limits: EdgeLimits,
    /// Whether every route (but the health check and the login page) needs a valid token
    /// (`auth-required` in `config.json`, RFC 3139).
    pub auth_required: bool,
    /// How long a token created through the API lives when the request names no expiry.
    pub default_token_lifetime: Option<Duration>,
    /// Trusted publishing: CI token lifetime and the issuers' key-set cache.
    pub trusted_publishing: TrustedPublishingConfig,
    /// On object storage: answer downloads with a redirect to a presigned URL valid this long,
    /// instead of streaming the blob through the api.
    pub blob_redirect: Option<Duration>,
    /// The upstream-registry cache served under `/crates-io/`.
    pub upstream: UpstreamConfig,
    /// Hosted documentation: upload limits and the manifest cache.
    pub docs: DocsConfig,
    /// Webhook subscriptions over HTTP (`/api/v1/webhooks`): the key and the backlog limit.
    pub webhooks: WebhooksApiConfig,
}

impl ApiConfig {
    /// The sparse index URL cargo is configured with (`sparse+…/index/`).
    pub fn index_url(&self) -> String {
        format!("sparse+{}/index/", self.public_url)
    }
}

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ApiConfig,
    log: Arc<dyn EventLog>,
    store: Store,
    blobs: BlobStore,
    cache: index::IndexCache,
    changes: changes::ChangeHub,
    download_cache: downloads::DownloadCache,
    downloads: downloads::DownloadCounter,
    rate_limits: rate_limit::RateLimits,
    in_flight: limits::InFlight,
    tokens: auth::TokenCache,
    jwks: JwksCache,
    trusted: TrustedPublishingConfig,
    inline_checks: Option<InlineChecks>,
    proxy: upstream::Proxy,
    manifests: docs::ManifestCache,
}

/// Uploads checked on the publishing request (see [`AppState::with_inline_checks`]).
#[derive(Debug)]
struct InlineChecks {
    extractor: depot_extractor::Extractor,
    max_size: u64,
}

impl AppState {
    /// Assembles the api's state.
    pub fn new(
        config: ApiConfig,
        log: Arc<dyn EventLog>,
        store: Store,
        blobs: BlobStore,
    ) -> AppState {
        let limits = &config.limits;
        let cache = index::IndexCache::new(
            config.index_cache_ttl,
            index::CacheBounds {
                max_bytes: limits.index_cache_bytes,
                max_entries: NonZeroUsize::new(limits.index_cache_entries)
                    .unwrap_or(NonZeroUsize::MIN),
                max_misses: NonZeroUsize::new(limits.index_cache_misses)
                    .unwrap_or(NonZeroUsize::MIN),
            },
        );
        let download_cache = downloads::DownloadCache::new(downloads::DownloadCacheBounds {
            max_bytes: limits.download_cache_bytes,
            max_entries: NonZeroUsize::new(limits.download_cache_entries)
                .unwrap_or(NonZeroUsize::MIN),
        });
        let rate_limits = rate_limit::RateLimits::new(limits.publish_rate, limits.command_rate);
        let in_flight = limits::InFlight::new(limits.max_in_flight);
        let trusted = config.trusted_publishing;
        let proxy = upstream::Proxy::new(config.upstream.clone());
        let manifests = docs::ManifestCache::new(config.docs.manifest_cache_bytes);
        AppState {
            inner: Arc::new(Inner {
                config,
                log,
                store,
                blobs,
                cache,
                changes: changes::ChangeHub::new(),
                download_cache,
                downloads: downloads::DownloadCounter::default(),
                rate_limits,
                in_flight,
                tokens: auth::TokenCache::new(),
                jwks: JwksCache::new(trusted.jwks),
                trusted,
                inline_checks: None,
                proxy,
                manifests,
            }),
        }
    }

    /// Checks uploads of up to `max_size` bytes on the publishing request itself, with the
    /// extractor's check, and appends their outcome right after the upload: the publisher's
    /// wait skips the work queue's hand-off, and the projector usually folds the upload and its
    /// outcome in one batch. Larger uploads, and any the api could not finish, are left to the
    /// extractor processes as before. Call it before the state is shared.
    #[must_use]
    pub fn with_inline_checks(
        mut self,
        extractor: depot_extractor::Extractor,
        max_size: u64,
    ) -> AppState {
        let inner =
            Arc::get_mut(&mut self.inner).expect("with_inline_checks before the state is shared");
        inner.inline_checks = (max_size > 0).then_some(InlineChecks {
            extractor,
            max_size,
        });
        self
    }

    fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    fn proxy(&self) -> &upstream::Proxy {
        &self.inner.proxy
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn log(&self) -> &dyn EventLog {
        self.inner.log.as_ref()
    }

    /// Tells the api that a crate's read models changed (drops its cached index file and wakes
    /// requests waiting on it). Called for every change notification.
    /// `*` stands for every crate (sent after a replay switched generations).
    pub fn crate_changed(&self, announcement: &str) {
        let (canon, seq) = changes::parse_announcement(announcement);
        if canon == "*" {
            self.forget_cache();
        } else {
            self.inner.cache.invalidate(canon);
            self.inner.changes.publish(canon, seq);
        }
    }

    /// Drops every cached index file (after a lost connection to the notifier).
    pub fn forget_cache(&self) {
        self.inner.cache.clear();
        self.inner.changes.publish_all();
    }

    /// Writes batched download counts and token uses to the database; call periodically.
    pub async fn flush_downloads(&self) -> Result<(), depot_store::StoreError> {
        self.inner.downloads.flush(self.store()).await?;
        self.inner.tokens.flush_uses(self.store()).await
    }
}

/// The router: sparse index under `/index/`, cargo's web API under `/api/v1/`.
///
/// Every error leaves in cargo's format `{"errors":[{"detail":"…"}]}`: handler errors, rejected
/// paths, queries and bodies (the extractors of `extract`), unknown routes (404), wrong methods
/// (405, with `Allow`), and a panicking handler (500, caught by the catch-panic layer).
pub fn router(state: AppState) -> Router {
    let limits = &state.config().limits;
    let (request_timeout, in_flight) = (limits.request_timeout, state.inner.in_flight.clone());
    let routes = Router::new()
        .route("/index/config.json", get(index::config_json))
        .route("/index/{*path}", get(index::index_file))
        .route(
            "/api/v1/crates/new",
            put(publish::publish).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/crates", get(crates::search))
        .route(
            "/api/v1/crates/{name}/{version}/download",
            get(downloads::download),
        )
        .route(
            "/api/v1/crates/{name}/{version}",
            get(stats::version_info).patch(crates::update_version),
        )
        .route("/api/v1/crates/{name}/{version}/yank", delete(crates::yank))
        .route(
            "/api/v1/crates/{name}/{version}/unyank",
            put(crates::unyank),
        )
        .route("/api/v1/crates/{name}", get(stats::crate_info))
        .route(
            "/api/v1/crates/{name}/downloads",
            get(stats::crate_downloads),
        )
        .route(
            "/api/v1/crates/{name}/owners",
            get(crates::list_owners)
                .put(crates::add_owners)
                .delete(crates::remove_owners),
        )
        .route("/api/v1/me", get(crates::me))
        .route(
            "/api/v1/me/tokens",
            get(tokens::list_tokens).put(tokens::create_token),
        )
        .route("/api/v1/me/tokens/{id}", delete(tokens::revoke_token))
        .route(
            "/api/v1/trusted_publishing/tokens",
            axum::routing::post(trusted::exchange).delete(trusted::revoke_current),
        )
        .route(
            "/api/v1/crates/{name}/trusted_publishers",
            get(trusted::list_trusts).put(trusted::add_trust),
        )
        .route(
            "/api/v1/crates/{name}/trusted_publishers/{id}",
            delete(trusted::remove_trust),
        )
        .route(
            "/api/v1/crates/{name}/trusted_publishing_only",
            put(trusted::set_trusted_only),
        )
        .route("/crates-io/index/config.json", get(upstream::config_json))
        .route("/crates-io/index/{*path}", get(upstream::index_file))
        .route(
            "/crates-io/dl/{name}/{version}/download",
            get(upstream::download),
        )
        .route(
            "/api/v1/crates/{name}/{version}/docs",
            put(docs::upload).layer(DefaultBodyLimit::disable()),
        )
        .merge(
            Router::new()
                .route("/docs/{name}", get(docs::newest))
                .route("/docs/{name}/{version}", get(docs::entry))
                .route("/docs/{name}/{version}/", get(docs::entry))
                .route("/docs/{name}/{version}/{*path}", get(docs::file)),
        )
        .route(
            "/api/v1/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/api/v1/webhooks/replay",
            axum::routing::post(webhooks::replay),
        )
        .route("/api/v1/webhooks/{id}", delete(webhooks::remove))
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .merge(web::routes())
        .fallback(|| async { ApiError::not_found("not found") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));

    // Edge limits: a deadline for everything but uploads (inside, so it sees the matched
    // route), and the in-flight budget outside it, so shed requests cost nothing.
    let routes = routes
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            limits::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            in_flight,
            limits::shed_load,
        ));

    routes
        .layer(axum::middleware::from_fn(metrics::record))
        .layer(axum::middleware::from_fn(docs::isolate))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
