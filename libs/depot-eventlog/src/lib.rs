//! The event log: Depot's only source of truth.
//!
//! This crate defines the backend-neutral [`EventLog`] API and its two implementations:
//! [`JetStreamLog`] on NATS JetStream (production) and [`SqliteLog`] on one SQLite file
//! (the embedded zero-setup mode, with [`LocalNotifier`] for in-process notifications):
//!
//! - [`EventLog::append`] appends one event to an aggregate subject (e.g. `crate.serde`) with
//!   optimistic concurrency per subject ([`Expected`]) and an idempotency key (message id);
//!   [`EventLog::append_batch`] appends many unconditional events at once (imports, tests,
//!   benchmarks).
//! - [`EventLog::read_subject`] / [`EventLog::last_seq`] load one aggregate.
//! - [`EventLog::read_from`] replays the whole log in order and then follows it (projector).
//! - [`EventLog::work_queue`] opens a durable competing consumer with acks and redelivery
//!   (extractor).
//! - [`Notifier`] carries best-effort cross-process notifications (cache invalidation).
//!
//! Sequences are positions in the whole log: they start at 1 and increase by one per stored
//! event. The shared `conformance` suite (cargo feature `conformance`) pins the semantics
//! both implementations have.

mod error;
mod event_log;
mod jetstream;
mod local_notifier;
mod names;
mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{AppendError, BoxError, LogError};
pub use event_log::{
    Appended, Delivery, DeliveryAcker, EventLog, EventStream, Expected, NewEvent, Notifier,
    StoredEvent, WorkQueue, WorkQueueConfig,
};
pub use jetstream::{ConnectError, JetStreamConfig, JetStreamLog, NatsNotifier};
pub use local_notifier::LocalNotifier;
pub use sqlite::{OpenError, SqliteLog};
