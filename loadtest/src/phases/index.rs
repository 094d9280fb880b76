//! Index reads: every published crate's file plain (200, every acknowledged version present),
//! then conditionally with its ETag (must be 304), then one hot file hammered.

use std::cmp::Reverse;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use super::{Ctx, Published, bump, run_concurrently};
use crate::client::{IndexFetch, find_version, parse_index};
use crate::stats::Op;

/// What the plain fetch learnt about a crate.
#[derive(Debug, Clone)]
struct Fetched {
    krate: usize,
    etag: Option<String>,
}

/// Runs the plain and conditional phases. Returns, per unit, the `cksum` its index line has.
pub async fn run(ctx: &Arc<Ctx>, published: &[Option<Published>]) -> Vec<Option<String>> {
    let crates: Vec<usize> = ctx
        .plan
        .crates
        .iter()
        .enumerate()
        .filter(|(_, c)| (0..c.versions.len()).any(|v| published[c.first_unit + v].is_some()))
        .map(|(i, _)| i)
        .collect();
    let cksums: Arc<Mutex<Vec<Option<String>>>> =
        Arc::new(Mutex::new(vec![None; ctx.plan.units.len()]));
    let fetched: Arc<Mutex<Vec<Fetched>>> = Arc::new(Mutex::new(Vec::new()));
    let published = Arc::new(published.to_vec());

    ctx.progress.note(&format!(
        "index: fetching {} index files, then revalidating them",
        crates.len()
    ));
    run_concurrently(
        ctx,
        "index fetch",
        &[Op::IndexFetch],
        crates,
        |ctx, krate| {
            let (cksums, fetched, published) = (
                Arc::clone(&cksums),
                Arc::clone(&fetched),
                Arc::clone(&published),
            );
            async move {
                let planned = &ctx.plan.crates[krate];
                let start = Instant::now();
                match ctx.client.fetch_index(&planned.name, None).await {
                    Ok(IndexFetch::Modified { body, etag }) => {
                        ctx.stats
                            .ok(Op::IndexFetch, start.elapsed(), body.len() as u64);
                        let lines = parse_index(&body);
                        let mut found = Vec::new();
                        for (v, vers) in planned.versions.iter().enumerate() {
                            let unit = planned.first_unit + v;
                            if published[unit].is_none() {
                                continue;
                            }
                            match find_version(&lines, vers) {
                                Some(line) => found.push((unit, line.cksum.clone())),
                                None => bump(&ctx.counters.index_missing_versions),
                            }
                        }
                        let mut cksums = cksums.lock().unwrap_or_else(|e| e.into_inner());
                        for (unit, cksum) in found {
                            cksums[unit] = Some(cksum);
                        }
                        drop(cksums);
                        fetched
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Fetched { krate, etag });
                    }
                    Ok(IndexFetch::NotModified) => ctx
                        .stats
                        .error(Op::IndexFetch, "304 to a request without If-None-Match"),
                    Ok(IndexFetch::NotFound) => {
                        ctx.stats.error(Op::IndexFetch, "404 for a published crate")
                    }
                    Err(e) => ctx.stats.error(Op::IndexFetch, format!("{e:#}")),
                }
            }
        },
    )
    .await;

    let fetched = std::mem::take(&mut *fetched.lock().unwrap_or_else(|e| e.into_inner()));
    run_concurrently(
        ctx,
        "index 304",
        &[Op::IndexConditional],
        fetched,
        |ctx, fetched| async move {
            let name = &ctx.plan.crates[fetched.krate].name;
            let Some(etag) = fetched.etag else {
                bump(&ctx.counters.conditional_not_304);
                ctx.stats.error(
                    Op::IndexConditional,
                    "the index file had no ETag to revalidate with",
                );
                return;
            };
            let start = Instant::now();
            match ctx.client.fetch_index(name, Some(&etag)).await {
                Ok(IndexFetch::NotModified) => {
                    ctx.stats.ok(Op::IndexConditional, start.elapsed(), 0);
                }
                Ok(IndexFetch::Modified { .. }) => {
                    bump(&ctx.counters.conditional_not_304);
                    ctx.stats.error(
                        Op::IndexConditional,
                        "200 instead of 304 for the current ETag",
                    );
                }
                Ok(IndexFetch::NotFound) => ctx
                    .stats
                    .error(Op::IndexConditional, "404 for a published crate"),
                Err(e) => ctx.stats.error(Op::IndexConditional, format!("{e:#}")),
            }
        },
    )
    .await;

    let mut cksums = cksums.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *cksums)
}

/// Hammers the index file of the crate with the most published versions.
pub async fn hot(ctx: &Arc<Ctx>, published: &[Option<Published>]) {
    let requests = ctx.config.hot_requests;
    let hottest = ctx
        .plan
        .crates
        .iter()
        .map(|c| {
            (0..c.versions.len())
                .filter(|&v| published[c.first_unit + v].is_some())
                .count()
        })
        .enumerate()
        .filter(|&(_, count)| count > 0)
        .max_by_key(|&(i, count)| (count, Reverse(i)));
    let Some((krate, _)) = hottest else {
        if requests > 0 {
            ctx.progress
                .note("index hot file: skipped, nothing was published");
        }
        return;
    };
    if requests == 0 {
        return;
    }
    ctx.progress.note(&format!(
        "index hot file: {requests} fetches of {}",
        ctx.plan.crates[krate].name
    ));
    run_concurrently(
        ctx,
        "index hot",
        &[Op::IndexHot],
        vec![krate; requests],
        |ctx, krate| async move {
            let name = &ctx.plan.crates[krate].name;
            let start = Instant::now();
            match ctx.client.fetch_index(name, None).await {
                Ok(IndexFetch::Modified { body, .. }) => {
                    ctx.stats
                        .ok(Op::IndexHot, start.elapsed(), body.len() as u64);
                }
                Ok(other) => ctx
                    .stats
                    .error(Op::IndexHot, format!("unexpected answer {other:?}")),
                Err(e) => ctx.stats.error(Op::IndexHot, format!("{e:#}")),
            }
        },
    )
    .await;
}
