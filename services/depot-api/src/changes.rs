//! Change notifications inside the api: the projector announces changed crates on the notifier;
//! the api drops cached index files and wakes requests waiting for a crate.

use std::sync::Arc;
use std::time::Duration;

use depot_eventlog::Notifier;
use futures::StreamExt as _;
use tokio::sync::broadcast;

use crate::AppState;

/// Fan-out of changed crate names to waiting requests.
#[derive(Debug)]
pub(crate) struct ChangeHub {
    sender: broadcast::Sender<Arc<str>>,
}

/// Stands for "every crate" (after a lost subscription).
const ALL: &str = "*";

impl ChangeHub {
    pub(crate) fn new() -> ChangeHub {
        ChangeHub {
            sender: broadcast::channel(1024).0,
        }
    }

    pub(crate) fn publish(&self, canon: &str) {
        let _ = self.sender.send(Arc::from(canon));
    }

    pub(crate) fn publish_all(&self) {
        let _ = self.sender.send(Arc::from(ALL));
    }

    pub(crate) fn subscribe(&self) -> ChangeWaiter {
        ChangeWaiter {
            receiver: self.sender.subscribe(),
        }
    }
}

/// A subscription used by one waiting request.
#[derive(Debug)]
pub(crate) struct ChangeWaiter {
    receiver: broadcast::Receiver<Arc<str>>,
}

impl ChangeWaiter {
    /// Waits until `canon` is announced or `poll` elapses, whichever is first. Lagging behind
    /// counts as a change (something may have been missed).
    pub(crate) async fn changed(&mut self, canon: &str, poll: Duration) {
        let wait = async {
            loop {
                match self.receiver.recv().await {
                    Ok(name) if &*name == canon || &*name == ALL => return,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let _ = tokio::time::timeout(poll, wait).await;
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
