//! Golden tests: the stored JSON form of every event type. These bytes live in the log forever;
//! a change here is a change to the schema of record and must be additive.

use depot_events::{
    Envelope, Event, ExtractedMetadata, OwnersChanged, RejectionReason, SCHEMA_VERSION, Timestamp,
    TokenIssued, TokenKind, TokenRevoked, TokenScope, VersionAccepted, VersionRejected,
    VersionUploaded, VersionYankToggled,
};
use depot_index::{DependencyKind, FeatureMap, IndexDependency, IndexEntry};
use uuid::Uuid;

const ID: &str = "0193a6f0-0000-7000-8000-000000000001";

fn envelope(event: Event) -> Envelope {
    Envelope {
        id: Uuid::parse_str(ID).unwrap(),
        schema: SCHEMA_VERSION,
        at: Timestamp::from_unix_millis(1_764_000_000_123),
        actor: "alice".into(),
        event,
    }
}

fn check(event: Event, expected_data: &str) {
    let env = envelope(event);
    let expected = format!(
        r#"{{"id":"{ID}","type":"{}","schema":1,"at":"2025-11-24T16:00:00.123Z","actor":"alice","data":{expected_data}}}"#,
        env.kind()
    );
    let encoded = String::from_utf8(env.encode()).unwrap();
    assert_eq!(encoded, expected);
    let decoded = Envelope::decode(encoded.as_bytes()).unwrap();
    assert_eq!(decoded, env, "round trip");
}

#[test]
fn version_uploaded() {
    check(
        Event::VersionUploaded(VersionUploaded {
            name: "My_Crate".into(),
            vers: "0.2.0+build.5".into(),
            cksum: "ab".repeat(32),
            size: 738,
            blob: format!("sha256/{}", "ab".repeat(32)),
            metadata: serde_json::json!({"name": "My_Crate", "vers": "0.2.0+build.5", "deps": []}),
            metadata_blob: None,
            uploader: "alice".into(),
            token_id: Some(Uuid::parse_str(ID).unwrap()),
        }),
        &format!(
            r#"{{"name":"My_Crate","vers":"0.2.0+build.5","cksum":"{c}","size":738,"blob":"sha256/{c}","metadata":{{"name":"My_Crate","vers":"0.2.0+build.5","deps":[]}},"uploader":"alice","token_id":"{ID}"}}"#,
            c = "ab".repeat(32)
        ),
    );
}

#[test]
fn version_accepted() {
    let mut features = FeatureMap::new();
    features.insert("default".into(), vec!["std".into()]);
    let entry = IndexEntry::new(
        "foo".into(),
        "1.0.0".into(),
        vec![IndexDependency {
            name: "bar".into(),
            req: "^1".into(),
            features: vec![],
            optional: false,
            default_features: true,
            target: None,
            kind: DependencyKind::Normal,
            registry: None,
            package: None,
        }],
        "cc".into(),
        features,
        None,
        Some("1.70".into()),
        Some("2025-11-24T16:00:00Z".into()),
    );
    check(
        Event::VersionAccepted(VersionAccepted {
            vers: "1.0.0".into(),
            cksum: "cc".into(),
            entry,
            metadata: ExtractedMetadata {
                description: Some("A crate".into()),
                license: Some("MIT".into()),
                keywords: vec!["k".into()],
                edition: Some("2021".into()),
                ..ExtractedMetadata::default()
            },
        }),
        concat!(
            r#"{"vers":"1.0.0","cksum":"cc","entry":{"name":"foo","vers":"1.0.0","deps":[{"name":"bar","req":"^1","features":[],"optional":false,"default_features":true,"target":null,"kind":"normal"}],"cksum":"cc","features":{"default":["std"]},"yanked":false,"rust_version":"1.70","pubtime":"2025-11-24T16:00:00Z"},"#,
            r#""metadata":{"description":"A crate","license":"MIT","license_file":null,"repository":null,"homepage":null,"documentation":null,"keywords":["k"],"categories":[],"authors":[],"edition":"2021","rust_version":null,"links":null,"readme_file":null,"readme":null}}"#
        ),
    );
}

/// The shape written since the publish metadata moved to a blob: no inline `metadata`.
#[test]
fn version_uploaded_with_metadata_blob() {
    check(
        Event::VersionUploaded(VersionUploaded {
            name: "My_Crate".into(),
            vers: "0.2.0".into(),
            cksum: "ab".repeat(32),
            size: 738,
            blob: format!("sha256/{}", "ab".repeat(32)),
            metadata: serde_json::Value::Null,
            metadata_blob: Some(format!("sha256/{}", "cd".repeat(32))),
            uploader: "alice".into(),
            token_id: None,
        }),
        &format!(
            r#"{{"name":"My_Crate","vers":"0.2.0","cksum":"{c}","size":738,"blob":"sha256/{c}","metadata_blob":"sha256/{m}","uploader":"alice"}}"#,
            c = "ab".repeat(32),
            m = "cd".repeat(32)
        ),
    );
}

