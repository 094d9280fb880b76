//! `TestDatabase` against the real PostgreSQL named by `DEPOT_TEST_DATABASE_URL`.

use depot_testkit::{DATABASE_URL_VAR, TestDatabase};
use sqlx::Connection as _;

async fn database_exists(name: &str) -> bool {
    let admin_url = std::env::var(DATABASE_URL_VAR).unwrap();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        == 1
}

#[tokio::test]
async fn creates_a_usable_database_and_drops_it() {
    let db = TestDatabase::new().await;
    let other = TestDatabase::new().await;
    assert_ne!(db.name(), other.name());
    assert!(db.url().ends_with(db.name()), "{}", db.url());

    let pool = db.pool().await;
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (41), (1)")
        .execute(&pool)
        .await
        .unwrap();
    let sum: i64 = sqlx::query_scalar("SELECT sum(x) FROM t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sum, 42);
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, db.name());

    // Dropped even while the pool still holds open connections.
    let name = db.name().to_owned();
    assert!(database_exists(&name).await);
    drop(db);
    assert!(!database_exists(&name).await);
    drop(pool);
    assert!(database_exists(other.name()).await);
}

#[test]
fn drop_works_outside_any_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(TestDatabase::new());
    let name = db.name().to_owned();
    drop(db);
    assert!(!runtime.block_on(database_exists(&name)));
}
