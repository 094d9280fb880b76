//! The embedded SQLite event log: the shared conformance suite plus what only a file-backed
//! log has (reopening, several connections on one file, open-time checks), and the
//! in-process notifier.
//!
//! Every test uses its own temporary directory; nothing else is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use depot_eventlog::{
    AppendError, Appended, Delivery, EventLog, EventStream, Expected, LocalNotifier, LogError,
    NewEvent, Notifier, OpenError, SqliteLog, StoredEvent, WorkQueue, WorkQueueConfig, conformance,
};
use futures::StreamExt;
use futures::future::join_all;
use tempfile::TempDir;
use tokio::time::{Instant, timeout};

/// How long to wait for something that should happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// Wake-ups must be much faster than the 2 s fallback poll.
const PROMPT: Duration = Duration::from_millis(500);

async fn fresh_log() -> (TempDir, SqliteLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(&dir.path().join("events.db")).await;
    (dir, log)
}

async fn open(path: &Path) -> SqliteLog {
    SqliteLog::open(path)
        .await
        .unwrap_or_else(|err| panic!("open {}: {err}", path.display()))
}

fn bytes(text: impl Into<String>) -> Bytes {
    Bytes::from(text.into())
}

fn queue_config(ack_wait: Duration, max_deliver: u32) -> WorkQueueConfig {
    WorkQueueConfig {
        ack_wait,
        max_deliver,
        backoff: Vec::new(),
    }
}

async fn next_event(events: &mut EventStream, wait: Duration) -> Option<u64> {
    match timeout(wait, events.next()).await {
        Err(_elapsed) => None,
        Ok(Some(Ok(event))) => Some(event.seq),
        Ok(other) => panic!("read_from yielded {other:?}"),
    }
}

async fn next_delivery(queue: &mut dyn WorkQueue, wait: Duration) -> Option<Delivery> {
    match timeout(wait, queue.next()).await {
        Err(_elapsed) => None,
        Ok(result) => Some(result.expect("next()")),
    }
}

async fn expect_delivery(queue: &mut dyn WorkQueue, what: &str) -> Delivery {
    next_delivery(queue, PATIENCE)
        .await
        .unwrap_or_else(|| panic!("{what}: no delivery within {PATIENCE:?}"))
}

async fn expect_no_delivery(queue: &mut dyn WorkQueue, wait: Duration, what: &str) {
    if let Some(delivery) = next_delivery(queue, wait).await {
        panic!(
            "{what}: unexpected delivery of seq {} (attempt {})",
            delivery.event.seq, delivery.attempt
        );
    }
}

macro_rules! conformance_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_dir, log) = fresh_log().await;
                conformance::$case(&log).await;
            }
        )*

        #[test]
        fn every_conformance_case_is_run() {
            let run = [$(stringify!($case)),*];
            for case in conformance::ALL {
                assert!(run.contains(case), "conformance case {case} is not run here");
            }
        }
    };
}

conformance_tests!(
    append_order,
    conflicts,
    idempotent_append,
    invalid_arguments,
    read_subject_after_seq,
    read_from_replays_and_follows,
    work_queue_ack,
    work_queue_nak_redelivers,
    work_queue_max_deliver,
    work_queue_resume,
    work_queue_competing,
    work_queue_in_progress,
    concurrent_first_append,
    concurrent_chains,
    append_batch,
);

#[tokio::test]
async fn notifier_roundtrip() {
    conformance::notifier_roundtrip(&LocalNotifier::new()).await;
}

#[tokio::test]
async fn log_notifier_is_shared_by_clones() {
    let (_dir, log) = fresh_log().await;
    conformance::notifier_roundtrip(&log.notifier()).await;

    let mut first = log.notifier().subscribe("cache.crate").await.expect("sub");
    let mut second = log
        .clone()
        .notifier()
        .subscribe("cache.crate")
        .await
        .expect("sub");
    log.notifier()
        .notify("cache.crate", bytes("serde"))
        .await
        .expect("notify");
    for subscription in [&mut first, &mut second] {
        let payload = timeout(PATIENCE, subscription.next())
            .await
            .expect("notification")
            .expect("open subscription");
        assert_eq!(payload, bytes("serde"));
    }
    assert_eq!(
        log.head().await.expect("head"),
        0,
        "notifications are not events"
    );
}

