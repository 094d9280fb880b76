//! The sparse index format (RFC 2789) as cargo 1.95 reads it.
//!
//! This crate holds the validated values every edge parses raw input into once ([`CrateName`],
//! [`CanonicalName`], [`Version`], [`Checksum`], [`BlobKey`], [`Login`]), and knows how crate
//! names are canonicalised, where a crate's index file lives, what one
//! index line looks like byte for byte, and how a whole index file and its ETag are rendered. It
//! does no I/O: the projector renders files with it and the api serves the bytes it produced.

mod digest;
mod entry;
mod login;
mod name;
pub mod upstream;
mod version;

pub use digest::{BlobKey, Checksum, DigestError};
pub use entry::{DependencyKind, FeatureMap, IndexDependency, IndexEntry, split_features};
pub use login::{Login, LoginError, MAX_LOGIN_LENGTH};
pub use name::{
    CanonicalName, CrateName, CrateNameError, MAX_NAME_LENGTH, canonical_name, index_path,
    parse_index_path, validate_crate_name, validate_dependency_name,
};
pub use version::{MAX_VERSION_LENGTH, Version, VersionError};

use sha2::{Digest, Sha256};

/// A rendered index file: one JSON line per version, each ending in `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// The exact bytes served to cargo.
    pub body: Vec<u8>,
    /// A strong ETag (quoted), derived from the content only.
    pub etag: String,
}

impl IndexFile {
    /// Renders the lines of one crate, in the order given (publish order).
    pub fn render<'a>(entries: impl IntoIterator<Item = &'a IndexEntry>) -> IndexFile {
        let mut body = Vec::new();
        for entry in entries {
            body.extend_from_slice(entry.to_line().as_bytes());
            body.push(b'\n');
        }
        let etag = etag_for(&body);
        IndexFile { body, etag }
    }
}

/// A strong ETag for a body: the quoted hex of the first 16 bytes of its sha256.
pub fn etag_for(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}
