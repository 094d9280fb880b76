//! Hostile HTTP input: undecodable, non-ASCII, wildcard and overlong names in every path
//! parameter, broken publish framing, malformed `Authorization` values, bad query strings and
//! bodies, wrong methods and unknown routes. Every case gets a cargo-format error with the right
//! status, the process keeps serving, and neither the event log nor the index changes.
//!
//! Requests are written by hand on a TCP connection, so paths reach Depot byte for byte (an
//! HTTP client would normalise `..` and re-encode what it does not like).

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Setup, TestDepot, crate_bytes, details, metadata, publish_body};

/// A response: status, headers (lowercase names) and body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request as raw bytes and reads the whole response (`Connection: close`).
async fn raw(
    depot: &TestDepot,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Raw {
    let addr = depot.url.strip_prefix("http://").expect("http url");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    stream.write_all(&request).await.expect("send");
    // Depot may answer before reading the whole body and then close; a reset after the
    // response arrived is not a failure.
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(_) if !response.is_empty() => break,
            Err(e) => panic!("{method} {target}: reading the response failed: {e}"),
        }
    }
    parse_response(&response).unwrap_or_else(|| {
        panic!(
            "{method} {target}: not an HTTP response: {:?}",
            String::from_utf8_lossy(&response)
        )
    })
}

fn parse_response(bytes: &[u8]) -> Option<Raw> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Raw {
        status,
        headers,
        body,
    })
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).ok()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}

/// What must not change while hostile requests come in.
struct Baseline {
    head: u64,
    index: Vec<(String, Vec<u8>, String)>,
}

impl Baseline {
    async fn take(depot: &TestDepot) -> Baseline {
        Baseline {
            head: depot.log_head().await,
            index: depot.index_snapshot().await,
        }
    }

    /// Asserts `response` is a cargo-format error with `status` and a non-empty detail, that
    /// Depot still serves, and that the log and the index are as they were.
    async fn refused(&self, depot: &TestDepot, what: &str, response: &Raw, status: u16) {
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, status, "{what}: {text}");
        let json: Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|_| panic!("{what}: not JSON ({}): {text}", response.status));
        assert!(
            json["errors"].as_array().is_some_and(|e| !e.is_empty()) && !details(&json).is_empty(),
            "{what}: not a cargo-format error: {json}"
        );
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: content type {:?}",
            response.header("content-type")
        );
        self.unchanged(depot, what).await;
    }

    async fn unchanged(&self, depot: &TestDepot, what: &str) {
        let health = raw(depot, "GET", "/health", &[], b"").await;
        assert_eq!(health.status, 200, "{what}: /health after it");
        assert_eq!(
            depot.log_head().await,
            self.head,
            "{what}: the event log changed:\n{}",
            depot.events_after(self.head).await
        );
        assert_eq!(
            depot.index_snapshot().await,
            self.index,
            "{what}: the index changed"
        );
    }
}

/// Publishes `present 1.0.0` as `alice` and returns her token.
async fn with_a_crate(depot: &TestDepot) -> String {
    let alice = depot.token("alice").await;
    let (status, json) = depot
        .publish_raw(
            &alice,
            publish_body(
                &metadata("present", "1.0.0"),
                &crate_bytes("present", "1.0.0", ""),
            ),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["warnings"]["other"], json!([]), "visible in time");
    alice
}

/// Names no crate can have, as they appear in a URL path.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "%C3%A9a", // non-ASCII (é)
        "%FF",     // not UTF-8
        "pr%C3",   // cut UTF-8 sequence
        "%00",     // NUL
        "a*b",     // NATS wildcards
        "*",
        "%3E",        // `>` (raw, it is not a URI character: hyper refuses the request line)
        "a.b",        // NATS separator
        "present%3E", // `>` encoded
        "a%20b",      // space
        "..",         // traversal, raw
        "%2E%2E",     // traversal, encoded
        "a%2Fb",      // encoded slash
        "present%2F..%2F..",
        "-present",
        "1present",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push("a".repeat(65));
    names.push("a".repeat(4000));
    names
}

