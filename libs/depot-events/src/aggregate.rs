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

/// What every command on a crate decides on, whatever the crate's history: its name, its
/// owners and how many of its uploads are live. Stored as it is; its size does not grow with
/// the number of versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrateHead {
    /// The spelling the crate was first published with; `None` while no upload is live.
    pub name: Option<String>,
    /// Logins of the owners, sorted.
    pub owners: Vec<String>,
    /// How many uploads are pending or accepted: the name is free again when the last one is
    /// rejected.
    #[serde(default)]
    pub live: u64,
    /// When the last event was applied.
    pub updated_at: Option<Timestamp>,
}

/// The fold of one crate's events: its head, and the uploads of some or all of its versions.
///
/// A fold of the whole history holds every upload. A command or a projection batch holds only
/// the uploads of the versions it decides on (compared without build metadata; see
/// [`CrateState::from_parts`] and [`version_of`]): every rule here looks at the head and at
/// the uploads of one version at a time, so a state with all uploads of the versions its
/// events mention folds those events exactly as the whole history would.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrateState {
    /// Name, owners and the number of live uploads.
    pub head: CrateHead,
    /// Uploads in log order (rejected ones included): all of them, or all of those of the
    /// versions this state was loaded for.
    pub versions: Vec<VersionState>,
}

