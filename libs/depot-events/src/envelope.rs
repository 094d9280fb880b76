//! The envelope around every event and its JSON form.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::payload::{Event, VersionUploaded};

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

/// The envelope with `data` left unparsed, borrowed from the stored bytes.
#[derive(Deserialize)]
struct RawWire<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    schema: u32,
    at: Timestamp,
    actor: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// `version_uploaded` as the fold reads it: [`VersionUploaded`] whose publish metadata is
/// checked to be JSON but not built into a value (nothing in the fold reads it). The fields
/// and their serde attributes are those of [`VersionUploaded`].
#[derive(Deserialize)]
struct UploadForFold {
    name: String,
    vers: String,
    cksum: String,
    size: u64,
    blob: String,
    #[serde(default, rename = "metadata")]
    _metadata: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    metadata_blob: Option<String>,
    uploader: String,
    #[serde(default)]
    token_id: Option<Uuid>,
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

    /// Parses stored bytes as the projector folds them: the same result as
    /// [`Envelope::decode`], except that the publish metadata of a `version_uploaded` is left
    /// out ([`serde_json::Value::Null`]; nothing in the fold reads it), for about half the
    /// work: `data` is parsed once, straight into the typed payload, and the metadata is only
    /// checked to be JSON. Bytes this quick path cannot judge exactly as the full parse does
    /// (any error, deep nesting, escapes, unusual numbers; Depot never writes such events)
    /// take the full parse, so the same bytes are refused with the same error.
    pub fn decode_for_fold(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        match Envelope::decode_quick(bytes) {
            Some(envelope) => Ok(envelope),
            None => Envelope::decode(bytes).map(|mut envelope| {
                if let Event::VersionUploaded(upload) = &mut envelope.event {
                    upload.metadata = serde_json::Value::Null;
                }
                envelope
            }),
        }
    }

    /// [`Envelope::decode_for_fold`]'s quick path: `None` when the bytes need the full parse.
    fn decode_quick(bytes: &[u8]) -> Option<Envelope> {
        let wire: RawWire<'_> = serde_json::from_slice(bytes).ok()?;
        let data = wire.data.get();
        if !plain_json(data) {
            return None;
        }
        let event = if wire.kind == "version_uploaded" {
            let upload: UploadForFold = serde_json::from_str(data).ok()?;
            Event::VersionUploaded(VersionUploaded {
                name: upload.name,
                vers: upload.vers,
                cksum: upload.cksum,
                size: upload.size,
                blob: upload.blob,
                metadata: serde_json::Value::Null,
                metadata_blob: upload.metadata_blob,
                uploader: upload.uploader,
                token_id: upload.token_id,
            })
        } else {
            Event::from_raw(&wire.kind, data).ok()?
        };
        Some(Envelope {
            id: wire.id,
            schema: wire.schema,
            at: wire.at,
            actor: wire.actor,
            event,
        })
    }
}

/// Deepest nesting of the JSON values that [`plain_json`] passes; serde_json refuses values
/// nested deeper than 128 when it builds them, but not when it skips them.
const PLAIN_DEPTH: usize = 64;

/// Whether the JSON value `json` (valid JSON) holds only what skipping a value and building
/// it judge alike: nesting up to [`PLAIN_DEPTH`], strings without `\u` escapes or raw
/// control characters, and integers of at most 18 digits without leading zeros. Skipping
/// (unknown fields, the publish metadata) accepts some values that building refuses:
/// numbers out of range, lone surrogates, nesting past the recursion limit. (Duplicate keys,
/// which building a value allows and a typed parse refuses, make the quick path fail.)
fn plain_json(json: &str) -> bool {
    let bytes = json.as_bytes();
    let (mut depth, mut i) = (0_usize, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return false,
                        Some(b'"') => break,
                        Some(b'\\') => {
                            if bytes.get(i + 1).is_none_or(|b| *b == b'u') {
                                return false;
                            }
                            i += 2;
                        }
                        Some(b) if *b < 0x20 => return false,
                        Some(_) => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > PLAIN_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i + usize::from(bytes[i] == b'-');
                let mut end = start;
                while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                let digits = end - start;
                let leading_zero = digits > 1 && bytes[start] == b'0';
                let fraction = matches!(bytes.get(end), Some(b'.' | b'e' | b'E'));
                if digits == 0 || digits > 18 || leading_zero || fraction {
                    return false;
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    true
}
