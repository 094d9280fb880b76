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

/// The longest yank message, in characters.
pub(crate) const MAX_YANK_MESSAGE_CHARS: usize = 512;

/// `DELETE /api/v1/crates/{name}/{version}/yank` (cargo's; it gives no reason).
pub(crate) async fn yank(
    state: State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_yanked(state, name, vers, headers, Some(true), None).await?;
    Ok(Json(json!({ "ok": true })))
}

/// `PUT /api/v1/crates/{name}/{version}/unyank`.
pub(crate) async fn unyank(
    state: State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_yanked(state, name, vers, headers, Some(false), None).await?;
    Ok(Json(json!({ "ok": true })))
}

/// The body of `PATCH /api/v1/crates/{name}/{version}`, as crates.io takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionPatch {
    version: VersionChange,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionChange {
    /// Yank (`true`) or unyank (`false`); absent: as it is.
    #[serde(default)]
    yanked: Option<bool>,
    /// Why it is yanked (only for a yanked version).
    #[serde(default)]
    yank_message: Option<String>,
}

/// A yank message as given: at most [`MAX_YANK_MESSAGE_CHARS`] characters, no control
/// characters but newlines and tabs; blank means none.
pub(crate) fn yank_message(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = raw else {
        return Ok(None);
    };
    if text.chars().count() > MAX_YANK_MESSAGE_CHARS {
        return Err(ApiError::bad_request(format!(
            "the yank message is longer than {MAX_YANK_MESSAGE_CHARS} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::bad_request(
            "the yank message must not hold control characters",
        ));
    }
    let trimmed = text.trim();
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// `PATCH /api/v1/crates/{name}/{version}`: crates.io's way to yank or unyank with a reason,
/// `{"version": {"yanked": true, "yank_message": "…"}}`; also changes the message of a
/// yanked version. Answers `{"version": {"num", "crate", "yanked", "yank_message"}}`.
pub(crate) async fn update_version(
    state: State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<VersionPatch>,
) -> Result<Json<Value>, ApiError> {
    let message = yank_message(patch.version.yank_message)?;
    let yanked = set_yanked(
        state.clone(),
        name.clone(),
        vers.clone(),
        headers,
        patch.version.yanked,
        message,
    )
    .await?;
    let message = match yanked {
        true => state
            .store()
            .yank_messages(&name.canonical())
            .await?
            .remove(vers.as_str()),
        false => None,
    };
    Ok(Json(json!({
        "version": {
            "num": vers.as_str(),
            "crate": name.as_str(),
            "yanked": yanked,
            "yank_message": message,
        }
    })))
}

/// Yanks or unyanks (`yanked`; `None`: keeps the state) with an optional message (a yank
/// of a yanked version without one keeps its message); returns whether it is yanked now.
async fn set_yanked(
    State(state): State<AppState>,
    name: CrateName,
    vers: Version,
    headers: HeaderMap,
    yanked: Option<bool>,
    message: Option<String>,
) -> Result<bool, ApiError> {
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
            let target = yanked.unwrap_or(version.yanked);
            if !target && message.is_some() {
                return Err(ApiError::bad_request(
                    "only a yanked version has a yank message",
                ));
            }
            // Yanking a yanked version again changes nothing, unless it says why.
            if version.yanked == target && message.is_none() {
                return Ok(Decision::Done(target));
            }
            let toggle = VersionYankToggled {
                vers: vers.to_string(),
                message: message.clone(),
                token_id: Some(principal.token_id),
            };
            let event = if target {
                Event::VersionYanked(toggle)
            } else {
                Event::VersionUnyanked(toggle)
            };
            Ok(Decision::Append(Box::new(event), target))
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
    Ok(executed.value)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn yank_messages_are_checked() {
        assert_eq!(yank_message(None).unwrap(), None);
        assert_eq!(yank_message(Some("  \n ".into())).unwrap(), None);
        assert_eq!(
            yank_message(Some(" broken\n\tbuild ".into()))
                .unwrap()
                .as_deref(),
            Some("broken\n\tbuild")
        );
        assert!(yank_message(Some("a\u{0}b".into())).is_err());
        assert!(yank_message(Some("a\u{1b}[31mb".into())).is_err());
        assert!(yank_message(Some("é".repeat(MAX_YANK_MESSAGE_CHARS))).is_ok());
        assert!(yank_message(Some("é".repeat(MAX_YANK_MESSAGE_CHARS + 1))).is_err());
    }

    proptest! {
        /// Any text: a kept message is trimmed, non-empty, bounded and free of control
        /// characters but newlines and tabs; text within those bounds is never refused.
        #[test]
        fn any_yank_message_is_checked(text in "\\PC{0,600}|[a-z\n\t\u{0}-\u{1f} ]{0,20}") {
            let allowed = text.chars().count() <= MAX_YANK_MESSAGE_CHARS
                && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
            match yank_message(Some(text.clone())) {
                Ok(Some(kept)) => {
                    prop_assert!(allowed);
                    prop_assert_eq!(kept.as_str(), text.trim());
                    prop_assert!(!kept.is_empty());
                }
                Ok(None) => prop_assert!(allowed && text.trim().is_empty()),
                Err(_) => prop_assert!(!allowed),
            }
        }
    }
}
