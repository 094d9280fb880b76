//! The blob store on a real S3 server (SeaweedFS, started by `bash .ci/test`): the same
//! behaviour as on a directory — content addresses, streamed multipart uploads, aborted
//! uploads leave nothing, garbage collection's quarantine — plus presigned downloads.

use std::time::Duration;

use depot_store::{BlobStore, S3Config, StoredBlob};
use depot_testkit::TestBucket;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt as _;

fn config(bucket: &TestBucket, prefix: &str) -> S3Config {
    S3Config {
        endpoint: Some(bucket.endpoint().to_owned()),
        region: bucket.region().to_owned(),
        access_key_id: Some(bucket.access_key().to_owned()),
        secret_access_key: Some(bucket.secret_key().to_owned()),
        // The smallest parts S3 allows, so a few MiB make a multipart upload of several parts.
        part_size: 5 << 20,
        ..S3Config::from_url(&format!("{}/{prefix}", bucket.url())).unwrap()
    }
}

async fn open(bucket: &TestBucket) -> BlobStore {
    BlobStore::open_s3(&config(bucket, "blobs"))
        .await
        .expect("open the S3 blob store")
}

async fn read_all(store: &BlobStore, key: &str) -> Vec<u8> {
    let (mut reader, len) = store.open_blob(key).await.unwrap().expect("stored");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.unwrap();
    assert_eq!(bytes.len() as u64, len);
    bytes
}

async fn store_bytes(store: &BlobStore, bytes: &[u8]) -> StoredBlob {
    let mut w = store.writer().await.unwrap();
    for chunk in bytes.chunks(1 << 20) {
        w.write(chunk).await.unwrap();
    }
    w.finish().await.unwrap()
}

#[tokio::test]
async fn multipart_uploads_land_at_their_content_address() {
    let bucket = TestBucket::new().await;
    let store = open(&bucket).await;
    assert_eq!(store.describe(), format!("{}/blobs", bucket.url()));

    // 12 MiB in 1 MiB writes: three parts of at most 5 MiB.
    let bytes: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let blob = store_bytes(&store, &bytes).await;
    assert_eq!(blob.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(blob.size, bytes.len() as u64);
    assert_eq!(read_all(&store, &blob.key).await, bytes);
    assert_eq!(
        store.sha256_of(&blob.key).await.unwrap(),
        Some(blob.sha256.clone())
    );
    assert!(
        store.read_capped(&blob.key, 1 << 20).await.is_err(),
        "over the cap"
    );

    // Small blobs, stored twice: one object.
    let small = store.put(b"metadata").await.unwrap();
    assert_eq!(store.put(b"metadata").await.unwrap(), small);
    assert_eq!(
        store.read_capped(&small.key, 1024).await.unwrap().unwrap(),
        b"metadata"
    );
    let listed: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.0)
        .collect();
    let mut expected = vec![blob.key.clone(), small.key.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    // Missing and malformed keys.
    let missing = BlobStore::key_for(&"0".repeat(64));
    assert!(store.open_blob(&missing).await.unwrap().is_none());
    assert!(
        store
            .open_blob("sha256/../../etc/passwd")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.sha256_of(&missing).await.unwrap(), None);
    assert!(store.local_path(&blob.key).is_none());
}

#[tokio::test]
async fn abandoned_uploads_leave_nothing() {
    let bucket = TestBucket::new().await;
    let store = open(&bucket).await;
    let mut w = store.writer().await.unwrap();
    w.write(&vec![7u8; 6 << 20]).await.unwrap();
    drop(w);
    let mut w = store.writer().await.unwrap();
    w.write(b"discarded").await.unwrap();
    w.discard().await;
    // A cancelled upload, as when a client goes away.
    let task = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut w = store.writer().await.unwrap();
            w.write(&[1u8; 1024]).await.unwrap();
            std::future::pending::<()>().await;
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    task.abort();
    let _ = task.await;
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.sweep_temp(Duration::ZERO).await.unwrap(), 0);
}

