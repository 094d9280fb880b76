//! The crates.io cache (`/crates-io/`), against a static sparse registry served from files on
//! loopback: byte-for-byte fidelity, revalidation, refusal of corrupted crates, serving from
//! the cache while upstream is down, and the real cargo through source replacement.

use depot_testkit::{CargoHome, CargoProject, StaticRegistry};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{
    Setup, TestDepot, crate_bytes, crate_with_manifest, details, manifest, metadata, publish_body,
};

/// A small deterministic generator (xorshift), so every run checks the same odd files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An index line in the shapes upstream registries really write, and some they may write
/// one day: fields in any order, `features2` with `v: 2`, `rust_version`, `pubtime`, yanked
/// lines, unknown fields, non-ASCII text, and whitespace cargo never writes itself.
fn odd_line(rng: &mut Rng, name: &str, vers: &str, cksum: &str) -> String {
    let mut fields: Vec<(&str, Value)> = vec![
        ("name", json!(name)),
        ("vers", json!(vers)),
        (
            "deps",
            json!([{"name": "dep", "req": "^1.0", "features": [], "optional": rng.chance(50),
                    "default_features": true, "target": null, "kind": "normal"}]),
        ),
        ("cksum", json!(cksum)),
        ("features", json!({"default": ["std"], "std": []})),
        ("yanked", json!(rng.chance(20))),
    ];
    if rng.chance(50) {
        fields.push(("v", json!(2)));
        fields.push(("features2", json!({"serde": ["dep:serde", "serde?/std"]})));
    }
    if rng.chance(50) {
        fields.push(("rust_version", json!("1.70")));
    }
    if rng.chance(60) {
        fields.push(("pubtime", json!("2024-03-01T12:34:56Z")));
    }
    if rng.chance(30) {
        fields.push((
            "x-future-field",
            json!({"nested": [1, "é", null, {"deep": true}], "emoji": "📦"}),
        ));
    }
    if rng.chance(30) {
        fields.push(("links", json!("z")));
    }
    // Any field order.
    for i in (1..fields.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        fields.swap(i, j);
    }
    let separator = if rng.chance(20) { ", " } else { "," };
    let colon = if rng.chance(20) { ": " } else { ":" };
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}{colon}{}", json!(k), v))
        .collect::<Vec<_>>()
        .join(separator);
    format!("{{{body}}}")
}

/// A name for file `i`: every index path shape (1, 2, 3 and 4+ characters).
fn odd_name(i: usize) -> String {
    let letter = |k: usize| char::from(b'a' + (k % 26) as u8);
    match i {
        0..20 => letter(i).to_string(),
        20..40 => format!("{}{}", letter(i), letter(i / 3)),
        40..60 => format!("{}{}{}", letter(i), letter(i / 2), letter(i / 5)),
        _ => format!("odd-crate_{i}"),
    }
}

/// What the static registry holds: per name, its index body and its `.crate` files.
struct Upstream {
    registry: StaticRegistry,
    files: Vec<(String, Vec<u8>)>,
    crates: Vec<(String, String, Vec<u8>)>,
}

/// Fills a static registry with `count` odd index files; every tenth file's first version has
/// a `.crate` (random bytes: the cache checks checksums, not contents).
async fn odd_upstream(count: usize) -> Upstream {
    let registry = StaticRegistry::start().await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut files = Vec::new();
    let mut crates = Vec::new();
    for i in 0..count {
        let name = odd_name(i);
        let mut body = String::new();
        let versions = 1 + rng.below(6);
        for v in 0..versions {
            let vers = format!("{}.{}.{}", rng.below(3), v, rng.below(10));
            let cksum = if i % 10 == 0 && v == 0 {
                let len = 1 + rng.below(40_000) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let cksum = sha256_hex(&bytes);
                registry.put_crate(&name, &vers, &bytes);
                crates.push((name.clone(), vers.clone(), bytes));
                cksum
            } else {
                sha256_hex(&rng.next().to_le_bytes())
            };
            body.push_str(&odd_line(&mut rng, &name, &vers, &cksum));
            // Most files end in a newline, as cargo writes them; some do not.
            if v + 1 < versions || !rng.chance(10) {
                body.push('\n');
            }
        }
        registry.put_index_file(&depot_index::index_path(&name), body.as_bytes());
        files.push((name, body.into_bytes()));
    }
    Upstream {
        registry,
        files,
        crates,
    }
}

