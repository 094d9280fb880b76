//! The NATS JetStream implementation of the event log.
//!
//! Layout: the aggregate subject `crate.serde` is stored on the NATS subject
//! `{prefix}.events.crate.serde` of one stream capturing `{prefix}.events.>`. Notifications use
//! core NATS subjects `{prefix}.notify.{topic}`, which the stream does not capture.
//!
//! The stream is created on first start with an immutable configuration (file storage, limits
//! retention without any limit, `deny_delete`, `deny_purge`, no rollup, direct gets) and
//! verified on every later start: Depot refuses to run on a stream whose configuration could
//! lose history. See EVENTING.md §0-§2 for the reasoning.

mod notifier;
mod publish;
mod reader;
mod work_queue;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::Context, message::StreamMessage, stream};
use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{AppendError, BoxError, LogError};
use crate::event_log::{
    Appended, EventLog, EventStream, Expected, NewEvent, StoredEvent, WorkQueue, WorkQueueConfig,
};
use crate::names::{validate_name, validate_subject};

pub use notifier::NatsNotifier;

/// Bound on connecting to NATS at startup (all URLs together).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on each JetStream API request (stream info, direct gets, consumer management, acks).
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on waiting for one publish ack; the append retries within [`APPEND_RETRY_BUDGET`].
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Total time an append keeps retrying transient failures before giving up. It covers the
/// election of a new stream leader after the leader of an R3 stream dies (measured 5–7 s with
/// nats-server 2.15 on loopback), so a publish in flight waits for the new leader instead of
/// failing; it stays far below the duplicate window, so a retried append is never stored twice.
const APPEND_RETRY_BUDGET: Duration = Duration::from_secs(15);
/// Ping interval, so a dead connection is noticed within seconds rather than minutes.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// The oldest server release Depot accepts (EVENTING.md, "Server versions").
const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// How to reach and lay out the JetStream event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// NATS server URL(s), comma-separated for a cluster, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Stream name, e.g. `DEPOT`.
    pub stream: String,
    /// Subject prefix, e.g. `depot`: events live on `{prefix}.events.>`, notifications on
    /// `{prefix}.notify.>`.
    pub subject_prefix: String,
    /// Stream replicas when the stream is created: 1 for development, 3 in production.
    pub replicas: usize,
    /// How long the server remembers message ids for deduplication. Must cover the longest
    /// retry horizon of any appender (including work-queue redelivery backoff).
    pub duplicate_window: Duration,
}

impl JetStreamConfig {
    /// A config for `url` with stream `DEPOT`, prefix `depot`, 1 replica and a 2-minute
    /// duplicate window.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "DEPOT".to_owned(),
            subject_prefix: "depot".to_owned(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }

    fn validate(&self) -> Result<(), ConnectError> {
        let invalid = ConnectError::InvalidConfig;
        if self.url.split(',').all(|url| url.trim().is_empty()) {
            return Err(invalid("the NATS url must not be empty".to_owned()));
        }
        validate_name("stream name", &self.stream).map_err(invalid)?;
        validate_subject("subject prefix", &self.subject_prefix, false).map_err(invalid)?;
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid(format!(
                "replicas must be between 1 and 5, got {}",
                self.replicas
            )));
        }
        if self.duplicate_window.is_zero() {
            return Err(invalid("duplicate_window must be positive".to_owned()));
        }
        Ok(())
    }
}

