//! Faults: PostgreSQL and nats-server restarted under load, the extractor killed while it checks
//! a large crate, the blob disk full. After each, Depot must recover (by itself, or by exiting
//! so that a supervisor restarts it, never by hanging), no acknowledged publish may be lost, and
//! no version may be half-visible: every index line's blob is downloadable with the line's
//! cksum, and every upload ends with a verdict. Errors during a fault are 4xx/5xx in cargo's
//! format. Every fault is bounded in time and count, and a fault that cannot be set up fails
//! the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use depot_events::Event;
use depot_testkit::{PgStopMode, PrivateNats, PrivatePostgres};
use sha2::{Digest as _, Sha256};

use crate::support::{Setup, TestDepot, crate_bytes, details, manifest, metadata, publish_body};

/// Publishing tasks of a load.
const PUBLISHERS: usize = 3;
/// Versions each publishing task publishes.
const VERSIONS_PER_PUBLISHER: usize = 14;
/// Pause between two publishes of one task.
const PUBLISH_PAUSE: Duration = Duration::from_millis(150);
/// Bound on one publish request (Depot's own wait is set below it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a publish waits to be visible (`DEPOT_PUBLISH_WAIT_SECS`).
const PUBLISH_WAIT_SECS: &str = "10";
/// How long Depot may take to recover after a fault, or to decide every upload.
const RECOVERY: Duration = Duration::from_secs(100);

/// What one publish request got: the status (`None`: no HTTP answer) and the body.
#[derive(Debug, Clone)]
struct Attempt {
    name: String,
    vers: String,
    status: Option<u16>,
    body: String,
}

impl Attempt {
    fn acknowledged(&self) -> bool {
        self.status == Some(200)
    }
}

/// Sends one publish and records the answer, whatever it is.
async fn attempt(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
    vers: &str,
) -> Attempt {
    let body = publish_body(
        &metadata(name, vers),
        &crate_bytes(name, vers, &format!("{name} {vers}")),
    );
    send_publish(http, url, token, name, vers, body).await
}

/// Sends one publish body and records the answer, whatever it is.
async fn send_publish(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
    vers: &str,
    body: Vec<u8>,
) -> Attempt {
    let sent = http
        .put(format!("{url}/api/v1/crates/new"))
        .header("Authorization", token)
        .timeout(REQUEST_TIMEOUT)
        .body(body)
        .send()
        .await;
    let (status, body) = match sent {
        Ok(res) => {
            let status = res.status().as_u16();
            (Some(status), res.text().await.unwrap_or_default())
        }
        Err(e) => (None, format!("transport error: {e}")),
    };
    Attempt {
        name: name.to_owned(),
        vers: vers.to_owned(),
        status,
        body,
    }
}

/// Starts [`PUBLISHERS`] tasks that publish [`VERSIONS_PER_PUBLISHER`] versions each of their
/// own crate `<prefix>-<task>`.
fn start_load(url: &str, token: &str, prefix: &str) -> Vec<tokio::task::JoinHandle<Vec<Attempt>>> {
    (0..PUBLISHERS)
        .map(|task| {
            let (url, token) = (url.to_owned(), token.to_owned());
            let name = format!("{prefix}-{task}");
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut attempts = Vec::new();
                for i in 0..VERSIONS_PER_PUBLISHER {
                    let vers = format!("1.0.{i}");
                    attempts.push(attempt(&http, &url, &token, &name, &vers).await);
                    tokio::time::sleep(PUBLISH_PAUSE).await;
                }
                attempts
            })
        })
        .collect()
}

/// Waits for every load task.
async fn finish_load(tasks: Vec<tokio::task::JoinHandle<Vec<Attempt>>>) -> Vec<Attempt> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a publishing task"));
    }
    all
}

