//! The extractor: a competing consumer of the event log that checks every uploaded `.crate`.
//!
//! For each `version_uploaded` it reads the blob, validates the archive through capped readers
//! (paths, entry types, sizes, the manifest and its agreement with the publish metadata) and
//! appends `version_accepted` with the index line, or `version_rejected` with the reasons. The
//! append carries a message id derived from the upload event, so a redelivered upload never
//! produces a second outcome; the projector ignores duplicates older than the log's
//! de-duplication window anyway.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use depot_cratefile::{PublishLimits, PublishMetadata, TarballError, TarballLimits};
use depot_eventlog::{Delivery, EventLog, Expected, WorkQueueConfig};
use depot_events::{
    Envelope, Event, ExtractedMetadata, RejectionReason, VersionAccepted, VersionRejected,
    VersionUploaded,
};
use depot_store::BlobStore;

/// The durable consumer name shared by all extractor instances.
pub const CONSUMER: &str = "extractor";

/// The actor recorded on the extractor's events.
const ACTOR: &str = "depot:extractor";

/// Settings of the extractor role.
#[derive(Debug, Clone)]
pub struct ExtractorConfig {
    /// Limits for reading archives.
    pub tarball_limits: TarballLimits,
    /// Limits for publish metadata (re-validated here; the api checked them already).
    pub publish_limits: PublishLimits,
    /// How often a failing upload is retried before it is rejected.
    pub max_deliver: u32,
    /// How many uploads are checked at the same time in this process.
    pub workers: usize,
}

/// The extractor worker.
#[derive(Debug, Clone)]
pub struct Extractor {
    log: Arc<dyn EventLog>,
    blobs: BlobStore,
    config: Arc<ExtractorConfig>,
}

/// What checking an upload produced.
#[derive(Debug)]
pub enum Outcome {
    /// Valid: the accepted event.
    Accepted(Box<VersionAccepted>),
    /// Invalid: the rejected event.
    Rejected(VersionRejected),
}

impl Extractor {
    /// An extractor reading blobs from `blobs` and appending to `log`.
    pub fn new(log: Arc<dyn EventLog>, blobs: BlobStore, config: ExtractorConfig) -> Extractor {
        Extractor {
            log,
            blobs,
            config: Arc::new(config),
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
            .work_queue(
                CONSUMER,
                WorkQueueConfig {
                    ack_wait: Duration::from_secs(60),
                    max_deliver: self.config.max_deliver,
                    backoff: vec![
                        Duration::from_secs(1),
                        Duration::from_secs(5),
                        Duration::from_secs(30),
                    ],
                },
            )
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

    async fn handle(&self, delivery: Delivery) {
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
        let started = std::time::Instant::now();
        let processed = self.process(&envelope, upload).await;
        let metrics = depot_telemetry::metrics();
        metrics
            .extraction_duration
            .observe(started.elapsed().as_secs_f64());
        match &processed {
            Ok(Outcome::Rejected(rejected)) => {
                let reason = rejected
                    .reasons
                    .first()
                    .map_or("unknown", |r| r.code.as_str());
                metrics
                    .extraction_failures
                    .with_label_values(&[reason])
                    .inc();
            }
            Ok(Outcome::Accepted(_)) => {}
            Err(_) => metrics
                .extraction_failures
                .with_label_values(&["processing_failed"])
                .inc(),
        }
        match processed {
            Ok(outcome) => match self.append(&envelope, upload, outcome).await {
                Ok(()) => {
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(seq, error = %e, "could not acknowledge an upload");
                    }
                }
                Err(e) => {
                    tracing::warn!(seq, error = %format!("{e:#}"), "could not append an outcome; retrying");
                    let _ = delivery.nak(Duration::from_secs(1)).await;
                }
            },
            Err(e) if delivery.is_last_attempt => {
                tracing::error!(seq, error = %format!("{e:#}"), "giving up on an upload");
                let rejected = Outcome::Rejected(VersionRejected {
                    vers: upload.vers.clone(),
                    cksum: upload.cksum.clone(),
                    reasons: vec![reason(
                        "processing_failed",
                        "Depot could not process the upload; please publish it again",
                    )],
                });
                if self.append(&envelope, upload, rejected).await.is_ok() {
                    let _ = delivery.ack().await;
                } else {
                    let _ = delivery.nak(Duration::from_secs(5)).await;
                }
            }
            Err(e) => {
                tracing::warn!(seq, error = %format!("{e:#}"), "upload processing failed; retrying");
                let _ = delivery.nak(Duration::from_secs(1)).await;
            }
        }
    }

    /// Checks one upload. `Err` means a transient failure (e.g. the blob store), not an invalid
    /// upload.
    pub async fn process(
        &self,
        envelope: &Envelope,
        upload: &VersionUploaded,
    ) -> anyhow::Result<Outcome> {
        let missing = || {
            anyhow::anyhow!(
                "blob {} of {} {} is missing",
                upload.blob,
                upload.name,
                upload.vers
            )
        };
        // The file is read as a stream, twice (hash, then archive): memory stays constant
        // whatever the crate's size.
        let actual = self
            .blobs
            .sha256_of(&upload.blob)
            .await?
            .ok_or_else(missing)?;
        let path = self.blobs.path(&upload.blob).ok_or_else(missing)?;
        let config = Arc::clone(&self.config);
        let upload = upload.clone();
        let pubtime = envelope.at.to_pubtime();
        tokio::task::spawn_blocking(move || {
            let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
            Ok(check(&config, &upload, &actual, file, pubtime))
        })
        .await
        .context("the checking task panicked")?
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
        let msg_id = format!("outcome:{}", upload_envelope.id);
        let metrics = depot_telemetry::metrics();
        let started = std::time::Instant::now();
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

fn reason(code: &str, detail: impl Into<String>) -> RejectionReason {
    RejectionReason {
        code: code.to_owned(),
        detail: detail.into(),
    }
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
