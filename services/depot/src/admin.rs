//! Operator commands on the read models: `replay`, `verify` and `gc`.
//!
//! The event log is the only source of truth, so every read model can be rebuilt: `replay`
//! folds the whole log into a new generation while the registry keeps serving the active one,
//! then switches in one transaction; `replay --until SEQ` renders the index as it was after
//! event SEQ; `verify` rebuilds a scratch generation and compares it with the live one, and
//! checks every index line against its stored blob.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use depot_eventlog::EventLog;
use depot_events::{Envelope, Event};
use depot_projector::Projector;
use depot_store::{BlobStore, IndexFileRow, PendingVersion, Store, Target};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::roles::{LogBackend, open_blobs, open_log, open_store};

/// Prints a line of the report (standard output is the report).
fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

/// A digest of index files: sha256 over every (canonical name, etag, last-modified, body).
fn digest(files: &[(String, IndexFileRow)]) -> String {
    let mut hasher = Sha256::new();
    for (canon, file) in files {
        hasher.update(canon.as_bytes());
        hasher.update([0]);
        hasher.update(file.etag.as_bytes());
        hasher.update([0]);
        hasher.update(file.last_modified.unix_millis().to_le_bytes());
        hasher.update((file.body.len() as u64).to_le_bytes());
        hasher.update(&file.body);
    }
    hex::encode(hasher.finalize())
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events  {per_sec}  ETA {eta}",
        )
        .expect("a valid progress template"),
    );
    bar
}

/// Folds the log into a new generation up to `until` with a progress bar; returns the
/// generation, its checkpoint and the time taken.
async fn build_generation(
    log: &Arc<dyn EventLog>,
    store: &Store,
    until: Option<u64>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let head = log.head().await?;
    let target = until.map_or(head, |u| u.min(head));
    let generation = store.create_generation(until).await?;
    let projector = Projector::new(
        Arc::clone(log),
        store.clone(),
        None,
        Target::Generation(generation),
    );
    let bar = progress_bar(target);
    let started = Instant::now();
    let checkpoint = projector
        .catch_up_to(target, |checkpoint| bar.set_position(checkpoint))
        .await
        .with_context(|| format!("replaying the log into generation {generation}"))?;
    bar.finish_and_clear();
    Ok((generation, checkpoint, started.elapsed()))
}

fn rate(events: u64, took: Duration) -> String {
    let secs = took.as_secs_f64().max(1e-9);
    format!("{:.0} events/s", events as f64 / secs)
}

/// `depot replay [--until SEQ] [--out DIR]`.
pub(crate) async fn replay(
    settings: &Settings,
    until: Option<u64>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let LogBackend { log, notifier } = open_log(settings).await?;
    let store = open_store(settings, 4).await?;
    let old = store.active_generation().await?;
    let (generation, checkpoint, took) = build_generation(&log, &store, until).await?;
    let files = store.index_files(generation).await?;
    say(format!(
        "replayed {checkpoint} events into generation {generation} in {:.2}s ({}); {} index files, digest {}",
        took.as_secs_f64(),
        rate(checkpoint, took),
        files.len(),
        digest(&files)
    ));

    if until.is_some() {
        // A point-in-time view: write it out if asked, never switch to it.
        if let Some(dir) = out {
            write_index(dir, &files).await?;
            say(format!(
                "wrote the index as of event {checkpoint} to {}",
                dir.display()
            ));
        }
        store.drop_generation(generation).await?;
        return Ok(());
    }

    // Catch up with what was appended meanwhile, then switch in one transaction.
    let projector = Projector::new(
        Arc::clone(&log),
        store.clone(),
        None,
        Target::Generation(generation),
    );
    let mut switched = false;
    for _ in 0..50 {
        let head = log.head().await?;
        projector.catch_up_to(head, |_| {}).await?;
        if store.switch_generation(generation, head).await? {
            switched = true;
            break;
        }
    }
    if !switched {
        store.drop_generation(generation).await?;
        anyhow::bail!("the log kept growing faster than the replay could catch up; try again");
    }
    // Every api instance drops its cached index files.
    let _ = notifier
        .notify(
            depot_projector::CRATE_CHANGED_TOPIC,
            bytes::Bytes::from_static(b"*"),
        )
        .await;
    if let Some(dir) = out {
        write_index(dir, &store.index_files(generation).await?).await?;
    }
    for retired in store.retired_generations().await? {
        store.drop_generation(retired).await?;
    }
    say(format!(
        "generation {generation} is live (was {old}); the old generation was dropped"
    ));
    Ok(())
}