/// Checks that every failed publish failed in cargo's format with a 4xx/5xx status, and returns
/// a summary `status → count` (`none` for no HTTP answer).
fn check_errors(attempts: &[Attempt]) -> BTreeMap<String, usize> {
    let mut statuses = BTreeMap::new();
    for a in attempts {
        let key = a
            .status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        *statuses.entry(key).or_insert(0) += 1;
        let Some(status) = a.status else { continue };
        if status == 200 {
            continue;
        }
        assert!(
            (400..600).contains(&status),
            "{}@{}: unexpected status {status}: {}",
            a.name,
            a.vers,
            a.body
        );
        let json: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_else(|_| {
            panic!(
                "{}@{}: {status} is not in cargo's format: {}",
                a.name, a.vers, a.body
            )
        });
        assert!(
            !details(&json).is_empty(),
            "{}@{}: {status} without a detail: {json}",
            a.name,
            a.vers
        );
    }
    statuses
}

/// Shows what a fault test saw (visible with `--no-capture`, and with a failing test).
#[expect(clippy::print_stderr, reason = "the figures of a fault run")]
fn report(test: &str, what: std::fmt::Arguments<'_>) {
    eprintln!("fault report {test}: {what}");
}

/// The error and warning lines Depot logged (without the timestamps).
fn logged_errors(depot: &TestDepot) -> Vec<String> {
    depot
        .output()
        .lines()
        .filter(|line| line.contains(" ERROR ") || line.contains(" WARN "))
        .filter_map(|line| line.split_once(' ').map(|(_, rest)| rest.to_owned()))
        .collect()
}

/// How Depot came back after a fault.
#[derive(Debug, PartialEq, Eq)]
enum Recovery {
    /// A publish succeeded again without restarting Depot.
    ByItself,
    /// Depot exited (for a supervisor to restart it); the test restarted it.
    Exited(String),
}

/// Waits until a fresh publish succeeds; if Depot exits meanwhile, starts it again (as a
/// supervisor would) and waits for that. Fails if Depot neither recovers nor exits in time.
async fn await_recovery(depot: &mut TestDepot, token: &str, probe: &str) -> Recovery {
    let deadline = Instant::now() + RECOVERY;
    let http = reqwest::Client::new();
    let mut recovery = Recovery::ByItself;
    let mut last = None;
    for i in 0.. {
        if recovery == Recovery::ByItself
            && let Some(status) = depot.exited()
        {
            recovery = Recovery::Exited(status.to_string());
            depot.restart().await;
        }
        let a = attempt(&http, &depot.url, token, probe, &format!("0.0.{i}")).await;
        if a.acknowledged() {
            return recovery;
        }
        assert!(
            Instant::now() < deadline,
            "Depot neither recovered nor exited within {RECOVERY:?} (recovery so far: \
             {recovery:?}); last publish: {a:?}; earlier: {last:?}; its output:\n{}",
            depot.output()
        );
        last = Some(a);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    unreachable!("the loop only ends by returning or failing")
}

/// The index lines of every crate: (crate, vers) → cksum.
async fn index_lines(depot: &TestDepot) -> BTreeMap<(String, String), String> {
    let mut lines = BTreeMap::new();
    for (_, body, _) in depot.index_snapshot().await {
        for line in String::from_utf8(body).expect("UTF-8 index").lines() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON index line");
            lines.insert(
                (
                    entry["name"].as_str().expect("name").to_owned(),
                    entry["vers"].as_str().expect("vers").to_owned(),
                ),
                entry["cksum"].as_str().expect("cksum").to_owned(),
            );
        }
    }
    lines
}

/// Uploads in the log without a verdict: `name@vers (cksum)`.
async fn undecided_uploads(depot: &TestDepot) -> BTreeSet<String> {
    let mut pending = BTreeMap::new();
    for (_, envelope) in depot.events().await {
        match &envelope.event {
            Event::VersionUploaded(u) => {
                pending.insert(
                    u.cksum.clone(),
                    format!("{}@{} ({})", u.name, u.vers, u.cksum),
                );
            }
            Event::VersionAccepted(v) => {
                pending.remove(&v.cksum);
            }
            Event::VersionRejected(v) => {
                pending.remove(&v.cksum);
            }
            _ => {}
        }
    }
    pending.into_values().collect()
}

