//! `.crate` inspection: archive rules (PROTOCOL.md §6 step 7), manifest checks (§6 step 8) and
//! metadata extraction.
//!
//! [`inspect`] streams the archive once. Decompression goes through a capped reader, so a
//! gzip bomb fails after `max_unpacked_size` bytes; the manifest and the readme are read through
//! their own caps. Every entry must be a regular file or a directory under `{name}-{vers}/`, no
//! two entries may have the same path, also not when compared case-insensitively (they would
//! overwrite each other when unpacked on macOS or Windows), the package root must hold exactly
//! one `Cargo.toml`, and nothing may follow the single gzip member (no trailing bytes, no second
//! member that other gzip readers would decompress as well).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, BufRead, BufReader, Read};

use depot_index::{FeatureMap, IndexDependency, IndexEntry};
use flate2::bufread::GzDecoder;
use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::manifest::{Manifest, Readme, parse_manifest};
use crate::platform::PlatformError;
use crate::publish::PublishLimits;

/// Caps and registry policy for [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarballLimits {
    /// Most bytes the gzip stream may decompress to (headers and padding included).
    pub max_unpacked_size: u64,
    /// Most tar entries.
    pub max_entries: u64,
    /// Largest `Cargo.toml`, in bytes.
    pub max_manifest_bytes: u64,
    /// Most readme bytes kept; a longer readme is truncated.
    pub max_readme_bytes: u64,
    /// Most bytes kept, in total, of files that precede `Cargo.toml` in the archive, in case
    /// one of them turns out to be the readme. cargo sorts entries by path, so this only matters
    /// for readmes whose path sorts before `Cargo.toml` (e.g. `CRATE-README.md`).
    pub max_readme_lookbehind_bytes: u64,
    /// Index URLs that mean "this registry". A manifest dependency whose `registry-index` (or,
    /// without one, crates.io) is listed gets no `registry` in the index. Empty by default;
    /// set it to crates.io's URLs to read crates.io crates as crates.io does.
    pub own_index_urls: Vec<String>,
    /// Limits on the values read from `Cargo.toml`.
    pub manifest: ManifestLimits,
}

/// Limits on what Depot keeps from a `Cargo.toml`. The counts and lengths the publish metadata
/// is held to ([`PublishLimits`]) apply to the same values in the manifest; the other strings
/// get bounds of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Most keywords ([`PublishLimits::max_keywords`]).
    pub max_keywords: usize,
    /// Longest keyword, in bytes ([`PublishLimits::max_keyword_len`]).
    pub max_keyword_len: usize,
    /// Most categories ([`PublishLimits::max_categories`]).
    pub max_categories: usize,
    /// Most features ([`PublishLimits::max_features`]).
    pub max_features: usize,
    /// Most values one feature may enable ([`PublishLimits::max_feature_values`]).
    pub max_feature_values: usize,
    /// Most dependencies, all kinds and targets together ([`PublishLimits::max_dependencies`]).
    pub max_dependencies: usize,
    /// Longest description, in bytes ([`PublishLimits::max_description_bytes`]).
    pub max_description_bytes: usize,
    /// Most authors.
    pub max_authors: usize,
    /// Longest `license`, `license-file`, `repository`, `homepage`, `documentation`, `edition`,
    /// `links`, `readme` path, author, category, or feature name or value, in bytes.
    pub max_field_bytes: usize,
}

impl ManifestLimits {
    /// The manifest limits that match publish metadata limits (the other bounds default).
    pub fn from_publish(limits: &PublishLimits) -> ManifestLimits {
        ManifestLimits {
            max_keywords: limits.max_keywords,
            max_keyword_len: limits.max_keyword_len,
            max_categories: limits.max_categories,
            max_features: limits.max_features,
            max_feature_values: limits.max_feature_values,
            max_dependencies: limits.max_dependencies,
            max_description_bytes: limits.max_description_bytes,
            ..ManifestLimits::default()
        }
    }
}

