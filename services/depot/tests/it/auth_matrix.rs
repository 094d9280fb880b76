//! The auth matrix: every route × every kind of caller × {public reads, auth-required}, on an
//! in-process Depot ([`TestApp`]) on both setups. The observed statuses must equal the rules
//! below, and `docs/auth-matrix.md` shows them (the test renders the table and compares; run
//! with `DEPOT_BLESS=1` to rewrite the file after a deliberate change).
//!
//! Beyond the status: every 401 carries `WWW-Authenticate: Cargo login_url="…/me"` and says
//! why; every refusal is a cargo-format error; no refused request gets a byte of a crate's
//! index file or `.crate`; and search shows a token only the crates it may read.

use std::fmt::Write as _;

use depot_events::{Timestamp, TokenKind, TokenScope};
use sha2::Digest as _;

use crate::app::{AppOptions, TestApp, TokenFor};
use crate::support::{Setup, crate_bytes, metadata, publish_body};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    Malformed,
    Unknown,
    Expired,
    Revoked,
    DisabledUser,
    ReadDeploy,
    DeployOutside,
    DeployInside,
    Stranger,
    Owner,
    CiOther,
    CiThis,
    Admin,
}

const EVERYONE: [Who; 14] = [
    Who::NoToken,
    Who::Malformed,
    Who::Unknown,
    Who::Expired,
    Who::Revoked,
    Who::DisabledUser,
    Who::ReadDeploy,
    Who::DeployOutside,
    Who::DeployInside,
    Who::Stranger,
    Who::Owner,
    Who::CiOther,
    Who::CiThis,
    Who::Admin,
];

impl Who {
    /// Column heading and legend.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Who::NoToken => ("none", "no `Authorization` header"),
            Who::Malformed => ("malformed", "`Authorization: Bearer a b`"),
            Who::Unknown => ("unknown", "a well-formed secret Depot never issued"),
            Who::Expired => ("expired", "a personal token past its expiry"),
            Who::Revoked => ("revoked", "a revoked personal token"),
            Who::DisabledUser => ("disabled", "the token of a disabled user"),
            Who::ReadDeploy => ("deploy-r", "deploy token, `read` on `acme-*`"),
            Who::DeployOutside => (
                "deploy-w-out",
                "deploy token, `read` + write on `other-*` (outside the crate)",
            ),
            Who::DeployInside => (
                "deploy-w-in",
                "deploy token, `read` + write (publish, yank) on `acme-*`",
            ),
            Who::Stranger => ("stranger", "personal token of a user who owns nothing"),
            Who::Owner => ("owner", "personal token of the crate's owner"),
            Who::CiOther => (
                "ci-other",
                "CI token (trusted publishing) for `other-crate` (reads every crate)",
            ),
            Who::CiThis => (
                "ci-this",
                "CI token (trusted publishing) for `acme-core` (reads every crate)",
            ),
            Who::Admin => (
                "admin",
                "personal token of an admin who does not own the crate",
            ),
        }
    }

    fn invalid(self) -> bool {
        matches!(
            self,
            Who::NoToken
                | Who::Malformed
                | Who::Unknown
                | Who::Expired
                | Who::Revoked
                | Who::DisabledUser
        )
    }

    /// Whether the token may read `acme-core`.
    fn reads_acme(self) -> bool {
        matches!(
            self,
            Who::ReadDeploy
                | Who::DeployInside
                | Who::Stranger
                | Who::Owner
                | Who::CiOther
                | Who::CiThis
                | Who::Admin
        )
    }

    /// What a 401 must say.
    fn why_unauthorized(self) -> &'static str {
        match self {
            Who::NoToken => "requires authentication",
            Who::Malformed => "malformed",
            Who::Unknown => "unknown token",
            Who::Expired => "expired",
            Who::Revoked => "revoked",
            Who::DisabledUser => "disabled",
            _ => unreachable!("a valid token"),
        }
    }
}

/// What is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    ConfigJson,
    IndexFile,
    Download,
    Search,
    OwnersList,
    CrateInfo,
    VersionInfo,
    CrateDownloads,
    DocsUpload,
    DocsFile,
    Me,
    PublishUpdate,
    PublishNew,
    Yank,
    YankWithReason,
    Unyank,
    OwnersAdd,
    OwnersRemove,
    TokensList,
    TokenCreate,
    TokenRevoke,
    TrustsList,
    TrustAdd,
    TrustRemove,
    TrustedOnly,
    TrustExchange,
    LoginPage,
    Health,
    Nowhere,
    UpstreamConfig,
    UpstreamIndex,
    UpstreamDownload,
    OpenApi,
    WebhooksList,
    WebhookCreate,
    WebhookDeliveries,
    WebhookReplay,
    WebhookRemove,
    WebHome,
    WebSearch,
    WebCrate,
    WebAsset,
    WebTokenCreate,
    CiTokenRevoke,
}

