//! The content-addressed blob store: `.crate` files, publish metadata and readmes, under keys
//! `sha256/<hex>`.
//!
//! Two backends behind one API: a local directory ([`BlobStore::open`]) and S3-compatible object
//! storage ([`BlobStore::open_s3`], through `object_store`). Writes stream: a [`BlobWriter`]
//! hashes what it is given and sends it on (to a temporary file, or as the parts of a multipart
//! upload), and only [`BlobWriter::finish`] puts the blob at its content address, so a blob is
//! either absent or complete. Reads stream too ([`BlobStore::open_blob`] gives an `AsyncRead`).
//! Downloads use [`BlobStore::read_body`]: a blob of at most [`WHOLE_READ_MAX`] bytes is read
//! whole (one read of a local file, one `GET` body on object storage), a larger one comes as a
//! stream of chunks of at most [`CHUNK_SIZE`] bytes (a local file is read into reused
//! buffers). Memory per upload or download is bounded by the backend's buffers, whatever the
//! blob's size.
//!
//! Nothing outside this module knows where blobs live: the api, the extractor, `verify` and
//! `gc` use only this API.

mod local;
mod object;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::StoreError;

pub use object::S3Config;

/// A readable stored blob.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// Blobs up to this size are read whole by [`BlobStore::read_body`].
pub const WHOLE_READ_MAX: u64 = 256 * 1024;

/// The largest chunk of a streamed [`BlobBody`].
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Chunks of a blob being read.
pub type BlobChunks = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A stored blob read for serving it.
pub enum BlobBody {
    /// The whole blob, read at once (at most [`WHOLE_READ_MAX`] bytes).
    Whole(Bytes),
    /// The blob as a stream of chunks (each at most [`CHUNK_SIZE`] bytes on the local backend)
    /// that add up to exactly `len` bytes; the stream fails rather than yield more or fewer.
    Chunks {
        /// The chunks.
        chunks: BlobChunks,
        /// The blob's size.
        len: u64,
    },
}

impl BlobBody {
    /// The blob's size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            BlobBody::Whole(bytes) => bytes.len() as u64,
            BlobBody::Chunks { len, .. } => *len,
        }
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for BlobBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobBody::Whole(bytes) => f.debug_tuple("Whole").field(&bytes.len()).finish(),
            BlobBody::Chunks { len, .. } => f.debug_struct("Chunks").field("len", len).finish(),
        }
    }
}

/// The blob store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Local(local::LocalBlobs),
    Object(object::ObjectBlobs),
}

/// A blob that has been stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// The store key, `sha256/<hex>`.
    pub key: String,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The hex digest of a well-formed key (`sha256/` and 64 hex digits), or `None`.
