//! The normalised `Cargo.toml` inside a `.crate` (PROTOCOL.md §5.2): structural checks and the
//! extraction of package metadata, features and index dependencies.
//!
//! The manifest is walked as a plain TOML table rather than deserialised into a schema, so
//! fields this registry does not use never make a manifest unreadable, and every error names
//! the offending key.
//!
//! Bounds on hostile manifests: the size is capped by `max_manifest_bytes` before parsing; the
//! `toml` parser refuses arrays, inline tables and keys (dotted or in `[a.b…]` headers) nested
//! deeper than its recursion limit of 80 levels (`toml` 1.x built without its `unbounded`
//! feature; the tests check it on 100,000-deep input on a 2 MiB stack), so the parsed value (and its
//! recursive drop) stays shallow; every walk here visits a fixed number of levels; parse errors
//! are shown as at most [`MAX_ERROR_MESSAGE_CHARS`] characters with their line and column, never
//! with the offending source line; `[target.'…']` keys pass
//! [`check_platform`](crate::platform::check_platform) before they are rendered.

use depot_index::{DependencyKind, FeatureMap, IndexDependency};
use toml::{Table, Value};

use crate::platform::{check_platform, normalize_platform};
use crate::registry::{CRATES_IO_INDEX, index_registry};
use crate::rules::{is_valid_dependency_key, is_valid_rust_version};
use crate::tarball::{ManifestLimits, TarballError};

/// What `package.readme` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readme {
    /// Absent or `false`.
    None,
    /// A path relative to the package root (`true` means `README.md`).
    Path(String),
}

/// The parts of a manifest the registry keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) description: Option<String>,
    pub(crate) license: Option<String>,
    pub(crate) license_file: Option<String>,
    pub(crate) repository: Option<String>,
    pub(crate) homepage: Option<String>,
    pub(crate) documentation: Option<String>,
    pub(crate) keywords: Vec<String>,
    pub(crate) categories: Vec<String>,
    pub(crate) authors: Vec<String>,
    pub(crate) edition: Option<String>,
    pub(crate) rust_version: Option<String>,
    pub(crate) links: Option<String>,
    pub(crate) readme: Readme,
    pub(crate) features: FeatureMap,
    pub(crate) deps: Vec<IndexDependency>,
}

/// The dependency tables of a manifest (or of one `[target.'…']` table), with their kinds.
const DEPENDENCY_TABLES: &[(&str, DependencyKind)] = &[
    ("dependencies", DependencyKind::Normal),
    ("dev-dependencies", DependencyKind::Dev),
    ("dev_dependencies", DependencyKind::Dev),
    ("build-dependencies", DependencyKind::Build),
    ("build_dependencies", DependencyKind::Build),
];

/// Most characters of a TOML parse error's message kept in the rejection.
pub(crate) const MAX_ERROR_MESSAGE_CHARS: usize = 200;

fn invalid(message: impl Into<String>) -> TarballError {
    TarballError::InvalidManifest(message.into())
}

/// A TOML parse error as `line L, column C: message`, without the source line `toml` would
/// quote (which may be megabytes long) and with the message cut to [`MAX_ERROR_MESSAGE_CHARS`].
fn toml_error(text: &str, error: &toml::de::Error) -> TarballError {
    let message = error.message().trim_end();
    let message = match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_owned(),
    };
    match error.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |at| at + 1);
            let column = before[line_start..].chars().count() + 1;
            invalid(format!(
                "TOML parse error at line {line}, column {column}: {message}"
            ))
        }
        None => invalid(format!("TOML parse error: {message}")),
    }
}

