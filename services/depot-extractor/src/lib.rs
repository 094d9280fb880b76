//! The extractor: a competing consumer of the event log that checks every uploaded `.crate`.
//!
//! For each `version_uploaded` it reads the blob, validates the archive through capped readers
//! (paths, entry types, sizes, the manifest and its agreement with the publish metadata) and
//! appends `version_accepted` with the index line, or `version_rejected` with the reasons. The
//! append carries a message id derived from the upload event, so a redelivered upload never
//! produces a second outcome; the projector ignores duplicates older than the log's
//! de-duplication window anyway.
//!
//! Every upload ends accepted or rejected:
//!
//! - A check has a time budget ([`ExtractorConfig::check_timeout`]); the archive is read
//!   through a [`DeadlineReader`], so the blocking work stops at the first read after the
//!   deadline, and the upload is rejected with `check_timeout`.
//! - A panic while checking rejects the upload with `processing_failed` (the same bytes would
//!   panic again); the worker goes on.
//! - Transient failures (blob store, event log) are retried after a delay; after
//!   [`ExtractorConfig::max_attempts`] attempts the upload is rejected with
//!   `processing_failed`. The queue redelivers without limit, so if even that rejection cannot
//!   be appended, the upload comes back and is tried again: it is never dropped.
//! - While a check runs, the delivery is kept claimed with in-progress signals every third of
//!   the ack wait, so a long check is never handed to a second worker.
//!
//! Memory per check is bounded by the inspector's caps: the read buffer
//! ([`READ_BUFFER`]), `TarballLimits::max_manifest_bytes` (the manifest kept in memory),
//! `TarballLimits::max_readme_bytes` and `TarballLimits::max_readme_lookbehind_bytes` (the
//! readme candidates kept), plus the publish metadata ([`ExtractorConfig::max_metadata_bytes`]);
//! a process holds at most [`ExtractorConfig::workers`] checks at a time.

use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use depot_cratefile::{PublishLimits, PublishMetadata, TarballError, TarballLimits};
use depot_eventlog::{Delivery, EventLog, Expected, WorkQueueConfig};
use depot_events::{
    Envelope, Event, ExtractedMetadata, RejectionReason, Timestamp, VersionAccepted,
    VersionRejected, VersionUploaded,
};
use depot_store::BlobStore;

/// The durable consumer name shared by all extractor instances.
pub const CONSUMER: &str = "extractor";

/// The actor recorded on the extractor's events.
const ACTOR: &str = "depot:extractor";

/// Size of the buffer the archive is read through.
pub const READ_BUFFER: usize = 1 << 20;

/// How long a check may overrun its deadline (finishing the read in flight) before the worker
/// stops waiting for it.
const DEADLINE_GRACE: Duration = Duration::from_secs(5);

/// How long the extractor leaves an upload of up to [`ExtractorConfig::inline_check_size`] to
/// the api that checks it on the publishing request, before it checks it itself.
const INLINE_GRACE: Duration = Duration::from_secs(2);

/// The largest encoded outcome event the extractor appends. The event log accepts at least
/// 1 MiB per message (JetStream's default `max_payload`); an accepted version whose index line
/// and metadata would not fit is rejected with `metadata_too_large` instead. Readmes and the
/// publish metadata are stored as blobs, so only a crate with an absurd index line (hundreds of
/// KiB of dependencies or features) comes near it.
pub const MAX_OUTCOME_EVENT_BYTES: usize = 512 * 1024;

