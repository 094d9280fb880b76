//! Registry index URLs: crates.io's two spellings, and which URLs mean "this registry".
//!
//! In publish metadata and index lines an absent `registry` means "the registry this line lives
//! in"; in a `Cargo.toml` an absent `registry-index` means crates.io. The helpers here translate
//! between the two and compare URLs.

/// crates.io's git index URL: what cargo sends in publish metadata for crates.io dependencies
/// and what lockfiles record.
pub const CRATES_IO_INDEX: &str = "https://github.com/rust-lang/crates.io-index";

/// crates.io's sparse index URL.
pub const CRATES_IO_SPARSE_INDEX: &str = "sparse+https://index.crates.io/";

/// Whether two index URLs name the same index (ignoring a trailing `/`).
pub(crate) fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Whether `url` is in `list` (see [`same_url`]).
pub(crate) fn contains_url(list: &[String], url: &str) -> bool {
    list.iter().any(|candidate| same_url(candidate, url))
}

/// Whether `url` is one of crates.io's two index URLs.
pub fn is_crates_io_index(url: &str) -> bool {
    same_url(url, CRATES_IO_INDEX) || same_url(url, CRATES_IO_SPARSE_INDEX)
}

/// The `registry` value for an index line: `None` for this registry, else the URL as given.
pub(crate) fn index_registry(url: Option<&str>, own_index_urls: &[String]) -> Option<String> {
    url.filter(|url| !contains_url(own_index_urls, url))
        .map(str::to_owned)
}

/// A form of an index-line `registry` value fit for comparison: crates.io's sparse URL is
/// folded into its git URL and a trailing `/` is dropped.
pub(crate) fn comparable_registry(url: Option<&str>) -> Option<String> {
    url.map(|url| {
        if is_crates_io_index(url) {
            CRATES_IO_INDEX.to_owned()
        } else {
            url.trim_end_matches('/').to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_io_has_two_spellings() {
        assert!(is_crates_io_index(CRATES_IO_INDEX));
        assert!(is_crates_io_index("sparse+https://index.crates.io"));
        assert!(!is_crates_io_index("https://index.crates.io/"));
        assert_eq!(
            comparable_registry(Some(CRATES_IO_SPARSE_INDEX)),
            comparable_registry(Some(CRATES_IO_INDEX))
        );
    }

    #[test]
    fn own_urls_become_none() {
        let own = vec!["sparse+http://depot.test/index/".to_owned()];
        assert_eq!(
            index_registry(Some("sparse+http://depot.test/index"), &own),
            None
        );
        assert_eq!(index_registry(None, &own), None);
        assert_eq!(
            index_registry(Some(CRATES_IO_INDEX), &own).as_deref(),
            Some(CRATES_IO_INDEX)
        );
    }
}
