//! The embedded event log: one SQLite file, for Depot's zero-setup mode (one process, no
//! servers).
//!
//! The semantics are the JetStream log's, as the `conformance` suite pins them (EVENTING.md
//! §7). How the file is used:
//!
//! - **Durability:** WAL journal, `synchronous=FULL` (every commit is fsynced: this log is the
//!   source of truth), `busy_timeout` 5 s. The schema is the log's own ([`schema`]), created
//!   at open and marked with an application id and a schema version.
//! - **One writer:** every writing transaction runs on a single connection (a pool of one)
//!   and starts with `BEGIN IMMEDIATE`, so a read-then-write transaction never fails with
//!   `database is locked` (EVENTING.md §0.9, §5). Reads use a separate pool of `query_only`
//!   connections; WAL lets them run beside the writer.
//! - **Appends:** per append, message id lookup first (a retry of a landed append is a
//!   duplicate even if its expected sequence is stale now, like clustered JetStream), then
//!   the subject's last sequence against [`Expected`], then the insert. Appends are
//!   **group-committed**: one committer task takes every append waiting for it (up to
//!   [`GROUP_MAX`]), checks and inserts them in arrival order in one transaction (each sees
//!   the ones before it, so two appends expecting the same sequence still get one winner and
//!   one conflict), commits with one fsync, then answers them all. A batch
//!   ([`EventLog::append_batch`]) does the lookup and the insert per event in one transaction
//!   (one fsync) per [`BATCH_CHUNK`] events.
//! - **Followers:** a `tokio::sync::watch` of the head sequence is bumped after each commit;
//!   [`EventLog::read_from`] and idle work queues wait on it (plus a slow fallback poll for
//!   writers outside this `SqliteLog`, e.g. another process on the same file).
//! - **Cancellation:** every write (append, queue claim, ack, ...) runs in its own task, so a
//!   dropped caller never leaves a committed write without its notification, and a cancelled
//!   [`WorkQueue::next`] hands its claimed delivery to the next call instead of losing it.

mod reader;
mod schema;
mod work_queue;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::error::{AppendError, BoxError, LogError};
use crate::event_log::{
    Appended, EventLog, EventStream, Expected, NewEvent, StoredEvent, WorkQueue, WorkQueueConfig,
    validate_batch,
};
use crate::local_notifier::LocalNotifier;
use crate::names::{validate_msg_id, validate_subject};

use schema::SchemaProblem;

/// How long SQLite waits for another connection's lock (another process on the same file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write waits for the writer connection before reporting `Unavailable`.
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read connections (the machine has few cores; reads are short).
const READ_CONNECTIONS: u32 = 4;
/// Appends retry transient failures (the file locked by another connection beyond the busy
/// timeout, a full disk) with the same message id while less than this has passed.
const APPEND_RETRY_BUDGET: Duration = Duration::from_secs(5);
const APPEND_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const APPEND_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Most events of an [`EventLog::append_batch`] written in one transaction: bounds how long
/// the single writer connection is held (other appends wait for it) and the size of the
/// write-ahead log a commit must sync.
const BATCH_CHUNK: usize = 5_000;
/// Most single appends committed together in one transaction (group commit): bounds how long
/// one commit holds the writer and how much a failed commit makes retry.
const GROUP_MAX: usize = 256;
/// Appends waiting for the committer; when it is full, appenders wait for room.
const APPEND_QUEUE: usize = 1_024;
/// Idle followers re-check the file this often even without a notification, for writes
/// made outside this `SqliteLog`. In-process appends wake them at once.
const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// Why [`SqliteLog::open`] failed. Every variant is fatal at startup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory holding the file could not be created.
    #[error("cannot create the directory {path} for the event log: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open, configure or initialise the file.
    #[error("cannot open the event log {path}: {reason}")]
    Database {
        /// The file.
        path: PathBuf,
        /// What went wrong (the SQLite error text).
        reason: String,
    },
    /// The file is a SQLite database of some other application, or damaged.
    #[error("{path} is not a Depot event log: {reason}")]
    NotAnEventLog {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The file was written by a newer Depot with a schema this one does not know.
    #[error(
        "the event log {path} has schema version {found}, this Depot supports up to {supported}: \
         upgrade Depot"
    )]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// The file's schema version.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// The file system does not support SQLite's write-ahead log (e.g. a network share).
    #[error(
        "the event log {path} cannot use a write-ahead log (SQLite reports journal mode \
         {mode:?}): put it on a local file system"
    )]
    NoWal {
        /// The file.
        path: PathBuf,
        /// The journal mode SQLite fell back to.
        mode: String,
    },
}

