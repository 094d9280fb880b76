//! API tokens: how secrets are made and stored, and what a token allows.
//!
//! A token's secret is shown once, when it is created; only its sha256 is recorded (in the
//! `token_issued` event and the read model). Requests present the secret in `Authorization`, raw
//! or as `Bearer <secret>`; the api hashes it and looks the hash up.
//!
//! [`oidc`] verifies the OpenID Connect ID tokens of CI systems and matches them against trust
//! policies, for trusted publishing.

pub mod oidc;

use depot_events::TokenScope;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// Every secret starts with this, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "depot_";

/// Makes a new random secret: the prefix plus 40 alphanumeric characters (≈238 bits).
pub fn generate_secret() -> String {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{random}")
}

/// The lowercase hex sha256 of a secret: the only form in which secrets are stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The longest secret looked up; longer values are malformed (Depot's are 46 characters).
pub const MAX_SECRET_LEN: usize = 256;

/// Extracts the secret from an `Authorization` header value: the raw token, or `Bearer <token>`
/// (scheme compared case-insensitively). Returns `None` for an empty value, another scheme, or
/// a secret that is not 1 to [`MAX_SECRET_LEN`] printable ASCII characters without spaces.
pub fn secret_from_header(value: &str) -> Option<&str> {
    let value = value.trim();
    let secret = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None => value,
    };
    let printable = secret.bytes().all(|b| b.is_ascii_graphic());
    (!secret.is_empty() && secret.len() <= MAX_SECRET_LEN && printable).then_some(secret)
}

/// What a token is allowed to do: its scopes and crate patterns (both empty = everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenGrant {
    /// Allowed operations; empty means all.
    pub scopes: Vec<TokenScope>,
    /// Crate name patterns (`*` matches any run of characters); empty means all crates.
    pub crates: Vec<String>,
    /// The crate patterns of the `read` scope when they differ from [`crates`](Self::crates)
    /// (empty means all): a CI token reads every crate, as any user of the registry may, but
    /// publishes only the crates that trust its job.
    pub read_crates: Option<Vec<String>>,
}

impl TokenGrant {
    /// Whether the grant allows `scope` on crate `name`.
    pub fn allows(&self, scope: TokenScope, name: &str) -> bool {
        let scope_ok = self.scopes.is_empty() || self.scopes.contains(&scope);
        let patterns = self.patterns_for(scope);
        let crate_ok = patterns.is_empty() || patterns.iter().any(|p| glob_matches(p, name));
        scope_ok && crate_ok
    }

    /// The crate patterns that apply to `scope`.
    fn patterns_for(&self, scope: TokenScope) -> &[String] {
        match (&self.read_crates, scope) {
            (Some(read), TokenScope::Read) => read,
            _ => &self.crates,
        }
    }

    /// Whether every request `narrower` allows is also allowed by this grant: its scopes are a
    /// subset, and for each scope, each of its crate patterns is covered by one of ours. A token
    /// may create only tokens that it covers.
    pub fn covers(&self, narrower: &TokenGrant) -> bool {
        let scopes_ok = self.scopes.is_empty()
            || (!narrower.scopes.is_empty()
                && narrower.scopes.iter().all(|s| self.scopes.contains(s)));
        scopes_ok
            && TokenScope::ALL.iter().all(|&scope| {
                let narrow_may = narrower.scopes.is_empty() || narrower.scopes.contains(&scope);
                !narrow_may
                    || patterns_cover(self.patterns_for(scope), narrower.patterns_for(scope))
            })
    }
}

/// Whether every name matched by one of `narrow` is matched by one of `wide` (empty = all).
///
/// A pattern `p` is covered by `q` when `q` matches `p` read literally: every `*` of `p` then
/// falls inside a `*` of `q` (names never contain `*`, so no literal character of `q` can match
/// one), and whatever `p` matches, `q` matches too.
fn patterns_cover(wide: &[String], narrow: &[String]) -> bool {
    wide.is_empty()
        || (!narrow.is_empty()
            && narrow
                .iter()
                .all(|p| wide.iter().any(|q| glob_matches(q, p))))
}

/// The longest crate pattern accepted.
pub const MAX_PATTERN_LEN: usize = 64;
/// The most crate patterns one token may carry.
pub const MAX_PATTERNS: usize = 32;

/// Checks a crate pattern: 1 to [`MAX_PATTERN_LEN`] ASCII letters, digits, `-`, `_` and `*`.
pub fn validate_crate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(format!(
            "crate pattern `{}` must be 1 to {MAX_PATTERN_LEN} characters long",
            pattern.escape_debug()
        ));
    }
    if let Some(bad) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
    {
        return Err(format!(
            "crate pattern `{}` has the character `{}`; only letters, digits, `-`, `_` and `*` \
             are allowed",
            pattern.escape_debug(),
            bad.escape_debug()
        ));
    }
    Ok(())
}

