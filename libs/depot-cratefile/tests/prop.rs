//! Property tests of everything that reads hostile input: the `.crate` inspector (arbitrary
//! bytes and archives built from random entries and manifests), the `cfg(…)` platform parser
//! and the manifest parser. None may panic or overflow the stack, and the platform rendering is
//! idempotent.
//!
//! Quick by default (proptest's 256 cases per property); a long run sets `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=1000000 cargo test --release -p depot-cratefile --test prop` (see
//! docs/hostile-input.md).

use depot_cratefile::tarball::inspect;
use depot_cratefile::{
    MAX_CFG_DEPTH, TarballBuilder, TarballLimits, check_platform, normalize_platform,
};
use proptest::prelude::*;
use tar::EntryType;

/// Small caps, so generated archives reach them.
fn limits() -> TarballLimits {
    TarballLimits {
        max_unpacked_size: 256 * 1024,
        max_entries: 16,
        max_manifest_bytes: 16 * 1024,
        max_readme_bytes: 1024,
        max_readme_lookbehind_bytes: 4096,
        ..TarballLimits::default()
    }
}

// ---- tarball ----

/// One generated archive entry.
#[derive(Debug, Clone)]
enum Item {
    File(String, Vec<u8>),
    Dir(String),
    Raw(Vec<u8>, u8, Vec<u8>),
    Symlink(String, String),
    HardLink(String, String),
}

fn path_part() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Cargo.toml".to_owned()),
        Just("cargo.toml".to_owned()),
        Just("src".to_owned()),
        Just("SRC".to_owned()),
        Just("lib.rs".to_owned()),
        Just("README.md".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(String::new()),
        "[a-zA-Z0-9_.Ää-]{1,8}",
    ]
}

fn entry_path() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            4 => Just("foo-1.0.0".to_owned()),
            1 => Just("/foo-1.0.0".to_owned()),
            1 => Just("bar-1.0.0".to_owned()),
            1 => Just("FOO-1.0.0".to_owned()),
        ],
        prop::collection::vec(path_part(), 0..4),
    )
        .prop_map(|(root, parts)| {
            let mut path = root;
            for part in parts {
                path.push('/');
                path.push_str(&part);
            }
            path
        })
}

fn item() -> impl Strategy<Value = Item> {
    let content = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        6 => (entry_path(), content.clone()).prop_map(|(p, c)| Item::File(p, c)),
        2 => entry_path().prop_map(Item::Dir),
        2 => (entry_path(), any::<u8>(), content)
            .prop_filter("fits a tar header", |(p, _, _)| p.len() <= 100)
            .prop_map(|(p, t, c)| Item::Raw(p.into_bytes(), t, c)),
        1 => (entry_path(), entry_path())
            .prop_filter("fits a tar header", |(p, t)| p.len() <= 100 && t.len() <= 100)
            .prop_map(|(p, t)| Item::Symlink(p, t)),
        1 => (entry_path(), entry_path())
            .prop_filter("fits a tar header", |(p, t)| p.len() <= 100 && t.len() <= 100)
            .prop_map(|(p, t)| Item::HardLink(p, t)),
    ]
}

fn build(manifest: &str, items: Vec<Item>, manifest_first: bool) -> Vec<u8> {
    let mut builder = TarballBuilder::new();
    if manifest_first {
        builder = builder.add_file("foo-1.0.0/Cargo.toml", manifest.as_bytes());
    }
    for item in items {
        builder = match item {
            // The `tar` crate refuses `..` and absolute paths in `add_file`; write those raw.
            Item::File(path, content) if path.len() <= 100 => {
                builder.add_raw_file(path.as_bytes(), &content)
            }
            Item::File(path, content) => builder.add_file(&path.replace("..", "dd"), &content),
            Item::Dir(path) if path.len() <= 100 => {
                builder.add_raw_entry(path.as_bytes(), EntryType::Directory, &[])
            }
            Item::Dir(_) => builder,
            Item::Raw(path, entry_type, content) => {
                builder.add_raw_entry(&path, EntryType::new(entry_type), &content)
            }
            Item::Symlink(path, target) => builder.add_symlink(&path, &target),
            Item::HardLink(path, target) => builder.add_hard_link(&path, &target),
        };
    }
    if !manifest_first {
        builder = builder.add_file("foo-1.0.0/Cargo.toml", manifest.as_bytes());
    }
    builder.build()
}

