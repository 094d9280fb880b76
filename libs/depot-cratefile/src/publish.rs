//! The JSON metadata of a `cargo publish` request (PROTOCOL.md §4.2) and its validation.
//!
//! [`PublishMetadata`] accepts whatever cargo (any version) sends: every field has a default,
//! `null` is read as the default, and unknown fields are ignored. [`validate`] then applies the
//! crates.io rules (§6) under the given [`PublishLimits`] and reports **every** problem it finds,
//! so a user fixes them in one round. The result, [`ValidatedPublish`], converts the dependencies
//! to index dependencies (§3.2) and lists those that must exist in this registry.

use std::fmt;

use depot_index::{
    CrateNameError, DependencyKind, FeatureMap, IndexDependency, validate_crate_name,
    validate_dependency_name,
};
use serde::{Deserialize, Deserializer, Serialize};

use crate::platform::{PlatformError, check_platform};
use crate::registry::{CRATES_IO_INDEX, CRATES_IO_SPARSE_INDEX, contains_url, index_registry};
use crate::rules::{
    is_valid_dependency_key, is_valid_keyword, is_valid_rust_version, validate_feature_name,
    validate_feature_value,
};

/// Reads `null` as the type's default (cargo sends `null` for unset values; tolerate it for
/// lists and maps as well).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn default_true() -> bool {
    true
}

/// The metadata JSON of a publish request, as cargo sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishMetadata {
    /// The crate name, exact case.
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// The version, including build metadata.
    #[serde(deserialize_with = "null_as_default")]
    pub vers: String,
    /// The dependencies; `name` is always the real package name.
    #[serde(deserialize_with = "null_as_default")]
    pub deps: Vec<PublishDependency>,
    /// Features from the normalised manifest, `dep:` and `?/` syntax included.
    #[serde(deserialize_with = "null_as_default")]
    pub features: FeatureMap,
    /// Authors; may be empty.
    #[serde(deserialize_with = "null_as_default")]
    pub authors: Vec<String>,
    /// `package.description`.
    pub description: Option<String>,
    /// `package.documentation` (a URL).
    pub documentation: Option<String>,
    /// `package.homepage` (a URL).
    pub homepage: Option<String>,
    /// The **contents** of the readme file.
    pub readme: Option<String>,
    /// The readme's path relative to the package root.
    pub readme_file: Option<String>,
    /// `package.keywords`.
    #[serde(deserialize_with = "null_as_default")]
    pub keywords: Vec<String>,
    /// `package.categories` (slugs).
    #[serde(deserialize_with = "null_as_default")]
    pub categories: Vec<String>,
    /// `package.license` (an SPDX expression).
    pub license: Option<String>,
    /// `package.license-file` (a path).
    pub license_file: Option<String>,
    /// `package.repository` (a URL).
    pub repository: Option<String>,
    /// `[badges]`, passed through untouched.
    pub badges: serde_json::Value,
    /// `package.links`.
    pub links: Option<String>,
    /// `package.rust-version`.
    pub rust_version: Option<String>,
}

/// One dependency in publish metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishDependency {
    /// Whether the dependency is optional.
    pub optional: bool,
    /// Whether default features are enabled.
    pub default_features: bool,
    /// The real package name (even when renamed).
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// Features enabled on the dependency.
    #[serde(deserialize_with = "null_as_default")]
    pub features: Vec<String>,
    /// The requirement, already normalised by cargo (`"1.0"` arrives as `"^1.0"`).
    #[serde(deserialize_with = "null_as_default")]
    pub version_req: String,
    /// A platform (`cfg(...)` or a target triple) the dependency is limited to.
    pub target: Option<String>,
    /// `normal`, `build` or `dev`; absent means normal.
    pub kind: Option<DependencyKind>,
    /// The index URL of the registry the dependency comes from; absent means the registry being
    /// published to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The key in `Cargo.toml` when the dependency is renamed (`alias = { package = "real" }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit_name_in_toml: Option<String>,
}

