//! Reads of the read models (for the api, replay and verification) and generation management.

use std::collections::BTreeSet;
use std::path::Path;

use crate::StoreError;
use crate::db::{Db, Tx, on_read, on_tx, on_write, to_i64, to_u64};
use depot_events::{
    CrateHead, CrateState, RejectionReason, Timestamp, TokenKind, TokenScope, TrustAdded,
    VersionState, VersionStatus, version_without_build,
};

/// `WHERE gen = …` for the active generation, usable in `concat!`.
macro_rules! active_gen {
    () => {
        "(SELECT gen FROM active_generation WHERE id = 1)"
    };
}

/// The read models, on PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: Db,
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
    pub last_modified: Timestamp,
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

/// A token as the api needs it to authenticate a request, and as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The token id.
    pub token_id: String,
    /// Who it acts for: a lowercase login, `deploy:<name>` or `ci:<subject>`.
    pub login: String,
    /// Personal, deploy or CI.
    pub kind: TokenKind,
    /// Its label.
    pub label: Option<String>,
    /// Allowed operations (empty = all).
    pub scopes: Vec<TokenScope>,
    /// Allowed crate patterns (empty = all).
    pub crates: Vec<String>,
    /// Crate patterns of the `read` scope when they differ from `crates` (empty = all).
    pub read_crates: Option<Vec<String>>,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was issued.
    pub created_at: Timestamp,
    /// Who created it.
    pub created_by: Option<String>,
    /// When a request last used it (recorded in batches, so up to a few seconds late).
    pub last_used_at: Option<Timestamp>,
    /// For a personal token: whether its user is an admin.
    pub admin: bool,
    /// For a personal token: whether its user is disabled.
    pub user_disabled: bool,
}

/// A crate's trust in an OIDC issuer (trusted publishing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRow {
    /// The crate (canonical name).
    pub canon: String,
    /// The trust as it was added: id, issuer, audience and required claims.
    pub trust: TrustAdded,
    /// Who added it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The login as created.
    pub display: String,
    /// Whether the user is an admin.
    pub admin: bool,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// When the user was created.
    pub created_at: Timestamp,
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

/// A crate's download counts (see [`Store::crate_downloads`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrateDownloads {
    /// Each version's total.
    pub totals: Vec<(String, u64)>,
    /// (version, day since the Unix epoch, downloads), oldest day first.
    pub days: Vec<(String, i64, u64)>,
}

/// What the crate row says of a crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateInfo {
    /// The description of its newest version, if any.
    pub description: Option<String>,
    /// Its newest version.
    pub max_version: Option<String>,
    /// When its last event happened.
    pub updated_at: Timestamp,
}

/// A crate's accepted versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateVersions {
    /// The published spelling.
    pub name: String,
    /// Accepted versions.
    pub versions: Vec<VersionSummary>,
}

/// An accepted version's stored file, for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// The crate name.
    pub name: String,
    /// The version.
    pub vers: String,
    /// The checksum in its index line.
    pub cksum: String,
    /// Its blob key.
    pub blob: String,
}

/// An upload still waiting for its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingVersion {
    /// The crate name as published.
    pub name: String,
    /// The version.
    pub vers: String,
    /// The log sequence of its `version_uploaded` event.
    pub upload_seq: u64,
    /// When it was uploaded (the event's time).
    pub uploaded_at: Timestamp,
}

/// A generation of the read models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Its number.
    pub number: u64,
    /// `building`, `live` or `retired`.
    pub state: String,
    /// For a point-in-time generation, the last event it folds.
    pub until_seq: Option<u64>,
    /// How far it has folded the log.
    pub checkpoint: u64,
}

fn json_err(what: &str, error: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

fn version_status(status: &str) -> Result<VersionStatus, StoreError> {
    match status {
        "pending" => Ok(VersionStatus::Pending),
        "accepted" => Ok(VersionStatus::Accepted),
        "rejected" => Ok(VersionStatus::Rejected),
        other => Err(StoreError::Corrupt(format!("version status `{other}`"))),
    }
}

/// One line of an index file as read: `(canon, name, etag, last_modified, entry, yanked,
/// yanked_line)`.
type IndexLineRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    bool,
    Option<String>,
);

/// The served line of an accepted version: `entry` (its line unyanked), or while yanked
/// `yanked_line` (derived from `entry` for rows projected before it was stored).
pub(crate) fn served_line(
    entry: &str,
    yanked: bool,
    yanked_line: Option<String>,
) -> Result<String, StoreError> {
    if !yanked {
        return Ok(entry.to_owned());
    }
    if let Some(line) = yanked_line {
        return Ok(line);
    }
    yanked_line_of(entry)
}