/// Events written before the readme moved to a blob carry it inline and still decode (and
/// encode back to the same bytes).
#[test]
fn version_accepted_with_inline_readme() {
    let data = concat!(
        r#"{"vers":"1.0.0","cksum":"cc","entry":{"name":"foo","vers":"1.0.0","deps":[],"cksum":"cc","features":{},"yanked":false},"#,
        r#""metadata":{"description":null,"license":null,"license_file":null,"repository":null,"homepage":null,"documentation":null,"keywords":[],"categories":[],"authors":[],"edition":null,"rust_version":null,"links":null,"readme_file":"README.md","readme":"Hello"}}"#
    );
    let env = format!(
        r#"{{"id":"{ID}","type":"version_accepted","schema":1,"at":"2025-11-24T16:00:00.123Z","actor":"alice","data":{data}}}"#
    );
    let decoded = Envelope::decode(env.as_bytes()).unwrap();
    let Event::VersionAccepted(accepted) = &decoded.event else {
        panic!("decoded {decoded:?}");
    };
    assert_eq!(accepted.metadata.readme.as_deref(), Some("Hello"));
    assert_eq!(accepted.metadata.readme_blob, None);
    assert_eq!(String::from_utf8(decoded.encode()).unwrap(), env);
}

/// The shape written since readmes moved to blobs: `readme` null, `readme_blob` set.
#[test]
fn version_accepted_with_readme_blob() {
    let entry = IndexEntry::new(
        "foo".into(),
        "1.0.0".into(),
        vec![],
        "cc".into(),
        FeatureMap::new(),
        None,
        None,
        None,
    );
    check(
        Event::VersionAccepted(VersionAccepted {
            vers: "1.0.0".into(),
            cksum: "cc".into(),
            entry,
            metadata: ExtractedMetadata {
                readme_file: Some("README.md".into()),
                readme_blob: Some(format!("sha256/{}", "ef".repeat(32))),
                ..ExtractedMetadata::default()
            },
        }),
        &format!(
            concat!(
                r#"{{"vers":"1.0.0","cksum":"cc","entry":{{"name":"foo","vers":"1.0.0","deps":[],"cksum":"cc","features":{{}},"yanked":false}},"#,
                r#""metadata":{{"description":null,"license":null,"license_file":null,"repository":null,"homepage":null,"documentation":null,"keywords":[],"categories":[],"authors":[],"edition":null,"rust_version":null,"links":null,"readme_file":"README.md","readme":null,"readme_blob":"sha256/{r}"}}}}"#
            ),
            r = "ef".repeat(32)
        ),
    );
}

#[test]
fn version_rejected() {
    check(
        Event::VersionRejected(VersionRejected {
            vers: "1.0.0".into(),
            cksum: "cc".into(),
            reasons: vec![RejectionReason {
                code: "invalid_path".into(),
                detail: "invalid path found: x/y".into(),
            }],
        }),
        r#"{"vers":"1.0.0","cksum":"cc","reasons":[{"code":"invalid_path","detail":"invalid path found: x/y"}]}"#,
    );
}

#[test]
fn yank_and_unyank() {
    check(
        Event::VersionYanked(VersionYankToggled {
            vers: "1.0.0".into(),
            message: Some("broken".into()),
            token_id: None,
        }),
        r#"{"vers":"1.0.0","message":"broken"}"#,
    );
    check(
        Event::VersionUnyanked(VersionYankToggled {
            vers: "1.0.0".into(),
            message: None,
            token_id: None,
        }),
        r#"{"vers":"1.0.0"}"#,
    );
}

