//! Every publish rule: a bad request is refused with a clear message in cargo's format, and
//! neither the event log nor the read models change (api rules), or only the rejected upload
//! is recorded while the index stays the same and the version stays free (archive rules).

use serde_json::{Value, json};

use crate::support::{
    Setup, TestDepot, crate_bytes, crate_with_manifest, details, manifest, metadata, publish_body,
};

/// Asserts the api refuses `body` with `status` and a detail containing `needle`, and that
/// nothing was appended and no index file changed.
async fn refused(depot: &TestDepot, token: &str, body: Vec<u8>, status: u16, needle: &str) {
    let head = depot.log_head().await;
    let snapshot = depot.index_snapshot().await;
    let (got, json) = depot.publish_raw(token, body).await;
    assert_eq!(got, status, "status for `{needle}`: {json}");
    assert!(
        details(&json).contains(needle),
        "expected `{needle}` in {json}"
    );
    assert_eq!(
        depot.log_head().await,
        head,
        "the event log changed for `{needle}`:\n{}",
        depot.events_after(head).await
    );
    assert_eq!(
        depot.index_snapshot().await,
        snapshot,
        "the index changed for `{needle}`"
    );
}

/// Asserts the extractor rejects the upload with a detail containing `needle`: exactly the
/// upload and its rejection are recorded, the index is unchanged and the version stays free.
async fn rejected(
    depot: &TestDepot,
    token: &str,
    name: &str,
    vers: &str,
    krate: Vec<u8>,
    needle: &str,
) {
    let head = depot.log_head().await;
    let snapshot = depot.index_snapshot().await;
    let (got, json) = depot
        .publish_raw(token, publish_body(&metadata(name, vers), &krate))
        .await;
    assert_eq!(got, 400, "status for `{needle}`: {json}");
    assert!(
        details(&json).contains(needle),
        "expected `{needle}` in {json}"
    );
    assert_eq!(
        depot.log_head().await,
        head + 2,
        "upload + rejection for `{needle}`:\n{}",
        depot.events_after(head).await
    );
    assert_eq!(
        depot.index_snapshot().await,
        snapshot,
        "the index changed for `{needle}`"
    );
    // The version is still free.
    let (got, json) = depot
        .publish_raw(
            token,
            publish_body(&metadata(name, vers), &crate_bytes(name, vers, "ok")),
        )
        .await;
    assert_eq!(got, 200, "valid publish after `{needle}`: {json}");
    assert_eq!(
        json["warnings"]["other"],
        serde_json::json!([]),
        "the valid publish after `{needle}` was not visible in time"
    );
}

fn with(mut meta: Value, key: &str, value: Value) -> Value {
    meta[key] = value;
    meta
}

fn dep(name: &str, req: &str, kind: &str) -> Value {
    json!({"optional": false, "default_features": true, "name": name, "features": [],
           "version_req": req, "target": null, "kind": kind})
}

