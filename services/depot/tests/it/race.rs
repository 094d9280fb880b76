//! Concurrency: of N concurrent publishes of one new version, exactly one wins.

use std::sync::Arc;

use crate::support::{Setup, TestDepot, crate_bytes, metadata, publish_body};

async fn eight_concurrent_publishes_one_winner(setup: Setup) {
    let depot = Arc::new(TestDepot::start_on(setup, &[]).await);
    let token = Arc::new(depot.token("alice").await);
    for round in 0..10 {
        let vers = format!("1.0.{round}");
        let head = depot.log_head().await;
        let mut tasks = Vec::new();
        for publisher in 0..8 {
            let depot = Arc::clone(&depot);
            let token = Arc::clone(&token);
            let vers = vers.clone();
            tasks.push(tokio::spawn(async move {
                // Different bytes per publisher: only one may own the version.
                let body = publish_body(
                    &metadata("racy", &vers),
                    &crate_bytes("racy", &vers, &format!("publisher {publisher}")),
                );
                depot.publish_raw(&token, body).await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            let (status, json) = task.await.unwrap();
            match status {
                200 => wins += 1,
                409 => assert!(json.to_string().contains("already uploaded"), "{json}"),
                other => panic!("unexpected status {other}: {json}"),
            }
        }
        assert_eq!(wins, 1, "round {round}: exactly one publish must win");
        assert_eq!(
            depot.log_head().await,
            head + 2,
            "round {round}: one upload and one acceptance"
        );
        let (_, index) = depot.index_file("racy").await;
        assert_eq!(index.lines().count(), round + 1, "{index}");
    }

    // Identical bytes from 8 publishers: all succeed, one upload recorded.
    let head = depot.log_head().await;
    let body = publish_body(
        &metadata("racy", "2.0.0"),
        &crate_bytes("racy", "2.0.0", "same"),
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let depot = Arc::clone(&depot);
        let token = Arc::clone(&token);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            depot.publish_raw(&token, body).await
        }));
    }
    for task in tasks {
        let (status, json) = task.await.unwrap();
        assert_eq!(status, 200, "{json}");
    }
    assert_eq!(depot.log_head().await, head + 2);
}

on_both_setups!(eight_concurrent_publishes_one_winner);
