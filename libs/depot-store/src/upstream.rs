//! Reads of the upstream-registry cache's read models (active generation unless a generation
//! is named).

use crate::db::{on_read, to_i64, to_u64};
use crate::{Store, StoreError};

/// The stored body of an upstream index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIndexRow {
    /// The lowercase name the file is named by.
    pub name: String,
    /// The blob key of the body.
    pub blob: String,
    /// The body's size in bytes.
    pub size: u64,
    /// The upstream's `ETag` of the body.
    pub etag: Option<String>,
    /// The upstream's `Last-Modified` of the body.
    pub last_modified: Option<String>,
    /// When it was stored (Unix milliseconds).
    pub stored_at: i64,
}

/// A stored upstream `.crate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCrateRow {
    /// The lowercase crate name.
    pub name: String,
    /// The version.
    pub vers: String,
    /// Lowercase hex sha256 (its blob is `sha256/<cksum>`).
    pub cksum: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was stored (Unix milliseconds).
    pub stored_at: i64,
}

type RawIndex = (String, String, i64, Option<String>, Option<String>, i64);
type RawCrate = (String, String, String, i64, i64);

fn index_row((name, blob, size, etag, last_modified, stored_at): RawIndex) -> UpstreamIndexRow {
    UpstreamIndexRow {
        name,
        blob,
        size: to_u64(size),
        etag,
        last_modified,
        stored_at,
    }
}

fn crate_row((name, vers, cksum, size, stored_at): RawCrate) -> UpstreamCrateRow {
    UpstreamCrateRow {
        name,
        vers,
        cksum,
        size: to_u64(size),
        stored_at,
    }
}

impl Store {
    /// The stored body of the upstream index file of `lowercase_name`.
    pub async fn upstream_index(
        &self,
        lowercase_name: &str,
    ) -> Result<Option<UpstreamIndexRow>, StoreError> {
        let row: Option<RawIndex> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT name, blob, size, etag, last_modified, stored_at FROM upstream_index \
                 WHERE gen = ",
                active_gen!(),
                " AND name = $1"
            ))
            .bind(lowercase_name)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(index_row))
    }

    /// The stored upstream `.crate` of `lowercase_name` `vers`.
    pub async fn upstream_crate(
        &self,
        lowercase_name: &str,
        vers: &str,
    ) -> Result<Option<UpstreamCrateRow>, StoreError> {
        let row: Option<RawCrate> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT name, vers, cksum, size, stored_at FROM upstream_crates WHERE gen = ",
                active_gen!(),
                " AND name = $1 AND vers = $2"
            ))
            .bind(lowercase_name)
            .bind(vers)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(crate_row))
    }

    /// Every stored upstream index file of generation `gen_`, by name.
    pub async fn upstream_index_files(
        &self,
        gen_: u64,
    ) -> Result<Vec<UpstreamIndexRow>, StoreError> {
        let rows: Vec<RawIndex> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT name, blob, size, etag, last_modified, stored_at FROM upstream_index \
                 WHERE gen = $1 ORDER BY name",
            )
            .bind(to_i64(gen_))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(index_row).collect())
    }

    /// Every stored upstream `.crate` of generation `gen_`, by name and version.
    pub async fn upstream_crates(&self, gen_: u64) -> Result<Vec<UpstreamCrateRow>, StoreError> {
        let rows: Vec<RawCrate> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT name, vers, cksum, size, stored_at FROM upstream_crates WHERE gen = $1 \
                 ORDER BY name, vers",
            )
            .bind(to_i64(gen_))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(crate_row).collect())
    }

    /// Whether a new private crate may take the canonical name `canon` although upstream has
    /// it.
    pub async fn upstream_allowed(&self, canon: &str) -> Result<bool, StoreError> {
        let found: i64 = on_read!(&self.db, pool => {
            sqlx::query_scalar(concat!(
                "SELECT count(*) FROM upstream_allowed WHERE gen = ",
                active_gen!(),
                " AND canon = $1"
            ))
            .bind(canon)
            .fetch_one(pool)
            .await?
        });
        Ok(found > 0)
    }
}
