//! Reads for the web UI (lists of crates, a crate's versions with their metadata) and the UI's
//! sessions.
//!
//! Crate reads use the active generation. Sessions are operational rows (`web_sessions`): they
//! hold only sha256 hashes and are kept across replays.

use depot_events::{CrateHead, Timestamp};

use crate::db::{on_read, on_write, to_u64};
use crate::{Store, StoreError};

/// A crate in a list: the home page, search results, a user's crates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateCard {
    /// The published spelling.
    pub name: String,
    /// The version shown in search (the highest unyanked one, else the highest).
    pub max_version: String,
    /// That version's description.
    pub description: Option<String>,
    /// When the crate's last event happened.
    pub updated_at: Timestamp,
    /// Downloads of all its versions.
    pub downloads: u64,
}

/// An accepted version with what the crate page shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDetails {
    /// The version as published.
    pub vers: String,
    /// Whether it is yanked.
    pub yanked: bool,
    /// The `.crate`'s size in bytes.
    pub size: u64,
    /// When it was uploaded.
    pub uploaded_at: Timestamp,
    /// Who published it.
    pub uploader: String,
    /// Its index line (JSON): dependencies, features, `rust-version`, `links`.
    pub entry: Option<String>,
    /// The metadata read from the `.crate` (JSON of `ExtractedMetadata`).
    pub metadata: Option<String>,
    /// The blob key of its readme, if it has one.
    pub readme_blob: Option<String>,
}

/// A crate with its accepted versions, oldest upload first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateDetails {
    /// The published spelling.
    pub name: String,
    /// Logins of the owners, sorted.
    pub owners: Vec<String>,
    /// Accepted versions in upload order.
    pub versions: Vec<VersionDetails>,
}

/// The most rows a crate list reads.
const MAX_LIST: u32 = 100;

type CardRow = (String, String, Option<String>, i64, i64);

fn card((name, max_version, description, updated_at, downloads): CardRow) -> CrateCard {
    CrateCard {
        name,
        max_version,
        description,
        updated_at: Timestamp::from_unix_millis(updated_at),
        downloads: to_u64(downloads),
    }
}

/// `SELECT` of a [`CrateCard`] from `crates c`, usable in `concat!`.
macro_rules! card_columns {
    () => {
        "SELECT c.name, c.max_version, c.description, c.updated_at, \
         CAST(coalesce((SELECT sum(d.count) FROM downloads d WHERE d.canon = c.canon), 0) AS BIGINT) \
         AS downloads FROM crates c WHERE c.gen = (SELECT gen FROM active_generation WHERE id = 1) \
         AND c.name IS NOT NULL AND c.max_version IS NOT NULL"
    };
}

