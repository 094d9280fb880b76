//! Durable work queues in SQLite tables.
//!
//! A queue is a row in `work_queues` (its cursor: the last sequence handed out for the first
//! time) plus its rows in `work_queue_deliveries` (events handed out and not yet settled, with
//! the number of deliveries so far and when they may be delivered again). Both live in the
//! log's file, so a queue survives restarts.
//!
//! `next()` claims in one `BEGIN IMMEDIATE` transaction on the single writer connection:
//! first a delivery whose ack deadline passed or whose nak delay elapsed (and that has
//! deliveries left), else the first event after the cursor. The claim moves the delivery's
//! visibility past its ack wait before committing, so competing callers (instances of the
//! queue in this or another process) can never get the same event at the same time. When
//! there is nothing to claim, `next()` waits for the next append (head watch), a nak on this
//! queue (its waker), the earliest pending deadline, or the fallback poll, whichever is first.
//!
//! The claim runs in its own task and `next()` keeps its handle: if `next()` is cancelled
//! (e.g. by a timeout), the next call picks up the claimed delivery instead of losing it.
//!
//! The redelivery policy (ack wait, backoff, `max_deliver`) is the one of the instance
//! handing out or settling a delivery; open all instances of a queue with the same config.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    EventRow, FALLBACK_POLL, Inner, detached, event_from_row, now_ms, storage_error, to_i64, to_u64,
};
use crate::error::LogError;
use crate::event_log::{Delivery, DeliveryAcker, StoredEvent, WorkQueue, WorkQueueConfig};
use crate::names::validate_name;

/// After this many consecutive failed claims `next()` returns an error (and again every as
/// many).
const REPORT_EVERY: u32 = 10;

/// The outcome of one claim transaction.
enum Claim {
    /// An event to hand out.
    Delivered { event: StoredEvent, attempt: u64 },
    /// Nothing to hand out now. `cursor` is the queue's position; `wake_at` the earliest
    /// time (Unix ms) a pending delivery becomes due, if any.
    Idle { cursor: u64, wake_at: Option<i64> },
}

/// A [`WorkQueue`] on the SQLite log.
pub(super) struct SqliteWorkQueue {
    inner: Arc<Inner>,
    name: Arc<str>,
    config: Arc<WorkQueueConfig>,
    head: watch::Receiver<u64>,
    waker: watch::Receiver<u64>,
    waker_tx: watch::Sender<u64>,
    /// A claim in progress, kept across cancelled `next()` calls.
    claim: Option<JoinHandle<Result<Claim, LogError>>>,
    /// Consecutive failed claims.
    failures: u32,
}

impl fmt::Debug for SqliteWorkQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteWorkQueue")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SqliteWorkQueue {
    pub(super) async fn open(
        inner: Arc<Inner>,
        name: &str,
        config: WorkQueueConfig,
    ) -> Result<Self, LogError> {
        validate_name("work queue name", name).map_err(LogError::Invalid)?;
        config.validate(name)?;
        let creator = inner.clone();
        let queue = name.to_owned();
        detached(async move {
            let fail = |err| storage_error("opening a work queue", err);
            let mut tx = creator.begin_write().await.map_err(fail)?;
            sqlx::query(
                "INSERT INTO work_queues (name, cursor) VALUES ($1, 0) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&queue)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            tx.commit().await.map_err(fail)
        })
        .await?;
        let waker_tx = inner.queue_waker(name);
        Ok(Self {
            head: inner.head.subscribe(),
            waker: waker_tx.subscribe(),
            waker_tx,
            inner,
            name: Arc::from(name),
            config: Arc::new(config),
            claim: None,
            failures: 0,
        })
    }

    /// Waits until something may have become claimable.
    async fn wait(&mut self, cursor: u64, wake_at: Option<i64>) {
        let sleep = wake_at.map_or(FALLBACK_POLL, |at| {
            // +1 ms: never wake just before the deadline (stored in whole milliseconds).
            let until = to_u64(at.saturating_sub(now_ms())).saturating_add(1);
            Duration::from_millis(until).min(FALLBACK_POLL)
        });
        let closed = tokio::select! {
            changed = self.head.wait_for(|head| *head > cursor) => changed.is_err(),
            changed = self.waker.changed() => changed.is_err(),
            () = tokio::time::sleep(sleep) => false,
        };
        if closed {
            // Cannot happen while `inner` (which owns both senders) is alive.
            tokio::time::sleep(sleep).await;
        }
    }
}