async fn hostile_names_and_versions_in_every_path(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = with_a_crate(&depot).await;
    let baseline = Baseline::take(&depot).await;
    let auth: &[(&str, &[u8])] = &[
        ("Authorization", alice.as_bytes()),
        ("Content-Type", b"application/json"),
    ];
    let owners = br#"{"users":["alice"]}"#;

    for name in hostile_names() {
        let short: String = name.chars().take(24).collect();
        let cases: Vec<(&str, String, &[u8])> = vec![
            ("GET", format!("/api/v1/crates/{name}/1.0.0/download"), b""),
            ("DELETE", format!("/api/v1/crates/{name}/1.0.0/yank"), b""),
            ("PUT", format!("/api/v1/crates/{name}/1.0.0/unyank"), b""),
            ("GET", format!("/api/v1/crates/{name}/owners"), b""),
            ("PUT", format!("/api/v1/crates/{name}/owners"), owners),
            ("DELETE", format!("/api/v1/crates/{name}/owners"), owners),
        ];
        for (method, target, body) in cases {
            let response = raw(&depot, method, &target, auth, body).await;
            let what = format!("{method} {}", target.replace(&name, &short));
            baseline.refused(&depot, &what, &response, 404).await;
        }
    }

    // Versions: the crate exists, the version cannot.
    for vers in [
        "%FF",
        "1.0",
        "*",
        "..",
        "1.0.0%20",
        "1.0.0%3E",
        "v1.0.0",
        &"1".repeat(200),
    ] {
        let short: String = vers.chars().take(24).collect();
        for (method, action) in [("GET", "download"), ("DELETE", "yank"), ("PUT", "unyank")] {
            let target = format!("/api/v1/crates/present/{vers}/{action}");
            let response = raw(&depot, method, &target, auth, b"").await;
            baseline
                .refused(
                    &depot,
                    &format!("{method} present/{short}/{action}"),
                    &response,
                    404,
                )
                .await;
        }
    }

    // Index paths that are not exactly cargo's path for a valid name.
    let long = "a".repeat(4000);
    let index_paths = [
        "/index/3/x/%C3%A9a".to_owned(),
        "/index/2/%C3%A9a".to_owned(),
        "/index/%FF".to_owned(),
        "/index/pr/es/present%2F".to_owned(),
        "/index/pr/es/PRESENT".to_owned(),
        "/index/pr%2Fes%2Fpresent".to_owned(),
        "/index/pr/es/../es/present".to_owned(),
        "/index/../index/pr/es/present".to_owned(),
        "/index/3/*/*ab".to_owned(),
        "/index/1/%3E".to_owned(),
        "/index/1/*".to_owned(),
        "/index/".to_owned(),
        format!("/index/aa/aa/{long}"),
    ];
    for target in index_paths {
        let response = raw(&depot, "GET", &target, &[], b"").await;
        let short: String = target.chars().take(40).collect();
        baseline
            .refused(&depot, &format!("GET {short}"), &response, 404)
            .await;
    }
    // The real path still works.
    assert_eq!(
        raw(&depot, "GET", "/index/pr/es/present", &[], b"")
            .await
            .status,
        200
    );
}