/// Settings of the extractor role.
#[derive(Debug, Clone)]
pub struct ExtractorConfig {
    /// Limits for reading archives.
    pub tarball_limits: TarballLimits,
    /// Limits for publish metadata (re-validated here; the api checked them already).
    pub publish_limits: PublishLimits,
    /// Largest publish metadata blob read back (the api's `DEPOT_MAX_JSON_SIZE`).
    pub max_metadata_bytes: u64,
    /// Attempts at an upload that keeps failing transiently (blob store, event log) before it
    /// is rejected with `processing_failed`. At least 1.
    pub max_attempts: u32,
    /// How many uploads are checked at the same time in this process.
    pub workers: usize,
    /// The time budget of one check (hashing and reading the archive).
    pub check_timeout: Duration,
    /// How long a delivery stays claimed without a sign of life; in-progress signals are sent
    /// every third of it while an upload is being handled.
    pub ack_wait: Duration,
    /// Uploads up to this size are checked by the api on the publishing request
    /// (`DEPOT_INLINE_CHECK_SIZE`); the extractor takes one over only when no outcome
    /// followed it within a grace period. 0: the extractor checks every upload at once.
    pub inline_check_size: u64,
    /// Delays before retrying after a transient failure: entry `i` after attempt `i + 1`, the
    /// last one repeating. Empty means one second.
    pub retry_delays: Vec<Duration>,
}

impl ExtractorConfig {
    /// The settings with production defaults for everything but the limits.
    pub fn new(tarball_limits: TarballLimits, publish_limits: PublishLimits) -> ExtractorConfig {
        ExtractorConfig {
            tarball_limits,
            publish_limits,
            max_metadata_bytes: 1 << 20,
            max_attempts: 5,
            workers: 4,
            check_timeout: Duration::from_secs(600),
            // Short, so an upload claimed by an extractor that died goes to another within
            // seconds (the publisher is waiting for its verdict); a live worker renews its
            // claim every third of it, so no check is too long for it.
            ack_wait: Duration::from_secs(5),
            inline_check_size: 0,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
        }
    }

    /// The longest an upload can take from its first delivery to its verdict while extractors
    /// run: every attempt at its full check budget, the retry delays in between, and one ack wait
    /// per attempt for a redelivery after a lost worker, and the grace left to an inline check.
    /// A version pending for longer than this
    /// is stuck (no extractor running, or a bug); `depot verify` reports it.
    pub fn budget(&self) -> Duration {
        let attempts = self.max_attempts.max(1);
        let delays: Duration = (1..u64::from(attempts))
            .map(|attempt| self.retry_delay(attempt))
            .sum();
        let grace = if self.inline_check_size > 0 {
            INLINE_GRACE
        } else {
            Duration::ZERO
        };
        (self.check_timeout + self.ack_wait) * attempts + delays + grace
    }

    /// The delay before the attempt after `attempt` (1-based).
    fn retry_delay(&self, attempt: u64) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// Decides on one upload whose stored file reads from `file`: the extractor's checking step,
/// replaceable in tests (e.g. by one that panics or hangs).
pub trait Checker: Send + Sync + fmt::Debug + 'static {
    /// Checks `upload` (its metadata inline) whose stored file has checksum `actual`.
    fn check(
        &self,
        config: &ExtractorConfig,
        upload: &VersionUploaded,
        actual: &str,
        file: &mut dyn Read,
        pubtime: String,
    ) -> Outcome;
}

/// The real checks: [`check`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveChecker;

impl Checker for ArchiveChecker {
    fn check(
        &self,
        config: &ExtractorConfig,
        upload: &VersionUploaded,
        actual: &str,
        file: &mut dyn Read,
        pubtime: String,
    ) -> Outcome {
        check(config, upload, actual, file, pubtime)
    }
}

/// A reader that fails with [`std::io::ErrorKind::TimedOut`] once its deadline has passed,
/// so blocking work driven by its reads stops soon after the deadline. `expired` is set when
/// that happens.
#[derive(Debug)]
pub struct DeadlineReader<R> {
    inner: R,
    deadline: Instant,
    expired: Arc<AtomicBool>,
}

impl<R> DeadlineReader<R> {
    /// Wraps `inner`; `expired` is set on the first read after `deadline`.
    pub fn new(inner: R, deadline: Instant, expired: Arc<AtomicBool>) -> DeadlineReader<R> {
        DeadlineReader {
            inner,
            deadline,
            expired,
        }
    }
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            self.expired.store(true, Ordering::Relaxed);
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the check's time budget is used up",
            ));
        }
        self.inner.read(buf)
    }
}

