//! `depot mirror`: the crates.io cache, offline.
//!
//! - `sync` pre-fetches through a running Depot what lock files (or a list of crates) need, so
//!   builds later find everything in the cache.
//! - `export DIR` writes the cache's index files and `.crate` files with a manifest of their
//!   checksums; `import DIR` verifies every file against the manifest (and every crate against
//!   its index line) before it stores anything, then records what entered like the proxy does.
//!
//! Everything read from a lock file, a directory or a manifest is hostile input: names and
//! versions are validated before they name a file or a URL, and files, counts and directory
//! depth are bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use depot_eventlog::NewEvent;
use depot_events::{Envelope, Event, UpstreamCrateStored, UpstreamIndexStored};
use depot_index::{CrateName, Version};
use depot_store::BlobStore;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::Settings;
use crate::roles::{open_blobs, open_log, open_store};

/// The largest lock file read.
const MAX_LOCK_SIZE: u64 = 16 << 20;
/// The most lock files read from directories.
const MAX_LOCK_FILES: usize = 10_000;
/// How deep directories are searched for lock files.
const MAX_DEPTH: usize = 16;
/// The largest manifest read on import.
const MAX_MANIFEST_SIZE: u64 = 256 << 20;
/// The largest index file imported.
const MAX_INDEX_FILE: u64 = 64 << 20;
/// Events appended per batch on import.
const IMPORT_BATCH: usize = 500;
/// The manifest's format version.
const FORMAT: u32 = 1;
/// The sources a lock file names crates.io by.
const CRATES_IO: [&str; 2] = [
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what}  {{msg}}"
        ))
        .expect("a valid progress template"),
    );
    bar
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A crate version to fetch, with the checksum it must have when the request says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Wanted {
    pub(crate) name: String,
    pub(crate) vers: String,
    pub(crate) cksum: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LockFile {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Debug, Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The crates.io packages of a `Cargo.lock`, validated: a package with an invalid name,
/// version or checksum is an error (the lock file is not what cargo writes).
pub(crate) fn wanted_from_lock(text: &str) -> anyhow::Result<Vec<Wanted>> {
    let lock: LockFile = toml::from_str(text).context("not a Cargo.lock")?;
    let mut wanted = Vec::new();
    for package in lock.package {
        if !package
            .source
            .as_deref()
            .is_some_and(|source| CRATES_IO.contains(&source))
        {
            continue;
        }
        let name = CrateName::parse(&package.name)
            .with_context(|| format!("package `{}`", package.name))?;
        let vers = Version::parse(&package.version)
            .with_context(|| format!("package `{name}` version `{}`", package.version))?;
        if let Some(cksum) = &package.checksum {
            ensure!(
                depot_index::Checksum::parse(cksum).is_ok(),
                "package `{name}` {vers} has a malformed checksum"
            );
        }
        wanted.push(Wanted {
            name: name.to_string(),
            vers: vers.to_string(),
            cksum: package.checksum,
        });
    }
    Ok(wanted)
}

/// The lock files at `path`: the file itself, or every `Cargo.lock` under a directory
/// (`target` and hidden directories skipped), bounded in count and depth.
fn lock_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![(path.to_owned(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() && depth < MAX_DEPTH && !name.starts_with('.') && name != "target" {
                pending.push((entry.path(), depth + 1));
            } else if kind.is_file() && name == "Cargo.lock" {
                found.push(entry.path());
                ensure!(
                    found.len() <= MAX_LOCK_FILES,
                    "more than {MAX_LOCK_FILES} lock files under {}",
                    path.display()
                );
            }
        }
    }
    found.sort();
    Ok(found)
}

/// What `depot mirror sync` is asked to fetch.
#[derive(Debug)]
pub(crate) struct SyncRequest {
    /// The Depot to fetch through (`http://host:port`).
    pub(crate) url: String,
    /// Sent as `Authorization`, for a Depot that requires authentication.
    pub(crate) token: Option<String>,
    /// Lock files or directories of them.
    pub(crate) locks: Vec<PathBuf>,
    /// `NAME` (its newest version that is not yanked) or `NAME@VERSION`.
    pub(crate) crates: Vec<String>,
    /// Downloads at once.
    pub(crate) jobs: usize,
}

/// `depot mirror sync`.
pub(crate) async fn sync(request: SyncRequest) -> anyhow::Result<()> {
    let base = request.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(300))
        .build()?;
    let auth = request.token.clone();
    let fetch = move |path: String| {
        let mut builder = client.get(format!("{base}{path}"));
        if let Some(token) = &auth {
            builder = builder.header(reqwest::header::AUTHORIZATION, token);
        }
        builder.send()
    };

    let mut wanted: BTreeSet<Wanted> = BTreeSet::new();
    for path in &request.locks {
        for file in lock_files(path)? {
            let meta = std::fs::metadata(&file)?;
            ensure!(
                meta.len() <= MAX_LOCK_SIZE,
                "{} is larger than {MAX_LOCK_SIZE} bytes",
                file.display()
            );
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            wanted.extend(wanted_from_lock(&text).with_context(|| format!("{}", file.display()))?);
        }
    }
    for spec in &request.crates {
        let (name, vers) = match spec.split_once('@') {
            Some((name, vers)) => (name, Some(vers)),
            None => (spec.as_str(), None),
        };
        let name = CrateName::parse(name).with_context(|| format!("`{spec}`"))?;
        let path = format!("/crates-io/index/{}", name.index_path());
        let response = fetch(path).await?;
        ensure!(
            response.status() == reqwest::StatusCode::OK,
            "`{name}`: the Depot answered {} for its index file",
            response.status()
        );
        let body = response.bytes().await?;
        let vers = match vers {
            Some(vers) => Version::parse(vers).with_context(|| format!("`{spec}`"))?,
            None => newest_unyanked(&body)
                .with_context(|| format!("`{name}` has no version that is not yanked"))?,
        };
        let Some((line_name, cksum)) = depot_index::upstream::cksum_of(&body, vers.as_str()) else {
            bail!("`{name}` has no version {vers}");
        };
        wanted.insert(Wanted {
            name: line_name,
            vers: vers.to_string(),
            cksum: Some(cksum),
        });
    }

    let total = wanted.len() as u64;
    let progress = bar(total, "crates");
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    futures::stream::iter(wanted)
        .for_each_concurrent(request.jobs.max(1), |want| {
            let (progress, failures, bytes, fetch) =
                (progress.clone(), failures.clone(), bytes.clone(), &fetch);
            async move {
                let path = format!("/crates-io/dl/{}/{}/download", want.name, want.vers);
                let outcome = async {
                    let response = fetch(path).await?;
                    let status = response.status();
                    let body = response.bytes().await?;
                    if status != reqwest::StatusCode::OK {
                        bail!("{status}: {}", String::from_utf8_lossy(&body));
                    }
                    let actual = sha256_hex(&body);
                    if let Some(expected) = &want.cksum {
                        ensure!(
                            actual == *expected,
                            "sha256 {actual}, but the lock file says {expected}"
                        );
                    }
                    Ok(body.len() as u64)
                }
                .await;
                match outcome {
                    Ok(len) => {
                        let total = bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                        progress.set_message(format!("{} KiB", (total + len) / 1024));
                    }
                    Err(e) => failures
                        .lock()
                        .expect("failures lock")
                        .push(format!("{} {}: {e:#}", want.name, want.vers)),
                }
                progress.inc(1);
            }
        })
        .await;
    progress.finish_and_clear();
    let failures = failures.lock().expect("failures lock");
    say(format!(
        "synced {} of {total} crates ({} KiB) through {}",
        total - failures.len() as u64,
        bytes.load(std::sync::atomic::Ordering::Relaxed) / 1024,
        request.url
    ));
    for failure in failures.iter() {
        say(format!("  failed: {failure}"));
    }
    ensure!(
        failures.is_empty(),
        "{} crates could not be synced",
        failures.len()
    );
    Ok(())
}

/// The newest version in an index file body that is not yanked (lines that do not parse are
/// skipped).
fn newest_unyanked(body: &[u8]) -> Option<Version> {
    #[derive(Deserialize)]
    struct Line {
        vers: String,
        #[serde(default)]
        yanked: bool,
    }
    body.split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Line>(line).ok())
        .filter(|line| !line.yanked)
        .filter_map(|line| Version::parse(&line.vers).ok())
        .max_by(|a, b| a.semver().cmp(b.semver()))
}