impl Default for PublishDependency {
    fn default() -> Self {
        PublishDependency {
            optional: false,
            default_features: default_true(),
            name: String::new(),
            features: Vec::new(),
            version_req: String::new(),
            target: None,
            kind: None,
            registry: None,
            explicit_name_in_toml: None,
        }
    }
}

impl PublishDependency {
    /// The name the dependency has in `Cargo.toml`: the alias when renamed, else the name.
    pub fn name_in_toml(&self) -> &str {
        self.explicit_name_in_toml.as_deref().unwrap_or(&self.name)
    }

    /// The kind, with an absent kind read as normal.
    pub fn kind(&self) -> DependencyKind {
        self.kind.unwrap_or(DependencyKind::Normal)
    }
}

/// The limits and registry policy applied by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishLimits {
    /// Most keywords per crate.
    pub max_keywords: usize,
    /// Longest keyword, in bytes.
    pub max_keyword_len: usize,
    /// Most categories per crate.
    pub max_categories: usize,
    /// Most features per crate.
    pub max_features: usize,
    /// Most values one feature may enable.
    pub max_feature_values: usize,
    /// Most dependencies per crate (all kinds together).
    pub max_dependencies: usize,
    /// Longest description, in bytes.
    pub max_description_bytes: usize,
    /// Largest readme, in bytes.
    pub max_readme_bytes: usize,
    /// Longest version string, in bytes.
    pub max_version_len: usize,
    /// Index URLs of other registries dependencies may come from.
    pub allowed_registries: Vec<String>,
    /// Index URLs that mean "this registry"; a dependency naming one is a local dependency.
    pub own_index_urls: Vec<String>,
}

impl Default for PublishLimits {
    /// crates.io's values; dependencies may come from this registry and from crates.io.
    fn default() -> Self {
        PublishLimits {
            max_keywords: 5,
            max_keyword_len: 20,
            max_categories: 5,
            max_features: 300,
            max_feature_values: 300,
            max_dependencies: 500,
            max_description_bytes: 1000,
            max_readme_bytes: 1024 * 1024,
            max_version_len: 150,
            allowed_registries: vec![
                CRATES_IO_INDEX.to_owned(),
                CRATES_IO_SPARSE_INDEX.to_owned(),
            ],
            own_index_urls: Vec::new(),
        }
    }
}