async fn names_versions_and_ownership(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let mallory = depot.token("mallory").await;
    let publish = |name: &str, vers: &str, extra: &str| {
        publish_body(&metadata(name, vers), &crate_bytes(name, vers, extra))
    };
    let (status, json) = depot
        .publish_raw(&alice, publish("foo-bar", "1.0.0", "a"))
        .await;
    assert_eq!(status, 200, "{json}");

    refused(
        &depot,
        &alice,
        publish("1abc", "1.0.0", ""),
        400,
        "cannot start with a digit",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("ab.c", "1.0.0", ""),
        400,
        "invalid character `.`",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("crème", "1.0.0", ""),
        400,
        "invalid character",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish(&"a".repeat(65), "1.0.0", ""),
        400,
        "too long",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("std", "1.0.0", ""),
        400,
        "reserved name",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("Proc-Macro", "1.0.0", ""),
        400,
        "reserved name",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("x", "1.0", ""),
        400,
        "invalid semver",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("Foo_Bar", "2.0.0", ""),
        400,
        "previously named `foo-bar`",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("foo-bar", "1.0.0", "b"),
        409,
        "`1.0.0` is already uploaded",
    )
    .await;
    refused(
        &depot,
        &alice,
        publish("foo-bar", "1.0.0+build.7", "b"),
        409,
        "`1.0.0` is already uploaded",
    )
    .await;
    refused(
        &depot,
        &mallory,
        publish("foo-bar", "1.1.0", ""),
        403,
        "you don't seem to be an owner",
    )
    .await;
    refused(
        &depot,
        "depot_not-a-real-token",
        publish("foo-bar", "1.1.0", ""),
        401,
        "authentication failed",
    )
    .await;
    let head = depot.log_head().await;
    let res = depot
        .http
        .put(format!("{}/api/v1/crates/new", depot.url))
        .body(publish("foo-bar", "1.1.0", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Cargo login_url=")
    );
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("requires authentication")
    );
    assert_eq!(depot.log_head().await, head);

    // Identical bytes again: success, no new event.
    let head = depot.log_head().await;
    let (status, json) = depot
        .publish_raw(&alice, publish("foo-bar", "1.0.0", "a"))
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        depot.log_head().await,
        head,
        "idempotent publish appended an event"
    );

    // A yanked version stays taken.
    let res = depot
        .http
        .delete(format!("{}/api/v1/crates/foo-bar/1.0.0/yank", depot.url))
        .header("Authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    refused(
        &depot,
        &alice,
        publish("foo-bar", "1.0.0", "c"),
        409,
        "already uploaded",
    )
    .await;

    // Scoped tokens.
    let narrow = depot
        .token_with("alice", &["--scope", "publish-update", "--crate", "foo-*"])
        .await;
    refused(
        &depot,
        &narrow,
        publish("other", "1.0.0", ""),
        403,
        "`publish-new` scope",
    )
    .await;
    let (status, json) = depot
        .publish_raw(&narrow, publish("foo-bar", "1.2.0", ""))
        .await;
    assert_eq!(status, 200, "{json}");
}