/// Parses and checks a normalised manifest. `own_index_urls` are the index URLs that mean
/// "this registry": a dependency whose registry is one of them gets no `registry` in the index.
pub(crate) fn parse_manifest(
    text: &str,
    own_index_urls: &[String],
    limits: &ManifestLimits,
) -> Result<Manifest, TarballError> {
    let table: Table = toml::from_str(text).map_err(|error| toml_error(text, &error))?;
    check_targets(&table)?;

    if let Some(path) = find_workspace_inheritance(&table) {
        return Err(TarballError::UnresolvedWorkspace(path));
    }
    match table.get("patch") {
        Some(Value::Table(patch)) if patch.is_empty() => {}
        Some(_) => return Err(invalid("crates cannot be published with `[patch]` tables")),
        None => {}
    }

    // `[project]` is the pre-2018 spelling of `[package]`; cargo still reads it.
    let (section, package) = match (table.get("package"), table.get("project")) {
        (Some(package), _) => ("package", package),
        (None, Some(project)) => ("project", project),
        (None, None) => return Err(invalid("missing field `package`")),
    };
    let package = package
        .as_table()
        .ok_or_else(|| invalid(format!("`{section}` must be a table")))?;
    let field = |key: &'static str| Field { section, key };

    let name = field("name")
        .string(package)?
        .ok_or_else(|| invalid(format!("missing field `{section}.name`")))?;
    let version = field("version")
        .string(package)?
        .ok_or_else(|| invalid(format!("missing field `{section}.version`")))?;
    let rust_version = field("rust-version").string(package)?;
    if let Some(rust_version) = &rust_version
        && !is_valid_rust_version(rust_version)
    {
        return Err(TarballError::InvalidRustVersion(rust_version.clone()));
    }
    let readme = match package.get("readme") {
        None | Some(Value::Boolean(false)) => Readme::None,
        Some(Value::Boolean(true)) => Readme::Path("README.md".to_owned()),
        Some(Value::String(path)) => Readme::Path(path.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "`{section}.readme` must be a string or a boolean"
            )));
        }
    };

    let manifest = Manifest {
        description: field("description").string(package)?,
        license: field("license").string(package)?,
        license_file: field("license-file").string(package)?,
        repository: field("repository").string(package)?,
        homepage: field("homepage").string(package)?,
        documentation: field("documentation").string(package)?,
        keywords: field("keywords").strings(package)?,
        categories: field("categories").strings(package)?,
        authors: field("authors").strings(package)?,
        edition: field("edition").string(package)?,
        links: field("links").string(package)?,
        features: parse_features(&table)?,
        deps: parse_all_dependencies(&table, own_index_urls)?,
        name,
        version,
        rust_version,
        readme,
    };
    check_limits(&manifest, section, limits)?;
    Ok(manifest)
}

/// Checks the values Depot keeps against `limits`. Messages never quote a value in full.
fn check_limits(
    manifest: &Manifest,
    section: &str,
    limits: &ManifestLimits,
) -> Result<(), TarballError> {
    let over = |message: String| Err(TarballError::ManifestLimit(message));
    let count = |key: &str, len: usize, max: usize| {
        if len > max {
            over(format!(
                "`{section}.{key}` has {len} entries, but at most {max} are allowed"
            ))
        } else {
            Ok(())
        }
    };
    let length = |key: &str, value: &str, max: usize| {
        if value.len() > max {
            over(format!(
                "`{section}.{key}` is {} bytes long, but at most {max} bytes are allowed",
                value.len()
            ))
        } else {
            Ok(())
        }
    };
    count("keywords", manifest.keywords.len(), limits.max_keywords)?;
    count(
        "categories",
        manifest.categories.len(),
        limits.max_categories,
    )?;
    count("authors", manifest.authors.len(), limits.max_authors)?;
    for keyword in &manifest.keywords {
        length("keywords", keyword, limits.max_keyword_len)?;
    }
    for category in &manifest.categories {
        length("categories", category, limits.max_field_bytes)?;
    }
    for author in &manifest.authors {
        length("authors", author, limits.max_field_bytes)?;
    }
    if let Some(description) = &manifest.description {
        length("description", description, limits.max_description_bytes)?;
    }
    let fields = [
        ("license", &manifest.license),
        ("license-file", &manifest.license_file),
        ("repository", &manifest.repository),
        ("homepage", &manifest.homepage),
        ("documentation", &manifest.documentation),
        ("edition", &manifest.edition),
        ("links", &manifest.links),
        ("rust-version", &manifest.rust_version),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            length(key, value, limits.max_field_bytes)?;
        }
    }
    if let Readme::Path(path) = &manifest.readme {
        length("readme", path, limits.max_field_bytes)?;
    }
    if manifest.features.len() > limits.max_features {
        return over(format!(
            "`features` declares {} features, but at most {} are allowed",
            manifest.features.len(),
            limits.max_features
        ));
    }
    for (name, values) in &manifest.features {
        if name.len() > limits.max_field_bytes
            || values
                .iter()
                .any(|value| value.len() > limits.max_field_bytes)
        {
            return over(format!(
                "a feature name or value is longer than {} bytes",
                limits.max_field_bytes
            ));
        }
        if values.len() > limits.max_feature_values {
            return over(format!(
                "a feature enables {} values, but at most {} are allowed",
                values.len(),
                limits.max_feature_values
            ));
        }
    }
    if manifest.deps.len() > limits.max_dependencies {
        return over(format!(
            "the manifest declares {} dependencies, but at most {} are allowed",
            manifest.deps.len(),
            limits.max_dependencies
        ));
    }
    if let Some(dep) = manifest.deps.iter().find(|dep| {
        dep.features.len() > limits.max_feature_values
            || dep
                .features
                .iter()
                .any(|f| f.len() > limits.max_field_bytes)
    }) {
        return over(format!(
            "dependency `{}` enables more than {} features or one longer than {} bytes",
            dep.name, limits.max_feature_values, limits.max_field_bytes
        ));
    }
    Ok(())
}