const EVERY_ROUTE: [Route; 44] = [
    Route::ConfigJson,
    Route::IndexFile,
    Route::Download,
    Route::Search,
    Route::OwnersList,
    Route::CrateInfo,
    Route::VersionInfo,
    Route::CrateDownloads,
    // The upload first: the file is read once some caller stored it.
    Route::DocsUpload,
    Route::DocsFile,
    Route::Me,
    Route::PublishUpdate,
    Route::PublishNew,
    Route::Yank,
    Route::YankWithReason,
    Route::Unyank,
    Route::OwnersAdd,
    Route::OwnersRemove,
    Route::TokensList,
    Route::TokenCreate,
    Route::TokenRevoke,
    Route::TrustsList,
    Route::TrustAdd,
    Route::TrustRemove,
    Route::TrustedOnly,
    Route::TrustExchange,
    Route::LoginPage,
    Route::Health,
    Route::Nowhere,
    Route::UpstreamConfig,
    Route::UpstreamIndex,
    Route::UpstreamDownload,
    Route::OpenApi,
    Route::WebhooksList,
    Route::WebhookCreate,
    Route::WebhookDeliveries,
    Route::WebhookReplay,
    Route::WebhookRemove,
    Route::WebHome,
    Route::WebSearch,
    Route::WebCrate,
    Route::WebAsset,
    Route::WebTokenCreate,
    // Last: it revokes the CI tokens that call it.
    Route::CiTokenRevoke,
];

