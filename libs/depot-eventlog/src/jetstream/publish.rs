//! Appending with optimistic concurrency, idempotency and bounded retries.
//!
//! Every append carries `Nats-Msg-Id`; `Expected::Seq(n)` adds
//! `Nats-Expected-Last-Subject-Sequence: n`. Two server behaviours are normalised here
//! (EVENTING.md §0.3, §1.3):
//!
//! - A retry of an append that already landed returns `duplicate: true` on a replicated
//!   stream, but `WrongLastSequence` on an R1 stream (the subject check runs before dedupe).
//!   So on `WrongLastSequence` we look for our message id among the subject's events after
//!   the expected sequence (leader reads) and report a duplicate if it is there.
//! - Leader elections and in-flight writes on clustered streams answer with no responders,
//!   timeouts, 10164 or 10158: retried with the same message id, with backoff, bounded.
//!
//! A batch is published in windows of [`BATCH_WINDOW`] messages: every publish of the window
//! is sent, then the acks are awaited in order. A publish that failed transiently (or was not
//! sent because an earlier send failed) is then appended on its own, with the retries of a
//! single append; one that failed otherwise fails the batch.

use std::error::Error as _;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::RawMessageErrorKind;
use bytes::Bytes;
use tokio::time::Instant;

use super::{APPEND_RETRY_BUDGET, JetStreamLog};
use crate::error::{AppendError, LogError};
use crate::event_log::{Appended, Expected, NewEvent, validate_batch};
use crate::names::{validate_msg_id, validate_subject};

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(1000);

/// Publishes of a batch sent before their acks are awaited. Each unacknowledged publish
/// holds one of the publish context's 5,000 in-flight permits (sending waits for a free one),
/// so the windows in flight at once are limited to [`BATCH_WINDOWS_IN_FLIGHT`].
const BATCH_WINDOW: usize = 1_000;
/// Batch windows in flight at once per connection: 4 × 1,000 permits, which leaves 1,000 for
/// single appends, so concurrent batches can never wait on each other's permits forever.
pub(super) const BATCH_WINDOWS_IN_FLIGHT: usize = 4;

/// JetStream error codes that mean "try again" (EVENTING.md §0.4).
const TRANSIENT_CODES: [ErrorCode; 3] = [
    // wrong last sequence (constant): another write on the subject is in flight (clustered)
    ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT,
    // duplicate message id is in process
    ErrorCode(10158),
    // JetStream system temporarily unavailable
    ErrorCode::CLUSTER_NOT_AVAILABLE,
];

/// How a failed publish is handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// 10071: the subject's last sequence is not the expected one.
    WrongLastSequence,
    /// Retry with the same message id.
    Transient,
    /// Give up.
    Fatal,
}

fn classify(err: &PublishError) -> Failure {
    match err.kind() {
        PublishErrorKind::WrongLastSequence => Failure::WrongLastSequence,
        PublishErrorKind::TimedOut
        | PublishErrorKind::StreamNotFound
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => Failure::Transient,
        PublishErrorKind::Other => {
            let code = err
                .source()
                .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
                .map(|error| error.error_code());
            match code {
                Some(code) if TRANSIENT_CODES.contains(&code) => Failure::Transient,
                Some(_) => Failure::Fatal,
                // Not a server answer: the request could not be handed to the connection.
                None => Failure::Transient,
            }
        }
        PublishErrorKind::WrongLastMessageId | PublishErrorKind::MaxPayloadExceeded => {
            Failure::Fatal
        }
    }
}

