//! Webhook subscriptions (a read model of the active generation) and the delivery log with the
//! dispatcher's cursor (operational data, kept across replays).
//!
//! The delivery log is also the dispatcher's queue: a `pending` row is due at its
//! `next_attempt_at`, and of the pending rows of one (subscription, crate) only the oldest is
//! ever handed out, so deliveries of one crate reach a subscriber in the order they were queued.

use std::collections::HashMap;

use crate::db::{Tx, on_read, on_tx, on_write, to_i64, to_u64};
use crate::{Store, StoreError};

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    /// The subscription id.
    pub subscription_id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The webhook event types delivered.
    pub event_types: Vec<String>,
    /// Crate patterns (empty: all crates).
    pub crates: Vec<String>,
    /// A label for humans.
    pub description: Option<String>,
    /// Who subscribed.
    pub created_by: String,
    /// When (Unix milliseconds).
    pub created_at: i64,
    /// The log sequence of `webhook_subscribed`: later events are delivered.
    pub created_seq: u64,
    /// The log sequence of `webhook_unsubscribed`, if removed: earlier events are delivered.
    pub removed_seq: Option<u64>,
}

impl WebhookRow {
    /// Whether the subscription was active when the event at `seq` was appended.
    pub fn active_at(&self, seq: u64) -> bool {
        self.created_seq < seq && self.removed_seq.is_none_or(|removed| seq < removed)
    }
}

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The subscription.
    pub subscription_id: String,
    /// The crate (canonical name).
    pub canon: String,
    /// The event's log sequence.
    pub seq: u64,
    /// The webhook event type.
    pub event_type: String,
    /// The `webhook-id`.
    pub webhook_id: String,
    /// The JSON body.
    pub payload: String,
    /// Whether a replay queued it.
    pub replay: bool,
    /// Queued as given up at once (`Some(reason)`): the subscription's backlog is full.
    pub refused: Option<String>,
}

/// A delivery as the log shows it and the dispatcher sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The row id (increasing in queue order).
    pub id: i64,
    /// The subscription.
    pub subscription_id: String,
    /// The crate (canonical name).
    pub canon: String,
    /// The event's log sequence.
    pub seq: u64,
    /// The webhook event type.
    pub event_type: String,
    /// The `webhook-id`.
    pub webhook_id: String,
    /// The JSON body.
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Whether a replay queued it.
    pub replay: bool,
    /// Attempts made.
    pub attempts: u64,
    /// When it was queued (Unix milliseconds).
    pub created_at: i64,
    /// When it is due next (Unix milliseconds).
    pub next_attempt_at: i64,
    /// When it was last attempted.
    pub last_attempt_at: Option<i64>,
    /// The HTTP status of the last answer.
    pub last_status: Option<u16>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub done_at: Option<i64>,
}

/// The result of one attempt, as [`Store::record_webhook_attempt`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx answer.
    Delivered {
        /// Its status.
        status: u16,
    },
    /// Not delivered; try again at `next_attempt_at` (Unix milliseconds).
    Retry {
        /// The status, if the receiver answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// When to try again.
        next_attempt_at: i64,
    },
    /// Not delivered, and given up.
    Failed {
        /// The status, if the receiver answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

type RawWebhook = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    Option<i64>,
);

fn webhook_row(raw: RawWebhook) -> Result<WebhookRow, StoreError> {
    let (subscription_id, url, event_types, crates, description, created_by, at, seq, removed) =
        raw;
    let list = |text: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("webhook subscription list: {e}")))
    };
    Ok(WebhookRow {
        event_types: list(&event_types)?,
        crates: list(&crates)?,
        subscription_id,
        url,
        description,
        created_by,
        created_at: at,
        created_seq: to_u64(seq),
        removed_seq: removed.map(to_u64),
    })
}

const WEBHOOK_COLUMNS: &str = "subscription_id, url, event_types, crates, description, \
     created_by, created_at, created_seq, removed_seq";

type RawDelivery = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    bool,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

const DELIVERY_COLUMNS: &str = "id, subscription_id, canon, seq, event_type, webhook_id, \
     payload, status, replay, attempts, created_at, next_attempt_at, last_attempt_at, \
     last_status, last_error, done_at";

fn delivery_row(raw: RawDelivery) -> DeliveryRow {
    let (id, subscription_id, canon, seq, event_type, webhook_id, payload, status, replay) = (
        raw.0, raw.1, raw.2, raw.3, raw.4, raw.5, raw.6, raw.7, raw.8,
    );
    DeliveryRow {
        id,
        subscription_id,
        canon,
        seq: to_u64(seq),
        event_type,
        webhook_id,
        payload,
        status,
        replay,
        attempts: to_u64(raw.9),
        created_at: raw.10,
        next_attempt_at: raw.11,
        last_attempt_at: raw.12,
        last_status: raw.13.and_then(|s| u16::try_from(s).ok()),
        last_error: raw.14,
        done_at: raw.15,
    }
}