#[async_trait]
impl WorkQueue for SqliteWorkQueue {
    async fn next(&mut self) -> Result<Delivery, LogError> {
        loop {
            let handle = self.claim.get_or_insert_with(|| {
                // Mark earlier wake-ups as seen before looking, so a nak committed after
                // this point wakes the wait below.
                self.waker.borrow_and_update();
                let inner = self.inner.clone();
                let name = self.name.clone();
                let config = self.config.clone();
                tokio::spawn(async move { claim(&inner, &name, &config).await })
            });
            let joined = handle.await;
            self.claim = None;
            let claimed = match joined {
                Ok(claimed) => claimed,
                Err(err) => match err.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(_cancelled) => Err(LogError::Unavailable(
                        "the runtime is shutting down".to_owned(),
                    )),
                },
            };
            match claimed {
                Ok(Claim::Delivered { event, attempt }) => {
                    self.failures = 0;
                    let max_deliver = u64::from(self.config.max_deliver);
                    let is_last_attempt = max_deliver > 0 && attempt >= max_deliver;
                    let acker = SqliteAcker {
                        inner: self.inner.clone(),
                        queue: self.name.clone(),
                        seq: event.seq,
                        attempt,
                        config: self.config.clone(),
                        waker: self.waker_tx.clone(),
                    };
                    return Ok(Delivery::new(
                        event,
                        attempt,
                        is_last_attempt,
                        Box::new(acker),
                    ));
                }
                Ok(Claim::Idle { cursor, wake_at }) => {
                    self.failures = 0;
                    self.wait(cursor, wake_at).await;
                }
                Err(err) => {
                    self.failures += 1;
                    tracing::warn!(
                        consumer.name = %self.name,
                        failures = self.failures,
                        error = %err,
                        "work queue claim failed; retrying"
                    );
                    let exponent = self.failures.min(6);
                    tokio::time::sleep(Duration::from_millis(50 * (1 << exponent))).await;
                    if self.failures.is_multiple_of(REPORT_EVERY) {
                        return Err(err);
                    }
                }
            }
        }
    }

    async fn pending(&mut self) -> Result<u64, LogError> {
        // Undelivered events (gap-free sequences: head - cursor) plus unsettled deliveries
        // that can still be redelivered or are within their last ack wait.
        let count: i64 = sqlx::query_scalar(
            "SELECT max((SELECT coalesce(max(seq), 0) FROM events) \
                        - coalesce((SELECT cursor FROM work_queues WHERE name = $1), 0), 0) \
                  + (SELECT count(*) FROM work_queue_deliveries \
                     WHERE queue = $1 AND NOT ($2 > 0 AND attempts >= $2 AND visible_at <= $3))",
        )
        .bind(&*self.name)
        .bind(i64::from(self.config.max_deliver))
        .bind(now_ms())
        .fetch_one(&self.inner.reader)
        .await
        .map_err(|err| storage_error("work queue pending", err))?;
        Ok(to_u64(count))
    }
}

