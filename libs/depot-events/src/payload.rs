//! Event payloads (the `data` of an envelope).
//!
//! Rules for changing this file: add fields only as `Option` or with `#[serde(default)]`, never
//! rename or remove one, never use `deny_unknown_fields`, and update the golden tests.

use depot_index::IndexEntry;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Timestamp;

/// Every kind of event in the log.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "events are handled one at a time; boxing would only complicate every match"
)]
pub enum Event {
    /// The api stored an upload and asks for it to be checked (`version_uploaded`).
    VersionUploaded(VersionUploaded),
    /// The extractor found the upload valid; it carries the index line (`version_accepted`).
    VersionAccepted(VersionAccepted),
    /// The extractor refused the upload (`version_rejected`).
    VersionRejected(VersionRejected),
    /// A version was yanked (`version_yanked`).
    VersionYanked(VersionYankToggled),
    /// A version was unyanked (`version_unyanked`).
    VersionUnyanked(VersionYankToggled),
    /// Users became owners of a crate (`owners_added`).
    OwnersAdded(OwnersChanged),
    /// Users stopped being owners of a crate (`owners_removed`).
    OwnersRemoved(OwnersChanged),
    /// An API token was issued (`token_issued`).
    TokenIssued(TokenIssued),
    /// An API token was revoked (`token_revoked`).
    TokenRevoked(TokenRevoked),
    /// A user account was created (`user_created`).
    UserCreated(UserCreated),
    /// A user account was disabled: its tokens stop working (`user_disabled`).
    UserDisabled(UserChanged),
    /// A disabled user account was enabled again (`user_enabled`).
    UserEnabled(UserChanged),
    /// A crate trusts ID tokens of an OIDC issuer that carry the given claims
    /// (`trust_added`).
    TrustAdded(TrustAdded),
    /// A trust was removed (`trust_removed`).
    TrustRemoved(TrustRemoved),
    /// Publishing a crate was limited to trusted-publishing tokens, or opened again
    /// (`trusted_only_set`).
    TrustedOnlySet(TrustedOnlySet),
    /// A new body of an upstream registry's index file was stored (`upstream_index_stored`).
    UpstreamIndexStored(UpstreamIndexStored),
    /// An upstream `.crate` was fetched, verified and stored (`upstream_crate_stored`).
    UpstreamCrateStored(UpstreamCrateStored),
    /// An admin allowed a new private crate to take a name that exists upstream, or withdrew
    /// that permission (`upstream_name_allowed`).
    UpstreamNameAllowed(UpstreamNameAllowed),
    /// The rustdoc output of a version was uploaded; it replaces any earlier docs of that
    /// version (`docs_uploaded`).
    DocsUploaded(DocsUploaded),
    /// An admin subscribed a URL to crate events (`webhook_subscribed`, on
    /// `webhook.<subscription id>`).
    WebhookSubscribed(WebhookSubscribed),
    /// A webhook subscription was removed (`webhook_unsubscribed`).
    WebhookUnsubscribed(WebhookUnsubscribed),
    /// An event type this build does not know (written by a newer build).
    Unknown {
        /// The `type` of the envelope.
        kind: String,
        /// The `data` of the envelope, kept as is.
        data: serde_json::Value,
    },
}

impl Event {
    /// The `type` name of the event.
    pub fn kind(&self) -> &str {
        match self {
            Event::VersionUploaded(_) => "version_uploaded",
            Event::VersionAccepted(_) => "version_accepted",
            Event::VersionRejected(_) => "version_rejected",
            Event::VersionYanked(_) => "version_yanked",
            Event::VersionUnyanked(_) => "version_unyanked",
            Event::OwnersAdded(_) => "owners_added",
            Event::OwnersRemoved(_) => "owners_removed",
            Event::TokenIssued(_) => "token_issued",
            Event::TokenRevoked(_) => "token_revoked",
            Event::UserCreated(_) => "user_created",
            Event::UserDisabled(_) => "user_disabled",
            Event::UserEnabled(_) => "user_enabled",
            Event::TrustAdded(_) => "trust_added",
            Event::TrustRemoved(_) => "trust_removed",
            Event::TrustedOnlySet(_) => "trusted_only_set",
            Event::UpstreamIndexStored(_) => "upstream_index_stored",
            Event::UpstreamCrateStored(_) => "upstream_crate_stored",
            Event::UpstreamNameAllowed(_) => "upstream_name_allowed",
            Event::DocsUploaded(_) => "docs_uploaded",
            Event::WebhookSubscribed(_) => "webhook_subscribed",
            Event::WebhookUnsubscribed(_) => "webhook_unsubscribed",
            Event::Unknown { kind, .. } => kind,
        }
    }

