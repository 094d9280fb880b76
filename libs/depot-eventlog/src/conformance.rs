//! The shared conformance suite every [`EventLog`] implementation must pass.
//!
//! Each function is one test case. It takes a **fresh, empty** log (it asserts that
//! [`EventLog::head`] is 0), panics with a clear message on any deviation, and leaves the log
//! dirty. A backend's test file calls every function with its own fresh log, e.g.
//!
//! ```text
//! #[tokio::test]
//! async fn append_order() {
//!     let log = fresh_log().await;
//!     depot_eventlog::conformance::append_order(&log).await;
//! }
//! ```
//!
//! [`ALL`] lists the names of the log cases, so a backend can check it runs all of them;
//! [`notifier_roundtrip`] covers a [`Notifier`].
//!
//! Timing assumptions are generous (seconds) so the suite is stable on a loaded 2-core CI box.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;
use tokio::time::{Instant, timeout};

use crate::{
    AppendError, Appended, Delivery, EventLog, EventStream, Expected, LogError, NewEvent, Notifier,
    StoredEvent, WorkQueue, WorkQueueConfig,
};

/// The names of all log test cases in this module, in a sensible run order.
pub const ALL: &[&str] = &[
    "append_order",
    "conflicts",
    "idempotent_append",
    "invalid_arguments",
    "read_subject_after_seq",
    "read_from_replays_and_follows",
    "work_queue_ack",
    "work_queue_nak_redelivers",
    "work_queue_max_deliver",
    "work_queue_resume",
    "work_queue_competing",
    "work_queue_in_progress",
    "concurrent_first_append",
    "concurrent_chains",
    "append_batch",
];

/// How long to wait for something that should happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to watch for something that should not happen.
const QUIET: Duration = Duration::from_millis(400);

fn bytes(text: impl Into<String>) -> Bytes {
    Bytes::from(text.into())
}

async fn expect_empty(log: &dyn EventLog) {
    let head = log.head().await.expect("head() of a fresh log");
    assert_eq!(
        head, 0,
        "conformance cases need a fresh, empty log, but head() is {head}"
    );
}

async fn append_ok(
    log: &dyn EventLog,
    subject: &str,
    expected: Expected,
    msg_id: &str,
    payload: &str,
) -> Appended {
    log.append(subject, expected, msg_id, bytes(payload))
        .await
        .unwrap_or_else(|err| panic!("append({subject}, {expected:?}, {msg_id}) failed: {err}"))
}

fn assert_conflict(result: Result<Appended, AppendError>, expected: u64, actual: u64, what: &str) {
    match result {
        Err(AppendError::Conflict {
            expected: got_expected,
            actual: got_actual,
        }) => {
            assert_eq!(
                (got_expected, got_actual),
                (expected, actual),
                "{what}: conflict reports (expected, actual)"
            );
        }
        other => panic!(
            "{what}: expected Conflict {{ expected: {expected}, actual: {actual} }}, got {other:?}"
        ),
    }
}

/// Next event of a `read_from` stream within `wait`; transient `Err` items are skipped.
async fn next_event(events: &mut EventStream, wait: Duration) -> Option<StoredEvent> {
    let deadline = Instant::now() + wait;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            events.next(),
        )
        .await
        {
            Err(_elapsed) => return None,
            Ok(None) => panic!("a read_from stream must never end"),
            Ok(Some(Ok(event))) => return Some(event),
            Ok(Some(Err(err))) => {
                assert!(
                    err.is_transient(),
                    "read_from yielded a non-transient error: {err}"
                );
            }
        }
    }
}

