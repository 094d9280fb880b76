//! The crate aggregate: what one crate's events add up to, and the rules commands are checked
//! against before the api appends anything.

use serde::{Deserialize, Serialize};

use crate::{Envelope, Event, Timestamp};

/// Where one upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Uploaded, waiting for the extractor.
    Pending,
    /// Accepted: in the index.
    Accepted,
    /// Rejected: the version number is free again.
    Rejected,
}

/// One upload of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    /// The version as published.
    pub vers: String,
    /// The checksum of the upload.
    pub cksum: String,
    /// Pending, accepted or rejected.
    pub status: VersionStatus,
    /// Whether the version is yanked.
    pub yanked: bool,
    /// The login of the uploader.
    pub uploader: String,
}

/// The fold of one crate's events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrateState {
    /// The spelling the crate was first published with; `None` while no upload is live.
    pub name: Option<String>,
    /// Logins of the owners, sorted.
    pub owners: Vec<String>,
    /// Every upload, in log order (rejected ones included).
    pub versions: Vec<VersionState>,
    /// When the last event was applied.
    pub updated_at: Option<Timestamp>,
}

/// What a publish of a version amounts to, given the crate's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishCheck {
    /// A new version: append `version_uploaded`. `new_crate` is true for the first one.
    Append {
        /// Whether this creates the crate.
        new_crate: bool,
    },
    /// The same bytes were already accepted: succeed without appending.
    AlreadyAccepted,
    /// The same bytes are already being checked: wait for the outcome without appending.
    AlreadyPending,
}

/// Why a publish is refused by the aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    /// The crate exists under another spelling.
    #[error("crate was previously named `{existing}`")]
    NameSpelling {
        /// The existing spelling.
        existing: String,
    },
    /// The version (ignoring build metadata) is taken by other bytes.
    #[error("crate version `{vers}` is already uploaded")]
    VersionTaken {
        /// The version without build metadata.
        vers: String,
    },
}

/// `vers` without build metadata (`1.0.0+abc` → `1.0.0`).
pub fn version_without_build(vers: &str) -> &str {
    vers.split_once('+').map_or(vers, |(head, _)| head)
}

impl CrateState {
    /// Whether the crate exists (has an upload that is pending or accepted).
    pub fn exists(&self) -> bool {
        self.name.is_some()
    }

    /// Whether `user` owns the crate.
    pub fn is_owner(&self, user: &str) -> bool {
        self.owners.iter().any(|o| o.eq_ignore_ascii_case(user))
    }

    /// Uploads that are pending or accepted.
    pub fn live_versions(&self) -> impl Iterator<Item = &VersionState> {
        self.versions
            .iter()
            .filter(|v| v.status != VersionStatus::Rejected)
    }

    /// The live upload of `vers`, compared without build metadata.
    pub fn live_version(&self, vers: &str) -> Option<&VersionState> {
        let wanted = version_without_build(vers);
        self.live_versions()
            .find(|v| version_without_build(&v.vers) == wanted)
    }

    /// The accepted upload whose version is exactly `vers`.
    pub fn accepted_version(&self, vers: &str) -> Option<&VersionState> {
        self.versions
            .iter()
            .find(|v| v.status == VersionStatus::Accepted && v.vers == vers)
    }

    /// Checks a publish of `name`/`vers` with checksum `cksum` against the crate's state.
    /// Ownership is checked separately (see [`CrateState::is_owner`]).
    pub fn check_publish(
        &self,
        name: &str,
        vers: &str,
        cksum: &str,
    ) -> Result<PublishCheck, PublishRefusal> {
        if let Some(existing) = &self.name
            && existing != name
        {
            return Err(PublishRefusal::NameSpelling {
                existing: existing.clone(),
            });
        }
        match self.live_version(vers) {
            Some(v) if v.cksum == cksum && v.vers == vers => Ok(match v.status {
                VersionStatus::Accepted => PublishCheck::AlreadyAccepted,
                _ => PublishCheck::AlreadyPending,
            }),
            Some(_) => Err(PublishRefusal::VersionTaken {
                vers: version_without_build(vers).to_owned(),
            }),
            None => Ok(PublishCheck::Append {
                new_crate: !self.exists(),
            }),
        }
    }

    /// Folds one event into the state. Applying an event twice is harmless: outcomes for
    /// uploads already decided, and repeated uploads of live versions, are ignored.
    pub fn apply(&mut self, envelope: &Envelope) {
        self.updated_at = Some(envelope.at);
        match &envelope.event {
            Event::VersionUploaded(upload) => {
                if self.live_version(&upload.vers).is_some() {
                    return;
                }
                if !self.exists() {
                    self.name = Some(upload.name.clone());
                    self.owners = vec![upload.uploader.clone()];
                }
                self.versions.push(VersionState {
                    vers: upload.vers.clone(),
                    cksum: upload.cksum.clone(),
                    status: VersionStatus::Pending,
                    yanked: false,
                    uploader: upload.uploader.clone(),
                });
            }
            Event::VersionAccepted(outcome) => {
                self.decide(&outcome.vers, &outcome.cksum, VersionStatus::Accepted)
            }
            Event::VersionRejected(outcome) => {
                self.decide(&outcome.vers, &outcome.cksum, VersionStatus::Rejected);
                if self.live_versions().next().is_none() {
                    self.name = None;
                    self.owners.clear();
                }
            }
            Event::VersionYanked(toggle) => self.set_yanked(&toggle.vers, true),
            Event::VersionUnyanked(toggle) => self.set_yanked(&toggle.vers, false),
            Event::OwnersAdded(change) => {
                for owner in &change.owners {
                    if !self.is_owner(owner) {
                        self.owners.push(owner.clone());
                    }
                }
                self.owners.sort();
            }
            Event::OwnersRemoved(change) => self
                .owners
                .retain(|o| !change.owners.iter().any(|r| r.eq_ignore_ascii_case(o))),
            Event::TokenIssued(_) | Event::TokenRevoked(_) | Event::Unknown { .. } => {}
        }
    }

