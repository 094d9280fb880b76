//! Best-effort notifications over core NATS subjects `{prefix}.notify.{topic}`.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::LogError;
use crate::event_log::Notifier;
use crate::names::validate_subject;

/// How long `subscribe` waits for the server to confirm the subscription.
const SUBSCRIBE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Notifier`] on core NATS. Obtain one with
/// [`JetStreamLog::notifier`](crate::JetStreamLog::notifier).
#[derive(Debug, Clone)]
pub struct NatsNotifier {
    client: async_nats::Client,
    /// `{prefix}.notify.`
    subject_prefix: String,
}

impl NatsNotifier {
    pub(super) fn new(client: async_nats::Client, prefix: &str) -> Self {
        Self {
            client,
            subject_prefix: format!("{prefix}.notify."),
        }
    }

    fn subject(&self, topic: &str) -> Result<String, LogError> {
        validate_subject("topic", topic, false).map_err(LogError::Invalid)?;
        Ok(format!("{}{topic}", self.subject_prefix))
    }
}

#[async_trait]
impl Notifier for NatsNotifier {
    async fn notify(&self, topic: &str, payload: Bytes) -> Result<(), LogError> {
        let subject = self.subject(topic)?;
        self.client
            .publish(subject, payload)
            .await
            .map_err(|err| LogError::Unavailable(format!("notify {topic}: {err}")))
    }

    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, Bytes>, LogError> {
        let subject = self.subject(topic)?;
        let subscriber = self
            .client
            .subscribe(subject)
            .await
            .map_err(|err| LogError::Unavailable(format!("subscribe {topic}: {err}")))?;
        // Make sure the server has registered the subscription before returning.
        match tokio::time::timeout(SUBSCRIBE_FLUSH_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                return Err(LogError::Unavailable(format!("subscribe {topic}: {err}")));
            }
            Err(_elapsed) => {
                return Err(LogError::Unavailable(format!(
                    "subscribe {topic}: no confirmation within {SUBSCRIBE_FLUSH_TIMEOUT:?}"
                )));
            }
        }
        Ok(subscriber.map(|message| message.payload).boxed())
    }
}