impl Route {
    fn describe(self) -> &'static str {
        match self {
            Route::ConfigJson => "`GET /index/config.json`",
            Route::IndexFile => "`GET /index/ac/me/acme-core`",
            Route::Download => "`GET /api/v1/crates/acme-core/1.0.0/download`",
            Route::Search => "`GET /api/v1/crates?q=…`",
            Route::OwnersList => "`GET /api/v1/crates/acme-core/owners`",
            Route::CrateInfo => "`GET /api/v1/crates/acme-core`",
            Route::VersionInfo => "`GET /api/v1/crates/acme-core/1.0.0`",
            Route::CrateDownloads => "`GET /api/v1/crates/acme-core/downloads`",
            Route::DocsUpload => "`PUT /api/v1/crates/acme-core/1.0.0/docs`",
            Route::DocsFile => "`GET /docs/acme-core/1.0.0/acme_core/index.html`",
            Route::Me => "`GET /api/v1/me`",
            Route::PublishUpdate => "`PUT /api/v1/crates/new` (new version of `acme-core`)",
            Route::PublishNew => "`PUT /api/v1/crates/new` (new crate `acme-…`)",
            Route::Yank => "`DELETE /api/v1/crates/acme-core/1.0.0/yank`",
            Route::YankWithReason => "`PATCH /api/v1/crates/acme-core/1.0.0` (yank with a reason)",
            Route::Unyank => "`PUT /api/v1/crates/acme-core/1.0.0/unyank`",
            Route::OwnersAdd => "`PUT /api/v1/crates/acme-core/owners`",
            Route::OwnersRemove => "`DELETE /api/v1/crates/acme-core/owners`",
            Route::TokensList => "`GET /api/v1/me/tokens`",
            Route::TokenCreate => "`PUT /api/v1/me/tokens`",
            Route::TokenRevoke => "`DELETE /api/v1/me/tokens/{id}` (an id not theirs)",
            Route::TrustsList => "`GET /api/v1/crates/acme-core/trusted_publishers`",
            Route::TrustAdd => "`PUT /api/v1/crates/acme-core/trusted_publishers`",
            Route::TrustRemove => {
                "`DELETE /api/v1/crates/acme-core/trusted_publishers/{id}` (no such trust)"
            }
            Route::TrustedOnly => "`PUT /api/v1/crates/acme-core/trusted_publishing_only`",
            Route::TrustExchange => {
                "`POST /api/v1/trusted_publishing/tokens` (an ID token from no trusted issuer)"
            }
            Route::CiTokenRevoke => "`DELETE /api/v1/trusted_publishing/tokens`",
            Route::LoginPage => "`GET /me` (the login page)",
            Route::Health => "`GET /health`",
            Route::Nowhere => "`GET /api/v1/nowhere`",
            Route::UpstreamConfig => "`GET /crates-io/index/config.json`",
            Route::UpstreamIndex => "`GET /crates-io/index/up/st/upstream-crate`",
            Route::UpstreamDownload => "`GET /crates-io/dl/upstream-crate/1.0.0/download`",
            Route::OpenApi => "`GET /api/openapi.json`",
            Route::WebhooksList => "`GET /api/v1/webhooks`",
            Route::WebhookCreate => "`POST /api/v1/webhooks`",
            Route::WebhookDeliveries => {
                "`GET /api/v1/webhooks/{id}/deliveries` (no such subscription)"
            }
            Route::WebhookReplay => "`POST /api/v1/webhooks/replay`",
            Route::WebhookRemove => "`DELETE /api/v1/webhooks/{id}` (no such subscription)",
            Route::WebHome => "`GET /` (web UI; `Authorization` is ignored, a session signs in)",
            Route::WebSearch => "`GET /search?q=acme` (web UI)",
            Route::WebCrate => "`GET /crates/acme-core` (web UI)",
            Route::WebAsset => "`GET /static/depot.css` (web UI's stylesheet)",
            Route::WebTokenCreate => {
                "`POST /me/tokens` (web UI form without a session: the sign-in page, no token)"
            }
        }
    }

    /// Method, path and body; `n` makes publishes unique.
    fn request(self, n: usize) -> (&'static str, String, Vec<u8>) {
        let publish = |name: &str, vers: &str| {
            publish_body(&metadata(name, vers), &crate_bytes(name, vers, ""))
        };
        match self {
            Route::ConfigJson => ("GET", "/index/config.json".into(), vec![]),
            Route::IndexFile => ("GET", "/index/ac/me/acme-core".into(), vec![]),
            Route::Download => (
                "GET",
                "/api/v1/crates/acme-core/1.0.0/download".into(),
                vec![],
            ),
            Route::Search => ("GET", "/api/v1/crates?q=c&per_page=100".into(), vec![]),
            Route::OwnersList => ("GET", "/api/v1/crates/acme-core/owners".into(), vec![]),
            Route::CrateInfo => ("GET", "/api/v1/crates/acme-core".into(), vec![]),
            Route::VersionInfo => ("GET", "/api/v1/crates/acme-core/1.0.0".into(), vec![]),
            Route::CrateDownloads => ("GET", "/api/v1/crates/acme-core/downloads".into(), vec![]),
            Route::DocsUpload => (
                "PUT",
                "/api/v1/crates/acme-core/1.0.0/docs".into(),
                depot_cratefile::TarballBuilder::new()
                    .add_file("acme_core/index.html", b"<html>acme</html>")
                    .build(),
            ),
            Route::DocsFile => (
                "GET",
                "/docs/acme-core/1.0.0/acme_core/index.html".into(),
                vec![],
            ),
            Route::Me => ("GET", "/api/v1/me".into(), vec![]),
            Route::PublishUpdate => (
                "PUT",
                "/api/v1/crates/new".into(),
                publish("acme-core", &format!("1.0.{n}")),
            ),
            Route::PublishNew => (
                "PUT",
                "/api/v1/crates/new".into(),
                publish(&format!("acme-new{n}"), "0.1.0"),
            ),
            Route::Yank => (
                "DELETE",
                "/api/v1/crates/acme-core/1.0.0/yank".into(),
                vec![],
            ),
            Route::YankWithReason => (
                "PATCH",
                "/api/v1/crates/acme-core/1.0.0".into(),
                br#"{"version":{"yanked":true,"yank_message":"broken build"}}"#.to_vec(),
            ),
            Route::Unyank => (
                "PUT",
                "/api/v1/crates/acme-core/1.0.0/unyank".into(),
                vec![],
            ),
            Route::OwnersAdd => (
                "PUT",
                "/api/v1/crates/acme-core/owners".into(),
                br#"{"users":["bob"]}"#.to_vec(),
            ),
            Route::OwnersRemove => (
                "DELETE",
                "/api/v1/crates/acme-core/owners".into(),
                br#"{"users":["bob"]}"#.to_vec(),
            ),
            Route::TokensList => ("GET", "/api/v1/me/tokens".into(), vec![]),
            Route::TokenCreate => (
                "PUT",
                "/api/v1/me/tokens".into(),
                br#"{"api_token":{"name":"matrix","endpoint_scopes":["read"],"crate_scopes":["acme-core"]}}"#
                    .to_vec(),
            ),
            Route::TokenRevoke => (
                "DELETE",
                format!("/api/v1/me/tokens/{}", uuid::Uuid::now_v7()),
                vec![],
            ),
            Route::TrustsList => (
                "GET",
                "/api/v1/crates/acme-core/trusted_publishers".into(),
                vec![],
            ),
            Route::TrustAdd => (
                "PUT",
                "/api/v1/crates/acme-core/trusted_publishers".into(),
                br#"{"issuer":"https://gitlab.example.com","audience":"depot","claims":{"project_path":"acme/core"}}"#
                    .to_vec(),
            ),
            Route::TrustRemove => (
                "DELETE",
                format!(
                    "/api/v1/crates/acme-core/trusted_publishers/{}",
                    uuid::Uuid::now_v7()
                ),
                vec![],
            ),
            Route::TrustedOnly => (
                "PUT",
                "/api/v1/crates/acme-core/trusted_publishing_only".into(),
                br#"{"enabled":false}"#.to_vec(),
            ),
            Route::TrustExchange => (
                "POST",
                "/api/v1/trusted_publishing/tokens".into(),
                // {"alg":"RS256","kid":"k"}.{"iss":"https://nobody.example"}.sig
                br#"{"jwt":"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL25vYm9keS5leGFtcGxlIn0.c2ln"}"#
                    .to_vec(),
            ),
            Route::CiTokenRevoke => (
                "DELETE",
                "/api/v1/trusted_publishing/tokens".into(),
                vec![],
            ),
            Route::LoginPage => ("GET", "/me".into(), vec![]),
            Route::Health => ("GET", "/health".into(), vec![]),
            Route::Nowhere => ("GET", "/api/v1/nowhere".into(), vec![]),
            Route::UpstreamConfig => ("GET", "/crates-io/index/config.json".into(), vec![]),
            Route::UpstreamIndex => (
                "GET",
                "/crates-io/index/up/st/upstream-crate".into(),
                vec![],
            ),
            Route::UpstreamDownload => (
                "GET",
                "/crates-io/dl/upstream-crate/1.0.0/download".into(),
                vec![],
            ),
            Route::OpenApi => ("GET", "/api/openapi.json".into(), vec![]),
            Route::WebhooksList => ("GET", "/api/v1/webhooks".into(), vec![]),
            Route::WebhookCreate => (
                "POST",
                "/api/v1/webhooks".into(),
                br#"{"url":"http://127.0.0.1:9/hook","crates":["acme-*"]}"#.to_vec(),
            ),
            Route::WebhookDeliveries => (
                "GET",
                format!("/api/v1/webhooks/{}/deliveries", uuid::Uuid::now_v7()),
                vec![],
            ),
            Route::WebhookReplay => (
                "POST",
                "/api/v1/webhooks/replay".into(),
                br#"{"from":1,"to":2}"#.to_vec(),
            ),
            Route::WebhookRemove => (
                "DELETE",
                format!("/api/v1/webhooks/{}", uuid::Uuid::now_v7()),
                vec![],
            ),
            Route::WebHome => ("GET", "/".into(), vec![]),
            Route::WebSearch => ("GET", "/search?q=acme".into(), vec![]),
            Route::WebCrate => ("GET", "/crates/acme-core".into(), vec![]),
            Route::WebAsset => ("GET", "/static/depot.css".into(), vec![]),
            Route::WebTokenCreate => (
                "POST",
                "/me/tokens".into(),
                b"csrf=x&name=matrix&scope=read".to_vec(),
            ),
        }
    }

    /// Whether the route is the web UI's (HTML answers, sessions instead of tokens).
    fn is_web(self) -> bool {
        matches!(
            self,
            Route::WebHome
                | Route::WebSearch
                | Route::WebCrate
                | Route::WebAsset
                | Route::WebTokenCreate
        )
    }
}