/// The extractor worker.
#[derive(Debug, Clone)]
pub struct Extractor {
    log: Arc<dyn EventLog>,
    blobs: BlobStore,
    config: Arc<ExtractorConfig>,
    checker: Arc<dyn Checker>,
}

/// What checking an upload produced.
#[derive(Debug)]
pub enum Outcome {
    /// Valid: the accepted event.
    Accepted(Box<VersionAccepted>),
    /// Invalid: the rejected event.
    Rejected(VersionRejected),
}

/// How handling one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// The outcome is in the log: acknowledge.
    Done,
    /// A transient failure: deliver again after this delay.
    Retry(Duration),
}

impl Extractor {
    /// An extractor reading blobs from `blobs` and appending to `log`.
    pub fn new(log: Arc<dyn EventLog>, blobs: BlobStore, config: ExtractorConfig) -> Extractor {
        Extractor {
            log,
            blobs,
            config: Arc::new(config),
            checker: Arc::new(ArchiveChecker),
        }
    }

    /// The same extractor deciding with `checker` instead of the real checks.
    pub fn with_checker(mut self, checker: Arc<dyn Checker>) -> Extractor {
        self.checker = checker;
        self
    }

    /// The work queue's redelivery policy: unlimited redelivery (the extractor counts
    /// attempts itself and always ends with a verdict), no backoff (which would replace the
    /// ack wait), the configured ack wait.
    pub fn queue_config(&self) -> WorkQueueConfig {
        WorkQueueConfig {
            ack_wait: self.config.ack_wait,
            max_deliver: 0,
            backoff: Vec::new(),
        }
    }