impl Default for ManifestLimits {
    /// [`PublishLimits::default`]'s values; at most 100 authors and 1024-byte fields.
    fn default() -> Self {
        let publish = PublishLimits::default();
        ManifestLimits {
            max_keywords: publish.max_keywords,
            max_keyword_len: publish.max_keyword_len,
            max_categories: publish.max_categories,
            max_features: publish.max_features,
            max_feature_values: publish.max_feature_values,
            max_dependencies: publish.max_dependencies,
            max_description_bytes: publish.max_description_bytes,
            max_authors: 100,
            max_field_bytes: 1024,
        }
    }
}

impl Default for TarballLimits {
    fn default() -> Self {
        TarballLimits {
            max_unpacked_size: 512 * 1024 * 1024,
            max_entries: 100_000,
            max_manifest_bytes: 10 * 1024 * 1024,
            max_readme_bytes: 1024 * 1024,
            max_readme_lookbehind_bytes: 4 * 1024 * 1024,
            own_index_urls: Vec::new(),
            manifest: ManifestLimits::default(),
        }
    }
}

/// Why a `.crate` was refused. `Display` is the message shown to the cargo user.
#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    /// Not gzip/tar, truncated, corrupt, or larger than `max_unpacked_size` once decompressed.
    #[error("uploaded tarball is malformed or too large when decompressed")]
    Malformed(#[source] io::Error),
    /// More than `max_entries` entries.
    #[error("uploaded tarball has more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: u64,
    },
    /// An entry path outside `{name}-{vers}/`, with a `..` component, or not UTF-8.
    #[error("invalid path found: {0}")]
    InvalidPath(String),
    /// An entry that is neither a regular file nor a directory.
    #[error("unexpected tar entry type {entry_type} found: {path}")]
    UnexpectedEntryType {
        /// The tar type (`Symlink`, `Link`, `Char`, `Block`, `Fifo`, `GNUSparse`, …).
        entry_type: String,
        /// The entry path.
        path: String,
    },
    /// A pax `size` record that disagrees with the tar header.
    #[error("pax size `{pax_size}` of {path} does not match its tar header size {header_size}")]
    PaxSizeMismatch {
        /// The entry path.
        path: String,
        /// The pax record's value.
        pax_size: String,
        /// The header's size.
        header_size: u64,
    },
    /// No `Cargo.toml` in the package root.
    #[error("missing `Cargo.toml` manifest in the package root")]
    MissingManifest,
    /// A root manifest named other than `Cargo.toml` (e.g. `cargo.toml`, `CARGO.TOML`).
    #[error("manifest is incorrectly cased: `{0}` (expected `Cargo.toml`)")]
    IncorrectlyCasedManifest(String),
    /// Several root files named `Cargo.toml` in any case.
    #[error("more than one Cargo.toml manifest in tarball: {}", .0.join(", "))]
    TooManyManifests(Vec<String>),
    /// `Cargo.toml` exceeds `max_manifest_bytes`.
    #[error("`Cargo.toml` is larger than {max} bytes")]
    ManifestTooLarge {
        /// The limit.
        max: u64,
    },
    /// `Cargo.toml` is not UTF-8 TOML, lacks `[package]` name or version, has a `[patch]`
    /// table, or has a field of the wrong type.
    #[error("failed to parse `Cargo.toml` manifest file: {0}")]
    InvalidManifest(String),
    /// A `workspace = true` cargo should have resolved.
    #[error(
        "failed to parse `Cargo.toml` manifest file: value from workspace hasn't been set for `{0}`"
    )]
    UnresolvedWorkspace(String),
    /// `package.name` differs from the published name.
    #[error("metadata name `{metadata}` does not match manifest name `{manifest}`")]
    NameMismatch {
        /// The name being published.
        metadata: String,
        /// The manifest's name.
        manifest: String,
    },
    /// `package.version` differs from the published version (string comparison).
    #[error("metadata version `{metadata}` does not match manifest version `{manifest}`")]
    VersionMismatch {
        /// The version being published.
        metadata: String,
        /// The manifest's version.
        manifest: String,
    },
    /// A normal or build dependency without `version` (path/git only).
    #[error("dependency `{name}` does not specify a version")]
    MissingDependencyVersion {
        /// The dependency key.
        name: String,
    },
    /// A dependency that cannot be turned into an index dependency.
    #[error("invalid dependency `{name}` in `Cargo.toml`: {reason}")]
    InvalidDependency {
        /// The dependency key.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `package.rust-version` is not `major[.minor[.patch]]`.
    #[error("invalid rust-version `{0}`: expected `major[.minor[.patch]]` with numbers only")]
    InvalidRustVersion(String),
    /// A value of `Cargo.toml` past a [`ManifestLimits`] bound.
    #[error("`Cargo.toml` exceeds a limit: {0}")]
    ManifestLimit(String),
    /// Bytes after the end of the gzip member: trailing garbage or a second gzip member.
    #[error("uploaded tarball has data after the end of its gzip stream")]
    TrailingData,
    /// Two entries with the same package-relative path.
    #[error("duplicate path found: {0}")]
    DuplicatePath(String),
    /// Two entries whose paths differ only in case (`src/a.rs` and `src/A.rs`).
    #[error("paths differ only in case: {first} and {second}")]
    CaseCollision {
        /// The path seen first.
        first: String,
        /// The later path.
        second: String,
    },
    /// A `[target.'…']` key past the platform bounds (length, `cfg` nesting).
    #[error("failed to parse `Cargo.toml` manifest file: {0}")]
    InvalidTarget(#[source] PlatformError),
}

/// What a valid `.crate` contains, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrateContents {
    /// `package.name` (equal to the published name).
    pub name: String,
    /// `package.version` (equal to the published version).
    pub vers: String,
    /// `package.description`.
    pub description: Option<String>,
    /// `package.license`.
    pub license: Option<String>,
    /// `package.license-file`.
    pub license_file: Option<String>,
    /// `package.repository`.
    pub repository: Option<String>,
    /// `package.homepage`.
    pub homepage: Option<String>,
    /// `package.documentation`.
    pub documentation: Option<String>,
    /// `package.keywords`.
    pub keywords: Vec<String>,
    /// `package.categories`.
    pub categories: Vec<String>,
    /// `package.authors`.
    pub authors: Vec<String>,
    /// `package.edition`.
    pub edition: Option<String>,
    /// `package.rust-version`.
    pub rust_version: Option<String>,
    /// `package.links`.
    pub links: Option<String>,
    /// The readme path from `package.readme` (`true` means `README.md`).
    pub readme_file: Option<String>,
    /// The readme text (lossy UTF-8), when the file is in the archive.
    pub readme: Option<String>,
    /// Whether `readme` was cut at `max_readme_bytes`.
    pub readme_truncated: bool,
    /// `[features]`, unsplit.
    pub features: FeatureMap,
    /// Dependencies of every kind and target as index dependencies, sorted like an index line.
    pub index_deps: Vec<IndexDependency>,
    /// Number of tar entries.
    pub entry_count: u64,
    /// Decompressed size of the archive, in bytes.
    pub unpacked_size: u64,
}

