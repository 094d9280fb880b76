//! Yanks a sample of the published versions and checks the index says `"yanked":true`, then
//! unyanks half of them and checks it says so no more.

use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;

use super::{Ctx, Published, bump, run_concurrently, wait_for_line};
use crate::stats::Op;

/// How many of `published` versions to yank: `fraction` of them rounded, at least one when
/// the fraction is positive and anything was published.
pub fn sample_size(published: usize, fraction: f64) -> usize {
    if fraction <= 0.0 || published == 0 {
        return 0;
    }
    ((published as f64 * fraction).round() as usize).clamp(1, published)
}

/// Yanks a deterministic sample, then unyanks half of the yanked (rounded up).
pub async fn run(ctx: &Arc<Ctx>, published: &[Option<Published>]) {
    let mut units: Vec<usize> = (0..published.len())
        .filter(|&u| published[u].is_some())
        .collect();
    let count = sample_size(units.len(), ctx.config.yank_fraction);
    if count == 0 {
        return;
    }
    let mut rng = StdRng::seed_from_u64(ctx.plan.params.seed ^ 0x79616e6b);
    units.shuffle(&mut rng);
    units.truncate(count);
    units.sort_unstable();

    ctx.progress.note(&format!("yank: {count} versions"));
    let yanked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&yanked);
    run_concurrently(ctx, "yank", &[Op::Yank], units, move |ctx, unit| {
        let sink = Arc::clone(&sink);
        async move {
            if change(&ctx, unit, true).await {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(unit);
            }
        }
    })
    .await;

    let mut yanked = std::mem::take(&mut *yanked.lock().unwrap_or_else(|e| e.into_inner()));
    yanked.sort_unstable();
    yanked.truncate(yanked.len().div_ceil(2));
    if yanked.is_empty() {
        return;
    }
    ctx.progress
        .note(&format!("unyank: {} versions", yanked.len()));
    run_concurrently(
        ctx,
        "unyank",
        &[Op::Unyank],
        yanked,
        |ctx, unit| async move {
            change(&ctx, unit, false).await;
        },
    )
    .await;
}

/// Yanks (`yank`) or unyanks one version and waits for the index to agree. Returns whether
/// the request succeeded.
async fn change(ctx: &Ctx, unit: usize, yank: bool) -> bool {
    let (name, vers) = ctx.plan.name_version(unit);
    let op = if yank { Op::Yank } else { Op::Unyank };
    let start = Instant::now();
    let result = if yank {
        ctx.client.yank(name, vers).await
    } else {
        ctx.client.unyank(name, vers).await
    };
    if let Err(e) = result {
        ctx.stats.error(op, format!("{e:#}"));
        return false;
    }
    let latency = start.elapsed();
    bump(if yank {
        &ctx.counters.yanked
    } else {
        &ctx.counters.unyanked
    });
    match wait_for_line(ctx, name, vers, |line| line.is_yanked() == yank).await {
        Ok(_) => {
            ctx.stats.ok(op, latency, 0);
            bump(if yank {
                &ctx.counters.yank_verified
            } else {
                &ctx.counters.unyank_verified
            });
        }
        Err(e) => {
            bump(&ctx.counters.yank_state_wrong);
            let state = if yank { "yanked" } else { "unyanked" };
            ctx.stats
                .error(op, format!("not shown {state} in the index: {e}"));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::sample_size;

    #[test]
    fn sample_sizes() {
        assert_eq!(sample_size(0, 0.05), 0);
        assert_eq!(sample_size(100, 0.0), 0);
        assert_eq!(sample_size(10, 0.05), 1);
        assert_eq!(sample_size(100, 0.05), 5);
        assert_eq!(sample_size(183, 0.05), 9);
        assert_eq!(sample_size(3, 1.0), 3);
    }
}
