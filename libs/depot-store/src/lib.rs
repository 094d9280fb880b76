//! Where Depot keeps bytes and rows: the content-addressed blob store for `.crate` files, and the
//! SQL read models the projector folds the event log into.
//!
//! This is the only crate that knows SQL. The api reads through [`PgStore`]; the projector writes
//! through [`ProjectionTx`], one transaction per batch of events together with its checkpoint.

mod blob;
mod error;
mod pg;
mod projection;

pub use blob::{BlobStore, BlobWriter, StoredBlob};
pub use error::StoreError;
pub use pg::{
    CrateVersions, IndexFileRow, PgStore, SearchHit, TokenRow, UploadOutcome, VersionSummary,
};
pub use projection::ProjectionTx;

/// The PostgreSQL migrations, embedded at build time.
pub static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
