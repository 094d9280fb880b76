//! `tarball::inspect`: archive rules, manifest rules and extraction.

use depot_cratefile::tarball::inspect;
use depot_cratefile::{CRATES_IO_INDEX, TarballBuilder, TarballError, TarballLimits};
use depot_index::{DependencyKind, FeatureMap, IndexDependency};
use tar::EntryType;

use crate::fixtures::{
    INDEX_DEPS_JSON, foo_error, foo_with, inspect_as, inspect_my_crate, my_crate,
    my_crate_with_manifest, tarball_limits,
};

fn foo_crate() -> TarballBuilder {
    TarballBuilder::with_manifest(
        "foo",
        "1.0.0",
        "[package]\nname = \"foo\"\nversion = \"1.0.0\"\n",
    )
}

fn dep(name: &str, req: &str, kind: DependencyKind) -> IndexDependency {
    IndexDependency {
        name: name.into(),
        req: req.into(),
        features: vec![],
        optional: false,
        default_features: true,
        target: None,
        kind,
        registry: Some(CRATES_IO_INDEX.into()),
        package: None,
    }
}

// ---- extraction ----

#[test]
fn captured_crate_is_extracted() {
    let contents = inspect_my_crate(&my_crate().build()).expect("cargo's own package is valid");
    assert_eq!(
        (contents.name.as_str(), contents.vers.as_str()),
        ("My_Crate", "0.2.0+build.5")
    );
    assert_eq!(
        contents.description.as_deref(),
        Some("Mixed-case test crate")
    );
    assert_eq!(contents.license, None);
    assert_eq!(contents.license_file.as_deref(), Some("LICENSE.txt"));
    assert_eq!(
        contents.repository.as_deref(),
        Some("https://git.example.com/my_crate")
    );
    assert_eq!(contents.homepage.as_deref(), Some("https://example.com"));
    assert_eq!(
        contents.documentation.as_deref(),
        Some("https://docs.example.com/my_crate")
    );
    assert_eq!(contents.keywords, ["test", "registry"]);
    assert_eq!(contents.categories, ["development-tools"]);
    assert_eq!(contents.authors, ["Alice <a@example.com>"]);
    assert_eq!(contents.edition.as_deref(), Some("2021"));
    assert_eq!(contents.rust_version.as_deref(), Some("1.70"));
    assert_eq!(contents.links.as_deref(), Some("mylib"));
    assert_eq!(contents.readme_file.as_deref(), Some("README.md"));
    assert_eq!(
        contents.readme.as_deref(),
        Some("# My Crate\nHello readme.\n")
    );
    assert!(!contents.readme_truncated);
    assert_eq!(contents.entry_count, 8);
    assert_eq!(contents.features["weak"], ["renamed_dep?/extra-a"]);
    let expected: Vec<IndexDependency> = serde_json::from_str(INDEX_DEPS_JSON).unwrap();
    assert_eq!(
        contents.index_deps, expected,
        "`1.0` becomes `^1.0`, own registry becomes None"
    );
}

#[test]
fn index_entry_golden_line() {
    let contents = inspect_my_crate(&my_crate().build()).unwrap();
    let entry = contents.index_entry("dad9", Some("2026-11-23T23:27:45Z".into()));
    assert_eq!(
        entry.to_line(),
        concat!(
            r#"{"name":"My_Crate","vers":"0.2.0+build.5","deps":["#,
            r#"{"name":"dep-a","req":"^0.1.0","features":[],"optional":false,"default_features":true,"target":"cfg(unix)","kind":"normal"},"#,
            r#"{"name":"dep-a","req":"=0.1.0","features":[],"optional":false,"default_features":true,"target":null,"kind":"build"},"#,
            r#"{"name":"fakeserde","req":"^1.0","features":["derive"],"optional":false,"default_features":false,"target":null,"kind":"normal","registry":"https://github.com/rust-lang/crates.io-index"},"#,
            r#"{"name":"fakeserde","req":"^1","features":[],"optional":false,"default_features":true,"target":null,"kind":"dev","registry":"https://github.com/rust-lang/crates.io-index"},"#,
            r#"{"name":"renamed_dep","req":"^0.1","features":["extra-a"],"optional":true,"default_features":true,"target":null,"kind":"normal","package":"dep-a"}],"#,
            r#""cksum":"dad9","features":{"default":["std"],"std":["fakeserde/std"]},"#,
            r#""features2":{"extra":["dep:renamed_dep"],"weak":["renamed_dep?/extra-a"]},"#,
            r#""yanked":false,"links":"mylib","rust_version":"1.70","pubtime":"2026-11-23T23:27:45Z","v":2}"#
        )
    );
}