/// The embedded event log on a SQLite file. Cheap to clone; clones share the connections.
///
/// Open it with [`SqliteLog::open`]. Behaviour worth knowing:
///
/// - Appends are fsynced before they return. Concurrent appends share a transaction and its
///   fsync (group commit, up to 256 per commit), so many appenders cost little more than
///   one. [`EventLog::append_batch`]
///   writes up to 5,000 events per transaction, so bulk appends cost one fsync per chunk.
/// - Appends retry transient failures (the file locked by another connection past the 5 s
///   busy timeout, a full disk) for about 5 s with the same message id, then return
///   [`AppendError::Unavailable`].
/// - Message ids are remembered forever (a unique column), not for a duplicate window.
/// - Only one `SqliteLog` per file should be open at a time. A second one (or another
///   process) works, but its appends wake this one's followers and idle work queues only
///   through the fallback poll (every 2 s).
/// - Work-queue deadlines are wall-clock times stored in the file, so they survive restarts
///   (a delivery in flight at a crash comes back after its ack wait).
#[derive(Clone)]
pub struct SqliteLog {
    inner: Arc<Inner>,
}

/// State shared by a log, its readers, work queues and deliveries.
struct Inner {
    path: PathBuf,
    /// Exactly one connection: every write goes through it, with `BEGIN IMMEDIATE`.
    writer: SqlitePool,
    /// `query_only` connections for reads.
    reader: SqlitePool,
    /// The last sequence known to be committed, bumped after each append.
    head: watch::Sender<u64>,
    /// Per work queue: a counter bumped when a delivery becomes visible early (nak), to
    /// wake idle instances of that queue.
    queue_wakers: Mutex<HashMap<String, watch::Sender<u64>>>,
    notifier: LocalNotifier,
    /// Single appends, to the committer task (see [`committer`]).
    appends: mpsc::Sender<AppendRequest>,
}

/// One [`EventLog::append`] waiting for the committer.
struct AppendRequest {
    subject: String,
    expected: Expected,
    msg_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Result<Appended, AppendError>>,
}

impl fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLog")
            .field("path", &self.inner.path)
            .field("head", &*self.inner.head.borrow())
            .finish_non_exhaustive()
    }
}

impl SqliteLog {
    /// Opens the event log at `path`, creating the file (and its parent directories) if it
    /// does not exist.
    ///
    /// Refuses files that are not Depot event logs, were written by a newer Depot, or sit on
    /// a file system without WAL support.
    pub async fn open(path: &Path) -> Result<Self, OpenError> {
        let path = path.to_path_buf();
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| OpenError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        let database = |err: sqlx::Error| OpenError::Database {
            path: path.clone(),
            reason: err.to_string(),
        };

        let writer_options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(WRITER_ACQUIRE_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await
            .map_err(database)?;

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&writer)
            .await
            .map_err(database)?;
        if !mode.eq_ignore_ascii_case("wal") {
            writer.close().await;
            return Err(OpenError::NoWal { path, mode });
        }

        let mut tx = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(database)?;
        let created = match schema::ensure(&mut tx).await {
            Ok(created) => created,
            Err(problem) => {
                drop(tx);
                writer.close().await;
                return Err(match problem {
                    SchemaProblem::Database(err) => database(err),
                    SchemaProblem::Foreign(reason) => OpenError::NotAnEventLog { path, reason },
                    SchemaProblem::TooNew(found) => OpenError::UnsupportedSchema {
                        path,
                        found,
                        supported: schema::SCHEMA_VERSION,
                    },
                });
            }
        };
        tx.commit().await.map_err(database)?;

        // The file exists now; readers never create or reconfigure it.
        let reader_options = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("query_only", "ON");
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(0)
            .connect_with(reader_options)
            .await
            .map_err(database)?;

        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(&reader)
            .await
            .map_err(database)?;
        let head = to_u64(head);
        tracing::info!(
            path = %path.display(),
            head,
            created,
            "event log ready"
        );
        let (appends, requests) = mpsc::channel(APPEND_QUEUE);
        let inner = Arc::new(Inner {
            path,
            writer,
            reader,
            head: watch::Sender::new(head),
            queue_wakers: Mutex::default(),
            notifier: LocalNotifier::new(),
            appends,
        });
        tokio::spawn(committer(Arc::downgrade(&inner), requests));
        Ok(Self { inner })
    }

