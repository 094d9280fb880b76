//! `PUT /api/v1/crates/new`: cargo publish.
//!
//! The body is read as a stream: `u32 LE json length | JSON | u32 LE crate length | .crate`. The
//! JSON is capped and validated before a single byte of the crate is read; the crate bytes go to
//! a temporary blob while their sha256 is computed, so memory stays constant whatever the size.
//! After `version_uploaded` is appended, the reply waits until the extractor and the projector
//! have decided, because cargo polls the index right after a successful reply.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Buf, Bytes};
use depot_cratefile::{PublishMetadata, ValidatedPublish};
use depot_events::{CrateState, Event, PublishCheck, PublishRefusal, TokenScope, VersionUploaded};
use depot_index::DependencyKind;
use depot_store::{BlobWriter, UploadOutcome};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::auth::{Principal, authenticate};
use crate::commands::{Decision, execute, load_crate};
use crate::{ApiError, AppState};

/// What the publish amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    /// A new upload was appended.
    Appended,
    /// The same bytes were already accepted.
    AlreadyAccepted,
    /// The same bytes are already being checked.
    AlreadyPending,
}

/// `PUT /api/v1/crates/new`: publishes, and counts the outcome in `depot_publish_total`.
pub(crate) async fn publish(
    state: State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let mut outcome = None;
    let result = publish_inner(state, headers, body, &mut outcome).await;
    let outcome = outcome.unwrap_or(match &result {
        Ok(_) => "accepted",
        Err(e) => match e.status() {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            status if status.is_server_error() => "error",
            _ => "invalid",
        },
    });
    depot_telemetry::metrics()
        .publishes
        .with_label_values(&[outcome])
        .inc();
    result
}