#[test]
fn owners() {
    let change = OwnersChanged {
        owners: vec!["bob".into()],
        token_id: None,
    };
    check(Event::OwnersAdded(change.clone()), r#"{"owners":["bob"]}"#);
    check(Event::OwnersRemoved(change), r#"{"owners":["bob"]}"#);
}

#[test]
fn tokens() {
    check(
        Event::TokenIssued(TokenIssued {
            token_id: Uuid::parse_str(ID).unwrap(),
            user: "alice".into(),
            secret_sha256: "dd".into(),
            kind: TokenKind::Ci,
            label: Some("ci".into()),
            scopes: vec![TokenScope::PublishUpdate, TokenScope::ChangeOwners],
            crates: vec!["acme-*".into()],
            read_crates: None,
            expires_at: Some(Timestamp::from_unix_millis(1_764_000_000_000)),
            created_by: None,
            oidc: None,
        }),
        &format!(
            r#"{{"token_id":"{ID}","user":"alice","secret_sha256":"dd","kind":"ci","label":"ci","scopes":["publish-update","change-owners"],"crates":["acme-*"],"expires_at":"2025-11-24T16:00:00.000Z"}}"#
        ),
    );
    check(
        Event::TokenRevoked(TokenRevoked {
            token_id: Uuid::parse_str(ID).unwrap(),
        }),
        &format!(r#"{{"token_id":"{ID}"}}"#),
    );
}

#[test]
fn accounts() {
    check(
        Event::TokenIssued(TokenIssued {
            token_id: Uuid::parse_str(ID).unwrap(),
            user: "ci:repo:acme/tools".into(),
            secret_sha256: "dd".into(),
            kind: TokenKind::Ci,
            label: None,
            scopes: vec![TokenScope::Read, TokenScope::PublishUpdate],
            crates: vec!["acme_core".into()],
            read_crates: None,
            expires_at: Some(Timestamp::from_unix_millis(1_764_000_000_000)),
            created_by: Some("trusted-publishing".into()),
            oidc: Some(depot_events::OidcOrigin {
                issuer: "https://gitlab.example".into(),
                subject: Some("repo:acme/tools".into()),
                jti: "j1".into(),
                trusts: vec![Uuid::parse_str(ID).unwrap()],
            }),
        }),
        &format!(
            r#"{{"token_id":"{ID}","user":"ci:repo:acme/tools","secret_sha256":"dd","kind":"ci","label":null,"scopes":["read","publish-update"],"crates":["acme_core"],"expires_at":"2025-11-24T16:00:00.000Z","created_by":"trusted-publishing","oidc":{{"issuer":"https://gitlab.example","subject":"repo:acme/tools","jti":"j1","trusts":["{ID}"]}}}}"#
        ),
    );
    check(
        Event::UserCreated(depot_events::UserCreated {
            login: "Alice".into(),
            admin: true,
        }),
        r#"{"login":"Alice","admin":true}"#,
    );
    check(
        Event::UserDisabled(depot_events::UserChanged {
            login: "alice".into(),
        }),
        r#"{"login":"alice"}"#,
    );
    check(
        Event::UserEnabled(depot_events::UserChanged {
            login: "alice".into(),
        }),
        r#"{"login":"alice"}"#,
    );
    check(
        Event::TrustAdded(depot_events::TrustAdded {
            trust_id: Uuid::parse_str(ID).unwrap(),
            issuer: "https://gitlab.example".into(),
            audience: "depot".into(),
            claims: [("project_path".to_owned(), "acme/*".to_owned())].into(),
        }),
        &format!(
            r#"{{"trust_id":"{ID}","issuer":"https://gitlab.example","audience":"depot","claims":{{"project_path":"acme/*"}}}}"#
        ),
    );
    check(
        Event::TrustRemoved(depot_events::TrustRemoved {
            trust_id: Uuid::parse_str(ID).unwrap(),
        }),
        &format!(r#"{{"trust_id":"{ID}"}}"#),
    );
    check(
        Event::TrustedOnlySet(depot_events::TrustedOnlySet { enabled: true }),
        r#"{"enabled":true}"#,
    );
    // Events written before these fields existed still read.
    let old = format!(
        r#"{{"id":"{ID}","type":"token_issued","schema":1,"at":"2025-11-24T16:00:00.123Z","actor":"x","data":{{"token_id":"{ID}","user":"a","secret_sha256":"dd","kind":"deploy"}}}}"#
    );
    let env = Envelope::decode(old.as_bytes()).unwrap();
    let Event::TokenIssued(token) = env.event else {
        panic!("{:?}", env.event)
    };
    assert_eq!((token.created_by, token.oidc), (None, None));
}

#[test]
fn unknown_types_and_fields_are_tolerated() {
    let future = format!(
        r#"{{"id":"{ID}","type":"crate_renamed","schema":2,"at":"2025-11-24T16:00:00.123Z","actor":"x","data":{{"to":"y"}},"extra":1}}"#
    );
    let env = Envelope::decode(future.as_bytes()).unwrap();
    assert_eq!(env.kind(), "crate_renamed");
    assert!(matches!(env.event, Event::Unknown { .. }));

    let newer_field = format!(
        r#"{{"id":"{ID}","type":"owners_added","schema":1,"at":"2025-11-24T16:00:00.123Z","actor":"x","data":{{"owners":["a"],"invited_by":"z"}}}}"#
    );
    let env = Envelope::decode(newer_field.as_bytes()).unwrap();
    assert_eq!(
        env.event,
        Event::OwnersAdded(OwnersChanged {
            owners: vec!["a".into()],
            token_id: None,
        })
    );
}

#[test]
fn pubtime_format_is_exact() {
    let t = Timestamp::from_unix_millis(1_764_000_000_999);
    assert_eq!(t.to_pubtime(), "2025-11-24T16:00:00Z");
    assert_eq!(t.to_rfc3339(), "2025-11-24T16:00:00.999Z");
}

#[test]
fn upstream_events() {
    let c = "cd".repeat(32);
    check(
        Event::UpstreamIndexStored(depot_events::UpstreamIndexStored {
            name: "serde_json".into(),
            blob: format!("sha256/{c}"),
            size: 4096,
            etag: Some("\"abc\"".into()),
            last_modified: None,
            upstream: "sparse+https://index.crates.io/".into(),
        }),
        &format!(
            r#"{{"name":"serde_json","blob":"sha256/{c}","size":4096,"etag":"\"abc\"","upstream":"sparse+https://index.crates.io/"}}"#
        ),
    );
    check(
        Event::UpstreamCrateStored(depot_events::UpstreamCrateStored {
            name: "Serde_Json".into(),
            vers: "1.0.0".into(),
            cksum: c.clone(),
            size: 738,
            upstream: "sparse+https://index.crates.io/".into(),
        }),
        &format!(
            r#"{{"name":"Serde_Json","vers":"1.0.0","cksum":"{c}","size":738,"upstream":"sparse+https://index.crates.io/"}}"#
        ),
    );
    check(
        Event::UpstreamNameAllowed(depot_events::UpstreamNameAllowed {
            name: "internal-serde".into(),
            allowed: true,
        }),
        r#"{"name":"internal-serde","allowed":true}"#,
    );
}

#[test]
fn docs_uploaded() {
    let m = "ef".repeat(32);
    check(
        Event::DocsUploaded(depot_events::DocsUploaded {
            name: "My_Crate".into(),
            version: "0.2.0+build.5".into(),
            manifest: format!("sha256/{m}"),
            files: 42,
            bytes: 1_234_567,
            token_id: Some(Uuid::parse_str(ID).unwrap()),
        }),
        &format!(
            r#"{{"name":"My_Crate","version":"0.2.0+build.5","manifest":"sha256/{m}","files":42,"bytes":1234567,"token_id":"{ID}"}}"#
        ),
    );
    // Without a token (an older or an administrative writer), and with fields a newer build
    // may add: still decodes.
    let data = format!(
        r#"{{"id":"{ID}","type":"docs_uploaded","schema":1,"at":"2025-11-24T16:00:00.123Z","actor":"x","data":{{"name":"a","version":"1.0.0","manifest":"sha256/{m}","files":1,"bytes":2,"later":true}}}}"#
    );
    let env = Envelope::decode(data.as_bytes()).unwrap();
    assert_eq!(
        env.event,
        Event::DocsUploaded(depot_events::DocsUploaded {
            name: "a".into(),
            version: "1.0.0".into(),
            manifest: format!("sha256/{m}"),
            files: 1,
            bytes: 2,
            token_id: None,
        })
    );
}

#[test]
fn webhook_events() {
    let id = uuid::Uuid::parse_str("0193a5c0-0000-7000-8000-0000000000ab").unwrap();
    check(
        Event::WebhookSubscribed(depot_events::WebhookSubscribed {
            subscription_id: id,
            url: "https://hooks.example.com/depot".into(),
            event_types: vec!["crate.published".into(), "crate.yanked".into()],
            crates: vec!["acme-*".into()],
            description: Some("release bot".into()),
            created_by: "alice".into(),
        }),
        r#"{"subscription_id":"0193a5c0-0000-7000-8000-0000000000ab","url":"https://hooks.example.com/depot","event_types":["crate.published","crate.yanked"],"crates":["acme-*"],"description":"release bot","created_by":"alice"}"#,
    );
    check(
        Event::WebhookUnsubscribed(depot_events::WebhookUnsubscribed {
            subscription_id: id,
        }),
        r#"{"subscription_id":"0193a5c0-0000-7000-8000-0000000000ab"}"#,
    );
}
