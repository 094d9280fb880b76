//! A replay folds the log into the same read models as the live projector, whatever the size
//! of its batches: a generated history (uploads, verdicts given late or twice, rejections and
//! uploads again, yanks with and without reasons and unyanks of shown and hidden versions,
//! owners, tokens, accounts and trusts) is applied event by event, as the live projector may,
//! then replayed into new generations with batches of 1 to 1,000 events, on PostgreSQL and on
//! SQLite.

use std::sync::Arc;

use bytes::Bytes;
use depot_eventlog::{EventLog, NewEvent, SqliteLog};
use depot_events::{
    Envelope, Event, ExtractedMetadata, OwnersChanged, RejectionReason, Timestamp, TokenIssued,
    TokenKind, TrustAdded, TrustRemoved, TrustedOnlySet, VersionAccepted, VersionRejected,
    VersionUploaded, VersionYankToggled,
};
use depot_index::{FeatureMap, IndexEntry};
use depot_projector::Projector;
use depot_store::{Store, Target};
use depot_testkit::TestDatabase;
use futures::StreamExt as _;

/// Batch sizes replayed with.
const BATCHES: [usize; 9] = [1, 2, 3, 7, 16, 50, 128, 333, 1000];

/// SplitMix64, so every run folds the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A crate of the simulation.
struct Sim {
    name: &'static str,
    next_minor: u64,
    /// Uploads waiting for their verdict: (vers, cksum).
    pending: Vec<(String, String)>,
    /// Accepted versions and whether they are yanked.
    accepted: Vec<(String, bool)>,
    /// A rejected version, to upload again.
    retry: Option<String>,
    trusts: Vec<u128>,
}

struct History {
    rng: Rng,
    events: Vec<NewEvent>,
    crates: Vec<Sim>,
    next_id: u128,
}

impl History {
    fn push(&mut self, subject: &str, event: Event) {
        let seq = self.events.len() as u64 + 1;
        let envelope = Envelope {
            id: uuid::Uuid::from_u128(u128::from(seq)),
            schema: 1,
            at: Timestamp::from_unix_millis(1_764_000_000_000 + seq as i64 * 1_000),
            actor: "alice".into(),
            event,
        };
        self.events.push(NewEvent::new(
            subject,
            envelope.id.to_string(),
            Bytes::from(envelope.encode()),
        ));
    }

    fn cksum(&mut self) -> String {
        format!("{:016x}{:016x}", self.rng.next(), self.rng.next())
    }

    fn subject(&self, index: usize) -> String {
        format!(
            "crate.{}",
            depot_index::canonical_name(self.crates[index].name)
        )
    }

    fn upload(&mut self, index: usize) {
        let vers = match self.crates[index].retry.take() {
            Some(vers) => vers,
            None => {
                let krate = &mut self.crates[index];
                krate.next_minor += 1;
                // Some versions carry build metadata.
                if krate.next_minor.is_multiple_of(5) {
                    format!("0.{}.0+build{}", krate.next_minor, krate.next_minor)
                } else {
                    format!("0.{}.0", krate.next_minor)
                }
            }
        };
        let cksum = self.cksum();
        let name = self.crates[index].name;
        let subject = self.subject(index);
        let size = 100 + self.rng.below(1000) as u64;
        self.push(
            &subject,
            Event::VersionUploaded(VersionUploaded {
                name: name.into(),
                vers: vers.clone(),
                cksum: cksum.clone(),
                size,
                blob: format!("sha256/{cksum}"),
                metadata: serde_json::json!({"name": name, "vers": vers, "readme": "# hi"}),
                metadata_blob: None,
                uploader: "alice".into(),
                token_id: None,
            }),
        );
        self.crates[index].pending.push((vers, cksum));
    }