#[test]
fn dependency_forms() {
    let bytes = foo_with(
        r#"
[dependencies]
plain = "1.0"
tilde = { version = "~1.2", default_features = false }
renamed = { version = "0.3", package = "real-name", optional = true, features = ["a", "b"] }
other = { version = "2", registry-index = "sparse+https://other.example/index/" }
sparse_io = { version = "1", registry-index = "sparse+https://index.crates.io/" }

[dev-dependencies]
path_only = { path = "../x" }
dev = "0.1"

[dev_dependencies]
legacy_dev = "3"

[build_dependencies]
legacy_build = ">= 1.0, < 2"

[target.'cfg(all(unix,target_os="linux"))'.dependencies]
linux = "1"

[target.x86_64-pc-windows-msvc.build-dependencies]
winres = "0.1"
"#,
    );
    let contents = inspect_as(&bytes, "foo", "1.0.0").unwrap();
    let mut expected = vec![
        dep("plain", "^1.0", DependencyKind::Normal),
        IndexDependency {
            default_features: false,
            ..dep("tilde", "~1.2", DependencyKind::Normal)
        },
        IndexDependency {
            optional: true,
            features: vec!["a".into(), "b".into()],
            package: Some("real-name".into()),
            ..dep("renamed", "^0.3", DependencyKind::Normal)
        },
        IndexDependency {
            registry: Some("sparse+https://other.example/index/".into()),
            ..dep("other", "^2", DependencyKind::Normal)
        },
        IndexDependency {
            registry: Some("sparse+https://index.crates.io/".into()),
            ..dep("sparse_io", "^1", DependencyKind::Normal)
        },
        dep("dev", "^0.1", DependencyKind::Dev),
        dep("legacy_dev", "^3", DependencyKind::Dev),
        dep("legacy_build", ">=1.0, <2", DependencyKind::Build),
        IndexDependency {
            target: Some(r#"cfg(all(unix, target_os = "linux"))"#.into()),
            ..dep("linux", "^1", DependencyKind::Normal)
        },
        IndexDependency {
            target: Some("x86_64-pc-windows-msvc".into()),
            ..dep("winres", "^0.1", DependencyKind::Build)
        },
    ];
    expected.sort();
    assert_eq!(contents.index_deps, expected);
}

#[test]
fn crates_io_dependencies_have_no_registry_when_crates_io_is_own() {
    let limits = TarballLimits {
        own_index_urls: vec![CRATES_IO_INDEX.into()],
        ..TarballLimits::default()
    };
    let bytes = foo_with("[dependencies]\nserde = \"1\"\n");
    let contents = inspect(&bytes[..], "foo", "1.0.0", &limits).unwrap();
    assert_eq!(contents.index_deps[0].registry, None);
}

#[test]
fn normal_dependency_without_version() {
    assert_eq!(
        foo_error(&foo_with(
            "[dependencies]\nlocal = { path = \"../local\" }\n"
        )),
        "dependency `local` does not specify a version"
    );
}

#[test]
fn build_dependency_without_version() {
    assert_eq!(
        foo_error(&foo_with(
            "[build-dependencies.gen]\ngit = \"https://example.com/gen\"\n"
        )),
        "dependency `gen` does not specify a version"
    );
}

#[test]
fn dependency_naming_a_registry_by_name() {
    assert_eq!(
        foo_error(&foo_with(
            "[dependencies]\nx = { version = \"1\", registry = \"corp\" }\n"
        )),
        "invalid dependency `x` in `Cargo.toml`: it names the registry `corp` instead of giving \
         its `registry-index`"
    );
}

#[test]
fn dependency_with_invalid_requirement() {
    let message = foo_error(&foo_with("[dependencies]\nx = \"one\"\n"));
    assert!(
        message.starts_with(
            "invalid dependency `x` in `Cargo.toml`: invalid version requirement `one`: "
        ),
        "{message}"
    );
}

#[test]
fn features_are_extracted_unsplit() {
    let bytes = foo_with("[features]\ndefault = [\"a\"]\na = []\nb = [\"dep:x\"]\n");
    let contents = inspect_as(&bytes, "foo", "1.0.0").unwrap();
    let expected: FeatureMap = [
        ("default".to_owned(), vec!["a".to_owned()]),
        ("a".to_owned(), vec![]),
        ("b".to_owned(), vec!["dep:x".to_owned()]),
    ]
    .into();
    assert_eq!(contents.features, expected);
}

#[test]
fn legacy_project_section_is_read() {
    let manifest = "[project]\nname = \"foo\"\nversion = \"1.0.0\"\ndescription = \"old\"\n";
    let bytes = TarballBuilder::with_manifest("foo", "1.0.0", manifest).build();
    assert_eq!(
        inspect_as(&bytes, "foo", "1.0.0")
            .unwrap()
            .description
            .as_deref(),
        Some("old")
    );
}

#[test]
fn invalid_rust_version() {
    assert_eq!(
        foo_error(&foo_with("rust-version = \"1.70-nightly\"\n")),
        "invalid rust-version `1.70-nightly`: expected `major[.minor[.patch]]` with numbers only"
    );
}

#[test]
fn field_of_the_wrong_type() {
    assert_eq!(
        foo_error(&foo_with("keywords = \"one\"\n")),
        "failed to parse `Cargo.toml` manifest file: `package.keywords` must be an array of strings"
    );
}

// ---- readme ----

fn readme_of(
    manifest_extra: &str,
    files: &[(&str, &[u8])],
    limits: &TarballLimits,
) -> (Option<String>, Option<String>, bool) {
    let manifest = format!("[package]\nname = \"foo\"\nversion = \"1.0.0\"\n{manifest_extra}");
    let mut builder = TarballBuilder::new();
    let mut manifest_added = false;
    for (path, content) in files {
        if !manifest_added && *path > "Cargo.toml" {
            builder = builder.add_file("foo-1.0.0/Cargo.toml", manifest.as_bytes());
            manifest_added = true;
        }
        builder = builder.add_file(&format!("foo-1.0.0/{path}"), content);
    }
    if !manifest_added {
        builder = builder.add_file("foo-1.0.0/Cargo.toml", manifest.as_bytes());
    }
    let contents = inspect(&builder.build()[..], "foo", "1.0.0", limits).unwrap();
    (
        contents.readme_file,
        contents.readme,
        contents.readme_truncated,
    )
}

#[test]
fn readme_path_is_read() {
    let limits = tarball_limits();
    let files: &[(&str, &[u8])] = &[("README.md", b"root"), ("docs/intro.md", b"docs")];
    assert_eq!(
        readme_of("readme = \"docs/intro.md\"\n", files, &limits),
        (Some("docs/intro.md".into()), Some("docs".into()), false)
    );
    assert_eq!(
        readme_of("readme = \"./docs//intro.md\"\n", files, &limits)
            .1
            .as_deref(),
        Some("docs")
    );
}

#[test]
fn readme_true_means_readme_md() {
    let files: &[(&str, &[u8])] = &[("README.md", b"root")];
    assert_eq!(
        readme_of("readme = true\n", files, &tarball_limits()),
        (Some("README.md".into()), Some("root".into()), false)
    );
}

#[test]
fn readme_false_or_absent_means_none() {
    let files: &[(&str, &[u8])] = &[("README.md", b"root")];
    assert_eq!(
        readme_of("readme = false\n", files, &tarball_limits()),
        (None, None, false)
    );
    assert_eq!(readme_of("", files, &tarball_limits()), (None, None, false));
}

#[test]
fn readme_before_the_manifest_is_found() {
    // cargo sorts entries by path: `CRATE-README.md` precedes `Cargo.toml`.
    let files: &[(&str, &[u8])] = &[("CRATE-README.md", b"early"), ("src/lib.rs", b"")];
    assert_eq!(
        readme_of("readme = \"CRATE-README.md\"\n", files, &tarball_limits())
            .1
            .as_deref(),
        Some("early")
    );
}

#[test]
fn readme_is_capped_and_lossy() {
    let limits = TarballLimits {
        max_readme_bytes: 4,
        ..tarball_limits()
    };
    let files: &[(&str, &[u8])] = &[("README.md", b"ab\xffcdef")];
    assert_eq!(
        readme_of("readme = \"README.md\"\n", files, &limits),
        (Some("README.md".into()), Some("ab\u{fffd}c".into()), true)
    );
}

#[test]
fn missing_readme_file_gives_no_text() {
    assert_eq!(
        readme_of("readme = \"NOPE.md\"\n", &[], &tarball_limits()),
        (Some("NOPE.md".into()), None, false)
    );
}

// ---- archive rules ----

#[test]
fn not_gzip() {
    assert_eq!(
        foo_error(b"definitely not gzip"),
        "uploaded tarball is malformed or too large when decompressed"
    );
}

#[test]
fn truncated_gzip() {
    let bytes = foo_crate().build();
    assert_eq!(
        foo_error(&bytes[..bytes.len() - 10]),
        "uploaded tarball is malformed or too large when decompressed"
    );
}

#[test]
fn too_large_when_decompressed() {
    let bytes = foo_crate()
        .add_file("foo-1.0.0/big", &vec![0; 1 << 20])
        .build();
    let limits = TarballLimits {
        max_unpacked_size: 1 << 20,
        ..tarball_limits()
    };
    let err = inspect(&bytes[..], "foo", "1.0.0", &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "uploaded tarball is malformed or too large when decompressed"
    );
    assert!(matches!(err, TarballError::Malformed(_)));
    let limits = TarballLimits {
        max_unpacked_size: 2 << 20,
        ..tarball_limits()
    };
    let contents = inspect(&bytes[..], "foo", "1.0.0", &limits).unwrap();
    assert!(contents.unpacked_size > 1 << 20);
}

#[test]
fn too_many_entries() {
    let bytes = foo_crate().add_file("foo-1.0.0/a", b"").build();
    let limits = TarballLimits {
        max_entries: 2,
        ..tarball_limits()
    };
    assert_eq!(
        inspect(&bytes[..], "foo", "1.0.0", &limits)
            .unwrap_err()
            .to_string(),
        "uploaded tarball has more than 2 entries"
    );
}

#[test]
fn path_outside_the_package_directory() {
    let bytes = foo_crate().add_file("bar-1.0.0/a", b"").build();
    assert_eq!(foo_error(&bytes), "invalid path found: bar-1.0.0/a");
}

#[test]
fn path_prefix_is_case_sensitive() {
    let bytes = foo_crate().build();
    assert_eq!(
        inspect_as(&bytes, "Foo", "1.0.0").unwrap_err().to_string(),
        "invalid path found: foo-1.0.0/Cargo.toml"
    );
}

#[test]
fn path_prefix_includes_build_metadata() {
    let bytes = foo_crate().build();
    assert_eq!(
        inspect_as(&bytes, "foo", "1.0.0+build")
            .unwrap_err()
            .to_string(),
        "invalid path found: foo-1.0.0/Cargo.toml"
    );
}

#[test]
fn path_prefix_must_end_at_a_slash() {
    let bytes = foo_crate().add_file("foo-1.0.0x/a", b"").build();
    assert_eq!(foo_error(&bytes), "invalid path found: foo-1.0.0x/a");
}

#[test]
fn absolute_path() {
    let bytes = foo_crate().add_raw_file(b"/foo-1.0.0/a", b"").build();
    assert_eq!(foo_error(&bytes), "invalid path found: /foo-1.0.0/a");
}

#[test]
fn dot_dot_component() {
    let bytes = foo_crate()
        .add_raw_file(b"foo-1.0.0/../../etc/passwd", b"")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "invalid path found: foo-1.0.0/../../etc/passwd"
    );
}