    pub(crate) fn data_json(&self) -> serde_json::Value {
        fn json(value: &impl Serialize) -> serde_json::Value {
            serde_json::to_value(value).expect("event payloads always serialize")
        }
        match self {
            Event::VersionUploaded(d) => json(d),
            Event::VersionAccepted(d) => json(d),
            Event::VersionRejected(d) => json(d),
            Event::VersionYanked(d) | Event::VersionUnyanked(d) => json(d),
            Event::OwnersAdded(d) | Event::OwnersRemoved(d) => json(d),
            Event::TokenIssued(d) => json(d),
            Event::TokenRevoked(d) => json(d),
            Event::UserCreated(d) => json(d),
            Event::UserDisabled(d) | Event::UserEnabled(d) => json(d),
            Event::TrustAdded(d) => json(d),
            Event::TrustRemoved(d) => json(d),
            Event::TrustedOnlySet(d) => json(d),
            Event::UpstreamIndexStored(d) => json(d),
            Event::UpstreamCrateStored(d) => json(d),
            Event::UpstreamNameAllowed(d) => json(d),
            Event::DocsUploaded(d) => json(d),
            Event::WebhookSubscribed(d) => json(d),
            Event::WebhookUnsubscribed(d) => json(d),
            Event::Unknown { data, .. } => data.clone(),
        }
    }

    /// [`Event::from_parts`] from the text of `data`, parsed once into the typed payload.
    pub(crate) fn from_raw(kind: &str, data: &str) -> serde_json::Result<Event> {
        use serde_json::from_str as parse;
        Ok(match kind {
            "version_uploaded" => Event::VersionUploaded(parse(data)?),
            "version_accepted" => Event::VersionAccepted(parse(data)?),
            "version_rejected" => Event::VersionRejected(parse(data)?),
            "version_yanked" => Event::VersionYanked(parse(data)?),
            "version_unyanked" => Event::VersionUnyanked(parse(data)?),
            "owners_added" => Event::OwnersAdded(parse(data)?),
            "owners_removed" => Event::OwnersRemoved(parse(data)?),
            "token_issued" => Event::TokenIssued(parse(data)?),
            "token_revoked" => Event::TokenRevoked(parse(data)?),
            "user_created" => Event::UserCreated(parse(data)?),
            "user_disabled" => Event::UserDisabled(parse(data)?),
            "user_enabled" => Event::UserEnabled(parse(data)?),
            "trust_added" => Event::TrustAdded(parse(data)?),
            "trust_removed" => Event::TrustRemoved(parse(data)?),
            "trusted_only_set" => Event::TrustedOnlySet(parse(data)?),
            "upstream_index_stored" => Event::UpstreamIndexStored(parse(data)?),
            "upstream_crate_stored" => Event::UpstreamCrateStored(parse(data)?),
            "upstream_name_allowed" => Event::UpstreamNameAllowed(parse(data)?),
            "docs_uploaded" => Event::DocsUploaded(parse(data)?),
            "webhook_subscribed" => Event::WebhookSubscribed(parse(data)?),
            "webhook_unsubscribed" => Event::WebhookUnsubscribed(parse(data)?),
            other => Event::Unknown {
                kind: other.to_owned(),
                data: parse(data)?,
            },
        })
    }

