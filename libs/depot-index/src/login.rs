//! User logins.

use crate::name::{shown, string_newtype_impls};

/// The longest login, in characters (as on GitHub).
pub const MAX_LOGIN_LENGTH: usize = 39;

/// Why a login is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid user `{0}`: use 1 to {MAX_LOGIN_LENGTH} ASCII letters, digits, `-` or `_`, starting with a letter or digit"
)]
pub struct LoginError(String);

/// A user's login: 1 to [`MAX_LOGIN_LENGTH`] ASCII letters, digits, `-` or `_`, starting with a
/// letter or digit; the rule `depot token create` applies, so every user Depot can create has
/// one. Logins compare case-insensitively elsewhere; [`Login::to_lowercase`] gives the stored form.
///
/// Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Login(String);

impl Login {
    /// Parses a login.
    pub fn parse(login: &str) -> Result<Login, LoginError> {
        let ok = (1..=MAX_LOGIN_LENGTH).contains(&login.len())
            && login
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && login
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Login(login.to_owned()))
        } else {
            Err(LoginError(shown(login)))
        }
    }

    /// The login as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The login in ASCII lowercase, the form owners and tokens are recorded under.
    pub fn to_lowercase(&self) -> Login {
        Login(self.0.to_ascii_lowercase())
    }
}

string_newtype_impls!(Login);

impl<'de> serde::Deserialize<'de> for Login {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Login::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Login {
    type Err = LoginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Login::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        for good in ["alice", "ci-bot_2", "Admin", "0day", &"a".repeat(39)] {
            assert!(Login::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "_x",
            "a.b",
            "a b",
            "a*",
            "a>",
            "é",
            &"a".repeat(40),
        ] {
            assert!(Login::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Login::parse("Alice").unwrap().to_lowercase().as_str(),
            "alice"
        );
    }
}
