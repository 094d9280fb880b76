//! Telemetry shared by every role of the `depot` binary: the one closed list of Prometheus
//! metrics ([`METRICS`], [`metrics()`]) and the logging setup ([`init_tracing`]).
//!
//! Every metric Depot exports is declared here, once, with its help text and labels; label
//! values come from bounded sets (route templates, outcomes, reasons, event types — never crate
//! names or raw URLs). `deploy/` (recording rules, alerts, dashboard) may only use these names;
//! a test checks it.

mod logging;
mod registry;

pub use logging::init_tracing;
pub use registry::{Metrics, encode, metrics};

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonically increasing counter (`_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A histogram (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

/// One declared metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    /// The metric name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names.
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
}

macro_rules! spec {
    ($name:literal, $kind:ident, [$($label:literal),*], $help:literal) => {
        MetricSpec { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help }
    };
}

/// Every metric Depot exports.
pub const METRICS: &[MetricSpec] = &[
    spec!(
        "depot_build_info",
        Gauge,
        ["version"],
        "Always 1; the version of the running binary."
    ),
    spec!(
        "depot_http_requests_total",
        Counter,
        ["route", "method", "status"],
        "HTTP requests answered, by route template, method and status code."
    ),
    spec!(
        "depot_http_request_duration_seconds",
        Histogram,
        ["route", "method"],
        "Time to answer HTTP requests (until the response head is ready), by route template and method."
    ),
    spec!(
        "depot_publish_total",
        Counter,
        ["outcome"],
        "Publishes by outcome: accepted, rejected (by the extractor), duplicate (identical bytes again), invalid (refused by the api), unauthorized, conflict (version taken), too_large, queued (not visible within the wait), error."
    ),
    spec!(
        "depot_publish_visible_seconds",
        Histogram,
        [],
        "Time from appending version_uploaded to the version being visible in the index (accepted publishes)."
    ),
    spec!(
        "depot_docs_uploads_total",
        Counter,
        ["outcome"],
        "Hosted-documentation uploads by outcome: stored, invalid (a refused archive), not_found (no such crate or version), unauthorized, too_large, error."
    ),
    spec!(
        "depot_upload_bytes",
        Histogram,
        [],
        "Size of uploaded .crate files."
    ),
    spec!(
        "depot_events_appended_total",
        Counter,
        ["type"],
        "Events appended to the log, by event type."
    ),
    spec!(
        "depot_event_append_conflicts_total",
        Counter,
        [],
        "Appends refused because the crate changed concurrently (optimistic concurrency); the command is retried."
    ),
    spec!(
        "depot_event_append_duration_seconds",
        Histogram,
        [],
        "Time to append one event to the log."
    ),
    spec!(
        "depot_extraction_duration_seconds",
        Histogram,
        [],
        "Time to check one uploaded .crate."
    ),
    spec!(
        "depot_extraction_failures_total",
        Counter,
        ["reason"],
        "Uploads the extractor rejected or could not process, by reason code."
    ),
    spec!(
        "depot_consumer_pending_events",
        Gauge,
        ["consumer"],
        "Events a consumer has yet to process: the extractor's queue, or the projector's distance to the log head."
    ),
    spec!(
        "depot_event_log_head_sequence",
        Gauge,
        [],
        "The sequence of the last event in the log, as last seen by this process."
    ),
    spec!(
        "depot_projector_applied_sequence",
        Gauge,
        [],
        "The last event the projector has applied to the active read models."
    ),
    spec!(
        "depot_projector_active",
        Gauge,
        [],
        "1 while this projector holds the lease and folds into the read models, 0 while it stands by."
    ),
    spec!(
        "depot_projector_events_applied_total",
        Counter,
        ["type"],
        "Events folded into the read models, by event type."
    ),
    spec!(
        "depot_projector_batch_duration_seconds",
        Histogram,
        [],
        "Time to apply one batch of events in one transaction."
    ),
    spec!(
        "depot_index_cache_requests_total",
        Counter,
        ["result"],
        "Index file lookups by the api: hit (served from memory) or miss (loaded from the read models)."
    ),
    spec!(
        "depot_download_cache_requests_total",
        Counter,
        ["result"],
        "Downloads by the api by where their bytes came from: hit (memory) or miss (the blob store)."
    ),
    spec!(
        "depot_downloads_total",
        Counter,
        [],
        "Crate downloads served."
    ),
    spec!(
        "depot_download_bytes_total",
        Counter,
        [],
        "Bytes of crate downloads served."
    ),
    spec!(
        "depot_auth_refusals_total",
        Counter,
        ["reason"],
        "Requests refused with 401 by reason: missing, malformed, unknown, expired, revoked, disabled."
    ),
    spec!(
        "depot_trusted_publishing_exchanges_total",
        Counter,
        ["outcome"],
        "OIDC ID tokens offered for CI tokens, by outcome: minted, no_trust, invalid_token, no_match, replayed, issuer_unavailable, error."
    ),
    spec!(
        "depot_upstream_requests_total",
        Counter,
        ["kind", "result"],
        "Lookups of the upstream-registry cache by kind (index, crate) and result: hit (served from the cache), revalidated (upstream confirmed the copy), fetched (new content stored), not_found, stale (upstream failed, copy served), unavailable (upstream failed, nothing cached), refused (checksum mismatch), offline (no upstream configured)."
    ),
    spec!(
        "depot_upstream_fetch_duration_seconds",
        Histogram,
        ["kind"],
        "Time of upstream requests by kind: index (a conditional index file request), crate (a whole .crate download), config."
    ),
    spec!(
        "depot_upstream_errors_total",
        Counter,
        ["kind", "reason"],
        "Failed upstream requests by kind (index, crate, config) and reason: unreachable, timeout, status, too_large, invalid, checksum."
    ),
    spec!(
        "depot_upstream_bytes_served_total",
        Counter,
        ["kind"],
        "Bytes served from the upstream-registry cache, by kind (index, crate)."
    ),
    spec!(
        "depot_webhook_deliveries_total",
        Counter,
        ["result"],
        "Webhook delivery attempts by result: delivered (2xx), retried (will be tried again), failed (given up)."
    ),
    spec!(
        "depot_webhook_attempts_total",
        Counter,
        [],
        "HTTP requests made to webhook receivers."
    ),
    spec!(
        "depot_webhook_backlog",
        Gauge,
        [],
        "Webhook deliveries pending (queued or waiting for a retry), as the active dispatcher last counted them."
    ),
    spec!(
        "depot_webhook_dispatcher_active",
        Gauge,
        [],
        "1 while this process holds the webhook lease and delivers, 0 while it stands by."
    ),
];

/// The buckets of every `_seconds` histogram: 1 ms to 60 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The buckets of `depot_upload_bytes`: 1 KiB to 3 GiB.
pub const BYTES_BUCKETS: &[f64] = &[
    1024.0,
    16384.0,
    131072.0,
    1048576.0,
    10485760.0,
    104857600.0,
    1073741824.0,
    3221225472.0,
];