/// The invariants after a fault: every upload decided (within [`RECOVERY`]), every acknowledged
/// publish in the index, every index line's blob downloadable with its cksum. Returns the number
/// of index lines checked.
async fn check_invariants(depot: &TestDepot, attempts: &[Attempt]) -> usize {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let undecided = undecided_uploads(depot).await;
        if undecided.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads still without a verdict after {RECOVERY:?}: {undecided:?}\n{}",
            depot.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The projector may still be folding the last verdicts.
    let head = depot.log_head().await;
    let lines = loop {
        let lines = index_lines(depot).await;
        let missing: Vec<_> = attempts
            .iter()
            .filter(|a| a.acknowledged())
            .filter(|a| !lines.contains_key(&(a.name.clone(), a.vers.clone())))
            .map(|a| format!("{}@{}: {}", a.name, a.vers, a.body))
            .collect();
        if missing.is_empty() {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged publishes missing from the index: {missing:?}\nlog:\n{}",
            depot.events_after(head.saturating_sub(20)).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for ((name, vers), cksum) in &lines {
        let (status, bytes) = depot.download(name, vers).await;
        assert_eq!(
            status, 200,
            "{name}@{vers} is in the index but not downloadable"
        );
        assert_eq!(
            &hex::encode(Sha256::digest(&bytes)),
            cksum,
            "{name}@{vers}: the download does not match the index cksum"
        );
    }
    lines.len()
}

// --- 1. PostgreSQL restarted mid-load ------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_mid_load() {
    let pg = PrivatePostgres::start();
    let nats = depot_testkit::nats_url();
    let mut depot = TestDepot::start_on_servers(
        &nats,
        &pg.url(),
        "serve",
        &[("DEPOT_PUBLISH_WAIT_SECS", PUBLISH_WAIT_SECS)],
    )
    .await;
    let token = depot.token("alice").await;
    let mut attempts = Vec::new();
    let mut recoveries = Vec::new();
    for (round, mode) in [PgStopMode::Fast, PgStopMode::Immediate]
        .into_iter()
        .enumerate()
    {
        let load = start_load(&depot.url, &token, &format!("pg{round}"));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        pg.stop(mode);
        tokio::time::sleep(Duration::from_secs(2)).await;
        pg.start_again();
        attempts.extend(finish_load(load).await);
        recoveries.push(await_recovery(&mut depot, &token, &format!("pg-probe{round}")).await);
    }
    let statuses = check_errors(&attempts);
    let lines = check_invariants(&depot, &attempts).await;
    report(
        "postgres_restarted_mid_load",
        format_args!(
            "statuses {statuses:?}, recoveries {recoveries:?}, {lines} index lines checked; \
             logged: {:?}",
            logged_errors(&depot)
        ),
    );
    assert!(
        attempts.iter().any(Attempt::acknowledged),
        "no publish succeeded at all: {statuses:?}"
    );
    assert_eq!(
        recoveries,
        [Recovery::ByItself, Recovery::ByItself],
        "statuses {statuses:?}"
    );
    assert!(
        !statuses.contains_key("none"),
        "the api dropped connections: {statuses:?}"
    );
    assert!(
        !statuses.contains_key("500"),
        "a restarting database is a 503, not a 500: {statuses:?}; logged: {:?}",
        logged_errors(&depot)
    );
    assert!(lines > 0, "{}", pg.server_log());
}

// --- 2. nats-server restarted mid-load -----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn nats_restarted_mid_load() {
    let db = depot_testkit::TestDatabase::new().await;
    let mut nats = PrivateNats::start();
    let mut depot = TestDepot::start_on_servers(
        &nats.url(),
        db.url(),
        "serve",
        &[("DEPOT_PUBLISH_WAIT_SECS", PUBLISH_WAIT_SECS)],
    )
    .await;
    let token = depot.token("alice").await;
    let mut attempts = Vec::new();
    let mut recoveries = Vec::new();
    for (round, sigkill) in [false, true].into_iter().enumerate() {
        let load = start_load(&depot.url, &token, &format!("nats{round}"));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        if sigkill {
            nats.kill();
        } else {
            nats.terminate();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        nats.start_again();
        attempts.extend(finish_load(load).await);
        recoveries.push(await_recovery(&mut depot, &token, &format!("nats-probe{round}")).await);
    }
    let statuses = check_errors(&attempts);
    let lines = check_invariants(&depot, &attempts).await;
    report(
        "nats_restarted_mid_load",
        format_args!(
            "statuses {statuses:?}, recoveries {recoveries:?}, {lines} index lines checked; \
             logged: {:?}",
            logged_errors(&depot)
        ),
    );
    assert!(
        attempts.iter().any(Attempt::acknowledged),
        "no publish succeeded at all: {statuses:?}"
    );
    assert_eq!(
        recoveries,
        [Recovery::ByItself, Recovery::ByItself],
        "statuses {statuses:?}; nats log:\n{}",
        nats.server_log()
    );
    assert!(
        !statuses.contains_key("none"),
        "the api dropped connections: {statuses:?}"
    );
    assert!(lines > 0);
}

// --- 3. the extractor killed mid-check -----------------------------------------------------

/// `len` pseudo-random (incompressible) bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A `.crate` of about `size` bytes (an incompressible file in `src/`).
fn large_crate(name: &str, vers: &str, size: usize) -> Vec<u8> {
    let root = format!("{name}-{vers}");
    depot_cratefile::TarballBuilder::new()
        .add_file(
            &format!("{root}/Cargo.toml"),
            manifest(name, vers, "").as_bytes(),
        )
        .add_file(&format!("{root}/src/lib.rs"), b"// large\n")
        .add_file(&format!("{root}/src/data.bin"), &noise(size, size as u64))
        .build()
}

/// Waits until the log holds the upload of `name@vers`; returns whether a verdict was there
/// too at that moment.
async fn await_upload(depot: &TestDepot, name: &str, vers: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = depot.events().await;
        let uploaded = events.iter().find_map(|(_, e)| match &e.event {
            Event::VersionUploaded(u) if u.name == name && u.vers == vers => Some(u.cksum.clone()),
            _ => None,
        });
        if let Some(cksum) = uploaded {
            return events.iter().any(|(_, e)| match &e.event {
                Event::VersionAccepted(v) => v.cksum == cksum,
                Event::VersionRejected(v) => v.cksum == cksum,
                _ => false,
            });
        }
        assert!(
            Instant::now() < deadline,
            "the upload of {name}@{vers} never reached the log"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Roles apart on NATS + PostgreSQL: the extractor is killed while it checks a large crate and
/// started again; the upload must end decided and consistent.
#[tokio::test(flavor = "multi_thread")]
async fn extractor_killed_mid_check_roles_apart() {
    let db = depot_testkit::TestDatabase::new().await;
    let nats = depot_testkit::nats_url();
    let depot =
        TestDepot::start_on_servers(&nats, db.url(), "api", &[("DEPOT_EXTRACTOR_WORKERS", "1")])
            .await;
    let _projector = depot.spawn_role_process("projector");
    let mut extractor = depot.spawn_role_process("extractor");
    let token = depot.token("alice").await;

    let krate = large_crate("big", "1.0.0", 8 << 20);
    let body = publish_body(&metadata("big", "1.0.0"), &krate);
    let (url, publish_token) = (depot.url.clone(), token.clone());
    let publish = tokio::spawn(async move {
        let res = reqwest::Client::new()
            .put(format!("{url}/api/v1/crates/new"))
            .header("Authorization", publish_token)
            .timeout(Duration::from_secs(60))
            .body(body)
            .send()
            .await
            .expect("the api answers");
        (res.status().as_u16(), res.text().await.unwrap_or_default())
    });
    let decided_before_kill = await_upload(&depot, "big", "1.0.0").await;
    extractor.kill();
    let killed_at = Instant::now();
    extractor.start_again();
    let (status, body) = publish.await.expect("the publishing task");
    assert!(
        status == 200 || status == 400,
        "publish of the large crate: {status} {body}"
    );
    let attempts = [Attempt {
        name: "big".into(),
        vers: "1.0.0".into(),
        status: Some(status),
        body,
    }];
    check_errors(&attempts);
    check_invariants(&depot, &attempts).await;
    report(
        "extractor_killed_mid_check_roles_apart",
        format_args!(
            "decided before the kill: {decided_before_kill}; publish answered {status} {}; \
             decided {:?} after the kill",
            attempts[0].body,
            killed_at.elapsed()
        ),
    );
    let verdict = await_decided(&depot, "big", "1.0.0").await;
    assert_eq!(
        verdict,
        Ok(()),
        "the large crate is valid and must end accepted (decided before the kill: \
         {decided_before_kill}); extractor:\n{}",
        extractor.output()
    );
    assert!(
        extractor.exited().is_none(),
        "the extractor must keep running"
    );
}

/// Waits for the verdict on `name@vers` and, if it is an acceptance, for the version in the
/// served index; returns the verdict (`Err` with the rejection reasons).
async fn await_decided(depot: &TestDepot, name: &str, vers: &str) -> Result<(), String> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let mut verdict = None;
        for (_, e) in depot.events().await {
            match &e.event {
                Event::VersionAccepted(v) if v.entry.name == name && v.vers == vers => {
                    verdict = Some(Ok(()));
                }
                Event::VersionRejected(v) if v.vers == vers => {
                    verdict = Some(Err(format!("{:?}", v.reasons)));
                }
                _ => {}
            }
        }
        if let Some(Err(reasons)) = verdict {
            return Err(reasons);
        }
        if verdict.is_some() {
            let (status, index) = depot.index_file(name).await;
            if status == 200 && index.contains(&format!("\"vers\":\"{vers}\"")) {
                return Ok(());
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name}@{vers} not decided and visible after {RECOVERY:?} (verdict {verdict:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `depot serve` killed with SIGKILL while it checks a large crate, then started again.
async fn serve_killed_mid_check(setup: Setup) {
    let mut depot = TestDepot::start_on(setup, &[]).await;
    let token = depot.token("alice").await;
    let krate = large_crate("bigserve", "1.0.0", 8 << 20);
    let body = publish_body(&metadata("bigserve", "1.0.0"), &krate);
    let (url, publish_token) = (depot.url.clone(), token.clone());
    let publish = tokio::spawn(async move {
        reqwest::Client::new()
            .put(format!("{url}/api/v1/crates/new"))
            .header("Authorization", publish_token)
            .timeout(Duration::from_secs(60))
            .body(body)
            .send()
            .await
            .map(|res| res.status().as_u16())
    });
    let decided_before_kill = await_upload(&depot, "bigserve", "1.0.0").await;
    depot.kill();
    let killed_at = Instant::now();
    // The request dies with the process: it was never acknowledged.
    let answered = publish.await.expect("the publishing task");
    depot.restart().await;
    let attempts = match answered {
        Ok(status) => vec![Attempt {
            name: "bigserve".into(),
            vers: "1.0.0".into(),
            status: Some(status),
            body: String::new(),
        }],
        Err(_) => Vec::new(),
    };
    check_invariants(&depot, &attempts).await;
    report(
        &format!("serve_killed_mid_check({setup:?})"),
        format_args!(
            "decided before the kill: {decided_before_kill}; publish answered {answered:?}; \
             decided {:?} after the kill",
            killed_at.elapsed()
        ),
    );
    let verdict = await_decided(&depot, "bigserve", "1.0.0").await;
    assert_eq!(
        verdict,
        Ok(()),
        "the large crate is valid and must end accepted (decided before the kill: \
         {decided_before_kill})"
    );
}

// --- 4. the blob disk full -----------------------------------------------------------------

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("a mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (the disk-full test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The files in a directory (empty if it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// The blob directory on an 8 MiB tmpfs: a publish that does not fit fails with 507 in cargo's
/// format, leaves no temporary file and appends nothing; once space is freed, it succeeds
/// without a restart.
async fn blob_disk_full(setup: Setup) {
    let disk = Tmpfs::mount("8m");
    let blobs = disk.path().join("blobs");
    let blob_dir = blobs.display().to_string();
    let mut depot = TestDepot::start_on(setup, &[("DEPOT_BLOB_DIR", &blob_dir)]).await;
    let token = depot.token("alice").await;

    let small = publish_body(
        &metadata("fits", "1.0.0"),
        &crate_bytes("fits", "1.0.0", "small"),
    );
    let (status, json) = depot.publish_raw(&token, small).await;
    assert_eq!(status, 200, "{json}");

    // Leave less room than the next crate needs.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).expect("write the filler");
    let krate = large_crate("toobig", "1.0.0", 3 << 20);
    assert!(
        krate.len() > 2 << 20,
        "the crate must not fit: {}",
        krate.len()
    );
    let body = publish_body(&metadata("toobig", "1.0.0"), &krate);
    let head = depot.log_head().await;
    let mut refused = Vec::new();
    for _ in 0..3 {
        // A client of its own: the server stops reading the body and closes the connection.
        let http = reqwest::Client::new();
        let a = send_publish(&http, &depot.url, &token, "toobig", "1.0.0", body.clone()).await;
        assert_eq!(a.status, Some(507), "a publish that does not fit: {a:?}");
        let json: serde_json::Value = serde_json::from_str(&a.body).expect("cargo's format");
        assert!(details(&json).contains("full"), "{json}");
        refused.push(a);
    }
    check_errors(&refused);
    assert_eq!(
        depot.log_head().await,
        head,
        "a failed publish appends nothing"
    );
    assert_eq!(
        files_in(&blobs.join("tmp")),
        Vec::<PathBuf>::new(),
        "no temp file left"
    );
    let (status, _) = depot.index_file("toobig").await;
    assert_eq!(status, 404);

    std::fs::remove_file(&filler).expect("free the space");
    let (status, json) = depot.publish_raw(&token, body).await;
    assert_eq!(status, 200, "after space is freed: {json}");
    assert!(depot.exited().is_none(), "no restart was needed");
    let attempts = [Attempt {
        name: "toobig".into(),
        vers: "1.0.0".into(),
        status: Some(200),
        body: json.to_string(),
    }];
    let lines = check_invariants(&depot, &attempts).await;
    report(
        &format!("blob_disk_full({setup:?})"),
        format_args!(
            "507 answered: {:?}; {lines} index lines checked",
            refused[0].body
        ),
    );
    drop(depot);
    drop(disk);
}

on_both_setups!(serve_killed_mid_check, blob_disk_full);

/// Roles apart with two projectors on one database: one is active, the other stands by. The
/// active one is killed; the standby takes over within a few seconds and publishes become
/// visible again; the killed one, started again, stands by.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_projector_takes_over_when_the_active_one_dies() {
    let db = depot_testkit::TestDatabase::new().await;
    let nats = depot_testkit::nats_url();
    let depot = TestDepot::start_on_servers(&nats, db.url(), "api", &[]).await;
    let mut first = depot.spawn_role_process("projector");
    let active = Instant::now() + Duration::from_secs(30);
    while !first.output().contains("this projector is active") {
        assert!(Instant::now() < active, "{}", first.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = depot.spawn_role_process("projector");
    let _extractor = depot.spawn_role_process("extractor");
    let standby = Instant::now() + Duration::from_secs(30);
    while !second.output().contains("standing by") {
        assert!(Instant::now() < standby, "{}", second.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = depot.token("alice").await;
    let http = reqwest::Client::new();
    let before = attempt(&http, &depot.url, &token, "lease", "1.0.0").await;
    assert!(before.acknowledged(), "{before:?}");

    first.kill();
    let killed_at = Instant::now();
    while !second.output().contains("this projector is active") {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the standby never took over:\n{}",
            second.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = killed_at.elapsed();
    let after = attempt(&http, &depot.url, &token, "lease", "1.1.0").await;
    assert!(after.acknowledged(), "{after:?}");
    assert!(
        !after.body.contains("still being checked"),
        "visible in time after the takeover: {after:?}"
    );
    let visible = killed_at.elapsed();
    println!(
        "standby projector active {took_over:?} after the kill; a publish visible {visible:?} after it"
    );
    first.start_again();
    let again = Instant::now() + Duration::from_secs(30);
    while !first.output().contains("standing by") {
        assert!(Instant::now() < again, "{}", first.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check_invariants(&depot, &[before, after]).await;
}
