//! Signed webhooks from the event log.
//!
//! Subscriptions are events (`webhook_subscribed` / `webhook_unsubscribed` on
//! `webhook.<id>`), folded by the projector into `webhook_subscriptions`. The [`Dispatcher`]
//! — one per deployment, holding a lease like the projector — reads the log from a cursor of
//! its own, up to the projector's checkpoint (so it knows every subscription made before an
//! event), turns each crate event into a delivery per matching subscription, and records them
//! in the delivery log together with the new cursor. It then POSTs due deliveries, the oldest
//! pending one of each (subscription, crate) at a time, so a subscriber sees each crate's
//! events in log order; failures are retried with exponential backoff and jitter until
//! [`DispatcherConfig::max_age`], then marked failed. Publishing only appends to the log:
//! nothing a receiver does can slow it.
//!
//! [`queue_replay`] queues the matching events of a range of the log again, with their
//! original `webhook-id`s ([`payload::WebhookEvent::webhook_id`]).

pub mod payload;
pub mod signature;
pub mod subscription;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use depot_eventlog::{EventLog, StoredEvent};
use depot_store::{AttemptResult, DeliveryRow, NewDelivery, Store, WebhookRow};
use futures::StreamExt as _;
use rand::Rng as _;

pub use payload::WebhookEvent;
pub use signature::{WebhookKey, WebhookSecret};
pub use subscription::{EVENT_TYPES, SubscriptionRequest, ValidSubscription};

/// Most events of the log turned into deliveries in one transaction.
const QUEUE_BATCH: u64 = 500;
/// Most events one replay may cover ([`queue_replay`]); a larger range is replayed in parts.
pub const MAX_REPLAY_EVENTS: u64 = 100_000;
/// How much of a refused answer's body is kept in the delivery log, in bytes (the rest is
/// not read).
const ERROR_BODY_BYTES: usize = 256;
/// How often the lease holder checks its lease, and a standby tries to take it.
const LEASE_CHECK: Duration = Duration::from_secs(2);

/// Settings of the dispatcher. Every queue and loop is bounded by one of them.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Requests in flight at once (over all subscriptions).
    pub concurrency: usize,
    /// Timeout of one request, connecting included.
    pub request_timeout: Duration,
    /// The first retry's delay; each further one doubles it, with jitter.
    pub first_retry: Duration,
    /// The longest delay between attempts.
    pub max_retry: Duration,
    /// How long after it was queued a delivery is given up (marked failed).
    pub max_age: Duration,
    /// Most pending deliveries per subscription: an event beyond it is recorded as failed at
    /// once (`backlog full`), and `depot webhook replay` can send it later.
    pub max_backlog: u64,
    /// How long delivered and failed deliveries stay in the delivery log.
    pub retention: Duration,
    /// How often the dispatcher looks for new events and due deliveries when idle.
    pub poll: Duration,
}

impl Default for DispatcherConfig {
    /// 16 requests at once, 10 s each, retries from 1 s doubling up to 10 min, given up after
    /// 24 h, 10,000 pending per subscription, 30 days of history, polling every 250 ms.
    fn default() -> Self {
        DispatcherConfig {
            concurrency: 16,
            request_timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            max_backlog: 10_000,
            retention: Duration::from_secs(30 * 24 * 3600),
            poll: Duration::from_millis(250),
        }
    }
}

/// The delay before attempt `attempts + 1` after `attempts` failed ones: `first` doubled per
/// failure, capped at `max`, then a random 50–100 % of it (jitter, so receivers coming back
/// are not hit by every retry at once).
pub fn backoff(attempts: u64, first: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(30);
    let full = first.saturating_mul(1_u32 << exponent).min(max);
    let jitter = rand::rng().random_range(0.5..=1.0);
    full.mul_f64(jitter)
}

