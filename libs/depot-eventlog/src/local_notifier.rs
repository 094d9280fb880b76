//! Best-effort notifications inside one process, for the embedded (single-process) mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::error::LogError;
use crate::event_log::Notifier;
use crate::names::validate_subject;

/// Notifications a subscriber may fall behind by before it misses some (they are skipped
/// with a warning: notifications are best-effort).
const CAPACITY: usize = 1024;

/// An in-process [`Notifier`]: one `tokio::sync::broadcast` channel per topic. Cheap to
/// clone; clones share the topics. Subscriptions end when the last clone is dropped.
///
/// [`SqliteLog::notifier`](crate::SqliteLog::notifier) hands out one shared per log.
#[derive(Debug, Clone, Default)]
pub struct LocalNotifier {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
}

impl LocalNotifier {
    /// A notifier with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Notifier for LocalNotifier {
    async fn notify(&self, topic: &str, payload: Bytes) -> Result<(), LogError> {
        validate_subject("topic", topic, false).map_err(LogError::Invalid)?;
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = topics.get(topic)
            && sender.send(payload).is_err()
        {
            // Every subscriber is gone: forget the topic.
            topics.remove(topic);
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, Bytes>, LogError> {
        validate_subject("topic", topic, false).map_err(LogError::Invalid)?;
        let receiver = self
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::Sender::new(CAPACITY))
            .subscribe();
        let topic = topic.to_owned();
        let stream = futures::stream::unfold(receiver, move |mut receiver| {
            let topic = topic.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(payload) => return Some((payload, receiver)),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(
                                topic = %topic,
                                missed,
                                "notification subscriber fell behind; notifications skipped"
                            );
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn topics_without_subscribers_are_forgotten() {
        let notifier = LocalNotifier::new();
        let subscription = notifier.subscribe("a.b").await.expect("subscribe");
        drop(subscription);
        notifier
            .notify("a.b", Bytes::from_static(b"x"))
            .await
            .expect("notify");
        assert!(notifier.topics.lock().expect("lock").is_empty());
    }
}
