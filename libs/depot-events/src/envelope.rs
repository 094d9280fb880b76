//! The envelope around every event and its JSON form.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::payload::Event;

/// The schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// A point in time, UTC, kept with millisecond precision so that it round-trips exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time, truncated to milliseconds.
    pub fn now() -> Timestamp {
        Timestamp::from_unix_millis(
            (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        )
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub fn from_unix_millis(millis: i64) -> Timestamp {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Timestamp(dt)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// RFC 3339 with milliseconds, e.g. `2026-11-24T10:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        let t = self.0;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }

    /// The index `pubtime` form, exactly `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn to_pubtime(self) -> String {
        let t = self.0;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// The underlying date-time.
    pub fn as_offset_date_time(self) -> OffsetDateTime {
        self.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)?;
        Ok(Timestamp::from_unix_millis(
            (parsed.unix_timestamp_nanos() / 1_000_000) as i64,
        ))
    }
}

/// An event with its identity, time and author.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique id (UUIDv7); also the log's de-duplication id for the append.
    pub id: Uuid,
    /// The schema version the event was written with.
    pub schema: u32,
    /// When the event was recorded.
    pub at: Timestamp,
    /// Who caused it: a user login, or `depot:<role>` for the system.
    pub actor: String,
    /// The event itself.
    pub event: Event,
}

/// Why stored bytes are not an envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not the JSON of an envelope.
    #[error("event envelope is not valid: {0}")]
    Envelope(#[source] serde_json::Error),
    /// The envelope is fine but its `data` does not fit its `type`.
    #[error("data of event type `{kind}` is not valid: {source}")]
    Data {
        /// The event type.
        kind: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Wire<D> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    schema: u32,
    at: Timestamp,
    actor: String,
    data: D,
}

impl Envelope {
    /// Wraps an event in a new envelope stamped now.
    pub fn new(actor: impl Into<String>, event: Event) -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            schema: SCHEMA_VERSION,
            at: Timestamp::now(),
            actor: actor.into(),
            event,
        }
    }

    /// The event type name, e.g. `version_uploaded`.
    pub fn kind(&self) -> &str {
        self.event.kind()
    }

    /// The JSON bytes stored in the log.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            id: self.id,
            kind: self.kind().to_owned(),
            schema: self.schema,
            at: self.at,
            actor: self.actor.clone(),
            data: self.event.data_json(),
        };
        serde_json::to_vec(&wire).expect("events always serialize")
    }

    /// Parses stored bytes. Unknown event types decode to [`Event::Unknown`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let wire: Wire<serde_json::Value> =
            serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        let event =
            Event::from_parts(&wire.kind, wire.data).map_err(|source| DecodeError::Data {
                kind: wire.kind.clone(),
                source,
            })?;
        Ok(Envelope {
            id: wire.id,
            schema: wire.schema,
            at: wire.at,
            actor: wire.actor,
            event,
        })
    }
}
