//! The one error type of the HTTP edge, rendered in cargo's format
//! `{"errors":[{"detail":"…"}]}` with an accurate status.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    details: Vec<String>,
    /// Whole seconds for a `Retry-After` header, when the client should come back later.
    retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge (401 answers).
    challenge: Option<HeaderValue>,
}

impl ApiError {
    /// An error with one detail message.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            details: vec![detail.into()],
            retry_after: None,
            challenge: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401 Unauthorized: no valid token; see [`ApiError::with_challenge`].
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// Adds a `WWW-Authenticate` header.
    pub fn with_challenge(mut self, challenge: HeaderValue) -> ApiError {
        self.challenge = Some(challenge);
        self
    }

    /// 403 Forbidden.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409 Conflict.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, detail)
    }

    /// 413 Payload Too Large.
    pub fn too_large(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 405 Method Not Allowed (axum adds the `Allow` header).
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed for this path",
        )
    }

    /// 503 Service Unavailable: a backend is down or overloaded; the client may retry.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// 500 Internal Server Error; the cause is logged here, once, and not shown to the client.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error; the operator can find the cause in Depot's log",
        )
    }

    /// An error with several details (cargo joins them with `, `).
    pub fn many(status: StatusCode, details: Vec<String>) -> ApiError {
        ApiError {
            status,
            details,
            retry_after: None,
            challenge: None,
        }
    }

    /// 429 Too Many Requests, with `Retry-After` (rounded up to whole seconds, at least 1).
    pub fn too_many_requests(detail: impl Into<String>, wait: Duration) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail).with_retry_after(wait)
    }

    /// 408 Request Timeout: the client stopped sending.
    pub fn request_timeout(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, detail)
    }

    /// Adds a `Retry-After` header (rounded up to whole seconds, at least 1).
    pub fn with_retry_after(mut self, wait: Duration) -> ApiError {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// The first detail message.
    pub fn detail(&self) -> &str {
        self.details.first().map_or("", String::as_str)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail messages.
    pub fn details(&self) -> &[String] {
        &self.details
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<_> = self
            .details
            .iter()
            .map(|detail| json!({ "detail": detail }))
            .collect();
        let mut response = (self.status, Json(json!({ "errors": errors }))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The answer to a request whose handler panicked: a cargo-format 500. The panic message is
/// logged, not shown.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(format_args!("a request handler panicked: {message}")).into_response()
}

impl From<depot_store::StoreError> for ApiError {
    fn from(error: depot_store::StoreError) -> ApiError {
        if error.is_unavailable() {
            tracing::warn!(%error, "database unavailable");
            ApiError::unavailable("the registry database is unavailable; try again shortly")
        } else if error.is_storage_full() {
            tracing::error!(%error, "blob storage full");
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "the registry's storage for crate files is full; nothing was published, try \
                 again once the operator has freed space",
            )
        } else {
            ApiError::internal(error)
        }
    }
}

impl From<depot_eventlog::LogError> for ApiError {
    fn from(error: depot_eventlog::LogError) -> ApiError {
        match error {
            depot_eventlog::LogError::Unavailable(reason) => {
                tracing::warn!(%reason, "event log unavailable");
                ApiError::unavailable("the registry event log is unavailable; try again shortly")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<depot_eventlog::AppendError> for ApiError {
    fn from(error: depot_eventlog::AppendError) -> ApiError {
        if error.is_transient() {
            tracing::warn!(%error, "event log unavailable");
            ApiError::unavailable("the registry event log is unavailable; try again shortly")
        } else {
            ApiError::internal(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request, header};
    use axum::routing::get;
    use serde_json::Value;
    use tower::ServiceExt as _;
    use tower_http::catch_panic::CatchPanicLayer;

    use super::*;

    async fn send(app: Router, method: Method, uri: &str) -> (StatusCode, HeaderMapLite, Value) {
        let response = app
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let allow = response
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            HeaderMapLite { allow },
            serde_json::from_slice(&body).unwrap(),
        )
    }

    struct HeaderMapLite {
        allow: Option<String>,
    }

    fn detail(json: &Value) -> &str {
        json["errors"][0]["detail"].as_str().unwrap_or_default()
    }

    fn app() -> Router {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }))
            .fallback(|| async { ApiError::not_found("not found") })
            .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
            .layer(CatchPanicLayer::custom(panic_response))
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_cargo_format_500() {
        let (status, _, json) = send(app(), Method::GET, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(detail(&json).contains("internal server error"), "{json}");
        assert!(
            !detail(&json).contains("boom"),
            "the panic is not shown: {json}"
        );
    }

    #[tokio::test]
    async fn wrong_methods_and_unknown_routes_answer_in_cargo_format() {
        let (status, headers, json) = send(app(), Method::DELETE, "/ok").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(!detail(&json).is_empty());
        assert!(headers.allow.is_some_and(|a| a.contains("GET")));
        let (status, _, json) = send(app(), Method::GET, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!detail(&json).is_empty());
    }
}
