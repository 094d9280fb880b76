//! Real-world check: every `.crate` in the local cargo cache is inspected, turned into an index
//! line, and compared with the line crates.io serves for that version (from cargo's local
//! sparse-index cache).
//!
//! Files read (the test does I/O; the library does not):
//! - `$CARGO_HOME/registry/cache/<registry dir>/*.crate` (CARGO_HOME defaults to `~/.cargo`);
//! - `$CARGO_HOME/registry/index/<registry dir>/.cache/<index path>`, cargo's cache of sparse
//!   index files (format below).
//!
//! Compared per crate: name and version; `cksum` (sha256 of the file); dependencies as sorted
//! lists of (name, req, features, optional, default_features, target, kind, package, registry);
//! features (crates.io's `features` + `features2` against the manifest's `[features]`) and the
//! `features`/`features2` split; `links`; `rust_version`.
//!
//! Known classes, handled explicitly:
//! - `[target.'cfg(…)'.…]` keys are written verbatim in the tarball but canonically re-spaced
//!   in the index (cargo sends `Platform::to_string()` in the publish metadata); `inspect`
//!   normalises them, so these are compared exactly.
//! - crates.io lines have no `registry` for crates.io dependencies: the tarball is read with
//!   crates.io's index URLs as `own_index_urls`, exactly as crates.io itself would.
//! - A cached `.crate` whose index file or version is missing from the cache is skipped and
//!   reported (it cannot be compared); the test fails if fewer than 50 crates were compared.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use depot_cratefile::tarball::inspect;
use depot_cratefile::{CRATES_IO_INDEX, CRATES_IO_SPARSE_INDEX, TarballLimits};
use depot_index::{DependencyKind, FeatureMap, index_path};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The fewest crates the test must compare to count as evidence.
const MIN_CHECKED: usize = 50;

/// cargo's cache file version (`CURRENT_CACHE_VERSION` in cargo's `index/cache.rs`).
const CACHE_VERSION: u8 = 3;

fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").expect("neither CARGO_HOME nor HOME is set");
    PathBuf::from(home).join(".cargo")
}

/// Parses one file of cargo's index cache:
///
/// ```text
/// u8 cache version (3) | u32 LE index format version | index version (ETag/Last-Modified) | NUL
/// then, per version: version string | NUL | JSON line | NUL
/// ```
fn parse_index_cache(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if bytes.len() < 5 {
        return Err("file shorter than its header".into());
    }
    if bytes[0] != CACHE_VERSION {
        return Err(format!(
            "cache version {} (expected {CACHE_VERSION})",
            bytes[0]
        ));
    }
    let mut fields = bytes[5..].split(|&b| b == 0);
    let _index_version = fields.next().ok_or("missing index version")?;
    let mut lines = BTreeMap::new();
    while let Some(version) = fields.next() {
        if version.is_empty() {
            // The trailing NUL leaves one empty field at the end.
            break;
        }
        let line = fields.next().ok_or("version without a line")?;
        let version = String::from_utf8(version.to_vec()).map_err(|e| e.to_string())?;
        let line = String::from_utf8(line.to_vec()).map_err(|e| e.to_string())?;
        lines.insert(version, line);
    }
    Ok(lines)
}

/// Splits `foo-bar-1.2.3-rc.1` into name and version: the first `-` followed by a digit whose
/// remainder parses as a semver version.
fn split_name_version(stem: &str) -> Option<(&str, &str)> {
    stem.match_indices('-').find_map(|(at, _)| {
        let (name, rest) = (&stem[..at], &stem[at + 1..]);
        let starts_with_digit = rest.bytes().next().is_some_and(|b| b.is_ascii_digit());
        (starts_with_digit && semver::Version::parse(rest).is_ok()).then_some((name, rest))
    })
}

