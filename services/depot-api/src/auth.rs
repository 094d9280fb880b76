//! Who is calling: the `Authorization` header resolved to a token, its kind and its grant.
//!
//! Authentication failures (no token, a malformed header, an unknown, expired or revoked token,
//! a disabled user) answer **401** with `WWW-Authenticate: Cargo login_url="…"`, the status
//! cargo answers with its `cargo login` guidance; a valid token without the needed scope, crate
//! pattern or ownership answers **403**.
//!
//! Tokens are looked up by the sha256 of their secret. The lookup is cached per process for
//! [`TOKEN_CACHE_TTL`] at most, so a revocation, an expiry or a disabled user takes effect on
//! every api process within that time after the projector applied it.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use depot_auth::TokenGrant;
use depot_events::{Timestamp, TokenKind, TokenScope};
use depot_store::TokenRow;
use lru::LruCache;
use uuid::Uuid;

use crate::{ApiError, AppState};

/// How long a token lookup is reused before the read models are asked again.
pub(crate) const TOKEN_CACHE_TTL: Duration = Duration::from_millis(500);
/// Token lookups kept per process (hits and misses alike).
const TOKEN_CACHE_ENTRIES: usize = 10_000;
/// Distinct tokens whose last use is remembered between two flushes.
const MAX_PENDING_USES: usize = 100_000;

/// Paths that need no token even when the registry requires authentication: the health check,
/// the login page cargo points to, and the trusted-publishing exchange (which authenticates
/// with an OIDC ID token instead).
const PUBLIC_PATHS: [&str; 3] = ["/health", "/me", TRUSTED_PUBLISHING_PATH];

/// The trusted-publishing exchange (`POST`), which authenticates with an OIDC ID token.
/// `DELETE` on the same path revokes the calling CI token, so it authenticates itself.
const TRUSTED_PUBLISHING_PATH: &str = "/api/v1/trusted_publishing/tokens";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// Who the token acts for: a lowercase login, `deploy:<name>` or `ci:<subject>`.
    pub(crate) login: String,
    /// The token used.
    pub(crate) token_id: Uuid,
    /// Personal, deploy or CI.
    pub(crate) kind: TokenKind,
    /// Whether the token's user is an admin.
    pub(crate) admin: bool,
    /// When the token expires, if ever.
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) grant: TokenGrant,
}

impl Principal {
    /// Fails with 403 unless the token allows `scope` on crate `name`.
    pub(crate) fn require(&self, scope: TokenScope, name: &str) -> Result<(), ApiError> {
        if self.grant.allows(scope, name) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token does not have the `{}` scope for crate `{name}`",
                scope.as_str()
            )))
        }
    }

    /// Fails with 403 unless the token has `scope` for at least some crates.
    pub(crate) fn require_scope(&self, scope: TokenScope) -> Result<(), ApiError> {
        if self.grant.scopes.is_empty() || self.grant.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token does not have the `{}` scope",
                scope.as_str()
            )))
        }
    }

    /// Whether the caller may publish new versions of an existing crate (within its scopes and
    /// crate patterns): its owners, and tokens of no person (deploy and CI tokens act on exactly
    /// the crates their patterns name, whoever owns them).
    pub(crate) fn may_publish_to(&self, krate: &depot_events::CrateState) -> bool {
        self.kind != TokenKind::Personal || krate.is_owner(&self.login)
    }

    /// Whether the caller may yank versions of a crate and manage its owners: as for
    /// publishing, and admins too.
    pub(crate) fn may_manage(&self, krate: &depot_events::CrateState) -> bool {
        self.admin || self.may_publish_to(krate)
    }
}

/// Per-process memory of token lookups and uses.
#[derive(Debug)]
pub(crate) struct TokenCache {
    lookups: Mutex<LruCache<String, (Instant, Option<TokenRow>)>>,
    uses: Mutex<HashMap<String, Timestamp>>,
}

