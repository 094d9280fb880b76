//! Property tests of the validated values: parsing never panics on any input, accepts exactly
//! the documented grammar, and round-trips.
//!
//! `PROPTEST_CASES` sets the number of cases (256 by default).

use depot_index::{
    BlobKey, Checksum, CrateName, Login, MAX_NAME_LENGTH, Version, index_path, parse_index_path,
};
use proptest::prelude::*;

/// Valid crate names: an ASCII letter, then up to 63 of `[A-Za-z0-9_-]`.
fn valid_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_-]{0,63}"
}

/// Strings that look like names but may break any rule: non-ASCII, separators, wildcards,
/// dots, empty, overlong.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_./*> %é\u{0}-]{0,70}",
        valid_name(),
        "[a-z]{60,70}",
        proptest::collection::vec(any::<char>(), 0..8).prop_map(|c| c.into_iter().collect()),
    ]
}

fn syntax_ok(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LENGTH
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

proptest! {
    #[test]
    fn names_parse_exactly_the_grammar(s in hostile()) {
        let parsed = CrateName::parse(&s);
        prop_assert_eq!(parsed.is_ok(), syntax_ok(&s));
        if let Ok(name) = parsed {
            prop_assert_eq!(name.as_str(), s.as_str());
            prop_assert_eq!(CrateName::parse(&format!("{name}")), Ok(name.clone()));
            // The publish rule is stricter, never looser.
            if CrateName::parse_for_publish(&s).is_ok() {
                prop_assert!(!name.is_reserved());
            } else {
                prop_assert!(name.is_reserved());
            }
        } else {
            prop_assert!(CrateName::parse_for_publish(&s).is_err());
        }
    }

    #[test]
    fn errors_never_echo_huge_inputs(s in ".{0,400}") {
        if let Err(e) = CrateName::parse(&s) {
            prop_assert!(e.to_string().chars().count() < 300);
        }
    }

    #[test]
    fn canonical_form_is_idempotent(s in valid_name()) {
        let name = CrateName::parse(&s).unwrap();
        let canon = name.canonical();
        // Canonical names are valid names whose canonical form is themselves.
        let again = CrateName::parse(canon.as_str()).unwrap().canonical();
        prop_assert_eq!(&again, &canon);
        prop_assert!(canon.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        // Case and `-`/`_` do not change the crate.
        let other = s.to_ascii_uppercase().replace('_', "-");
        prop_assert_eq!(CrateName::parse(&other).unwrap().canonical(), canon);
    }

    #[test]
    fn index_path_is_total(s in hostile()) {
        let path = index_path(&s);
        // No panic; and the path only parses back to a name that is `s` lowercased.
        if let Some(name) = parse_index_path(&path) {
            prop_assert_eq!(name.as_str(), s.to_ascii_lowercase());
        }
    }

    #[test]
    fn index_paths_parse_back(s in valid_name()) {
        let name = CrateName::parse(&s).unwrap();
        let lower = name.to_lowercase();
        prop_assert_eq!(parse_index_path(&name.index_path()), Some(lower.clone()));
        prop_assert_eq!(name.index_path(), lower.index_path());
        // A path with the name's original spelling only parses if it was lowercase already.
        let spelled = format!("{}{}", &name.index_path()[..name.index_path().len() - s.len()], s);
        prop_assert_eq!(parse_index_path(&spelled).is_some(), s == lower.as_str());
    }

    #[test]
    fn index_path_parsing_never_panics(s in hostile()) {
        if let Some(name) = parse_index_path(&s) {
            prop_assert_eq!(name.index_path(), s);
        }
    }

    #[test]
    fn versions_parse_like_semver(s in prop_oneof![
        any::<String>(),
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[0-9A-Za-z.-]{1,20})?(\\+[0-9A-Za-z.-]{1,20})?",
        "[0-9.a-z+*>-]{0,200}",
    ]) {
        let parsed = Version::parse(&s);
        let semver_ok = semver::Version::parse(&s).is_ok();
        prop_assert_eq!(parsed.is_ok(), semver_ok && s.len() <= depot_index::MAX_VERSION_LENGTH);
        if let Ok(v) = parsed {
            prop_assert_eq!(v.as_str(), s.as_str());
            prop_assert_eq!(v.semver().to_string(), s);
        }
    }

    #[test]
    fn checksums_and_blob_keys(s in prop_oneof![any::<String>(), "[0-9a-fA-F]{62,66}", "[0-9a-f]{64}"]) {
        let ok = s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        prop_assert_eq!(Checksum::parse(&s).is_ok(), ok);
        let key = format!("sha256/{s}");
        prop_assert_eq!(BlobKey::parse(&key).is_ok(), ok);
        prop_assert!(BlobKey::parse(&s).is_err());
        if let Ok(sum) = Checksum::parse(&s) {
            prop_assert_eq!(sum.blob_key().as_str().to_owned(), key.clone());
            prop_assert_eq!(BlobKey::parse(&key).unwrap().checksum(), sum);
        }
    }

    #[test]
    fn logins(s in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{0,41}"]) {
        let ok = (1..=39).contains(&s.len())
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        prop_assert_eq!(Login::parse(&s).is_ok(), ok);
    }
}