    /// The file this log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// An in-process notifier shared by all clones of this log (the embedded counterpart of
    /// [`JetStreamLog::notifier`](crate::JetStreamLog::notifier)).
    pub fn notifier(&self) -> LocalNotifier {
        self.inner.notifier.clone()
    }

    /// Closes the connections, waiting for writes in progress. Afterwards every operation
    /// on this log and its clones fails; open the file again to continue.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.reader.close().await;
    }
}

impl Inner {
    /// Starts a writing transaction on the single writer connection.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Records that `seq` is committed, waking followers.
    fn publish_head(&self, seq: u64) {
        self.head.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }

    /// The wake-up channel of work queue `name`.
    fn queue_waker(&self, name: &str) -> watch::Sender<u64> {
        let mut wakers = self
            .queue_wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        wakers
            .entry(name.to_owned())
            .or_insert_with(|| watch::Sender::new(0))
            .clone()
    }

    /// Checks and inserts a group of single appends in one transaction, in order; the answer
    /// of each (inserted, duplicate or conflict), or the failure of the whole transaction.
    async fn append_group(
        &self,
        group: &[AppendRequest],
    ) -> Result<Vec<Result<Appended, AppendError>>, sqlx::Error> {
        let appended_at = now_ms();
        let mut tx = self.begin_write().await?;
        let mut results = Vec::with_capacity(group.len());
        let mut last = None;
        for request in group {
            // Dedupe first: a landed retry is a duplicate whatever it expected.
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM events WHERE msg_id = $1")
                    .bind(&request.msg_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(seq) = existing {
                results.push(Ok(Appended {
                    seq: to_u64(seq),
                    duplicate: true,
                }));
                continue;
            }
            if let Expected::Seq(expected) = request.expected {
                let actual: i64 = sqlx::query_scalar(
                    "SELECT coalesce(max(seq), 0) FROM events WHERE subject = $1",
                )
                .bind(&request.subject)
                .fetch_one(&mut *tx)
                .await?;
                let actual = to_u64(actual);
                if actual != expected {
                    results.push(Err(AppendError::Conflict { expected, actual }));
                    continue;
                }
            }
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO events (subject, msg_id, payload, appended_at) \
                 VALUES ($1, $2, $3, $4) RETURNING seq",
            )
            .bind(&request.subject)
            .bind(&request.msg_id)
            .bind(request.payload.as_ref())
            .bind(appended_at)
            .fetch_one(&mut *tx)
            .await?;
            let seq = to_u64(seq);
            last = Some(seq);
            results.push(Ok(Appended {
                seq,
                duplicate: false,
            }));
        }
        if last.is_some() {
            tx.commit().await?;
        } else {
            // Nothing written (duplicates and conflicts only): no commit to sync.
            tx.rollback().await?;
        }
        if let Some(seq) = last {
            self.publish_head(seq);
        }
        Ok(results)
    }

    /// Appends `events` unconditionally in one transaction: per event, the message id lookup
    /// (which also sees the events inserted earlier in this transaction) and the insert.
    async fn append_chunk(&self, events: &[NewEvent]) -> Result<Vec<Appended>, AppendError> {
        let fail = |err| AppendError::from(storage_error("append_batch", err));
        let appended_at = now_ms();
        let mut tx = self.begin_write().await.map_err(fail)?;
        let mut results = Vec::with_capacity(events.len());
        let mut last = None;
        for event in events {
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM events WHERE msg_id = $1")
                    .bind(&event.msg_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?;
            if let Some(seq) = existing {
                results.push(Appended {
                    seq: to_u64(seq),
                    duplicate: true,
                });
                continue;
            }
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO events (subject, msg_id, payload, appended_at) \
                 VALUES ($1, $2, $3, $4) RETURNING seq",
            )
            .bind(&event.subject)
            .bind(&event.msg_id)
            .bind(event.payload.as_ref())
            .bind(appended_at)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
            let seq = to_u64(seq);
            last = Some(seq);
            results.push(Appended {
                seq,
                duplicate: false,
            });
        }
        tx.commit().await.map_err(fail)?;
        if let Some(seq) = last {
            self.publish_head(seq);
        }
        Ok(results)
    }
}