#[test]
fn non_utf8_path() {
    let bytes = foo_crate().add_raw_file(b"foo-1.0.0/\xff.rs", b"").build();
    assert_eq!(
        foo_error(&bytes),
        "invalid path found: foo-1.0.0/\u{fffd}.rs"
    );
}

#[test]
fn symlink() {
    let bytes = foo_crate()
        .add_symlink("foo-1.0.0/link", "/etc/passwd")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "unexpected tar entry type Symlink found: foo-1.0.0/link"
    );
}

#[test]
fn hard_link() {
    let bytes = foo_crate()
        .add_hard_link("foo-1.0.0/link", "foo-1.0.0/src/lib.rs")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "unexpected tar entry type Link found: foo-1.0.0/link"
    );
}

#[test]
fn devices_fifos_sparse_and_unknown_types() {
    for (entry_type, name) in [
        (EntryType::Char, "Char"),
        (EntryType::Block, "Block"),
        (EntryType::Fifo, "Fifo"),
        (EntryType::Continuous, "Continuous"),
        (EntryType::new(b'Z'), "Other('Z')"),
    ] {
        let bytes = foo_crate()
            .add_raw_entry(b"foo-1.0.0/odd", entry_type, b"")
            .build();
        assert_eq!(
            foo_error(&bytes),
            format!("unexpected tar entry type {name} found: foo-1.0.0/odd")
        );
    }
}

