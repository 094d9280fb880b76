//! The projector's write side: one transaction per batch of events, with the checkpoint of the
//! generation being written.
//!
//! A batch costs a few statements, not a few per event, and nothing in it grows with a crate's
//! history: the crates it touches are loaded with one query for their heads and one for the
//! uploads of the versions its events mention ([`ProjectionTx::load_crates`]). Every `versions`
//! row the batch is about is then kept in memory — its own uploads, and the loaded rows of
//! earlier batches — where its verdicts and yanks update them; when the crates are saved
//! ([`ProjectionTx::save_crates`]) the new rows are inserted with one statement and the changed
//! ones updated with another (on SQLite, in process, one prepared statement per changed row),
//! and the index file heads and crate rows are upserted with one statement each (see [`bulk`]). The search summaries that need the stored versions (a shown
//! version yanked, or another one unyanked) are read with at most three queries per batch.
//! Index files are not rendered here: their lines are the accepted versions' rows, assembled
//! when read, so an accepted version adds a row and a yank changes one. Only token, account and
//! trust events cost a statement each.

mod bulk;
mod docs;
mod upstream;
mod webhooks;
mod yanks;

use std::collections::HashMap;

use depot_events::{
    CrateHead, CrateState, ExtractedMetadata, RejectionReason, Timestamp, TokenIssued, TokenKind,
    TrustAdded, UserCreated, VersionState, VersionStatus, VersionUploaded, version_without_build,
};
use depot_index::IndexEntry;

use crate::db::{Tx, on_tx, to_i64, to_u64};
use crate::store::yanked_line_of;
use crate::{Store, StoreError};
use bulk::{CrateRow, IndexFileRow, IndexFileTouch, VersionRow, VersionUpdate};

/// The `status` values of `versions`.
const PENDING: &str = "pending";
const ACCEPTED: &str = "accepted";
const REJECTED: &str = "rejected";

/// Which generation a projection transaction writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The active generation, whichever it is when the transaction begins (the live projector).
    Active,
    /// One given generation (a replay).
    Generation(u64),
}

/// A batch of read-model changes, committed atomically with the generation's checkpoint.
#[derive(Debug)]
pub struct ProjectionTx {
    tx: Tx,
    gen_: i64,
    checkpoint: u64,
    /// Rows of the uploads folded in this batch, by crate in upload order; not written yet.
    new_versions: HashMap<String, Vec<VersionRow>>,
    /// Rows of earlier batches loaded for this batch's events, by crate in upload order, with
    /// what the batch changed in them so far (not written yet).
    loaded: HashMap<String, Vec<LoadedRow>>,
    /// The search summary of each crate loaded or changed in this batch.
    summaries: HashMap<String, SummaryWork>,
    /// The spelling of each crate with a version accepted in this batch (its index file may be
    /// new).
    accepted_names: HashMap<String, String>,
}

/// The version a crate shows in search: the highest unyanked one, else the highest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Best {
    version: semver::Version,
    yanked: bool,
}

impl Best {
    /// Whether `other` is shown in preference to `self` (strictly: of equals, the first wins).
    fn loses_to(&self, other: &Best) -> bool {
        (!other.yanked, &other.version) > (!self.yanked, &self.version)
    }
}

/// A crate's search summary while a batch is folded.
#[derive(Debug, Clone, Default)]
struct SummaryWork {
    best: Option<Best>,
    description: Option<String>,
    keywords: String,
    /// The shown version must be found again by scanning the accepted versions (it was yanked).
    rescan: bool,
    /// The shown version changed to this accepted one, whose metadata must be read.
    metadata_of: Option<String>,
}

/// What [`ProjectionTx::save_crates`] stores for one crate.
#[derive(Debug, Clone, Copy)]
pub struct CrateSave<'a> {
    /// The canonical name.
    pub canon: &'a str,
    /// The aggregate state after the batch.
    pub state: &'a CrateState,
    /// The log sequence of the crate's last event.
    pub last_seq: u64,
    /// The time of the crate's last event.
    pub updated_at: Timestamp,
    /// Sequence and time of the latest event that changed the crate's index lines, if one did.
    pub index_changed: Option<(u64, Timestamp)>,
}