async fn proxy_for(setup: Setup, upstream: &StaticRegistry, extra: &[(&str, &str)]) -> TestDepot {
    let index = upstream.index_url();
    let mut env = vec![("DEPOT_UPSTREAM_INDEX", index.as_str())];
    env.extend_from_slice(extra);
    TestDepot::start_on(setup, &env).await
}

/// The value of one series on the metrics listener, 0 if absent.
async fn metric(depot: &TestDepot, series: &str) -> f64 {
    let text = depot
        .http
        .get(depot.metrics_url())
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn fidelity(setup: Setup) {
    let upstream = odd_upstream(300).await;
    let depot = proxy_for(setup, &upstream.registry, &[]).await;

    let (status, config) = depot.get("/crates-io/index/config.json").await;
    assert_eq!(status, 200);
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["dl"], json!(format!("{}/crates-io/dl", depot.url)));

    for (name, body) in &upstream.files {
        let path = format!("/crates-io/index/{}", depot_index::index_path(name));
        let (status, served) = depot.get(&path).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&served));
        assert!(served == *body, "{path}: the proxy changed the bytes");
    }
    for (name, vers, bytes) in &upstream.crates {
        let (status, served) = depot
            .get(&format!("/crates-io/dl/{name}/{vers}/download"))
            .await;
        assert_eq!(
            status,
            200,
            "{name} {vers}: {}",
            String::from_utf8_lossy(&served)
        );
        assert_eq!(sha256_hex(&served), sha256_hex(bytes), "{name} {vers}");
        assert!(served == *bytes);
    }
    let asked = upstream.registry.requests();
    assert_eq!(asked.index, upstream.files.len());
    assert_eq!(asked.downloads, upstream.crates.len());

    // Within max-age everything is served from the cache, the same bytes again; cargo's own
    // revalidation gets a 304.
    for (name, body) in upstream.files.iter().step_by(7) {
        let path = format!("/crates-io/index/{}", depot_index::index_path(name));
        let res = depot
            .http
            .get(format!("{}{path}", depot.url))
            .send()
            .await
            .unwrap();
        let etag = res.headers()["etag"].clone();
        assert!(res.bytes().await.unwrap() == *body);
        let res = depot
            .http
            .get(format!("{}{path}", depot.url))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 304, "{path}");
    }
    for (name, vers, bytes) in &upstream.crates {
        let (_, served) = depot
            .get(&format!("/crates-io/dl/{name}/{vers}/download"))
            .await;
        assert!(served == *bytes);
    }
    assert_eq!(upstream.registry.requests(), asked, "served from the cache");

    // What entered the cache is in the log, once each.
    let events = depot.events().await;
    let kinds = |kind: &str| events.iter().filter(|(_, e)| e.kind() == kind).count();
    assert_eq!(kinds("upstream_index_stored"), upstream.files.len());
    assert_eq!(kinds("upstream_crate_stored"), upstream.crates.len());

    // Replay rebuilds the cache's read models; verify checks them and their blobs.
    let (ok, out, err) = depot.depot(&["verify"]);
    assert!(ok, "verify failed:\n{out}\n{err}");
    assert!(
        out.contains(&format!(
            "upstream cache: identical ({} index files, {} crates)",
            upstream.files.len(),
            upstream.crates.len()
        )),
        "{out}"
    );
    assert!(out.contains("orphan blobs: none"), "{out}");
    let (ok, out, err) = depot.depot(&["audit", "--crate", &upstream.crates[0].0]);
    assert!(ok, "{err}");
    assert!(out.contains("upstream crate"), "{out}");
}