#[tokio::test]
async fn quarantine_moves_aside_and_puts_back() {
    let bucket = TestBucket::new().await;
    let store = open(&bucket).await;
    let blob = store_bytes(&store, b"content").await;
    let stored_at = store.list().await.unwrap()[0].2;

    // Moved aside: not listed, keeps the time it was stored, then deleted for good.
    let aside = store.quarantine(&blob.key).await.unwrap().unwrap();
    assert_eq!(aside.modified().await.unwrap(), stored_at);
    assert!(store.list().await.unwrap().is_empty());
    assert!(store.quarantine(&blob.key).await.unwrap().is_none());
    aside.delete().await.unwrap();
    assert_eq!(store.restore_quarantined().await.unwrap(), 0);

    // Stored again while moved aside: the new copy stays.
    let blob = store_bytes(&store, b"content").await;
    let aside = store.quarantine(&blob.key).await.unwrap().unwrap();
    store_bytes(&store, b"content").await;
    aside.restore().await.unwrap();
    assert_eq!(store.list().await.unwrap().len(), 1);
    assert_eq!(read_all(&store, &blob.key).await, b"content");

    // Left aside by an interrupted run: put back.
    let _aside = store.quarantine(&blob.key).await.unwrap().unwrap();
    assert_eq!(store.restore_quarantined().await.unwrap(), 1);
    assert_eq!(read_all(&store, &blob.key).await, b"content");
    store.remove(&blob.key).await.unwrap();
    store.remove(&blob.key).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn presigned_downloads_serve_the_blob() {
    let bucket = TestBucket::new().await;
    let store = open(&bucket).await;
    let blob = store.put(b"a crate").await.unwrap();
    let url = store
        .download_url(&blob.key, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("object storage signs URLs");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200, "{url}");
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), b"a crate");
}

#[tokio::test]
async fn a_wrong_secret_or_bucket_fails_at_open() {
    let bucket = TestBucket::new().await;
    let wrong_secret = S3Config {
        secret_access_key: Some("not-the-secret".to_owned()),
        ..config(&bucket, "")
    };
    let error = BlobStore::open_s3(&wrong_secret).await.unwrap_err();
    assert!(
        error.to_string().contains("cannot reach the blob bucket"),
        "{error}"
    );
    let no_bucket = S3Config {
        bucket: "no-such-bucket-here".to_owned(),
        ..config(&bucket, "")
    };
    assert!(BlobStore::open_s3(&no_bucket).await.is_err());
}

#[tokio::test]
async fn downloads_read_small_objects_whole_and_stream_large_ones() {
    use depot_store::{BlobBody, WHOLE_READ_MAX};
    use futures::TryStreamExt as _;
    let bucket = TestBucket::new().await;
    let store = open(&bucket).await;
    let max = WHOLE_READ_MAX as usize;
    for size in [0, 1, max, max + 1, 3 << 20] {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 13 % 241) as u8).collect();
        let blob = store_bytes(&store, &bytes).await;
        assert_eq!(store.size_of(&blob.key).await.unwrap(), Some(size as u64));
        let body = store.read_body(&blob.key).await.unwrap().expect("stored");
        assert_eq!(body.len(), size as u64, "{size}");
        let read = match body {
            BlobBody::Whole(whole) => {
                assert!(size <= max, "{size} bytes were read whole");
                whole.to_vec()
            }
            BlobBody::Chunks { chunks, len } => {
                assert!(size > max, "{size} bytes were streamed");
                let chunks: Vec<bytes::Bytes> = chunks.try_collect().await.unwrap();
                let all = chunks.concat();
                assert_eq!(all.len() as u64, len);
                all
            }
        };
        assert!(read == bytes, "{size}: the bytes differ");
    }
    let missing = BlobStore::key_for(&"0".repeat(64));
    assert!(store.read_body(&missing).await.unwrap().is_none());
    assert!(store.size_of(&missing).await.unwrap().is_none());
}