fn now_ms() -> i64 {
    depot_events::Timestamp::now().unix_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Delivers crate events to the subscriptions they match. See the crate documentation.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    log: Arc<dyn EventLog>,
    store: Store,
    key: WebhookKey,
    config: DispatcherConfig,
    http: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher over `log` and `store`, signing with secrets derived from `key`.
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Store,
        key: WebhookKey,
        config: DispatcherConfig,
    ) -> anyhow::Result<Dispatcher> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .user_agent(concat!("depot-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the webhook HTTP client")?;
        Ok(Dispatcher {
            log,
            store,
            key,
            config,
            http,
        })
    }

    /// Runs until `shutdown` resolves, delivering while it holds the webhook lease and
    /// standing by otherwise.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let active = &depot_telemetry::metrics().webhook_dispatcher_active;
        loop {
            let lease = tokio::select! {
                () = &mut shutdown => return Ok(()),
                lease = self.store.try_webhook_lease() => lease,
            };
            let mut lease = match lease {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(LEASE_CHECK) => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the webhook lease; trying again");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(LEASE_CHECK) => continue,
                    }
                }
            };
            tracing::info!("this webhook dispatcher is active");
            active.set(1);
            // Dropping the work drops its requests in flight (their deliveries stay pending).
            let work = self.work();
            tokio::pin!(work);
            let mut check = tokio::time::interval(LEASE_CHECK);
            check.tick().await;
            let lost = loop {
                tokio::select! {
                    () = &mut shutdown => break false,
                    () = &mut work => break true,
                    _ = check.tick() => {
                        if let Err(e) = lease.check().await {
                            tracing::warn!(error = %e, "the webhook lease is lost; standing by");
                            break true;
                        }
                    }
                }
            };
            active.set(0);
            if !lost {
                return Ok(());
            }
        }
    }

    /// Queues and sends for as long as it is polled; never returns.
    async fn work(&self) {
        let mut in_flight = tokio::task::JoinSet::new();
        let in_flight = &mut in_flight;
        let mut busy: HashSet<(String, String)> = HashSet::new();
        let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            while let Some(done) = in_flight.try_join_next() {
                if let Ok(key) = done {
                    busy.remove(&key);
                }
            }
            if let Err(e) = self.queue_new_events().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot queue webhook deliveries");
            }
            if let Err(e) = self.start_due(in_flight, &mut busy).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot send webhook deliveries");
            }
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = std::time::Instant::now();
                match self
                    .store
                    .prune_webhook_deliveries(now_ms() - millis(self.config.retention))
                    .await
                {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned the webhook delivery log"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the webhook delivery log"),
                }
            }
            // Wait for the poll interval, or less when a delivery finishes: it may unblock the
            // next one of its crate at once.
            tokio::select! {
                () = tokio::time::sleep(self.config.poll) => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(key) = done {
                        busy.remove(&key);
                    }
                }
            }
            // Keys of tasks that panicked or were cancelled are forgotten with their task.
            if in_flight.is_empty() {
                busy.clear();
            }
        }
    }

    /// Turns the events between the cursor and the projector's checkpoint into deliveries
    /// (at most [`QUEUE_BATCH`] events per call).
    pub async fn queue_new_events(&self) -> anyhow::Result<()> {
        let cursor = self.store.webhook_cursor().await?;
        let generation = self.store.active_generation().await?;
        let checkpoint = self.store.checkpoint(generation).await?;
        if checkpoint <= cursor {
            return Ok(());
        }
        let subscriptions = self.store.webhooks_after(cursor).await?;
        if subscriptions.iter().all(|s| s.created_seq >= checkpoint) {
            // No subscription could want any of these events.
            self.store
                .queue_webhook_deliveries(&[], Some((cursor, checkpoint)), now_ms())
                .await?;
            return Ok(());
        }
        let until = checkpoint.min(cursor + QUEUE_BATCH);
        let events = read_range(self.log.as_ref(), cursor + 1, until).await?;
        let backlogs = self.store.webhook_backlogs().await?;
        let deliveries = deliveries_for(
            &self.store,
            &events,
            &subscriptions,
            backlogs,
            self.config.max_backlog,
            false,
            true,
        )
        .await?;
        self.store
            .queue_webhook_deliveries(&deliveries, Some((cursor, until)), now_ms())
            .await?;
        Ok(())
    }

    /// Starts sending due deliveries whose (subscription, crate) has none in flight.
    async fn start_due(
        &self,
        in_flight: &mut tokio::task::JoinSet<(String, String)>,
        busy: &mut HashSet<(String, String)>,
    ) -> anyhow::Result<()> {
        let metrics = depot_telemetry::metrics();
        let backlog: u64 = self.store.webhook_backlogs().await?.values().sum();
        metrics
            .webhook_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        let free = self.config.concurrency.saturating_sub(in_flight.len());
        if free == 0 || backlog == 0 {
            return Ok(());
        }
        let limit = u32::try_from(free + busy.len()).unwrap_or(u32::MAX);
        let due = self.store.due_webhook_deliveries(now_ms(), limit).await?;
        if due.is_empty() {
            return Ok(());
        }
        let subscriptions: HashMap<String, WebhookRow> = self
            .store
            .webhooks(true)
            .await?
            .into_iter()
            .map(|s| (s.subscription_id.clone(), s))
            .collect();
        for delivery in due {
            if in_flight.len() >= self.config.concurrency {
                break;
            }
            let key = (delivery.subscription_id.clone(), delivery.canon.clone());
            if busy.contains(&key) {
                continue;
            }
            busy.insert(key.clone());
            let target = subscriptions
                .get(&delivery.subscription_id)
                .filter(|s| s.removed_seq.is_none())
                .map(|s| s.url.clone());
            let this = self.clone();
            in_flight.spawn(async move {
                this.attempt(delivery, target).await;
                key
            });
        }
        Ok(())
    }

    /// One attempt at a delivery, recorded in the delivery log.
    async fn attempt(&self, delivery: DeliveryRow, url: Option<String>) {
        let metrics = depot_telemetry::metrics();
        let result = match url {
            None => AttemptResult::Failed {
                status: None,
                error: "the subscription was removed".to_owned(),
            },
            Some(url) => {
                metrics.webhook_attempts.inc();
                let (status, error) = self.send(&delivery, &url).await;
                match error {
                    None => AttemptResult::Delivered {
                        status: status.unwrap_or(200),
                    },
                    Some(error) => {
                        let attempts = delivery.attempts + 1;
                        let next = now_ms().saturating_add(millis(backoff(
                            attempts,
                            self.config.first_retry,
                            self.config.max_retry,
                        )));
                        if next - delivery.created_at > millis(self.config.max_age) {
                            AttemptResult::Failed { status, error }
                        } else {
                            AttemptResult::Retry {
                                status,
                                error,
                                next_attempt_at: next,
                            }
                        }
                    }
                }
            }
        };
        let label = match &result {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Retry { .. } => "retried",
            AttemptResult::Failed { .. } => "failed",
        };
        metrics.webhook_deliveries.with_label_values(&[label]).inc();
        if let AttemptResult::Failed { error, .. } = &result {
            tracing::warn!(
                subscription = %delivery.subscription_id,
                seq = delivery.seq,
                error = %error,
                "webhook delivery given up"
            );
        }
        if let Err(e) = self
            .store
            .record_webhook_attempt(delivery.id, &result, now_ms())
            .await
        {
            tracing::warn!(error = %e, "cannot record a webhook attempt; it will be sent again");
        }
    }

    /// POSTs the delivery, signed: (status, why it did not count as delivered).
    async fn send(&self, delivery: &DeliveryRow, url: &str) -> (Option<u16>, Option<String>) {
        let Ok(subscription_id) = uuid::Uuid::parse_str(&delivery.subscription_id) else {
            return (None, Some("the subscription id is not a UUID".to_owned()));
        };
        let secret = self.key.secret_for(&subscription_id);
        let timestamp = now_ms() / 1000;
        let body = delivery.payload.clone().into_bytes();
        let signature = secret.sign(&delivery.webhook_id, timestamp, &body);
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(mut response) => {
                let status = response.status().as_u16();
                let mut excerpt = Vec::new();
                // Read at most a chunk or two of the body, within the request timeout.
                while excerpt.len() < ERROR_BODY_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                        _ => break,
                    }
                }
                excerpt.truncate(ERROR_BODY_BYTES);
                let excerpt = String::from_utf8_lossy(&excerpt)
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect::<String>();
                (Some(status), Some(format!("HTTP {status}: {excerpt}")))
            }
            Err(e) => (None, Some(describe(&e))),
        }
    }
}

