//! `depot webhook add|list|remove|deliveries|replay`: webhook subscriptions for admins.
//!
//! Subscriptions are events in the log (`webhook.<id>`); listings read the read models and
//! the delivery log. The signing secret is printed once, alone on the last line of standard
//! output, and kept nowhere: it is derived from the webhook key whenever it is needed.

use std::time::Duration;

use depot_webhooks::{SubscribeError, SubscriptionRequest};

use crate::config::Settings;
use crate::roles::{open_log, open_store};

/// The actor of changes made on the command line.
const ADMIN_ACTOR: &str = "depot:admin";

#[expect(clippy::print_stderr, reason = "command-line output")]
fn note(text: &str) {
    eprintln!("{text}");
}

fn say(text: &str) {
    println!("{text}");
}

fn refused(error: SubscribeError) -> anyhow::Error {
    match error {
        SubscribeError::Other(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

/// `depot webhook add`.
pub(crate) async fn add(settings: &Settings, request: SubscriptionRequest) -> anyhow::Result<()> {
    let key = settings.webhook_key()?;
    let backend = open_log(settings).await?;
    let store = open_store(settings, 1).await?;
    let made = depot_webhooks::subscribe(backend.log.as_ref(), &store, &key, request, ADMIN_ACTOR)
        .await
        .map_err(refused)?;
    depot_webhooks::wait_projected(&store, made.seq, Duration::from_secs(10)).await;
    note(&format!(
        "added webhook {} to {} for {}; it receives events after {}. Its signing secret is \
         shown only once:",
        made.id,
        made.subscription.url,
        made.subscription.event_types.join(", "),
        made.seq
    ));
    say(&made.secret);
    Ok(())
}

/// `depot webhook list`.
pub(crate) async fn list(settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings, 1).await?;
    let backlogs = store.webhook_backlogs().await?;
    say("ID\tURL\tEVENTS\tCRATES\tPENDING\tDESCRIPTION");
    for hook in store.webhooks(false).await? {
        say(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            hook.subscription_id,
            hook.url,
            hook.event_types.join(","),
            if hook.crates.is_empty() {
                "*".to_owned()
            } else {
                hook.crates.join(",")
            },
            backlogs.get(&hook.subscription_id).copied().unwrap_or(0),
            hook.description.unwrap_or_default()
        ));
    }
    Ok(())
}

/// `depot webhook remove`.
pub(crate) async fn remove(settings: &Settings, id: &str) -> anyhow::Result<()> {
    let backend = open_log(settings).await?;
    let store = open_store(settings, 1).await?;
    let seq = depot_webhooks::unsubscribe(backend.log.as_ref(), &store, id, ADMIN_ACTOR)
        .await
        .map_err(refused)?;
    depot_webhooks::wait_projected(&store, seq, Duration::from_secs(10)).await;
    note(&format!("removed webhook {id}"));
    Ok(())
}

/// `depot webhook deliveries`.
pub(crate) async fn deliveries(settings: &Settings, id: &str, limit: u32) -> anyhow::Result<()> {
    let store = open_store(settings, 1).await?;
    anyhow::ensure!(
        store.webhook(id).await?.is_some(),
        "no webhook subscription `{}`",
        id.escape_debug()
    );
    say("ID\tSEQ\tTYPE\tSTATUS\tATTEMPTS\tLAST STATUS\tREPLAY\tWEBHOOK-ID\tLAST ERROR");
    for d in store.webhook_deliveries(id, limit.min(10_000)).await? {
        say(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            d.id,
            d.seq,
            d.event_type,
            d.status,
            d.attempts,
            d.last_status.map(|s| s.to_string()).unwrap_or_default(),
            d.replay,
            d.webhook_id,
            d.last_error.unwrap_or_default()
        ));
    }
    Ok(())
}

/// `depot webhook replay`: queues the range again, in parts of at most
/// [`depot_webhooks::MAX_REPLAY_EVENTS`] events.
pub(crate) async fn replay(
    settings: &Settings,
    from: u64,
    to: Option<u64>,
    subscription: Option<&str>,
) -> anyhow::Result<()> {
    let backend = open_log(settings).await?;
    let store = open_store(settings, 1).await?;
    let mut start = from.max(1);
    let (mut queued, mut refused_count) = (0, 0);
    loop {
        let part_end = start.saturating_add(depot_webhooks::MAX_REPLAY_EVENTS - 1);
        let end = to.map_or(part_end, |to| to.min(part_end));
        let outcome = depot_webhooks::queue_replay(
            backend.log.as_ref(),
            &store,
            start,
            Some(end),
            subscription,
            settings.webhook_max_backlog.get(),
        )
        .await
        .map_err(|e| match e {
            depot_webhooks::ReplayError::Other(e) => e,
            other => anyhow::anyhow!("{other}"),
        })?;
        queued += outcome.queued;
        refused_count += outcome.refused;
        if outcome.to < end || to.is_some_and(|to| end >= to) {
            break;
        }
        start = end + 1;
    }
    note(&format!(
        "queued {queued} deliveries of events {from}..={}{}",
        to.map_or_else(|| "the last folded event".to_owned(), |to| to.to_string()),
        if refused_count > 0 {
            format!("; {refused_count} failed at once (backlog full)")
        } else {
            String::new()
        }
    ));
    Ok(())
}