/// The stored values of an accepted version, rendered from its `version_accepted` event
/// ([`AcceptedVersion::new`]) before its batch is folded, off the transaction's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedVersion {
    /// The crate's spelling in the index line.
    name: String,
    /// The index line, unyanked.
    entry: String,
    /// The extracted metadata (JSON).
    metadata: String,
    readme_blob: Option<String>,
    /// The search summary's description and keywords, should the version be shown.
    description: Option<String>,
    keywords: String,
}

impl AcceptedVersion {
    /// Renders the stored values of a version accepted with `entry` and `metadata`.
    pub fn new(entry: &IndexEntry, metadata: &ExtractedMetadata) -> AcceptedVersion {
        let line = if entry.yanked {
            let mut unyanked = entry.clone();
            unyanked.yanked = false;
            unyanked.to_line()
        } else {
            entry.to_line()
        };
        AcceptedVersion {
            name: entry.name.clone(),
            entry: line,
            metadata: json(metadata),
            readme_blob: metadata.readme_blob.clone(),
            description: metadata.description.clone(),
            keywords: metadata.keywords.join(" "),
        }
    }
}

/// The outcome of a verification, as stored in its version row.
#[derive(Debug)]
enum Verdict {
    Accepted {
        entry: String,
        metadata: String,
        readme_blob: Option<String>,
    },
    Rejected {
        reasons: String,
    },
}

/// A `versions` row of an earlier batch, as loaded and as changed by this batch so far.
#[derive(Debug)]
struct LoadedRow {
    upload_seq: i64,
    vers: String,
    cksum: String,
    status: &'static str,
    yanked: bool,
    /// The verdict given in this batch, if one was (the row was pending).
    verdict: Option<Verdict>,
    /// Whether the batch changed the row (a verdict, a yank or an unyank).
    changed: bool,
}

/// The search summary of a crate's accepted versions, scanned.
struct AcceptedVersions {
    /// The version shown in search, with its upload sequence.
    best: Option<(Best, i64)>,
}

impl AcceptedVersions {
    /// Finds the version shown in search among `(upload_seq, vers, yanked)` rows in upload
    /// order.
    fn scan(rows: &[(i64, String, bool)]) -> AcceptedVersions {
        let mut best: Option<(Best, i64)> = None;
        for (upload_seq, vers, yanked) in rows {
            let Ok(version) = semver::Version::parse(vers) else {
                continue;
            };
            let candidate = Best {
                version,
                yanked: *yanked,
            };
            if best.as_ref().is_none_or(|(b, _)| b.loses_to(&candidate)) {
                best = Some((candidate, *upload_seq));
            }
        }
        AcceptedVersions { best }
    }
}

impl SummaryWork {
    /// Follows a yank or unyank of the accepted `vers`.
    fn set_yanked(&mut self, vers: &str, yanked: bool) {
        if self.rescan {
            return;
        }
        let Ok(version) = semver::Version::parse(vers) else {
            return;
        };
        match &mut self.best {
            Some(best) if best.version == version => {
                if yanked && !best.yanked {
                    // Another version may be shown now: find it at the end of the batch.
                    self.rescan = true;
                }
                best.yanked = yanked;
            }
            // Yanking a version that is not shown changes nothing: the shown one is unyanked,
            // or every version is yanked already.
            _ if yanked => {}
            best => {
                let candidate = Best {
                    version,
                    yanked: false,
                };
                if best.as_ref().is_none_or(|b| b.loses_to(&candidate)) {
                    *best = Some(candidate);
                    self.metadata_of = Some(vers.to_owned());
                }
            }
        }
    }
}

/// The ETag of an index file: the sequence of the last event that changed its lines. It
/// changes whenever the bytes do (every change is a new event), and a replay of the same log
/// gives the same one, without hashing the whole file on every change.
fn index_etag(changed_seq: u64) -> String {
    format!("\"{changed_seq}\"")
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("read-model values always serialize")
}