    pub(crate) fn from_parts(kind: &str, data: serde_json::Value) -> serde_json::Result<Event> {
        use serde_json::from_value as parse;
        Ok(match kind {
            "version_uploaded" => Event::VersionUploaded(parse(data)?),
            "version_accepted" => Event::VersionAccepted(parse(data)?),
            "version_rejected" => Event::VersionRejected(parse(data)?),
            "version_yanked" => Event::VersionYanked(parse(data)?),
            "version_unyanked" => Event::VersionUnyanked(parse(data)?),
            "owners_added" => Event::OwnersAdded(parse(data)?),
            "owners_removed" => Event::OwnersRemoved(parse(data)?),
            "token_issued" => Event::TokenIssued(parse(data)?),
            "token_revoked" => Event::TokenRevoked(parse(data)?),
            "user_created" => Event::UserCreated(parse(data)?),
            "user_disabled" => Event::UserDisabled(parse(data)?),
            "user_enabled" => Event::UserEnabled(parse(data)?),
            "trust_added" => Event::TrustAdded(parse(data)?),
            "trust_removed" => Event::TrustRemoved(parse(data)?),
            "trusted_only_set" => Event::TrustedOnlySet(parse(data)?),
            "upstream_index_stored" => Event::UpstreamIndexStored(parse(data)?),
            "upstream_crate_stored" => Event::UpstreamCrateStored(parse(data)?),
            "upstream_name_allowed" => Event::UpstreamNameAllowed(parse(data)?),
            "docs_uploaded" => Event::DocsUploaded(parse(data)?),
            "webhook_subscribed" => Event::WebhookSubscribed(parse(data)?),
            "webhook_unsubscribed" => Event::WebhookUnsubscribed(parse(data)?),
            other => Event::Unknown {
                kind: other.to_owned(),
                data,
            },
        })
    }
}

/// `version_uploaded`: a `.crate` was stored under its content address and awaits checking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionUploaded {
    /// The crate name as published (original case).
    pub name: String,
    /// The version as published, including build metadata.
    pub vers: String,
    /// Lowercase hex sha256 of the `.crate` bytes.
    pub cksum: String,
    /// Size of the `.crate` in bytes.
    pub size: u64,
    /// The blob store key of the `.crate`.
    pub blob: String,
    /// The publish metadata JSON as cargo sent it, inline. Events written since the metadata
    /// moved to a blob leave it out (`null`) and set [`metadata_blob`](Self::metadata_blob);
    /// older events carry it here.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// The blob store key (`sha256/<hex>`) of the publish metadata JSON as cargo sent it, so
    /// the event stays small whatever the metadata (readme included) weighs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_blob: Option<String>,
    /// The login of the user who published.
    pub uploader: String,
    /// The token used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<Uuid>,
}

/// `version_accepted`: the upload is valid; `entry` is its index line (with `yanked: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionAccepted {
    /// The version (as in the upload).
    pub vers: String,
    /// The checksum of the upload this outcome is about.
    pub cksum: String,
    /// The index line for the version.
    pub entry: IndexEntry,
    /// Metadata read from the `.crate`.
    pub metadata: ExtractedMetadata,
}

/// Descriptive metadata read from a `.crate`'s `Cargo.toml` (and its readme).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtractedMetadata {
    /// `package.description`.
    #[serde(default)]
    pub description: Option<String>,
    /// `package.license` (SPDX expression).
    #[serde(default)]
    pub license: Option<String>,
    /// `package.license-file`.
    #[serde(default)]
    pub license_file: Option<String>,
    /// `package.repository`.
    #[serde(default)]
    pub repository: Option<String>,
    /// `package.homepage`.
    #[serde(default)]
    pub homepage: Option<String>,
    /// `package.documentation`.
    #[serde(default)]
    pub documentation: Option<String>,
    /// `package.keywords`.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// `package.categories`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// `package.authors`.
    #[serde(default)]
    pub authors: Vec<String>,
    /// `package.edition`.
    #[serde(default)]
    pub edition: Option<String>,
    /// `package.rust-version`.
    #[serde(default)]
    pub rust_version: Option<String>,
    /// `package.links`.
    #[serde(default)]
    pub links: Option<String>,
    /// Path of the readme inside the package, if any.
    #[serde(default)]
    pub readme_file: Option<String>,
    /// The readme's text, if the package has one (capped by the extractor), inline. Events
    /// written since readmes moved to blobs leave it out and set
    /// [`readme_blob`](Self::readme_blob) instead.
    #[serde(default)]
    pub readme: Option<String>,
    /// The blob store key (`sha256/<hex>`) of the readme's text (UTF-8), if the package has
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readme_blob: Option<String>,
}

