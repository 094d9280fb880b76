//! `PrivateNatsCluster`: three nats-servers form a JetStream cluster, an R3 stream created on it
//! with async-nats keeps accepting publishes after its leader is killed, and the killed server
//! rejoins and catches up. A client given every server's URL survives the death of the server it
//! is connected to, and connects when the first URL it is given is dead.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use depot_testkit::PrivateNatsCluster;

const STREAM: &str = "CLUSTER_SELF_CHECK";
/// Publishes before and after the leader is killed.
const BEFORE: usize = 10;
const AFTER: usize = 20;
/// Publishes after the server the client is connected to is killed.
const AFTER_DISCONNECT: usize = 10;
/// Bound on everything after the kill: the election and all later publishes.
const AFTER_KILL: Duration = Duration::from_secs(30);

/// Publishes message `n` (with a message id, so a retry that already landed is a duplicate)
/// until it is acknowledged or `deadline` passes; returns the number of failed attempts.
async fn publish_until_acked(js: &jetstream::Context, n: usize, deadline: Instant) -> usize {
    let mut failures = 0;
    loop {
        let publish = PublishMessage::build()
            .payload(format!("message {n}").into())
            .message_id(format!("m{n}"));
        let error = match js.send_publish(format!("cluster.check.{n}"), publish).await {
            Ok(ack) => match ack.await {
                Ok(_) => return failures,
                Err(err) => err.to_string(),
            },
            Err(err) => err.to_string(),
        };
        failures += 1;
        assert!(
            Instant::now() < deadline,
            "publish {n} still failing after {AFTER_KILL:?} since the kill: {error}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_r3_stream_keeps_accepting_publishes_when_its_leader_is_killed() {
    let started = Instant::now();
    let mut cluster = PrivateNatsCluster::start(3);
    let formed = started.elapsed();
    assert_eq!(cluster.size(), 3);
    assert_eq!(cluster.url().split(',').count(), 3, "{}", cluster.url());

    let client = async_nats::connect(cluster.urls())
        .await
        .expect("connect to the cluster");
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    // Creating an R3 stream is a proposal to the meta group and placement on three servers:
    // on a loaded machine it can take longer than a publish may.
    let setup = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(20))
        .build(client.clone());
    let mut created = setup
        .create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["cluster.check.>".to_owned()],
            storage: stream::StorageType::File,
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("create an R3 stream");
    let info = created.info().await.expect("stream info").clone();
    assert_eq!(info.config.num_replicas, 3);
    let peers = info.cluster.as_ref().expect("cluster info");
    assert_eq!(peers.name.as_deref(), Some("depot"));
    assert_eq!(peers.replicas.len(), 2, "two followers: {peers:?}");

    let deadline = Instant::now() + AFTER_KILL;
    for n in 0..BEFORE {
        assert_eq!(publish_until_acked(&js, n, deadline).await, 0);
    }

    let leader = cluster
        .stream_leader(STREAM)
        .expect("the stream has a leader");
    let killed = cluster.server_name(leader).to_owned();
    tokio::task::block_in_place(|| cluster.kill(leader));
    assert!(!cluster.is_running(leader));
    let killed_at = Instant::now();
    let deadline = killed_at + AFTER_KILL;
    let mut failures = 0;
    let mut first_ack_after = None;
    for n in BEFORE..BEFORE + AFTER {
        failures += publish_until_acked(&js, n, deadline).await;
        first_ack_after.get_or_insert_with(|| killed_at.elapsed());
    }

    let mut stream = js.get_stream(STREAM).await.expect("the stream");
    let info = stream.info().await.expect("stream info after the kill");
    assert_eq!(info.state.messages, (BEFORE + AFTER) as u64);
    let new_leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
    assert!(
        new_leader.is_some() && new_leader.as_deref() != Some(killed.as_str()),
        "leader after the kill: {new_leader:?}"
    );

    tokio::task::block_in_place(|| cluster.start_again(leader));
    let restarted_at = Instant::now();
    let caught_up = loop {
        let detail = cluster.stream_detail(leader, STREAM);
        let messages = detail.as_ref().map(|d| d["state"]["messages"].clone());
        if messages == Some(serde_json::json!(BEFORE + AFTER)) {
            break restarted_at.elapsed();
        }
        assert!(
            restarted_at.elapsed() < AFTER_KILL,
            "{killed} did not catch up within {AFTER_KILL:?} after its restart: {detail:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(cluster.server_log(leader).contains("Server is ready"));

    // The server the client is connected to dies: the client reconnects to another one of the
    // URLs it was given, and publishing goes on.
    let connected = client.server_info().server_name;
    let victim = cluster
        .index_of(&connected)
        .expect("connected to a server of the cluster");
    tokio::task::block_in_place(|| cluster.kill(victim));
    let disconnected_at = Instant::now();
    let deadline = disconnected_at + AFTER_KILL;
    let mut failures_after_disconnect = 0;
    for n in BEFORE + AFTER..BEFORE + AFTER + AFTER_DISCONNECT {
        failures_after_disconnect += publish_until_acked(&js, n, deadline).await;
    }
    let resumed = disconnected_at.elapsed();
    let reconnected = client.server_info().server_name;
    assert_ne!(
        reconnected, connected,
        "still connected to the killed server"
    );

    // A new client whose first URL is the dead server (tried first) connects to another one.
    let mut urls = cluster.urls();
    urls.swap(0, victim);
    let fresh = async_nats::ConnectOptions::new()
        .retain_servers_order()
        .connect(urls.clone())
        .await
        .unwrap_or_else(|e| panic!("connect with {urls:?} while {connected} is down: {e}"));
    assert_ne!(fresh.server_info().server_name, connected);
    let fresh_js = jetstream::new(fresh);
    let total = BEFORE + AFTER + AFTER_DISCONNECT + 1;
    publish_until_acked(&fresh_js, total - 1, Instant::now() + AFTER_KILL).await;
    let info = fresh_js
        .get_stream(STREAM)
        .await
        .expect("the stream")
        .info()
        .await
        .expect("stream info")
        .clone();
    assert_eq!(info.state.messages, total as u64);
    tokio::task::block_in_place(|| cluster.start_again(victim));

    let report = format!(
        "cluster formed in {formed:?}; killed leader {killed}; first ack {first_ack_after:?} \
         after the kill; {failures} failed attempts; new leader {new_leader:?}; {killed} \
         caught up {caught_up:?} after its restart; killed {connected} (the client's \
         server): publishing resumed within {resumed:?} on {reconnected} with \
         {failures_after_disconnect} failed attempts; total {:?}",
        started.elapsed()
    );
    report_figures(&report);
}

#[expect(clippy::print_stderr, reason = "the figures of the run")]
fn report_figures(report: &str) {
    eprintln!("nats cluster: {report}");
}
