//! The bulk statements of a projection batch: one per table, whatever the number of rows.
//!
//! PostgreSQL binds one array per column and reads the rows back with `UNNEST` (one bind per
//! column, so no bind-parameter limit, and one prepared statement whatever the row count).
//! SQLite has no arrays: it binds one JSON array of row objects and reads it with `json_each`
//! (except for updates of existing rows, one prepared statement per row there: statements cost
//! microseconds in process, and `UPDATE … FROM json_each` may scan the table for every row).
//! Both produce the same stored values as the one-row statements did.

use serde::Serialize;
use sqlx::postgres::PgBindIterExt as _;

use crate::StoreError;
use crate::db::Tx;

/// A `versions` row of an upload folded in this batch.
#[derive(Debug, Serialize)]
pub(super) struct VersionRow {
    pub(super) canon: String,
    pub(super) upload_seq: i64,
    pub(super) name: String,
    pub(super) vers: String,
    pub(super) vers_base: String,
    pub(super) cksum: String,
    pub(super) size: i64,
    pub(super) blob: String,
    pub(super) uploader: String,
    pub(super) status: &'static str,
    pub(super) yanked: bool,
    pub(super) yanked_line: Option<String>,
    pub(super) entry: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) reasons: Option<String>,
    pub(super) uploaded_at: i64,
    pub(super) metadata_blob: Option<String>,
    pub(super) readme_blob: Option<String>,
}

/// The final values of a `versions` row of an earlier batch that a batch changed. `entry`,
/// `metadata`, `readme_blob` and `reasons` are given only with a verdict of this batch (the
/// row was pending, so they were empty); otherwise the stored ones stay.
#[derive(Debug, Serialize)]
pub(super) struct VersionUpdate {
    pub(super) canon: String,
    pub(super) upload_seq: i64,
    pub(super) status: &'static str,
    pub(super) yanked: bool,
    pub(super) yanked_line: Option<String>,
    pub(super) entry: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) readme_blob: Option<String>,
    pub(super) reasons: Option<String>,
}

/// New ETag and Last-Modified of an existing `index_files` row (a yank or unyank).
#[derive(Debug, Serialize)]
pub(super) struct IndexFileTouch {
    pub(super) canon: String,
    pub(super) etag: String,
    pub(super) last_modified: i64,
    pub(super) last_seq: i64,
}

/// An `index_files` row (the file's lines are the accepted `versions` rows).
#[derive(Debug, Serialize)]
pub(super) struct IndexFileRow {
    pub(super) canon: String,
    pub(super) name: String,
    pub(super) etag: String,
    pub(super) last_modified: i64,
    pub(super) last_seq: i64,
}

/// A `crates` row.
#[derive(Debug, Serialize)]
pub(super) struct CrateRow {
    pub(super) canon: String,
    pub(super) name: Option<String>,
    pub(super) state: String,
    pub(super) last_seq: i64,
    pub(super) description: Option<String>,
    pub(super) keywords: String,
    pub(super) max_version: Option<String>,
    pub(super) updated_at: i64,
}

/// The upsert clause of `index_files`, for `concat!` (a crate's spelling never changes once a
/// version is accepted).
macro_rules! index_files_on_conflict {
    () => {
        " ON CONFLICT (gen, canon) DO UPDATE SET etag = EXCLUDED.etag, \
         last_modified = EXCLUDED.last_modified, last_seq = EXCLUDED.last_seq"
    };
}

/// The upsert clause of `crates`, for `concat!`.
macro_rules! crates_on_conflict {
    () => {
        " ON CONFLICT (gen, canon) DO UPDATE SET name = EXCLUDED.name, state = EXCLUDED.state, \
         last_seq = EXCLUDED.last_seq, description = EXCLUDED.description, \
         keywords = EXCLUDED.keywords, max_version = EXCLUDED.max_version, \
         updated_at = EXCLUDED.updated_at"
    };
}

/// SQLite's parameter: the rows as one JSON array.
fn json_rows<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("projection rows always serialize")
}