impl CrateContents {
    /// The index line for this version (features split into `features2` as crates.io does).
    pub fn index_entry(&self, cksum: &str, pubtime: Option<String>) -> IndexEntry {
        IndexEntry::new(
            self.name.clone(),
            self.vers.clone(),
            self.index_deps.clone(),
            cksum.to_owned(),
            self.features.clone(),
            self.links.clone(),
            self.rust_version.clone(),
            pubtime,
        )
    }
}

/// Marks the error a [`CappedReader`] returns once its cap is exceeded.
#[derive(Debug, thiserror::Error)]
#[error("decompressed size exceeds the limit of {0} bytes")]
pub(crate) struct SizeLimitExceeded(pub(crate) u64);

/// A reader that fails once more than `cap` bytes have been read through it.
#[derive(Debug)]
pub(crate) struct CappedReader<R> {
    pub(crate) inner: R,
    pub(crate) cap: u64,
    pub(crate) read: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for at most one byte past the cap, so going over is noticed without reading on.
        let allowed = self.cap.saturating_sub(self.read).saturating_add(1);
        let len = buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(io::Error::other(SizeLimitExceeded(self.cap)));
        }
        Ok(n)
    }
}

/// A readme candidate: its (capped) bytes and whether it was cut.
type Captured = (Vec<u8>, bool);

