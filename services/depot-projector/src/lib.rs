//! The projector folds the event log, in log order, into the SQL read models.
//!
//! It reads from its checkpoint + 1, applies events in batches, and stores the rows and the new
//! checkpoint in one transaction, so every event takes effect exactly once even when the log
//! delivers it again. After each commit it announces the crates it changed on the notifier, so
//! api instances drop cached index files and wake publishes waiting for their version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use depot_eventlog::{EventLog, Notifier, StoredEvent};
use depot_events::{
    CrateState, DecodeError, Envelope, Event, Timestamp, VersionStatus, version_of,
};
use depot_store::{AcceptedVersion, CrateSave, ProjectionTx, Store, Target};
use futures::StreamExt as _;

/// The notifier topic on which changed crates (canonical names) are announced.
pub const CRATE_CHANGED_TOPIC: &str = "crate-changed";

/// Most events folded in one transaction while following the log.
const MAX_BATCH: usize = 500;

/// Most events, and payload bytes, folded in one transaction by a catch-up (a replay): larger
/// batches save a crate touched by several of their events once.
pub const CATCH_UP_BATCH: usize = 2_000;
const CATCH_UP_BATCH_BYTES: usize = 32 << 20;

/// The largest catch-up batch [`Projector::with_catch_up_batch`] accepts.
pub const MAX_CATCH_UP_BATCH: usize = 50_000;

/// A running fold of the log into one set of read models.
#[derive(Debug, Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Store,
    notifier: Option<Arc<dyn Notifier>>,
    target: Target,
    catch_up_batch: usize,
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