/// Events, message ids and work-queue state survive closing and reopening the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_events_and_queue_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Parent directories are created.
    let path = dir.path().join("state").join("depot").join("events.db");
    let config = queue_config(Duration::from_secs(1), 2);

    let log = open(&path).await;
    let mut expected = Expected::Seq(0);
    for i in 1..=6u64 {
        let subject = if i % 2 == 1 {
            "crate.odd"
        } else {
            "crate.even"
        };
        let appended = log
            .append(
                subject,
                if subject == "crate.odd" {
                    expected
                } else {
                    Expected::Any
                },
                &format!("reopen-{i}"),
                bytes(format!("payload {i}")),
            )
            .await
            .expect("append");
        assert_eq!(appended.seq, i);
        if subject == "crate.odd" {
            expected = Expected::Seq(appended.seq);
        }
    }
    let mut queue = log
        .work_queue("reopen", config.clone())
        .await
        .expect("queue");
    for seq in 1..=2 {
        let delivery = expect_delivery(queue.as_mut(), "before reopening").await;
        assert_eq!(delivery.event.seq, seq);
        delivery.ack().await.expect("ack");
    }
    let unacked = expect_delivery(queue.as_mut(), "left unacked").await;
    assert_eq!((unacked.event.seq, unacked.attempt), (3, 1));
    drop(unacked);
    drop(queue);
    log.close().await;
    assert!(log.head().await.is_err(), "a closed log fails");
    drop(log);

    let log = open(&path).await;
    assert_eq!(log.head().await.expect("head"), 6);
    assert_eq!(log.last_seq("crate.odd").await.expect("last_seq"), 5);
    let odd = log
        .read_subject("crate.odd", 0)
        .await
        .expect("read_subject");
    assert_eq!(odd.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3, 5]);
    assert_eq!(odd[1].payload, bytes("payload 3"));
    assert_eq!(odd[1].msg_id.as_deref(), Some("reopen-3"));
    let mut events = log.read_from(0).await.expect("read_from");
    for seq in 1..=6 {
        assert_eq!(next_event(&mut events, PATIENCE).await, Some(seq));
    }
    // Message ids and subject positions are remembered.
    let again = log
        .append(
            "crate.odd",
            Expected::Seq(0),
            "reopen-1",
            bytes("payload 1"),
        )
        .await
        .expect("retry of the first append");
    assert_eq!((again.seq, again.duplicate), (1, true));
    match log
        .append("crate.odd", Expected::Seq(3), "reopen-x", bytes("x"))
        .await
    {
        Err(AppendError::Conflict {
            expected: 3,
            actual: 5,
        }) => {}
        other => panic!("stale expectation after reopening: {other:?}"),
    }
    let seventh = log
        .append(
            "crate.odd",
            Expected::Seq(5),
            "reopen-7",
            bytes("payload 7"),
        )
        .await
        .expect("append after reopening");
    assert_eq!((seventh.seq, seventh.duplicate), (7, false));
    assert_eq!(next_event(&mut events, PATIENCE).await, Some(7));

    let mut queue = log
        .work_queue("reopen", config.clone())
        .await
        .expect("queue");
    assert_eq!(
        queue.pending().await.expect("pending"),
        5,
        "4 undelivered events (4..=7) plus the unacked seq 3"
    );
    let mut seen = BTreeMap::new();
    while seen.len() < 5 {
        let delivery = expect_delivery(queue.as_mut(), "after reopening").await;
        let seq = delivery.event.seq;
        assert!(seq >= 3, "acked seq {seq} was delivered again");
        assert!(
            seen.insert(seq, delivery.attempt).is_none(),
            "seq {seq} delivered twice"
        );
        if seq == 3 {
            // Its second and last delivery: leave it unacked, it must not come back.
            assert!(delivery.is_last_attempt);
            drop(delivery);
        } else {
            delivery.ack().await.expect("ack");
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [(3, 2), (4, 1), (5, 1), (6, 1), (7, 1)],
        "(seq, attempt)"
    );
    expect_no_delivery(queue.as_mut(), Duration::from_millis(1500), "exhausted").await;
    assert_eq!(queue.pending().await.expect("pending"), 0);
    drop(queue);
    log.close().await;

    let log = open(&path).await;
    let mut queue = log.work_queue("reopen", config).await.expect("queue");
    assert_eq!(queue.pending().await.expect("pending"), 0);
    expect_no_delivery(queue.as_mut(), Duration::from_millis(1500), "second reopen").await;
    // Another queue on the same file starts from the beginning.
    let mut fresh = log
        .work_queue("another", queue_config(Duration::from_secs(30), 0))
        .await
        .expect("queue");
    assert_eq!(fresh.pending().await.expect("pending"), 7);
    let first = expect_delivery(fresh.as_mut(), "new queue").await;
    assert_eq!(
        (first.event.seq, first.attempt, first.is_last_attempt),
        (1, 1, false)
    );
}

