//! Extractors that parse raw request input once, into validated values, and answer every
//! rejection in cargo's error format.
//!
//! Handlers take [`CratePath`], [`VersionPath`], [`ApiQuery`] and [`ApiJson`] instead of axum's
//! `Path`, `Query` and `Json`, so nothing deeper sees an unchecked crate name or version and no
//! rejection leaves as axum's plain-text body.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use depot_index::{CrateName, Version};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The `{name}` of a crate route, parsed as a crate name. An undecodable or invalid name is a
/// 404: no crate can be called that.
#[derive(Debug)]
pub(crate) struct CratePath(pub(crate) CrateName);

/// The `{name}/{version}` of a version route, both parsed. Invalid ones are a 404.
#[derive(Debug)]
pub(crate) struct VersionPath(pub(crate) CrateName, pub(crate) Version);

/// A query string deserialised into `T`; a bad one is a 400.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

/// A JSON body deserialised into `T`; a bad one is a 400 (or 413/415/422 as axum classifies it).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync> FromRequestParts<S> for CratePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        Ok(CratePath(crate_name(&raw)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((name, vers)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        let name = crate_name(&name)?;
        let vers = Version::parse(&vers)
            .map_err(|e| ApiError::not_found(format!("crate `{name}` has no such version: {e}")))?;
        Ok(VersionPath(name, vers))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// Parses a crate name taken from a path.
pub(crate) fn crate_name(raw: &str) -> Result<CrateName, ApiError> {
    CrateName::parse(raw).map_err(|e| ApiError::not_found(format!("no crate has this name: {e}")))
}

/// Every path parameter of Depot is a crate name or a version, so a parameter that cannot be
/// decoded (not UTF-8) names nothing: 404. A route without the parameters is a bug: 500.
fn path_rejection(rejection: PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(_) => {
            ApiError::not_found("not found: a path parameter is not valid percent-encoded UTF-8")
        }
        other => ApiError::internal(other.body_text()),
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        format!("invalid query string: {}", bounded(&rejection.body_text())),
    )
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        format!("invalid request body: {}", bounded(&rejection.body_text())),
    )
}

/// The start of a message that may quote client input (serde errors do), at most 300 characters.
fn bounded(message: &str) -> String {
    const MAX: usize = 300;
    match message.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(1000);
        assert_eq!(bounded(&long).chars().count(), 301);
    }
}