/// The line of an accepted version while yanked, from its unyanked line.
pub(crate) fn yanked_line_of(entry: &str) -> Result<String, StoreError> {
    let mut parsed: depot_index::IndexEntry =
        serde_json::from_str(entry).map_err(|e| json_err("index entry", e))?;
    parsed.yanked = true;
    Ok(parsed.to_line())
}

/// Index files from their lines, grouped by crate (rows ordered by crate, then upload).
fn assemble(rows: Vec<IndexLineRow>) -> Result<Vec<(String, IndexFileRow)>, StoreError> {
    let mut files: Vec<(String, IndexFileRow)> = Vec::new();
    for (canon, name, etag, modified, entry, yanked, yanked_line) in rows {
        let entry = entry.ok_or_else(|| {
            StoreError::Corrupt(format!("accepted version of {canon} has no line"))
        })?;
        let line = served_line(&entry, yanked, yanked_line)?;
        if files.last().is_none_or(|(last, _)| *last != canon) {
            files.push((
                canon.clone(),
                IndexFileRow {
                    name,
                    body: Vec::new(),
                    etag,
                    last_modified: Timestamp::from_unix_millis(modified),
                },
            ));
        }
        if let Some((_, file)) = files.last_mut() {
            file.body.extend_from_slice(line.as_bytes());
            file.body.push(b'\n');
        }
    }
    Ok(files)
}

