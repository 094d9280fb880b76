//! `GET /api/v1/crates/{name}/{version}/download`, its in-memory cache and download counts.
//!
//! An accepted version never changes: its `.crate` is stored under its content address
//! (`sha256/<hex>`), the `versions` row that names it goes from `pending` to `accepted` once and
//! is never updated or deleted afterwards (a yank only flips a flag, and the blob stays
//! downloadable), and a replay folds the same log into the same rows. So what a version
//! resolves to can be remembered without invalidation: the [`DownloadCache`] keeps the bytes of
//! small crates, and the blob key and size of larger ones (whose bytes are streamed from the
//! blob store), so a download it knows never touches the database. It is bounded in entries and
//! in bytes and evicts the least recently used first; only accepted versions enter it.
//!
//! Download counts are gathered in memory ([`DownloadCounter`], no allocation for a version
//! already counted since the last flush) and written in batches by
//! [`crate::AppState::flush_downloads`]. `HEAD` requests answer the same headers
//! (`Content-Length` included) without a body and are not counted as downloads.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use depot_store::BlobBody;
use futures::TryStreamExt as _;
use lru::LruCache;

use crate::auth::{authorize_read, cache_control};
use crate::extract::VersionPath;
use crate::{ApiError, AppState};

/// The largest crate whose bytes the cache keeps (also at most an eighth of its byte budget).
pub(crate) const MAX_CACHED_CRATE: usize = 1 << 20;

/// Bookkeeping bytes counted per entry on top of its key and body.
const ENTRY_OVERHEAD: usize = 96;

/// How much the download cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DownloadCacheBounds {
    /// The most bytes (crate bytes, keys and [`ENTRY_OVERHEAD`] per entry).
    pub(crate) max_bytes: usize,
    /// The most entries.
    pub(crate) max_entries: NonZeroUsize,
}

/// What a version resolves to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The whole `.crate`, served from memory.
    Bytes(Bytes),
    /// A larger `.crate`: its blob key and size, streamed from the blob store.
    Blob { key: String, len: u64 },
}

impl Target {
    #[cfg(test)]
    fn len(&self) -> u64 {
        match self {
            Target::Bytes(bytes) => bytes.len() as u64,
            Target::Blob { len, .. } => *len,
        }
    }

    fn cost(&self, key: &str) -> usize {
        key.len()
            + ENTRY_OVERHEAD
            + match self {
                Target::Bytes(bytes) => bytes.len(),
                Target::Blob { key, .. } => key.len(),
            }
    }
}

#[derive(Debug)]
struct Slot {
    target: Target,
    cost: usize,
}

#[derive(Debug)]
struct Slots {
    entries: LruCache<String, Slot>,
    /// Total cost of `entries`.
    bytes: usize,
}

/// Accepted versions → their `.crate` bytes (small ones) or blob (larger ones), least recently
/// used evicted first.
#[derive(Debug)]
pub(crate) struct DownloadCache {
    slots: Mutex<Slots>,
    max_bytes: usize,
    max_crate: usize,
}

/// The cache key of a version: canonical name and version, apart.
fn cache_key(canon: &str, vers: &str) -> String {
    let mut key = String::with_capacity(canon.len() + 1 + vers.len());
    key.push_str(canon);
    key.push(' ');
    key.push_str(vers);
    key
}

impl DownloadCache {
    pub(crate) fn new(bounds: DownloadCacheBounds) -> DownloadCache {
        DownloadCache {
            slots: Mutex::new(Slots {
                entries: LruCache::new(bounds.max_entries),
                bytes: 0,
            }),
            max_bytes: bounds.max_bytes,
            max_crate: MAX_CACHED_CRATE.min(bounds.max_bytes / 8),
        }
    }

