//! Replay benchmark: how fast the projector folds a whole log into a fresh generation.
//!
//! ```text
//! cargo bench -p depot-projector --bench replay -- \
//!     --events 100000 --log sqlite|jetstream --store sqlite|postgres [--batch N]
//! ```
//!
//! It generates a realistic log of at least `--events` events (see [`Generator`]), appends it
//! with `append_batch` to a fresh log (a SQLite file in a temporary directory, or a uniquely
//! named JetStream stream on `DEPOT_TEST_NATS_URL`, deleted afterwards), then times
//! `catch_up_to(head)` into a new generation of a fresh store (a SQLite file in a temporary
//! directory, or a fresh database on `DEPOT_TEST_DATABASE_URL`'s server), `--batch` events per
//! transaction (the projector's catch-up batch by default).
//!
//! Besides the wall time it reports the CPU time (user + system) the replay cost this process
//! (the projector, and the SQLite store or log inside it) and, on PostgreSQL running on this
//! machine, the server processes of the bench's database (read from `/proc`; on another host
//! that figure is absent). On loopback, give `DEPOT_TEST_DATABASE_URL` `?sslmode=disable`:
//! without it the connection negotiates TLS when the server offers it.
//!
//! `--dump PATH` writes every replayed row (`Store::dump`) to `PATH`: replaying with two builds
//! and comparing the dumps checks that a change to the projector keeps the read models
//! byte-identical.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use depot_eventlog::{EventLog, JetStreamConfig, JetStreamLog, NewEvent, SqliteLog};
use depot_events::{
    Envelope, Event, ExtractedMetadata, OwnersChanged, RejectionReason, Timestamp, TokenIssued,
    TokenKind, VersionAccepted, VersionRejected, VersionUploaded, VersionYankToggled,
};
use depot_index::{DependencyKind, FeatureMap, IndexDependency, IndexEntry};
use depot_projector::Projector;
use depot_store::{Store, Target};
use depot_testkit::TestDatabase;

const USAGE: &str = "usage: cargo bench -p depot-projector --bench replay -- \
    [--events N] [--log sqlite|jetstream] [--store sqlite|postgres] [--batch N] [--dump PATH]";

/// Events appended per `append_batch` call while filling the log.
const APPEND_BATCH: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogKind {
    Sqlite,
    JetStream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Postgres,
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogKind::Sqlite => "sqlite",
            LogKind::JetStream => "jetstream",
        })
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        })
    }
}

#[derive(Debug)]
struct Args {
    events: usize,
    log: LogKind,
    store: StoreKind,
    batch: usize,
    dump: Option<std::path::PathBuf>,
}

impl Args {
    /// Parses the arguments after `--` (cargo also passes `--bench`, which is ignored).
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            events: 100_000,
            log: LogKind::Sqlite,
            store: StoreKind::Sqlite,
            batch: depot_projector::CATCH_UP_BATCH,
            dump: None,
        };
        let mut words = std::env::args().skip(1);
        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (word, None),
            };
            if flag == "--bench" {
                continue;
            }
            let Some(value) = inline.or_else(|| words.next()) else {
                bail!("{flag} needs a value\n{USAGE}");
            };
            match (flag.as_str(), value.as_str()) {
                ("--events", n) => {
                    args.events = n
                        .replace('_', "")
                        .parse()
                        .with_context(|| format!("--events {n}\n{USAGE}"))?;
                }
                ("--log", "sqlite") => args.log = LogKind::Sqlite,
                ("--log", "jetstream") => args.log = LogKind::JetStream,
                ("--store", "sqlite") => args.store = StoreKind::Sqlite,
                ("--store", "postgres") => args.store = StoreKind::Postgres,
                ("--batch", n) => {
                    args.batch = n
                        .replace('_', "")
                        .parse()
                        .with_context(|| format!("--batch {n}\n{USAGE}"))?;
                    anyhow::ensure!(
                        (1..=depot_projector::MAX_CATCH_UP_BATCH).contains(&args.batch),
                        "--batch must be 1..={}",
                        depot_projector::MAX_CATCH_UP_BATCH
                    );
                }
                ("--dump", path) => args.dump = Some(path.into()),
                _ => bail!("unexpected argument {flag} {value}\n{USAGE}"),
            }
        }
        Ok(args)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;

    let started = Instant::now();
    let generated = Generator::new(0x5eed).generate(args.events);
    let generating = started.elapsed();
    let bytes: usize = generated.events.iter().map(|e| e.payload.len()).sum();
    println!(
        "generated {} events ({} crates, {} versions, {:.1} MB of payload) in {:.2} s",
        generated.events.len(),
        generated.crates,
        generated.versions,
        bytes as f64 / 1e6,
        generating.as_secs_f64()
    );

    let log = BenchLog::open(args.log).await?;
    let result = run(&args, &log, generated.events).await;
    log.close().await;
    result
}

