//! `read_from`: batched catch-up queries, then waiting on the head watch.
//!
//! The reader asks for up to [`BATCH`] events at or after its position, yields them, and
//! repeats. When a query returns nothing it waits until the head watch passes its position
//! (bumped after every append of this log) or the fallback poll interval elapses. Query
//! failures are yielded as transient `Err` items after a backoff; the stream goes on from
//! the same position, so it never repeats or skips an event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EventRow, FALLBACK_POLL, Inner, event_from_row, storage_error, to_i64};
use crate::error::LogError;
use crate::event_log::{EventStream, StoredEvent};

/// Events fetched per catch-up query.
const BATCH: i64 = 1000;

struct Reader {
    inner: Arc<Inner>,
    /// The sequence of the next event to yield.
    next_seq: u64,
    /// Fetched, not yet yielded.
    buffer: VecDeque<StoredEvent>,
    head: watch::Receiver<u64>,
    /// Consecutive failed queries.
    failures: u32,
}

pub(super) fn read_from(inner: Arc<Inner>, from_seq: u64) -> EventStream {
    let reader = Reader {
        head: inner.head.subscribe(),
        inner,
        next_seq: from_seq.max(1),
        buffer: VecDeque::new(),
        failures: 0,
    };
    Box::pin(futures::stream::unfold(reader, |mut reader| async move {
        let item = reader.next_event().await;
        Some((item, reader))
    }))
}

impl Reader {
    async fn next_event(&mut self) -> Result<StoredEvent, LogError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next_seq = event.seq + 1;
                return Ok(event);
            }
            match self.fetch().await {
                Ok(batch) if batch.is_empty() => {
                    self.failures = 0;
                    self.wait().await;
                }
                Ok(batch) => {
                    self.failures = 0;
                    self.buffer = batch.into_iter().map(event_from_row).collect();
                }
                Err(err) => {
                    self.failures += 1;
                    tracing::warn!(
                        stream.position = self.next_seq,
                        failures = self.failures,
                        error = %err,
                        "reading the event log failed; retrying"
                    );
                    let exponent = self.failures.min(6);
                    tokio::time::sleep(Duration::from_millis(50 * (1 << exponent))).await;
                    return Err(match err {
                        LogError::Unavailable(message) => LogError::Unavailable(message),
                        other => LogError::Unavailable(other.to_string()),
                    });
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<EventRow>, LogError> {
        sqlx::query_as(
            "SELECT seq, subject, msg_id, payload FROM events \
             WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(self.next_seq))
        .bind(BATCH)
        .fetch_all(&self.inner.reader)
        .await
        .map_err(|err| storage_error("read_from", err))
    }

    /// Waits until an event at `next_seq` may exist.
    async fn wait(&mut self) {
        let next = self.next_seq;
        let closed = tokio::select! {
            changed = self.head.wait_for(|head| *head >= next) => changed.is_err(),
            () = tokio::time::sleep(FALLBACK_POLL) => false,
        };
        if closed {
            // Cannot happen while `inner` (which owns the sender) is alive.
            tokio::time::sleep(FALLBACK_POLL).await;
        }
    }
}