    fn verdict(&mut self, index: usize) {
        if self.crates[index].pending.is_empty() {
            return self.upload(index);
        }
        let pick = self.rng.below(self.crates[index].pending.len());
        let (vers, cksum) = self.crates[index].pending.remove(pick);
        let subject = self.subject(index);
        let name = self.crates[index].name;
        let accepted = self.rng.below(10) != 0;
        let event = if accepted {
            let mut features = FeatureMap::new();
            features.insert("std".into(), vec![]);
            Event::VersionAccepted(VersionAccepted {
                vers: vers.clone(),
                cksum: cksum.clone(),
                entry: IndexEntry::new(
                    name.into(),
                    vers.clone(),
                    vec![],
                    cksum.clone(),
                    features,
                    None,
                    Some("1.70".into()),
                    Some(Timestamp::from_unix_millis(1_764_000_000_000).to_pubtime()),
                ),
                metadata: ExtractedMetadata {
                    description: Some(format!("{name} {vers}")),
                    keywords: vec![format!("k{}", self.rng.below(4))],
                    readme: Some("# readme".into()),
                    ..ExtractedMetadata::default()
                },
            })
        } else {
            Event::VersionRejected(VersionRejected {
                vers: vers.clone(),
                cksum,
                reasons: vec![RejectionReason {
                    code: "invalid_path".into(),
                    detail: "no".into(),
                }],
            })
        };
        self.push(&subject, event.clone());
        // A redelivered extraction appends its verdict twice, now and then.
        if self.rng.below(8) == 0 {
            self.push(&subject, event);
        }
        if accepted {
            self.crates[index].accepted.push((vers, false));
        } else {
            self.crates[index].retry = Some(vers);
        }
    }

    fn toggle(&mut self, index: usize, yank: bool) {
        let subject = self.subject(index);
        let candidates: Vec<usize> = (0..self.crates[index].accepted.len())
            .filter(|&i| self.crates[index].accepted[i].1 != yank)
            .collect();
        let vers = if candidates.is_empty() || self.rng.below(10) == 0 {
            // A toggle the aggregate ignores (no such accepted version, or no change).
            format!("9.{}.0", self.rng.below(3))
        } else {
            // Mostly the newest (the version shown in search).
            let i = if self.rng.below(2) == 0 {
                *candidates.last().unwrap_or(&0)
            } else {
                candidates[self.rng.below(candidates.len())]
            };
            self.crates[index].accepted[i].1 = yank;
            self.crates[index].accepted[i].0.clone()
        };
        // Half the yanks say why (unyanks with a message too: the fold ignores it).
        let message = (self.rng.below(2) == 0).then(|| format!("reason {}", self.rng.below(4)));
        let toggle = VersionYankToggled {
            vers,
            message,
            token_id: None,
        };
        let event = if yank {
            Event::VersionYanked(toggle)
        } else {
            Event::VersionUnyanked(toggle)
        };
        self.push(&subject, event);
    }

    fn other(&mut self, index: usize) {
        let subject = self.subject(index);
        let event = match self.rng.below(6) {
            0 => Event::OwnersAdded(OwnersChanged {
                owners: vec![format!("user{}", self.rng.below(3))],
                token_id: None,
            }),
            1 => Event::OwnersRemoved(OwnersChanged {
                owners: vec![format!("user{}", self.rng.below(3))],
                token_id: None,
            }),
            2 => {
                self.next_id += 1;
                self.crates[index].trusts.push(self.next_id);
                Event::TrustAdded(TrustAdded {
                    trust_id: uuid::Uuid::from_u128(self.next_id),
                    issuer: "https://ci.example".into(),
                    audience: "depot".into(),
                    claims: [("sub".to_owned(), format!("repo:{}", self.next_id))].into(),
                })
            }
            3 => match self.crates[index].trusts.pop() {
                Some(id) => Event::TrustRemoved(TrustRemoved {
                    trust_id: uuid::Uuid::from_u128(id),
                }),
                None => Event::TrustedOnlySet(TrustedOnlySet { enabled: false }),
            },
            4 => Event::TrustedOnlySet(TrustedOnlySet {
                enabled: self.rng.below(2) == 0,
            }),
            _ => {
                let login = format!("user{}", self.rng.below(3));
                self.next_id += 1;
                return self.push(
                    &format!("principal.{login}"),
                    Event::TokenIssued(TokenIssued {
                        token_id: uuid::Uuid::from_u128(self.next_id),
                        user: login,
                        secret_sha256: format!("hash{}", self.next_id),
                        kind: TokenKind::Personal,
                        label: None,
                        scopes: vec![],
                        crates: vec![],
                        read_crates: None,
                        expires_at: None,
                        created_by: None,
                        oidc: None,
                    }),
                );
            }
        };
        self.push(&subject, event);
    }
}

