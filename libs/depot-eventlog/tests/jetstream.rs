//! The JetStream event log against a real nats-server (≥ 2.11, JetStream enabled).
//!
//! Set `DEPOT_TEST_NATS_URL` (e.g. `nats://127.0.0.1:14222`); the tests fail without it.
//! Each test uses its own stream and subject prefix and deletes the stream at the end.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use depot_eventlog::{
    ConnectError, EventLog, Expected, JetStreamConfig, JetStreamLog, Notifier, conformance,
};

fn nats_url() -> String {
    std::env::var("DEPOT_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "DEPOT_TEST_NATS_URL is not set: point it at a nats-server >= 2.11 with JetStream \
             (e.g. nats://127.0.0.1:14222); these tests never skip"
        )
    })
}

fn unique_config() -> JetStreamConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    JetStreamConfig {
        stream: format!("T_{id}"),
        subject_prefix: format!("t{id}"),
        ..JetStreamConfig::new(nats_url())
    }
}

async fn raw_jetstream() -> jetstream::Context {
    let client = async_nats::connect(nats_url())
        .await
        .expect("connecting to DEPOT_TEST_NATS_URL");
    jetstream::new(client)
}

#[expect(
    clippy::print_stderr,
    reason = "test cleanup reports leftovers without failing"
)]
async fn delete_stream(name: &str) {
    // Leftovers are tolerated: a failure here only leaves a stream behind.
    if let Err(err) = raw_jetstream().await.delete_stream(name).await {
        eprintln!("could not delete test stream {name}: {err}");
    }
}

/// Runs `case` against a fresh log, deletes the stream, then re-raises any panic.
async fn with_fresh_log<F, Fut>(case: F)
where
    F: FnOnce(Arc<JetStreamLog>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let config = unique_config();
    let log = JetStreamLog::connect(&config)
        .await
        .unwrap_or_else(|err| panic!("connect: {err}"));
    let result = tokio::spawn(case(Arc::new(log))).await;
    delete_stream(&config.stream).await;
    if let Err(err) = result {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("test task failed: {err}"),
        }
    }
}

macro_rules! conformance_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                with_fresh_log(|log| async move {
                    conformance::$case(log.as_ref()).await;
                })
                .await;
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
    with_fresh_log(|log| async move {
        let notifier = log.notifier();
        conformance::notifier_roundtrip(&notifier).await;
    })
    .await;
}

#[tokio::test]
async fn notifications_are_not_stored_in_the_stream() {
    with_fresh_log(|log| async move {
        let notifier = log.notifier();
        let mut subscription = notifier.subscribe("cache.crate").await.expect("subscribe");
        notifier
            .notify("cache.crate", Bytes::from_static(b"serde"))
            .await
            .expect("notify");
        futures::StreamExt::next(&mut subscription)
            .await
            .expect("notification");
        assert_eq!(log.head().await.expect("head"), 0);
    })
    .await;
}

#[tokio::test]
async fn connect_fails_fast_when_unreachable() {
    let config = JetStreamConfig::new("nats://127.0.0.1:1");
    let started = Instant::now();
    let err = JetStreamLog::connect(&config)
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("nats://127.0.0.1:1"), "{message}");
}

#[tokio::test]
async fn created_stream_is_immutable() {
    let config = unique_config();
    let log = JetStreamLog::connect(&config).await.expect("connect");
    let appended = log
        .append("crate.a", Expected::Any, "m1", Bytes::from_static(b"x"))
        .await
        .expect("append");

    let js = raw_jetstream().await;
    let mut stream = js.get_stream(&config.stream).await.expect("stream");
    let info = stream.info().await.expect("info").clone();
    let actual = info.config;
    assert!(actual.deny_delete && actual.deny_purge && actual.allow_direct);
    assert!(!actual.allow_rollup);
    assert_eq!(actual.storage, jetstream::stream::StorageType::File);
    assert_eq!(actual.retention, jetstream::stream::RetentionPolicy::Limits);
    assert_eq!(actual.discard, jetstream::stream::DiscardPolicy::New);
    assert_eq!(
        actual.subjects,
        [format!("{}.events.>", config.subject_prefix)]
    );
    assert_eq!(actual.max_age, Duration::ZERO);
    assert_eq!(
        (
            actual.max_messages,
            actual.max_bytes,
            actual.max_messages_per_subject
        ),
        (-1, -1, -1)
    );
    assert_eq!(actual.duplicate_window, config.duplicate_window);
    assert!(
        stream.delete_message(appended.seq).await.is_err(),
        "delete must be denied"
    );
    assert!(stream.purge().await.is_err(), "purge must be denied");

    // A second start verifies and accepts the existing stream.
    let again = JetStreamLog::connect(&config).await.expect("reconnect");
    assert_eq!(
        again.last_seq("crate.a").await.expect("last_seq"),
        appended.seq
    );
    delete_stream(&config.stream).await;
}

#[tokio::test]
async fn refuses_a_drifted_stream() {
    let config = unique_config();
    let js = raw_jetstream().await;
    js.create_stream(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.events.>", config.subject_prefix)],
        max_age: Duration::from_secs(3600),
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("create a drifted stream");
    let result = JetStreamLog::connect(&config).await;
    delete_stream(&config.stream).await;
    let err = result.expect_err("a drifted stream must be refused");
    let message = err.to_string();
    assert!(matches!(err, ConnectError::StreamDrift { .. }), "{err:?}");
    assert!(message.contains("deny_purge"), "{message}");
    assert!(message.contains("max_age"), "{message}");
}

/// The R1 behaviour EVENTING.md §0.3 describes: a retry of a landed OCC write is answered
/// with "wrong last sequence" by the server; the log must still report a duplicate.
#[tokio::test]
async fn landed_retry_is_a_duplicate_on_r1() {
    with_fresh_log(|log| async move {
        let first = log
            .append(
                "crate.r1",
                Expected::Seq(0),
                "landed",
                Bytes::from_static(b"x"),
            )
            .await
            .expect("append");
        // Raw publish of the same retry, to observe the server's own answer.
        let js = raw_jetstream().await;
        let subject = format!("{}.events.crate.r1", log.subject_prefix());
        let raw = js
            .send_publish(
                subject,
                jetstream::message::PublishMessage::build()
                    .payload(Bytes::from_static(b"x"))
                    .message_id("landed")
                    .expected_last_subject_sequence(0),
            )
            .await
            .expect("send")
            .await;
        // 2.11+ on R1: the subject check runs before dedupe (a replicated stream, or
        // 2.9.10, would answer `duplicate: true` instead).
        let server_says_conflict = matches!(
            &raw,
            Err(err) if err.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
        );
        let server_says_duplicate = matches!(&raw, Ok(ack) if ack.duplicate);
        assert!(
            server_says_conflict || server_says_duplicate,
            "unexpected server answer to a landed retry: {raw:?}"
        );
        let retry = log
            .append(
                "crate.r1",
                Expected::Seq(0),
                "landed",
                Bytes::from_static(b"x"),
            )
            .await
            .expect("retry");
        assert_eq!((retry.seq, retry.duplicate), (first.seq, true));
    })
    .await;
}