async fn hostile_publish_bodies(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[("DEPOT_MAX_CRATE_SIZE", "64KiB")]).await;
    let alice = with_a_crate(&depot).await;
    let baseline = Baseline::take(&depot).await;
    let good = publish_body(
        &metadata("present", "1.1.0"),
        &crate_bytes("present", "1.1.0", ""),
    );
    let json_len = u32::from_le_bytes(good[..4].try_into().unwrap()) as usize;

    let mut cases: Vec<(String, Vec<u8>, u16)> = vec![
        ("empty body".into(), Vec::new(), 400),
        (
            "2 bytes of the metadata length".into(),
            good[..2].to_vec(),
            400,
        ),
        (
            "inside the metadata".into(),
            good[..4 + json_len / 2].to_vec(),
            400,
        ),
        (
            "inside the tarball length".into(),
            good[..4 + json_len + 2].to_vec(),
            400,
        ),
        (
            "inside the tarball".into(),
            good[..good.len() - 10].to_vec(),
            400,
        ),
        (
            "metadata length u32::MAX".into(),
            u32::MAX.to_le_bytes().to_vec(),
            413,
        ),
    ];
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    cases.push(("bytes after the tarball".into(), trailing, 400));
    let mut huge_crate = good[..4 + json_len].to_vec();
    huge_crate.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_crate.extend_from_slice(&[0; 100]);
    cases.push(("tarball length u32::MAX".into(), huge_crate, 413));
    let mut over_limit = good[..4 + json_len].to_vec();
    over_limit.extend_from_slice(&(64 * 1024 + 1u32).to_le_bytes());
    cases.push(("tarball length just over the limit".into(), over_limit, 413));
    let not_json = b"{\"name\":";
    let mut body = (not_json.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(not_json);
    body.extend_from_slice(&0u32.to_le_bytes());
    cases.push(("metadata that is not JSON".into(), body, 400));
    for name in ["a*b", "é", ">", "..", "std"] {
        let krate = crate_bytes("present", "1.1.0", "");
        cases.push((
            format!("metadata name `{name}`"),
            publish_body(&metadata(name, "1.1.0"), &krate),
            400,
        ));
    }
    for vers in ["1.0", "*", "1.0.0 ", &format!("1.0.0-{}", "a".repeat(200))] {
        let krate = crate_bytes("present", "1.1.0", "");
        cases.push((
            format!("metadata version `{vers}`"),
            publish_body(&metadata("present", vers), &krate),
            400,
        ));
    }

    let auth: &[(&str, &[u8])] = &[("Authorization", alice.as_bytes())];
    for (what, body, status) in cases {
        let response = raw(&depot, "PUT", "/api/v1/crates/new", auth, &body).await;
        baseline.refused(&depot, &what, &response, status).await;
    }
}

