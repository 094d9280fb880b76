//! Publishing in dependency order with C concurrent publishers.
//!
//! A unit (crate version) is started only once every prerequisite was acknowledged by the
//! registry (publish answered 2xx); the lowest-numbered ready unit goes first. Each publisher
//! builds its `.crate` on a blocking thread, sends it, acknowledges, then polls the index until
//! the version is visible, measuring publish latency (request → response) and visibility
//! (publish start → seen, response → seen). A unit whose prerequisite failed is skipped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Ctx, Published, bump, wait_for_line};
use crate::client::is_retryable;
use crate::generate::LARGE_CRATE;
use crate::stats::Op;

/// Pause before sending a publish again (`--publish-retries`).
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Publishes every planned unit. Returns, per unit, what the registry acknowledged.
pub async fn run(ctx: &Arc<Ctx>) -> Vec<Option<Published>> {
    let units = &ctx.plan.units;
    let n = units.len();
    let mut waiting: Vec<usize> = units.iter().map(|u| u.prereqs.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (id, unit) in units.iter().enumerate() {
        for &p in &unit.prereqs {
            dependents[p].push(id);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&id| waiting[id] == 0).map(Reverse).collect();

    let bar = ctx.progress.bar(n as u64, "publish");
    let started = Instant::now();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(usize, Option<Published>)>();
    let mut tasks = JoinSet::new();
    let mut task_units = HashMap::new();
    let mut acked = vec![false; n];
    let mut published: Vec<Option<Published>> = vec![None; n];

    // Handles one acknowledgement: record it and release the dependents.
    let mut on_ack = |unit: usize,
                      result: Option<Published>,
                      acked: &mut Vec<bool>,
                      ready: &mut BinaryHeap<Reverse<usize>>| {
        acked[unit] = true;
        if let Some(p) = result {
            published[unit] = Some(p);
            for &d in &dependents[unit] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
    };

    loop {
        while tasks.len() < ctx.config.concurrency {
            let Some(Reverse(unit)) = ready.pop() else {
                break;
            };
            let handle = tasks.spawn(publish_one(Arc::clone(ctx), unit, ack_tx.clone()));
            task_units.insert(handle.id(), unit);
        }
        if tasks.is_empty() {
            // Every acknowledgement was sent before its task ended.
            while let Ok((unit, result)) = ack_rx.try_recv() {
                on_ack(unit, result, &mut acked, &mut ready);
            }
            if ready.is_empty() {
                break;
            }
            continue;
        }
        tokio::select! {
            biased;
            Some((unit, result)) = ack_rx.recv() => on_ack(unit, result, &mut acked, &mut ready),
            Some(joined) = tasks.join_next_with_id() => {
                // Take acknowledgements sent before the task ended first.
                while let Ok((unit, result)) = ack_rx.try_recv() {
                    on_ack(unit, result, &mut acked, &mut ready);
                }
                let (id, panic) = match joined {
                    Ok((id, ())) => (id, None),
                    Err(e) => (e.id(), Some(e.to_string())),
                };
                if let Some(unit) = task_units.remove(&id)
                    && !acked[unit]
                {
                    // Only a panic ends a task without an acknowledgement.
                    let op = class_op(ctx.plan.units[unit].target_size, Op::PublishSmall, Op::PublishLarge);
                    ctx.stats.error(op, format!("publisher failed: {}", panic.unwrap_or_default()));
                    on_ack(unit, None, &mut acked, &mut ready);
                }
                bar.inc(1);
            }
        }
    }
    bar.finish();
    let wall = started.elapsed();
    for op in [
        Op::PublishSmall,
        Op::PublishLarge,
        Op::VisibleSmall,
        Op::VisibleLarge,
        Op::VisibleAfterResponse,
    ] {
        ctx.stats.set_wall(op, wall);
    }
    let skipped = acked.iter().filter(|&&a| !a).count();
    if skipped > 0 {
        ctx.counters
            .skipped
            .fetch_add(skipped as u64, std::sync::atomic::Ordering::Relaxed);
        ctx.progress.note(&format!(
            "{skipped} versions were not published because a dependency failed"
        ));
    }
    published
}

/// `small` below [`LARGE_CRATE`] bytes, else `large`.
fn class_op(size: u64, small: Op, large: Op) -> Op {
    if size >= LARGE_CRATE { large } else { small }
}

/// Builds, publishes and waits for one unit; sends exactly one acknowledgement.
async fn publish_one(
    ctx: Arc<Ctx>,
    unit: usize,
    ack: mpsc::UnboundedSender<(usize, Option<Published>)>,
) {
    let planned_op = class_op(
        ctx.plan.units[unit].target_size,
        Op::PublishSmall,
        Op::PublishLarge,
    );
    let build_ctx = Arc::clone(&ctx);
    let built = tokio::task::spawn_blocking(move || {
        let built = build_ctx.plan.build(unit)?;
        let body = built.publish_body()?;
        anyhow::Ok((
            built.name,
            built.vers,
            built.cksum,
            built.crate_bytes.len() as u64,
            body,
        ))
    })
    .await;
    let (name, vers, cksum, size, body) = match built {
        Ok(Ok(built)) => built,
        Ok(Err(e)) => {
            ctx.stats
                .error(planned_op, format!("cannot generate the crate: {e:#}"));
            let _ = ack.send((unit, None));
            return;
        }
        Err(e) => {
            ctx.stats
                .error(planned_op, format!("generator failed: {e}"));
            let _ = ack.send((unit, None));
            return;
        }
    };
    let publish_op = class_op(size, Op::PublishSmall, Op::PublishLarge);
    let visible_op = class_op(size, Op::VisibleSmall, Op::VisibleLarge);

    let start = Instant::now();
    let mut result = ctx.client.publish(body.clone()).await;
    for _ in 0..ctx.config.publish_retries {
        match &result {
            Err(e) if is_retryable(e) => {
                bump(&ctx.counters.publish_retries);
                ctx.progress
                    .note(&format!("publishing {name} {vers} again after: {e:#}"));
                tokio::time::sleep(RETRY_PAUSE).await;
                result = ctx.client.publish(body.clone()).await;
            }
            _ => break,
        }
    }
    let responded = Instant::now();
    match result {
        Ok(warnings) => {
            ctx.stats.ok(publish_op, responded - start, size);
            bump(&ctx.counters.published);
            if !warnings.is_empty() {
                bump(&ctx.counters.publish_warnings);
                ctx.progress.note(&format!(
                    "warning publishing {name} {vers}: {}",
                    warnings.join("; ")
                ));
            }
            let _ = ack.send((
                unit,
                Some(Published {
                    cksum: cksum.clone(),
                    size,
                }),
            ));
        }
        Err(e) => {
            ctx.stats.error(publish_op, format!("{e:#}"));
            let _ = ack.send((unit, None));
            return;
        }
    }

    match wait_for_line(&ctx, &name, &vers, |_| true).await {
        Ok((line, seen)) => {
            bump(&ctx.counters.visible);
            if line.cksum == cksum {
                ctx.stats.ok(visible_op, seen - start, 0);
                ctx.stats.ok(Op::VisibleAfterResponse, seen - responded, 0);
            } else {
                bump(&ctx.counters.index_cksum_mismatches);
                ctx.stats.error(
                    visible_op,
                    "the index line's cksum differs from the uploaded .crate",
                );
            }
        }
        Err(e) => {
            bump(&ctx.counters.not_visible);
            ctx.stats.error(visible_op, e);
        }
    }
}
