//! [`TarballBuilder`]: writes `.crate` files for tests, well-formed or deliberately not.
//!
//! Entries are written in the order added, with cargo's deterministic metadata (mode 0644,
//! uid/gid 0, mtime 2006-07-24T01:21:28Z). [`TarballBuilder::add_file`] goes through the `tar`
//! crate's path checks; the `add_raw_*` methods write the header bytes as given, which is how a
//! test gets absolute paths, `..` components, non-UTF-8 names or odd entry types into an archive.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};

/// cargo's fixed mtime for packaged files.
const MTIME: u64 = 1_153_704_088;

/// Builds a gzip-compressed tar archive in memory.
///
/// ```
/// use depot_cratefile::TarballBuilder;
///
/// let crate_file = TarballBuilder::new()
///     .add_file("foo-0.1.0/Cargo.toml", b"[package]\nname = \"foo\"\nversion = \"0.1.0\"\n")
///     .add_file("foo-0.1.0/src/lib.rs", b"")
///     .build();
/// assert_eq!(&crate_file[..2], &[0x1f, 0x8b]);
/// ```
pub struct TarballBuilder {
    archive: tar::Builder<Vec<u8>>,
}

impl std::fmt::Debug for TarballBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarballBuilder").finish_non_exhaustive()
    }
}

impl Default for TarballBuilder {
    fn default() -> Self {
        TarballBuilder::new()
    }
}

fn header(entry_type: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_size(size);
    header.set_mode(if entry_type == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header
}

/// Copies `bytes` into a fixed-size header field.
///
/// # Panics
///
/// If `bytes` does not fit.
fn set_field(field: &mut [u8], bytes: &[u8], what: &str) {
    assert!(
        bytes.len() <= field.len(),
        "{what} of {} bytes does not fit the {}-byte tar header field",
        bytes.len(),
        field.len()
    );
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
}

impl TarballBuilder {
    /// An empty archive.
    pub fn new() -> TarballBuilder {
        let mut archive = tar::Builder::new(Vec::new());
        archive.mode(tar::HeaderMode::Deterministic);
        TarballBuilder { archive }
    }

    /// A `.crate` with `{name}-{vers}/Cargo.toml` = `manifest` and an empty `src/lib.rs`.
    pub fn with_manifest(name: &str, vers: &str, manifest: &str) -> TarballBuilder {
        TarballBuilder::new()
            .add_file(&format!("{name}-{vers}/Cargo.toml"), manifest.as_bytes())
            .add_file(&format!("{name}-{vers}/src/lib.rs"), b"")
    }

    /// Adds a regular file. Long paths get a GNU long-name entry.
    ///
    /// # Panics
    ///
    /// If the `tar` crate refuses the path (absolute or with `..`; use
    /// [`TarballBuilder::add_raw_file`] for those).
    pub fn add_file(mut self, path: &str, content: &[u8]) -> TarballBuilder {
        let mut header = header(EntryType::Regular, content.len() as u64);
        self.archive
            .append_data(&mut header, path, content)
            .expect("appending to an in-memory archive");
        self
    }

    /// Adds a directory entry.
    pub fn add_dir(mut self, path: &str) -> TarballBuilder {
        let mut header = header(EntryType::Directory, 0);
        self.archive
            .append_data(&mut header, path, &[][..])
            .expect("appending to an in-memory archive");
        self
    }

    /// Adds a regular file whose pax extended header has the given records (e.g. a `size` that
    /// disagrees with the tar header).
    pub fn add_file_with_pax(
        mut self,
        path: &str,
        content: &[u8],
        records: &[(&str, &[u8])],
    ) -> TarballBuilder {
        self.archive
            .append_pax_extensions(records.iter().copied())
            .expect("appending to an in-memory archive");
        self.add_file(path, content)
    }

    /// Adds a pax global header (type `g`) with the given records.
    pub fn add_pax_global_header(self, records: &[(&str, &str)]) -> TarballBuilder {
        let mut data = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where <len> counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len = len.to_string().len() + rest;
            }
            writeln!(data, "{len} {key}={value}").expect("writing to a vector");
        }
        self.add_raw_entry(b"pax_global_header", EntryType::XGlobalHeader, &data)
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    pub fn add_symlink(self, path: &str, target: &str) -> TarballBuilder {
        self.add_raw_link(path.as_bytes(), EntryType::Symlink, target.as_bytes())
    }

    /// Adds a hard link at `path` to `target`.
    pub fn add_hard_link(self, path: &str, target: &str) -> TarballBuilder {
        self.add_raw_link(path.as_bytes(), EntryType::Link, target.as_bytes())
    }

    /// Adds a regular file with the path bytes written into the header verbatim, unchecked:
    /// absolute paths, `..` components and non-UTF-8 names are all possible.
    ///
    /// # Panics
    ///
    /// If `path` is longer than 100 bytes.
    pub fn add_raw_file(self, path: &[u8], content: &[u8]) -> TarballBuilder {
        self.add_raw_entry(path, EntryType::Regular, content)
    }

    /// Adds an entry of any type with the path bytes written verbatim, e.g. a FIFO
    /// (`EntryType::Fifo`), a device (`Char`, `Block`) or a GNU sparse file (`GNUSparse`).
    ///
    /// # Panics
    ///
    /// If `path` is longer than 100 bytes.
    pub fn add_raw_entry(
        mut self,
        path: &[u8],
        entry_type: EntryType,
        content: &[u8],
    ) -> TarballBuilder {
        let mut header = header(entry_type, content.len() as u64);
        set_field(&mut header.as_old_mut().name, path, "path");
        header.set_cksum();
        self.archive
            .append(&header, content)
            .expect("appending to an in-memory archive");
        self
    }

    /// Adds a GNU sparse file (type `S`) whose single data block holds `content`, so the `tar`
    /// crate reads it like a regular file.
    pub fn add_sparse_file(mut self, path: &str, content: &[u8]) -> TarballBuilder {
        let mut header = header(EntryType::GNUSparse, content.len() as u64);
        set_field(&mut header.as_old_mut().name, path.as_bytes(), "path");
        let gnu = header.as_gnu_mut().expect("the builder writes GNU headers");
        gnu.set_real_size(content.len() as u64);
        gnu.sparse[0].set_offset(0);
        gnu.sparse[0].set_length(content.len() as u64);
        header.set_cksum();
        self.archive
            .append(&header, content)
            .expect("appending to an in-memory archive");
        self
    }

    fn add_raw_link(mut self, path: &[u8], entry_type: EntryType, target: &[u8]) -> TarballBuilder {
        let mut header = header(entry_type, 0);
        set_field(&mut header.as_old_mut().name, path, "path");
        set_field(&mut header.as_old_mut().linkname, target, "link target");
        header.set_cksum();
        self.archive
            .append(&header, &[][..])
            .expect("appending to an in-memory archive");
        self
    }

    /// The uncompressed tar bytes.
    pub fn build_tar(self) -> Vec<u8> {
        self.archive
            .into_inner()
            .expect("finishing an in-memory archive")
    }

    /// The gzip-compressed archive: a `.crate` file.
    pub fn build(self) -> Vec<u8> {
        TarballBuilder::gzip(&self.build_tar())
    }

    /// Gzip-compresses `bytes` (best compression, as cargo does), e.g. a hand-edited
    /// [`TarballBuilder::build_tar`] output.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(bytes).expect("writing to a vector");
        encoder
            .finish()
            .expect("finishing an in-memory gzip stream")
    }
}
