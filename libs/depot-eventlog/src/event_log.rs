//! The backend-neutral event-log API: [`EventLog`], [`WorkQueue`], [`Delivery`], [`Notifier`].

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

use crate::error::{AppendError, LogError};
use crate::names::{validate_msg_id, validate_subject};

/// One event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the whole log (the JetStream stream sequence), starting at 1, gap-free
    /// and strictly increasing.
    pub seq: u64,
    /// The aggregate subject, e.g. `crate.serde` (without any backend prefix).
    pub subject: String,
    /// The message id the event was appended with, if the backend kept it.
    pub msg_id: Option<String>,
    /// The payload exactly as appended.
    pub payload: Bytes,
}

/// One event of an [`EventLog::append_batch`]: appended to `subject` without an expected
/// sequence ([`Expected::Any`]), deduplicated by `msg_id` like [`EventLog::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The aggregate subject, e.g. `crate.serde`.
    pub subject: String,
    /// The idempotency key, unique across the whole log.
    pub msg_id: String,
    /// The payload to store.
    pub payload: Bytes,
}

impl NewEvent {
    /// An event for `subject` with message id `msg_id`.
    pub fn new(subject: impl Into<String>, msg_id: impl Into<String>, payload: Bytes) -> Self {
        Self {
            subject: subject.into(),
            msg_id: msg_id.into(),
            payload,
        }
    }

    /// Checks the subject and the message id, as [`EventLog::append`] does.
    pub(crate) fn validate(&self) -> Result<(), AppendError> {
        validate_subject("subject", &self.subject, false).map_err(AppendError::Invalid)?;
        validate_msg_id(&self.msg_id).map_err(AppendError::Invalid)
    }
}

/// Checks every event of a batch before anything is appended.
pub(crate) fn validate_batch(events: &[NewEvent]) -> Result<(), AppendError> {
    events.iter().try_for_each(NewEvent::validate)
}

/// The optimistic-concurrency condition of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expected {
    /// No condition: append whatever the subject holds.
    Any,
    /// The subject's last event must be at this log sequence. `Seq(0)` means the subject must
    /// have no events yet. This is a log (stream) sequence, not a per-subject counter.
    Seq(u64),
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Appended {
    /// The log sequence of the event.
    pub seq: u64,
    /// True if an event with the same message id was already stored: nothing new was written
    /// and `seq` is the sequence of the earlier event.
    pub duplicate: bool,
}

/// A never-ending stream of events in log order. `Err` items report transient trouble (the
/// implementation keeps retrying and the stream goes on after them); it never yields `None`.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StoredEvent, LogError>> + Send>>;

/// An append-only, totally ordered event log with per-subject optimistic concurrency.
///
/// Implementations: [`JetStreamLog`](crate::JetStreamLog) (production) and
/// [`SqliteLog`](crate::SqliteLog) (embedded). Both pass the shared `conformance` suite.
#[async_trait]
pub trait EventLog: Send + Sync + fmt::Debug {
    /// Appends one event to `subject`.
    ///
    /// `msg_id` is the idempotency key, unique across the whole log: appending an id that is
    /// already stored returns `Appended { seq: <first seq>, duplicate: true }` instead of
    /// storing a second event (the payload is not compared), also when `expected` has become
    /// stale because of that first append. The JetStream log remembers ids for its duplicate
    /// window (a retry with `Expected::Seq` is recognised for longer, by reading the subject),
    /// so callers also keep their commands idempotent at the domain level. Transient failures
    /// are retried internally (bounded) with the same id before
    /// [`AppendError::Unavailable`] is returned.
    async fn append(
        &self,
        subject: &str,
        expected: Expected,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Appended, AppendError>;

    /// Appends many events, in order, each as [`append`](Self::append) with
    /// [`Expected::Any`] would: result `i` belongs to `events[i]`.
    ///
    /// Message ids deduplicate per event, against the log and within the batch: an id that is
    /// already stored, or that occurs earlier in the batch, yields `duplicate: true` with the
    /// first event's sequence. Events are stored in batch order, so events of one subject keep
    /// their relative order (the JetStream log's one exception: an event whose publish failed
    /// transiently can land after later events of its window, see
    /// [`JetStreamLog`](crate::JetStreamLog)). Every subject and id is checked first: an
    /// [`AppendError::Invalid`] batch stores nothing. Transient failures are retried per event
    /// (same id, bounded) as in `append`.
    ///
    /// The batch is not atomic: after an error a prefix of it (on JetStream, possibly some
    /// later events too) may be stored. Retrying the whole batch with the same ids is
    /// idempotent within the backend's dedupe horizon.
    ///
    /// The default implementation appends one event after another; backends override it to
    /// amortise their per-append cost (one transaction per chunk, pipelined publishes).
    async fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        validate_batch(&events)?;
        let mut appended = Vec::with_capacity(events.len());
        for event in events {
            appended.push(
                self.append(&event.subject, Expected::Any, &event.msg_id, event.payload)
                    .await?,
            );
        }
        Ok(appended)
    }

