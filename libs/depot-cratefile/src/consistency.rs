//! Agreement between the publish metadata and the tarball's `Cargo.toml`.
//!
//! cargo resolves with the index line but builds with the `Cargo.toml` in the `.crate`
//! (PROTOCOL.md §7), so a registry that takes the index line from one must make sure the other
//! says the same. cargo derives both from the same manifest, so an honest upload always agrees;
//! a mismatch means a hand-crafted or tampered upload.
//!
//! Comparison is semantic where the two forms legitimately differ in spelling: requirements are
//! compared as normalised [`semver::VersionReq`]s, `cfg(...)` targets after
//! [`normalize_platform`], features as sorted lists, and registries with crates.io's git and
//! sparse URLs treated as one.

use std::cmp::Ordering;
use std::fmt;

use depot_index::{DependencyKind, FeatureMap, IndexDependency};

use crate::platform::normalize_platform;
use crate::publish::ValidatedPublish;
use crate::registry::comparable_registry;
use crate::tarball::CrateContents;

/// One way the publish metadata and `Cargo.toml` disagree. `Display` names the dependency or
/// feature and both sides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// A dependency only the metadata has.
    #[error("dependency {} is in the publish metadata but not in `Cargo.toml`", describe(.0))]
    DependencyNotInManifest(IndexDependency),
    /// A dependency only `Cargo.toml` has.
    #[error("dependency {} is in `Cargo.toml` but not in the publish metadata", describe(.0))]
    DependencyNotInMetadata(IndexDependency),
    /// The same dependency (name, kind, target) with different details.
    #[error(
        "dependency {} differs between the publish metadata and `Cargo.toml`: {}",
        describe(.metadata),
        differences(.metadata, .manifest)
    )]
    DependencyDiffers {
        /// The metadata's version.
        metadata: IndexDependency,
        /// The manifest's version.
        manifest: IndexDependency,
    },
    /// A feature only the metadata has.
    #[error("feature `{0}` is in the publish metadata but not in `Cargo.toml`")]
    FeatureNotInManifest(String),
    /// A feature only `Cargo.toml` has.
    #[error("feature `{0}` is in `Cargo.toml` but not in the publish metadata")]
    FeatureNotInMetadata(String),
    /// A feature enabling different values.
    #[error(
        "feature `{feature}` differs: the publish metadata has {metadata:?}, `Cargo.toml` has {manifest:?}"
    )]
    FeatureDiffers {
        /// The feature.
        feature: String,
        /// The metadata's values.
        metadata: Vec<String>,
        /// The manifest's values.
        manifest: Vec<String>,
    },
    /// Different `links` values.
    #[error(
        "`links` differs: the publish metadata has `{metadata}`, `Cargo.toml` has `{manifest}`"
    )]
    Links {
        /// The metadata's value.
        metadata: String,
        /// The manifest's value.
        manifest: String,
    },
    /// Different `rust-version` values.
    #[error(
        "`rust-version` differs: the publish metadata has `{metadata}`, `Cargo.toml` has `{manifest}`"
    )]
    RustVersion {
        /// The metadata's value.
        metadata: String,
        /// The manifest's value.
        manifest: String,
    },
}

/// Checks that the publish metadata and the manifest agree on dependencies, features and, when
/// both give them, `links` and `rust-version`. Returns every mismatch, dependencies first (in
/// index order), then features (by name), then `links` and `rust-version`.
pub fn check_consistency(
    publish: &ValidatedPublish,
    contents: &CrateContents,
) -> Result<(), Vec<Mismatch>> {
    let mut mismatches = compare_dependencies(&publish.index_deps(), &contents.index_deps);
    mismatches.extend(compare_features(
        &publish.metadata().features,
        &contents.features,
    ));
    let meta = publish.metadata();
    if let (Some(metadata), Some(manifest)) = (&meta.links, &contents.links)
        && metadata != manifest
    {
        mismatches.push(Mismatch::Links {
            metadata: metadata.clone(),
            manifest: manifest.clone(),
        });
    }
    if let (Some(metadata), Some(manifest)) = (&meta.rust_version, &contents.rust_version)
        && metadata != manifest
    {
        mismatches.push(Mismatch::RustVersion {
            metadata: metadata.clone(),
            manifest: manifest.clone(),
        });
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(mismatches)
    }
}

/// A dependency reduced to what must agree, in comparable form. The identity fields come first,
/// so sorting groups the versions of one dependency together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    name: String,
    kind: DependencyKind,
    target: Option<String>,
    package: Option<String>,
    req: String,
    optional: bool,
    default_features: bool,
    features: Vec<String>,
    registry: Option<String>,
}

