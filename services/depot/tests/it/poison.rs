//! Poison uploads: `.crate` files built to crash or wedge whatever reads them (a `cfg(…)`
//! target or TOML nested 100,000 deep, huge manifest fields, data after the gzip stream,
//! duplicate or case-colliding paths). Each is rejected with a clear message, the registry keeps
//! serving, a restart (which replays the durable queue) does not bring the poison back, and the
//! version stays free.

use depot_cratefile::TarballBuilder;

use crate::support::{
    Setup, TestDepot, crate_bytes, crate_with_manifest, details, manifest, metadata, publish_body,
};

const DEEP: usize = 100_000;

/// Publishes `krate` as `name`/`vers` and asserts a cargo-format 400 whose detail contains
/// `needle`.
async fn assert_rejected(depot: &TestDepot, token: &str, name: &str, krate: &[u8], needle: &str) {
    let (status, json) = depot
        .publish_raw(token, publish_body(&metadata(name, "1.0.0"), krate))
        .await;
    assert_eq!(status, 400, "status for `{needle}`: {json}");
    assert!(
        details(&json).contains(needle),
        "expected `{needle}` in {json}"
    );
    assert!(
        details(&json).len() < 1000,
        "the detail for `{needle}` is {} bytes long",
        details(&json).len()
    );
}

/// Asserts the registry accepts and serves a valid crate.
async fn assert_serving(depot: &TestDepot, token: &str, name: &str, vers: &str) {
    let (status, json) = depot
        .publish_raw(
            token,
            publish_body(&metadata(name, vers), &crate_bytes(name, vers, "ok")),
        )
        .await;
    assert_eq!(status, 200, "publish of {name} {vers}: {json}");
    let (status, body) = depot.index_file(name).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"vers\":\"{vers}\"")), "{body}");
}

fn poison_crates() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let target = format!("cfg({}unix{})", "not(".repeat(DEEP), ")".repeat(DEEP));
    let deep_cfg = manifest(
        "deepcfg",
        "1.0.0",
        &format!("\n[target.'{target}'.dependencies]\nlibc = \"0.2\"\n"),
    );
    let deep_toml = manifest(
        "deeptoml",
        "1.0.0",
        &format!(
            "\n[package.metadata]\na = {}{}\n",
            "[".repeat(DEEP),
            "]".repeat(DEEP)
        ),
    );
    let mut trailing = crate_bytes("trailing", "1.0.0", "");
    trailing.extend_from_slice(&crate_bytes("trailing", "1.0.0", "second member"));
    let toml = |name: &str| manifest(name, "1.0.0", "");
    // Fields far past what publish metadata may carry, inside the manifest cap.
    let huge_field = manifest(
        "hugefield",
        "1.0.0",
        &format!(
            "homepage = \"https://example.com/{}\"\n",
            "a".repeat(200_000)
        ),
    );
    let many_keywords = manifest(
        "manykeywords",
        "1.0.0",
        &format!(
            "keywords = [{}]\n",
            (0..10_000)
                .map(|i| format!("\"k{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    vec![
        (
            "hugefield",
            crate_with_manifest("hugefield", "1.0.0", &huge_field, ""),
            "`Cargo.toml` exceeds a limit",
        ),
        (
            "manykeywords",
            crate_with_manifest("manykeywords", "1.0.0", &many_keywords, ""),
            "`Cargo.toml` exceeds a limit",
        ),
        (
            "deepcfg",
            crate_with_manifest("deepcfg", "1.0.0", &deep_cfg, ""),
            "nests deeper than 64 levels",
        ),
        (
            "deeptoml",
            crate_with_manifest("deeptoml", "1.0.0", &deep_toml, ""),
            "recursion",
        ),
        (
            "trailing",
            trailing,
            "uploaded tarball has data after the end of its gzip stream",
        ),
        (
            "dupes",
            TarballBuilder::with_manifest("dupes", "1.0.0", &toml("dupes"))
                .add_file("dupes-1.0.0/src/lib.rs", b"// again\n")
                .build(),
            "duplicate path found: src/lib.rs",
        ),
        (
            "cased",
            TarballBuilder::with_manifest("cased", "1.0.0", &toml("cased"))
                .add_file("cased-1.0.0/src/Lib.rs", b"")
                .build(),
            "paths differ only in case: src/lib.rs and src/Lib.rs",
        ),
    ]
}

async fn poison_uploads_are_rejected_and_stay_rejected(setup: Setup) {
    let mut depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    for (name, krate, needle) in poison_crates() {
        assert_rejected(&depot, &alice, name, &krate, needle).await;
        // Still serving after each one.
        assert_serving(&depot, &alice, &format!("{name}-ok"), "1.0.0").await;
    }

    // A crash-restart replays whatever the queue still holds: no poison may come back.
    let head = depot.log_head().await;
    depot.restart().await;
    assert_serving(&depot, &alice, "after-restart", "1.0.0").await;
    assert_eq!(
        depot.log_head().await,
        head + 2,
        "only the new upload and its verdict after the restart:\n{}",
        depot.events_after(head).await
    );
    // Every poisoned version was rejected, not left pending: it is free for a valid upload.
    for (name, _, _) in poison_crates() {
        assert_serving(&depot, &alice, name, "1.0.0").await;
    }
}

on_both_setups!(poison_uploads_are_rejected_and_stay_rejected);