#[test]
fn gnu_sparse_file() {
    let bytes = foo_crate()
        .add_sparse_file("foo-1.0.0/sparse", b"data")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "unexpected tar entry type GNUSparse found: foo-1.0.0/sparse"
    );
}

#[test]
fn directories_and_pax_headers_are_fine() {
    let long_name = format!("foo-1.0.0/{}/lib.rs", "d".repeat(120));
    let bytes = TarballBuilder::new()
        .add_pax_global_header(&[("comment", "made by a test")])
        .add_dir("foo-1.0.0/")
        .add_dir("foo-1.0.0/src")
        .add_file_with_pax(
            "foo-1.0.0/Cargo.toml",
            b"[package]\nname = \"foo\"\nversion = \"1.0.0\"\n",
            &[("mtime", b"1153704088.5")],
        )
        .add_file(&long_name, b"")
        .build();
    let contents = inspect_as(&bytes, "foo", "1.0.0").expect("pax and long names are fine");
    assert_eq!(contents.name, "foo");
}

#[test]
fn pax_size_must_match_the_header() {
    let bytes = foo_crate()
        .add_file_with_pax("foo-1.0.0/data", b"0123456789", &[("size", b"4")])
        .build();
    assert_eq!(
        foo_error(&bytes),
        "pax size `4` of foo-1.0.0/data does not match its tar header size 10"
    );
}