/// A crate's row as a batch loads it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct HeadRow {
    pub(super) canon: String,
    /// The aggregate's head (JSON).
    pub(super) state: String,
    pub(super) max_version: Option<String>,
    pub(super) description: Option<String>,
    pub(super) keywords: String,
    /// Whether the version shown in search is yanked (`None` if it has no accepted row).
    pub(super) best_yanked: Option<bool>,
}

/// The columns of [`HeadRow`], for `concat!`.
macro_rules! head_columns {
    () => {
        "SELECT c.canon, c.state, c.max_version, c.description, c.keywords, \
         (SELECT v.yanked FROM versions v WHERE v.gen = c.gen AND v.canon = c.canon \
         AND v.vers = c.max_version AND v.status = 'accepted') AS best_yanked FROM crates c "
    };
}

/// The rows of the crates among `canons` that have one.
pub(super) async fn crate_heads(
    tx: &mut Tx,
    gen_: i64,
    canons: &[&str],
) -> Result<Vec<HeadRow>, StoreError> {
    Ok(match tx {
        Tx::Pg(tx) => {
            sqlx::query_as(concat!(
                head_columns!(),
                "WHERE c.gen = $1 AND c.canon = ANY($2)"
            ))
            .bind(gen_)
            .bind(canons)
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(concat!(
                head_columns!(),
                "WHERE c.gen = $1 AND c.canon IN (SELECT value FROM json_each($2))"
            ))
            .bind(gen_)
            .bind(json_rows(canons))
            .fetch_all(&mut **tx)
            .await?
        }
    })
}

/// An upload as the aggregate needs it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct LoadedVersion {
    pub(super) canon: String,
    pub(super) upload_seq: i64,
    pub(super) vers: String,
    pub(super) cksum: String,
    pub(super) status: String,
    pub(super) yanked: bool,
    pub(super) uploader: String,
}

/// The uploads of the `(canon, version without build metadata)` pairs, each crate's in upload
/// order. They are found through `versions_base_idx` and sorted here: an `ORDER BY` would lead
/// SQLite to walk the primary key, over every upload of the crate.
pub(super) async fn versions_of(
    tx: &mut Tx,
    gen_: i64,
    wanted: &[(&str, &str)],
) -> Result<Vec<LoadedVersion>, StoreError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<LoadedVersion> = match tx {
        Tx::Pg(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq, vers, cksum, status, yanked, uploader FROM versions \
                 WHERE gen = $1 AND (canon, vers_base) IN \
                 (SELECT * FROM UNNEST($2::text[], $3::text[]))",
            )
            .bind(gen_)
            .bind(wanted.iter().map(|(canon, _)| *canon).bind_iter())
            .bind(wanted.iter().map(|(_, base)| *base).bind_iter())
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq, vers, cksum, status, yanked, uploader FROM versions \
                 WHERE gen = $1 AND (canon, vers_base) IN \
                 (SELECT value->>0, value->>1 FROM json_each($2))",
            )
            .bind(gen_)
            .bind(json_rows(wanted))
            .fetch_all(&mut **tx)
            .await?
        }
    };
    rows.sort_by(|a, b| (&a.canon, a.upload_seq).cmp(&(&b.canon, b.upload_seq)));
    Ok(rows)
}

/// `(canon, upload_seq, vers, yanked)` of the accepted versions of `canons`, in no order.
pub(super) async fn accepted_versions_of(
    tx: &mut Tx,
    gen_: i64,
    canons: &[&str],
) -> Result<Vec<(String, i64, String, bool)>, StoreError> {
    if canons.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match tx {
        Tx::Pg(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq, vers, yanked FROM versions \
                 WHERE gen = $1 AND canon = ANY($2) AND status = 'accepted'",
            )
            .bind(gen_)
            .bind(canons)
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq, vers, yanked FROM versions \
                 WHERE gen = $1 AND canon IN (SELECT value FROM json_each($2)) \
                 AND status = 'accepted'",
            )
            .bind(gen_)
            .bind(json_rows(canons))
            .fetch_all(&mut **tx)
            .await?
        }
    })
}

