//! The projector folds the event log, in log order, into the SQL read models.
//!
//! It reads from its checkpoint + 1, applies events in batches, and stores the rows and the new
//! checkpoint in one transaction, so every event takes effect exactly once even when the log
//! delivers it again. After each commit it announces the crates it changed on the notifier, so
//! api instances drop cached index files and wake publishes waiting for their version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use depot_eventlog::{EventLog, Notifier, StoredEvent};
use depot_events::{CrateState, Envelope, Event, Timestamp};
use depot_store::{ProjectionTx, Store, Target};
use futures::StreamExt as _;

/// The notifier topic on which changed crates (canonical names) are announced.
pub const CRATE_CHANGED_TOPIC: &str = "crate-changed";

/// Most events folded in one transaction.
const MAX_BATCH: usize = 500;

/// A running fold of the log into one set of read models.
#[derive(Debug, Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Store,
    notifier: Option<Arc<dyn Notifier>>,
    target: Target,
}

/// What one batch changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The checkpoint after the batch.
    pub checkpoint: u64,
    /// Events applied (not counting ones at or below the old checkpoint).
    pub applied: usize,
    /// Canonical names of the crates whose rows changed.
    pub crates: Vec<String>,
    /// Whether the batch did not continue from the checkpoint (events are missing before it, as
    /// after a generation switch): the caller must read again from the checkpoint.
    pub gap: bool,
}

impl Projector {
    /// A projector folding `log` into `target` (the active generation for the live
    /// projector, a given one for a replay).
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Store,
        notifier: Option<Arc<dyn Notifier>>,
        target: Target,
    ) -> Projector {
        Projector {
            log,
            store,
            notifier,
            target,
        }
    }

    /// The checkpoint of the generation this projector writes.
    pub async fn checkpoint(&self) -> anyhow::Result<u64> {
        let generation = match self.target {
            Target::Active => self.store.active_generation().await?,
            Target::Generation(number) => number,
        };
        Ok(self.store.checkpoint(generation).await?)
    }

    /// Follows the log until `shutdown` resolves. Transient failures of the log or the database
    /// restart the fold from the checkpoint after a pause; an event this build cannot
    /// understand stops the projector with an error (skipping it would corrupt the index).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                result = self.follow() => match result {
                    Ok(()) => {}
                    Err(FollowError::Fatal(e)) => return Err(e),
                    Err(FollowError::Transient(e)) => {
                        tracing::warn!(error = %format!("{e:#}"), "projector interrupted; resuming from its checkpoint");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
    }

    /// Applies every event currently in the log, then returns the checkpoint.
    pub async fn catch_up(&self) -> anyhow::Result<u64> {
        self.catch_up_to(u64::MAX, |_| {}).await
    }

    /// Applies the events up to `until` (or up to the current head, if lower), reporting the
    /// checkpoint after each batch; returns the final checkpoint.
    pub async fn catch_up_to(
        &self,
        until: u64,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<u64> {
        loop {
            let target = self.log.head().await?.min(until);
            let checkpoint = self.checkpoint().await?;
            if checkpoint >= target {
                return Ok(checkpoint);
            }
            let mut stream = self
                .log
                .read_from(checkpoint + 1)
                .await?
                .ready_chunks(MAX_BATCH);
            while let Some(chunk) = stream.next().await {
                let mut events = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
                events.retain(|e| e.seq <= target);
                let outcome = self.apply(&events).await?;
                self.announce(&outcome).await;
                progress(outcome.checkpoint);
                if outcome.gap || outcome.checkpoint >= target {
                    break;
                }
            }
        }
    }

    async fn follow(&self) -> Result<(), FollowError> {
        let checkpoint = self
            .checkpoint()
            .await
            .context("reading the projector checkpoint")
            .map_err(FollowError::Transient)?;
        let mut stream = self
            .log
            .read_from(checkpoint + 1)
            .await
            .context("opening the event log")
            .map_err(FollowError::Transient)?
            .ready_chunks(MAX_BATCH);
        while let Some(chunk) = stream.next().await {
            let events = chunk
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .context("reading the event log")
                .map_err(FollowError::Transient)?;
            let outcome = self.apply(&events).await.map_err(|e| {
                if e.is::<UnreadableEvent>() {
                    FollowError::Fatal(e)
                } else {
                    FollowError::Transient(e)
                }
            })?;
            self.announce(&outcome).await;
            if outcome.gap {
                // The generation changed under us: read again from its checkpoint.
                return Ok(());
            }
        }
        Err(FollowError::Transient(anyhow::anyhow!(
            "the event stream ended"
        )))
    }

    async fn announce(&self, outcome: &BatchOutcome) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        for canon in &outcome.crates {
            if let Err(e) = notifier
                .notify(CRATE_CHANGED_TOPIC, Bytes::from(canon.clone()))
                .await
            {
                tracing::warn!(error = %e, krate.name = %canon, "could not announce a crate change");
            }
        }
    }

    /// Samples the log head and this projector's checkpoint into the lag metrics every
    /// `period`, until `shutdown` resolves.
    pub async fn sample_lag(
        self,
        period: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(period);
        let metrics = depot_telemetry::metrics();
        let pending = metrics.consumer_pending.with_label_values(&["projector"]);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                _ = tick.tick() => {}
            }
            let (Ok(head), Ok(checkpoint)) = (self.log.head().await, self.checkpoint().await)
            else {
                continue;
            };
            let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            metrics.log_head.set(as_gauge(head));
            metrics.projector_applied.set(as_gauge(checkpoint));
            pending.set(as_gauge(head.saturating_sub(checkpoint)));
        }
    }

    /// Folds a batch of events (in log order) in one transaction. Events at or below the
    /// checkpoint are skipped, so applying the same events twice changes nothing.
    pub async fn apply(&self, events: &[StoredEvent]) -> anyhow::Result<BatchOutcome> {
        let started = std::time::Instant::now();
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut tx = ProjectionTx::begin(&self.store, self.target).await?;
        let checkpoint = tx.checkpoint();
        let mut crates: BTreeMap<String, CrateWork> = BTreeMap::new();
        let mut last = checkpoint;
        let mut applied = 0;
        let mut gap = false;
        for stored in events {
            // Already applied (redelivery, or a duplicate inside the batch).
            if stored.seq <= last {
                continue;
            }
            // Sequences are gap-free: a jump means events before this one are missing here.
            if stored.seq != last + 1 {
                gap = true;
                break;
            }
            let envelope = Envelope::decode(&stored.payload).map_err(|e| {
                anyhow::Error::new(UnreadableEvent(format!("event {}: {e}", stored.seq)))
            })?;
            if let Event::Unknown { kind, .. } = &envelope.event {
                return Err(anyhow::Error::new(UnreadableEvent(format!(
                    "event {} has type `{kind}`, unknown to this version of Depot; upgrade it",
                    stored.seq
                ))));
            }
            if let Some(canon) = stored.subject.strip_prefix("crate.") {
                let work = match crates.get_mut(canon) {
                    Some(work) => work,
                    None => {
                        let state = tx.load_crate(canon).await?.unwrap_or_default();
                        crates.entry(canon.to_owned()).or_insert(CrateWork {
                            state,
                            last_seq: stored.seq,
                            updated_at: envelope.at,
                            index_changed: None,
                        })
                    }
                };
                apply_crate_event(&mut tx, canon, work, stored.seq, &envelope).await?;
            } else {
                apply_principal_event(&mut tx, &envelope).await?;
            }
            last = stored.seq;
            applied += 1;
            *kinds.entry(envelope.kind().to_owned()).or_default() += 1;
        }
        for (canon, work) in &crates {
            tx.save_crate(
                canon,
                &work.state,
                work.last_seq,
                work.updated_at,
                work.index_changed,
            )
            .await?;
        }
        if applied > 0 {
            tx.commit(last).await?;
            let metrics = depot_telemetry::metrics();
            metrics
                .projector_batch
                .observe(started.elapsed().as_secs_f64());
            for (kind, count) in &kinds {
                metrics
                    .projector_events
                    .with_label_values(&[kind.as_str()])
                    .inc_by(*count);
            }
            if self.target == Target::Active {
                metrics
                    .projector_applied
                    .set(i64::try_from(last).unwrap_or(i64::MAX));
            }
        }
        Ok(BatchOutcome {
            checkpoint: last,
            applied,
            crates: crates.into_keys().collect(),
            gap,
        })
    }
}

