//! Hosted documentation: `PUT /api/v1/crates/{name}/{version}/docs` stores a version's rustdoc
//! output, `GET /docs/{name}/{version}/{*path}` serves it.
//!
//! **Upload.** The body is a gzipped tar of the contents of `target/doc` (see
//! [`depot_cratefile::docs`]). The token needs `publish-update` for the crate and must be
//! allowed to publish to it (an owner, a deploy or CI token whose patterns name it, or an
//! admin); the version must be accepted (yanked is fine). The body streams through a bounded
//! channel into the archive reader on a blocking thread, which hands each checked file (at most
//! [`depot_cratefile::DocsLimits::max_file_size`] bytes, two at a time) back to be stored as a
//! content-addressed blob: memory stays bounded whatever the archive, and rustdoc's static files,
//! identical across crates, are stored once. The manifest (path → blob, size, content type) is a
//! blob too; `docs_uploaded` names it. A refused archive appends nothing (files it had stored
//! already are unreferenced and go with `depot gc`).
//!
//! **Serving.** Docs are content uploaders control, served on the registry's origin; they must
//! not be able to act as a signed-in user. Every response under `/docs/` carries a
//! `Content-Security-Policy` whose `sandbox` directive (scripts allowed, not `allow-same-origin`)
//! gives the page an opaque origin: it cannot read same-origin responses, use the origin's
//! storage, or send the origin's cookies. No response under `/docs/` ever sets a cookie (a layer
//! removes any `Set-Cookie`). Files are served with `X-Content-Type-Options: nosniff`, the
//! content type of their extension and their blob's sha256 as a strong `ETag`.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use depot_cratefile::DocsLimits;
use depot_cratefile::docs::MAX_MANIFEST_BYTES;
use depot_cratefile::docs::{DocsError, DocsFile, DocsManifest, DocsManifestFile, content_type};
use depot_events::{CrateState, DocsUploaded, Event, TokenKind, TokenScope};
use depot_index::{CrateName, Version};
use depot_store::BlobBody;
use futures::StreamExt as _;
use lru::LruCache;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::{Principal, authenticate, authorize_read, cache_control};
use crate::commands::{Decision, execute, load_crate, wait_projected};
use crate::extract::{VersionPath, crate_name};
use crate::{ApiError, AppState};

/// The policy of every response under `/docs/`. `sandbox allow-scripts allow-popups` without
/// `allow-same-origin` makes the document's origin opaque; the fetch directives keep it to the
/// registry's own files (rustdoc loads its search index and sidebar as `<script>` elements and
/// needs no `fetch`); `style-src 'unsafe-inline'` for rustdoc's `style` attributes, `img-src
/// data:` for the SVG icons inlined in its CSS.
pub(crate) const DOCS_CSP: &str = "sandbox allow-scripts allow-popups; default-src 'self'; \
     script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     font-src 'self'; connect-src 'none'; object-src 'none'; frame-ancestors 'self'; \
     base-uri 'none'; form-action 'none'";

/// How much of a refused upload body is read and dropped before answering.
const MAX_DRAIN_BYTES: u64 = 16 << 20;

/// Chunks of the body queued for the archive reader.
const BODY_CHUNKS_QUEUED: usize = 8;

/// Checked files queued for storing (each at most the per-file limit).
const FILES_QUEUED: usize = 2;

/// Settings of hosted documentation.
#[derive(Debug, Clone)]
pub struct DocsConfig {
    /// The largest archive accepted (compressed), in bytes.
    pub max_archive_size: u64,
    /// Caps on the unpacked archive.
    pub limits: DocsLimits,
    /// The most bytes of manifests kept in memory for serving.
    pub manifest_cache_bytes: usize,
}

impl Default for DocsConfig {
    /// 256 MiB archives, [`DocsLimits::default`], 32 MiB of cached manifests.
    fn default() -> DocsConfig {
        DocsConfig {
            max_archive_size: 256 << 20,
            limits: DocsLimits::default(),
            manifest_cache_bytes: 32 << 20,
        }
    }
}

/// Cached manifests with their weights, and the weights' sum.
type Weighed = (LruCache<String, (Arc<DocsManifest>, usize)>, usize);

/// Parsed manifests by blob key. A manifest is content-addressed and never changes, so entries
/// need no invalidation; the cache is bounded in bytes (each manifest weighs its blob's size).
#[derive(Debug)]
pub(crate) struct ManifestCache {
    max_bytes: usize,
    inner: Mutex<Weighed>,
}

