//! Hosted documentation: upload, sandboxed serving, replacement, replay and verify on every
//! backend; hostile archives and callers refused with nothing appended; real `cargo doc` output
//! uploaded with `depot docs upload`.

use depot_cratefile::TarballBuilder;
use depot_testkit::{CargoHome, CargoProject};
use reqwest::header::{HeaderMap, LOCATION};

use crate::support::{Setup, TestDepot, details};

const CSP: &str = "sandbox allow-scripts allow-popups; default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
     connect-src 'none'; object-src 'none'; frame-ancestors 'self'; base-uri 'none'; \
     form-action 'none'";

/// A client that does not follow redirects, so they can be checked.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `PUT …/docs`: (status, JSON).
async fn upload(
    depot: &TestDepot,
    token: Option<&str>,
    name: &str,
    vers: &str,
    archive: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut request = client()
        .put(format!("{}/api/v1/crates/{name}/{vers}/docs", depot.url))
        .body(archive);
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// `GET path`: (status, headers, body).
async fn get(depot: &TestDepot, path: &str) -> (u16, HeaderMap, Vec<u8>) {
    let response = client()
        .get(format!("{}{path}", depot.url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn assert_isolated(headers: &HeaderMap, what: &str) {
    assert_eq!(
        headers["content-security-policy"].to_str().unwrap(),
        CSP,
        "{what}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert!(headers.get("set-cookie").is_none(), "{what}");
}

/// A small tree shaped like rustdoc's output.
fn tree(version_text: &str) -> Vec<u8> {
    TarballBuilder::new()
        .add_dir("./")
        .add_file(
            "./doc_demo/index.html",
            format!("<html><body>doc-demo {version_text}</body></html>").as_bytes(),
        )
        .add_file("./doc_demo/struct.Foo.html", b"<html>Foo</html>")
        .add_file("./static.files/rustdoc-0123.css", b"body{color:black}")
        .add_file("./static.files/FiraSans-Regular.woff2", b"wOF2fake")
        .add_file("./search.index/root.js", b"var x=1;")
        .add_file(".lock", b"")
        .build()
}

async fn docs_events(depot: &TestDepot) -> usize {
    depot
        .events()
        .await
        .iter()
        .filter(|(_, e)| e.kind() == "docs_uploaded")
        .count()
}

async fn docs_are_served_replaced_and_replayed(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    depot.publish_ok(&alice, "doc-demo", "1.0.0").await;

    let (status, json) = upload(&depot, Some(&alice), "doc-demo", "1.0.0", tree("one")).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["files"], 6, "{json}");
    assert_eq!(docs_events(&depot).await, 1);

    // The root and the crate redirect to the library's index page.
    let (status, headers, _) = get(&depot, "/docs/doc-demo/1.0.0/").await;
    assert_eq!(status, 302);
    assert_eq!(
        headers[LOCATION],
        format!("{}/docs/doc-demo/1.0.0/doc_demo/index.html", depot.url)
    );
    assert_isolated(&headers, "redirect");
    let (status, headers, _) = get(&depot, "/docs/doc-demo").await;
    assert_eq!(status, 302);
    assert_eq!(
        headers[LOCATION],
        format!("{}/docs/doc-demo/1.0.0/", depot.url)
    );

    let page = "/docs/doc-demo/1.0.0/doc_demo/index.html";
    let (status, headers, body) = get(&depot, page).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"<html><body>doc-demo one</body></html>");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_isolated(&headers, page);
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let revalidated = client()
        .get(format!("{}{page}", depot.url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    let (status, headers, _) = get(
        &depot,
        "/docs/doc-demo/1.0.0/static.files/FiraSans-Regular.woff2",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "font/woff2");
    let (status, headers, body) = get(&depot, "/docs/doc-demo/1.0.0/nope.html").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert_isolated(&headers, "404");

    // The crate and version APIs link the docs.
    let (status, body) = depot.get("/api/v1/crates/doc-demo").await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        info["versions"][0]["documentation"],
        format!("{}/docs/doc-demo/1.0.0/", depot.url)
    );
    assert_eq!(
        info["crate"]["documentation"],
        format!("{}/docs/doc-demo", depot.url)
    );
    let (status, body) = depot.get("/api/v1/crates/doc-demo/1.0.0").await;
    assert_eq!(status, 200);
    let one: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        one["version"]["documentation"],
        format!("{}/docs/doc-demo/1.0.0/", depot.url)
    );

    // The same docs again: nothing appended. Other docs: they replace the first.
    let (status, json) = upload(&depot, Some(&alice), "doc-demo", "1.0.0", tree("one")).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(docs_events(&depot).await, 1);
    let replacement = TarballBuilder::new()
        .add_file("doc_demo/index.html", b"<html>two</html>")
        .build();
    let (status, json) = upload(&depot, Some(&alice), "doc-demo", "1.0.0", replacement).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(docs_events(&depot).await, 2);
    let (status, _, body) = get(&depot, page).await;
    assert_eq!((status, body.as_slice()), (200, &b"<html>two</html>"[..]));
    let (status, _, _) = get(&depot, "/docs/doc-demo/1.0.0/doc_demo/struct.Foo.html").await;
    assert_eq!(status, 404, "replaced docs keep no old files");

    // A replay serves the same; verify finds the read model and every blob in order.
    let (_, before_headers, before) = get(&depot, page).await;
    let (ok, stdout, stderr) = depot.depot(&["replay"]);
    assert!(ok, "{stdout}\n{stderr}");
    let (status, after_headers, after) = get(&depot, page).await;
    assert_eq!((status, &after), (200, &before));
    assert_eq!(after_headers["etag"], before_headers["etag"]);
    let (ok, stdout, stderr) = depot.depot(&["verify"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("docs: identical (1 versions)"), "{stdout}");
    assert!(
        stdout.contains("docs blobs: all 2 manifests and files match"),
        "{stdout}"
    );
    // gc keeps the served files (named only by the manifest) whatever their age.
    let (ok, stdout, stderr) = depot.depot(&["gc", "--grace", "0"]);
    assert!(ok, "{stdout}\n{stderr}");
    let (status, _, body) = get(&depot, page).await;
    assert_eq!((status, body.as_slice()), (200, &b"<html>two</html>"[..]));
}

on_both_setups!(docs_are_served_replaced_and_replayed);

#[tokio::test(flavor = "multi_thread")]
async fn hostile_archives_and_callers_are_refused_and_append_nothing() {
    let depot = TestDepot::start_on(
        Setup::Embedded,
        &[
            ("DEPOT_DOCS_MAX_SIZE", "256KiB"),
            ("DEPOT_DOCS_MAX_UNPACKED_SIZE", "1MiB"),
            ("DEPOT_DOCS_MAX_FILE_SIZE", "64KiB"),
            ("DEPOT_DOCS_MAX_FILES", "20"),
        ],
    )
    .await;
    let alice = depot.token("alice").await;
    let bob = depot.token("bob").await;
    let yank_only = depot.token_with("alice", &["--scope", "yank"]).await;
    depot.publish_ok(&alice, "doc-hostile", "1.0.0").await;
    depot.publish_ok(&bob, "bobs-crate", "1.0.0").await;
    let head = depot.log_head().await;

    let good = || {
        TarballBuilder::new()
            .add_file("doc_hostile/index.html", b"<html></html>")
            .build()
    };
    let many = (0..25)
        .fold(TarballBuilder::new(), |b, i| {
            b.add_file(&format!("f{i}.html"), b"x")
        })
        .build();
    let mut truncated = good();
    truncated.truncate(truncated.len() - 8);
    let mut trailing = good();
    trailing.extend_from_slice(b"more");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "dot-dot",
            TarballBuilder::new()
                .add_raw_file(b"../../escape.html", b"x")
                .build(),
            400,
            "`../../escape.html` has an invalid path",
        ),
        (
            "absolute",
            TarballBuilder::new()
                .add_raw_file(b"/etc/passwd", b"x")
                .build(),
            400,
            "`/etc/passwd` has an invalid path: it is absolute",
        ),
        (
            "symlink",
            TarballBuilder::new()
                .add_symlink("doc_hostile/index.html", "/etc/passwd")
                .build(),
            400,
            "is a Symlink entry",
        ),
        (
            "hard link",
            TarballBuilder::new()
                .add_file("a.html", b"x")
                .add_hard_link("b.html", "/etc/passwd")
                .build(),
            400,
            "`b.html` is a Link entry",
        ),
        (
            "oversized file",
            TarballBuilder::new()
                .add_file("big.js", &vec![b'a'; 70_000])
                .build(),
            413,
            "`big.js` is 70000 bytes; the most for one file is 65536",
        ),
        ("too many files", many, 400, "more than 20 entries"),
        (
            "gzip bomb",
            // 18 files of 60,000 zeros: each under the file limit, together over 1 MiB.
            (0..18)
                .fold(TarballBuilder::new(), |b, i| {
                    b.add_file(&format!("z{i}.bin"), &[0; 60_000])
                })
                .build(),
            413,
            "larger than 1048576 bytes when decompressed",
        ),
        (
            "not gzip",
            b"<html>plain</html>".to_vec(),
            400,
            "not a valid gzipped tar file",
        ),
        ("truncated", truncated, 400, "not a valid gzipped tar file"),
        ("trailing data", trailing, 400, "data after the end"),
        (
            "empty body",
            Vec::new(),
            400,
            "not a valid gzipped tar file",
        ),
        (
            "archive over DEPOT_DOCS_MAX_SIZE",
            TarballBuilder::new().add_file("r.bin", &random).build(),
            413,
            "larger than 262144 bytes",
        ),
    ];
    for (what, archive, status, message) in cases {
        let (got, json) = upload(&depot, Some(&alice), "doc-hostile", "1.0.0", archive).await;
        assert_eq!(got, status, "{what}: {json}");
        assert!(details(&json).contains(message), "{what}: {json}");
    }

    // Callers: no token, the wrong scope, another user's crate, no such version or crate.
    type Caller<'a> = (&'a str, Option<&'a str>, &'a str, &'a str, u16, &'a str);
    let callers: Vec<Caller<'_>> = vec![
        (
            "no token",
            None,
            "doc-hostile",
            "1.0.0",
            401,
            "requires authentication",
        ),
        (
            "yank scope",
            Some(&yank_only),
            "doc-hostile",
            "1.0.0",
            403,
            "`publish-update` scope",
        ),
        (
            "not an owner",
            Some(&alice),
            "bobs-crate",
            "1.0.0",
            403,
            "only owners",
        ),
        (
            "unknown version",
            Some(&alice),
            "doc-hostile",
            "9.9.9",
            404,
            "does not have a version",
        ),
        (
            "unknown crate",
            Some(&alice),
            "no-such-crate",
            "1.0.0",
            404,
            "does not exist",
        ),
    ];
    for (what, token, name, vers, status, message) in callers {
        let (got, json) = upload(&depot, token, name, vers, good()).await;
        assert_eq!(got, status, "{what}: {json}");
        assert!(details(&json).contains(message), "{what}: {json}");
    }
    assert_eq!(depot.log_head().await, head, "a refused upload appended");
    let (status, headers, _) = get(&depot, "/docs/doc-hostile/1.0.0/").await;
    assert_eq!(status, 404);
    assert_isolated(&headers, "no docs");

    // And the good one still goes through.
    let (status, json) = upload(&depot, Some(&alice), "doc-hostile", "1.0.0", good()).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(depot.log_head().await, head + 1);
}

