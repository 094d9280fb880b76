//! `/api/v1/webhooks`: webhook subscriptions over HTTP, for admins — the same operations as
//! `depot webhook add|list|remove|deliveries|replay`, with the same rules (they live in
//! `depot-webhooks`).
//!
//! Only an admin's personal token without scope or crate restrictions manages webhooks: a
//! subscription sees every crate's events, so a token limited to some crates or operations
//! must not create one. The signing secret is returned once, by the request that creates the
//! subscription; it is derived from the server's webhook key and stored nowhere.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use depot_events::{Timestamp, TokenKind};
use depot_store::{DeliveryRow, WebhookRow};
use depot_webhooks::{ReplayError, SubscribeError, SubscriptionRequest, WebhookKey};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, authenticate};
use crate::extract::{ApiJson, ApiQuery};
use crate::{ApiError, AppState};

/// Most deliveries one listing returns (and the default).
pub(crate) const MAX_DELIVERIES_LISTED: u32 = 1_000;
/// How long a change waits for the projector before answering anyway.
const PROJECTION_WAIT: Duration = Duration::from_secs(10);

/// What the api needs to manage webhooks.
#[derive(Debug, Clone)]
pub struct WebhooksApiConfig {
    /// The server's webhook key (subscriptions' secrets derive from it); without one the
    /// endpoints answer 503.
    pub key: Option<WebhookKey>,
    /// The most pending deliveries a subscription may have; a replay past it records the
    /// rest as failed at once.
    pub max_backlog: u64,
}

impl Default for WebhooksApiConfig {
    /// No key (webhooks cannot be managed over HTTP) and the dispatcher's default backlog.
    fn default() -> Self {
        WebhooksApiConfig {
            key: None,
            max_backlog: depot_webhooks::DispatcherConfig::default().max_backlog,
        }
    }
}

/// The caller, if it may manage webhooks (403 otherwise).
async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = authenticate(state, headers).await?;
    let unrestricted = principal.grant.scopes.is_empty() && principal.grant.crates.is_empty();
    if !(principal.admin && principal.kind == TokenKind::Personal && unrestricted) {
        return Err(ApiError::forbidden(
            "managing webhooks needs an admin's personal token without scope or crate limits",
        ));
    }
    Ok(principal)
}

fn millis_to_rfc3339(millis: i64) -> String {
    Timestamp::from_unix_millis(millis).to_rfc3339()
}

fn encode(hook: &WebhookRow, pending: u64) -> Value {
    json!({
        "id": hook.subscription_id,
        "url": hook.url,
        "event_types": hook.event_types,
        "crates": hook.crates,
        "description": hook.description,
        "created_by": hook.created_by,
        "created_at": millis_to_rfc3339(hook.created_at),
        "created_seq": hook.created_seq,
        "pending": pending,
    })
}

fn encode_delivery(d: &DeliveryRow) -> Value {
    json!({
        "id": d.id,
        "seq": d.seq,
        "crate": d.canon,
        "type": d.event_type,
        "webhook_id": d.webhook_id,
        "status": d.status,
        "replay": d.replay,
        "attempts": d.attempts,
        "created_at": millis_to_rfc3339(d.created_at),
        "last_attempt_at": d.last_attempt_at.map(millis_to_rfc3339),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "done_at": d.done_at.map(millis_to_rfc3339),
    })
}

fn subscribe_error(error: SubscribeError) -> ApiError {
    match error {
        SubscribeError::Invalid(detail) => ApiError::bad_request(detail),
        SubscribeError::NotFound(detail) => ApiError::not_found(detail),
        SubscribeError::Other(e) => ApiError::internal(format!("{e:#}")),
    }
}

/// The actor recorded on the events: the admin's login.
fn actor(principal: &Principal) -> String {
    principal.login.clone()
}

/// `GET /api/v1/webhooks`: the subscriptions, with their pending deliveries.
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers).await?;
    let backlogs = state.store().webhook_backlogs().await?;
    let hooks = state.store().webhooks(false).await?;
    let webhooks: Vec<Value> = hooks
        .iter()
        .map(|hook| {
            let pending = backlogs.get(&hook.subscription_id).copied().unwrap_or(0);
            encode(hook, pending)
        })
        .collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