/// A key of a table, for typed access with errors that name it.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    section: &'a str,
    key: &'a str,
}

impl Field<'_> {
    fn string(self, table: &Table) -> Result<Option<String>, TarballError> {
        match table.get(self.key) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(invalid(format!(
                "`{}.{}` must be a string",
                self.section, self.key
            ))),
        }
    }

    fn strings(self, table: &Table) -> Result<Vec<String>, TarballError> {
        match table.get(self.key) {
            None => Ok(Vec::new()),
            Some(value) => string_list(value).ok_or_else(|| {
                invalid(format!(
                    "`{}.{}` must be an array of strings",
                    self.section, self.key
                ))
            }),
        }
    }

    fn bool(self, table: &Table) -> Result<Option<bool>, TarballError> {
        match table.get(self.key) {
            None => Ok(None),
            Some(Value::Boolean(value)) => Ok(Some(*value)),
            Some(_) => Err(invalid(format!(
                "`{}.{}` must be a boolean",
                self.section, self.key
            ))),
        }
    }
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// The dotted path of the first value cargo should have resolved from the workspace before
/// packaging (`{ workspace = true }`): a `[package]` field, a dependency (of any kind, also
/// under `[target.'…']`), or `[lints]`. Free-form tables such as `package.metadata` may hold
/// `workspace = true` legitimately and are not looked at.
fn find_workspace_inheritance(table: &Table) -> Option<String> {
    fn inherits(value: &Value) -> bool {
        value
            .as_table()
            .is_some_and(|table| table.get("workspace") == Some(&Value::Boolean(true)))
    }
    fn in_dependencies(table: &Table, prefix: &str) -> Option<String> {
        DEPENDENCY_TABLES.iter().find_map(|(section, _)| {
            let deps = table.get(*section)?.as_table()?;
            deps.iter()
                .find(|(_, spec)| inherits(spec))
                .map(|(name, _)| format!("{prefix}{section}.{name}"))
        })
    }

    for section in ["package", "project"] {
        if let Some(package) = table.get(section).and_then(Value::as_table)
            && let Some((key, _)) = package
                .iter()
                .find(|(key, value)| *key != "metadata" && inherits(value))
        {
            return Some(format!("{section}.{key}"));
        }
    }
    if let Some(lints) = table.get("lints")
        && inherits(lints)
    {
        return Some("lints".to_owned());
    }
    if let Some(path) = in_dependencies(table, "") {
        return Some(path);
    }
    let targets = table.get("target").and_then(Value::as_table)?;
    targets.iter().find_map(|(platform, target)| {
        in_dependencies(target.as_table()?, &format!("target.'{platform}'."))
    })
}