/// A short cause of a failed request (without the URL, which may hold a token).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_redirect() {
        "redirect not followed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

/// The events `from..=until` of the log (bounded by the caller's range), in order.
async fn read_range(log: &dyn EventLog, from: u64, until: u64) -> anyhow::Result<Vec<StoredEvent>> {
    let mut events = Vec::new();
    if from > until {
        return Ok(events);
    }
    let mut stream = log.read_from(from).await?;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .context("reading the event log timed out")?
    {
        let event = next?;
        if event.seq > until {
            break;
        }
        let last = event.seq == until;
        events.push(event);
        if last {
            break;
        }
    }
    Ok(events)
}

/// The deliveries of `events` to `subscriptions`: for each event webhooks deliver, each
/// subscription whose types and patterns match it (and, unless `replay`, that was active when
/// it was appended, `only_active`). A subscription past `max_backlog` pending deliveries gets
/// them recorded as failed.
async fn deliveries_for(
    store: &Store,
    events: &[StoredEvent],
    subscriptions: &[WebhookRow],
    mut backlogs: HashMap<String, u64>,
    max_backlog: u64,
    replay: bool,
    only_active: bool,
) -> anyhow::Result<Vec<NewDelivery>> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut deliveries = Vec::new();
    for stored in events {
        let Some(event) = WebhookEvent::from_stored(stored) else {
            continue;
        };
        let matching: Vec<&WebhookRow> = subscriptions
            .iter()
            .filter(|s| !only_active || s.active_at(stored.seq))
            .filter(|s| s.event_types.iter().any(|t| t == event.event_type))
            .filter(|s| subscription::crate_matches(&s.crates, &event.canon))
            .collect();
        if matching.is_empty() {
            continue;
        }
        let name = match &event.name {
            Some(name) => name.clone(),
            None => match names.get(&event.canon) {
                Some(name) => name.clone(),
                None => {
                    let name = store
                        .crate_versions(&event.canon)
                        .await?
                        .map_or_else(|| event.canon.clone(), |v| v.name);
                    names.insert(event.canon.clone(), name.clone());
                    name
                }
            },
        };
        let body = event.body(&name);
        for subscription in matching {
            let backlog = backlogs
                .entry(subscription.subscription_id.clone())
                .or_default();
            let refused = (*backlog >= max_backlog).then(|| {
                format!("backlog full: {max_backlog} deliveries of this subscription are pending")
            });
            if refused.is_none() {
                *backlog += 1;
            }
            deliveries.push(NewDelivery {
                subscription_id: subscription.subscription_id.clone(),
                canon: event.canon.clone(),
                seq: stored.seq,
                event_type: event.event_type.to_owned(),
                webhook_id: event.webhook_id(&subscription.subscription_id),
                payload: body.clone(),
                replay,
                refused,
            });
        }
    }
    Ok(deliveries)
}