impl Store {
    /// Every webhook subscription of the active generation, removed ones too when asked, oldest
    /// first.
    pub async fn webhooks(&self, with_removed: bool) -> Result<Vec<WebhookRow>, StoreError> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_subscriptions WHERE gen = {} AND ($1 OR \
             removed_seq IS NULL) ORDER BY created_seq",
            active_gen!()
        );
        let rows: Vec<RawWebhook> = on_read!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(with_removed)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(webhook_row).collect()
    }

    /// The subscriptions that may receive events after `after_seq`: those not removed by
    /// then.
    pub async fn webhooks_after(&self, after_seq: u64) -> Result<Vec<WebhookRow>, StoreError> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_subscriptions WHERE gen = {} AND \
             (removed_seq IS NULL OR removed_seq > $1) ORDER BY created_seq",
            active_gen!()
        );
        let rows: Vec<RawWebhook> = on_read!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(to_i64(after_seq))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(webhook_row).collect()
    }

    /// One subscription (removed or not).
    pub async fn webhook(&self, subscription_id: &str) -> Result<Option<WebhookRow>, StoreError> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_subscriptions WHERE gen = {} AND \
             subscription_id = $1",
            active_gen!()
        );
        let row: Option<RawWebhook> = on_read!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(subscription_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(webhook_row).transpose()
    }

    /// The last log sequence the dispatcher has queued deliveries for.
    pub async fn webhook_cursor(&self) -> Result<u64, StoreError> {
        let seq: i64 = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT seq FROM webhook_cursor WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        Ok(to_u64(seq))
    }

    /// Queues `deliveries` and, with `cursor = Some((from, to))`, moves the dispatcher's cursor
    /// from `from` to `to`, in one transaction. Fails with [`StoreError::Config`] (and queues
    /// nothing) when the cursor is no longer at `from`.
    pub async fn queue_webhook_deliveries(
        &self,
        deliveries: &[NewDelivery],
        cursor: Option<(u64, u64)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        if let Some((from, to)) = cursor {
            let moved = on_tx!(&mut tx, conn => {
                sqlx::query("UPDATE webhook_cursor SET seq = $1 WHERE id = 1 AND seq = $2")
                    .bind(to_i64(to))
                    .bind(to_i64(from))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            });
            if moved != 1 {
                return Err(StoreError::Config(
                    "the webhook cursor moved: another dispatcher is active".to_owned(),
                ));
            }
        }
        for delivery in deliveries {
            insert_delivery(&mut tx, delivery, now_ms).await?;
        }
        tx.commit().await
    }

    /// Pending deliveries per subscription.
    pub async fn webhook_backlogs(&self) -> Result<HashMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT subscription_id, count(*) FROM webhook_deliveries \
                 WHERE status = 'pending' GROUP BY subscription_id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, count)| (id, to_u64(count)))
            .collect())
    }

    /// Up to `limit` deliveries due at `now_ms`, each the oldest pending one of its
    /// (subscription, crate), in queue order.
    pub async fn due_webhook_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE status = 'pending' \
             AND next_attempt_at <= $1 AND id = (SELECT min(p.id) FROM webhook_deliveries p \
             WHERE p.status = 'pending' AND p.subscription_id = d.subscription_id \
             AND p.canon = d.canon) ORDER BY id LIMIT $2"
        );
        let rows: Vec<RawDelivery> = on_read!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(delivery_row).collect())
    }

    /// When the next pending delivery is due (Unix milliseconds), if any is pending.
    pub async fn next_webhook_due(&self) -> Result<Option<i64>, StoreError> {
        let due: Option<i64> = on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(due)
    }

    /// Records the result of an attempt on delivery `id`.
    pub async fn record_webhook_attempt(
        &self,
        id: i64,
        result: &AttemptResult,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (status, code, error, next, done) = match result {
            AttemptResult::Delivered { status } => {
                ("delivered", Some(*status), None, now_ms, Some(now_ms))
            }
            AttemptResult::Retry {
                status,
                error,
                next_attempt_at,
            } => ("pending", *status, Some(error), *next_attempt_at, None),
            AttemptResult::Failed { status, error } => {
                ("failed", *status, Some(error), now_ms, Some(now_ms))
            }
        };
        on_write!(&self.db, pool => {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                 last_attempt_at = $2, last_status = $3, last_error = $4, next_attempt_at = $5, \
                 done_at = $6 WHERE id = $7 AND status = 'pending'",
            )
            .bind(status)
            .bind(now_ms)
            .bind(code.map(i64::from))
            .bind(error)
            .bind(next)
            .bind(done)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The newest `limit` deliveries of a subscription, newest first.
    pub async fn webhook_deliveries(
        &self,
        subscription_id: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = $1 \
             ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<RawDelivery> = on_read!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(subscription_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(delivery_row).collect())
    }

    /// Deletes deliveries delivered or given up before `before_ms`; returns how many.
    pub async fn prune_webhook_deliveries(&self, before_ms: i64) -> Result<u64, StoreError> {
        let deleted = on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM webhook_deliveries WHERE done_at < $1")
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }
}

async fn insert_delivery(
    tx: &mut Tx,
    delivery: &NewDelivery,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (status, done_at) = match delivery.refused {
        Some(_) => ("failed", Some(now_ms)),
        None => ("pending", None),
    };
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO webhook_deliveries (subscription_id, canon, seq, event_type, \
             webhook_id, payload, status, replay, attempts, created_at, next_attempt_at, \
             last_error, done_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9, $10, $11)",
        )
        .bind(&delivery.subscription_id)
        .bind(&delivery.canon)
        .bind(to_i64(delivery.seq))
        .bind(&delivery.event_type)
        .bind(&delivery.webhook_id)
        .bind(&delivery.payload)
        .bind(status)
        .bind(delivery.replay)
        .bind(now_ms)
        .bind(&delivery.refused)
        .bind(done_at)
        .execute(conn)
        .await?;
    });
    Ok(())
}
