//! READMEs: Markdown rendered with pulldown-cmark, then sanitized with ammonia, so nothing a
//! publisher writes can run in a reader's browser. Raw HTML in the README goes through the same
//! sanitizer: scripts, styles, event handlers, `javascript:`/`data:` links, forms and frames
//! are removed; links get `rel="noopener noreferrer nofollow"`.

use std::collections::HashSet;
use std::sync::LazyLock;

use pulldown_cmark::{Options, Parser, html};

/// The largest README rendered, in bytes (the extractor caps them lower; this is the renderer's
/// own bound).
pub(crate) const MAX_README_BYTES: usize = 1024 * 1024;

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .url_relative(ammonia::UrlRelative::PassThrough)
        .add_tag_attributes("th", ["align"])
        .add_tag_attributes("td", ["align"])
        .add_allowed_classes("code", LANGUAGE_CLASSES);
    builder
});

/// Classes pulldown-cmark gives fenced code blocks (`language-…`) that are kept.
const LANGUAGE_CLASSES: [&str; 8] = [
    "language-rust",
    "language-toml",
    "language-sh",
    "language-shell",
    "language-bash",
    "language-console",
    "language-text",
    "language-json",
];

/// A README as safe HTML. `markdown` decides whether the text is Markdown (`README.md`, or a
/// readme without extension) or shown as preformatted text.
pub(crate) fn render(text: &str, markdown: bool) -> String {
    let text = truncate(text, MAX_README_BYTES);
    if !markdown {
        return format!("<pre>{}</pre>", ammonia::clean_text(text));
    }
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut unsafe_html = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut unsafe_html, Parser::new_ext(text, options));
    SANITIZER.clean(&unsafe_html).to_string()
}

/// Whether a readme file is Markdown, by its path in the package.
pub(crate) fn is_markdown(path: Option<&str>) -> bool {
    let Some(path) = path else { return true };
    let lower = path.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    match file.rsplit_once('.') {
        Some((_, ext)) => matches!(ext, "md" | "markdown" | "mdown" | "mkd"),
        None => true,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markdown_renders() {
        let html = render(
            "# Title\n\nSome *text* and `code`.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
            true,
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<em>text</em>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        let code = render("```rust\nfn main() {}\n```\n", true);
        assert!(code.contains("class=\"language-rust\""), "{code}");
    }

    #[test]
    fn hostile_readmes_render_inert() {
        let hostile = "<script>alert(1)</script>\n\n\
            [click](javascript:alert(2)) [data](data:text/html,<script>alert(3)</script>)\n\n\
            <img src=x onerror=alert(4)> <a href=\"JaVaScRiPt:alert(5)\">x</a>\n\n\
            <iframe src=\"https://evil.example\"></iframe><form action=/me/tokens method=post>\
            <input name=name value=x></form><style>body{display:none}</style>\n\n\
            <div onclick=\"alert(6)\" style=\"position:fixed\">over</div>\n\n\
            <svg><script>alert(7)</script></svg><object data=x></object>\n";
        let html = render(hostile, true).to_ascii_lowercase();
        for forbidden in [
            "<script",
            "javascript:",
            "onerror",
            "onclick",
            "<iframe",
            "<form",
            "<style",
            "data:text",
            "<object",
            "style=",
        ] {
            assert!(!html.contains(forbidden), "`{forbidden}` survived: {html}");
        }
        assert!(html.contains("over"), "text content is kept: {html}");
        let links = render("[site](https://example.com)", true);
        assert!(
            links.contains("rel=\"noopener noreferrer nofollow\""),
            "{links}"
        );
    }

    #[test]
    fn plain_text_readmes_are_escaped() {
        assert_eq!(
            render("<b>x</b>", false),
            "<pre>&lt;b&gt;x&lt;&#47;b&gt;</pre>"
        );
        assert!(is_markdown(Some("README.md")));
        assert!(is_markdown(Some("docs/README")));
        assert!(!is_markdown(Some("README.txt")));
        assert!(!is_markdown(Some("README.rst")));
        assert!(is_markdown(None));
    }

    proptest! {
        /// Any text, Markdown or not: rendering terminates without panicking and nothing
        /// executable survives.
        #[test]
        fn any_readme_renders_inert(text in ".{0,400}", markdown: bool) {
            let html = render(&text, markdown).to_ascii_lowercase();
            prop_assert!(!html.contains("<script"));
            // Inside tags (text content has its `<` escaped): no handler, no script URL.
            for tag in html.split('<').skip(1).filter_map(|rest| rest.split('>').next()) {
                prop_assert!(!tag.contains(" on"), "event handler in <{}>", tag);
                prop_assert!(!tag.contains("javascript:"), "script URL in <{}>", tag);
            }
        }

        #[test]
        fn truncation_keeps_char_boundaries(text in "\\PC{0,64}", max in 0usize..80) {
            let cut = truncate(&text, max);
            prop_assert!(cut.len() <= max);
            prop_assert!(text.starts_with(cut));
        }
    }
}
