//! Hostile input to the OIDC verifier: arbitrary text never panics, and a valid token with any
//! single byte of its payload or signature changed is refused.

mod support;

use std::sync::LazyLock;

use depot_auth::oidc;
use proptest::prelude::*;
use support::{ISSUER, NOW, SKEW, claims, jwks, key1, sign};

static TOKEN: LazyLock<String> = LazyLock::new(|| sign(key1(), &claims()));

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let set = jwks(&[key1()]);
        let _ = oidc::peek_issuer(&text);
        let _ = oidc::verify(&text, &set, ISSUER, NOW, SKEW);
        let _ = oidc::parse_jwks(text.as_bytes());
        let _ = oidc::jwks_uri_from_discovery(text.as_bytes(), ISSUER);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = oidc::parse_jwks(&bytes);
        let _ = oidc::jwks_uri_from_discovery(&bytes, ISSUER);
    }

    #[test]
    fn jwt_shaped_text_never_panics(
        header in "[A-Za-z0-9_-]{0,64}",
        payload in "[A-Za-z0-9_-]{0,256}",
        signature in "[A-Za-z0-9_-]{0,64}",
        now in any::<i64>(),
        skew in any::<i64>(),
    ) {
        let token = format!("{header}.{payload}.{signature}");
        let _ = oidc::peek_issuer(&token);
        let _ = oidc::verify(&token, &jwks(&[key1()]), ISSUER, now, skew);
    }

    #[test]
    fn any_changed_byte_after_the_header_is_refused(
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let token: &str = &TOKEN;
        let set = jwks(&[key1()]);
        prop_assert!(oidc::verify(token, &set, ISSUER, NOW, SKEW).is_ok());

        let header_end = token.find('.').expect("dot") + 1;
        let at = header_end + position.index(token.len() - header_end);
        let original = token.as_bytes()[at] as char;
        prop_assume!(replacement != original);
        let mut changed = String::with_capacity(token.len() + 4);
        changed.push_str(&token[..at]);
        changed.push(replacement);
        changed.push_str(&token[at + 1..]);
        prop_assert!(oidc::verify(&changed, &set, ISSUER, NOW, SKEW).is_err());
    }

    #[test]
    fn any_changed_base64url_byte_after_the_header_is_refused(
        position in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_-]",
    ) {
        let token: &str = &TOKEN;
        let set = jwks(&[key1()]);
        let header_end = token.find('.').expect("dot") + 1;
        let at = header_end + position.index(token.len() - header_end);
        prop_assume!(token.as_bytes()[at] != b'.');
        prop_assume!(replacement.as_bytes()[0] != token.as_bytes()[at]);
        let changed = format!("{}{}{}", &token[..at], replacement, &token[at + 1..]);
        prop_assert!(oidc::verify(&changed, &set, ISSUER, NOW, SKEW).is_err());
    }
}
