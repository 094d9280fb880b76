//! The projector's write side: one transaction per batch of events, with the checkpoint of the
//! generation being written.
//!
//! A batch costs a few statements, not a few per event: the crates it touches are loaded with
//! one query ([`ProjectionTx::load_crates`]); the `versions` rows of its uploads are kept in
//! memory, where its verdicts and yanks update them, and are written with one statement when
//! the crates are saved ([`ProjectionTx::save_crates`]), which also reads back every crate's
//! accepted versions (and the metadata of the one shown in search) with two queries and
//! upserts all index files and crate rows with one statement each (see [`bulk`]). Only verdicts and yanks of versions uploaded in earlier
//! batches, and tokens, cost a statement each.

mod bulk;

use std::collections::HashMap;

use depot_events::{
    CrateState, ExtractedMetadata, RejectionReason, Timestamp, TokenIssued, VersionUploaded,
};
use depot_index::{IndexEntry, IndexFile};

use crate::db::{Tx, on_tx, to_i64, to_u64};
use crate::{Store, StoreError};
use bulk::{CrateRow, IndexFileRow, VersionRow};

/// The `status` values of `versions`.
const PENDING: &str = "pending";
const ACCEPTED: &str = "accepted";
const REJECTED: &str = "rejected";

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
    /// Rows of the uploads folded in this batch, by crate in upload order; not written yet.
    new_versions: HashMap<String, Vec<VersionRow>>,
    /// Verdicts and yanks of uploads of earlier batches, in event order; not written yet.
    changes: Vec<VersionChange>,
}

/// What [`ProjectionTx::save_crates`] stores for one crate.
#[derive(Debug, Clone, Copy)]
pub struct CrateSave<'a> {
    /// The canonical name.
    pub canon: &'a str,
    /// The aggregate state after the batch.
    pub state: &'a CrateState,
    /// The log sequence of the crate's last event.
    pub last_seq: u64,
    /// The time of the crate's last event.
    pub updated_at: Timestamp,
    /// Sequence and time of the latest event that changed the crate's index lines, if one did.
    pub index_changed: Option<(u64, Timestamp)>,
}

/// The outcome of a verification, as stored in its version row.
#[derive(Debug)]
enum Verdict {
    Accepted {
        entry: String,
        metadata: String,
        readme_blob: Option<String>,
    },
    Rejected {
        reasons: String,
    },
}

/// A change to a version row written by an earlier batch.
#[derive(Debug)]
enum VersionChange {
    /// The verdict on the pending upload `vers`/`cksum`.
    Decide {
        canon: String,
        vers: String,
        cksum: String,
        verdict: Verdict,
    },
    /// The yanked flag of the accepted `vers`.
    Yank {
        canon: String,
        vers: String,
        yanked: bool,
    },
}

/// A crate's accepted versions, decoded.
struct AcceptedVersions {
    /// The index lines in upload order, with their yanked flags.
    entries: Vec<IndexEntry>,
    /// The version shown in search, with its upload sequence: the highest unyanked one (the
    /// first of equals), else the highest.
    best: Option<(semver::Version, i64)>,
}

impl AcceptedVersions {
    /// Decodes `(upload_seq, entry JSON, yanked)` rows in upload order.
    fn read(canon: &str, rows: Vec<(i64, String, bool)>) -> Result<AcceptedVersions, StoreError> {
        let mut entries = Vec::with_capacity(rows.len());
        let mut best: Option<(bool, semver::Version, i64)> = None;
        for (upload_seq, line, yanked) in rows {
            let mut entry: IndexEntry = serde_json::from_str(&line)
                .map_err(|e| StoreError::Corrupt(format!("index entry of {canon}: {e}")))?;
            entry.yanked = yanked;
            if let Ok(version) = semver::Version::parse(&entry.vers) {
                let better = best
                    .as_ref()
                    .is_none_or(|(unyanked, v, _)| (!yanked, &version) > (*unyanked, v));
                if better {
                    best = Some((!yanked, version, upload_seq));
                }
            }
            entries.push(entry);
        }
        Ok(AcceptedVersions {
            entries,
            best: best.map(|(_, version, upload_seq)| (version, upload_seq)),
        })
    }
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
            new_versions: HashMap::new(),
            changes: Vec::new(),
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

