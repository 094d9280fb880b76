//! Uploads the extractor must decide afresh, and publishes whose metadata and readme are as
//! large as the limits allow.

use serde_json::json;

use crate::support::{Setup, TestDepot, crate_bytes, details, manifest, metadata, publish_body};

on_both_setups!(republishing_after_a_rejection_gets_a_fresh_verdict);

/// Identical bytes published again after a rejection are appended and checked again, and the
/// publish answers with the verdict on its own upload, not the earlier one.
async fn republishing_after_a_rejection_gets_a_fresh_verdict(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    // The archive says 0.2.0 while the metadata says 0.1.0: rejected by the extractor.
    let body = publish_body(
        &metadata("again", "0.1.0"),
        &crate_bytes("again", "0.2.0", ""),
    );
    let head = depot.log_head().await;
    let (status, reply) = depot.publish_raw(&token, body.clone()).await;
    assert_eq!(status, 400, "first publish: {reply}");
    let first = depot.events_after(head).await;
    assert_eq!(first.matches("version_rejected").count(), 1, "{first}");

    let head = depot.log_head().await;
    let (status, reply) = depot.publish_raw(&token, body).await;
    assert_eq!(status, 400, "second publish: {reply}");
    assert!(details(&reply).contains("0.2.0"), "{reply}");
    // Answered only once its own upload was decided.
    let second = depot.events_after(head).await;
    assert_eq!(second.matches("version_uploaded").count(), 1, "{second}");
    assert_eq!(second.matches("version_rejected").count(), 1, "{second}");
}

/// A publish whose JSON carries a readme close to `DEPOT_MAX_JSON_SIZE` and whose `.crate`
/// carries a readme close to the readme cap is accepted and visible: neither travels inside
/// an event, so JetStream's 1 MiB message limit is not in the way.
#[tokio::test(flavor = "multi_thread")]
async fn a_publish_with_the_largest_readmes_is_accepted_on_jetstream() {
    let depot = TestDepot::start_on(Setup::Production, &[]).await;
    let token = depot.token("alice").await;
    let mut meta = metadata("big_readme", "1.0.0");
    meta["readme"] = json!("j".repeat((1 << 20) - 4096));
    meta["readme_file"] = json!("README.md");
    let readme = "# big\n".repeat(((1 << 20) - 4096) / 6);
    let krate = {
        let root = "big_readme-1.0.0";
        let manifest = manifest("big_readme", "1.0.0", "readme = \"README.md\"\n");
        depot_cratefile::TarballBuilder::new()
            .add_file(&format!("{root}/Cargo.toml"), manifest.as_bytes())
            .add_file(&format!("{root}/README.md"), readme.as_bytes())
            .add_file(&format!("{root}/src/lib.rs"), b"// big\n")
            .build()
    };
    let (status, reply) = depot.publish_raw(&token, publish_body(&meta, &krate)).await;
    assert_eq!(status, 200, "{reply}\n{}", depot.stdout());
    let (status, index) = depot.index_file("big_readme").await;
    assert_eq!(status, 200);
    assert!(index.contains("\"vers\":\"1.0.0\""), "{index}");
}