impl TokenCache {
    pub(crate) fn new() -> TokenCache {
        TokenCache {
            lookups: Mutex::new(LruCache::new(
                NonZeroUsize::new(TOKEN_CACHE_ENTRIES).expect("non-zero"),
            )),
            uses: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<Option<TokenRow>> {
        let mut lookups = self.lookups.lock().expect("token cache lock");
        match lookups.get(hash) {
            Some((at, row)) if at.elapsed() < TOKEN_CACHE_TTL => Some(row.clone()),
            Some(_) => {
                lookups.pop(hash);
                None
            }
            None => None,
        }
    }

    fn put(&self, hash: String, row: Option<TokenRow>, loaded: Instant) {
        self.lookups
            .lock()
            .expect("token cache lock")
            .put(hash, (loaded, row));
    }

    /// Forgets every lookup (a token was revoked through this process).
    pub(crate) fn clear(&self) {
        self.lookups.lock().expect("token cache lock").clear();
    }

    fn used(&self, token_id: &str) {
        let mut uses = self.uses.lock().expect("token use lock");
        if uses.len() < MAX_PENDING_USES || uses.contains_key(token_id) {
            uses.insert(token_id.to_owned(), Timestamp::now());
        }
    }

    /// Writes the remembered last uses to the read models.
    pub(crate) async fn flush_uses(
        &self,
        store: &depot_store::Store,
    ) -> Result<(), depot_store::StoreError> {
        let batch: Vec<(String, Timestamp)> = {
            let mut uses = self.uses.lock().expect("token use lock");
            uses.drain().collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        store.record_token_use(&batch).await
    }
}

/// A 401 answer: cargo shows the detail and, on the first `config.json` request, prompts
/// with the login URL.
pub(crate) fn unauthorized(state: &AppState, detail: &str) -> ApiError {
    let login_url = format!("{}/me", state.config().public_url);
    let challenge = HeaderValue::from_str(&format!("Cargo login_url=\"{login_url}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("Cargo"));
    ApiError::unauthorized(detail).with_challenge(challenge)
}

/// A 401 of [`authenticate`], counted by reason.
fn refuse(state: &AppState, reason: &'static str, detail: &str) -> ApiError {
    depot_telemetry::metrics()
        .auth_refusals
        .with_label_values(&[reason])
        .inc();
    unauthorized(state, detail)
}

/// Resolves the caller from `Authorization` (raw token or `Bearer <token>`).
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(refuse(
            state,
            "missing",
            "this action requires authentication: send a Depot token in the Authorization \
             header (`cargo login --registry <name>` stores one for cargo)",
        ));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(depot_auth::secret_from_header)
        .ok_or_else(|| {
            refuse(
                state,
                "malformed",
                "authentication failed: malformed Authorization header (expected the token, \
                 or `Bearer <token>`)",
            )
        })?;
    authenticate_hash(state, depot_auth::hash_secret(secret)).await
}

/// Resolves the caller from the sha256 of a token's secret (the `Authorization` header's, or
/// the one a web session was opened with).
pub(crate) async fn authenticate_hash(
    state: &AppState,
    hash: String,
) -> Result<Principal, ApiError> {
    let cache = &state.inner.tokens;
    let token = match cache.get(&hash) {
        Some(row) => row,
        None => {
            let loaded = Instant::now();
            let row = state.store().token_by_hash(&hash).await?;
            cache.put(hash, row.clone(), loaded);
            row
        }
    };
    let Some(token) = token else {
        return Err(refuse(
            state,
            "unknown",
            "authentication failed: unknown token",
        ));
    };
    if token.revoked {
        return Err(refuse(
            state,
            "revoked",
            "authentication failed: the token was revoked",
        ));
    }
    if token
        .expires_at
        .is_some_and(|expiry| expiry <= Timestamp::now())
    {
        return Err(refuse(
            state,
            "expired",
            "authentication failed: the token has expired",
        ));
    }
    if token.user_disabled {
        return Err(refuse(
            state,
            "disabled",
            &format!(
                "authentication failed: the user `{}` is disabled",
                token.login
            ),
        ));
    }
    cache.used(&token.token_id);
    Ok(Principal {
        token_id: Uuid::parse_str(&token.token_id).map_err(ApiError::internal)?,
        login: token.login,
        kind: token.kind,
        admin: token.admin,
        expires_at: token.expires_at,
        grant: TokenGrant {
            scopes: token.scopes,
            crates: token.crates,
            read_crates: token.read_crates,
        },
    })
}

/// For reads (index files, downloads, owner lists): nothing on a registry with public reads;
/// with `auth-required`, a valid token (401 otherwise) with the `read` scope for the crate
/// (403 otherwise). The scope is checked before the crate is looked up, so a 403 says nothing
/// about whether a crate exists.
pub(crate) async fn authorize_read(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
) -> Result<(), ApiError> {
    if state.config().auth_required {
        authenticate(state, headers)
            .await?
            .require(TokenScope::Read, name)?;
    }
    Ok(())
}

/// The reader of a registry-wide read (search): `None` when reads are public.
pub(crate) async fn reader(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    if !state.config().auth_required {
        return Ok(None);
    }
    let principal = authenticate(state, headers).await?;
    principal.require_scope(TokenScope::Read)?;
    Ok(Some(principal))
}

/// `Cache-Control` of index files and downloads: shared caches may keep public ones, never
/// those of a registry that requires authentication.
pub(crate) fn cache_control(state: &AppState, public: &'static str) -> HeaderValue {
    if state.config().auth_required {
        HeaderValue::from_static("private, no-cache")
    } else {
        HeaderValue::from_static(public)
    }
}

/// With `auth-required`, every route but [`PUBLIC_PATHS`] needs a valid token (any scope):
/// unknown paths included, so nothing about the registry is told to strangers. The web UI's
/// pages authenticate with their session cookie instead and send strangers to the sign-in
/// page themselves (see `web`).
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.config().auth_required
        && !PUBLIC_PATHS.contains(&request.uri().path())
        && !crate::web::is_web_path(request.uri().path())
        && let Err(e) = authenticate(&state, request.headers()).await
    {
        return e.into_response();
    }
    next.run(request).await
}
