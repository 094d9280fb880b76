//! Turning crate events of the log into webhook payloads.
//!
//! The stored envelope is read as plain JSON (`type`, `id`, `at`, `actor`, `data`), so an
//! event kind this build does not model yet (`docs_uploaded`) is delivered by its kind string
//! alone. The payload is Standard Webhooks' recommended envelope:
//! `{"type":"crate.published","timestamp":"…","data":{"crate":"…","version":"…","seq":N,…}}`,
//! with the event's own time, so every attempt and replay sends the same bytes.

use depot_eventlog::StoredEvent;
use serde_json::{Map, Value, json};

use crate::subscription::EVENT_TYPES;

/// A crate event that webhooks deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// The webhook event type, e.g. `crate.published`.
    pub event_type: &'static str,
    /// The crate's canonical name (from the subject).
    pub canon: String,
    /// The crate's name as published, when the event says it.
    pub name: Option<String>,
    /// The log sequence.
    pub seq: u64,
    /// The envelope's id (UUID), the stable part of the `webhook-id`.
    pub event_id: String,
    /// The event's time (RFC 3339).
    pub timestamp: String,
    /// Who caused it.
    pub actor: String,
    /// The type-specific fields of `data`.
    pub fields: Map<String, Value>,
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl WebhookEvent {
    /// The webhook event of a stored event, if it is a crate event webhooks deliver. Events
    /// that are not valid JSON envelopes yield `None` (the projector refuses those anyway).
    pub fn from_stored(event: &StoredEvent) -> Option<WebhookEvent> {
        let canon = event.subject.strip_prefix("crate.")?;
        let envelope: Value = serde_json::from_slice(&event.payload).ok()?;
        let kind = envelope.get("type")?.as_str()?;
        let event_type = EVENT_TYPES
            .iter()
            .find(|(_, log_kind)| *log_kind == kind)
            .map(|(name, _)| *name)?;
        let data = envelope.get("data")?;
        let mut fields = Map::new();
        let mut name = None;
        match kind {
            "version_accepted" => {
                name = data
                    .pointer("/entry/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                fields.insert("version".into(), json!(text(data, "vers")?));
                fields.insert("checksum".into(), json!(text(data, "cksum")?));
            }
            "version_yanked" | "version_unyanked" => {
                fields.insert("version".into(), json!(text(data, "vers")?));
                if let Some(message) = text(data, "message") {
                    fields.insert("message".into(), json!(message));
                }
            }
            "owners_added" | "owners_removed" => {
                let owners = data.get("owners")?.as_array()?;
                fields.insert("owners".into(), Value::Array(owners.clone()));
            }
            _ => {
                // docs_uploaded: `{name, version, …}`.
                name = text(data, "name");
                if let Some(version) = text(data, "version").or_else(|| text(data, "vers")) {
                    fields.insert("version".into(), json!(version));
                }
            }
        }
        Some(WebhookEvent {
            event_type,
            canon: canon.to_owned(),
            name,
            seq: event.seq,
            event_id: text(&envelope, "id")?,
            timestamp: text(&envelope, "at")?,
            actor: text(&envelope, "actor").unwrap_or_default(),
            fields,
        })
    }

    /// The `webhook-id` of this event for subscription `subscription_id`: the same for every
    /// attempt and replay, so receivers can drop duplicates.
    pub fn webhook_id(&self, subscription_id: &str) -> String {
        let simple = |id: &str| id.replace('-', "");
        format!("msg_{}_{}", simple(&self.event_id), simple(subscription_id))
    }

    /// The JSON body, with the crate named `name` (its published spelling).
    pub fn body(&self, name: &str) -> String {
        let mut data = Map::new();
        data.insert("crate".into(), json!(name));
        data.extend(self.fields.clone());
        data.insert("seq".into(), json!(self.seq));
        data.insert("actor".into(), json!(self.actor));
        json!({
            "type": self.event_type,
            "timestamp": self.timestamp,
            "data": Value::Object(data),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(subject: &str, kind: &str, data: Value) -> StoredEvent {
        let envelope = json!({
            "id": "0193a5c0-0000-7000-8000-0000000000ab",
            "type": kind,
            "schema": 1,
            "at": "2025-11-24T16:00:00.123Z",
            "actor": "alice",
            "data": data,
        });
        StoredEvent {
            seq: 42,
            subject: subject.to_owned(),
            msg_id: None,
            payload: serde_json::to_vec(&envelope).unwrap().into(),
        }
    }

    #[test]
    fn crate_events_become_payloads() {
        let yank = stored(
            "crate.my_crate",
            "version_yanked",
            json!({"vers": "1.0.0", "message": "broken"}),
        );
        let event = WebhookEvent::from_stored(&yank).unwrap();
        assert_eq!(event.event_type, "crate.yanked");
        assert_eq!(
            event.body("my-crate"),
            r#"{"type":"crate.yanked","timestamp":"2025-11-24T16:00:00.123Z","data":{"crate":"my-crate","version":"1.0.0","message":"broken","seq":42,"actor":"alice"}}"#
        );
        assert_eq!(
            event.webhook_id("0193a5c0-0000-7000-8000-0000000000cd"),
            "msg_0193a5c00000700080000000000000ab_0193a5c00000700080000000000000cd"
        );
        let docs = stored(
            "crate.my_crate",
            "docs_uploaded",
            json!({"name": "My-Crate", "version": "1.0.0", "blob": "x"}),
        );
        let event = WebhookEvent::from_stored(&docs).unwrap();
        assert_eq!(event.event_type, "crate.docs_uploaded");
        assert_eq!(event.name.as_deref(), Some("My-Crate"));
        let owners = stored("crate.a", "owners_added", json!({"owners": ["bob"]}));
        assert_eq!(
            WebhookEvent::from_stored(&owners).unwrap().fields["owners"],
            json!(["bob"])
        );
        // Not delivered: uploads, token events, malformed payloads.
        assert!(
            WebhookEvent::from_stored(&stored("crate.a", "version_uploaded", json!({}))).is_none()
        );
        assert!(
            WebhookEvent::from_stored(&stored(
                "principal.a",
                "version_yanked",
                json!({"vers":"1.0.0"})
            ))
            .is_none()
        );
        assert!(
            WebhookEvent::from_stored(&stored("crate.a", "version_yanked", json!({}))).is_none()
        );
        let mut junk = yank.clone();
        junk.payload = bytes::Bytes::from_static(b"{not json");
        assert!(WebhookEvent::from_stored(&junk).is_none());
    }
}
