//! Hosted documentation: the archive of a version's rustdoc output, and its manifest.
//!
//! The archive is a gzipped tar of the *contents* of `target/doc` (what
//! `tar -C target/doc -czf docs.tar.gz .` writes): entry paths are relative to the documentation
//! root, so `foo/index.html`, `static.files/rustdoc-….css`, `search.index/root.js`; a leading
//! `./` is accepted. [`read_docs_archive`] streams it once, through capped readers, and hands
//! each regular file to the caller with its normalized path. It refuses, naming the entry:
//!
//! - paths that are absolute, contain `..`, a backslash, a colon (Windows drive letters and
//!   alternate streams), a control character (NUL included), are not UTF-8, or exceed the
//!   length or depth limits;
//! - entries that are neither regular files nor directories (symlinks, hard links, devices,
//!   FIFOs, sparse files);
//! - a file larger than the per-file limit, a second file with the same path, more entries than
//!   allowed, a decompressed stream over the total limit (a gzip bomb), anything after the single
//!   gzip member, and an archive without files.
//!
//! [`DocsManifest`] is what is stored for a version's docs: path to blob key, size and content
//! type, serialized in path order so the same docs give the same bytes (and blob).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::GzDecoder;
use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::tarball::{CappedReader, SizeLimitExceeded, entry_type_name};

/// The largest manifest stored or read back, in bytes: an archive whose file list would be
/// larger is refused.
pub const MAX_MANIFEST_BYTES: u64 = 32 << 20;

/// Caps for [`read_docs_archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsLimits {
    /// Most bytes the gzip stream may decompress to (tar headers and padding included).
    pub max_unpacked_size: u64,
    /// Largest single file, in bytes (a file is held in memory while it is stored).
    pub max_file_size: u64,
    /// Most tar entries (files and directories).
    pub max_entries: u64,
    /// Longest normalized path, in bytes.
    pub max_path_len: usize,
    /// Most components of a normalized path.
    pub max_depth: usize,
}

impl Default for DocsLimits {
    /// 1 GiB unpacked, 32 MiB per file, 100,000 entries, paths of at most 1024 bytes and 32
    /// components.
    fn default() -> Self {
        DocsLimits {
            max_unpacked_size: 1 << 30,
            max_file_size: 32 << 20,
            max_entries: 100_000,
            max_path_len: 1024,
            max_depth: 32,
        }
    }
}

/// Why a docs archive was refused. `Display` is the message for the uploader.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    /// Not gzip or tar, truncated or corrupt.
    #[error("the docs archive is not a valid gzipped tar file: {0}")]
    Malformed(#[source] io::Error),
    /// The decompressed stream is larger than the limit.
    #[error("the docs archive is larger than {max} bytes when decompressed")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// More entries than the limit.
    #[error("the docs archive has more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: u64,
    },
    /// A file over the per-file limit.
    #[error("the docs archive entry `{path}` is {size} bytes; the most for one file is {max}")]
    FileTooLarge {
        /// The entry path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A path that is not a plain relative path within the limits.
    #[error("the docs archive entry `{path}` has an invalid path: {why}")]
    InvalidPath {
        /// The entry path as in the archive (lossily decoded, control characters escaped).
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An entry that is neither a regular file nor a directory.
    #[error(
        "the docs archive entry `{path}` is a {entry_type} entry; only regular files and \
         directories are allowed"
    )]
    UnexpectedEntryType {
        /// The tar type (`Symlink`, `Link`, `Char`, …).
        entry_type: String,
        /// The entry path.
        path: String,
    },
    /// A file path seen before.
    #[error("the docs archive has the file `{0}` more than once")]
    DuplicatePath(String),
    /// Bytes after the gzip member.
    #[error("the docs archive has data after the end of its gzip stream")]
    TrailingData,
    /// Not a single file.
    #[error("the docs archive holds no files")]
    Empty,
    /// The caller stopped the reading (its [`read_docs_archive`] callback failed).
    #[error("storing the docs failed")]
    Aborted,
}

/// One file of a docs archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsFile {
    /// The normalized relative path (`foo/index.html`).
    pub path: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// What [`read_docs_archive`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocsSummary {
    /// Regular files handed to the callback.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Reads a docs archive (see the module docs), calling `on_file` for each regular file in