/// Many tasks append at once, on one log and on a second log over the same file (a second
/// writer connection): no `database is locked`, no lost or duplicated sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_on_one_file() {
    const TASKS_PER_LOG: usize = 16;
    const APPENDS: usize = 25;
    let (dir, log) = fresh_log().await;
    let second = open(&dir.path().join("events.db")).await;
    let started = Instant::now();
    let tasks: Vec<_> = [log.clone(), second.clone()]
        .into_iter()
        .enumerate()
        .flat_map(|(instance, log)| {
            (0..TASKS_PER_LOG).map(move |task| {
                let log = log.clone();
                tokio::spawn(async move {
                    let subject = format!("crate.c{instance}x{task}");
                    let mut expected = Expected::Seq(0);
                    for i in 0..APPENDS {
                        let msg_id = format!("c-{instance}-{task}-{i}");
                        // Alternate OCC appends on the task's own subject with unconditional
                        // appends to a shared one.
                        let (target, condition) = if i % 2 == 0 {
                            (subject.as_str(), expected)
                        } else {
                            ("crate.shared", Expected::Any)
                        };
                        let appended = log
                            .append(target, condition, &msg_id, bytes(msg_id.clone()))
                            .await
                            .unwrap_or_else(|err| panic!("{msg_id}: {err}"));
                        assert!(!appended.duplicate);
                        if i % 2 == 0 {
                            expected = Expected::Seq(appended.seq);
                        }
                    }
                })
            })
        })
        .collect();
    for task in join_all(tasks).await {
        task.expect("appender task");
    }
    let elapsed = started.elapsed();
    let total = (2 * TASKS_PER_LOG * APPENDS) as u64;
    assert_eq!(log.head().await.expect("head"), total);
    assert_eq!(second.head().await.expect("head"), total);

    let mut events = log.read_from(1).await.expect("read_from");
    let mut ids = BTreeSet::new();
    for seq in 1..=total {
        let event = timeout(PATIENCE, events.next())
            .await
            .expect("event")
            .expect("stream")
            .expect("no error");
        assert_eq!(event.seq, seq, "gap-free, in order");
        ids.insert(event.msg_id.expect("msg id"));
    }
    assert_eq!(ids.len() as u64, total, "every append stored once");
    assert!(
        elapsed < Duration::from_secs(60),
        "{total} appends took {elapsed:?}"
    );
}