    /// Consumes uploads until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        // `workers` competing consumers of the one durable queue: uploads are checked in
        // parallel, so one slow crate does not hold up the others.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..self.config.workers.max(1) {
            let extractor = self.clone();
            let mut stopped = stopped.clone();
            workers.spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                extractor.work(worker == 0, stop).await
            });
        }
        tokio::pin!(shutdown);
        let outcome = tokio::select! {
            () = &mut shutdown => Ok(()),
            Some(joined) = workers.join_next() => match joined {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("an extractor worker panicked: {e}")),
            },
        };
        let _ = stop.send(true);
        while workers.join_next().await.is_some() {}
        outcome
    }

    /// One worker: takes uploads from the queue until `shutdown`; the first one also samples
    /// the queue's backlog into `depot_consumer_pending_events`.
    async fn work(
        &self,
        samples: bool,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut queue = self
            .log
            .work_queue(CONSUMER, self.queue_config())
            .await
            .context("opening the extractor's work queue")?;
        tokio::pin!(shutdown);
        let pending = depot_telemetry::metrics()
            .consumer_pending
            .with_label_values(&[CONSUMER]);
        let mut sample = tokio::time::interval(Duration::from_secs(5));
        loop {
            let delivery = tokio::select! {
                () = &mut shutdown => return Ok(()),
                _ = sample.tick(), if samples => {
                    if let Ok(count) = queue.pending().await {
                        pending.set(i64::try_from(count).unwrap_or(i64::MAX));
                    }
                    continue;
                }
                next = queue.next() => next,
            };
            match delivery {
                Ok(delivery) => self.handle(delivery).await,
                Err(e) => {
                    tracing::warn!(error = %e, "extractor cannot read its queue; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Handles one delivery and settles it. Never panics on input.
    pub async fn handle(&self, delivery: Delivery) {
        let seq = delivery.event.seq;
        let envelope = match Envelope::decode(&delivery.event.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::error!(seq, error = %e, "undecodable event; skipping it in the extractor");
                let _ = delivery.term().await;
                return;
            }
        };
        let Event::VersionUploaded(upload) = &envelope.event else {
            let _ = delivery.ack().await;
            return;
        };
        if let Err(e) = depot_index::CrateName::parse(&upload.name) {
            tracing::error!(seq, error = %e, "upload of an invalid crate name; skipping it in the extractor");
            let _ = delivery.term().await;
            return;
        }
        if self.already_decided(seq, &envelope, upload).await {
            // The api decided it on the publishing request (see `decide_inline`).
            if let Err(e) = delivery.ack().await {
                tracing::warn!(seq, error = %e, "could not acknowledge an upload");
            }
            return;
        }
        // An upload the api checks itself is left to it for a moment (its check takes
        // milliseconds); the extractor takes it over only if no outcome came.
        let inline = upload.size <= self.config.inline_check_size;
        if inline && delivery.attempt == 1 {
            if let Err(e) = delivery.nak(INLINE_GRACE).await {
                tracing::warn!(seq, error = %e, "could not defer an upload; it follows the ack wait");
            }
            return;
        }
        let attempt = if inline {
            delivery.attempt - 1
        } else {
            delivery.attempt
        };
        let handled = self
            .keep_claimed(&delivery, self.decide(&envelope, upload, attempt))
            .await;
        match handled {
            Handled::Done => {
                if let Err(e) = delivery.ack().await {
                    tracing::warn!(seq, error = %e, "could not acknowledge an upload");
                }
            }
            Handled::Retry(delay) => {
                if let Err(e) = delivery.nak(delay).await {
                    tracing::warn!(seq, error = %e, "could not ask for a redelivery; it follows the ack wait");
                }
            }
        }
    }

    /// Runs `work` while signalling progress on `delivery` every third of the ack wait, so the
    /// claim outlives any check.
    async fn keep_claimed<T>(
        &self,
        delivery: &Delivery,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let every = (self.config.ack_wait / 3).max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = ticks.tick() => {
                    if let Err(e) = delivery.in_progress().await {
                        tracing::warn!(seq = delivery.event.seq, error = %e, "could not extend the claim on an upload");
                    }
                }
            }
        }
    }

    /// Checks an upload on the publishing request itself, from the bytes the api still holds,
    /// so the publisher's wait skips the work queue's hand-off and neither blob is read back:
    /// `upload` is the upload about to be appended, with its `metadata` filled in (the publish
    /// metadata the api parsed), and `archive` the crate bytes the api hashed into
    /// `upload.cksum` as it stored them. The check runs before the upload is appended,
    /// alongside the api's own writes; [`Extractor::append_inline`] records its outcome once
    /// the upload is in the log. `None` means a transient failure: the work queue then delivers
    /// the upload to an extractor as usual.
    pub async fn check_inline(&self, upload: &VersionUploaded, archive: Bytes) -> Option<Outcome> {
        let started = Instant::now();
        let deadline = started + self.config.check_timeout;
        // The index line's publish time is the upload event's; it is set on append.
        let pubtime = Timestamp::now().to_pubtime();
        let checked = self
            .check_archive(
                upload,
                upload.cksum.clone(),
                std::io::Cursor::new(archive),
                pubtime,
                deadline,
            )
            .await;
        match observe_check(started, checked) {
            Ok(outcome) => Some(outcome),
            Err(e) => {
                tracing::debug!(krate.name = %upload.name, error = %format!("{e:#}"), "inline check failed; the extractor takes it over");
                None
            }
        }
    }

    /// Appends the outcome of [`Extractor::check_inline`] for the upload appended as
    /// `envelope`, with the index line's publish time taken from it. Returns whether it was
    /// appended; if not (a transient failure), the work queue delivers the upload to an
    /// extractor as usual. The outcome carries the same message id the queue's extractor would
    /// use, so the log keeps one outcome per upload whoever gets there first.
    pub async fn append_inline(
        &self,
        envelope: &Envelope,
        upload: &VersionUploaded,
        mut outcome: Outcome,
    ) -> bool {
        if let Outcome::Accepted(accepted) = &mut outcome {
            accepted.entry.pubtime = Some(envelope.at.to_pubtime());
        }
        match self.append(envelope, upload, outcome).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(krate.name = %upload.name, error = %format!("{e:#}"), "inline outcome not appended; the extractor takes it over");
                false
            }
        }
    }

    /// Whether the log already holds the outcome of the upload at `seq` (appended by
    /// [`Extractor::decide_inline`] or by an earlier delivery). A failed lookup says no: the
    /// upload is then checked again, and the repeated outcome is deduplicated by its id.
    async fn already_decided(
        &self,
        seq: u64,
        envelope: &Envelope,
        upload: &VersionUploaded,
    ) -> bool {
        let Ok(name) = depot_index::CrateName::parse(&upload.name) else {
            return false;
        };
        let subject = depot_events::subject::krate(&name.canonical());
        let msg_id = outcome_msg_id(envelope);
        match self.log.read_subject(&subject, seq).await {
            Ok(events) => events
                .iter()
                .any(|event| event.msg_id.as_deref() == Some(msg_id.as_str())),
            Err(e) => {
                tracing::debug!(seq, error = %e, "cannot look for an earlier outcome");
                false
            }
        }
    }

    /// [`Extractor::process`], timed, with rejections counted by reason.
    async fn timed_process(
        &self,
        envelope: &Envelope,
        upload: &VersionUploaded,
    ) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        observe_check(started, self.process(envelope, upload).await)
    }

    /// Checks the upload and appends its outcome; a transient failure asks for a retry, and
    /// after the last attempt becomes a `processing_failed` rejection.
    async fn decide(&self, envelope: &Envelope, upload: &VersionUploaded, attempt: u64) -> Handled {
        let processed = self.timed_process(envelope, upload).await;
        let retry = Handled::Retry(self.config.retry_delay(attempt));
        let outcome = match processed {
            Ok(outcome) => outcome,
            Err(e) if attempt < u64::from(self.config.max_attempts.max(1)) => {
                tracing::warn!(krate.name = %upload.name, attempt, error = %format!("{e:#}"), "upload processing failed; retrying");
                return retry;
            }
            Err(e) => {
                tracing::error!(krate.name = %upload.name, attempt, error = %format!("{e:#}"), "giving up on an upload");
                depot_telemetry::metrics()
                    .extraction_failures
                    .with_label_values(&["processing_failed"])
                    .inc();
                rejected(
                    upload,
                    vec![reason(
                        "processing_failed",
                        "Depot could not process the upload; please publish it again",
                    )],
                )
            }
        };
        match self.append(envelope, upload, outcome).await {
            Ok(()) => Handled::Done,
            Err(e) => {
                tracing::warn!(krate.name = %upload.name, attempt, error = %format!("{e:#}"), "could not append an outcome; retrying");
                retry
            }
        }
    }

    /// Checks one upload. `Err` means a transient failure (e.g. the blob store), not an invalid
    /// upload; a check that panics or overruns its time budget is a rejection.
    pub async fn process(
        &self,
        envelope: &Envelope,
        upload: &VersionUploaded,
    ) -> anyhow::Result<Outcome> {
        let deadline = Instant::now() + self.config.check_timeout;
        let missing = || {
            anyhow::anyhow!(
                "blob {} of {} {} is missing",
                upload.blob,
                upload.name,
                upload.vers
            )
        };
        let timed_out = || self.timed_out(upload);
        let mut upload = upload.clone();
        if let Some(key) = upload.metadata_blob.clone() {
            let bytes = self
                .blobs
                .read_capped(&key, self.config.max_metadata_bytes)
                .await
                .with_context(|| format!("reading the publish metadata {key}"))?
                .ok_or_else(|| anyhow::anyhow!("the publish metadata blob {key} is missing"))?;
            upload.metadata = match serde_json::from_slice(&bytes) {
                Ok(metadata) => metadata,
                Err(e) => {
                    return Ok(rejected(
                        &upload,
                        vec![reason(
                            "invalid_metadata",
                            format!("invalid upload request: {e}"),
                        )],
                    ));
                }
            };
        }
        // The file is read as a stream, twice (hash, then archive): memory stays constant
        // whatever the crate's size.
        let hashed =
            tokio::time::timeout_at(deadline.into(), self.blobs.sha256_of(&upload.blob)).await;
        let Ok(actual) = hashed else {
            return Ok(timed_out());
        };
        let actual = actual?.ok_or_else(missing)?;
        let (blob, _) = self
            .blobs
            .open_blob(&upload.blob)
            .await?
            .ok_or_else(missing)?;
        // The archive is parsed by synchronous readers on a blocking thread; the bridge feeds
        // them from the blob's stream (a file, or object storage) as they read.
        let blob =
            std::io::BufReader::with_capacity(READ_BUFFER, tokio_util::io::SyncIoBridge::new(blob));
        let pubtime = envelope.at.to_pubtime();
        self.check_archive(&upload, actual, blob, pubtime, deadline)
            .await
    }

    /// Checks the archive read from `archive` (whose sha256 is `actual`) against `upload`, whose
    /// metadata is filled in, on a blocking thread within `deadline`; an accepted version's
    /// index line carries `pubtime`, and its readme is stored.
    async fn check_archive(
        &self,
        upload: &VersionUploaded,
        actual: String,
        archive: impl Read + Send + 'static,
        pubtime: String,
        deadline: Instant,
    ) -> anyhow::Result<Outcome> {
        let timed_out = || self.timed_out(upload);
        let config = Arc::clone(&self.config);
        let checker = Arc::clone(&self.checker);
        let expired = Arc::new(AtomicBool::new(false));
        let task = {
            let expired = Arc::clone(&expired);
            let upload = upload.clone();
            tokio::task::spawn_blocking(move || -> Outcome {
                let mut reader = DeadlineReader::new(archive, deadline, expired);
                checker.check(&config, &upload, &actual, &mut reader, pubtime)
            })
        };
        let joined = tokio::time::timeout_at((deadline + DEADLINE_GRACE).into(), task).await;
        let outcome = match joined {
            // The blocking work stops at its next read; it is not waited for.
            Err(_elapsed) => return Ok(timed_out()),
            Ok(Err(join)) if join.is_panic() => {
                tracing::error!(
                    krate.name = %upload.name,
                    version.num = %upload.vers,
                    "checking an upload panicked"
                );
                return Ok(rejected(
                    upload,
                    vec![reason(
                        "processing_failed",
                        "Depot failed while checking the upload; it cannot be published as is",
                    )],
                ));
            }
            Ok(Err(join)) => return Err(anyhow::anyhow!("the checking task stopped: {join}")),
            Ok(Ok(outcome)) => outcome,
        };
        if expired.load(Ordering::Relaxed) {
            return Ok(timed_out());
        }
        match outcome {
            Outcome::Accepted(accepted) => self.store_readme(upload, accepted).await,
            rejected @ Outcome::Rejected(_) => Ok(rejected),
        }
    }

    /// The rejection of an upload whose check overran its time budget.
    fn timed_out(&self, upload: &VersionUploaded) -> Outcome {
        rejected(
            upload,
            vec![reason(
                "check_timeout",
                format!(
                    "checking the upload took longer than the {} s Depot allows",
                    self.config.check_timeout.as_secs()
                ),
            )],
        )
    }

    /// Moves the readme of an accepted version into a blob, so the event stays small.
    async fn store_readme(
        &self,
        upload: &VersionUploaded,
        mut accepted: Box<VersionAccepted>,
    ) -> anyhow::Result<Outcome> {
        if let Some(readme) = accepted.metadata.readme.take() {
            let blob = self
                .blobs
                .put(readme.as_bytes())
                .await
                .context("storing the readme")?;
            accepted.metadata.readme_blob = Some(blob.key);
        }
        let size = Envelope::new(ACTOR, Event::VersionAccepted((*accepted).clone()))
            .encode()
            .len();
        if size > MAX_OUTCOME_EVENT_BYTES {
            return Ok(rejected(
                upload,
                vec![reason(
                    "metadata_too_large",
                    format!(
                        "the index line and metadata of this version take {size} bytes; Depot \
                         stores at most {MAX_OUTCOME_EVENT_BYTES} (fewer or shorter \
                         dependencies or features)"
                    ),
                )],
            ));
        }
        Ok(Outcome::Accepted(accepted))
    }

    async fn append(
        &self,
        upload_envelope: &Envelope,
        upload: &VersionUploaded,
        outcome: Outcome,
    ) -> anyhow::Result<()> {
        let event = match outcome {
            Outcome::Accepted(accepted) => Event::VersionAccepted(*accepted),
            Outcome::Rejected(rejected) => {
                tracing::info!(
                    krate.name = %upload.name,
                    version.num = %upload.vers,
                    reason = %rejected.reasons.first().map(|r| r.code.as_str()).unwrap_or(""),
                    "upload rejected"
                );
                Event::VersionRejected(rejected)
            }
        };
        let envelope = Envelope::new(ACTOR, event);
        let name =
            depot_index::CrateName::parse(&upload.name).context("the upload's crate name")?;
        let subject = depot_events::subject::krate(&name.canonical());
        let msg_id = outcome_msg_id(upload_envelope);
        let metrics = depot_telemetry::metrics();
        let started = Instant::now();
        let appended = self
            .log
            .append(
                &subject,
                Expected::Any,
                &msg_id,
                Bytes::from(envelope.encode()),
            )
            .await
            .context("appending the outcome")?;
        metrics
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        if !appended.duplicate {
            metrics
                .events_appended
                .with_label_values(&[envelope.kind()])
                .inc();
        }
        Ok(())
    }
}