/// The rules: the status each caller gets on each route.
fn expected(auth_required: bool, route: Route, who: Who) -> u16 {
    use Route::*;
    use Who::*;
    match route {
        LoginPage | Health => 200,
        // The UI never reads `Authorization`: pages are public unless auth-required, where
        // without a signed-in session every page is the sign-in page (checked below); its
        // stylesheet and script are always public.
        WebAsset | WebHome | WebSearch | WebCrate => 200,
        // A form without a session changes nothing, whatever the header: the answer is the
        // sign-in page.
        WebTokenCreate => 200,
        // Public: it authenticates with the ID token, which names an issuer no crate trusts.
        TrustExchange => 401,
        _ if auth_required && who.invalid() => 401,
        // The crates.io cache holds public crates: any valid token with `read` may use it.
        ConfigJson | Search | UpstreamConfig | UpstreamIndex | UpstreamDownload | OpenApi => 200,
        IndexFile | Download | OwnersList | CrateInfo | VersionInfo | CrateDownloads | DocsFile => {
            if !auth_required || who.reads_acme() {
                200
            } else {
                403
            }
        }
        Nowhere => 404,
        _ if who.invalid() => 401,
        Me => 200,
        PublishUpdate => match who {
            DeployInside | Owner | CiThis => 200,
            _ => 403,
        },
        // Like publishing an update; admins too (as for yanks).
        DocsUpload => match who {
            DeployInside | Owner | CiThis | Admin => 200,
            _ => 403,
        },
        PublishNew => match who {
            DeployInside | Stranger | Owner | Admin => 200,
            _ => 403,
        },
        Yank | YankWithReason | Unyank => match who {
            DeployInside | Owner | Admin => 200,
            _ => 403,
        },
        OwnersAdd | OwnersRemove => match who {
            Owner | Admin => 200,
            _ => 403,
        },
        TokensList | TokenCreate => match who {
            Stranger | Owner | Admin => 200,
            _ => 403,
        },
        TokenRevoke => match who {
            Stranger | Owner | Admin => 404,
            _ => 403,
        },
        TrustsList | TrustAdd | TrustedOnly => match who {
            Owner | Admin => 200,
            _ => 403,
        },
        TrustRemove => match who {
            Owner | Admin => 404,
            _ => 403,
        },
        // Subscriptions see every crate: only an admin's unrestricted personal token.
        WebhooksList | WebhookCreate | WebhookReplay => match who {
            Admin => 200,
            _ => 403,
        },
        WebhookDeliveries | WebhookRemove => match who {
            Admin => 404,
            _ => 403,
        },
        CiTokenRevoke => match who {
            CiOther | CiThis => 200,
            _ => 403,
        },
    }
}

