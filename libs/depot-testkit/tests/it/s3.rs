//! `TestBucket` against the real S3 server named by `DEPOT_TEST_S3_ENDPOINT`, through
//! object_store configured the way Depot's S3 blob store is: explicit endpoint, static
//! credentials, region, plain HTTP and path-style requests.

use depot_testkit::TestBucket;
use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

fn builder(bucket: &TestBucket) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(bucket.endpoint())
        .with_bucket_name(bucket.name())
        .with_access_key_id(bucket.access_key())
        .with_secret_access_key(bucket.secret_key())
        .with_region(bucket.region())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
}

async fn keys(store: &AmazonS3, prefix: Option<&Path>) -> object_store::Result<Vec<String>> {
    let mut keys: Vec<String> = store
        .list(prefix)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await?;
    keys.sort();
    Ok(keys)
}

#[tokio::test]
async fn writes_reads_lists_and_deletes_objects() {
    let bucket = TestBucket::new().await;
    assert!(
        bucket.name().starts_with("depot-test-"),
        "{}",
        bucket.name()
    );
    assert_eq!(bucket.url(), format!("s3://{}", bucket.name()));
    assert!(
        bucket.endpoint().starts_with("http://"),
        "{}",
        bucket.endpoint()
    );
    let store = builder(&bucket).build().unwrap();
    assert_eq!(keys(&store, None).await.unwrap(), Vec::<String>::new());

    let crate_file = Path::from("crates/de/mo/demo-0.1.0.crate");
    let readme = Path::from("readmes/demo/0.1.0.html");
    let body = b"not really a gzipped tarball".to_vec();
    store
        .put(&crate_file, PutPayload::from(body.clone()))
        .await
        .unwrap();
    store
        .put(&readme, PutPayload::from_static(b"<p>demo</p>"))
        .await
        .unwrap();

    let got = store.get(&crate_file).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], &body[..]);
    assert_eq!(
        store.head(&crate_file).await.unwrap().size,
        body.len() as u64
    );
    let range = store.get_range(&crate_file, 4..10).await.unwrap();
    assert_eq!(&range[..], &body[4..10]);

    assert_eq!(
        keys(&store, None).await.unwrap(),
        [crate_file.to_string(), readme.to_string()]
    );
    assert_eq!(
        keys(&store, Some(&Path::from("crates"))).await.unwrap(),
        [crate_file.to_string()]
    );

    store.delete(&crate_file).await.unwrap();
    assert!(matches!(
        store.get(&crate_file).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(keys(&store, None).await.unwrap(), [readme.to_string()]);

    // Dropping the bucket deletes it together with the objects left in it.
    drop(bucket);
    assert!(
        keys(&store, None).await.is_err(),
        "the bucket still exists after the drop"
    );
    assert!(
        store
            .put(&readme, PutPayload::from_static(b"x"))
            .await
            .is_err(),
        "a write to a deleted bucket must fail, not create the bucket again"
    );
}

#[tokio::test]
async fn buckets_are_separate() {
    let a = TestBucket::new().await;
    let b = TestBucket::new().await;
    assert_ne!(a.name(), b.name());
    let store_a = builder(&a).build().unwrap();
    let store_b = builder(&b).build().unwrap();
    let key = Path::from("same/key");
    store_a
        .put(&key, PutPayload::from_static(b"a"))
        .await
        .unwrap();
    assert!(matches!(
        store_b.get(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(keys(&store_b, None).await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn requests_must_be_signed_with_the_right_secret() {
    let bucket = TestBucket::new().await;
    let key = Path::from("k");
    let anonymous = builder(&bucket).with_skip_signature(true).build().unwrap();
    let refused = anonymous
        .put(&key, PutPayload::from_static(b"x"))
        .await
        .expect_err("an unsigned write was accepted");
    assert!(refused.to_string().contains("AccessDenied"), "{refused}");
    let wrong = builder(&bucket)
        .with_secret_access_key("not-the-secret")
        .build()
        .unwrap();
    let refused = wrong
        .put(&key, PutPayload::from_static(b"x"))
        .await
        .expect_err("a write signed with a wrong secret was accepted");
    assert!(
        refused.to_string().contains("SignatureDoesNotMatch"),
        "{refused}"
    );
    let store = builder(&bucket).build().unwrap();
    assert_eq!(keys(&store, None).await.unwrap(), Vec::<String>::new());
}

#[test]
fn drop_works_outside_any_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bucket = runtime.block_on(TestBucket::new());
    let store = builder(&bucket).build().unwrap();
    runtime
        .block_on(store.put(&Path::from("k"), PutPayload::from_static(b"x")))
        .unwrap();
    drop(bucket);
    assert!(runtime.block_on(keys(&store, None)).is_err());
}
