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
}

impl ApiError {
    /// An error with one detail message.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            details: vec![detail.into()],
            retry_after: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
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

    /// The status code.
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
        response
    }
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