/// Next delivery within `wait`; panics on an error.
async fn next_delivery(queue: &mut dyn WorkQueue, wait: Duration) -> Option<Delivery> {
    match timeout(wait, queue.next()).await {
        Err(_elapsed) => None,
        Ok(Ok(delivery)) => Some(delivery),
        Ok(Err(err)) => panic!("work queue next() failed: {err}"),
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

async fn open_queue(log: &dyn EventLog, name: &str, config: WorkQueueConfig) -> Box<dyn WorkQueue> {
    log.work_queue(name, config)
        .await
        .unwrap_or_else(|err| panic!("work_queue({name}) failed: {err}"))
}

fn queue_config(ack_wait: Duration, max_deliver: u32) -> WorkQueueConfig {
    WorkQueueConfig {
        ack_wait,
        max_deliver,
        backoff: Vec::new(),
    }
}

/// Appends get consecutive sequences from 1 in call order, across subjects; `head`,
/// `last_seq` and `read_from(1)` agree with them.
pub async fn append_order(log: &dyn EventLog) {
    expect_empty(log).await;
    let subjects = ["crate.alpha", "crate.beta", "principal.p1"];
    let mut appended = Vec::new();
    for i in 0..12u64 {
        let subject = subjects[(i % 3) as usize];
        let result = append_ok(
            log,
            subject,
            Expected::Any,
            &format!("order-{i}"),
            &format!("payload {i}"),
        )
        .await;
        assert!(
            !result.duplicate,
            "a fresh message id must not be a duplicate"
        );
        assert_eq!(result.seq, i + 1, "append #{i} must get seq {}", i + 1);
        appended.push((
            result.seq,
            subject,
            format!("order-{i}"),
            format!("payload {i}"),
        ));
    }
    assert_eq!(log.head().await.expect("head"), 12);
    for (index, subject) in subjects.iter().enumerate() {
        // Subject k was written last at i = 9 + k.
        assert_eq!(
            log.last_seq(subject).await.expect("last_seq"),
            10 + index as u64,
            "last_seq({subject})"
        );
    }
    assert_eq!(log.last_seq("crate.none").await.expect("last_seq"), 0);

    let mut events = log.read_from(1).await.expect("read_from(1)");
    for (seq, subject, msg_id, payload) in &appended {
        let event = next_event(&mut events, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("read_from(1) did not deliver seq {seq}"));
        assert_eq!(event.seq, *seq, "read_from order");
        assert_eq!(event.subject, *subject, "subject of seq {seq}");
        assert_eq!(
            event.msg_id.as_deref(),
            Some(msg_id.as_str()),
            "msg_id of seq {seq}"
        );
        assert_eq!(
            event.payload,
            bytes(payload.clone()),
            "payload of seq {seq}"
        );
    }
}

/// Per-subject optimistic concurrency: `Seq(0)` only on an empty subject, `Seq(n)` only when
/// `n` is the subject's last event; other subjects don't interfere; `Any` always appends.
pub async fn conflicts(log: &dyn EventLog) {
    expect_empty(log).await;
    let first = append_ok(log, "crate.occ", Expected::Seq(0), "occ-1", "v1").await;
    assert_conflict(
        log.append("crate.occ", Expected::Seq(0), "occ-2", bytes("v2"))
            .await,
        0,
        first.seq,
        "Seq(0) on a subject with events",
    );
    let second = append_ok(log, "crate.occ", Expected::Seq(first.seq), "occ-3", "v2").await;
    assert!(second.seq > first.seq);
    assert_conflict(
        log.append("crate.occ", Expected::Seq(first.seq), "occ-4", bytes("v3"))
            .await,
        first.seq,
        second.seq,
        "stale Seq(n)",
    );
    // Another subject's appends do not move this subject's expected sequence.
    let other = append_ok(log, "crate.other", Expected::Seq(0), "occ-5", "x").await;
    assert!(other.seq > second.seq);
    assert_conflict(
        log.append("crate.occ", Expected::Seq(other.seq), "occ-6", bytes("v3"))
            .await,
        other.seq,
        second.seq,
        "Seq(n) naming another subject's event",
    );
    assert_conflict(
        log.append(
            "crate.occ",
            Expected::Seq(second.seq + 100),
            "occ-7",
            bytes("v3"),
        )
        .await,
        second.seq + 100,
        second.seq,
        "Seq(n) beyond the head",
    );
    let third = append_ok(log, "crate.occ", Expected::Seq(second.seq), "occ-8", "v3").await;
    let any = append_ok(log, "crate.occ", Expected::Any, "occ-9", "v4").await;
    assert!(any.seq > third.seq);
    assert_eq!(log.last_seq("crate.occ").await.expect("last_seq"), any.seq);

    let events = log
        .read_subject("crate.occ", 0)
        .await
        .expect("read_subject");
    let ids: Vec<_> = events
        .iter()
        .map(|event| event.msg_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        ids,
        ["occ-1", "occ-3", "occ-8", "occ-9"],
        "rejected appends must not be stored"
    );
    assert_eq!(log.head().await.expect("head"), any.seq);
}

/// The message id is an idempotency key across the log: a repeated id returns the first
/// event's seq with `duplicate: true`, also when the expected sequence has gone stale since.
pub async fn idempotent_append(log: &dyn EventLog) {
    expect_empty(log).await;
    let a1 = append_ok(log, "crate.idem_a", Expected::Any, "idem-1", "a").await;
    let a2 = append_ok(log, "crate.idem_a", Expected::Any, "idem-1", "a").await;
    assert_eq!(
        a2,
        Appended {
            seq: a1.seq,
            duplicate: true
        },
        "repeat with Expected::Any"
    );

    let b1 = append_ok(log, "crate.idem_b", Expected::Seq(0), "idem-2", "b1").await;
    assert!(!b1.duplicate);
    // Retry of the same command: Seq(0) is stale now because of our own event.
    let b1_retry = append_ok(log, "crate.idem_b", Expected::Seq(0), "idem-2", "b1").await;
    assert_eq!(
        b1_retry,
        Appended {
            seq: b1.seq,
            duplicate: true
        },
        "retry with stale Seq(0)"
    );

    let b2 = append_ok(log, "crate.idem_b", Expected::Seq(b1.seq), "idem-3", "b2").await;
    // Retries after another event followed ours on the subject.
    let b1_late = append_ok(log, "crate.idem_b", Expected::Seq(0), "idem-2", "b1").await;
    assert_eq!(
        b1_late,
        Appended {
            seq: b1.seq,
            duplicate: true
        },
        "late retry of the first event"
    );
    let b2_retry = append_ok(log, "crate.idem_b", Expected::Seq(b1.seq), "idem-3", "b2").await;
    assert_eq!(
        b2_retry,
        Appended {
            seq: b2.seq,
            duplicate: true
        },
        "retry with stale Seq(n)"
    );
    let b2_any = append_ok(log, "crate.idem_b", Expected::Any, "idem-3", "b2").await;
    assert_eq!(
        b2_any,
        Appended {
            seq: b2.seq,
            duplicate: true
        },
        "retry with Expected::Any"
    );

    // Ids are unique across subjects.
    let cross = append_ok(log, "crate.idem_c", Expected::Any, "idem-1", "c").await;
    assert_eq!(
        cross,
        Appended {
            seq: a1.seq,
            duplicate: true
        },
        "id reused on another subject"
    );
    assert!(
        log.read_subject("crate.idem_c", 0)
            .await
            .expect("read_subject")
            .is_empty()
    );

    let b_events = log
        .read_subject("crate.idem_b", 0)
        .await
        .expect("read_subject");
    assert_eq!(
        b_events.iter().map(|event| event.seq).collect::<Vec<_>>(),
        [b1.seq, b2.seq],
        "duplicates must not be stored"
    );
    assert_eq!(log.head().await.expect("head"), 3, "three distinct events");
}

fn new_event(subject: &str, msg_id: &str, payload: &str) -> NewEvent {
    NewEvent::new(subject, msg_id, bytes(payload))
}

fn fresh(seq: u64) -> Appended {
    Appended {
        seq,
        duplicate: false,
    }
}

fn duplicate_of(seq: u64) -> Appended {
    Appended {
        seq,
        duplicate: true,
    }
}

/// `append_batch` stores events in batch order with consecutive sequences, dedupes ids
/// already in the log and ids repeated inside the batch, keeps per-subject order, wakes a
/// follower, rejects an invalid batch as a whole, and handles thousands of events (several
/// transactions or publish windows) in one call, idempotently when retried.
pub async fn append_batch(log: &dyn EventLog) {
    expect_empty(log).await;
    assert_eq!(
        log.append_batch(Vec::new()).await.expect("empty batch"),
        [],
        "an empty batch appends nothing"
    );
    let mut follower = log.read_from(1).await.expect("read_from(1)");
    assert!(
        next_event(&mut follower, QUIET).await.is_none(),
        "nothing to follow yet"
    );
    append_ok(log, "crate.batch_a", Expected::Any, "batch-0", "a0").await;

    let batch = vec![
        new_event("crate.batch_a", "batch-1", "a1"),
        new_event("crate.batch_b", "batch-2", "b1"),
        new_event("crate.batch_a", "batch-0", "already in the log"),
        new_event("crate.batch_a", "batch-3", "a2"),
        new_event("crate.batch_b", "batch-2", "repeated in the batch"),
        new_event("principal.p1", "batch-4", "p1"),
        new_event("crate.batch_b", "batch-5", "b2"),
    ];
    let appended = log.append_batch(batch).await.expect("append_batch");
    assert_eq!(
        appended,
        [
            fresh(2),
            fresh(3),
            duplicate_of(1),
            fresh(4),
            duplicate_of(3),
            fresh(5),
            fresh(6),
        ],
        "one result per event, in batch order"
    );
    assert_eq!(log.head().await.expect("head"), 6);
    for (subject, expected) in [
        (
            "crate.batch_a",
            vec![
                (1, "batch-0", "a0"),
                (2, "batch-1", "a1"),
                (4, "batch-3", "a2"),
            ],
        ),
        (
            "crate.batch_b",
            vec![(3, "batch-2", "b1"), (6, "batch-5", "b2")],
        ),
        ("principal.p1", vec![(5, "batch-4", "p1")]),
    ] {
        let events = log.read_subject(subject, 0).await.expect("read_subject");
        let got: Vec<_> = events
            .iter()
            .map(|event| {
                (
                    event.seq,
                    event.msg_id.clone().unwrap_or_default(),
                    event.payload.clone(),
                )
            })
            .collect();
        let want: Vec<_> = expected
            .into_iter()
            .map(|(seq, msg_id, payload)| (seq, msg_id.to_owned(), bytes(payload)))
            .collect();
        assert_eq!(got, want, "events of {subject}: duplicates are not stored");
        assert_eq!(
            log.last_seq(subject).await.expect("last_seq"),
            want.last().map_or(0, |event| event.0),
            "last_seq({subject})"
        );
    }
    for seq in 1..=6 {
        let event = next_event(&mut follower, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("the follower did not wake up for seq {seq}"));
        assert_eq!(event.seq, seq, "the follower sees the batch in order");
    }

    // One invalid event: nothing of the batch is stored.
    match log
        .append_batch(vec![
            new_event("crate.batch_a", "batch-invalid-1", "x"),
            new_event("crate.a b", "batch-invalid-2", "x"),
        ])
        .await
    {
        Err(AppendError::Invalid(_)) => {}
        other => panic!("a batch with an invalid subject: expected Invalid, got {other:?}"),
    }
    match log
        .append_batch(vec![new_event("crate.batch_a", "", "x")])
        .await
    {
        Err(AppendError::Invalid(_)) => {}
        other => panic!("a batch with an empty msg_id: expected Invalid, got {other:?}"),
    }
    assert_eq!(
        log.head().await.expect("head"),
        6,
        "invalid batches store nothing"
    );

    // A large batch over three subjects, then the same batch again.
    const LARGE: u64 = 6_000;
    let subjects = ["crate.bulk_x", "crate.bulk_y", "crate.bulk_z"];
    let large: Vec<NewEvent> = (0..LARGE)
        .map(|i| {
            new_event(
                subjects[(i % 3) as usize],
                &format!("bulk-{i}"),
                &format!("bulk {i}"),
            )
        })
        .collect();
    let appended = log.append_batch(large.clone()).await.expect("large batch");
    let want: Vec<Appended> = (0..LARGE).map(|i| fresh(7 + i)).collect();
    assert!(
        appended == want,
        "the large batch gets consecutive sequences from 7"
    );
    assert_eq!(log.head().await.expect("head"), 6 + LARGE);
    for i in 0..LARGE {
        let event = next_event(&mut follower, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("the follower did not get bulk-{i}"));
        assert_eq!(
            (event.seq, event.subject.as_str(), event.msg_id.as_deref()),
            (
                7 + i,
                subjects[(i % 3) as usize],
                Some(format!("bulk-{i}").as_str())
            ),
            "the large batch in order"
        );
    }
    let again = log.append_batch(large).await.expect("retried large batch");
    let want: Vec<Appended> = (0..LARGE).map(|i| duplicate_of(7 + i)).collect();
    assert!(
        again == want,
        "a retried batch is all duplicates of the first sequences"
    );
    assert_eq!(log.head().await.expect("head"), 6 + LARGE);
    assert!(
        next_event(&mut follower, QUIET).await.is_none(),
        "a retried batch stores nothing"
    );
}

/// Invalid subjects, message ids, queue names and queue configs are rejected as invalid.
pub async fn invalid_arguments(log: &dyn EventLog) {
    expect_empty(log).await;
    for subject in ["", "crate..x", "crate.", "crate.a b", "crate.*", "crate.>"] {
        match log.append(subject, Expected::Any, "id", bytes("x")).await {
            Err(AppendError::Invalid(_)) => {}
            other => panic!("append to {subject:?}: expected Invalid, got {other:?}"),
        }
        match log.read_subject(subject, 0).await {
            Err(LogError::Invalid(_)) => {}
            other => panic!("read_subject({subject:?}): expected Invalid, got {other:?}"),
        }
        match log.last_seq(subject).await {
            Err(LogError::Invalid(_)) => {}
            other => panic!("last_seq({subject:?}): expected Invalid, got {other:?}"),
        }
    }
    match log.append("crate.ok", Expected::Any, "", bytes("x")).await {
        Err(AppendError::Invalid(_)) => {}
        other => panic!("append with an empty msg_id: expected Invalid, got {other:?}"),
    }
    for name in ["", "a.b", "a b", "a*"] {
        match log.work_queue(name, WorkQueueConfig::default()).await {
            Err(LogError::Invalid(_)) => {}
            other => panic!("work_queue({name:?}): expected Invalid, got {other:?}"),
        }
    }
    let too_much_backoff = WorkQueueConfig {
        ack_wait: Duration::from_secs(1),
        max_deliver: 2,
        backoff: vec![Duration::from_secs(1), Duration::from_secs(2)],
    };
    match log.work_queue("backoff", too_much_backoff).await {
        Err(LogError::Invalid(_)) => {}
        other => panic!("backoff not shorter than max_deliver: expected Invalid, got {other:?}"),
    }
    assert_eq!(
        log.head().await.expect("head"),
        0,
        "nothing may have been appended"
    );
}

/// `read_subject` returns exactly the subject's events after `after_seq`, in order, also for
/// hundreds of events interleaved with other subjects.
pub async fn read_subject_after_seq(log: &dyn EventLog) {
    expect_empty(log).await;
    let mut a_events = Vec::new();
    let mut b_count = 0;
    for i in 0..400u64 {
        let subject = if i % 4 == 3 {
            "crate.many_b"
        } else {
            "crate.many_a"
        };
        let appended = append_ok(
            log,
            subject,
            Expected::Any,
            &format!("many-{i}"),
            &format!("e{i}"),
        )
        .await;
        if subject == "crate.many_a" {
            a_events.push((appended.seq, format!("many-{i}"), format!("e{i}")));
        } else {
            b_count += 1;
        }
    }
    assert_eq!(a_events.len(), 300);

    let all = log
        .read_subject("crate.many_a", 0)
        .await
        .expect("read_subject");
    assert_eq!(all.len(), 300, "all events of the subject");
    for (event, (seq, msg_id, payload)) in all.iter().zip(&a_events) {
        assert_eq!(event.seq, *seq);
        assert_eq!(event.subject, "crate.many_a");
        assert_eq!(event.msg_id.as_deref(), Some(msg_id.as_str()));
        assert_eq!(event.payload, bytes(payload.clone()));
    }

    let middle = a_events[149].0;
    let tail = log
        .read_subject("crate.many_a", middle)
        .await
        .expect("read_subject");
    assert_eq!(tail.len(), 150, "events after the 150th");
    assert_eq!(tail[0].seq, a_events[150].0);
    assert!(
        tail.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "in order"
    );

    // after_seq need not be one of the subject's own sequences.
    let b_seq = log
        .read_subject("crate.many_b", 0)
        .await
        .expect("read_subject");
    assert_eq!(b_seq.len(), b_count);
    let from_b = log
        .read_subject("crate.many_a", b_seq[0].seq)
        .await
        .expect("read_subject");
    assert_eq!(
        from_b.len(),
        297,
        "events of a after b's first event (seq 4)"
    );

    let last = a_events[299].0;
    assert!(
        log.read_subject("crate.many_a", last)
            .await
            .expect("read_subject")
            .is_empty()
    );
    assert!(
        log.read_subject("crate.unknown", 0)
            .await
            .expect("read_subject")
            .is_empty()
    );
    assert_eq!(log.last_seq("crate.many_a").await.expect("last_seq"), last);
}

/// `read_from` replays from 1 (or 0) and from the middle, in order, then waits and wakes up
/// for later appends.
pub async fn read_from_replays_and_follows(log: &dyn EventLog) {
    expect_empty(log).await;
    for i in 1..=5u64 {
        let subject = format!("crate.follow{}", i % 2);
        append_ok(
            log,
            &subject,
            Expected::Any,
            &format!("follow-{i}"),
            &format!("f{i}"),
        )
        .await;
    }
    for from in [0, 1] {
        let mut events = log.read_from(from).await.expect("read_from");
        for seq in 1..=5 {
            let event = next_event(&mut events, PATIENCE)
                .await
                .unwrap_or_else(|| panic!("read_from({from}) did not deliver seq {seq}"));
            assert_eq!(event.seq, seq, "read_from({from}) order");
            assert_eq!(event.payload, bytes(format!("f{seq}")));
        }
    }

    let mut middle = log.read_from(3).await.expect("read_from(3)");
    for seq in 3..=5 {
        let event = next_event(&mut middle, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("read_from(3) did not deliver seq {seq}"));
        assert_eq!(event.seq, seq, "read_from(3) order");
        assert_eq!(event.subject, format!("crate.follow{}", seq % 2));
    }
    assert!(
        next_event(&mut middle, QUIET).await.is_none(),
        "read_from must wait when caught up"
    );
    let mut future = log.read_from(7).await.expect("read_from beyond the head");

    let sixth = append_ok(log, "crate.late", Expected::Any, "follow-6", "f6").await;
    assert_eq!(sixth.seq, 6);
    let event = next_event(&mut middle, PATIENCE)
        .await
        .expect("read_from must wake up for a later append");
    assert_eq!((event.seq, event.subject.as_str()), (6, "crate.late"));

    let seventh = append_ok(log, "crate.late", Expected::Any, "follow-7", "f7").await;
    assert_eq!(seventh.seq, 7);
    let event = next_event(&mut future, PATIENCE)
        .await
        .expect("read_from(head + 2) must deliver the event once it exists");
    assert_eq!(event.seq, 7, "read_from(7) starts at 7");
    let event = next_event(&mut middle, PATIENCE)
        .await
        .expect("seq 7 on the first stream");
    assert_eq!(event.seq, 7);
}

/// A single consumer gets every event once, in log order, attempt 1; acked events are not
/// redelivered after the ack wait; `pending` counts undelivered and unacked events.
pub async fn work_queue_ack(log: &dyn EventLog) {
    expect_empty(log).await;
    for i in 1..=3 {
        append_ok(
            log,
            &format!("crate.wq{}", i % 2),
            Expected::Any,
            &format!("wq-{i}"),
            "w",
        )
        .await;
    }
    let mut queue = open_queue(log, "acker", queue_config(Duration::from_secs(1), 5)).await;
    assert_eq!(
        queue.pending().await.expect("pending"),
        3,
        "pending before any delivery"
    );
    for seq in 1..=3 {
        let delivery = expect_delivery(queue.as_mut(), "ack").await;
        assert_eq!(delivery.event.seq, seq, "deliveries in log order");
        assert_eq!(
            delivery.event.msg_id.as_deref(),
            Some(format!("wq-{seq}").as_str())
        );
        assert_eq!(delivery.attempt, 1);
        assert!(!delivery.is_last_attempt);
        delivery.in_progress().await.expect("in_progress");
        delivery.ack().await.expect("ack");
    }
    assert_eq!(
        queue.pending().await.expect("pending"),
        0,
        "pending after acks"
    );
    expect_no_delivery(queue.as_mut(), Duration::from_millis(2500), "acked events").await;

    let fourth = append_ok(log, "crate.wq_late", Expected::Any, "wq-4", "w").await;
    let delivery = expect_delivery(queue.as_mut(), "event appended later").await;
    assert_eq!(delivery.event.seq, fourth.seq);
    delivery.ack().await.expect("ack");
}

/// `nak` redelivers (at once, or after the given delay) with increasing attempt numbers.
pub async fn work_queue_nak_redelivers(log: &dyn EventLog) {
    expect_empty(log).await;
    let event = append_ok(log, "crate.nak", Expected::Any, "nak-1", "n").await;
    let mut queue = open_queue(log, "naker", queue_config(Duration::from_secs(30), 10)).await;

    let first = expect_delivery(queue.as_mut(), "first delivery").await;
    assert_eq!((first.event.seq, first.attempt), (event.seq, 1));
    first.nak(Duration::ZERO).await.expect("nak");

    let started = Instant::now();
    let second = expect_delivery(queue.as_mut(), "redelivery after nak").await;
    assert_eq!((second.event.seq, second.attempt), (event.seq, 2));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a nak without delay redelivers at once, not after the ack wait"
    );
    let delay = Duration::from_millis(600);
    let naked_at = Instant::now();
    second.nak(delay).await.expect("nak with delay");
    let third = expect_delivery(queue.as_mut(), "redelivery after delayed nak").await;
    let waited = naked_at.elapsed();
    assert_eq!((third.event.seq, third.attempt), (event.seq, 3));
    assert!(
        waited >= delay.mul_f32(0.8),
        "a nak with a {delay:?} delay redelivered after only {waited:?}"
    );
    third.ack().await.expect("ack");
    expect_no_delivery(queue.as_mut(), QUIET, "after ack").await;
    assert_eq!(queue.pending().await.expect("pending"), 0);
}

/// Unacked deliveries come back after the ack wait; the delivery reaching `max_deliver` has
/// `is_last_attempt`, and after it the event is not delivered again, while later events are.
pub async fn work_queue_max_deliver(log: &dyn EventLog) {
    expect_empty(log).await;
    let event = append_ok(log, "crate.poison", Expected::Any, "poison-1", "p").await;
    let mut queue = open_queue(log, "maxer", queue_config(Duration::from_secs(1), 3)).await;

    let first = expect_delivery(queue.as_mut(), "first delivery").await;
    assert_eq!(
        (first.event.seq, first.attempt, first.is_last_attempt),
        (event.seq, 1, false)
    );
    drop(first); // not settled: comes back after the ack wait
    let second = expect_delivery(queue.as_mut(), "redelivery after the ack wait").await;
    assert_eq!(
        (second.event.seq, second.attempt, second.is_last_attempt),
        (event.seq, 2, false)
    );
    second.nak(Duration::ZERO).await.expect("nak");
    let third = expect_delivery(queue.as_mut(), "last delivery").await;
    assert_eq!(
        (third.event.seq, third.attempt, third.is_last_attempt),
        (event.seq, 3, true)
    );
    third
        .nak(Duration::ZERO)
        .await
        .expect("nak of the last attempt");
    expect_no_delivery(
        queue.as_mut(),
        Duration::from_millis(2500),
        "after max_deliver",
    )
    .await;

    let next = append_ok(log, "crate.poison", Expected::Any, "poison-2", "p").await;
    let delivery = expect_delivery(queue.as_mut(), "an event after a poisoned one").await;
    assert_eq!((delivery.event.seq, delivery.attempt), (next.seq, 1));
    delivery.term().await.expect("term");
    expect_no_delivery(queue.as_mut(), Duration::from_millis(2500), "after term").await;
}

/// A queue reopened under the same name resumes: acked events are never delivered again,
/// the rest are (an event in flight at the drop may come back after the ack wait).
pub async fn work_queue_resume(log: &dyn EventLog) {
    expect_empty(log).await;
    for i in 1..=6 {
        append_ok(
            log,
            "crate.resume",
            Expected::Any,
            &format!("resume-{i}"),
            "r",
        )
        .await;
    }
    let config = queue_config(Duration::from_secs(1), 10);
    let mut queue = open_queue(log, "resumer", config.clone()).await;
    for seq in 1..=2 {
        let delivery = expect_delivery(queue.as_mut(), "before the restart").await;
        assert_eq!(delivery.event.seq, seq);
        delivery.ack().await.expect("ack");
    }
    drop(queue);

    let mut queue = open_queue(log, "resumer", config).await;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 4 {
        let wait = deadline.saturating_duration_since(Instant::now());
        let delivery = next_delivery(queue.as_mut(), wait)
            .await
            .unwrap_or_else(|| panic!("after the restart only {seen:?} were delivered"));
        let seq = delivery.event.seq;
        assert!(
            seq >= 3,
            "acked seq {seq} was delivered again after the restart"
        );
        seen.insert(seq);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [3, 4, 5, 6]);
    expect_no_delivery(
        queue.as_mut(),
        Duration::from_millis(2500),
        "after all acks",
    )
    .await;
}

/// Two instances of one queue share the work: every event is processed exactly once
/// (no redelivery happens within the ack wait) and both instances get some.
pub async fn work_queue_competing(log: &dyn EventLog) {
    expect_empty(log).await;
    const EVENTS: u64 = 40;
    let config = queue_config(Duration::from_secs(30), 5);
    let queues = [
        open_queue(log, "competing", config.clone()).await,
        open_queue(log, "competing", config).await,
    ];
    let processed: Arc<Mutex<Vec<(usize, u64, u64)>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> = queues
        .into_iter()
        .enumerate()
        .map(|(worker, mut queue)| {
            let processed = processed.clone();
            tokio::spawn(async move {
                loop {
                    let done = processed.lock().expect("lock").len() as u64 >= EVENTS;
                    if done || Instant::now() >= deadline {
                        return;
                    }
                    let Some(delivery) =
                        next_delivery(queue.as_mut(), Duration::from_millis(300)).await
                    else {
                        continue;
                    };
                    // Simulated work, so the other instance gets its share.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    processed.lock().expect("lock").push((
                        worker,
                        delivery.event.seq,
                        delivery.attempt,
                    ));
                    delivery.ack().await.expect("ack");
                }
            })
        })
        .collect();
    for i in 1..=EVENTS {
        append_ok(
            log,
            &format!("crate.job{}", i % 7),
            Expected::Any,
            &format!("job-{i}"),
            "j",
        )
        .await;
    }
    for worker in join_all(workers).await {
        worker.expect("worker task");
    }

    let processed = processed.lock().expect("lock").clone();
    let mut per_seq: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, seq, _) in &processed {
        *per_seq.entry(*seq).or_default() += 1;
    }
    let duplicates: Vec<_> = per_seq.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        duplicates.is_empty(),
        "events processed twice: {duplicates:?}"
    );
    assert_eq!(
        per_seq.keys().copied().collect::<Vec<_>>(),
        (1..=EVENTS).collect::<Vec<_>>(),
        "every event processed"
    );
    let per_worker = [0, 1].map(|worker| processed.iter().filter(|(w, ..)| *w == worker).count());
    assert!(
        per_worker.iter().all(|count| *count > 0),
        "both instances must get work, got {per_worker:?}"
    );
    assert!(
        processed.iter().all(|(_, _, attempt)| *attempt == 1),
        "no redeliveries expected"
    );
}

