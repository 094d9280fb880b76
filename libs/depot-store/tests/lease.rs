//! The projector lease: one holder per PostgreSQL database, released when its session ends.

use depot_store::Store;
use depot_testkit::TestDatabase;

#[tokio::test]
async fn one_holder_at_a_time_and_released_on_drop() {
    let db = TestDatabase::new().await;
    let a = Store::connect(db.url(), 2).await.unwrap();
    let b = Store::connect(db.url(), 2).await.unwrap();
    let mut lease = a
        .try_projector_lease()
        .await
        .unwrap()
        .expect("free at first");
    lease.check().await.unwrap();
    assert!(b.try_projector_lease().await.unwrap().is_none());
    assert!(
        a.try_projector_lease().await.unwrap().is_none(),
        "not twice either"
    );
    drop(lease);
    // The session ends asynchronously once its connection is dropped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lease = loop {
        if let Some(lease) = b.try_projector_lease().await.unwrap() {
            break lease;
        }
        assert!(std::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(a.try_projector_lease().await.unwrap().is_none());
    drop(lease);
}

#[tokio::test]
async fn the_holder_notices_when_its_session_is_terminated() {
    let db = TestDatabase::new().await;
    let store = Store::connect(db.url(), 2).await.unwrap();
    let mut lease = store.try_projector_lease().await.unwrap().unwrap();
    let pool = db.pool().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    )
    .execute(&pool)
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lease.check().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the loss went unnoticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(store.try_projector_lease().await.unwrap().is_some());
}

#[tokio::test]
async fn the_embedded_store_always_grants_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("read-models.sqlite"))
        .await
        .unwrap();
    let _a = store.try_projector_lease().await.unwrap().unwrap();
    assert!(store.try_projector_lease().await.unwrap().is_some());
}
