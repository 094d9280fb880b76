//! The extractor under faults: checks that panic, hang or outlast the ack wait, and an event
//! log that refuses appends. Every upload must end with exactly one verdict, and no worker may
//! die. Runs on the embedded SQLite log in a temporary directory.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use depot_cratefile::{PublishLimits, TarballLimits};
use depot_eventlog::{
    AppendError, Appended, EventLog, EventStream, Expected, LogError, SqliteLog, StoredEvent,
    WorkQueue, WorkQueueConfig,
};
use depot_events::{
    Envelope, Event, ExtractedMetadata, RejectionReason, VersionAccepted, VersionRejected,
    VersionUploaded,
};
use depot_extractor::{Checker, Extractor, ExtractorConfig, MAX_OUTCOME_EVENT_BYTES, Outcome};
use depot_index::{FeatureMap, IndexEntry};
use depot_store::BlobStore;
use tokio::time::Instant;

/// How long a verdict may take at most in these tests.
const PATIENCE: Duration = Duration::from_secs(20);

fn config() -> ExtractorConfig {
    ExtractorConfig {
        workers: 2,
        ack_wait: Duration::from_secs(1),
        retry_delays: vec![Duration::from_millis(50)],
        ..ExtractorConfig::new(TarballLimits::default(), PublishLimits::default())
    }
}

/// A log that refuses the first `failures` appends.
#[derive(Debug)]
struct FlakyLog {
    inner: SqliteLog,
    failures: AtomicUsize,
    refused: AtomicUsize,
}

#[async_trait]
impl EventLog for FlakyLog {
    async fn append(
        &self,
        subject: &str,
        expected: Expected,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Appended, AppendError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(AppendError::Unavailable("refused by the test".into()));
        }
        self.inner.append(subject, expected, msg_id, payload).await
    }
    async fn last_seq(&self, subject: &str) -> Result<u64, LogError> {
        self.inner.last_seq(subject).await
    }
    async fn read_subject(
        &self,
        subject: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LogError> {
        self.inner.read_subject(subject, after_seq).await
    }
    async fn head(&self) -> Result<u64, LogError> {
        self.inner.head().await
    }
    async fn read_from(&self, from_seq: u64) -> Result<EventStream, LogError> {
        self.inner.read_from(from_seq).await
    }
    async fn work_queue(
        &self,
        name: &str,
        config: WorkQueueConfig,
    ) -> Result<Box<dyn WorkQueue>, LogError> {
        self.inner.work_queue(name, config).await
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    blobs: BlobStore,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Rig {
    async fn start(
        config: ExtractorConfig,
        checker: Arc<dyn Checker>,
        refuse_appends: usize,
    ) -> (Rig, Arc<FlakyLog>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = SqliteLog::open(&dir.path().join("events.sqlite"))
            .await
            .expect("open log");
        let flaky = Arc::new(FlakyLog {
            inner,
            failures: AtomicUsize::new(refuse_appends),
            refused: AtomicUsize::new(0),
        });
        let log: Arc<dyn EventLog> = flaky.clone();
        let blobs = BlobStore::open(dir.path().join("blobs"))
            .await
            .expect("open blobs");
        let extractor = Extractor::new(log.clone(), blobs.clone(), config).with_checker(checker);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(extractor.run(async move {
            let _ = stopped.await;
        }));
        (
            Rig {
                _dir: dir,
                log,
                blobs,
                stop: Some(stop),
                task: Some(task),
            },
            flaky,
        )
    }

    /// Appends an upload of `name` 1.0.0; `stored` says whether its blob exists.
    async fn upload(&self, name: &str, stored: bool) -> Envelope {
        let (blob, cksum) = if stored {
            let blob = self.blobs.put(name.as_bytes()).await.expect("put");
            (blob.key, blob.sha256)
        } else {
            let cksum = "0".repeat(64);
            (format!("sha256/{cksum}"), cksum)
        };
        let envelope = Envelope::new(
            "alice",
            Event::VersionUploaded(VersionUploaded {
                name: name.into(),
                vers: "1.0.0".into(),
                cksum,
                size: name.len() as u64,
                blob,
                metadata: serde_json::json!({"name": name, "vers": "1.0.0"}),
                metadata_blob: None,
                uploader: "alice".into(),
                token_id: None,
            }),
        );
        self.log
            .append(
                &format!("crate.{name}"),
                Expected::Any,
                &envelope.id.to_string(),
                Bytes::from(envelope.encode()),
            )
            .await
            .expect("append upload");
        envelope
    }

    /// The verdicts on `name`, waiting until there is at least one.
    async fn verdicts(&self, name: &str) -> Vec<(Event, usize)> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let verdicts: Vec<(Event, usize)> = self
                .log
                .read_subject(&format!("crate.{name}"), 0)
                .await
                .expect("read")
                .into_iter()
                .filter_map(|stored| {
                    let envelope = Envelope::decode(&stored.payload).expect("decode");
                    (!matches!(envelope.event, Event::VersionUploaded(_)))
                        .then_some((envelope.event, stored.payload.len()))
                })
                .collect();
            if !verdicts.is_empty() {
                return verdicts;
            }
            assert!(
                Instant::now() < deadline,
                "no verdict on {name} within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the extractor stops")
                .expect("the extractor task did not panic");
            result.expect("the extractor ended cleanly");
        }
    }
}