// ---- the root manifest ----

#[test]
fn missing_manifest() {
    let bytes = TarballBuilder::new()
        .add_file("foo-1.0.0/src/lib.rs", b"")
        .add_file("foo-1.0.0/src/Cargo.toml", b"[package]\n")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "missing `Cargo.toml` manifest in the package root"
    );
}

#[test]
fn two_manifests() {
    let bytes = foo_crate()
        .add_file("foo-1.0.0/cargo.toml", b"[package]\n")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "more than one Cargo.toml manifest in tarball: foo-1.0.0/Cargo.toml, foo-1.0.0/cargo.toml"
    );
}

#[test]
fn duplicate_manifest_through_a_dot_component() {
    let bytes = foo_crate()
        .add_raw_file(b"foo-1.0.0/./Cargo.toml", b"[package]\n")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "more than one Cargo.toml manifest in tarball: foo-1.0.0/Cargo.toml, foo-1.0.0/./Cargo.toml"
    );
}

#[test]
fn incorrectly_cased_manifest() {
    for name in ["CARGO.TOML", "cargo.toml", "Cargo.Toml"] {
        let bytes = TarballBuilder::new()
            .add_file(
                &format!("foo-1.0.0/{name}"),
                b"[package]\nname = \"foo\"\nversion = \"1.0.0\"\n",
            )
            .build();
        assert_eq!(
            foo_error(&bytes),
            format!("manifest is incorrectly cased: `{name}` (expected `Cargo.toml`)")
        );
    }
}

#[test]
fn manifest_too_large() {
    let limits = TarballLimits {
        max_manifest_bytes: 64,
        ..tarball_limits()
    };
    let bytes = foo_with(&format!("description = \"{}\"\n", "x".repeat(64)));
    assert_eq!(
        inspect(&bytes[..], "foo", "1.0.0", &limits)
            .unwrap_err()
            .to_string(),
        "`Cargo.toml` is larger than 64 bytes"
    );
}