pub(super) async fn append(
    log: &JetStreamLog,
    subject: &str,
    expected: Expected,
    msg_id: &str,
    payload: Bytes,
) -> Result<Appended, AppendError> {
    validate_subject("subject", subject, false).map_err(AppendError::Invalid)?;
    validate_msg_id(msg_id).map_err(AppendError::Invalid)?;
    let full = log.full_subject(subject);
    let deadline = Instant::now() + APPEND_RETRY_BUDGET;
    let mut backoff = INITIAL_BACKOFF;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(msg_id)
            .expected_stream(&log.stream_name);
        if let Expected::Seq(seq) = expected {
            message = message.expected_last_subject_sequence(seq);
        }
        let outcome = match log.publish_js.send_publish(full.clone(), message).await {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        let err = match outcome {
            Ok(ack) => {
                return Ok(Appended {
                    seq: ack.sequence,
                    duplicate: ack.duplicate,
                });
            }
            Err(err) => err,
        };
        match classify(&err) {
            Failure::WrongLastSequence => {
                let Expected::Seq(expected_seq) = expected else {
                    return Err(AppendError::Other(Box::new(err)));
                };
                return resolve_wrong_last_sequence(log, &full, expected_seq, msg_id).await;
            }
            Failure::Fatal => return Err(AppendError::Other(Box::new(err))),
            Failure::Transient => {
                if Instant::now() + backoff >= deadline {
                    tracing::warn!(
                        event.subject = %subject,
                        event.msg_id = %msg_id,
                        attempts = attempt,
                        error = %err,
                        "append failed after retries"
                    );
                    return Err(AppendError::Unavailable(format!(
                        "append to {subject} failed after {attempt} attempts: {err}"
                    )));
                }
                tracing::debug!(
                    event.subject = %subject,
                    event.msg_id = %msg_id,
                    attempt,
                    error = %err,
                    "transient append failure; retrying with the same message id"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

pub(super) async fn append_batch(
    log: &JetStreamLog,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>, AppendError> {
    validate_batch(&events)?;
    let mut appended = Vec::with_capacity(events.len());
    for window in events.chunks(BATCH_WINDOW) {
        let permit = log
            .batch_windows
            .acquire()
            .await
            .map_err(|err| AppendError::Other(Box::new(err)))?;
        let acks = publish_window(log, window).await;
        drop(permit);
        appended.extend(settle_window(log, window, acks).await?);
    }
    Ok(appended)
}

/// Sends the events of `window` without waiting, then awaits their acks in order. Returns
/// one outcome per event sent; sending stops at the first failed send (the rest of the
/// window is left to [`settle_window`]), so as few events as possible overtake a failed one.
async fn publish_window(
    log: &JetStreamLog,
    window: &[NewEvent],
) -> Vec<Result<PublishAck, PublishError>> {
    let mut sent = Vec::with_capacity(window.len());
    for event in window {
        let message = PublishMessage::build()
            .payload(event.payload.clone())
            .message_id(&event.msg_id)
            .expected_stream(&log.stream_name);
        let publish = log
            .publish_js
            .send_publish(log.full_subject(&event.subject), message)
            .await;
        let stop = publish.is_err();
        sent.push(publish);
        if stop {
            break;
        }
    }
    let mut acks = Vec::with_capacity(sent.len());
    for publish in sent {
        acks.push(match publish {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        });
    }
    acks
}

/// Turns the acks of a window into results, appending the events that failed transiently or
/// were not sent one by one, in batch order, with the retries of [`append`].
async fn settle_window(
    log: &JetStreamLog,
    window: &[NewEvent],
    acks: Vec<Result<PublishAck, PublishError>>,
) -> Result<Vec<Appended>, AppendError> {
    let mut appended = Vec::with_capacity(window.len());
    let mut highest = 0;
    let outcomes = acks
        .into_iter()
        .map(Some)
        .chain(std::iter::repeat_with(|| None));
    for (event, outcome) in window.iter().zip(outcomes) {
        let result = match outcome {
            Some(Ok(ack)) => Appended {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            },
            Some(Err(err)) if classify(&err) != Failure::Transient => {
                return Err(AppendError::Other(Box::new(err)));
            }
            Some(Err(err)) => {
                tracing::debug!(
                    event.subject = %event.subject,
                    event.msg_id = %event.msg_id,
                    error = %err,
                    "transient failure in a batch; appending the event again on its own"
                );
                resend(log, event).await?
            }
            None => resend(log, event).await?,
        };
        if !result.duplicate {
            if result.seq < highest {
                // Possible only when a retried publish had not landed while later ones of
                // its window had (a leader change or a connection loss in between).
                tracing::warn!(
                    event.subject = %event.subject,
                    event.msg_id = %event.msg_id,
                    seq = result.seq,
                    "a retried batch event landed after later events of its batch"
                );
            }
            highest = highest.max(result.seq);
        }
        appended.push(result);
    }
    Ok(appended)
}

/// Appends one event of a batch on its own (unconditionally, same message id).
async fn resend(log: &JetStreamLog, event: &NewEvent) -> Result<Appended, AppendError> {
    append(
        log,
        &event.subject,
        Expected::Any,
        &event.msg_id,
        event.payload.clone(),
    )
    .await
}

/// After a `WrongLastSequence`: did our message (same id) land after `expected`, or is this a
/// real conflict? Uses leader reads, because a direct get may hit a lagging replica.
async fn resolve_wrong_last_sequence(
    log: &JetStreamLog,
    full_subject: &str,
    expected: u64,
    msg_id: &str,
) -> Result<Appended, AppendError> {
    let mut next = expected.saturating_add(1);
    let mut last_seen = None;
    loop {
        match log
            .stream
            .get_first_raw_message_by_subject(full_subject, next)
            .await
        {
            Ok(message) => {
                let seq = message.sequence;
                let id = message
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|value| value.as_str());
                if id == Some(msg_id) {
                    return Ok(Appended {
                        seq,
                        duplicate: true,
                    });
                }
                if seq < next {
                    return Err(AppendError::Other(
                        format!("leader get for {full_subject} from {next} returned seq {seq}")
                            .into(),
                    ));
                }
                last_seen = Some(seq);
                next = seq.saturating_add(1);
            }
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => break,
            Err(err) => return Err(raw_get_error(err).into()),
        }
    }
    let actual = match last_seen {
        Some(seq) => seq,
        // Nothing after `expected`: the subject's last event is at or before it (or the
        // expected sequence belongs to another subject).
        None => match log
            .stream
            .get_last_raw_message_by_subject(full_subject)
            .await
        {
            Ok(message) => message.sequence,
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => 0,
            Err(err) => return Err(raw_get_error(err).into()),
        },
    };
    Err(AppendError::Conflict { expected, actual })
}

fn raw_get_error(err: async_nats::jetstream::stream::RawMessageError) -> LogError {
    match err.kind() {
        RawMessageErrorKind::InvalidSubject => LogError::Invalid(err.to_string()),
        RawMessageErrorKind::JetStream(_) => LogError::other(err),
        _ => LogError::Unavailable(format!("leader get: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(
            classify(&PublishError::new(PublishErrorKind::WrongLastSequence)),
            Failure::WrongLastSequence
        );
        assert_eq!(
            classify(&PublishError::new(PublishErrorKind::TimedOut)),
            Failure::Transient
        );
        assert_eq!(
            classify(&PublishError::new(PublishErrorKind::StreamNotFound)),
            Failure::Transient
        );
        assert_eq!(
            classify(&PublishError::new(PublishErrorKind::MaxPayloadExceeded)),
            Failure::Fatal
        );
        assert_eq!(
            classify(&PublishError::new(PublishErrorKind::WrongLastMessageId)),
            Failure::Fatal
        );
    }
}
