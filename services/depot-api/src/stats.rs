//! A crate in crates.io's API shape, with its download counts: `GET /api/v1/crates/{name}`,
//! `GET /api/v1/crates/{name}/{version}` and `GET /api/v1/crates/{name}/downloads`. Versions
//! with hosted docs carry their URL (`documentation`), and the crate the URL of its newest docs.
//!
//! Downloads are counted per version as Depot serves them and written in batches per UTC day
//! (operational data: kept across `depot replay`, not rebuilt from the log). "Recent" means the
//! last [`RECENT_DAYS`] days, as on crates.io.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use depot_events::Timestamp;
use serde_json::{Value, json};

use crate::auth::authorize_read;
use crate::extract::{CratePath, VersionPath};
use crate::{ApiError, AppState};

/// Days counted as recent, and the days `…/downloads` covers.
pub(crate) const RECENT_DAYS: i64 = 90;

/// `YYYY-MM-DD` of a day since the Unix epoch.
fn date_of(day: i64) -> String {
    Timestamp::from_unix_millis(day.saturating_mul(86_400_000)).to_pubtime()[..10].to_owned()
}

fn first_recent_day() -> i64 {
    Timestamp::now().unix_seconds().div_euclid(86_400) - (RECENT_DAYS - 1)
}

/// `GET /api/v1/crates/{name}`: the crate, its versions and their download counts.
pub(crate) async fn crate_info(
    State(state): State<AppState>,
    CratePath(name): CratePath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize_read(&state, &headers, name.as_str()).await?;
    let canon = name.canonical();
    let not_found = || ApiError::not_found(format!("crate `{name}` does not exist"));
    let Some(versions) = state.store().crate_versions(&canon).await? else {
        return Err(not_found());
    };
    let info = state
        .store()
        .crate_info(&canon)
        .await?
        .ok_or_else(not_found)?;
    let counts = state
        .store()
        .crate_downloads(&canon, first_recent_day())
        .await?;
    let totals: BTreeMap<&str, u64> = counts
        .totals
        .iter()
        .map(|(vers, count)| (vers.as_str(), *count))
        .collect();
    let downloads: u64 = totals.values().sum();
    let recent: u64 = counts.days.iter().map(|(_, _, count)| count).sum();
    let newest = versions
        .versions
        .iter()
        .rev()
        .find(|v| !v.yanked)
        .or(versions.versions.last())
        .map(|v| v.vers.clone());
    let documentation = crate::docs::documentation_urls(&state, &canon).await?;
    let yank_messages = state.store().yank_messages(&canon).await?;
    let listed: Vec<Value> = versions
        .versions
        .iter()
        .rev()
        .map(|v| {
            json!({
                "num": v.vers,
                "crate": versions.name,
                "yanked": v.yanked,
                "yank_message": v.yanked.then(|| yank_messages.get(v.vers.as_str())).flatten(),
                "downloads": totals.get(v.vers.as_str()).copied().unwrap_or(0),
                "dl_path": format!("/api/v1/crates/{}/{}/download", versions.name, v.vers),
                "documentation": documentation.get(v.vers.as_str()),
            })
        })
        .collect();
    Ok(Json(json!({
        "crate": {
            "id": versions.name,
            "name": versions.name,
            "description": info.description,
            "max_version": info.max_version,
            "newest_version": newest,
            "downloads": downloads,
            "recent_downloads": recent,
            "updated_at": info.updated_at.to_rfc3339(),
            "documentation": (!documentation.is_empty())
                .then(|| format!("{}/docs/{}", state.config().public_url, versions.name)),
        },
        "versions": listed,
    })))
}

/// `GET /api/v1/crates/{name}/{version}`: one version in crates.io's shape — its checksum,
/// size, publisher, time, license, `rust-version`, features, downloads, yank state and reason,
/// and the URL of its hosted docs.
pub(crate) async fn version_info(
    State(state): State<AppState>,
    VersionPath(name, vers): VersionPath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize_read(&state, &headers, name.as_str()).await?;
    let canon = name.canonical();
    let details = state
        .store()
        .crate_details(&canon)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("crate `{name}` does not exist")))?;
    let version = details
        .versions
        .iter()
        .find(|v| v.vers == vers.as_str())
        .ok_or_else(|| {
            ApiError::not_found(format!("crate `{name}` does not have a version `{vers}`"))
        })?;
    let counts = state
        .store()
        .crate_downloads(&canon, first_recent_day())
        .await?;
    let downloads = counts
        .totals
        .iter()
        .find(|(v, _)| *v == version.vers)
        .map_or(0, |(_, count)| *count);
    let yank_message = match version.yanked {
        true => state
            .store()
            .yank_messages(&canon)
            .await?
            .remove(&version.vers),
        false => None,
    };
    let documentation = crate::docs::documentation_urls(&state, &canon)
        .await?
        .remove(&version.vers);
    let entry: Option<depot_index::IndexEntry> = version
        .entry
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok());
    let metadata: depot_events::ExtractedMetadata = version
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let features = entry.as_ref().map(|e| {
        let mut all = e.features.clone();
        if let Some(more) = &e.features2 {
            all.extend(more.clone());
        }
        all
    });
    Ok(Json(json!({
        "version": {
            "crate": details.name,
            "num": version.vers,
            "dl_path": format!("/api/v1/crates/{}/{}/download", details.name, version.vers),
            "created_at": version.uploaded_at.to_rfc3339(),
            "published_by": { "login": version.uploader },
            "crate_size": version.size,
            "checksum": entry.as_ref().map(|e| e.cksum.clone()),
            "downloads": downloads,
            "yanked": version.yanked,
            "yank_message": yank_message,
            "features": features,
            "links": entry.as_ref().and_then(|e| e.links.clone()),
            "rust_version": entry.as_ref().and_then(|e| e.rust_version.clone()),
            "license": metadata.license,
            "edition": metadata.edition,
            "description": metadata.description,
            "homepage": metadata.homepage,
            "repository": metadata.repository,
            "documentation": documentation,
        }
    })))
}

/// `GET /api/v1/crates/{name}/downloads`: downloads per version and day, the last
/// [`RECENT_DAYS`] days.
pub(crate) async fn crate_downloads(
    State(state): State<AppState>,
    CratePath(name): CratePath,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize_read(&state, &headers, name.as_str()).await?;
    let canon = name.canonical();
    if state.store().crate_versions(&canon).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "crate `{name}` does not exist"
        )));
    }
    let counts = state
        .store()
        .crate_downloads(&canon, first_recent_day())
        .await?;
    let per_day: Vec<Value> = counts
        .days
        .iter()
        .map(|(vers, day, count)| json!({"version": vers, "downloads": count, "date": date_of(*day)}))
        .collect();
    Ok(Json(json!({
        "version_downloads": per_day,
        "meta": { "extra_downloads": [] },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(20_427), "2025-12-05");
    }

    proptest::proptest! {
        /// Any day in a plausible range is a `YYYY-MM-DD` date.
        #[test]
        fn any_day_is_a_date(day in 0i64..200_000) {
            let date = date_of(day);
            proptest::prop_assert_eq!(date.len(), 10);
            proptest::prop_assert_eq!(&date[4..5], "-");
        }
    }
}