/// `(canon, upload_seq)` of the accepted versions `(canon, vers)` that exist.
pub(super) async fn accepted_upload_seqs(
    tx: &mut Tx,
    gen_: i64,
    wanted: &[(&str, &str)],
) -> Result<Vec<(String, i64)>, StoreError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match tx {
        Tx::Pg(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq FROM versions WHERE gen = $1 \
                 AND (canon, vers) IN (SELECT * FROM UNNEST($2::text[], $3::text[])) \
                 AND status = 'accepted'",
            )
            .bind(gen_)
            .bind(wanted.iter().map(|(canon, _)| *canon).bind_iter())
            .bind(wanted.iter().map(|(_, vers)| *vers).bind_iter())
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq FROM versions WHERE gen = $1 \
                 AND (canon, vers) IN (SELECT value->>0, value->>1 FROM json_each($2)) \
                 AND status = 'accepted'",
            )
            .bind(gen_)
            .bind(json_rows(wanted))
            .fetch_all(&mut **tx)
            .await?
        }
    })
}

/// `(canon, upload_seq, entry)` of the versions `(canon, upload_seq)`.
pub(super) async fn version_entries(
    tx: &mut Tx,
    gen_: i64,
    keys: &[(&str, i64)],
) -> Result<Vec<(String, i64, Option<String>)>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match tx {
        Tx::Pg(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq, entry FROM versions WHERE gen = $1 \
                 AND (canon, upload_seq) IN (SELECT * FROM UNNEST($2::text[], $3::bigint[]))",
            )
            .bind(gen_)
            .bind(keys.iter().map(|(canon, _)| *canon).bind_iter())
            .bind(keys.iter().map(|(_, seq)| *seq).bind_iter())
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT canon, upload_seq, entry FROM versions WHERE gen = $1 \
                 AND (canon, upload_seq) IN (SELECT value->>0, value->>1 FROM json_each($2))",
            )
            .bind(gen_)
            .bind(json_rows(keys))
            .fetch_all(&mut **tx)
            .await?
        }
    })
}

