//! Platform keys of `[target.'…'.dependencies]` tables, in the form cargo puts in index lines.
//!
//! cargo parses a target key into a platform and sends its canonical rendering in the publish
//! metadata, so `cfg(target_os="wasi")` in `Cargo.toml` becomes `cfg(target_os = "wasi")` in the
//! index (crates.io keeps what cargo sent). The tarball's `Cargo.toml` keeps the key as written,
//! so reading dependencies from it needs the same rendering: the grammar and the spacing follow
//! cargo's `cargo-platform` crate (only spaces separate tokens; identifiers are ASCII; strings
//! have no escapes; `r#` raw identifiers keep their prefix).

use std::fmt;

/// Renders a platform the way cargo writes it in publish metadata: `cfg(...)` expressions are
/// re-spaced canonically (`cfg(all(unix, target_os = "linux"))`), target triples and anything
/// cargo could not parse are returned unchanged.
pub fn normalize_platform(platform: &str) -> String {
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
    use super::normalize_platform;

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