#[test]
fn manifest_not_toml() {
    let bytes = TarballBuilder::with_manifest("foo", "1.0.0", "[package\n").build();
    assert!(
        foo_error(&bytes).starts_with("failed to parse `Cargo.toml` manifest file: "),
        "{}",
        foo_error(&bytes)
    );
}

#[test]
fn manifest_not_utf8() {
    let bytes = TarballBuilder::new()
        .add_file("foo-1.0.0/Cargo.toml", b"\xff")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "failed to parse `Cargo.toml` manifest file: the file is not valid UTF-8"
    );
}

#[test]
fn manifest_without_package() {
    let bytes =
        TarballBuilder::with_manifest("foo", "1.0.0", "[workspace]\nmembers = []\n").build();
    assert_eq!(
        foo_error(&bytes),
        "failed to parse `Cargo.toml` manifest file: missing field `package`"
    );
}

#[test]
fn manifest_without_version() {
    let bytes =
        TarballBuilder::with_manifest("foo", "1.0.0", "[package]\nname = \"foo\"\n").build();
    assert_eq!(
        foo_error(&bytes),
        "failed to parse `Cargo.toml` manifest file: missing field `package.version`"
    );
}

#[test]
fn manifest_with_patch() {
    assert_eq!(
        foo_error(&foo_with(
            "[patch.crates-io]\nserde = { path = \"../serde\" }\n"
        )),
        "failed to parse `Cargo.toml` manifest file: crates cannot be published with `[patch]` tables"
    );
}

#[test]
fn unresolved_workspace_package_field() {
    assert_eq!(
        foo_error(&foo_with("edition.workspace = true\n")),
        "failed to parse `Cargo.toml` manifest file: value from workspace hasn't been set for `package.edition`"
    );
}

#[test]
fn unresolved_workspace_dependency() {
    assert_eq!(
        foo_error(&foo_with(
            "[dev-dependencies]\nserde = { workspace = true }\n"
        )),
        "failed to parse `Cargo.toml` manifest file: value from workspace hasn't been set for `dev-dependencies.serde`"
    );
    assert_eq!(
        foo_error(&foo_with(
            "[target.'cfg(unix)'.dependencies]\nlibc.workspace = true\n"
        )),
        "failed to parse `Cargo.toml` manifest file: value from workspace hasn't been set for `target.'cfg(unix)'.dependencies.libc`"
    );
}

#[test]
fn unresolved_workspace_lints() {
    assert_eq!(
        foo_error(&foo_with("[lints]\nworkspace = true\n")),
        "failed to parse `Cargo.toml` manifest file: value from workspace hasn't been set for `lints`"
    );
}

#[test]
fn workspace_true_in_free_form_metadata_is_fine() {
    // Seen in real crates (icu_properties 2.x): `[package.metadata.cargo-semver-checks.lints]`.
    let bytes = foo_with("[package.metadata.tool]\nworkspace = true\n");
    inspect_as(&bytes, "foo", "1.0.0").expect("package.metadata is free-form");
}

#[test]
fn manifest_name_mismatch() {
    let bytes = TarballBuilder::with_manifest(
        "foo",
        "1.0.0",
        "[package]\nname = \"bar\"\nversion = \"1.0.0\"\n",
    )
    .build();
    assert_eq!(
        foo_error(&bytes),
        "metadata name `foo` does not match manifest name `bar`"
    );
}

#[test]
fn manifest_version_mismatch() {
    let bytes = TarballBuilder::with_manifest(
        "foo",
        "1.0.0",
        "[package]\nname = \"foo\"\nversion = \"1.0.0+b\"\n",
    )
    .build();
    assert_eq!(
        foo_error(&bytes),
        "metadata version `1.0.0` does not match manifest version `1.0.0+b`"
    );
}

#[test]
fn manifest_with_other_casing_of_name_mismatches() {
    let bytes = my_crate_with_manifest(
        &crate::fixtures::MANIFEST.replace("name = \"My_Crate\"", "name = \"my_crate\""),
    )
    .build();
    assert_eq!(
        inspect_my_crate(&bytes).unwrap_err().to_string(),
        "metadata name `My_Crate` does not match manifest name `my_crate`"
    );
}

