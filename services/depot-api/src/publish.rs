//! `PUT /api/v1/crates/new`: cargo publish.
//!
//! The body is read as a stream: `u32 LE json length | JSON | u32 LE crate length | .crate`,
//! split by [`depot_cratefile::PublishFraming`]. The JSON is capped and validated before a single
//! byte of the crate is read; the crate bytes go to
//! a temporary blob while their sha256 is computed, so memory stays constant whatever the size.
//! After `version_uploaded` is appended, the reply waits until the extractor and the projector
//! have decided, because cargo polls the index right after a successful reply.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use depot_cratefile::{
    Frame, FramingError, FramingLimits, PublishFraming, PublishMetadata, ValidatedPublish,
};
use depot_events::{
    CrateState, Event, PublishCheck, PublishRefusal, TokenKind, TokenScope, VersionUploaded,
};
use depot_index::{CanonicalName, CrateName, DependencyKind, Version};
use depot_store::{BlobStore, BlobWriter, UploadOutcome};
use futures::StreamExt as _;
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::auth::{Principal, authenticate};
use crate::changes::ChangeWaiter;
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

/// How much of a refused publish body is read and dropped before answering, so the client
/// finishes sending and reads the error instead of having its upload reset mid-write.
const MAX_DRAIN_BYTES: u64 = 16 << 20;

