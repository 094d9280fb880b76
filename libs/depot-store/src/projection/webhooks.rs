//! Folding webhook subscriptions: a subscription's row, and the sequence of its removal.

use depot_events::{Timestamp, WebhookSubscribed};

use super::{ProjectionTx, json};
use crate::StoreError;
use crate::db::{on_tx, to_i64};

impl ProjectionTx {
    /// Records a webhook subscription (appended at log sequence `seq`).
    pub async fn add_webhook(
        &mut self,
        subscribed: &WebhookSubscribed,
        seq: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO webhook_subscriptions (gen, subscription_id, url, event_types, \
                 crates, description, created_by, created_at, created_seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (gen, subscription_id) DO NOTHING",
            )
            .bind(gen_)
            .bind(subscribed.subscription_id.to_string())
            .bind(&subscribed.url)
            .bind(json(&subscribed.event_types))
            .bind(json(&subscribed.crates))
            .bind(&subscribed.description)
            .bind(&subscribed.created_by)
            .bind(at.unix_millis())
            .bind(to_i64(seq))
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Marks a webhook subscription removed at log sequence `seq` (its row stays).
    pub async fn remove_webhook(
        &mut self,
        subscription_id: uuid::Uuid,
        seq: u64,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "UPDATE webhook_subscriptions SET removed_seq = $1 \
                 WHERE gen = $2 AND subscription_id = $3 AND removed_seq IS NULL",
            )
            .bind(to_i64(seq))
            .bind(gen_)
            .bind(subscription_id.to_string())
            .execute(conn)
            .await?;
        });
        Ok(())
    }
}