async fn hostile_headers_queries_methods_and_routes(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = with_a_crate(&depot).await;
    let baseline = Baseline::take(&depot).await;

    // Malformed or wrong `Authorization` values: 401, as for any failed authentication.
    let long = "x".repeat(8000);
    let bearer_long = format!("Bearer {long}");
    let values: Vec<&[u8]> = vec![
        b"",
        b"Bearer",
        b"Bearer ",
        b"Basic YWxpY2U6cGFzcw==",
        b"Bearer a b",
        b"\xff\xfe\xfd",
        b"depot_\xc3\xa9",
        b"depot_wrong",
        long.as_bytes(),
        bearer_long.as_bytes(),
    ];
    let commands = [
        (
            "PUT",
            "/api/v1/crates/new",
            publish_body(
                &metadata("present", "1.2.0"),
                &crate_bytes("present", "1.2.0", ""),
            ),
        ),
        ("DELETE", "/api/v1/crates/present/1.0.0/yank", Vec::new()),
        ("PUT", "/api/v1/crates/present/1.0.0/unyank", Vec::new()),
        (
            "PUT",
            "/api/v1/crates/present/owners",
            br#"{"users":["alice"]}"#.to_vec(),
        ),
        (
            "DELETE",
            "/api/v1/crates/present/owners",
            br#"{"users":["alice"]}"#.to_vec(),
        ),
        ("GET", "/api/v1/me", Vec::new()),
    ];
    for value in &values {
        for (method, target, body) in &commands {
            let headers: &[(&str, &[u8])] = &[
                ("Authorization", value),
                ("Content-Type", b"application/json"),
            ];
            let response = raw(&depot, method, target, headers, body).await;
            let shown: String = String::from_utf8_lossy(value).chars().take(20).collect();
            baseline
                .refused(
                    &depot,
                    &format!("{method} {target} with Authorization {shown:?}"),
                    &response,
                    401,
                )
                .await;
        }
    }
    // No header at all.
    let response = raw(
        &depot,
        "DELETE",
        "/api/v1/crates/present/1.0.0/yank",
        &[],
        b"",
    )
    .await;
    baseline
        .refused(&depot, "yank without Authorization", &response, 401)
        .await;

    // Bad query strings on search.
    for query in [
        "per_page=x",
        "per_page=-1",
        "per_page=99999999999",
        "per_page=1&per_page=2",
        "per_page=%FF",
        // Past DEPOT_MAX_SEARCH_QUERY_BYTES (256 by default).
        &format!("q={}", "a".repeat(4000)),
    ] {
        let response = raw(&depot, "GET", &format!("/api/v1/crates?{query}"), &[], b"").await;
        let short: String = query.chars().take(20).collect();
        baseline
            .refused(&depot, &format!("search ?{short}"), &response, 400)
            .await;
    }
    // Odd but harmless queries are answered.
    for query in [
        "q=%FF",
        "q=a*b%3E",
        "q=..",
        &format!("q={}", "a".repeat(256)),
        "unknown=1",
    ] {
        let response = raw(&depot, "GET", &format!("/api/v1/crates?{query}"), &[], b"").await;
        let short: String = query.chars().take(20).collect();
        assert_eq!(response.status, 200, "search ?{short}");
        let json: Value = serde_json::from_slice(&response.body).expect("search JSON");
        assert!(json["crates"].is_array(), "search ?{short}: {json}");
        baseline
            .unchanged(&depot, &format!("search ?{short}"))
            .await;
    }

    // Bad owner bodies, with a valid token.
    let auth = alice.as_bytes();
    let many = format!(r#"{{"users":["{}"]}}"#, vec!["alice"; 101].join(","));
    let bodies: Vec<(&str, &[u8], &[u8], u16)> = vec![
        ("truncated JSON", b"{", b"application/json", 400),
        (
            "users not a list",
            br#"{"users":5}"#,
            b"application/json",
            422,
        ),
        (
            "a list, not an object",
            br#"["alice"]"#,
            b"application/json",
            422,
        ),
        (
            "no content type",
            br#"{"users":["alice"]}"#,
            b"text/plain",
            415,
        ),
        ("no users", br#"{"users":[]}"#, b"application/json", 400),
        (
            "invalid login",
            br#"{"users":["a*b"]}"#,
            b"application/json",
            404,
        ),
        (
            "non-ASCII login",
            "{\"users\":[\"é\"]}".as_bytes(),
            b"application/json",
            404,
        ),
        (
            "unknown login",
            br#"{"users":["nobody"]}"#,
            b"application/json",
            404,
        ),
        ("too many logins", many.as_bytes(), b"application/json", 400),
        (
            "not UTF-8",
            b"{\"users\":[\"\xff\"]}",
            b"application/json",
            400,
        ),
    ];
    for (what, body, content_type, status) in bodies {
        for method in ["PUT", "DELETE"] {
            let headers: &[(&str, &[u8])] =
                &[("Authorization", auth), ("Content-Type", content_type)];
            let response = raw(
                &depot,
                method,
                "/api/v1/crates/present/owners",
                headers,
                body,
            )
            .await;
            baseline
                .refused(
                    &depot,
                    &format!("{method} owners: {what}"),
                    &response,
                    status,
                )
                .await;
        }
    }

    // Bad bodies on the token, trust and trusted-publishing routes.
    let shapes: [(&str, &[u8], &[u8], u16); 5] = [
        ("truncated JSON", b"{", b"application/json", 400),
        ("a list, not an object", b"[1]", b"application/json", 422),
        (
            "fields of the wrong type",
            br#"{"api_token":5,"issuer":5,"enabled":"yes","jwt":5}"#,
            b"application/json",
            422,
        ),
        ("no content type", b"{}", b"text/plain", 415),
        ("not UTF-8", b"{\"\xff\":1}", b"application/json", 400),
    ];
    for (method, target) in [
        ("PUT", "/api/v1/me/tokens"),
        ("PUT", "/api/v1/crates/present/trusted_publishers"),
        ("PUT", "/api/v1/crates/present/trusted_publishing_only"),
        ("POST", "/api/v1/trusted_publishing/tokens"),
    ] {
        for (what, body, content_type, status) in shapes {
            let headers: &[(&str, &[u8])] =
                &[("Authorization", auth), ("Content-Type", content_type)];
            let response = raw(&depot, method, target, headers, body).await;
            baseline
                .refused(
                    &depot,
                    &format!("{method} {target}: {what}"),
                    &response,
                    status,
                )
                .await;
        }
    }

    // Wrong methods: 405 with `Allow`.
    for (method, target) in [
        ("POST", "/index/config.json"),
        ("DELETE", "/index/pr/es/present"),
        ("DELETE", "/api/v1/crates"),
        ("GET", "/api/v1/crates/new"),
        ("POST", "/api/v1/crates/new"),
        ("GET", "/api/v1/crates/present/1.0.0/yank"),
        ("POST", "/api/v1/crates/present/1.0.0"),
        ("PATCH", "/api/v1/crates/present/owners"),
        ("PUT", "/api/v1/crates/present/1.0.0/download"),
        ("POST", "/health"),
        ("POST", "/api/v1/me/tokens"),
        (
            "GET",
            "/api/v1/me/tokens/01890000-0000-7000-8000-000000000000",
        ),
        ("GET", "/api/v1/trusted_publishing/tokens"),
        ("POST", "/api/v1/crates/present/trusted_publishers"),
        ("GET", "/api/v1/crates/present/trusted_publishing_only"),
        ("POST", "/me"),
    ] {
        let response = raw(&depot, method, target, &[("Authorization", auth)], b"").await;
        assert!(
            response.header("allow").is_some(),
            "{method} {target}: no Allow header"
        );
        baseline
            .refused(&depot, &format!("{method} {target}"), &response, 405)
            .await;
    }

    // Unknown routes: 404 (`/` is the web UI's start page).
    for target in [
        "/index",
        "/api",
        "/api/v1",
        "/api/v2/crates",
        "/api/v1/crates/present/downloads/extra",
        "/api/v1/crates/present/1.0.0/nope",
        "/api/v1/crates/present/owners/extra",
        "/%FF",
        "/..",
        "/api/v1/crates/present/1.0.0/download/..",
    ] {
        let response = raw(&depot, "GET", target, &[], b"").await;
        baseline
            .refused(&depot, &format!("GET {target}"), &response, 404)
            .await;
    }
}

/// A publish refused before its body was read closes its connection and says so, so a client
/// with a connection pool (reqwest, cargo's curl) does not send its next request into it.
async fn an_early_publish_error_closes_its_connection(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let krate = vec![0x5a; 3 << 20];
    let refusals: [(&str, Vec<u8>, u16); 2] = [
        (
            "an unknown token",
            publish_body(&metadata("early", "1.0.0"), &krate),
            401,
        ),
        (
            "a declared crate over the limit",
            {
                let mut body = publish_body(&metadata("early", "1.0.0"), &[]);
                let at = body.len() - 4;
                body[at..].copy_from_slice(&u32::MAX.to_le_bytes());
                body.extend_from_slice(&krate);
                body
            },
            413,
        ),
    ];
    for (what, body, status) in refusals {
        let token = if status == 401 {
            "not-a-token"
        } else {
            alice.as_str()
        };
        for _ in 0..3 {
            let response = depot
                .http
                .put(format!("{}/api/v1/crates/new", depot.url))
                .header("Authorization", token)
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(response.status().as_u16(), status, "{what}");
            assert_eq!(
                response
                    .headers()
                    .get("connection")
                    .map(|v| v.to_str().unwrap()),
                Some("close"),
                "{what}"
            );
            let json: Value = response.json().await.unwrap();
            assert!(!details(&json).is_empty(), "{what}: {json}");
            // The same client goes on working.
            let health = depot
                .http
                .get(format!("{}/health", depot.url))
                .send()
                .await
                .unwrap_or_else(|e| panic!("after {what}: {e}"));
            assert_eq!(health.status().as_u16(), 200);
        }
    }
}

on_both_setups!(
    hostile_names_and_versions_in_every_path,
    hostile_publish_bodies,
    hostile_headers_queries_methods_and_routes,
    an_early_publish_error_closes_its_connection,
);