/// Reads a `.crate` (gzip tar) and checks it against the published `expected_name` and
/// `expected_vers`, returning what the registry keeps from it.
///
/// The checks, in the order met: decompressed size and entry count; each path under
/// `{expected_name}-{expected_vers}/` with no `..` and valid UTF-8; only regular files and
/// directories (pax headers are fine); a pax `size` equal to the header size; no path seen
/// before, in any casing (a directory may repeat); exactly one root `Cargo.toml` (any other
/// casing is an error); nothing after the gzip member; the manifest's structure (`[package]` with name
/// and version, no `[patch]`, no unresolved `workspace = true`, typed fields, versioned normal and
/// build dependencies); and its name and version equal to the published ones.
pub fn inspect(
    bytes: impl Read,
    expected_name: &str,
    expected_vers: &str,
    limits: &TarballLimits,
) -> Result<CrateContents, TarballError> {
    let root = format!("{expected_name}-{expected_vers}");
    let reader = CappedReader {
        inner: GzDecoder::new(BufReader::new(bytes)),
        cap: limits.max_unpacked_size,
        read: 0,
    };
    let mut archive = tar::Archive::new(reader);
    let mut state = State {
        limits,
        expected_name,
        expected_vers,
        manifest_paths: Vec::new(),
        manifest: None,
        readme_path: None,
        lookbehind: HashMap::new(),
        lookbehind_left: limits.max_readme_lookbehind_bytes,
        readme: None,
        entry_count: 0,
        paths: HashMap::new(),
    };
    for entry in archive.entries().map_err(TarballError::Malformed)? {
        let entry = entry.map_err(TarballError::Malformed)?;
        state.entry(entry, &root)?;
    }
    // Read the rest of the stream (end-of-archive padding, gzip trailer) through the cap, so the
    // gzip checksum is verified and trailing garbage counts towards the limit.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(TarballError::Malformed)?;
    // The decoder consumed exactly the gzip member from the buffered input: anything left is
    // trailing data.
    let after = rest
        .inner
        .get_mut()
        .fill_buf()
        .map_err(TarballError::Malformed)?;
    if !after.is_empty() {
        return Err(TarballError::TrailingData);
    }
    let unpacked_size = rest.read;
    state.finish(unpacked_size)
}

struct State<'a> {
    limits: &'a TarballLimits,
    expected_name: &'a str,
    expected_vers: &'a str,
    /// Paths of every root file named `Cargo.toml` in any case.
    manifest_paths: Vec<String>,
    manifest: Option<Manifest>,
    /// The readme's package-relative path, once the manifest has been read.
    readme_path: Option<String>,
    /// Files seen before the manifest, by package-relative path.
    lookbehind: HashMap<String, Captured>,
    lookbehind_left: u64,
    readme: Option<Captured>,
    entry_count: u64,
    /// Every package-relative path seen, by its lowercase form: (the path, whether a directory).
    paths: HashMap<String, (String, bool)>,
}

