//! Yank reasons, with crates.io's `PATCH /api/v1/crates/{name}/{version}`: given, changed,
//! kept by a plain (cargo's) yank of a yanked version, forgotten on unyank; shown by the crate
//! and version APIs and the crate page; hostile bodies and callers refused with nothing appended; kept by
//! `depot replay`.

use serde_json::{Value, json};

use crate::support::{Setup, TestDepot};

/// `METHOD path` with an optional token and body: (status, JSON or `null`).
async fn call(
    depot: &TestDepot,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let mut request = depot.http.request(method, format!("{}{path}", depot.url));
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn patch(depot: &TestDepot, vers: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(
        depot,
        reqwest::Method::PATCH,
        &format!("/api/v1/crates/reasons/{vers}"),
        token,
        Some(body.to_string()),
    )
    .await
}

/// The `yank_message` of `vers` in the crate API, which the version API agrees with.
async fn api_message(depot: &TestDepot, vers: &str) -> Value {
    let (status, one) = call(
        depot,
        reqwest::Method::GET,
        &format!("/api/v1/crates/reasons/{vers}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    let message = one["version"]["yank_message"].clone();
    assert_eq!(message, api_list_message(depot, vers).await, "{one}");
    message
}

/// The `yank_message` of `vers` in the crate's version list.
async fn api_list_message(depot: &TestDepot, vers: &str) -> Value {
    let (status, info) = call(
        depot,
        reqwest::Method::GET,
        "/api/v1/crates/reasons",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{info}");
    info["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["num"] == vers)
        .unwrap_or_else(|| panic!("no {vers} in {info}"))["yank_message"]
        .clone()
}

async fn page(depot: &TestDepot, path: &str) -> String {
    let res = depot
        .http
        .get(format!("{}{path}", depot.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.unwrap()
}

async fn yank_reasons_are_kept_shown_and_replayed(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let bob = depot.token("bob").await;
    depot.publish_ok(&alice, "reasons", "1.0.0").await;
    depot.publish_ok(&alice, "reasons", "1.1.0").await;

    // Yank with a reason (trimmed), as crates.io takes it.
    let reason = json!({"version": {"yanked": true, "yank_message": "  broken build\n"}});
    let (status, answer) = patch(&depot, "1.0.0", Some(&alice), reason).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"version": {"num": "1.0.0", "crate": "reasons", "yanked": true, "yank_message": "broken build"}})
    );
    assert_eq!(api_message(&depot, "1.0.0").await, "broken build");
    assert_eq!(api_message(&depot, "1.1.0").await, Value::Null);
    // The version API in crates.io's shape.
    let (status, one) = call(
        &depot,
        reqwest::Method::GET,
        "/api/v1/crates/reasons/1.0.0",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    let version = &one["version"];
    assert_eq!(
        (&version["crate"], &version["num"], &version["yanked"]),
        (&json!("reasons"), &json!("1.0.0"), &json!(true)),
        "{one}"
    );
    assert_eq!(version["published_by"]["login"], "alice", "{one}");
    assert_eq!(version["dl_path"], "/api/v1/crates/reasons/1.0.0/download");
    assert!(version["crate_size"].as_u64().unwrap() > 0, "{one}");
    let checksum = version["checksum"].as_str().unwrap();
    assert!(
        checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit()),
        "{one}"
    );
    for missing in ["/api/v1/crates/reasons/9.9.9", "/api/v1/crates/nope/1.0.0"] {
        let (status, answer) = call(&depot, reqwest::Method::GET, missing, None, None).await;
        assert_eq!(status, 404, "{missing}: {answer}");
    }
    let yanked_page = page(&depot, "/crates/reasons/1.0.0").await;
    assert!(
        yanked_page.contains(r#"<p class="notice" id="yank-message">Yanked: broken build</p>"#),
        "{yanked_page}"
    );
    let newest_page = page(&depot, "/crates/reasons").await;
    assert!(
        newest_page.contains(r#"title="broken build">yanked</span>"#),
        "{newest_page}"
    );
    assert!(!newest_page.contains("id=\"yank-message\""));

    // Hostile bodies and callers: refused in cargo's format, nothing appended.
    let head = depot.log_head().await;
    let long = "x".repeat(513);
    for (vers, token, body, status, expected) in [
        (
            "1.0.0",
            Some(&alice),
            json!({"version": {"yank_message": long}}),
            400,
            "longer than 512",
        ),
        (
            "1.0.0",
            Some(&alice),
            json!({"version": {"yanked": true, "yank_message": "a\u{0}b"}}),
            400,
            "control characters",
        ),
        (
            "1.0.0",
            Some(&alice),
            json!({"version": {"yanked": false, "yank_message": "why"}}),
            400,
            "only a yanked version",
        ),
        (
            "1.1.0",
            Some(&alice),
            json!({"version": {"yank_message": "why"}}),
            400,
            "only a yanked version",
        ),
        (
            "1.0.0",
            Some(&alice),
            json!({"version": {"yanked": "yes"}}),
            422,
            "invalid type",
        ),
        (
            "1.0.0",
            Some(&alice),
            json!({"yanked": true}),
            422,
            "unknown field",
        ),
        (
            "1.0.0",
            Some(&alice),
            json!({"version": {"yanked": true, "reason": "x"}}),
            422,
            "unknown field",
        ),
        ("1.0.0", Some(&alice), json!([]), 422, "invalid length 0"),
        (
            "9.9.9",
            Some(&alice),
            json!({"version": {"yanked": true}}),
            404,
            "does not have a version",
        ),
        (
            "1.1.0",
            Some(&bob),
            json!({"version": {"yanked": true, "yank_message": "mine"}}),
            403,
            "not an owner",
        ),
        (
            "1.1.0",
            None,
            json!({"version": {"yanked": true}}),
            401,
            "requires authentication",
        ),
    ] {
        let (got, answer) = patch(&depot, vers, token.map(String::as_str), body.clone()).await;
        assert_eq!(got, status, "{vers} {body}: {answer}");
        let detail = answer["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(expected), "{vers} {body}: {answer}");
    }
    assert_eq!(
        depot.log_head().await,
        head,
        "a refused request appended an event"
    );

    // A new reason replaces the old; cargo's yank of a yanked version keeps it, appending
    // nothing.
    let (status, answer) = patch(
        &depot,
        "1.0.0",
        Some(&alice),
        json!({"version": {"yank_message": "use 1.1.0"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["version"]["yank_message"], "use 1.1.0");
    let head = depot.log_head().await;
    let (status, _) = call(
        &depot,
        reqwest::Method::DELETE,
        "/api/v1/crates/reasons/1.0.0/yank",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(depot.log_head().await, head);
    assert_eq!(api_message(&depot, "1.0.0").await, "use 1.1.0");

    // A replay folds the same reasons.
    let (ok, stdout, stderr) = depot.depot(&["replay"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(api_message(&depot, "1.0.0").await, "use 1.1.0");

    // Unyanked, the reason is gone; yanked again without one, there is none.
    let (status, _) = call(
        &depot,
        reqwest::Method::PUT,
        "/api/v1/crates/reasons/1.0.0/unyank",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(api_message(&depot, "1.0.0").await, Value::Null);
    let (status, answer) = patch(
        &depot,
        "1.0.0",
        Some(&alice),
        json!({"version": {"yanked": true}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["version"]["yank_message"], Value::Null);
    assert!(
        !page(&depot, "/crates/reasons/1.0.0")
            .await
            .contains("id=\"yank-message\"")
    );
}

on_both_setups!(yank_reasons_are_kept_shown_and_replayed);