async fn unknown_and_hostile_requests(setup: Setup) {
    let upstream = odd_upstream(3).await;
    let depot = proxy_for(setup, &upstream.registry, &[]).await;
    let a = &upstream.crates[0];
    for path in [
        "/crates-io/index/".to_owned(),
        "/crates-io/index/1/A".to_owned(),
        "/crates-io/index/2/a".to_owned(),
        "/crates-io/index/1/a/".to_owned(),
        "/crates-io/index/../1/a".to_owned(),
        "/crates-io/index/1/%61".to_owned(),
        "/crates-io/index/1/a%00".to_owned(),
        format!("/crates-io/index/{}", "x".repeat(5000)),
        "/crates-io/index/no/-n/no-name-here".to_owned(),
        "/crates-io/dl/a/1.0/download".to_owned(),
        "/crates-io/dl/a/not-a-version/download".to_owned(),
        "/crates-io/dl/..%2Fa/1.0.0/download".to_owned(),
        format!("/crates-io/dl/{}/9.9.9/download", a.0),
        "/crates-io/dl/unheard-of/1.0.0/download".to_owned(),
    ] {
        let res = depot
            .http
            .get(format!("{}{path}", depot.url))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!details(&body).is_empty(), "{path}: {body}");
    }
    // A name upstream does not have is remembered for a while: asked once.
    let before = upstream.registry.requests().index;
    for _ in 0..3 {
        assert_eq!(depot.get("/crates-io/index/ne/ve/never-heard").await.0, 404);
    }
    assert_eq!(upstream.registry.requests().index, before + 1);
}