impl Store {
    /// Connects to a database URL (`postgres://…` or `sqlite://PATH`) and applies migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let store = Store {
            db: Db::connect(url, max_connections).await?,
        };
        store.db.migrate().await?;
        Ok(store)
    }

    /// Opens (creating if needed) a SQLite database file and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let store = Store {
            db: Db::open_sqlite_file(path, 8).await?,
        };
        store.db.migrate().await?;
        Ok(store)
    }

    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        if self.db.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// The generation the api serves.
    pub async fn active_generation(&self) -> Result<u64, StoreError> {
        let gen_: i64 = on_read!(&self.db, pool => {
            sqlx::query_scalar(concat!("SELECT ", active_gen!()))
                .fetch_one(pool)
                .await?
        });
        Ok(to_u64(gen_))
    }

    /// How far generation `gen_` has folded the log (0 if not at all).
    pub async fn checkpoint(&self, gen_: u64) -> Result<u64, StoreError> {
        let seq: Option<i64> = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT last_seq FROM projector_checkpoint WHERE gen = $1")
                .bind(to_i64(gen_))
                .fetch_optional(pool)
                .await?
        });
        Ok(seq.map_or(0, to_u64))
    }

    /// A crate's aggregate as commands decide on it, and the log sequence it reflects (active
    /// generation): its head plus the uploads of `versions` (each compared without build
    /// metadata, found through an index), read from one snapshot. The cost does not depend on
    /// how many versions the crate has. `None` if the crate has no events projected.
    pub async fn crate_aggregate(
        &self,
        canon: &str,
        versions: &[&str],
    ) -> Result<Option<(CrateState, u64)>, StoreError> {
        let bases: Vec<&str> = versions.iter().map(|v| version_without_build(v)).collect();
        let mut tx = self.db.begin_read().await?;
        let head: Option<(String, i64)> = on_tx!(&mut tx, conn => {
            sqlx::query_as(concat!(
                "SELECT state, last_seq FROM crates WHERE gen = ", active_gen!(), " AND canon = $1"
            ))
            .bind(canon)
            .fetch_optional(&mut *conn)
            .await?
        });
        let Some((head, seq)) = head else {
            return Ok(None);
        };
        let head: CrateHead =
            serde_json::from_str(&head).map_err(|e| json_err("crate state", e))?;
        // Found through `versions_base_idx` and put in upload order here: an `ORDER BY` would
        // lead SQLite to walk the primary key, over every upload of the crate.
        type Row = (i64, String, String, String, bool, String);
        let mut rows: Vec<Row> =
            if bases.is_empty() {
                Vec::new()
            } else {
                match &mut tx {
                    Tx::Pg(tx) => sqlx::query_as(concat!(
                        "SELECT upload_seq, vers, cksum, status, yanked, uploader FROM versions \
                         WHERE gen = ",
                        active_gen!(),
                        " AND canon = $1 AND vers_base = ANY($2)"
                    ))
                    .bind(canon)
                    .bind(&bases)
                    .fetch_all(&mut **tx)
                    .await?,
                    Tx::Sqlite(tx) => sqlx::query_as(concat!(
                        "SELECT upload_seq, vers, cksum, status, yanked, uploader FROM versions \
                         WHERE gen = ",
                        active_gen!(),
                        " AND canon = $1 AND vers_base IN (SELECT value FROM json_each($2))"
                    ))
                    .bind(canon)
                    .bind(serde_json::to_string(&bases).map_err(|e| json_err("versions", e))?)
                    .fetch_all(&mut **tx)
                    .await?,
                }
            };
        tx.commit().await?;
        rows.sort_by_key(|row| row.0);
        let versions = rows
            .into_iter()
            .map(|(_, vers, cksum, status, yanked, uploader)| {
                Ok(VersionState {
                    vers,
                    cksum,
                    status: version_status(&status)?,
                    yanked,
                    uploader,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((CrateState::from_parts(head, versions), to_u64(seq))))
    }

    /// The log sequence of a crate's last projected event (active generation).
    pub async fn crate_last_seq(&self, canon: &str) -> Result<Option<u64>, StoreError> {
        let seq: Option<i64> = on_read!(&self.db, pool => {
            sqlx::query_scalar(concat!(
                "SELECT last_seq FROM crates WHERE gen = ", active_gen!(), " AND canon = $1"
            ))
            .bind(canon)
            .fetch_optional(pool)
            .await?
        });
        Ok(seq.map(to_u64))
    }

    /// The index file of a crate, by canonical name (active generation): its accepted
    /// versions' lines in upload order, read with its ETag in one statement.
    pub async fn index_file(&self, canon: &str) -> Result<Option<IndexFileRow>, StoreError> {
        let rows: Vec<IndexLineRow> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT f.canon, f.name, f.etag, f.last_modified, v.entry, v.yanked, v.yanked_line \
                 FROM index_files f JOIN versions v ON v.gen = f.gen AND v.canon = f.canon \
                 AND v.status = 'accepted' WHERE f.gen = ",
                active_gen!(),
                " AND f.canon = $1 ORDER BY v.upload_seq"
            ))
            .bind(canon)
            .fetch_all(pool)
            .await?
        });
        Ok(assemble(rows)?.pop().map(|(_, file)| file))
    }

    /// Every index file of generation `gen_`, by canonical name.
    pub async fn index_files(&self, gen_: u64) -> Result<Vec<(String, IndexFileRow)>, StoreError> {
        let rows: Vec<IndexLineRow> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT f.canon, f.name, f.etag, f.last_modified, v.entry, v.yanked, v.yanked_line \
                 FROM index_files f JOIN versions v ON v.gen = f.gen AND v.canon = f.canon \
                 AND v.status = 'accepted' WHERE f.gen = $1 ORDER BY f.canon, v.upload_seq",
            )
            .bind(to_i64(gen_))
            .fetch_all(pool)
            .await?
        });
        assemble(rows)
    }

    /// The outcome of the upload appended at log sequence `upload_seq` (active generation);
    /// `None` while the projector has not applied that upload.
    pub async fn upload_outcome(
        &self,
        canon: &str,
        upload_seq: u64,
    ) -> Result<Option<UploadOutcome>, StoreError> {
        let row: Option<(String, Option<String>)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT status, reasons FROM versions WHERE gen = ",
                active_gen!(),
                " AND canon = $1 AND upload_seq = $2"
            ))
            .bind(canon)
            .bind(to_i64(upload_seq))
            .fetch_optional(pool)
            .await?
        });
        let Some((status, reasons)) = row else {
            return Ok(None);
        };
        Ok(Some(match status.as_str() {
            "accepted" => UploadOutcome::Accepted,
            "rejected" => UploadOutcome::Rejected(match reasons {
                Some(text) => serde_json::from_str(&text).map_err(|e| json_err("reasons", e))?,
                None => Vec::new(),
            }),
            _ => UploadOutcome::Pending,
        }))
    }

    /// The log sequence of the latest projected upload of `vers` with checksum `cksum`
    /// (active generation).
    pub async fn latest_upload_seq(
        &self,
        canon: &str,
        vers: &str,
        cksum: &str,
    ) -> Result<Option<u64>, StoreError> {
        let seq: Option<i64> = on_read!(&self.db, pool => {
            sqlx::query_scalar(concat!(
                "SELECT max(upload_seq) FROM versions WHERE gen = ",
                active_gen!(),
                " AND canon = $1 AND vers = $2 AND cksum = $3"
            ))
            .bind(canon)
            .bind(vers)
            .bind(cksum)
            .fetch_one(pool)
            .await?
        });
        Ok(seq.map(to_u64))
    }

    /// A crate's accepted versions, by canonical name (active generation).
    pub async fn crate_versions(&self, canon: &str) -> Result<Option<CrateVersions>, StoreError> {
        let rows: Vec<(String, String, bool)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT name, vers, yanked FROM versions WHERE gen = ",
                active_gen!(),
                " AND canon = $1 AND status = 'accepted' ORDER BY upload_seq"
            ))
            .bind(canon)
            .fetch_all(pool)
            .await?
        });
        let Some((name, _, _)) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(CrateVersions {
            name: name.clone(),
            versions: rows
                .iter()
                .map(|(_, vers, yanked)| VersionSummary {
                    vers: vers.clone(),
                    yanked: *yanked,
                })
                .collect(),
        }))
    }

    /// The token with this secret hash (active generation).
    pub async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<TokenRow>, StoreError> {
        let rows: Vec<RawToken> = on_read!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(token_query("t.secret_sha256 = $1")))
                .bind(secret_sha256)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().next().map(token_row).transpose()
    }

    /// The token with this id (active generation).
    pub async fn token(&self, token_id: &str) -> Result<Option<TokenRow>, StoreError> {
        let rows: Vec<RawToken> = on_read!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(token_query("t.token_id = $1")))
                .bind(token_id)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().next().map(token_row).transpose()
    }

    /// Every token, or those acting for `login` (lowercase, or `deploy:<name>`), oldest first.
    pub async fn tokens(&self, login: Option<&str>) -> Result<Vec<TokenRow>, StoreError> {
        let rows: Vec<RawToken> = match login {
            Some(login) => on_read!(&self.db, pool => {
                sqlx::query_as(sqlx::AssertSqlSafe(token_query("t.login = $1")))
                    .bind(login.to_ascii_lowercase())
                    .fetch_all(pool)
                    .await?
            }),
            None => on_read!(&self.db, pool => {
                sqlx::query_as(sqlx::AssertSqlSafe(token_query("true")))
                    .fetch_all(pool)
                    .await?
            }),
        };
        rows.into_iter().map(token_row).collect()
    }

    /// Records when tokens were last used (operational data, kept across replays).
    pub async fn record_token_use(&self, uses: &[(String, Timestamp)]) -> Result<(), StoreError> {
        for (token_id, at) in uses {
            on_write!(&self.db, pool => {
                sqlx::query(
                    "INSERT INTO token_usage (token_id, last_used_at) VALUES ($1, $2) \
                     ON CONFLICT (token_id) DO UPDATE SET last_used_at = \
                     CASE WHEN excluded.last_used_at > token_usage.last_used_at \
                     THEN excluded.last_used_at ELSE token_usage.last_used_at END",
                )
                .bind(token_id)
                .bind(at.unix_millis())
                .execute(pool)
                .await?;
            });
        }
        Ok(())
    }

    /// The trusts of every crate in ID tokens of `issuer` (active generation), oldest first.
    pub async fn trusts_for_issuer(&self, issuer: &str) -> Result<Vec<TrustRow>, StoreError> {
        let rows: Vec<(String, String, String, String, i64)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT trust_id, canon, policy, created_by, created_at FROM trusts WHERE gen = ",
                active_gen!(),
                " AND issuer = $1 ORDER BY created_at, trust_id LIMIT 1000"
            ))
            .bind(issuer)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(trust_row).collect()
    }

    /// The trusts of one crate (active generation), oldest first.
    pub async fn trusts_of(&self, canon: &str) -> Result<Vec<TrustRow>, StoreError> {
        let rows: Vec<(String, String, String, String, i64)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT trust_id, canon, policy, created_by, created_at FROM trusts WHERE gen = ",
                active_gen!(),
                " AND canon = $1 ORDER BY created_at, trust_id"
            ))
            .bind(canon)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(trust_row).collect()
    }

    /// Whether only trusted-publishing tokens may publish the crate (active generation).
    pub async fn trusted_only(&self, canon: &str) -> Result<bool, StoreError> {
        let found: Option<String> = on_read!(&self.db, pool => {
            sqlx::query_scalar(concat!(
                "SELECT canon FROM trusted_only WHERE gen = ",
                active_gen!(),
                " AND canon = $1"
            ))
            .bind(canon)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// A user account, matched case-insensitively (active generation).
    pub async fn user_account(&self, login: &str) -> Result<Option<UserRow>, StoreError> {
        let row: Option<(String, bool, bool, i64)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT display, admin, disabled, created_at FROM users WHERE gen = ",
                active_gen!(),
                " AND login = $1"
            ))
            .bind(login.to_ascii_lowercase())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(display, admin, disabled, created_at)| UserRow {
            display,
            admin,
            disabled,
            created_at: Timestamp::from_unix_millis(created_at),
        }))
    }

    /// Every user account, by login.
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows: Vec<(String, bool, bool, i64)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT display, admin, disabled, created_at FROM users WHERE gen = ",
                active_gen!(),
                " ORDER BY login"
            ))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(display, admin, disabled, created_at)| UserRow {
                display,
                admin,
                disabled,
                created_at: Timestamp::from_unix_millis(created_at),
            })
            .collect())
    }

    /// The display login of a known user, matched case-insensitively (active generation).
    pub async fn user(&self, login: &str) -> Result<Option<String>, StoreError> {
        Ok(on_read!(&self.db, pool => {
            sqlx::query_scalar(concat!(
                "SELECT display FROM users WHERE gen = ", active_gen!(), " AND login = $1"
            ))
            .bind(login.to_ascii_lowercase())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Crates whose name, keywords or description contain `query` (case-insensitive), exact and
    /// prefix matches of the name first. Returns one page and the total count.
    pub async fn search(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<(Vec<SearchHit>, u64), StoreError> {
        self.search_page(query, limit, 0).await
    }

    /// [`Store::search`] from the `offset`-th hit on (pages of the web UI).
    pub async fn search_page(
        &self,
        query: &str,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<SearchHit>, u64), StoreError> {
        let escape = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        };
        let canon = depot_index::canonical_name(query);
        let text = format!("%{}%", escape(&query.to_lowercase()));
        let canon_anywhere = format!("%{}%", escape(&canon));
        let canon_prefix = format!("{}%", escape(&canon));
        macro_rules! filter {
            () => {
                concat!(
                    " FROM crates WHERE gen = ",
                    active_gen!(),
                    " AND name IS NOT NULL AND max_version IS NOT NULL AND (",
                    "lower(name) LIKE $1 ESCAPE '\\' OR canon LIKE $2 ESCAPE '\\' ",
                    "OR lower(keywords) LIKE $1 ESCAPE '\\' ",
                    "OR lower(coalesce(description, '')) LIKE $1 ESCAPE '\\')"
                )
            };
        }
        let (total, rows): (i64, Vec<(String, String, Option<String>)>) = on_read!(&self.db, pool => {
            let total = sqlx::query_scalar(concat!("SELECT count(*)", filter!()))
                .bind(&text)
                .bind(&canon_anywhere)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query_as(concat!(
                "SELECT name, max_version, description",
                filter!(),
                " ORDER BY (canon = $3) DESC, (canon LIKE $4 ESCAPE '\\') DESC, canon LIMIT $5 OFFSET $6"
            ))
            .bind(&text)
            .bind(&canon_anywhere)
            .bind(&canon)
            .bind(&canon_prefix)
            .bind(i64::from(limit))
            .bind(to_i64(offset))
            .fetch_all(pool)
            .await?;
            (total, rows)
        });
        let hits = rows
            .into_iter()
            .map(|(name, max_version, description)| SearchHit {
                name,
                max_version,
                description,
            })
            .collect();
        Ok((hits, to_u64(total)))
    }

    /// Adds download counts (batched by the api).
    pub async fn add_downloads(&self, counts: &[(String, String, u64)]) -> Result<(), StoreError> {
        let day = Timestamp::now().unix_seconds().div_euclid(86_400);
        let mut tx = self.db.begin().await?;
        for (canon, vers, count) in counts {
            on_tx!(&mut tx, conn => {
                sqlx::query(
                    "INSERT INTO downloads (canon, vers, count) VALUES ($1, $2, $3) \
                     ON CONFLICT (canon, vers) DO UPDATE SET count = downloads.count + EXCLUDED.count",
                )
                .bind(canon)
                .bind(vers)
                .bind(to_i64(*count))
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO download_days (canon, vers, day, count) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (canon, vers, day) \
                     DO UPDATE SET count = download_days.count + EXCLUDED.count",
                )
                .bind(canon)
                .bind(vers)
                .bind(day)
                .bind(to_i64(*count))
                .execute(&mut *conn)
                .await?;
            });
        }
        tx.commit().await
    }

    /// A crate's downloads: the total of each version that has any, and the counts per
    /// version and UTC day (days since the Unix epoch) from `since_day` on, oldest first.
    pub async fn crate_downloads(
        &self,
        canon: &str,
        since_day: i64,
    ) -> Result<CrateDownloads, StoreError> {
        type Rows = (Vec<(String, i64)>, Vec<(String, i64, i64)>);
        let (totals, days): Rows = on_read!(&self.db, pool => {
            let totals = sqlx::query_as("SELECT vers, count FROM downloads WHERE canon = $1")
                .bind(canon)
                .fetch_all(pool)
                .await?;
            let days = sqlx::query_as(
                "SELECT vers, day, count FROM download_days WHERE canon = $1 AND day >= $2 \
                 ORDER BY day, vers",
            )
            .bind(canon)
            .bind(since_day)
            .fetch_all(pool)
            .await?;
            (totals, days)
        });
        Ok(CrateDownloads {
            totals: totals
                .into_iter()
                .map(|(vers, count)| (vers, to_u64(count)))
                .collect(),
            days: days
                .into_iter()
                .map(|(vers, day, count)| (vers, day, to_u64(count)))
                .collect(),
        })
    }

    /// A crate's description, newest version and last change (active generation).
    pub async fn crate_info(&self, canon: &str) -> Result<Option<CrateInfo>, StoreError> {
        let row: Option<(Option<String>, Option<String>, i64)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT description, max_version, updated_at FROM crates WHERE gen = ",
                active_gen!(),
                " AND canon = $1"
            ))
            .bind(canon)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(description, max_version, updated_at)| CrateInfo {
            description,
            max_version,
            updated_at: Timestamp::from_unix_millis(updated_at),
        }))
    }

    /// The blob key of an accepted version, for downloads (active generation).
    pub async fn download_target(
        &self,
        canon: &str,
        vers: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(on_read!(&self.db, pool => {
            sqlx::query_scalar(concat!(
                "SELECT blob FROM versions WHERE gen = ",
                active_gen!(),
                " AND canon = $1 AND vers = $2 AND status = 'accepted'"
            ))
            .bind(canon)
            .bind(vers)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Every accepted version of generation `gen_` with its checksum and blob.
    pub async fn stored_versions(&self, gen_: u64) -> Result<Vec<StoredVersion>, StoreError> {
        let rows: Vec<(String, String, String, String)> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT name, vers, cksum, blob FROM versions \
                 WHERE gen = $1 AND status = 'accepted' ORDER BY canon, upload_seq",
            )
            .bind(to_i64(gen_))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, vers, cksum, blob)| StoredVersion {
                name,
                vers,
                cksum,
                blob,
            })
            .collect())
    }

    /// The uploads of generation `gen_` still waiting for a verdict, oldest first.
    pub async fn pending_versions(&self, gen_: u64) -> Result<Vec<PendingVersion>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT name, vers, upload_seq, uploaded_at FROM versions \
                 WHERE gen = $1 AND status = 'pending' ORDER BY upload_seq",
            )
            .bind(to_i64(gen_))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, vers, seq, at)| PendingVersion {
                name,
                vers,
                upload_seq: to_u64(seq),
                uploaded_at: Timestamp::from_unix_millis(at),
            })
            .collect())
    }

    /// The blob keys any upload of generation `gen_` refers to (rejected ones included): the
    /// `.crate`, the publish metadata and the readme; the upstream cache's index bodies and
    /// crates; and the manifests of hosted docs (the files a manifest lists are blobs too, which
    /// only the manifest names: see [`Store::all_docs`]).
    pub async fn referenced_blobs(&self, gen_: u64) -> Result<BTreeSet<String>, StoreError> {
        let keys: Vec<String> = on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT blob FROM versions WHERE gen = $1 \
                 UNION SELECT metadata_blob FROM versions \
                 WHERE gen = $1 AND metadata_blob IS NOT NULL \
                 UNION SELECT readme_blob FROM versions \
                 WHERE gen = $1 AND readme_blob IS NOT NULL \
                 UNION SELECT blob FROM upstream_index WHERE gen = $1 \
                 UNION SELECT 'sha256/' || cksum FROM upstream_crates WHERE gen = $1 \
                 UNION SELECT manifest FROM docs WHERE gen = $1",
            )
            .bind(to_i64(gen_))
            .fetch_all(pool)
            .await?
        });
        Ok(keys.into_iter().collect())
    }

    /// Every projected row of generation `gen_`, one text per row in a stable order, for
    /// comparing generations. (The texts are comparable within one backend only.)
    pub async fn dump(&self, gen_: u64) -> Result<Vec<String>, StoreError> {
        const QUERIES: [&str; 12] = [
            "SELECT 'crates ' || canon || '|' || coalesce(name, '-') || '|' || state || '|' || \
             CAST(last_seq AS TEXT) || '|' || coalesce(description, '-') || '|' || keywords || '|' || \
             coalesce(max_version, '-') || '|' || CAST(updated_at AS TEXT) \
             FROM crates WHERE gen = $1 ORDER BY canon",
            "SELECT 'versions ' || canon || '|' || CAST(upload_seq AS TEXT) || '|' || name || '|' || \
             vers || '|' || cksum || '|' || CAST(size AS TEXT) || '|' || blob || '|' || uploader || \
             '|' || status || '|' || CAST(yanked AS TEXT) || '|' || coalesce(entry, '-') || '|' || \
             coalesce(metadata, '-') || '|' || coalesce(reasons, '-') || '|' || \
             CAST(uploaded_at AS TEXT) || '|' || coalesce(metadata_blob, '-') || '|' || \
             coalesce(readme_blob, '-') || '|' || vers_base || '|' || coalesce(yanked_line, '-') \
             FROM versions WHERE gen = $1 ORDER BY canon, upload_seq",
            "SELECT 'index_files ' || canon || '|' || name || '|' || etag || '|' || \
             CAST(last_modified AS TEXT) || '|' || CAST(last_seq AS TEXT) \
             FROM index_files WHERE gen = $1 ORDER BY canon",
            "SELECT 'users ' || login || '|' || display || '|' || CAST(created_at AS TEXT) || '|' || \
             CAST(admin AS TEXT) || '|' || CAST(disabled AS TEXT) \
             FROM users WHERE gen = $1 ORDER BY login",
            "SELECT 'tokens ' || token_id || '|' || login || '|' || secret_sha256 || '|' || kind || \
             '|' || coalesce(label, '-') || '|' || scopes || '|' || crates || '|' || \
             coalesce(CAST(expires_at AS TEXT), '-') || '|' || CAST(revoked AS TEXT) || '|' || \
             CAST(created_at AS TEXT) || '|' || coalesce(created_by, '-') || '|' || \
             coalesce(read_crates, '-') \
             FROM tokens WHERE gen = $1 ORDER BY token_id",
            "SELECT 'trusts ' || trust_id || '|' || canon || '|' || issuer || '|' || policy || '|' || \
             created_by || \
             '|' || CAST(created_at AS TEXT) FROM trusts WHERE gen = $1 ORDER BY trust_id",
            "SELECT 'trusted_only ' || canon FROM trusted_only WHERE gen = $1 ORDER BY canon",
            "SELECT 'upstream_index ' || name || '|' || blob || '|' || CAST(size AS TEXT) || '|' || \
             coalesce(etag, '-') || '|' || coalesce(last_modified, '-') || '|' || upstream || '|' || \
             CAST(stored_seq AS TEXT) || '|' || CAST(stored_at AS TEXT) \
             FROM upstream_index WHERE gen = $1 ORDER BY name",
            "SELECT 'upstream_crates ' || name || '|' || vers || '|' || cksum || '|' || \
             CAST(size AS TEXT) || '|' || upstream || '|' || CAST(stored_seq AS TEXT) || '|' || \
             CAST(stored_at AS TEXT) FROM upstream_crates WHERE gen = $1 ORDER BY name, vers",
            "SELECT 'upstream_allowed ' || canon || '|' || allowed_by || '|' || \
             CAST(allowed_at AS TEXT) FROM upstream_allowed WHERE gen = $1 ORDER BY canon",
            "SELECT 'docs ' || canon || '|' || name || '|' || vers || '|' || manifest || '|' || \
             CAST(files AS TEXT) || '|' || CAST(bytes AS TEXT) || '|' || coalesce(token_id, '-') || \
             '|' || uploaded_by || '|' || CAST(uploaded_seq AS TEXT) || '|' || \
             CAST(uploaded_at AS TEXT) FROM docs WHERE gen = $1 ORDER BY canon, vers",
            "SELECT 'yank_messages ' || canon || '|' || vers || '|' || message || '|' || \
             CAST(seq AS TEXT) FROM yank_messages WHERE gen = $1 ORDER BY canon, vers",
        ];
        let mut rows = Vec::new();
        for sql in QUERIES {
            let texts: Vec<String> = on_read!(&self.db, pool => {
                sqlx::query_scalar(sql).bind(to_i64(gen_)).fetch_all(pool).await?
            });
            rows.extend(texts);
        }
        // Index bodies are bytes; append them hex-encoded so they are compared too.
        for (canon, file) in self.index_files(gen_).await? {
            rows.push(format!("index_body {canon} {}", hex::encode(&file.body)));
        }
        Ok(rows)
    }

    /// Every generation with its state and checkpoint, oldest first.
    pub async fn generations(&self) -> Result<Vec<Generation>, StoreError> {
        let rows: Vec<(i64, String, Option<i64>, Option<i64>)> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT g.gen, g.state, g.until_seq, c.last_seq FROM generations g \
                 LEFT JOIN projector_checkpoint c ON c.gen = g.gen ORDER BY g.gen",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(gen_, state, until, checkpoint)| Generation {
                number: to_u64(gen_),
                state,
                until_seq: until.map(to_u64),
                checkpoint: checkpoint.map_or(0, to_u64),
            })
            .collect())
    }

    /// Creates an empty generation to fold the log into (up to `until_seq`, if given).
    pub async fn create_generation(&self, until_seq: Option<u64>) -> Result<u64, StoreError> {
        let mut tx = self.db.begin().await?;
        let next: i64 = on_tx!(&mut tx, conn => {
            let max: Option<i64> = sqlx::query_scalar("SELECT max(gen) FROM generations")
                .fetch_one(&mut *conn)
                .await?;
            let next = max.unwrap_or(0) + 1;
            sqlx::query(
                "INSERT INTO generations (gen, state, until_seq, created_at) \
                 VALUES ($1, 'building', $2, $3)",
            )
            .bind(next)
            .bind(until_seq.map(to_i64))
            .bind(Timestamp::now().unix_millis())
            .execute(&mut *conn)
            .await?;
            next
        });
        tx.commit().await?;
        Ok(to_u64(next))
    }

    /// Makes `gen_` the active generation if it has folded the log up to `required_seq`, in
    /// one transaction; returns false (and changes nothing) if it has not.
    pub async fn switch_generation(
        &self,
        gen_: u64,
        required_seq: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let pg = self.db.is_postgres();
        let switched = on_tx!(&mut tx, conn => {
            if pg {
                // Wait for a projector batch in flight on the old generation to finish.
                sqlx::query("SELECT gen FROM active_generation WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *conn)
                    .await?;
            }
            let checkpoint: Option<i64> =
                sqlx::query_scalar("SELECT last_seq FROM projector_checkpoint WHERE gen = $1")
                    .bind(to_i64(gen_))
                    .fetch_optional(&mut *conn)
                    .await?;
            if checkpoint.map_or(0, to_u64) < required_seq {
                false
            } else {
                sqlx::query(concat!(
                    "UPDATE generations SET state = 'retired' WHERE gen = ",
                    active_gen!()
                ))
                .execute(&mut *conn)
                .await?;
                sqlx::query("UPDATE generations SET state = 'live' WHERE gen = $1")
                    .bind(to_i64(gen_))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE active_generation SET gen = $1 WHERE id = 1")
                    .bind(to_i64(gen_))
                    .execute(&mut *conn)
                    .await?;
                true
            }
        });
        tx.commit().await?;
        Ok(switched)
    }

    /// Deletes every row of generation `gen_` (never the active one).
    pub async fn drop_generation(&self, gen_: u64) -> Result<(), StoreError> {
        if gen_ == self.active_generation().await? {
            return Err(StoreError::Config(format!(
                "generation {gen_} is active and cannot be dropped"
            )));
        }
        for table in [
            "crates",
            "versions",
            "index_files",
            "users",
            "tokens",
            "trusts",
            "trusted_only",
            "upstream_index",
            "upstream_crates",
            "upstream_allowed",
            "docs",
            "yank_messages",
            "webhook_subscriptions",
            "projector_checkpoint",
            "generations",
        ] {
            let sql = format!("DELETE FROM {table} WHERE gen = $1");
            on_write!(&self.db, pool => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(to_i64(gen_))
                    .execute(pool)
                    .await?;
            });
        }
        Ok(())
    }

    /// Retired generations (after a replay switched away from them), for clean-up.
    pub async fn retired_generations(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .generations()
            .await?
            .into_iter()
            .filter(|g| g.state == "retired")
            .map(|g| g.number)
            .collect())
    }
}

