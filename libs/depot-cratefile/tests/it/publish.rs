//! `publish::validate`: tolerant parsing, every rule, and the conversion to index dependencies.

use depot_cratefile::publish::validate;
use depot_cratefile::{
    CRATES_IO_INDEX, LocalDependency, PublishDependency, PublishLimits, PublishMetadata,
    PublishProblem,
};
use depot_index::{DependencyKind, IndexDependency};

use crate::fixtures::{INDEX_DEPS_JSON, OWN_INDEX, metadata, publish_limits};

fn minimal() -> PublishMetadata {
    PublishMetadata {
        name: "foo".into(),
        vers: "1.0.0".into(),
        ..PublishMetadata::default()
    }
}

fn dep(name: &str, req: &str) -> PublishDependency {
    PublishDependency {
        name: name.into(),
        version_req: req.into(),
        ..PublishDependency::default()
    }
}

/// The full error message of validating `meta` with the fixture limits.
fn error(meta: &PublishMetadata) -> String {
    validate(meta, &publish_limits())
        .expect_err("the metadata should be refused")
        .to_string()
}

fn with_dep(dep: PublishDependency) -> PublishMetadata {
    PublishMetadata {
        deps: vec![dep],
        ..minimal()
    }
}

#[test]
fn captured_metadata_validates_and_converts_to_index_deps() {
    let validated = validate(&metadata(), &publish_limits()).expect("cargo's own upload is valid");
    assert_eq!(validated.name(), "My_Crate");
    assert_eq!(
        validated.version(),
        &semver::Version::parse("0.2.0+build.5").unwrap()
    );
    let expected: Vec<IndexDependency> = serde_json::from_str(INDEX_DEPS_JSON).unwrap();
    assert_eq!(validated.index_deps(), expected);
    let local: Vec<(&str, DependencyKind, String)> = validated
        .local_dependencies()
        .iter()
        .map(|d| (d.package.as_str(), d.kind, d.req.to_string()))
        .collect();
    assert_eq!(
        local,
        vec![
            ("dep-a", DependencyKind::Normal, "^0.1".to_owned()),
            ("dep-a", DependencyKind::Build, "=0.1.0".to_owned()),
            ("dep-a", DependencyKind::Normal, "^0.1.0".to_owned()),
        ]
    );
}

#[test]
fn parsing_tolerates_nulls_missing_and_unknown_fields() {
    let meta: PublishMetadata = serde_json::from_str(
        r#"{"name":"foo","vers":"1.0.0","deps":[{"name":"bar","version_req":"^1","features":null,
            "kind":null,"future":1}],"features":null,"authors":null,"keywords":null,
            "categories":null,"badges":null,"some_future_field":{"x":[1]}}"#,
    )
    .unwrap();
    assert_eq!(meta.deps[0].kind(), DependencyKind::Normal);
    assert!(
        meta.deps[0].default_features,
        "default_features defaults to true"
    );
    let validated = validate(&meta, &PublishLimits::default()).unwrap();
    assert_eq!(validated.index_deps()[0].kind, DependencyKind::Normal);
    let empty: PublishMetadata = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, PublishMetadata::default());
}