async fn revalidation_and_refusals(setup: Setup) {
    let registry = StaticRegistry::start().await;
    let good = b"the bytes of a good crate".to_vec();
    let line = |vers: &str, cksum: &str, yanked: bool| {
        format!(
            r#"{{"name":"fresh","vers":"{vers}","deps":[],"cksum":"{cksum}","features":{{}},"yanked":{yanked},"pubtime":"2020-01-01T00:00:00Z"}}"#
        )
    };
    let path = "fr/es/fresh";
    let v1 = format!("{}\n", line("1.0.0", &sha256_hex(&good), false));
    registry.put_index_file(path, v1.as_bytes());
    registry.put_crate("fresh", "1.0.0", &good);
    let depot = proxy_for(
        setup,
        &registry,
        &[
            ("DEPOT_UPSTREAM_MAX_AGE_SECS", "1"),
            ("DEPOT_UPSTREAM_NEGATIVE_TTL_SECS", "1"),
        ],
    )
    .await;
    let index = format!("/crates-io/index/{path}");
    assert_eq!(depot.get(&index).await.1, v1.as_bytes());

    // A new version upstream appears once the copy is older than max-age.
    let evil = b"not the bytes the index line promises".to_vec();
    let v2 = format!(
        "{v1}{}\n",
        line(
            "1.1.0",
            &sha256_hex(b"what upstream said it would send"),
            false
        )
    );
    registry.put_index_file(path, v2.as_bytes());
    registry.put_crate("fresh", "1.1.0", &evil);
    assert_eq!(depot.get(&index).await.1, v1.as_bytes(), "fresh copy kept");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(depot.get(&index).await.1, v2.as_bytes(), "new version seen");

    // Unchanged upstream: a conditional request, answered 304.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before = registry.requests().not_modified;
    assert_eq!(depot.get(&index).await.1, v2.as_bytes());
    assert_eq!(registry.requests().not_modified, before + 1);

    // A yank upstream is reflected.
    let yanked = format!(
        "{}\n{}\n",
        line("1.0.0", &sha256_hex(&good), true),
        line(
            "1.1.0",
            &sha256_hex(b"what upstream said it would send"),
            false
        )
    );
    registry.put_index_file(path, yanked.as_bytes());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(depot.get(&index).await.1, yanked.as_bytes(), "yank seen");

    // A .crate whose sha256 is not its line's cksum is refused and nothing is stored.
    let res = depot
        .http
        .get(format!("{}/crates-io/dl/fresh/1.1.0/download", depot.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 502);
    let body: Value = res.json().await.unwrap();
    assert!(details(&body).contains("refused"), "{body}");
    let blobs = depot.blobs().await;
    assert!(
        blobs
            .size_of(&depot_store::BlobStore::key_for(&sha256_hex(&evil)))
            .await
            .unwrap()
            .is_none(),
        "the refused bytes were stored"
    );
    assert_eq!(
        metric(
            &depot,
            r#"depot_upstream_errors_total{kind="crate",reason="checksum"}"#
        )
        .await,
        1.0
    );
    let (status, bytes) = depot.get("/crates-io/dl/fresh/1.0.0/download").await;
    assert_eq!((status, bytes), (200, good.clone()));

    // Upstream down: the stored copy is served stale, the stored crate too; what was never
    // fetched is a 502 in cargo's error format.
    registry.set_down(true);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(depot.get(&index).await, (200, yanked.clone().into_bytes()));
    assert_eq!(
        depot.get("/crates-io/dl/fresh/1.0.0/download").await,
        (200, good)
    );
    let res = depot
        .http
        .get(format!("{}/crates-io/index/ne/ve/never-fetched", depot.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 502);
    let body: Value = res.json().await.unwrap();
    assert!(details(&body).contains("no copy is cached"), "{body}");
    assert!(
        metric(
            &depot,
            r#"depot_upstream_requests_total{kind="index",result="stale"}"#
        )
        .await
            >= 1.0
    );
    assert!(
        depot.output().contains("serving the stored index file"),
        "the stale answer is logged"
    );
}

/// Adds `name` `vers` to a static registry as a real crate (depending on `deps`, all from the
/// same registry), and returns its checksum.
fn add_real_crate(registry: &StaticRegistry, name: &str, vers: &str, deps: &[&str]) -> String {
    let dependencies: String = deps.iter().map(|d| format!("{d} = \"1\"\n")).collect();
    let uses: String = deps.iter().map(|d| format!("pub use {d};\n")).collect();
    let krate = crate_with_manifest(
        name,
        vers,
        &manifest(name, vers, &format!("\n[dependencies]\n{dependencies}")),
        &format!("\n{uses}pub fn {name}() {{}}"),
    );
    let cksum = sha256_hex(&krate);
    registry.put_crate(name, vers, &krate);
    let deps: Vec<Value> = deps
        .iter()
        .map(|d| {
            json!({"name": d, "req": "^1", "features": [], "optional": false,
                   "default_features": true, "target": null, "kind": "normal"})
        })
        .collect();
    let line = json!({"name": name, "vers": vers, "deps": deps, "cksum": cksum,
                      "features": {}, "yanked": false, "rust_version": "1.60",
                      "pubtime": "2021-06-01T00:00:00Z"});
    let path = depot_index::index_path(name);
    let mut body = registry.index_file(&path).unwrap_or_default();
    body.extend_from_slice(format!("{line}\n").as_bytes());
    registry.put_index_file(&path, &body);
    cksum
}

async fn cargo_builds_through_the_cache_and_from_it_once_upstream_is_gone(setup: Setup) {
    let registry = StaticRegistry::start().await;
    add_real_crate(&registry, "leafy", "1.0.0", &[]);
    let leaf = add_real_crate(&registry, "leafy", "1.2.0", &[]);
    let middle = add_real_crate(&registry, "middle", "1.0.0", &["leafy"]);
    let depot = proxy_for(setup, &registry, &[]).await;
    let index = format!("sparse+{}/crates-io/index/", depot.url);

    let consumer = || {
        CargoProject::new_bin("consumer", "0.1.0")
            .registry("mirror")
            .append_manifest("[dependencies]\nmiddle = \"1\"\n")
            .main_rs("fn main() { middle::middle(); }\n")
    };
    let home = CargoHome::new("mirror", &index, None).mirroring_crates_io();
    let project = consumer();
    home.generate_lockfile(&project).await.assert_success();
    let lock = project.lockfile().expect("a lock file");
    for (name, cksum) in [("leafy", &leaf), ("middle", &middle)] {
        assert!(lock.contains(&format!("name = \"{name}\"")), "{lock}");
        assert!(
            lock.contains(cksum.as_str()),
            "{name}'s checksum is upstream's: {lock}"
        );
    }
    assert!(lock.contains("version = \"1.2.0\""), "newest leafy: {lock}");
    home.run(&project, &["fetch"]).await.assert_success();
    home.build(&project)
        .await
        .assert_success()
        .assert_stderr_contains("Compiling middle v1.0.0");

    // Upstream gone: a fresh cargo home (nothing cached by cargo) builds from Depot's cache.
    registry.stop();
    let home = CargoHome::new("mirror", &index, None).mirroring_crates_io();
    let project = consumer();
    home.build(&project)
        .await
        .assert_success()
        .assert_stderr_contains("Compiling middle v1.0.0");
    assert!(project.lockfile().unwrap().contains(middle.as_str()));
}

async fn publish(depot: &TestDepot, token: &str, name: &str, vers: &str) -> (u16, String) {
    let (status, json) = depot
        .publish_raw(
            token,
            publish_body(&metadata(name, vers), &crate_bytes(name, vers, "")),
        )
        .await;
    (status, details(&json))
}

async fn dependency_confusion_guard(setup: Setup) {
    let registry = StaticRegistry::start().await;
    // Upstream has `shared_name` (underscore spelling): `shared-name` is the same crate there.
    registry.put_index_file(
        "sh/ar/shared_name",
        format!(
            "{{\"name\":\"shared_name\",\"vers\":\"0.1.0\",\"deps\":[],\"cksum\":\"{}\",\
             \"features\":{{}},\"yanked\":false}}\n",
            "ab".repeat(32)
        )
        .as_bytes(),
    );
    let depot = proxy_for(setup, &registry, &[]).await;
    let token = depot.token("alice").await;

    let (status, detail) = publish(&depot, &token, "shared-name", "1.0.0").await;
    assert_eq!(status, 409, "{detail}");
    assert!(detail.contains("dependency confusion"), "{detail}");
    assert!(
        detail.contains("depot mirror allow-name shared-name"),
        "{detail}"
    );
    assert_eq!(
        depot.index_file("shared-name").await.0,
        404,
        "nothing published"
    );
    let (status, detail) = publish(&depot, &token, "private-only", "1.0.0").await;
    assert_eq!(status, 200, "{detail}");

    // An admin allows the name: the first publish passes.
    let (ok, out, err) = depot.depot(&["mirror", "allow-name", "shared-name"]);
    assert!(ok, "{out}{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, detail) = publish(&depot, &token, "shared-name", "1.0.0").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 409, "{detail}");
        assert!(
            std::time::Instant::now() < deadline,
            "the permission never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The guard is about new crates only: withdrawn, the crate's next version still passes.
    let (ok, out, err) = depot.depot(&["mirror", "allow-name", "shared-name", "--withdraw"]);
    assert!(ok, "{out}{err}");
    let (status, detail) = publish(&depot, &token, "shared-name", "1.0.1").await;
    assert_eq!(status, 200, "{detail}");

    // Upstream down and nothing cached about a name: refused until it can be checked.
    registry.set_down(true);
    let (status, detail) = publish(&depot, &token, "never-seen", "1.0.0").await;
    assert_eq!(status, 503, "{detail}");
    assert!(detail.contains("cannot tell"), "{detail}");
    let (ok, out, _) = depot.depot(&["audit", "--crate", "shared-name"]);
    assert!(
        ok && out.contains("name allowed") && out.contains("name disallowed"),
        "{out}"
    );
}

async fn air_gap_sync_export_import(setup: Setup) {
    let registry = StaticRegistry::start().await;
    add_real_crate(&registry, "leafy", "1.0.0", &[]);
    add_real_crate(&registry, "leafy", "1.2.0", &[]);
    let middle = add_real_crate(&registry, "middle", "1.0.0", &["leafy"]);
    let connected = proxy_for(setup, &registry, &[]).await;

    // The project's lock file (made where crates.io could be reached, through `connected`).
    let consumer = || {
        CargoProject::new_bin("consumer", "0.1.0")
            .registry("mirror")
            .append_manifest("[dependencies]\nmiddle = \"1\"\n")
            .main_rs("fn main() { middle::middle(); }\n")
    };
    let index = format!("sparse+{}/crates-io/index/", connected.url);
    let home = CargoHome::new("mirror", &index, None).mirroring_crates_io();
    let project = consumer();
    home.generate_lockfile(&project).await.assert_success();
    let lock = project.lockfile().unwrap();

    // Sync what the lock file needs (found by searching the project's directory), plus a crate
    // named on the command line.
    let dir = project.path().display().to_string();
    let (ok, out, err) = connected.depot(&[
        "mirror",
        "sync",
        "--url",
        &connected.url,
        "--lock",
        &dir,
        "leafy@1.0.0",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("synced 3 of 3 crates"), "{out}");
    registry.stop();

    let export = tempfile::tempdir().unwrap();
    let exported = export.path().join("cache");
    let exported_text = exported.display().to_string();
    let (ok, out, err) = connected.depot(&["mirror", "export", &exported_text]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("exported 2 index files and 3 crates"), "{out}");

    // Across the gap: a Depot that has no upstream at all.
    let isolated = TestDepot::start_on(setup, &[]).await;
    // Hostile manifests are refused before anything is read through them.
    let hostile = tempfile::tempdir().unwrap();
    for manifest in [
        "not json".to_owned(),
        r#"{"format":1,"upstream":"x","index":[{"name":"../../etc","sha256":"00","size":1}],"crates":[]}"#.to_owned(),
        r#"{"format":1,"upstream":"x","index":[],"crates":[{"name":"a","vers":"1.0.0/../../x","cksum":"00","size":1}]}"#.to_owned(),
        r#"{"format":9,"upstream":"x","index":[],"crates":[]}"#.to_owned(),
    ] {
        std::fs::write(hostile.path().join("manifest.json"), &manifest).unwrap();
        let dir = hostile.path().display().to_string();
        let (ok, out, err) = isolated.depot(&["mirror", "import", &dir]);
        assert!(!ok, "{manifest}: {out}");
        assert!(err.contains("error:"), "{manifest}: {err}");
    }
    // A tampered export is refused whole.
    let crate_file = exported.join("crates/middle/1.0.0.crate");
    let original = std::fs::read(&crate_file).unwrap();
    let mut tampered = original.clone();
    tampered[10] ^= 1;
    std::fs::write(&crate_file, &tampered).unwrap();
    let (ok, out, err) = isolated.depot(&["mirror", "import", &exported_text]);
    assert!(!ok, "{out}");
    assert!(err.contains("nothing was imported"), "{err}");
    let upstream_events = |events: &[(u64, depot_events::Envelope)]| {
        events
            .iter()
            .filter(|(_, e)| e.kind().starts_with("upstream_"))
            .count()
    };
    assert_eq!(upstream_events(&isolated.events().await), 0);
    std::fs::write(&crate_file, &original).unwrap();
    let (ok, out, err) = isolated.depot(&["mirror", "import", &exported_text]);
    assert!(ok, "{out}{err}");
    assert_eq!(upstream_events(&isolated.events().await), 5);

    // The import is projected shortly; then cargo builds from the isolated Depot alone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while isolated.get("/crates-io/index/mi/dd/middle").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the import never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let index = format!("sparse+{}/crates-io/index/", isolated.url);
    let home = CargoHome::new("mirror", &index, None).mirroring_crates_io();
    let project = consumer().file("Cargo.lock", &lock);
    home.build(&project)
        .await
        .assert_success()
        .assert_stderr_contains("Compiling middle v1.0.0");
    assert!(project.lockfile().unwrap().contains(middle.as_str()));
    let (ok, out, err) = isolated.depot(&["verify"]);
    assert!(ok, "{out}{err}");
}

async fn hostile_upstreams(setup: Setup) {
    // Upstream sends an index file over the limit and a .crate over the limit.
    let registry = StaticRegistry::start().await;
    let big = vec![b'x'; 3000];
    registry.put_index_file("bi/g-/big-index", &big);
    let krate = vec![7u8; 5000];
    registry.put_index_file(
        "bi/g-/big-crate",
        format!(
            "{{\"name\":\"big-crate\",\"vers\":\"1.0.0\",\"cksum\":\"{}\"}}\n",
            sha256_hex(&krate)
        )
        .as_bytes(),
    );
    registry.put_crate("big-crate", "1.0.0", &krate);
    let depot = proxy_for(
        setup,
        &registry,
        &[
            ("DEPOT_UPSTREAM_MAX_INDEX_SIZE", "2KiB"),
            ("DEPOT_MAX_CRATE_SIZE", "4KiB"),
        ],
    )
    .await;
    let (status, body) = depot.get("/crates-io/index/bi/g-/big-index").await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let (status, body) = depot.get("/crates-io/dl/big-crate/1.0.0/download").await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("size limit"));
    let blobs = depot.blobs().await;
    assert!(
        blobs
            .size_of(&depot_store::BlobStore::key_for(&sha256_hex(&krate)))
            .await
            .unwrap()
            .is_none()
    );

    // Upstream's config.json points downloads somewhere that is not http(s).
    let registry = StaticRegistry::start().await;
    registry.put_index_file("config.json", br#"{"dl":"file:///etc/{crate}"}"#);
    registry.put_index_file(
        "3/a/abc",
        format!(
            "{{\"name\":\"abc\",\"vers\":\"1.0.0\",\"cksum\":\"{}\"}}\n",
            sha256_hex(b"abc")
        )
        .as_bytes(),
    );
    let depot = proxy_for(setup, &registry, &[]).await;
    let (status, body) = depot.get("/crates-io/dl/abc/1.0.0/download").await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("config.json"));

    // Any path under the cache's routes: an answer in cargo's format, never a server error.
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let alphabet = b"abcAB-_./%0123456789~+@ \x00\xff";
    for _ in 0..300 {
        let len = rng.below(40) as usize;
        let junk: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_./~+@".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        for prefix in ["/crates-io/index/", "/crates-io/dl/"] {
            let res = depot
                .http
                .get(format!("{}{prefix}{junk}", depot.url))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            assert!(status < 500, "{prefix}{junk}: {status} {text}");
            if status >= 400 {
                let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                assert!(!details(&json).is_empty(), "{prefix}{junk}: {text}");
            }
        }
    }
}

/// With `auth-required`, cargo sends the replacement registry's token to the cache.
async fn cargo_through_the_cache_with_auth_required(setup: Setup) {
    let registry = StaticRegistry::start().await;
    add_real_crate(&registry, "leafy", "1.0.0", &[]);
    add_real_crate(&registry, "middle", "1.0.0", &["leafy"]);
    let depot = proxy_for(setup, &registry, &[("DEPOT_AUTH_REQUIRED", "true")]).await;
    let token = depot.token("alice").await;
    let index = format!("sparse+{}/crates-io/index/", depot.url);
    let project = CargoProject::new_bin("consumer", "0.1.0")
        .registry("mirror")
        .append_manifest("[dependencies]\nmiddle = \"1\"\n")
        .main_rs("fn main() { middle::middle(); }\n");
    let anonymous = CargoHome::new("mirror", &index, None).mirroring_crates_io();
    anonymous.build(&project).await.assert_failure();
    let home = CargoHome::new("mirror", &index, Some(&token)).mirroring_crates_io();
    home.build(&project)
        .await
        .assert_success()
        .assert_stderr_contains("Compiling middle v1.0.0");
}

on_both_setups!(
    cargo_through_the_cache_with_auth_required,
    hostile_upstreams,
    air_gap_sync_export_import,
    dependency_confusion_guard,
    fidelity,
    unknown_and_hostile_requests,
    revalidation_and_refusals,
    cargo_builds_through_the_cache_and_from_it_once_upstream_is_gone,
);
