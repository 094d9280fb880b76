//! Crate names: validation as crates.io applies it, canonical form, and index paths.

use std::fmt;

/// The longest crate name accepted.
pub const MAX_NAME_LENGTH: usize = 64;

/// Names that cannot be published (compared in canonical form), as on crates.io.
const RESERVED_NAMES: &[&str] = &[
    "alloc",
    "arena",
    "ast",
    "builtins",
    "collections",
    "compiler_builtins",
    "compiler_rt",
    "compiletest",
    "core",
    "coretest",
    "debug",
    "driver",
    "flate",
    "fmt_macros",
    "grammar",
    "graphviz",
    "macro",
    "macros",
    "proc_macro",
    "rbml",
    "rust_installer",
    "rustbook",
    "rustc",
    "rustc_back",
    "rustc_borrowck",
    "rustc_driver",
    "rustc_llvm",
    "rustc_resolve",
    "rustc_trans",
    "rustc_typeck",
    "rustdoc",
    "rustllvm",
    "rustuv",
    "serialize",
    "std",
    "syntax",
    "test",
    "unicode",
    "nul",
    "con",
    "prn",
    "aux",
];

/// The longest stretch of a refused input repeated in an error message, in characters.
const MAX_SHOWN: usize = 80;

/// The start of a refused input, for error messages: at most [`MAX_SHOWN`] characters, with `…`
/// when cut, so a huge hostile input is never echoed whole.
pub(crate) fn shown(input: &str) -> String {
    match input.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

/// Why a crate name is not acceptable. Names inside are cut to a bounded length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrateNameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LENGTH`].
    TooLong(String),
    /// The name starts with a digit.
    StartsWithDigit(String),
    /// The name does not start with an ASCII letter.
    BadFirstChar(String),
    /// The name contains a character other than ASCII alphanumerics, `-` and `_`.
    BadChar(String, char),
    /// The name is reserved.
    Reserved(String),
}

impl fmt::Display for CrateNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrateNameError::Empty => write!(f, "the crate name cannot be empty"),
            CrateNameError::TooLong(name) => write!(
                f,
                "the crate name `{name}` is too long (max {MAX_NAME_LENGTH} characters)"
            ),
            CrateNameError::StartsWithDigit(name) => {
                write!(
                    f,
                    "the name `{name}` cannot be used as a crate name, the name cannot start with a digit"
                )
            }
            CrateNameError::BadFirstChar(name) => write!(
                f,
                "the name `{name}` cannot be used as a crate name, the first character must be an ASCII character"
            ),
            CrateNameError::BadChar(name, c) => write!(
                f,
                "invalid character `{}` in crate name: `{name}`, characters must be an ASCII alphanumeric characters, `-`, or `_`",
                c.escape_debug()
            ),
            CrateNameError::Reserved(name) => {
                write!(f, "cannot upload a crate with a reserved name: `{name}`")
            }
        }
    }
}

impl std::error::Error for CrateNameError {}

/// A syntactically valid crate name as spelled by its author: an ASCII letter, then ASCII
/// alphanumerics, `-` or `_`, at most [`MAX_NAME_LENGTH`] in all. This is the rule for names of
/// dependencies and for looking crates up; [`CrateName::parse_for_publish`] adds the
/// reserved-name rule for new crates.
///
/// Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrateName(String);

impl CrateName {
    /// Parses a name with the syntax rule (no reserved-name check).
    pub fn parse(name: &str) -> Result<CrateName, CrateNameError> {
        check_syntax(name)?;
        Ok(CrateName(name.to_owned()))
    }

    /// Parses a name a new crate may be published under: the syntax rule plus the reserved
    /// names crates.io refuses (`std`, `proc-macro`, Windows device names …).
    pub fn parse_for_publish(name: &str) -> Result<CrateName, CrateNameError> {
        let parsed = CrateName::parse(name)?;
        if parsed.is_reserved() {
            return Err(CrateNameError::Reserved(shown(name)));
        }
        Ok(parsed)
    }

