//! The token lifecycle end to end on `depot` processes: crates.io's token API, the admin
//! commands, and revocation and disabled users taking effect on another api process within a
//! second.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Setup, TestDepot};

async fn status(depot: &TestDepot, url: &str, token: &str) -> u16 {
    depot
        .http
        .get(format!("{url}/api/v1/me"))
        .header("Authorization", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// GETs a JSON document of the api with a token.
async fn get_json(depot: &TestDepot, path: &str, token: &str) -> Value {
    depot
        .http
        .get(format!("{}{path}", depot.url))
        .header("Authorization", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `url` with `token` until it is refused; returns how long that took.
async fn refused_within(depot: &TestDepot, url: &str, token: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let code = status(depot, url, token).await;
        if code == 401 {
            return started.elapsed();
        }
        assert_eq!(code, 200);
        assert!(
            started.elapsed() < limit,
            "still accepted after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two api processes on one backend: a token revoked through one is refused by the other
/// within a second of the revocation's reply; a user disabled with `depot user disable` is
/// refused within a second of the projector applying it.
#[tokio::test(flavor = "multi_thread")]
async fn revocation_and_disabled_users_reach_every_api_process_within_a_second() {
    let depot = TestDepot::start_on(Setup::Production, &[]).await;
    let (other, _guard) = depot.another_api();
    let alice = depot.token("alice").await;
    let doomed = depot.token("alice").await;
    for url in [&depot.url, &other] {
        assert_eq!(status(&depot, url, &doomed).await, 200);
    }
    let listed: Value = get_json(&depot, "/api/v1/me/tokens", &alice).await;
    let me: Value = get_json(&depot, "/api/v1/me", &doomed).await;
    let doomed_id = me["token"]["id"].as_str().unwrap().to_owned();
    assert!(
        listed["api_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == doomed_id.as_str()),
        "{listed}"
    );

    let response = depot
        .http
        .delete(format!("{}/api/v1/me/tokens/{doomed_id}", depot.url))
        .header("Authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let took = refused_within(&depot, &other, &doomed, Duration::from_secs(1)).await;
    println!("revoked token refused by the other api process after {took:?}");
    assert_eq!(status(&depot, &depot.url, &doomed).await, 401);
    assert_eq!(status(&depot, &other, &alice).await, 200);

    let (ok, _, stderr) = depot.depot(&["user", "disable", "alice"]);
    assert!(ok, "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !depot
        .store()
        .user_account("alice")
        .await
        .unwrap()
        .is_some_and(|u| u.disabled)
    {
        assert!(Instant::now() < deadline, "the projector never applied it");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = refused_within(&depot, &other, &alice, Duration::from_secs(1)).await;
    println!("disabled user refused by the other api process after {took:?}");
    let (ok, _, stderr) = depot.depot(&["user", "enable", "alice"]);
    assert!(ok, "{stderr}");
}

/// crates.io's token API: a token creates narrower tokens only; the secret is shown once;
/// listings show kinds, scopes, expiry and last use; deploy tokens cannot use it.
async fn token_api_creates_lists_and_revokes(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let create = |token: String, body: Value| {
        let http = depot.http.clone();
        let url = format!("{}/api/v1/me/tokens", depot.url);
        async move {
            let response = http
                .put(url)
                .header("Authorization", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (code, reply) = create(
        alice.clone(),
        json!({"api_token": {"name": "ci read", "endpoint_scopes": ["read"], "crate_scopes": ["acme-*"]}}),
    )
    .await;
    assert_eq!(code, 200, "{reply}");
    let narrow = reply["api_token"]["token"].as_str().unwrap().to_owned();
    assert!(narrow.starts_with("depot_"));
    assert_eq!(reply["api_token"]["endpoint_scopes"], json!(["read"]));
    let expiry = reply["api_token"]["expired_at"].as_str().unwrap();
    assert!(
        expiry > "2027",
        "a default expiry about 90 days ahead: {expiry}"
    );

    // The narrow token cannot mint a broader one, nor one for other crates.
    for body in [
        json!({"api_token": {"name": "x"}}),
        json!({"api_token": {"name": "x", "endpoint_scopes": ["read", "yank"], "crate_scopes": ["acme-*"]}}),
        json!({"api_token": {"name": "x", "endpoint_scopes": ["read"], "crate_scopes": ["other"]}}),
    ] {
        let (code, reply) = create(narrow.clone(), body.clone()).await;
        assert_eq!(code, 403, "{body} -> {reply}");
    }
    // Hostile requests: bad scope names, patterns, names and times.
    for body in [
        json!({"api_token": {"name": "x", "endpoint_scopes": ["everything"]}}),
        json!({"api_token": {"name": "x", "crate_scopes": ["a.b"]}}),
        json!({"api_token": {"name": ""}}),
        json!({"api_token": {"name": "x".repeat(65)}}),
        json!({"api_token": {"name": "x", "expired_at": "tomorrow"}}),
        json!({"api_token": {"name": "x", "expired_at": "2001-01-01T00:00:00Z"}}),
        json!({"api_token": {"name": "x", "crate_scopes": vec!["a"; 33]}}),
    ] {
        let (code, reply) = create(alice.clone(), body.clone()).await;
        assert_eq!(code, 400, "{body} -> {reply}");
        assert!(
            !crate::support::details(&reply).is_empty(),
            "{body} -> {reply}"
        );
    }

    // Listed without secrets, with last use once used.
    let (ok, deploy, stderr) = depot.depot(&["token", "create", "--deploy", "builders"]);
    assert!(ok, "{stderr}");
    let deploy = deploy.lines().last().unwrap().trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed: Value = get_json(&depot, "/api/v1/me/tokens", &alice).await;
        let text = listed.to_string();
        assert!(!text.contains("depot_"), "a secret was listed: {text}");
        let tokens = listed["api_tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 2, "{text}");
        if tokens.iter().all(|t| t["last_used_at"].is_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "last use never shown: {text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A deploy token acts for no person and cannot use the token API; it reads only.
    {
        let me: Value = get_json(&depot, "/api/v1/me", &deploy).await;
        assert_eq!(me["user"]["login"], "deploy:builders", "{me}");
        assert_eq!(me["token"]["kind"], "deploy", "{me}");
        assert_eq!(me["token"]["endpoint_scopes"], json!(["read"]), "{me}");
        let (code, _) = create(deploy.clone(), json!({"api_token": {"name": "x"}})).await;
        assert_eq!(code, 403);
    }
}

/// The admin commands: users with roles, deploy tokens read-only unless asked, writes only
/// with crate patterns, listings, revocation by id.
async fn admin_commands_manage_users_and_tokens(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let run = |args: &[&str]| depot.depot(args);
    let (ok, _, err) = run(&["user", "create", "carol", "--admin"]);
    assert!(ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while depot.store().user_account("carol").await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "carol was never projected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, _, err) = run(&["user", "create", "carol"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["user", "create", "not a login"]);
    assert!(!ok, "{err}");
    // The commands read users from the event log, not from read models that may lag: right
    // after `user create --admin`, a token for the user keeps them an admin, and creating
    // them again is refused.
    let (ok, _, err) = run(&["user", "create", "dave", "--admin"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["user", "create", "dave"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let dave = depot.token("dave").await;
    let me: Value = get_json(&depot, "/api/v1/me", &dave).await;
    assert_eq!(me["user"]["admin"], true, "{me}");
    let (ok, _, err) = run(&["token", "create", "--deploy", "builders", "--write"]);
    assert!(!ok && err.contains("--crate"), "{err}");
    let (ok, _, err) = run(&[
        "token", "create", "--deploy", "builders", "--read", "--write", "--crate", "acme-*",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&[
        "token",
        "create",
        "--user",
        "carol",
        "--no-expiry",
        "--label",
        "laptop",
    ]);
    assert!(ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let listing = loop {
        let (ok, out, err) = run(&["token", "list"]);
        assert!(ok, "{err}");
        // The header, the first start's admin token, dave's and the two created here.
        if out.lines().count() == 5 {
            break out;
        }
        assert!(Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !listing.contains("depot_"),
        "a secret was listed: {listing}"
    );
    let deploy_line = listing
        .lines()
        .find(|l| l.contains("deploy:builders"))
        .unwrap();
    assert!(
        deploy_line.contains("read,publish-new,publish-update,yank / acme-*"),
        "{listing}"
    );
    let carol_line = listing.lines().find(|l| l.contains(" carol ")).unwrap();
    assert!(
        carol_line.contains("never") && carol_line.contains("laptop"),
        "{listing}"
    );
    let (ok, users, _) = run(&["user", "list"]);
    assert!(ok);
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("carol") && l.contains("admin")),
        "{users}"
    );

    let id = carol_line.split_whitespace().next().unwrap();
    let (ok, _, err) = run(&["token", "revoke", id]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["token", "revoke", "not-a-uuid"]);
    assert!(!ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = run(&["token", "list", "--user", "carol"]);
        if out.contains("revoked") {
            break;
        }
        assert!(Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `depot audit` tells who did what from the log: a publish by a deploy token shows the
/// deploy identity and the token's kind and id, a yank the personal token used, and the
/// filters select by crate, user and time.
async fn audit_shows_who_did_what(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let builders = depot
        .token_with_args(&[
            "token", "create", "--deploy", "builders", "--read", "--write", "--crate", "audited",
        ])
        .await;
    let body = crate::support::publish_body(
        &crate::support::metadata("audited", "1.0.0"),
        &crate::support::crate_bytes("audited", "1.0.0", ""),
    );
    let (status, reply) = depot.publish_raw(&builders, body).await;
    assert_eq!(status, 200, "{reply}");
    let response = depot
        .http
        .delete(format!("{}/api/v1/crates/audited/1.0.0/yank", depot.url))
        .header("Authorization", &builders)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (ok, _, err) = depot.depot(&["user", "disable", "alice"]);
    assert!(ok, "{err}");
    drop(alice);

    let (ok, out, err) = depot.depot(&["audit", "--crate", "audited"]);
    assert!(ok, "{err}");
    let publish = out.lines().find(|l| l.contains(" publish ")).expect(&out);
    assert!(
        publish.contains("deploy:builders") && publish.contains("deploy:0"),
        "{out}"
    );
    assert!(publish.contains("audited 1.0.0"), "{out}");
    assert!(out.lines().any(|l| l.contains(" accepted ")), "{out}");
    let yank = out.lines().find(|l| l.contains(" yank ")).expect(&out);
    assert!(yank.contains("deploy:builders"), "{out}");
    assert!(!out.contains("user disabled"), "{out}");

    let (ok, out, err) = depot.depot(&["audit", "--user", "alice"]);
    assert!(ok, "{err}");
    assert!(out.contains("user created"), "{out}");
    assert!(out.contains("token issued"), "{out}");
    assert!(out.contains("user disabled"), "{out}");
    assert!(!out.contains("audited"), "{out}");

    let (ok, out, err) = depot.depot(&["audit", "--since", "2999-01-01T00:00:00Z"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    let (ok, _, err) = depot.depot(&["audit", "--since", "last tuesday"]);
    assert!(!ok && err.contains("--since"), "{err}");
}

on_both_setups!(
    token_api_creates_lists_and_revokes,
    admin_commands_manage_users_and_tokens,
    audit_shows_who_did_what
);
