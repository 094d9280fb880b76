//! Reads of the PostgreSQL read models, for the api.

use std::time::Duration;

use depot_events::{CrateState, RejectionReason, TokenScope};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Row, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{PG_MIGRATOR, StoreError};

/// The read models on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// A pre-rendered index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFileRow {
    /// The crate's published spelling.
    pub name: String,
    /// The file's bytes.
    pub body: Vec<u8>,
    /// Its strong ETag (quoted).
    pub etag: String,
    /// When it last changed (the time of the event that changed it).
    pub last_modified: OffsetDateTime,
}

/// Where an upload stands in the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Waiting for the extractor (or the projector).
    Pending,
    /// In the index.
    Accepted,
    /// Refused, with reasons.
    Rejected(Vec<RejectionReason>),
}

/// A token as the api needs it to authenticate a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The token id.
    pub token_id: Uuid,
    /// The user it acts for (lowercase login).
    pub login: String,
    /// Allowed operations (empty = all).
    pub scopes: Vec<TokenScope>,
    /// Allowed crate patterns (empty = all).
    pub crates: Vec<String>,
    /// Expiry, if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// One hit of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The crate name.
    pub name: String,
    /// The highest version.
    pub max_version: String,
    /// The description of that version.
    pub description: Option<String>,
}

/// One accepted version, for dependency checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    /// The version.
    pub vers: String,
    /// Whether it is yanked.
    pub yanked: bool,
}

/// A crate's accepted versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateVersions {
    /// The published spelling.
    pub name: String,
    /// Accepted versions.
    pub versions: Vec<VersionSummary>,
}

