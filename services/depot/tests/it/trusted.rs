//! Trusted publishing end to end: a local OIDC issuer (a generated RSA key pair, its discovery
//! document and JWKS served on loopback) signs ID tokens; an owner registers a trust; the CI
//! job's exchange yields a CI token with which the real `cargo publish` publishes. Every way
//! an ID token can be wrong is refused with a message saying why.

use depot_testkit::{CargoHome, CargoProject, OidcIssuer};
use serde_json::{Value, json};

use crate::support::{Setup, TestDepot};

/// POSTs an ID token to the exchange: (status, body).
async fn exchange(depot: &TestDepot, jwt: &str) -> (u16, Value) {
    let response = depot
        .http
        .post(format!("{}/api/v1/trusted_publishing/tokens", depot.url))
        .json(&json!({ "jwt": jwt }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn put(depot: &TestDepot, token: &str, path: &str, body: Value) -> (u16, Value) {
    let response = depot
        .http
        .put(format!("{}{path}", depot.url))
        .header("Authorization", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn detail(body: &Value) -> String {
    crate::support::details(body)
}

async fn trusted_publishing_from_a_local_oidc_issuer(setup: Setup) {
    let issuer = OidcIssuer::start().await;
    let stranger_issuer = OidcIssuer::start().await;
    // Key refreshes at most every second, so the rotation below is seen at once.
    let depot = TestDepot::start_on(setup, &[("DEPOT_OIDC_REFRESH_SECS", "1")]).await;
    let alice = depot.token("alice").await;
    let mallory = depot.token("mallory").await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&alice));
    let v1 = CargoProject::new_lib("trusty", "0.1.0").description("Published from CI");
    home.publish(&v1).await.assert_success();
    home.publish(&CargoProject::new_lib("bystander", "0.1.0").description("Not trusted"))
        .await
        .assert_success();

    // Only owners register trusts; policies are validated.
    let trust = json!({
        "issuer": issuer.url(),
        "audience": "depot",
        "claims": { "project_path": "acme/tools", "ref_protected": "true" },
    });
    let path = "/api/v1/crates/trusty/trusted_publishers";
    let (status, body) = put(&depot, &mallory, path, trust.clone()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = put(
        &depot,
        &alice,
        path,
        json!({"issuer": "ftp://x", "audience": "a", "claims": {"sub": "x"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put(
        &depot,
        &alice,
        path,
        json!({"issuer": issuer.url(), "audience": "depot", "claims": {}}),
    )
    .await;
    assert_eq!(status, 400, "a trust must require a claim: {body}");
    let (status, body) = put(&depot, &alice, path, trust).await;
    assert_eq!(status, 200, "{body}");

    // The exchange, then the real cargo publishing with the CI token.
    let good = || {
        issuer.claims(
            "depot",
            json!({ "project_path": "acme/tools", "ref_protected": "true" }),
        )
    };
    let jwt = issuer.sign(&good());
    let (status, body) = exchange(&depot, &jwt).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["crates"], json!(["trusty"]), "{body}");
    let ci = body["token"].as_str().unwrap().to_owned();
    let ci_home = CargoHome::new("depot", &depot.index_url(), Some(&ci));
    let v2 = CargoProject::new_lib("trusty", "0.2.0").description("Published from CI");
    ci_home.publish(&v2).await.assert_success();
    let (_, index) = depot.index_file("trusty").await;
    assert!(index.contains(r#""vers":"0.2.0""#), "{index}");
    // It publishes only what trusts it, and does nothing else.
    ci_home
        .publish(&CargoProject::new_lib("bystander", "0.2.0").description("Not trusted"))
        .await
        .assert_failure_contains("does not have the `publish-update` scope for crate `bystander`");
    ci_home
        .yank("trusty", "0.1.0")
        .await
        .assert_failure_contains("`yank` scope");
    // The same ID token again: refused, whichever api process would see it.
    let (status, body) = exchange(&depot, &jwt).await;
    assert_eq!(status, 401, "{body}");
    assert!(detail(&body).contains("already exchanged"), "{body}");

    // Everything else an ID token can get wrong.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "an issuer no crate trusts",
            stranger_issuer.sign(&stranger_issuer.claims("depot", json!({"project_path": "acme/tools", "ref_protected": "true"}))),
            401,
            "no crate trusts ID tokens issued by",
        ),
        (
            "the wrong audience",
            issuer.sign(&issuer.claims("someone-else", json!({"project_path": "acme/tools", "ref_protected": "true"}))),
            403,
            "audience",
        ),
        (
            "an expired token",
            issuer.sign(&issuer.claims("depot", json!({"project_path": "acme/tools", "ref_protected": "true", "iat": now - 900, "nbf": now - 900, "exp": now - 600}))),
            401,
            "expired",
        ),
        (
            "a token not valid yet",
            issuer.sign(&issuer.claims("depot", json!({"project_path": "acme/tools", "ref_protected": "true", "nbf": now + 900, "exp": now + 1200}))),
            401,
            "not valid",
        ),
        (
            "a claim mismatch",
            issuer.sign(&issuer.claims("depot", json!({"project_path": "evil/tools", "ref_protected": "true"}))),
            403,
            "project_path",
        ),
        (
            "an unprotected ref",
            issuer.sign(&issuer.claims("depot", json!({"project_path": "acme/tools", "ref_protected": "false"}))),
            403,
            "ref_protected",
        ),
        (
            "an unknown key id",
            issuer.sign_with_kid(&good(), "no-such-key"),
            401,
            "no-such-key",
        ),
        ("alg none", issuer.forge_alg_none(&good()), 401, "none"),
        (
            "HS256 signed with the RSA public key",
            issuer.forge_hs256_with_public_key(&good()),
            401,
            "HS256",
        ),
        ("garbage", "not.a.jwt".to_owned(), 401, ""),
        ("an empty token", String::new(), 401, ""),
        ("a huge token", "a".repeat(100_000), 401, ""),
    ];
    // A token signed before a key rotation: its key is gone from the issuer's JWKS.
    let before_rotation = issuer.sign(&good());
    issuer.rotate();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    cases.push((
        "a key rotated away",
        before_rotation,
        401,
        "not in the issuer",
    ));
    for (what, jwt, want, says) in cases {
        let (status, body) = exchange(&depot, &jwt).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(detail(&body).contains(says), "{what}: {body}");
    }
    // After the rotation, tokens with the new key work (Depot refetched the JWKS).
    let (status, body) = exchange(&depot, &issuer.sign(&good())).await;
    assert_eq!(
        status, 200,
        "a token signed with the rotated-in key: {body}"
    );

    // A crate set to trusted publishing only refuses its owner's personal token.
    let (status, body) = put(
        &depot,
        &alice,
        "/api/v1/crates/trusty/trusted_publishing_only",
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    home.publish(&CargoProject::new_lib("trusty", "0.3.0").description("by hand"))
        .await
        .assert_failure_contains("accepts only trusted-publishing tokens");
    let (_, body) = exchange(&depot, &issuer.sign(&good())).await;
    let ci = body["token"].as_str().unwrap().to_owned();
    let ci_home = CargoHome::new("depot", &depot.index_url(), Some(&ci));
    ci_home
        .publish(&CargoProject::new_lib("trusty", "0.3.0").description("from CI"))
        .await
        .assert_success();

    // The job revokes its token when done.
    let response = depot
        .http
        .delete(format!("{}/api/v1/trusted_publishing/tokens", depot.url))
        .header("Authorization", &ci)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    ci_home
        .publish(&CargoProject::new_lib("trusty", "0.4.0").description("from CI"))
        .await
        .assert_failure_contains("revoked");

    // The audit trail names the CI token and where it came from.
    let (ok, out, err) = depot.depot(&["audit", "--crate", "trusty"]);
    assert!(ok, "{err}");
    assert!(out.contains("trust added"), "{out}");
    let publish = out
        .lines()
        .find(|l| l.contains(" publish ") && l.contains("trusty 0.2.0"))
        .expect(&out);
    assert!(
        publish.contains("ci:project_path:acme/tools") && publish.contains(" ci:0"),
        "{out}"
    );
    let (ok, out, _) = depot.depot(&["audit"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.contains("token issued") && l.contains(&issuer.url())),
        "{out}"
    );

    // Operators see the exchanges and refusals.
    let metrics = depot
        .http
        .get(depot.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (series, at_least) in [
        (
            "depot_trusted_publishing_exchanges_total{outcome=\"minted\"}",
            3.0,
        ),
        (
            "depot_trusted_publishing_exchanges_total{outcome=\"replayed\"}",
            1.0,
        ),
        (
            "depot_trusted_publishing_exchanges_total{outcome=\"no_trust\"}",
            1.0,
        ),
        (
            "depot_trusted_publishing_exchanges_total{outcome=\"no_match\"}",
            3.0,
        ),
        (
            "depot_trusted_publishing_exchanges_total{outcome=\"invalid_token\"}",
            7.0,
        ),
        ("depot_auth_refusals_total{reason=\"revoked\"}", 1.0),
    ] {
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"));
        assert!(value >= at_least, "{series} = {value}");
    }
}

/// On an auth-required registry, the CI token also reads the crate's private dependencies, so
/// the real `cargo publish` (which builds the crate) works from the CI job.
async fn trusted_publishing_on_a_private_registry(setup: Setup) {
    let issuer = OidcIssuer::start().await;
    let depot = TestDepot::start_on(setup, &[("DEPOT_AUTH_REQUIRED", "true")]).await;
    let alice = depot.token("alice").await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&alice));
    let dep = CargoProject::new_lib("private-dep", "1.0.0")
        .description("A private dependency")
        .lib_rs("pub fn answer() -> u32 { 42 }\n");
    home.publish(&dep).await.assert_success();
    let app = |vers: &str| {
        CargoProject::new_lib("private-app", vers)
            .description("Published from CI")
            .dep("private-dep", "1")
            .lib_rs("pub fn answer() -> u32 { private_dep::answer() }\n")
    };
    home.publish(&app("0.1.0")).await.assert_success();
    let (status, body) = put(
        &depot,
        &alice,
        "/api/v1/crates/private-app/trusted_publishers",
        json!({"issuer": issuer.url(), "audience": "depot", "claims": {"sub": "project_path:acme/*"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = exchange(&depot, &issuer.sign(&issuer.claims("depot", json!({})))).await;
    assert_eq!(status, 200, "{body}");
    let ci = body["token"].as_str().unwrap().to_owned();
    let ci_home = CargoHome::new("depot", &depot.index_url(), Some(&ci));
    ci_home.publish(&app("0.2.0")).await.assert_success();
    ci_home
        .publish(&CargoProject::new_lib("private-dep", "1.1.0").description("A private dependency"))
        .await
        .assert_failure_contains("`publish-update` scope for crate `private-dep`");
}

on_both_setups!(
    trusted_publishing_from_a_local_oidc_issuer,
    trusted_publishing_on_a_private_registry
);
