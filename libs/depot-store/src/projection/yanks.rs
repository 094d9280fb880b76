//! Folding the messages of `version_yanked`: why a version was yanked, where its owner said.

use super::ProjectionTx;
use crate::StoreError;
use crate::db::{on_tx, to_i64};

impl ProjectionTx {
    /// Records the yank message of version `vers` of crate `canon` (event `seq`), or removes
    /// it (`None`: a yank without one, or an unyank).
    pub async fn set_yank_message(
        &mut self,
        canon: &str,
        vers: &str,
        message: Option<&str>,
        seq: u64,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        match message {
            Some(message) => on_tx!(&mut self.tx, conn => {
                sqlx::query(
                    "INSERT INTO yank_messages (gen, canon, vers, message, seq) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (gen, canon, vers) DO UPDATE SET message = excluded.message, \
                     seq = excluded.seq",
                )
                .bind(gen_)
                .bind(canon)
                .bind(vers)
                .bind(message)
                .bind(to_i64(seq))
                .execute(conn)
                .await?;
            }),
            None => on_tx!(&mut self.tx, conn => {
                sqlx::query("DELETE FROM yank_messages WHERE gen = $1 AND canon = $2 AND vers = $3")
                    .bind(gen_)
                    .bind(canon)
                    .bind(vers)
                    .execute(conn)
                    .await?;
            }),
        }
        Ok(())
    }
}
