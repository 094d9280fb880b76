//! The sparse index: `config.json` and one pre-rendered file per crate, served from memory.
//!
//! Files come from the read model and are cached per crate. The projector's change
//! notifications drop entries; a short TTL bounds staleness if a notification is ever lost. An
//! epoch counter keeps a load that raced with an invalidation from re-inserting stale bytes.
//!
//! The cache is bounded: files are evicted least recently used first once their total size or
//! count exceeds [`CacheBounds`]; names with no crate are remembered in a separate, smaller LRU,
//! so requests for unknown names can neither grow memory nor push real files out. Names that
//! break cargo's rules never reach the cache or the database.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lru::LruCache;
use serde_json::json;

use crate::{ApiError, AppState};

/// Bookkeeping bytes counted per cached file on top of its body and headers.
const ENTRY_OVERHEAD: usize = 128;

/// A cached index file, ready to serve.
#[derive(Debug)]
pub(crate) struct CachedFile {
    /// The crate's published spelling, lowercased: the only name the file is served under.
    lowercase_name: String,
    body: Bytes,
    etag: HeaderValue,
    last_modified: HeaderValue,
}

impl CachedFile {
    /// What the file costs the cache, in bytes (approximate, never less than its parts).
    fn cost(&self, canon: &str) -> usize {
        canon.len()
            + self.lowercase_name.len()
            + self.body.len()
            + self.etag.len()
            + self.last_modified.len()
            + ENTRY_OVERHEAD
    }
}

/// How much the index cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheBounds {
    /// The most bytes of files (see [`CachedFile::cost`]).
    pub(crate) max_bytes: usize,
    /// The most files.
    pub(crate) max_entries: NonZeroUsize,
    /// The most remembered unknown names.
    pub(crate) max_misses: NonZeroUsize,
}

#[derive(Debug, Clone)]
struct Slot {
    file: Arc<CachedFile>,
    cost: usize,
    loaded: Instant,
}

#[derive(Debug)]
struct Slots {
    files: LruCache<String, Slot>,
    /// Total cost of `files`.
    bytes: usize,
    /// Canonical names known to have no crate, with when that was read.
    misses: LruCache<String, Instant>,
}

/// Index files by canonical crate name, and names with no crate.
#[derive(Debug)]
pub(crate) struct IndexCache {
    slots: Mutex<Slots>,
    epoch: AtomicU64,
    ttl: Duration,
    max_bytes: usize,
}

impl IndexCache {
    pub(crate) fn new(ttl: Duration, bounds: CacheBounds) -> IndexCache {
        IndexCache {
            slots: Mutex::new(Slots {
                files: LruCache::new(bounds.max_entries),
                bytes: 0,
                misses: LruCache::new(bounds.max_misses),
            }),
            epoch: AtomicU64::new(0),
            ttl,
            max_bytes: bounds.max_bytes,
        }
    }

    /// `Some(Some(file))` for a cached file, `Some(None)` for a cached miss, `None` if nothing
    /// fresh is cached.
    fn get(&self, canon: &str) -> Option<Option<Arc<CachedFile>>> {
        let mut slots = self.slots.lock().expect("index cache lock");
        if let Some(slot) = slots.files.get(canon) {
            if slot.loaded.elapsed() < self.ttl {
                return Some(Some(slot.file.clone()));
            }
            if let Some(stale) = slots.files.pop(canon) {
                slots.bytes -= stale.cost;
            }
            return None;
        }
        let loaded = *slots.misses.get(canon)?;
        if loaded.elapsed() < self.ttl {
            return Some(None);
        }
        slots.misses.pop(canon);
        None
    }