/// The identity prefix of deploy tokens: a deploy token named `prod-builders` acts as
/// `deploy:prod-builders`, which no user login can be.
pub const DEPLOY_PREFIX: &str = "deploy:";
/// The identity prefix of CI tokens minted by trusted publishing.
pub const CI_PREFIX: &str = "ci:";

/// Matches a crate name against a pattern where `*` stands for any run of characters. Both sides
/// are compared in canonical form (case-insensitive, `-` equals `_`).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let canon = |s: &str| -> Vec<u8> {
        s.bytes()
            .map(|b| {
                if b == b'-' {
                    b'_'
                } else {
                    b.to_ascii_lowercase()
                }
            })
            .collect()
    };
    wildcard_matches(&canon(pattern), &canon(name))
}

/// Byte-wise match where `*` in `pattern` stands for any run of bytes: iterative, backtracking
/// to the last `*` only, so linear in practice and never recursive.
pub(crate) fn wildcard_matches(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, v));
            p += 1;
        } else if p < pattern.len() && pattern[p] == value[v] {
            p += 1;
            v += 1;
        } else if let Some((sp, sv)) = star {
            p = sp + 1;
            v = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 40);
        assert_ne!(a, b);
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn header_forms() {
        assert_eq!(secret_from_header("depot_x"), Some("depot_x"));
        assert_eq!(secret_from_header("Bearer depot_x"), Some("depot_x"));
        assert_eq!(secret_from_header("bearer  depot_x "), Some("depot_x"));
        assert_eq!(secret_from_header("Basic abc"), None);
        assert_eq!(secret_from_header("Bearer a b"), None);
        assert_eq!(secret_from_header("depot_\u{e9}"), None);
        assert_eq!(secret_from_header(&"x".repeat(MAX_SECRET_LEN + 1)), None);
        assert_eq!(secret_from_header("  "), None);
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("acme-*", "acme_core"));
        assert!(glob_matches("Acme*Core", "acme-big-core"));
        assert!(!glob_matches("acme-*", "other"));
        assert!(glob_matches("exact", "EXACT"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn coverage() {
        let all = TokenGrant::default();
        let read_acme = TokenGrant {
            scopes: vec![TokenScope::Read],
            crates: vec!["acme-*".into()],
            read_crates: None,
        };
        assert!(all.covers(&read_acme));
        assert!(!read_acme.covers(&all));
        assert!(read_acme.covers(&read_acme));
        assert!(read_acme.covers(&TokenGrant {
            scopes: vec![TokenScope::Read],
            crates: vec!["acme-core".into(), "acme_x*".into()],
            read_crates: None,
        }));
        assert!(!read_acme.covers(&TokenGrant {
            scopes: vec![TokenScope::Read, TokenScope::Yank],
            crates: vec!["acme-core".into()],
            read_crates: None,
        }));
        assert!(!read_acme.covers(&TokenGrant {
            scopes: vec![TokenScope::Read],
            crates: vec!["acme*".into()],
            read_crates: None,
        }));
        assert!(!read_acme.covers(&TokenGrant {
            scopes: vec![TokenScope::Read],
            crates: vec![],
            read_crates: None,
        }));
    }

    #[test]
    fn patterns() {
        assert!(validate_crate_pattern("acme-*").is_ok());
        assert!(validate_crate_pattern("").is_err());
        assert!(validate_crate_pattern("a.b").is_err());
        assert!(validate_crate_pattern(&"a".repeat(65)).is_err());
    }

    #[test]
    fn ci_grants_read_everything_and_publish_their_crates() {
        let ci = TokenGrant {
            scopes: vec![TokenScope::Read, TokenScope::PublishUpdate],
            crates: vec!["acme-core".into()],
            read_crates: Some(vec![]),
        };
        assert!(ci.allows(TokenScope::Read, "anything"));
        assert!(ci.allows(TokenScope::PublishUpdate, "acme_core"));
        assert!(!ci.allows(TokenScope::PublishUpdate, "anything"));
        let narrower = TokenGrant {
            read_crates: None,
            ..ci.clone()
        };
        assert!(ci.covers(&narrower));
        assert!(!narrower.covers(&ci));
    }

    #[test]
    fn grants() {
        let all = TokenGrant::default();
        assert!(all.allows(TokenScope::Yank, "x"));
        let narrow = TokenGrant {
            scopes: vec![TokenScope::PublishUpdate],
            crates: vec!["acme-*".into()],
            read_crates: None,
        };
        assert!(narrow.allows(TokenScope::PublishUpdate, "acme-core"));
        assert!(!narrow.allows(TokenScope::PublishNew, "acme-core"));
        assert!(!narrow.allows(TokenScope::PublishUpdate, "other"));
    }
}
