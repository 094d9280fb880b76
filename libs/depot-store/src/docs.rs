//! Reads of the hosted-documentation read model (active generation unless a generation is
//! named).

use crate::db::{on_read, to_i64, to_u64};
use crate::{Store, StoreError};

/// The docs of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsRow {
    /// The canonical crate name.
    pub canon: String,
    /// The crate name as published.
    pub name: String,
    /// The version.
    pub vers: String,
    /// The blob key of the manifest.
    pub manifest: String,
    /// How many files.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// When they were uploaded (Unix milliseconds).
    pub uploaded_at: i64,
}

type RawDocs = (String, String, String, String, i64, i64, i64);

fn docs_row((canon, name, vers, manifest, files, bytes, uploaded_at): RawDocs) -> DocsRow {
    DocsRow {
        canon,
        name,
        vers,
        manifest,
        files: to_u64(files),
        bytes: to_u64(bytes),
        uploaded_at,
    }
}

impl Store {
    /// The docs of version `vers` of crate `canon`, if any were uploaded.
    pub async fn docs(&self, canon: &str, vers: &str) -> Result<Option<DocsRow>, StoreError> {
        let row: Option<RawDocs> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT canon, name, vers, manifest, files, bytes, uploaded_at FROM docs \
                 WHERE gen = ",
                active_gen!(),
                " AND canon = $1 AND vers = $2"
            ))
            .bind(canon)
            .bind(vers)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(docs_row))
    }

    /// Every version of crate `canon` that has docs, in no particular order (for links from
    /// the crate's page and for finding the newest).
    pub async fn docs_versions(&self, canon: &str) -> Result<Vec<DocsRow>, StoreError> {
        let rows: Vec<RawDocs> = on_read!(&self.db, pool => {
            sqlx::query_as(concat!(
                "SELECT canon, name, vers, manifest, files, bytes, uploaded_at FROM docs \
                 WHERE gen = ",
                active_gen!(),
                " AND canon = $1 ORDER BY vers"
            ))
            .bind(canon)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(docs_row).collect())
    }

    /// Every docs row of generation `gen_`, by crate and version.
    pub async fn all_docs(&self, gen_: u64) -> Result<Vec<DocsRow>, StoreError> {
        let rows: Vec<RawDocs> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT canon, name, vers, manifest, files, bytes, uploaded_at FROM docs \
                 WHERE gen = $1 ORDER BY canon, vers",
            )
            .bind(to_i64(gen_))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(docs_row).collect())
    }
}