impl State<'_> {
    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        root: &str,
    ) -> Result<(), TarballError> {
        self.entry_count += 1;
        if self.entry_count > self.limits.max_entries {
            return Err(TarballError::TooManyEntries {
                max: self.limits.max_entries,
            });
        }
        let entry_type = entry.header().entry_type();
        if entry_type == EntryType::XGlobalHeader {
            // A pax global header carries defaults for later entries, not a file.
            return Ok(());
        }
        let path = match String::from_utf8(entry.path_bytes().into_owned()) {
            Ok(path) => path,
            Err(error) => {
                return Err(TarballError::InvalidPath(
                    String::from_utf8_lossy(error.as_bytes()).into_owned(),
                ));
            }
        };
        let relative = relative_path(&path, root, entry_type.is_dir())?;
        if !(entry_type.is_file() || entry_type.is_dir()) {
            return Err(TarballError::UnexpectedEntryType {
                entry_type: entry_type_name(entry_type),
                path,
            });
        }
        let header_size = entry.header().size().map_err(TarballError::Malformed)?;
        if let Some(extensions) = entry.pax_extensions().map_err(TarballError::Malformed)? {
            for extension in extensions {
                let extension = extension.map_err(TarballError::Malformed)?;
                if extension.key_bytes() == b"size"
                    && extension.value_bytes() != header_size.to_string().as_bytes()
                {
                    return Err(TarballError::PaxSizeMismatch {
                        path,
                        pax_size: String::from_utf8_lossy(extension.value_bytes()).into_owned(),
                        header_size,
                    });
                }
            }
        }
        let root_manifest = !relative.contains('/') && relative.eq_ignore_ascii_case("Cargo.toml");
        if !root_manifest && !relative.is_empty() {
            // Root manifests in any casing have their own, more specific rules.
            self.claim_path(&relative, entry_type.is_dir())?;
        }
        if entry_type.is_dir() {
            return Ok(());
        }

        if root_manifest {
            return self.manifest_entry(entry, path, &relative, header_size);
        }
        if self.manifest.is_none() {
            // The readme's path is not known yet: keep the file in case it is the readme.
            let want = header_size.min(self.limits.max_readme_bytes);
            if want <= self.lookbehind_left {
                let captured = read_capped(&mut entry, self.limits.max_readme_bytes)?;
                self.lookbehind_left -= captured.0.len() as u64;
                self.lookbehind.insert(relative, captured);
            }
        } else if self.readme_path.as_deref() == Some(relative.as_str()) {
            self.readme = Some(read_capped(&mut entry, self.limits.max_readme_bytes)?);
        }
        Ok(())
    }

    /// Records a package-relative path, refusing one seen before (a directory may repeat) or one
    /// that differs from an earlier path only in case.
    fn claim_path(&mut self, relative: &str, is_dir: bool) -> Result<(), TarballError> {
        match self.paths.entry(relative.to_lowercase()) {
            Entry::Vacant(vacant) => {
                vacant.insert((relative.to_owned(), is_dir));
                Ok(())
            }
            Entry::Occupied(seen) => {
                let (first, first_is_dir) = seen.get();
                if first == relative {
                    if is_dir && *first_is_dir {
                        Ok(())
                    } else {
                        Err(TarballError::DuplicatePath(relative.to_owned()))
                    }
                } else {
                    Err(TarballError::CaseCollision {
                        first: first.clone(),
                        second: relative.to_owned(),
                    })
                }
            }
        }
    }

    fn manifest_entry<R: Read>(
        &mut self,
        entry: tar::Entry<'_, R>,
        path: String,
        relative: &str,
        header_size: u64,
    ) -> Result<(), TarballError> {
        self.manifest_paths.push(path);
        if self.manifest_paths.len() > 1 {
            return Err(TarballError::TooManyManifests(self.manifest_paths.clone()));
        }
        if relative != "Cargo.toml" {
            return Err(TarballError::IncorrectlyCasedManifest(relative.to_owned()));
        }
        let max = self.limits.max_manifest_bytes;
        if header_size > max {
            return Err(TarballError::ManifestTooLarge { max });
        }
        let mut bytes = Vec::new();
        entry
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(TarballError::Malformed)?;
        if bytes.len() as u64 > max {
            return Err(TarballError::ManifestTooLarge { max });
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| TarballError::InvalidManifest("the file is not valid UTF-8".to_owned()))?;
        let manifest = parse_manifest(&text, &self.limits.own_index_urls, &self.limits.manifest)?;
        if manifest.name != self.expected_name {
            return Err(TarballError::NameMismatch {
                metadata: self.expected_name.to_owned(),
                manifest: manifest.name,
            });
        }
        if manifest.version != self.expected_vers {
            return Err(TarballError::VersionMismatch {
                metadata: self.expected_vers.to_owned(),
                manifest: manifest.version,
            });
        }
        self.readme_path = readme_path(&manifest.readme);
        let mut lookbehind = std::mem::take(&mut self.lookbehind);
        self.readme = self
            .readme_path
            .as_ref()
            .and_then(|path| lookbehind.remove(path));
        self.manifest = Some(manifest);
        Ok(())
    }

    fn finish(self, unpacked_size: u64) -> Result<CrateContents, TarballError> {
        let manifest = self.manifest.ok_or(TarballError::MissingManifest)?;
        let (readme, readme_truncated) = match self.readme {
            Some((bytes, truncated)) => (
                Some(String::from_utf8_lossy(&bytes).into_owned()),
                truncated,
            ),
            None => (None, false),
        };
        let readme_file = match manifest.readme {
            Readme::Path(path) => Some(path),
            Readme::None => None,
        };
        Ok(CrateContents {
            name: manifest.name,
            vers: manifest.version,
            description: manifest.description,
            license: manifest.license,
            license_file: manifest.license_file,
            repository: manifest.repository,
            homepage: manifest.homepage,
            documentation: manifest.documentation,
            keywords: manifest.keywords,
            categories: manifest.categories,
            authors: manifest.authors,
            edition: manifest.edition,
            rust_version: manifest.rust_version,
            links: manifest.links,
            readme_file,
            readme,
            readme_truncated,
            features: manifest.features,
            index_deps: manifest.deps,
            entry_count: self.entry_count,
            unpacked_size,
        })
    }
}