/// The message id of an upload's outcome: one per upload, whoever appends it.
fn outcome_msg_id(upload_envelope: &Envelope) -> String {
    format!("outcome:{}", upload_envelope.id)
}

fn reason(code: &str, detail: impl Into<String>) -> RejectionReason {
    RejectionReason {
        code: code.to_owned(),
        detail: detail.into(),
    }
}

fn rejected(upload: &VersionUploaded, reasons: Vec<RejectionReason>) -> Outcome {
    Outcome::Rejected(VersionRejected {
        vers: upload.vers.clone(),
        cksum: upload.cksum.clone(),
        reasons,
    })
}

/// Records a check that began at `started` in the extraction metrics (rejections by reason).
fn observe_check(started: Instant, processed: anyhow::Result<Outcome>) -> anyhow::Result<Outcome> {
    let metrics = depot_telemetry::metrics();
    metrics
        .extraction_duration
        .observe(started.elapsed().as_secs_f64());
    if let Ok(Outcome::Rejected(rejected)) = &processed {
        let code = rejected
            .reasons
            .first()
            .map_or("unknown", |r| r.code.as_str());
        metrics.extraction_failures.with_label_values(&[code]).inc();
    }
    processed
}

/// The check of an upload whose stored file has checksum `actual` and reads from `file`:
/// checksum, archive, manifest, agreement with the metadata.
pub fn check(
    config: &ExtractorConfig,
    upload: &VersionUploaded,
    actual: &str,
    file: impl std::io::Read,
    pubtime: String,
) -> Outcome {
    let reject = |reasons: Vec<RejectionReason>| {
        Outcome::Rejected(VersionRejected {
            vers: upload.vers.clone(),
            cksum: upload.cksum.clone(),
            reasons,
        })
    };
    if actual != upload.cksum {
        return reject(vec![reason(
            "checksum_mismatch",
            format!(
                "the stored file has checksum {actual}, not {}",
                upload.cksum
            ),
        )]);
    }
    let metadata: PublishMetadata = match serde_json::from_value(upload.metadata.clone()) {
        Ok(metadata) => metadata,
        Err(e) => {
            return reject(vec![reason(
                "invalid_metadata",
                format!("invalid upload request: {e}"),
            )]);
        }
    };
    let publish = match depot_cratefile::publish::validate(&metadata, &config.publish_limits) {
        Ok(publish) => publish,
        Err(e) => {
            return reject(
                e.problems()
                    .iter()
                    .map(|p| reason("invalid_metadata", p.to_string()))
                    .collect(),
            );
        }
    };
    let contents = match depot_cratefile::tarball::inspect(
        file,
        &upload.name,
        &upload.vers,
        &config.tarball_limits,
    ) {
        Ok(contents) => contents,
        Err(e) => return reject(vec![reason(tarball_code(&e), e.to_string())]),
    };
    if let Err(mismatches) = depot_cratefile::check_consistency(&publish, &contents) {
        return reject(
            mismatches
                .iter()
                .map(|m| reason("manifest_mismatch", m.to_string()))
                .collect(),
        );
    }
    // The index line uses the dependencies as cargo sent them (same-registry dependencies carry
    // no registry URL there) and the features of the manifest, which agree with them.
    let entry = depot_index::IndexEntry::new(
        contents.name.clone(),
        contents.vers.clone(),
        publish.index_deps(),
        upload.cksum.clone(),
        contents.features.clone(),
        contents.links.clone(),
        contents.rust_version.clone(),
        Some(pubtime),
    );
    let metadata = ExtractedMetadata {
        description: contents.description.clone(),
        license: contents.license.clone(),
        license_file: contents.license_file.clone(),
        repository: contents.repository.clone(),
        homepage: contents.homepage.clone(),
        documentation: contents.documentation.clone(),
        keywords: contents.keywords.clone(),
        categories: contents.categories.clone(),
        authors: contents.authors.clone(),
        edition: contents.edition.clone(),
        rust_version: contents.rust_version.clone(),
        links: contents.links.clone(),
        readme_file: contents.readme_file.clone(),
        readme: contents.readme.clone(),
        readme_blob: None,
    };
    Outcome::Accepted(Box::new(VersionAccepted {
        vers: upload.vers.clone(),
        cksum: upload.cksum.clone(),
        entry,
        metadata,
    }))
}