pub(crate) fn hex_of_key(key: &str) -> Option<&str> {
    let hex = key.strip_prefix("sha256/")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl BlobStore {
    /// A store on a local directory (created if missing).
    pub async fn open(root: impl Into<PathBuf>) -> Result<BlobStore, StoreError> {
        Ok(BlobStore {
            backend: Backend::Local(local::LocalBlobs::open(root).await?),
        })
    }

    /// A store in an S3-compatible bucket; checks that the bucket answers.
    pub async fn open_s3(config: &S3Config) -> Result<BlobStore, StoreError> {
        Ok(BlobStore {
            backend: Backend::Object(object::ObjectBlobs::open(config).await?),
        })
    }

    /// Where the blobs live, for messages: a directory or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local(local) => local.root().display().to_string(),
            Backend::Object(object) => object.describe(),
        }
    }

    /// The file of a key on the local backend (for tests and tools that inspect the
    /// directory), `None` on object storage or for a malformed key.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        match &self.backend {
            Backend::Local(local) => local.path(key),
            Backend::Object(_) => None,
        }
    }

    /// The directory of the local backend, if it is one.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Local(local) => Some(local.root()),
            Backend::Object(_) => None,
        }
    }

    /// The key of a blob with this sha256.
    pub fn key_for(sha256: &str) -> String {
        format!("sha256/{sha256}")
    }

    /// Starts an upload.
    pub async fn writer(&self) -> Result<BlobWriter, StoreError> {
        Ok(BlobWriter {
            inner: match &self.backend {
                Backend::Local(local) => Writer::Local(local.writer().await?),
                Backend::Object(object) => Writer::Object(object.writer().await?),
            },
        })
    }

    /// Stores `bytes` as one blob (content-addressed, durable once this returns).
    pub async fn put(&self, bytes: &[u8]) -> Result<StoredBlob, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.put(bytes).await,
            Backend::Object(object) => object.put(bytes).await,
        }
    }

    /// Opens a stored blob for reading, with its size; `None` if it does not exist (or the key
    /// is malformed).
    pub async fn open_blob(&self, key: &str) -> Result<Option<(BlobReader, u64)>, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.open_blob(key).await,
            Backend::Object(object) => object.open_blob(key).await,
        }
    }

    /// Reads a stored blob for serving it: whole if it has at most [`WHOLE_READ_MAX`] bytes,
    /// else as a stream of chunks; `None` if it does not exist (or the key is malformed).
    pub async fn read_body(&self, key: &str) -> Result<Option<BlobBody>, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.read_body(key).await,
            Backend::Object(object) => object.read_body(key).await,
        }
    }

    /// The size of a stored blob, without reading it; `None` if it does not exist.
    pub async fn size_of(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.size_of(key).await,
            Backend::Object(object) => object.size_of(key).await,
        }
    }

    /// A short-lived URL from which a client can download the blob directly, where the backend
    /// offers one (presigned `GET` on object storage); `None` on the local backend.
    pub async fn download_url(
        &self,
        key: &str,
        valid_for: Duration,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Local(_) => Ok(None),
            Backend::Object(object) => object.download_url(key, valid_for).await,
        }
    }

    /// Reads a whole blob into memory, refusing one larger than `max_bytes`: `Ok(None)` if it
    /// does not exist, [`StoreError::Corrupt`] if it is too large.
    pub async fn read_capped(
        &self,
        key: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((reader, len)) = self.open_blob(key).await? else {
            return Ok(None);
        };
        if len > max_bytes {
            return Err(StoreError::Corrupt(format!(
                "blob {key} has {len} bytes, more than the {max_bytes} expected at most"
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        reader
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .await?;
        if bytes.len() as u64 > max_bytes {
            return Err(StoreError::Corrupt(format!(
                "blob {key} grew past {max_bytes} bytes while being read"
            )));
        }
        Ok(Some(bytes))
    }

    /// The sha256 (lowercase hex) of a stored blob, read as a stream; `None` if it is missing.
    pub async fn sha256_of(&self, key: &str) -> Result<Option<String>, StoreError> {
        let Some((mut reader, _)) = self.open_blob(key).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = reader.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(Some(hex::encode(hasher.finalize())))
    }

    /// Deletes what interrupted uploads left behind (a process that crashed or was killed
    /// mid-upload) untouched for `older_than`, and returns how many. A live upload writes at
    /// least once per body idle timeout, so `older_than` must exceed that timeout.
    pub async fn sweep_temp(&self, older_than: Duration) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.sweep_temp(older_than).await,
            Backend::Object(object) => object.sweep_temp(older_than).await,
        }
    }

    /// Every stored blob: its key, size and modification time, sorted by key.
    pub async fn list(&self) -> Result<Vec<(String, u64, SystemTime)>, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.list().await,
            Backend::Object(object) => object.list().await,
        }
    }

    /// Moves a stored blob aside, for garbage collection: once moved, a concurrent upload of
    /// the same content stores a new blob at its address and is not affected by what happens
    /// to this one. `None` if the blob is missing.
    pub async fn quarantine(&self, key: &str) -> Result<Option<Quarantined>, StoreError> {
        Ok(match &self.backend {
            Backend::Local(local) => local.quarantine(key).await?.map(Quarantine::Local),
            Backend::Object(object) => object.quarantine(key).await?.map(Quarantine::Object),
        }
        .map(|inner| Quarantined { inner }))
    }

    /// Puts back every blob a garbage collection left moved aside (it was interrupted between
    /// moving a blob and deciding on it). Returns how many were put back.
    pub async fn restore_quarantined(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Local(local) => local.restore_quarantined().await,
            Backend::Object(object) => object.restore_quarantined().await,
        }
    }

    /// Deletes a stored blob (garbage collection of unreferenced blobs).
    pub async fn remove(&self, key: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(local) => local.remove(key).await,
            Backend::Object(object) => object.remove(key).await,
        }
    }
}

/// An upload in progress. Dropping it without [`BlobWriter::finish`] discards what was
/// written (the temporary file is deleted, the multipart upload aborted).
#[derive(Debug)]
pub struct BlobWriter {
    inner: Writer,
}

#[derive(Debug)]
enum Writer {
    Local(local::LocalWriter),
    Object(object::ObjectWriter),
}

impl BlobWriter {
    /// Appends bytes.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        match &mut self.inner {
            Writer::Local(w) => w.write(chunk).await,
            Writer::Object(w) => w.write(chunk).await,
        }
    }

    /// The lowercase hex sha256 of the bytes written so far.
    pub fn sha256_hex(&self) -> String {
        match &self.inner {
            Writer::Local(w) => w.sha256_hex(),
            Writer::Object(w) => w.sha256_hex(),
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        match &self.inner {
            Writer::Local(w) => w.size(),
            Writer::Object(w) => w.size(),
        }
    }

    /// Makes the blob durable at its content address. On failure, what was written is
    /// discarded.
    pub async fn finish(self) -> Result<StoredBlob, StoreError> {
        match self.inner {
            Writer::Local(w) => w.finish().await,
            Writer::Object(w) => w.finish().await,
        }
    }

    /// Abandons the upload and discards what was written (as dropping the writer does).
    pub async fn discard(self) {
        match self.inner {
            Writer::Local(w) => w.discard().await,
            Writer::Object(w) => w.discard().await,
        }
    }
}

/// A blob moved aside by [`BlobStore::quarantine`]: deleted or put back once decided.
#[derive(Debug)]
pub struct Quarantined {
    inner: Quarantine,
}

#[derive(Debug)]
enum Quarantine {
    Local(local::LocalQuarantined),
    Object(object::ObjectQuarantined),
}

impl Quarantined {
    /// When the blob was last stored: a blob stored again just before it was moved aside is
    /// recent.
    pub async fn modified(&self) -> Result<SystemTime, StoreError> {
        match &self.inner {
            Quarantine::Local(q) => q.modified().await,
            Quarantine::Object(q) => Ok(q.modified()),
        }
    }

    /// Puts the blob back at its content address (if the same content was stored there again
    /// meanwhile, that copy stays and this one is dropped).
    pub async fn restore(self) -> Result<(), StoreError> {
        match self.inner {
            Quarantine::Local(q) => q.restore().await,
            Quarantine::Object(q) => q.restore().await,
        }
    }

    /// Deletes the blob for good.
    pub async fn delete(self) -> Result<(), StoreError> {
        match self.inner {
            Quarantine::Local(q) => q.delete().await,
            Quarantine::Object(q) => q.delete().await,
        }
    }
}
