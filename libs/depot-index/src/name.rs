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

/// Why a crate name is not acceptable.
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
                "invalid character `{c}` in crate name: `{name}`, characters must be an ASCII alphanumeric characters, `-`, or `_`"
            ),
            CrateNameError::Reserved(name) => {
                write!(f, "cannot upload a crate with a reserved name: `{name}`")
            }
        }
    }
}

impl std::error::Error for CrateNameError {}

/// Checks a crate name against the rules crates.io applies (ASCII, starts with a letter, at most
/// 64 characters, not reserved).
pub fn validate_crate_name(name: &str) -> Result<(), CrateNameError> {
    validate_dependency_name(name)?;
    let canonical = canonical_name(name);
    let reserved = RESERVED_NAMES.contains(&canonical.as_str()) || is_windows_device(&canonical);
    if reserved {
        return Err(CrateNameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// Checks the syntax of a crate name without the reserved-name rule (dependencies may name
/// crates that live elsewhere).
pub fn validate_dependency_name(name: &str) -> Result<(), CrateNameError> {
    let Some(first) = name.chars().next() else {
        return Err(CrateNameError::Empty);
    };
    if name.len() > MAX_NAME_LENGTH {
        return Err(CrateNameError::TooLong(name.to_owned()));
    }
    if first.is_ascii_digit() {
        return Err(CrateNameError::StartsWithDigit(name.to_owned()));
    }
    if !first.is_ascii_alphabetic() {
        return Err(CrateNameError::BadFirstChar(name.to_owned()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(CrateNameError::BadChar(name.to_owned(), bad));
    }
    Ok(())
}

fn is_windows_device(canonical: &str) -> bool {
    ["com", "lpt"].iter().any(|prefix| {
        canonical
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.len() == 1 && rest.as_bytes()[0].is_ascii_digit())
    })
}

/// The canonical form of a crate name: ASCII-lowercase with `-` replaced by `_`. Two names with
/// the same canonical form are the same crate.
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
pub fn index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.len() {
        0 => String::new(),
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
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