/// One rule the metadata breaks. `Display` is the message shown to the cargo user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishProblem {
    /// The crate name is not acceptable.
    #[error("{0}")]
    Name(CrateNameError),
    /// The version is not semver.
    #[error("\"{vers}\" is an invalid semver version: {reason}")]
    InvalidVersion {
        /// The version as sent.
        vers: String,
        /// The parser's explanation.
        reason: String,
    },
    /// The version string is too long.
    #[error("the version `{vers}` is too long (max {max} characters)")]
    VersionTooLong {
        /// The version as sent.
        vers: String,
        /// The limit.
        max: usize,
    },
    /// Too many keywords.
    #[error("expected at most {max} keywords per crate, got {count}")]
    TooManyKeywords {
        /// Keywords sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A keyword is too long.
    #[error("the keyword `{keyword}` is too long (max {max} characters)")]
    KeywordTooLong {
        /// The keyword.
        keyword: String,
        /// The limit.
        max: usize,
    },
    /// A keyword has characters outside the allowed set.
    #[error(
        "`{keyword}` is an invalid keyword: keywords must start with an ASCII alphanumeric \
         character and contain only ASCII alphanumerics, `_`, `-` and `+`"
    )]
    InvalidKeyword {
        /// The keyword.
        keyword: String,
    },
    /// Too many categories.
    #[error("expected at most {max} categories per crate, got {count}")]
    TooManyCategories {
        /// Categories sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Too many features.
    #[error("the crate declares {count} features, but at most {max} are allowed")]
    TooManyFeatures {
        /// Features declared.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One feature enables too many values.
    #[error("the feature `{feature}` enables {count} values, but at most {max} are allowed")]
    TooManyFeatureValues {
        /// The feature.
        feature: String,
        /// Values it enables.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A feature name is malformed.
    #[error("invalid feature name `{feature}`: {reason}")]
    InvalidFeatureName {
        /// The feature name.
        feature: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value of a feature is malformed.
    #[error("invalid value `{value}` in feature `{feature}`: {reason}")]
    InvalidFeatureValue {
        /// The feature enabling the value.
        feature: String,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Too many dependencies.
    #[error("the crate has {count} dependencies, but at most {max} are allowed")]
    TooManyDependencies {
        /// Dependencies sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A dependency's package name is malformed.
    #[error("invalid dependency name `{name}`: {reason}")]
    InvalidDependencyName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: CrateNameError,
    },
    /// A dependency alias (`explicit_name_in_toml`) is malformed.
    #[error(
        "invalid dependency alias `{alias}` for `{name}`: aliases may contain only ASCII \
         alphanumerics, `-` and `_`, must start with a letter or `_` and be at most 64 characters"
    )]
    InvalidDependencyAlias {
        /// The real package name.
        name: String,
        /// The alias.
        alias: String,
    },
    /// A feature enabled on a dependency is malformed.
    #[error("invalid feature `{feature}` enabled on dependency `{name}`: {reason}")]
    InvalidDependencyFeature {
        /// The dependency.
        name: String,
        /// The feature.
        feature: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A dependency's requirement does not parse.
    #[error("dependency `{name}` has an invalid version requirement `{req}`: {reason}")]
    InvalidVersionReq {
        /// The dependency.
        name: String,
        /// The requirement as sent.
        req: String,
        /// The parser's explanation.
        reason: String,
    },
    /// A dependency uses the `*` requirement.
    #[error(
        "wildcard (`*`) dependency constraints are not allowed. Crate with this problem: \
         `{name}`. See https://doc.rust-lang.org/cargo/faq.html#can-libraries-use--as-a-version-for-their-dependencies"
    )]
    WildcardRequirement {
        /// The dependency.
        name: String,
    },
    /// A dependency comes from a registry that is not allowed.
    #[error(
        "dependency `{name}` is hosted on another registry (`{registry}`) that is not in the \
         allow-list"
    )]
    RegistryNotAllowed {
        /// The dependency.
        name: String,
        /// Its registry's index URL.
        registry: String,
    },
    /// The description is too long.
    #[error("the description is {len} bytes long, but at most {max} bytes are allowed")]
    DescriptionTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The readme is too large.
    #[error("the readme is {len} bytes long, but at most {max} bytes are allowed")]
    ReadmeTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `rust_version` is not `major[.minor[.patch]]`.
    #[error("invalid rust-version `{0}`: expected `major[.minor[.patch]]` with numbers only")]
    InvalidRustVersion(String),
    /// A dependency's `target` is past the platform bounds (length, `cfg` nesting). Such a
    /// target would go into the index line, where every cargo resolving the crate parses it.
    #[error("dependency `{name}` has an invalid target: {reason}")]
    InvalidTarget {
        /// The dependency.
        name: String,
        /// What is wrong with the target.
        reason: PlatformError,
    },
}

/// Why publish metadata was refused: one or more [`PublishProblem`]s, in the order found.
///
/// `Display` joins the problems with `"; "`, ready for a cargo-facing `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    problems: Vec<PublishProblem>,
}

impl PublishError {
    /// Every problem found (never empty).
    pub fn problems(&self) -> &[PublishProblem] {
        &self.problems
    }

    /// The problems, by value.
    pub fn into_problems(self) -> Vec<PublishProblem> {
        self.problems
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PublishError {}

/// A dependency that must be satisfied by this registry (no `registry`, or one of the
/// `own_index_urls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDependency {
    /// The real package name.
    pub package: String,
    /// Its kind.
    pub kind: DependencyKind,
    /// The parsed requirement.
    pub req: semver::VersionReq,
}

/// Publish metadata that passed [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedPublish {
    metadata: PublishMetadata,
    version: semver::Version,
    index_deps: Vec<IndexDependency>,
    local_deps: Vec<LocalDependency>,
}

