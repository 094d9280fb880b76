//! The process-wide metrics registry, built from [`crate::METRICS`].

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{BYTES_BUCKETS, Kind, METRICS, MetricSpec, SECONDS_BUCKETS};

/// Handles to every metric, for the code that updates them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `depot_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `depot_http_request_duration_seconds{route,method}`.
    pub http_duration: HistogramVec,
    /// `depot_publish_total{outcome}`.
    pub publishes: IntCounterVec,
    /// `depot_publish_visible_seconds`.
    pub publish_visible: Histogram,
    /// `depot_upload_bytes`.
    pub upload_bytes: Histogram,
    /// `depot_docs_uploads_total{outcome}`.
    pub docs_uploads: IntCounterVec,
    /// `depot_events_appended_total{type}`.
    pub events_appended: IntCounterVec,
    /// `depot_event_append_conflicts_total`.
    pub append_conflicts: IntCounter,
    /// `depot_event_append_duration_seconds`.
    pub append_duration: Histogram,
    /// `depot_extraction_duration_seconds`.
    pub extraction_duration: Histogram,
    /// `depot_extraction_failures_total{reason}`.
    pub extraction_failures: IntCounterVec,
    /// `depot_consumer_pending_events{consumer}`.
    pub consumer_pending: IntGaugeVec,
    /// `depot_event_log_head_sequence`.
    pub log_head: IntGauge,
    /// `depot_projector_applied_sequence`.
    pub projector_applied: IntGauge,
    /// `depot_projector_active`.
    pub projector_active: IntGauge,
    /// `depot_projector_events_applied_total{type}`.
    pub projector_events: IntCounterVec,
    /// `depot_projector_batch_duration_seconds`.
    pub projector_batch: Histogram,
    /// `depot_webhook_deliveries_total{result}`.
    pub webhook_deliveries: IntCounterVec,
    /// `depot_webhook_attempts_total`.
    pub webhook_attempts: IntCounter,
    /// `depot_webhook_backlog`.
    pub webhook_backlog: IntGauge,
    /// `depot_webhook_dispatcher_active`.
    pub webhook_dispatcher_active: IntGauge,
    /// `depot_index_cache_requests_total{result}`.
    pub index_cache: IntCounterVec,
    /// `depot_download_cache_requests_total{result}`.
    pub download_cache: IntCounterVec,
    /// `depot_downloads_total`.
    pub downloads: IntCounter,
    /// `depot_download_bytes_total`.
    pub download_bytes: IntCounter,
    /// `depot_auth_refusals_total{reason}`.
    pub auth_refusals: IntCounterVec,
    /// `depot_trusted_publishing_exchanges_total{outcome}`.
    pub trusted_exchanges: IntCounterVec,
    /// `depot_upstream_requests_total{kind,result}`.
    pub upstream_requests: IntCounterVec,
    /// `depot_upstream_fetch_duration_seconds{kind}`.
    pub upstream_fetch_duration: HistogramVec,
    /// `depot_upstream_errors_total{kind,reason}`.
    pub upstream_errors: IntCounterVec,
    /// `depot_upstream_bytes_served_total{kind}`.
    pub upstream_bytes_served: IntCounterVec,
}

fn spec(name: &str) -> &'static MetricSpec {
    METRICS
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("metric {name} is not declared in METRICS"))
}

fn buckets(spec: &MetricSpec) -> Vec<f64> {
    if spec.name.ends_with("_seconds") {
        SECONDS_BUCKETS.to_vec()
    } else {
        BYTES_BUCKETS.to_vec()
    }
}

/// Creates and registers one metric; the name must be declared with the right kind.
trait Declared: Sized {
    fn declare(registry: &Registry, name: &str) -> Self;
}

macro_rules! declared {
    ($ty:ty, $kind:ident, |$spec:ident| $make:expr) => {
        impl Declared for $ty {
            fn declare(registry: &Registry, name: &str) -> Self {
                let $spec = spec(name);
                assert_eq!(
                    $spec.kind,
                    Kind::$kind,
                    "{name} is not declared as {:?}",
                    Kind::$kind
                );
                let metric: $ty = $make.expect("a valid metric declaration");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("each metric is registered once");
                metric
            }
        }
    };
}

