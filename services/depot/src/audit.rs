//! `depot audit`: who did what and when, straight from the event log.
//!
//! Every line is one event: its time and sequence, the actor (a login, `deploy:<name>`,
//! `ci:<subject>` or `depot:<role>`), the token used with its kind (tokens are resolved from the
//! `token_issued` events read on the way), the action and what it was about. Filters select a
//! crate, a user or deploy identity, and a start time.

use std::collections::HashMap;

use anyhow::Context as _;
use depot_events::{Envelope, Event, Timestamp, TokenKind};
use depot_index::CrateName;
use futures::StreamExt as _;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::config::Settings;
use crate::roles::open_log;

/// What `depot audit` shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditFilter {
    /// Only events of this crate (canonical name).
    pub(crate) krate: Option<String>,
    /// Only events by or about this login or `deploy:<name>` (lowercase).
    pub(crate) user: Option<String>,
    /// Only events at or after this time.
    pub(crate) since: Option<Timestamp>,
}

impl AuditFilter {
    /// Builds the filter from the command line's values.
    pub(crate) fn parse(
        krate: Option<&str>,
        user: Option<&str>,
        since: Option<&str>,
    ) -> anyhow::Result<AuditFilter> {
        let krate = krate
            .map(|name| CrateName::parse(name).map(|n| n.canonical().to_string()))
            .transpose()?;
        let since = since
            .map(|text| parse_since(text, Timestamp::now()))
            .transpose()?;
        Ok(AuditFilter {
            krate,
            user: user.map(str::to_ascii_lowercase),
            since,
        })
    }
}

/// `--since`: an RFC 3339 time, or an age such as `90m`, `12h`, `7d`.
fn parse_since(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Timestamp::from_unix_millis(
            (at.unix_timestamp_nanos() / 1_000_000) as i64,
        ));
    }
    let unit = text
        .chars()
        .last()
        .context("--since needs a time (RFC 3339) or an age like 7d")?;
    let amount: i64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .with_context(|| {
            format!("--since `{text}` is neither an RFC 3339 time nor an age like 7d, 12h or 90m")
        })?;
    let unit_ms: i64 = match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => anyhow::bail!("--since `{text}`: the unit of an age is s, m, h or d"),
    };
    Ok(Timestamp::from_unix_millis(
        now.unix_millis()
            .saturating_sub(amount.saturating_mul(unit_ms)),
    ))
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditLine {
    pub(crate) seq: u64,
    pub(crate) at: Timestamp,
    pub(crate) actor: String,
    /// `kind:id` of the token used, if the event names one.
    pub(crate) token: Option<String>,
    pub(crate) action: String,
    /// What the event is about: a crate (and version), a user, a token.
    pub(crate) target: String,
    pub(crate) details: String,
    /// The crate it is about (canonical), for filtering.
    krate: Option<String>,
    /// Identities it is about besides the actor (lowercase), for filtering.
    about: Vec<String>,
}

impl AuditLine {
    fn render(&self) -> String {
        format!(
            "{}  {:>6}  {:<20} {:<46} {:<15} {:<28} {}",
            self.at.to_rfc3339(),
            self.seq,
            self.actor,
            self.token.as_deref().unwrap_or("-"),
            self.action,
            self.target,
            self.details
        )
    }

    fn matches(&self, filter: &AuditFilter) -> bool {
        let crate_ok = filter
            .krate
            .as_ref()
            .is_none_or(|k| self.krate.as_ref() == Some(k));
        let user_ok = filter.user.as_ref().is_none_or(|u| {
            self.actor.eq_ignore_ascii_case(u) || self.about.iter().any(|a| a == u)
        });
        let since_ok = filter.since.is_none_or(|since| self.at >= since);
        crate_ok && user_ok && since_ok
    }
}

/// Token kinds by id, learned from `token_issued` events.
#[derive(Debug, Default)]
pub(crate) struct TokenBook {
    kinds: HashMap<Uuid, TokenKind>,
}

impl TokenBook {
    fn label(&self, id: Option<Uuid>) -> Option<String> {
        id.map(|id| match self.kinds.get(&id) {
            Some(kind) => format!("{}:{id}", kind.as_str()),
            None => format!("token:{id}"),
        })
    }
}