/// What [`queue_replay`] queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// The range replayed (`to` clamped to the projector's checkpoint).
    pub from: u64,
    /// The last sequence replayed.
    pub to: u64,
    /// Deliveries queued.
    pub queued: usize,
    /// Deliveries recorded as failed because a subscription's backlog was full.
    pub refused: usize,
}

/// Queues again the deliveries of the events `from..=to` (`to` clamped to the projector's
/// checkpoint; at most [`MAX_REPLAY_EVENTS`] events) to every current subscription whose
/// types and patterns match them (or only to `subscription`), with their original
/// `webhook-id`s, in log order.
pub async fn queue_replay(
    log: &dyn EventLog,
    store: &Store,
    from: u64,
    to: Option<u64>,
    subscription: Option<&str>,
    max_backlog: u64,
) -> Result<ReplayOutcome, ReplayError> {
    let generation = store
        .active_generation()
        .await
        .map_err(ReplayError::other)?;
    let checkpoint = store
        .checkpoint(generation)
        .await
        .map_err(ReplayError::other)?;
    let from = from.max(1);
    let to = to.unwrap_or(checkpoint).min(checkpoint);
    if to < from {
        return Ok(ReplayOutcome {
            from,
            to,
            queued: 0,
            refused: 0,
        });
    }
    if to - from >= MAX_REPLAY_EVENTS {
        return Err(ReplayError::Invalid(format!(
            "a replay covers at most {MAX_REPLAY_EVENTS} events; replay {from}..={to} in parts"
        )));
    }
    let subscriptions: Vec<WebhookRow> = store
        .webhooks(false)
        .await
        .map_err(ReplayError::other)?
        .into_iter()
        .filter(|s| subscription.is_none_or(|id| s.subscription_id == id))
        .collect();
    if let Some(id) = subscription
        && subscriptions.is_empty()
    {
        return Err(ReplayError::NotFound(format!(
            "no webhook subscription `{}`",
            id.escape_debug()
        )));
    }
    let events = read_range(log, from, to)
        .await
        .map_err(ReplayError::Other)?;
    let backlogs = store.webhook_backlogs().await.map_err(ReplayError::other)?;
    let deliveries = deliveries_for(
        store,
        &events,
        &subscriptions,
        backlogs,
        max_backlog,
        true,
        false,
    )
    .await
    .map_err(ReplayError::Other)?;
    let refused = deliveries.iter().filter(|d| d.refused.is_some()).count();
    store
        .queue_webhook_deliveries(&deliveries, None, now_ms())
        .await
        .map_err(ReplayError::other)?;
    Ok(ReplayOutcome {
        from,
        to,
        queued: deliveries.len() - refused,
        refused,
    })
}