async fn dependencies_are_validated(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let base =
        |name: &str, vers: &str| publish_body(&metadata(name, vers), &crate_bytes(name, vers, ""));
    assert_eq!(
        depot.publish_raw(&alice, base("base", "1.0.0")).await.0,
        200
    );
    assert_eq!(
        depot.publish_raw(&alice, base("base", "2.0.0")).await.0,
        200
    );
    let res = depot
        .http
        .delete(format!("{}/api/v1/crates/base/2.0.0/yank", depot.url))
        .header("Authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    let with_deps = |deps: Vec<Value>| {
        let meta = with(metadata("app", "0.1.0"), "deps", json!(deps));
        publish_body(&meta, &crate_bytes("app", "0.1.0", ""))
    };
    refused(
        &depot,
        &alice,
        with_deps(vec![dep("missing", "^1", "normal")]),
        400,
        "no known crate named `missing`",
    )
    .await;
    refused(
        &depot,
        &alice,
        with_deps(vec![dep("missing", "^1", "dev")]),
        400,
        "no known crate named `missing`",
    )
    .await;
    refused(
        &depot,
        &alice,
        with_deps(vec![dep("Base", "^1", "normal")]),
        400,
        "use that exact spelling",
    )
    .await;
    refused(
        &depot,
        &alice,
        with_deps(vec![dep("base", "^3", "normal")]),
        400,
        "matches the normal dependency requirement `^3`",
    )
    .await;
    refused(
        &depot,
        &alice,
        with_deps(vec![dep("base", "^2", "build")]),
        400,
        "matches the build dependency requirement `^2`",
    )
    .await;
    refused(
        &depot,
        &alice,
        with_deps(vec![dep("base", "*", "normal")]),
        400,
        "wildcard",
    )
    .await;
    let mut foreign = dep("serde", "^1", "normal");
    foreign["registry"] = json!("sparse+https://other.example.com/index/");
    refused(&depot, &alice, with_deps(vec![foreign]), 400, "allow-list").await;

    // Accepted: crates.io dependencies, a dev dependency on a yanked-only range, a renamed one.
    let mut serde = dep("serde", "^1", "normal");
    serde["registry"] = json!("https://github.com/rust-lang/crates.io-index");
    let mut renamed = dep("base", "^1", "normal");
    renamed["explicit_name_in_toml"] = json!("b1");
    let deps = vec![serde, renamed, dep("base", "^2", "dev")];
    let meta = with(metadata("app", "0.1.0"), "deps", json!(deps));
    // In a normalised manifest, a dependency without `registry-index` comes from crates.io.
    let own = depot.index_url();
    let rest = format!(
        "[dependencies.serde]\nversion = \"1\"\n\
         [dependencies.b1]\nversion = \"1\"\npackage = \"base\"\nregistry-index = \"{own}\"\n\
         [dev-dependencies.base]\nversion = \"2\"\nregistry-index = \"{own}\"\n"
    );
    let krate = crate_with_manifest("app", "0.1.0", &manifest("app", "0.1.0", &rest), "");
    let (status, json) = depot.publish_raw(&alice, publish_body(&meta, &krate)).await;
    assert_eq!(status, 200, "{json}");
    let (_, index) = depot.index_file("app").await;
    assert!(
        index.contains(r#""name":"b1","req":"^1""#) && index.contains(r#""package":"base""#),
        "{index}"
    );
    assert!(
        index.contains(r#""registry":"https://github.com/rust-lang/crates.io-index""#),
        "{index}"
    );
}

async fn limits_and_framing(setup: Setup) {
    let depot = TestDepot::start_on(
        setup,
        &[
            ("DEPOT_MAX_CRATE_SIZE", "4KiB"),
            ("DEPOT_MAX_JSON_SIZE", "64KiB"),
            ("DEPOT_MAX_UNPACKED_SIZE", "64KiB"),
        ],
    )
    .await;
    let alice = depot.token("alice").await;
    let good = crate_bytes("lim", "1.0.0", "");
    let meta = metadata("lim", "1.0.0");

    let big_json = with(meta.clone(), "readme", json!("x".repeat(70_000)));
    refused(
        &depot,
        &alice,
        publish_body(&big_json, &good),
        413,
        "JSON metadata blob too large",
    )
    .await;
    let big_crate = vec![7u8; 5000];
    refused(
        &depot,
        &alice,
        publish_body(&meta, &big_crate),
        413,
        "max upload size is: 4096",
    )
    .await;
    let keywords = with(
        meta.clone(),
        "keywords",
        json!(["a", "b", "c", "d", "e", "f"]),
    );
    refused(
        &depot,
        &alice,
        publish_body(&keywords, &good),
        400,
        "keywords",
    )
    .await;
    let bad_keyword = with(meta.clone(), "keywords", json!(["-bad"]));
    refused(
        &depot,
        &alice,
        publish_body(&bad_keyword, &good),
        400,
        "-bad",
    )
    .await;
    let description = with(meta.clone(), "description", json!("d".repeat(1001)));
    refused(
        &depot,
        &alice,
        publish_body(&description, &good),
        400,
        "description",
    )
    .await;
    let categories = with(
        meta.clone(),
        "categories",
        json!(["a", "b", "c", "d", "e", "f"]),
    );
    refused(
        &depot,
        &alice,
        publish_body(&categories, &good),
        400,
        "categories",
    )
    .await;
    let features: serde_json::Map<String, Value> =
        (0..301).map(|i| (format!("f{i}"), json!([]))).collect();
    let many_features = with(meta.clone(), "features", Value::Object(features));
    refused(
        &depot,
        &alice,
        publish_body(&many_features, &good),
        400,
        "features",
    )
    .await;
    let bad_feature = with(meta.clone(), "features", json!({"a b": []}));
    refused(
        &depot,
        &alice,
        publish_body(&bad_feature, &good),
        400,
        "a b",
    )
    .await;
    let deps: Vec<Value> = (0..501)
        .map(|i| dep(&format!("d{i}"), "^1", "normal"))
        .collect();
    let many_deps = with(meta.clone(), "deps", json!(deps));
    refused(
        &depot,
        &alice,
        publish_body(&many_deps, &good),
        400,
        "dependencies",
    )
    .await;

    // Framing.
    let body = publish_body(&meta, &good);
    refused(
        &depot,
        &alice,
        body[..body.len() - 10].to_vec(),
        400,
        "invalid upload request",
    )
    .await;
    refused(
        &depot,
        &alice,
        body[..2].to_vec(),
        400,
        "invalid upload request",
    )
    .await;
    let mut trailing = body.clone();
    trailing.extend_from_slice(b"junk");
    refused(&depot, &alice, trailing, 400, "invalid upload request").await;
    refused(
        &depot,
        &alice,
        publish_body(&json!("not an object"), &good),
        400,
        "invalid upload request",
    )
    .await;
    let mut not_json = body.clone();
    not_json[4] = b'!';
    refused(&depot, &alice, not_json, 400, "invalid upload request").await;

    let (status, json) = depot.publish_raw(&alice, body).await;
    assert_eq!(status, 200, "{json}");
}

async fn archives_are_validated(setup: Setup) {
    use depot_cratefile::TarballBuilder;

    let depot = TestDepot::start_on(
        setup,
        &[
            ("DEPOT_MAX_CRATE_SIZE", "64KiB"),
            ("DEPOT_MAX_UNPACKED_SIZE", "64KiB"),
        ],
    )
    .await;
    let alice = depot.token("alice").await;
    let (name, vers) = ("arc", "1.0.0");
    let root = "arc-1.0.0";
    let toml = manifest(name, vers, "");
    let base = || TarballBuilder::with_manifest(name, vers, &toml);

    rejected(
        &depot,
        &alice,
        name,
        "1.0.0",
        b"not gzip at all".to_vec(),
        "malformed",
    )
    .await;
    rejected(
        &depot,
        &alice,
        name,
        "1.0.1",
        TarballBuilder::with_manifest(name, "1.0.1", &manifest(name, "1.0.1", ""))
            .add_file("other-1.0.0/x.rs", b"")
            .build(),
        "invalid path found: other-1.0.0/x.rs",
    )
    .await;
    let v = "1.0.2";
    let m = manifest(name, v, "");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m)
            .add_raw_file(format!("{name}-{v}/../../etc/x").as_bytes(), b"")
            .build(),
        "invalid path found",
    )
    .await;
    let v = "1.0.3";
    let m = manifest(name, v, "");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m)
            .add_symlink(&format!("{name}-{v}/link"), "/etc/passwd")
            .build(),
        "unexpected tar entry type Symlink",
    )
    .await;
    let v = "1.0.4";
    let m = manifest(name, v, "");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m)
            .add_hard_link(
                &format!("{name}-{v}/hard"),
                &format!("{name}-{v}/src/lib.rs"),
            )
            .build(),
        "unexpected tar entry type Link",
    )
    .await;
    let v = "1.0.5";
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::new()
            .add_file(&format!("{name}-{v}/src/lib.rs"), b"")
            .build(),
        "missing `Cargo.toml`",
    )
    .await;
    let v = "1.0.6";
    let m = manifest(name, v, "");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m)
            .add_file(&format!("{name}-{v}/cargo.toml"), m.as_bytes())
            .build(),
        "Cargo.toml",
    )
    .await;
    let v = "1.0.7";
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &manifest("other", v, "")).build(),
        "does not match manifest name `other`",
    )
    .await;
    let v = "1.0.8";
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &manifest(name, "9.9.9", "")).build(),
        "does not match manifest version `9.9.9`",
    )
    .await;
    let v = "1.0.9";
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, "not [valid toml").build(),
        "failed to parse `Cargo.toml`",
    )
    .await;
    let v = "1.0.10";
    let m = manifest(name, v, "[dependencies]\nsneaky = \"1\"\n");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m).build(),
        "sneaky",
    )
    .await;
    let v = "1.0.11";
    let m = manifest(name, v, "[features]\nhidden = []\n");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m).build(),
        "hidden",
    )
    .await;
    let v = "1.0.12";
    let m = manifest(name, v, "");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m)
            .add_file(&format!("{name}-{v}/big.bin"), &vec![0u8; 100_000])
            .build(),
        "too large when decompressed",
    )
    .await;
    let v = "1.0.13";
    let m = manifest(name, v, "[patch.crates-io]\nfoo = { path = \"x\" }\n");
    rejected(
        &depot,
        &alice,
        name,
        v,
        TarballBuilder::with_manifest(name, v, &m).build(),
        "[patch]",
    )
    .await;
    // The base helper is the valid shape.
    let _ = (base(), root);
}

on_both_setups!(
    names_versions_and_ownership,
    dependencies_are_validated,
    limits_and_framing,
    archives_are_validated
);