    /// The sequence of the last event on `subject`, 0 if it has none.
    async fn last_seq(&self, subject: &str) -> Result<u64, LogError>;

    /// All events of `subject` with `seq > after_seq`, in log order.
    async fn read_subject(
        &self,
        subject: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LogError>;

    /// The sequence of the last event in the whole log, 0 if the log is empty.
    async fn head(&self) -> Result<u64, LogError>;

    /// All events of all subjects with `seq >= from_seq`, in log order; the stream never ends
    /// and waits for new events once it has caught up. `from_seq` 0 and 1 both mean "from the
    /// beginning".
    async fn read_from(&self, from_seq: u64) -> Result<EventStream, LogError>;

    /// Opens (creating it if needed) the durable work queue `name` over all subjects.
    ///
    /// Every event is delivered to one of the queue's instances until it is acked, terminated
    /// or has been delivered `max_deliver` times. Instances opened with the same name, in this
    /// or other processes, share the work. The queue's position survives restarts.
    async fn work_queue(
        &self,
        name: &str,
        config: WorkQueueConfig,
    ) -> Result<Box<dyn WorkQueue>, LogError>;
}

/// Redelivery policy of a [`WorkQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueueConfig {
    /// How long a delivery may stay unacknowledged before it is redelivered.
    /// [`Delivery::in_progress`] restarts the timer. Ignored when `backoff` is non-empty.
    pub ack_wait: Duration,
    /// Maximum number of deliveries of one event, including the first; 0 means unlimited.
    /// When a delivery reaches it, [`Delivery::is_last_attempt`] is set: dead-letter then.
    pub max_deliver: u32,
    /// Redelivery delays after ack timeouts: entry `i` is the ack wait of delivery `i + 1`
    /// (the last entry repeats). May be empty. Must be shorter than `max_deliver` when
    /// `max_deliver` is set.
    pub backoff: Vec<Duration>,
}

impl WorkQueueConfig {
    /// Checks the config for the queue `name`: `backoff` must be shorter than a set
    /// `max_deliver`, and `ack_wait` positive when there is no backoff.
    pub(crate) fn validate(&self, name: &str) -> Result<(), LogError> {
        if self.max_deliver > 0 && self.backoff.len() >= self.max_deliver as usize {
            return Err(LogError::Invalid(format!(
                "work queue {name}: backoff has {} entries, it must be shorter than max_deliver {}",
                self.backoff.len(),
                self.max_deliver
            )));
        }
        if self.ack_wait.is_zero() && self.backoff.is_empty() {
            return Err(LogError::Invalid(format!(
                "work queue {name}: ack_wait must be positive"
            )));
        }
        if self.backoff.iter().any(Duration::is_zero) {
            return Err(LogError::Invalid(format!(
                "work queue {name}: backoff entries must be positive"
            )));
        }
        Ok(())
    }

    /// The ack wait of delivery `attempt` (1-based): `backoff[attempt - 1]` (the last entry
    /// repeating) if there is a backoff, else `ack_wait`.
    pub(crate) fn ack_wait_of(&self, attempt: u64) -> Duration {
        match self.backoff.last() {
            None => self.ack_wait,
            Some(last) => {
                let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
                self.backoff.get(index).copied().unwrap_or(*last)
            }
        }
    }
}

