//! What a subscription may say: its URL, event types, crate patterns and description, checked
//! before anything is appended.

use std::collections::BTreeSet;

/// Every webhook event type, with the log event it comes from.
pub const EVENT_TYPES: &[(&str, &str)] = &[
    ("crate.published", "version_accepted"),
    ("crate.yanked", "version_yanked"),
    ("crate.unyanked", "version_unyanked"),
    ("crate.owners_added", "owners_added"),
    ("crate.owners_removed", "owners_removed"),
    ("crate.docs_uploaded", "docs_uploaded"),
];

/// The longest subscription URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// A subscription as asked for, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionRequest {
    /// Where deliveries go.
    pub url: String,
    /// Webhook event types; empty means all.
    pub event_types: Vec<String>,
    /// Crate patterns; empty means all crates.
    pub crates: Vec<String>,
    /// A label for humans.
    pub description: Option<String>,
}

/// A valid subscription: the URL as given, event types known, deduplicated and sorted,
/// patterns valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSubscription {
    /// Where deliveries go.
    pub url: String,
    /// Webhook event types (at least one).
    pub event_types: Vec<String>,
    /// Crate patterns (empty: all crates).
    pub crates: Vec<String>,
    /// A label for humans.
    pub description: Option<String>,
}

/// Checks a URL: at most [`MAX_URL_LEN`] bytes, `http` or `https`, a host, no user name or
/// password (they would be shown in listings and logs), no fragment.
pub fn validate_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!(
            "the webhook URL is {} bytes long; at most {MAX_URL_LEN} are allowed",
            url.len()
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!(
            "the webhook URL `{}` is not a valid URL: {e}",
            url.escape_debug()
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the webhook URL must be http or https, not `{}`",
            parsed.scheme().escape_debug()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the webhook URL has no host".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the webhook URL must not hold a user name or password".to_owned());
    }
    if parsed.fragment().is_some() {
        return Err("the webhook URL must not have a fragment (`#…`)".to_owned());
    }
    Ok(())
}

/// Validates a subscription request.
pub fn validate(request: SubscriptionRequest) -> Result<ValidSubscription, String> {
    validate_url(&request.url)?;
    let mut types = BTreeSet::new();
    if request.event_types.len() > EVENT_TYPES.len() * 4 {
        return Err("too many event types".to_owned());
    }
    for kind in &request.event_types {
        if !EVENT_TYPES.iter().any(|(name, _)| name == kind) {
            return Err(format!(
                "unknown webhook event type `{}`; known: {}",
                kind.chars().take(64).collect::<String>().escape_debug(),
                EVENT_TYPES
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        types.insert(kind.clone());
    }
    if types.is_empty() {
        types.extend(EVENT_TYPES.iter().map(|(name, _)| (*name).to_owned()));
    }
    if request.crates.len() > depot_auth::MAX_PATTERNS {
        return Err(format!(
            "at most {} crate patterns per subscription",
            depot_auth::MAX_PATTERNS
        ));
    }
    for pattern in &request.crates {
        depot_auth::validate_crate_pattern(pattern)?;
    }
    let description = match request.description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_LEN => {
            return Err(format!(
                "the description is longer than {MAX_DESCRIPTION_LEN} characters"
            ));
        }
        Some(text) if text.chars().any(char::is_control) => {
            return Err("the description must not hold control characters".to_owned());
        }
        Some(text) if text.trim().is_empty() => None,
        other => other,
    };
    Ok(ValidSubscription {
        url: request.url,
        event_types: types.into_iter().collect(),
        crates: request.crates,
        description,
    })
}

/// Whether a subscription's patterns (empty: all) name the crate `name`.
pub fn crate_matches(patterns: &[String], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| depot_auth::glob_matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(url: &str) -> SubscriptionRequest {
        SubscriptionRequest {
            url: url.to_owned(),
            ..SubscriptionRequest::default()
        }
    }

    #[test]
    fn urls() {
        assert!(validate(request("https://hooks.example.com/depot?x=1")).is_ok());
        assert!(validate(request("http://127.0.0.1:9000/")).is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "not a url",
            "",
            "http://",
        ] {
            assert!(validate(request(bad)).is_err(), "{bad}");
        }
        let huge = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(validate(request(&huge)).unwrap_err().contains("bytes long"));
    }

    #[test]
    fn event_types_patterns_and_descriptions() {
        let all = validate(request("https://e.com/")).unwrap();
        assert_eq!(all.event_types.len(), EVENT_TYPES.len());
        let mut r = request("https://e.com/");
        r.event_types = vec!["crate.yanked".into(), "crate.yanked".into()];
        assert_eq!(validate(r.clone()).unwrap().event_types, ["crate.yanked"]);
        r.event_types = vec!["crate.deleted".into()];
        assert!(
            validate(r.clone())
                .unwrap_err()
                .contains("unknown webhook event type")
        );
        r.event_types = vec![];
        r.crates = vec!["acme-*".into()];
        assert!(validate(r.clone()).is_ok());
        r.crates = vec!["acme/..".into()];
        assert!(validate(r.clone()).is_err());
        r.crates = vec!["a".into(); depot_auth::MAX_PATTERNS + 1];
        assert!(validate(r.clone()).is_err());
        r.crates = vec![];
        r.description = Some("x".repeat(MAX_DESCRIPTION_LEN + 1));
        assert!(validate(r.clone()).is_err());
        r.description = Some("a\nb".into());
        assert!(validate(r).is_err());
        assert!(crate_matches(&["acme-*".into()], "ACME_tools"));
        assert!(!crate_matches(&["acme-*".into()], "other"));
        assert!(crate_matches(&[], "other"));
    }

    proptest! {
        /// Validation never panics; whatever it accepts is an http(s) URL within the cap, known
        /// event types and valid patterns.
        #[test]
        fn validation_accepts_only_valid_subscriptions(
            url in prop_oneof![
                "(https?|ftp|file|javascript|data)://[a-z0-9.:@#/?%-]{0,64}",
                ".{0,80}",
            ],
            types in proptest::collection::vec(
                prop_oneof![Just("crate.published".to_owned()), "crate\\.[a-z_]{0,12}"], 0..4),
            crates in proptest::collection::vec("[a-z*_/ -]{0,10}", 0..3),
            description in proptest::option::of(".{0,300}"),
        ) {
            let request = SubscriptionRequest { url: url.clone(), event_types: types, crates, description };
            if let Ok(valid) = validate(request) {
                let parsed = reqwest::Url::parse(&valid.url).unwrap();
                prop_assert!(matches!(parsed.scheme(), "http" | "https"));
                prop_assert!(valid.url.len() <= MAX_URL_LEN);
                prop_assert!(!valid.event_types.is_empty());
                for kind in &valid.event_types {
                    prop_assert!(EVENT_TYPES.iter().any(|(name, _)| name == kind));
                }
                for pattern in &valid.crates {
                    prop_assert!(depot_auth::validate_crate_pattern(pattern).is_ok());
                }
                if let Some(d) = &valid.description {
                    prop_assert!(d.chars().count() <= MAX_DESCRIPTION_LEN);
                }
            }
        }
    }
}
