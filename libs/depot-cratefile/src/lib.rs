//! Publish metadata and `.crate` archives: validation and extraction (pure, no I/O).
//!
//! A `cargo publish` upload carries two descriptions of the same version: the JSON metadata
//! cargo builds from the package (PROTOCOL.md §4.2) and the `.crate` tarball with its normalised
//! `Cargo.toml` (§5.2). This crate checks both the way crates.io does (§6) and turns them into
//! index dependencies (§3.2):
//!
//! - [`framing`]: [`PublishFraming`] splits a publish body, fed in any chunks, into the
//!   metadata and the crate bytes, with the declared lengths capped.
//! - [`publish`]: the metadata JSON ([`PublishMetadata`]) and [`publish::validate`], which
//!   applies the name, version, keyword, feature and dependency rules and the
//!   [`PublishLimits`].
//! - [`tarball`]: [`tarball::inspect`] reads a `.crate` through capped readers, enforces the
//!   archive rules (paths, entry types, one root `Cargo.toml`) and extracts the manifest into
//!   [`CrateContents`], which renders the index line.
//! - [`consistency`]: [`check_consistency`] makes sure the metadata and the manifest agree on
//!   dependencies, features, `links` and `rust-version`, because cargo resolves with the index
//!   line but builds with the tarball's `Cargo.toml`.
//! - [`docs`]: [`docs::read_docs_archive`] reads an archive of a version's rustdoc output
//!   through capped readers (paths, entry types, sizes), and [`DocsManifest`] lists what was
//!   stored of it.
//! - `builder` (feature `builder`, off by default): `TarballBuilder` writes `.crate` files,
//!   including malformed ones, for tests; enable it in `[dev-dependencies]`.
//!
//! Nothing here reads files, the network or the environment: callers pass bytes or a reader,
//! and policy (limits, which index URLs mean "this registry") as plain structs.

pub mod consistency;
pub mod docs;
pub mod framing;
mod manifest;
mod platform;
pub mod publish;
mod registry;
mod rules;
pub mod tarball;

#[cfg(feature = "builder")]
mod builder;

#[cfg(feature = "builder")]
pub use builder::TarballBuilder;
pub use consistency::{Mismatch, check_consistency};
pub use docs::{DocsError, DocsFile, DocsLimits, DocsManifest, DocsManifestFile, DocsSummary};
pub use framing::{Frame, FramingError, FramingLimits, PublishFraming};
pub use platform::{
    MAX_CFG_DEPTH, MAX_PLATFORM_LEN, PlatformError, check_platform, normalize_platform,
};
pub use publish::{
    LocalDependency, PublishDependency, PublishError, PublishLimits, PublishMetadata,
    PublishProblem, ValidatedPublish,
};
pub use registry::{CRATES_IO_INDEX, CRATES_IO_SPARSE_INDEX, is_crates_io_index};
pub use tarball::{CrateContents, ManifestLimits, TarballError, TarballLimits};
