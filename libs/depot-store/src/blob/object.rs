//! The blob store on S3-compatible object storage (AWS S3, SeaweedFS, MinIO, Ceph …), through
//! `object_store`.
//!
//! Layout under the configured prefix: `sha256/<hex>` for blobs, `tmp/upload-<uuid>` while an
//! upload is being completed, `gc/<hex>` for blobs garbage collection moved aside. An upload is
//! a multipart upload to a temporary key, streamed in parts of [`S3Config::part_size`] with at
//! most [`S3Config::max_parts_in_flight`] parts in flight (so an upload holds at most
//! `part_size × (max_parts_in_flight + 1)` bytes in memory, whatever its size); once complete,
//! it is copied server-side to its content address and the temporary object deleted. An upload
//! that is dropped is aborted. A process killed mid-upload leaves an incomplete multipart
//! upload, which only the bucket can clean up: configure a lifecycle rule
//! (`AbortIncompleteMultipartUpload`) on the bucket.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{Method, Signer as _};
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio_util::io::StreamReader;

use super::{BlobBody, BlobReader, BlobStore, StoredBlob, WHOLE_READ_MAX, hex_of_key};
use crate::StoreError;

/// Where and how to reach an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// A key prefix inside the bucket (no leading or trailing `/`), or empty.
    pub prefix: String,
    /// The endpoint URL for S3-compatible servers (`http://127.0.0.1:8333`); AWS when `None`.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// Static credentials; without them, the AWS SDK's usual sources are not consulted and
    /// requests are unsigned.
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Address the bucket as `https://host/bucket/key` (path style, what most S3-compatible
    /// servers expect) rather than `https://bucket.host/key`.
    pub path_style: bool,
    /// Size of the parts of a multipart upload (at least 5 MiB).
    pub part_size: usize,
    /// Parts of one upload sent at the same time.
    pub max_parts_in_flight: usize,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field("max_parts_in_flight", &self.max_parts_in_flight)
            .finish()
    }
}

