//! The schema of record: every event Depot appends to its log, defined once.
//!
//! Events are stored as JSON envelopes `{"id","type","schema","at","actor","data"}`. They only
//! evolve additively: new optional fields (with `#[serde(default)]`) and new event types. An
//! envelope whose `type` this build does not know decodes to [`Event::Unknown`], so readers can
//! decide what to do instead of failing to parse.
//!
//! [`CrateState`] is the per-crate aggregate: the fold of one crate's events that the api uses to
//! decide whether a command is allowed, and whose head the projector persists.

mod aggregate;
mod envelope;
mod payload;

pub use aggregate::{
    CrateHead, CrateState, PublishCheck, PublishRefusal, VersionState, VersionStatus, version_of,
    version_without_build,
};
pub use envelope::{DecodeError, Envelope, SCHEMA_VERSION, Timestamp};
pub use payload::{
    DocsUploaded, Event, ExtractedMetadata, OidcOrigin, OwnersChanged, RejectionReason,
    TokenIssued, TokenKind, TokenRevoked, TokenScope, TrustAdded, TrustRemoved, TrustedOnlySet,
    UpstreamCrateStored, UpstreamIndexStored, UpstreamNameAllowed, UserChanged, UserCreated,
    VersionAccepted, VersionRejected, VersionUploaded, VersionYankToggled, WebhookSubscribed,
    WebhookUnsubscribed,
};

/// Subjects of the log: one per aggregate.
///
/// They take validated values only: a canonical crate name and a login hold nothing but ASCII
/// alphanumerics, `-` and `_`, so no subject can contain a wildcard (`*`, `>`), a separator
/// (`.`) or whitespace.
pub mod subject {
    use depot_index::{CanonicalName, Login};

    /// The subject token of a crate's aggregate: `crate.<canonical name>`.
    pub fn krate(canonical: &CanonicalName) -> String {
        format!("crate.{canonical}")
    }

    /// The subject token of a principal's aggregate (users and their tokens):
    /// `principal.<lowercase login>`.
    pub fn principal(user: &Login) -> String {
        format!("principal.{}", user.to_lowercase())
    }

    /// The subject token of a deploy identity and its tokens: `deploy.<lowercase name>`.
    pub fn deploy(name: &Login) -> String {
        format!("deploy.{}", name.to_lowercase())
    }

    /// The subject token of one exchanged OIDC ID token: `oidc.<hex sha256 of issuer and
    /// jti>`. A CI token is appended here with the expectation that the subject is empty, so
    /// each ID token is exchanged at most once, across every api process.
    pub fn oidc(digest_hex: &str) -> String {
        format!("oidc.{digest_hex}")
    }

    /// The subject of a CI token's later events (its revocation): `ci.<token id, simple hex>`.
    pub fn ci_token(token_id: &uuid::Uuid) -> String {
        format!("ci.{}", token_id.simple())
    }

    /// The subject of what the upstream-registry cache stored for one crate name:
    /// `upstream.<lowercase name>` (index files are named by the lowercase name, so `foo-bar`
    /// and `foo_bar` are separate files upstream and separate subjects here).
    pub fn upstream(lowercase: &depot_index::CrateName) -> String {
        format!("upstream.{}", lowercase.to_lowercase())
    }

    /// The subject of a webhook subscription: `webhook.<subscription id, simple hex>`.
    pub fn webhook(subscription_id: &uuid::Uuid) -> String {
        format!("webhook.{}", subscription_id.simple())
    }
}