/// About `events` events over a few crates, so that batches hold several events of a crate.
fn history(events: usize) -> Vec<NewEvent> {
    let names = ["foo", "Bar_Baz", "qux", "serde-ish", "z"];
    let mut history = History {
        rng: Rng(0x5eed),
        events: Vec::new(),
        crates: names
            .iter()
            .map(|name| Sim {
                name,
                next_minor: 0,
                pending: Vec::new(),
                accepted: Vec::new(),
                retry: None,
                trusts: Vec::new(),
            })
            .collect(),
        next_id: 100,
    };
    while history.events.len() < events {
        let index = history.rng.below(names.len());
        match history.rng.below(100) {
            0..30 => history.upload(index),
            30..60 => history.verdict(index),
            60..75 => history.toggle(index, true),
            75..88 => history.toggle(index, false),
            _ => history.other(index),
        }
    }
    history.events
}

enum Backend {
    Postgres,
    Sqlite,
}

async fn fresh_store(backend: &Backend) -> (Store, Box<dyn std::any::Any>) {
    match backend {
        Backend::Postgres => {
            let db = TestDatabase::new().await;
            let store = Store::connect(db.url(), 2).await.unwrap();
            (store, Box::new(db))
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_sqlite(&dir.path().join("read-models.sqlite"))
                .await
                .unwrap();
            (store, Box::new(dir))
        }
    }
}

async fn replay_matches_live(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(
        SqliteLog::open(&dir.path().join("events.sqlite"))
            .await
            .unwrap(),
    );
    let events = history(600);
    let total = events.len() as u64;
    log.append_batch(events).await.unwrap();
    let stored: Vec<_> = log
        .read_from(1)
        .await
        .unwrap()
        .take(usize::try_from(total).unwrap())
        .map(Result::unwrap)
        .collect()
        .await;

    let (store, _keep) = fresh_store(&backend).await;
    // The live projector, one event per transaction.
    let live = Projector::new(Arc::clone(&log), store.clone(), None, Target::Active);
    for event in &stored {
        live.apply(std::slice::from_ref(event)).await.unwrap();
    }
    let active = store.active_generation().await.unwrap();
    let expected = store.dump(active).await.unwrap();
    assert!(
        expected.iter().any(|row| row.starts_with("index_body ")),
        "{expected:?}"
    );
    assert!(
        expected
            .iter()
            .any(|row| row.starts_with("versions ") && row.contains("|rejected|")),
        "{expected:?}"
    );
    assert!(
        expected.iter().any(|row| row.starts_with("yank_messages ")),
        "{expected:?}"
    );

    for batch in BATCHES {
        let generation = store.create_generation(None).await.unwrap();
        let replay = Projector::new(
            Arc::clone(&log),
            store.clone(),
            None,
            Target::Generation(generation),
        )
        .with_catch_up_batch(batch);
        assert_eq!(replay.catch_up().await.unwrap(), total);
        let replayed = store.dump(generation).await.unwrap();
        if replayed != expected {
            let missing: Vec<&String> = expected.iter().filter(|r| !replayed.contains(r)).collect();
            let extra: Vec<&String> = replayed.iter().filter(|r| !expected.contains(r)).collect();
            panic!(
                "batches of {batch}: rows differ\nonly live: {missing:#?}\nonly replayed: {extra:#?}"
            );
        }
        store.drop_generation(generation).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_in_any_batch_size_matches_the_live_projector_postgres() {
    replay_matches_live(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_in_any_batch_size_matches_the_live_projector_sqlite() {
    replay_matches_live(Backend::Sqlite).await;
}