impl S3Config {
    /// Parses `s3://bucket` or `s3://bucket/prefix`; the rest of the settings get defaults
    /// (region `us-east-1`, path style, 8 MiB parts, 2 in flight).
    pub fn from_url(url: &str) -> Result<S3Config, StoreError> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            StoreError::Config(format!("`{url}` is not an s3://bucket/prefix URL"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(StoreError::Config(format!(
                "`{bucket}` is not a valid bucket name (3 to 63 lowercase letters, digits, `-`, `.`)"
            )));
        }
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            path_style: true,
            part_size: 8 << 20,
            max_parts_in_flight: 2,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ObjectBlobs {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    part_size: usize,
    max_parts_in_flight: usize,
}

impl ObjectBlobs {
    pub(crate) async fn open(config: &S3Config) -> Result<ObjectBlobs, StoreError> {
        if config.part_size < 5 << 20 {
            return Err(StoreError::Config(
                "S3 multipart parts must be at least 5 MiB".to_owned(),
            ));
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        } else {
            builder = builder.with_skip_signature(true);
        }
        let store = builder.build().map_err(object_error)?;
        let blobs = ObjectBlobs {
            store: Arc::new(store),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            part_size: config.part_size,
            max_parts_in_flight: config.max_parts_in_flight.max(1),
        };
        // Fail at start, with the reason, rather than on the first upload.
        blobs
            .store
            .list_with_delimiter(Some(&blobs.path("sha256")))
            .await
            .map_err(|e| {
                StoreError::Config(format!(
                    "cannot reach the blob bucket {}: {e}",
                    blobs.describe()
                ))
            })?;
        Ok(blobs)
    }

    pub(crate) fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The object path of `relative` under the prefix.
    fn path(&self, relative: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn blob_path(&self, key: &str) -> Option<Path> {
        hex_of_key(key).map(|hex| self.path(&format!("sha256/{hex}")))
    }

    pub(crate) async fn writer(&self) -> Result<ObjectWriter, StoreError> {
        let temp = self.path(&format!("tmp/upload-{}", uuid::Uuid::new_v4()));
        let upload = self
            .store
            .put_multipart(&temp)
            .await
            .map_err(object_error)?;
        Ok(ObjectWriter {
            upload: Some(WriteMultipart::new_with_chunk_size(upload, self.part_size)),
            temp,
            hasher: Sha256::new(),
            size: 0,
            blobs: self.clone(),
        })
    }

    pub(crate) async fn put(&self, bytes: &[u8]) -> Result<StoredBlob, StoreError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let key = BlobStore::key_for(&sha256);
        let path = self.blob_path(&key).expect("a fresh sha256 key is valid");
        self.store
            .put(&path, PutPayload::from(bytes.to_vec()))
            .await
            .map_err(object_error)?;
        Ok(StoredBlob {
            key,
            sha256,
            size: bytes.len() as u64,
        })
    }

    pub(crate) async fn open_blob(
        &self,
        key: &str,
    ) -> Result<Option<(BlobReader, u64)>, StoreError> {
        let Some(path) = self.blob_path(key) else {
            return Ok(None);
        };
        match self.store.get(&path).await {
            Ok(result) => {
                let size = result.meta.size;
                let stream = result.into_stream().map_err(std::io::Error::other);
                Ok(Some((Box::pin(StreamReader::new(stream)), size)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(object_error(e)),
        }
    }

    /// One `GET`: a small object's body is read whole, a larger one streamed as it arrives,
    /// held to the size the object's metadata announced.
    pub(crate) async fn read_body(&self, key: &str) -> Result<Option<BlobBody>, StoreError> {
        let Some(path) = self.blob_path(key) else {
            return Ok(None);
        };
        let result = match self.store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(object_error(e)),
        };
        let len = result.meta.size;
        if len <= WHOLE_READ_MAX {
            let bytes = result.bytes().await.map_err(object_error)?;
            if bytes.len() as u64 != len {
                return Err(StoreError::Corrupt(format!(
                    "object {path} has {} bytes, its metadata says {len}",
                    bytes.len()
                )));
            }
            return Ok(Some(BlobBody::Whole(bytes)));
        }
        let mut seen = 0u64;
        let chunks = result.into_stream().map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            seen += chunk.len() as u64;
            if seen > len {
                return Err(std::io::Error::other(format!(
                    "object is longer than the {len} bytes its metadata says"
                )));
            }
            Ok(chunk)
        });
        Ok(Some(BlobBody::Chunks {
            chunks: Box::pin(chunks),
            len,
        }))
    }

    pub(crate) async fn size_of(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let Some(path) = self.blob_path(key) else {
            return Ok(None);
        };
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(object_error(e)),
        }
    }

    pub(crate) async fn download_url(
        &self,
        key: &str,
        valid_for: Duration,
    ) -> Result<Option<String>, StoreError> {
        let Some(path) = self.blob_path(key) else {
            return Ok(None);
        };
        let url = self
            .store
            .signed_url(Method::GET, &path, valid_for)
            .await
            .map_err(object_error)?;
        Ok(Some(url.to_string()))
    }

    pub(crate) async fn sweep_temp(&self, older_than: Duration) -> Result<usize, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        let mut listing = self.store.list(Some(&self.path("tmp")));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(object_error)?;
            let is_upload = meta
                .location
                .filename()
                .is_some_and(|name| name.starts_with("upload-"));
            if is_upload && system_time(&meta) <= cutoff {
                self.delete_quietly(&meta.location).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub(crate) async fn list(&self) -> Result<Vec<(String, u64, SystemTime)>, StoreError> {
        let mut blobs = Vec::new();
        let mut listing = self.store.list(Some(&self.path("sha256")));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(object_error)?;
            if let Some(name) = meta.location.filename() {
                let key = BlobStore::key_for(name);
                if hex_of_key(&key).is_some() {
                    blobs.push((key, meta.size, system_time(&meta)));
                }
            }
        }
        blobs.sort();
        Ok(blobs)
    }

    pub(crate) async fn quarantine(
        &self,
        key: &str,
    ) -> Result<Option<ObjectQuarantined>, StoreError> {
        let Some(home) = self.blob_path(key) else {
            return Ok(None);
        };
        let stored = match self.store.head(&home).await {
            Ok(meta) => system_time(&meta),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(object_error(e)),
        };
        let aside = self.path(&format!("gc/{}", hex_of_key(key).unwrap_or_default()));
        match self.store.copy(&home, &aside).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(object_error(e)),
        }
        self.delete_quietly(&home).await?;
        Ok(Some(ObjectQuarantined {
            blobs: self.clone(),
            aside,
            home,
            stored,
        }))
    }

