//! Downloads of every published version through `dl`, each streamed through sha256 and
//! checked against the `cksum` of its index line (and the uploaded bytes).

use std::sync::Arc;
use std::time::Instant;

use super::{Ctx, Published, bump, run_concurrently};
use crate::stats::Op;

/// Downloads every published unit. `index_cksums` are the index lines' checksums (from the
/// index phase); where a line was not seen, the uploaded checksum is used.
pub async fn run(ctx: &Arc<Ctx>, published: &[Option<Published>], index_cksums: &[Option<String>]) {
    let items: Vec<(usize, String, String)> = published
        .iter()
        .enumerate()
        .filter_map(|(unit, p)| {
            let p = p.as_ref()?;
            let index = index_cksums[unit]
                .clone()
                .unwrap_or_else(|| p.cksum.clone());
            Some((unit, p.cksum.clone(), index))
        })
        .collect();
    ctx.progress
        .note(&format!("download: {} versions", items.len()));
    run_concurrently(
        ctx,
        "download",
        &[Op::Download],
        items,
        |ctx, (unit, uploaded, index)| async move {
            let (name, vers) = ctx.plan.name_version(unit);
            let start = Instant::now();
            match ctx.client.download(name, vers, &index).await {
                Ok((bytes, sha)) if sha == index && sha == uploaded => {
                    ctx.stats.ok(Op::Download, start.elapsed(), bytes);
                    bump(&ctx.counters.checksums_verified);
                }
                Ok((_, sha)) => {
                    bump(&ctx.counters.checksum_mismatches);
                    let what = if sha != index {
                        "the downloaded .crate does not match the index cksum"
                    } else {
                        "the downloaded .crate differs from the uploaded one"
                    };
                    ctx.stats.error(Op::Download, what);
                }
                Err(e) => ctx.stats.error(Op::Download, format!("{e:#}")),
            }
        },
    )
    .await;
}