/// Describes one event (and learns the tokens it issues).
pub(crate) fn describe(
    seq: u64,
    subject: &str,
    envelope: &Envelope,
    book: &mut TokenBook,
) -> AuditLine {
    let krate = subject.strip_prefix("crate.").map(str::to_owned);
    let mut line = AuditLine {
        seq,
        at: envelope.at,
        actor: envelope.actor.clone(),
        token: None,
        action: envelope.kind().to_owned(),
        target: krate.clone().unwrap_or_else(|| subject.to_owned()),
        details: String::new(),
        krate,
        about: Vec::new(),
    };
    match &envelope.event {
        Event::VersionUploaded(upload) => {
            line.action = "publish".into();
            line.target = format!("{} {}", upload.name, upload.vers);
            line.token = book.label(upload.token_id);
            line.details = format!("{} bytes, sha256 {}", upload.size, upload.cksum);
            line.about.push(upload.uploader.to_ascii_lowercase());
        }
        Event::VersionAccepted(verdict) => {
            line.action = "accepted".into();
            line.target = format!("{} {}", line.target, verdict.vers);
        }
        Event::VersionRejected(verdict) => {
            line.action = "rejected".into();
            line.target = format!("{} {}", line.target, verdict.vers);
            line.details = verdict
                .reasons
                .iter()
                .map(|r| r.code.as_str())
                .collect::<Vec<_>>()
                .join(", ");
        }
        Event::VersionYanked(toggle) | Event::VersionUnyanked(toggle) => {
            line.action = if matches!(envelope.event, Event::VersionYanked(_)) {
                "yank".into()
            } else {
                "unyank".into()
            };
            line.target = format!("{} {}", line.target, toggle.vers);
            line.token = book.label(toggle.token_id);
            line.details = toggle.message.clone().unwrap_or_default();
        }
        Event::OwnersAdded(change) | Event::OwnersRemoved(change) => {
            line.action = if matches!(envelope.event, Event::OwnersAdded(_)) {
                "owners added".into()
            } else {
                "owners removed".into()
            };
            line.token = book.label(change.token_id);
            line.details = change.owners.join(", ");
            line.about
                .extend(change.owners.iter().map(|o| o.to_ascii_lowercase()));
        }
        Event::TokenIssued(token) => {
            book.kinds.insert(token.token_id, token.kind);
            line.action = "token issued".into();
            line.target = token.user.clone();
            line.token = book.label(Some(token.token_id));
            let list = |items: Vec<&str>| {
                if items.is_empty() {
                    "*".to_owned()
                } else {
                    items.join(",")
                }
            };
            line.details = format!(
                "scopes {}; crates {}{}; expires {}{}",
                list(token.scopes.iter().map(|s| s.as_str()).collect()),
                list(token.crates.iter().map(String::as_str).collect()),
                token
                    .read_crates
                    .as_ref()
                    .map(|read| format!(
                        " (read: {})",
                        list(read.iter().map(String::as_str).collect())
                    ))
                    .unwrap_or_default(),
                token
                    .expires_at
                    .map_or_else(|| "never".to_owned(), Timestamp::to_rfc3339),
                token
                    .oidc
                    .as_ref()
                    .map(|o| format!(
                        "; for {} ({})",
                        o.issuer,
                        o.subject.as_deref().unwrap_or("-")
                    ))
                    .unwrap_or_default()
            );
            line.about.push(token.user.to_ascii_lowercase());
        }
        Event::TokenRevoked(revoked) => {
            line.action = "token revoked".into();
            line.token = book.label(Some(revoked.token_id));
            line.target = holder_of(subject);
            line.about.push(line.target.clone());
        }
        Event::UserCreated(user) => {
            line.action = "user created".into();
            line.target = user.login.clone();
            line.details = if user.admin {
                "admin".into()
            } else {
                String::new()
            };
            line.about.push(user.login.to_ascii_lowercase());
        }
        Event::UserDisabled(user) | Event::UserEnabled(user) => {
            line.action = if matches!(envelope.event, Event::UserDisabled(_)) {
                "user disabled".into()
            } else {
                "user enabled".into()
            };
            line.target = user.login.clone();
            line.about.push(user.login.to_ascii_lowercase());
        }
        Event::TrustAdded(trust) => {
            line.action = "trust added".into();
            line.details = format!(
                "{} for `{}`, requires {}",
                trust.issuer,
                trust.audience,
                trust
                    .claims
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Event::TrustRemoved(removed) => {
            line.action = "trust removed".into();
            line.details = removed.trust_id.to_string();
        }
        Event::TrustedOnlySet(set) => {
            line.action = "trusted only".into();
            line.details = if set.enabled {
                "on".into()
            } else {
                "off".into()
            };
        }
        Event::UpstreamIndexStored(stored) => {
            line.action = "upstream index".into();
            line.target = stored.name.clone();
            line.krate = Some(depot_index::canonical_name(&stored.name));
            line.details = format!("{} bytes from {}", stored.size, stored.upstream);
        }
        Event::UpstreamCrateStored(stored) => {
            line.action = "upstream crate".into();
            line.target = format!("{} {}", stored.name, stored.vers);
            line.krate = Some(depot_index::canonical_name(&stored.name));
            line.details = format!(
                "{} bytes, sha256 {}, from {}",
                stored.size, stored.cksum, stored.upstream
            );
        }
        Event::DocsUploaded(docs) => {
            line.action = "docs".into();
            line.target = format!("{} {}", docs.name, docs.version);
            line.details = format!(
                "{} files, {} bytes, manifest {}",
                docs.files, docs.bytes, docs.manifest
            );
        }
        Event::UpstreamNameAllowed(allowed) => {
            line.action = if allowed.allowed {
                "name allowed".into()
            } else {
                "name disallowed".into()
            };
            line.details = format!("`{}` may exist upstream", allowed.name);
        }
        Event::WebhookSubscribed(subscribed) => {
            line.action = "webhook added".into();
            line.target = subscribed.subscription_id.to_string();
            line.details = format!(
                "{} for {}",
                subscribed.url,
                subscribed.event_types.join(", ")
            );
        }
        Event::WebhookUnsubscribed(removed) => {
            line.action = "webhook removed".into();
            line.target = removed.subscription_id.to_string();
        }
        Event::Unknown { .. } => {}
    }
    line
}

/// The identity whose tokens live on `subject`.
fn holder_of(subject: &str) -> String {
    if let Some(login) = subject.strip_prefix("principal.") {
        login.to_owned()
    } else if let Some(name) = subject.strip_prefix("deploy.") {
        format!("{}{name}", depot_auth::DEPLOY_PREFIX)
    } else if subject.starts_with("ci.") || subject.starts_with("oidc.") {
        "ci token".to_owned()
    } else {
        subject.to_owned()
    }
}

/// `depot audit`: prints the matching events up to the log's current head.
pub(crate) async fn audit(settings: &Settings, filter: &AuditFilter) -> anyhow::Result<()> {
    let backend = open_log(settings).await?;
    let head = backend.log.head().await?;
    println!(
        "{:<24}  {:>6}  {:<20} {:<46} {:<15} {:<28} DETAILS",
        "TIME", "SEQ", "ACTOR", "TOKEN", "ACTION", "TARGET"
    );
    if head == 0 {
        return Ok(());
    }
    let mut events = backend.log.read_from(1).await?;
    let mut book = TokenBook::default();
    while let Some(stored) = events.next().await {
        let stored = stored?;
        match Envelope::decode(&stored.payload) {
            Ok(envelope) => {
                let line = describe(stored.seq, &stored.subject, &envelope, &mut book);
                if line.matches(filter) {
                    println!("{}", line.render());
                }
            }
            Err(e) => println!(
                "-  {:>6}  (undecodable event on {}: {e})",
                stored.seq, stored.subject
            ),
        }
        if stored.seq >= head {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use depot_events::{OwnersChanged, TokenIssued, TokenScope, VersionYankToggled};

    use super::*;

    fn envelope(actor: &str, event: Event) -> Envelope {
        Envelope::new(actor, event)
    }

    #[test]
    fn tokens_are_named_by_kind_and_filters_select() {
        let mut book = TokenBook::default();
        let id = Uuid::now_v7();
        let issued = describe(
            1,
            "deploy.builders",
            &envelope(
                "depot:admin",
                Event::TokenIssued(TokenIssued {
                    token_id: id,
                    user: "deploy:builders".into(),
                    secret_sha256: "00".into(),
                    kind: TokenKind::Deploy,
                    label: None,
                    scopes: vec![TokenScope::Read],
                    crates: vec!["acme-*".into()],
                    read_crates: None,
                    expires_at: None,
                    created_by: None,
                    oidc: None,
                }),
            ),
            &mut book,
        );
        assert_eq!(issued.details, "scopes read; crates acme-*; expires never");
        let yank = describe(
            2,
            "crate.acme_core",
            &envelope(
                "deploy:builders",
                Event::VersionYanked(VersionYankToggled {
                    vers: "1.0.0".into(),
                    message: None,
                    token_id: Some(id),
                }),
            ),
            &mut book,
        );
        assert_eq!(yank.token, Some(format!("deploy:{id}")));
        assert_eq!(yank.target, "acme_core 1.0.0");
        let owners = describe(
            3,
            "crate.acme_core",
            &envelope(
                "alice",
                Event::OwnersAdded(OwnersChanged {
                    owners: vec!["Bob".into()],
                    token_id: None,
                }),
            ),
            &mut book,
        );
        let filter = |krate: Option<&str>, user: Option<&str>| {
            AuditFilter::parse(krate, user, None).unwrap()
        };
        assert!(yank.matches(&filter(Some("acme-core"), None)));
        assert!(!yank.matches(&filter(Some("other"), None)));
        assert!(yank.matches(&filter(None, Some("deploy:builders"))));
        assert!(issued.matches(&filter(None, Some("deploy:builders"))));
        assert!(owners.matches(&filter(None, Some("bob"))));
        assert!(owners.matches(&filter(None, Some("ALICE"))));
        assert!(!owners.matches(&filter(None, Some("carol"))));
    }

    #[test]
    fn since_takes_times_and_ages() {
        let now = Timestamp::from_unix_millis(10 * 86_400_000);
        assert_eq!(
            parse_since("7d", now).unwrap(),
            Timestamp::from_unix_millis(3 * 86_400_000)
        );
        assert_eq!(
            parse_since("90m", now).unwrap().unix_millis(),
            now.unix_millis() - 90 * 60_000
        );
        assert_eq!(
            parse_since("1970-01-02T00:00:00Z", now).unwrap(),
            Timestamp::from_unix_millis(86_400_000)
        );
        for bad in ["", "7", "7w", "-1d", "yesterday", "d"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