async fn run(args: &Args, log: &BenchLog, events: Vec<NewEvent>) -> anyhow::Result<()> {
    let total = events.len();
    let started = Instant::now();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let batch: Vec<NewEvent> = events.by_ref().take(APPEND_BATCH).collect();
        let appended = log.log.append_batch(batch).await?;
        anyhow::ensure!(
            appended.iter().all(|a| !a.duplicate),
            "the generator produced a duplicate message id"
        );
    }
    let appending = started.elapsed();
    let head = log.log.head().await?;
    anyhow::ensure!(
        head == total as u64,
        "the log holds {head} events, not {total}"
    );
    println!(
        "appended {total} events to the {} log with append_batch in {:.2} s = {}",
        args.log,
        appending.as_secs_f64(),
        rate(total, appending)
    );

    let (store, keep) = fresh_store(args.store).await?;
    let generation = store.create_generation(None).await?;
    let projector = Projector::new(
        Arc::clone(&log.log),
        store.clone(),
        None,
        Target::Generation(generation),
    )
    .with_catch_up_batch(args.batch);
    let monitor = match &keep {
        Keep::Postgres(db) => Some(db.pool().await),
        Keep::Sqlite(_) => None,
    };
    let server_before = match &monitor {
        Some(pool) => server_cpu(pool).await,
        None => None,
    };
    let mut batches = 0_u64;
    let cpu_before = process_cpu();
    let started = Instant::now();
    let checkpoint = projector
        .catch_up_to(head, |_| batches += 1)
        .await
        .context("replaying")?;
    let replaying = started.elapsed();
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let server = match (&monitor, &server_before) {
        (Some(pool), Some(before)) => server_cpu(pool).await.map(|after| {
            after
                .iter()
                .map(|(pid, seconds)| seconds - before.get(pid).copied().unwrap_or(0.0))
                .sum::<f64>()
        }),
        _ => None,
    };
    anyhow::ensure!(
        checkpoint == head,
        "replayed up to {checkpoint}, not {head}"
    );
    let files = store.index_files(generation).await?;
    println!(
        "replayed in {batches} batches (avg {:.0} events per batch, --batch {})",
        total as f64 / batches.max(1) as f64,
        args.batch
    );
    let per_100k = |seconds: f64| seconds * 100_000.0 / total.max(1) as f64;
    match cpu {
        Some(cpu) => println!(
            "cpu: this process {cpu:.2} s (user+sys; {:.2} s per 100,000 events)",
            per_100k(cpu)
        ),
        None => println!("cpu: this process: unknown (no /proc/self/stat)"),
    }
    if let Some(server) = server {
        println!(
            "cpu: PostgreSQL backends of the bench database {server:.2} s ({:.2} s per 100,000 \
             events)",
            per_100k(server)
        );
    }
    println!(
        "replay: {total} events ({} log -> {}) in {:.2} s = {}; {} index files",
        args.log,
        args.store,
        replaying.as_secs_f64(),
        rate(total, replaying),
        files.len()
    );
    if let Some(path) = &args.dump {
        let rows = store.dump(generation).await?;
        std::fs::write(path, rows.join("\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} rows to {}", rows.len(), path.display());
    }
    Ok(())
}

fn rate(events: usize, took: Duration) -> String {
    format!(
        "{:.0} events/s",
        events as f64 / took.as_secs_f64().max(1e-9)
    )
}

/// The log under test, with what to clean up afterwards.
struct BenchLog {
    log: Arc<dyn EventLog>,
    /// The SQLite log's directory.
    _dir: Option<tempfile::TempDir>,
    /// The JetStream stream to delete.
    stream: Option<(String, String)>,
}

