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
    /// A request to the object storage of the blob store failed.
    #[error("object storage error: {0}")]
    Object(Box<object_store::Error>),
    /// A stored value could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store was configured or used wrongly.
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Whether the failure is the database being unreachable, restarting or overloaded (worth
    /// a retry), rather than a bug or corrupt data. A server that shuts down or starts up
    /// answers with SQLSTATE class 57 (`admin_shutdown`, `cannot_connect_now`, …), a lost
    /// connection with class 08, too many connections with 53300.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => true,
            StoreError::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                code.starts_with("57") || code.starts_with("08") || code == "53300"
            }),
            _ => false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_terminated_session_is_unavailable() {
        let db = depot_testkit::TestDatabase::new().await;
        let pool = db.pool().await;
        let error = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
            .execute(&pool)
            .await
            .expect_err("the session is terminated");
        let error = StoreError::from(error);
        assert!(error.is_unavailable(), "{error:?}");
    }

    #[tokio::test]
    async fn a_bad_statement_is_not_unavailable() {
        let db = depot_testkit::TestDatabase::new().await;
        let pool = db.pool().await;
        let error = sqlx::query("SELECT * FROM no_such_table")
            .execute(&pool)
            .await
            .expect_err("no such table");
        assert!(!StoreError::from(error).is_unavailable());
    }
}
