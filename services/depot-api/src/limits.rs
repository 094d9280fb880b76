//! Limits at the HTTP edge: in-flight requests, request deadlines, and the caps on request
//! parameters that handlers check.
//!
//! The connection-level limits (connections, header read timeout) live with the server that
//! accepts connections; these are the ones that need the router.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::ApiError;
use crate::rate_limit::RateSpec;

/// The route that streams uploads: it has its own idle-body timeout and no overall deadline.
const UPLOAD_ROUTE: &str = "/api/v1/crates/new";

/// The route that streams docs archives, like [`UPLOAD_ROUTE`].
const DOCS_UPLOAD_ROUTE: &str = "/api/v1/crates/{name}/{version}/docs";

/// How long a shed client is asked to wait before retrying.
const SHED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Limits of the api role's HTTP edge.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// The longest wait for the next chunk of an upload body; a slower upload fails with 408.
    pub body_idle_timeout: Duration,
    /// The longest a request other than an upload may take until its response starts; later
    /// it is answered with 503.
    pub request_timeout: Duration,
    /// Requests handled at the same time; more are answered at once with 503 and
    /// `Retry-After`.
    pub max_in_flight: usize,
    /// The longest search query `q`, in bytes.
    pub max_search_query_bytes: usize,
    /// The most logins one owners request may name.
    pub max_owners_per_request: usize,
    /// The most bytes of index files the cache holds.
    pub index_cache_bytes: usize,
    /// The most index files the cache holds.
    pub index_cache_entries: usize,
    /// The most unknown crate names the cache remembers.
    pub index_cache_misses: usize,
    /// The most bytes the download cache holds (small crates' bytes, keys of larger ones).
    pub download_cache_bytes: usize,
    /// The most versions the download cache holds.
    pub download_cache_entries: usize,
    /// Publishes per token.
    pub publish_rate: RateSpec,
    /// Yanks, unyanks and owner changes per token.
    pub command_rate: RateSpec,
}

impl Default for EdgeLimits {
    fn default() -> EdgeLimits {
        EdgeLimits {
            body_idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 512,
            max_search_query_bytes: 256,
            max_owners_per_request: 32,
            index_cache_bytes: 64 << 20,
            index_cache_entries: 20_000,
            index_cache_misses: 10_000,
            download_cache_bytes: 64 << 20,
            download_cache_entries: 65_536,
            publish_rate: RateSpec::default(),
            command_rate: RateSpec::default(),
        }
    }
}

/// The in-flight request budget shared by every connection.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    permits: Arc<Semaphore>,
}

impl InFlight {
    pub(crate) fn new(max: usize) -> InFlight {
        InFlight {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

/// Middleware: sheds requests beyond the in-flight budget with 503 and `Retry-After`, instead of
/// queueing them without bound. A permit is held until the response head is ready.
pub(crate) async fn shed_load(
    State(in_flight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = in_flight.permits.clone().try_acquire_owned() else {
        return ApiError::unavailable("the registry is handling too many requests; try again")
            .with_retry_after(SHED_RETRY_AFTER)
            .into_response();
    };
    next.run(request).await
}

/// Middleware: answers 503 when a request other than an upload takes longer than `limit` to
/// produce its response head. Streaming a response body (a download) is not limited here.
pub(crate) async fn deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if is_upload(&request) {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!(
            "the request took longer than {} s; try again",
            limit.as_secs_f64()
        ))
        .with_retry_after(SHED_RETRY_AFTER)
        .into_response(),
    }
}

fn is_upload(request: &Request) -> bool {
    request.method() == Method::PUT
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|path| path.as_str() == UPLOAD_ROUTE || path.as_str() == DOCS_UPLOAD_ROUTE)
}

/// Fails with 400 when a search query is longer than `max` bytes.
pub(crate) fn check_search_query(q: &str, max: usize) -> Result<(), ApiError> {
    if q.len() > max {
        return Err(ApiError::bad_request(format!(
            "the search query is {} bytes; the most is {max}",
            q.len()
        )));
    }
    Ok(())
}

/// Fails with 400 when an owners request names more than `max` logins.
pub(crate) fn check_owner_count(count: usize, max: usize) -> Result<(), ApiError> {
    if count > max {
        return Err(ApiError::bad_request(format!(
            "an owners request may name at most {max} users"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::{get, put};
    use tower::ServiceExt as _;

    fn app(limit: Duration, in_flight: usize) -> Router {
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "late"
        };
        Router::new()
            .route("/slow", get(slow))
            .route(UPLOAD_ROUTE, put(slow))
            .layer(axum::middleware::from_fn_with_state(limit, deadline))
            .layer(axum::middleware::from_fn_with_state(
                InFlight::new(in_flight),
                shed_load,
            ))
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_get_503_in_cargo_format() {
        let response = app(Duration::from_secs(5), 8)
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        let json = body_json(response).await;
        assert!(
            json["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("longer than 5 s"),
            "{json}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn uploads_have_no_overall_deadline() {
        let request = Request::put(UPLOAD_ROUTE).body(Body::empty()).unwrap();
        let answered = tokio::time::timeout(
            Duration::from_secs(60),
            app(Duration::from_secs(5), 8).oneshot(request),
        )
        .await;
        assert!(answered.is_err(), "the upload was cut by the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_budget_are_shed() {
        let app = app(Duration::from_secs(3600), 2);
        let mut pending = Vec::new();
        for _ in 0..2 {
            let app = app.clone();
            pending.push(tokio::spawn(async move {
                app.oneshot(Request::get("/slow").body(Body::empty()).unwrap())
                    .await
            }));
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let response = app
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        let json = body_json(response).await;
        assert!(json["errors"][0]["detail"].is_string(), "{json}");
        for task in pending {
            task.abort();
        }
    }

    #[test]
    fn caps() {
        assert!(check_search_query(&"a".repeat(256), 256).is_ok());
        let long = check_search_query(&"a".repeat(257), 256).unwrap_err();
        assert_eq!(long.status(), StatusCode::BAD_REQUEST);
        assert!(check_owner_count(32, 32).is_ok());
        assert_eq!(
            check_owner_count(33, 32).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