/// A token row as selected by [`token_query`].
type RawToken = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<i64>,
    bool,
    i64,
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<bool>,
    Option<String>,
);

/// The tokens of the active generation matching `condition` (on `t`), with their last use and
/// their user's role and state.
fn token_query(condition: &str) -> String {
    format!(
        "SELECT t.token_id, t.login, t.kind, t.label, t.scopes, t.crates, t.expires_at, \
         t.revoked, t.created_at, t.created_by, u.last_used_at, us.admin, us.disabled, \
         t.read_crates \
         FROM tokens t \
         LEFT JOIN token_usage u ON u.token_id = t.token_id \
         LEFT JOIN users us ON us.gen = t.gen AND us.login = t.login \
         WHERE t.gen = {} AND {condition} ORDER BY t.created_at, t.token_id",
        active_gen!()
    )
}

fn token_row(raw: RawToken) -> Result<TokenRow, StoreError> {
    let (
        token_id,
        login,
        kind,
        label,
        scopes,
        crates,
        expires_at,
        revoked,
        created_at,
        created_by,
        last_used_at,
        admin,
        disabled,
        read_crates,
    ) = raw;
    let kind =
        serde_json::from_value(serde_json::Value::String(kind)).map_err(|e| json_err("kind", e))?;
    Ok(TokenRow {
        token_id,
        kind,
        label,
        scopes: serde_json::from_str(&scopes).map_err(|e| json_err("scopes", e))?,
        crates: serde_json::from_str(&crates).map_err(|e| json_err("crates", e))?,
        read_crates: read_crates
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| json_err("read_crates", e))?,
        expires_at: expires_at.map(Timestamp::from_unix_millis),
        revoked,
        created_at: Timestamp::from_unix_millis(created_at),
        created_by,
        last_used_at: last_used_at.map(Timestamp::from_unix_millis),
        admin: admin.unwrap_or(false) && kind == TokenKind::Personal,
        user_disabled: disabled.unwrap_or(false) && kind == TokenKind::Personal,
        login,
    })
}

fn trust_row(raw: (String, String, String, String, i64)) -> Result<TrustRow, StoreError> {
    let (_, canon, policy, created_by, created_at) = raw;
    Ok(TrustRow {
        trust: serde_json::from_str(&policy).map_err(|e| json_err("trust policy", e))?,
        canon,
        created_by,
        created_at: Timestamp::from_unix_millis(created_at),
    })
}