// ---- trailing data, duplicate and colliding paths, bombs ----

#[test]
fn trailing_garbage_after_the_gzip_member() {
    let mut bytes = foo_crate().build();
    assert!(inspect(&bytes[..], "foo", "1.0.0", &tarball_limits()).is_ok());
    bytes.extend_from_slice(b"garbage");
    let err = inspect(&bytes[..], "foo", "1.0.0", &tarball_limits()).unwrap_err();
    assert!(matches!(err, TarballError::TrailingData), "{err:?}");
    assert_eq!(
        err.to_string(),
        "uploaded tarball has data after the end of its gzip stream"
    );
    // A single trailing zero byte counts too.
    let mut bytes = foo_crate().build();
    bytes.push(0);
    assert_eq!(
        foo_error(&bytes),
        "uploaded tarball has data after the end of its gzip stream"
    );
}

#[test]
fn second_gzip_member() {
    // `gzip -d` and other multi-member readers would unpack a different archive.
    let mut bytes = foo_crate().build();
    bytes.extend_from_slice(&foo_crate().add_file("foo-1.0.0/evil.rs", b"").build());
    assert_eq!(
        foo_error(&bytes),
        "uploaded tarball has data after the end of its gzip stream"
    );
}

#[test]
fn duplicate_paths() {
    let bytes = foo_crate().add_file("foo-1.0.0/src/lib.rs", b"x").build();
    assert_eq!(foo_error(&bytes), "duplicate path found: src/lib.rs");
    // Through `.` and empty components as well.
    let bytes = foo_crate()
        .add_raw_file(b"foo-1.0.0/./src//lib.rs", b"x")
        .build();
    assert_eq!(foo_error(&bytes), "duplicate path found: src/lib.rs");
    // A file and a directory of the same path.
    let bytes = foo_crate().add_dir("foo-1.0.0/src/lib.rs").build();
    assert_eq!(foo_error(&bytes), "duplicate path found: src/lib.rs");
}

#[test]
fn repeated_directories_are_fine() {
    let bytes = TarballBuilder::new()
        .add_dir("foo-1.0.0")
        .add_dir("foo-1.0.0/src")
        .add_dir("foo-1.0.0/src/")
        .add_dir("foo-1.0.0")
        .add_file(
            "foo-1.0.0/Cargo.toml",
            b"[package]\nname = \"foo\"\nversion = \"1.0.0\"\n",
        )
        .add_file("foo-1.0.0/src/lib.rs", b"")
        .build();
    inspect(&bytes[..], "foo", "1.0.0", &tarball_limits()).expect("valid");
}

#[test]
fn case_colliding_paths() {
    let bytes = foo_crate().add_file("foo-1.0.0/src/LIB.rs", b"").build();
    assert_eq!(
        foo_error(&bytes),
        "paths differ only in case: src/lib.rs and src/LIB.rs"
    );
    let bytes = foo_crate()
        .add_file("foo-1.0.0/src/a.rs", b"")
        .add_file("foo-1.0.0/src/A.rs", b"")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "paths differ only in case: src/a.rs and src/A.rs"
    );
    // Non-ASCII letters fold too.
    let bytes = foo_crate()
        .add_file("foo-1.0.0/Ä.md", b"")
        .add_file("foo-1.0.0/ä.md", b"")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "paths differ only in case: Ä.md and ä.md"
    );
    // A file and a directory.
    let bytes = foo_crate()
        .add_file("foo-1.0.0/notes", b"")
        .add_dir("foo-1.0.0/NOTES")
        .build();
    assert_eq!(
        foo_error(&bytes),
        "paths differ only in case: notes and NOTES"
    );
}

