//! The sparse index: `config.json` and one pre-rendered file per crate, served from memory.
//!
//! Files come from the read model and are cached per crate. The projector's change
//! notifications drop entries; a short TTL bounds staleness if a notification is ever lost. An
//! epoch counter keeps a load that raced with an invalidation from re-inserting stale bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::{ApiError, AppState};

/// A cached index file, ready to serve.
#[derive(Debug)]
pub(crate) struct CachedFile {
    /// The crate's published spelling, lowercased: the only name the file is served under.
    lowercase_name: String,
    body: Bytes,
    etag: HeaderValue,
    last_modified: HeaderValue,
}

#[derive(Debug, Clone)]
struct Slot {
    file: Option<Arc<CachedFile>>,
    loaded: Instant,
}

/// Index files by canonical crate name (`None` = no such crate).
#[derive(Debug)]
pub(crate) struct IndexCache {
    slots: RwLock<HashMap<String, Slot>>,
    epoch: AtomicU64,
    ttl: Duration,
}

impl IndexCache {
    pub(crate) fn new(ttl: Duration) -> IndexCache {
        IndexCache {
            slots: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            ttl,
        }
    }

    fn get(&self, canon: &str) -> Option<Option<Arc<CachedFile>>> {
        let slots = self.slots.read().expect("index cache lock");
        let slot = slots.get(canon)?;
        (slot.loaded.elapsed() < self.ttl).then(|| slot.file.clone())
    }

    fn insert(&self, canon: &str, file: Option<Arc<CachedFile>>, epoch: u64, loaded: Instant) {
        let mut slots = self.slots.write().expect("index cache lock");
        // Only if nothing was invalidated since the load started.
        if self.epoch.load(Ordering::SeqCst) == epoch {
            slots.insert(canon.to_owned(), Slot { file, loaded });
        }
    }

    pub(crate) fn invalidate(&self, canon: &str) {
        let mut slots = self.slots.write().expect("index cache lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        slots.remove(canon);
    }

    pub(crate) fn clear(&self) {
        let mut slots = self.slots.write().expect("index cache lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        slots.clear();
    }
}

/// Loads a crate's index file, from the cache or the read model.
pub(crate) async fn load(
    state: &AppState,
    canon: &str,
) -> Result<Option<Arc<CachedFile>>, ApiError> {
    let cache = &state.inner.cache;
    let lookups = &depot_telemetry::metrics().index_cache;
    if let Some(hit) = cache.get(canon) {
        lookups.with_label_values(&["hit"]).inc();
        return Ok(hit);
    }
    lookups.with_label_values(&["miss"]).inc();
    let epoch = cache.epoch.load(Ordering::SeqCst);
    let loaded = Instant::now();
    let row = state.store().index_file(canon).await?;
    let file = row.map(|row| {
        let modified = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(row.last_modified.unix_millis()).unwrap_or(0));
        Arc::new(CachedFile {
            lowercase_name: row.name.to_ascii_lowercase(),
            body: Bytes::from(row.body),
            etag: HeaderValue::from_str(&row.etag).expect("etags are ASCII"),
            last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(modified))
                .expect("http dates are ASCII"),
        })
    });
    cache.insert(canon, file.clone(), epoch, loaded);
    Ok(file)
}

/// `GET /index/config.json`.
pub(crate) async fn config_json(State(state): State<AppState>) -> Response {
    let url = &state.config().public_url;
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Json(json!({
            "dl": format!("{url}/api/v1/crates"),
            "api": url,
        })),
    )
        .into_response()
}

/// `GET /index/{path}`: the file of one crate, with the exact sparse path rules.
///
/// The raw (still percent-encoded) path is compared, so only the exact bytes cargo requests
/// match; an encoded or non-name path is a 404 without a lookup.
pub(crate) async fn index_file(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("crate not found in this registry");
    let Some(name) = uri
        .path()
        .strip_prefix("/index/")
        .and_then(depot_index::parse_index_path)
    else {
        return Err(not_found());
    };
    let Some(file) = load(&state, &name.canonical()).await? else {
        return Err(not_found());
    };
    // The file lives at the path of the crate's own spelling; `foo_bar`'s file is not served at
    // `foo-bar`'s path (cargo probes both spellings and must find exactly one).
    if file.lowercase_name != name.as_str() {
        return Err(not_found());
    }
    let common = [
        (header::ETAG, file.etag.clone()),
        (header::LAST_MODIFIED, file.last_modified.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if etag_matches(&headers, &file.etag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
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

/// Whether `If-None-Match` lists the current ETag (weak comparison, as RFC 9110 asks).
fn etag_matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let current = etag.to_str().unwrap_or_default();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| {
            candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == current
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let etag = HeaderValue::from_static("\"abc\"");
        let mut headers = HeaderMap::new();
        assert!(!etag_matches(&headers, &etag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", \"abc\""),
        );
        assert!(etag_matches(&headers, &etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"abc\""));
        assert!(etag_matches(&headers, &etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abd\""));
        assert!(!etag_matches(&headers, &etag));
    }

    #[test]
    fn invalidation_beats_a_racing_load() {
        let cache = IndexCache::new(Duration::from_secs(60));
        let epoch = cache.epoch.load(Ordering::SeqCst);
        cache.invalidate("foo");
        cache.insert("foo", None, epoch, Instant::now());
        assert!(cache.get("foo").is_none(), "stale load must not be cached");
        let epoch = cache.epoch.load(Ordering::SeqCst);
        cache.insert("foo", None, epoch, Instant::now());
        assert_eq!(cache.get("foo").map(|f| f.is_none()), Some(true));
    }
}
