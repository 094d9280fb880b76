//! The projector's write side: one transaction per batch of events, with the checkpoint of the
//! generation being written.

use depot_events::{
    CrateState, ExtractedMetadata, RejectionReason, Timestamp, TokenIssued, VersionUploaded,
};
use depot_index::{IndexEntry, IndexFile};

use crate::db::{Tx, on_tx, to_i64, to_u64};
use crate::{Store, StoreError};

/// Which generation a projection transaction writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The active generation, whichever it is when the transaction begins (the live projector).
    Active,
    /// One given generation (a replay).
    Generation(u64),
}

/// A batch of read-model changes, committed atomically with the generation's checkpoint.
#[derive(Debug)]
pub struct ProjectionTx {
    tx: Tx,
    gen_: i64,
    checkpoint: u64,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("read-model values always serialize")
}

impl ProjectionTx {
    /// Opens a transaction on `target` and locks its checkpoint (fencing a second projector of
    /// the same generation until this one commits).
    pub async fn begin(store: &Store, target: Target) -> Result<ProjectionTx, StoreError> {
        let pg = store.db.is_postgres();
        let mut tx = store.db.begin().await?;
        let (gen_, checkpoint) = on_tx!(&mut tx, conn => {
            if pg {
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *conn)
                    .await?;
            }
            let gen_: i64 = match target {
                Target::Generation(g) => to_i64(g),
                Target::Active => {
                    let sql = if pg {
                        "SELECT gen FROM active_generation WHERE id = 1 FOR SHARE"
                    } else {
                        "SELECT gen FROM active_generation WHERE id = 1"
                    };
                    sqlx::query_scalar(sql).fetch_one(&mut *conn).await?
                }
            };
            sqlx::query(
                "INSERT INTO projector_checkpoint (gen, last_seq) VALUES ($1, 0) \
                 ON CONFLICT (gen) DO NOTHING",
            )
            .bind(gen_)
            .execute(&mut *conn)
            .await?;
            let sql = if pg {
                "SELECT last_seq FROM projector_checkpoint WHERE gen = $1 FOR UPDATE"
            } else {
                "SELECT last_seq FROM projector_checkpoint WHERE gen = $1"
            };
            let last: i64 = sqlx::query_scalar(sql).bind(gen_).fetch_one(&mut *conn).await?;
            (gen_, last)
        });
        Ok(ProjectionTx {
            tx,
            gen_,
            checkpoint: to_u64(checkpoint),
        })
    }

    /// The generation being written.
    pub fn generation(&self) -> u64 {
        to_u64(self.gen_)
    }

    /// The checkpoint as of the start of this transaction: events up to it are already applied.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Loads a crate's aggregate state.
    pub async fn load_crate(&mut self, canon: &str) -> Result<Option<CrateState>, StoreError> {
        let gen_ = self.gen_;
        let state: Option<String> = on_tx!(&mut self.tx, conn => {
            sqlx::query_scalar("SELECT state FROM crates WHERE gen = $1 AND canon = $2")
                .bind(gen_)
                .bind(canon)
                .fetch_optional(conn)
                .await?
        });
        state
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("crate state of {canon}: {e}")))
            })
            .transpose()
    }

    /// Records an upload as pending.
    pub async fn insert_upload(
        &mut self,
        canon: &str,
        seq: u64,
        upload: &VersionUploaded,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO versions (gen, canon, upload_seq, name, vers, cksum, size, blob, \
                 uploader, status, uploaded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10) \
                 ON CONFLICT (gen, canon, upload_seq) DO NOTHING",
            )
            .bind(gen_)
            .bind(canon)
            .bind(to_i64(seq))
            .bind(&upload.name)
            .bind(&upload.vers)
            .bind(&upload.cksum)
            .bind(to_i64(upload.size))
            .bind(&upload.blob)
            .bind(&upload.uploader)
            .bind(at.unix_millis())
            .execute(conn)
            .await?;
        });
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
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "UPDATE versions SET status = 'accepted', entry = $5, metadata = $6 \
                 WHERE gen = $1 AND canon = $2 AND vers = $3 AND cksum = $4 AND status = 'pending'",
            )
            .bind(gen_)
            .bind(canon)
            .bind(vers)
            .bind(cksum)
            .bind(entry.to_line())
            .bind(json(metadata))
            .execute(conn)
            .await?;
        });
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
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "UPDATE versions SET status = 'rejected', reasons = $5 \
                 WHERE gen = $1 AND canon = $2 AND vers = $3 AND cksum = $4 AND status = 'pending'",
            )
            .bind(gen_)
            .bind(canon)
            .bind(vers)
            .bind(cksum)
            .bind(json(&reasons))
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Sets the yanked flag of an accepted version.
    pub async fn set_yanked(
        &mut self,
        canon: &str,
        vers: &str,
        yanked: bool,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "UPDATE versions SET yanked = $4 \
                 WHERE gen = $1 AND canon = $2 AND vers = $3 AND status = 'accepted'",
            )
            .bind(gen_)
            .bind(canon)
            .bind(vers)
            .bind(yanked)
            .execute(conn)
            .await?;
        });
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
        updated_at: Timestamp,
        index_changed: Option<(u64, Timestamp)>,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        let rows: Vec<(String, bool, Option<String>)> = on_tx!(&mut self.tx, conn => {
            sqlx::query_as(
                "SELECT entry, yanked, metadata FROM versions \
                 WHERE gen = $1 AND canon = $2 AND status = 'accepted' ORDER BY upload_seq",
            )
            .bind(gen_)
            .bind(canon)
            .fetch_all(&mut *conn)
            .await?
        });
        let mut entries = Vec::with_capacity(rows.len());
        // The version shown in search: the highest unyanked one, else the highest.
        let mut best: Option<(bool, semver::Version, ExtractedMetadata)> = None;
        for (line, yanked, metadata) in rows {
            let mut entry: IndexEntry = serde_json::from_str(&line)
                .map_err(|e| StoreError::Corrupt(format!("index entry of {canon}: {e}")))?;
            entry.yanked = yanked;
            let metadata: ExtractedMetadata = match metadata {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("metadata of {canon}: {e}")))?,
                None => ExtractedMetadata::default(),
            };
            if let Ok(version) = semver::Version::parse(&entry.vers) {
                let better = best
                    .as_ref()
                    .is_none_or(|(unyanked, v, _)| (!yanked, &version) > (*unyanked, v));
                if better {
                    best = Some((!yanked, version, metadata));
                }
            }
            entries.push(entry);
        }

        match index_changed {
            None => {}
            Some(_) if entries.is_empty() => {
                on_tx!(&mut self.tx, conn => {
                    sqlx::query("DELETE FROM index_files WHERE gen = $1 AND canon = $2")
                        .bind(gen_)
                        .bind(canon)
                        .execute(conn)
                        .await?;
                });
            }
            Some((changed_seq, changed_at)) => {
                let file = IndexFile::render(&entries);
                let name = entries[0].name.clone();
                on_tx!(&mut self.tx, conn => {
                    sqlx::query(
                        "INSERT INTO index_files (gen, canon, name, body, etag, last_modified, \
                         last_seq) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (gen, canon) DO UPDATE SET name = EXCLUDED.name, \
                         body = EXCLUDED.body, etag = EXCLUDED.etag, \
                         last_modified = EXCLUDED.last_modified, last_seq = EXCLUDED.last_seq",
                    )
                    .bind(gen_)
                    .bind(canon)
                    .bind(&name)
                    .bind(&file.body)
                    .bind(&file.etag)
                    .bind(changed_at.unix_millis())
                    .bind(to_i64(changed_seq))
                    .execute(conn)
                    .await?;
                });
            }
        }

        let (max_version, description, keywords) = match best {
            Some((_, version, metadata)) => (
                Some(version.to_string()),
                metadata.description,
                metadata.keywords.join(" "),
            ),
            None => (None, None, String::new()),
        };
        let visible_name = state
            .name
            .clone()
            .or_else(|| entries.first().map(|e| e.name.clone()));
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO crates (gen, canon, name, state, last_seq, description, keywords, \
                 max_version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (gen, canon) DO UPDATE SET name = EXCLUDED.name, \
                 state = EXCLUDED.state, last_seq = EXCLUDED.last_seq, \
                 description = EXCLUDED.description, keywords = EXCLUDED.keywords, \
                 max_version = EXCLUDED.max_version, updated_at = EXCLUDED.updated_at",
            )
            .bind(gen_)
            .bind(canon)
            .bind(&visible_name)
            .bind(json(state))
            .bind(to_i64(last_seq))
            .bind(&description)
            .bind(&keywords)
            .bind(&max_version)
            .bind(updated_at.unix_millis())
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Records an issued token (and its user, if new).
    pub async fn issue_token(
        &mut self,
        token: &TokenIssued,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        let login = token.user.to_ascii_lowercase();
        let kind = serde_json::to_value(token.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO users (gen, login, display, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (gen, login) DO NOTHING",
            )
            .bind(gen_)
            .bind(&login)
            .bind(&token.user)
            .bind(at.unix_millis())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO tokens (gen, token_id, login, secret_sha256, kind, label, scopes, \
                 crates, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (gen, token_id) DO NOTHING",
            )
            .bind(gen_)
            .bind(token.token_id.to_string())
            .bind(&login)
            .bind(&token.secret_sha256)
            .bind(&kind)
            .bind(&token.label)
            .bind(json(&token.scopes))
            .bind(json(&token.crates))
            .bind(token.expires_at.map(Timestamp::unix_millis))
            .bind(at.unix_millis())
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    /// Marks a token revoked.
    pub async fn revoke_token(&mut self, token_id: uuid::Uuid) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query("UPDATE tokens SET revoked = true WHERE gen = $1 AND token_id = $2")
                .bind(gen_)
                .bind(token_id.to_string())
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Moves the checkpoint to `last_seq` and commits everything.
    pub async fn commit(mut self, last_seq: u64) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query("UPDATE projector_checkpoint SET last_seq = $2 WHERE gen = $1")
                .bind(gen_)
                .bind(to_i64(last_seq))
                .execute(conn)
                .await?;
        });
        self.tx.commit().await
    }
}
