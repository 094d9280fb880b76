//! The cache's routes: `/crates-io/index/config.json`, `/crates-io/index/{path}` and
//! `/crates-io/dl/{name}/{version}/download`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use depot_store::BlobBody;
use serde_json::json;

use crate::downloads::Target;
use crate::extract::VersionPath;
use crate::{ApiError, AppState};

/// Where the cache's index lives, relative to the public URL.
pub(crate) const INDEX_PREFIX: &str = "/crates-io/index/";

/// `GET /crates-io/index/config.json`: downloads go through Depot too.
pub(crate) async fn config_json(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::auth::reader(&state, &headers).await?;
    let url = &state.config().public_url;
    let mut config = json!({ "dl": format!("{url}/crates-io/dl") });
    if state.config().auth_required {
        config["api"] = json!(url);
        config["auth-required"] = json!(true);
    }
    Ok((
        [(
            header::CACHE_CONTROL,
            crate::auth::cache_control(&state, "no-cache"),
        )],
        Json(config),
    )
        .into_response())
}

/// `GET /crates-io/index/{path}`: the upstream's index file, byte for byte.
pub(crate) async fn index_file(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("crate not found in the upstream registry");
    let Some(name) = uri
        .path()
        .strip_prefix(INDEX_PREFIX)
        .and_then(depot_index::parse_index_path)
    else {
        return Err(not_found());
    };
    crate::auth::reader(&state, &headers).await?;
    let Some(file) = super::index_lookup(&state, &name).await? else {
        return Err(not_found());
    };
    let common = [
        (header::ETAG, file.etag.clone()),
        (
            header::CACHE_CONTROL,
            crate::auth::cache_control(&state, "no-cache"),
        ),
    ];
    if crate::index::etag_matches(&headers, &file.etag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    served("index", file.body.len() as u64);
    Ok((
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        file.body.clone(),
    )
        .into_response())
}

/// `GET /crates-io/dl/{name}/{version}/download`: the upstream's `.crate`, verified.
pub(crate) async fn download(
    State(state): State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::auth::reader(&state, &headers).await?;
    let name = name.to_lowercase();
    let proxy = state.proxy();
    let memory_key = format!("{name} {vers}");
    let cached = match proxy.crates.get(&memory_key) {
        Some(Target::Bytes(bytes)) => {
            super::count("crate", "hit");
            served("crate", bytes.len() as u64);
            let len = bytes.len() as u64;
            return Ok(crate::downloads::crate_response(
                &state,
                len,
                Body::from(bytes),
            ));
        }
        Some(Target::Blob { key, len }) => {
            super::count("crate", "hit");
            super::CachedCrate { key, size: len }
        }
        None => super::crate_lookup(&state, &name, vers.as_str()).await?,
    };
    let Some(body) = state.inner.blobs.read_body(&cached.key).await? else {
        return Err(ApiError::internal(format!(
            "blob {} of upstream {name} {vers} is missing from the blob store",
            cached.key
        )));
    };
    let len = body.len();
    if len != cached.size {
        return Err(ApiError::internal(format!(
            "blob {} of upstream {name} {vers} has {len} bytes, {} were stored",
            cached.key, cached.size
        )));
    }
    served("crate", len);
    let body = match body {
        BlobBody::Whole(bytes) => {
            let target = if proxy.crates.keeps_bytes(len) {
                Target::Bytes(bytes.clone())
            } else {
                Target::Blob {
                    key: cached.key,
                    len,
                }
            };
            proxy.crates.insert(memory_key, target);
            Body::from(bytes)
        }
        BlobBody::Chunks { chunks, .. } => {
            proxy.crates.insert(
                memory_key,
                Target::Blob {
                    key: cached.key,
                    len,
                },
            );
            Body::from_stream(chunks)
        }
    };
    Ok(crate::downloads::crate_response(&state, len, body))
}

fn served(kind: &str, bytes: u64) {
    depot_telemetry::metrics()
        .upstream_bytes_served
        .with_label_values(&[kind])
        .inc_by(bytes);
}
