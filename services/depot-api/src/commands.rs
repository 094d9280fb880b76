//! Commands on a crate aggregate: load its state, decide, append with optimistic concurrency,
//! and wait until the projector has made the result visible.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use depot_eventlog::{AppendError, Expected};
use depot_events::{CrateState, Envelope, Event, version_of, version_without_build};
use depot_index::CanonicalName;

use crate::changes::ChangeWaiter;
use crate::{ApiError, AppState};

/// Attempts before giving up on a crate that keeps changing under us.
const MAX_ATTEMPTS: usize = 8;

/// What a command's decision function may return.
#[derive(Debug)]
pub(crate) enum Decision<T> {
    /// Append this event, then return `T`.
    Append(Box<Event>, T),
    /// Nothing to append; return `T`.
    Done(T),
}

/// The result of a command.
#[derive(Debug)]
pub(crate) struct Executed<T> {
    /// The decision's value.
    pub(crate) value: T,
    /// The log sequence of the appended event, if one was appended.
    pub(crate) appended: Option<u64>,
    /// The appended event, if one was appended.
    pub(crate) envelope: Option<Envelope>,
    /// Change announcements since before the append (so none that covers it is missed).
    pub(crate) changes: ChangeWaiter,
}

/// Loads a crate's aggregate as a command on `vers` (or on the crate alone) decides on it: the
/// projected head and uploads of that version, plus any events the projector has not applied
/// yet, read from the log. Returns the state and the sequence of its last event.
///
/// What is loaded does not grow with the crate's history: the head, the uploads of `vers`, and
/// those of the versions the log tail mentions (which the fold of the tail needs). When the tail
/// mentions others, they are loaded with the head from a newer snapshot, whose tail is shorter.
pub(crate) async fn load_crate(
    state: &AppState,
    canon: &CanonicalName,
    vers: Option<&str>,
) -> Result<(CrateState, u64), ApiError> {
    let subject = depot_events::subject::krate(canon);
    let mut wanted: BTreeSet<String> = vers
        .map(|v| version_without_build(v).to_owned())
        .into_iter()
        .collect();
    for _ in 0..MAX_ATTEMPTS {
        let versions: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let (mut crate_state, mut seq) = state
            .store()
            .crate_aggregate(canon, &versions)
            .await?
            .unwrap_or_default();
        let tail = state
            .log()
            .read_subject(&subject, seq)
            .await?
            .into_iter()
            .map(|stored| {
                let envelope = Envelope::decode(&stored.payload).map_err(ApiError::internal)?;
                Ok((stored.seq, envelope))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let missing: Vec<String> = tail
            .iter()
            .filter_map(|(_, envelope)| version_of(&envelope.event))
            .map(|v| version_without_build(v).to_owned())
            .filter(|v| !wanted.contains(v))
            .collect();
        if !missing.is_empty() {
            wanted.extend(missing);
            continue;
        }
        for (event_seq, envelope) in &tail {
            crate_state.apply(envelope);
            seq = *event_seq;
        }
        return Ok((crate_state, seq));
    }
    Err(ApiError::unavailable(
        "the crate is being changed by many requests at once; try again",
    ))
}

/// Runs `decide` against the crate's current state (loaded for `vers`, see [`load_crate`]) and
/// appends the event it asks for, expecting
/// the crate's last sequence to be unchanged; on a conflict the state is reloaded and `decide`
/// runs again.
pub(crate) async fn execute<T>(
    state: &AppState,
    canon: &CanonicalName,
    vers: Option<&str>,
    actor: &str,
    mut decide: impl FnMut(&CrateState) -> Result<Decision<T>, ApiError>,
) -> Result<Executed<T>, ApiError> {
    let subject = depot_events::subject::krate(canon);
    let changes = state.inner.changes.subscribe();
    for _ in 0..MAX_ATTEMPTS {
        let (crate_state, seq) = load_crate(state, canon, vers).await?;
        let (event, value) = match decide(&crate_state)? {
            Decision::Done(value) => {
                return Ok(Executed {
                    value,
                    appended: None,
                    envelope: None,
                    changes,
                });
            }
            Decision::Append(event, value) => (event, value),
        };
        let envelope = Envelope::new(actor, *event);
        let payload = Bytes::from(envelope.encode());
        let metrics = depot_telemetry::metrics();
        let started = Instant::now();
        let appended = state
            .log()
            .append(
                &subject,
                Expected::Seq(seq),
                &envelope.id.to_string(),
                payload,
            )
            .await;
        metrics
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        match appended {
            Ok(appended) => {
                if !appended.duplicate {
                    metrics
                        .events_appended
                        .with_label_values(&[envelope.kind()])
                        .inc();
                }
                return Ok(Executed {
                    value,
                    appended: Some(appended.seq),
                    envelope: Some(envelope),
                    changes,
                });
            }
            Err(AppendError::Conflict { .. }) => {
                metrics.append_conflicts.inc();
                continue;
            }
            Err(AppendError::Unavailable(reason)) => {
                tracing::warn!(%reason, "event log unavailable");
                return Err(ApiError::unavailable(
                    "the registry event log is unavailable; try again shortly",
                ));
            }
            Err(other) => return Err(ApiError::internal(other)),
        }
    }
    Err(ApiError::unavailable(
        "the crate is being changed by many requests at once; try again",
    ))
}

/// Waits (bounded by `limit`) until the read models reflect the crate's event `seq`, then drops
/// the crate's cached index file. Returns whether it got there in time.
/// How long a command that sees its change in the read models waits for the projector's
/// announcement of it (which every api process receives) before answering anyway.
const ANNOUNCEMENT_WAIT: Duration = Duration::from_millis(500);

/// Before answering a change that the read models show folded up to `last`, waits for the
/// projector's announcement of it. The projector announces right after committing, and every
/// api process receives the announcement at the same moment and drops its cached file; so once
/// this process has it, the others will not serve the client's next request from a file they
/// cached before the change. A lost announcement costs [`ANNOUNCEMENT_WAIT`] (and the caches'
/// time limit still applies).
pub(crate) async fn await_announcement(
    state: &AppState,
    waiter: &mut ChangeWaiter,
    canon: &str,
    last: u64,
    deadline: Instant,
) {
    let left = deadline.saturating_duration_since(Instant::now());
    if !waiter
        .announced(canon, last, left.min(ANNOUNCEMENT_WAIT))
        .await
    {
        tracing::debug!(krate.name = %canon, seq = last, "no announcement of a folded change");
    }
    state.inner.cache.invalidate(canon);
}

pub(crate) async fn wait_projected(
    state: &AppState,
    mut waiter: ChangeWaiter,
    canon: &str,
    seq: u64,
    limit: Duration,
) -> Result<bool, ApiError> {
    let deadline = Instant::now() + limit;
    loop {
        let last = state.store().crate_last_seq(canon).await?;
        if let Some(last) = last.filter(|last| *last >= seq) {
            await_announcement(state, &mut waiter, canon, last, deadline).await;
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        waiter
            .changed(canon, (deadline - now).min(Duration::from_millis(250)))
            .await;
    }
}
