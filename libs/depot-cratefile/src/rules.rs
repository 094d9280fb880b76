//! Syntax rules shared by the metadata and manifest checks: keywords, feature names and values,
//! dependency aliases and `rust-version`, as crates.io and cargo apply them.

use std::fmt;

use depot_index::MAX_NAME_LENGTH;

/// Whether a keyword has crates.io's syntax: an ASCII alphanumeric first character, then ASCII
/// alphanumerics, `_`, `-` or `+`. (The length limit is checked separately.)
pub(crate) fn is_valid_keyword(keyword: &str) -> bool {
    let mut chars = keyword.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
}

/// Why a feature name or value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeatureSyntaxError {
    /// The name is empty.
    Empty,
    /// The first character is not a Unicode XID start character, `_` or an ASCII digit.
    BadStart(char),
    /// A later character is not XID-continue, `+`, `-` or `.`.
    BadChar(char),
    /// The dependency part of `dep:x`, `x/f` or `x?/f` is not a valid dependency name.
    BadDependency(String),
}

impl fmt::Display for FeatureSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureSyntaxError::Empty => write!(f, "feature names cannot be empty"),
            FeatureSyntaxError::BadStart(c) => write!(
                f,
                "invalid character `{c}`: the first character must be a Unicode XID start \
                 character or a digit (most letters, `_` or `0` to `9`)"
            ),
            FeatureSyntaxError::BadChar(c) => write!(
                f,
                "invalid character `{c}`: characters must be Unicode XID characters, `+`, `-` \
                 or `.` (numbers, `+`, `-`, `_`, `.`, or most letters)"
            ),
            FeatureSyntaxError::BadDependency(name) => {
                write!(f, "`{name}` is not a valid dependency name")
            }
        }
    }
}

/// Checks a feature name: Unicode XID start, `_` or a digit, then XID continue, `+`, `-` or `.`.
pub(crate) fn validate_feature_name(name: &str) -> Result<(), FeatureSyntaxError> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(FeatureSyntaxError::Empty);
    };
    if !(unicode_ident::is_xid_start(first) || first == '_' || first.is_ascii_digit()) {
        return Err(FeatureSyntaxError::BadStart(first));
    }
    if let Some(bad) =
        chars.find(|&c| !(unicode_ident::is_xid_continue(c) || matches!(c, '+' | '-' | '.')))
    {
        return Err(FeatureSyntaxError::BadChar(bad));
    }
    Ok(())
}

/// Checks a feature value (`x`, `dep:x`, `x/f` or `x?/f`) part by part.
pub(crate) fn validate_feature_value(value: &str) -> Result<(), FeatureSyntaxError> {
    if let Some((dep, feature)) = value.split_once('/') {
        let dep = dep.strip_suffix('?').unwrap_or(dep);
        check_dependency_part(dep)?;
        validate_feature_name(feature)
    } else if let Some(dep) = value.strip_prefix("dep:") {
        check_dependency_part(dep)
    } else {
        validate_feature_name(value)
    }
}

fn check_dependency_part(dep: &str) -> Result<(), FeatureSyntaxError> {
    if is_valid_dependency_key(dep) {
        Ok(())
    } else {
        Err(FeatureSyntaxError::BadDependency(dep.to_owned()))
    }
}

/// Whether a name is valid as a dependency key in `Cargo.toml` (an alias or a crate name):
/// ASCII alphanumerics, `-` and `_`, starting with a letter or `_`, at most 64 characters.
pub(crate) fn is_valid_dependency_key(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LENGTH
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether a `rust-version` is what cargo accepts in an index line: `major[.minor[.patch]]`,
/// numbers only. Anything else makes cargo discard the whole index entry.
pub(crate) fn is_valid_rust_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() <= 3
        && parts.iter().all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && part.parse::<u64>().is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert!(is_valid_keyword("no-std"));
        assert!(is_valid_keyword("c++"));
        assert!(is_valid_keyword("3d"));
        assert!(!is_valid_keyword("-x"));
        assert!(!is_valid_keyword(""));
        assert!(!is_valid_keyword("a b"));
    }

    #[test]
    fn feature_names() {
        assert_eq!(validate_feature_name("std"), Ok(()));
        assert_eq!(validate_feature_name("_priv"), Ok(()));
        assert_eq!(validate_feature_name("1x"), Ok(()));
        assert_eq!(validate_feature_name("a.b+c-d"), Ok(()));
        assert_eq!(validate_feature_name("ünï"), Ok(()));
        assert_eq!(validate_feature_name(""), Err(FeatureSyntaxError::Empty));
        assert_eq!(
            validate_feature_name("-a"),
            Err(FeatureSyntaxError::BadStart('-'))
        );
        assert_eq!(
            validate_feature_name("a/b"),
            Err(FeatureSyntaxError::BadChar('/'))
        );
    }

    #[test]
    fn feature_values() {
        assert_eq!(validate_feature_value("dep:_alias"), Ok(()));
        assert_eq!(validate_feature_value("serde/derive"), Ok(()));
        assert_eq!(validate_feature_value("serde?/derive"), Ok(()));
        assert_eq!(
            validate_feature_value("dep:1x"),
            Err(FeatureSyntaxError::BadDependency("1x".into()))
        );
        assert_eq!(
            validate_feature_value("ser de/x"),
            Err(FeatureSyntaxError::BadDependency("ser de".into()))
        );
        assert_eq!(
            validate_feature_value("a/b/c"),
            Err(FeatureSyntaxError::BadChar('/'))
        );
    }

    #[test]
    fn rust_versions() {
        for ok in ["1", "1.70", "1.70.0"] {
            assert!(is_valid_rust_version(ok), "{ok}");
        }
        for bad in ["", "1.70.0.1", "1.70-beta", "v1.70", "1..2", "1.70.0+x"] {
            assert!(!is_valid_rust_version(bad), "{bad}");
        }
    }
}
