//! The whole registry driven by the real cargo: publish, depend, build, yank, owners, search.

use depot_testkit::{CargoHome, CargoProject};

use crate::support::{Setup, TestDepot};

async fn cargo_publish_build_yank_owner_search(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let bob = depot.token("bob").await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&alice));

    // Crate A, then crate B depending on A (renamed, with a feature, as a build dep too).
    let a = CargoProject::new_lib("acme-core", "0.1.0")
        .description("Core of acme")
        .feature("extra", &[])
        .lib_rs("pub fn answer() -> u32 { 42 }\n");
    home.publish(&a).await.assert_success();
    let (status, body) = depot.index_file("acme-core").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""name":"acme-core","vers":"0.1.0""#),
        "{body}"
    );

    let b = CargoProject::new_lib("Acme_Http", "1.0.0")
        .description("HTTP for acme")
        .dep("acme-core", "0.1")
        .lib_rs("pub fn answer() -> u32 { acme_core::answer() + 1 }\n");
    home.publish(&b).await.assert_success();
    let (status, body) = depot.index_file("acme_http").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""deps":[{"name":"acme-core","req":"^0.1","features":[],"optional":false,"default_features":true,"target":null,"kind":"normal"}]"#),
        "{body}"
    );

    // A consumer resolves and builds both from Depot.
    let consumer = CargoProject::new_bin("consumer", "0.1.0")
        .dep("Acme_Http", "1")
        .main_rs("fn main() { assert_eq!(Acme_Http::answer(), 43); }\n");
    home.build(&consumer).await.assert_success();
    let lock = consumer.lockfile().expect("Cargo.lock");
    assert!(lock.contains("name = \"acme-core\""), "{lock}");
    assert!(lock.contains("name = \"Acme_Http\""), "{lock}");

    // A second publish of the same version fails with Depot's message (cargo's own pre-check
    // is skipped for yanked versions, so test the server: yank first).
    home.yank("acme-core", "0.1.0").await.assert_success();
    let (_, body) = depot.index_file("acme-core").await;
    assert!(body.contains(r#""yanked":true"#), "{body}");
    let again = CargoProject::new_lib("acme-core", "0.1.0")
        .description("Core of acme, different bytes")
        .lib_rs("pub fn answer() -> u32 { 41 }\n");
    home.publish(&again)
        .await
        .assert_failure_contains("crate version `0.1.0` is already uploaded");
    home.unyank("acme-core", "0.1.0").await.assert_success();
    let (_, body) = depot.index_file("acme-core").await;
    assert!(body.contains(r#""yanked":false"#), "{body}");
    // Unyanked, cargo's own check catches it first.
    home.publish(&a)
        .await
        .assert_failure_contains("already exists on `depot` index");

    // Owners.
    home.owner_list("acme-core")
        .await
        .assert_success()
        .assert_stdout_contains("alice");
    home.owner_add("acme-core", &["bob"]).await.assert_success();
    let list = home.owner_list("acme-core").await;
    list.assert_success();
    assert!(
        list.stdout.contains("alice") && list.stdout.contains("bob"),
        "{}",
        list.stdout
    );
    // Bob can now publish a new version; a stranger cannot.
    let bob_home = CargoHome::new("depot", &depot.index_url(), Some(&bob));
    let a2 = CargoProject::new_lib("acme-core", "0.2.0").description("Core of acme");
    bob_home.publish(&a2).await.assert_success();
    home.owner_remove("acme-core", &["bob"])
        .await
        .assert_success();
    let list = home.owner_list("acme-core").await;
    assert!(!list.stdout.contains("bob"), "{}", list.stdout);
    let a3 = CargoProject::new_lib("acme-core", "0.3.0").description("Core of acme");
    bob_home
        .publish(&a3)
        .await
        .assert_failure_contains("you don't seem to be an owner");
    home.owner_add("acme-core", &["nobody-here"])
        .await
        .assert_failure_contains("could not find user with login `nobody-here`");

    // Search.
    let found = home.search("acme").await;
    found.assert_success();
    assert!(
        found.stdout.contains("acme-core = \"0.2.0\""),
        "{}",
        found.stdout
    );
    assert!(
        found.stdout.contains("Acme_Http = \"1.0.0\""),
        "{}",
        found.stdout
    );
    assert!(found.stdout.contains("# Core of acme"), "{}", found.stdout);
}

async fn cargo_publishes_a_large_incompressible_crate(setup: Setup) {
    // Over 1 MiB, cargo sends `Expect: 100-continue`; the body is streamed to the blob store.
    let depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&token));
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..3_000_000)
        .map(|_| {
            // xorshift: bytes gzip cannot shrink much.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'!' + (state % 90) as u8)
        })
        .collect();
    let big = CargoProject::new_lib("bigdata", "1.0.0")
        .description("Large")
        .file("data/noise.txt", &noise);
    home.publish(&big).await.assert_success();
    let downloaded = depot
        .http
        .get(format!(
            "{}/api/v1/crates/bigdata/1.0.0/download",
            depot.url
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        downloaded.len() > 1_500_000,
        "the .crate is only {} bytes",
        downloaded.len()
    );
    let consumer = CargoProject::new_bin("bigconsumer", "0.1.0").dep("bigdata", "1");
    home.build(&consumer).await.assert_success();
}

/// With `DEPOT_AUTH_REQUIRED=true`, the real cargo logs in, publishes, fetches and builds a
/// consumer, yanks, manages owners and searches, all with the token; without one it gets
/// cargo's own login guidance, and with a wrong one cargo's "token rejected".
async fn cargo_against_an_auth_required_registry(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[("DEPOT_AUTH_REQUIRED", "true")]).await;
    let alice = depot.token("alice").await;
    let bob = depot.token("bob").await;

    // No token: cargo's 401 guidance, before anything is served.
    let anonymous = CargoHome::new("depot", &depot.index_url(), None);
    let consumer = CargoProject::new_bin("consumer", "0.1.0")
        .dep("secret-core", "0.1")
        .main_rs("fn main() { assert_eq!(secret_core::answer(), 42); }\n");
    anonymous
        .run(&consumer, &["fetch"])
        .await
        .assert_failure_contains(
            "no token found for `depot`, please run `cargo login --registry depot`",
        );

    // `cargo login`, then everything else with the stored token.
    let home = CargoHome::new("depot", &depot.index_url(), None);
    home.login(&alice).await.assert_success();
    let core = CargoProject::new_lib("secret-core", "0.1.0")
        .description("Private core")
        .lib_rs("pub fn answer() -> u32 { 42 }\n");
    home.publish(&core).await.assert_success();
    home.build(&consumer).await.assert_success();
    home.yank("secret-core", "0.1.0").await.assert_success();
    home.unyank("secret-core", "0.1.0").await.assert_success();
    home.owner_add("secret-core", &["bob"])
        .await
        .assert_success();
    home.owner_list("secret-core")
        .await
        .assert_success()
        .assert_stdout_contains("bob");
    let found = home.search("secret").await;
    found.assert_success();
    assert!(
        found.stdout.contains("secret-core = \"0.1.0\""),
        "{}",
        found.stdout
    );
    let bob_home = CargoHome::new("depot", &depot.index_url(), Some(&bob));
    let next = CargoProject::new_lib("secret-core", "0.2.0").description("Private core");
    bob_home.publish(&next).await.assert_success();

    // A wrong token: cargo reports the rejection and names `cargo login`.
    let wrong = CargoHome::new("depot", &depot.index_url(), Some("depot_not-a-real-token"));
    wrong
        .run(&consumer, &["fetch"])
        .await
        .assert_failure_contains("please run `cargo login --registry depot`");

    // What cargo fetched is not for shared caches; nothing is served without a token.
    let response = depot
        .http
        .get(format!("{}/index/se/cr/secret-core", depot.url))
        .header("Authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "private, no-cache");
    for path in [
        "/index/config.json",
        "/index/se/cr/secret-core",
        "/api/v1/crates/secret-core/0.1.0/download",
        "/api/v1/crates?q=secret",
    ] {
        let response = depot
            .http
            .get(format!("{}{path}", depot.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(
            !response.text().await.unwrap().contains("secret-core\""),
            "{path}"
        );
    }
}

on_all_setups!(
    cargo_against_an_auth_required_registry,
    cargo_publish_build_yank_owner_search,
    cargo_publishes_a_large_incompressible_crate
);

/// With blobs in S3 and `DEPOT_BLOB_REDIRECT_SECS`, downloads are redirects to presigned URLs
/// of the bucket, and the real cargo follows them to build a consumer.
#[tokio::test(flavor = "multi_thread")]
async fn cargo_follows_presigned_download_redirects() {
    let depot = TestDepot::start_on(
        crate::support::Setup::S3,
        &[("DEPOT_BLOB_REDIRECT_SECS", "300")],
    )
    .await;
    let token = depot.token("alice").await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&token));
    let lib = CargoProject::new_lib("redirected", "1.0.0")
        .description("Downloaded from the bucket")
        .lib_rs("pub fn answer() -> u32 { 42 }\n");
    home.publish(&lib).await.assert_success();
    let consumer = CargoProject::new_bin("follower", "0.1.0")
        .dep("redirected", "1")
        .main_rs("fn main() { assert_eq!(redirected::answer(), 42); }\n");
    home.build(&consumer).await.assert_success();

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!(
            "{}/api/v1/crates/redirected/1.0.0/download",
            depot.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(!location.starts_with(&depot.url), "{location}");
    let (status, bytes) = depot.download("redirected", "1.0.0").await;
    assert_eq!(status, 200);
    assert!(bytes.starts_with(&[0x1f, 0x8b]), "a gzip .crate");
}