    fn insert(&self, canon: &str, file: Option<Arc<CachedFile>>, epoch: u64, loaded: Instant) {
        let mut slots = self.slots.lock().expect("index cache lock");
        // Only if nothing was invalidated since the load started.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        let Some(file) = file else {
            if let Some(old) = slots.files.pop(canon) {
                slots.bytes -= old.cost;
            }
            slots.misses.put(canon.to_owned(), loaded);
            return;
        };
        slots.misses.pop(canon);
        let cost = file.cost(canon);
        if cost > self.max_bytes {
            // Too large to cache: served from the database each time.
            if let Some(old) = slots.files.pop(canon) {
                slots.bytes -= old.cost;
            }
            return;
        }
        let slot = Slot { file, cost, loaded };
        // `push` returns the replaced entry of this name or the evicted least recently used one.
        if let Some((_, old)) = slots.files.push(canon.to_owned(), slot) {
            slots.bytes -= old.cost;
        }
        slots.bytes += cost;
        while slots.bytes > self.max_bytes {
            let Some((_, evicted)) = slots.files.pop_lru() else {
                break;
            };
            slots.bytes -= evicted.cost;
        }
    }

    pub(crate) fn invalidate(&self, canon: &str) {
        let mut slots = self.slots.lock().expect("index cache lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(old) = slots.files.pop(canon) {
            slots.bytes -= old.cost;
        }
        slots.misses.pop(canon);
    }

    pub(crate) fn clear(&self) {
        let mut slots = self.slots.lock().expect("index cache lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        slots.files.clear();
        slots.misses.clear();
        slots.bytes = 0;
    }

    /// (files, their total cost, remembered misses).
    #[cfg(test)]
    fn usage(&self) -> (usize, usize, usize) {
        let slots = self.slots.lock().expect("index cache lock");
        (slots.files.len(), slots.bytes, slots.misses.len())
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
    let mut config = json!({
        "dl": format!("{url}/api/v1/crates"),
        "api": url,
    });
    if state.config().auth_required {
        config["auth-required"] = json!(true);
    }
    (
        [(
            header::CACHE_CONTROL,
            crate::auth::cache_control(&state, "no-cache"),
        )],
        Json(config),
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
    crate::auth::authorize_read(&state, &headers, name.as_str()).await?;
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
        (
            header::CACHE_CONTROL,
            crate::auth::cache_control(&state, "no-cache"),
        ),
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
pub(crate) fn etag_matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
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

    fn bounds(max_bytes: usize, max_entries: usize, max_misses: usize) -> CacheBounds {
        CacheBounds {
            max_bytes,
            max_entries: NonZeroUsize::new(max_entries).unwrap(),
            max_misses: NonZeroUsize::new(max_misses).unwrap(),
        }
    }

    fn file(name: &str, body_len: usize) -> Arc<CachedFile> {
        Arc::new(CachedFile {
            lowercase_name: name.to_owned(),
            body: Bytes::from(vec![b'x'; body_len]),
            etag: HeaderValue::from_static("\"e\""),
            last_modified: HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        })
    }

    fn put(cache: &IndexCache, name: &str, file: Option<Arc<CachedFile>>) {
        let epoch = cache.epoch.load(Ordering::SeqCst);
        cache.insert(name, file, epoch, Instant::now());
    }

    #[test]
    fn invalidation_beats_a_racing_load() {
        let cache = IndexCache::new(Duration::from_secs(60), bounds(1 << 20, 10, 10));
        let epoch = cache.epoch.load(Ordering::SeqCst);
        cache.invalidate("foo");
        cache.insert("foo", None, epoch, Instant::now());
        assert!(cache.get("foo").is_none(), "stale load must not be cached");
        let epoch = cache.epoch.load(Ordering::SeqCst);
        cache.insert("foo", None, epoch, Instant::now());
        assert_eq!(cache.get("foo").map(|f| f.is_none()), Some(true));
        put(&cache, "bar", Some(file("bar", 10)));
        let epoch = cache.epoch.load(Ordering::SeqCst);
        cache.invalidate("bar");
        cache.insert("bar", Some(file("bar", 20)), epoch, Instant::now());
        assert!(cache.get("bar").is_none(), "stale file must not be cached");
        assert_eq!(cache.usage(), (0, 0, 1));
    }

    #[test]
    fn files_are_evicted_by_size_least_recently_used_first() {
        let one = file("a", 1000).cost("a");
        let cache = IndexCache::new(Duration::from_secs(60), bounds(3 * one, 100, 10));
        for name in ["a", "b", "c"] {
            put(&cache, name, Some(file(name, 1000)));
        }
        assert!(cache.get("a").is_some(), "a is now the most recently used");
        put(&cache, "d", Some(file("d", 1000)));
        assert!(cache.get("b").is_none(), "b was least recently used");
        for name in ["a", "c", "d"] {
            assert!(cache.get(name).is_some(), "{name} kept");
        }
        assert_eq!(cache.usage(), (3, 3 * one, 0));
        // A file larger than the whole budget is not cached and evicts nothing.
        put(&cache, "huge", Some(file("huge", 4 * one)));
        assert!(cache.get("huge").is_none());
        assert_eq!(cache.usage(), (3, 3 * one, 0));
    }

    #[test]
    fn files_are_evicted_by_count_and_misses_do_not_push_them_out() {
        let cache = IndexCache::new(Duration::from_secs(60), bounds(1 << 20, 2, 3));
        put(&cache, "a", Some(file("a", 1)));
        put(&cache, "b", Some(file("b", 1)));
        for i in 0..1000 {
            put(&cache, &format!("unknown{i}"), None);
        }
        let (files, _, misses) = cache.usage();
        assert_eq!((files, misses), (2, 3));
        assert!(cache.get("a").is_some() && cache.get("b").is_some());
        put(&cache, "c", Some(file("c", 1)));
        assert_eq!(cache.usage().0, 2);
        assert_eq!(cache.get("unknown999").map(|f| f.is_none()), Some(true));
        // A crate that appears replaces its remembered miss.
        put(&cache, "unknown999", Some(file("unknown999", 1)));
        assert_eq!(cache.usage().2, 2);
    }

    #[test]
    fn expired_entries_are_dropped_on_read() {
        let cache = IndexCache::new(Duration::ZERO, bounds(1 << 20, 10, 10));
        put(&cache, "a", Some(file("a", 10)));
        put(&cache, "gone", None);
        assert!(cache.get("a").is_none());
        assert!(cache.get("gone").is_none());
        assert_eq!(cache.usage(), (0, 0, 0));
    }

    proptest::proptest! {
        /// Whatever the sequence of fills, misses, invalidations and reads, the cache stays
        /// within its bounds and its byte count is exact.
        #[test]
        fn stays_within_bounds(ops in proptest::collection::vec((0u8..4, 0usize..40, 0usize..3000), 1..300)) {
            let cache = IndexCache::new(Duration::from_secs(60), bounds(10_000, 8, 5));
            for (op, key, size) in ops {
                let name = format!("k{key}");
                match op {
                    0 => put(&cache, &name, Some(file(&name, size))),
                    1 => put(&cache, &name, None),
                    2 => cache.invalidate(&name),
                    _ => { let _ = cache.get(&name); }
                }
                let slots = cache.slots.lock().unwrap();
                let exact: usize = slots.files.iter().map(|(_, slot)| slot.cost).sum();
                proptest::prop_assert_eq!(exact, slots.bytes);
                proptest::prop_assert!(slots.bytes <= 10_000);
                proptest::prop_assert!(slots.files.len() <= 8);
                proptest::prop_assert!(slots.misses.len() <= 5);
                for (name, _) in slots.files.iter() {
                    proptest::prop_assert!(!slots.misses.contains(name));
                }
            }
        }
    }
}
