//! The projector's write side: one transaction per batch of events, with the checkpoint.

use depot_events::{CrateState, ExtractedMetadata, RejectionReason, TokenIssued, VersionUploaded};
use depot_index::{IndexEntry, IndexFile};
use sqlx::{Postgres, Row, Transaction, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{PgStore, StoreError};

/// A batch of read-model changes, committed atomically with the projector's checkpoint.
#[derive(Debug)]
pub struct ProjectionTx {
    tx: Transaction<'static, Postgres>,
    projector: String,
    checkpoint: u64,
}

fn ts(at: depot_events::Timestamp) -> OffsetDateTime {
    at.as_offset_date_time()
}

impl ProjectionTx {
    /// Opens a transaction and locks the projector's checkpoint row (fencing a second instance
    /// of the same projector until this one commits).
    pub async fn begin(store: &PgStore, projector: &str) -> Result<ProjectionTx, StoreError> {
        let mut tx = store.pool().begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO projector_checkpoint (projector, last_seq) VALUES ($1, 0) \
             ON CONFLICT (projector) DO NOTHING",
        )
        .bind(projector)
        .execute(&mut *tx)
        .await?;
        let last: i64 = sqlx::query_scalar(
            "SELECT last_seq FROM projector_checkpoint WHERE projector = $1 FOR UPDATE",
        )
        .bind(projector)
        .fetch_one(&mut *tx)
        .await?;
        Ok(ProjectionTx {
            tx,
            projector: projector.to_owned(),
            checkpoint: last as u64,
        })
    }

    /// The checkpoint as of the start of this transaction: events up to it are already applied.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Loads a crate's aggregate state.
    pub async fn load_crate(&mut self, canon: &str) -> Result<Option<CrateState>, StoreError> {
        let state: Option<Json<CrateState>> =
            sqlx::query_scalar("SELECT state FROM crates WHERE canon = $1")
                .bind(canon)
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(state.map(|j| j.0))
    }

    /// Records an upload as pending.
    pub async fn insert_upload(
        &mut self,
        canon: &str,
        seq: u64,
        upload: &VersionUploaded,
        at: depot_events::Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO versions (canon, upload_seq, name, vers, cksum, size, blob, uploader, \
             status, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9) \
             ON CONFLICT (canon, upload_seq) DO NOTHING",
        )
        .bind(canon)
        .bind(seq as i64)
        .bind(&upload.name)
        .bind(&upload.vers)
        .bind(&upload.cksum)
        .bind(upload.size as i64)
        .bind(&upload.blob)
        .bind(&upload.uploader)
        .bind(ts(at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Marks the pending upload of `vers`/`cksum` accepted, with its index line.
    pub async fn accept(
        &mut self,
        canon: &str,
        vers: &str,
        cksum: &str,
        entry: &IndexEntry,
        metadata: &ExtractedMetadata,
    ) -> Result<(), StoreError> {
        let mut entry = entry.clone();
        entry.yanked = false;
        sqlx::query(
            "UPDATE versions SET status = 'accepted', entry = $4, metadata = $5 \
             WHERE canon = $1 AND vers = $2 AND cksum = $3 AND status = 'pending'",
        )
        .bind(canon)
        .bind(vers)
        .bind(cksum)
        .bind(entry.to_line())
        .bind(Json(metadata))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Marks the pending upload of `vers`/`cksum` rejected.
    pub async fn reject(
        &mut self,
        canon: &str,
        vers: &str,
        cksum: &str,
        reasons: &[RejectionReason],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE versions SET status = 'rejected', reasons = $4 \
             WHERE canon = $1 AND vers = $2 AND cksum = $3 AND status = 'pending'",
        )
        .bind(canon)
        .bind(vers)
        .bind(cksum)
        .bind(Json(reasons))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Sets the yanked flag of an accepted version.
    pub async fn set_yanked(
        &mut self,
        canon: &str,
        vers: &str,
        yanked: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE versions SET yanked = $3 WHERE canon = $1 AND vers = $2 AND status = 'accepted'",
        )
        .bind(canon)
        .bind(vers)
        .bind(yanked)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Stores a crate's aggregate state (as of its event `last_seq` at `updated_at`) and
    /// refreshes its search summary. When `index_changed` is given (sequence and time of the
    /// latest event that changed the crate's index lines), the index file is re-rendered from the
    /// accepted versions in upload order, with that time as its Last-Modified.
    pub async fn save_crate(
        &mut self,
        canon: &str,
        state: &CrateState,
        last_seq: u64,
        updated_at: depot_events::Timestamp,
        index_changed: Option<(u64, depot_events::Timestamp)>,
    ) -> Result<(), StoreError> {
        let rows = sqlx::query(
            "SELECT entry, yanked, vers, metadata FROM versions \
             WHERE canon = $1 AND status = 'accepted' ORDER BY upload_seq",
        )
        .bind(canon)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        let mut best: Option<(semver::Version, bool, Option<String>, Vec<String>)> = None;
        for row in &rows {
            let line: String = row.try_get("entry")?;
            let mut entry: IndexEntry = serde_json::from_str(&line)
                .map_err(|e| StoreError::Corrupt(format!("index entry of {canon}: {e}")))?;
            entry.yanked = row.try_get("yanked")?;
            let metadata: Option<Json<ExtractedMetadata>> = row.try_get("metadata")?;
            let metadata = metadata.map(|j| j.0).unwrap_or_default();
            if let Ok(version) = semver::Version::parse(&entry.vers) {
                // Prefer unyanked versions, then the highest.
                let key = (!entry.yanked, version.clone());
                let better = best
                    .as_ref()
                    .is_none_or(|(v, unyanked, _, _)| key > (*unyanked, v.clone()));
                if better {
                    best = Some((
                        version,
                        !entry.yanked,
                        metadata.description,
                        metadata.keywords,
                    ));
                }
            }
            entries.push(entry);
        }

        match index_changed {
            None => {}
            Some(_) if entries.is_empty() => {
                sqlx::query("DELETE FROM index_files WHERE canon = $1")
                    .bind(canon)
                    .execute(&mut *self.tx)
                    .await?;
            }
            Some((changed_seq, changed_at)) => {
                let file = IndexFile::render(&entries);
                sqlx::query(
                    "INSERT INTO index_files (canon, name, body, etag, last_modified, last_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (canon) DO UPDATE SET name = EXCLUDED.name, \
                     body = EXCLUDED.body, etag = EXCLUDED.etag, \
                     last_modified = EXCLUDED.last_modified, last_seq = EXCLUDED.last_seq",
                )
                .bind(canon)
                .bind(&entries[0].name)
                .bind(&file.body)
                .bind(&file.etag)
                .bind(ts(changed_at))
                .bind(changed_seq as i64)
                .execute(&mut *self.tx)
                .await?;
            }
        }

        let (max_version, description, keywords) = match best {
            Some((v, _, d, k)) => (Some(v.to_string()), d, k.join(" ")),
            None => (None, None, String::new()),
        };
        let visible_name = state
            .name
            .clone()
            .or_else(|| entries.first().map(|e| e.name.clone()));
        sqlx::query(
            "INSERT INTO crates (canon, name, state, last_seq, description, keywords, max_version, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (canon) DO UPDATE SET name = EXCLUDED.name, state = EXCLUDED.state, \
             last_seq = EXCLUDED.last_seq, description = EXCLUDED.description, \
             keywords = EXCLUDED.keywords, max_version = EXCLUDED.max_version, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(canon)
        .bind(visible_name)
        .bind(Json(state))
        .bind(last_seq as i64)
        .bind(description)
        .bind(keywords)
        .bind(max_version)
        .bind(ts(updated_at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records an issued token (and its user, if new).
    pub async fn issue_token(
        &mut self,
        token: &TokenIssued,
        at: depot_events::Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (login, display, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (login) DO NOTHING",
        )
        .bind(token.user.to_ascii_lowercase())
        .bind(&token.user)
        .bind(ts(at))
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO tokens (token_id, login, secret_sha256, kind, label, scopes, crates, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(token.token_id)
        .bind(token.user.to_ascii_lowercase())
        .bind(&token.secret_sha256)
        .bind(
            serde_json::to_value(token.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
        )
        .bind(&token.label)
        .bind(Json(&token.scopes))
        .bind(Json(&token.crates))
        .bind(token.expires_at.map(ts))
        .bind(ts(at))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Marks a token revoked.
    pub async fn revoke_token(&mut self, token_id: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET revoked = true WHERE token_id = $1")
            .bind(token_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Moves the checkpoint to `last_seq` and commits everything.
    pub async fn commit(mut self, last_seq: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE projector_checkpoint SET last_seq = $2 WHERE projector = $1")
            .bind(&self.projector)
            .bind(last_seq as i64)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