/// Checks every `[target.'…']` key against the platform bounds, before anything formats or
/// parses it.
fn check_targets(table: &Table) -> Result<(), TarballError> {
    let Some(Value::Table(targets)) = table.get("target") else {
        return Ok(());
    };
    targets
        .keys()
        .try_for_each(|platform| check_platform(platform).map_err(TarballError::InvalidTarget))
}

fn parse_features(table: &Table) -> Result<FeatureMap, TarballError> {
    let Some(features) = table.get("features") else {
        return Ok(FeatureMap::new());
    };
    let features = features
        .as_table()
        .ok_or_else(|| invalid("`features` must be a table"))?;
    features
        .iter()
        .map(|(name, values)| {
            let values = string_list(values)
                .ok_or_else(|| invalid(format!("feature `{name}` must be an array of strings")))?;
            Ok((name.clone(), values))
        })
        .collect()
}

fn parse_all_dependencies(
    table: &Table,
    own_index_urls: &[String],
) -> Result<Vec<IndexDependency>, TarballError> {
    let mut deps = Vec::new();
    parse_dependency_tables(table, None, own_index_urls, &mut deps)?;
    if let Some(targets) = table.get("target") {
        let targets = targets
            .as_table()
            .ok_or_else(|| invalid("`target` must be a table"))?;
        for (platform, target_table) in targets {
            let target_table = target_table
                .as_table()
                .ok_or_else(|| invalid(format!("`target.{platform}` must be a table")))?;
            let platform = normalize_platform(platform);
            parse_dependency_tables(target_table, Some(&platform), own_index_urls, &mut deps)?;
        }
    }
    deps.sort();
    Ok(deps)
}

fn parse_dependency_tables(
    table: &Table,
    target: Option<&str>,
    own_index_urls: &[String],
    deps: &mut Vec<IndexDependency>,
) -> Result<(), TarballError> {
    for &(section, kind) in DEPENDENCY_TABLES {
        let Some(entries) = table.get(section) else {
            continue;
        };
        let entries = entries
            .as_table()
            .ok_or_else(|| invalid(format!("`{section}` must be a table")))?;
        for (name, spec) in entries {
            if let Some(dep) = parse_dependency(name, spec, kind, target, own_index_urls)? {
                deps.push(dep);
            }
        }
    }
    Ok(())
}

