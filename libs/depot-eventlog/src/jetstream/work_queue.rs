//! Work queues: durable pull consumers with explicit acks over the whole event log.
//!
//! `next()` reads from the heartbeat-guarded `messages()` stream with one message per pull,
//! so a busy worker never holds a buffer of deliveries whose ack wait is running. Error
//! items are transient (no responders, missed heartbeats during leader changes): logged and
//! skipped. If the stream ends (consumer deleted, request limits changed) it is recreated, and
//! the consumer too if it is gone. A watchdog recreates the stream when nothing arrived for
//! a long time although the server reports undelivered events (EVENTING.md §5).

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, ReplayPolicy, pull};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{AckKind, stream};
use async_trait::async_trait;
use futures::StreamExt;

use super::{JetStreamLog, event_from_parts};
use crate::error::LogError;
use crate::event_log::{Delivery, DeliveryAcker, WorkQueue, WorkQueueConfig};
use crate::names::validate_name;

/// Cap on deliveries in flight (unacked) across all instances of one queue.
const MAX_ACK_PENDING: i64 = 64;
/// Pull request expiry and idle heartbeat of the messages stream.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Watchdog: with nothing delivered for this long, check whether events are waiting; if so,
/// the pull request died (with a consumer leader) and the pull is restarted. Short, because a
/// publisher waits for the verdict; an idle worker pays one consumer-info request per period.
const WATCHDOG: Duration = Duration::from_secs(3);
/// After this many consecutive failures `next()` returns an error.
const REPORT_EVERY: u32 = 10;
/// After this many consecutive error items the messages stream is recreated.
const MAX_STREAM_ERRORS: u32 = 3;

/// A [`WorkQueue`] backed by a durable JetStream pull consumer.
pub(super) struct JetStreamWorkQueue {
    name: String,
    stream: stream::Stream,
    config: pull::Config,
    consumer: consumer::PullConsumer,
    messages: Option<pull::Stream>,
    events_prefix: String,
    max_deliver: u32,
    /// Consecutive failures to (re)start the messages stream.
    failures: u32,
    /// Consecutive error items from the current messages stream.
    stream_errors: u32,
}

impl fmt::Debug for JetStreamWorkQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamWorkQueue")
            .field("name", &self.name)
            .field("max_deliver", &self.max_deliver)
            .finish_non_exhaustive()
    }
}

impl JetStreamWorkQueue {
    pub(super) async fn open(
        log: &JetStreamLog,
        name: &str,
        config: WorkQueueConfig,
    ) -> Result<Self, LogError> {
        validate_name("work queue name", name).map_err(LogError::Invalid)?;
        config.validate(name)?;
        let wanted = pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some("Depot work queue".to_owned()),
            filter_subject: format!("{}>", log.events_prefix),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            max_deliver: if config.max_deliver == 0 {
                -1
            } else {
                i64::from(config.max_deliver)
            },
            backoff: config.backoff.clone(),
            max_ack_pending: MAX_ACK_PENDING,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        };
        let consumer = open_consumer(&log.stream, name, &wanted).await?;
        Ok(Self {
            name: name.to_owned(),
            stream: log.stream.clone(),
            config: wanted,
            consumer,
            messages: None,
            events_prefix: log.events_prefix.clone(),
            max_deliver: config.max_deliver,
            failures: 0,
            stream_errors: 0,
        })
    }

    async fn fail(&mut self, reason: String) -> Option<LogError> {
        self.failures += 1;
        tracing::warn!(
            consumer.name = %self.name,
            failures = self.failures,
            error = %reason,
            "work queue interrupted; retrying"
        );
        let exponent = self.failures.min(6);
        tokio::time::sleep(Duration::from_millis(50 * (1 << exponent))).await;
        self.failures
            .is_multiple_of(REPORT_EVERY)
            .then(|| LogError::Unavailable(reason))
    }

    /// Starts a new messages stream, recreating the consumer if it is gone.
    async fn start(&mut self) -> Result<pull::Stream, String> {
        let started = self
            .consumer
            .stream()
            .max_messages_per_batch(1)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await;
        match started {
            Ok(messages) => Ok(messages),
            Err(err) => {
                // The consumer may have been deleted: get or create it again.
                match open_consumer(&self.stream, &self.name, &self.config).await {
                    Ok(consumer) => self.consumer = consumer,
                    Err(reopen) => {
                        return Err(format!("{err}; reopening the consumer: {reopen}"));
                    }
                }
                Err(err.to_string())
            }
        }
    }

    /// Whether the server reports events waiting for delivery to this queue.
    async fn has_undelivered(&self) -> bool {
        match self.consumer.get_info().await {
            Ok(info) => info.num_pending > 0,
            Err(err) => {
                tracing::debug!(consumer.name = %self.name, error = %err, "consumer info");
                true
            }
        }
    }
}

