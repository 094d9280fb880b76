//! The projector against a real PostgreSQL: the same events delivered once, one by one, twice,
//! or duplicated inside a batch leave identical rows and index files.

use std::sync::Arc;

use bytes::Bytes;
use depot_eventlog::{EventLog, SqliteLog, StoredEvent};
use depot_events::{
    Envelope, Event, ExtractedMetadata, OwnersChanged, RejectionReason, Timestamp, TokenIssued,
    TokenKind, VersionAccepted, VersionRejected, VersionUploaded, VersionYankToggled,
};
use depot_index::{FeatureMap, IndexEntry};
use depot_projector::Projector;
use depot_store::{Store, Target};
use depot_testkit::TestDatabase;

fn at(i: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_764_000_000_000 + i as i64 * 1_500)
}

struct Log {
    events: Vec<StoredEvent>,
}

impl Log {
    fn push(&mut self, subject: &str, event: Event) {
        let seq = self.events.len() as u64 + 1;
        let envelope = Envelope {
            id: uuid::Uuid::from_u128(seq as u128),
            schema: 1,
            at: at(seq),
            actor: "alice".into(),
            event,
        };
        self.events.push(StoredEvent {
            seq,
            subject: subject.to_owned(),
            msg_id: Some(envelope.id.to_string()),
            payload: Bytes::from(envelope.encode()),
        });
    }

    fn upload(&mut self, name: &str, vers: &str, cksum: &str) {
        let canon = depot_index::canonical_name(name);
        self.push(
            &format!("crate.{canon}"),
            Event::VersionUploaded(VersionUploaded {
                name: name.into(),
                vers: vers.into(),
                cksum: cksum.into(),
                size: 100,
                blob: format!("sha256/{cksum}"),
                metadata: serde_json::json!({"name": name, "vers": vers}),
                metadata_blob: None,
                uploader: "alice".into(),
                token_id: None,
            }),
        );
    }

    fn accept(&mut self, name: &str, vers: &str, cksum: &str, features: FeatureMap) {
        let canon = depot_index::canonical_name(name);
        let entry = IndexEntry::new(
            name.into(),
            vers.into(),
            vec![],
            cksum.into(),
            features,
            None,
            Some("1.70".into()),
            Some(at(1).to_pubtime()),
        );
        self.push(
            &format!("crate.{canon}"),
            Event::VersionAccepted(VersionAccepted {
                vers: vers.into(),
                cksum: cksum.into(),
                entry,
                metadata: ExtractedMetadata {
                    description: Some(format!("{name} {vers}")),
                    keywords: vec!["kw".into()],
                    ..ExtractedMetadata::default()
                },
            }),
        );
    }
}