/// In-progress signals keep a delivery claimed past its ack wait: a second instance gets
/// nothing while they come; once they stop, the event is redelivered after the ack wait.
pub async fn work_queue_in_progress(log: &dyn EventLog) {
    expect_empty(log).await;
    let event = append_ok(log, "crate.long", Expected::Any, "long-1", "l").await;
    let config = queue_config(Duration::from_secs(1), 0);
    let mut first = open_queue(log, "progress", config.clone()).await;
    let mut second = open_queue(log, "progress", config).await;
    let delivery = expect_delivery(first.as_mut(), "first delivery").await;
    assert_eq!((delivery.event.seq, delivery.attempt), (event.seq, 1));
    // Only `second` may receive a redelivery from here on.
    drop(first);
    // Three ack waits of work, signalling every third of one.
    let working = async {
        for _ in 0..9 {
            tokio::time::sleep(Duration::from_millis(333)).await;
            delivery.in_progress().await.expect("in_progress");
        }
    };
    let (stolen, ()) = tokio::join!(
        next_delivery(second.as_mut(), Duration::from_millis(3000)),
        working
    );
    if let Some(stolen) = stolen {
        panic!(
            "a delivery kept in progress was handed out again (seq {}, attempt {})",
            stolen.event.seq, stolen.attempt
        );
    }
    drop(delivery); // abandoned without settling: comes back after the ack wait
    let again = expect_delivery(second.as_mut(), "redelivery once the signals stop").await;
    assert_eq!((again.event.seq, again.attempt), (event.seq, 2));
    again.ack().await.expect("ack");
}