/// Gets the durable consumer or creates it; brings its redelivery settings up to date.
async fn open_consumer(
    stream: &stream::Stream,
    name: &str,
    wanted: &pull::Config,
) -> Result<consumer::PullConsumer, LogError> {
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(name, wanted.clone())
        .await
        .map_err(|err| LogError::Unavailable(format!("opening work queue {name}: {err}")))?;
    let actual = &consumer.cached_info().config;
    let outdated = actual.max_deliver != wanted.max_deliver
        || actual.backoff != wanted.backoff
        || actual.max_ack_pending != wanted.max_ack_pending
        || (wanted.backoff.is_empty() && actual.ack_wait != wanted.ack_wait);
    if outdated {
        tracing::info!(consumer.name = %name, "updating work queue redelivery settings");
        match stream.update_consumer(wanted.clone()).await {
            Ok(updated) => return Ok(updated),
            Err(err) => {
                tracing::warn!(
                    consumer.name = %name,
                    error = %err,
                    "could not update work queue settings; using the existing ones"
                );
            }
        }
    }
    Ok(consumer)
}

#[async_trait]
impl WorkQueue for JetStreamWorkQueue {
    async fn next(&mut self) -> Result<Delivery, LogError> {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                match self.start().await {
                    Ok(messages) => self.messages = Some(messages),
                    Err(reason) => {
                        if let Some(err) = self.fail(reason).await {
                            return Err(err);
                        }
                    }
                }
                continue;
            };
            let next = match tokio::time::timeout(WATCHDOG, messages.next()).await {
                Ok(next) => next,
                Err(_elapsed) => {
                    if self.has_undelivered().await {
                        tracing::warn!(
                            consumer.name = %self.name,
                            "no delivery for {WATCHDOG:?} although events are pending; restarting the pull"
                        );
                        self.messages = None;
                    }
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    // Transient (no responders, missed heartbeat): the stream goes on, but
                    // several in a row without a message restart it.
                    self.stream_errors += 1;
                    tracing::warn!(
                        consumer.name = %self.name,
                        error = %err,
                        errors_in_a_row = self.stream_errors,
                        "work queue pull error"
                    );
                    if self.stream_errors >= MAX_STREAM_ERRORS {
                        self.messages = None;
                        self.stream_errors = 0;
                        if let Some(err) = self.fail(format!("repeated pull errors: {err}")).await {
                            return Err(err);
                        }
                    }
                    continue;
                }
                None => {
                    self.messages = None;
                    if let Some(err) = self.fail("messages stream ended".to_owned()).await {
                        return Err(err);
                    }
                    continue;
                }
            };
            let (seq, attempt) = match message.info() {
                Ok(info) => (
                    info.stream_sequence,
                    u64::try_from(info.delivered).unwrap_or(1).max(1),
                ),
                Err(err) => {
                    return Err(LogError::other(format!("bad delivery metadata: {err}")));
                }
            };
            let (message, acker) = message.split();
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID));
            let Some(event) = event_from_parts(
                &self.events_prefix,
                seq,
                &message.subject,
                msg_id,
                message.payload.clone(),
            ) else {
                tracing::warn!(consumer.name = %self.name, stream.position = seq, "terminating a delivery outside the events subjects");
                if let Err(err) = acker.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %err, "terminating a foreign delivery");
                }
                continue;
            };
            self.failures = 0;
            self.stream_errors = 0;
            let is_last_attempt = self.max_deliver > 0 && attempt >= u64::from(self.max_deliver);
            return Ok(Delivery::new(
                event,
                attempt,
                is_last_attempt,
                Box::new(JetStreamAcker { acker, seq }),
            ));
        }
    }

    async fn pending(&mut self) -> Result<u64, LogError> {
        let info = self.consumer.get_info().await.map_err(|err| {
            LogError::Unavailable(format!("work queue {} info: {err}", self.name))
        })?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}

/// Settles one JetStream delivery.
struct JetStreamAcker {
    acker: Acker,
    seq: u64,
}

impl fmt::Debug for JetStreamAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamAcker")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl JetStreamAcker {
    fn error(&self, what: &str, err: async_nats::Error) -> LogError {
        LogError::Unavailable(format!("{what} of seq {}: {err}", self.seq))
    }
}

#[async_trait]
impl DeliveryAcker for JetStreamAcker {
    async fn ack(&self) -> Result<(), LogError> {
        self.acker
            .double_ack()
            .await
            .map_err(|err| self.error("ack", err))
    }

    async fn nak(&self, delay: Duration) -> Result<(), LogError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.acker
            .double_ack_with(AckKind::Nak(delay))
            .await
            .map_err(|err| self.error("nak", err))
    }

    async fn term(&self) -> Result<(), LogError> {
        self.acker
            .double_ack_with(AckKind::Term)
            .await
            .map_err(|err| self.error("term", err))
    }

    async fn in_progress(&self) -> Result<(), LogError> {
        self.acker
            .ack_with(AckKind::Progress)
            .await
            .map_err(|err| self.error("progress", err))
    }
}