impl BenchLog {
    async fn open(kind: LogKind) -> anyhow::Result<BenchLog> {
        match kind {
            LogKind::Sqlite => {
                let dir = tempfile::tempdir()?;
                let log = SqliteLog::open(&dir.path().join("events.sqlite")).await?;
                Ok(BenchLog {
                    log: Arc::new(log),
                    _dir: Some(dir),
                    stream: None,
                })
            }
            LogKind::JetStream => {
                let url = depot_testkit::nats_url();
                let prefix = depot_testkit::unique_prefix();
                let config = JetStreamConfig {
                    stream: format!("BENCH_{}", prefix.to_ascii_uppercase()),
                    subject_prefix: format!("bench_{prefix}"),
                    ..JetStreamConfig::new(url.clone())
                };
                let log = JetStreamLog::connect(&config).await?;
                Ok(BenchLog {
                    log: Arc::new(log),
                    _dir: None,
                    stream: Some((url, config.stream)),
                })
            }
        }
    }

    /// Deletes the JetStream stream (the SQLite log goes with its directory).
    async fn close(&self) {
        let Some((url, stream)) = &self.stream else {
            return;
        };
        let deleted = match async_nats::connect(url.as_str()).await {
            Ok(client) => async_nats::jetstream::new(client)
                .delete_stream(stream)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = deleted {
            println!("could not delete the benchmark stream {stream}: {e}");
        }
    }
}

/// What keeps a fresh store alive.
enum Keep {
    Sqlite(#[expect(dead_code, reason = "kept for its Drop")] tempfile::TempDir),
    Postgres(TestDatabase),
}

/// A fresh, migrated store, with what keeps it alive.
async fn fresh_store(kind: StoreKind) -> anyhow::Result<(Store, Keep)> {
    Ok(match kind {
        StoreKind::Sqlite => {
            let dir = tempfile::tempdir()?;
            let store = Store::open_sqlite(&dir.path().join("read-models.sqlite")).await?;
            (store, Keep::Sqlite(dir))
        }
        StoreKind::Postgres => {
            let db = TestDatabase::new().await;
            let store = Store::connect(db.url(), 2).await?;
            (store, Keep::Postgres(db))
        }
    })
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of the process `pid` (`self` for this one), from `/proc`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) in parentheses: state is field 3,
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// User + system CPU seconds of this process so far.
fn process_cpu() -> Option<f64> {
    cpu_seconds("self")
}

/// User + system CPU seconds so far of each PostgreSQL process serving the bench's database,
/// by pid (the server must run on this machine: its processes are read from `/proc`).
async fn server_cpu(pool: &sqlx::PgPool) -> Option<std::collections::HashMap<i32, f64>> {
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            .fetch_all(pool)
            .await
            .ok()?;
    let seconds: std::collections::HashMap<i32, f64> = pids
        .into_iter()
        .filter_map(|pid| Some((pid, cpu_seconds(&pid.to_string())?)))
        .collect();
    (!seconds.is_empty()).then_some(seconds)
}

/// SplitMix64: a small deterministic generator, so every run folds the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes.div_ceil(8))
            .map(|_| format!("{:016x}", self.next()))
            .collect::<String>()[..bytes * 2]
            .to_owned()
    }
}

const WORDS: &[&str] = &[
    "serde", "tokio", "async", "http", "json", "log", "trace", "rand", "byte", "hash", "time",
    "sync", "net", "io", "fs", "derive", "macro", "proc", "parse", "lex", "web", "sql", "cli",
    "term", "color", "num", "big", "fast", "tiny", "zero", "core", "util", "test", "mock", "bench",
    "cache", "pool", "queue", "graph", "tree",
];

const USERS: usize = 20;

fn user(index: usize) -> String {
    format!("user{index:02}")
}

/// One crate of the simulated registry.
struct SimCrate {
    name: String,
    subject: String,
    owners: Vec<String>,
    /// The last version number handed out.
    version: (u64, u64, u64),
    /// Accepted versions and whether each is yanked.
    accepted: Vec<(String, bool)>,
    /// A version whose upload was rejected and is uploaded again next.
    retry: Option<String>,
    deps: Vec<IndexDependency>,
    features: FeatureMap,
    description: String,
    keywords: Vec<String>,
    readme: String,
}

/// An extractor verdict waiting to be appended.
struct Verdict {
    krate: usize,
    vers: String,
    cksum: String,
    upload_id: uuid::Uuid,
    reject: bool,
    /// Appended once the log has this many events.
    due: usize,
}

struct Generated {
    events: Vec<NewEvent>,
    crates: usize,
    versions: usize,
}

