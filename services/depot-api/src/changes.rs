//! Change notifications inside the api: the projector announces changed crates on the notifier;
//! the api drops cached index files and wakes requests waiting for a crate.

use std::sync::Arc;
use std::time::Duration;

use depot_eventlog::Notifier;
use futures::StreamExt as _;
use tokio::sync::broadcast;

use crate::AppState;

/// Fan-out of changed crate names, with the log sequence they were folded up to, to waiting
/// requests.
#[derive(Debug)]
pub(crate) struct ChangeHub {
    sender: broadcast::Sender<(Arc<str>, u64)>,
}

/// Stands for "every crate" (after a lost subscription).
const ALL: &str = "*";

/// The payload of a change announcement: the canonical name and the log sequence the
/// projector folded it up to (`serde 1234`); announcements without a sequence (`*`, or from an
/// older projector) count as covering everything.
pub(crate) fn parse_announcement(payload: &str) -> (&str, u64) {
    match payload.split_once(' ') {
        Some((canon, seq)) => (canon, seq.parse().unwrap_or(u64::MAX)),
        None => (payload, u64::MAX),
    }
}

impl ChangeHub {
    pub(crate) fn new() -> ChangeHub {
        ChangeHub {
            sender: broadcast::channel(1024).0,
        }
    }

    pub(crate) fn publish(&self, canon: &str, seq: u64) {
        let _ = self.sender.send((Arc::from(canon), seq));
    }

    pub(crate) fn publish_all(&self) {
        let _ = self.sender.send((Arc::from(ALL), u64::MAX));
    }

    pub(crate) fn subscribe(&self) -> ChangeWaiter {
        ChangeWaiter {
            receiver: self.sender.subscribe(),
            seen: 0,
        }
    }
}

/// A subscription used by one waiting request, about one crate.
#[derive(Debug)]
pub(crate) struct ChangeWaiter {
    receiver: broadcast::Receiver<(Arc<str>, u64)>,
    /// The highest sequence announced for the crate so far.
    seen: u64,
}

impl ChangeWaiter {
    /// Waits until `canon` is announced or `poll` elapses, whichever is first; returns whether
    /// it was announced. Lagging behind counts as an announcement of everything (something
    /// may have been missed).
    pub(crate) async fn changed(&mut self, canon: &str, poll: Duration) -> bool {
        let seen = &mut self.seen;
        let receiver = &mut self.receiver;
        let wait = async {
            loop {
                match receiver.recv().await {
                    Ok((name, seq)) if &*name == canon || &*name == ALL => {
                        *seen = (*seen).max(seq);
                        return;
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        *seen = u64::MAX;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::time::timeout(poll, wait).await.is_ok()
    }

    /// Waits (at most `limit`) until `canon` has been announced up to log sequence `seq` —
    /// the announcement every api process receives when the projector has folded it.
    pub(crate) async fn announced(&mut self, canon: &str, seq: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.seen < seq {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.changed(canon, left).await {
                return self.seen >= seq;
            }
        }
        true
    }
}

/// Subscribes to `topic` on the notifier and feeds every message (a canonical crate name) to
/// [`AppState::crate_changed`]. Re-subscribes after failures, dropping the whole cache.
pub fn spawn_change_listener(
    state: AppState,
    notifier: Arc<dyn Notifier>,
    topic: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match notifier.subscribe(topic).await {
                Ok(mut messages) => {
                    state.forget_cache();
                    while let Some(payload) = messages.next().await {
                        match std::str::from_utf8(&payload) {
                            Ok(canon) => state.crate_changed(canon),
                            Err(_) => tracing::warn!("ignoring a malformed change notification"),
                        }
                    }
                    tracing::warn!("change notifications ended; subscribing again");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to change notifications"),
            }
            state.forget_cache();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
