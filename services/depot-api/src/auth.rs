//! Who is calling: the `Authorization` header resolved to a user and the token's grant.

use axum::http::{HeaderMap, header};
use depot_auth::TokenGrant;
use depot_events::{Timestamp, TokenScope};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The user's login (lowercase).
    pub(crate) login: String,
    /// The token used.
    pub(crate) token_id: Uuid,
    grant: TokenGrant,
}

impl Principal {
    /// Fails with 403 unless the token allows `scope` on crate `name`.
    pub(crate) fn require(&self, scope: TokenScope, name: &str) -> Result<(), ApiError> {
        if self.grant.allows(scope, name) {
            Ok(())
        } else {
            let scope = serde_json::to_value(scope)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            Err(ApiError::forbidden(format!(
                "this token does not have the `{scope}` scope for crate `{name}`"
            )))
        }
    }
}

/// Resolves the caller from `Authorization` (raw token or `Bearer <token>`).
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::forbidden("this action requires authentication"));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(depot_auth::secret_from_header)
        .ok_or_else(|| {
            ApiError::forbidden("authentication failed: malformed Authorization header")
        })?;
    let hash = depot_auth::hash_secret(secret);
    let Some(token) = state.store().token_by_hash(&hash).await? else {
        return Err(ApiError::forbidden("authentication failed: unknown token"));
    };
    if token.revoked {
        return Err(ApiError::forbidden(
            "authentication failed: the token was revoked",
        ));
    }
    if token
        .expires_at
        .is_some_and(|expiry| expiry <= Timestamp::now())
    {
        return Err(ApiError::forbidden(
            "authentication failed: the token has expired",
        ));
    }
    Ok(Principal {
        login: token.login,
        token_id: Uuid::parse_str(&token.token_id).map_err(ApiError::internal)?,
        grant: TokenGrant {
            scopes: token.scopes,
            crates: token.crates,
        },
    })
}
