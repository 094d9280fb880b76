//! The phases of a run, in order: [`publish`], [`index`] (plain, conditional, hot),
//! [`download`] and [`yank`]. Each phase records into the shared [`Stats`] and [`Counters`];
//! a failed request is counted and the phase goes on.

pub mod download;
pub mod index;
pub mod publish;
pub mod yank;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::cli::Config;
use crate::client::{Client, IndexFetch, IndexLine, find_version, parse_index};
use crate::generate::Plan;
use crate::progress::Progress;
use crate::report::Checks;
use crate::stats::{Op, Stats};

/// A version the registry acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// sha256 of the uploaded `.crate`.
    pub cksum: String,
    /// Its size.
    pub size: u64,
}

/// Everything the phases share.
#[derive(Debug)]
pub struct Ctx {
    /// The registry.
    pub client: Client,
    /// The crates.
    pub plan: Plan,
    /// The run configuration.
    pub config: Config,
    /// Latencies and errors.
    pub stats: Stats,
    /// Correctness counters.
    pub counters: Counters,
    /// Progress display.
    pub progress: Progress,
}

/// Correctness counters, updated concurrently; see [`Checks`] for their meaning.
#[derive(Debug, Default)]
pub struct Counters {
    /// [`Checks::published`].
    pub published: AtomicU64,
    /// [`Checks::skipped`].
    pub skipped: AtomicU64,
    /// [`Checks::visible`].
    pub visible: AtomicU64,
    /// [`Checks::not_visible`].
    pub not_visible: AtomicU64,
    /// [`Checks::index_cksum_mismatches`].
    pub index_cksum_mismatches: AtomicU64,
    /// [`Checks::index_missing_versions`].
    pub index_missing_versions: AtomicU64,
    /// [`Checks::conditional_not_304`].
    pub conditional_not_304: AtomicU64,
    /// [`Checks::checksums_verified`].
    pub checksums_verified: AtomicU64,
    /// [`Checks::checksum_mismatches`].
    pub checksum_mismatches: AtomicU64,
    /// [`Checks::yanked`].
    pub yanked: AtomicU64,
    /// [`Checks::yank_verified`].
    pub yank_verified: AtomicU64,
    /// [`Checks::unyanked`].
    pub unyanked: AtomicU64,
    /// [`Checks::unyank_verified`].
    pub unyank_verified: AtomicU64,
    /// [`Checks::yank_state_wrong`].
    pub yank_state_wrong: AtomicU64,
    /// [`Checks::publish_warnings`].
    pub publish_warnings: AtomicU64,
    /// [`Checks::publish_retries`].
    pub publish_retries: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The counters' current values.
    pub fn checks(&self, versions_planned: u64) -> Checks {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Checks {
            versions_planned,
            published: get(&self.published),
            skipped: get(&self.skipped),
            visible: get(&self.visible),
            not_visible: get(&self.not_visible),
            index_cksum_mismatches: get(&self.index_cksum_mismatches),
            index_missing_versions: get(&self.index_missing_versions),
            conditional_not_304: get(&self.conditional_not_304),
            checksums_verified: get(&self.checksums_verified),
            checksum_mismatches: get(&self.checksum_mismatches),
            yanked: get(&self.yanked),
            yank_verified: get(&self.yank_verified),
            unyanked: get(&self.unyanked),
            unyank_verified: get(&self.unyank_verified),
            yank_state_wrong: get(&self.yank_state_wrong),
            publish_warnings: get(&self.publish_warnings),
            publish_retries: get(&self.publish_retries),
        }
    }
}

/// Runs `work` on every item with the configured concurrency, advancing a progress bar, and
/// records the phase's wall time for `ops`.
pub(crate) async fn run_concurrently<T, F, Fut>(
    ctx: &Arc<Ctx>,
    label: &str,
    ops: &[Op],
    items: Vec<T>,
    work: F,
) where
    F: Fn(Arc<Ctx>, T) -> Fut,
    Fut: Future<Output = ()>,
{
    let bar = ctx.progress.bar(items.len() as u64, label);
    let started = Instant::now();
    futures::stream::iter(items)
        .map(|item| work(Arc::clone(ctx), item))
        .buffer_unordered(ctx.config.concurrency)
        .for_each(|()| {
            bar.inc(1);
            async {}
        })
        .await;
    bar.finish();
    let wall = started.elapsed();
    for &op in ops {
        ctx.stats.set_wall(op, wall);
    }
}

/// Polls a crate's index file (revalidating with its ETag) until the line of `vers`
/// satisfies `done`, or the visibility timeout passes. Returns the line and when it was seen.
pub(crate) async fn wait_for_line(
    ctx: &Ctx,
    name: &str,
    vers: &str,
    done: impl Fn(&IndexLine) -> bool,
) -> Result<(IndexLine, Instant), String> {
    let started = Instant::now();
    let mut etag: Option<String> = None;
    let mut pause = Duration::from_millis(1);
    let mut last_error = None;
    loop {
        match ctx.client.fetch_index(name, etag.as_deref()).await {
            Ok(IndexFetch::Modified { body, etag: new }) => {
                let seen = Instant::now();
                let lines = parse_index(&body);
                if let Some(line) = find_version(&lines, vers)
                    && done(line)
                {
                    return Ok((line.clone(), seen));
                }
                etag = new;
            }
            Ok(IndexFetch::NotModified | IndexFetch::NotFound) => {}
            Err(e) => last_error = Some(format!("{e:#}")),
        }
        if started.elapsed() >= ctx.config.visible_timeout {
            let secs = ctx.config.visible_timeout.as_secs();
            return Err(match last_error {
                Some(e) => format!("not in the index after {secs} s (last error: {e})"),
                None => format!("not in the index after {secs} s"),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}
