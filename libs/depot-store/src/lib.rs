//! Where Depot keeps bytes and rows: the content-addressed blob store for `.crate` files, and the
//! SQL read models the projector folds the event log into, on PostgreSQL or SQLite.
//!
//! This is the only crate that knows SQL. The api reads through [`Store`]; the projector writes
//! through [`ProjectionTx`], one transaction per batch of events together with its checkpoint.
//! Read models are kept in generations: a replay folds the log into a new generation while the
//! active one keeps serving, then switches in one transaction.

mod blob;
mod db;
mod error;
mod lease;
mod projection;
#[macro_use]
mod store;
mod upstream;
mod web;
// After `store`, whose macros it uses.
mod docs;
mod webhooks;

pub use blob::{
    BlobBody, BlobChunks, BlobReader, BlobStore, BlobWriter, CHUNK_SIZE, Quarantined, S3Config,
    StoredBlob, WHOLE_READ_MAX,
};
pub use db::{PG_MIGRATOR, SQLITE_MIGRATOR};
pub use docs::DocsRow;
pub use error::StoreError;
pub use lease::ProjectorLease;
pub use projection::{AcceptedVersion, CrateSave, ProjectionTx, Target};
pub use store::{
    CrateDownloads, CrateInfo, CrateVersions, Generation, IndexFileRow, PendingVersion, SearchHit,
    Store, StoredVersion, TokenRow, TrustRow, UploadOutcome, UserRow, VersionSummary,
};
pub use upstream::{UpstreamCrateRow, UpstreamIndexRow};
pub use web::{CrateCard, CrateDetails, VersionDetails};
pub use webhooks::{AttemptResult, DeliveryRow, NewDelivery, WebhookRow};