/// Bounded retries of transient append failures, with the same message ids and an
/// exponential backoff.
struct AppendRetry {
    started: Instant,
    backoff: Duration,
}

impl AppendRetry {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            backoff: APPEND_INITIAL_BACKOFF,
        }
    }

    /// Whether to try again after `err` (an append to `subject`, or of a batch): if it is
    /// transient and the budget is not spent, waits for the backoff and returns true.
    async fn again(&mut self, subject: &str, err: &AppendError) -> bool {
        if !err.is_transient() || self.started.elapsed() >= APPEND_RETRY_BUDGET {
            return false;
        }
        tracing::warn!(
            subject = %subject,
            error = %err,
            "append failed transiently; retrying with the same message id"
        );
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(APPEND_MAX_BACKOFF);
        true
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(
        &self,
        subject: &str,
        expected: Expected,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Appended, AppendError> {
        validate_subject("subject", subject, false).map_err(AppendError::Invalid)?;
        validate_msg_id(msg_id).map_err(AppendError::Invalid)?;
        // The request is handed to the committer, which writes it whether or not this caller
        // is still waiting (a dropped caller cannot interrupt a commit).
        let mut retry = AppendRetry::new();
        loop {
            let (reply, answer) = oneshot::channel();
            let request = AppendRequest {
                subject: subject.to_owned(),
                expected,
                msg_id: msg_id.to_owned(),
                payload: payload.clone(),
                reply,
            };
            let result = match self.inner.appends.send(request).await {
                Ok(()) => answer.await.unwrap_or_else(|_| Err(committer_gone())),
                Err(_) => Err(committer_gone()),
            };
            match result {
                Err(err) if retry.again(subject, &err).await => {}
                result => return result,
            }
        }
    }

    async fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        validate_batch(&events)?;
        let inner = self.inner.clone();
        detached(async move {
            let mut appended = Vec::with_capacity(events.len());
            for chunk in events.chunks(BATCH_CHUNK) {
                let mut retry = AppendRetry::new();
                loop {
                    match inner.append_chunk(chunk).await {
                        Ok(results) => {
                            appended.extend(results);
                            break;
                        }
                        Err(err) if retry.again("(batch)", &err).await => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            Ok(appended)
        })
        .await
    }

    async fn last_seq(&self, subject: &str) -> Result<u64, LogError> {
        validate_subject("subject", subject, false).map_err(LogError::Invalid)?;
        let seq: i64 =
            sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events WHERE subject = $1")
                .bind(subject)
                .fetch_one(&self.inner.reader)
                .await
                .map_err(|err| storage_error("last_seq", err))?;
        Ok(to_u64(seq))
    }

    async fn read_subject(
        &self,
        subject: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LogError> {
        validate_subject("subject", subject, false).map_err(LogError::Invalid)?;
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, subject, msg_id, payload FROM events \
             WHERE subject = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(subject)
        .bind(to_i64(after_seq))
        .fetch_all(&self.inner.reader)
        .await
        .map_err(|err| storage_error("read_subject", err))?;
        Ok(rows.into_iter().map(event_from_row).collect())
    }

    async fn head(&self) -> Result<u64, LogError> {
        let seq: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(&self.inner.reader)
            .await
            .map_err(|err| storage_error("head", err))?;
        Ok(to_u64(seq))
    }

    async fn read_from(&self, from_seq: u64) -> Result<EventStream, LogError> {
        if self.inner.reader.is_closed() {
            return Err(LogError::other(format!(
                "the event log {} is closed",
                self.inner.path.display()
            )));
        }
        Ok(reader::read_from(self.inner.clone(), from_seq))
    }

    async fn work_queue(
        &self,
        name: &str,
        config: WorkQueueConfig,
    ) -> Result<Box<dyn WorkQueue>, LogError> {
        let queue = work_queue::SqliteWorkQueue::open(self.inner.clone(), name, config).await?;
        Ok(Box::new(queue))
    }
}

/// `(seq, subject, msg_id, payload)` as selected from `events`.
type EventRow = (i64, String, String, Vec<u8>);

fn event_from_row((seq, subject, msg_id, payload): EventRow) -> StoredEvent {
    StoredEvent {
        seq: to_u64(seq),
        subject,
        msg_id: Some(msg_id),
        payload: Bytes::from(payload),
    }
}

/// A SQLite failure with what was being done, boxed as the source of `LogError::Other`.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {cause}")]
struct StorageError {
    context: &'static str,
    cause: sqlx::Error,
}

/// Maps a SQLite failure: lock contention, a full disk, I/O and pool timeouts are transient
/// (`Unavailable`), anything else is `Other`.
fn storage_error(context: &'static str, cause: sqlx::Error) -> LogError {
    let transient = match &cause {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            // Primary result codes: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL.
            .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 13)),
        _ => false,
    };
    if transient {
        LogError::Unavailable(format!("{context}: {cause}"))
    } else {
        LogError::Other(BoxError::from(StorageError { context, cause }))
    }
}

/// The committer task: takes the appends waiting for it (up to [`GROUP_MAX`]), writes them in
/// one transaction and answers each. Ends when the log is dropped.
async fn committer(inner: Weak<Inner>, mut requests: mpsc::Receiver<AppendRequest>) {
    let mut group = Vec::with_capacity(GROUP_MAX);
    while requests.recv_many(&mut group, GROUP_MAX).await > 0 {
        let Some(log) = inner.upgrade() else { break };
        match log.append_group(&group).await {
            Ok(results) => {
                for (request, result) in group.drain(..).zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(err) => {
                // The transaction rolled back: nothing of the group was written. Every
                // appender gets the failure (transient ones are retried with the same id).
                let err = storage_error("append", err);
                let transient = err.is_transient();
                let message = err.to_string();
                for request in group.drain(..) {
                    let err = if transient {
                        AppendError::Unavailable(message.clone())
                    } else {
                        AppendError::Other(BoxError::from(message.clone()))
                    };
                    let _ = request.reply.send(Err(err));
                }
            }
        }
    }
}

/// What an appender gets when the committer is gone (the log was closed or dropped).
fn committer_gone() -> AppendError {
    AppendError::Other(BoxError::from("the event log's committer has stopped"))
}

/// Runs a write in its own task and waits for it, so dropping the caller cannot interrupt
/// the write between its commit and the notifications that follow it.
async fn detached<T, E>(work: impl Future<Output = Result<T, E>> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<LogError> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(err) => match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_cancelled) => Err(E::from(LogError::Unavailable(
                "the runtime is shutting down".to_owned(),
            ))),
        },
    }
}