type DepTuple = (
    String,
    String,
    Vec<String>,
    bool,
    bool,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

fn dep_tuple_from_json(dep: &Value) -> DepTuple {
    let string = |key: &str| dep.get(key).and_then(Value::as_str).map(str::to_owned);
    (
        string("name").expect("index dependency without a name"),
        string("req").expect("index dependency without a req"),
        dep.get("features")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        dep.get("optional")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        dep.get("default_features")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        string("target"),
        string("kind").unwrap_or_else(|| "normal".into()),
        string("package"),
        string("registry"),
    )
}

fn feature_map(value: Option<&Value>) -> FeatureMap {
    match value {
        None | Some(Value::Null) => FeatureMap::new(),
        Some(value) => serde_json::from_value(value.clone()).expect("index features are a map"),
    }
}

/// Lines only on one side of two sorted lists, for a readable diff.
fn diff<T: Ord + std::fmt::Debug>(ours: &[T], theirs: &[T]) -> String {
    let ours_set: BTreeSet<_> = ours.iter().collect();
    let theirs_set: BTreeSet<_> = theirs.iter().collect();
    let mut out = String::new();
    for item in ours_set.difference(&theirs_set) {
        writeln!(out, "      - ours:     {item:?}").unwrap();
    }
    for item in theirs_set.difference(&ours_set) {
        writeln!(out, "      + crates.io: {item:?}").unwrap();
    }
    if out.is_empty() {
        // Same elements, different multiplicities.
        writeln!(out, "      ours: {ours:?}\n      crates.io: {theirs:?}").unwrap();
    }
    out
}

/// How much of the interesting ground the compared crates covered.
#[derive(Debug, Default)]
struct Coverage {
    deps: usize,
    target_deps: usize,
    respaced_targets: usize,
    renamed_deps: usize,
    dev_deps: usize,
    build_deps: usize,
    features2: usize,
    links: usize,
    rust_version: usize,
    readmes: usize,
}

/// Compares one `.crate` with its index line; returns the differences (empty when equal).
fn compare(
    path: &Path,
    name: &str,
    vers: &str,
    line: &str,
    limits: &TarballLimits,
    coverage: &mut Coverage,
) -> Vec<String> {
    let bytes = std::fs::read(path).expect("reading a cached .crate");
    let contents = match inspect(&bytes[..], name, vers, limits) {
        Ok(contents) => contents,
        Err(error) => return vec![format!("inspect failed: {error}")],
    };
    let cksum = hex::encode(Sha256::digest(&bytes));
    let entry = contents.index_entry(&cksum, None);
    let index: Value = serde_json::from_str(line).expect("index lines are JSON");
    let mut problems = Vec::new();

    coverage.deps += entry.deps.len();
    coverage.target_deps += entry.deps.iter().filter(|d| d.target.is_some()).count();
    coverage.renamed_deps += entry.deps.iter().filter(|d| d.package.is_some()).count();
    coverage.dev_deps += entry
        .deps
        .iter()
        .filter(|d| d.kind == DependencyKind::Dev)
        .count();
    coverage.build_deps += entry
        .deps
        .iter()
        .filter(|d| d.kind == DependencyKind::Build)
        .count();
    coverage.features2 += usize::from(entry.features2.is_some());
    coverage.links += usize::from(entry.links.is_some());
    coverage.rust_version += usize::from(entry.rust_version.is_some());
    coverage.respaced_targets += respaced_targets(&bytes, name, vers);
    // cargo refuses to package a crate whose declared readme is missing, so a declared readme
    // must have been found.
    match (&contents.readme_file, &contents.readme) {
        (Some(_), Some(_)) => coverage.readmes += 1,
        (Some(file), None) => problems.push(format!("readme `{file}` declared but not found")),
        _ => {}
    }

    let index_str = |key: &str| index.get(key).and_then(Value::as_str).map(str::to_owned);
    if index_str("name").as_deref() != Some(&entry.name)
        || index_str("vers").as_deref() != Some(&entry.vers)
    {
        problems.push(format!(
            "name/vers: ours {} {}, crates.io {:?} {:?}",
            entry.name,
            entry.vers,
            index_str("name"),
            index_str("vers")
        ));
    }
    if index_str("cksum").as_deref() != Some(&cksum) {
        problems.push(format!(
            "cksum: ours {cksum}, crates.io {:?}",
            index_str("cksum")
        ));
    }

    let mut ours: Vec<DepTuple> = entry
        .deps
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.req.clone(),
                d.features.clone(),
                d.optional,
                d.default_features,
                d.target.clone(),
                d.kind.as_str().to_owned(),
                d.package.clone(),
                d.registry.clone(),
            )
        })
        .collect();
    // crates.io keeps a `cfg(…)` target as the publishing cargo sent it: older cargo re-spaced
    // it canonically, newer cargo sends it as written (`cfg(target_family="unix")`). The
    // `.crate` alone cannot tell which, so targets are compared in canonical form.
    let mut theirs: Vec<DepTuple> = index
        .get("deps")
        .and_then(Value::as_array)
        .expect("index line without deps")
        .iter()
        .map(dep_tuple_from_json)
        .map(|mut dep| {
            dep.5 = dep.5.as_deref().map(depot_cratefile::normalize_platform);
            dep
        })
        .collect();
    ours.sort();
    theirs.sort();
    if ours != theirs {
        problems.push(format!("deps differ:\n{}", diff(&ours, &theirs)));
    }

    let index_features = feature_map(index.get("features"));
    let index_features2 = feature_map(index.get("features2"));
    let mut merged = index_features.clone();
    merged.extend(index_features2.clone());
    if merged != contents.features {
        let ours: Vec<_> = contents.features.iter().collect();
        let theirs: Vec<_> = merged.iter().collect();
        problems.push(format!("features differ:\n{}", diff(&ours, &theirs)));
    } else if entry.features != index_features
        || entry.features2.clone().unwrap_or_default() != index_features2
    {
        problems.push(format!(
            "features split differently: ours features2 = {:?}, crates.io features2 = {:?}",
            entry
                .features2
                .as_ref()
                .map(|f| f.keys().collect::<Vec<_>>()),
            index_features2.keys().collect::<Vec<_>>()
        ));
    }
    if index_str("links") != entry.links {
        problems.push(format!(
            "links: ours {:?}, crates.io {:?}",
            entry.links,
            index_str("links")
        ));
    }
    if index_str("rust_version") != entry.rust_version {
        problems.push(format!(
            "rust_version: ours {:?}, crates.io {:?}",
            entry.rust_version,
            index_str("rust_version")
        ));
    }
    problems
}