/// Followers and idle work queues wake up on an append or a nak at once, not on the
/// fallback poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_wake_promptly() {
    let (_dir, log) = fresh_log().await;
    let mut events = log.read_from(1).await.expect("read_from");
    assert_eq!(
        next_event(&mut events, Duration::from_millis(100)).await,
        None
    );
    let mut queue = log
        .work_queue("prompt", queue_config(Duration::from_secs(30), 0))
        .await
        .expect("queue");
    let mut other = log
        .work_queue("prompt", queue_config(Duration::from_secs(30), 0))
        .await
        .expect("queue");
    expect_no_delivery(queue.as_mut(), Duration::from_millis(100), "empty log").await;

    for round in 1..=3u64 {
        let follower = tokio::spawn(async move {
            let seq = next_event(&mut events, PATIENCE).await;
            (seq, Instant::now(), events)
        });
        let worker = tokio::spawn(async move {
            let delivery = next_delivery(queue.as_mut(), PATIENCE).await;
            (delivery, Instant::now(), queue)
        });
        // Let both settle into waiting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let appended_at = Instant::now();
        log.append(
            "crate.prompt",
            Expected::Any,
            &format!("p-{round}"),
            bytes("p"),
        )
        .await
        .expect("append");
        let (seq, followed_at, returned_events) = follower.await.expect("follower");
        events = returned_events;
        assert_eq!(seq, Some(round));
        assert!(
            followed_at - appended_at < PROMPT,
            "read_from woke after {:?}",
            followed_at - appended_at
        );
        let (delivery, delivered_at, returned_queue) = worker.await.expect("worker");
        queue = returned_queue;
        let delivery = delivery.expect("delivery");
        assert_eq!(delivery.event.seq, round);
        assert!(
            delivered_at - appended_at < PROMPT,
            "next() woke after {:?}",
            delivered_at - appended_at
        );

        // A nak by one instance wakes another instance that is waiting.
        let waiting = tokio::spawn(async move {
            let delivery = next_delivery(other.as_mut(), PATIENCE).await;
            (delivery, Instant::now(), other)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let naked_at = Instant::now();
        delivery.nak(Duration::ZERO).await.expect("nak");
        let (redelivery, redelivered_at, returned_other) = waiting.await.expect("waiting");
        other = returned_other;
        let redelivery = redelivery.expect("redelivery");
        assert_eq!((redelivery.event.seq, redelivery.attempt), (round, 2));
        assert!(
            redelivered_at - naked_at < PROMPT,
            "the nak woke the other instance after {:?}",
            redelivered_at - naked_at
        );
        redelivery.ack().await.expect("ack");
    }
}

/// A batch wakes a waiting follower at once, not on the fallback poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_batch_wakes_followers_promptly() {
    let (_dir, log) = fresh_log().await;
    let mut events = log.read_from(1).await.expect("read_from");
    let follower = tokio::spawn(async move {
        let seq = next_event(&mut events, PATIENCE).await;
        (seq, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let appended_at = Instant::now();
    let batch = (0..3)
        .map(|i| NewEvent::new("crate.prompt", format!("pb-{i}"), bytes("p")))
        .collect();
    log.append_batch(batch).await.expect("append_batch");
    let (seq, followed_at) = follower.await.expect("follower");
    assert_eq!(seq, Some(1));
    assert!(
        followed_at - appended_at < PROMPT,
        "read_from woke after {:?}",
        followed_at - appended_at
    );
}

/// A log that keeps the trait's default `append_batch` (one `append` per event).
#[derive(Debug)]
struct OneByOne(SqliteLog);

#[async_trait::async_trait]
impl EventLog for OneByOne {
    async fn append(
        &self,
        subject: &str,
        expected: Expected,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Appended, AppendError> {
        self.0.append(subject, expected, msg_id, payload).await
    }

    async fn last_seq(&self, subject: &str) -> Result<u64, LogError> {
        self.0.last_seq(subject).await
    }

    async fn read_subject(
        &self,
        subject: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LogError> {
        self.0.read_subject(subject, after_seq).await
    }

    async fn head(&self) -> Result<u64, LogError> {
        self.0.head().await
    }

    async fn read_from(&self, from_seq: u64) -> Result<EventStream, LogError> {
        self.0.read_from(from_seq).await
    }

    async fn work_queue(
        &self,
        name: &str,
        config: WorkQueueConfig,
    ) -> Result<Box<dyn WorkQueue>, LogError> {
        self.0.work_queue(name, config).await
    }
}

/// The trait's default `append_batch` passes the batch conformance case too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_append_batch_conforms() {
    let (_dir, log) = fresh_log().await;
    conformance::append_batch(&OneByOne(log)).await;
}

/// `next()` cancelled at arbitrary points (tiny timeouts) loses no delivery: nothing waits
/// for an ack wait (30 s here) to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_next_loses_nothing() {
    const EVENTS: u64 = 30;
    let (_dir, log) = fresh_log().await;
    let mut queue = log
        .work_queue("cancelled", queue_config(Duration::from_secs(30), 5))
        .await
        .expect("queue");
    let appender = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 1..=EVENTS {
                log.append("crate.cancel", Expected::Any, &format!("x-{i}"), bytes("x"))
                    .await
                    .expect("append");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    let mut cancelled = 0u32;
    while (seen.len() as u64) < EVENTS {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} delivered ({cancelled} cancelled calls)"
        );
        match timeout(Duration::from_micros(300), queue.next()).await {
            Err(_elapsed) => cancelled += 1,
            Ok(delivery) => {
                let delivery = delivery.expect("next()");
                assert_eq!(delivery.attempt, 1, "no redelivery expected");
                seen.push(delivery.event.seq);
                delivery.ack().await.expect("ack");
            }
        }
    }
    appender.await.expect("appender");
    assert_eq!(seen, (1..=EVENTS).collect::<Vec<_>>());
    assert!(cancelled > 0, "the test should cancel some calls");
}

/// With a backoff, entry `i` is the ack wait of delivery `i + 1`, the last one repeating
/// until `max_deliver`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_sets_the_redelivery_delays() {
    let (_dir, log) = fresh_log().await;
    log.append("crate.backoff", Expected::Any, "b-1", bytes("b"))
        .await
        .expect("append");
    let config = WorkQueueConfig {
        ack_wait: Duration::from_secs(30),
        max_deliver: 4,
        backoff: vec![Duration::from_millis(300), Duration::from_millis(800)],
    };
    let mut queue = log.work_queue("backoff", config).await.expect("queue");
    // Measured from before the first delivery: each delay runs from the moment the queue handed
    // the previous delivery out, which this test only observes later (by an amount that grows on
    // a loaded machine), so only the sum of the delays is a sound lower bound.
    let started = Instant::now();
    let first = expect_delivery(queue.as_mut(), "first").await;
    assert_eq!(first.attempt, 1);
    drop(first);
    let mut due = Duration::ZERO;
    for (attempt, wait) in [(2, 300), (3, 800), (4, 800)] {
        let delivery = expect_delivery(queue.as_mut(), "redelivery").await;
        let elapsed = started.elapsed();
        assert_eq!(delivery.attempt, attempt);
        assert_eq!(delivery.is_last_attempt, attempt == 4);
        due += Duration::from_millis(wait);
        let slack = Duration::from_millis(600 * (attempt - 1));
        assert!(
            elapsed >= due.mul_f32(0.95) && elapsed < due + slack,
            "attempt {attempt} came {elapsed:?} after the start, expected {due:?} to {:?}",
            due + slack
        );
        drop(delivery);
    }
    expect_no_delivery(queue.as_mut(), Duration::from_millis(1500), "exhausted").await;
    assert_eq!(queue.pending().await.expect("pending"), 0);
}

/// `in_progress` pushes the redelivery back by a whole ack wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_extends_the_ack_wait() {
    let (_dir, log) = fresh_log().await;
    log.append("crate.long", Expected::Any, "l-1", bytes("l"))
        .await
        .expect("append");
    let mut queue = log
        .work_queue("long", queue_config(Duration::from_millis(700), 3))
        .await
        .expect("queue");
    let delivery = expect_delivery(queue.as_mut(), "first").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        delivery.in_progress().await.expect("in_progress");
    }
    // 1.2 s after the delivery, well past the 700 ms ack wait, and nothing came back.
    expect_no_delivery(
        queue.as_mut(),
        Duration::from_millis(300),
        "while in progress",
    )
    .await;
    assert_eq!(queue.pending().await.expect("pending"), 1);
    delivery.ack().await.expect("ack");
    expect_no_delivery(queue.as_mut(), Duration::from_millis(1000), "after ack").await;
    assert_eq!(queue.pending().await.expect("pending"), 0);
}

