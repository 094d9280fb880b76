//! History benchmark: what a publish, a yank and an owners lookup cost on a crate with a short
//! and with a long history.
//!
//! ```text
//! cargo bench -p depot-projector --bench histories -- \
//!     --store sqlite|postgres [--versions 10,10000] [--rounds 30] [--analyze]
//! ```
//!
//! For each history length it seeds a fresh SQLite event log with one crate of that many
//! accepted versions (upload + verdict per version, folded by the projector into a fresh store:
//! a SQLite file in a temporary directory, or a fresh database on
//! `DEPOT_TEST_DATABASE_URL`'s server), then times, `--rounds` times each:
//!
//! - **publish**: the command's decision (load the aggregate as the api does: the projected
//!   state plus the log tail, then `check_publish`), the append of `version_uploaded`, its
//!   projection, the append of `version_accepted` and its projection (the extractor's work is
//!   not included: it does not depend on the history);
//! - **yank**: decision, append and projection of a yank (alternating with an unyank) of a
//!   version in the middle of the history;
//! - **owners**: the aggregate load of `GET /api/v1/crates/{name}/owners`.
//!
//! It prints the backend and the median and 90th percentile of each. `--analyze` runs
//! PostgreSQL's `ANALYZE` after seeding, as autovacuum soon would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use depot_eventlog::{EventLog, Expected, NewEvent, SqliteLog};
use depot_events::{
    CrateState, Envelope, Event, ExtractedMetadata, PublishCheck, Timestamp, VersionAccepted,
    VersionUploaded, VersionYankToggled,
};
use depot_index::{FeatureMap, IndexDependency, IndexEntry};
use depot_projector::Projector;
use depot_store::{Store, Target};
use depot_testkit::TestDatabase;

const USAGE: &str = "usage: cargo bench -p depot-projector --bench histories -- \
    [--store sqlite|postgres] [--versions N,M,…] [--rounds R] [--analyze]";

/// The crate under test.
const NAME: &str = "history";

/// Events appended per `append_batch` call while seeding.
const APPEND_BATCH: usize = 5_000;

#[derive(Debug)]
struct Args {
    postgres: bool,
    versions: Vec<usize>,
    rounds: usize,
    /// Run `ANALYZE` on PostgreSQL after seeding.
    analyze: bool,
}

impl Args {
    /// Parses the arguments after `--` (cargo also passes `--bench`, which is ignored).
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            postgres: false,
            versions: vec![10, 10_000],
            rounds: 30,
            analyze: false,
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
            if flag == "--analyze" {
                args.analyze = true;
                continue;
            }
            let Some(value) = inline.or_else(|| words.next()) else {
                bail!("{flag} needs a value\n{USAGE}");
            };
            match (flag.as_str(), value.as_str()) {
                ("--store", "sqlite") => args.postgres = false,
                ("--store", "postgres") => args.postgres = true,
                ("--versions", list) => {
                    args.versions = list
                        .split(',')
                        .map(|n| n.replace('_', "").parse())
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("--versions {list}\n{USAGE}"))?;
                }
                ("--rounds", n) => {
                    args.rounds = n
                        .parse()
                        .with_context(|| format!("--rounds {n}\n{USAGE}"))?;
                }
                _ => bail!("unexpected argument {flag} {value}\n{USAGE}"),
            }
        }
        anyhow::ensure!(args.rounds > 0, "--rounds must be positive\n{USAGE}");
        Ok(args)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    for &versions in &args.versions {
        run(&args, versions).await?;
    }
    Ok(())
}

/// One history length: seed, then time each operation.
async fn run(args: &Args, versions: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteLog::open(&dir.path().join("events.sqlite")).await?);
    let (store, _keep) = fresh_store(args.postgres, dir.path()).await?;
    let projector = Projector::new(Arc::clone(&log), store.clone(), None, Target::Active);
    let mut bench = Bench {
        log,
        store,
        projector,
        next: 0,
    };
    let started = Instant::now();
    bench.seed(versions).await?;
    if args.analyze
        && let Some(db) = &_keep
    {
        // What autovacuum does soon after a bulk load: fresh tables have no statistics, and
        // PostgreSQL may then walk the wrong index of `versions`.
        let pool = sqlx::PgPool::connect(db.url()).await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        pool.close().await;
        println!("backend postgres: ANALYZE after seeding");
    }
    println!(
        "backend {}: seeded `{NAME}` with {versions} accepted versions in {:.1} s",
        bench.store.backend(),
        started.elapsed().as_secs_f64()
    );

    let mut publish = Vec::new();
    let mut yank = Vec::new();
    let mut owners = Vec::new();
    let middle = version(versions / 2);
    for round in 0..args.rounds {
        let started = Instant::now();
        bench.publish().await?;
        publish.push(started.elapsed());

        let started = Instant::now();
        bench.yank(&middle, round % 2 == 0).await?;
        yank.push(started.elapsed());

        let started = Instant::now();
        let (state, _) = bench.load(None).await?;
        anyhow::ensure!(!state.owners().is_empty(), "the crate has no owners");
        owners.push(started.elapsed());
    }
    let backend = bench.store.backend();
    for (what, times) in [("publish", publish), ("yank", yank), ("owners", owners)] {
        println!(
            "backend {backend}, {versions} versions: {what:<7} median {}, p90 {} ({} rounds)",
            ms(percentile(&times, 50)),
            ms(percentile(&times, 90)),
            times.len()
        );
    }
    Ok(())
}

/// The log, the store and the projector of one history.
struct Bench {
    log: Arc<dyn EventLog>,
    store: Store,
    projector: Projector,
    /// The number of versions published so far.
    next: usize,
}