impl PgStore {
    /// Connects, failing within a few seconds with a clear error if PostgreSQL is unreachable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(PgStore { pool })
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> PgStore {
        PgStore { pool }
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        PG_MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The checkpoint of a projector (0 if it never ran).
    pub async fn checkpoint(&self, projector: &str) -> Result<u64, StoreError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM projector_checkpoint WHERE projector = $1")
                .bind(projector)
                .fetch_optional(&self.pool)
                .await?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// A crate's aggregate state and the log sequence it reflects.
    pub async fn crate_state(&self, canon: &str) -> Result<Option<(CrateState, u64)>, StoreError> {
        let row = sqlx::query("SELECT state, last_seq FROM crates WHERE canon = $1")
            .bind(canon)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let Json(state): Json<CrateState> = row.try_get("state")?;
            let seq: i64 = row.try_get("last_seq")?;
            Ok((state, seq as u64))
        })
        .transpose()
    }

    /// The index file of a crate, by canonical name.
    pub async fn index_file(&self, canon: &str) -> Result<Option<IndexFileRow>, StoreError> {
        let row =
            sqlx::query("SELECT name, body, etag, last_modified FROM index_files WHERE canon = $1")
                .bind(canon)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(IndexFileRow {
                name: row.try_get("name")?,
                body: row.try_get("body")?,
                etag: row.try_get("etag")?,
                last_modified: row.try_get("last_modified")?,
            })
        })
        .transpose()
    }

    /// Every index file (canonical name, row), for digests and verification.
    pub async fn all_index_files(&self) -> Result<Vec<(String, IndexFileRow)>, StoreError> {
        let rows = sqlx::query(
            "SELECT canon, name, body, etag, last_modified FROM index_files ORDER BY canon",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    row.try_get("canon")?,
                    IndexFileRow {
                        name: row.try_get("name")?,
                        body: row.try_get("body")?,
                        etag: row.try_get("etag")?,
                        last_modified: row.try_get("last_modified")?,
                    },
                ))
            })
            .collect()
    }

    /// Every projected row, one JSON text per row, in a stable order: for comparing two sets of
    /// read models (replay checks, tests). Excludes the checkpoint and download counts.
    pub async fn dump_read_models(&self) -> Result<Vec<String>, StoreError> {
        const TABLES: [(&str, &str); 5] = [
            ("crates", "canon"),
            ("versions", "canon, upload_seq"),
            ("index_files", "canon"),
            ("users", "login"),
            ("tokens", "token_id"),
        ];
        let mut rows = Vec::new();
        for (table, order) in TABLES {
            let sql = format!(
                "SELECT '{table} ' || row_to_json(t)::text FROM {table} t ORDER BY {order}"
            );
            let texts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?;
            rows.extend(texts);
        }
        Ok(rows)
    }

    /// The outcome of the latest upload of `vers` with checksum `cksum`.
    pub async fn upload_outcome(
        &self,
        canon: &str,
        vers: &str,
        cksum: &str,
    ) -> Result<Option<UploadOutcome>, StoreError> {
        let row = sqlx::query(
            "SELECT status, reasons FROM versions WHERE canon = $1 AND vers = $2 AND cksum = $3 \
             ORDER BY upload_seq DESC LIMIT 1",
        )
        .bind(canon)
        .bind(vers)
        .bind(cksum)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get("status")?;
        Ok(Some(match status.as_str() {
            "accepted" => UploadOutcome::Accepted,
            "rejected" => {
                let reasons: Option<Json<Vec<RejectionReason>>> = row.try_get("reasons")?;
                UploadOutcome::Rejected(reasons.map(|j| j.0).unwrap_or_default())
            }
            _ => UploadOutcome::Pending,
        }))
    }

    /// A crate's accepted versions, by canonical name.
    pub async fn crate_versions(&self, canon: &str) -> Result<Option<CrateVersions>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, vers, yanked FROM versions \
             WHERE canon = $1 AND status = 'accepted' ORDER BY upload_seq",
        )
        .bind(canon)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let name: String = first.try_get("name")?;
        let versions = rows
            .iter()
            .map(|row| {
                Ok(VersionSummary {
                    vers: row.try_get("vers")?,
                    yanked: row.try_get("yanked")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(CrateVersions { name, versions }))
    }

    /// The token with this secret hash.
    pub async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(
            "SELECT token_id, login, scopes, crates, expires_at, revoked FROM tokens \
             WHERE secret_sha256 = $1",
        )
        .bind(secret_sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let Json(scopes): Json<Vec<TokenScope>> = row.try_get("scopes")?;
            let Json(crates): Json<Vec<String>> = row.try_get("crates")?;
            Ok(TokenRow {
                token_id: row.try_get("token_id")?,
                login: row.try_get("login")?,
                scopes,
                crates,
                expires_at: row.try_get("expires_at")?,
                revoked: row.try_get("revoked")?,
            })
        })
        .transpose()
    }

    /// The display login of a known user (matched case-insensitively).
    pub async fn user(&self, login: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT display FROM users WHERE login = $1")
                .bind(login.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Crates whose name, keywords or description contain `query` (case-insensitive), exact and
    /// prefix matches of the name first. Returns one page and the total count.
    pub async fn search(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<(Vec<SearchHit>, u64), StoreError> {
        let escaped = query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let canon = depot_index::canonical_name(query);
        let pattern = format!("%{escaped}%");
        let filter = "name IS NOT NULL AND max_version IS NOT NULL AND \
             (name ILIKE $1 OR canon LIKE $2 OR keywords ILIKE $1 OR description ILIKE $1)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM crates WHERE {filter}"
        )))
        .bind(&pattern)
        .bind(format!("%{}%", canon.replace('_', "\\_")))
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name, max_version, description FROM crates WHERE {filter} \
             ORDER BY (canon = $3) DESC, (canon LIKE $4) DESC, canon LIMIT $5"
        )))
        .bind(&pattern)
        .bind(format!("%{}%", canon.replace('_', "\\_")))
        .bind(&canon)
        .bind(format!("{}%", canon.replace('_', "\\_")))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let hits = rows
            .into_iter()
            .map(|row| {
                Ok(SearchHit {
                    name: row.try_get("name")?,
                    max_version: row.try_get("max_version")?,
                    description: row.try_get("description")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((hits, total as u64))
    }

    /// Adds download counts (batched by the api).
    pub async fn add_downloads(&self, counts: &[(String, String, u64)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (canon, vers, count) in counts {
            sqlx::query(
                "INSERT INTO downloads (canon, vers, count) VALUES ($1, $2, $3) \
                 ON CONFLICT (canon, vers) DO UPDATE SET count = downloads.count + EXCLUDED.count",
            )
            .bind(canon)
            .bind(vers)
            .bind(*count as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The blob key and checksum of an accepted version, for downloads.
    pub async fn download_target(
        &self,
        canon: &str,
        vers: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT blob, cksum FROM versions WHERE canon = $1 AND vers = $2 AND status = 'accepted'",
        )
        .bind(canon)
        .bind(vers)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get("blob")?, row.try_get("cksum")?)))
            .transpose()
    }
}