/// The version a crate event is about, if it is about one (uploads, verdicts, yanks).
pub fn version_of(event: &Event) -> Option<&str> {
    match event {
        Event::VersionUploaded(upload) => Some(&upload.vers),
        Event::VersionAccepted(outcome) => Some(&outcome.vers),
        Event::VersionRejected(outcome) => Some(&outcome.vers),
        Event::VersionYanked(toggle) | Event::VersionUnyanked(toggle) => Some(&toggle.vers),
        Event::OwnersAdded(_)
        | Event::OwnersRemoved(_)
        | Event::TokenIssued(_)
        | Event::TokenRevoked(_)
        | Event::UserCreated(_)
        | Event::UserDisabled(_)
        | Event::UserEnabled(_)
        | Event::TrustAdded(_)
        | Event::TrustRemoved(_)
        | Event::TrustedOnlySet(_)
        | Event::UpstreamIndexStored(_)
        | Event::UpstreamCrateStored(_)
        | Event::UpstreamNameAllowed(_)
        | Event::DocsUploaded(_)
        | Event::WebhookSubscribed(_)
        | Event::WebhookUnsubscribed(_)
        | Event::Unknown { .. } => None,
    }
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
    /// A state from a stored head and the uploads of the versions it is loaded for: every
    /// upload whose version, without build metadata, is one of them, in log order.
    pub fn from_parts(head: CrateHead, versions: Vec<VersionState>) -> CrateState {
        CrateState { head, versions }
    }

    /// The crate's spelling, while an upload is live.
    pub fn name(&self) -> Option<&str> {
        self.head.name.as_deref()
    }

    /// Logins of the owners, sorted.
    pub fn owners(&self) -> &[String] {
        &self.head.owners
    }

    /// Whether the crate exists (has an upload that is pending or accepted).
    pub fn exists(&self) -> bool {
        self.head.name.is_some()
    }

    /// Whether `user` owns the crate.
    pub fn is_owner(&self, user: &str) -> bool {
        self.head
            .owners
            .iter()
            .any(|o| o.eq_ignore_ascii_case(user))
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
        if let Some(existing) = &self.head.name
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
        self.head.updated_at = Some(envelope.at);
        match &envelope.event {
            Event::VersionUploaded(upload) => {
                if self.live_version(&upload.vers).is_some() {
                    return;
                }
                if !self.exists() {
                    self.head.name = Some(upload.name.clone());
                    self.head.owners = vec![upload.uploader.clone()];
                }
                self.head.live += 1;
                self.versions.push(VersionState {
                    vers: upload.vers.clone(),
                    cksum: upload.cksum.clone(),
                    status: VersionStatus::Pending,
                    yanked: false,
                    uploader: upload.uploader.clone(),
                });
            }
            Event::VersionAccepted(outcome) => {
                self.decide(&outcome.vers, &outcome.cksum, VersionStatus::Accepted);
            }
            Event::VersionRejected(outcome) => {
                if self.decide(&outcome.vers, &outcome.cksum, VersionStatus::Rejected) {
                    self.head.live = self.head.live.saturating_sub(1);
                }
                if self.head.live == 0 {
                    self.head.name = None;
                    self.head.owners.clear();
                }
            }
            Event::VersionYanked(toggle) => self.set_yanked(&toggle.vers, true),
            Event::VersionUnyanked(toggle) => self.set_yanked(&toggle.vers, false),
            Event::OwnersAdded(change) => {
                for owner in &change.owners {
                    if !self.is_owner(owner) {
                        self.head.owners.push(owner.clone());
                    }
                }
                self.head.owners.sort();
            }
            Event::OwnersRemoved(change) => self
                .head
                .owners
                .retain(|o| !change.owners.iter().any(|r| r.eq_ignore_ascii_case(o))),
            Event::TokenIssued(_)
            | Event::TokenRevoked(_)
            | Event::UserCreated(_)
            | Event::UserDisabled(_)
            | Event::UserEnabled(_)
            | Event::TrustAdded(_)
            | Event::TrustRemoved(_)
            | Event::TrustedOnlySet(_)
            | Event::UpstreamIndexStored(_)
            | Event::UpstreamCrateStored(_)
            | Event::UpstreamNameAllowed(_)
            | Event::DocsUploaded(_)
            | Event::WebhookSubscribed(_)
            | Event::WebhookUnsubscribed(_)
            | Event::Unknown { .. } => {}
        }
    }

    /// Decides the pending upload of `vers`/`cksum`; returns whether there was one.
    fn decide(&mut self, vers: &str, cksum: &str, status: VersionStatus) -> bool {
        match self
            .versions
            .iter_mut()
            .find(|v| v.status == VersionStatus::Pending && v.vers == vers && v.cksum == cksum)
        {
            Some(v) => {
                v.status = status;
                true
            }
            None => false,
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
        assert!(state.decide(vers, cksum, VersionStatus::Accepted));
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
            token_id: None,
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
            token_id: None,
        })));
        assert_eq!(state.owners(), ["alice", "bob"]);
        state.apply(&env(Event::OwnersRemoved(OwnersChanged {
            owners: vec!["BOB".into()],
            token_id: None,
        })));
        assert_eq!(state.owners(), ["alice"]);
    }

    /// Events on one crate drawn from a few versions (two of them equal without build
    /// metadata), checksums, spellings and users.
    fn any_event() -> impl proptest::strategy::Strategy<Value = Event> {
        use proptest::prelude::*;
        let vers = prop::sample::select(vec!["1.0.0", "1.0.0+build", "1.1.0", "2.0.0-rc.1"]);
        let cksum = prop::sample::select(vec!["a", "b"]);
        let user = prop::sample::select(vec!["alice", "Bob", "carol"]);
        let name = prop::sample::select(vec!["foo", "Foo"]);
        let toggle = |vers: &str| VersionYankToggled {
            vers: vers.into(),
            message: None,
            token_id: None,
        };
        prop_oneof![
            (name, vers.clone(), cksum.clone(), user.clone()).prop_map(|(n, v, c, u)| {
                match upload(n, v, c, u).event {
                    event @ Event::VersionUploaded(_) => event,
                    _ => unreachable!("an upload"),
                }
            }),
            (vers.clone(), cksum.clone()).prop_map(|(v, c)| {
                Event::VersionAccepted(crate::VersionAccepted {
                    vers: v.into(),
                    cksum: c.into(),
                    entry: depot_index::IndexEntry::new(
                        "foo".into(),
                        v.into(),
                        Vec::new(),
                        c.into(),
                        depot_index::FeatureMap::new(),
                        None,
                        None,
                        None,
                    ),
                    metadata: crate::ExtractedMetadata::default(),
                })
            }),
            (vers.clone(), cksum).prop_map(|(v, c)| {
                Event::VersionRejected(VersionRejected {
                    vers: v.into(),
                    cksum: c.into(),
                    reasons: Vec::new(),
                })
            }),
            vers.clone()
                .prop_map(move |v| Event::VersionYanked(toggle(v))),
            vers.prop_map(move |v| Event::VersionUnyanked(toggle(v))),
            user.clone().prop_map(|u| Event::OwnersAdded(OwnersChanged {
                owners: vec![u.into()],
                token_id: None,
            })),
            user.prop_map(|u| Event::OwnersRemoved(OwnersChanged {
                owners: vec![u.into()],
                token_id: None,
            })),
        ]
    }

    proptest::proptest! {
        /// A state loaded as commands and the projector load it (the stored head, the uploads
        /// of the version asked about and of the versions the log tail mentions) and then
        /// folded over the tail decides exactly as the fold of the whole history.
        #[test]
        fn a_partial_state_decides_like_the_whole_history(
            events in proptest::collection::vec(any_event(), 0..40),
            split in 0_usize..40,
            probe in proptest::sample::select(vec!["1.0.0", "1.0.0+other", "1.1.0", "2.0.0-rc.1", "3.0.0"]),
        ) {
            let envelopes: Vec<Envelope> = events.into_iter().map(env).collect();
            let split = split.min(envelopes.len());
            let mut full = CrateState::default();
            for envelope in &envelopes {
                full.apply(envelope);
            }
            let mut stored = CrateState::default();
            for envelope in &envelopes[..split] {
                stored.apply(envelope);
            }
            let tail = &envelopes[split..];
            let mut wanted: Vec<&str> = tail
                .iter()
                .filter_map(|e| version_of(&e.event))
                .map(version_without_build)
                .collect();
            wanted.push(version_without_build(probe));
            let versions = stored
                .versions
                .iter()
                .filter(|v| wanted.contains(&version_without_build(&v.vers)))
                .cloned()
                .collect();
            let mut partial = CrateState::from_parts(stored.head.clone(), versions);
            for envelope in tail {
                partial.apply(envelope);
            }
            proptest::prop_assert_eq!(&partial.head, &full.head);
            proptest::prop_assert_eq!(partial.live_version(probe), full.live_version(probe));
            proptest::prop_assert_eq!(partial.accepted_version(probe), full.accepted_version(probe));
            for (name, cksum) in [("foo", "a"), ("Foo", "b"), ("foo", "c")] {
                proptest::prop_assert_eq!(
                    partial.check_publish(name, probe, cksum),
                    full.check_publish(name, probe, cksum)
                );
            }
            proptest::prop_assert_eq!(
                full.head.live,
                full.live_versions().count() as u64
            );
        }
    }
}