impl ProjectionTx {
    /// Opens a transaction on `target` and locks its checkpoint (fencing a second projector of
    /// the same generation until this one commits).
    pub async fn begin(store: &Store, target: Target) -> Result<ProjectionTx, StoreError> {
        let pg = store.db.is_postgres();
        let mut tx = store.db.begin().await?;
        // Two round trips in the usual case (a batch of one event is mostly round trips): the
        // generation, with `synchronous_commit = off` for this transaction on PostgreSQL (the
        // read models are rebuilt from the log, and a lost commit only moves the checkpoint
        // back with them), then the checkpoint, created on a generation's first batch.
        let (gen_, checkpoint) = on_tx!(&mut tx, conn => {
            let gen_: i64 = match (target, pg) {
                (Target::Generation(g), false) => to_i64(g),
                (Target::Generation(g), true) => {
                    sqlx::query("SELECT set_config('synchronous_commit', 'off', true)")
                        .execute(&mut *conn)
                        .await?;
                    to_i64(g)
                }
                (Target::Active, true) => {
                    sqlx::query_scalar(
                        "SELECT gen FROM active_generation, \
                         set_config('synchronous_commit', 'off', true) WHERE id = 1 FOR SHARE \
                         OF active_generation",
                    )
                    .fetch_one(&mut *conn)
                    .await?
                }
                (Target::Active, false) => {
                    sqlx::query_scalar("SELECT gen FROM active_generation WHERE id = 1")
                        .fetch_one(&mut *conn)
                        .await?
                }
            };
            let sql = if pg {
                "SELECT last_seq FROM projector_checkpoint WHERE gen = $1 FOR UPDATE"
            } else {
                "SELECT last_seq FROM projector_checkpoint WHERE gen = $1"
            };
            let last: Option<i64> = sqlx::query_scalar(sql)
                .bind(gen_)
                .fetch_optional(&mut *conn)
                .await?;
            let last = match last {
                Some(last) => last,
                None => {
                    sqlx::query(
                        "INSERT INTO projector_checkpoint (gen, last_seq) VALUES ($1, 0) \
                         ON CONFLICT (gen) DO NOTHING",
                    )
                    .bind(gen_)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query_scalar(sql).bind(gen_).fetch_one(&mut *conn).await?
                }
            };
            (gen_, last)
        });
        Ok(ProjectionTx {
            tx,
            gen_,
            checkpoint: to_u64(checkpoint),
            new_versions: HashMap::new(),
            loaded: HashMap::new(),
            summaries: HashMap::new(),
            accepted_names: HashMap::new(),
        })
    }

    /// The generation being written.
    pub fn generation(&self) -> u64 {
        to_u64(self.gen_)
    }