/// 8 concurrent `Seq(0)` appends to one new subject: exactly one wins, the others conflict
/// with the winner's seq; repeated 20 times.
pub async fn concurrent_first_append(log: &dyn EventLog) {
    expect_empty(log).await;
    for round in 0..20 {
        let subject = format!("crate.race{round}");
        let attempts = (0..8).map(|racer| {
            let subject = subject.clone();
            async move {
                let msg_id = format!("race-{round}-{racer}");
                let result = log
                    .append(&subject, Expected::Seq(0), &msg_id, bytes(msg_id.clone()))
                    .await;
                (msg_id, result)
            }
        });
        let results = join_all(attempts).await;
        let winners: Vec<_> = results
            .iter()
            .filter_map(|(msg_id, result)| result.as_ref().ok().map(|appended| (msg_id, *appended)))
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner, got {results:?}"
        );
        let (winner_id, winner) = winners[0];
        assert!(
            !winner.duplicate,
            "round {round}: the winner is no duplicate"
        );
        for (msg_id, result) in &results {
            if msg_id == winner_id {
                continue;
            }
            match result {
                Err(AppendError::Conflict {
                    expected: 0,
                    actual,
                }) if *actual == winner.seq => {}
                other => panic!(
                    "round {round}: loser {msg_id} must conflict with actual {}, got {other:?}",
                    winner.seq
                ),
            }
        }
        let stored = log.read_subject(&subject, 0).await.expect("read_subject");
        assert_eq!(stored.len(), 1, "round {round}: one stored event");
        assert_eq!(stored[0].msg_id.as_deref(), Some(winner_id.as_str()));
    }
    assert_eq!(log.head().await.expect("head"), 20);
}

