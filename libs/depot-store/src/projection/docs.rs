//! Folding `docs_uploaded`: the hosted documentation of each version.

use depot_events::{DocsUploaded, Timestamp};

use super::ProjectionTx;
use crate::StoreError;
use crate::db::{on_tx, to_i64};

impl ProjectionTx {
    /// Records the docs of a version of crate `canon`, replacing earlier ones.
    pub async fn store_docs(
        &mut self,
        canon: &str,
        docs: &DocsUploaded,
        actor: &str,
        seq: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO docs (gen, canon, name, vers, manifest, files, bytes, token_id, \
                 uploaded_by, uploaded_seq, uploaded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (gen, canon, vers) DO UPDATE SET name = excluded.name, \
                 manifest = excluded.manifest, files = excluded.files, bytes = excluded.bytes, \
                 token_id = excluded.token_id, uploaded_by = excluded.uploaded_by, \
                 uploaded_seq = excluded.uploaded_seq, uploaded_at = excluded.uploaded_at",
            )
            .bind(gen_)
            .bind(canon)
            .bind(&docs.name)
            .bind(&docs.version)
            .bind(&docs.manifest)
            .bind(to_i64(docs.files))
            .bind(to_i64(docs.bytes))
            .bind(docs.token_id.map(|id| id.to_string()))
            .bind(actor)
            .bind(to_i64(seq))
            .bind(at.unix_millis())
            .execute(conn)
            .await?;
        });
        Ok(())
    }
}
