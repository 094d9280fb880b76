//! `read_from`: an ordered pull consumer that resumes itself after any interruption.
//!
//! The async-nats ordered consumer already recreates itself after sequence gaps, missed
//! heartbeats and leader changes. Errors it still surfaces, the end of its stream, or a stall
//! (nothing delivered for [`STALL_CHECK`] while the stream has more events) make us drop it and
//! create a fresh one from the next expected sequence, with backoff, so the resulting stream
//! never ends, never repeats or skips an event, and resumes within seconds of a leader change.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, pull};
use async_nats::jetstream::stream;
use futures::StreamExt;

use super::{JetStreamLog, event_from_parts};
use crate::error::LogError;
use crate::event_log::{EventStream, StoredEvent};

/// After this many consecutive failures an `Err` item is yielded (and again every as many).
const REPORT_EVERY: u32 = 10;
/// With nothing delivered for this long, the reader asks the stream whether it holds events
/// past the next expected one; if so, the ordered consumer is stuck (its pull request died
/// with a consumer or stream leader, and async-nats notices only after missed heartbeats,
/// 10 s and more) and is recreated. Costs one stream-info request per idle period.
const STALL_CHECK: Duration = Duration::from_secs(2);

struct Reader {
    stream: stream::Stream,
    filter: String,
    events_prefix: String,
    /// The sequence of the next event to yield.
    next_seq: u64,
    messages: Option<pull::Ordered>,
    failures: u32,
}

pub(super) async fn read_from(log: &JetStreamLog, from_seq: u64) -> Result<EventStream, LogError> {
    let mut reader = Reader {
        stream: log.stream.clone(),
        filter: format!("{}>", log.events_prefix),
        events_prefix: log.events_prefix.clone(),
        next_seq: from_seq.max(1),
        messages: None,
        failures: 0,
    };
    // Fail early if the consumer cannot be created at all.
    reader.messages = Some(open(&reader.stream, &reader.filter, reader.next_seq).await?);
    let events = futures::stream::unfold(reader, |mut reader| async move {
        let item = reader.next_event().await;
        Some((item, reader))
    });
    Ok(Box::pin(events))
}

/// Creates an ordered consumer delivering from `next_seq` on.
async fn open(
    stream: &stream::Stream,
    filter: &str,
    next_seq: u64,
) -> Result<pull::Ordered, LogError> {
    let deliver_policy = if next_seq <= 1 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: next_seq,
        }
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(|err| LogError::Unavailable(format!("creating an ordered consumer: {err}")))?;
    consumer
        .messages()
        .await
        .map_err(|err| LogError::Unavailable(format!("starting an ordered consumer: {err}")))
}

/// Whether the stream's last event is at or past `next_seq` (unknown, e.g. while the stream
/// elects a leader: no).
async fn is_behind(stream: &stream::Stream, next_seq: u64) -> bool {
    match stream.get_info().await {
        Ok(info) => info.state.last_sequence >= next_seq,
        Err(err) => {
            tracing::debug!(error = %err, "stream info");
            false
        }
    }
}

impl Reader {
    async fn fail(&mut self, reason: String) -> Option<LogError> {
        self.messages = None;
        self.failures += 1;
        tracing::warn!(
            stream.position = self.next_seq,
            failures = self.failures,
            error = %reason,
            "event stream interrupted; resuming"
        );
        let exponent = self.failures.min(7);
        tokio::time::sleep(Duration::from_millis(50 * (1 << exponent))).await;
        self.failures
            .is_multiple_of(REPORT_EVERY)
            .then(|| LogError::Unavailable(reason))
    }

    async fn next_event(&mut self) -> Result<StoredEvent, LogError> {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                match open(&self.stream, &self.filter, self.next_seq).await {
                    Ok(messages) => self.messages = Some(messages),
                    Err(err) => {
                        if let Some(err) = self.fail(err.to_string()).await {
                            return Err(err);
                        }
                    }
                }
                continue;
            };
            let next = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
                Ok(next) => next,
                Err(_idle) => {
                    if is_behind(&self.stream, self.next_seq).await {
                        tracing::info!(
                            stream.position = self.next_seq,
                            "the log holds events the ordered consumer does not deliver; recreating it"
                        );
                        self.messages = None;
                    }
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    if let Some(err) = self.fail(err.to_string()).await {
                        return Err(err);
                    }
                    continue;
                }
                None => {
                    if let Some(err) = self.fail("ordered consumer ended".to_owned()).await {
                        return Err(err);
                    }
                    continue;
                }
            };
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(err) => {
                    if let Some(err) = self.fail(format!("bad delivery metadata: {err}")).await {
                        return Err(err);
                    }
                    continue;
                }
            };
            if seq < self.next_seq {
                // Already yielded before a resume.
                continue;
            }
            let event = event_from_parts(
                &self.events_prefix,
                seq,
                &message.subject,
                message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID)),
                message.payload.clone(),
            );
            self.next_seq = seq + 1;
            self.failures = 0;
            match event {
                Some(event) => return Ok(event),
                None => {
                    tracing::warn!(
                        stream.position = seq,
                        subject = %message.subject,
                        "skipping a message outside the events subjects"
                    );
                }
            }
        }
    }
}
