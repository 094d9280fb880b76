//! [`TestDatabase`]: a fresh, uniquely named PostgreSQL database per test, dropped afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::env::{DATABASE_URL_VAR, required_var};

/// Prefix of every database this crate creates: `depot_test_<unix seconds>_<random>`.
const NAME_PREFIX: &str = "depot_test_";

/// Databases of ours older than this are leftovers of killed test processes and get swept.
const STALE_AFTER: Duration = Duration::from_secs(3 * 60 * 60);

/// Bound on every admin operation, so a wedged server fails the test instead of hanging it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh, empty PostgreSQL database on the server named by `DEPOT_TEST_DATABASE_URL`.
///
/// Each value owns one database with a unique name; dropping the value drops the database
/// (`DROP DATABASE … WITH (FORCE)`, which also ends connections still open to it). Nothing
/// is migrated: run your migrator on [`TestDatabase::pool`] or [`TestDatabase::url`].
///
/// Set `DEPOT_TEST_KEEP_DB=1` to keep the database of a failing (panicking) test for
/// inspection; its name is printed.
///
/// ```no_run
/// # async fn example() {
/// let db = depot_testkit::TestDatabase::new().await;
/// let pool = db.pool().await;
/// sqlx::query("CREATE TABLE t (x int)").execute(&pool).await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates the database.
    ///
    /// # Panics
    ///
    /// If `DEPOT_TEST_DATABASE_URL` is unset, or the server cannot be reached, or the role may
    /// not create databases.
    pub async fn new() -> Self {
        let admin_url = required_var(DATABASE_URL_VAR, "a real PostgreSQL server");
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{NAME_PREFIX}{}_{}", unix_now(), &suffix[..12]);
        let url = with_database(&admin_url, &name);
        if let Err(e) = create(&admin_url, &name).await {
            panic!(
                "cannot create test database {name} via {DATABASE_URL_VAR}={admin_url}: {e:#}. \
                 Is PostgreSQL running (pg_isready -h 127.0.0.1) and does the role have CREATEDB? \
                 `bash .ci/test` checks and starts it."
            );
        }
        Self {
            name,
            url,
            admin_url,
        }
    }

    /// The connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small pool (at most 5 connections) on this database.
    ///
    /// # Panics
    ///
    /// If connecting fails.
    pub async fn pool(&self) -> PgPool {
        match PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(ADMIN_TIMEOUT)
            .connect(&self.url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => panic!("cannot connect to test database {}: {e}", self.url),
        }
    }
}

impl Drop for TestDatabase {
    #[expect(
        clippy::print_stderr,
        reason = "Drop cannot return errors; the test harness shows stderr of failing tests"
    )]
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("DEPOT_TEST_KEEP_DB").is_some() {
            eprintln!(
                "depot-testkit: keeping database {} of a failed test",
                self.url
            );
            return;
        }
        // Drop cannot be async, and may run inside a runtime: do the work on a thread of its
        // own with a private runtime, and wait for it so the database is really gone.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a runtime")?
                .block_on(drop_database(&admin_url, &name))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "depot-testkit: could not drop database {}: {e:#}",
                self.name
            ),
            Err(_) => eprintln!("depot-testkit: dropping database {} panicked", self.name),
        }
    }
}

async fn admin_connection(admin_url: &str) -> anyhow::Result<PgConnection> {
    tokio::time::timeout(ADMIN_TIMEOUT, PgConnection::connect(admin_url))
        .await
        .context("timed out connecting")?
        .context("connecting")
}

async fn create(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = admin_connection(admin_url).await?;
    sweep_stale_once(&mut conn).await;
    tokio::time::timeout(
        ADMIN_TIMEOUT,
        // `name` is ours: ASCII letters, digits and `_` only.
        sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#))).execute(&mut conn),
    )
    .await
    .context("timed out creating the database")?
    .context("CREATE DATABASE")?;
    conn.close().await.ok();
    Ok(())
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = admin_connection(admin_url).await?;
    tokio::time::timeout(
        ADMIN_TIMEOUT,
        sqlx::raw_sql(drop_statement(name)).execute(&mut conn),
    )
    .await
    .context("timed out dropping the database")?
    .context("DROP DATABASE")?;
    conn.close().await.ok();
    Ok(())
}

/// Once per process, drops databases of ours that are hours old: leftovers of test processes
/// that were killed (for example by a test timeout) before their `Drop` ran. Best effort.
async fn sweep_stale_once(conn: &mut PgConnection) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE datname LIKE 'depot\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let cutoff = unix_now().saturating_sub(STALE_AFTER.as_secs());
    for name in names {
        if created_at(&name).is_some_and(|at| at < cutoff) {
            let statement = sqlx::raw_sql(drop_statement(&name)).execute(&mut *conn);
            let _ = tokio::time::timeout(ADMIN_TIMEOUT, statement).await;
        }
    }
}

/// `DROP DATABASE` for one of our databases (`name` is ASCII letters, digits and `_` only;
/// names from `pg_database` are filtered by our prefix and re-checked here).
fn drop_statement(name: &str) -> AssertSqlSafe<String> {
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "unexpected database name {name:?}"
    );
    AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
}

/// The creation time encoded in one of our database names.
fn created_at(name: &str) -> Option<u64> {
    name.strip_prefix(NAME_PREFIX)?
        .split('_')
        .next()?
        .parse()
        .ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Replaces the database (path) part of a PostgreSQL URL, keeping credentials and parameters.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable&x=/y", "x"),
            "postgres://u:p@h:1/x?sslmode=disable&x=/y"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(with_database("postgresql://h/", "x"), "postgresql://h/x");
    }

    #[test]
    fn creation_time_is_read_back() {
        assert_eq!(
            created_at("depot_test_1700000000_abcdef012345"),
            Some(1_700_000_000)
        );
        assert_eq!(created_at("depot_other"), None);
        assert_eq!(created_at("depot_test_x_y"), None);
    }
}
