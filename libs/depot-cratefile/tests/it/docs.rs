//! The docs archive reader: hostile archives are refused naming the entry, and a property test
//! over arbitrary bytes and arbitrary entry paths (no panic; every accepted path is a
//! normalized relative path).

use depot_cratefile::TarballBuilder;
use depot_cratefile::docs::{DocsError, DocsLimits, read_docs_archive};
use proptest::prelude::*;

fn read(bytes: &[u8], limits: &DocsLimits) -> Result<Vec<(String, Vec<u8>)>, DocsError> {
    let mut files = Vec::new();
    read_docs_archive(bytes, limits, |file| {
        files.push((file.path, file.bytes));
        Ok::<(), ()>(())
    })?;
    Ok(files)
}

fn refusal(bytes: &[u8]) -> String {
    read(bytes, &DocsLimits::default())
        .expect_err("refused")
        .to_string()
}

#[test]
fn a_rustdoc_tree_is_read_with_normalized_paths() {
    let archive = TarballBuilder::new()
        .add_dir("./")
        .add_file("./my_crate/index.html", b"<html></html>")
        .add_dir("./static.files/")
        .add_file("static.files//rustdoc.css", b"body{}")
        .build();
    let files = read(&archive, &DocsLimits::default()).unwrap();
    assert_eq!(
        files,
        vec![
            ("my_crate/index.html".to_owned(), b"<html></html>".to_vec()),
            ("static.files/rustdoc.css".to_owned(), b"body{}".to_vec()),
        ]
    );
}

#[test]
fn hostile_entries_are_refused_by_name() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            TarballBuilder::new()
                .add_raw_file(b"../evil.html", b"x")
                .build(),
            "`../evil.html` has an invalid path: it contains `..`",
        ),
        (
            TarballBuilder::new()
                .add_raw_file(b"/etc/passwd", b"x")
                .build(),
            "`/etc/passwd` has an invalid path: it is absolute",
        ),
        (
            TarballBuilder::new()
                .add_raw_file(b"C:\\x.html", b"x")
                .build(),
            "`C:\\x.html` has an invalid path",
        ),
        (
            TarballBuilder::new()
                .add_symlink("link.html", "/etc/passwd")
                .build(),
            "`link.html` is a Symlink entry",
        ),
        (
            TarballBuilder::new()
                .add_file("a.html", b"x")
                .add_hard_link("b.html", "a.html")
                .build(),
            "`b.html` is a Link entry",
        ),
        (
            TarballBuilder::new()
                .add_raw_entry(b"dev", tar::EntryType::Char, b"")
                .build(),
            "`dev` is a Char entry",
        ),
        (
            TarballBuilder::new()
                .add_file("a.html", b"x")
                .add_file("./a.html", b"y")
                .build(),
            "has the file `a.html` more than once",
        ),
        (
            TarballBuilder::new().add_dir("empty").build(),
            "holds no files",
        ),
        (b"not gzip at all".to_vec(), "not a valid gzipped tar file"),
    ];
    for (archive, expected) in cases {
        let message = refusal(&archive);
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

#[test]
fn sizes_counts_and_framing_are_capped() {
    let limits = DocsLimits {
        max_unpacked_size: 1 << 20,
        max_file_size: 1000,
        max_entries: 3,
        ..DocsLimits::default()
    };
    let big = TarballBuilder::new()
        .add_file("big.js", &[b'a'; 1001])
        .build();
    assert!(matches!(
        read(&big, &limits),
        Err(DocsError::FileTooLarge { ref path, size: 1001, max: 1000 }) if path == "big.js"
    ));
    let many = (0..4)
        .fold(TarballBuilder::new(), |b, i| {
            b.add_file(&format!("f{i}.html"), b"x")
        })
        .build();
    assert!(matches!(
        read(&many, &limits),
        Err(DocsError::TooManyEntries { max: 3 })
    ));
    // A gzip bomb: 8 MiB of zeros in one file compress to a few KiB.
    let bomb = TarballBuilder::new()
        .add_file("zeros.bin", &vec![0; 8 << 20])
        .build();
    assert!(bomb.len() < 64 << 10);
    let roomy = DocsLimits {
        max_file_size: 16 << 20,
        ..limits.clone()
    };
    assert!(matches!(
        read(&bomb, &roomy),
        Err(DocsError::TooLarge { max }) if max == 1 << 20
    ));
    // Truncated, and followed by more data.
    let whole = TarballBuilder::new().add_file("a.html", b"x").build();
    assert!(matches!(
        read(&whole[..whole.len() - 5], &limits),
        Err(DocsError::Malformed(_))
    ));
    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"junk");
    assert!(matches!(
        read(&trailing, &limits),
        Err(DocsError::TrailingData)
    ));
}

fn small_limits() -> DocsLimits {
    DocsLimits {
        max_unpacked_size: 1 << 20,
        max_file_size: 64 << 10,
        max_entries: 64,
        max_path_len: 80,
        max_depth: 6,
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read(&bytes, &small_limits());
        let gzipped = TarballBuilder::gzip(&bytes);
        let _ = read(&gzipped, &small_limits());
    }

    #[test]
    fn accepted_paths_are_normalized_relative_paths(
        paths in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just(b'/'), Just(b'.'), Just(b'\\'), Just(b':'), Just(0u8), Just(b'\n'),
                    Just(0xffu8), b'a'..=b'c',
                ],
                1..40,
            ),
            1..6,
        )
    ) {
        let archive = paths
            .iter()
            .fold(TarballBuilder::new(), |b, p| b.add_raw_file(p, b"x"))
            .build();
        if let Ok(files) = read(&archive, &small_limits()) {
            for (path, _) in files {
                prop_assert!(!path.is_empty());
                prop_assert!(!path.starts_with('/'));
                prop_assert!(!path.contains('\\') && !path.contains(':'));
                prop_assert!(!path.chars().any(char::is_control));
                for part in path.split('/') {
                    prop_assert!(!part.is_empty() && part != "." && part != "..", "{path:?}");
                }
            }
        }
    }
}