impl ManifestCache {
    pub(crate) fn new(max_bytes: usize) -> ManifestCache {
        ManifestCache {
            max_bytes,
            inner: Mutex::new((
                LruCache::new(NonZeroUsize::new(10_000).expect("non-zero")),
                0,
            )),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<DocsManifest>> {
        let mut inner = self.inner.lock().expect("manifest cache lock");
        inner.0.get(key).map(|(manifest, _)| manifest.clone())
    }

    fn put(&self, key: String, manifest: Arc<DocsManifest>, weight: usize) {
        if weight > self.max_bytes / 4 {
            return;
        }
        let mut inner = self.inner.lock().expect("manifest cache lock");
        let (lru, used) = &mut *inner;
        if let Some((_, (_, old))) = lru.push(key, (manifest, weight)) {
            *used -= old;
        }
        *used += weight;
        while *used > self.max_bytes {
            match lru.pop_lru() {
                Some((_, (_, old))) => *used -= old,
                None => break,
            }
        }
    }
}

/// `PUT /api/v1/crates/{name}/{version}/docs`. A refused upload drops the rest of its body (up
/// to [`MAX_DRAIN_BYTES`]) and answers with `Connection: close`, as a refused publish does.
pub(crate) async fn upload(
    State(state): State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut body = body.into_data_stream();
    let result = upload_inner(&state, &name, &vers, &headers, &mut body).await;
    let outcome = match &result {
        Ok(_) => "stored",
        Err(e) => match e.status() {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            status if status.is_server_error() => "error",
            _ => "invalid",
        },
    };
    depot_telemetry::metrics()
        .docs_uploads
        .with_label_values(&[outcome])
        .inc();
    match result {
        Ok(json) => json.into_response(),
        Err(error) => {
            drain(
                &mut body,
                MAX_DRAIN_BYTES,
                state.config().limits.body_idle_timeout,
            )
            .await;
            let mut response = error.into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn drain(body: &mut BodyDataStream, max: u64, idle: Duration) {
    let mut dropped = 0_u64;
    while dropped <= max {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => dropped += chunk.len() as u64,
            _ => return,
        }
    }
}

/// Who may upload docs of a crate: whoever may publish to it, and admins; the version must be
/// accepted.
fn check_upload(
    krate: &CrateState,
    principal: &Principal,
    name: &CrateName,
    vers: &Version,
) -> Result<(String, String), ApiError> {
    if !krate.exists() {
        return Err(ApiError::not_found(format!(
            "crate `{name}` does not exist"
        )));
    }
    if !principal.may_manage(krate) {
        return Err(ApiError::forbidden(
            "only owners of this crate may upload its documentation",
        ));
    }
    let Some(version) = krate.accepted_version(vers.as_str()) else {
        return Err(ApiError::not_found(format!(
            "crate `{name}` does not have a version `{vers}`"
        )));
    };
    let published = krate.name().unwrap_or(name.as_str()).to_owned();
    Ok((published, version.vers.clone()))
}

async fn upload_inner(
    state: &AppState,
    name: &CrateName,
    vers: &Version,
    headers: &HeaderMap,
    body: &mut BodyDataStream,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(state, headers).await?;
    state.inner.rate_limits.publish(principal.token_id)?;
    principal.require(TokenScope::PublishUpdate, name)?;
    let config = &state.config().docs;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.max_archive_size) {
        return Err(too_large(config.max_archive_size));
    }
    let canon = name.canonical();
    let (krate, _) = load_crate(state, &canon, Some(vers.as_str())).await?;
    check_upload(&krate, &principal, name, vers)?;
    if principal.kind != TokenKind::Ci && state.store().trusted_only(&canon).await? {
        return Err(ApiError::forbidden(format!(
            "crate `{name}` accepts only trusted-publishing tokens: upload its documentation \
             from its trusted CI job"
        )));
    }

    let manifest = receive_archive(state, body).await?;
    let files = manifest.files.len() as u64;
    let bytes = manifest.bytes();
    let encoded = serde_json::to_vec(&manifest).map_err(ApiError::internal)?;
    if encoded.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ApiError::bad_request(format!(
            "the docs archive lists too many files: their list would take {} bytes, more than \
             {MAX_MANIFEST_BYTES}",
            encoded.len()
        )));
    }
    let stored = state.inner.blobs.put(&encoded).await?;
    let current = state.store().docs(&canon, vers.as_str()).await?;

    let executed = execute(
        state,
        &canon,
        Some(vers.as_str()),
        &principal.login,
        |krate| {
            let (published, version) = check_upload(krate, &principal, name, vers)?;
            if current.as_ref().is_some_and(|c| c.manifest == stored.key) {
                return Ok(Decision::Done(()));
            }
            Ok(Decision::Append(
                Box::new(Event::DocsUploaded(DocsUploaded {
                    name: published,
                    version,
                    manifest: stored.key.clone(),
                    files,
                    bytes,
                    token_id: Some(principal.token_id),
                })),
                (),
            ))
        },
    )
    .await?;
    let mut warnings = Vec::new();
    match executed.appended {
        Some(seq) => {
            let visible = wait_projected(
                state,
                executed.changes,
                &canon,
                seq,
                state.config().command_wait,
            )
            .await?;
            if !visible {
                warnings.push("the docs were stored and will be served shortly".to_owned());
            }
        }
        None => warnings.push("identical docs were already uploaded; nothing changed".to_owned()),
    }
    tracing::info!(
        krate.name = %name,
        version.num = %vers,
        files,
        size_bytes = bytes,
        "docs stored"
    );
    Ok(Json(json!({
        "ok": true,
        "files": files,
        "bytes": bytes,
        "url": format!("{}/docs/{}/{}/", state.config().public_url, name, vers),
        "warnings": warnings,
    })))
}

fn too_large(max: u64) -> ApiError {
    ApiError::too_large(format!(
        "the docs archive is larger than {max} bytes (DEPOT_DOCS_MAX_SIZE)"
    ))
}

/// A blocking [`std::io::Read`] over body chunks sent from the async side.
struct ChannelReader {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Streams the body through the archive reader and stores every file; returns the manifest.
async fn receive_archive(
    state: &AppState,
    body: &mut BodyDataStream,
) -> Result<DocsManifest, ApiError> {
    let config = &state.config().docs;
    let idle = state.config().limits.body_idle_timeout;
    let (chunk_tx, chunk_rx) = mpsc::channel::<std::io::Result<Bytes>>(BODY_CHUNKS_QUEUED);
    let (file_tx, file_rx) = mpsc::channel::<DocsFile>(FILES_QUEUED);
    let limits = config.limits.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let input = ChannelReader {
            chunks: chunk_rx,
            current: Bytes::new(),
        };
        depot_cratefile::docs::read_docs_archive(input, &limits, |file| file_tx.blocking_send(file))
    });