/// `PUT /api/v1/crates/new`: publishes, and counts the outcome in `depot_publish_total`.
///
/// An error may be decided before the client has sent the whole body (a refused token, a
/// declared size over the limit, a full disk). The rest of the body is then read and dropped, up
/// to [`MAX_DRAIN_BYTES`], and the error says `Connection: close`: the client reads the answer
/// and opens a new connection rather than sending its next request into one the server closes.
pub(crate) async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = state.config();
    let mut body = FramedBody::new(
        body.into_data_stream(),
        FramingLimits {
            max_metadata: config.max_json_size,
            max_crate: config.max_crate_size,
        },
        config.limits.body_idle_timeout,
    );
    match publish_counted(&state, headers, &mut body).await {
        Ok(json) => json.into_response(),
        Err(error) => {
            body.drain(MAX_DRAIN_BYTES).await;
            let mut response = error.into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

async fn publish_counted(
    state: &AppState,
    headers: HeaderMap,
    body: &mut FramedBody,
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
    state: &AppState,
    headers: HeaderMap,
    body: &mut FramedBody,
    outcome: &mut Option<&'static str>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let principal = authenticate(state, &headers).await?;
    state.inner.rate_limits.publish(principal.token_id)?;
    let config = state.config();

    // 1. Metadata.
    let json = body.metadata().await?;
    let json_len = json.len() as u64;
    let metadata_value: Value = serde_json::from_slice(&json)
        .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?;
    let metadata = PublishMetadata::deserialize(&metadata_value)
        .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?;
    let validated =
        depot_cratefile::publish::validate(&metadata, &config.publish_limits).map_err(|e| {
            ApiError::many(
                StatusCode::BAD_REQUEST,
                e.problems().iter().map(ToString::to_string).collect(),
            )
        })?;
    let crate_name = CrateName::parse_for_publish(validated.name())
        .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?;
    let version = Version::parse(&metadata.vers)
        .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?;
    let canon = crate_name.canonical();
    let name = crate_name.to_string();
    let vers = version.to_string();

    // 2. Framing of the crate part.
    let crate_len = body.crate_length().await?;
    if let Some(total) = content_length(&headers)
        && total != 8 + json_len + crate_len
    {
        return Err(ApiError::bad_request(format!(
            "invalid upload request: the body is {total} bytes but its framing declares {}",
            8 + json_len + crate_len
        )));
    }

    // 3. Checks that need no crate bytes: ownership, scopes, dependencies.
    let (krate, _) = load_crate(state, &canon, Some(&vers)).await?;
    check_permission(&krate, &principal, &name)?;
    if !krate.exists() {
        crate::upstream::check_new_crate_name(state, &crate_name).await?;
    }
    if principal.kind != TokenKind::Ci && state.store().trusted_only(&canon).await? {
        return Err(ApiError::forbidden(format!(
            "crate `{name}` accepts only trusted-publishing tokens: publish it from its trusted \
             CI job"
        )));
    }
    check_dependencies(state, &validated).await?;

    // 4. The crate bytes, streamed to a temporary blob (and kept in memory if they are to be
    // checked on this request: at most the inline-check size).
    let mut writer = state.inner.blobs.writer().await?;
    let mut kept = match &state.inner.inline_checks {
        Some(inline) if crate_len <= inline.max_size => Some(BytesMut::with_capacity(
            usize::try_from(crate_len).unwrap_or(0),
        )),
        _ => None,
    };
    if let Err(e) = body.copy_crate(&mut writer, kept.as_mut()).await {
        writer.discard().await;
        return Err(e);
    }
    let cksum = writer.sha256_hex();
    let (krate, _) = load_crate(state, &canon, Some(&vers)).await?;
    let new_upload = match krate.check_publish(&name, &vers, &cksum) {
        Ok(check) => matches!(check, PublishCheck::Append { .. }),
        Err(refusal) => {
            writer.discard().await;
            return Err(refusal_error(refusal));
        }
    };
    // The metadata JSON (readme included) goes to a blob of its own, so the event stays
    // small; both blobs are made durable at once. A small upload is checked meanwhile, from
    // the bytes still in memory (the extractor's check, in this process); its outcome is
    // appended after the upload.
    let mut upload = VersionUploaded {
        name: name.clone(),
        vers: vers.clone(),
        cksum: cksum.clone(),
        size: writer.size(),
        blob: BlobStore::key_for(&cksum),
        metadata: Value::Null,
        metadata_blob: None,
        uploader: principal.login.clone(),
        token_id: Some(principal.token_id),
    };
    let inline_check = async {
        // A repeated publish of bytes already uploaded has its outcome already: no check.
        let (Some(inline), Some(kept), true) = (&state.inner.inline_checks, kept, new_upload)
        else {
            return None;
        };
        let checked = VersionUploaded {
            metadata: metadata_value,
            ..upload.clone()
        };
        let outcome = inline
            .extractor
            .check_inline(&checked, kept.freeze())
            .await?;
        Some((&inline.extractor, outcome))
    };
    let (stored, inline_outcome) = tokio::join!(
        async { tokio::try_join!(writer.finish(), state.inner.blobs.put(&json)) },
        inline_check
    );
    let (blob, metadata_blob) = stored?;
    depot_telemetry::metrics()
        .upload_bytes
        .observe(blob.size as f64);
    upload.metadata_blob = Some(metadata_blob.key);

    // 5. Append, with the aggregate checked again under optimistic concurrency.
    let executed = execute(state, &canon, Some(&vers), &principal.login, |krate| {
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

    // 6. The outcome of the inline check, if there was one, follows the upload.
    if let (Some((extractor, outcome)), Some(envelope)) = (inline_outcome, &executed.envelope)
        && let Event::VersionUploaded(upload) = &envelope.event
    {
        extractor.append_inline(envelope, upload, outcome).await;
    }

    // 7. Wait for the outcome of this upload event (not of an earlier upload of the same
    // bytes that was rejected).
    let appended_at = Instant::now();
    let remaining = config.publish_wait.saturating_sub(started.elapsed());
    let upload_seq = match executed.appended {
        Some(seq) => Some(seq),
        None => pending_upload_seq(state, &canon, &vers, &cksum).await?,
    };
    let decided = match upload_seq {
        Some(seq) => wait_for_outcome(state, executed.changes, &canon, seq, remaining).await?,
        None => UploadOutcome::Pending,
    };
    match decided {
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
        if !principal.may_publish_to(krate) {
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
        let canon = match CrateName::parse(&dep.package) {
            Ok(package) => package.canonical(),
            Err(e) => {
                problems.push(format!("invalid dependency name: {e}"));
                continue;
            }
        };
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

/// The log sequence of the pending upload of `vers` with checksum `cksum` that another
/// publish appended: the newest such upload in the crate's log tail (events the projector has
/// not applied yet), else the newest projected one.
async fn pending_upload_seq(
    state: &AppState,
    canon: &CanonicalName,
    vers: &str,
    cksum: &str,
) -> Result<Option<u64>, ApiError> {
    let projected = state.store().crate_last_seq(canon).await?.unwrap_or(0);
    let subject = depot_events::subject::krate(canon);
    let mut found = None;
    for stored in state.log().read_subject(&subject, projected).await? {
        let envelope =
            depot_events::Envelope::decode(&stored.payload).map_err(ApiError::internal)?;
        if let Event::VersionUploaded(upload) = &envelope.event
            && upload.vers == vers
            && upload.cksum == cksum
        {
            found = Some(stored.seq);
        }
    }
    match found {
        Some(seq) => Ok(Some(seq)),
        None => Ok(state.store().latest_upload_seq(canon, vers, cksum).await?),
    }
}

/// Polls the read model until the upload appended at `upload_seq` is decided, waking early on
/// change notifications (`waiter` was subscribed before the upload was appended, so it holds
/// every announcement that can cover it).
async fn wait_for_outcome(
    state: &AppState,
    mut waiter: ChangeWaiter,
    canon: &str,
    upload_seq: u64,
    limit: Duration,
) -> Result<UploadOutcome, ApiError> {
    let deadline = Instant::now() + limit;
    loop {
        match state.store().upload_outcome(canon, upload_seq).await? {
            Some(outcome @ (UploadOutcome::Accepted | UploadOutcome::Rejected(_))) => {
                if let Some(last) = state.store().crate_last_seq(canon).await? {
                    crate::commands::await_announcement(state, &mut waiter, canon, last, deadline)
                        .await;
                }
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

/// The publish body, read chunk by chunk through [`PublishFraming`]; a client that sends nothing
/// for `idle_timeout` is cut off with 408 (the caller's error path then drops the temporary
/// blob).
struct FramedBody {
    stream: BodyDataStream,
    chunk: Bytes,
    framing: PublishFraming,
    ended: bool,
    idle_timeout: Duration,
}

/// A frame that owns its bytes (crate data is a cheap slice of the received chunk).
enum OwnedFrame {
    Metadata(Vec<u8>),
    CrateLength(u64),
    CrateData(Bytes),
}

impl FramedBody {
    fn new(stream: BodyDataStream, limits: FramingLimits, idle_timeout: Duration) -> FramedBody {
        FramedBody {
            stream,
            chunk: Bytes::new(),
            framing: PublishFraming::new(limits),
            ended: false,
            idle_timeout,
        }
    }

    /// The next chunk of the body, waiting at most `idle_timeout` for it.
    async fn next_chunk(&mut self) -> Result<Option<Result<Bytes, axum::Error>>, ApiError> {
        tokio::time::timeout(self.idle_timeout, self.stream.next())
            .await
            .map_err(|_| {
                ApiError::request_timeout(format!(
                    "invalid upload request: no body data arrived for {} s",
                    self.idle_timeout.as_secs_f64()
                ))
            })
    }

    /// The next frame, reading more of the body as needed; `None` once the body ended with
    /// complete framing.
    async fn next(&mut self) -> Result<Option<OwnedFrame>, ApiError> {
        loop {
            let mut input: &[u8] = &self.chunk;
            let before = input.len();
            let frame = self.framing.next_frame(&mut input).map_err(framing_error)?;
            let consumed = before - input.len();
            let frame = frame.map(|frame| match frame {
                Frame::Metadata(json) => OwnedFrame::Metadata(json),
                Frame::CrateLength(len) => OwnedFrame::CrateLength(len),
                Frame::CrateData(data) => OwnedFrame::CrateData(self.chunk.slice_ref(data)),
            });
            self.chunk.advance(consumed);
            if frame.is_some() {
                return Ok(frame);
            }
            if self.ended {
                self.framing.finish().map_err(framing_error)?;
                return Ok(None);
            }
            match self.next_chunk().await? {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid upload request: reading the body failed: {e}"
                    )));
                }
                None => self.ended = true,
            }
        }
    }

    /// Reads and drops what is left of the body, at most `max` bytes, each chunk within the idle
    /// timeout; stops early at the end of the body or on any error.
    async fn drain(&mut self, max: u64) {
        let mut dropped = self.chunk.len() as u64;
        self.chunk = Bytes::new();
        while !self.ended && dropped <= max {
            match self.next_chunk().await {
                Ok(Some(Ok(chunk))) => dropped += chunk.len() as u64,
                Ok(None) => self.ended = true,
                Ok(Some(Err(_))) | Err(_) => return,
            }
        }
    }

    /// The metadata JSON (the first frame).
    async fn metadata(&mut self) -> Result<Vec<u8>, ApiError> {
        match self.next().await? {
            Some(OwnedFrame::Metadata(json)) => Ok(json),
            _ => Err(ApiError::internal("publish framing: metadata expected")),
        }
    }

    /// The declared crate length (the second frame).
    async fn crate_length(&mut self) -> Result<u64, ApiError> {
        match self.next().await? {
            Some(OwnedFrame::CrateLength(len)) => Ok(len),
            _ => Err(ApiError::internal("publish framing: crate length expected")),
        }
    }

    /// Writes the crate bytes to `writer` until the body ends, which must be exactly at the
    /// declared length; the bytes are also appended to `kept` if given.
    async fn copy_crate(
        &mut self,
        writer: &mut BlobWriter,
        mut kept: Option<&mut BytesMut>,
    ) -> Result<(), ApiError> {
        loop {
            match self.next().await? {
                Some(OwnedFrame::CrateData(data)) => {
                    if let Some(kept) = kept.as_deref_mut() {
                        kept.extend_from_slice(&data);
                    }
                    writer.write(&data).await?;
                }
                None => return Ok(()),
                Some(_) => return Err(ApiError::internal("publish framing: crate data expected")),
            }
        }
    }
}

/// 413 for a declared part over its limit, 400 for a malformed body.
fn framing_error(error: FramingError) -> ApiError {
    if error.is_too_large() {
        ApiError::too_large(error.to_string())
    } else {
        ApiError::bad_request(format!("invalid upload request: {error}"))
    }
}