    pub(crate) async fn restore_quarantined(&self) -> Result<usize, StoreError> {
        let mut aside = Vec::new();
        let mut listing = self.store.list(Some(&self.path("gc")));
        while let Some(meta) = listing.next().await {
            aside.push(meta.map_err(object_error)?);
        }
        let mut restored = 0;
        for meta in aside {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Some(home) = self.blob_path(&BlobStore::key_for(name)) else {
                continue;
            };
            ObjectQuarantined {
                blobs: self.clone(),
                stored: system_time(&meta),
                aside: meta.location,
                home,
            }
            .restore()
            .await?;
            restored += 1;
        }
        Ok(restored)
    }

    pub(crate) async fn remove(&self, key: &str) -> Result<(), StoreError> {
        match self.blob_path(key) {
            Some(path) => self.delete_quietly(&path).await,
            None => Ok(()),
        }
    }

    /// Deletes an object; one that is already gone is fine.
    async fn delete_quietly(&self, path: &Path) -> Result<(), StoreError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(e)),
        }
    }
}

fn system_time(meta: &object_store::ObjectMeta) -> SystemTime {
    let millis = meta.last_modified.timestamp_millis();
    if millis >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH
    }
}

fn object_error(error: object_store::Error) -> StoreError {
    StoreError::Object(Box::new(error))
}

/// An upload to object storage in progress.
pub(crate) struct ObjectWriter {
    /// `None` once finished or discarded.
    upload: Option<WriteMultipart>,
    temp: Path,
    hasher: Sha256,
    size: u64,
    blobs: ObjectBlobs,
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("temp", &self.temp)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ObjectWriter {
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| StoreError::Config("the upload is over".to_owned()))?;
        // Back-pressure: at most this many parts in flight before more is buffered.
        upload
            .wait_for_capacity(self.blobs.max_parts_in_flight)
            .await
            .map_err(object_error)?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        upload.write(chunk);
        Ok(())
    }

    pub(crate) fn sha256_hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) async fn finish(mut self) -> Result<StoredBlob, StoreError> {
        let upload = self
            .upload
            .take()
            .ok_or_else(|| StoreError::Config("the upload is over".to_owned()))?;
        // `finish` aborts the multipart upload itself when it fails.
        upload.finish().await.map_err(object_error)?;
        let sha256 = hex::encode(self.hasher.clone().finalize());
        let key = BlobStore::key_for(&sha256);
        let home = self
            .blobs
            .blob_path(&key)
            .expect("a fresh sha256 key is valid");
        let copied = self.blobs.store.copy(&self.temp, &home).await;
        let deleted = self.blobs.delete_quietly(&self.temp).await;
        copied.map_err(object_error)?;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, temp = %self.temp, "could not delete a temporary upload object");
        }
        Ok(StoredBlob {
            key,
            sha256,
            size: self.size,
        })
    }

    pub(crate) async fn discard(mut self) {
        if let Some(upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(error = %e, "could not abort a multipart upload");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // A cancelled upload: abort it in the background (dropping cannot wait).
        if let Some(upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// A blob moved aside on object storage.
#[derive(Debug)]
pub(crate) struct ObjectQuarantined {
    blobs: ObjectBlobs,
    aside: Path,
    home: Path,
    /// When the blob was last stored (a copy aside is new; its original's time is what
    /// counts).
    stored: SystemTime,
}

impl ObjectQuarantined {
    pub(crate) fn modified(&self) -> SystemTime {
        self.stored
    }

    pub(crate) async fn restore(self) -> Result<(), StoreError> {
        match self.blobs.store.head(&self.home).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                self.blobs
                    .store
                    .copy(&self.aside, &self.home)
                    .await
                    .map_err(object_error)?;
            }
            Err(e) => return Err(object_error(e)),
        }
        self.blobs.delete_quietly(&self.aside).await
    }

    pub(crate) async fn delete(self) -> Result<(), StoreError> {
        self.blobs.delete_quietly(&self.aside).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let config = S3Config::from_url("s3://depot-blobs/registry/prod/").unwrap();
        assert_eq!(
            (config.bucket.as_str(), config.prefix.as_str()),
            ("depot-blobs", "registry/prod")
        );
        assert_eq!(S3Config::from_url("s3://depot").unwrap().prefix, "");
        for bad in ["file:///x", "s3://", "s3://UPPER", "s3://a", "s3://a_b/c"] {
            assert!(S3Config::from_url(bad).is_err(), "{bad}");
        }
        let shown = format!(
            "{:?}",
            S3Config {
                secret_access_key: Some("hunter2".into()),
                ..config
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