impl Default for WorkQueueConfig {
    /// 30 s ack wait, 5 deliveries, no backoff.
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: Vec::new(),
        }
    }
}

/// A durable competing consumer over the whole log. See [`EventLog::work_queue`].
#[async_trait]
pub trait WorkQueue: Send + fmt::Debug {
    /// Waits for the next delivery. Transient backend trouble is handled internally (logged
    /// and retried); an `Err` means it has persisted for a while, and calling `next` again
    /// keeps trying.
    ///
    /// Cancel-safe: dropping the future (e.g. in `select!` or a timeout) loses no event; at
    /// worst an event is redelivered after the ack wait.
    async fn next(&mut self) -> Result<Delivery, LogError>;

    /// Events not yet delivered plus deliveries not yet acknowledged, for lag metrics.
    async fn pending(&mut self) -> Result<u64, LogError>;
}

/// How a backend settles a [`Delivery`]. Implemented by each backend; callers use the
/// methods on [`Delivery`] instead.
#[async_trait]
pub trait DeliveryAcker: Send + Sync + fmt::Debug {
    /// Marks the delivery as done and waits until the backend has recorded it.
    async fn ack(&self) -> Result<(), LogError>;
    /// Asks for redelivery after `delay` (at once if zero).
    async fn nak(&self, delay: Duration) -> Result<(), LogError>;
    /// Stops all further deliveries of this event without marking it done.
    async fn term(&self) -> Result<(), LogError>;
    /// Restarts the ack-wait timer because work is still going on.
    async fn in_progress(&self) -> Result<(), LogError>;
}

/// One delivery of an event from a [`WorkQueue`]. Settle it with exactly one of
/// [`ack`](Self::ack), [`nak`](Self::nak) or [`term`](Self::term); an unsettled delivery is
/// redelivered after the ack wait.
#[derive(Debug)]
pub struct Delivery {
    /// The delivered event.
    pub event: StoredEvent,
    /// Which delivery of this event this is, starting at 1.
    pub attempt: u64,
    /// True when no further delivery will follow if this one is not acked (the attempt
    /// reached `max_deliver`): the consumer should dead-letter the event now.
    pub is_last_attempt: bool,
    acker: Box<dyn DeliveryAcker>,
}

impl Delivery {
    /// Builds a delivery; used by backends.
    pub fn new(
        event: StoredEvent,
        attempt: u64,
        is_last_attempt: bool,
        acker: Box<dyn DeliveryAcker>,
    ) -> Self {
        Self {
            event,
            attempt,
            is_last_attempt,
            acker,
        }
    }

    /// Marks the event as processed and waits for the backend's confirmation, so a
    /// successful return means it will not be redelivered.
    pub async fn ack(self) -> Result<(), LogError> {
        self.acker.ack().await
    }

    /// Asks for redelivery after `delay` (at once if zero). Counts as a delivery attempt.
    pub async fn nak(self, delay: Duration) -> Result<(), LogError> {
        self.acker.nak(delay).await
    }

    /// Gives up on the event: it is never delivered again (it stays in the log).
    pub async fn term(self) -> Result<(), LogError> {
        self.acker.term().await
    }

    /// Signals that work is still in progress, restarting the ack-wait timer. Call it about
    /// every half ack wait during long work.
    pub async fn in_progress(&self) -> Result<(), LogError> {
        self.acker.in_progress().await
    }
}

/// Best-effort notifications between processes (e.g. cache invalidation across API
/// replicas). Notifications are not stored: subscribers that are not connected miss them.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Publishes `payload` on `topic` (dot-separated tokens, no wildcards).
    async fn notify(&self, topic: &str, payload: Bytes) -> Result<(), LogError>;

    /// Subscribes to `topic`. The subscription is active when this returns; the stream ends
    /// only when the backend shuts down.
    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, Bytes>, LogError>;
}