    let (fed, stored) = tokio::join!(
        feed_body(body, chunk_tx, idle, config.max_archive_size),
        store_files(&state.inner.blobs, file_rx)
    );
    let read = reader.await.map_err(ApiError::internal)?;
    fed?;
    let manifest = stored?;
    match read {
        Ok(_) => Ok(manifest),
        Err(DocsError::TooLarge { max }) => Err(ApiError::too_large(format!(
            "the docs archive is larger than {max} bytes when decompressed \
             (DEPOT_DOCS_MAX_UNPACKED_SIZE)"
        ))),
        Err(e @ DocsError::FileTooLarge { .. }) => Err(ApiError::too_large(e.to_string())),
        Err(DocsError::Aborted) => Err(ApiError::internal("storing docs files stopped")),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// Feeds the body to the archive reader: each chunk within the idle timeout, the total within
/// `max`. On its own error it tells the reader (so it does not take the cut-off archive for a
/// truncated one); when the reader stops first (it found a problem), its error tells.
async fn feed_body(
    body: &mut BodyDataStream,
    chunks: mpsc::Sender<std::io::Result<Bytes>>,
    idle: Duration,
    max: u64,
) -> Result<(), ApiError> {
    let mut received = 0_u64;
    let failed = loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => {
                break ApiError::request_timeout(format!(
                    "no body data arrived for {} s",
                    idle.as_secs_f64()
                ));
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => {
                break ApiError::bad_request(format!("reading the docs archive failed: {e}"));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        received += chunk.len() as u64;
        if received > max {
            break too_large(max);
        }
        if chunks.send(Ok(chunk)).await.is_err() {
            return Ok(());
        }
    };
    let _ = chunks
        .send(Err(std::io::Error::other("upload interrupted")))
        .await;
    Err(failed)
}

/// Stores each checked file as a blob and lists it in the manifest. Returning (on an error
/// too) drops the receiver, which stops the reader.
async fn store_files(
    blobs: &depot_store::BlobStore,
    mut files: mpsc::Receiver<DocsFile>,
) -> Result<DocsManifest, ApiError> {
    let mut manifest = DocsManifest::default();
    while let Some(file) = files.recv().await {
        let stored = blobs.put(&file.bytes).await?;
        let content_type = content_type(&file.path).to_owned();
        manifest.files.insert(
            file.path,
            DocsManifestFile {
                blob: stored.key,
                size: stored.size,
                content_type,
            },
        );
    }
    Ok(manifest)
}

/// Adds the isolation headers to every response under `/docs/` (refusals, errors and
/// redirects too) and removes any `Set-Cookie`. Wraps the whole router, so nothing inside can
/// escape it.
pub(crate) async fn isolate(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs/");
    let mut response = next.run(request).await;
    if !docs {
        return response;
    }
    let headers = response.headers_mut();
    headers.remove(header::SET_COOKIE);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The docs row and manifest of a version, or 404.
async fn manifest_of(
    state: &AppState,
    name: &CrateName,
    vers: &str,
) -> Result<(depot_store::DocsRow, Arc<DocsManifest>), ApiError> {
    let not_found = || ApiError::not_found(format!("no documentation for `{name}` {vers}"));
    let row = state
        .store()
        .docs(&name.canonical(), vers)
        .await?
        .ok_or_else(not_found)?;
    if let Some(manifest) = state.inner.manifests.get(&row.manifest) {
        return Ok((row, manifest));
    }
    let bytes = state
        .inner
        .blobs
        .read_capped(&row.manifest, MAX_MANIFEST_BYTES)
        .await?
        .ok_or_else(|| ApiError::internal(format!("docs manifest {} is missing", row.manifest)))?;
    let manifest: DocsManifest = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    let manifest = Arc::new(manifest);
    state
        .inner
        .manifests
        .put(row.manifest.clone(), manifest.clone(), bytes.len());
    Ok((row, manifest))
}

fn redirect(state: &AppState, path: &str) -> Response {
    let location = format!("{}{path}", state.config().public_url);
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /docs/{name}`: to the docs of the newest version that has them.
pub(crate) async fn newest(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = crate_name(&raw)?;
    authorize_read(&state, &headers, name.as_str()).await?;
    let rows = state.store().docs_versions(&name.canonical()).await?;
    let newest = rows
        .iter()
        .filter_map(|row| Some((semver::Version::parse(&row.vers).ok()?, row)))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, row)| row)
        .ok_or_else(|| ApiError::not_found(format!("no documentation for `{name}`")))?;
    Ok(redirect(&state, &format!("/docs/{name}/{}/", newest.vers)))
}

/// `GET /docs/{name}/{version}` and `…/{version}/`: to the docs' entry page.
pub(crate) async fn entry(
    State(state): State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers, name.as_str()).await?;
    let (row, manifest) = manifest_of(&state, &name, vers.as_str()).await?;
    let page = manifest.entry_page(&row.name).ok_or_else(|| {
        ApiError::not_found(format!(
            "the documentation of `{name}` {vers} has no index page"
        ))
    })?;
    Ok(redirect(&state, &format!("/docs/{name}/{vers}/{page}")))
}

/// `GET /docs/{name}/{version}/{*path}`: one file.
pub(crate) async fn file(
    State(state): State<AppState>,
    Path((raw_name, raw_vers, path)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = crate_name(&raw_name)?;
    authorize_read(&state, &headers, name.as_str()).await?;
    let vers = Version::parse(&raw_vers)
        .map_err(|e| ApiError::not_found(format!("crate `{name}` has no such version: {e}")))?;
    let (_, manifest) = manifest_of(&state, &name, vers.as_str()).await?;
    let path = path.trim_end_matches('/');
    let (path, file) = match manifest.files.get_key_value(path) {
        Some(found) => found,
        None => {
            // A directory: its index page, as static file servers do.
            let index = format!("{path}/index.html");
            match manifest.files.get_key_value(&index) {
                Some((index, _)) => {
                    return Ok(redirect(&state, &format!("/docs/{name}/{vers}/{index}")));
                }
                None => {
                    return Err(ApiError::not_found(format!(
                        "the documentation of `{name}` {vers} has no file `{path}`"
                    )));
                }
            }
        }
    };
    let etag = format!("\"{}\"", file.blob.trim_start_matches("sha256/"));
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = state
            .inner
            .blobs
            .read_body(&file.blob)
            .await?
            .ok_or_else(|| ApiError::internal(format!("docs file {path} is missing")))?;
        let len = body.len();
        let mut response = match body {
            BlobBody::Whole(bytes) => Body::from(bytes).into_response(),
            BlobBody::Chunks { chunks, .. } => Body::from_stream(chunks).into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&file.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        );
        // Fonts load in CORS mode, and a sandboxed page's origin is opaque: without this the
        // fonts of rustdoc's stylesheet would not load.
        if file.content_type.starts_with("font/") {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        cache_control(&state, "public, max-age=300"),
    );
    Ok(response)
}

/// The versions of crate `canon` with hosted docs and their URLs, for the crate API.
pub(crate) async fn documentation_urls(
    state: &AppState,
    canon: &str,
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    Ok(state
        .store()
        .docs_versions(canon)
        .await?
        .into_iter()
        .map(|row| {
            let url = format!(
                "{}/docs/{}/{}/",
                state.config().public_url,
                row.name,
                row.vers
            );
            (row.vers, url)
        })
        .collect())
}
