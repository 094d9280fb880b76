//! Generator tests: the DAG, the size distribution, manifest/metadata agreement and the
//! `.crate` format.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;

use super::*;

const INDEX: &str = "sparse+http://127.0.0.1:8000/index/";

fn params(crates: usize, max_size: u64) -> GenParams {
    GenParams {
        crates,
        versions_per_crate: None,
        max_size,
        incompressible_fraction: 0.3,
        crates_io_dep_fraction: 0.1,
        seed: 42,
        prefix: "lttest".to_owned(),
        registry_index: INDEX.to_owned(),
    }
}

fn semver_triple(v: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = v.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{v}");
    (parts[0], parts[1], parts[2])
}

#[test]
fn the_graph_is_a_dag_in_topological_order() {
    let plan = Plan::generate(&params(300, 20 * MIB));
    assert_eq!(plan.crates.len(), 300);
    for (i, krate) in plan.crates.iter().enumerate() {
        for v in 0..krate.versions.len() {
            let unit = &plan.units[krate.first_unit + v];
            assert_eq!((unit.krate, unit.version), (i, v));
        }
        // Versions strictly increase.
        for pair in krate.versions.windows(2) {
            assert!(
                semver_triple(&pair[0]) < semver_triple(&pair[1]),
                "{pair:?}"
            );
        }
    }
    for (id, unit) in plan.units.iter().enumerate() {
        assert!(
            unit.prereqs.windows(2).all(|w| w[0] < w[1]),
            "sorted, unique"
        );
        assert!(
            unit.prereqs.iter().all(|&p| p < id),
            "unit {id}: {:?}",
            unit.prereqs
        );
        if unit.version > 0 {
            assert!(unit.prereqs.contains(&(id - 1)));
            assert_eq!(plan.units[id - 1].krate, unit.krate);
        }
        let mut seen = HashSet::new();
        for dep in &unit.deps {
            if let DepSource::Local { krate, version } = dep.source {
                assert!(krate < unit.krate, "deps point to earlier crates only");
                assert!(version < plan.crates[krate].versions.len());
                assert!(
                    unit.prereqs
                        .contains(&(plan.crates[krate].first_unit + version))
                );
                assert!(seen.insert(krate), "a crate is depended on once");
            }
        }
    }
}