proptest! {
    #[test]
    fn inspect_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = inspect(&bytes[..], "foo", "1.0.0", &limits());
    }

    #[test]
    fn inspect_survives_gzipped_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = inspect(&TarballBuilder::gzip(&bytes)[..], "foo", "1.0.0", &limits());
    }

    #[test]
    fn inspect_survives_generated_archives(
        manifest in manifest_text(),
        items in prop::collection::vec(item(), 0..8),
        manifest_first in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        garbage in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut bytes = build(&manifest, items, manifest_first);
        let result = inspect(&bytes[..], "foo", "1.0.0", &limits());
        if let Ok(contents) = &result {
            prop_assert_eq!(contents.name.as_str(), "foo");
            prop_assert!(contents.unpacked_size <= limits().max_unpacked_size);
        }
        // Truncated anywhere, or with bytes appended, it is refused.
        let at = cut.index(bytes.len());
        prop_assert!(inspect(&bytes[..at], "foo", "1.0.0", &limits()).is_err());
        if !garbage.is_empty() {
            bytes.extend_from_slice(&garbage);
            prop_assert!(inspect(&bytes[..], "foo", "1.0.0", &limits()).is_err());
        }
    }

    // ---- cfg platforms ----

    #[test]
    fn platform_normalisation_never_panics_and_is_idempotent(platform in any::<String>()) {
        let once = normalize_platform(&platform);
        prop_assert_eq!(normalize_platform(&once), once.clone());
        let _ = check_platform(&platform);
    }

    #[test]
    fn platform_normalisation_of_cfg_like_text(platform in "cfg\\([a-z_ ,=\"()#]{0,64}\\)") {
        let once = normalize_platform(&platform);
        prop_assert_eq!(normalize_platform(&once), once);
    }

    #[test]
    fn generated_cfg_expressions(expr in cfg_expr(), spaced in any::<bool>()) {
        let text = if spaced { expr.replace(',', " , ").replace('(', "( ") } else { expr };
        let platform = format!("cfg({text})");
        let once = normalize_platform(&platform);
        prop_assert_eq!(normalize_platform(&once), once.clone());
        if check_platform(&platform).is_ok() {
            // Every generated expression is valid cargo syntax: it is re-rendered canonically,
            // so spacing never changes the result.
            let plain = normalize_platform(&platform.replace(' ', ""));
            prop_assert_eq!(once.replace(' ', ""), plain.replace(' ', ""));
        }
    }

    #[test]
    fn deep_cfg_expressions_are_refused(depth in (MAX_CFG_DEPTH)..2000usize, op in prop_oneof![Just("not("), Just("all("), Just("any(")]) {
        let platform = format!("cfg({}unix{})", op.repeat(depth), ")".repeat(depth));
        prop_assert!(check_platform(&platform).is_err());
        prop_assert_eq!(normalize_platform(&platform), platform);
    }

    // ---- manifests ----

    #[test]
    fn manifest_parser_survives_arbitrary_text(text in any::<String>()) {
        let bytes = TarballBuilder::with_manifest("foo", "1.0.0", &text).build();
        let _ = inspect(&bytes[..], "foo", "1.0.0", &limits());
    }

    #[test]
    fn manifest_parser_survives_generated_toml(text in manifest_text()) {
        let bytes = TarballBuilder::with_manifest("foo", "1.0.0", &text).build();
        let _ = inspect(&bytes[..], "foo", "1.0.0", &limits());
    }
}

fn cfg_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-z_][a-z0-9_]{0,6}",
        ("[a-z_][a-z0-9_]{0,6}", "[a-z0-9 ,()_-]{0,6}").prop_map(|(k, v)| format!("{k} = \"{v}\"")),
        "r#[a-z_]{1,4}",
    ];
    leaf.prop_recursive(8, 64, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("not({e})")),
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|l| format!("all({})", l.join(","))),
            prop::collection::vec(inner, 0..4).prop_map(|l| format!("any({})", l.join(","))),
        ]
    })
}

/// TOML values, nested a few levels.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<i64>().prop_map(toml::Value::Integer),
        "[ -~]{0,12}".prop_map(toml::Value::String),
        Just(toml::Value::String("0.2".to_owned())),
        Just(toml::Value::String("workspace".to_owned())),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("version".to_owned()),
        Just("workspace".to_owned()),
        Just("features".to_owned()),
        Just("optional".to_owned()),
        Just("registry".to_owned()),
        Just("registry-index".to_owned()),
        Just("package".to_owned()),
        Just("dependencies".to_owned()),
        Just("readme".to_owned()),
        Just("cfg(unix)".to_owned()),
        "[a-zA-Z_][a-zA-Z0-9_-]{0,8}",
    ]
}

/// Manifests with `[package]` for foo 1.0.0 and random sections cargo and Depot read.
fn manifest_text() -> impl Strategy<Value = String> {
    let section = prop_oneof![
        Just("package"),
        Just("dependencies"),
        Just("dev-dependencies"),
        Just("build-dependencies"),
        Just("target"),
        Just("features"),
        Just("patch"),
        Just("lints"),
        Just("badges"),
    ];
    (
        prop::collection::btree_map(key(), toml_value(), 0..6),
        prop::collection::vec((section, key(), toml_value()), 0..6),
    )
        .prop_map(|(package, sections)| {
            let mut doc = toml::Table::new();
            let mut package: toml::Table = package.into_iter().collect();
            package.insert("name".into(), "foo".into());
            package.insert("version".into(), "1.0.0".into());
            doc.insert("package".into(), toml::Value::Table(package));
            for (section, key, value) in sections {
                let table = doc
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(table) = table {
                    table.insert(key, value);
                }
            }
            toml::to_string(&doc).unwrap_or_default()
        })
}
