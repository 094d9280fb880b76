//! `depot docs upload`: packs a `target/doc` directory into the archive hosted documentation
//! takes (a gzipped tar of the directory's contents, paths relative to it, in path order,
//! without rustdoc's `.lock`) and uploads it to a running Depot with
//! `PUT /api/v1/crates/{name}/{version}/docs`.
//!
//! Only regular files and directories are packed: a symlink or any other kind of file in the
//! directory is an error (Depot would refuse it), as is a tree deeper than Depot accepts.

use std::io::{Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use flate2::Compression;
use flate2::write::GzEncoder;

/// How deep the directory is walked (Depot's own limit on path components).
const MAX_DEPTH: usize = 32;

/// What `depot docs upload` was asked to do.
#[derive(Debug)]
pub(crate) struct UploadRequest {
    /// The Depot to upload to.
    pub(crate) url: String,
    /// Sent as `Authorization`.
    pub(crate) token: String,
    /// The crate.
    pub(crate) name: String,
    /// The version.
    pub(crate) version: String,
    /// The rustdoc output directory (`target/doc`).
    pub(crate) dir: PathBuf,
}

/// Every regular file under `dir` (relative paths with `/`, sorted), refusing anything else.
fn files_of(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new(), 0_usize)];
    while let Some((path, relative, depth)) = pending.pop() {
        ensure!(
            depth <= MAX_DEPTH,
            "{} is nested more than {MAX_DEPTH} levels deep",
            path.display()
        );
        for entry in std::fs::read_dir(&path).with_context(|| format!("{}", path.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                bail!("{} is not a UTF-8 name", entry.path().display());
            };
            let child = if relative.is_empty() {
                name.to_owned()
            } else {
                format!("{relative}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push((entry.path(), child, depth + 1));
            } else if kind.is_file() {
                if child != ".lock" {
                    found.push((child, entry.path()));
                }
            } else {
                bail!(
                    "{} is neither a regular file nor a directory (symlinks are not uploaded)",
                    entry.path().display()
                );
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Writes the archive of `dir` to a temporary file; returns it, rewound, with its size.
fn pack(dir: &Path) -> anyhow::Result<(std::fs::File, u64, usize)> {
    let files = files_of(dir)?;
    ensure!(!files.is_empty(), "{} holds no files", dir.display());
    let out = tempfile_in_temp_dir()?;
    let mut builder = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    for (relative, path) in &files {
        let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(file.metadata()?.len());
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, relative, file)
            .with_context(|| format!("packing {relative}"))?;
    }
    let mut out = builder.into_inner()?.finish()?;
    let size = out.stream_position()?;
    out.seek(SeekFrom::Start(0))?;
    Ok((out, size, files.len()))
}

/// An anonymous temporary file (deleted when closed).
fn tempfile_in_temp_dir() -> anyhow::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("depot-docs-{}.tar.gz", uuid::Uuid::new_v4()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("{}", path.display()))?;
    // Unlinked at once: the open handle keeps it until the upload is done.
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// `depot docs upload`.
pub(crate) async fn upload(request: UploadRequest) -> anyhow::Result<()> {
    let name = depot_index::CrateName::parse(&request.name)
        .map_err(|e| anyhow::anyhow!("invalid crate name: {e}"))?;
    let version = depot_index::Version::parse(&request.version)
        .map_err(|e| anyhow::anyhow!("invalid version: {e}"))?;
    let dir = request.dir.clone();
    let (file, size, count) = tokio::task::spawn_blocking(move || pack(&dir)).await??;
    println!(
        "packed {count} files of {} ({size} bytes compressed)",
        request.dir.display()
    );
    let base = request.url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(300))
        .build()?;
    let response = client
        .put(format!("{base}/api/v1/crates/{name}/{version}/docs"))
        .header(reqwest::header::AUTHORIZATION, &request.token)
        .header(reqwest::header::CONTENT_TYPE, "application/gzip")
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(tokio::fs::File::from_std(file))
        .send()
        .await
        .context("uploading the docs")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let details: Vec<&str> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["detail"].as_str())
            .collect();
        bail!("the upload was refused ({status}): {}", details.join("; "));
    }
    for warning in body["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", warning.as_str().unwrap_or_default());
    }
    println!(
        "uploaded: {} files, {} bytes; served at {}",
        body["files"],
        body["bytes"],
        body["url"].as_str().unwrap_or_default()
    );
    Ok(())
}