#[test]
fn invalid_crate_name() {
    let meta = PublishMetadata {
        name: "1foo".into(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "the name `1foo` cannot be used as a crate name, the name cannot start with a digit"
    );
}

#[test]
fn reserved_crate_name() {
    let meta = PublishMetadata {
        name: "std".into(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "cannot upload a crate with a reserved name: `std`"
    );
}

#[test]
fn invalid_version() {
    let meta = PublishMetadata {
        vers: "1.0".into(),
        ..minimal()
    };
    assert!(
        error(&meta).starts_with("\"1.0\" is an invalid semver version: "),
        "{}",
        error(&meta)
    );
}

#[test]
fn version_too_long() {
    let vers = format!("1.0.0-{}", "a".repeat(145));
    let meta = PublishMetadata {
        vers: vers.clone(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        format!("the version `{vers}` is too long (max 150 characters)")
    );
    let ok = PublishMetadata {
        vers: format!("1.0.0-{}", "a".repeat(144)),
        ..minimal()
    };
    assert!(validate(&ok, &publish_limits()).is_ok());
}

#[test]
fn too_many_keywords() {
    let meta = PublishMetadata {
        keywords: (0..6).map(|i| format!("k{i}")).collect(),
        ..minimal()
    };
    assert_eq!(error(&meta), "expected at most 5 keywords per crate, got 6");
}

#[test]
fn keyword_too_long() {
    let keyword = "a".repeat(21);
    let meta = PublishMetadata {
        keywords: vec![keyword.clone(), "a".repeat(20)],
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        format!("the keyword `{keyword}` is too long (max 20 characters)")
    );
}

#[test]
fn invalid_keyword_syntax() {
    let meta = PublishMetadata {
        keywords: vec!["c++".into(), "no-std_x".into(), "-bad".into()],
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "`-bad` is an invalid keyword: keywords must start with an ASCII alphanumeric character \
         and contain only ASCII alphanumerics, `_`, `-` and `+`"
    );
}

#[test]
fn too_many_categories() {
    let meta = PublishMetadata {
        categories: (0..6).map(|i| format!("c{i}")).collect(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "expected at most 5 categories per crate, got 6"
    );
}

#[test]
fn too_many_features() {
    let meta = PublishMetadata {
        features: (0..301).map(|i| (format!("f{i}"), vec![])).collect(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "the crate declares 301 features, but at most 300 are allowed"
    );
}

#[test]
fn too_many_feature_values() {
    let values = (0..301).map(|i| format!("f{i}")).collect();
    let meta = PublishMetadata {
        features: [("big".to_owned(), values)].into(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "the feature `big` enables 301 values, but at most 300 are allowed"
    );
}

#[test]
fn invalid_feature_name() {
    let meta = PublishMetadata {
        features: [("-x".to_owned(), vec![])].into(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "invalid feature name `-x`: invalid character `-`: the first character must be a Unicode \
         XID start character or a digit (most letters, `_` or `0` to `9`)"
    );
}

#[test]
fn invalid_feature_values() {
    let meta = PublishMetadata {
        features: [(
            "f".to_owned(),
            vec!["dep:1x".to_owned(), "a/b/c".to_owned()],
        )]
        .into(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "invalid value `dep:1x` in feature `f`: `1x` is not a valid dependency name; \
         invalid value `a/b/c` in feature `f`: invalid character `/`: characters must be Unicode \
         XID characters, `+`, `-` or `.` (numbers, `+`, `-`, `_`, `.`, or most letters)"
    );
}

#[test]
fn all_feature_value_forms_are_accepted() {
    let values = [
        "std",
        "dep:_alias",
        "serde/derive",
        "serde?/derive",
        "1x",
        "ünicode",
    ];
    let meta = PublishMetadata {
        features: [(
            "_f.1+x-y".to_owned(),
            values.iter().map(|v| v.to_string()).collect(),
        )]
        .into(),
        ..minimal()
    };
    validate(&meta, &publish_limits()).expect("all forms are valid");
}

#[test]
fn too_many_dependencies() {
    let meta = PublishMetadata {
        deps: (0..501).map(|i| dep(&format!("d{i}"), "^1")).collect(),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "the crate has 501 dependencies, but at most 500 are allowed"
    );
}

#[test]
fn invalid_dependency_name() {
    assert_eq!(
        error(&with_dep(dep("_bar", "^1"))),
        "invalid dependency name `_bar`: the name `_bar` cannot be used as a crate name, the \
         first character must be an ASCII character"
    );
}

#[test]
fn dependency_alias_may_start_with_underscore() {
    let renamed = PublishDependency {
        explicit_name_in_toml: Some("_bar".into()),
        ..dep("bar", "^1")
    };
    let validated = validate(&with_dep(renamed), &publish_limits()).unwrap();
    let index_dep = &validated.index_deps()[0];
    assert_eq!(
        (index_dep.name.as_str(), index_dep.package.as_deref()),
        ("_bar", Some("bar"))
    );
    assert_eq!(validated.local_dependencies()[0].package, "bar");
}

#[test]
fn invalid_dependency_alias() {
    let renamed = PublishDependency {
        explicit_name_in_toml: Some("b.r".into()),
        ..dep("bar", "^1")
    };
    assert_eq!(
        error(&with_dep(renamed)),
        "invalid dependency alias `b.r` for `bar`: aliases may contain only ASCII alphanumerics, \
         `-` and `_`, must start with a letter or `_` and be at most 64 characters"
    );
}

#[test]
fn invalid_dependency_feature() {
    let bad = PublishDependency {
        features: vec!["ok".into(), "no way".into()],
        ..dep("bar", "^1")
    };
    assert_eq!(
        error(&with_dep(bad)),
        "invalid feature `no way` enabled on dependency `bar`: invalid character ` `: characters \
         must be Unicode XID characters, `+`, `-` or `.` (numbers, `+`, `-`, `_`, `.`, or most \
         letters)"
    );
}

#[test]
fn invalid_version_requirement() {
    let message = error(&with_dep(dep("bar", "one")));
    assert!(
        message.starts_with("dependency `bar` has an invalid version requirement `one`: "),
        "{message}"
    );
}

#[test]
fn wildcard_requirement_is_rejected() {
    assert_eq!(
        error(&with_dep(dep("foo_wild", "*"))),
        "wildcard (`*`) dependency constraints are not allowed. Crate with this problem: \
         `foo_wild`. See https://doc.rust-lang.org/cargo/faq.html#can-libraries-use--as-a-version-for-their-dependencies"
    );
    // Partial wildcards are fine.
    validate(&with_dep(dep("bar", "1.*")), &publish_limits()).unwrap();
}

#[test]
fn registry_outside_allow_list_is_rejected() {
    let foreign = PublishDependency {
        registry: Some("sparse+https://other.example/index/".into()),
        ..dep("bar", "^1")
    };
    assert_eq!(
        error(&with_dep(foreign)),
        "dependency `bar` is hosted on another registry (`sparse+https://other.example/index/`) \
         that is not in the allow-list"
    );
}

#[test]
fn allowed_registry_is_kept_and_not_local() {
    let limits = PublishLimits {
        allowed_registries: vec!["sparse+https://other.example/index/".into()],
        ..publish_limits()
    };
    let foreign = PublishDependency {
        registry: Some("sparse+https://other.example/index/".into()),
        ..dep("bar", "^1")
    };
    let validated = validate(&with_dep(foreign), &limits).unwrap();
    assert_eq!(
        validated.index_deps()[0].registry.as_deref(),
        Some("sparse+https://other.example/index/")
    );
    assert!(validated.local_dependencies().is_empty());

    let crates_io = PublishDependency {
        registry: Some(CRATES_IO_INDEX.into()),
        ..dep("serde", "^1")
    };
    let validated = validate(&with_dep(crates_io), &publish_limits()).unwrap();
    assert_eq!(
        validated.index_deps()[0].registry.as_deref(),
        Some(CRATES_IO_INDEX)
    );
    assert!(validated.local_dependencies().is_empty());
}

#[test]
fn own_index_url_means_local() {
    let own = PublishDependency {
        registry: Some(OWN_INDEX.into()),
        kind: Some(DependencyKind::Dev),
        ..dep("bar", "^1.2")
    };
    let validated = validate(&with_dep(own), &publish_limits()).unwrap();
    assert_eq!(validated.index_deps()[0].registry, None);
    assert_eq!(
        validated.local_dependencies(),
        &[LocalDependency {
            package: "bar".into(),
            kind: DependencyKind::Dev,
            req: semver::VersionReq::parse("^1.2").unwrap(),
        }]
    );
}

#[test]
fn description_too_long() {
    let meta = PublishMetadata {
        description: Some("d".repeat(1001)),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "the description is 1001 bytes long, but at most 1000 bytes are allowed"
    );
}

#[test]
fn readme_too_large() {
    let limits = PublishLimits {
        max_readme_bytes: 10,
        ..publish_limits()
    };
    let meta = PublishMetadata {
        readme: Some("r".repeat(11)),
        ..minimal()
    };
    assert_eq!(
        validate(&meta, &limits).unwrap_err().to_string(),
        "the readme is 11 bytes long, but at most 10 bytes are allowed"
    );
}

#[test]
fn invalid_rust_version() {
    let meta = PublishMetadata {
        rust_version: Some("1.70-beta".into()),
        ..minimal()
    };
    assert_eq!(
        error(&meta),
        "invalid rust-version `1.70-beta`: expected `major[.minor[.patch]]` with numbers only"
    );
}

#[test]
fn every_problem_is_reported() {
    let meta = PublishMetadata {
        name: "std".into(),
        vers: "x".into(),
        deps: vec![dep("a", "*"), dep("b", "^1")],
        ..minimal()
    };
    let err = validate(&meta, &publish_limits()).unwrap_err();
    assert_eq!(err.problems().len(), 3);
    assert!(matches!(err.problems()[0], PublishProblem::Name(_)));
    assert!(matches!(
        err.problems()[1],
        PublishProblem::InvalidVersion { .. }
    ));
    assert_eq!(
        err.problems()[2],
        PublishProblem::WildcardRequirement { name: "a".into() }
    );
    assert_eq!(err.to_string().matches("; ").count(), 2);
}

#[test]
fn deeply_nested_or_long_targets_are_refused() {
    // On a 2 MiB stack, like any spawned thread: nothing may recurse per level.
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let deep = format!("cfg({}unix{})", "not(".repeat(100_000), ")".repeat(100_000));
            let message = error(&with_dep(PublishDependency {
                target: Some(deep.clone()),
                ..dep("libc", "^0.2")
            }));
            assert!(
                message.starts_with("dependency `libc` has an invalid target: target `cfg(not("),
                "{message}"
            );
            assert!(
                message.ends_with("nests deeper than 64 levels"),
                "{message}"
            );
            // What the consistency check does with a metadata target: no recursion either.
            assert_eq!(depot_cratefile::normalize_platform(&deep), deep);
        })
        .expect("spawn")
        .join()
        .expect("no stack overflow or panic");

    let long = format!("cfg(any({}unix))", "unix, ".repeat(1000));
    let message = error(&with_dep(PublishDependency {
        target: Some(long),
        ..dep("libc", "^0.2")
    }));
    assert!(
        message.contains("at most 4096 bytes are allowed"),
        "{message}"
    );
}