#[test]
fn names_are_unique_and_valid() {
    let plan = Plan::generate(&params(2000, 20 * MIB));
    let mut canonical = HashSet::new();
    for krate in &plan.crates {
        let name = &krate.name;
        assert!(name.len() <= 64 && name.starts_with("lttest"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert!(
            canonical.insert(name.to_ascii_lowercase().replace('-', "_")),
            "{name}"
        );
    }
}

#[test]
fn the_plan_has_variety() {
    let plan = Plan::generate(&params(300, 20 * MIB));
    let deps: Vec<&PlannedDep> = plan.units.iter().flat_map(|u| &u.deps).collect();
    let count = |f: &dyn Fn(&PlannedDep) -> bool| deps.iter().filter(|d| f(d)).count();
    assert!(count(&|d| d.kind == DepKind::Dev) > 0);
    assert!(count(&|d| d.kind == DepKind::Build) > 0);
    assert!(count(&|d| d.optional) > 0);
    assert!(count(&|d| d.alias.is_some()) > 0);
    assert!(count(&|d| d.target.is_some()) > 0);
    assert!(count(&|d| d.source == DepSource::CratesIo) > 0);
    assert!(count(&|d| !d.default_features) > 0);
    let multi = plan.crates.iter().filter(|c| c.versions.len() > 1).count();
    assert!(
        (60..=160).contains(&multi),
        "{multi} crates with several versions"
    );
    assert!(plan.units.iter().any(|u| u.incompressible));
    let fixed = Plan::generate(&GenParams {
        versions_per_crate: Some(3),
        ..params(50, MIB)
    });
    assert!(fixed.crates.iter().all(|c| c.versions.len() == 3));
    assert_eq!(fixed.units.len(), 150);
}

#[test]
fn the_plan_is_deterministic_and_scales() {
    let a = Plan::generate(&params(10_000, 20 * MIB));
    let b = Plan::generate(&params(10_000, 20 * MIB));
    assert_eq!(a.units, b.units);
    assert_eq!(a.crates, b.crates);
    assert!(a.units.len() >= 10_000);
    let c = Plan::generate(&GenParams {
        seed: 43,
        ..params(10_000, 20 * MIB)
    });
    assert_ne!(a.units, c.units);
}

#[test]
fn sizes_follow_the_distribution() {
    let max = 20 * MIB;
    let plan = Plan::generate(&params(10_000, max));
    let crates: Vec<u64> = plan
        .crates
        .iter()
        .map(|c| plan.units[c.first_unit].target_size)
        .collect();
    let n = crates.len() as f64;
    let share = |f: &dyn Fn(u64) -> bool| crates.iter().filter(|&&s| f(s)).count() as f64 / n;
    let small = share(&|s| s < 16 * KIB);
    let medium = share(&|s| (16 * KIB..MIB).contains(&s));
    let large = share(&|s| s >= MIB);
    assert!((small - 0.70).abs() < 0.02, "small {small}");
    assert!((medium - 0.25).abs() < 0.02, "medium {medium}");
    assert!((large - 0.05).abs() < 0.01, "large {large}");
    assert!(
        plan.units
            .iter()
            .all(|u| (KIB..=max).contains(&u.target_size))
    );
    assert!(
        crates.iter().any(|&s| s > 10 * MIB),
        "tens of MB are reached"
    );
    assert!(crates.iter().all(|&s| s >= 2 * KIB));

    // A smaller max caps everything.
    let capped = Plan::generate(&params(2000, 64 * KIB));
    assert!(capped.units.iter().all(|u| u.target_size <= 64 * KIB));
}

#[test]
fn built_sizes_match_their_targets() {
    let plan = Plan::generate(&params(200, 2 * MIB));
    let mut checked_large = 0;
    for (id, unit) in plan.units.iter().enumerate() {
        // Every small one, and a few large ones of each kind (slow in debug builds).
        let large = unit.target_size >= LARGE_CRATE;
        if large && checked_large >= 4 {
            continue;
        }
        let built = plan.build(id).unwrap();
        let actual = built.crate_bytes.len() as f64;
        let target = unit.target_size as f64;
        assert!(
            actual > target * 0.85 && actual < target * 1.15,
            "unit {id}: target {target}, actual {actual}, incompressible {}",
            unit.incompressible
        );
        assert_eq!(
            built.crate_bytes.len() as u64 >= LARGE_CRATE,
            large,
            "the size class holds"
        );
        checked_large += usize::from(large);
        // The whole gzip stream decodes, trailer (CRC32, size) included.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&built.crate_bytes[..])
            .read_to_end(&mut tar)
            .unwrap_or_else(|e| panic!("unit {id}: {e}"));
        assert_eq!(tar.len() % 512, 0);
        assert!(
            tar.len() as u64 >= unit.target_size,
            "unit {id}: the content is larger than the crate"
        );
    }
    assert!(checked_large > 0);
}

#[test]
fn no_built_crate_exceeds_the_largest_size() {
    // Seeds whose plans once produced a `.crate` over a 10 MiB maximum.
    let max = 10 * MIB;
    let mut checked = 0;
    for seed in [416, 71_000] {
        let plan = Plan::generate(&GenParams {
            seed,
            crates_io_dep_fraction: 0.0,
            ..params(1000, max)
        });
        for (id, unit) in plan.units.iter().enumerate() {
            if unit.target_size < max - max / 8 {
                continue;
            }
            let built = plan.build(id).unwrap();
            assert!(
                built.crate_bytes.len() as u64 <= max,
                "unit {id}: {} bytes, target {}, incompressible {}",
                built.crate_bytes.len(),
                unit.target_size,
                unit.incompressible
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

/// A dependency from the manifest, in publish-metadata form.
fn manifest_deps(manifest: &toml::Table) -> Vec<NewCrateDep> {
    let mut deps = Vec::new();
    let mut tables: Vec<(Option<String>, &toml::Table)> = vec![(None, manifest)];
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        for (platform, table) in targets {
            tables.push((Some(platform.clone()), table.as_table().unwrap()));
        }
    }
    for (target, table) in tables {
        for (section, kind) in [
            ("dependencies", DepKind::Normal),
            ("dev-dependencies", DepKind::Dev),
            ("build-dependencies", DepKind::Build),
        ] {
            let Some(entries) = table.get(section).and_then(|t| t.as_table()) else {
                continue;
            };
            for (key, spec) in entries {
                let spec = spec.as_table().unwrap();
                let string = |k: &str| spec.get(k).map(|v| v.as_str().unwrap().to_owned());
                let flag =
                    |k: &str, default: bool| spec.get(k).map_or(default, |v| v.as_bool().unwrap());
                let package = string("package");
                let registry = match string("registry-index") {
                    None => Some(CRATES_IO_INDEX.to_owned()),
                    Some(url) if url == INDEX => None,
                    Some(other) => Some(other),
                };
                deps.push(NewCrateDep {
                    optional: flag("optional", false),
                    default_features: flag("default-features", true),
                    name: package.clone().unwrap_or_else(|| key.clone()),
                    features: spec
                        .get("features")
                        .and_then(|f| f.as_array())
                        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default(),
                    version_req: string("version").unwrap(),
                    target: target.clone(),
                    kind,
                    registry,
                    explicit_name_in_toml: package.map(|_| key.clone()),
                });
            }
        }
    }
    deps
}

fn sorted(mut deps: Vec<NewCrateDep>) -> Vec<NewCrateDep> {
    deps.sort_by(|a, b| (a.kind, &a.target, &a.name).cmp(&(b.kind, &b.target, &b.name)));
    deps
}

#[test]
fn manifests_and_metadata_agree() {
    let plan = Plan::generate(&params(150, 32 * KIB));
    for id in 0..plan.units.len() {
        let built = plan.build(id).unwrap();
        let meta = &built.metadata;
        let manifest: toml::Table = toml::from_str(&built.manifest)
            .unwrap_or_else(|e| panic!("unit {id}: {e}\n{}", built.manifest));
        let package = manifest["package"].as_table().unwrap();
        let s = |k: &str| package.get(k).map(|v| v.as_str().unwrap().to_owned());
        let list = |k: &str| -> Vec<String> {
            package[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(s("name").as_deref(), Some(meta.name.as_str()));
        assert_eq!(s("version").as_deref(), Some(meta.vers.as_str()));
        assert_eq!(s("description"), meta.description);
        assert_eq!(s("license"), meta.license);
        assert_eq!(s("rust-version"), meta.rust_version);
        assert_eq!(s("links"), meta.links);
        assert_eq!(s("documentation"), meta.documentation);
        assert_eq!(s("repository"), meta.repository);
        assert_eq!(s("homepage"), meta.homepage);
        assert_eq!(s("readme"), meta.readme_file);
        assert_eq!(list("keywords"), meta.keywords);
        assert_eq!(list("categories"), meta.categories);
        assert_eq!(list("authors"), meta.authors);
        let features: BTreeMap<String, Vec<String>> = manifest
            .get("features")
            .map(|f| f.clone().try_into().unwrap())
            .unwrap_or_default();
        assert_eq!(features, meta.features, "unit {id}");
        assert_eq!(
            sorted(manifest_deps(&manifest)),
            sorted(meta.deps.clone()),
            "unit {id}:\n{}",
            built.manifest
        );
        // Every `dep:` feature names an optional normal dependency of the crate.
        for values in meta.features.values() {
            for value in values {
                if let Some(key) = value.strip_prefix("dep:") {
                    assert!(
                        meta.deps
                            .iter()
                            .any(|d| d.key() == key && d.optional && d.kind == DepKind::Normal),
                        "{value}"
                    );
                }
            }
        }
    }
}

#[test]
fn metadata_json_has_cargos_shape() {
    let plan = Plan::generate(&params(200, 32 * KIB));
    let mut saw_renamed = false;
    let mut saw_crates_io = false;
    for id in 0..plan.units.len() {
        let json = serde_json::to_value(plan.metadata(id)).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "vers",
                "deps",
                "features",
                "authors",
                "description",
                "documentation",
                "homepage",
                "readme",
                "readme_file",
                "keywords",
                "categories",
                "license",
                "license_file",
                "repository",
                "badges",
                "links",
                "rust_version"
            ]
        );
        let mut last_rank = (false, 0);
        for dep in json["deps"].as_array().unwrap() {
            let keys: Vec<&str> = dep
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys[..7],
                [
                    "optional",
                    "default_features",
                    "name",
                    "features",
                    "version_req",
                    "target",
                    "kind"
                ]
            );
            let req = dep["version_req"].as_str().unwrap();
            assert!(req.starts_with('^'), "{req}");
            match dep.get("registry") {
                Some(r) => {
                    assert_eq!(r, CRATES_IO_INDEX);
                    saw_crates_io = true;
                }
                None => assert!(dep["name"].as_str().unwrap().starts_with("lttest")),
            }
            if let Some(alias) = dep.get("explicit_name_in_toml") {
                assert_ne!(alias, &dep["name"]);
                saw_renamed = true;
            }
            // cargo's order: normal, dev, build, then target-specific.
            let kind_rank = match dep["kind"].as_str().unwrap() {
                "normal" => 0,
                "dev" => 1,
                "build" => 2,
                other => panic!("kind {other}"),
            };
            let rank = (!dep["target"].is_null(), kind_rank);
            assert!(rank >= last_rank, "{json}");
            last_rank = rank;
        }
    }
    assert!(saw_renamed && saw_crates_io);
}

#[test]
fn crates_are_gzipped_tars_under_the_right_prefix() {
    let plan = Plan::generate(&params(60, 256 * KIB));
    let mut saw_blob = false;
    for id in 0..plan.units.len() {
        let built = plan.build(id).unwrap();
        let root = format!("{}-{}", built.name, built.vers);
        assert_eq!(built.cksum, hex::encode(Sha256::digest(&built.crate_bytes)));
        assert_eq!(&built.crate_bytes[..2], &[0x1f, 0x8b], "gzip magic");
        let gz = flate2::read::GzDecoder::new(&built.crate_bytes[..]);
        assert_eq!(
            gz.header().and_then(|h| h.filename()),
            Some(format!("{root}.crate").as_bytes())
        );
        let mut archive = tar::Archive::new(gz);
        let mut paths = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            assert!(header.entry_type().is_file());
            assert_eq!(header.mode().unwrap(), 0o644);
            assert_eq!(header.mtime().unwrap(), CARGO_MTIME);
            let path = entry.path().unwrap().to_str().unwrap().to_owned();
            let rel = path
                .strip_prefix(&format!("{root}/"))
                .unwrap_or_else(|| panic!("{path} is not under {root}/"))
                .to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert_eq!(data.len() as u64, header.size().unwrap());
            match rel.as_str() {
                "Cargo.toml" => assert_eq!(data, built.manifest.as_bytes()),
                "src/lib.rs" => {
                    assert!(String::from_utf8(data).unwrap().contains("pub fn answer()"));
                }
                "data/blob.bin" => saw_blob = true,
                _ => {}
            }
            paths.push(rel);
        }
        assert!(paths.iter().any(|p| p == "Cargo.toml"));
        assert!(paths.iter().any(|p| p == "src/lib.rs"));
        assert_eq!(
            paths.iter().any(|p| p == "build.rs"),
            built.metadata.deps.iter().any(|d| d.kind == DepKind::Build)
        );
    }
    assert!(saw_blob);
}

#[test]
fn builds_are_deterministic_and_framed() {
    let plan = Plan::generate(&params(20, 64 * KIB));
    let again = Plan::generate(&params(20, 64 * KIB));
    for id in [0, 5, plan.units.len() - 1] {
        let a = plan.build(id).unwrap();
        let b = again.build(id).unwrap();
        assert_eq!(a.crate_bytes, b.crate_bytes);
        assert_eq!(a.cksum, b.cksum);

        let body = a.publish_body().unwrap();
        let json_len = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        let json: NewCrate = serde_json::from_slice(&body[4..4 + json_len]).unwrap();
        assert_eq!(json, a.metadata);
        let at = 4 + json_len;
        let crate_len = u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&body[at + 4..], &a.crate_bytes[..]);
        assert_eq!(crate_len, a.crate_bytes.len());
    }
    let other = Plan::generate(&GenParams {
        seed: 7,
        ..params(20, 64 * KIB)
    });
    assert_ne!(other.build(0).unwrap().cksum, plan.build(0).unwrap().cksum);
}

#[test]
fn paths() {
    assert_eq!(index_path("a"), "1/a");
    assert_eq!(index_path("Ab"), "2/ab");
    assert_eq!(index_path("syn"), "3/s/syn");
    assert_eq!(index_path("My_Crate"), "my/_c/my_crate");
    assert_eq!(dl_prefix("My_Crate"), "My/_C");
    assert_eq!(dl_prefix("syn"), "3/s");
}

#[test]
fn toml_quoting() {
    assert_eq!(toml_str(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    assert_eq!(toml_key("with-x_1"), "with-x_1");
    assert_eq!(toml_key("cfg(unix)"), "\"cfg(unix)\"");
    let parsed: toml::Table =
        toml::from_str(&format!("k = {}", toml_str("tab\there\nnl\u{1}"))).unwrap();
    assert_eq!(parsed["k"].as_str(), Some("tab\there\nnl\u{1}"));
}