async fn publish_inner(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
    outcome: &mut Option<&'static str>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let principal = authenticate(&state, &headers).await?;
    let config = state.config();
    let mut body = BodyReader::new(body.into_data_stream());

    // 1. Metadata.
    let json_len = body.read_u32("metadata length").await?;
    if json_len > config.max_json_size {
        return Err(ApiError::too_large(format!(
            "JSON metadata blob too large (max {} bytes)",
            config.max_json_size
        )));
    }
    let json = body.read_exact(json_len as usize, "metadata").await?;
    let metadata_value: Value = serde_json::from_slice(&json)
        .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?;
    let metadata: PublishMetadata = serde_json::from_value(metadata_value.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?;
    let validated =
        depot_cratefile::publish::validate(&metadata, &config.publish_limits).map_err(|e| {
            ApiError::many(
                StatusCode::BAD_REQUEST,
                e.problems().iter().map(ToString::to_string).collect(),
            )
        })?;
    let name = validated.name().to_owned();
    let vers = metadata.vers.clone();
    let canon = depot_index::canonical_name(&name);

    // 2. Framing of the crate part.
    let crate_len = u64::from(body.read_u32("tarball length").await?);
    if crate_len > config.max_crate_size {
        return Err(ApiError::too_large(format!(
            "max upload size is: {}",
            config.max_crate_size
        )));
    }
    if let Some(total) = content_length(&headers)
        && total != 8 + u64::from(json_len) + crate_len
    {
        return Err(ApiError::bad_request(format!(
            "invalid upload request: the body is {total} bytes but its framing declares {}",
            8 + u64::from(json_len) + crate_len
        )));
    }

    // 3. Checks that need no crate bytes: ownership, scopes, dependencies.
    let (krate, _) = load_crate(&state, &canon, Some(&vers)).await?;
    check_permission(&krate, &principal, &name)?;
    check_dependencies(&state, &validated).await?;

    // 4. The crate bytes, streamed to a temporary blob.
    let mut writer = state.inner.blobs.writer().await?;
    if let Err(e) = body.copy_exact(&mut writer, crate_len).await {
        writer.discard().await;
        return Err(e);
    }
    if !body.at_end().await? {
        writer.discard().await;
        return Err(ApiError::bad_request(
            "invalid upload request: unexpected bytes after the tarball",
        ));
    }
    let cksum = writer.sha256_hex();
    let (krate, _) = load_crate(&state, &canon, Some(&vers)).await?;
    if let Err(refusal) = krate.check_publish(&name, &vers, &cksum) {
        writer.discard().await;
        return Err(refusal_error(refusal));
    }
    let blob = writer.finish().await?;
    depot_telemetry::metrics()
        .upload_bytes
        .observe(blob.size as f64);

    // 5. Append, with the aggregate checked again under optimistic concurrency.
    let upload = VersionUploaded {
        name: name.clone(),
        vers: vers.clone(),
        cksum: cksum.clone(),
        size: blob.size,
        blob: blob.key.clone(),
        metadata: metadata_value,
        uploader: principal.login.clone(),
        token_id: Some(principal.token_id),
    };
    let executed = execute(&state, &canon, Some(&vers), &principal.login, |krate| {
        check_permission(krate, &principal, &name)?;
        match krate.check_publish(&name, &vers, &cksum) {
            Ok(PublishCheck::Append { .. }) => Ok(Decision::Append(
                Box::new(Event::VersionUploaded(upload.clone())),
                Published::Appended,
            )),
            Ok(PublishCheck::AlreadyAccepted) => Ok(Decision::Done(Published::AlreadyAccepted)),
            Ok(PublishCheck::AlreadyPending) => Ok(Decision::Done(Published::AlreadyPending)),
            Err(refusal) => Err(refusal_error(refusal)),
        }
    })
    .await?;
    tracing::info!(
        krate.name = %name,
        version.num = %vers,
        outcome = ?executed.value,
        size_bytes = blob.size,
        "publish recorded"
    );
    if executed.value == Published::AlreadyAccepted {
        *outcome = Some("duplicate");
        return Ok(success(vec![format!(
            "{name}@{vers} was already published with identical content; nothing changed"
        )]));
    }

    // 6. Wait for the outcome.
    let appended_at = Instant::now();
    let remaining = config.publish_wait.saturating_sub(started.elapsed());
    match wait_for_outcome(&state, &canon, &vers, &cksum, remaining).await? {
        UploadOutcome::Accepted => {
            if executed.value == Published::Appended {
                depot_telemetry::metrics()
                    .publish_visible
                    .observe(appended_at.elapsed().as_secs_f64());
            }
            Ok(success(Vec::new()))
        }
        UploadOutcome::Rejected(reasons) => {
            *outcome = Some("rejected");
            Err(ApiError::many(
                StatusCode::BAD_REQUEST,
                reasons.into_iter().map(|r| r.detail).collect(),
            ))
        }
        UploadOutcome::Pending => {
            *outcome = Some("queued");
            Ok(success(vec![format!(
                "{name}@{vers} was uploaded and is still being checked; it will appear in the \
             index once it is accepted"
            )]))
        }
    }
}

fn success(other_warnings: Vec<String>) -> Json<Value> {
    Json(json!({
        "warnings": { "invalid_categories": [], "invalid_badges": [], "other": other_warnings }
    }))
}

fn refusal_error(refusal: PublishRefusal) -> ApiError {
    match refusal {
        PublishRefusal::VersionTaken { .. } => ApiError::conflict(refusal.to_string()),
        PublishRefusal::NameSpelling { .. } => ApiError::bad_request(refusal.to_string()),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Only owners may publish new versions; a token must carry the matching scope.
fn check_permission(krate: &CrateState, principal: &Principal, name: &str) -> Result<(), ApiError> {
    if krate.exists() {
        if !krate.is_owner(&principal.login) {
            return Err(ApiError::forbidden(
                "this crate exists but you don't seem to be an owner. If you believe this is a \
                 mistake, ask an owner to add you with `cargo owner --add`.",
            ));
        }
        principal.require(TokenScope::PublishUpdate, name)
    } else {
        principal.require(TokenScope::PublishNew, name)
    }
}

/// Every dependency served by this registry must name an existing crate (exact spelling), and
/// normal and build dependencies must have an unyanked version matching their requirement.
async fn check_dependencies(state: &AppState, publish: &ValidatedPublish) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for dep in publish.local_dependencies() {
        let canon = depot_index::canonical_name(&dep.package);
        let Some(known) = state.store().crate_versions(&canon).await? else {
            problems.push(format!("no known crate named `{}`", dep.package));
            continue;
        };
        if known.name != dep.package {
            problems.push(format!(
                "dependency `{}` does not exist, but crate `{}` does; use that exact spelling",
                dep.package, known.name
            ));
            continue;
        }
        if dep.kind == DependencyKind::Dev {
            continue;
        }
        let satisfied = known.versions.iter().any(|v| {
            !v.yanked
                && semver::Version::parse(&v.vers).is_ok_and(|version| dep.req.matches(&version))
        });
        if !satisfied {
            problems.push(format!(
                "no published (unyanked) version of `{}` matches the {} dependency requirement `{}`",
                dep.package,
                dep.kind.as_str(),
                dep.req
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::many(StatusCode::BAD_REQUEST, problems))
    }
}

/// Polls the read model until the upload is decided, waking early on change notifications.
async fn wait_for_outcome(
    state: &AppState,
    canon: &str,
    vers: &str,
    cksum: &str,
    limit: Duration,
) -> Result<UploadOutcome, ApiError> {
    let deadline = Instant::now() + limit;
    let mut waiter = state.inner.changes.subscribe();
    loop {
        match state.store().upload_outcome(canon, vers, cksum).await? {
            Some(outcome @ (UploadOutcome::Accepted | UploadOutcome::Rejected(_))) => {
                state.inner.cache.invalidate(canon);
                return Ok(outcome);
            }
            Some(UploadOutcome::Pending) | None => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(UploadOutcome::Pending);
        }
        waiter
            .changed(canon, (deadline - now).min(Duration::from_millis(200)))
            .await;
    }
}

/// Reads the publish body piece by piece.
struct BodyReader {
    stream: BodyDataStream,
    buffer: Bytes,
    done: bool,
}

impl BodyReader {
    fn new(stream: BodyDataStream) -> BodyReader {
        BodyReader {
            stream,
            buffer: Bytes::new(),
            done: false,
        }
    }

    /// Makes sure the buffer holds data; false at the end of the body.
    async fn fill(&mut self) -> Result<bool, ApiError> {
        while self.buffer.is_empty() {
            if self.done {
                return Ok(false);
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buffer = chunk,
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid upload request: reading the body failed: {e}"
                    )));
                }
                None => self.done = true,
            }
        }
        Ok(true)
    }

    async fn read_exact(&mut self, len: usize, what: &str) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if !self.fill().await? {
                return Err(ApiError::bad_request(format!(
                    "invalid upload request: the body ends inside the {what}"
                )));
            }
            let take = (len - out.len()).min(self.buffer.len());
            out.extend_from_slice(&self.buffer[..take]);
            self.buffer.advance(take);
        }
        Ok(out)
    }

    async fn read_u32(&mut self, what: &str) -> Result<u32, ApiError> {
        let bytes = self.read_exact(4, what).await?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
    }

    async fn copy_exact(&mut self, writer: &mut BlobWriter, len: u64) -> Result<(), ApiError> {
        let mut left = len;
        while left > 0 {
            if !self.fill().await? {
                return Err(ApiError::bad_request(format!(
                    "invalid upload request: the tarball is {} bytes, shorter than the {len} \
                     bytes declared",
                    len - left
                )));
            }
            let take = left.min(self.buffer.len() as u64) as usize;
            writer.write(&self.buffer[..take]).await?;
            self.buffer.advance(take);
            left -= take as u64;
        }
        Ok(())
    }

    async fn at_end(&mut self) -> Result<bool, ApiError> {
        Ok(!self.fill().await?)
    }
}