    /// Whether the name is one that cannot be published.
    pub fn is_reserved(&self) -> bool {
        let canonical = self.canonical();
        RESERVED_NAMES.contains(&canonical.as_str()) || is_windows_device(canonical.as_str())
    }

    /// The name as spelled.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical form under which the crate is known.
    pub fn canonical(&self) -> CanonicalName {
        CanonicalName(canonical_name(&self.0))
    }

    /// The name in ASCII lowercase (the last segment of its index path).
    pub fn to_lowercase(&self) -> CrateName {
        CrateName(self.0.to_ascii_lowercase())
    }

    /// The path of the crate's index file relative to the index root.
    pub fn index_path(&self) -> String {
        index_path(&self.0)
    }
}

/// The canonical form of a valid crate name: ASCII lowercase, `-` replaced by `_`. Two names
/// with the same canonical form are the same crate. Only obtainable from a [`CrateName`], so it
/// only ever holds ASCII alphanumerics and `_` (safe in a log subject, a file name or a key).
///
/// Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanonicalName(String);

impl CanonicalName {
    /// The canonical name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_syntax(name: &str) -> Result<(), CrateNameError> {
    let Some(first) = name.chars().next() else {
        return Err(CrateNameError::Empty);
    };
    if name.len() > MAX_NAME_LENGTH {
        return Err(CrateNameError::TooLong(shown(name)));
    }
    if first.is_ascii_digit() {
        return Err(CrateNameError::StartsWithDigit(shown(name)));
    }
    if !first.is_ascii_alphabetic() {
        return Err(CrateNameError::BadFirstChar(shown(name)));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(CrateNameError::BadChar(shown(name), bad));
    }
    Ok(())
}

/// Checks a crate name against the rules crates.io applies (ASCII, starts with a letter, at most
/// 64 characters, not reserved). Same as [`CrateName::parse_for_publish`].
pub fn validate_crate_name(name: &str) -> Result<(), CrateNameError> {
    CrateName::parse_for_publish(name).map(drop)
}

/// Checks the syntax of a crate name without the reserved-name rule (dependencies may name
/// crates that live elsewhere). Same as [`CrateName::parse`].
pub fn validate_dependency_name(name: &str) -> Result<(), CrateNameError> {
    check_syntax(name)
}

fn is_windows_device(canonical: &str) -> bool {
    ["com", "lpt"].iter().any(|prefix| {
        canonical
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.len() == 1 && rest.as_bytes()[0].is_ascii_digit())
    })
}

/// The canonical form of any string: ASCII-lowercase with `-` replaced by `_` (for search
/// queries; a crate's canonical name is [`CrateName::canonical`]).
pub fn canonical_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The path of a crate's index file relative to the index root, from the lowercased name
/// (cargo's `make_dep_path`): `1/a`, `2/ab`, `3/s/syn`, `ca/rg/cargo`.
///
/// Total: any string gets a path (lengths and prefixes count characters, so non-ASCII input
/// cannot split a character); for a valid name it is exactly cargo's path.
pub fn index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    let prefix = |chars: usize| -> &str {
        let end = name
            .char_indices()
            .nth(chars)
            .map_or(name.len(), |(i, _)| i);
        &name[..end]
    };
    match name.chars().count() {
        0 => String::new(),
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", prefix(1)),
        _ => {
            let two = prefix(2);
            let four = prefix(4);
            format!("{two}/{}/{name}", &four[two.len()..])
        }
    }
}

/// The crate whose index file lives exactly at `path` (relative to the index root, as in
/// `GET /index/<path>`): the lowercase name it ends in, if that is a valid crate name and
/// `path` is precisely cargo's path for it; `None` for anything else.
pub fn parse_index_path(path: &str) -> Option<CrateName> {
    let last = path.rsplit('/').next()?;
    if last.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let name = CrateName::parse(last).ok()?;
    (name.index_path() == path).then_some(name)
}

macro_rules! string_newtype_impls {
    ($($ty:ident),*) => {$(
        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    )*};
}
pub(crate) use string_newtype_impls;

string_newtype_impls!(CrateName, CanonicalName);

