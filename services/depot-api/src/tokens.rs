//! crates.io's token API for users: list, create and revoke one's own tokens.
//!
//! Only personal tokens use it, and a token creates only tokens it covers: scopes a subset of
//! its own, crate patterns within its own, an expiry no later than its own. So a read-only or
//! narrowly scoped token cannot mint a broader one. The secret of a new token is in the reply
//! and nowhere else: the log and the read models keep its sha256.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use depot_auth::TokenGrant;
use depot_eventlog::Expected;
use depot_events::{Envelope, Event, Timestamp, TokenIssued, TokenKind, TokenRevoked, TokenScope};
use depot_index::Login;
use depot_store::TokenRow;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Principal, authenticate};
use crate::extract::ApiJson;
use crate::{ApiError, AppState};

/// The most tokens (revoked ones included) a user may hold.
pub(crate) const MAX_TOKENS_PER_USER: usize = 500;
/// The longest token name.
const MAX_NAME_LEN: usize = 64;

/// A token as crates.io's API shows it.
fn encode(token: &TokenRow) -> Value {
    json!({
        "id": token.token_id,
        "name": token.label,
        "kind": token.kind.as_str(),
        "created_at": token.created_at.to_rfc3339(),
        "last_used_at": token.last_used_at.map(Timestamp::to_rfc3339),
        "expired_at": token.expires_at.map(Timestamp::to_rfc3339),
        "revoked": token.revoked,
        "crate_scopes": if token.crates.is_empty() { Value::Null } else { json!(token.crates) },
        "read_crate_scopes": token.read_crates,
        "endpoint_scopes": if token.scopes.is_empty() {
            Value::Null
        } else {
            json!(token.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        },
    })
}

/// The caller, who must hold a personal token.
async fn personal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let principal = authenticate(state, headers).await?;
    require_personal(&principal)?;
    Ok(principal)
}

/// `GET /api/v1/me/tokens`: the caller's tokens, revoked and expired ones included.
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = personal(&state, &headers).await?;
    let tokens = state.store().tokens(Some(&principal.login)).await?;
    let tokens: Vec<Value> = tokens.iter().map(encode).collect();
    Ok(Json(json!({ "api_tokens": tokens })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewTokenRequest {
    api_token: NewToken,
}

/// A token to create, as crates.io's API names its fields.
#[derive(Debug, Deserialize)]
pub(crate) struct NewToken {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) crate_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) endpoint_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) expired_at: Option<String>,
}

/// `PUT /api/v1/me/tokens`: creates a token for the caller and shows its secret, once.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewTokenRequest>,
) -> Result<Json<Value>, ApiError> {
    let principal = personal(&state, &headers).await?;
    let (row, secret) = issue(&state, &principal, request.api_token).await?;
    let mut encoded = encode(&row);
    encoded["token"] = json!(secret);
    Ok(Json(json!({ "api_token": encoded })))
}

/// Fails with 403 unless the caller holds a personal token.
pub(crate) fn require_personal(principal: &Principal) -> Result<(), ApiError> {
    if principal.kind != TokenKind::Personal {
        return Err(ApiError::forbidden(format!(
            "{} tokens cannot manage tokens; use a personal token",
            principal.kind.as_str()
        )));
    }
    Ok(())
}

