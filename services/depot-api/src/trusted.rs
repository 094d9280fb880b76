//! Trusted publishing: a CI job exchanges the OIDC ID token its platform issued (GitLab,
//! GitHub Actions, Forgejo, any OIDC issuer) for a short-lived Depot token that publishes new
//! versions of the crates that trust it.
//!
//! Owners (or admins) register trusts per crate: the issuer, the audience and the claims the
//! ID token must carry. The exchange at `POST /api/v1/trusted_publishing/tokens` (crates.io's
//! endpoint) looks up the trusts of the token's issuer first — Depot fetches keys only from
//! issuers some crate trusts — then verifies the signature against the issuer's JWKS (fetched
//! through its discovery document and cached), `iss`, `exp`, `nbf`/`iat` with a small skew and
//! `jti`, matches every trust's policy, and mints a CI token that publishes new versions of the
//! crates whose trusts match and reads every crate (a job builds with its dependencies).
//! Each ID token is exchanged at most once: the CI token's `token_issued` is appended to the
//! subject `oidc.<sha256 of issuer and jti>` on condition that the subject is empty, which the
//! log decides for every api process at once.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use bytes::Bytes;
use depot_auth::oidc::{self, TrustPolicy};
use depot_eventlog::Expected;
use depot_events::{
    Envelope, Event, OidcOrigin, Timestamp, TokenIssued, TokenKind, TokenRevoked, TokenScope,
    TrustAdded, TrustRemoved, TrustedOnlySet,
};
use depot_index::CrateName;
use depot_store::TrustRow;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{Principal, authenticate, unauthorized};
use crate::commands::{Decision, execute, wait_projected};
use crate::extract::{ApiJson, CratePath};
use crate::oidc::JwksError;
use crate::{ApiError, AppState};

/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
const SKEW_SECS: i64 = 60;
/// The most trusts one crate may have.
pub(crate) const MAX_TRUSTS_PER_CRATE: usize = 16;
/// The longest identity a CI token shows (`ci:<subject>`).
const MAX_IDENTITY_LEN: usize = 128;
/// Who mints CI tokens, as the events' actor and the tokens' creator.
const MINTER: &str = "trusted-publishing";

/// Settings of trusted publishing.
#[derive(Debug, Clone, Copy)]
pub struct TrustedPublishingConfig {
    /// How long a minted CI token lives.
    pub ci_token_lifetime: Duration,
    /// Timeouts and refresh limits of the issuers' key sets.
    pub jwks: crate::JwksLimits,
}