impl Bench {
    /// Appends `versions` uploads with their verdicts and folds them.
    async fn seed(&mut self, versions: usize) -> anyhow::Result<()> {
        let mut events = Vec::with_capacity(2 * versions);
        for _ in 0..versions {
            let vers = version(self.next);
            self.next += 1;
            for event in [upload(&vers), accept(&vers)] {
                let envelope = Envelope::new("owner", event);
                events.push(NewEvent::new(
                    depot_events::subject::krate(&canon()),
                    envelope.id.to_string(),
                    Bytes::from(envelope.encode()),
                ));
            }
            if events.len() >= APPEND_BATCH {
                self.log.append_batch(std::mem::take(&mut events)).await?;
            }
        }
        if !events.is_empty() {
            self.log.append_batch(events).await?;
        }
        self.projector.catch_up().await?;
        Ok(())
    }

    /// Loads the aggregate as the api's commands do: for `vers`, or for the crate alone.
    async fn load(&self, vers: Option<&str>) -> anyhow::Result<(CrateState, u64)> {
        let versions: Vec<&str> = vers.into_iter().collect();
        let (mut state, mut seq) = self
            .store
            .crate_aggregate(NAME, &versions)
            .await?
            .unwrap_or_default();
        for stored in self
            .log
            .read_subject(&depot_events::subject::krate(&canon()), seq)
            .await?
        {
            state.apply(&Envelope::decode(&stored.payload)?);
            seq = stored.seq;
        }
        Ok((state, seq))
    }

    /// Appends `event` expecting the crate's last sequence `seq`, and folds it.
    async fn append(&self, seq: Option<u64>, event: Event) -> anyhow::Result<()> {
        let envelope = Envelope::new("owner", event);
        let expected = seq.map_or(Expected::Any, Expected::Seq);
        self.log
            .append(
                &depot_events::subject::krate(&canon()),
                expected,
                &envelope.id.to_string(),
                Bytes::from(envelope.encode()),
            )
            .await?;
        self.projector.catch_up().await?;
        Ok(())
    }

    /// A publish of the next version: decision, upload, verdict.
    async fn publish(&mut self) -> anyhow::Result<()> {
        let vers = version(self.next);
        self.next += 1;
        let (state, seq) = self.load(Some(&vers)).await?;
        let cksum = cksum(&vers);
        anyhow::ensure!(
            state.is_owner("owner")
                && state.check_publish(NAME, &vers, &cksum)
                    == Ok(PublishCheck::Append { new_crate: false }),
            "the publish of {vers} was not allowed"
        );
        self.append(Some(seq), upload(&vers)).await?;
        self.append(None, accept(&vers)).await
    }

    /// A yank (or unyank) of `vers`: decision, append, projection.
    async fn yank(&self, vers: &str, yanked: bool) -> anyhow::Result<()> {
        let (state, seq) = self.load(Some(vers)).await?;
        let current = state
            .accepted_version(vers)
            .with_context(|| format!("{vers} is not accepted"))?;
        anyhow::ensure!(current.yanked != yanked, "{vers} is already in that state");
        let toggle = VersionYankToggled {
            vers: vers.to_owned(),
            message: None,
            token_id: None,
        };
        let event = if yanked {
            Event::VersionYanked(toggle)
        } else {
            Event::VersionUnyanked(toggle)
        };
        self.append(Some(seq), event).await
    }
}

/// The `index`-th version number.
fn version(index: usize) -> String {
    format!("1.{}.{}", index / 1000, index % 1000)
}

/// The canonical name of the benchmarked crate.
fn canon() -> depot_index::CanonicalName {
    depot_index::CrateName::parse(NAME)
        .expect("a valid crate name")
        .canonical()
}

fn cksum(vers: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(vers.as_bytes()))
}

fn upload(vers: &str) -> Event {
    Event::VersionUploaded(VersionUploaded {
        name: NAME.into(),
        vers: vers.into(),
        cksum: cksum(vers),
        size: 10_000,
        blob: format!("sha256/{}", cksum(vers)),
        metadata: serde_json::json!({ "name": NAME, "vers": vers, "deps": [] }),
        metadata_blob: None,
        uploader: "owner".into(),
        token_id: None,
    })
}

fn accept(vers: &str) -> Event {
    let dep = |name: &str| IndexDependency {
        name: name.into(),
        req: "^1.0".into(),
        features: Vec::new(),
        optional: false,
        default_features: true,
        target: None,
        kind: depot_index::DependencyKind::Normal,
        registry: None,
        package: None,
    };
    let mut features = FeatureMap::new();
    features.insert("default".into(), vec!["std".into()]);
    features.insert("std".into(), Vec::new());
    let entry = IndexEntry::new(
        NAME.into(),
        vers.into(),
        vec![dep("serde"), dep("tokio")],
        cksum(vers),
        features,
        None,
        Some("1.70".into()),
        Some(Timestamp::now().to_pubtime()),
    );
    Event::VersionAccepted(VersionAccepted {
        vers: vers.into(),
        cksum: cksum(vers),
        entry,
        metadata: ExtractedMetadata {
            description: Some("A crate with a long history".into()),
            keywords: vec!["history".into()],
            ..ExtractedMetadata::default()
        },
    })
}

/// A fresh, migrated store, with what keeps it alive.
async fn fresh_store(
    postgres: bool,
    dir: &std::path::Path,
) -> anyhow::Result<(Store, Option<TestDatabase>)> {
    if postgres {
        let db = TestDatabase::new().await;
        let store = Store::connect(db.url(), 4).await?;
        Ok((store, Some(db)))
    } else {
        Ok((
            Store::open_sqlite(&dir.join("read-models.sqlite")).await?,
            None,
        ))
    }
}

/// The `p`-th percentile (nearest rank) of `times`.
fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}
