//! Request metrics: count and latency by route template, method and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The `route` label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Middleware recording `depot_http_requests_total` and `depot_http_request_duration_seconds`.
/// The route label is the route template (bounded), never the raw path.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Cheap clones (a shared string, a method without allocation), not copies of the text.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let metrics = depot_telemetry::metrics();
    metrics
        .http_duration
        .with_label_values(&[route, method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[route, method.as_str(), response.status().as_str()])
        .inc();
    response
}
