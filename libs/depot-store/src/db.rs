//! The two SQL backends of the read models and the one way statements are run on them.
//!
//! PostgreSQL and SQLite share one schema with portable column types, so nearly every statement
//! is written once. [`on_read!`], [`on_write!`] and [`on_tx!`] expand a block once per backend,
//! with the pool or transaction bound to a name; the block's code is the same, its types are
//! each backend's own.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};

use crate::StoreError;

/// The PostgreSQL migrations, embedded at build time.
pub static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The SQLite migrations, embedded at build time.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// A connection pool to one of the backends.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Pg(PgPool),
    Sqlite(SqlitePools),
}

/// SQLite allows one writer at a time: writes go through a one-connection pool and always
/// begin with `BEGIN IMMEDIATE`; reads use their own pool.
#[derive(Debug, Clone)]
pub(crate) struct SqlitePools {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
}

/// A transaction on one of the backends.
#[derive(Debug)]
pub(crate) enum Tx {
    Pg(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs `$body` with `$pool` bound to a pool for reading.
macro_rules! on_read {
    ($db:expr, $pool:ident => $($body:tt)*) => {
        match $db {
            $crate::db::Db::Pg($pool) => { $($body)* }
            $crate::db::Db::Sqlite(pools) => {
                let $pool = &pools.read;
                { $($body)* }
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to a pool for writing.
macro_rules! on_write {
    ($db:expr, $pool:ident => $($body:tt)*) => {
        match $db {
            $crate::db::Db::Pg($pool) => { $($body)* }
            $crate::db::Db::Sqlite(pools) => {
                let $pool = &pools.write;
                { $($body)* }
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the transaction's connection.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $($body:tt)*) => {
        match $tx {
            $crate::db::Tx::Pg(tx) => {
                let $conn = &mut **tx;
                { $($body)* }
            }
            $crate::db::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                { $($body)* }
            }
        }
    };
}

pub(crate) use {on_read, on_tx, on_write};

impl Db {
    /// Connects to `url`: `postgres://…` / `postgresql://…`, or `sqlite://PATH` (created if
    /// missing). Fails within a few seconds when the server is unreachable.
    pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            return Ok(Db::Pg(pool));
        }
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?;
            return Db::open_sqlite(options, max_connections).await;
        }
        Err(StoreError::Config(format!(
            "unsupported database URL `{url}`: use postgres://… or sqlite://PATH"
        )))
    }

    /// Opens (creating if needed) a SQLite database file.
    pub(crate) async fn open_sqlite_file(path: &Path, readers: u32) -> Result<Db, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Db::open_sqlite(SqliteConnectOptions::new().filename(path), readers).await
    }

    async fn open_sqlite(options: SqliteConnectOptions, readers: u32) -> Result<Db, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Read models are rebuilt from the log after a crash; NORMAL is enough in WAL mode.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Db::Sqlite(SqlitePools { write, read }))
    }

    /// Applies pending migrations.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Pg(pool) => PG_MIGRATOR.run(pool).await?,
            Db::Sqlite(pools) => SQLITE_MIGRATOR.run(&pools.write).await?,
        }
        Ok(())
    }

    /// Begins a writing transaction (`BEGIN IMMEDIATE` on SQLite).
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Pg(pool) => Tx::Pg(pool.begin().await?),
            Db::Sqlite(pools) => Tx::Sqlite(pools.write.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Begins a read-only transaction whose statements all see one snapshot (`REPEATABLE
    /// READ` on PostgreSQL; a read transaction of the reading pool on SQLite).
    pub(crate) async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Pg(pool) => Tx::Pg(
                pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
            Db::Sqlite(pools) => Tx::Sqlite(pools.read.begin().await?),
        })
    }

    /// Whether this is PostgreSQL.
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

impl Tx {
    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Pg(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// A `u64` as stored (SQL has signed 64-bit integers only).
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored integer as `u64`.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
