//! The read side over HTTP: config.json, index files with ETag/304, path rules, downloads.

use sha2::{Digest, Sha256};

use crate::support::{Setup, TestDepot, crate_bytes, metadata, publish_body};

async fn index_files_etags_paths_and_downloads(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let http = &depot.http;

    let config: serde_json::Value = http
        .get(format!("{}/index/config.json", depot.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["dl"], format!("{}/api/v1/crates", depot.url));
    assert_eq!(config["api"], depot.url);

    let krate = crate_bytes("My_Crate", "0.2.0+build.5", "");
    let (status, json) = depot
        .publish_raw(
            &alice,
            publish_body(&metadata("My_Crate", "0.2.0+build.5"), &krate),
        )
        .await;
    assert_eq!(status, 200, "{json}");

    // The file lives at the lowercased path only.
    let url = format!("{}/index/my/_c/my_crate", depot.url);
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong etag: {etag}"
    );
    assert!(res.headers().contains_key("last-modified"));
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let body = res.text().await.unwrap();
    let line: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
    assert_eq!(line["name"], "My_Crate");
    assert_eq!(line["vers"], "0.2.0+build.5");
    assert_eq!(line["cksum"], hex::encode(Sha256::digest(&krate)));
    let pubtime = line["pubtime"].as_str().unwrap();
    assert_eq!(pubtime.len(), 20, "{pubtime}");
    assert!(pubtime.ends_with('Z'));

    let res = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    let res = http
        .get(&url)
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    for wrong in [
        "My/_C/My_Crate",
        "my/_c/my-crate",
        "my/cr/my_crate",
        "3/m/my_crate",
    ] {
        let res = http
            .get(format!("{}/index/{wrong}", depot.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{wrong}");
    }
    let res = http
        .get(format!("{}/index/no/ne/nonexistent", depot.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let missing: serde_json::Value = res.json().await.unwrap();
    assert!(missing["errors"][0]["detail"].is_string());

    // Yank changes the bytes and the ETag.
    let res = http
        .delete(format!(
            "{}/api/v1/crates/My_Crate/0.2.0+build.5/yank",
            depot.url
        ))
        .header("Authorization", format!("Bearer {alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), r#"{"ok":true}"#);
    let res = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a yank must change the etag");
    assert!(res.text().await.unwrap().contains(r#""yanked":true"#));

    // Downloads stream the exact bytes; `+` may arrive literally or percent-encoded.
    for vers in ["0.2.0+build.5", "0.2.0%2Bbuild.5"] {
        let res = http
            .get(format!(
                "{}/api/v1/crates/My_Crate/{vers}/download",
                depot.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{vers}");
        assert_eq!(res.bytes().await.unwrap().as_ref(), krate.as_slice());
    }
    let res = http
        .get(format!(
            "{}/api/v1/crates/My_Crate/9.9.9/download",
            depot.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // Search answers in cargo's shape.
    let found: serde_json::Value = http
        .get(format!(
            "{}/api/v1/crates?q=my%2Dcrate&per_page=5",
            depot.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["meta"]["total"], 1, "{found}");
    assert_eq!(found["crates"][0]["name"], "My_Crate");
    assert_eq!(found["crates"][0]["max_version"], "0.2.0+build.5");
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_fails_fast_with_a_clear_message() {
    use std::process::Command;
    use std::time::{Duration, Instant};

    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_depot"));
        for (key, _) in std::env::vars() {
            if key.starts_with("DEPOT_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("serve")
            .env("DEPOT_LISTEN", "127.0.0.1:0")
            .env("DEPOT_UPSTREAM_INDEX", "off")
            .env("DEPOT_METRICS_LISTEN", "off")
            .envs(env.iter().copied());
        let started = Instant::now();
        let out = cmd.output().expect("run depot");
        (out, started.elapsed())
    };
    let nats = depot_testkit::nats_url();

    let (out, took) = run(&[
        ("DEPOT_NATS_URL", "nats://127.0.0.1:1"),
        (
            "DEPOT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        stderr.contains("cannot open the event log on NATS at nats://127.0.0.1:1"),
        "{stderr}"
    );

    let (out, took) = run(&[
        ("DEPOT_NATS_URL", &nats),
        (
            "DEPOT_DATABASE_URL",
            "postgres://postgres:secret@127.0.0.1:1/depot",
        ),
        ("DEPOT_NATS_STREAM", "T_STARTUP_CHECK"),
        ("DEPOT_NATS_PREFIX", "t_startup_check"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        stderr.contains("cannot open the read models at postgres://postgres:***@127.0.0.1:1/depot"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

on_all_setups!(index_files_etags_paths_and_downloads);

/// The zero-setup first start creates the admin `admin`, writes its token to a file only the
/// owner can read, and prints the file's path and the cargo config, never the secret.
#[tokio::test(flavor = "multi_thread")]
async fn first_start_writes_a_working_admin_token_to_a_private_file() {
    let mut depot = TestDepot::start_on(Setup::Embedded, &[]).await;
    let path = depot.data_dir().join("admin-token");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let token = loop {
        let stdout = depot.stdout();
        if stdout.contains("cargo login --registry depot") {
            assert!(
                stdout.contains(&format!("index = \"{}\"", depot.index_url())),
                "{stdout}"
            );
            let shown = std::fs::canonicalize(&path).unwrap();
            assert!(stdout.contains(&shown.display().to_string()), "{stdout}");
            let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
            assert!(token.starts_with("depot_"), "{token}");
            assert!(!stdout.contains(&token), "the secret was printed: {stdout}");
            assert!(!depot.output().contains(&token), "the secret was logged");
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
            break token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no welcome printed: {stdout}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let me = |depot: &TestDepot| {
        depot
            .http
            .get(format!("{}/api/v1/me", depot.url))
            .header("Authorization", token.clone())
            .send()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let res = me(&depot).await.unwrap();
        if res.status() == 200 {
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["user"]["login"], "admin");
            assert_eq!(body["user"]["admin"], true);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the admin token never worked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Only on the first start.
    depot.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !depot.stdout().contains("Depot is ready"),
        "{}",
        depot.stdout()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
    assert_eq!(me(&depot).await.unwrap().status(), 200);
}