/// `version_rejected`: the upload is invalid and the version number stays free.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRejected {
    /// The version (as in the upload).
    pub vers: String,
    /// The checksum of the upload this outcome is about.
    pub cksum: String,
    /// Why, most important first.
    pub reasons: Vec<RejectionReason>,
}

/// One reason for a rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionReason {
    /// A stable machine code, e.g. `invalid_path`.
    pub code: String,
    /// A sentence for the user.
    pub detail: String,
}

/// `version_yanked` / `version_unyanked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionYankToggled {
    /// The version (as in the index, including build metadata).
    pub vers: String,
    /// An optional reason given by the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The token used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<Uuid>,
}

/// `owners_added` / `owners_removed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnersChanged {
    /// User logins.
    pub owners: Vec<String>,
    /// The token used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<Uuid>,
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A person's own token: it acts as its user, and owner checks apply.
    Personal,
    /// A token of no person, created by an admin for machines (e.g. `prod-builders`): its
    /// `user` is `deploy:<name>`, and it may act on exactly the crates its patterns cover.
    Deploy,
    /// A short-lived token minted by trusted publishing for the crates whose trusts an OIDC ID
    /// token satisfied: its `user` is `ci:<issuer subject>`.
    Ci,
}

impl TokenKind {
    /// The name used in events and output: `personal`, `deploy` or `ci`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Personal => "personal",
            TokenKind::Deploy => "deploy",
            TokenKind::Ci => "ci",
        }
    }
}

/// An operation a token may perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// Read the index, download `.crate` files, search and list owners.
    Read,
    /// Publish the first version of a new crate.
    PublishNew,
    /// Publish a new version of an existing crate.
    PublishUpdate,
    /// Yank and unyank versions.
    Yank,
    /// Add and remove owners.
    ChangeOwners,
}

impl TokenScope {
    /// Every scope.
    pub const ALL: [TokenScope; 5] = [
        TokenScope::Read,
        TokenScope::PublishNew,
        TokenScope::PublishUpdate,
        TokenScope::Yank,
        TokenScope::ChangeOwners,
    ];

    /// The scopes of a deploy token with write access: publishing and yanking.
    pub const WRITE: [TokenScope; 3] = [
        TokenScope::PublishNew,
        TokenScope::PublishUpdate,
        TokenScope::Yank,
    ];

    /// The scope's name as in events and crates.io's API, e.g. `publish-update`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::PublishNew => "publish-new",
            TokenScope::PublishUpdate => "publish-update",
            TokenScope::Yank => "yank",
            TokenScope::ChangeOwners => "change-owners",
        }
    }

    /// The scope named `name` (as [`TokenScope::as_str`] writes it).
    pub fn parse(name: &str) -> Option<TokenScope> {
        TokenScope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// `token_issued`. The secret itself is never recorded, only its sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenIssued {
    /// The token's id.
    pub token_id: Uuid,
    /// The user the token acts for.
    pub user: String,
    /// Lowercase hex sha256 of the secret.
    pub secret_sha256: String,
    /// Personal, deploy or CI.
    pub kind: TokenKind,
    /// A label for humans.
    #[serde(default)]
    pub label: Option<String>,
    /// Allowed operations; empty means all.
    #[serde(default)]
    pub scopes: Vec<TokenScope>,
    /// Crate name patterns (`*` wildcard) the token may act on; empty means all.
    #[serde(default)]
    pub crates: Vec<String>,
    /// Crate patterns of the `read` scope when they differ from `crates` (empty: all crates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_crates: Option<Vec<String>>,
    /// When the token stops working, if ever.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Who created it: a login, `depot:admin` for the command line, or `trusted-publishing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// For a CI token: the ID token it was exchanged for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcOrigin>,
}

/// The OIDC ID token a CI token was minted for (trusted publishing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcOrigin {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`), if the token had one.
    #[serde(default)]
    pub subject: Option<String>,
    /// The ID token's `jti`: each is exchanged at most once.
    pub jti: String,
    /// The ids of the trusts it satisfied.
    #[serde(default)]
    pub trusts: Vec<Uuid>,
}

/// `user_created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The login as given (matched case-insensitively).
    pub login: String,
    /// Whether the user is an admin: admins create users and deploy tokens, and may manage
    /// any crate's owners and yank any version.
    #[serde(default)]
    pub admin: bool,
}