    /// The checkpoint as of the start of this transaction: events up to it are already applied.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Loads the aggregate of each of `crates` that has one: its head and the uploads of the
    /// given versions (compared without build metadata), with two queries whatever the
    /// crates' histories. Crates without a row are absent.
    pub async fn load_crates(
        &mut self,
        crates: &[(&str, Vec<&str>)],
    ) -> Result<HashMap<String, CrateState>, StoreError> {
        if crates.is_empty() {
            return Ok(HashMap::new());
        }
        let canons: Vec<&str> = crates.iter().map(|(canon, _)| *canon).collect();
        let mut states = HashMap::new();
        for head in bulk::crate_heads(&mut self.tx, self.gen_, &canons).await? {
            let state: CrateHead = serde_json::from_str(&head.state)
                .map_err(|e| StoreError::Corrupt(format!("crate state of {}: {e}", head.canon)))?;
            let best = head
                .max_version
                .as_deref()
                .and_then(|v| semver::Version::parse(v).ok());
            let summary = SummaryWork {
                // A shown version without its row (or its yanked flag) is found again.
                rescan: head.max_version.is_some() && head.best_yanked.is_none(),
                best: best
                    .zip(head.best_yanked)
                    .map(|(version, yanked)| Best { version, yanked }),
                description: head.description,
                keywords: head.keywords,
                metadata_of: None,
            };
            self.summaries.insert(head.canon.clone(), summary);
            states.insert(head.canon, CrateState::from_parts(state, Vec::new()));
        }
        let wanted: Vec<(&str, &str)> = crates
            .iter()
            .filter(|(canon, _)| states.contains_key(*canon))
            .flat_map(|(canon, versions)| {
                versions
                    .iter()
                    .map(move |vers| (*canon, version_without_build(vers)))
            })
            .collect();
        for row in bulk::versions_of(&mut self.tx, self.gen_, &wanted).await? {
            let status = match row.status.as_str() {
                PENDING => VersionStatus::Pending,
                ACCEPTED => VersionStatus::Accepted,
                REJECTED => VersionStatus::Rejected,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "version status `{other}` of {}",
                        row.canon
                    )));
                }
            };
            if let Some(state) = states.get_mut(&row.canon) {
                let stored = match status {
                    VersionStatus::Pending => PENDING,
                    VersionStatus::Accepted => ACCEPTED,
                    VersionStatus::Rejected => REJECTED,
                };
                self.loaded
                    .entry(row.canon.clone())
                    .or_default()
                    .push(LoadedRow {
                        upload_seq: row.upload_seq,
                        vers: row.vers.clone(),
                        cksum: row.cksum.clone(),
                        status: stored,
                        yanked: row.yanked,
                        verdict: None,
                        changed: false,
                    });
                state.versions.push(VersionState {
                    vers: row.vers,
                    cksum: row.cksum,
                    status,
                    yanked: row.yanked,
                    uploader: row.uploader,
                });
            }
        }
        Ok(states)
    }

    /// Records an upload as pending. The caller records only uploads of versions that are not
    /// live (pending or accepted), as the aggregate does: [`accept`](Self::accept),
    /// [`reject`](Self::reject) and [`set_yanked`](Self::set_yanked) rely on it.
    pub fn insert_upload(
        &mut self,
        canon: &str,
        seq: u64,
        upload: &VersionUploaded,
        at: Timestamp,
    ) {
        self.new_versions
            .entry(canon.to_owned())
            .or_default()
            .push(VersionRow {
                canon: canon.to_owned(),
                upload_seq: to_i64(seq),
                name: upload.name.clone(),
                vers: upload.vers.clone(),
                vers_base: version_without_build(&upload.vers).to_owned(),
                cksum: upload.cksum.clone(),
                size: to_i64(upload.size),
                blob: upload.blob.clone(),
                uploader: upload.uploader.clone(),
                status: PENDING,
                yanked: false,
                yanked_line: None,
                entry: None,
                metadata: None,
                reasons: None,
                uploaded_at: at.unix_millis(),
                metadata_blob: upload.metadata_blob.clone(),
                readme_blob: None,
            });
    }

    /// Marks the pending upload of `vers`/`cksum` accepted, with its stored values.
    pub fn accept(&mut self, canon: &str, vers: &str, cksum: &str, accepted: AcceptedVersion) {
        let AcceptedVersion {
            name,
            entry,
            metadata,
            readme_blob,
            description,
            keywords,
        } = accepted;
        self.accepted_names.insert(canon.to_owned(), name);
        let summary = self.summaries.entry(canon.to_owned()).or_default();
        if !summary.rescan
            && let Ok(version) = semver::Version::parse(vers)
        {
            let candidate = Best {
                version,
                yanked: false,
            };
            if summary.best.as_ref().is_none_or(|b| b.loses_to(&candidate)) {
                summary.best = Some(candidate);
                summary.description = description;
                summary.keywords = keywords;
                summary.metadata_of = None;
            }
        }
        self.decide(
            canon,
            vers,
            cksum,
            Verdict::Accepted {
                entry,
                metadata,
                readme_blob,
            },
        );
    }

    /// Marks the pending upload of `vers`/`cksum` rejected.
    pub fn reject(&mut self, canon: &str, vers: &str, cksum: &str, reasons: &[RejectionReason]) {
        let reasons = json(&reasons);
        self.decide(canon, vers, cksum, Verdict::Rejected { reasons });
    }

    /// Applies a verdict to the pending upload of `vers`/`cksum`: to its row in memory if the
    /// upload was folded in this batch, else to the loaded row of an earlier batch (written
    /// with the batch). Both cannot match, as a version has at most one live upload; rows that
    /// were not loaded are not changed (the projector loads every upload of the versions its
    /// events mention).
    fn decide(&mut self, canon: &str, vers: &str, cksum: &str, verdict: Verdict) {
        let row = self.new_versions.get_mut(canon).and_then(|rows| {
            rows.iter_mut()
                .find(|row| row.status == PENDING && row.vers == vers && row.cksum == cksum)
        });
        match row {
            Some(row) => match verdict {
                Verdict::Accepted {
                    entry,
                    metadata,
                    readme_blob,
                } => {
                    row.status = ACCEPTED;
                    row.entry = Some(entry);
                    row.metadata = Some(metadata);
                    row.readme_blob = readme_blob;
                }
                Verdict::Rejected { reasons } => {
                    row.status = REJECTED;
                    row.reasons = Some(reasons);
                }
            },
            None => {
                let row = self.loaded.get_mut(canon).and_then(|rows| {
                    rows.iter_mut()
                        .find(|row| row.status == PENDING && row.vers == vers && row.cksum == cksum)
                });
                if let Some(row) = row {
                    row.status = match verdict {
                        Verdict::Accepted { .. } => ACCEPTED,
                        Verdict::Rejected { .. } => REJECTED,
                    };
                    row.verdict = Some(verdict);
                    row.changed = true;
                }
            }
        }
    }

    /// Sets the yanked flag of an accepted version: of its row in memory if it was folded in
    /// this batch, else of the loaded row of an earlier batch (written with the batch).
    pub fn set_yanked(&mut self, canon: &str, vers: &str, yanked: bool) {
        self.summaries
            .entry(canon.to_owned())
            .or_default()
            .set_yanked(vers, yanked);
        let row = self.new_versions.get_mut(canon).and_then(|rows| {
            rows.iter_mut()
                .find(|row| row.status == ACCEPTED && row.vers == vers)
        });
        match row {
            Some(row) => row.yanked = yanked,
            None => {
                let row = self.loaded.get_mut(canon).and_then(|rows| {
                    rows.iter_mut()
                        .find(|row| row.status == ACCEPTED && row.vers == vers)
                });
                if let Some(row) = row {
                    row.yanked = yanked;
                    row.changed = true;
                }
            }
        }
    }

    /// Writes the version changes recorded so far: the changed rows of earlier batches with
    /// one statement (their final values: the batch's verdicts and yanks were applied to them
    /// in memory, in event order), then this batch's rows with another. A yanked row stores
    /// its line while yanked; an unyanked one stores none.
    async fn write_versions(&mut self) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        let mut updates: Vec<VersionUpdate> = Vec::new();
        for (canon, rows) in &mut self.loaded {
            for row in rows.iter_mut().filter(|row| row.changed) {
                row.changed = false;
                let mut update = VersionUpdate {
                    canon: canon.clone(),
                    upload_seq: row.upload_seq,
                    status: row.status,
                    yanked: row.yanked,
                    yanked_line: None,
                    entry: None,
                    metadata: None,
                    readme_blob: None,
                    reasons: None,
                };
                match row.verdict.take() {
                    Some(Verdict::Accepted {
                        entry,
                        metadata,
                        readme_blob,
                    }) => {
                        update.entry = Some(entry);
                        update.metadata = Some(metadata);
                        update.readme_blob = readme_blob;
                    }
                    Some(Verdict::Rejected { reasons }) => update.reasons = Some(reasons),
                    None => {}
                }
                updates.push(update);
            }
        }
        if !updates.is_empty() {
            updates.sort_by(|a, b| (&a.canon, a.upload_seq).cmp(&(&b.canon, b.upload_seq)));
            // The line while yanked, from the row's own (one row, whatever the history): of
            // the verdict in memory, else as stored.
            let stored: Vec<(&str, i64)> = updates
                .iter()
                .filter(|u| u.yanked && u.entry.is_none())
                .map(|u| (u.canon.as_str(), u.upload_seq))
                .collect();
            let mut entries: HashMap<(String, i64), String> =
                bulk::version_entries(&mut self.tx, gen_, &stored)
                    .await?
                    .into_iter()
                    .filter_map(|(canon, seq, entry)| Some(((canon, seq), entry?)))
                    .collect();
            for update in &mut updates {
                if !update.yanked {
                    continue;
                }
                let entry = match &update.entry {
                    Some(entry) => Some(entry.clone()),
                    None => entries.remove(&(update.canon.clone(), update.upload_seq)),
                };
                if let Some(entry) = entry {
                    update.yanked_line = Some(yanked_line_of(&entry)?);
                }
            }
            bulk::update_versions(&mut self.tx, gen_, &updates).await?;
        }
        let mut rows: Vec<VersionRow> = std::mem::take(&mut self.new_versions)
            .into_values()
            .flatten()
            .collect();
        rows.sort_by(|a, b| (&a.canon, a.upload_seq).cmp(&(&b.canon, b.upload_seq)));
        for row in &mut rows {
            if row.yanked
                && let Some(entry) = &row.entry
            {
                row.yanked_line = Some(yanked_line_of(entry)?);
            }
        }
        bulk::insert_versions(&mut self.tx, gen_, &rows).await
    }

    /// Stores the head of each crate's aggregate (as of its event `last_seq` at `updated_at`)
    /// and its search summary, after writing the version changes recorded so far. When
    /// `index_changed` is given (sequence and time of the latest event that changed the crate's
    /// index lines), the index file's ETag and Last-Modified follow it (the lines themselves are
    /// the version rows). Each crate may appear once.
    pub async fn save_crates(&mut self, saves: &[CrateSave<'_>]) -> Result<(), StoreError> {
        self.write_versions().await?;
        if saves.is_empty() {
            return Ok(());
        }
        let mut index_files = Vec::new();
        let mut touched = Vec::new();
        let mut crates = Vec::with_capacity(saves.len());
        let canons: Vec<&str> = saves.iter().map(|save| save.canon).collect();
        let mut summaries = self.summaries_of(&canons).await?;
        for save in saves {
            let summary = summaries.remove(save.canon).unwrap_or_default();
            if let Some((changed_seq, changed_at)) = save.index_changed {
                match self.accepted_names.get(save.canon) {
                    Some(name) => index_files.push(IndexFileRow {
                        canon: save.canon.to_owned(),
                        name: name.clone(),
                        etag: index_etag(changed_seq),
                        last_modified: changed_at.unix_millis(),
                        last_seq: to_i64(changed_seq),
                    }),
                    None => touched.push(IndexFileTouch {
                        canon: save.canon.to_owned(),
                        etag: index_etag(changed_seq),
                        last_modified: changed_at.unix_millis(),
                        last_seq: to_i64(changed_seq),
                    }),
                }
            }
            crates.push(CrateRow {
                canon: save.canon.to_owned(),
                name: save.state.name().map(str::to_owned),
                state: json(&save.state.head),
                last_seq: to_i64(save.last_seq),
                description: summary.description,
                keywords: summary.keywords,
                max_version: summary.best.map(|b| b.version.to_string()),
                updated_at: save.updated_at.unix_millis(),
            });
        }
        // Yanks only: the file exists (it has an accepted version) or stays absent.
        bulk::touch_index_files(&mut self.tx, self.gen_, &touched).await?;
        self.accepted_names.clear();
        bulk::upsert_index_files(&mut self.tx, self.gen_, &index_files).await?;
        bulk::upsert_crates(&mut self.tx, self.gen_, &crates).await
    }

    /// The search summaries of `canons` after the batch's changes: kept up to date event by
    /// event, with the accepted versions scanned only for crates whose shown version was
    /// yanked, and one row's metadata read for each crate whose shown version changed to
    /// another (a rescan, or an unyank): three queries at most, whatever the number of crates.
    async fn summaries_of(
        &mut self,
        canons: &[&str],
    ) -> Result<HashMap<String, SummaryWork>, StoreError> {
        let gen_ = self.gen_;
        let mut summaries = HashMap::with_capacity(canons.len());
        let mut rescan: Vec<&str> = Vec::new();
        let mut lookups: Vec<(&str, String)> = Vec::new();
        for &canon in canons {
            let mut summary = self.summaries.remove(canon).unwrap_or_default();
            if summary.rescan {
                rescan.push(canon);
            } else if let Some(vers) = summary.metadata_of.take() {
                lookups.push((canon, vers));
            }
            summaries.insert(canon.to_owned(), summary);
        }
        // The row whose metadata gives each crate's description and keywords.
        let mut metadata_of: Vec<(&str, i64)> = Vec::new();
        if !rescan.is_empty() {
            let mut rows = bulk::accepted_versions_of(&mut self.tx, gen_, &rescan).await?;
            rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            let mut by_crate: HashMap<&str, Vec<(i64, String, bool)>> = HashMap::new();
            for (canon, seq, vers, yanked) in &rows {
                by_crate
                    .entry(canon.as_str())
                    .or_default()
                    .push((*seq, vers.clone(), *yanked));
            }
            for &canon in &rescan {
                let scanned =
                    AcceptedVersions::scan(by_crate.get(canon).map_or(&[][..], Vec::as_slice));
                if let Some(summary) = summaries.get_mut(canon) {
                    if let Some((_, seq)) = &scanned.best {
                        metadata_of.push((canon, *seq));
                    }
                    summary.best = scanned.best.map(|(best, _)| best);
                    summary.description = None;
                    summary.keywords = String::new();
                }
            }
        }
        if !lookups.is_empty() {
            let wanted: Vec<(&str, &str)> = lookups
                .iter()
                .map(|(canon, vers)| (*canon, vers.as_str()))
                .collect();
            let found: HashMap<String, i64> =
                bulk::accepted_upload_seqs(&mut self.tx, gen_, &wanted)
                    .await?
                    .into_iter()
                    .collect();
            for (canon, _) in &lookups {
                if let Some(seq) = found.get(*canon) {
                    metadata_of.push((canon, *seq));
                }
            }
        }
        if !metadata_of.is_empty() {
            let mut texts: HashMap<String, Option<String>> =
                bulk::version_metadata(&mut self.tx, gen_, &metadata_of)
                    .await?
                    .into_iter()
                    .collect();
            for (canon, _) in &metadata_of {
                let metadata: ExtractedMetadata = match texts.remove(*canon).flatten() {
                    Some(text) => serde_json::from_str(&text)
                        .map_err(|e| StoreError::Corrupt(format!("metadata of {canon}: {e}")))?,
                    None => ExtractedMetadata::default(),
                };
                if let Some(summary) = summaries.get_mut(*canon) {
                    summary.description = metadata.description;
                    summary.keywords = metadata.keywords.join(" ");
                }
            }
        }
        Ok(summaries)
    }

    /// Records an issued token (and, for a personal token of a user never created
    /// explicitly, its user: logs written before `user_created` existed create users so).
    pub async fn issue_token(
        &mut self,
        token: &TokenIssued,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        let login = token.user.to_ascii_lowercase();
        let personal = token.kind == TokenKind::Personal;
        on_tx!(&mut self.tx, conn => {
            if personal {
                sqlx::query(
                    "INSERT INTO users (gen, login, display, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (gen, login) DO NOTHING",
                )
                .bind(gen_)
                .bind(&login)
                .bind(&token.user)
                .bind(at.unix_millis())
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "INSERT INTO tokens (gen, token_id, login, secret_sha256, kind, label, scopes, \
                 crates, expires_at, created_at, created_by, read_crates) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (gen, token_id) DO NOTHING",
            )
            .bind(gen_)
            .bind(token.token_id.to_string())
            .bind(&login)
            .bind(&token.secret_sha256)
            .bind(token.kind.as_str())
            .bind(&token.label)
            .bind(json(&token.scopes))
            .bind(json(&token.crates))
            .bind(token.expires_at.map(Timestamp::unix_millis))
            .bind(at.unix_millis())
            .bind(&token.created_by)
            .bind(token.read_crates.as_ref().map(json))
            .execute(&mut *conn)
            .await?;
        });
        Ok(())
    }

    /// Marks a token revoked.
    pub async fn revoke_token(&mut self, token_id: uuid::Uuid) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query("UPDATE tokens SET revoked = true WHERE gen = $1 AND token_id = $2")
                .bind(gen_)
                .bind(token_id.to_string())
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Records a created user (an existing one, created implicitly by an older token, takes
    /// the role given here).
    pub async fn create_user(
        &mut self,
        user: &UserCreated,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO users (gen, login, display, created_at, admin) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (gen, login) DO UPDATE SET admin = excluded.admin",
            )
            .bind(gen_)
            .bind(user.login.to_ascii_lowercase())
            .bind(&user.login)
            .bind(at.unix_millis())
            .bind(user.admin)
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Disables or enables a user.
    pub async fn set_user_disabled(
        &mut self,
        login: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query("UPDATE users SET disabled = $3 WHERE gen = $1 AND login = $2")
                .bind(gen_)
                .bind(login.to_ascii_lowercase())
                .bind(disabled)
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Records a crate's trust in an OIDC issuer (trusted publishing).
    pub async fn add_trust(
        &mut self,
        canon: &str,
        trust: &TrustAdded,
        actor: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query(
                "INSERT INTO trusts (gen, trust_id, canon, issuer, policy, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (gen, trust_id) DO NOTHING",
            )
            .bind(gen_)
            .bind(trust.trust_id.to_string())
            .bind(canon)
            .bind(&trust.issuer)
            .bind(json(trust))
            .bind(actor)
            .bind(at.unix_millis())
            .execute(conn)
            .await?;
        });
        Ok(())
    }

    /// Removes a crate's trust.
    pub async fn remove_trust(
        &mut self,
        canon: &str,
        trust_id: uuid::Uuid,
    ) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query("DELETE FROM trusts WHERE gen = $1 AND trust_id = $2 AND canon = $3")
                .bind(gen_)
                .bind(trust_id.to_string())
                .bind(canon)
                .execute(conn)
                .await?;
        });
        Ok(())
    }

    /// Limits publishing a crate to trusted-publishing tokens, or lifts the limit.
    pub async fn set_trusted_only(&mut self, canon: &str, enabled: bool) -> Result<(), StoreError> {
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            if enabled {
                sqlx::query(
                    "INSERT INTO trusted_only (gen, canon) VALUES ($1, $2) \
                     ON CONFLICT (gen, canon) DO NOTHING",
                )
                .bind(gen_)
                .bind(canon)
                .execute(conn)
                .await?;
            } else {
                sqlx::query("DELETE FROM trusted_only WHERE gen = $1 AND canon = $2")
                    .bind(gen_)
                    .bind(canon)
                    .execute(conn)
                    .await?;
            }
        });
        Ok(())
    }

    /// Writes what is still recorded in memory, moves the checkpoint to `last_seq` and commits
    /// everything.
    pub async fn commit(mut self, last_seq: u64) -> Result<(), StoreError> {
        self.write_versions().await?;
        let gen_ = self.gen_;
        on_tx!(&mut self.tx, conn => {
            sqlx::query("UPDATE projector_checkpoint SET last_seq = $2 WHERE gen = $1")
                .bind(gen_)
                .bind(to_i64(last_seq))
                .execute(conn)
                .await?;
        });
        self.tx.commit().await
    }
}