/// The manifest of an exported cache.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// [`FORMAT`].
    format: u32,
    /// The upstream the cache was filled from.
    upstream: String,
    /// Every index file: `index/<cargo's index path>`.
    index: Vec<ManifestIndex>,
    /// Every `.crate`: `crates/<lowercase name>/<version>.crate`.
    crates: Vec<ManifestCrate>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestIndex {
    name: String,
    sha256: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestCrate {
    name: String,
    vers: String,
    cksum: String,
    size: u64,
}

fn index_file_path(dir: &Path, name: &CrateName) -> PathBuf {
    dir.join("index").join(name.index_path())
}

fn crate_file_path(dir: &Path, name: &CrateName, vers: &Version) -> PathBuf {
    dir.join("crates")
        .join(name.to_lowercase().as_str())
        .join(format!("{vers}.crate"))
}

/// Copies a blob into a new file, returning its sha256.
async fn copy_blob(blobs: &BlobStore, key: &str, to: &Path) -> anyhow::Result<String> {
    let Some((mut reader, _)) = blobs.open_blob(key).await? else {
        bail!("blob {key} is missing from the blob store");
    };
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::fs::File::create(to)
        .await
        .with_context(|| format!("{}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).await?;
    }
    file.sync_all().await?;
    Ok(hex::encode(hasher.finalize()))
}

/// `depot mirror export DIR`: the cache's index files and crates, and their manifest.
pub(crate) async fn export(settings: &Settings, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        ensure!(
            std::fs::read_dir(dir)?.next().is_none(),
            "{} is not empty",
            dir.display()
        );
    }
    let store = open_store(settings, 2).await?;
    let blobs = open_blobs(settings).await?;
    let live = store.active_generation().await?;
    let files = store.upstream_index_files(live).await?;
    let crates = store.upstream_crates(live).await?;
    let progress = bar((files.len() + crates.len()) as u64, "files");
    let mut manifest = Manifest {
        format: FORMAT,
        upstream: settings.upstream_index.clone(),
        index: Vec::with_capacity(files.len()),
        crates: Vec::with_capacity(crates.len()),
    };
    for file in files {
        let name = CrateName::parse(&file.name)?;
        let sha256 = copy_blob(&blobs, &file.blob, &index_file_path(dir, &name)).await?;
        ensure!(
            BlobStore::key_for(&sha256) == file.blob,
            "blob {} of the index file of `{name}` is corrupt",
            file.blob
        );
        manifest.index.push(ManifestIndex {
            name: file.name,
            sha256,
            size: file.size,
            etag: file.etag,
            last_modified: file.last_modified,
        });
        progress.inc(1);
    }
    for krate in crates {
        let name = CrateName::parse(&krate.name)?;
        let vers = Version::parse(&krate.vers)?;
        let key = BlobStore::key_for(&krate.cksum);
        let sha256 = copy_blob(&blobs, &key, &crate_file_path(dir, &name, &vers)).await?;
        ensure!(
            sha256 == krate.cksum,
            "blob {key} of `{name}` {vers} is corrupt"
        );
        manifest.crates.push(ManifestCrate {
            name: krate.name,
            vers: krate.vers,
            cksum: krate.cksum,
            size: krate.size,
        });
        progress.inc(1);
    }
    progress.finish_and_clear();
    tokio::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )
    .await?;
    say(format!(
        "exported {} index files and {} crates to {}",
        manifest.index.len(),
        manifest.crates.len(),
        dir.display()
    ));
    Ok(())
}