impl ValidatedPublish {
    /// The metadata as received.
    pub fn metadata(&self) -> &PublishMetadata {
        &self.metadata
    }

    /// The metadata, by value.
    pub fn into_metadata(self) -> PublishMetadata {
        self.metadata
    }

    /// The crate name as sent.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The parsed version.
    pub fn version(&self) -> &semver::Version {
        &self.version
    }

    /// The dependencies as index dependencies (PROTOCOL.md §3.2), sorted like an index line:
    /// a renamed dependency has `name` = alias and `package` = real name; `req` is the
    /// requirement as sent; `registry` is `None` for this registry; an absent kind is normal.
    pub fn index_deps(&self) -> Vec<IndexDependency> {
        self.index_deps.clone()
    }

    /// The dependencies served by this registry, for checking that they exist.
    pub fn local_dependencies(&self) -> &[LocalDependency] {
        &self.local_deps
    }
}

/// Validates publish metadata against crates.io's rules and `limits`, collecting every problem.
pub fn validate(
    meta: &PublishMetadata,
    limits: &PublishLimits,
) -> Result<ValidatedPublish, PublishError> {
    let mut problems = Vec::new();

    if let Err(error) = validate_crate_name(&meta.name) {
        problems.push(PublishProblem::Name(error));
    }
    let version = match semver::Version::parse(&meta.vers) {
        Ok(version) => Some(version),
        Err(error) => {
            problems.push(PublishProblem::InvalidVersion {
                vers: meta.vers.clone(),
                reason: error.to_string(),
            });
            None
        }
    };
    if meta.vers.len() > limits.max_version_len {
        problems.push(PublishProblem::VersionTooLong {
            vers: meta.vers.clone(),
            max: limits.max_version_len,
        });
    }

    check_keywords(&meta.keywords, limits, &mut problems);
    if meta.categories.len() > limits.max_categories {
        problems.push(PublishProblem::TooManyCategories {
            count: meta.categories.len(),
            max: limits.max_categories,
        });
    }
    check_features(&meta.features, limits, &mut problems);

    if let Some(description) = &meta.description
        && description.len() > limits.max_description_bytes
    {
        problems.push(PublishProblem::DescriptionTooLong {
            len: description.len(),
            max: limits.max_description_bytes,
        });
    }
    if let Some(readme) = &meta.readme
        && readme.len() > limits.max_readme_bytes
    {
        problems.push(PublishProblem::ReadmeTooLarge {
            len: readme.len(),
            max: limits.max_readme_bytes,
        });
    }
    if let Some(rust_version) = &meta.rust_version
        && !is_valid_rust_version(rust_version)
    {
        problems.push(PublishProblem::InvalidRustVersion(rust_version.clone()));
    }

    if meta.deps.len() > limits.max_dependencies {
        problems.push(PublishProblem::TooManyDependencies {
            count: meta.deps.len(),
            max: limits.max_dependencies,
        });
    }
    let mut index_deps = Vec::with_capacity(meta.deps.len());
    let mut local_deps = Vec::new();
    for dep in &meta.deps {
        if let Some((index_dep, local)) = check_dependency(dep, limits, &mut problems) {
            index_deps.push(index_dep);
            local_deps.extend(local);
        }
    }
    index_deps.sort();

    match version {
        Some(version) if problems.is_empty() => Ok(ValidatedPublish {
            metadata: meta.clone(),
            version,
            index_deps,
            local_deps,
        }),
        _ => Err(PublishError { problems }),
    }
}

fn check_keywords(keywords: &[String], limits: &PublishLimits, problems: &mut Vec<PublishProblem>) {
    if keywords.len() > limits.max_keywords {
        problems.push(PublishProblem::TooManyKeywords {
            count: keywords.len(),
            max: limits.max_keywords,
        });
    }
    for keyword in keywords {
        if keyword.len() > limits.max_keyword_len {
            problems.push(PublishProblem::KeywordTooLong {
                keyword: keyword.clone(),
                max: limits.max_keyword_len,
            });
        } else if !is_valid_keyword(keyword) {
            problems.push(PublishProblem::InvalidKeyword {
                keyword: keyword.clone(),
            });
        }
    }
}