/// A varied history: tokens, two crates, a rejection and a re-upload, yanks, owners, and a
/// duplicate outcome appended later by a redelivered extraction.
fn history() -> Vec<StoredEvent> {
    let mut log = Log { events: vec![] };
    for user in ["alice", "Bob"] {
        log.push(
            &format!("principal.{}", user.to_ascii_lowercase()),
            Event::TokenIssued(TokenIssued {
                token_id: uuid::Uuid::from_u128(1000 + user.len() as u128),
                user: user.into(),
                secret_sha256: format!("{user}-hash"),
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
    log.upload("foo", "1.0.0", "aa");
    log.accept("foo", "1.0.0", "aa", FeatureMap::new());
    log.upload("foo", "1.1.0", "bb");
    log.push(
        "crate.foo",
        Event::VersionRejected(VersionRejected {
            vers: "1.1.0".into(),
            cksum: "bb".into(),
            reasons: vec![RejectionReason {
                code: "invalid_path".into(),
                detail: "invalid path found: x".into(),
            }],
        }),
    );
    log.upload("foo", "1.1.0", "cc");
    let mut features = FeatureMap::new();
    features.insert("serde".into(), vec!["dep:serde".into()]);
    log.accept("foo", "1.1.0", "cc", features);
    log.accept("foo", "1.1.0", "cc", FeatureMap::new()); // duplicate outcome: ignored
    let toggle = |vers: &str| VersionYankToggled {
        vers: vers.into(),
        message: None,
        token_id: None,
    };
    log.push("crate.foo", Event::VersionYanked(toggle("1.0.0")));
    log.push(
        "crate.foo",
        Event::OwnersAdded(OwnersChanged {
            owners: vec!["bob".into()],
            token_id: None,
        }),
    );
    log.push("crate.foo", Event::VersionUnyanked(toggle("1.0.0")));
    log.push("crate.foo", Event::VersionYanked(toggle("1.0.0")));
    log.upload("Bar_Baz", "0.1.0", "dd");
    log.accept("Bar_Baz", "0.1.0", "dd", FeatureMap::new());
    log.upload("Bar_Baz", "0.2.0", "ee"); // still pending
    // Accounts and trusted publishing.
    log.push(
        "principal.carol",
        Event::UserCreated(depot_events::UserCreated {
            login: "Carol".into(),
            admin: true,
        }),
    );
    log.push(
        "principal.alice",
        Event::UserDisabled(depot_events::UserChanged {
            login: "alice".into(),
        }),
    );
    log.push(
        "deploy.builders",
        Event::TokenIssued(TokenIssued {
            token_id: uuid::Uuid::from_u128(2000),
            user: "deploy:builders".into(),
            secret_sha256: "deploy-hash".into(),
            kind: TokenKind::Deploy,
            label: Some("builders".into()),
            scopes: vec![depot_events::TokenScope::Read],
            crates: vec!["foo*".into()],
            read_crates: None,
            expires_at: None,
            created_by: Some("depot:admin".into()),
            oidc: None,
        }),
    );
    log.push(
        "oidc.abc123",
        Event::TokenIssued(TokenIssued {
            token_id: uuid::Uuid::from_u128(3000),
            user: "ci:repo".into(),
            secret_sha256: "ci-hash".into(),
            kind: TokenKind::Ci,
            label: None,
            scopes: vec![
                depot_events::TokenScope::Read,
                depot_events::TokenScope::PublishUpdate,
            ],
            crates: vec!["foo".into()],
            read_crates: Some(vec![]),
            expires_at: None,
            created_by: Some("trusted-publishing".into()),
            oidc: None,
        }),
    );
    log.push(
        "ci.00000000000000000000000000000bb8",
        Event::TokenRevoked(depot_events::TokenRevoked {
            token_id: uuid::Uuid::from_u128(3000),
        }),
    );
    for id in [10, 11] {
        log.push(
            "crate.foo",
            Event::TrustAdded(depot_events::TrustAdded {
                trust_id: uuid::Uuid::from_u128(id),
                issuer: "https://ci.example".into(),
                audience: "depot".into(),
                claims: [("sub".to_owned(), format!("repo:{id}"))].into(),
            }),
        );
    }
    log.push(
        "crate.foo",
        Event::TrustRemoved(depot_events::TrustRemoved {
            trust_id: uuid::Uuid::from_u128(10),
        }),
    );
    log.push(
        "crate.foo",
        Event::TrustedOnlySet(depot_events::TrustedOnlySet { enabled: true }),
    );
    log.events
}

/// Where a scenario's read models live.
enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh store on `backend`, with what keeps it alive.
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

async fn projector(backend: &Backend) -> (Projector, Store, Box<dyn std::any::Any>) {
    let (store, guard) = fresh_store(backend).await;
    // `apply` does not read the log; an empty embedded one will do.
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(
        SqliteLog::open(&dir.path().join("events.sqlite"))
            .await
            .unwrap(),
    );
    (
        Projector::new(log, store.clone(), None, Target::Active),
        store,
        Box::new((guard, dir)),
    )
}

async fn dump(store: &Store) -> Vec<String> {
    let generation = store.active_generation().await.unwrap();
    store.dump(generation).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_and_batching_leave_identical_read_models_postgres() {
    redelivery_and_batching(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_and_batching_leave_identical_read_models_sqlite() {
    redelivery_and_batching(Backend::Sqlite).await;
}

async fn redelivery_and_batching(backend: Backend) {
    let events = history();

    // A: everything in one batch.
    let (proj_a, store_a, _a) = projector(&backend).await;
    let outcome = proj_a.apply(&events).await.unwrap();
    assert_eq!(outcome.checkpoint, events.len() as u64);
    assert_eq!(outcome.crates, vec!["bar_baz".to_owned(), "foo".to_owned()]);
    let dump_a = dump(&store_a).await;
    assert!(dump_a.len() > 10, "{dump_a:?}");
    // Accounts and trusts were folded.
    let trusts: Vec<&String> = dump_a.iter().filter(|r| r.starts_with("trusts ")).collect();
    assert_eq!(trusts.len(), 1, "{trusts:?}");
    assert!(trusts[0].contains("|foo|https://ci.example|"), "{trusts:?}");
    assert!(
        dump_a.contains(&"trusted_only foo".to_owned()),
        "{dump_a:?}"
    );
    let carol = store_a.user_account("carol").await.unwrap().unwrap();
    assert!(carol.admin && !carol.disabled && carol.display == "Carol");
    assert!(
        store_a
            .user_account("ALICE")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    let ci = store_a
        .token("00000000-0000-0000-0000-000000000bb8")
        .await
        .unwrap()
        .unwrap();
    assert!(ci.revoked && ci.read_crates == Some(vec![]), "{ci:?}");
    let deploy = store_a.tokens(Some("deploy:builders")).await.unwrap();
    assert_eq!(deploy.len(), 1, "{deploy:?}");
    assert_eq!(
        store_a
            .trusts_for_issuer("https://ci.example")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store_a.trusted_only("foo").await.unwrap());

    // Applying the same events again changes nothing.
    let again = proj_a.apply(&events).await.unwrap();
    assert_eq!(again.applied, 0);
    assert_eq!(dump(&store_a).await, dump_a);

    // B: one event per batch, each delivered twice.
    let (proj_b, store_b, _b) = projector(&backend).await;
    for event in &events {
        proj_b.apply(std::slice::from_ref(event)).await.unwrap();
        let twice = proj_b.apply(std::slice::from_ref(event)).await.unwrap();
        assert_eq!(twice.applied, 0);
    }
    assert_eq!(dump(&store_b).await, dump_a);

    // C: every event duplicated inside uneven batches.
    let (proj_c, store_c, _c) = projector(&backend).await;
    let doubled: Vec<StoredEvent> = events.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
    for chunk in doubled.chunks(5) {
        proj_c.apply(chunk).await.unwrap();
    }
    assert_eq!(dump(&store_c).await, dump_a);

    // A batch that skips events is not applied past the gap.
    let (proj_d, store_d, _d) = projector(&backend).await;
    let outcome = proj_d.apply(&events[2..]).await.unwrap();
    assert!(outcome.gap);
    assert_eq!(outcome.applied, 0);
    assert_eq!(store_d.checkpoint(1).await.unwrap(), 0);

    // And the result is what the history says.
    let foo_file = store_a.index_file("foo").await.unwrap().unwrap();
    let body = String::from_utf8(foo_file.body).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert!(lines[0].contains(r#""vers":"1.0.0""#) && lines[0].contains(r#""yanked":true"#));
    assert!(
        lines[1].contains(r#""vers":"1.1.0""#)
            && lines[1].contains(r#""features2":{"serde":["dep:serde"]}"#)
    );
    assert!(lines[1].contains(r#""v":2"#), "{body}");
    let bar = store_a.index_file("bar_baz").await.unwrap().unwrap();
    assert_eq!(bar.name, "Bar_Baz");
    assert_eq!(String::from_utf8(bar.body).unwrap().lines().count(), 1);
    let (state, seq) = store_a
        .crate_aggregate("foo", &["1.0.0+build"])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.owners(), ["alice", "bob"]);
    assert_eq!(state.head.live, 2);
    let last_of_foo = events
        .iter()
        .filter(|e| e.subject == "crate.foo")
        .map(|e| e.seq)
        .max();
    assert_eq!(Some(seq), last_of_foo);
    // Only the uploads of the version asked about (build metadata ignored) are loaded.
    assert_eq!(state.versions.len(), 1, "{state:?}");
    assert!(state.accepted_version("1.0.0").unwrap().yanked);
    assert!(store_a.token_by_hash("Bob-hash").await.unwrap().is_some());
    assert_eq!(store_a.user("BOB").await.unwrap().as_deref(), Some("Bob"));
    let (hits, total) = store_a.search("BAR-b", 10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(hits[0].name, "Bar_Baz");
}