/// Real `cargo doc` output, packed and uploaded by `depot docs upload`, served with its static
/// files.
#[tokio::test(flavor = "multi_thread")]
async fn real_cargo_doc_output_uploads_and_serves() {
    let depot = TestDepot::start_on(Setup::Embedded, &[]).await;
    let alice = depot.token("alice").await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&alice));
    let project = CargoProject::new_lib("docs-e2e", "0.1.0")
        .description("Hosted docs end to end")
        .lib_rs("//! Docs end to end.\n\n/// A documented struct.\npub struct Thing;\n");
    home.publish(&project).await.assert_success();
    home.command(&project)
        .args(["doc", "--no-deps"])
        .run()
        .await
        .assert_success();
    let doc_dir = project.target_dir().join("doc");
    let (ok, stdout, stderr) = depot.depot(&[
        "docs",
        "upload",
        "--registry-url",
        &depot.url,
        "--token",
        &alice,
        "docs-e2e",
        "0.1.0",
        doc_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("uploaded:"), "{stdout}");

    let page = "/docs/docs-e2e/0.1.0/docs_e2e/index.html";
    let (status, headers, body) = get(&depot, page).await;
    assert_eq!(status, 200);
    assert_isolated(&headers, page);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("Docs end to end"), "{html}");
    // Its stylesheet, by the relative link rustdoc wrote.
    let css = html
        .split("href=\"../static.files/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|file| file.starts_with("rustdoc-") && file.ends_with(".css"))
        .expect("a stylesheet link");
    let (status, headers, _) =
        get(&depot, &format!("/docs/docs-e2e/0.1.0/static.files/{css}")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_isolated(&headers, css);
    let (status, _, _) = get(&depot, "/docs/docs-e2e/0.1.0/docs_e2e/struct.Thing.html").await;
    assert_eq!(status, 200);
}