/// The body of `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWebhook {
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    crates: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /api/v1/webhooks`: `{"url", "event_types"?, "crates"?, "description"?}` →
/// `{"webhook": …, "secret": "whsec_…"}` (the secret is shown only here).
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewWebhook>,
) -> Result<Json<Value>, ApiError> {
    let principal = admin(&state, &headers).await?;
    let key = state.config().webhooks.key.as_ref().ok_or_else(|| {
        ApiError::unavailable("this server has no webhook key; set DEPOT_WEBHOOK_KEY")
    })?;
    let made = depot_webhooks::subscribe(
        state.log(),
        state.store(),
        key,
        SubscriptionRequest {
            url: request.url,
            event_types: request.event_types,
            crates: request.crates,
            description: request.description,
        },
        &actor(&principal),
    )
    .await
    .map_err(subscribe_error)?;
    depot_webhooks::wait_projected(state.store(), made.seq, PROJECTION_WAIT).await;
    let hook = state.store().webhook(&made.id.to_string()).await?;
    let webhook = match hook {
        Some(hook) => encode(&hook, 0),
        // Not folded within the wait: describe it from the request as validated.
        None => json!({
            "id": made.id.to_string(),
            "url": made.subscription.url,
            "event_types": made.subscription.event_types,
            "crates": made.subscription.crates,
            "description": made.subscription.description,
            "created_by": actor(&principal),
            "created_seq": made.seq,
            "pending": 0,
        }),
    };
    tracing::info!(webhook = %made.id, by = %principal.login, "webhook subscribed");
    Ok(Json(json!({ "webhook": webhook, "secret": made.secret })))
}

/// `DELETE /api/v1/webhooks/{id}`: removes a subscription; its pending deliveries are given
/// up.
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = admin(&state, &headers).await?;
    let seq = depot_webhooks::unsubscribe(state.log(), state.store(), &id, &actor(&principal))
        .await
        .map_err(subscribe_error)?;
    depot_webhooks::wait_projected(state.store(), seq, PROJECTION_WAIT).await;
    tracing::info!(webhook = %id.escape_debug(), by = %principal.login, "webhook removed");
    Ok(Json(json!({ "ok": true })))
}

/// The query of `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize)]
pub(crate) struct DeliveriesQuery {
    limit: Option<u32>,
}

/// `GET /api/v1/webhooks/{id}/deliveries?limit=N`: the newest deliveries, newest first (at
/// most [`MAX_DELIVERIES_LISTED`]).
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers).await?;
    let not_found =
        || ApiError::not_found(format!("no webhook subscription `{}`", id.escape_debug()));
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(not_found());
    }
    if state.store().webhook(&id).await?.is_none() {
        return Err(not_found());
    }
    let limit = query
        .limit
        .unwrap_or(MAX_DELIVERIES_LISTED)
        .clamp(1, MAX_DELIVERIES_LISTED);
    let rows = state.store().webhook_deliveries(&id, limit).await?;
    let deliveries: Vec<Value> = rows.iter().map(encode_delivery).collect();
    Ok(Json(json!({ "deliveries": deliveries })))
}

/// The body of `POST /api/v1/webhooks/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Replay {
    from: u64,
    #[serde(default)]
    to: Option<u64>,
    #[serde(default)]
    webhook: Option<String>,
}

/// `POST /api/v1/webhooks/replay`: `{"from", "to"?, "webhook"?}` queues the deliveries of
/// the events `from..=to` again (at most 100 000 events per request; `to` defaults to the
/// last folded event) → `{"from", "to", "queued", "refused"}`.
pub(crate) async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<Replay>,
) -> Result<Json<Value>, ApiError> {
    let principal = admin(&state, &headers).await?;
    if request.to.is_some_and(|to| to < request.from) {
        return Err(ApiError::bad_request(format!(
            "`to` ({}) is before `from` ({})",
            request.to.unwrap_or_default(),
            request.from
        )));
    }
    // Without `to`, one request replays at most MAX_REPLAY_EVENTS events from `from`.
    let to = request.to.unwrap_or_else(|| {
        request
            .from
            .max(1)
            .saturating_add(depot_webhooks::MAX_REPLAY_EVENTS - 1)
    });
    let outcome = depot_webhooks::queue_replay(
        state.log(),
        state.store(),
        request.from,
        Some(to),
        request.webhook.as_deref(),
        state.config().webhooks.max_backlog,
    )
    .await
    .map_err(|e| match e {
        ReplayError::Invalid(detail) => ApiError::bad_request(detail),
        ReplayError::NotFound(detail) => ApiError::not_found(detail),
        ReplayError::Other(e) => ApiError::internal(format!("{e:#}")),
    })?;
    tracing::info!(
        from = outcome.from,
        to = outcome.to,
        queued = outcome.queued,
        by = %principal.login,
        "webhook replay queued"
    );
    Ok(Json(json!({
        "from": outcome.from,
        "to": outcome.to,
        "queued": outcome.queued,
        "refused": outcome.refused,
    })))
}
