//! One projector, and one webhook dispatcher, at a time per read-model database.
//!
//! The projector that folds the log into the active generation holds a lease: on PostgreSQL, a
//! session-level advisory lock on a connection of its own, taken with `pg_try_advisory_lock`.
//! Other projector processes wait as standbys and try again every second. When the active
//! process dies, the kernel closes its connection, PostgreSQL ends the session and releases the
//! lock, and a standby takes over at its next try. A holder whose connection breaks (the
//! database restarted, the network failed) notices at its next check and stops writing before a
//! standby could start. The embedded SQLite read models belong to one process: the lease is
//! always granted there.

use sqlx::Connection as _;

use crate::db::Db;
use crate::{Store, StoreError};

/// The advisory lock key of the projector lease (the ASCII of `DepotPrj`).
const PROJECTOR_LOCK_KEY: i64 = 0x4465_706f_7450_726a;

/// The advisory lock key of the webhook dispatcher's lease (the ASCII of `DepotWhk`).
const WEBHOOK_LOCK_KEY: i64 = 0x4465_706f_7457_686b;

/// The right to write the active read models, held until dropped or lost.
#[derive(Debug)]
pub struct ProjectorLease {
    /// The connection holding the advisory lock (`None` on SQLite).
    holder: Option<sqlx::PgConnection>,
}

impl Store {
    /// Takes the projector lease if no other process holds it.
    pub async fn try_projector_lease(&self) -> Result<Option<ProjectorLease>, StoreError> {
        self.try_lease(PROJECTOR_LOCK_KEY).await
    }

    /// Takes the webhook dispatcher's lease if no other process holds it (the same mechanism
    /// as the projector's, with a lock of its own).
    pub async fn try_webhook_lease(&self) -> Result<Option<ProjectorLease>, StoreError> {
        self.try_lease(WEBHOOK_LOCK_KEY).await
    }

    async fn try_lease(&self, key: i64) -> Result<Option<ProjectorLease>, StoreError> {
        let pool = match &self.db {
            Db::Sqlite(_) => return Ok(Some(ProjectorLease { holder: None })),
            Db::Pg(pool) => pool,
        };
        // A connection of its own, outside the pool, so the pool never recycles the session
        // that holds the lock.
        let mut holder = pool.acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut holder)
            .await?;
        if taken {
            Ok(Some(ProjectorLease {
                holder: Some(holder),
            }))
        } else {
            let _ = holder.close().await;
            Ok(None)
        }
    }
}

impl ProjectorLease {
    /// Fails if the lease is lost: the session holding the lock is gone.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        if let Some(holder) = &mut self.holder {
            holder.ping().await?;
        }
        Ok(())
    }
}