/// Reads at most `max` bytes of an entry; the flag tells whether there was more.
fn read_capped(entry: &mut impl Read, max: u64) -> Result<Captured, TarballError> {
    let mut bytes = Vec::new();
    entry
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(TarballError::Malformed)?;
    let truncated = bytes.len() as u64 > max;
    bytes.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    Ok((bytes, truncated))
}

/// The path of an entry relative to the package root, with empty and `.` components dropped.
/// Fails unless the path lies under `{root}/` (the root directory itself is allowed) and has no
/// `..` component.
fn relative_path(path: &str, root: &str, is_dir: bool) -> Result<String, TarballError> {
    let invalid = || TarballError::InvalidPath(path.to_owned());
    let rest = match path.strip_prefix(root) {
        Some("") if is_dir => "",
        Some(rest) => rest.strip_prefix('/').ok_or_else(invalid)?,
        None => return Err(invalid()),
    };
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid()),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// The readme's package-relative path in the form [`relative_path`] produces, if it can be in
/// the archive at all.
fn readme_path(readme: &Readme) -> Option<String> {
    let Readme::Path(path) = readme else {
        return None;
    };
    let path = path.replace('\\', "/");
    if path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A stable name for a tar entry type, as used in error messages.
pub(crate) fn entry_type_name(entry_type: EntryType) -> String {
    match entry_type {
        EntryType::Regular => "Regular".to_owned(),
        EntryType::Link => "Link".to_owned(),
        EntryType::Symlink => "Symlink".to_owned(),
        EntryType::Char => "Char".to_owned(),
        EntryType::Block => "Block".to_owned(),
        EntryType::Directory => "Directory".to_owned(),
        EntryType::Fifo => "Fifo".to_owned(),
        EntryType::Continuous => "Continuous".to_owned(),
        EntryType::GNULongName => "GNULongName".to_owned(),
        EntryType::GNULongLink => "GNULongLink".to_owned(),
        EntryType::GNUSparse => "GNUSparse".to_owned(),
        EntryType::XGlobalHeader => "XGlobalHeader".to_owned(),
        EntryType::XHeader => "XHeader".to_owned(),
        other => format!("Other({:?})", char::from(other.as_byte())),
    }
}