/// `user_disabled` / `user_enabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChanged {
    /// The login.
    pub login: String,
}

/// `token_revoked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// The token's id.
    pub token_id: Uuid,
}

/// `trust_added` (on the crate's subject): CI jobs whose OIDC ID token was issued by `issuer`
/// for `audience` and carries every claim of `claims` may exchange it for a short-lived token
/// that publishes new versions of the crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustAdded {
    /// The trust's id.
    pub trust_id: Uuid,
    /// The issuer URL, exactly as in the tokens' `iss`.
    pub issuer: String,
    /// The audience the tokens must be issued for (`aud`).
    pub audience: String,
    /// Required claims: name to pattern (`*` matches any run of characters).
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
}

/// `trust_removed` (on the crate's subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRemoved {
    /// The trust's id.
    pub trust_id: Uuid,
}

/// `trusted_only_set` (on the crate's subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedOnlySet {
    /// Whether only trusted-publishing tokens may publish the crate.
    pub enabled: bool,
}

/// `upstream_index_stored` (on `upstream.<lowercase name>`): the upstream registry served a
/// body of this index file that differs from the one stored before. The body itself is a blob,
/// byte for byte as upstream sent it; the log keeps only its address, so the upstream's index
/// never fills the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamIndexStored {
    /// The crate's name as the index file is named upstream (lowercase).
    pub name: String,
    /// The blob store key (`sha256/<hex>`) of the body.
    pub blob: String,
    /// Size of the body in bytes.
    pub size: u64,
    /// The upstream's `ETag` for the body, for conditional revalidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The upstream's `Last-Modified` for the body, for conditional revalidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The upstream index it came from (`sparse+https://…/`).
    pub upstream: String,
}

/// `upstream_crate_stored` (on `upstream.<lowercase name>`): a `.crate` of the upstream
/// registry was downloaded, its sha256 matched the `cksum` of its index line, and it was stored
/// under its content address (`sha256/<cksum>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamCrateStored {
    /// The crate name as in its index line.
    pub name: String,
    /// The version as in its index line.
    pub vers: String,
    /// Lowercase hex sha256 of the `.crate` bytes (the index line's `cksum`).
    pub cksum: String,
    /// Size of the `.crate` in bytes.
    pub size: u64,
    /// The upstream index it came from (`sparse+https://…/`).
    pub upstream: String,
}

/// `upstream_name_allowed` (on the crate's subject): whether a new private crate may take this
/// name although the upstream registry has a crate of the same canonical name (the
/// dependency-confusion guard refuses that by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamNameAllowed {
    /// The name as the admin gave it.
    pub name: String,
    /// True to allow, false to withdraw an earlier permission.
    pub allowed: bool,
}

/// `docs_uploaded` (on the crate's subject): an archive of a version's rustdoc output was
/// checked and its files stored as blobs. The files are listed in a manifest, itself a blob
/// (path to blob key, size and content type), so the event stays small whatever the number of
/// files. A later `docs_uploaded` of the same version replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocsUploaded {
    /// The crate name as published (original case).
    pub name: String,
    /// The version as in the index (an accepted version).
    pub version: String,
    /// The blob store key (`sha256/<hex>`) of the manifest.
    pub manifest: String,
    /// How many files the docs have.
    pub files: u64,
    /// The files' total size in bytes.
    pub bytes: u64,
    /// The token used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<Uuid>,
}

/// `webhook_subscribed` (on `webhook.<subscription id>`): `url` receives the crate events of
/// `event_types` for the crates `crates` names, signed with a secret derived from the server's
/// webhook key and the subscription id. The secret itself is never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSubscribed {
    /// The subscription's id.
    pub subscription_id: Uuid,
    /// Where deliveries are POSTed (`http` or `https`).
    pub url: String,
    /// The webhook event types delivered, e.g. `crate.published`.
    pub event_types: Vec<String>,
    /// Crate name patterns (`*` wildcard, as for tokens); empty means all crates.
    #[serde(default)]
    pub crates: Vec<String>,
    /// A label for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who subscribed: a login, or `depot:admin` for the command line.
    pub created_by: String,
}

/// `webhook_unsubscribed` (on `webhook.<subscription id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookUnsubscribed {
    /// The subscription's id.
    pub subscription_id: Uuid,
}