/// Converts one dependency to its index form; `None` for a dev-dependency without a version
/// (cargo strips those when packaging, old cargo did not).
fn parse_dependency(
    name: &str,
    spec: &Value,
    kind: DependencyKind,
    target: Option<&str>,
    own_index_urls: &[String],
) -> Result<Option<IndexDependency>, TarballError> {
    let bad = |reason: String| TarballError::InvalidDependency {
        name: name.to_owned(),
        reason,
    };
    if !is_valid_dependency_key(name) {
        return Err(bad(
            "the name may contain only ASCII alphanumerics, `-` and `_`, must \
                        start with a letter or `_` and be at most 64 characters"
                .to_owned(),
        ));
    }
    let mut dep = IndexDependency {
        name: name.to_owned(),
        req: String::new(),
        features: Vec::new(),
        optional: false,
        default_features: true,
        target: target.map(str::to_owned),
        kind,
        registry: None,
        package: None,
    };
    let (version, registry_index) = match spec {
        Value::String(version) => (Some(version.clone()), None),
        Value::Table(table) => {
            let field = |key: &'static str| Field { section: name, key };
            dep.features = field("features").strings(table)?;
            dep.optional = field("optional").bool(table)?.unwrap_or(false);
            dep.default_features = match field("default-features").bool(table)? {
                Some(value) => value,
                None => field("default_features").bool(table)?.unwrap_or(true),
            };
            dep.package = field("package").string(table)?;
            let registry_index = field("registry-index").string(table)?;
            if registry_index.is_none()
                && let Some(registry) = field("registry").string(table)?
            {
                return Err(bad(format!(
                    "it names the registry `{registry}` instead of giving its `registry-index`"
                )));
            }
            (field("version").string(table)?, registry_index)
        }
        _ => return Err(bad("expected a version string or a table".to_owned())),
    };
    let Some(version) = version else {
        return match kind {
            DependencyKind::Dev => Ok(None),
            _ => Err(TarballError::MissingDependencyVersion {
                name: name.to_owned(),
            }),
        };
    };
    let req = semver::VersionReq::parse(&version)
        .map_err(|error| bad(format!("invalid version requirement `{version}`: {error}")))?;
    dep.req = req.to_string();
    // In a manifest, a dependency without `registry-index` comes from crates.io.
    let registry = registry_index.as_deref().unwrap_or(CRATES_IO_INDEX);
    dep.registry = index_registry(Some(registry), own_index_urls);
    Ok(Some(dep))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEEP: usize = 100_000;

    /// The recursion limit of the `toml` parser.
    const TOML_MAX_DEPTH: usize = 80;

    fn package(rest: &str) -> String {
        format!("[package]\nname = \"foo\"\nversion = \"0.1.0\"\n{rest}")
    }

    /// Parses `text` on a thread with a 2 MiB stack (the default for spawned threads) and
    /// returns the error message; a stack overflow aborts the test binary.
    fn parse_on_small_stack(text: String) -> String {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(
                move || match parse_manifest(&text, &[], &ManifestLimits::default()) {
                    Ok(_) => "accepted".to_owned(),
                    Err(error) => error.to_string(),
                },
            )
            .expect("spawn")
            .join()
            .expect("no stack overflow or panic")
    }

    #[test]
    fn deeply_nested_cfg_target_is_refused() {
        let target = format!("cfg({}unix{})", "not(".repeat(DEEP), ")".repeat(DEEP));
        let text = package(&format!(
            "[target.'{target}'.dependencies]\nlibc = \"0.2\"\n"
        ));
        let message = parse_on_small_stack(text);
        assert!(message.contains("nests deeper than 64 levels"), "{message}");
        assert!(message.len() < 300, "{message}");
    }

    #[test]
    fn nesting_up_to_the_toml_limit_is_read() {
        let within = TOML_MAX_DEPTH / 2;
        let ok = format!("a = {}{}", "[".repeat(within), "]".repeat(within));
        assert_eq!(
            parse_on_small_stack(package(&format!("[package.metadata]\n{ok}\n"))),
            "accepted"
        );
        let deep = TOML_MAX_DEPTH + 1;
        let bad = format!("a = {}{}", "[".repeat(deep), "]".repeat(deep));
        let message = parse_on_small_stack(package(&format!("[package.metadata]\n{bad}\n")));
        assert!(message.contains("recurs"), "{message}");
    }

    #[test]
    fn deeply_nested_toml_is_refused() {
        let cases = [
            (
                "array",
                format!("a = {}{}", "[".repeat(DEEP), "]".repeat(DEEP)),
            ),
            (
                "inline table",
                format!("a = {}1{}", "{b = ".repeat(DEEP), "}".repeat(DEEP)),
            ),
            ("dotted key", format!("{}a = 1", "a.".repeat(DEEP))),
            ("header", format!("[{}a]\nb = 1", "a.".repeat(DEEP))),
            (
                "array of tables",
                format!("[[{}a]]\nb = 1", "a.".repeat(DEEP)),
            ),
            (
                "mixed",
                format!("a = {}{}", "[{b = ".repeat(DEEP), "}]".repeat(DEEP)),
            ),
        ];
        for (what, rest) in cases {
            let message = parse_on_small_stack(package(&format!("[package.metadata]\n{rest}\n")));
            assert!(message.starts_with("failed to parse"), "{what}: {message}");
            assert!(message.contains("recurs"), "{what}: {message}");
            assert!(message.len() < 1000, "{what}: {} bytes", message.len());
        }
    }
}
