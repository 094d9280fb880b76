//! Platform keys of `[target.'…'.dependencies]` tables, in the form cargo puts in index lines.
//!
//! cargo parses a target key into a platform and sends its canonical rendering in the publish
//! metadata, so `cfg(target_os="wasi")` in `Cargo.toml` becomes `cfg(target_os = "wasi")` in the
//! index (crates.io keeps what cargo sent). The tarball's `Cargo.toml` keeps the key as written,
//! so reading dependencies from it needs the same rendering: the grammar and the spacing follow
//! cargo's `cargo-platform` crate (only spaces separate tokens; identifiers are ASCII; strings
//! have no escapes; `r#` raw identifiers keep their prefix).
//!
//! Parsing, rendering and dropping an expression recurse once per level of parentheses, so a
//! platform is bounded before any of that runs: at most [`MAX_PLATFORM_LEN`] bytes and
//! [`MAX_CFG_DEPTH`] nested parentheses ([`check_platform`]). The depth is counted by a flat scan
//! of the tokens; nothing recursive ever sees a platform past the bounds.

use std::fmt;

/// Longest platform (`cfg(…)` expression or target triple) accepted, in bytes.
pub const MAX_PLATFORM_LEN: usize = 4096;

/// Deepest nesting of parentheses in a `cfg(…)` platform; the outer `cfg(` counts as one level.
pub const MAX_CFG_DEPTH: usize = 64;

/// Why a platform is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Longer than [`MAX_PLATFORM_LEN`].
    #[error("target `{}` is {len} bytes long, but at most {max} bytes are allowed", preview(.platform))]
    TooLong {
        /// The start of the platform.
        platform: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Parentheses nested deeper than [`MAX_CFG_DEPTH`].
    #[error("target `{}` nests deeper than {max} levels", preview(.platform))]
    TooDeep {
        /// The start of the platform.
        platform: String,
        /// The limit.
        max: usize,
    },
}

/// How many characters of a refused platform an error message shows.
const PREVIEW_CHARS: usize = 40;

/// The first [`PREVIEW_CHARS`] characters of `platform`, with `…` when cut.
fn preview(platform: &str) -> String {
    match platform.char_indices().nth(PREVIEW_CHARS) {
        Some((at, _)) => format!("{}…", &platform[..at]),
        None => platform.to_owned(),
    }
}

/// Checks a platform against [`MAX_PLATFORM_LEN`] and [`MAX_CFG_DEPTH`] without recursing.
/// Target triples and unparsable text pass when short enough: only the bounds are checked here.
pub fn check_platform(platform: &str) -> Result<(), PlatformError> {
    let short = || preview(platform);
    if paren_depth(platform) > MAX_CFG_DEPTH {
        return Err(PlatformError::TooDeep {
            platform: short(),
            max: MAX_CFG_DEPTH,
        });
    }
    if platform.len() > MAX_PLATFORM_LEN {
        return Err(PlatformError::TooLong {
            platform: short(),
            len: platform.len(),
            max: MAX_PLATFORM_LEN,
        });
    }
    Ok(())
}