/// Why [`JetStreamLog::connect`] failed. Every variant is fatal at startup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration itself is unusable.
    #[error("invalid JetStream configuration: {0}")]
    InvalidConfig(String),
    /// No connection within the connect timeout.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Unreachable {
        /// The configured URL(s).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server is older than 2.11.
    #[error(
        "Depot requires nats-server >= {}.{}, but the server at {url} reports version {found:?}",
        MIN_SERVER_VERSION.0,
        MIN_SERVER_VERSION.1
    )]
    UnsupportedServer {
        /// The configured URL(s).
        url: String,
        /// The version the server reported.
        found: String,
    },
    /// JetStream is not enabled on the server.
    #[error("JetStream is not enabled on the NATS server at {url} (start nats-server with -js)")]
    JetStreamDisabled {
        /// The configured URL(s).
        url: String,
    },
    /// The stream exists with a configuration that could lose or hide history.
    #[error(
        "stream {stream} exists with a configuration Depot refuses to use: {problems}; \
         it cannot be fixed in place (deny_delete/deny_purge cannot be changed), \
         so move the data to a correctly configured stream"
    )]
    StreamDrift {
        /// Stream name.
        stream: String,
        /// Every mismatch found, separated by `; `.
        problems: String,
    },
    /// Creating or inspecting the stream failed.
    #[error("cannot create or open stream {stream}: {source}")]
    Stream {
        /// Stream name.
        stream: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// The JetStream event log. Cheap to clone; clones share one connection.
///
/// Behaviour worth knowing (observed on nats-server 2.15.1):
///
/// - `last_seq` and `read_subject` use direct gets, which any replica of an R3 stream may
///   answer, possibly before it has applied the latest write. A stale read is harmless for
///   the append path (the expected-sequence check rejects it and the caller reloads).
/// - An append that returns [`AppendError::Unavailable`] may still land later: publishes
///   issued while disconnected are buffered by the client and sent after reconnecting.
///   Retrying with the same message id reports it as a duplicate.
/// - Appends retry transient failures for about 5 s (plus one in-flight ack wait of at most
///   2 s), so a call returns within about 7 s.
/// - [`EventLog::append_batch`] pipelines: 1,000 publishes are sent before their acks are
///   awaited. Events keep batch order unless a publish fails transiently and, retried, lands
///   after later events of its window that were already stored (a leader change or a
///   connection loss mid-window); that is logged.
/// - After a hard server crash, recently acknowledged work-queue deliveries can be
///   delivered again (consumer state is written behind); handlers must be idempotent.
///   Single-node durability of the events themselves needs `jetstream { sync_interval:
///   always }` on the server, or R3.
#[derive(Clone)]
pub struct JetStreamLog {
    client: async_nats::Client,
    /// Context for publishes, with a shorter ack timeout so appends can retry.
    publish_js: Context,
    stream: stream::Stream,
    stream_name: String,
    prefix: String,
    /// `{prefix}.events.`
    events_prefix: String,
    /// Batch windows allowed in flight at once (see `publish::BATCH_WINDOWS_IN_FLIGHT`).
    batch_windows: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("stream", &self.stream_name)
            .field("subject_prefix", &self.prefix)
            .field("connection", &self.client.connection_state())
            .finish_non_exhaustive()
    }
}

