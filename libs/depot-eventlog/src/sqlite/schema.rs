//! The log's own storage schema, created and checked when the file is opened.
//!
//! This is not a read model: it does not use the top-level migrations. The file is marked
//! with `PRAGMA application_id` (so Depot never adopts someone else's database) and
//! versioned with `PRAGMA user_version`; both are set in the transaction that creates the
//! tables. A later schema change adds a step from the old version here.

use sqlx::{Sqlite, Transaction};

/// `PRAGMA application_id` of a Depot event log: "DPOT" in ASCII.
pub(super) const APPLICATION_ID: i64 = 0x4450_4F54;

/// The schema version this code reads and writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Version 1.
///
/// - `events`: the log. `seq` is the log sequence (AUTOINCREMENT: never reused; rows are
///   never deleted, so sequences are gap-free). `msg_id` is unique across the whole log.
///   Triggers make the table append-only.
/// - `work_queues`: one row per durable queue; `cursor` is the last sequence that has been
///   handed out for the first time (everything after it is undelivered).
/// - `work_queue_deliveries`: events handed out and not yet acked, terminated or exhausted,
///   with the number of deliveries so far and the time (Unix ms) at which the event may be
///   delivered again (ack deadline or nak delay).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    subject     TEXT    NOT NULL,
    msg_id      TEXT    NOT NULL UNIQUE,
    payload     BLOB    NOT NULL,
    appended_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_subject_seq ON events (subject, seq);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the Depot event log is append-only');
END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the Depot event log is append-only');
END;

CREATE TABLE IF NOT EXISTS work_queues (
    name   TEXT    PRIMARY KEY NOT NULL,
    cursor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS work_queue_deliveries (
    queue      TEXT    NOT NULL REFERENCES work_queues (name),
    seq        INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    PRIMARY KEY (queue, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS work_queue_deliveries_visible
    ON work_queue_deliveries (queue, visible_at);
";

/// Why the file cannot be used as an event log (mapped to `OpenError` by the caller).
#[derive(Debug)]
pub(super) enum SchemaProblem {
    /// A database error while reading or creating the schema.
    Database(sqlx::Error),
    /// The file belongs to something else.
    Foreign(String),
    /// Written by a newer Depot.
    TooNew(i64),
}

impl From<sqlx::Error> for SchemaProblem {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// Creates the schema in a fresh file or checks an existing one, inside the caller's
/// `BEGIN IMMEDIATE` transaction. Returns true if the schema was created.
pub(super) async fn ensure(tx: &mut Transaction<'static, Sqlite>) -> Result<bool, SchemaProblem> {
    let application_id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut **tx)
        .await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut **tx)
        .await?;
    if application_id == 0 && version == 0 {
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_one(&mut **tx)
        .await?;
        if tables > 0 {
            return Err(SchemaProblem::Foreign(format!(
                "it is a SQLite database with {tables} table(s) of another application"
            )));
        }
        sqlx::raw_sql(SCHEMA_V1).execute(&mut **tx).await?;
        // PRAGMA arguments cannot be bound; both values are constants.
        sqlx::raw_sql("PRAGMA application_id = 1146113876; PRAGMA user_version = 1")
            .execute(&mut **tx)
            .await?;
        return Ok(true);
    }
    if application_id != APPLICATION_ID {
        return Err(SchemaProblem::Foreign(format!(
            "its SQLite application id is {application_id:#x}, a Depot event log has {APPLICATION_ID:#x}"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(SchemaProblem::TooNew(version));
    }
    if version < 1 {
        return Err(SchemaProblem::Foreign(format!(
            "it carries Depot's application id but schema version {version}"
        )));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_id_literal_matches() {
        // The PRAGMA text cannot use the constant; keep them in sync.
        assert_eq!(APPLICATION_ID, 1_146_113_876);
        assert_eq!(&APPLICATION_ID.to_be_bytes()[4..], b"DPOT");
    }
}