/// Generates the log of a busy registry.
///
/// A few users with tokens, then a stream of actions: 20% publish a new crate, 65% publish a
/// new version of a crate (half the time one of the 64 newest, else any), 7% yank, 3% unyank,
/// 5% change owners. Each upload (`version_uploaded`, with the publish metadata cargo sends and
/// a ~1 KB readme) gets its verdict 0 to 3 events later, as from the extractor: 98%
/// `version_accepted` (index line with 0-5 dependencies and a few features, extracted metadata
/// with the readme), 2% `version_rejected`, after which the version is uploaded again. That
/// is about 10 events per crate, and consecutive events mostly concern different crates.
struct Generator {
    rng: Rng,
    events: Vec<NewEvent>,
    crates: Vec<SimCrate>,
    verdicts: VecDeque<Verdict>,
    versions: usize,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng(seed),
            events: Vec::new(),
            crates: Vec::new(),
            verdicts: VecDeque::new(),
            versions: 0,
        }
    }

    fn generate(mut self, at_least: usize) -> Generated {
        self.events.reserve(at_least + 16);
        for index in 0..USERS {
            self.issue_token(index);
        }
        while self.events.len() < at_least || !self.verdicts.is_empty() {
            if self
                .verdicts
                .front()
                .is_some_and(|verdict| verdict.due <= self.events.len())
                || self.events.len() >= at_least
            {
                self.verdict();
                continue;
            }
            match self.rng.below(100) {
                0..20 => self.new_crate(),
                20..85 => self.new_version(),
                85..92 => self.yank(true),
                92..95 => self.yank(false),
                _ => self.change_owners(),
            }
        }
        Generated {
            crates: self.crates.len(),
            versions: self.versions,
            events: self.events,
        }
    }

    /// Appends an envelope; the message id is the envelope id, as the api does.
    fn push(&mut self, subject: &str, actor: &str, event: Event) -> uuid::Uuid {
        let seq = self.events.len() as u64 + 1;
        let envelope = Envelope {
            id: uuid::Uuid::from_u128(u128::from(seq)),
            schema: 1,
            at: at(seq),
            actor: actor.to_owned(),
            event,
        };
        self.events.push(NewEvent::new(
            subject,
            envelope.id.to_string(),
            Bytes::from(envelope.encode()),
        ));
        envelope.id
    }

    fn issue_token(&mut self, index: usize) {
        let login = user(index);
        let token = TokenIssued {
            token_id: uuid::Uuid::from_u128(0x7000_0000 + index as u128),
            user: login.clone(),
            secret_sha256: self.rng.hex(32),
            kind: if index % 5 == 4 {
                TokenKind::Ci
            } else {
                TokenKind::Personal
            },
            label: Some(format!("{login}'s laptop")),
            scopes: vec![],
            crates: vec![],
            read_crates: None,
            expires_at: None,
            created_by: None,
            oidc: None,
        };
        self.push(
            &depot_events::subject::principal(
                &depot_index::Login::parse(&login).expect("generated logins are valid"),
            ),
            &login,
            Event::TokenIssued(token),
        );
    }

    fn new_crate(&mut self) {
        let index = self.crates.len();
        let name = format!("{}-{}{index}", self.rng.pick(WORDS), self.rng.pick(WORDS));
        let canon = depot_index::CrateName::parse(&name)
            .expect("generated names are valid")
            .canonical();
        let deps = self.pick_deps(index);
        let features = self.pick_features(&deps);
        let keywords = (0..1 + self.rng.below(4))
            .map(|_| (*self.rng.pick(WORDS)).to_owned())
            .collect();
        let description = format!(
            "A {} {} library for {} and {}.",
            self.rng.pick(WORDS),
            self.rng.pick(WORDS),
            self.rng.pick(WORDS),
            self.rng.pick(WORDS)
        );
        let readme = readme(&name, &description);
        self.crates.push(SimCrate {
            subject: depot_events::subject::krate(&canon),
            name,
            owners: vec![user(self.rng.below(USERS))],
            version: (0, 1, 0),
            accepted: Vec::new(),
            retry: None,
            deps,
            features,
            description,
            keywords,
            readme,
        });
        self.upload(index, "0.1.0".to_owned());
    }

    /// Up to five dependencies on earlier crates (normal, some dev), some optional.
    fn pick_deps(&mut self, before: usize) -> Vec<IndexDependency> {
        if before == 0 {
            return Vec::new();
        }
        let count = self.rng.below(6).min(before);
        let mut deps: Vec<IndexDependency> = Vec::with_capacity(count);
        for _ in 0..count {
            let target = &self.crates[self.rng.below(before)];
            if deps.iter().any(|d| d.name == target.name) {
                continue;
            }
            let dev = self.rng.percent(20);
            deps.push(IndexDependency {
                name: target.name.clone(),
                req: format!("^{}.{}", target.version.0, target.version.1),
                features: vec![],
                optional: !dev && self.rng.percent(25),
                default_features: true,
                target: None,
                kind: if dev {
                    DependencyKind::Dev
                } else {
                    DependencyKind::Normal
                },
                registry: None,
                package: None,
            });
        }
        deps
    }

    /// `default = ["std"]`, `std = []`, and one `dep:` feature per optional dependency.
    fn pick_features(&mut self, deps: &[IndexDependency]) -> FeatureMap {
        let mut features = FeatureMap::new();
        features.insert("default".into(), vec!["std".into()]);
        features.insert("std".into(), vec![]);
        for dep in deps.iter().filter(|d| d.optional) {
            features.insert(dep.name.clone(), vec![format!("dep:{}", dep.name)]);
        }
        features
    }

    /// Picks a crate: half the time one of the 64 newest (in active development), else any.
    fn pick_crate(&mut self) -> Option<usize> {
        let count = self.crates.len();
        if count == 0 {
            return None;
        }
        Some(if self.rng.percent(50) {
            count - 1 - self.rng.below(count.min(64))
        } else {
            self.rng.below(count)
        })
    }

    fn new_version(&mut self) {
        let Some(index) = self.pick_crate() else {
            return self.new_crate();
        };
        let vers = match self.crates[index].retry.take() {
            Some(vers) => vers,
            None => {
                let (major, minor, patch) = self.crates[index].version;
                let next = match self.rng.below(100) {
                    0..70 => (major, minor, patch + 1),
                    70..95 => (major, minor + 1, 0),
                    _ => (major + 1, 0, 0),
                };
                self.crates[index].version = next;
                format!("{}.{}.{}", next.0, next.1, next.2)
            }
        };
        self.upload(index, vers);
    }

    fn upload(&mut self, index: usize, vers: String) {
        let cksum = self.rng.hex(32);
        let reject = self.rng.percent(2);
        let krate = &self.crates[index];
        let uploader = krate.owners[0].clone();
        let metadata = publish_metadata(krate, &vers);
        let upload = VersionUploaded {
            name: krate.name.clone(),
            vers: vers.clone(),
            cksum: cksum.clone(),
            size: 2_000 + (self.rng.next() % 200_000),
            blob: format!("sha256/{cksum}"),
            metadata,
            metadata_blob: None,
            uploader: uploader.clone(),
            token_id: None,
        };
        let subject = krate.subject.clone();
        let upload_id = self.push(&subject, &uploader, Event::VersionUploaded(upload));
        let due = self.events.len() + self.rng.below(4);
        self.verdicts.push_back(Verdict {
            krate: index,
            vers,
            cksum,
            upload_id,
            reject,
            due,
        });
    }

    /// Appends the oldest pending verdict, as the extractor would.
    fn verdict(&mut self) {
        let Some(verdict) = self.verdicts.pop_front() else {
            return;
        };
        let seq = self.events.len() as u64 + 1;
        let krate = &self.crates[verdict.krate];
        let subject = krate.subject.clone();
        let event = if verdict.reject {
            Event::VersionRejected(VersionRejected {
                vers: verdict.vers.clone(),
                cksum: verdict.cksum,
                reasons: vec![RejectionReason {
                    code: "manifest_mismatch".into(),
                    detail: "the manifest in the archive does not match the publish metadata"
                        .into(),
                }],
            })
        } else {
            let entry = IndexEntry::new(
                krate.name.clone(),
                verdict.vers.clone(),
                krate.deps.clone(),
                verdict.cksum.clone(),
                krate.features.clone(),
                None,
                Some("1.70".into()),
                Some(at(seq).to_pubtime()),
            );
            Event::VersionAccepted(VersionAccepted {
                vers: verdict.vers.clone(),
                cksum: verdict.cksum,
                entry,
                metadata: extracted_metadata(krate),
            })
        };
        // The extractor's message id for a verdict.
        let envelope = Envelope {
            id: uuid::Uuid::from_u128(u128::from(seq)),
            schema: 1,
            at: at(seq),
            actor: "depot-extractor".to_owned(),
            event,
        };
        self.events.push(NewEvent::new(
            subject,
            format!("outcome:{}", verdict.upload_id),
            Bytes::from(envelope.encode()),
        ));
        let krate = &mut self.crates[verdict.krate];
        if verdict.reject {
            krate.retry = Some(verdict.vers);
        } else {
            krate.accepted.push((verdict.vers, false));
            self.versions += 1;
        }
    }

    /// Yanks an unyanked version (or unyanks a yanked one) of some crate; publishes a new
    /// version instead if the crate has none.
    fn yank(&mut self, yank: bool) {
        let Some(index) = self.pick_crate() else {
            return self.new_crate();
        };
        let candidates: Vec<usize> = (0..self.crates[index].accepted.len())
            .filter(|&i| self.crates[index].accepted[i].1 != yank)
            .collect();
        if candidates.is_empty() {
            return self.new_version();
        }
        let version = *self.rng.pick(&candidates);
        let krate = &mut self.crates[index];
        krate.accepted[version].1 = yank;
        let toggle = VersionYankToggled {
            vers: krate.accepted[version].0.clone(),
            message: None,
            token_id: None,
        };
        let (subject, actor) = (krate.subject.clone(), krate.owners[0].clone());
        let event = if yank {
            Event::VersionYanked(toggle)
        } else {
            Event::VersionUnyanked(toggle)
        };
        self.push(&subject, &actor, event);
    }

    /// Adds an owner, or removes one of several.
    fn change_owners(&mut self) {
        let Some(index) = self.pick_crate() else {
            return self.new_crate();
        };
        let candidate = user(self.rng.below(USERS));
        let krate = &mut self.crates[index];
        let (subject, actor) = (krate.subject.clone(), krate.owners[0].clone());
        let event = if krate.owners.len() > 1 && !krate.owners.contains(&candidate) {
            let removed = krate.owners.pop().unwrap_or_default();
            Event::OwnersRemoved(OwnersChanged {
                owners: vec![removed],
                token_id: None,
            })
        } else if !krate.owners.contains(&candidate) {
            krate.owners.push(candidate.clone());
            Event::OwnersAdded(OwnersChanged {
                owners: vec![candidate],
                token_id: None,
            })
        } else {
            return self.new_version();
        };
        self.push(&subject, &actor, event);
    }
}