impl<'de> serde::Deserialize<'de> for CrateName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CrateName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl<'de> serde::Deserialize<'de> for CanonicalName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        let name = CrateName::parse(&raw).map_err(serde::de::Error::custom)?;
        let canonical = name.canonical();
        if canonical.as_str() != raw {
            return Err(serde::de::Error::custom(format!(
                "`{}` is not in canonical form",
                shown(&raw)
            )));
        }
        Ok(canonical)
    }
}

impl std::str::FromStr for CrateName {
    type Err = CrateNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CrateName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_cargo() {
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("syn"), "3/s/syn");
        assert_eq!(index_path("cargo"), "ca/rg/cargo");
        assert_eq!(index_path("My_Crate"), "my/_c/my_crate");
        assert_eq!(index_path("dep-a"), "de/p-/dep-a");
    }

    #[test]
    fn index_path_is_total() {
        // Not names, but no panic on a split character.
        assert_eq!(index_path("éa"), "2/éa");
        assert_eq!(index_path("xéa"), "3/x/xéa");
        assert_eq!(index_path("aéb€c"), "aé/b€/aéb€c");
        assert_eq!(index_path(""), "");
    }

    #[test]
    fn index_paths_parse_back() {
        let parse = |p: &str| parse_index_path(p).map(String::from);
        assert_eq!(parse("3/s/syn").as_deref(), Some("syn"));
        assert_eq!(parse("my/_c/my_crate").as_deref(), Some("my_crate"));
        assert_eq!(parse("1/a").as_deref(), Some("a"));
        for bad in [
            "",
            "3/s/Syn",
            "3/x/syn",
            "syn",
            "2/syn",
            "ca/rg/cargo/",
            "/ca/rg/cargo",
            "3/x/%C3",
            "2/éa",
            "3/*/*ab",
            "1/*",
            "1/>",
            "2/..",
            "ca/rg/../cargo",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn newtypes_serialise_as_strings() {
        let name = CrateName::parse("My-Crate").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"My-Crate\"");
        assert_eq!(
            serde_json::to_string(&name.canonical()).unwrap(),
            "\"my_crate\""
        );
        let back: CrateName = serde_json::from_str("\"My-Crate\"").unwrap();
        assert_eq!(back, name);
        assert!(serde_json::from_str::<CrateName>("\"a*b\"").is_err());
        assert!(serde_json::from_str::<CanonicalName>("\"My-Crate\"").is_err());
    }

    #[test]
    fn canonical_names_fold_case_and_dashes() {
        assert_eq!(canonical_name("My-Crate_x"), "my_crate_x");
        assert_eq!(canonical_name("foo_bar"), canonical_name("Foo-Bar"));
    }

    #[test]
    fn name_rules() {
        assert!(validate_crate_name("serde").is_ok());
        assert!(validate_crate_name("My_Crate-2").is_ok());
        assert_eq!(validate_crate_name(""), Err(CrateNameError::Empty));
        assert!(matches!(
            validate_crate_name("1abc"),
            Err(CrateNameError::StartsWithDigit(_))
        ));
        assert!(matches!(
            validate_crate_name("_abc"),
            Err(CrateNameError::BadFirstChar(_))
        ));
        assert!(matches!(
            validate_crate_name("ab.c"),
            Err(CrateNameError::BadChar(_, '.'))
        ));
        assert!(matches!(
            validate_crate_name("crème"),
            Err(CrateNameError::BadChar(_, 'è'))
        ));
        assert!(matches!(
            validate_crate_name(&"a".repeat(65)),
            Err(CrateNameError::TooLong(_))
        ));
        assert!(validate_crate_name(&"a".repeat(64)).is_ok());
        assert!(matches!(
            validate_crate_name("std"),
            Err(CrateNameError::Reserved(_))
        ));
        assert!(matches!(
            validate_crate_name("Proc-Macro"),
            Err(CrateNameError::Reserved(_))
        ));
        assert!(matches!(
            validate_crate_name("com1"),
            Err(CrateNameError::Reserved(_))
        ));
        assert!(validate_crate_name("com10").is_ok());
    }
}