#[tokio::test]
async fn open_refuses_files_it_does_not_own() {
    let dir = tempfile::tempdir().expect("tempdir");

    let foreign = dir.path().join("foreign.db");
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&foreign)
                .create_if_missing(true),
        )
        .await
        .expect("create a foreign database");
        sqlx::query("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .expect("create table");
        pool.close().await;
    }
    let err = SqliteLog::open(&foreign)
        .await
        .expect_err("foreign database");
    assert!(matches!(err, OpenError::NotAnEventLog { .. }), "{err:?}");
    assert!(err.to_string().contains("foreign.db"), "{err}");

    let newer = dir.path().join("newer.db");
    let log = open(&newer).await;
    log.close().await;
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(&newer),
        )
        .await
        .expect("open");
        sqlx::query("PRAGMA user_version = 99")
            .execute(&pool)
            .await
            .expect("bump the schema version");
        pool.close().await;
    }
    let err = SqliteLog::open(&newer).await.expect_err("newer schema");
    assert!(
        matches!(
            err,
            OpenError::UnsupportedSchema {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );

    let text = dir.path().join("text.db");
    std::fs::write(&text, "not a database at all, just some text").expect("write");
    let err = SqliteLog::open(&text).await.expect_err("not SQLite");
    assert!(matches!(err, OpenError::Database { .. }), "{err:?}");

    let err = SqliteLog::open(dir.path()).await.expect_err("a directory");
    assert!(matches!(err, OpenError::Database { .. }), "{err:?}");
}
