//! Yank, unyank, owners and search.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use depot_events::{Event, OwnersChanged, TokenScope, VersionYankToggled};
use depot_index::{CrateName, Login, Version};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{authenticate, authorize_read, reader};
use crate::commands::{Decision, execute, wait_projected};
use crate::extract::{ApiJson, ApiQuery, CratePath, VersionPath};
use crate::{ApiError, AppState};

fn crate_not_found(name: &CrateName) -> ApiError {
    ApiError::not_found(format!("crate `{name}` does not exist"))
}

/// `DELETE /api/v1/crates/{name}/{version}/yank`.
pub(crate) async fn yank(
    state: State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_yanked(state, name, vers, headers, true).await
}

/// `PUT /api/v1/crates/{name}/{version}/unyank`.
pub(crate) async fn unyank(
    state: State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_yanked(state, name, vers, headers, false).await
}

async fn set_yanked(
    State(state): State<AppState>,
    name: CrateName,
    vers: Version,
    headers: HeaderMap,
    yanked: bool,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    state.inner.rate_limits.command(principal.token_id)?;
    principal.require(TokenScope::Yank, &name)?;
    let canon = name.canonical();
    let executed = execute(
        &state,
        &canon,
        Some(vers.as_str()),
        &principal.login,
        |krate| {
            if !krate.exists() {
                return Err(crate_not_found(&name));
            }
            if !principal.may_manage(krate) {
                return Err(ApiError::forbidden("you are not an owner of this crate"));
            }
            let Some(version) = krate.accepted_version(&vers) else {
                return Err(ApiError::not_found(format!(
                    "crate `{name}` does not have a version `{vers}`"
                )));
            };
            if version.yanked == yanked {
                return Ok(Decision::Done(()));
            }
            let toggle = VersionYankToggled {
                vers: vers.to_string(),
                message: None,
                token_id: Some(principal.token_id),
            };
            let event = if yanked {
                Event::VersionYanked(toggle)
            } else {
                Event::VersionUnyanked(toggle)
            };
            Ok(Decision::Append(Box::new(event), ()))
        },
    )
    .await?;
    if let Some(seq) = executed.appended {
        wait_projected(
            &state,
            executed.changes,
            &canon,
            seq,
            state.config().command_wait,
        )
        .await?;
    }
    Ok(Json(json!({ "ok": true })))
}

/// `GET /api/v1/me`: who the token belongs to.
pub(crate) async fn me(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    let display = state
        .store()
        .user(&principal.login)
        .await?
        .unwrap_or(principal.login);
    Ok(Json(json!({
        "user": { "login": display, "admin": principal.admin },
        "token": {
            "id": principal.token_id,
            "kind": principal.kind.as_str(),
            "endpoint_scopes": principal.grant.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "crate_scopes": principal.grant.crates,
            "read_crate_scopes": principal.grant.read_crates,
            "expired_at": principal.expires_at.map(depot_events::Timestamp::to_rfc3339),
        },
    })))
}

/// `GET /api/v1/crates/{name}/owners`.
pub(crate) async fn list_owners(
    State(state): State<AppState>,
    CratePath(name): CratePath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize_read(&state, &headers, name.as_str()).await?;
    let canon = name.canonical();
    let (krate, _) = crate::commands::load_crate(&state, &canon, None).await?;
    if !krate.exists() {
        return Err(crate_not_found(&name));
    }
    let mut users = Vec::new();
    for (i, login) in krate.owners().iter().enumerate() {
        let display = state
            .store()
            .user(login)
            .await?
            .unwrap_or_else(|| login.clone());
        users.push(json!({ "id": i + 1, "login": display, "name": Value::Null }));
    }
    Ok(Json(json!({ "users": users })))
}

/// The body of owner changes: `{"users":[…]}` (crates.io also accepts `owners`).
#[derive(Debug, Deserialize)]
pub(crate) struct OwnersBody {
    #[serde(alias = "owners")]
    users: Vec<String>,
}

/// `PUT /api/v1/crates/{name}/owners`.
pub(crate) async fn add_owners(
    state: State<AppState>,
    path: CratePath,
    headers: HeaderMap,
    body: ApiJson<OwnersBody>,
) -> Result<Json<Value>, ApiError> {
    change_owners(state, path, headers, body, true).await
}

/// `DELETE /api/v1/crates/{name}/owners`.
pub(crate) async fn remove_owners(
    state: State<AppState>,
    path: CratePath,
    headers: HeaderMap,
    body: ApiJson<OwnersBody>,
) -> Result<Json<Value>, ApiError> {
    change_owners(state, path, headers, body, false).await
}