impl JetStreamLog {
    /// Connects to NATS, checks the server version, and creates or verifies the stream.
    ///
    /// Fails fast (within about 5 s) when the server is unreachable, older
    /// than 2.11, lacks JetStream, or holds a stream with a drifted configuration. Once
    /// connected, the client reconnects forever on connection loss.
    pub async fn connect(config: &JetStreamConfig) -> Result<Self, ConnectError> {
        config.validate()?;
        let url = config.url.clone();
        let addrs = config
            .url
            .split(',')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(|addr| {
                addr.parse::<async_nats::ServerAddr>().map_err(|err| {
                    ConnectError::InvalidConfig(format!("invalid NATS url {addr:?}: {err}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let options = async_nats::ConnectOptions::new()
            .name("depot")
            .connection_timeout(CONNECT_TIMEOUT)
            .ping_interval(PING_INTERVAL)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("disconnected from NATS; reconnecting")
                    }
                    async_nats::Event::LameDuckMode => {
                        tracing::warn!("NATS server entered lame duck mode")
                    }
                    other => tracing::warn!(event = %other, "NATS client event"),
                }
            });
        let client = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect(addrs)).await {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => {
                return Err(ConnectError::Unreachable {
                    url,
                    reason: err.to_string(),
                });
            }
            Err(_elapsed) => {
                return Err(ConnectError::Unreachable {
                    url,
                    reason: format!("no connection within {CONNECT_TIMEOUT:?}"),
                });
            }
        };

        let info = client.server_info();
        check_server_version(&info.version).map_err(|found| ConnectError::UnsupportedServer {
            url: url.clone(),
            found,
        })?;

        let js = jetstream::ContextBuilder::new()
            .timeout(API_TIMEOUT)
            .build(client.clone());
        let publish_js = jetstream::ContextBuilder::new()
            .timeout(PUBLISH_ACK_TIMEOUT)
            .build(client.clone());

        let events_prefix = format!("{}.events.", config.subject_prefix);
        let wanted = stream_config(config);
        let stream = match js.get_or_create_stream(wanted).await {
            Ok(stream) => stream,
            Err(err) if !info.jetstream => {
                tracing::debug!(error = %err, "stream creation failed on a server without JetStream");
                return Err(ConnectError::JetStreamDisabled { url });
            }
            Err(err) => {
                return Err(ConnectError::Stream {
                    stream: config.stream.clone(),
                    source: Box::new(err),
                });
            }
        };
        let actual = &stream.cached_info().config;
        let problems = config_drift(config, actual);
        if !problems.is_empty() {
            return Err(ConnectError::StreamDrift {
                stream: config.stream.clone(),
                problems: problems.join("; "),
            });
        }
        if actual.num_replicas != config.replicas {
            tracing::warn!(
                stream.name = %config.stream,
                configured = config.replicas,
                actual = actual.num_replicas,
                "stream replica count differs from the configuration; leaving it unchanged"
            );
        }
        if actual.duplicate_window != config.duplicate_window {
            tracing::warn!(
                stream.name = %config.stream,
                configured_ms = config.duplicate_window.as_millis() as u64,
                actual_ms = actual.duplicate_window.as_millis() as u64,
                "stream duplicate window differs from the configuration; leaving it unchanged"
            );
        }
        tracing::info!(
            stream.name = %config.stream,
            server.version = %info.version,
            replicas = actual.num_replicas,
            "event log ready"
        );

        Ok(Self {
            client,
            publish_js,
            stream,
            stream_name: config.stream.clone(),
            prefix: config.subject_prefix.clone(),
            events_prefix,
            batch_windows: Arc::new(tokio::sync::Semaphore::new(
                publish::BATCH_WINDOWS_IN_FLIGHT,
            )),
        })
    }

    /// A notifier sharing this log's connection, publishing on `{prefix}.notify.{topic}`.
    pub fn notifier(&self) -> NatsNotifier {
        NatsNotifier::new(self.client.clone(), &self.prefix)
    }

    /// The stream name.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// The subject prefix: events live on `{prefix}.events.>`.
    pub fn subject_prefix(&self) -> &str {
        &self.prefix
    }

    /// The NATS subject of an aggregate subject.
    fn full_subject(&self, subject: &str) -> String {
        format!("{}{}", self.events_prefix, subject)
    }

    /// Converts a stored message to an event; `None` if it is not on an events subject.
    fn stored_event(&self, message: StreamMessage) -> Option<StoredEvent> {
        event_from_parts(
            &self.events_prefix,
            message.sequence,
            &message.subject,
            message.headers.get(async_nats::header::NATS_MESSAGE_ID),
            message.payload,
        )
    }
}

/// Builds a [`StoredEvent`] from the parts of a NATS message.
fn event_from_parts(
    events_prefix: &str,
    seq: u64,
    nats_subject: &str,
    msg_id: Option<&async_nats::HeaderValue>,
    payload: Bytes,
) -> Option<StoredEvent> {
    let subject = nats_subject.strip_prefix(events_prefix)?;
    Some(StoredEvent {
        seq,
        subject: subject.to_owned(),
        msg_id: msg_id.map(|value| value.as_str().to_owned()),
        payload,
    })
}

/// The immutable stream configuration of EVENTING.md §0.1/§1.2.
fn stream_config(config: &JetStreamConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some("Depot event log: append-only source of truth".to_owned()),
        subjects: vec![format!("{}.events.>", config.subject_prefix)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::ZERO,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_message_size: -1,
        discard: stream::DiscardPolicy::New,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        deny_delete: true,
        deny_purge: true,
        allow_rollup: false,
        allow_direct: true,
        ..Default::default()
    }
}

/// Every way an existing stream's configuration differs from what Depot needs.
fn config_drift(config: &JetStreamConfig, actual: &stream::Config) -> Vec<String> {
    let mut problems = Vec::new();
    let capture = format!("{}.events.>", config.subject_prefix);
    if !actual.subjects.contains(&capture) {
        problems.push(format!(
            "subjects are {:?}, expected them to include {capture:?}",
            actual.subjects
        ));
    }
    if actual.storage != stream::StorageType::File {
        problems.push(format!("storage is {:?}, expected File", actual.storage));
    }
    if actual.retention != stream::RetentionPolicy::Limits {
        problems.push(format!(
            "retention is {:?}, expected Limits",
            actual.retention
        ));
    }
    if !actual.max_age.is_zero() {
        problems.push(format!("max_age is {:?}, expected none", actual.max_age));
    }
    for (name, value) in [
        ("max_msgs", actual.max_messages),
        ("max_bytes", actual.max_bytes),
        ("max_msgs_per_subject", actual.max_messages_per_subject),
    ] {
        if value > 0 {
            problems.push(format!("{name} is {value}, expected unlimited (-1)"));
        }
    }
    if !actual.deny_delete {
        problems.push("deny_delete is false, expected true".to_owned());
    }
    if !actual.deny_purge {
        problems.push("deny_purge is false, expected true".to_owned());
    }
    if actual.allow_rollup {
        problems.push("allow_rollup is true, expected false".to_owned());
    }
    if !actual.allow_direct {
        problems.push("allow_direct is false, expected true".to_owned());
    }
    if actual.sealed {
        problems.push("the stream is sealed (read-only)".to_owned());
    }
    if actual.mirror.is_some() {
        problems.push("the stream is a mirror (read-only)".to_owned());
    }
    problems
}

/// Checks that `version` is at least [`MIN_SERVER_VERSION`]; `Err(version)` otherwise.
fn check_server_version(version: &str) -> Result<(), String> {
    let parsed = parse_version(version);
    match parsed {
        Some((major, minor)) if (major, minor) >= MIN_SERVER_VERSION => Ok(()),
        _ => Err(version.to_owned()),
    }
}

/// Parses `major.minor` from versions like `2.15.1`, `v2.11.0-RC.1` or `2.12.0-beta`.
fn parse_version(version: &str) -> Option<(u64, u64)> {
    let version = version.trim().trim_start_matches('v');
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_part = parts.next()?;
    let digits: String = minor_part
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let minor = digits.parse().ok()?;
    Some((major, minor))
}

#[async_trait]
impl EventLog for JetStreamLog {
    async fn append(
        &self,
        subject: &str,
        expected: Expected,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Appended, AppendError> {
        publish::append(self, subject, expected, msg_id, payload).await
    }

    async fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        publish::append_batch(self, events).await
    }