#[test]
fn gzip_bomb_fails_at_the_unpacked_cap() {
    // 64 MiB of zeros compress to well under 100 KiB.
    let bytes = foo_crate()
        .add_file("foo-1.0.0/zeros", &vec![0; 64 << 20])
        .build();
    assert!(bytes.len() < 100 << 10, "{} bytes", bytes.len());
    let limits = TarballLimits {
        max_unpacked_size: 1 << 20,
        ..tarball_limits()
    };
    let err = inspect(&bytes[..], "foo", "1.0.0", &limits).unwrap_err();
    assert!(matches!(err, TarballError::Malformed(_)), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some_and(|source| source
            .to_string()
            .contains("exceeds the limit of 1048576 bytes")),
        "{err:?}"
    );
}

// ---- manifest limits ----

#[test]
fn manifest_values_are_held_to_the_publish_limits() {
    let cases = [
        (
            "keywords = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]".to_owned(),
            "`package.keywords` has 6 entries, but at most 5 are allowed",
        ),
        (
            format!("keywords = [\"{}\"]", "k".repeat(21)),
            "`package.keywords` is 21 bytes long, but at most 20 bytes are allowed",
        ),
        (
            "categories = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]".to_owned(),
            "`package.categories` has 6 entries, but at most 5 are allowed",
        ),
        (
            format!("description = \"{}\"", "d".repeat(1001)),
            "`package.description` is 1001 bytes long, but at most 1000 bytes are allowed",
        ),
        (
            format!("license = \"{}\"", "M".repeat(1025)),
            "`package.license` is 1025 bytes long, but at most 1024 bytes are allowed",
        ),
        (
            format!("repository = \"https://{}\"", "r".repeat(1024)),
            "`package.repository` is 1032 bytes long, but at most 1024 bytes are allowed",
        ),
        (
            format!("homepage = \"{}\"", "h".repeat(2000)),
            "`package.homepage` is 2000 bytes long",
        ),
        (
            format!("documentation = \"{}\"", "h".repeat(2000)),
            "`package.documentation` is 2000 bytes long",
        ),
        (
            format!("links = \"{}\"", "l".repeat(2000)),
            "`package.links` is 2000 bytes long",
        ),
        (
            format!("readme = \"{}\"", "r".repeat(2000)),
            "`package.readme` is 2000 bytes long",
        ),
        (
            format!("license-file = \"{}\"", "r".repeat(2000)),
            "`package.license-file` is 2000 bytes long",
        ),
        (
            format!("authors = [{}]", vec!["\"a\""; 101].join(",")),
            "`package.authors` has 101 entries, but at most 100 are allowed",
        ),
        (
            format!("authors = [\"{}\"]", "a".repeat(1025)),
            "`package.authors` is 1025 bytes long",
        ),
    ];
    for (field, expected) in cases {
        let message = foo_error(&foo_with(&field));
        assert!(
            message.starts_with("`Cargo.toml` exceeds a limit: ") && message.contains(expected),
            "{field:.60}: {message}"
        );
        assert!(message.len() < 200, "{message}");
    }
}

#[test]
fn manifest_features_and_dependencies_are_counted() {
    let features: String = (0..301).map(|i| format!("f{i} = []\n")).collect();
    let bytes = foo_with(&format!("[features]\n{features}"));
    assert_eq!(
        foo_error(&bytes),
        "`Cargo.toml` exceeds a limit: `features` declares 301 features, but at most 300 are allowed"
    );
    let values: Vec<String> = (0..301).map(|i| format!("\"v{i}\"")).collect();
    let bytes = foo_with(&format!("[features]\nf = [{}]\n", values.join(",")));
    assert_eq!(
        foo_error(&bytes),
        "`Cargo.toml` exceeds a limit: a feature enables 301 values, but at most 300 are allowed"
    );
    let deps: String = (0..501).map(|i| format!("d{i} = \"1\"\n")).collect();
    let bytes = foo_with(&format!("[dependencies]\n{deps}"));
    assert_eq!(
        foo_error(&bytes),
        "`Cargo.toml` exceeds a limit: the manifest declares 501 dependencies, but at most 500 are allowed"
    );
    // The limits follow the configured publish limits.
    let limits = TarballLimits {
        manifest: depot_cratefile::ManifestLimits::from_publish(&depot_cratefile::PublishLimits {
            max_dependencies: 1000,
            ..depot_cratefile::PublishLimits::default()
        }),
        ..tarball_limits()
    };
    inspect(&bytes[..], "foo", "1.0.0", &limits).expect("within the configured limit");
}