impl Default for TrustedPublishingConfig {
    /// CI tokens live 30 minutes; key sets as [`crate::JwksLimits::default`].
    fn default() -> Self {
        TrustedPublishingConfig {
            ci_token_lifetime: Duration::from_secs(30 * 60),
            jwks: crate::JwksLimits::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExchangeRequest {
    jwt: String,
}

fn policy_of(trust: &TrustAdded) -> TrustPolicy {
    TrustPolicy {
        issuer: trust.issuer.clone(),
        audience: trust.audience.clone(),
        claims: trust.claims.clone(),
    }
}

/// `POST /api/v1/trusted_publishing/tokens`: `{"jwt": "<OIDC ID token>"}` → `{"token": …}`.
pub(crate) async fn exchange(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ExchangeRequest>,
) -> Result<Json<Value>, ApiError> {
    let (outcome, result) = match mint(&state, &request.jwt).await {
        Ok(reply) => ("minted", Ok(reply)),
        Err((outcome, error)) => (outcome, Err(error)),
    };
    depot_telemetry::metrics()
        .trusted_exchanges
        .with_label_values(&[outcome])
        .inc();
    result.map(Json)
}

/// The exchange; a refusal comes with its outcome label.
async fn mint(state: &AppState, jwt: &str) -> Result<Value, (&'static str, ApiError)> {
    let refused = |detail: String| unauthorized(state, &detail);
    let invalid = |detail: String| ("invalid_token", refused(detail));
    let internal = |e: ApiError| ("error", e);
    let issuer = oidc::peek_issuer(jwt).map_err(|e| invalid(e.to_string()))?;
    let trusts = state
        .store()
        .trusts_for_issuer(&issuer)
        .await
        .map_err(|e| internal(e.into()))?;
    if trusts.is_empty() {
        return Err((
            "no_trust",
            refused(format!(
                "no crate trusts ID tokens issued by `{}`",
                issuer.escape_debug()
            )),
        ));
    }
    let now = Timestamp::now();
    let verified = state
        .inner
        .jwks
        .verify(jwt, &issuer, now.unix_seconds(), SKEW_SECS)
        .await
        .map_err(|e| match e {
            JwksError::Fetch { .. } => {
                tracing::warn!(error = %e, "trusted publishing: the issuer's keys are unavailable");
                ("issuer_unavailable", ApiError::unavailable(e.to_string()))
            }
            other => invalid(other.to_string()),
        })?;

    let mut crates: Vec<String> = Vec::new();
    let mut matched: Vec<Uuid> = Vec::new();
    let mut mismatches: Vec<String> = Vec::new();
    for TrustRow { canon, trust, .. } in &trusts {
        match policy_of(trust).check(&verified) {
            Ok(()) => {
                matched.push(trust.trust_id);
                if !crates.contains(canon) {
                    crates.push(canon.clone());
                }
            }
            Err(mismatch) => mismatches.push(format!("crate `{canon}`: {mismatch}")),
        }
    }
    if crates.is_empty() {
        mismatches.truncate(3);
        return Err((
            "no_match",
            ApiError::forbidden(format!(
                "the ID token satisfies no trust of a crate: {}",
                mismatches.join("; ")
            )),
        ));
    }

    let digest = hex::encode(Sha256::digest(
        format!("{}\n{}", verified.issuer, verified.jti).as_bytes(),
    ));
    let identity: String = format!(
        "{}{}",
        depot_auth::CI_PREFIX,
        verified.subject.as_deref().unwrap_or(&verified.issuer)
    )
    .chars()
    .filter(|c| !c.is_control())
    .take(MAX_IDENTITY_LEN)
    .collect();
    let secret = depot_auth::generate_secret();
    let lifetime = state.inner.trusted.ci_token_lifetime;
    let expires_at = Timestamp::from_unix_millis(
        now.unix_millis()
            .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
    );
    let token_id = Uuid::now_v7();
    let token = TokenIssued {
        token_id,
        user: identity.clone(),
        secret_sha256: depot_auth::hash_secret(&secret),
        kind: TokenKind::Ci,
        label: None,
        scopes: vec![TokenScope::Read, TokenScope::PublishUpdate],
        crates: crates.clone(),
        // A CI job builds with the registry's other crates, as any of its users may.
        read_crates: Some(Vec::new()),
        expires_at: Some(expires_at),
        created_by: Some(MINTER.to_owned()),
        oidc: Some(OidcOrigin {
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
            jti: verified.jti.clone(),
            trusts: matched,
        }),
    };
    let envelope = Envelope::new(identity, Event::TokenIssued(token));
    let appended = state
        .log()
        .append(
            &depot_events::subject::oidc(&digest),
            Expected::Seq(0),
            &envelope.id.to_string(),
            Bytes::from(envelope.encode()),
        )
        .await;
    match appended {
        Ok(appended) if !appended.duplicate => {}
        Ok(_) => return Err(("replayed", already_used())),
        Err(e) if e.is_conflict() => return Err(("replayed", already_used())),
        Err(e) => return Err(internal(e.into())),
    }
    crate::tokens::wait_for_token(state, token_id, |_| true)
        .await
        .map_err(internal)?;
    Ok(json!({
        "token": secret,
        "expires_at": expires_at.to_rfc3339(),
        "crates": crates,
    }))
}

fn already_used() -> ApiError {
    ApiError::unauthorized(
        "this ID token was already exchanged; each ID token (`jti`) can be used once",
    )
}

/// `DELETE /api/v1/trusted_publishing/tokens`: revokes the CI token that calls it (a job ends
/// its token's life early, as crates.io's action does after publishing).
pub(crate) async fn revoke_current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    if principal.kind != TokenKind::Ci {
        return Err(ApiError::forbidden(
            "only trusted-publishing (CI) tokens are revoked here; revoke other tokens with \
             DELETE /api/v1/me/tokens/{id}",
        ));
    }
    let envelope = Envelope::new(
        principal.login.clone(),
        Event::TokenRevoked(TokenRevoked {
            token_id: principal.token_id,
        }),
    );
    state
        .log()
        .append(
            &depot_events::subject::ci_token(&principal.token_id),
            Expected::Any,
            &envelope.id.to_string(),
            Bytes::from(envelope.encode()),
        )
        .await?;
    crate::tokens::wait_for_token(&state, principal.token_id, |row| row.revoked).await?;
    state.inner.tokens.clear();
    Ok(Json(json!({})))
}

/// Who may change a crate's trusts: its owners and admins, with the `change-owners` scope.
fn require_manager(principal: &Principal, name: &str) -> Result<(), ApiError> {
    principal.require(TokenScope::ChangeOwners, name)
}

/// Fails unless the crate exists and the caller may manage it.
async fn managed_crate(
    state: &AppState,
    name: &CrateName,
    principal: &Principal,
) -> Result<(), ApiError> {
    let (krate, _) = crate::commands::load_crate(state, &name.canonical(), None).await?;
    check_manager(&krate, name, principal)
}

fn check_manager(
    krate: &depot_events::CrateState,
    name: &CrateName,
    principal: &Principal,
) -> Result<(), ApiError> {
    if !krate.exists() {
        return Err(ApiError::not_found(format!(
            "crate `{name}` does not exist"
        )));
    }
    if !principal.may_manage(krate) {
        return Err(ApiError::forbidden(
            "only owners may see or change a crate's trusted publishing",
        ));
    }
    Ok(())
}

/// Appends `event` to the crate's aggregate as its owner (or an admin), and waits until the
/// read models have it.
async fn owner_command(
    state: &AppState,
    name: &CrateName,
    principal: &Principal,
    event: Event,
) -> Result<(), ApiError> {
    let canon = name.canonical();
    let executed = execute(state, &canon, None, &principal.login, |krate| {
        check_manager(krate, name, principal)?;
        Ok(Decision::Append(Box::new(event.clone()), ()))
    })
    .await?;
    if let Some(seq) = executed.appended {
        wait_projected(
            state,
            executed.changes,
            &canon,
            seq,
            state.config().command_wait,
        )
        .await?;
    }
    Ok(())
}

fn encode(trust: &TrustRow) -> Value {
    json!({
        "id": trust.trust.trust_id,
        "issuer": trust.trust.issuer,
        "audience": trust.trust.audience,
        "claims": trust.trust.claims,
        "created_by": trust.created_by,
        "created_at": trust.created_at.to_rfc3339(),
    })
}

/// `GET /api/v1/crates/{name}/trusted_publishers`.
pub(crate) async fn list_trusts(
    State(state): State<AppState>,
    CratePath(name): CratePath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    require_manager(&principal, name.as_str())?;
    let canon = name.canonical();
    managed_crate(&state, &name, &principal).await?;
    let trusts = state.store().trusts_of(&canon).await?;
    let only = state.store().trusted_only(&canon).await?;
    Ok(Json(json!({
        "trusted_publishers": trusts.iter().map(encode).collect::<Vec<_>>(),
        "trusted_publishing_only": only,
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewTrust {
    issuer: String,
    audience: String,
    #[serde(default)]
    claims: std::collections::BTreeMap<String, String>,
}

/// `PUT /api/v1/crates/{name}/trusted_publishers`: `{"issuer","audience","claims":{…}}`.
pub(crate) async fn add_trust(
    State(state): State<AppState>,
    CratePath(name): CratePath,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewTrust>,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    require_manager(&principal, name.as_str())?;
    let trust = TrustAdded {
        trust_id: Uuid::now_v7(),
        issuer: request.issuer,
        audience: request.audience,
        claims: request.claims,
    };
    policy_of(&trust)
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    managed_crate(&state, &name, &principal).await?;
    let existing = state.store().trusts_of(&name.canonical()).await?.len();
    if existing >= MAX_TRUSTS_PER_CRATE {
        return Err(ApiError::bad_request(format!(
            "a crate may have at most {MAX_TRUSTS_PER_CRATE} trusted publishers"
        )));
    }
    owner_command(&state, &name, &principal, Event::TrustAdded(trust.clone())).await?;
    Ok(Json(json!({ "trusted_publisher": {
        "id": trust.trust_id,
        "issuer": trust.issuer,
        "audience": trust.audience,
        "claims": trust.claims,
    }})))
}

/// `DELETE /api/v1/crates/{name}/trusted_publishers/{id}`.
pub(crate) async fn remove_trust(
    State(state): State<AppState>,
    Path((raw_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let name = crate::extract::crate_name(&raw_name)?;
    let principal = authenticate(&state, &headers).await?;
    require_manager(&principal, name.as_str())?;
    let canon = name.canonical();
    managed_crate(&state, &name, &principal).await?;
    let not_found = || ApiError::not_found("no such trusted publisher");
    let trust_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    if !state
        .store()
        .trusts_of(&canon)
        .await?
        .iter()
        .any(|t| t.trust.trust_id == trust_id)
    {
        return Err(not_found());
    }
    owner_command(
        &state,
        &name,
        &principal,
        Event::TrustRemoved(TrustRemoved { trust_id }),
    )
    .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TrustedOnlyRequest {
    enabled: bool,
}

/// `PUT /api/v1/crates/{name}/trusted_publishing_only`: `{"enabled": true|false}`.
pub(crate) async fn set_trusted_only(
    State(state): State<AppState>,
    CratePath(name): CratePath,
    headers: HeaderMap,
    ApiJson(request): ApiJson<TrustedOnlyRequest>,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    require_manager(&principal, name.as_str())?;
    owner_command(
        &state,
        &name,
        &principal,
        Event::TrustedOnlySet(TrustedOnlySet {
            enabled: request.enabled,
        }),
    )
    .await?;
    Ok(Json(json!({ "trusted_publishing_only": request.enabled })))
}