fn check_features(
    features: &FeatureMap,
    limits: &PublishLimits,
    problems: &mut Vec<PublishProblem>,
) {
    if features.len() > limits.max_features {
        problems.push(PublishProblem::TooManyFeatures {
            count: features.len(),
            max: limits.max_features,
        });
    }
    for (feature, values) in features {
        if let Err(error) = validate_feature_name(feature) {
            problems.push(PublishProblem::InvalidFeatureName {
                feature: feature.clone(),
                reason: error.to_string(),
            });
        }
        if values.len() > limits.max_feature_values {
            problems.push(PublishProblem::TooManyFeatureValues {
                feature: feature.clone(),
                count: values.len(),
                max: limits.max_feature_values,
            });
        }
        for value in values {
            if let Err(error) = validate_feature_value(value) {
                problems.push(PublishProblem::InvalidFeatureValue {
                    feature: feature.clone(),
                    value: value.clone(),
                    reason: error.to_string(),
                });
            }
        }
    }
}

/// Checks one dependency; on success returns its index form and, if it is served by this
/// registry, its local form.
fn check_dependency(
    dep: &PublishDependency,
    limits: &PublishLimits,
    problems: &mut Vec<PublishProblem>,
) -> Option<(IndexDependency, Option<LocalDependency>)> {
    let before = problems.len();
    if let Err(reason) = validate_dependency_name(&dep.name) {
        problems.push(PublishProblem::InvalidDependencyName {
            name: dep.name.clone(),
            reason,
        });
    }
    if let Some(alias) = &dep.explicit_name_in_toml
        && !is_valid_dependency_key(alias)
    {
        problems.push(PublishProblem::InvalidDependencyAlias {
            name: dep.name.clone(),
            alias: alias.clone(),
        });
    }
    for feature in &dep.features {
        if let Err(error) = validate_feature_value(feature) {
            problems.push(PublishProblem::InvalidDependencyFeature {
                name: dep.name.clone(),
                feature: feature.clone(),
                reason: error.to_string(),
            });
        }
    }
    if let Some(target) = &dep.target
        && let Err(reason) = check_platform(target)
    {
        problems.push(PublishProblem::InvalidTarget {
            name: dep.name.clone(),
            reason,
        });
    }
    let req = match semver::VersionReq::parse(&dep.version_req) {
        Ok(req) if req == semver::VersionReq::STAR => {
            problems.push(PublishProblem::WildcardRequirement {
                name: dep.name.clone(),
            });
            None
        }
        Ok(req) => Some(req),
        Err(error) => {
            problems.push(PublishProblem::InvalidVersionReq {
                name: dep.name.clone(),
                req: dep.version_req.clone(),
                reason: error.to_string(),
            });
            None
        }
    };
    let registry = index_registry(dep.registry.as_deref(), &limits.own_index_urls);
    if let Some(url) = &registry
        && !contains_url(&limits.allowed_registries, url)
    {
        problems.push(PublishProblem::RegistryNotAllowed {
            name: dep.name.clone(),
            registry: url.clone(),
        });
    }
    if problems.len() > before {
        return None;
    }

    let index_dep = IndexDependency {
        name: dep.name_in_toml().to_owned(),
        req: dep.version_req.clone(),
        features: dep.features.clone(),
        optional: dep.optional,
        default_features: dep.default_features,
        target: dep.target.clone(),
        kind: dep.kind(),
        package: dep.explicit_name_in_toml.as_ref().map(|_| dep.name.clone()),
        registry: registry.clone(),
    };
    let local = match (registry, req) {
        (None, Some(req)) => Some(LocalDependency {
            package: dep.name.clone(),
            kind: dep.kind(),
            req,
        }),
        _ => None,
    };
    Some((index_dep, local))
}