fn only_rejection(verdicts: &[(Event, usize)]) -> &VersionRejected {
    match verdicts {
        [(Event::VersionRejected(rejected), _)] => rejected,
        other => panic!("expected one rejection, got {other:?}"),
    }
}

fn accepted(upload: &VersionUploaded, entry: IndexEntry, readme: Option<String>) -> Outcome {
    Outcome::Accepted(Box::new(VersionAccepted {
        vers: upload.vers.clone(),
        cksum: upload.cksum.clone(),
        entry,
        metadata: ExtractedMetadata {
            readme_file: readme.as_ref().map(|_| "README.md".to_owned()),
            readme,
            ..ExtractedMetadata::default()
        },
    }))
}

fn entry(upload: &VersionUploaded, features: FeatureMap) -> IndexEntry {
    IndexEntry::new(
        upload.name.clone(),
        upload.vers.clone(),
        vec![],
        upload.cksum.clone(),
        features,
        None,
        None,
        None,
    )
}

/// Panics on every upload.
#[derive(Debug)]
struct Panicking;

impl Checker for Panicking {
    fn check(
        &self,
        _: &ExtractorConfig,
        upload: &VersionUploaded,
        _: &str,
        _: &mut dyn Read,
        _: String,
    ) -> Outcome {
        panic!("the checker fails on {}", upload.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_check_is_a_rejection_and_the_workers_go_on() {
    let (rig, _) = Rig::start(config(), Arc::new(Panicking), 0).await;
    for name in ["first", "second", "third"] {
        rig.upload(name, true).await;
    }
    for name in ["first", "second", "third"] {
        let verdicts = rig.verdicts(name).await;
        let rejected = only_rejection(&verdicts);
        assert_eq!(rejected.reasons[0].code, "processing_failed", "{name}");
    }
    rig.stop().await;
}

/// Takes `pause` (blocking) per upload and counts its calls.
#[derive(Debug)]
struct Slow {
    pause: Duration,
    calls: AtomicUsize,
}

impl Checker for Slow {
    fn check(
        &self,
        _: &ExtractorConfig,
        upload: &VersionUploaded,
        _: &str,
        _: &mut dyn Read,
        _: String,
    ) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.pause);
        accepted(upload, entry(upload, FeatureMap::new()), None)
    }
}

/// A check three times as long as the ack wait keeps its claim: the second worker never gets
/// the same upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_longer_than_the_ack_wait_is_not_given_to_a_second_worker() {
    let slow = Arc::new(Slow {
        pause: Duration::from_secs(3),
        calls: AtomicUsize::new(0),
    });
    let (rig, _) = Rig::start(config(), slow.clone(), 0).await;
    rig.upload("slow", true).await;
    let verdicts = rig.verdicts("slow").await;
    assert!(
        matches!(verdicts.as_slice(), [(Event::VersionAccepted(_), _)]),
        "{verdicts:?}"
    );
    // Give a wrongly redelivered copy time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        slow.calls.load(Ordering::SeqCst),
        1,
        "checked more than once"
    );
    assert_eq!(rig.verdicts("slow").await.len(), 1);
    rig.stop().await;
}

/// Reads its input forever (as a decompressor of an endless stream would), until a read fails.
#[derive(Debug, Default)]
struct Endless {
    stopped: AtomicBool,
}

impl Checker for Endless {
    fn check(
        &self,
        _: &ExtractorConfig,
        upload: &VersionUploaded,
        _: &str,
        file: &mut dyn Read,
        _: String,
    ) -> Outcome {
        let mut buf = [0_u8; 64];
        let error = loop {
            match file.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(10)),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        self.stopped.store(true, Ordering::SeqCst);
        Outcome::Rejected(VersionRejected {
            vers: upload.vers.clone(),
            cksum: upload.cksum.clone(),
            reasons: vec![RejectionReason {
                code: "malformed_archive".into(),
                detail: error.to_string(),
            }],
        })
    }
}