/// How many `[target.'…']` keys of the crate's `Cargo.toml` are not in canonical form (these
/// exercise the platform normalisation).
fn respaced_targets(crate_file: &[u8], name: &str, vers: &str) -> usize {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(crate_file));
    let wanted = format!("{name}-{vers}/Cargo.toml");
    for entry in archive.entries().expect("reading a cached .crate") {
        let mut entry = entry.expect("reading a cached .crate");
        if entry.path_bytes().as_ref() == wanted.as_bytes() {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).expect("reading Cargo.toml");
            let manifest: toml::Table = toml::from_str(&text).expect("parsing Cargo.toml");
            return manifest
                .get("target")
                .and_then(toml::Value::as_table)
                .map_or(0, |targets| {
                    targets
                        .keys()
                        .filter(|key| depot_cratefile::normalize_platform(key) != **key)
                        .count()
                });
        }
    }
    0
}

#[test]
fn cached_crates_match_crates_io_index() {
    let registry = cargo_home().join("registry");
    let limits = TarballLimits {
        own_index_urls: vec![
            CRATES_IO_INDEX.to_owned(),
            CRATES_IO_SPARSE_INDEX.to_owned(),
        ],
        // crates.io raises the feature limit for some crates (web-sys 0.3 has 1,727 features).
        manifest: depot_cratefile::ManifestLimits {
            max_features: 10_000,
            ..depot_cratefile::ManifestLimits::default()
        },
        ..TarballLimits::default()
    };
    let mut checked = 0;
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    let mut coverage = Coverage::default();

    let cache_dirs = std::fs::read_dir(registry.join("cache"))
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", registry.join("cache").display()));
    for cache_dir in cache_dirs {
        let cache_dir = cache_dir.expect("listing the registry cache").path();
        let index_cache = registry
            .join("index")
            .join(cache_dir.file_name().unwrap())
            .join(".cache");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cache_dir)
            .expect("listing a registry cache directory")
            .map(|e| e.expect("listing a registry cache directory").path())
            .filter(|p| p.extension().is_some_and(|e| e == "crate"))
            .collect();
        files.sort();
        for file in files {
            let stem = file.file_stem().unwrap().to_str().expect("UTF-8 file name");
            let Some((name, vers)) = split_name_version(stem) else {
                skipped.push(format!("{stem}: cannot split name and version"));
                continue;
            };
            let index_file = index_cache.join(index_path(name));
            let lines = match std::fs::read(&index_file) {
                Ok(bytes) => parse_index_cache(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", index_file.display())),
                Err(_) => {
                    skipped.push(format!(
                        "{stem}: no cached index file {}",
                        index_file.display()
                    ));
                    continue;
                }
            };
            let Some(line) = lines.get(vers) else {
                skipped.push(format!(
                    "{stem}: version {vers} not in the cached index file"
                ));
                continue;
            };
            checked += 1;
            let problems = compare(&file, name, vers, line, &limits, &mut coverage);
            if !problems.is_empty() {
                failures.push(format!("{name} {vers}:\n    {}", problems.join("\n    ")));
            }
        }
    }

    println!("compared {checked} cached crates with their crates.io index lines");
    println!("coverage: {coverage:?}");
    for skip in &skipped {
        println!("skipped {skip}");
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} crates differ from crates.io's index:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked >= MIN_CHECKED,
        "only {checked} crates compared (at least {MIN_CHECKED} required); is the cargo cache \
         under {} populated?",
        registry.display()
    );
}

#[test]
fn splits_names_with_dashes_and_digits() {
    assert_eq!(
        split_name_version("sha-1-0.10.0"),
        Some(("sha-1", "0.10.0"))
    );
    assert_eq!(
        split_name_version("foo-bar-1.2.3-rc.1"),
        Some(("foo-bar", "1.2.3-rc.1"))
    );
    assert_eq!(
        split_name_version("toml_datetime-1.1.3+spec-1.1.0"),
        Some(("toml_datetime", "1.1.3+spec-1.1.0"))
    );
    assert_eq!(split_name_version("nodigits"), None);
}