/// `now + wait` in Unix ms.
fn deadline(now: i64, wait: Duration) -> i64 {
    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

/// One claim transaction: a due redelivery, else the next event after the cursor.
async fn claim(inner: &Inner, queue: &str, config: &WorkQueueConfig) -> Result<Claim, LogError> {
    let fail = |err| storage_error("work queue claim", err);
    let now = now_ms();
    let max_deliver = i64::from(config.max_deliver);
    let mut tx = inner.begin_write().await.map_err(fail)?;
    if max_deliver > 0 {
        // Deliveries that used their last attempt and whose ack wait is over: dropped, like
        // JetStream drops a message that reached max_deliver.
        sqlx::query(
            "DELETE FROM work_queue_deliveries \
             WHERE queue = $1 AND attempts >= $2 AND visible_at <= $3",
        )
        .bind(queue)
        .bind(max_deliver)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    }
    let due: Option<(i64, i64)> = sqlx::query_as(
        "SELECT seq, attempts FROM work_queue_deliveries \
         WHERE queue = $1 AND visible_at <= $2 AND ($3 = 0 OR attempts < $3) \
         ORDER BY seq LIMIT 1",
    )
    .bind(queue)
    .bind(now)
    .bind(max_deliver)
    .fetch_optional(&mut *tx)
    .await
    .map_err(fail)?;

    let (seq, attempt) = if let Some((seq, attempts)) = due {
        let attempt = to_u64(attempts) + 1;
        sqlx::query(
            "UPDATE work_queue_deliveries SET attempts = $3, visible_at = $4 \
             WHERE queue = $1 AND seq = $2",
        )
        .bind(queue)
        .bind(seq)
        .bind(to_i64(attempt))
        .bind(deadline(now, config.ack_wait_of(attempt)))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        (seq, attempt)
    } else {
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT cursor FROM work_queues WHERE name = $1")
                .bind(queue)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
        let cursor = cursor.unwrap_or(0);
        let next: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM events WHERE seq > $1 ORDER BY seq LIMIT 1")
                .bind(cursor)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
        let Some(seq) = next else {
            let wake_at: Option<i64> = sqlx::query_scalar(
                "SELECT min(visible_at) FROM work_queue_deliveries \
                 WHERE queue = $1 AND ($2 = 0 OR attempts < $2)",
            )
            .bind(queue)
            .bind(max_deliver)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            return Ok(Claim::Idle {
                cursor: to_u64(cursor),
                wake_at,
            });
        };
        sqlx::query(
            "INSERT INTO work_queues (name, cursor) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor",
        )
        .bind(queue)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        sqlx::query(
            "INSERT INTO work_queue_deliveries (queue, seq, attempts, visible_at) \
             VALUES ($1, $2, 1, $3)",
        )
        .bind(queue)
        .bind(seq)
        .bind(deadline(now, config.ack_wait_of(1)))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        (seq, 1)
    };
    let row: EventRow =
        sqlx::query_as("SELECT seq, subject, msg_id, payload FROM events WHERE seq = $1")
            .bind(seq)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    Ok(Claim::Delivered {
        event: event_from_row(row),
        attempt,
    })
}

/// What settling a delivery does to its row.
#[derive(Debug, Clone, Copy)]
enum Settle {
    /// Ack or term: the event is never delivered again.
    Remove,
    /// Nak: visible again at this time (Unix ms), or dropped if it was the last attempt.
    Retry { visible_at: i64 },
    /// In progress: the ack deadline moves to this time (Unix ms).
    Extend { visible_at: i64 },
}

/// Settles one delivery of a SQLite work queue.
struct SqliteAcker {
    inner: Arc<Inner>,
    queue: Arc<str>,
    seq: u64,
    attempt: u64,
    config: Arc<WorkQueueConfig>,
    waker: watch::Sender<u64>,
}

impl fmt::Debug for SqliteAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteAcker")
            .field("queue", &self.queue)
            .field("seq", &self.seq)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl SqliteAcker {
    /// Applies `settle` in a write transaction (in its own task) and wakes idle instances
    /// after a nak.
    ///
    /// Ack and term apply even if the event has been redelivered since (like JetStream, the
    /// work is done); nak and in-progress only apply to the current delivery.
    async fn settle(&self, settle: Settle) -> Result<(), LogError> {
        let inner = self.inner.clone();
        let queue = self.queue.clone();
        let seq = to_i64(self.seq);
        let attempt = to_i64(self.attempt);
        let max_deliver = i64::from(self.config.max_deliver);
        let waker = self.waker.clone();
        detached(async move {
            let fail = |err| storage_error("settling a work queue delivery", err);
            let mut tx = inner.begin_write().await.map_err(fail)?;
            let statement = match settle {
                Settle::Remove => {
                    sqlx::query("DELETE FROM work_queue_deliveries WHERE queue = $1 AND seq = $2")
                        .bind(&*queue)
                        .bind(seq)
                }
                Settle::Retry { .. } if max_deliver > 0 && attempt >= max_deliver => sqlx::query(
                    "DELETE FROM work_queue_deliveries \
                     WHERE queue = $1 AND seq = $2 AND attempts = $3",
                )
                .bind(&*queue)
                .bind(seq)
                .bind(attempt),
                Settle::Retry { visible_at } | Settle::Extend { visible_at } => sqlx::query(
                    "UPDATE work_queue_deliveries SET visible_at = $4 \
                     WHERE queue = $1 AND seq = $2 AND attempts = $3",
                )
                .bind(&*queue)
                .bind(seq)
                .bind(attempt)
                .bind(visible_at),
            };
            statement.execute(&mut *tx).await.map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            if matches!(settle, Settle::Retry { .. }) {
                waker.send_modify(|generation| *generation = generation.wrapping_add(1));
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DeliveryAcker for SqliteAcker {
    async fn ack(&self) -> Result<(), LogError> {
        self.settle(Settle::Remove).await
    }

    async fn nak(&self, delay: Duration) -> Result<(), LogError> {
        self.settle(Settle::Retry {
            visible_at: deadline(now_ms(), delay),
        })
        .await
    }

    async fn term(&self) -> Result<(), LogError> {
        self.settle(Settle::Remove).await
    }

    async fn in_progress(&self) -> Result<(), LogError> {
        let wait = self.config.ack_wait_of(self.attempt);
        self.settle(Settle::Extend {
            visible_at: deadline(now_ms(), wait),
        })
        .await
    }
}