/// Milliseconds since the Unix epoch (the time base of delivery deadlines).
fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A sequence as SQLite stores it (sequences never exceed `i64::MAX`; larger values clamp).
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A sequence or count read from SQLite (never negative).
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open_temp() -> (tempfile::TempDir, SqliteLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = SqliteLog::open(&dir.path().join("events.db"))
            .await
            .expect("open");
        (dir, log)
    }

    #[tokio::test]
    async fn writer_and_reader_settings() {
        let (_dir, log) = open_temp().await;
        let writer = &log.inner.writer;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(writer)
            .await
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(writer)
            .await
            .expect("synchronous");
        assert_eq!(synchronous, 2, "synchronous=FULL");
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(writer)
            .await
            .expect("busy_timeout");
        assert_eq!(busy, 5000);
        assert_eq!(writer.options().get_max_connections(), 1, "one writer");

        let reader = &log.inner.reader;
        let query_only: i64 = sqlx::query_scalar("PRAGMA query_only")
            .fetch_one(reader)
            .await
            .expect("query_only");
        assert_eq!(query_only, 1);
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(reader)
            .await
            .expect("user_version");
        assert_eq!(version, schema::SCHEMA_VERSION);
        let app_id: i64 = sqlx::query_scalar("PRAGMA application_id")
            .fetch_one(reader)
            .await
            .expect("application_id");
        assert_eq!(app_id, schema::APPLICATION_ID);
        assert!(
            sqlx::query("CREATE TABLE x (y INTEGER)")
                .execute(reader)
                .await
                .is_err(),
            "read connections must not write"
        );
    }

    #[tokio::test]
    async fn events_are_append_only() {
        let (_dir, log) = open_temp().await;
        log.append("crate.a", Expected::Any, "m1", Bytes::from_static(b"x"))
            .await
            .expect("append");
        for statement in [
            "DELETE FROM events",
            "UPDATE events SET payload = x'00'",
            "UPDATE events SET seq = 7",
        ] {
            let err = sqlx::query(statement)
                .execute(&log.inner.writer)
                .await
                .expect_err(statement);
            assert!(
                err.to_string().contains("append-only"),
                "{statement}: {err}"
            );
        }
        assert_eq!(log.head().await.expect("head"), 1);
    }

    /// Two logs on one file are two writer connections: with `BEGIN IMMEDIATE` their
    /// read-then-write transactions wait for each other instead of failing with `database is
    /// locked` (EVENTING.md §5). Calls `Inner::append` directly, below the retry loop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_do_not_lock_each_other_out() {
        let (dir, first) = open_temp().await;
        let second = SqliteLog::open(&dir.path().join("events.db"))
            .await
            .expect("second open");
        let mut tasks = Vec::new();
        for (instance, log) in [first.clone(), second.clone()].into_iter().enumerate() {
            for task in 0..4 {
                let log = log.clone();
                tasks.push(tokio::spawn(async move {
                    let subject = format!("crate.w{instance}x{task}");
                    let mut expected = Expected::Seq(0);
                    for i in 0..50 {
                        let msg_id = format!("w-{instance}-{task}-{i}");
                        let appended = log
                            .append(&subject, expected, &msg_id, Bytes::from_static(b"w"))
                            .await
                            .unwrap_or_else(|err| panic!("{msg_id}: {err}"));
                        expected = Expected::Seq(appended.seq);
                    }
                }));
            }
        }
        for task in tasks {
            task.await.expect("appender");
        }
        assert_eq!(first.head().await.expect("head"), 400);
    }

    /// Appends that meet in one group commit keep their one-by-one semantics: each sees the
    /// ones before it (one winner per expected sequence, duplicates of ids written in the same
    /// group), and a conflict does not undo the others.
    #[tokio::test]
    async fn group_commit_keeps_per_append_semantics() {
        let (_dir, log) = open_temp().await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                // 100 subjects, two appends each expecting an empty subject, of which 50 pairs
                // share a message id.
                let subject = format!("crate.g{}", i / 2);
                let msg_id = if i % 4 < 2 {
                    format!("same-{}", i / 2)
                } else {
                    format!("own-{i}")
                };
                log.append(
                    &subject,
                    Expected::Seq(0),
                    &msg_id,
                    Bytes::from(vec![b'x'; i]),
                )
                .await
            }));
        }
        let mut inserted = 0;
        let mut duplicates = 0;
        let mut conflicts = 0;
        for task in tasks {
            match task.await.expect("appender") {
                Ok(appended) if appended.duplicate => duplicates += 1,
                Ok(_) => inserted += 1,
                Err(AppendError::Conflict { expected: 0, .. }) => conflicts += 1,
                Err(err) => panic!("unexpected append error: {err}"),
            }
        }
        assert_eq!(inserted, 100, "one winner per subject");
        assert_eq!(
            duplicates, 50,
            "the second append of a shared id is a duplicate"
        );
        assert_eq!(conflicts, 50, "the second append with its own id conflicts");
        assert_eq!(log.head().await.expect("head"), 100);
        for g in 0..100 {
            let events = log
                .read_subject(&format!("crate.g{g}"), 0)
                .await
                .expect("read");
            assert_eq!(events.len(), 1, "subject g{g}");
        }
    }

    /// A dropped appender does not cancel its append: the committer writes it anyway.
    #[tokio::test]
    async fn a_dropped_appender_still_lands() {
        let (_dir, log) = open_temp().await;
        let append = log.append(
            "crate.dropped",
            Expected::Seq(0),
            "dropped-1",
            Bytes::from_static(b"d"),
        );
        // Poll once (the request reaches the committer's queue), then drop it.
        let _ = futures_poll_once(append).await;
        for _ in 0..100 {
            if log.head().await.expect("head") == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the dropped append never landed");
    }

    /// Polls a future once and drops it.
    async fn futures_poll_once<F: Future>(future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match future.as_mut().poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[test]
    fn storage_errors_are_classified() {
        assert!(storage_error("x", sqlx::Error::PoolTimedOut).is_transient());
        assert!(!storage_error("x", sqlx::Error::PoolClosed).is_transient());
        let message = storage_error("reading", sqlx::Error::RowNotFound).to_string();
        assert!(message.contains("reading"), "{message}");
    }
}
