//! `check_consistency`: the publish metadata against the tarball's `Cargo.toml`.

use depot_cratefile::publish::validate;
use depot_cratefile::{
    CrateContents, Mismatch, PublishMetadata, ValidatedPublish, check_consistency,
};

use crate::fixtures::{
    MANIFEST, inspect_my_crate, metadata, my_crate_with_manifest, publish_limits,
};

fn validated(meta: &PublishMetadata) -> ValidatedPublish {
    validate(meta, &publish_limits()).expect("the metadata is valid")
}

fn contents(manifest: &str) -> CrateContents {
    inspect_my_crate(&my_crate_with_manifest(manifest).build()).expect("the tarball is valid")
}

/// The mismatch messages for the captured metadata against a modified manifest.
fn mismatches(meta: &PublishMetadata, manifest: &str) -> Vec<String> {
    check_consistency(&validated(meta), &contents(manifest))
        .expect_err("a mismatch is expected")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn captured_publish_is_consistent() {
    check_consistency(&validated(&metadata()), &contents(MANIFEST))
        .expect("cargo's own upload agrees");
}

#[test]
fn requirement_differs() {
    let manifest = MANIFEST.replace("version = \"=0.1.0\"", "version = \"=0.1.1\"");
    assert_eq!(
        mismatches(&metadata(), &manifest),
        [
            "dependency `dep-a` (build) differs between the publish metadata and `Cargo.toml`: req \"=0.1.0\" vs \"=0.1.1\""
        ]
    );
}

#[test]
fn requirements_are_compared_semantically() {
    let mut meta = metadata();
    meta.deps[3].version_req = "= 0.1.0".into();
    meta.deps[4].version_req = "0.1.0".into();
    check_consistency(&validated(&meta), &contents(MANIFEST)).expect("`0.1.0` is `^0.1.0`");
}

#[test]
fn targets_are_compared_after_normalisation() {
    let mut meta = metadata();
    meta.deps[4].target = Some("cfg(any(unix,windows))".into());
    let manifest = MANIFEST.replace(
        r#"[target."cfg(unix)"."#,
        r#"[target."cfg(any(unix, windows))"."#,
    );
    check_consistency(&validated(&meta), &contents(&manifest))
        .expect("same platform, other spacing");
}

#[test]
fn dependency_only_in_metadata() {
    let manifest = MANIFEST.replace("[dev-dependencies.fakeserde]\nversion = \"1\"\n", "");
    assert_eq!(
        mismatches(&metadata(), &manifest),
        ["dependency `fakeserde` (dev) is in the publish metadata but not in `Cargo.toml`"]
    );
}

#[test]
fn dependency_only_in_manifest() {
    let manifest =
        format!("{MANIFEST}\n[target.\"cfg(windows)\".dependencies.winapi]\nversion = \"0.3\"\n");
    assert_eq!(
        mismatches(&metadata(), &manifest),
        [
            "dependency `winapi` (normal, target `cfg(windows)`) is in `Cargo.toml` but not in the publish metadata"
        ]
    );
}

#[test]
fn optional_and_features_differ() {
    let mut meta = metadata();
    meta.deps[1].optional = false;
    meta.deps[1].features = vec!["other".into()];
    assert_eq!(
        mismatches(&meta, MANIFEST),
        [
            "dependency `renamed_dep` (normal, package `dep-a`) differs between the publish metadata \
          and `Cargo.toml`: optional false vs true, features [\"other\"] vs [\"extra-a\"]"
        ]
    );
}

#[test]
fn rename_differs() {
    let mut meta = metadata();
    meta.deps[1].explicit_name_in_toml = None;
    let messages = mismatches(&meta, MANIFEST);
    assert_eq!(
        messages,
        [
            "dependency `dep-a` (normal) is in the publish metadata but not in `Cargo.toml`",
            "dependency `renamed_dep` (normal, package `dep-a`) is in `Cargo.toml` but not in the publish metadata",
        ]
    );
}

#[test]
fn registry_differs() {
    let mut meta = metadata();
    meta.deps[0].registry = None;
    assert_eq!(
        mismatches(&meta, MANIFEST),
        [
            "dependency `fakeserde` (normal) differs between the publish metadata and `Cargo.toml`: \
          registry None vs Some(\"https://github.com/rust-lang/crates.io-index\")"
        ]
    );
}

#[test]
fn crates_io_urls_are_equal() {
    let mut meta = metadata();
    meta.deps[0].registry = Some("sparse+https://index.crates.io/".into());
    check_consistency(&validated(&meta), &contents(MANIFEST)).expect("both URLs mean crates.io");
}

#[test]
fn features_differ() {
    let mut meta = metadata();
    meta.features
        .insert("std".into(), vec!["fakeserde/std".into(), "extra".into()]);
    meta.features.insert("ghost".into(), vec![]);
    meta.features.remove("weak");
    assert_eq!(
        mismatches(&meta, MANIFEST),
        [
            "feature `ghost` is in the publish metadata but not in `Cargo.toml`",
            "feature `std` differs: the publish metadata has [\"fakeserde/std\", \"extra\"], `Cargo.toml` has [\"fakeserde/std\"]",
            "feature `weak` is in `Cargo.toml` but not in the publish metadata",
        ]
    );
}

#[test]
fn feature_value_order_does_not_matter() {
    let manifest = MANIFEST.replace("default = [\"std\"]", "default = [\"std\", \"extra\"]");
    let mut meta = metadata();
    meta.features
        .insert("default".into(), vec!["extra".into(), "std".into()]);
    check_consistency(&validated(&meta), &contents(&manifest)).expect("same values, other order");
}

#[test]
fn links_and_rust_version_differ() {
    let mut meta = metadata();
    meta.links = Some("otherlib".into());
    meta.rust_version = Some("1.71".into());
    assert_eq!(
        mismatches(&meta, MANIFEST),
        [
            "`links` differs: the publish metadata has `otherlib`, `Cargo.toml` has `mylib`",
            "`rust-version` differs: the publish metadata has `1.71`, `Cargo.toml` has `1.70`",
        ]
    );
}

#[test]
fn links_and_rust_version_on_one_side_only_are_fine() {
    let mut meta = metadata();
    meta.links = None;
    meta.rust_version = None;
    check_consistency(&validated(&meta), &contents(MANIFEST))
        .expect("only compared when both given");
}

#[test]
fn mismatch_values_are_structured() {
    let mut meta = metadata();
    meta.links = Some("x".into());
    let errors = check_consistency(&validated(&meta), &contents(MANIFEST)).unwrap_err();
    assert_eq!(
        errors,
        [Mismatch::Links {
            metadata: "x".into(),
            manifest: "mylib".into()
        }]
    );
}