    /// Loads the aggregate state of each of `canons` that has one, with one query.
    pub async fn load_crates(
        &mut self,
        canons: &[&str],
    ) -> Result<HashMap<String, CrateState>, StoreError> {
        if canons.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = bulk::crate_states(&mut self.tx, self.gen_, canons).await?;
        rows.into_iter()
            .map(|(canon, text)| {
                let state = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("crate state of {canon}: {e}")))?;
                Ok((canon, state))
            })
            .collect()
    }

    /// Records an upload as pending. The caller records only uploads of versions that are not
    /// live (pending or accepted), as the aggregate does: [`accept`](Self::accept),
    /// [`reject`](Self::reject) and [`set_yanked`](Self::set_yanked) rely on it.
    pub fn insert_upload(
        &mut self,
        canon: &str,
        seq: u64,
        upload: &VersionUploaded,
        at: Timestamp,
    ) {
        self.new_versions
            .entry(canon.to_owned())
            .or_default()
            .push(VersionRow {
                canon: canon.to_owned(),
                upload_seq: to_i64(seq),
                name: upload.name.clone(),
                vers: upload.vers.clone(),
                cksum: upload.cksum.clone(),
                size: to_i64(upload.size),
                blob: upload.blob.clone(),
                uploader: upload.uploader.clone(),
                status: PENDING,
                yanked: false,
                entry: None,
                metadata: None,
                reasons: None,
                uploaded_at: at.unix_millis(),
                metadata_blob: upload.metadata_blob.clone(),
                readme_blob: None,
            });
    }

    /// Marks the pending upload of `vers`/`cksum` accepted, with its index line.
    pub fn accept(
        &mut self,
        canon: &str,
        vers: &str,
        cksum: &str,
        entry: &IndexEntry,
        metadata: &ExtractedMetadata,
    ) {
        let mut entry = entry.clone();
        entry.yanked = false;
        self.decide(
            canon,
            vers,
            cksum,
            Verdict::Accepted {
                entry: entry.to_line(),
                metadata: json(metadata),
                readme_blob: metadata.readme_blob.clone(),
            },
        );
    }

    /// Marks the pending upload of `vers`/`cksum` rejected.
    pub fn reject(&mut self, canon: &str, vers: &str, cksum: &str, reasons: &[RejectionReason]) {
        let reasons = json(&reasons);
        self.decide(canon, vers, cksum, Verdict::Rejected { reasons });
    }

    /// Applies a verdict to the pending upload of `vers`/`cksum`: to its row in memory if the
    /// upload was folded in this batch, else (once written) to the row of an earlier batch.
    /// Both cannot match, as a version has at most one live upload.
    fn decide(&mut self, canon: &str, vers: &str, cksum: &str, verdict: Verdict) {
        let row = self.new_versions.get_mut(canon).and_then(|rows| {
            rows.iter_mut()
                .find(|row| row.status == PENDING && row.vers == vers && row.cksum == cksum)
        });
        match row {
            Some(row) => match verdict {
                Verdict::Accepted {
                    entry,
                    metadata,
                    readme_blob,
                } => {
                    row.status = ACCEPTED;
                    row.entry = Some(entry);
                    row.metadata = Some(metadata);
                    row.readme_blob = readme_blob;
                }
                Verdict::Rejected { reasons } => {
                    row.status = REJECTED;
                    row.reasons = Some(reasons);
                }
            },
            None => self.changes.push(VersionChange::Decide {
                canon: canon.to_owned(),
                vers: vers.to_owned(),
                cksum: cksum.to_owned(),
                verdict,
            }),
        }
    }

    /// Sets the yanked flag of an accepted version: of its row in memory if it was folded in
    /// this batch, else (once written) of the row of an earlier batch.
    pub fn set_yanked(&mut self, canon: &str, vers: &str, yanked: bool) {
        let row = self.new_versions.get_mut(canon).and_then(|rows| {
            rows.iter_mut()
                .find(|row| row.status == ACCEPTED && row.vers == vers)
        });
        match row {
            Some(row) => row.yanked = yanked,
            None => self.changes.push(VersionChange::Yank {
                canon: canon.to_owned(),
                vers: vers.to_owned(),
                yanked,
            }),
        }
    }

    /// Writes the version changes recorded so far: first the changes to rows of earlier batches,
    /// in event order (so they reach exactly the rows they reached at their event: this
    /// batch's rows are not there yet), then this batch's rows.
    async fn write_versions(&mut self) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        for change in std::mem::take(&mut self.changes) {
            on_tx!(&mut self.tx, conn => {
                let query = match &change {
                    VersionChange::Decide { canon, vers, cksum, verdict } => match verdict {
                        Verdict::Accepted { entry, metadata, readme_blob } => sqlx::query(
                            "UPDATE versions SET status = 'accepted', entry = $5, metadata = $6, \
                             readme_blob = $7 \
                             WHERE gen = $1 AND canon = $2 AND vers = $3 AND cksum = $4 \
                             AND status = 'pending'",
                        )
                        .bind(gen_)
                        .bind(canon)
                        .bind(vers)
                        .bind(cksum)
                        .bind(entry)
                        .bind(metadata)
                        .bind(readme_blob),
                        Verdict::Rejected { reasons } => sqlx::query(
                            "UPDATE versions SET status = 'rejected', reasons = $5 \
                             WHERE gen = $1 AND canon = $2 AND vers = $3 AND cksum = $4 \
                             AND status = 'pending'",
                        )
                        .bind(gen_)
                        .bind(canon)
                        .bind(vers)
                        .bind(cksum)
                        .bind(reasons),
                    },
                    VersionChange::Yank { canon, vers, yanked } => sqlx::query(
                        "UPDATE versions SET yanked = $4 \
                         WHERE gen = $1 AND canon = $2 AND vers = $3 AND status = 'accepted'",
                    )
                    .bind(gen_)
                    .bind(canon)
                    .bind(vers)
                    .bind(*yanked),
                };
                query.execute(conn).await?;
            });
        }
        let rows: Vec<VersionRow> = std::mem::take(&mut self.new_versions)
            .into_values()
            .flatten()
            .collect();
        bulk::insert_versions(&mut self.tx, gen_, &rows).await
    }

    /// Stores the aggregate state of each crate (as of its event `last_seq` at `updated_at`) and
    /// refreshes its search summary, after writing the version changes recorded so far. When
    /// `index_changed` is given (sequence and time of the latest event that changed the crate's
    /// index lines), the index file is re-rendered from the accepted versions in upload order,
    /// with that time as its Last-Modified. Each crate may appear once.
    pub async fn save_crates(&mut self, saves: &[CrateSave<'_>]) -> Result<(), StoreError> {
        self.write_versions().await?;
        if saves.is_empty() {
            return Ok(());
        }
        let canons: Vec<&str> = saves.iter().map(|save| save.canon).collect();
        let mut accepted: HashMap<String, Vec<(i64, String, bool)>> = HashMap::new();
        for (canon, upload_seq, entry, yanked) in
            bulk::accepted_versions(&mut self.tx, self.gen_, &canons).await?
        {
            accepted
                .entry(canon)
                .or_default()
                .push((upload_seq, entry, yanked));
        }
        let versions = saves
            .iter()
            .map(|save| {
                let rows = accepted.remove(save.canon).unwrap_or_default();
                AcceptedVersions::read(save.canon, rows)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The metadata of the versions shown in search only: one per crate.
        let best: Vec<(&str, i64)> = saves
            .iter()
            .zip(&versions)
            .filter_map(|(save, versions)| Some((save.canon, versions.best.as_ref()?.1)))
            .collect();
        let mut metadata: HashMap<String, Option<String>> =
            bulk::version_metadata(&mut self.tx, self.gen_, &best)
                .await?
                .into_iter()
                .collect();

        let mut index_files = Vec::new();
        let mut emptied = Vec::new();
        let mut crates = Vec::with_capacity(saves.len());
        for (save, versions) in saves.iter().zip(versions) {
            match save.index_changed {
                None => {}
                Some(_) if versions.entries.is_empty() => emptied.push(save.canon),
                Some((changed_seq, changed_at)) => {
                    let file = IndexFile::render(&versions.entries);
                    index_files.push(IndexFileRow {
                        canon: save.canon.to_owned(),
                        name: versions.entries[0].name.clone(),
                        body: file.body,
                        etag: file.etag,
                        last_modified: changed_at.unix_millis(),
                        last_seq: to_i64(changed_seq),
                    });
                }
            }
            let (max_version, description, keywords) = match versions.best {
                None => (None, None, String::new()),
                Some((version, _)) => {
                    let metadata: ExtractedMetadata = match metadata.remove(save.canon).flatten() {
                        Some(text) => serde_json::from_str(&text).map_err(|e| {
                            StoreError::Corrupt(format!("metadata of {}: {e}", save.canon))
                        })?,
                        None => ExtractedMetadata::default(),
                    };
                    (
                        Some(version.to_string()),
                        metadata.description,
                        metadata.keywords.join(" "),
                    )
                }
            };
            let name = save
                .state
                .name
                .clone()
                .or_else(|| versions.entries.first().map(|e| e.name.clone()));
            crates.push(CrateRow {
                canon: save.canon.to_owned(),
                name,
                state: json(save.state),
                last_seq: to_i64(save.last_seq),
                description,
                keywords,
                max_version,
                updated_at: save.updated_at.unix_millis(),
            });
        }
        bulk::delete_index_files(&mut self.tx, self.gen_, &emptied).await?;
        bulk::upsert_index_files(&mut self.tx, self.gen_, &index_files).await?;
        bulk::upsert_crates(&mut self.tx, self.gen_, &crates).await
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

    /// Writes what is still recorded in memory, moves the checkpoint to `last_seq` and commits
    /// everything.
    pub async fn commit(mut self, last_seq: u64) -> Result<(), StoreError> {
        self.write_versions().await?;
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