impl Key {
    fn of(dep: &IndexDependency) -> Key {
        let mut features = dep.features.clone();
        features.sort();
        Key {
            name: dep.name.clone(),
            kind: dep.kind,
            target: dep.target.as_deref().map(normalize_platform),
            package: dep.package.clone(),
            req: normalize_req(&dep.req),
            optional: dep.optional,
            default_features: dep.default_features,
            features,
            registry: comparable_registry(dep.registry.as_deref()),
        }
    }

    fn identity(&self) -> (&str, DependencyKind, Option<&str>) {
        (&self.name, self.kind, self.target.as_deref())
    }
}

fn normalize_req(req: &str) -> String {
    semver::VersionReq::parse(req).map_or_else(|_| req.to_owned(), |req| req.to_string())
}

fn compare_dependencies(
    metadata: &[IndexDependency],
    manifest: &[IndexDependency],
) -> Vec<Mismatch> {
    let keyed = |deps: &[IndexDependency]| {
        let mut keyed: Vec<(Key, IndexDependency)> =
            deps.iter().map(|dep| (Key::of(dep), dep.clone())).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed
    };
    let (metadata, manifest) = (keyed(metadata), keyed(manifest));

    // Multiset difference of the two sorted lists.
    let (mut only_metadata, mut only_manifest) = (Vec::new(), Vec::new());
    let (mut left, mut right) = (
        metadata.into_iter().peekable(),
        manifest.into_iter().peekable(),
    );
    loop {
        let order = match (left.peek(), right.peek()) {
            (Some(a), Some(b)) => a.0.cmp(&b.0),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match order {
            Ordering::Less => only_metadata.extend(left.next()),
            Ordering::Greater => only_manifest.extend(right.next()),
            Ordering::Equal => {
                left.next();
                right.next();
            }
        }
    }

    // Pair leftovers with the same name, kind and target into "differs".
    let mut mismatches = Vec::new();
    for (key, dep) in only_metadata {
        match only_manifest
            .iter()
            .position(|(other, _)| other.identity() == key.identity())
        {
            Some(at) => {
                let (_, other) = only_manifest.remove(at);
                mismatches.push((
                    key,
                    Mismatch::DependencyDiffers {
                        metadata: dep,
                        manifest: other,
                    },
                ));
            }
            None => mismatches.push((key, Mismatch::DependencyNotInManifest(dep))),
        }
    }
    mismatches.extend(
        only_manifest
            .into_iter()
            .map(|(key, dep)| (key, Mismatch::DependencyNotInMetadata(dep))),
    );
    mismatches.sort_by(|a, b| a.0.cmp(&b.0));
    mismatches
        .into_iter()
        .map(|(_, mismatch)| mismatch)
        .collect()
}

fn compare_features(metadata: &FeatureMap, manifest: &FeatureMap) -> Vec<Mismatch> {
    let sorted = |values: &[String]| {
        let mut values = values.to_vec();
        values.sort();
        values
    };
    let mut mismatches = Vec::new();
    let mut names: Vec<&String> = metadata.keys().chain(manifest.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        match (metadata.get(name), manifest.get(name)) {
            (Some(a), Some(b)) if sorted(a) != sorted(b) => {
                mismatches.push(Mismatch::FeatureDiffers {
                    feature: name.clone(),
                    metadata: a.clone(),
                    manifest: b.clone(),
                })
            }
            (Some(_), None) => mismatches.push(Mismatch::FeatureNotInManifest(name.clone())),
            (None, Some(_)) => mismatches.push(Mismatch::FeatureNotInMetadata(name.clone())),
            _ => {}
        }
    }
    mismatches
}

/// "`name` (kind, target …, package `p`)".
fn describe(dep: &IndexDependency) -> String {
    let mut out = format!("`{}` ({}", dep.name, dep.kind.as_str());
    if let Some(target) = &dep.target {
        out.push_str(&format!(", target `{target}`"));
    }
    if let Some(package) = &dep.package {
        out.push_str(&format!(", package `{package}`"));
    }
    out.push(')');
    out
}

/// The fields in which two versions of a dependency differ, metadata first.
fn differences(metadata: &IndexDependency, manifest: &IndexDependency) -> String {
    let (a, b) = (Key::of(metadata), Key::of(manifest));
    let mut parts = Vec::new();
    let mut field = |name: &str, left: &dyn fmt::Debug, right: &dyn fmt::Debug| {
        parts.push(format!("{name} {left:?} vs {right:?}"));
    };
    if a.package != b.package {
        field("package", &metadata.package, &manifest.package);
    }
    if a.req != b.req {
        field("req", &metadata.req, &manifest.req);
    }
    if a.optional != b.optional {
        field("optional", &metadata.optional, &manifest.optional);
    }
    if a.default_features != b.default_features {
        field(
            "default_features",
            &metadata.default_features,
            &manifest.default_features,
        );
    }
    if a.features != b.features {
        field("features", &metadata.features, &manifest.features);
    }
    if a.registry != b.registry {
        field("registry", &metadata.registry, &manifest.registry);
    }
    parts.join(", ")
}