/// 10 concurrent writers each append 50 events to their own subject, each with the previous
/// event's seq as the expected one: no conflicts, all events present, in order.
pub async fn concurrent_chains(log: &dyn EventLog) {
    expect_empty(log).await;
    const WRITERS: usize = 10;
    const EVENTS: usize = 50;
    let chains = (0..WRITERS).map(|writer| async move {
        let subject = format!("crate.chain{writer}");
        let mut expected = Expected::Seq(0);
        let mut seqs = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let msg_id = format!("chain-{writer}-{i}");
            let appended = log
                .append(&subject, expected, &msg_id, bytes(format!("{writer}:{i}")))
                .await
                .unwrap_or_else(|err| panic!("{subject} append {i} failed: {err}"));
            assert!(!appended.duplicate, "{subject} append {i} is no duplicate");
            expected = Expected::Seq(appended.seq);
            seqs.push(appended.seq);
        }
        (subject, seqs)
    });
    let results = join_all(chains).await;
    for (writer, (subject, seqs)) in results.iter().enumerate() {
        let stored = log.read_subject(subject, 0).await.expect("read_subject");
        assert_eq!(stored.len(), EVENTS, "{subject}: all events present");
        for (i, event) in stored.iter().enumerate() {
            assert_eq!(event.seq, seqs[i], "{subject}: event {i} seq");
            assert_eq!(
                event.payload,
                bytes(format!("{writer}:{i}")),
                "{subject}: event {i} order"
            );
        }
    }
    assert_eq!(log.head().await.expect("head"), (WRITERS * EVENTS) as u64);
}

