//! Yank, unyank, owners, search and downloads.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use depot_events::{Event, OwnersChanged, TokenScope, VersionYankToggled};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::io::ReaderStream;

use crate::auth::authenticate;
use crate::commands::{Decision, execute, wait_projected};
use crate::{ApiError, AppState};

fn crate_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("crate `{name}` does not exist"))
}

/// `DELETE /api/v1/crates/{name}/{version}/yank`.
pub(crate) async fn yank(
    state: State<AppState>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_yanked(state, path, headers, true).await
}

/// `PUT /api/v1/crates/{name}/{version}/unyank`.
pub(crate) async fn unyank(
    state: State<AppState>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    set_yanked(state, path, headers, false).await
}

async fn set_yanked(
    State(state): State<AppState>,
    Path((name, vers)): Path<(String, String)>,
    headers: HeaderMap,
    yanked: bool,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(TokenScope::Yank, &name)?;
    let canon = depot_index::canonical_name(&name);
    let executed = execute(&state, &canon, Some(&vers), &principal.login, |krate| {
        if !krate.exists() {
            return Err(crate_not_found(&name));
        }
        if !krate.is_owner(&principal.login) {
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
            vers: vers.clone(),
            message: None,
        };
        let event = if yanked {
            Event::VersionYanked(toggle)
        } else {
            Event::VersionUnyanked(toggle)
        };
        Ok(Decision::Append(Box::new(event), ()))
    })
    .await?;
    if let Some(seq) = executed.appended {
        wait_projected(&state, &canon, seq, state.config().command_wait).await?;
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
    Ok(Json(json!({ "user": { "login": display } })))
}

/// `GET /api/v1/crates/{name}/owners`.
pub(crate) async fn list_owners(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let canon = depot_index::canonical_name(&name);
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
    path: Path<String>,
    headers: HeaderMap,
    body: Json<OwnersBody>,
) -> Result<Json<Value>, ApiError> {
    change_owners(state, path, headers, body, true).await
}

/// `DELETE /api/v1/crates/{name}/owners`.
pub(crate) async fn remove_owners(
    state: State<AppState>,
    path: Path<String>,
    headers: HeaderMap,
    body: Json<OwnersBody>,
) -> Result<Json<Value>, ApiError> {
    change_owners(state, path, headers, body, false).await
}

async fn change_owners(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<OwnersBody>,
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(TokenScope::ChangeOwners, &name)?;
    if body.users.is_empty() {
        return Err(ApiError::bad_request("no users given"));
    }
    // `--add a,b` arrives as one string: accept comma-separated lists too.
    let mut logins = Vec::new();
    for entry in &body.users {
        for login in entry.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            let known = state.store().user(login).await?;
            let Some(_) = known else {
                return Err(ApiError::not_found(format!(
                    "could not find user with login `{login}`"
                )));
            };
            logins.push(login.to_ascii_lowercase());
        }
    }
    let canon = depot_index::canonical_name(&name);
    let executed = execute(&state, &canon, None, &principal.login, |krate| {
        if !krate.exists() {
            return Err(crate_not_found(&name));
        }
        if !krate.is_owner(&principal.login) {
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
        let change = OwnersChanged { owners: changing };
        let event = if add {
            Event::OwnersAdded(change)
        } else {
            Event::OwnersRemoved(change)
        };
        Ok(Decision::Append(Box::new(event), ()))
    })
    .await?;
    if let Some(seq) = executed.appended {
        wait_projected(&state, &canon, seq, state.config().command_wait).await?;
    }
    let list = logins.join(", ");
    let msg = if add {
        format!("user(s) {list} added as owner(s) of crate {name}")
    } else {
        format!("user(s) {list} removed as owner(s) of crate {name}")
    };
    Ok(Json(json!({ "ok": true, "msg": msg })))
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
    Query(query): Query<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.per_page.unwrap_or(10).clamp(1, 100);
    let (hits, total) = state.store().search(query.q.trim(), limit).await?;
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

/// `GET /api/v1/crates/{name}/{version}/download`: streams the `.crate`.
pub(crate) async fn download(
    State(state): State<AppState>,
    Path((name, vers)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let canon = depot_index::canonical_name(&name);
    let not_found = || ApiError::not_found(format!("crate `{name}` has no version `{vers}`"));
    let Some(blob) = state.store().download_target(&canon, &vers).await? else {
        return Err(not_found());
    };
    let Some((file, len)) = state.inner.blobs.open_blob(&blob).await? else {
        return Err(ApiError::internal(format!(
            "blob {blob} of {name} {vers} is missing from the blob store"
        )));
    };
    state.inner.downloads.count(&canon, &vers);
    let metrics = depot_telemetry::metrics();
    metrics.downloads.inc();
    metrics.download_bytes.inc_by(len);
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/gzip"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from(len)),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
    ];
    Ok((
        headers,
        Body::from_stream(ReaderStream::with_capacity(file, 256 * 1024)),
    )
        .into_response())
}

/// Download counts gathered in memory and written in batches.
#[derive(Debug, Default)]
pub(crate) struct DownloadCounter {
    counts: Mutex<HashMap<(String, String), u64>>,
}

impl DownloadCounter {
    fn count(&self, canon: &str, vers: &str) {
        let mut counts = self.counts.lock().expect("download counter lock");
        *counts
            .entry((canon.to_owned(), vers.to_owned()))
            .or_default() += 1;
    }

    pub(crate) async fn flush(
        &self,
        store: &depot_store::Store,
    ) -> Result<(), depot_store::StoreError> {
        let batch: Vec<(String, String, u64)> = {
            let mut counts = self.counts.lock().expect("download counter lock");
            counts.drain().map(|((c, v), n)| (c, v, n)).collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.add_downloads(&batch).await {
            // Put them back so they are not lost.
            let mut counts = self.counts.lock().expect("download counter lock");
            for (c, v, n) in batch {
                *counts.entry((c, v)).or_default() += n;
            }
            return Err(e);
        }
        Ok(())
    }
}