declared!(IntCounter, Counter, |s| IntCounter::new(s.name, s.help));
declared!(IntCounterVec, Counter, |s| IntCounterVec::new(
    Opts::new(s.name, s.help),
    s.labels
));
declared!(IntGauge, Gauge, |s| IntGauge::new(s.name, s.help));
declared!(IntGaugeVec, Gauge, |s| IntGaugeVec::new(
    Opts::new(s.name, s.help),
    s.labels
));
declared!(Histogram, Histogram, |s| Histogram::with_opts(
    HistogramOpts::new(s.name, s.help).buckets(buckets(s))
));
declared!(HistogramVec, Histogram, |s| HistogramVec::new(
    HistogramOpts::new(s.name, s.help).buckets(buckets(s)),
    s.labels
));

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let build_info = IntGaugeVec::declare(r, "depot_build_info");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            http_requests: Declared::declare(r, "depot_http_requests_total"),
            http_duration: Declared::declare(r, "depot_http_request_duration_seconds"),
            publishes: Declared::declare(r, "depot_publish_total"),
            publish_visible: Declared::declare(r, "depot_publish_visible_seconds"),
            upload_bytes: Declared::declare(r, "depot_upload_bytes"),
            docs_uploads: Declared::declare(r, "depot_docs_uploads_total"),
            events_appended: Declared::declare(r, "depot_events_appended_total"),
            append_conflicts: Declared::declare(r, "depot_event_append_conflicts_total"),
            append_duration: Declared::declare(r, "depot_event_append_duration_seconds"),
            extraction_duration: Declared::declare(r, "depot_extraction_duration_seconds"),
            extraction_failures: Declared::declare(r, "depot_extraction_failures_total"),
            consumer_pending: Declared::declare(r, "depot_consumer_pending_events"),
            log_head: Declared::declare(r, "depot_event_log_head_sequence"),
            projector_applied: Declared::declare(r, "depot_projector_applied_sequence"),
            projector_active: Declared::declare(r, "depot_projector_active"),
            projector_events: Declared::declare(r, "depot_projector_events_applied_total"),
            projector_batch: Declared::declare(r, "depot_projector_batch_duration_seconds"),
            index_cache: Declared::declare(r, "depot_index_cache_requests_total"),
            download_cache: Declared::declare(r, "depot_download_cache_requests_total"),
            downloads: Declared::declare(r, "depot_downloads_total"),
            download_bytes: Declared::declare(r, "depot_download_bytes_total"),
            auth_refusals: Declared::declare(r, "depot_auth_refusals_total"),
            trusted_exchanges: Declared::declare(r, "depot_trusted_publishing_exchanges_total"),
            upstream_requests: Declared::declare(r, "depot_upstream_requests_total"),
            upstream_fetch_duration: Declared::declare(r, "depot_upstream_fetch_duration_seconds"),
            upstream_errors: Declared::declare(r, "depot_upstream_errors_total"),
            upstream_bytes_served: Declared::declare(r, "depot_upstream_bytes_served_total"),
            webhook_deliveries: Declared::declare(r, "depot_webhook_deliveries_total"),
            webhook_attempts: Declared::declare(r, "depot_webhook_attempts_total"),
            webhook_backlog: Declared::declare(r, "depot_webhook_backlog"),
            webhook_dispatcher_active: Declared::declare(r, "depot_webhook_dispatcher_active"),
            registry,
        }
    }
}

static REGISTRY: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &REGISTRY
}

/// Every metric in the Prometheus text exposition format.
pub fn encode() -> String {
    let families = metrics().registry.gather();
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("text encoding into memory cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_declared_metric_is_registered_once() {
        let m = metrics();
        // Touch the labelled ones so they appear in the output.
        m.http_requests
            .with_label_values(&["/x", "GET", "200"])
            .inc();
        m.http_duration
            .with_label_values(&["/x", "GET"])
            .observe(0.1);
        m.publishes.with_label_values(&["accepted"]).inc();
        m.events_appended
            .with_label_values(&["version_uploaded"])
            .inc();
        m.extraction_failures
            .with_label_values(&["invalid_path"])
            .inc();
        m.consumer_pending.with_label_values(&["extractor"]).set(0);
        m.projector_events
            .with_label_values(&["version_uploaded"])
            .inc();
        m.index_cache.with_label_values(&["hit"]).inc();
        m.download_cache.with_label_values(&["hit"]).inc();
        m.auth_refusals.with_label_values(&["missing"]).inc();
        m.webhook_deliveries.with_label_values(&["delivered"]).inc();
        m.upstream_requests
            .with_label_values(&["index", "hit"])
            .inc();
        m.upstream_fetch_duration
            .with_label_values(&["index"])
            .observe(0.1);
        m.upstream_errors
            .with_label_values(&["crate", "checksum"])
            .inc();
        m.upstream_bytes_served.with_label_values(&["crate"]).inc();
        m.trusted_exchanges.with_label_values(&["minted"]).inc();
        m.docs_uploads.with_label_values(&["stored"]).inc();
        let gathered: BTreeSet<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        let declared: BTreeSet<String> = METRICS.iter().map(|s| s.name.to_owned()).collect();
        assert_eq!(gathered, declared);
        assert_eq!(declared.len(), METRICS.len(), "duplicate declarations");
        let text = encode();
        assert!(text.contains("depot_build_info{version=\""), "{text}");
        assert!(
            text.contains("depot_http_request_duration_seconds_bucket{"),
            "{text}"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for spec in METRICS {
            assert!(spec.name.starts_with("depot_"), "{}", spec.name);
            match spec.kind {
                Kind::Counter => assert!(spec.name.ends_with("_total"), "{}", spec.name),
                Kind::Histogram => assert!(
                    spec.name.ends_with("_seconds") || spec.name.ends_with("_bytes"),
                    "{}",
                    spec.name
                ),
                Kind::Gauge => assert!(!spec.name.ends_with("_total"), "{}", spec.name),
            }
            assert!(!spec.help.is_empty());
        }
    }
}