/// archive order. Stops at the first problem; `on_file` returning an error stops it with
/// [`DocsError::Aborted`].
pub fn read_docs_archive<E>(
    bytes: impl Read,
    limits: &DocsLimits,
    mut on_file: impl FnMut(DocsFile) -> Result<(), E>,
) -> Result<DocsSummary, DocsError> {
    let reader = CappedReader {
        inner: GzDecoder::new(BufReader::new(bytes)),
        cap: limits.max_unpacked_size,
        read: 0,
    };
    let malformed = |e: io::Error| {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<SizeLimitExceeded>())
        {
            DocsError::TooLarge {
                max: limits.max_unpacked_size,
            }
        } else {
            DocsError::Malformed(e)
        }
    };
    let mut archive = tar::Archive::new(reader);
    let mut summary = DocsSummary { files: 0, bytes: 0 };
    let mut entries: u64 = 0;
    let mut seen: HashSet<String> = HashSet::new();
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        entries += 1;
        if entries > limits.max_entries {
            return Err(DocsError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        let entry_type = entry.header().entry_type();
        if entry_type == EntryType::XGlobalHeader {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let shown = show_path(&raw);
        if !(entry_type.is_file() || entry_type.is_dir()) {
            return Err(DocsError::UnexpectedEntryType {
                entry_type: entry_type_name(entry_type),
                path: shown,
            });
        }
        let path = normalize_path(&raw, limits).map_err(|why| DocsError::InvalidPath {
            path: shown.clone(),
            why,
        })?;
        if entry_type.is_dir() {
            continue;
        }
        if path.is_empty() {
            return Err(DocsError::InvalidPath {
                path: shown,
                why: "a file needs a name",
            });
        }
        let size = entry.header().size().map_err(malformed)?;
        if size > limits.max_file_size {
            return Err(DocsError::FileTooLarge {
                path,
                size,
                max: limits.max_file_size,
            });
        }
        if !seen.insert(path.clone()) {
            return Err(DocsError::DuplicatePath(path));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(limits.max_file_size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(malformed)?;
        let read = bytes.len() as u64;
        if read > limits.max_file_size {
            return Err(DocsError::FileTooLarge {
                path,
                size: read,
                max: limits.max_file_size,
            });
        }
        summary.files += 1;
        summary.bytes += read;
        on_file(DocsFile { path, bytes }).map_err(|_| DocsError::Aborted)?;
    }
    // The rest of the stream (end-of-archive padding, gzip trailer) goes through the cap, so
    // the gzip checksum is verified; anything after the gzip member is refused.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(malformed)?;
    let after = rest
        .inner
        .get_mut()
        .fill_buf()
        .map_err(DocsError::Malformed)?;
    if !after.is_empty() {
        return Err(DocsError::TrailingData);
    }
    if summary.files == 0 {
        return Err(DocsError::Empty);
    }
    Ok(summary)
}

/// The path of an entry as shown in messages: lossy UTF-8, control characters escaped, at most
/// 256 characters.
fn show_path(raw: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().count() > 256 {
        let cut: String = text.chars().take(256).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The normalized form of an archive path: its components joined by `/`, without empty and `.`
/// components (so `./foo//bar/` is `foo/bar`; the root directory is the empty path). Refuses,
/// with the reason, anything that could name a file outside the documentation root or mean
/// different things on different systems.
pub fn normalize_path(raw: &[u8], limits: &DocsLimits) -> Result<String, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "it is not UTF-8")?;
    if text.starts_with('/') {
        return Err("it is absolute");
    }
    if text.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if text.contains('\\') {
        return Err("it contains a backslash");
    }
    if text.contains(':') {
        return Err("it contains a colon");
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it contains `..`"),
            part => parts.push(part),
        }
    }
    if parts.len() > limits.max_depth {
        return Err("it is nested too deeply");
    }
    let path = parts.join("/");
    if path.len() > limits.max_path_len {
        return Err("it is too long");
    }
    Ok(path)
}

/// The files of a version's docs, stored as a blob (JSON, in path order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocsManifest {
    /// Normalized path to the file.
    pub files: BTreeMap<String, DocsManifestFile>,
}

/// One file of a [`DocsManifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocsManifestFile {
    /// The blob store key (`sha256/<hex>`) of its bytes.
    pub blob: String,
    /// Its size in bytes.
    pub size: u64,
    /// The `Content-Type` it is served with.
    pub content_type: String,
}

impl DocsManifest {
    /// The total size of the files.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// The page a visit to the docs' root goes to: `{lib}/index.html` for the crate's library
    /// name (the crate name with `-` as `_`) if it exists, else the first `*/index.html` one
    /// level down, else a root `index.html`.
    pub fn entry_page(&self, crate_name: &str) -> Option<&str> {
        let lib = format!("{}/index.html", crate_name.replace('-', "_"));
        if let Some((path, _)) = self.files.get_key_value(&lib) {
            return Some(path);
        }
        self.files
            .keys()
            .find(|p| p.matches('/').count() == 1 && p.ends_with("/index.html"))
            .or_else(|| self.files.get_key_value("index.html").map(|(p, _)| p))
            .map(String::as_str)
    }
}

/// The `Content-Type` a docs file is served with, by its extension (what rustdoc writes, plus
/// common images and text); anything else is `application/octet-stream`.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "txt" | "md" | "rs" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_or_refused() {
        let limits = DocsLimits::default();
        let ok = |p: &str| normalize_path(p.as_bytes(), &limits).unwrap();
        assert_eq!(ok("./foo//index.html"), "foo/index.html");
        assert_eq!(ok("./"), "");
        assert_eq!(ok("static.files/a.css"), "static.files/a.css");
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a\\b",
            "C:/x",
            "a\0b",
            "a\nb",
        ] {
            assert!(normalize_path(bad.as_bytes(), &limits).is_err(), "{bad:?}");
        }
        assert!(normalize_path(b"\xff", &limits).is_err());
        assert!(normalize_path("a/".repeat(40).as_bytes(), &limits).is_err());
        assert!(normalize_path("a".repeat(2000).as_bytes(), &limits).is_err());
    }

    #[test]
    fn entry_page_prefers_the_library() {
        let file = || DocsManifestFile {
            blob: String::new(),
            size: 0,
            content_type: String::new(),
        };
        let mut manifest = DocsManifest::default();
        manifest.files.insert("index.html".into(), file());
        assert_eq!(manifest.entry_page("my-crate"), Some("index.html"));
        manifest.files.insert("aaa/index.html".into(), file());
        assert_eq!(manifest.entry_page("my-crate"), Some("aaa/index.html"));
        manifest.files.insert("my_crate/index.html".into(), file());
        assert_eq!(manifest.entry_page("my-crate"), Some("my_crate/index.html"));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("static.files/x.woff2"), "font/woff2");
        assert_eq!(content_type(".lock"), "application/octet-stream");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
