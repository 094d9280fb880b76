//! Version numbers as they appear in paths, events and index lines.

use crate::name::{shown, string_newtype_impls};

/// The longest version string accepted, in bytes (crates.io's limit).
pub const MAX_VERSION_LENGTH: usize = 150;

/// Why a version string is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Longer than [`MAX_VERSION_LENGTH`].
    #[error("the version `{0}` is too long (max {MAX_VERSION_LENGTH} characters)")]
    TooLong(String),
    /// Not a semver version.
    #[error("\"{vers}\" is an invalid semver version: {reason}")]
    Invalid {
        /// The start of the refused string.
        vers: String,
        /// What semver said.
        reason: String,
    },
}

/// A semver version of at most [`MAX_VERSION_LENGTH`] bytes, kept exactly as written (semver's
/// grammar has one spelling per version, build metadata included).
///
/// Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String, semver::Version);

impl Version {
    /// Parses a version string.
    pub fn parse(vers: &str) -> Result<Version, VersionError> {
        if vers.len() > MAX_VERSION_LENGTH {
            return Err(VersionError::TooLong(shown(vers)));
        }
        let parsed = semver::Version::parse(vers).map_err(|e| VersionError::Invalid {
            vers: shown(vers),
            reason: e.to_string(),
        })?;
        Ok(Version(vers.to_owned(), parsed))
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed semver version.
    pub fn semver(&self) -> &semver::Version {
        &self.1
    }
}

string_newtype_impls!(Version);

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Version::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(Version::parse("1.2.3").unwrap().as_str(), "1.2.3");
        assert_eq!(
            Version::parse("1.0.0-rc.1+build.5").unwrap().semver(),
            &semver::Version::parse("1.0.0-rc.1+build.5").unwrap()
        );
        for bad in [
            "", "1", "1.0", "v1.0.0", " 1.0.0", "01.0.0", "1.0.0.0", "*", "..", "1.0.0>",
        ] {
            assert!(
                matches!(Version::parse(bad), Err(VersionError::Invalid { .. })),
                "{bad}"
            );
        }
        let long = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LENGTH));
        assert!(matches!(
            Version::parse(&long),
            Err(VersionError::TooLong(_))
        ));
        let at_limit = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LENGTH - 6));
        assert!(Version::parse(&at_limit).is_ok());
    }
}