/// The callers' `Authorization` values.
struct Callers {
    values: Vec<(Who, Option<String>)>,
}

impl Callers {
    fn get(&self, who: Who) -> Option<&str> {
        self.values
            .iter()
            .find(|(w, _)| *w == who)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Users, tokens of every kind, and the crate `acme-core` 1.0.0 owned by `owner`.
async fn populate(app: &TestApp) -> Callers {
    for (login, admin) in [
        ("owner", false),
        ("stranger", false),
        ("bob", false),
        ("gone", false),
        ("root", true),
    ] {
        app.user(login, admin).await;
    }
    let (owner, _) = app.token(TokenFor::personal("owner")).await;
    let (stranger, _) = app.token(TokenFor::personal("stranger")).await;
    let (admin, _) = app.token(TokenFor::personal("root")).await;
    let (gone, _) = app.token(TokenFor::personal("gone")).await;
    app.disable("gone").await;
    let (expired, _) = app
        .token(TokenFor {
            expires_at: Some(Timestamp::from_unix_millis(
                Timestamp::now().unix_millis() - 1000,
            )),
            ..TokenFor::personal("stranger")
        })
        .await;
    let (revoked, revoked_id) = app.token(TokenFor::personal("stranger")).await;
    app.revoke("stranger", revoked_id).await;
    let read_write = [
        TokenScope::Read,
        TokenScope::PublishNew,
        TokenScope::PublishUpdate,
        TokenScope::Yank,
    ];
    let deploy = |holder, scopes, crates| TokenFor {
        kind: TokenKind::Deploy,
        holder,
        scopes,
        crates,
        expires_at: None,
    };
    let (read_deploy, _) = app
        .token(deploy("readers", &[TokenScope::Read], &["acme-*"]))
        .await;
    let (deploy_outside, _) = app.token(deploy("others", &read_write, &["other-*"])).await;
    let (deploy_inside, _) = app
        .token(deploy("builders", &read_write, &["acme-*"]))
        .await;
    let in_30_minutes = Some(Timestamp::from_unix_millis(
        Timestamp::now().unix_millis() + 30 * 60 * 1000,
    ));
    let ci = |holder, crates| TokenFor {
        kind: TokenKind::Ci,
        holder,
        scopes: &[TokenScope::Read, TokenScope::PublishUpdate],
        crates,
        expires_at: in_30_minutes,
    };
    let (ci_other, _) = app.token(ci("other", &["other-crate"])).await;
    let (ci_this, _) = app.token(ci("this", &["acme-core"])).await;

    let (status, _, body) = app
        .send(
            "PUT",
            "/api/v1/crates/new",
            Some(&owner),
            publish_body(
                &metadata("acme-core", "1.0.0"),
                &crate_bytes("acme-core", "1.0.0", ""),
            ),
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    Callers {
        values: vec![
            (Who::NoToken, None),
            (Who::Malformed, Some("Bearer a b".into())),
            (Who::Unknown, Some(format!("depot_{}", "x".repeat(40)))),
            (Who::Expired, Some(expired)),
            (Who::Revoked, Some(revoked)),
            (Who::DisabledUser, Some(gone)),
            (Who::ReadDeploy, Some(read_deploy)),
            (Who::DeployOutside, Some(deploy_outside)),
            (Who::DeployInside, Some(deploy_inside)),
            (Who::Stranger, Some(stranger)),
            (Who::Owner, Some(owner)),
            (Who::CiOther, Some(ci_other)),
            (Who::CiThis, Some(ci_this)),
            (Who::Admin, Some(admin)),
        ],
    }
}

/// Runs every route for every caller; returns the observed statuses, row by row.
async fn observe(setup: Setup, auth_required: bool) -> Vec<Vec<u16>> {
    // The upstream of the crates.io cache, with one crate.
    let upstream = depot_testkit::StaticRegistry::start().await;
    let upstream_crate = crate_bytes("upstream-crate", "1.0.0", "");
    upstream.put_crate("upstream-crate", "1.0.0", &upstream_crate);
    upstream.put_index_file(
        "up/st/upstream-crate",
        format!(
            "{{\"name\":\"upstream-crate\",\"vers\":\"1.0.0\",\"deps\":[],\"cksum\":\"{}\",\
             \"features\":{{}},\"yanked\":false}}\n",
            hex::encode(sha2::Sha256::digest(&upstream_crate))
        )
        .as_bytes(),
    );
    let options = AppOptions {
        auth_required,
        upstream_index: Some(upstream.index_url()),
    };
    let app = TestApp::start(setup, options).await;
    let callers = populate(&app).await;
    let (_, _, index_body) = app
        .send(
            "GET",
            "/index/ac/me/acme-core",
            callers.get(Who::Owner),
            vec![],
        )
        .await;
    let index_line = String::from_utf8(index_body).unwrap();
    assert!(index_line.contains("\"cksum\""), "{index_line}");
    let crate_file = crate_bytes("acme-core", "1.0.0", "");

    let mut rows = Vec::new();
    let mut n = 0;
    for route in EVERY_ROUTE {
        let mut row = Vec::new();
        for who in EVERYONE {
            n += 1;
            let (method, path, body) = route.request(n);
            let (status, challenge, body) = app.send(method, &path, callers.get(who), body).await;
            let text = String::from_utf8_lossy(&body).into_owned();
            let cell = format!(
                "{setup:?}, auth_required={auth_required}, {route:?} by {who:?}: {status} {text}"
            );
            if route.is_web() {
                if status != 200 || route != Route::WebAsset {
                    assert!(text.contains("<html"), "not a page: {cell}");
                }
                if status != 200 {
                    assert!(!text.contains("acme-core"), "a refused page leaked: {cell}");
                }
                if auth_required && route != Route::WebAsset {
                    assert!(
                        text.contains("Depot token") && !text.contains("acme-core"),
                        "not the sign-in page: {cell}"
                    );
                }
                if !auth_required && route == Route::WebCrate {
                    assert!(text.contains("acme-core"), "{cell}");
                }
                if route == Route::WebTokenCreate {
                    assert!(
                        text.contains("Sign in") && !text.contains("depot_"),
                        "a token was made without a session: {cell}"
                    );
                }
                row.push(status);
                continue;
            }
            if status == 401 {
                let challenge = challenge.unwrap_or_else(|| panic!("no challenge: {cell}"));
                assert_eq!(
                    challenge,
                    format!("Cargo login_url=\"{}/me\"", app.url),
                    "{cell}"
                );
                if route == Route::TrustExchange {
                    assert!(text.contains("no crate trusts"), "{cell}");
                } else {
                    assert!(text.contains(who.why_unauthorized()), "{cell}");
                }
            }
            if status >= 400 {
                let json: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {cell}"));
                assert!(
                    !crate::support::details(&json).is_empty(),
                    "no detail: {cell}"
                );
                assert!(!text.contains("\"cksum\""), "an index line leaked: {cell}");
            }
            if status != 200 || route != Route::Download {
                assert!(
                    !body
                        .windows(crate_file.len().min(64))
                        .any(|w| crate_file.starts_with(w)),
                    "crate bytes leaked: {cell}"
                );
            }
            if route == Route::Search && status == 200 && auth_required && !who.reads_acme() {
                assert!(!text.contains("acme"), "search leaked a crate: {cell}");
            }
            if route == Route::Search && status == 200 && who.reads_acme() {
                assert!(text.contains("acme-core"), "search hid a crate: {cell}");
            }
            if route == Route::UpstreamDownload && status == 200 {
                assert!(body == upstream_crate, "{cell}");
            }
            if route == Route::DocsFile && status == 200 {
                assert_eq!(text, "<html>acme</html>", "{cell}");
            }
            if route == Route::IndexFile && status == 200 {
                assert_eq!(text.lines().next(), index_line.lines().next(), "{cell}");
            }
            row.push(status);
        }
        rows.push(row);
    }
    rows
}

fn render(public: &[Vec<u16>], required: &[Vec<u16>]) -> String {
    let mut out = String::new();
    out.push_str(
        "# The auth matrix\n\n\
         Generated by the test `auth_matrix` (services/depot/tests/it/auth_matrix.rs), which \
         runs every request below against an in-process Depot on both setups (NATS JetStream + \
         PostgreSQL, and embedded SQLite), asserts each status against the rules, and compares \
         this file with what it saw (`DEPOT_BLESS=1` rewrites it).\n\n\
         Beyond the status, the test checks that every 401 carries \
         `WWW-Authenticate: Cargo login_url=\"<public URL>/me\"` and says why (no token, \
         malformed, unknown, expired, revoked, disabled user), that every refusal is a \
         cargo-format error (`{\"errors\":[{\"detail\":…}]}`), that no refused request receives \
         a byte of an index file or a `.crate`, and that search shows a token only the crates \
         it may read.\n\n\
         The crate is `acme-core`, owned by `owner`. Callers:\n\n",
    );
    for who in EVERYONE {
        let (short, long) = who.describe();
        let _ = writeln!(out, "- **{short}**: {long}");
    }
    for (title, rows) in [
        ("Public reads (the default)", public),
        ("`DEPOT_AUTH_REQUIRED=true`", required),
    ] {
        let _ = write!(out, "\n## {title}\n\n| route |");
        for who in EVERYONE {
            let _ = write!(out, " {} |", who.describe().0);
        }
        out.push_str("\n|---|");
        for _ in EVERYONE {
            out.push_str("---|");
        }
        out.push('\n');
        for (route, row) in EVERY_ROUTE.iter().zip(rows) {
            let _ = write!(out, "| {} |", route.describe());
            for status in row {
                let _ = write!(out, " {status} |");
            }
            out.push('\n');
        }
    }
    out
}

async fn auth_matrix(setup: Setup) {
    let mut tables = Vec::new();
    for auth_required in [false, true] {
        let rows = observe(setup, auth_required).await;
        let mut wrong = Vec::new();
        for (route, row) in EVERY_ROUTE.iter().zip(&rows) {
            for (who, status) in EVERYONE.iter().zip(row) {
                let want = expected(auth_required, *route, *who);
                if *status != want {
                    wrong.push(format!(
                        "auth_required={auth_required} {route:?} by {who:?}: got {status}, want {want}"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        tables.push(rows);
    }
    let rendered = render(&tables[0], &tables[1]);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/auth-matrix.md");
    if std::env::var_os("DEPOT_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed, rendered,
        "docs/auth-matrix.md is out of date; rerun with DEPOT_BLESS=1"
    );
}

on_both_setups!(auth_matrix);