    fn decide(&mut self, vers: &str, cksum: &str, status: VersionStatus) {
        if let Some(v) = self
            .versions
            .iter_mut()
            .find(|v| v.status == VersionStatus::Pending && v.vers == vers && v.cksum == cksum)
        {
            v.status = status;
        }
    }

    fn set_yanked(&mut self, vers: &str, yanked: bool) {
        if let Some(v) = self
            .versions
            .iter_mut()
            .find(|v| v.status == VersionStatus::Accepted && v.vers == vers)
        {
            v.yanked = yanked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        OwnersChanged, RejectionReason, VersionRejected, VersionUploaded, VersionYankToggled,
    };

    fn env(event: Event) -> Envelope {
        Envelope::new("alice", event)
    }

    fn upload(name: &str, vers: &str, cksum: &str, who: &str) -> Envelope {
        env(Event::VersionUploaded(VersionUploaded {
            name: name.into(),
            vers: vers.into(),
            cksum: cksum.into(),
            size: 1,
            blob: String::new(),
            metadata: serde_json::Value::Null,
            metadata_blob: None,
            uploader: who.into(),
            token_id: None,
        }))
    }

    fn accept(state: &mut CrateState, vers: &str, cksum: &str) {
        state.decide(vers, cksum, VersionStatus::Accepted);
    }

    #[test]
    fn first_upload_creates_crate_and_owner() {
        let mut state = CrateState::default();
        assert_eq!(
            state.check_publish("Foo", "1.0.0", "a"),
            Ok(PublishCheck::Append { new_crate: true })
        );
        state.apply(&upload("Foo", "1.0.0", "a", "alice"));
        assert!(state.exists());
        assert!(state.is_owner("alice"));
        assert_eq!(
            state.check_publish("Foo", "1.0.0", "a"),
            Ok(PublishCheck::AlreadyPending)
        );
        accept(&mut state, "1.0.0", "a");
        assert_eq!(
            state.check_publish("Foo", "1.0.0", "a"),
            Ok(PublishCheck::AlreadyAccepted)
        );
        assert_eq!(
            state.check_publish("Foo", "1.0.0+build", "b"),
            Err(PublishRefusal::VersionTaken {
                vers: "1.0.0".into()
            })
        );
        assert_eq!(
            state.check_publish("foo", "1.1.0", "b"),
            Err(PublishRefusal::NameSpelling {
                existing: "Foo".into()
            })
        );
        assert_eq!(
            state.check_publish("Foo", "1.1.0", "b"),
            Ok(PublishCheck::Append { new_crate: false })
        );
    }

    #[test]
    fn yanked_versions_stay_taken() {
        let mut state = CrateState::default();
        state.apply(&upload("foo", "1.0.0", "a", "alice"));
        accept(&mut state, "1.0.0", "a");
        state.apply(&env(Event::VersionYanked(VersionYankToggled {
            vers: "1.0.0".into(),
            message: None,
        })));
        assert!(state.accepted_version("1.0.0").unwrap().yanked);
        assert!(state.check_publish("foo", "1.0.0", "b").is_err());
    }

    #[test]
    fn rejection_frees_the_version_and_the_name() {
        let mut state = CrateState::default();
        state.apply(&upload("foo", "1.0.0", "a", "alice"));
        let rejected = env(Event::VersionRejected(VersionRejected {
            vers: "1.0.0".into(),
            cksum: "a".into(),
            reasons: vec![RejectionReason {
                code: "x".into(),
                detail: "y".into(),
            }],
        }));
        state.apply(&rejected);
        state.apply(&rejected);
        assert!(!state.exists());
        assert_eq!(
            state.check_publish("Foo", "1.0.0", "b"),
            Ok(PublishCheck::Append { new_crate: true })
        );
    }

    #[test]
    fn owners_change_case_insensitively() {
        let mut state = CrateState::default();
        state.apply(&upload("foo", "1.0.0", "a", "alice"));
        state.apply(&env(Event::OwnersAdded(OwnersChanged {
            owners: vec!["bob".into(), "Alice".into()],
        })));
        assert_eq!(state.owners, vec!["alice", "bob"]);
        state.apply(&env(Event::OwnersRemoved(OwnersChanged {
            owners: vec!["BOB".into()],
        })));
        assert_eq!(state.owners, vec!["alice"]);
    }
}
