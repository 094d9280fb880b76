//! Validation of subjects, topics and names handed to the log.
//!
//! Aggregate subjects and notification topics are one or more dot-separated tokens. Tokens are
//! non-empty and contain no whitespace, no control characters and no wildcards (`*`, `>`), so
//! every backend can store them verbatim and JetStream can use them as subject tokens.

/// Checks a dot-separated subject (aggregate subject, notification topic, subject prefix).
///
/// With `allow_wildcards`, `*` and `>` are accepted as whole tokens (`>` only as the last).
pub(crate) fn validate_subject(
    what: &str,
    value: &str,
    allow_wildcards: bool,
) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    let tokens: Vec<&str> = value.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(format!("{what} {value:?} has an empty token"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{what} {value:?} contains whitespace or control characters"
            ));
        }
        let is_wildcard = *token == "*" || (*token == ">" && index + 1 == tokens.len());
        if token.contains(['*', '>']) && !(allow_wildcards && is_wildcard) {
            return Err(format!("{what} {value:?} contains a wildcard"));
        }
    }
    Ok(())
}

/// Checks a single name (stream name, work-queue name): no dots, wildcards, path separators,
/// whitespace or control characters; at most 255 bytes.
pub(crate) fn validate_name(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > 255 {
        return Err(format!("{what} {value:?} is longer than 255 bytes"));
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "{what} {value:?} must not contain '.', '*', '>', '/', '\\', whitespace or control characters"
        ));
    }
    Ok(())
}

/// Checks a message id: non-empty, no control characters (it travels in a header).
pub(crate) fn validate_msg_id(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("message id must not be empty".to_owned());
    }
    if value.chars().any(char::is_control) {
        return Err(format!("message id {value:?} contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert!(validate_subject("subject", "crate.serde", false).is_ok());
        assert!(validate_subject("subject", "principal.0190-abc_def", false).is_ok());
        assert!(validate_subject("subject", "", false).is_err());
        assert!(validate_subject("subject", "crate..x", false).is_err());
        assert!(validate_subject("subject", ".crate", false).is_err());
        assert!(validate_subject("subject", "crate.", false).is_err());
        assert!(validate_subject("subject", "crate.a b", false).is_err());
        assert!(validate_subject("subject", "crate.*", false).is_err());
        assert!(validate_subject("subject", "crate.>", false).is_err());
        assert!(validate_subject("subject", "crate.a>", true).is_err());
        assert!(validate_subject("subject", "crate.*", true).is_ok());
        assert!(validate_subject("subject", "crate.>", true).is_ok());
        assert!(validate_subject("subject", ">.crate", true).is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("name", "DEPOT").is_ok());
        assert!(validate_name("name", "extractor-1_a").is_ok());
        assert!(validate_name("name", "").is_err());
        assert!(validate_name("name", "a.b").is_err());
        assert!(validate_name("name", "a b").is_err());
        assert!(validate_name("name", "a/b").is_err());
        assert!(validate_name("name", &"x".repeat(256)).is_err());
    }

    #[test]
    fn msg_ids() {
        assert!(validate_msg_id("publish:serde:1.0.0:abc").is_ok());
        assert!(validate_msg_id("").is_err());
        assert!(validate_msg_id("a\r\nb").is_err());
    }
}
