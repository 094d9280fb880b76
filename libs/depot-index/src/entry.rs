//! One index line: the JSON object cargo reads for one version of a crate.
//!
//! Field order, omitted fields and the dependency sort order follow crates.io's serializer, so a
//! line rendered here is byte-comparable with the line crates.io serves for the same version.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Feature name → the features and dependency features it enables.
pub type FeatureMap = BTreeMap<String, Vec<String>>;

/// One version of a crate as the sparse index describes it.
///
/// The field order is the serialization order and must not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The crate name with the case it was published with.
    pub name: String,
    /// The version, including build metadata.
    pub vers: String,
    /// Dependencies, sorted with [`IndexEntry::sort_deps`].
    pub deps: Vec<IndexDependency>,
    /// Lowercase hex sha256 of the `.crate` file.
    pub cksum: String,
    /// Features that use only the original syntax.
    pub features: FeatureMap,
    /// Features that use `dep:` or `?/` syntax (or enable such features); needs `v: 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features2: Option<FeatureMap>,
    /// Whether the version is yanked.
    #[serde(default)]
    pub yanked: bool,
    /// The `links` value of the package, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<String>,
    /// The minimum supported Rust version, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust_version: Option<String>,
    /// The publish time, exactly `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubtime: Option<String>,
    /// The entry schema version; `Some(2)` when `features2` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
}

/// One dependency in an index line.
///
/// The field order is the serialization order and must not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDependency {
    /// The name as written in `Cargo.toml` (the alias when renamed).
    pub name: String,
    /// The semver requirement.
    pub req: String,
    /// Features enabled on the dependency.
    pub features: Vec<String>,
    /// Whether the dependency is optional.
    pub optional: bool,
    /// Whether default features are enabled.
    pub default_features: bool,
    /// A platform (`cfg(...)` or a target triple) the dependency is limited to.
    pub target: Option<String>,
    /// `normal`, `build` or `dev`.
    pub kind: DependencyKind,
    /// The index URL of another registry; absent for this registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The real package name when the dependency is renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

/// The kind of a dependency. The declaration order is the sort order (normal first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    /// A normal dependency.
    Normal,
    /// A build dependency.
    Build,
    /// A dev dependency.
    Dev,
}

impl DependencyKind {
    /// The lowercase name used in publish metadata and index lines.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyKind::Normal => "normal",
            DependencyKind::Build => "build",
            DependencyKind::Dev => "dev",
        }
    }
}

impl IndexDependency {
    /// The real package name (the `package` key when renamed, else `name`).
    pub fn package_name(&self) -> &str {
        self.package.as_deref().unwrap_or(&self.name)
    }

    fn sort_key(&self) -> impl Ord + '_ {
        (
            &self.name,
            self.kind,
            &self.req,
            self.optional,
            self.default_features,
            &self.target,
            &self.package,
            &self.features,
            &self.registry,
        )
    }
}

impl PartialOrd for IndexDependency {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexDependency {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl IndexEntry {
    /// Builds an entry from its parts, splitting features the way crates.io does and sorting the
    /// dependencies. `yanked` starts false.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the fields of an index line"
    )]
    pub fn new(
        name: String,
        vers: String,
        mut deps: Vec<IndexDependency>,
        cksum: String,
        features: FeatureMap,
        links: Option<String>,
        rust_version: Option<String>,
        pubtime: Option<String>,
    ) -> IndexEntry {
        deps.sort();
        let (features, features2) = split_features(features);
        let (features2, v) = if features2.is_empty() {
            (None, None)
        } else {
            (Some(features2), Some(2))
        };
        IndexEntry {
            name,
            vers,
            deps,
            cksum,
            features,
            features2,
            yanked: false,
            links,
            rust_version,
            pubtime,
            v,
        }
    }

    /// The compact JSON line, without the trailing newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("index entries always serialize")
    }
}