impl Store {
    /// The crates changed last (published, yanked, owners changed), newest first.
    pub async fn recent_crates(&self, limit: u32) -> Result<Vec<CrateCard>, StoreError> {
        let rows: Vec<CardRow> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(card_columns!(), " ORDER BY c.updated_at DESC, c.canon LIMIT $1"))
                .bind(i64::from(limit.min(MAX_LIST)))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(card).collect())
    }

    /// The crates downloaded most, most first (crates never downloaded are left out).
    pub async fn most_downloaded(&self, limit: u32) -> Result<Vec<CrateCard>, StoreError> {
        let rows: Vec<CardRow> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT * FROM (",
                card_columns!(),
                ") ranked WHERE downloads > 0 ORDER BY downloads DESC, name LIMIT $1"
            ))
            .bind(i64::from(limit.min(MAX_LIST)))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(card).collect())
    }

    /// Up to `limit` crates `login` owns, by name. Owners live in each crate's head (JSON), so
    /// candidates are found by text and confirmed by parsing the head.
    pub async fn crates_owned_by(
        &self,
        login: &str,
        limit: u32,
    ) -> Result<Vec<CrateCard>, StoreError> {
        let needle = format!(
            "%{}%",
            serde_json::to_string(login)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows: Vec<(String, String, Option<String>, i64, i64, String)> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT c.name, c.max_version, c.description, c.updated_at, \
                 CAST(coalesce((SELECT sum(d.count) FROM downloads d WHERE d.canon = c.canon), 0) AS BIGINT), \
                 c.state FROM crates c WHERE c.gen = (SELECT gen FROM active_generation WHERE id = 1) \
                 AND c.name IS NOT NULL AND c.max_version IS NOT NULL \
                 AND c.state LIKE $1 ESCAPE '\\' ORDER BY c.canon LIMIT $2",
            )
            .bind(&needle)
            .bind(i64::from(limit.min(MAX_LIST)))
            .fetch_all(pool)
            .await?
        });
        let mut cards = Vec::new();
        for (name, max_version, description, updated_at, downloads, state) in rows {
            let head: CrateHead = serde_json::from_str(&state)
                .map_err(|e| StoreError::Corrupt(format!("crate state: {e}")))?;
            if head.owners.iter().any(|o| o == login) {
                cards.push(card((
                    name,
                    max_version,
                    description,
                    updated_at,
                    downloads,
                )));
            }
        }
        Ok(cards)
    }

    /// The yank messages of crate `canon`'s versions that have one, by version.
    pub async fn yank_messages(
        &self,
        canon: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT vers, message FROM yank_messages WHERE gen = ",
                active_gen!(),
                " AND canon = $1"
            ))
            .bind(canon)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().collect())
    }

    /// A crate's owners and accepted versions with their metadata, by canonical name.
    pub async fn crate_details(&self, canon: &str) -> Result<Option<CrateDetails>, StoreError> {
        type Row = (
            String,
            String,
            bool,
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let (head, rows): (Option<String>, Vec<Row>) = on_read!(&self.db, pool => {
            let head = sqlx::query_scalar(concat!(
                "SELECT state FROM crates WHERE gen = ",
                active_gen!(),
                " AND canon = $1 AND name IS NOT NULL"
            ))
            .bind(canon)
            .fetch_optional(pool)
            .await?;
            let rows = sqlx::query_as(concat!(
                "SELECT name, vers, yanked, size, uploaded_at, uploader, entry, metadata, \
                 readme_blob FROM versions WHERE gen = ",
                active_gen!(),
                " AND canon = $1 AND status = 'accepted' ORDER BY upload_seq"
            ))
            .bind(canon)
            .fetch_all(pool)
            .await?;
            (head, rows)
        });
        let (Some(head), Some(first)) = (head, rows.first()) else {
            return Ok(None);
        };
        let head: CrateHead = serde_json::from_str(&head)
            .map_err(|e| StoreError::Corrupt(format!("crate state: {e}")))?;
        let name = first.0.clone();
        let versions = rows
            .into_iter()
            .map(
                |(_, vers, yanked, size, uploaded_at, uploader, entry, metadata, readme_blob)| {
                    VersionDetails {
                        vers,
                        yanked,
                        size: to_u64(size),
                        uploaded_at: Timestamp::from_unix_millis(uploaded_at),
                        uploader,
                        entry,
                        metadata,
                        readme_blob,
                    }
                },
            )
            .collect();
        Ok(Some(CrateDetails {
            name,
            owners: head.owners,
            versions,
        }))
    }

    /// Records a new web session of the token with hash `token_sha256`. Expired sessions are
    /// deleted on the way, and a token keeps at most `max_per_token` sessions (its oldest go).
    pub async fn open_session(
        &self,
        id_sha256: &str,
        token_sha256: &str,
        expires_at: Timestamp,
        max_per_token: u32,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().unix_millis();
        on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "DELETE FROM web_sessions WHERE token_sha256 = $1 AND id_sha256 NOT IN \
                 (SELECT id_sha256 FROM web_sessions WHERE token_sha256 = $1 \
                 ORDER BY created_at DESC LIMIT $2)",
            )
            .bind(token_sha256)
            .bind(i64::from(max_per_token.saturating_sub(1)))
            .execute(pool)
            .await?;
            sqlx::query(
                "INSERT INTO web_sessions (id_sha256, token_sha256, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id_sha256)
            .bind(token_sha256)
            .bind(now)
            .bind(expires_at.unix_millis())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The token hash of an unexpired session.
    pub async fn session_token(&self, id_sha256: &str) -> Result<Option<String>, StoreError> {
        let now = Timestamp::now().unix_millis();
        Ok(on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT token_sha256 FROM web_sessions WHERE id_sha256 = $1 AND expires_at > $2",
            )
            .bind(id_sha256)
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Ends a session (signing out).
    pub async fn close_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE id_sha256 = $1")
                .bind(id_sha256)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// How many sessions are open (expired ones not yet deleted included).
    pub async fn session_count(&self) -> Result<u64, StoreError> {
        let count: i64 = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT count(*) FROM web_sessions")
                .fetch_one(pool)
                .await?
        });
        Ok(to_u64(count))
    }
}
