//! The cargo driver against the real cargo: local commands, a stand-in registry, timeouts.

use std::time::Duration;

use depot_testkit::{CargoHome, CargoProject};

use crate::responder::Responder;

/// A sparse index URL where nothing listens: any index access would fail loudly.
fn dead_index_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("sparse+http://127.0.0.1:{port}/index/")
}

const CKSUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Routes of a minimal registry holding `dep-a` 0.1.0.
fn registry_routes() -> Vec<(&'static str, &'static str, u16, String)> {
    let line = format!(
        r#"{{"name":"dep-a","vers":"0.1.0","deps":[],"cksum":"{CKSUM}","features":{{}},"yanked":false}}"#
    );
    vec![
        (
            "GET",
            "/index/config.json",
            200,
            r#"{"dl":"{api}/dl","api":"{api}"}"#.to_owned(),
        ),
        ("GET", "/index/de/p-/dep-a", 200, format!("{line}\n")),
        (
            "DELETE",
            "/api/v1/crates/dep-a/0.1.0/yank",
            200,
            r#"{"ok":true}"#.to_owned(),
        ),
        (
            "PUT",
            "/api/v1/crates/dep-a/0.1.0/unyank",
            200,
            r#"{"ok":true}"#.to_owned(),
        ),
        (
            "GET",
            "/api/v1/crates/dep-a/owners",
            200,
            r#"{"users":[{"id":1,"login":"alice","name":"Alice"}]}"#.to_owned(),
        ),
        (
            "PUT",
            "/api/v1/crates/dep-a/owners",
            200,
            r#"{"ok":true,"msg":"invited bob"}"#.to_owned(),
        ),
        (
            "DELETE",
            "/api/v1/crates/dep-a/owners",
            200,
            r#"{"ok":true,"msg":"removed"}"#.to_owned(),
        ),
        (
            "GET",
            "/api/v1/crates?q=dep&per_page=10",
            200,
            r#"{"crates":[{"name":"dep-a","max_version":"0.1.0","description":"A test dep"}],"meta":{"total":1}}"#
                .to_owned(),
        ),
        (
            "PUT",
            "/api/v1/crates/new",
            400,
            r#"{"errors":[{"detail":"testkit says no"}]}"#.to_owned(),
        ),
    ]
}

async fn start_registry() -> Responder {
    let routes = registry_routes();
    let routes: Vec<_> = routes
        .iter()
        .map(|(m, p, s, b)| (*m, *p, *s, b.as_str()))
        .collect();
    Responder::start(&routes).await
}