/// Reads a whole file of at most `max` bytes.
async fn read_capped(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("{}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).await?;
    ensure!(
        bytes.len() as u64 <= max,
        "{} is larger than {max} bytes",
        path.display()
    );
    Ok(bytes)
}

/// The sha256 and size of a file, read as a stream.
async fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("{}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// `depot mirror import DIR`: verifies everything an export holds, then stores it and records
/// it in the log. Nothing is stored unless every file matches.
pub(crate) async fn import(settings: &Settings, dir: &Path) -> anyhow::Result<()> {
    let manifest: Manifest =
        serde_json::from_slice(&read_capped(&dir.join("manifest.json"), MAX_MANIFEST_SIZE).await?)
            .context("manifest.json")?;
    ensure!(
        manifest.format == FORMAT,
        "manifest format {} is not {FORMAT}",
        manifest.format
    );

    // 1. Verify: names, versions, every file's checksum, every crate against its index line.
    let progress = bar(
        (manifest.index.len() + manifest.crates.len()) as u64,
        "verified",
    );
    let mut bodies: BTreeMap<String, Bytes> = BTreeMap::new();
    for file in &manifest.index {
        let name = CrateName::parse(&file.name).with_context(|| format!("`{}`", file.name))?;
        ensure!(
            name.as_str() == name.to_lowercase().as_str(),
            "index file `{name}` is not named in lowercase"
        );
        let body = read_capped(&index_file_path(dir, &name), MAX_INDEX_FILE).await?;
        let actual = sha256_hex(&body);
        ensure!(
            actual == file.sha256 && body.len() as u64 == file.size,
            "the index file of `{name}` has sha256 {actual} ({} bytes), the manifest says {} ({} \
             bytes): nothing was imported",
            body.len(),
            file.sha256,
            file.size
        );
        bodies.insert(name.to_string(), Bytes::from(body));
        progress.inc(1);
    }
    let mut crates = Vec::with_capacity(manifest.crates.len());
    for krate in &manifest.crates {
        let name = CrateName::parse(&krate.name).with_context(|| format!("`{}`", krate.name))?;
        let vers = Version::parse(&krate.vers).with_context(|| format!("`{name}`"))?;
        let lowercase = name.to_lowercase();
        let listed = bodies
            .get(lowercase.as_str())
            .and_then(|body| depot_index::upstream::cksum_of(body, vers.as_str()));
        ensure!(
            listed
                .as_ref()
                .is_some_and(|(_, cksum)| *cksum == krate.cksum),
            "`{name}` {vers} is not in its exported index file with checksum {}: nothing was \
             imported",
            krate.cksum
        );
        let path = crate_file_path(dir, &name, &vers);
        let (actual, size) = hash_file(&path).await?;
        ensure!(
            actual == krate.cksum && size == krate.size,
            "{} has sha256 {actual}, the manifest says {}: nothing was imported",
            path.display(),
            krate.cksum
        );
        crates.push((name, vers, path));
        progress.inc(1);
    }
    progress.finish_and_clear();

    // 2. Store and record.
    let blobs = open_blobs(settings).await?;
    let backend = open_log(settings).await?;
    let upstream = format!("import from {}", manifest.upstream);
    let mut events = Vec::new();
    let progress = bar(
        (manifest.index.len() + manifest.crates.len()) as u64,
        "stored",
    );
    for file in &manifest.index {
        let body = &bodies[&file.name];
        let stored = blobs.put(body).await?;
        let name = CrateName::parse(&file.name)?;
        events.push(event(
            &name,
            format!("upstream-import {name} {}", stored.sha256),
            Event::UpstreamIndexStored(UpstreamIndexStored {
                name: file.name.clone(),
                blob: stored.key,
                size: stored.size,
                etag: file.etag.clone(),
                last_modified: file.last_modified.clone(),
                upstream: upstream.clone(),
            }),
        ));
        progress.inc(1);
    }
    for ((name, vers, path), krate) in crates.iter().zip(&manifest.crates) {
        let mut writer = blobs.writer().await?;
        let mut file = tokio::fs::File::open(path).await?;
        let mut buffer = vec![0; 1 << 20];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            writer.write(&buffer[..read]).await?;
        }
        if writer.sha256_hex() != krate.cksum {
            writer.discard().await;
            bail!("{} changed while it was imported", path.display());
        }
        let stored = writer.finish().await?;
        events.push(event(
            &name.to_lowercase(),
            format!(
                "upstream-crate {} {vers} {}",
                name.to_lowercase(),
                krate.cksum
            ),
            Event::UpstreamCrateStored(UpstreamCrateStored {
                name: krate.name.clone(),
                vers: vers.to_string(),
                cksum: krate.cksum.clone(),
                size: stored.size,
                upstream: upstream.clone(),
            }),
        ));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let count = events.len();
    let mut batch = Vec::new();
    for event in events {
        batch.push(event);
        if batch.len() == IMPORT_BATCH {
            backend.log.append_batch(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        backend.log.append_batch(batch).await?;
    }
    say(format!(
        "imported {} index files and {} crates from {} ({count} events)",
        manifest.index.len(),
        manifest.crates.len(),
        dir.display()
    ));
    Ok(())
}

fn event(name: &CrateName, msg_id: String, event: Event) -> NewEvent {
    let envelope = Envelope::new("depot:admin", event);
    NewEvent::new(
        depot_events::subject::upstream(name),
        msg_id,
        Bytes::from(envelope.encode()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "consumer"
version = "0.1.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ddc6f9cc94d67c0e21aaf7eda3a010fd3af78ebf6e096aa6e2e13c79749cce4f"

[[package]]
name = "private"
version = "0.3.0"
source = "sparse+https://depot.example.com/index/"
checksum = "ddc6f9cc94d67c0e21aaf7eda3a010fd3af78ebf6e096aa6e2e13c79749cce4f"

[[package]]
name = "git-dep"
version = "0.1.0"
source = "git+https://example.com/x#abc"
"#;

    #[test]
    fn lock_files_name_their_crates_io_packages() {
        let wanted = wanted_from_lock(LOCK).unwrap();
        assert_eq!(
            wanted,
            [Wanted {
                name: "serde".into(),
                vers: "1.0.200".into(),
                cksum: Some(
                    "ddc6f9cc94d67c0e21aaf7eda3a010fd3af78ebf6e096aa6e2e13c79749cce4f".into()
                ),
            }]
        );
    }

    #[test]
    fn hostile_lock_files_are_refused() {
        for (bad, why) in [
            (
                "[[package]]\nname = \"../../etc\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
                "name",
            ),
            (
                "[[package]]\nname = \"a\"\nversion = \"1.0.0/../x\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
                "version",
            ),
            (
                "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"sparse+https://index.crates.io/\"\nchecksum = \"x\"\n",
                "checksum",
            ),
            ("not toml [", "syntax"),
        ] {
            assert!(wanted_from_lock(bad).is_err(), "{why}");
        }
        assert!(wanted_from_lock("").unwrap().is_empty());
    }

    #[test]
    fn newest_version_that_is_not_yanked() {
        let body = br#"{"vers":"1.0.0"}
{"vers":"1.10.0","yanked":true}
{"vers":"1.9.0","yanked":false}
garbage
{"vers":"2.0.0-alpha.1"}
"#;
        assert_eq!(newest_unyanked(body).unwrap().as_str(), "2.0.0-alpha.1");
        assert!(newest_unyanked(b"").is_none());
    }

    proptest::proptest! {
        /// Any text: a result or an error, never a panic; every name and version found valid.
        #[test]
        fn any_lock_text_is_safe(text in ".{0,400}") {
            if let Ok(wanted) = wanted_from_lock(&text) {
                for want in wanted {
                    proptest::prop_assert!(CrateName::parse(&want.name).is_ok());
                    proptest::prop_assert!(Version::parse(&want.vers).is_ok());
                }
            }
        }
    }
}