async fn change_owners(
    State(state): State<AppState>,
    CratePath(name): CratePath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OwnersBody>,
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    let msg = change_owners_as(&state, &principal, &name, &body.users, add).await?;
    Ok(Json(json!({ "ok": true, "msg": msg })))
}

/// Adds (`add`) or removes owners of a crate on behalf of `principal`; returns a sentence
/// saying what was done.
pub(crate) async fn change_owners_as(
    state: &AppState,
    principal: &crate::auth::Principal,
    name: &CrateName,
    users: &[String],
    add: bool,
) -> Result<String, ApiError> {
    state.inner.rate_limits.command(principal.token_id)?;
    principal.require(TokenScope::ChangeOwners, name)?;
    let mut logins = Vec::new();
    for login in parse_logins(users, state.config().limits.max_owners_per_request)? {
        let known = state.store().user(&login).await?;
        let Some(_) = known else {
            return Err(ApiError::not_found(format!(
                "could not find user with login `{login}`"
            )));
        };
        logins.push(login.to_lowercase().to_string());
    }
    let canon = name.canonical();
    let executed = execute(state, &canon, None, &principal.login, |krate| {
        if !krate.exists() {
            return Err(crate_not_found(name));
        }
        if !principal.may_manage(krate) {
            return Err(ApiError::forbidden(
                "only owners have permission to modify owners",
            ));
        }
        let changing: Vec<String> = logins
            .iter()
            .filter(|l| krate.is_owner(l) != add)
            .cloned()
            .collect();
        if !add {
            let remaining = krate
                .owners()
                .iter()
                .filter(|o| !logins.iter().any(|l| l.eq_ignore_ascii_case(o)))
                .count();
            if remaining == 0 {
                return Err(ApiError::bad_request(
                    "cannot remove all individual owners of a crate",
                ));
            }
        }
        if changing.is_empty() {
            return Ok(Decision::Done(()));
        }
        let change = OwnersChanged {
            owners: changing,
            token_id: Some(principal.token_id),
        };
        let event = if add {
            Event::OwnersAdded(change)
        } else {
            Event::OwnersRemoved(change)
        };
        Ok(Decision::Append(Box::new(event), ()))
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
    let list = logins.join(", ");
    Ok(if add {
        format!("user(s) {list} added as owner(s) of crate {name}")
    } else {
        format!("user(s) {list} removed as owner(s) of crate {name}")
    })
}

/// The logins of an owner change. `--add a,b` arrives as one string, so comma-separated lists
/// are accepted too; at most `max` in all (counted before any is looked up). A string that is no
/// login names no user (404).
fn parse_logins(entries: &[String], max: usize) -> Result<Vec<Login>, ApiError> {
    let mut logins = Vec::new();
    for entry in entries {
        for raw in entry.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            crate::limits::check_owner_count(logins.len() + 1, max)?;
            let login = Login::parse(raw)
                .map_err(|e| ApiError::not_found(format!("could not find user: {e}")))?;
            logins.push(login);
        }
    }
    if logins.is_empty() {
        return Err(ApiError::bad_request("no users given"));
    }
    Ok(logins)
}

/// Query of `GET /api/v1/crates`.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
    per_page: Option<u32>,
}

/// `GET /api/v1/crates?q=&per_page=`.
pub(crate) async fn search(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let reader = reader(&state, &headers).await?;
    crate::limits::check_search_query(&query.q, state.config().limits.max_search_query_bytes)?;
    let limit = query.per_page.unwrap_or(10).clamp(1, 100);
    // A token limited to some crates sees only those: a page of the largest size is filtered,
    // and the total counts what is left of it.
    let narrowed = reader.filter(|r| !r.grant.crates.is_empty());
    let (mut hits, mut total) = match &narrowed {
        Some(_) => state.store().search(query.q.trim(), 100).await?,
        None => state.store().search(query.q.trim(), limit).await?,
    };
    if let Some(reader) = &narrowed {
        hits.retain(|hit| reader.grant.allows(TokenScope::Read, &hit.name));
        total = hits.len() as u64;
        hits.truncate(limit as usize);
    }
    let crates: Vec<Value> = hits
        .into_iter()
        .map(|hit| {
            json!({
                "name": hit.name,
                "max_version": hit.max_version,
                "description": hit.description,
            })
        })
        .collect();
    Ok(Json(
        json!({ "crates": crates, "meta": { "total": total } }),
    ))
}