/// Event times: 3 s apart, from November 2025.
fn at(seq: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_764_000_000_000 + seq as i64 * 3_000)
}

/// About 1 KB of markdown.
fn readme(name: &str, description: &str) -> String {
    let mut text = format!("# {name}\n\n{description}\n\n## Usage\n\n```toml\n[dependencies]\n");
    text.push_str(&format!("{name} = \"0.1\"\n```\n\n"));
    while text.len() < 1_000 {
        text.push_str(
            "This crate is part of the benchmark's synthetic registry. It has a stable API, \
             documented features and examples, and follows semantic versioning. ",
        );
    }
    text.push_str("\n\n## License\n\nMIT OR Apache-2.0\n");
    text
}

/// The publish metadata JSON as cargo sends it.
fn publish_metadata(krate: &SimCrate, vers: &str) -> serde_json::Value {
    let deps: Vec<serde_json::Value> = krate
        .deps
        .iter()
        .map(|dep| {
            serde_json::json!({
                "name": dep.name,
                "version_req": dep.req,
                "features": dep.features,
                "optional": dep.optional,
                "default_features": dep.default_features,
                "target": dep.target,
                "kind": dep.kind.as_str(),
                "registry": null,
                "explicit_name_in_toml": null,
            })
        })
        .collect();
    serde_json::json!({
        "name": krate.name,
        "vers": vers,
        "deps": deps,
        "features": krate.features,
        "authors": [format!("{} <{}@example.com>", krate.owners[0], krate.owners[0])],
        "description": krate.description,
        "documentation": null,
        "homepage": null,
        "readme": krate.readme,
        "readme_file": "README.md",
        "keywords": krate.keywords,
        "categories": ["development-tools"],
        "license": "MIT OR Apache-2.0",
        "license_file": null,
        "repository": format!("https://git.example.com/{}", krate.name),
        "badges": {},
        "links": null,
        "rust_version": "1.70",
    })
}

fn extracted_metadata(krate: &SimCrate) -> ExtractedMetadata {
    ExtractedMetadata {
        description: Some(krate.description.clone()),
        license: Some("MIT OR Apache-2.0".into()),
        repository: Some(format!("https://git.example.com/{}", krate.name)),
        keywords: krate.keywords.clone(),
        categories: vec!["development-tools".into()],
        authors: vec![format!(
            "{} <{}@example.com>",
            krate.owners[0], krate.owners[0]
        )],
        edition: Some("2021".into()),
        rust_version: Some("1.70".into()),
        readme_file: Some("README.md".into()),
        readme: Some(krate.readme.clone()),
        ..ExtractedMetadata::default()
    }
}