/// Creates a token for a personal token's user, within the caller's own grant; returns it with
/// its secret.
pub(crate) async fn issue(
    state: &AppState,
    principal: &Principal,
    request: NewToken,
) -> Result<(TokenRow, String), ApiError> {
    require_personal(principal)?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "the token name must be 1 to {MAX_NAME_LEN} printable characters"
        )));
    }
    let mut scopes = Vec::new();
    for raw in request.endpoint_scopes.unwrap_or_default() {
        let scope = TokenScope::parse(&raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown endpoint scope `{}`; known: {}",
                raw.escape_debug(),
                TokenScope::ALL.map(TokenScope::as_str).join(", ")
            ))
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let crates = request.crate_scopes.unwrap_or_default();
    if crates.len() > depot_auth::MAX_PATTERNS {
        return Err(ApiError::bad_request(format!(
            "at most {} crate scopes per token",
            depot_auth::MAX_PATTERNS
        )));
    }
    for pattern in &crates {
        depot_auth::validate_crate_pattern(pattern).map_err(ApiError::bad_request)?;
    }
    let grant = TokenGrant {
        scopes,
        crates,
        read_crates: None,
    };
    if !principal.grant.covers(&grant) {
        return Err(ApiError::forbidden(
            "a token can only create tokens with its own scopes and crate scopes or narrower \
             ones; name them explicitly",
        ));
    }
    let now = Timestamp::now();
    let expires_at = match request.expired_at.as_deref() {
        Some(text) => {
            let at: Timestamp = serde_json::from_value(json!(text)).map_err(|_| {
                ApiError::bad_request(
                    "`expired_at` must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z",
                )
            })?;
            if at <= now {
                return Err(ApiError::bad_request("`expired_at` must be in the future"));
            }
            Some(at)
        }
        None => state
            .config()
            .default_token_lifetime
            .map(|lifetime| after(now, lifetime)),
    };
    let explicit = request.expired_at.is_some();
    let expires_at = match (expires_at, principal.expires_at) {
        (Some(new), Some(own)) if new > own && explicit => {
            return Err(ApiError::forbidden(
                "a token cannot create a token that outlives it",
            ));
        }
        (Some(new), Some(own)) => Some(new.min(own)),
        (None, Some(own)) => Some(own),
        (new, None) => new,
    };
    let login = Login::parse(&principal.login).map_err(ApiError::internal)?;
    if state.store().tokens(Some(&principal.login)).await?.len() >= MAX_TOKENS_PER_USER {
        return Err(ApiError::bad_request(format!(
            "a user may hold at most {MAX_TOKENS_PER_USER} tokens; ask an admin to clean up"
        )));
    }

    let secret = depot_auth::generate_secret();
    let token_id = Uuid::now_v7();
    let issued = TokenIssued {
        token_id,
        user: principal.login.clone(),
        secret_sha256: depot_auth::hash_secret(&secret),
        kind: TokenKind::Personal,
        label: Some(name.to_owned()),
        scopes: grant.scopes,
        crates: grant.crates,
        read_crates: None,
        expires_at,
        created_by: Some(principal.login.clone()),
        oidc: None,
    };
    append(state, &login, &principal.login, Event::TokenIssued(issued)).await?;
    let row = wait_for_token(state, token_id, |_| true).await?;
    Ok((row, secret))
}

/// `DELETE /api/v1/me/tokens/{id}`: revokes one of the caller's tokens (the calling one too).
/// Every api process refuses it within a second once this answers.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = personal(&state, &headers).await?;
    revoke_own(&state, &principal, &id).await?;
    Ok(Json(json!({})).into_response())
}

/// Revokes one of a personal token's user's own personal tokens (404 for any other id).
pub(crate) async fn revoke_own(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(), ApiError> {
    require_personal(principal)?;
    let not_found = || ApiError::not_found("no such token");
    let Ok(token_id) = Uuid::parse_str(id) else {
        return Err(not_found());
    };
    let Some(token) = state.store().token(&token_id.to_string()).await? else {
        return Err(not_found());
    };
    if token.login != principal.login || token.kind != TokenKind::Personal {
        return Err(not_found());
    }
    if !token.revoked {
        revoke(state, &principal.login, token_id, &principal.login).await?;
    }
    Ok(())
}

/// Appends `token_revoked` for a token of `login` and waits until the read models have it.
pub(crate) async fn revoke(
    state: &AppState,
    login: &str,
    token_id: Uuid,
    actor: &str,
) -> Result<(), ApiError> {
    let login = Login::parse(login).map_err(ApiError::internal)?;
    append(
        state,
        &login,
        actor,
        Event::TokenRevoked(TokenRevoked { token_id }),
    )
    .await?;
    wait_for_token(state, token_id, |row| row.revoked).await?;
    state.inner.tokens.clear();
    Ok(())
}

/// Appends an event of a user's (tokens issued or revoked) to the user's subject.
async fn append(state: &AppState, user: &Login, actor: &str, event: Event) -> Result<(), ApiError> {
    let envelope = Envelope::new(actor, event);
    state
        .log()
        .append(
            &depot_events::subject::principal(user),
            Expected::Any,
            &envelope.id.to_string(),
            Bytes::from(envelope.encode()),
        )
        .await?;
    Ok(())
}

/// Waits (up to the command wait) until the read models show the token in the state `done`
/// asks for.
pub(crate) async fn wait_for_token(
    state: &AppState,
    token_id: Uuid,
    done: impl Fn(&TokenRow) -> bool,
) -> Result<TokenRow, ApiError> {
    let deadline = Instant::now() + state.config().command_wait;
    let id = token_id.to_string();
    loop {
        if let Some(row) = state.store().token(&id).await?
            && done(&row)
        {
            return Ok(row);
        }
        if Instant::now() >= deadline {
            return Err(ApiError::unavailable(
                "the change was recorded but is not visible yet; check again shortly",
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn after(now: Timestamp, lifetime: Duration) -> Timestamp {
    Timestamp::from_unix_millis(
        now.unix_millis()
            .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
    )
}