/// A stable machine code per kind of archive problem.
fn tarball_code(error: &TarballError) -> &'static str {
    match error {
        TarballError::Malformed(_) => "malformed_archive",
        TarballError::TooManyEntries { .. } => "too_many_entries",
        TarballError::InvalidPath(_) => "invalid_path",
        TarballError::UnexpectedEntryType { .. } => "unexpected_entry_type",
        TarballError::PaxSizeMismatch { .. } => "pax_size_mismatch",
        TarballError::MissingManifest
        | TarballError::IncorrectlyCasedManifest(_)
        | TarballError::TooManyManifests(_) => "manifest_missing_or_ambiguous",
        TarballError::ManifestTooLarge { .. }
        | TarballError::InvalidManifest(_)
        | TarballError::UnresolvedWorkspace(_)
        | TarballError::InvalidRustVersion(_) => "invalid_manifest",
        TarballError::NameMismatch { .. } | TarballError::VersionMismatch { .. } => {
            "manifest_mismatch"
        }
        TarballError::MissingDependencyVersion { .. } | TarballError::InvalidDependency { .. } => {
            "invalid_dependency"
        }
        TarballError::ManifestLimit(_) => "manifest_limit",
        TarballError::TrailingData => "trailing_data",
        TarballError::DuplicatePath(_) => "duplicate_path",
        TarballError::CaseCollision { .. } => "case_collision",
        TarballError::InvalidTarget(_) => "invalid_target",
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn the_budget_covers_every_attempt_and_delay() {
        let config = ExtractorConfig {
            max_attempts: 3,
            check_timeout: Duration::from_secs(100),
            ack_wait: Duration::from_secs(10),
            retry_delays: vec![Duration::from_secs(1), Duration::from_secs(5)],
            ..ExtractorConfig::new(TarballLimits::default(), PublishLimits::default())
        };
        // 3 × (100 + 10) + 1 + 5
        assert_eq!(config.budget(), Duration::from_secs(336));
        let once = ExtractorConfig {
            max_attempts: 1,
            ..config
        };
        assert_eq!(once.budget(), Duration::from_secs(110));
    }
}