/// Writes the final values of changed `versions` rows of earlier batches (each row at most
/// once).
pub(super) async fn update_versions(
    tx: &mut Tx,
    gen_: i64,
    rows: &[VersionUpdate],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(tx) => {
            sqlx::query(
                "UPDATE versions AS v SET status = u.status, yanked = u.yanked, \
                 yanked_line = u.yanked_line, entry = coalesce(u.entry, v.entry), \
                 metadata = coalesce(u.metadata, v.metadata), \
                 readme_blob = coalesce(u.readme_blob, v.readme_blob), \
                 reasons = coalesce(u.reasons, v.reasons) \
                 FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::boolean[], $6::text[], \
                 $7::text[], $8::text[], $9::text[], $10::text[]) \
                 AS u(canon, upload_seq, status, yanked, yanked_line, entry, metadata, \
                 readme_blob, reasons) \
                 WHERE v.gen = $1 AND v.canon = u.canon AND v.upload_seq = u.upload_seq",
            )
            .bind(gen_)
            .bind(rows.iter().map(|r| r.canon.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.upload_seq).bind_iter())
            .bind(rows.iter().map(|r| r.status).bind_iter())
            .bind(rows.iter().map(|r| r.yanked).bind_iter())
            .bind(rows.iter().map(|r| r.yanked_line.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.entry.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.metadata.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.readme_blob.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.reasons.as_deref()).bind_iter())
            .execute(&mut **tx)
            .await?;
        }
        // One prepared statement per row: in process, a statement costs microseconds, and an
        // `UPDATE … FROM json_each` may scan the table for every row.
        Tx::Sqlite(tx) => {
            for row in rows {
                sqlx::query(
                    "UPDATE versions SET status = $3, yanked = $4, yanked_line = $5, \
                     entry = coalesce($6, entry), metadata = coalesce($7, metadata), \
                     readme_blob = coalesce($8, readme_blob), reasons = coalesce($9, reasons) \
                     WHERE gen = $1 AND canon = $2 AND upload_seq = $10",
                )
                .bind(gen_)
                .bind(&row.canon)
                .bind(row.status)
                .bind(row.yanked)
                .bind(row.yanked_line.as_deref())
                .bind(row.entry.as_deref())
                .bind(row.metadata.as_deref())
                .bind(row.readme_blob.as_deref())
                .bind(row.reasons.as_deref())
                .bind(row.upload_seq)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// Moves the ETag and Last-Modified of existing `index_files` rows (each crate at most once;
/// absent files stay absent).
pub(super) async fn touch_index_files(
    tx: &mut Tx,
    gen_: i64,
    rows: &[IndexFileTouch],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(tx) => {
            sqlx::query(
                "UPDATE index_files AS f SET etag = u.etag, last_modified = u.last_modified, \
                 last_seq = u.last_seq \
                 FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
                 AS u(canon, etag, last_modified, last_seq) \
                 WHERE f.gen = $1 AND f.canon = u.canon",
            )
            .bind(gen_)
            .bind(rows.iter().map(|r| r.canon.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.etag.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.last_modified).bind_iter())
            .bind(rows.iter().map(|r| r.last_seq).bind_iter())
            .execute(&mut **tx)
            .await?;
        }
        // One prepared statement per row, as in `update_versions`.
        Tx::Sqlite(tx) => {
            for row in rows {
                sqlx::query(
                    "UPDATE index_files SET etag = $3, last_modified = $4, last_seq = $5 \
                     WHERE gen = $1 AND canon = $2",
                )
                .bind(gen_)
                .bind(&row.canon)
                .bind(&row.etag)
                .bind(row.last_modified)
                .bind(row.last_seq)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// `(canon, metadata)` of the versions `(canon, upload_seq)`.
pub(super) async fn version_metadata(
    tx: &mut Tx,
    gen_: i64,
    keys: &[(&str, i64)],
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match tx {
        Tx::Pg(tx) => {
            sqlx::query_as(
                "SELECT canon, metadata FROM versions WHERE gen = $1 \
                 AND (canon, upload_seq) IN (SELECT * FROM UNNEST($2::text[], $3::bigint[]))",
            )
            .bind(gen_)
            .bind(keys.iter().map(|(canon, _)| *canon).bind_iter())
            .bind(keys.iter().map(|(_, seq)| *seq).bind_iter())
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT canon, metadata FROM versions WHERE gen = $1 \
                 AND (canon, upload_seq) IN (SELECT value->>0, value->>1 FROM json_each($2))",
            )
            .bind(gen_)
            .bind(json_rows(keys))
            .fetch_all(&mut **tx)
            .await?
        }
    })
}

/// Inserts new `versions` rows (an existing upload keeps its row).
pub(super) async fn insert_versions(
    tx: &mut Tx,
    gen_: i64,
    rows: &[VersionRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(tx) => {
            sqlx::query(
                "INSERT INTO versions (gen, canon, upload_seq, name, vers, cksum, size, blob, \
                 uploader, status, yanked, entry, metadata, reasons, uploaded_at, \
                 metadata_blob, readme_blob, vers_base, yanked_line) \
                 SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], \
                 $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::boolean[], \
                 $12::text[], $13::text[], $14::text[], $15::bigint[], $16::text[], $17::text[], \
                 $18::text[], $19::text[]) \
                 ON CONFLICT (gen, canon, upload_seq) DO NOTHING",
            )
            .bind(gen_)
            .bind(rows.iter().map(|r| r.canon.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.upload_seq).bind_iter())
            .bind(rows.iter().map(|r| r.name.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.vers.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.cksum.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.size).bind_iter())
            .bind(rows.iter().map(|r| r.blob.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.uploader.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.status).bind_iter())
            .bind(rows.iter().map(|r| r.yanked).bind_iter())
            .bind(rows.iter().map(|r| r.entry.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.metadata.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.reasons.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.uploaded_at).bind_iter())
            .bind(rows.iter().map(|r| r.metadata_blob.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.readme_blob.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.vers_base.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.yanked_line.as_deref()).bind_iter())
            .execute(&mut **tx)
            .await?;
        }
        Tx::Sqlite(tx) => {
            sqlx::query(
                "INSERT INTO versions (gen, canon, upload_seq, name, vers, cksum, size, blob, \
                 uploader, status, yanked, entry, metadata, reasons, uploaded_at, \
                 metadata_blob, readme_blob, vers_base, yanked_line) \
                 SELECT $1, value->>'canon', value->>'upload_seq', value->>'name', \
                 value->>'vers', value->>'cksum', value->>'size', value->>'blob', \
                 value->>'uploader', value->>'status', value->>'yanked', value->>'entry', \
                 value->>'metadata', value->>'reasons', value->>'uploaded_at', \
                 value->>'metadata_blob', value->>'readme_blob', \
                 value->>'vers_base', value->>'yanked_line' \
                 FROM json_each($2) WHERE true \
                 ON CONFLICT (gen, canon, upload_seq) DO NOTHING",
            )
            .bind(gen_)
            .bind(json_rows(rows))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Inserts or replaces `index_files` rows (each crate at most once).
pub(super) async fn upsert_index_files(
    tx: &mut Tx,
    gen_: i64,
    rows: &[IndexFileRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(tx) => {
            sqlx::query(concat!(
                "INSERT INTO index_files (gen, canon, name, etag, last_modified, last_seq) \
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], \
                 $6::bigint[])",
                index_files_on_conflict!()
            ))
            .bind(gen_)
            .bind(rows.iter().map(|r| r.canon.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.name.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.etag.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.last_modified).bind_iter())
            .bind(rows.iter().map(|r| r.last_seq).bind_iter())
            .execute(&mut **tx)
            .await?;
        }
        Tx::Sqlite(tx) => {
            sqlx::query(concat!(
                "INSERT INTO index_files (gen, canon, name, etag, last_modified, last_seq) \
                 SELECT $1, value->>'canon', value->>'name', \
                 value->>'etag', value->>'last_modified', value->>'last_seq' \
                 FROM json_each($2) WHERE true",
                index_files_on_conflict!()
            ))
            .bind(gen_)
            .bind(json_rows(rows))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Inserts or replaces `crates` rows (each crate at most once).
pub(super) async fn upsert_crates(
    tx: &mut Tx,
    gen_: i64,
    rows: &[CrateRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Pg(tx) => {
            sqlx::query(concat!(
                "INSERT INTO crates (gen, canon, name, state, last_seq, description, keywords, \
                 max_version, updated_at) \
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], \
                 $6::text[], $7::text[], $8::text[], $9::bigint[])",
                crates_on_conflict!()
            ))
            .bind(gen_)
            .bind(rows.iter().map(|r| r.canon.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.name.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.state.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.last_seq).bind_iter())
            .bind(rows.iter().map(|r| r.description.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.keywords.as_str()).bind_iter())
            .bind(rows.iter().map(|r| r.max_version.as_deref()).bind_iter())
            .bind(rows.iter().map(|r| r.updated_at).bind_iter())
            .execute(&mut **tx)
            .await?;
        }
        Tx::Sqlite(tx) => {
            sqlx::query(concat!(
                "INSERT INTO crates (gen, canon, name, state, last_seq, description, keywords, \
                 max_version, updated_at) \
                 SELECT $1, value->>'canon', value->>'name', value->>'state', \
                 value->>'last_seq', value->>'description', value->>'keywords', \
                 value->>'max_version', value->>'updated_at' \
                 FROM json_each($2) WHERE true",
                crates_on_conflict!()
            ))
            .bind(gen_)
            .bind(json_rows(rows))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