/// Writes index files in the sparse layout under `dir`.
async fn write_index(dir: &Path, files: &[(String, IndexFileRow)]) -> anyhow::Result<()> {
    for (_, file) in files {
        let path = dir.join(depot_index::index_path(&file.name));
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(&path, &file.body)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `depot verify`: exits non-zero on any mismatch.
pub(crate) async fn verify(settings: &Settings) -> anyhow::Result<bool> {
    let LogBackend { log, .. } = open_log(settings).await?;
    let store = open_store(settings, 4).await?;
    let blobs = open_blobs(settings).await?;
    let mut ok = true;

    // 1. The live generation equals a fresh replay of the same events.
    let live = store.active_generation().await?;
    let mut attempt = 0;
    let (live_files, fresh_files, checkpoint, live_cache, fresh_cache, live_docs, fresh_docs) = loop {
        attempt += 1;
        let checkpoint = store.checkpoint(live).await?;
        let live_files = store.index_files(live).await?;
        let live_cache = upstream_cache(&store, live).await?;
        let live_docs = store.all_docs(live).await?;
        let (scratch, _, _) = build_generation(&log, &store, Some(checkpoint)).await?;
        let fresh_files = store.index_files(scratch).await?;
        let fresh_cache = upstream_cache(&store, scratch).await?;
        let fresh_docs = store.all_docs(scratch).await?;
        store.drop_generation(scratch).await?;
        // The live generation may have moved on meanwhile: compare like with like.
        if store.checkpoint(live).await? == checkpoint || attempt == 5 {
            break (
                live_files,
                fresh_files,
                checkpoint,
                live_cache,
                fresh_cache,
                live_docs,
                fresh_docs,
            );
        }
    };
    let (live_digest, fresh_digest) = (digest(&live_files), digest(&fresh_files));
    say(format!(
        "live generation {live}: {} index files up to event {checkpoint}, digest {live_digest}",
        live_files.len()
    ));
    say(format!(
        "fresh replay:        {} index files up to event {checkpoint}, digest {fresh_digest}",
        fresh_files.len()
    ));
    if live_digest == fresh_digest {
        say("index files: identical");
    } else {
        ok = false;
        say("index files: DIFFERENT");
        let live_map: BTreeMap<_, _> = live_files.iter().map(|(c, f)| (c, f)).collect();
        let fresh_map: BTreeMap<_, _> = fresh_files.iter().map(|(c, f)| (c, f)).collect();
        for canon in live_map.keys().chain(fresh_map.keys()) {
            if live_map.get(canon) != fresh_map.get(canon) {
                say(format!("  differs: {canon}"));
            }
        }
    }

    if live_cache == fresh_cache {
        say(format!(
            "upstream cache: identical ({} index files, {} crates)",
            live_cache.0.len(),
            live_cache.1.len()
        ));
    } else {
        ok = false;
        say("upstream cache: DIFFERENT from a fresh replay");
    }

    // 2. Every index line's checksum is the sha256 of a stored blob.
    let stored = store.stored_versions(live).await?;
    let blob_of: BTreeMap<(&str, &str), &str> = stored
        .iter()
        .map(|v| ((v.name.as_str(), v.vers.as_str()), v.blob.as_str()))
        .collect();
    let mut lines = 0;
    let mut problems = 0;
    for (canon, file) in &live_files {
        for line in String::from_utf8_lossy(&file.body).lines() {
            lines += 1;
            let entry: depot_index::IndexEntry = match serde_json::from_str(line) {
                Ok(entry) => entry,
                Err(e) => {
                    problems += 1;
                    say(format!("  {canon}: unreadable index line: {e}"));
                    continue;
                }
            };
            let Some(blob) = blob_of.get(&(entry.name.as_str(), entry.vers.as_str())) else {
                problems += 1;
                say(format!(
                    "  {} {}: no stored version",
                    entry.name, entry.vers
                ));
                continue;
            };
            match blobs.sha256_of(blob).await? {
                None => {
                    problems += 1;
                    say(format!(
                        "  {} {}: blob {blob} is missing",
                        entry.name, entry.vers
                    ));
                }
                Some(actual) if actual != entry.cksum => {
                    problems += 1;
                    say(format!(
                        "  {} {}: blob sha256 {actual} but the index says {}",
                        entry.name, entry.vers, entry.cksum
                    ));
                }
                Some(_) => {}
            }
        }
    }
    if problems == 0 {
        say(format!(
            "blobs: all {lines} index lines match their stored .crate"
        ));
    } else {
        ok = false;
        say(format!(
            "blobs: {problems} of {lines} index lines have a problem"
        ));
    }

    // 2b. The upstream cache's blobs hold what the log says they hold.
    let index_blobs = live_cache.0.iter().map(|file| {
        let expected = file.blob.strip_prefix("sha256/").unwrap_or_default();
        (
            format!("upstream index file {}", file.name),
            file.blob.clone(),
            expected.to_owned(),
        )
    });
    let crate_blobs = live_cache.1.iter().map(|krate| {
        (
            format!("upstream crate {} {}", krate.name, krate.vers),
            BlobStore::key_for(&krate.cksum),
            krate.cksum.clone(),
        )
    });
    let mut cache_problems = 0;
    for (what, blob, expected) in index_blobs.chain(crate_blobs) {
        match blobs.sha256_of(&blob).await? {
            Some(actual) if actual == expected => {}
            found => {
                cache_problems += 1;
                let state = if found.is_some() {
                    "corrupt"
                } else {
                    "missing"
                };
                say(format!("  {what}: blob {blob} is {state}"));
            }
        }
    }
    if cache_problems == 0 {
        say(format!(
            "upstream blobs: all {} index files and {} crates match their addresses",
            live_cache.0.len(),
            live_cache.1.len()
        ));
    } else {
        ok = false;
        say(format!("upstream blobs: {cache_problems} problems"));
    }

    // 2c. Hosted docs: the same as a fresh replay, and every manifest and file is the blob
    // its address says.
    if live_docs == fresh_docs {
        say(format!("docs: identical ({} versions)", live_docs.len()));
    } else {
        ok = false;
        say("docs: DIFFERENT from a fresh replay");
    }
    let mut docs_problems = 0;
    let mut docs_files = 0;
    for docs in &live_docs {
        let what = format!("docs of {} {}", docs.name, docs.vers);
        let manifest = match read_docs_manifest(&blobs, &docs.manifest).await {
            Ok(manifest) => manifest,
            Err(e) => {
                docs_problems += 1;
                say(format!("  {what}: manifest {}: {e:#}", docs.manifest));
                continue;
            }
        };
        let mut blobs_to_check = vec![(docs.manifest.clone(), "the manifest".to_owned())];
        blobs_to_check.extend(
            manifest
                .files
                .into_iter()
                .map(|(path, file)| (file.blob, path)),
        );
        for (blob, path) in blobs_to_check {
            docs_files += 1;
            let expected = blob.strip_prefix("sha256/").unwrap_or_default().to_owned();
            match blobs.sha256_of(&blob).await? {
                Some(actual) if actual == expected => {}
                found => {
                    docs_problems += 1;
                    let state = if found.is_some() {
                        "corrupt"
                    } else {
                        "missing"
                    };
                    say(format!("  {what}: {path}: blob {blob} is {state}"));
                }
            }
        }
    }
    if docs_problems == 0 {
        say(format!(
            "docs blobs: all {docs_files} manifests and files match their addresses"
        ));
    } else {
        ok = false;
        say(format!("docs blobs: {docs_problems} problems"));
    }

    // 3. Uploads still waiting for a verdict past the extractor's whole budget: stuck.
    let budget = settings
        .extractor_config(&settings.public_url(settings.listen))
        .budget();
    let pending = store.pending_versions(live).await?;
    let stuck = stuck_uploads(&pending, depot_events::Timestamp::now(), budget);
    if stuck.is_empty() {
        say(format!(
            "pending uploads: {} (none older than the extractor's budget of {} s)",
            pending.len(),
            budget.as_secs()
        ));
    } else {
        ok = false;
        say(format!(
            "pending uploads: {} of {} older than the extractor's budget of {} s (is an \
             extractor running?)",
            stuck.len(),
            pending.len(),
            budget.as_secs()
        ));
        for version in stuck {
            say(format!(
                "  {} {}: uploaded at {} (event {}), still pending",
                version.name,
                version.vers,
                version.uploaded_at.to_pubtime(),
                version.upload_seq
            ));
        }
    }

    // 4. Orphans: stored blobs no upload refers to.
    let orphans = orphan_blobs(&store, &blobs, log.as_ref(), live).await?;
    if orphans.is_empty() {
        say("orphan blobs: none");
    } else {
        say(format!(
            "orphan blobs: {} (remove with `depot gc`)",
            orphans.len()
        ));
        for (key, size, _) in &orphans {
            say(format!("  {key} ({size} bytes)"));
        }
    }
    say(if ok { "verify: OK" } else { "verify: FAILED" });
    Ok(ok)
}

/// What the upstream cache holds in generation `gen_`: index files and crates.
async fn upstream_cache(
    store: &Store,
    gen_: u64,
) -> anyhow::Result<(
    Vec<depot_store::UpstreamIndexRow>,
    Vec<depot_store::UpstreamCrateRow>,
)> {
    Ok((
        store.upstream_index_files(gen_).await?,
        store.upstream_crates(gen_).await?,
    ))
}

/// The uploads pending for longer than `budget` at `now`.
fn stuck_uploads(
    pending: &[PendingVersion],
    now: depot_events::Timestamp,
    budget: Duration,
) -> Vec<&PendingVersion> {
    pending
        .iter()
        .filter(|v| {
            let age = now
                .unix_millis()
                .saturating_sub(v.uploaded_at.unix_millis());
            Duration::from_millis(u64::try_from(age).unwrap_or(0)) > budget
        })
        .collect()
}

async fn orphan_blobs(
    store: &Store,
    blobs: &BlobStore,
    log: &dyn EventLog,
    generation: u64,
) -> anyhow::Result<Vec<(String, u64, SystemTime)>> {
    let referenced = referenced_blobs(store, blobs, log, generation).await?;
    Ok(blobs
        .list()
        .await?
        .into_iter()
        .filter(|(key, _, _)| !referenced.contains(key))
        .collect())
}

/// Every blob key an event refers to, as of now: the uploads folded into generation `gen_`
/// ([`Store::referenced_blobs`]) plus those of the events the projector has not folded yet.
async fn referenced_blobs(
    store: &Store,
    blobs: &BlobStore,
    log: &dyn EventLog,
    gen_: u64,
) -> anyhow::Result<BTreeSet<String>> {
    // The checkpoint first: whatever the projector folds meanwhile is read from the log.
    let checkpoint = store.checkpoint(gen_).await?;
    let mut referenced = store.referenced_blobs(gen_).await?;
    let mut manifests: Vec<String> = store
        .all_docs(gen_)
        .await?
        .into_iter()
        .map(|docs| docs.manifest)
        .collect();
    let head = log.head().await?;
    if head > checkpoint {
        let mut events = log.read_from(checkpoint + 1).await?;
        while let Some(stored) = events.next().await {
            let stored = stored?;
            let envelope = Envelope::decode(&stored.payload)
                .with_context(|| format!("decoding event {}", stored.seq))?;
            match &envelope.event {
                Event::VersionUploaded(upload) => {
                    referenced.insert(upload.blob.clone());
                    referenced.extend(upload.metadata_blob.clone());
                }
                Event::VersionAccepted(accepted) => {
                    referenced.extend(accepted.metadata.readme_blob.clone());
                }
                Event::UpstreamIndexStored(stored) => {
                    referenced.insert(stored.blob.clone());
                }
                Event::UpstreamCrateStored(stored) => {
                    referenced.insert(BlobStore::key_for(&stored.cksum));
                }
                Event::DocsUploaded(docs) => {
                    referenced.insert(docs.manifest.clone());
                    manifests.push(docs.manifest.clone());
                }
                _ => {}
            }
            if stored.seq >= head {
                break;
            }
        }
    }
    // The files of hosted docs are named by their manifests only.
    manifests.sort();
    manifests.dedup();
    for key in manifests {
        let manifest = read_docs_manifest(blobs, &key).await.with_context(|| {
            format!("the docs manifest {key} cannot be read, so its files cannot be told apart from orphans")
        })?;
        referenced.extend(manifest.files.into_values().map(|file| file.blob));
    }
    Ok(referenced)
}

/// A docs manifest from the blob store.
async fn read_docs_manifest(
    blobs: &BlobStore,
    key: &str,
) -> anyhow::Result<depot_cratefile::DocsManifest> {
    let bytes = blobs
        .read_capped(key, depot_cratefile::docs::MAX_MANIFEST_BYTES)
        .await?
        .with_context(|| format!("blob {key} is missing"))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Whether a file written at `modified` is still within the grace period.
fn within_grace(modified: SystemTime, grace: Duration) -> bool {
    // A time in the future (a clock step) counts as recent.
    SystemTime::now()
        .duration_since(modified)
        .map_or(true, |age| age < grace)
}

/// `depot gc`: deletes blobs that no event refers to and that were written more than `grace`
/// ago (a younger one may belong to an upload about to append its event).
///
/// Each candidate is first moved aside ([`BlobStore::quarantine`]), so an upload storing the
/// same content again from then on writes a new file; then both conditions are checked again
/// (the moved file's age, and every reference in the read models and the log) and the blob is
/// deleted or put back. Blobs a previous, interrupted run left moved aside are put back first.
/// The references are read again for each candidate: orphans are few (losers of publish races).
pub(crate) async fn gc(settings: &Settings, grace: Duration) -> anyhow::Result<()> {
    let LogBackend { log, .. } = open_log(settings).await?;
    let store = open_store(settings, 2).await?;
    let blobs = open_blobs(settings).await?;
    let restored = blobs.restore_quarantined().await?;
    if restored > 0 {
        say(format!(
            "gc: put back {restored} blobs an interrupted gc had moved aside"
        ));
    }
    let live = store.active_generation().await?;
    let referenced = referenced_blobs(&store, &blobs, log.as_ref(), live).await?;
    let candidates: Vec<(String, u64)> = blobs
        .list()
        .await?
        .into_iter()
        .filter(|(key, _, modified)| !referenced.contains(key) && !within_grace(*modified, grace))
        .map(|(key, size, _)| (key, size))
        .collect();
    let (mut removed, mut freed, mut kept) = (0_u64, 0_u64, 0_u64);
    for (key, size) in candidates {
        let Some(aside) = blobs.quarantine(&key).await? else {
            continue;
        };
        let keep = match aside.modified().await {
            Ok(modified) if within_grace(modified, grace) => true,
            Ok(_) => {
                let live = store.active_generation().await?;
                referenced_blobs(&store, &blobs, log.as_ref(), live)
                    .await?
                    .contains(&key)
            }
            Err(e) => {
                aside.restore().await?;
                return Err(e.into());
            }
        };
        if keep {
            aside.restore().await?;
            kept += 1;
        } else {
            aside.delete().await?;
            removed += 1;
            freed += size;
        }
    }
    say(format!(
        "gc: removed {removed} orphan blobs ({freed} bytes); kept {kept} that were stored or \
         referenced again meanwhile"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use depot_events::Timestamp;

    #[test]
    fn only_uploads_older_than_the_budget_are_stuck() {
        let pending = |vers: &str, at: i64| PendingVersion {
            name: "a".into(),
            vers: vers.into(),
            upload_seq: 1,
            uploaded_at: Timestamp::from_unix_millis(at),
        };
        let uploads = [
            pending("1.0.0", 0),
            pending("1.0.1", 40_000),
            pending("1.0.2", 100_000),
        ];
        let now = Timestamp::from_unix_millis(100_000);
        let stuck = stuck_uploads(&uploads, now, Duration::from_secs(30));
        assert_eq!(
            stuck.iter().map(|v| v.vers.as_str()).collect::<Vec<_>>(),
            ["1.0.0", "1.0.1"]
        );
        // A clock that went backwards makes nothing stuck.
        let earlier = Timestamp::from_unix_millis(0);
        assert!(stuck_uploads(&uploads, earlier, Duration::ZERO).is_empty());
    }
}