/// The time budget stops the blocking work and rejects the upload with `check_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_over_its_time_budget_is_stopped_and_rejected() {
    let endless = Arc::new(Endless::default());
    let config = ExtractorConfig {
        check_timeout: Duration::from_secs(1),
        ..config()
    };
    let (rig, _) = Rig::start(config, endless.clone(), 0).await;
    let started = Instant::now();
    rig.upload("endless", true).await;
    let verdicts = rig.verdicts("endless").await;
    assert_eq!(only_rejection(&verdicts).reasons[0].code, "check_timeout");
    assert!(
        endless.stopped.load(Ordering::SeqCst),
        "the check still runs"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    rig.stop().await;
}

/// Accepts every upload with its readme.
#[derive(Debug)]
struct WithReadme;

impl Checker for WithReadme {
    fn check(
        &self,
        _: &ExtractorConfig,
        upload: &VersionUploaded,
        _: &str,
        _: &mut dyn Read,
        _: String,
    ) -> Outcome {
        accepted(
            upload,
            entry(upload, FeatureMap::new()),
            Some("r".repeat(1 << 20)),
        )
    }
}

/// A 1 MiB readme goes to a blob; the accepted event stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_is_stored_as_a_blob() {
    let (rig, _) = Rig::start(config(), Arc::new(WithReadme), 0).await;
    rig.upload("readme", true).await;
    let verdicts = rig.verdicts("readme").await;
    let [(Event::VersionAccepted(accepted), size)] = verdicts.as_slice() else {
        panic!("expected an acceptance, got {verdicts:?}");
    };
    assert!(*size < 4096, "the accepted event has {size} bytes");
    assert_eq!(accepted.metadata.readme, None);
    let key = accepted
        .metadata
        .readme_blob
        .as_deref()
        .expect("readme blob");
    let readme = rig
        .blobs
        .read_capped(key, 2 << 20)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(readme.len(), 1 << 20);
    rig.stop().await;
}

/// Accepts with an index line far beyond what an event may hold.
#[derive(Debug)]
struct Huge;

impl Checker for Huge {
    fn check(
        &self,
        _: &ExtractorConfig,
        upload: &VersionUploaded,
        _: &str,
        _: &mut dyn Read,
        _: String,
    ) -> Outcome {
        let mut features = FeatureMap::new();
        for i in 0..300 {
            features.insert(
                format!("feature-{i}"),
                (0..300).map(|j| format!("dependency-{j}/x")).collect(),
            );
        }
        accepted(upload, entry(upload, features), None)
    }
}

/// An outcome that would not fit in an event becomes a `metadata_too_large` rejection, and
/// every event the extractor appends stays under `MAX_OUTCOME_EVENT_BYTES`, well below the
/// 1 MiB the event log accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_too_large_for_the_log_is_a_rejection() {
    const LOG_MESSAGE_LIMIT: usize = 1 << 20;
    const { assert!(MAX_OUTCOME_EVENT_BYTES <= LOG_MESSAGE_LIMIT / 2) };
    let (rig, _) = Rig::start(config(), Arc::new(Huge), 0).await;
    rig.upload("huge", true).await;
    let verdicts = rig.verdicts("huge").await;
    assert_eq!(
        only_rejection(&verdicts).reasons[0].code,
        "metadata_too_large"
    );
    assert!(verdicts[0].1 < 4096);
    rig.stop().await;
}

/// The largest `version_uploaded` the api can write (64-byte name, 150-byte version, blob
/// keys, a long login, a token id) is a few hundred bytes, whatever the metadata weighs.
#[test]
fn the_largest_upload_event_is_small() {
    let key = format!("sha256/{}", "f".repeat(64));
    let envelope = Envelope::new(
        "u".repeat(256),
        Event::VersionUploaded(VersionUploaded {
            name: "n".repeat(64),
            vers: format!("1.0.0-{}", "p".repeat(144)),
            cksum: "f".repeat(64),
            size: 3 << 30,
            blob: key.clone(),
            metadata: serde_json::Value::Null,
            metadata_blob: Some(key),
            uploader: "u".repeat(256),
            token_id: Some(uuid::Uuid::now_v7()),
        }),
    );
    let size = envelope.encode().len();
    assert!(size < 2048, "{size} bytes");
}

/// The blob is missing (a transient failure) on every attempt and the log refuses the first
/// rejections too: after the last attempt the `processing_failed` rejection is retried until it
/// is appended; the upload is never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_rejection_is_retried_until_appended() {
    let config = ExtractorConfig {
        max_attempts: 2,
        ..config()
    };
    let (rig, flaky) = Rig::start(config, Arc::new(Panicking), 0).await;
    rig.upload("lost", false).await;
    // From now on (the first attempt appends nothing) the next three appends are refused.
    flaky.failures.store(3, Ordering::SeqCst);
    let verdicts = rig.verdicts("lost").await;
    assert_eq!(
        only_rejection(&verdicts).reasons[0].code,
        "processing_failed"
    );
    assert_eq!(
        flaky.refused.load(Ordering::SeqCst),
        3,
        "the refused appends"
    );
    rig.stop().await;
}