    /// Whether a crate of `len` bytes is kept in memory.
    pub(crate) fn keeps_bytes(&self, len: u64) -> bool {
        usize::try_from(len).is_ok_and(|len| len <= self.max_crate)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Target> {
        let mut slots = self.slots.lock().expect("download cache lock");
        slots.entries.get(key).map(|slot| slot.target.clone())
    }

    pub(crate) fn insert(&self, key: String, target: Target) {
        let cost = target.cost(&key);
        let mut slots = self.slots.lock().expect("download cache lock");
        if cost > self.max_bytes {
            // Too large to keep: nothing stays under this key.
            if let Some(old) = slots.entries.pop(&key) {
                slots.bytes -= old.cost;
            }
            return;
        }
        // `push` returns the replaced entry of this key or the evicted least recently used one.
        if let Some((_, old)) = slots.entries.push(key, Slot { target, cost }) {
            slots.bytes -= old.cost;
        }
        slots.bytes += cost;
        while slots.bytes > self.max_bytes {
            let Some((_, evicted)) = slots.entries.pop_lru() else {
                break;
            };
            slots.bytes -= evicted.cost;
        }
    }

    /// (entries, their total cost, entries holding bytes).
    #[cfg(test)]
    fn usage(&self) -> (usize, usize, usize) {
        let slots = self.slots.lock().expect("download cache lock");
        let with_bytes = slots
            .entries
            .iter()
            .filter(|(_, slot)| matches!(slot.target, Target::Bytes(_)))
            .count();
        (slots.entries.len(), slots.bytes, with_bytes)
    }
}

/// The response to a download: the `.crate` with its exact length.
pub(crate) fn crate_response(state: &AppState, len: u64, body: Body) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            (
                header::CACHE_CONTROL,
                cache_control(state, "public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

fn missing_blob(blob: &str, canon: &str, vers: &str) -> ApiError {
    ApiError::internal(format!(
        "blob {blob} of {canon} {vers} is missing from the blob store"
    ))
}

/// `GET /api/v1/crates/{name}/{version}/download` (and `HEAD`): the `.crate`, from memory if
/// cached, else streamed from the blob store (or a redirect to it, if so configured).
pub(crate) async fn download(
    State(state): State<AppState>,
    method: Method,
    VersionPath(name, vers): VersionPath,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_read(&state, &request_headers, name.as_str()).await?;
    let canon = name.canonical();
    let head = method == Method::HEAD;
    let key = cache_key(&canon, vers.as_str());
    let cache = &state.inner.download_cache;
    let cached = cache.get(&key);
    let metrics = depot_telemetry::metrics();
    if !head {
        let result = if matches!(cached, Some(Target::Bytes(_))) {
            "hit"
        } else {
            "miss"
        };
        metrics.download_cache.with_label_values(&[result]).inc();
    }
    let count = |len: u64| {
        if !head {
            state.inner.downloads.count(&canon, vers.as_str());
            metrics.downloads.inc();
            metrics.download_bytes.inc_by(len);
        }
    };

    let (blob, known_len) = match cached {
        Some(Target::Bytes(bytes)) => {
            let len = bytes.len() as u64;
            count(len);
            let body = if head {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            return Ok(crate_response(&state, len, body));
        }
        Some(Target::Blob { key, len }) => (key, Some(len)),
        None => {
            let Some(blob) = state.store().download_target(&canon, &vers).await? else {
                return Err(ApiError::not_found(format!(
                    "crate `{name}` has no version `{vers}`"
                )));
            };
            (blob, None)
        }
    };

    if let Some(valid_for) = state.config().blob_redirect
        && let Some(url) = state.inner.blobs.download_url(&blob, valid_for).await?
    {
        if !head {
            state.inner.downloads.count(&canon, vers.as_str());
            metrics.downloads.inc();
        }
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                (
                    header::LOCATION,
                    HeaderValue::from_str(&url).map_err(ApiError::internal)?,
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response());
    }

    if head {
        let len = match known_len {
            Some(len) => len,
            None => {
                let Some(len) = state.inner.blobs.size_of(&blob).await? else {
                    return Err(missing_blob(&blob, &canon, vers.as_str()));
                };
                if !cache.keeps_bytes(len) {
                    cache.insert(key, Target::Blob { key: blob, len });
                }
                len
            }
        };
        return Ok(crate_response(&state, len, Body::empty()));
    }

    let Some(body) = state.inner.blobs.read_body(&blob).await? else {
        return Err(missing_blob(&blob, &canon, vers.as_str()));
    };
    let len = body.len();
    if known_len.is_some_and(|known| known != len) {
        return Err(ApiError::internal(format!(
            "blob {blob} of {canon} {vers} changed size"
        )));
    }
    count(len);
    let body = match body {
        BlobBody::Whole(bytes) => {
            if cache.keeps_bytes(len) {
                cache.insert(key, Target::Bytes(bytes.clone()));
            }
            Body::from(bytes)
        }
        BlobBody::Chunks { chunks, len } if cache.keeps_bytes(len) => {
            // Small enough to keep: read it whole (at most `MAX_CACHED_CRATE` bytes), once.
            let capacity = usize::try_from(len).unwrap_or(0);
            let bytes = chunks
                .try_fold(
                    BytesMut::with_capacity(capacity),
                    |mut all, chunk| async move {
                        if all.len() + chunk.len() > capacity {
                            return Err(std::io::Error::other("the blob grew while being read"));
                        }
                        all.extend_from_slice(&chunk);
                        Ok(all)
                    },
                )
                .await
                .map_err(ApiError::internal)?
                .freeze();
            if bytes.len() as u64 != len {
                return Err(ApiError::internal(format!(
                    "blob {blob} of {canon} {vers} ended early"
                )));
            }
            cache.insert(key, Target::Bytes(bytes.clone()));
            Body::from(bytes)
        }
        BlobBody::Chunks { chunks, len } => {
            if known_len.is_none() {
                cache.insert(key, Target::Blob { key: blob, len });
            }
            Body::from_stream(chunks)
        }
    };
    Ok(crate_response(&state, len, body))
}

/// Download counts gathered in memory and written in batches: canonical name → version →
/// downloads since the last flush.
#[derive(Debug, Default)]
pub(crate) struct DownloadCounter {
    counts: Mutex<HashMap<String, HashMap<String, u64>>>,
}

impl DownloadCounter {
    /// Counts one download; allocates only for a version not counted since the last flush.
    pub(crate) fn count(&self, canon: &str, vers: &str) {
        let mut counts = self.counts.lock().expect("download counter lock");
        if let Some(n) = counts
            .get_mut(canon)
            .and_then(|versions| versions.get_mut(vers))
        {
            *n += 1;
            return;
        }
        *counts
            .entry(canon.to_owned())
            .or_default()
            .entry(vers.to_owned())
            .or_default() += 1;
    }

    pub(crate) async fn flush(
        &self,
        store: &depot_store::Store,
    ) -> Result<(), depot_store::StoreError> {
        let batch: Vec<(String, String, u64)> = {
            let mut counts = self.counts.lock().expect("download counter lock");
            counts
                .drain()
                .flat_map(|(c, versions)| versions.into_iter().map(move |(v, n)| (c.clone(), v, n)))
                .collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.add_downloads(&batch).await {
            // Put them back so they are not lost.
            let mut counts = self.counts.lock().expect("download counter lock");
            for (c, v, n) in batch {
                *counts.entry(c).or_default().entry(v).or_default() += n;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Downloads counted and not yet flushed.
    #[cfg(test)]
    fn pending(&self) -> u64 {
        let counts = self.counts.lock().expect("download counter lock");
        counts.values().flat_map(HashMap::values).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cache(max_bytes: usize, max_entries: usize) -> DownloadCache {
        DownloadCache::new(DownloadCacheBounds {
            max_bytes,
            max_entries: NonZeroUsize::new(max_entries).unwrap(),
        })
    }

    fn bytes(len: usize) -> Target {
        Target::Bytes(Bytes::from(vec![7u8; len]))
    }

    #[test]
    fn entries_are_bounded_least_recently_used_first() {
        let cache = cache(1 << 20, 3);
        for i in 0..3 {
            cache.insert(cache_key("a", &format!("1.0.{i}")), bytes(10));
        }
        // Touch 1.0.0 so 1.0.1 is the least recently used.
        assert!(cache.get("a 1.0.0").is_some());
        cache.insert(cache_key("a", "1.0.3"), bytes(10));
        assert_eq!(cache.usage().0, 3);
        assert!(cache.get("a 1.0.1").is_none());
        assert!(cache.get("a 1.0.0").is_some() && cache.get("a 1.0.3").is_some());
    }

    #[test]
    fn bytes_are_bounded() {
        let max = 64 * 1024;
        let cache = cache(max, 1000);
        assert_eq!(cache.max_crate, max / 8);
        for i in 0..100 {
            cache.insert(cache_key("b", &format!("0.{i}.0")), bytes(4000));
            let (entries, cost, _) = cache.usage();
            assert!(cost <= max, "{cost} > {max} after {i}");
            assert!(entries <= 1000);
        }
        let (entries, cost, _) = cache.usage();
        assert!(
            entries >= max / (4000 + 200),
            "{entries} entries, {cost} bytes"
        );
        // The most recent stays; something larger than the whole budget never enters.
        assert!(cache.get("b 0.99.0").is_some());
        cache.insert(cache_key("b", "9.0.0"), bytes(max + 1));
        assert!(cache.get("b 9.0.0").is_none());
        assert!(cache.usage().1 <= max);
    }

    #[test]
    fn only_small_crates_keep_their_bytes() {
        let cache = cache(64 << 20, 10);
        assert!(cache.keeps_bytes(0));
        assert!(cache.keeps_bytes(MAX_CACHED_CRATE as u64));
        assert!(!cache.keeps_bytes(MAX_CACHED_CRATE as u64 + 1));
        assert!(!cache.keeps_bytes(u64::MAX));
        let tiny = super::tests::cache(800, 10);
        assert!(tiny.keeps_bytes(100) && !tiny.keeps_bytes(101));
    }

    #[test]
    fn keys_of_different_versions_differ() {
        // A space is in neither a crate name nor a version.
        assert_ne!(cache_key("a", "1.0.0"), cache_key("a-1", ".0.0"));
        assert_eq!(cache_key("serde", "1.0.0"), "serde 1.0.0");
    }

    #[test]
    fn counts_accumulate_per_version() {
        let counter = DownloadCounter::default();
        for _ in 0..3 {
            counter.count("a", "1.0.0");
        }
        counter.count("a", "2.0.0");
        counter.count("b", "1.0.0");
        assert_eq!(counter.pending(), 5);
        let counts = counter.counts.lock().unwrap();
        assert_eq!(counts["a"]["1.0.0"], 3);
        assert_eq!(counts["a"]["2.0.0"], 1);
        assert_eq!(counts["b"]["1.0.0"], 1);
    }

    proptest! {
        /// Whatever is inserted, in whatever order, the cache stays within both bounds, its
        /// byte count matches its entries, and what it returns is what was last inserted under
        /// that key.
        #[test]
        fn bounds_hold_and_hits_are_exact(
            max_bytes in 0usize..20_000,
            max_entries in 1usize..40,
            ops in proptest::collection::vec((0u8..60, 0usize..5000, any::<bool>()), 1..200),
        ) {
            let cache = cache(max_bytes, max_entries);
            let mut last: HashMap<String, u64> = HashMap::new();
            for (version, len, large) in ops {
                let key = cache_key("p", &format!("0.0.{version}"));
                let target = if large {
                    Target::Blob { key: format!("sha256/{len:064}"), len: len as u64 }
                } else {
                    bytes(len)
                };
                last.insert(key.clone(), target.len());
                cache.insert(key, target);
                let (entries, cost, _) = cache.usage();
                prop_assert!(entries <= max_entries);
                prop_assert!(cost <= max_bytes);
                let slots = cache.slots.lock().unwrap();
                let sum: usize = slots.entries.iter().map(|(k, s)| s.target.cost(k)).sum();
                prop_assert_eq!(sum, cost);
                for (k, slot) in slots.entries.iter() {
                    prop_assert_eq!(Some(&slot.target.len()), last.get(k));
                }
            }
        }
    }
}