/// The state of one crate while a batch is folded.
#[derive(Debug)]
struct CrateWork {
    state: CrateState,
    last_seq: u64,
    updated_at: Timestamp,
    index_changed: Option<(u64, Timestamp)>,
}

async fn apply_crate_event(
    tx: &mut ProjectionTx,
    canon: &str,
    work: &mut CrateWork,
    seq: u64,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    match &envelope.event {
        Event::VersionUploaded(upload) => {
            // An upload of a version that is already live is ignored by the aggregate too.
            if work.state.live_version(&upload.vers).is_none() {
                tx.insert_upload(canon, seq, upload, envelope.at).await?;
            }
        }
        Event::VersionAccepted(outcome) => {
            tx.accept(
                canon,
                &outcome.vers,
                &outcome.cksum,
                &outcome.entry,
                &outcome.metadata,
            )
            .await?;
            work.index_changed = Some((seq, envelope.at));
        }
        Event::VersionRejected(outcome) => {
            tx.reject(canon, &outcome.vers, &outcome.cksum, &outcome.reasons)
                .await?;
        }
        Event::VersionYanked(toggle) => {
            tx.set_yanked(canon, &toggle.vers, true).await?;
            work.index_changed = Some((seq, envelope.at));
        }
        Event::VersionUnyanked(toggle) => {
            tx.set_yanked(canon, &toggle.vers, false).await?;
            work.index_changed = Some((seq, envelope.at));
        }
        Event::OwnersAdded(_) | Event::OwnersRemoved(_) => {}
        Event::TokenIssued(_) | Event::TokenRevoked(_) | Event::Unknown { .. } => {
            tracing::warn!(
                seq,
                event.kind = envelope.kind(),
                "ignoring a non-crate event on a crate subject"
            );
        }
    }
    work.state.apply(envelope);
    work.last_seq = seq;
    work.updated_at = envelope.at;
    Ok(())
}

async fn apply_principal_event(tx: &mut ProjectionTx, envelope: &Envelope) -> anyhow::Result<()> {
    match &envelope.event {
        Event::TokenIssued(token) => tx.issue_token(token, envelope.at).await?,
        Event::TokenRevoked(revoked) => tx.revoke_token(revoked.token_id).await?,
        _ => {}
    }
    Ok(())
}

/// An event the projector cannot fold: stopping is the only safe choice.
#[derive(Debug)]
struct UnreadableEvent(String);

impl std::fmt::Display for UnreadableEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot project {}", self.0)
    }
}

impl std::error::Error for UnreadableEvent {}

#[derive(Debug)]
enum FollowError {
    Transient(anyhow::Error),
    Fatal(anyhow::Error),
}