/// How often a standby projector tries to take the lease.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How often the active projector checks that its lease is still its own.
pub const LEASE_CHECK: Duration = Duration::from_secs(2);

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
            catch_up_batch: CATCH_UP_BATCH,
        }
    }

    /// The same projector folding at most `events` events per transaction when catching up
    /// (clamped to `1..=`[`MAX_CATCH_UP_BATCH`]; [`CATCH_UP_BATCH`] by default). Batches also
    /// stop at 32 MiB of payload.
    #[must_use]
    pub fn with_catch_up_batch(mut self, events: usize) -> Projector {
        self.catch_up_batch = events.clamp(1, MAX_CATCH_UP_BATCH);
        self
    }

    /// The checkpoint of the generation this projector writes.
    pub async fn checkpoint(&self) -> anyhow::Result<u64> {
        let generation = match self.target {
            Target::Active => self.store.active_generation().await?,
            Target::Generation(number) => number,
        };
        Ok(self.store.checkpoint(generation).await?)
    }

    /// Follows the log until `shutdown` resolves, as the one active projector of its database.
    ///
    /// Only the holder of the projector lease writes (see [`depot_store::ProjectorLease`]):
    /// without it, this projector stands by and tries again every [`LEASE_RETRY`]; holding it,
    /// it checks every [`LEASE_CHECK`] that the lease is still its own and stands by again
    /// when it is not. Transient failures of the log or the database restart the fold from
    /// the checkpoint after a pause; an event this build cannot understand stops the projector
    /// with an error (skipping it would corrupt the index).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut announced_standby = false;
        loop {
            let lease = tokio::select! {
                () = &mut shutdown => return Ok(()),
                lease = self.store.try_projector_lease() => lease,
            };
            let mut lease = match lease {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    if !announced_standby {
                        tracing::info!("another projector is active; standing by");
                        announced_standby = true;
                    }
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(LEASE_RETRY) => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the projector lease; trying again");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(LEASE_RETRY) => continue,
                    }
                }
            };
            tracing::info!("this projector is active");
            announced_standby = false;
            let active = &depot_telemetry::metrics().projector_active;
            active.set(1);
            let follow = self.follow_forever();
            tokio::pin!(follow);
            let mut check = tokio::time::interval(LEASE_CHECK);
            check.tick().await;
            loop {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    fatal = &mut follow => return Err(fatal),
                    _ = check.tick() => {
                        if let Err(e) = lease.check().await {
                            tracing::warn!(error = %e, "the projector lease is lost; standing by");
                            active.set(0);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Folds the log for as long as it can; returns only a fatal error.
    async fn follow_forever(&self) -> anyhow::Error {
        loop {
            match self.follow().await {
                Ok(()) => {}
                Err(FollowError::Fatal(e)) => return e,
                Err(FollowError::Transient(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "projector interrupted; resuming from its checkpoint");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Applies every event currently in the log, then returns the checkpoint.
    pub async fn catch_up(&self) -> anyhow::Result<u64> {
        self.catch_up_to(u64::MAX, |_| {}).await
    }

    /// Applies the events up to `until` (or up to the current head, if lower), reporting the
    /// checkpoint after each batch; returns the final checkpoint.
    ///
    /// The next batches are read and decoded while the current one is written (see
    /// [`read_ahead`]).
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
            let mut batches = read_ahead(
                Arc::clone(&self.log),
                checkpoint + 1,
                target,
                self.catch_up_batch,
            )
            .await?;
            while let Some(batch) = batches.recv().await {
                let (events, envelopes) = batch?;
                let outcome = self.apply_decoded(&events, envelopes).await?;
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
            // `<canonical name> <sequence folded up to>`: an api process answering a change
            // waits for the announcement that covers it.
            let announcement = format!("{canon} {}", outcome.checkpoint);
            if let Err(e) = notifier
                .notify(CRATE_CHANGED_TOPIC, Bytes::from(announcement))
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
        self.apply_decoded(events, decode_all(events)).await
    }

    /// [`apply`](Self::apply) with the envelopes decoded already (`envelopes[i]` of
    /// `events[i]`); decoding errors count only for events that are folded.
    async fn apply_decoded(
        &self,
        events: &[StoredEvent],
        envelopes: Vec<Result<Decoded, DecodeError>>,
    ) -> anyhow::Result<BatchOutcome> {
        let started = std::time::Instant::now();
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut tx = ProjectionTx::begin(&self.store, self.target).await?;
        let checkpoint = tx.checkpoint();
        let (mut batch, gap) = fold_order(events, envelopes, checkpoint)?;
        // The crates the batch touches, each with the uploads of the versions its events
        // mention: all the aggregate needs to fold them, whatever the crates' histories.
        let mut wanted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (stored, envelope, _) in &batch {
            if let Some(canon) = stored.subject.strip_prefix("crate.") {
                let versions = wanted.entry(canon).or_default();
                if let Some(vers) = version_of(&envelope.event) {
                    versions.insert(vers);
                }
            }
        }
        let wanted: Vec<(&str, Vec<&str>)> = wanted
            .into_iter()
            .map(|(canon, versions)| (canon, versions.into_iter().collect()))
            .collect();
        let mut states = tx.load_crates(&wanted).await?;
        let mut crates: BTreeMap<String, CrateWork> = BTreeMap::new();
        for (stored, envelope, accepted) in &mut batch {
            if let Some(canon) = stored.subject.strip_prefix("crate.") {
                let work = match crates.get_mut(canon) {
                    Some(work) => work,
                    None => crates.entry(canon.to_owned()).or_insert(CrateWork {
                        state: states.remove(canon).unwrap_or_default(),
                        last_seq: stored.seq,
                        updated_at: envelope.at,
                        index_changed: None,
                    }),
                };
                apply_crate_event(&mut tx, canon, work, stored.seq, envelope, accepted.take());
                if let Event::VersionYanked(toggle) | Event::VersionUnyanked(toggle) =
                    &envelope.event
                    && work.state.accepted_version(&toggle.vers).is_some()
                {
                    // Why it was yanked, if the owner said; an unyank forgets it.
                    let message = match &envelope.event {
                        Event::VersionYanked(_) => toggle.message.as_deref(),
                        _ => None,
                    };
                    tx.set_yank_message(canon, &toggle.vers, message, stored.seq)
                        .await?;
                }
                apply_trust_event(&mut tx, canon, envelope).await?;
                if let Event::DocsUploaded(docs) = &envelope.event {
                    tx.store_docs(canon, docs, &envelope.actor, stored.seq, envelope.at)
                        .await?;
                }
            } else if stored.subject.starts_with("upstream.") {
                apply_upstream_event(&mut tx, stored.seq, envelope).await?;
            } else if stored.subject.starts_with("webhook.") {
                apply_webhook_event(&mut tx, stored.seq, envelope).await?;
            } else {
                apply_principal_event(&mut tx, envelope).await?;
            }
            *kinds.entry(envelope.kind().to_owned()).or_default() += 1;
        }
        let saves: Vec<CrateSave<'_>> = crates
            .iter()
            .map(|(canon, work)| CrateSave {
                canon,
                state: &work.state,
                last_seq: work.last_seq,
                updated_at: work.updated_at,
                index_changed: work.index_changed,
            })
            .collect();
        tx.save_crates(&saves).await?;
        let applied = batch.len();
        let last = batch.last().map_or(checkpoint, |(stored, _, _)| stored.seq);
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

/// An event decoded for the fold, with the stored values of a verdict rendered already.
#[derive(Debug)]
struct Decoded {
    envelope: Envelope,
    /// For a `version_accepted`: what its version row will hold.
    accepted: Option<AcceptedVersion>,
}

/// A batch read from the log, with each event decoded (or why not).
type DecodedBatch = (Vec<StoredEvent>, Vec<Result<Decoded, DecodeError>>);

/// Decodes events as the fold reads them ([`Envelope::decode_for_fold`]: `data` parsed once,
/// the publish metadata of uploads skipped), rendering verdicts' stored values on the way.
fn decode_all(events: &[StoredEvent]) -> Vec<Result<Decoded, DecodeError>> {
    events
        .iter()
        .map(|e| {
            let envelope = Envelope::decode_for_fold(&e.payload)?;
            let accepted = match &envelope.event {
                Event::VersionAccepted(outcome) => {
                    Some(AcceptedVersion::new(&outcome.entry, &outcome.metadata))
                }
                _ => None,
            };
            Ok(Decoded { envelope, accepted })
        })
        .collect()
}

/// Reads the events `from..=target` in batches of up to `batch` events (or
/// [`CATCH_UP_BATCH_BYTES`]) and decodes them, in a pipeline of two tasks that stay ahead of
/// the receiver: one reads the log, the next decodes (on a blocking thread), while the receiver
/// writes. Reading, decoding (CPU) and the previous batch's transaction (mostly database time)
/// overlap; each stage holds at most one batch besides the one it works on, so at most about
/// five batches are in memory. The tasks stop at `target`, at a read error (which they pass
/// on) or when the receiver is dropped.
async fn read_ahead(
    log: Arc<dyn EventLog>,
    from: u64,
    target: u64,
    batch: usize,
) -> anyhow::Result<tokio::sync::mpsc::Receiver<anyhow::Result<DecodedBatch>>> {
    let batch = batch.clamp(1, MAX_CATCH_UP_BATCH);
    let mut events = log.read_from(from).await?;
    let (read_sender, mut read) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<StoredEvent>>>(1);
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut next = from;
        while next <= target {
            let mut events_read = Vec::with_capacity(batch.min(CATCH_UP_BATCH));
            let mut bytes = 0;
            while next <= target && events_read.len() < batch && bytes < CATCH_UP_BATCH_BYTES {
                let event = match events.next().await {
                    Some(Ok(event)) if event.seq <= target => event,
                    // Past the target, which only a gap in the log can cause: fold what we have.
                    Some(Ok(_)) | None => break,
                    Some(Err(e)) => {
                        let _ = read_sender.send(Err(e.into())).await;
                        return;
                    }
                };
                next = event.seq + 1;
                bytes += event.payload.len();
                events_read.push(event);
            }
            if events_read.is_empty() || read_sender.send(Ok(events_read)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(events) = read.recv().await {
            let decoded = match events {
                Ok(events) => tokio::task::spawn_blocking(move || {
                    let decoded = decode_all(&events);
                    (events, decoded)
                })
                .await
                .context("decoding events"),
                Err(e) => Err(e),
            };
            let stop = decoded.is_err();
            if sender.send(decoded).await.is_err() || stop {
                return;
            }
        }
    });
    Ok(receiver)
}

/// Events to fold, in log order, each with its envelope and its verdict's stored values.
type FoldBatch<'a> = Vec<(&'a StoredEvent, Envelope, Option<AcceptedVersion>)>;

/// The events of `events` that follow `checkpoint` without a gap, with their envelopes, and
/// whether a gap (events missing before one of them, as after a generation switch) cut them
/// short. Events at or below the checkpoint (redeliveries, duplicates inside the batch) are
/// skipped; an event to fold that could not be decoded, or has a type this build does not
/// know, is an error.
fn fold_order(
    events: &[StoredEvent],
    envelopes: Vec<Result<Decoded, DecodeError>>,
    checkpoint: u64,
) -> anyhow::Result<(FoldBatch<'_>, bool)> {
    let mut batch = Vec::with_capacity(events.len());
    let mut last = checkpoint;
    for (stored, envelope) in events.iter().zip(envelopes) {
        if stored.seq <= last {
            continue;
        }
        // Sequences are gap-free: a jump means events before this one are missing here.
        if stored.seq != last + 1 {
            return Ok((batch, true));
        }
        let Decoded { envelope, accepted } = envelope.map_err(|e| {
            anyhow::Error::new(UnreadableEvent(format!("event {}: {e}", stored.seq)))
        })?;
        if let Event::Unknown { kind, .. } = &envelope.event {
            return Err(anyhow::Error::new(UnreadableEvent(format!(
                "event {} has type `{kind}`, unknown to this version of Depot; upgrade it",
                stored.seq
            ))));
        }
        batch.push((stored, envelope, accepted));
        last = stored.seq;
    }
    Ok((batch, false))
}

/// Folds one crate event: the aggregate, and the version rows (recorded in `tx`, written when
/// the batch's crates are saved).
fn apply_crate_event(
    tx: &mut ProjectionTx,
    canon: &str,
    work: &mut CrateWork,
    seq: u64,
    envelope: &Envelope,
    accepted: Option<AcceptedVersion>,
) {
    match &envelope.event {
        Event::VersionUploaded(upload) => {
            // An upload of a version that is already live is ignored by the aggregate too.
            if work.state.live_version(&upload.vers).is_none() {
                tx.insert_upload(canon, seq, upload, envelope.at);
            }
        }
        Event::VersionAccepted(outcome) => {
            // A verdict on an upload that is not pending (a second one) is ignored by the
            // aggregate too.
            let pending = work.state.live_version(&outcome.vers).is_some_and(|v| {
                v.status == VersionStatus::Pending
                    && v.vers == outcome.vers
                    && v.cksum == outcome.cksum
            });
            if pending {
                let accepted = accepted
                    .unwrap_or_else(|| AcceptedVersion::new(&outcome.entry, &outcome.metadata));
                tx.accept(canon, &outcome.vers, &outcome.cksum, accepted);
            }
            work.index_changed = Some((seq, envelope.at));
        }
        Event::VersionRejected(outcome) => {
            tx.reject(canon, &outcome.vers, &outcome.cksum, &outcome.reasons);
        }
        Event::VersionYanked(toggle) | Event::VersionUnyanked(toggle) => {
            // Only accepted versions can be yanked (the aggregate ignores the rest too).
            if work.state.accepted_version(&toggle.vers).is_some() {
                let yanked = matches!(envelope.event, Event::VersionYanked(_));
                tx.set_yanked(canon, &toggle.vers, yanked);
            }
            work.index_changed = Some((seq, envelope.at));
        }
        Event::OwnersAdded(_)
        | Event::OwnersRemoved(_)
        | Event::TrustAdded(_)
        | Event::TrustRemoved(_)
        | Event::TrustedOnlySet(_)
        | Event::UpstreamNameAllowed(_)
        | Event::DocsUploaded(_) => {}
        Event::TokenIssued(_)
        | Event::TokenRevoked(_)
        | Event::UserCreated(_)
        | Event::UserDisabled(_)
        | Event::UserEnabled(_)
        | Event::UpstreamIndexStored(_)
        | Event::UpstreamCrateStored(_)
        | Event::WebhookSubscribed(_)
        | Event::WebhookUnsubscribed(_)
        | Event::Unknown { .. } => {
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
}

/// Trusted-publishing settings of a crate live beside its aggregate, in their own tables.
async fn apply_trust_event(
    tx: &mut ProjectionTx,
    canon: &str,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    match &envelope.event {
        Event::TrustAdded(trust) => {
            tx.add_trust(canon, trust, &envelope.actor, envelope.at)
                .await?;
        }
        Event::TrustRemoved(removed) => tx.remove_trust(canon, removed.trust_id).await?,
        Event::TrustedOnlySet(set) => tx.set_trusted_only(canon, set.enabled).await?,
        Event::UpstreamNameAllowed(allowed) => {
            tx.set_upstream_allowed(canon, allowed.allowed, &envelope.actor, envelope.at)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// What the upstream-registry cache stored lives in its own tables, by upstream name.
async fn apply_upstream_event(
    tx: &mut ProjectionTx,
    seq: u64,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    match &envelope.event {
        Event::UpstreamIndexStored(stored) => {
            tx.store_upstream_index(stored, seq, envelope.at).await?;
        }
        Event::UpstreamCrateStored(stored) => {
            tx.store_upstream_crate(stored, seq, envelope.at).await?;
        }
        _ => tracing::warn!(
            seq,
            event.kind = envelope.kind(),
            "ignoring a non-upstream event on an upstream subject"
        ),
    }
    Ok(())
}

/// Webhook subscriptions live in their own table; a removed one stays, with the sequence of
/// its removal, so the dispatcher can tell which events it was subscribed to.
async fn apply_webhook_event(
    tx: &mut ProjectionTx,
    seq: u64,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    match &envelope.event {
        Event::WebhookSubscribed(subscribed) => {
            tx.add_webhook(subscribed, seq, envelope.at).await?;
        }
        Event::WebhookUnsubscribed(removed) => {
            tx.remove_webhook(removed.subscription_id, seq).await?;
        }
        _ => tracing::warn!(
            seq,
            event.kind = envelope.kind(),
            "ignoring a non-webhook event on a webhook subject"
        ),
    }
    Ok(())
}

async fn apply_principal_event(tx: &mut ProjectionTx, envelope: &Envelope) -> anyhow::Result<()> {
    match &envelope.event {
        Event::TokenIssued(token) => tx.issue_token(token, envelope.at).await?,
        Event::TokenRevoked(revoked) => tx.revoke_token(revoked.token_id).await?,
        Event::UserCreated(user) => tx.create_user(user, envelope.at).await?,
        Event::UserDisabled(user) => tx.set_user_disabled(&user.login, true).await?,
        Event::UserEnabled(user) => tx.set_user_disabled(&user.login, false).await?,
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