/// Splits features into those cargo < 1.19 can parse (`features`) and those using `dep:` or `?/`
/// syntax, or enabling a feature that does (`features2`), as crates.io does.
pub fn split_features(features: FeatureMap) -> (FeatureMap, FeatureMap) {
    fn new_syntax(value: &str) -> bool {
        value.starts_with("dep:") || value.contains("?/")
    }
    let (mut plain, mut extended): (FeatureMap, FeatureMap) = features
        .into_iter()
        .partition(|(_, values)| !values.iter().any(|v| new_syntax(v)));
    // Move features that enable an extended feature, until nothing moves. Each round moves at
    // least one feature, so this ends after at most `plain.len()` rounds.
    loop {
        let (keep, moved): (FeatureMap, FeatureMap) = plain
            .into_iter()
            .partition(|(_, values)| !values.iter().any(|v| extended.contains_key(v)));
        plain = keep;
        if moved.is_empty() {
            break;
        }
        extended.extend(moved);
    }
    (plain, extended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, req: &str, kind: DependencyKind) -> IndexDependency {
        IndexDependency {
            name: name.to_owned(),
            req: req.to_owned(),
            features: vec![],
            optional: false,
            default_features: true,
            target: None,
            kind,
            registry: None,
            package: None,
        }
    }

    fn features(pairs: &[(&str, &[&str])]) -> FeatureMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn golden_minimal_line() {
        let entry = IndexEntry::new(
            "foo".into(),
            "1.2.3".into(),
            vec![],
            "abc".into(),
            FeatureMap::new(),
            None,
            None,
            Some("2025-11-18T08:58:23Z".into()),
        );
        assert_eq!(
            entry.to_line(),
            r#"{"name":"foo","vers":"1.2.3","deps":[],"cksum":"abc","features":{},"yanked":false,"pubtime":"2025-11-18T08:58:23Z"}"#
        );
    }

    #[test]
    fn golden_full_line() {
        let mut renamed = dep("renamed_dep", "^0.1", DependencyKind::Normal);
        renamed.package = Some("dep-a".into());
        renamed.optional = true;
        renamed.features = vec!["extra-a".into()];
        let mut remote = dep("fakeserde", "^1.0", DependencyKind::Normal);
        remote.registry = Some("https://github.com/rust-lang/crates.io-index".into());
        remote.default_features = false;
        let mut unix = dep("dep-a", "^0.1.0", DependencyKind::Normal);
        unix.target = Some("cfg(unix)".into());
        let mut entry = IndexEntry::new(
            "My_Crate".into(),
            "0.2.0+build.5".into(),
            vec![
                dep("dep-a", "=0.1.0", DependencyKind::Build),
                renamed,
                remote,
                unix,
                dep("zeta", "^1", DependencyKind::Dev),
            ],
            "dad9".into(),
            features(&[
                ("default", &["std"]),
                ("extra", &["dep:renamed_dep"]),
                ("std", &["fakeserde/std"]),
                ("all", &["extra", "std"]),
            ]),
            Some("mylib".into()),
            Some("1.70".into()),
            Some("2026-11-23T23:27:45Z".into()),
        );
        entry.yanked = true;
        assert_eq!(
            entry.to_line(),
            concat!(
                r#"{"name":"My_Crate","vers":"0.2.0+build.5","deps":["#,
                r#"{"name":"dep-a","req":"^0.1.0","features":[],"optional":false,"default_features":true,"target":"cfg(unix)","kind":"normal"},"#,
                r#"{"name":"dep-a","req":"=0.1.0","features":[],"optional":false,"default_features":true,"target":null,"kind":"build"},"#,
                r#"{"name":"fakeserde","req":"^1.0","features":[],"optional":false,"default_features":false,"target":null,"kind":"normal","registry":"https://github.com/rust-lang/crates.io-index"},"#,
                r#"{"name":"renamed_dep","req":"^0.1","features":["extra-a"],"optional":true,"default_features":true,"target":null,"kind":"normal","package":"dep-a"},"#,
                r#"{"name":"zeta","req":"^1","features":[],"optional":false,"default_features":true,"target":null,"kind":"dev"}],"#,
                r#""cksum":"dad9","features":{"default":["std"],"std":["fakeserde/std"]},"#,
                r#""features2":{"all":["extra","std"],"extra":["dep:renamed_dep"]},"#,
                r#""yanked":true,"links":"mylib","rust_version":"1.70","pubtime":"2026-11-23T23:27:45Z","v":2}"#
            )
        );
        let parsed: IndexEntry = serde_json::from_str(&entry.to_line()).unwrap();
        assert_eq!(parsed, entry);
    }

    #[test]
    fn split_features_moves_transitive_users() {
        let (plain, extended) = split_features(features(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["dep:foo"]),
            ("d", &["x/y"]),
            ("e", &["foo?/bar"]),
        ]));
        assert_eq!(plain, features(&[("d", &["x/y"])]));
        assert_eq!(
            extended.keys().collect::<Vec<_>>(),
            vec!["a", "b", "c", "e"]
        );
    }

    #[test]
    fn index_file_etag_is_content_hash() {
        let entry = IndexEntry::new(
            "a".into(),
            "1.0.0".into(),
            vec![],
            "00".into(),
            FeatureMap::new(),
            None,
            None,
            None,
        );
        let one = crate::IndexFile::render([&entry]);
        let two = crate::IndexFile::render([&entry]);
        assert_eq!(one, two);
        assert!(one.body.ends_with(b"\n"));
        assert!(one.etag.starts_with('"') && one.etag.ends_with('"'));
        let mut yanked = entry.clone();
        yanked.yanked = true;
        assert_ne!(crate::IndexFile::render([&yanked]).etag, one.etag);
    }
}