    async fn last_seq(&self, subject: &str) -> Result<u64, LogError> {
        validate_subject("subject", subject, false).map_err(LogError::Invalid)?;
        match self
            .stream
            .direct_get_last_for_subject(self.full_subject(subject))
            .await
        {
            Ok(message) => Ok(message.sequence),
            Err(err) if err.kind() == stream::DirectGetErrorKind::NotFound => Ok(0),
            Err(err) => Err(direct_get_error(err)),
        }
    }

    async fn read_subject(
        &self,
        subject: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LogError> {
        validate_subject("subject", subject, false).map_err(LogError::Invalid)?;
        let full = self.full_subject(subject);
        let mut events = Vec::new();
        let Some(mut next) = after_seq.checked_add(1) else {
            return Ok(events);
        };
        loop {
            match self
                .stream
                .direct_get_next_for_subject(full.as_str(), Some(next))
                .await
            {
                Ok(message) => {
                    let seq = message.sequence;
                    if seq < next {
                        return Err(LogError::other(format!(
                            "direct get for {full} from seq {next} returned older seq {seq}"
                        )));
                    }
                    if let Some(event) = self.stored_event(message) {
                        events.push(event);
                    }
                    match seq.checked_add(1) {
                        Some(following) => next = following,
                        None => return Ok(events),
                    }
                }
                Err(err) if err.kind() == stream::DirectGetErrorKind::NotFound => {
                    return Ok(events);
                }
                Err(err) => return Err(direct_get_error(err)),
            }
        }
    }

    async fn head(&self) -> Result<u64, LogError> {
        let info = self.stream.get_info().await.map_err(|err| {
            LogError::Unavailable(format!("stream {} info: {err}", self.stream_name))
        })?;
        Ok(info.state.last_sequence)
    }

    async fn read_from(&self, from_seq: u64) -> Result<EventStream, LogError> {
        reader::read_from(self, from_seq).await
    }

    async fn work_queue(
        &self,
        name: &str,
        config: WorkQueueConfig,
    ) -> Result<Box<dyn WorkQueue>, LogError> {
        let queue = work_queue::JetStreamWorkQueue::open(self, name, config).await?;
        Ok(Box::new(queue))
    }
}

/// Maps a direct-get failure to a [`LogError`].
fn direct_get_error(err: stream::DirectGetError) -> LogError {
    match err.kind() {
        stream::DirectGetErrorKind::InvalidSubject => LogError::Invalid(err.to_string()),
        stream::DirectGetErrorKind::TimedOut | stream::DirectGetErrorKind::Request => {
            LogError::Unavailable(format!("direct get: {err}"))
        }
        stream::DirectGetErrorKind::ErrorResponse(status, _)
            if status == async_nats::StatusCode::NO_RESPONDERS
                || status == async_nats::StatusCode::TIMEOUT =>
        {
            LogError::Unavailable(format!("direct get: {err}"))
        }
        _ => LogError::other(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("v2.11.0-RC.1"), Some((2, 11)));
        assert_eq!(parse_version("2.12-beta"), Some((2, 12)));
        assert_eq!(parse_version("garbage"), None);
        assert!(check_server_version("2.15.1").is_ok());
        assert!(check_server_version("2.11.0").is_ok());
        assert!(check_server_version("3.0.0").is_ok());
        assert_eq!(check_server_version("2.9.10"), Err("2.9.10".to_owned()));
        assert_eq!(check_server_version("2.10.22"), Err("2.10.22".to_owned()));
        assert!(check_server_version("").is_err());
    }

    #[test]
    fn unsupported_server_message() {
        let err = ConnectError::UnsupportedServer {
            url: "nats://127.0.0.1:4222".to_owned(),
            found: "2.9.10".to_owned(),
        };
        let message = err.to_string();
        assert!(
            message.contains("requires nats-server >= 2.11"),
            "{message}"
        );
        assert!(message.contains("2.9.10"), "{message}");
    }

    #[test]
    fn wanted_config_has_no_drift() {
        let config = JetStreamConfig::new("nats://127.0.0.1:4222");
        let wanted = stream_config(&config);
        assert!(config_drift(&config, &wanted).is_empty());
        let drifted = stream::Config {
            deny_purge: false,
            max_age: Duration::from_secs(60),
            ..wanted
        };
        let problems = config_drift(&config, &drifted);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn config_validation() {
        assert!(JetStreamConfig::new("nats://x").validate().is_ok());
        let bad = [
            JetStreamConfig::new(" , "),
            JetStreamConfig {
                stream: "A.B".to_owned(),
                ..JetStreamConfig::new("nats://x")
            },
            JetStreamConfig {
                subject_prefix: "a.>".to_owned(),
                ..JetStreamConfig::new("nats://x")
            },
            JetStreamConfig {
                replicas: 0,
                ..JetStreamConfig::new("nats://x")
            },
            JetStreamConfig {
                duplicate_window: Duration::ZERO,
                ..JetStreamConfig::new("nats://x")
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