/// Why a replay was not queued.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The subscription named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The log or the database failed.
    #[error(transparent)]
    Other(anyhow::Error),
}

impl ReplayError {
    fn other(error: impl Into<anyhow::Error>) -> ReplayError {
        ReplayError::Other(error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(600));
        for attempts in 1..=40 {
            let full = first.saturating_mul(1 << (attempts - 1).min(30)).min(max);
            let delay = backoff(attempts, first, max);
            assert!(delay <= full && delay >= full / 2, "{attempts}: {delay:?}");
        }
        assert!(backoff(u64::MAX, first, max) <= max);
    }
}

/// Most subscriptions (not removed) a registry may have.
pub const MAX_SUBSCRIPTIONS: usize = 1_000;

/// A subscription just made: its id, its secret (shown once) and the log sequence of its
/// event (it receives the events after it).
#[derive(Debug, Clone)]
pub struct Subscribed {
    /// The subscription id.
    pub id: uuid::Uuid,
    /// The signing secret (`whsec_…`).
    pub secret: String,
    /// The sequence of `webhook_subscribed`.
    pub seq: u64,
    /// The subscription as validated.
    pub subscription: ValidSubscription,
}

/// Why a subscription change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// No such subscription.
    #[error("{0}")]
    NotFound(String),
    /// The log or the database failed.
    #[error(transparent)]
    Other(anyhow::Error),
}

/// Validates `request` and appends `webhook_subscribed` (on its own new subject) by `actor`.
pub async fn subscribe(
    log: &dyn EventLog,
    store: &Store,
    key: &WebhookKey,
    request: SubscriptionRequest,
    actor: &str,
) -> Result<Subscribed, SubscribeError> {
    let subscription = subscription::validate(request).map_err(SubscribeError::Invalid)?;
    let existing = store
        .webhooks(false)
        .await
        .map_err(|e| SubscribeError::Other(e.into()))?;
    if existing.len() >= MAX_SUBSCRIPTIONS {
        return Err(SubscribeError::Invalid(format!(
            "at most {MAX_SUBSCRIPTIONS} webhook subscriptions; remove one first"
        )));
    }
    let id = uuid::Uuid::now_v7();
    let event = depot_events::Event::WebhookSubscribed(depot_events::WebhookSubscribed {
        subscription_id: id,
        url: subscription.url.clone(),
        event_types: subscription.event_types.clone(),
        crates: subscription.crates.clone(),
        description: subscription.description.clone(),
        created_by: actor.to_owned(),
    });
    let seq = append(log, &id, actor, event, depot_eventlog::Expected::Seq(0)).await?;
    Ok(Subscribed {
        id,
        secret: key.secret_for(&id).to_whsec(),
        seq,
        subscription,
    })
}

/// Appends `webhook_unsubscribed` for a subscription that exists and is not removed; returns
/// the event's sequence.
pub async fn unsubscribe(
    log: &dyn EventLog,
    store: &Store,
    id: &str,
    actor: &str,
) -> Result<u64, SubscribeError> {
    let not_found =
        || SubscribeError::NotFound(format!("no webhook subscription `{}`", id.escape_debug()));
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    let row = store
        .webhook(&id.to_string())
        .await
        .map_err(|e| SubscribeError::Other(e.into()))?;
    if row.is_none_or(|row| row.removed_seq.is_some()) {
        return Err(not_found());
    }
    let event = depot_events::Event::WebhookUnsubscribed(depot_events::WebhookUnsubscribed {
        subscription_id: id,
    });
    append(log, &id, actor, event, depot_eventlog::Expected::Any).await
}

async fn append(
    log: &dyn EventLog,
    id: &uuid::Uuid,
    actor: &str,
    event: depot_events::Event,
    expected: depot_eventlog::Expected,
) -> Result<u64, SubscribeError> {
    let envelope = depot_events::Envelope::new(actor, event);
    let appended = log
        .append(
            &depot_events::subject::webhook(id),
            expected,
            &envelope.id.to_string(),
            bytes::Bytes::from(envelope.encode()),
        )
        .await
        .map_err(|e| SubscribeError::Other(anyhow::Error::new(e).context("cannot append")))?;
    Ok(appended.seq)
}

/// Waits until the projector has folded the event at `seq` (at most `limit`); whether it did.
pub async fn wait_projected(store: &Store, seq: u64, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let folded = match store.active_generation().await {
            Ok(generation) => store.checkpoint(generation).await.unwrap_or(0),
            Err(_) => 0,
        };
        if folded >= seq {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
