//! Blob store and SQL read models (sqlx).
