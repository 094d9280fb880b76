//! Folding the upstream-registry cache's events: the stored index bodies, the stored crates
//! and the names the dependency-confusion guard lets through.

use depot_events::{Timestamp, UpstreamCrateStored, UpstreamIndexStored};

use super::ProjectionTx;
use crate::StoreError;
use crate::db::{on_tx, to_i64};

impl ProjectionTx {
    /// Records the newest stored body of an upstream index file.
    pub async fn store_upstream_index(
        &mut self,
        stored: &UpstreamIndexStored,
        seq: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO upstream_index (gen, name, blob, size, etag, last_modified, upstream, \
                 stored_seq, stored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (gen, name) DO UPDATE SET blob = excluded.blob, size = excluded.size, \
                 etag = excluded.etag, last_modified = excluded.last_modified, \
                 upstream = excluded.upstream, stored_seq = excluded.stored_seq, \
                 stored_at = excluded.stored_at",
            )
            .bind(gen_)
            .bind(stored.name.to_ascii_lowercase())
            .bind(&stored.blob)
            .bind(to_i64(stored.size))
            .bind(&stored.etag)
            .bind(&stored.last_modified)
            .bind(&stored.upstream)
            .bind(to_i64(seq))
            .bind(at.unix_millis())
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Records a stored upstream `.crate`; the first one recorded for a version stays.
    pub async fn store_upstream_crate(
        &mut self,
        stored: &UpstreamCrateStored,
        seq: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO upstream_crates (gen, name, vers, cksum, size, upstream, stored_seq, \
                 stored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (gen, name, vers) DO NOTHING",
            )
            .bind(gen_)
            .bind(stored.name.to_ascii_lowercase())
            .bind(&stored.vers)
            .bind(&stored.cksum)
            .bind(to_i64(stored.size))
            .bind(&stored.upstream)
            .bind(to_i64(seq))
            .bind(at.unix_millis())
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Allows a canonical crate name past the dependency-confusion guard, or withdraws that.
    pub async fn set_upstream_allowed(
        &mut self,
        canon: &str,
        allowed: bool,
        actor: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            if allowed {
                sqlx::query(
                    "INSERT INTO upstream_allowed (gen, canon, allowed_by, allowed_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (gen, canon) DO NOTHING",
                )
                .bind(gen_)
                .bind(canon)
                .bind(actor)
                .bind(at.unix_millis())
                .execute(conn)
                .await?;
            } else {
                sqlx::query("DELETE FROM upstream_allowed WHERE gen = $1 AND canon = $2")
                    .bind(gen_)
                    .bind(canon)
                    .execute(conn)
                    .await?;
            }
        });
        Ok(())
    }
}