/// Notifications reach subscribers of their topic, in publish order, and only them.
pub async fn notifier_roundtrip(notifier: &dyn Notifier) {
    let mut changed = notifier
        .subscribe("index.changed")
        .await
        .expect("subscribe");
    let mut other = notifier.subscribe("index.other").await.expect("subscribe");
    for i in 0..3 {
        notifier
            .notify("index.changed", bytes(format!("crate-{i}")))
            .await
            .expect("notify");
    }
    for i in 0..3 {
        let payload = timeout(PATIENCE, changed.next())
            .await
            .unwrap_or_else(|_| panic!("notification {i} not received"))
            .expect("subscription ended");
        assert_eq!(payload, bytes(format!("crate-{i}")), "notification order");
    }
    assert!(
        timeout(QUIET, other.next()).await.is_err(),
        "a subscriber of another topic must not receive the notification"
    );
    for topic in ["", "a b", "index.*", "index.>", "index..x"] {
        match notifier.notify(topic, bytes("x")).await {
            Err(LogError::Invalid(_)) => {}
            other => panic!("notify({topic:?}): expected Invalid, got {other:?}"),
        }
        match notifier.subscribe(topic).await {
            Err(LogError::Invalid(_)) => {}
            Err(other) => panic!("subscribe({topic:?}): expected Invalid, got {other:?}"),
            Ok(_) => panic!("subscribe({topic:?}): expected Invalid, got a subscription"),
        }
    }
}
