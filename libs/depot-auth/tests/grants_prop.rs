//! Properties of crate patterns, grants and `Authorization` parsing over arbitrary input.

use depot_auth::{TokenGrant, glob_matches, secret_from_header, validate_crate_pattern};
use depot_events::TokenScope;
use proptest::prelude::*;

/// Short patterns over a small alphabet, so that matches and near-misses are frequent.
fn pattern() -> impl Strategy<Value = String> {
    "[ab_*-]{0,6}"
}

fn name() -> impl Strategy<Value = String> {
    "[abAB_-]{0,8}"
}

fn scopes() -> impl Strategy<Value = Vec<TokenScope>> {
    proptest::sample::subsequence(TokenScope::ALL.to_vec(), 0..=TokenScope::ALL.len())
}

fn grant() -> impl Strategy<Value = TokenGrant> {
    (
        scopes(),
        proptest::collection::vec(pattern(), 0..3),
        proptest::option::of(proptest::collection::vec(pattern(), 0..3)),
    )
        .prop_map(|(scopes, crates, read_crates)| TokenGrant {
            scopes,
            crates,
            read_crates,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// If a grant covers a narrower one, everything the narrower one allows, it allows too:
    /// a token can never create a token that can do more than itself.
    #[test]
    fn coverage_is_sound(wide in grant(), narrow in grant(), name in name()) {
        if wide.covers(&narrow) {
            for scope in TokenScope::ALL {
                if narrow.allows(scope, &name) {
                    prop_assert!(
                        wide.allows(scope, &name),
                        "{wide:?} covers {narrow:?} but not {scope:?} on {name}"
                    );
                }
            }
        }
    }

    /// A pattern matches itself read literally, and `*` matches every name.
    #[test]
    fn patterns_match_themselves(p in pattern(), name in name()) {
        prop_assert!(glob_matches(&p, &p));
        prop_assert!(glob_matches("*", &name));
    }

    /// Arbitrary header values never panic; what comes out is printable, bounded and
    /// space-free.
    #[test]
    fn header_parsing_is_total(value in "\\PC{0,300}") {
        if let Some(secret) = secret_from_header(&value) {
            prop_assert!(!secret.is_empty() && secret.len() <= depot_auth::MAX_SECRET_LEN);
            prop_assert!(secret.bytes().all(|b| b.is_ascii_graphic()));
        }
    }

    /// Pattern validation never panics and accepts exactly the documented alphabet.
    #[test]
    fn pattern_validation_is_total(p in "\\PC{0,80}") {
        let ok = !p.is_empty()
            && p.len() <= depot_auth::MAX_PATTERN_LEN
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'));
        prop_assert_eq!(validate_crate_pattern(&p).is_ok(), ok);
    }
}
