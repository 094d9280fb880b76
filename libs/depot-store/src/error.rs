//! The store's error type.

/// A failure of the blob store or the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file operation of the blob store failed.
    #[error("blob store error: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store was configured or used wrongly.
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Whether the failure is the database being unreachable or overloaded (worth a retry),
    /// rather than a bug or corrupt data.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }

    /// Whether the failure is the blob store's disk (or quota) being full.
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self,
            StoreError::Io(e) if matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        )
    }
}