/// The deepest nesting of parentheses outside string literals (a flat scan).
fn paren_depth(platform: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    for byte in platform.bytes() {
        match (in_string, byte) {
            (false, b'"') | (true, b'"') => in_string = !in_string,
            (false, b'(') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, b')') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Renders a platform the way cargo writes it in publish metadata: `cfg(...)` expressions are
/// re-spaced canonically (`cfg(all(unix, target_os = "linux"))`), target triples and anything
/// cargo could not parse are returned unchanged, and so is a platform past the bounds of
/// [`check_platform`] (callers that keep the platform reject those first).
pub fn normalize_platform(platform: &str) -> String {
    if check_platform(platform).is_err() {
        return platform.to_owned();
    }
    let parsed = platform
        .strip_prefix("cfg(")
        .and_then(|inner| inner.strip_suffix(')'))
        .and_then(parse_cfg);
    match parsed {
        Some(expr) => format!("cfg({expr})"),
        None => platform.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    Comma,
    Equals,
    Str(&'a str),
    /// An identifier and whether it was written raw (`r#name`).
    Ident(&'a str, bool),
}

#[derive(Debug)]
enum Expr<'a> {
    Not(Box<Expr<'a>>),
    All(Vec<Expr<'a>>),
    Any(Vec<Expr<'a>>),
    Name(&'a str, bool),
    Pair(&'a str, bool, &'a str),
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_ident_rest(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

fn tokenize(s: &str) -> Option<Vec<Token<'_>>> {
    let mut tokens = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let token = match c {
            ' ' => continue,
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            '=' => Token::Equals,
            '"' => {
                let end = chars.by_ref().find(|&(_, c)| c == '"')?.0;
                Token::Str(&s[start + 1..end])
            }
            c if is_ident_start(c) => {
                let mut from = start;
                let mut raw = false;
                if c == 'r' && chars.peek().is_some_and(|&(_, c)| c == '#') {
                    chars.next();
                    let (next_start, next) = chars.next()?;
                    if !is_ident_start(next) {
                        return None;
                    }
                    from = next_start;
                    raw = true;
                }
                let mut end = s.len();
                while let Some(&(at, c)) = chars.peek() {
                    if !is_ident_rest(c) {
                        end = at;
                        break;
                    }
                    chars.next();
                }
                Token::Ident(&s[from..end], raw)
            }
            _ => return None,
        };
        tokens.push(token);
    }
    Some(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
    /// Expressions being parsed (the recursion depth), kept at most [`MAX_CFG_DEPTH`] even if a
    /// caller skipped [`check_platform`].
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn eat(&mut self, token: &Token<'a>) -> bool {
        if self.peek() == Some(token) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Expr<'a>> {
        if self.depth >= MAX_CFG_DEPTH {
            return None;
        }
        self.depth += 1;
        let expr = self.expr_inner();
        self.depth -= 1;
        expr
    }

    fn expr_inner(&mut self) -> Option<Expr<'a>> {
        match self.next()? {
            Token::Ident(op @ ("all" | "any"), false) => {
                if !self.eat(&Token::Open) {
                    return None;
                }
                let mut list = Vec::new();
                while !self.eat(&Token::Close) {
                    list.push(self.expr()?);
                    if !self.eat(&Token::Comma) {
                        if !self.eat(&Token::Close) {
                            return None;
                        }
                        break;
                    }
                }
                Some(if op == "all" {
                    Expr::All(list)
                } else {
                    Expr::Any(list)
                })
            }
            Token::Ident("not", false) => {
                if !self.eat(&Token::Open) {
                    return None;
                }
                let inner = self.expr()?;
                self.eat(&Token::Close).then(|| Expr::Not(Box::new(inner)))
            }
            Token::Ident(name, raw) => {
                if self.eat(&Token::Equals) {
                    match self.next()? {
                        Token::Str(value) => Some(Expr::Pair(name, raw, value)),
                        _ => None,
                    }
                } else {
                    Some(Expr::Name(name, raw))
                }
            }
            _ => None,
        }
    }
}

fn parse_cfg(s: &str) -> Option<Expr<'_>> {
    let mut parser = Parser {
        tokens: tokenize(s)?,
        at: 0,
        depth: 0,
    };
    let expr = parser.expr()?;
    (parser.at == parser.tokens.len()).then_some(expr)
}

fn write_ident(f: &mut fmt::Formatter<'_>, name: &str, raw: bool) -> fmt::Result {
    if raw {
        f.write_str("r#")?;
    }
    f.write_str(name)
}

fn write_list(f: &mut fmt::Formatter<'_>, op: &str, list: &[Expr<'_>]) -> fmt::Result {
    write!(f, "{op}(")?;
    for (i, expr) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{expr}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Expr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Not(inner) => write!(f, "not({inner})"),
            Expr::All(list) => write_list(f, "all", list),
            Expr::Any(list) => write_list(f, "any", list),
            Expr::Name(name, raw) => write_ident(f, name, *raw),
            Expr::Pair(name, raw, value) => {
                write_ident(f, name, *raw)?;
                write!(f, " = \"{value}\"")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respaces_cfg_expressions() {
        let cases = [
            (r#"cfg(target_os="wasi")"#, r#"cfg(target_os = "wasi")"#),
            ("cfg(unix)", "cfg(unix)"),
            ("cfg( unix )", "cfg(unix)"),
            (
                r#"cfg(all(unix,not(target_os="macos"),))"#,
                r#"cfg(all(unix, not(target_os = "macos")))"#,
            ),
            (
                r#"cfg(any(  windows , target_arch = "x86"))"#,
                r#"cfg(any(windows, target_arch = "x86"))"#,
            ),
            ("cfg(all())", "cfg(all())"),
            ("cfg(r#true)", "cfg(r#true)"),
            ("cfg(true)", "cfg(true)"),
            (r#"cfg(feature = "a b,c")"#, r#"cfg(feature = "a b,c")"#),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_platform(input), expected, "{input}");
        }
    }

    #[test]
    fn leaves_triples_and_garbage_alone() {
        for input in [
            "x86_64-unknown-linux-gnu",
            "cfg(unix",
            "cfg(not(unix, windows))",
            "cfg(a = b)",
            "cfg(unix)\t",
            "cfg(\tunix)",
            "cfg(\"unterminated)",
            "cfg(all(unix) windows)",
        ] {
            assert_eq!(normalize_platform(input), input);
        }
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    fn nested_not(depth: usize) -> String {
        format!("cfg({}unix{})", "not(".repeat(depth), ")".repeat(depth))
    }

    /// Runs `f` on a thread with a 2 MiB stack, the default for spawned threads.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow or panic");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        on_small_stack(|| {
            let deep = nested_not(100_000);
            assert!(matches!(
                check_platform(&deep),
                Err(PlatformError::TooDeep {
                    max: MAX_CFG_DEPTH,
                    ..
                })
            ));
            // Too long as well: the depth is what the message names.
            assert_eq!(normalize_platform(&deep), deep);
            // The parser bounds itself too.
            assert!(parse_cfg(&deep[4..deep.len() - 1]).is_none());
        });
    }

    #[test]
    fn depth_limit_is_exact() {
        // `cfg(` is one level, so `MAX_CFG_DEPTH - 1` `not(`s are the most allowed.
        let ok = nested_not(MAX_CFG_DEPTH - 1);
        assert_eq!(check_platform(&ok), Ok(()));
        assert_eq!(normalize_platform(&ok), ok);
        let deep = nested_not(MAX_CFG_DEPTH);
        let error = check_platform(&deep).unwrap_err();
        assert_eq!(
            error.to_string(),
            "target `cfg(not(not(not(not(not(not(not(not(not(…` nests deeper than 64 levels"
        );
    }

    #[test]
    fn parentheses_in_strings_do_not_count() {
        let platform = format!("cfg(feature = \"{}\")", "(".repeat(200));
        assert_eq!(check_platform(&platform), Ok(()));
    }

    #[test]
    fn long_platforms_are_refused() {
        let long = format!("cfg(any({}))", "unix, ".repeat(1000));
        let error = check_platform(&long).unwrap_err();
        assert!(matches!(
            error,
            PlatformError::TooLong {
                max: MAX_PLATFORM_LEN,
                ..
            }
        ));
        assert!(error.to_string().contains("at most 4096 bytes"), "{error}");
        assert_eq!(normalize_platform(&long), long);
    }
}
