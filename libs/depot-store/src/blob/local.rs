//! The blob store on a local directory.
//!
//! Uploads are written to a temporary file while their sha256 is computed, then renamed to
//! `sha256/<ab>/<cd>/<hex>`; the rename is atomic, so a blob is either absent or complete. An
//! upload of at most [`MEMORY_MAX`] bytes is held in memory and written, fsynced and renamed in
//! one blocking task when it is finished, instead of one task per file operation.
//!
//! A temporary file never outlives its upload: a [`LocalWriter`] that is dropped without
//! [`LocalWriter::finish`] (an error, a timeout, a client that went away) removes its file, and
//! [`LocalBlobs::sweep_temp`] removes what a crashed process left behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::fs::{self, File};
use tokio::io::AsyncWriteExt;

use bytes::{Bytes, BytesMut};

use super::{BlobBody, BlobChunks, BlobReader, CHUNK_SIZE, StoredBlob, WHOLE_READ_MAX};
use crate::StoreError;

/// Blobs under one directory.
#[derive(Debug, Clone)]
pub(crate) struct LocalBlobs {
    root: PathBuf,
}

/// The most bytes an upload holds in memory before it goes to a temporary file (so uploads in
/// flight hold at most this much each; the api bounds how many are in flight).
pub(crate) const MEMORY_MAX: usize = 64 * 1024;

/// An upload in progress: bytes go into the hash and to memory, or, past [`MEMORY_MAX`], to a
/// temporary file. Dropping it without [`LocalWriter::finish`] deletes the temporary file.
#[derive(Debug)]
pub(crate) struct LocalWriter {
    sink: Sink,
    hasher: Sha256,
    size: u64,
    root: PathBuf,
}

/// Where an upload's bytes are.
#[derive(Debug)]
enum Sink {
    Memory(BytesMut),
    File(File, TempFile),
}

