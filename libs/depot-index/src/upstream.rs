//! What a cache of another registry reads from upstream data it otherwise passes through
//! untouched: the `cksum` of one version in an index file, and the download URL of a `.crate`
//! (cargo's `dl` template). Both are total: any bytes in, an answer out, never a panic.

use serde::Deserialize;

use crate::digest::is_sha256_hex;

/// The fields of an index line the cache needs; every other field is ignored (and passed
/// through untouched, since the cache serves the upstream's bytes, not this).
#[derive(Debug, Deserialize)]
struct LineFields<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    vers: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    cksum: std::borrow::Cow<'a, str>,
}

/// The `name` and `cksum` of version `vers` in an index file body: from the last line whose
/// `vers` is exactly `vers` and whose `cksum` is 64 lowercase hex digits. Lines that are not
/// JSON objects, or lack those fields, are skipped (a newer upstream may write lines this build
/// cannot read).
pub fn cksum_of(body: &[u8], vers: &str) -> Option<(String, String)> {
    body.rsplit(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice::<LineFields<'_>>(line).ok())
        .find(|fields| fields.vers == vers && is_sha256_hex(&fields.cksum))
        .map(|fields| (fields.name.into_owned(), fields.cksum.into_owned()))
}

/// The markers cargo replaces in a `dl` template.
const MARKERS: [&str; 5] = [
    "{crate}",
    "{version}",
    "{prefix}",
    "{lowerprefix}",
    "{sha256-checksum}",
];

/// The download URL of `name` `vers` per a registry's `dl` template, as cargo builds it: the
/// markers `{crate}`, `{version}`, `{prefix}`, `{lowerprefix}` and `{sha256-checksum}` are
/// replaced; a template without any gets `/{crate}/{version}/download` appended.
pub fn download_url(template: &str, name: &str, vers: &str, cksum: &str) -> String {
    if !MARKERS.iter().any(|marker| template.contains(marker)) {
        return format!("{}/{name}/{vers}/download", template.trim_end_matches('/'));
    }
    let prefix = prefix_of(name);
    template
        .replace("{crate}", name)
        .replace("{version}", vers)
        .replace("{prefix}", &prefix)
        .replace("{lowerprefix}", &prefix.to_ascii_lowercase())
        .replace("{sha256-checksum}", cksum)
}

/// Cargo's `{prefix}`: the directory part of the index path, from the name as spelled.
fn prefix_of(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let take = |range: std::ops::Range<usize>| chars[range].iter().collect::<String>();
    match chars.len() {
        0 => String::new(),
        1 => "1".to_owned(),
        2 => "2".to_owned(),
        3 => format!("3/{}", take(0..1)),
        _ => format!("{}/{}", take(0..2), take(2..4)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn finds_the_checksum_of_a_version_whatever_the_field_order_or_extra_fields() {
        let body = format!(
            "{{\"name\":\"x\",\"vers\":\"1.0.0\",\"cksum\":\"{A}\",\"deps\":[]}}\n\
             {{\"future\":{{\"nested\":[1,2]}},\"cksum\":\"{B}\",\"vers\":\"1.1.0\",\"v\":2,\"name\":\"x\"}}\n"
        );
        assert_eq!(
            cksum_of(body.as_bytes(), "1.0.0")
                .map(|(_, c)| c)
                .as_deref(),
            Some(A)
        );
        assert_eq!(
            cksum_of(body.as_bytes(), "1.1.0"),
            Some(("x".into(), B.into()))
        );
        assert_eq!(cksum_of(body.as_bytes(), "1.2.0"), None);
        // Build metadata is part of the version string.
        assert_eq!(cksum_of(body.as_bytes(), "1.0.0+x"), None);
    }

    #[test]
    fn hostile_lines_are_skipped() {
        let body = format!(
            "not json\n{{\"vers\":\"1.0.0\"}}\n{{\"name\":\"x\",\"vers\":\"1.0.0\",\"cksum\":\"ABC\"}}\n\
             {{\"name\":\"x\",\"vers\":\"1.0.0\",\"cksum\":\"{}\"}}\n[1,2]\n\u{0}\u{ff}\n\
             {{\"name\":\"x\",\"vers\":\"1.0.0\",\"cksum\":\"{A}\"}}",
            A.to_ascii_uppercase()
        );
        assert_eq!(
            cksum_of(body.as_bytes(), "1.0.0")
                .map(|(_, c)| c)
                .as_deref(),
            Some(A)
        );
        assert_eq!(cksum_of(b"", "1.0.0"), None);
        assert_eq!(cksum_of(&[0xff; 100], "1.0.0"), None);
    }

    #[test]
    fn escaped_strings_are_compared_decoded() {
        let body = format!("{{\"name\":\"x\",\"vers\":\"1.0.0\\u002dx\",\"cksum\":\"{A}\"}}");
        assert_eq!(
            cksum_of(body.as_bytes(), "1.0.0-x")
                .map(|(_, c)| c)
                .as_deref(),
            Some(A)
        );
    }

    #[test]
    fn download_urls_follow_cargo() {
        assert_eq!(
            download_url("https://static.crates.io/crates", "serde", "1.0.0", A),
            "https://static.crates.io/crates/serde/1.0.0/download"
        );
        assert_eq!(
            download_url("https://x/dl/", "a", "0.1.0", A),
            "https://x/dl/a/0.1.0/download"
        );
        assert_eq!(
            download_url(
                "https://x/{prefix}/{lowerprefix}/{crate}-{version}.crate?s={sha256-checksum}",
                "CaRgo",
                "1.0.0",
                A
            ),
            format!("https://x/Ca/Rg/ca/rg/CaRgo-1.0.0.crate?s={A}")
        );
        for (name, prefix) in [("a", "1"), ("ab", "2"), ("Abc", "3/A"), ("abcd", "ab/cd")] {
            assert_eq!(prefix_of(name), prefix);
        }
    }

    proptest::proptest! {
        /// Any body and version: no panic, and a found checksum is always well-formed.
        #[test]
        fn any_body_is_safe(body in proptest::collection::vec(proptest::num::u8::ANY, 0..2000), vers in ".{0,20}") {
            if let Some((_, cksum)) = cksum_of(&body, &vers) {
                proptest::prop_assert!(is_sha256_hex(&cksum));
            }
        }

        /// A line appended to any other lines is found by its version.
        #[test]
        fn a_written_line_is_found(others in proptest::collection::vec("[a-z0-9{}\":,. ]{0,40}", 0..10), vers in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}") {
            let mut body = others.join("\n");
            body.push_str(&format!("\n{{\"name\":\"x\",\"vers\":\"{vers}\",\"cksum\":\"{B}\"}}\n"));
            proptest::prop_assert_eq!(cksum_of(body.as_bytes(), &vers), Some(("x".to_owned(), B.to_owned())));
        }

        /// Any name and version give a URL with both in it (no marker left unreplaced).
        #[test]
        fn templates_replace_every_marker(name in "[A-Za-z][A-Za-z0-9_-]{0,20}", vers in "[0-9]\\.[0-9]\\.[0-9]") {
            let url = download_url("https://x/{crate}/{version}/{prefix}/{lowerprefix}/{sha256-checksum}", &name, &vers, A);
            proptest::prop_assert!(MARKERS.iter().all(|m| !url.contains(m)));
            proptest::prop_assert!(url.contains(&name) && url.contains(&vers));
        }
    }
}