fn authorization(responder: &Responder, method: &str, path: &str) -> Vec<String> {
    responder
        .requests_to(method, path)
        .iter()
        .map(|r| r.headers.get("authorization").cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn cargo_version_runs_through_the_driver() {
    let home = CargoHome::new("depot", &dead_index_url(), None);
    let out = home.run_global(&["--version"]).await;
    out.assert_success().assert_stdout_contains("cargo 1.");
    assert!(home.path().join("config.toml").exists());
    assert!(!home.path().join("credentials.toml").exists());
}

#[tokio::test]
async fn packaging_a_project_without_deps_needs_no_server() {
    let home = CargoHome::new("depot", &dead_index_url(), Some("tok"));
    let project = CargoProject::new_lib("pkg-only", "0.3.0").file("README.md", "# hi\n");
    let args = ["package", "--list", "--allow-dirty", "--registry", "depot"];
    let out = home.run(&project, &args).await;
    out.assert_success()
        .assert_stdout_contains("src/lib.rs")
        .assert_stdout_contains("README.md")
        .assert_stdout_contains("Cargo.toml.orig");
    assert!(!out.stdout.contains("target"), "{out}");

    let args = [
        "package",
        "--no-verify",
        "--allow-dirty",
        "--registry",
        "depot",
    ];
    home.run(&project, &args).await.assert_success();
    let crate_file = std::fs::metadata(project.crate_file()).expect("the .crate file exists");
    assert!(crate_file.len() > 0);
}

#[tokio::test]
async fn crates_io_is_never_contacted() {
    let home = CargoHome::new("depot", &dead_index_url(), None);
    let manifest = "[package]\nname = \"wants-serde\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
                    [dependencies]\nserde = \"1\"\n[workspace]\n";
    let project = CargoProject::new_lib("wants-serde", "0.1.0").file("Cargo.toml", manifest);
    let out = home.generate_lockfile(&project).await;
    out.assert_failure_contains("no matching package named `serde` found")
        .assert_stderr_contains("replacing registry `crates-io`");
    assert!(out.elapsed < Duration::from_secs(30), "{out}");
}

#[tokio::test]
async fn sparse_index_and_web_api_are_wired_to_the_registry() {
    let registry = start_registry().await;
    let home = CargoHome::new("depot", &registry.index_url(), Some("secret-1"));

    // Resolution goes to our sparse index, and the lockfile records it.
    let app = CargoProject::new_bin("app", "0.1.0").dep("dep-a", "0.1");
    home.generate_lockfile(&app).await.assert_success();
    let lock = app.lockfile().expect("Cargo.lock written");
    assert!(lock.contains("name = \"dep-a\""), "{lock}");
    assert!(lock.contains(&registry.index_url()), "{lock}");
    assert!(lock.contains(CKSUM), "{lock}");

    // Web API commands carry the token from credentials.toml.
    home.yank("dep-a", "0.1.0").await.assert_success();
    home.unyank("dep-a", "0.1.0").await.assert_success();
    home.owner_list("dep-a")
        .await
        .assert_success()
        .assert_stdout_contains("alice (Alice)");
    home.owner_add("dep-a", &["bob", "carol"])
        .await
        .assert_success()
        .assert_stderr_contains("invited bob");
    home.owner_remove("dep-a", &["bob"]).await.assert_success();
    home.search("dep")
        .await
        .assert_success()
        .assert_stdout_contains("dep-a = \"0.1.0\"");
    assert_eq!(
        authorization(&registry, "DELETE", "/api/v1/crates/dep-a/0.1.0/yank"),
        ["secret-1"]
    );
    let owners_put = registry.requests_to("PUT", "/api/v1/crates/dep-a/owners");
    let body: serde_json::Value = serde_json::from_slice(&owners_put[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"users": ["bob", "carol"]}));

    // Publish reaches the registry and its error detail reaches the test.
    // (0.1.0 is already in the index: cargo itself refuses that one, as the test shows.)
    let mut dep = CargoProject::new_lib("dep-a", "0.1.0");
    home.publish(&dep)
        .await
        .assert_failure_contains("already exists on `depot` index");
    dep.set_version("0.2.0");
    home.publish(&dep)
        .await
        .assert_failure_contains("testkit says no");
    assert_eq!(
        authorization(&registry, "PUT", "/api/v1/crates/new"),
        ["secret-1"]
    );

    // Without a token cargo refuses; `cargo login` stores a new one.
    home.set_token(None);
    home.yank("dep-a", "0.1.0")
        .await
        .assert_failure_contains("no token found");
    home.login("secret-2").await.assert_success();
    home.yank("dep-a", "0.1.0").await.assert_success();
    assert_eq!(
        authorization(&registry, "DELETE", "/api/v1/crates/dep-a/0.1.0/yank"),
        ["secret-1", "secret-2"]
    );

    // Nothing but our registry was asked for anything.
    for request in registry.requests() {
        assert!(
            request.path.starts_with("/index/") || request.path.starts_with("/api/v1/"),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn a_hanging_cargo_is_killed_at_its_time_limit() {
    // Accepts connections (in the kernel backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("sparse+http://{}/index/", silent.local_addr().unwrap());
    let home = CargoHome::new("depot", &url, None).with_timeout(Duration::from_secs(3));
    let project = CargoProject::new_lib("waits", "0.1.0").dep("never", "1");
    let out = home.generate_lockfile(&project).await;
    assert!(out.timed_out, "{out}");
    assert!(!out.success());
    assert!(out.elapsed < Duration::from_secs(20), "{out}");
    assert!(out.to_string().contains("KILLED"), "{out}");
}

#[test]
fn the_blocking_runner_works_without_a_runtime() {
    let home = CargoHome::new("depot", &dead_index_url(), None);
    let project = CargoProject::new_lib("sync-one", "0.1.0");
    home.command(&project)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .run_blocking()
        .assert_success()
        .assert_stdout_contains("\"name\":\"sync-one\"");
}

#[tokio::test]
async fn building_runs_the_real_compiler_in_a_private_target_dir() {
    let home = CargoHome::new("depot", &dead_index_url(), None);
    let app = CargoProject::new_bin("hello-bin", "0.1.0")
        .main_rs("fn main() { println!(\"hello from {}\", env!(\"CARGO_PKG_NAME\")); }");
    home.build(&app).await.assert_success();
    assert!(app.target_dir().join("debug/hello-bin").exists());
    home.run(&app, &["run", "--quiet"])
        .await
        .assert_success()
        .assert_stdout_contains("hello from hello-bin");
}

#[test]
fn a_project_for_another_registry_is_refused_with_advice() {
    let home = CargoHome::new("local", &dead_index_url(), None);
    let project = CargoProject::new_lib("elsewhere", "0.1.0");
    let refused = std::panic::catch_unwind(|| drop(home.command(&project)));
    let message = refused.expect_err("mismatch must panic");
    let message = message
        .downcast_ref::<String>()
        .expect("formatted panic message");
    assert!(message.contains(".registry(\"local\")"), "{message}");
    drop(home.command(&project.registry("local")));
}