/// A temporary file that is deleted when dropped, unless it was kept.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // One unlink, on whichever thread drops the upload: cheap enough for `Drop`, and it
            // runs even when the request future is cancelled.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl LocalBlobs {
    /// A store rooted at `root` (created if missing).
    pub(crate) async fn open(root: impl Into<PathBuf>) -> Result<LocalBlobs, StoreError> {
        let root = root.into();
        fs::create_dir_all(root.join("tmp")).await?;
        fs::create_dir_all(root.join("sha256")).await?;
        Ok(LocalBlobs { root })
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Starts an upload.
    pub(crate) async fn writer(&self) -> Result<LocalWriter, StoreError> {
        Ok(LocalWriter {
            sink: Sink::Memory(BytesMut::new()),
            hasher: Sha256::new(),
            size: 0,
            root: self.root.clone(),
        })
    }

    /// Stores `bytes` as one blob (content-addressed, durable once this returns).
    pub(crate) async fn put(&self, bytes: &[u8]) -> Result<StoredBlob, StoreError> {
        let mut writer = self.writer().await?;
        if let Err(e) = writer.write(bytes).await {
            writer.discard().await;
            return Err(e);
        }
        writer.finish().await
    }

    /// Deletes temporary upload files not modified for `older_than` (left by a process that
    /// crashed or was killed mid-upload) and returns how many. A live upload writes its file at
    /// least once per body idle timeout, so `older_than` must exceed that timeout.
    pub(crate) async fn sweep_temp(&self, older_than: Duration) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let mut removed = 0;
        let mut entries = fs::read_dir(self.root.join("tmp")).await?;
        while let Some(entry) = entries.next_entry().await? {
            let is_upload = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with("upload-"));
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let age = meta
                .modified()
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .unwrap_or_default();
            if is_upload && meta.is_file() && age >= older_than {
                match fs::remove_file(entry.path()).await {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    /// The file path of a key, or `None` for a malformed key.
    pub(crate) fn path(&self, key: &str) -> Option<PathBuf> {
        let hex = super::hex_of_key(key)?;
        Some({
            self.root
                .join("sha256")
                .join(&hex[..2])
                .join(&hex[2..4])
                .join(hex)
        })
    }

    /// Opens a stored blob for reading; `None` if it does not exist.
    pub(crate) async fn open_blob(
        &self,
        key: &str,
    ) -> Result<Option<(BlobReader, u64)>, StoreError> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        match File::open(&path).await {
            Ok(file) => {
                let len = file.metadata().await?.len();
                Ok(Some((Box::pin(file), len)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a stored blob for serving: whole (one read) up to [`WHOLE_READ_MAX`] bytes, else as
    /// chunks read into reused buffers of [`CHUNK_SIZE`]. The file is opened and, if small,
    /// read in one blocking task.
    pub(crate) async fn read_body(&self, key: &str) -> Result<Option<BlobBody>, StoreError> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let opened = tokio::task::spawn_blocking(move || open_for_body(&path))
            .await
            .map_err(std::io::Error::other)??;
        Ok(opened.map(|opened| match opened {
            Opened::Whole(bytes) => BlobBody::Whole(Bytes::from(bytes)),
            Opened::Large(file, len) => BlobBody::Chunks {
                chunks: file_chunks(file, len),
                len,
            },
        }))
    }

    /// The size of a stored blob; `None` if it does not exist.
    pub(crate) async fn size_of(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        match fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored blob: its key, size and modification time.
    pub(crate) async fn list(
        &self,
    ) -> Result<Vec<(String, u64, std::time::SystemTime)>, StoreError> {
        let mut blobs = Vec::new();
        let mut dirs = vec![self.root.join("sha256")];
        while let Some(dir) = dirs.pop() {
            let mut entries = match fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let meta = entry.metadata().await?;
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if let Some(name) = entry.file_name().to_str() {
                    let key = super::BlobStore::key_for(name);
                    if self.path(&key).is_some() {
                        blobs.push((key, meta.len(), meta.modified()?));
                    }
                }
            }
        }
        blobs.sort();
        Ok(blobs)
    }

    /// Moves a stored blob aside (to `gc/<hex>` under the root), for garbage collection: once
    /// moved, a concurrent upload of the same content stores a new file at the blob's path and
    /// is not affected by what happens to this one. `None` if the blob is missing.
    pub(crate) async fn quarantine(
        &self,
        key: &str,
    ) -> Result<Option<LocalQuarantined>, StoreError> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let Some(name) = path.file_name() else {
            return Ok(None);
        };
        let aside = self.root.join(QUARANTINE_DIR).join(name);
        fs::create_dir_all(self.root.join(QUARANTINE_DIR)).await?;
        match fs::rename(&path, &aside).await {
            Ok(()) => Ok(Some(LocalQuarantined {
                path: aside,
                home: path,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Puts back every blob a garbage collection left moved aside (it was interrupted between
    /// moving a blob and deciding on it). Returns how many were put back.
    pub(crate) async fn restore_quarantined(&self) -> Result<usize, StoreError> {
        let mut entries = match fs::read_dir(self.root.join(QUARANTINE_DIR)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut restored = 0;
        while let Some(entry) = entries.next_entry().await? {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(home) = self.path(&super::BlobStore::key_for(&name)) else {
                continue;
            };
            LocalQuarantined {
                path: entry.path(),
                home,
            }
            .restore()
            .await?;
            restored += 1;
        }
        Ok(restored)
    }

    /// Deletes a stored blob (for garbage collection of unreferenced blobs).
    pub(crate) async fn remove(&self, key: &str) -> Result<(), StoreError> {
        if let Some(path) = self.path(key) {
            match fs::remove_file(path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Where garbage collection moves blobs it is about to delete, under the root.
const QUARANTINE_DIR: &str = "gc";

/// A blob moved aside by [`LocalBlobs::quarantine`]: deleted or put back once decided.
#[derive(Debug)]
pub(crate) struct LocalQuarantined {
    /// Where it is now.
    path: PathBuf,
    /// Its content address.
    home: PathBuf,
}

impl LocalQuarantined {
    /// When the moved file was last written: a blob stored again just before it was moved
    /// aside is recent.
    pub(crate) async fn modified(&self) -> Result<std::time::SystemTime, StoreError> {
        Ok(fs::metadata(&self.path).await?.modified()?)
    }

    /// Puts the blob back at its content address (if the same content was stored there again
    /// meanwhile, that copy stays and this one is dropped).
    pub(crate) async fn restore(self) -> Result<(), StoreError> {
        if fs::try_exists(&self.home).await? {
            fs::remove_file(&self.path).await?;
            return Ok(());
        }
        if let Some(parent) = self.home.parent() {
            fs::create_dir_all(parent).await?;
        }
        fs::rename(&self.path, &self.home).await?;
        Ok(())
    }

    /// Deletes the blob for good.
    pub(crate) async fn delete(self) -> Result<(), StoreError> {
        match fs::remove_file(&self.path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl LocalWriter {
    /// Appends bytes.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        match &mut self.sink {
            Sink::Memory(held) if held.len() + chunk.len() <= MEMORY_MAX => {
                held.extend_from_slice(chunk);
            }
            Sink::Memory(held) => {
                let held = std::mem::take(held);
                let (mut file, temp) = create_temp(&self.root)?;
                // The guard owns the file before anything is written to it.
                let written = async {
                    file.write_all(&held).await?;
                    file.write_all(chunk).await
                };
                let result = written.await;
                self.sink = Sink::File(file, temp);
                result?;
            }
            Sink::File(file, _) => file.write_all(chunk).await?,
        }
        Ok(())
    }

    /// The lowercase hex sha256 of the bytes written so far.
    pub(crate) fn sha256_hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Bytes written so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Makes the blob durable and moves it to its content address. If a blob with the same
    /// content exists already, it is replaced by the new (identical, durable) file. On failure
    /// (a full disk shows here, when buffered bytes are flushed) the temporary file is deleted.
    /// (The writer's guard does that: the file is kept only once it has been renamed.) The
    /// file work after the bytes are written runs in one blocking task, which completes even
    /// if the caller is cancelled.
    pub(crate) async fn finish(mut self) -> Result<StoredBlob, StoreError> {
        let sha256 = hex::encode(self.hasher.finalize_reset());
        let key = super::BlobStore::key_for(&sha256);
        let store = LocalBlobs {
            root: self.root.clone(),
        };
        let path = store.path(&key).expect("a fresh sha256 key is valid");
        let root = self.root;
        let persisted = match self.sink {
            Sink::Memory(held) => tokio::task::spawn_blocking(move || {
                use std::io::Write as _;
                let (file, temp) = create_temp_std(&root)?;
                let mut file = file;
                file.write_all(&held)?;
                file.sync_all()?;
                persist(temp, &path)
            }),
            Sink::File(mut file, temp) => {
                file.flush().await?;
                let file = file.into_std().await;
                tokio::task::spawn_blocking(move || {
                    file.sync_all()?;
                    persist(temp, &path)
                })
            }
        };
        persisted.await.map_err(std::io::Error::other)??;
        Ok(StoredBlob {
            key,
            sha256,
            size: self.size,
        })
    }

    /// Abandons the upload and deletes the temporary file (as dropping the writer does).
    pub(crate) async fn discard(self) {
        if let Sink::File(_, mut temp) = self.sink {
            temp.keep = true;
            let _ = fs::remove_file(temp.path()).await;
        }
    }
}

/// A blob file opened for serving.
enum Opened {
    /// Its bytes (a small blob).
    Whole(Vec<u8>),
    /// The open file and its size (a large blob).
    Large(std::fs::File, u64),
}

/// A new temporary upload file under `root`, with the guard that deletes it.
fn create_temp_std(root: &Path) -> std::io::Result<(std::fs::File, TempFile)> {
    let path = root
        .join("tmp")
        .join(format!("upload-{}", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path)?;
    Ok((file, TempFile { path, keep: false }))
}

/// [`create_temp_std`] for asynchronous writes. Created synchronously (one open(2)): an
/// asynchronous create runs on a blocking thread that a cancelled request cannot stop, and
/// could leave a file that no guard owns.
fn create_temp(root: &Path) -> std::io::Result<(File, TempFile)> {
    let (file, temp) = create_temp_std(root)?;
    Ok((File::from_std(file), temp))
}

/// Moves a durable temporary file to `path` and makes the rename durable (blocking).
fn persist(mut temp: TempFile, path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(temp.path(), path)?;
    temp.keep = true;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        // Persist the rename itself.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Opens a blob file and reads it if it is small (blocking).
fn open_for_body(path: &Path) -> std::io::Result<Option<Opened>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > WHOLE_READ_MAX {
        return Ok(Some(Opened::Large(file, len)));
    }
    // Exactly `len` bytes: the buffer is allocated once, and `take` ends the read without a
    // further call once they are in.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(short_read(len, bytes.len() as u64));
    }
    Ok(Some(Opened::Whole(bytes)))
}

fn short_read(expected: u64, got: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("blob file ended after {got} of its {expected} bytes"),
    )
}

/// A chunk being read on a blocking thread: the file, the buffer and the outcome come back.
type ChunkRead = tokio::task::JoinHandle<(std::fs::File, BytesMut, std::io::Result<()>)>;

/// Reads the next `want` bytes of `file` into `buffer` on a blocking thread. `reserve` takes
/// back the buffer's allocation when the chunk last read into it has been sent and dropped; the
/// read fills its spare capacity directly (a `Vec` taken from the buffer without copying), so
/// the bytes are neither zeroed first nor copied again.
fn read_chunk(file: std::fs::File, mut buffer: BytesMut, want: usize) -> ChunkRead {
    buffer.clear();
    buffer.reserve(want);
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut vec = Vec::from(buffer);
        vec.clear();
        let read = (&file)
            .take(want as u64)
            .read_to_end(&mut vec)
            .and_then(|n| {
                if n == want {
                    Ok(())
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                }
            });
        // Both conversions move the allocation (no copy).
        (file, BytesMut::from(Bytes::from(vec)), read)
    })
}

/// The chunks of a large blob file, each at most [`CHUNK_SIZE`], exactly `len` bytes or an
/// error. One chunk is read ahead while the previous one is being sent, into two buffers used
/// in turn, so a download holds at most two chunks whatever the blob's size.
fn file_chunks(file: std::fs::File, len: u64) -> BlobChunks {
    struct State {
        /// The read in progress; `None` once every byte was read.
        pending: Option<(ChunkRead, usize)>,
        /// The other buffer (its last chunk may still be in flight).
        spare: BytesMut,
        /// Bytes not yet asked of a read.
        unrequested: u64,
        /// Bytes delivered so far.
        delivered: u64,
        expected: u64,
    }
    fn next_want(unrequested: u64) -> usize {
        usize::try_from(unrequested.min(CHUNK_SIZE as u64)).unwrap_or(CHUNK_SIZE)
    }
    let want = next_want(len);
    let state = State {
        pending: (want > 0).then(|| (read_chunk(file, BytesMut::new(), want), want)),
        spare: BytesMut::new(),
        unrequested: len - want as u64,
        delivered: 0,
        expected: len,
    };
    Box::pin(futures::stream::try_unfold(state, |mut state| async move {
        let Some((pending, want)) = state.pending.take() else {
            return Ok(None);
        };
        let (file, mut buffer, read) = pending.await.map_err(std::io::Error::other)?;
        if let Err(e) = read {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                short_read(state.expected, state.delivered)
            } else {
                e
            });
        }
        let chunk = buffer.split().freeze();
        state.delivered += want as u64;
        if state.unrequested > 0 {
            let next = next_want(state.unrequested);
            let spare = std::mem::replace(&mut state.spare, buffer);
            state.pending = Some((read_chunk(file, spare, next), next));
            state.unrequested -= next as u64;
        }
        Ok(Some((chunk, state)))
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::{BlobStore, StoredBlob};

    #[tokio::test]
    async fn stores_by_content_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let mut w = store.writer().await.unwrap();
        w.write(b"hello ").await.unwrap();
        w.write(b"world").await.unwrap();
        let blob = w.finish().await.unwrap();
        assert_eq!(
            blob.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(blob.size, 11);
        assert_eq!(
            std::fs::read(store.local_path(&blob.key).unwrap()).unwrap(),
            b"hello world"
        );
        assert_eq!(
            store.sha256_of(&blob.key).await.unwrap().unwrap(),
            blob.sha256
        );
        assert!(store.local_path("sha256/../../etc/passwd").is_none());
        assert!(
            store
                .open_blob("sha256/../../etc/passwd")
                .await
                .unwrap()
                .is_none()
        );
        let mut w = store.writer().await.unwrap();
        w.write(&[7; super::MEMORY_MAX + 1]).await.unwrap();
        w.discard().await;
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    fn temp_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).unwrap().count()
    }

    #[tokio::test]
    async fn a_dropped_writer_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        // Held in memory while it is small…
        let mut w = store.writer().await.unwrap();
        w.write(b"half an upload").await.unwrap();
        assert_eq!(temp_files(dir.path()), 0);
        // …and in a temporary file past `MEMORY_MAX`.
        w.write(&[7; super::MEMORY_MAX]).await.unwrap();
        assert_eq!(temp_files(dir.path()), 1);
        drop(w);
        assert_eq!(temp_files(dir.path()), 0);

        // Cancelled mid-upload, as when a client goes away.
        let task = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut w = store.writer().await.unwrap();
                w.write(&[7; super::MEMORY_MAX + 1]).await.unwrap();
                std::future::pending::<()>().await;
            })
        };
        while temp_files(dir.path()) == 0 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        assert_eq!(temp_files(dir.path()), 0);

        // A finished blob is kept.
        let mut w = store.writer().await.unwrap();
        w.write(b"kept").await.unwrap();
        let blob = w.finish().await.unwrap();
        assert_eq!(temp_files(dir.path()), 0);
        assert!(store.local_path(&blob.key).unwrap().exists());
    }

    #[tokio::test]
    async fn sweeping_removes_only_old_upload_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let stale = dir.path().join("tmp").join("upload-left-by-a-crash");
        std::fs::write(&stale, b"x").unwrap();
        let other = dir.path().join("tmp").join("not-an-upload");
        std::fs::write(&other, b"x").unwrap();
        let mut live = store.writer().await.unwrap();
        live.write(&[7; super::MEMORY_MAX + 1]).await.unwrap();
        assert_eq!(
            store.sweep_temp(Duration::from_secs(3600)).await.unwrap(),
            0
        );
        assert_eq!(store.sweep_temp(Duration::ZERO).await.unwrap(), 2);
        assert!(!stale.exists() && other.exists());
        drop(live);
        assert_eq!(temp_files(dir.path()), 1);
    }

    async fn collect(body: crate::BlobBody) -> (bool, Vec<u8>, usize) {
        use futures::TryStreamExt as _;
        match body {
            crate::BlobBody::Whole(bytes) => (true, bytes.to_vec(), bytes.len()),
            crate::BlobBody::Chunks { mut chunks, len } => {
                let mut all = Vec::new();
                let mut largest = 0;
                while let Some(chunk) = chunks.try_next().await.unwrap() {
                    largest = largest.max(chunk.len());
                    all.extend_from_slice(&chunk);
                }
                assert_eq!(all.len() as u64, len);
                (false, all, largest)
            }
        }
    }

    #[tokio::test]
    async fn small_blobs_are_read_whole_and_large_ones_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let max = crate::WHOLE_READ_MAX as usize;
        for size in [
            0,
            1,
            4096,
            max - 1,
            max,
            max + 1,
            3 * crate::CHUNK_SIZE + 17,
        ] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let blob = store_bytes(&store, &bytes).await;
            assert_eq!(store.size_of(&blob.key).await.unwrap(), Some(size as u64));
            let body = store.read_body(&blob.key).await.unwrap().unwrap();
            assert_eq!(body.len(), size as u64);
            let (whole, read, largest) = collect(body).await;
            assert_eq!(whole, size <= max, "{size}");
            assert!(largest <= crate::CHUNK_SIZE, "{size}: a chunk of {largest}");
            assert!(read == bytes, "{size}: the bytes differ");
        }
        let missing = crate::BlobStore::key_for(&"0".repeat(64));
        assert!(store.read_body(&missing).await.unwrap().is_none());
        assert!(store.size_of(&missing).await.unwrap().is_none());
        assert!(store.read_body("sha256/../x").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_blob_file_that_shrinks_fails_the_stream() {
        use futures::TryStreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let blob = store_bytes(&store, &vec![9u8; 2 * crate::CHUNK_SIZE + 1]).await;
        let Some(crate::BlobBody::Chunks { mut chunks, len }) =
            store.read_body(&blob.key).await.unwrap()
        else {
            panic!("a large blob is streamed");
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(store.local_path(&blob.key).unwrap())
            .unwrap()
            .set_len(10)
            .unwrap();
        let mut got = 0u64;
        let error = loop {
            match chunks.try_next().await {
                Ok(Some(chunk)) => got += chunk.len() as u64,
                Ok(None) => panic!("the stream ended after {got} of {len} bytes without an error"),
                Err(e) => break e,
            }
        };
        assert!(got < len);
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    async fn store_bytes(store: &BlobStore, bytes: &[u8]) -> StoredBlob {
        let mut w = store.writer().await.unwrap();
        w.write(bytes).await.unwrap();
        w.finish().await.unwrap()
    }

    #[tokio::test]
    async fn quarantine_moves_aside_and_puts_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let blob = store_bytes(&store, b"content").await;
        let listed = |store: &BlobStore| {
            let store = store.clone();
            async move { store.list().await.unwrap().len() }
        };

        // Moved aside: not listed, then deleted for good.
        let aside = store.quarantine(&blob.key).await.unwrap().unwrap();
        assert_eq!(listed(&store).await, 0);
        assert!(store.quarantine(&blob.key).await.unwrap().is_none());
        aside.delete().await.unwrap();
        assert_eq!(listed(&store).await, 0);
        assert_eq!(store.restore_quarantined().await.unwrap(), 0);

        // Stored again while moved aside: the new copy stays, putting back drops the old one.
        let blob = store_bytes(&store, b"content").await;
        let aside = store.quarantine(&blob.key).await.unwrap().unwrap();
        store_bytes(&store, b"content").await;
        aside.restore().await.unwrap();
        assert_eq!(listed(&store).await, 1);
        assert_eq!(
            std::fs::read(store.local_path(&blob.key).unwrap()).unwrap(),
            b"content"
        );

        // Left aside by an interrupted run: put back.
        let _aside = store.quarantine(&blob.key).await.unwrap().unwrap();
        assert_eq!(store.restore_quarantined().await.unwrap(), 1);
        assert_eq!(listed(&store).await, 1);
        assert!(store.quarantine("sha256/../../x").await.unwrap().is_none());
    }
}
