//! The web UI in a real browser (Debian's Chromium, headless, through chromedriver): search
//! (with the mouse and with the keyboard alone), crate pages, an inert hostile README, the link
//! to a version's hosted docs (opened sandboxed), signing in with a token, creating and
//! revoking a token, adding an owner, the dark theme, signing out, a phone-sized screen; and
//! with `auth-required`, the sign-in wall. Screenshots of the main pages are saved as
//! artifacts (see `depot_testkit::screenshot_dir`).
//!
//! Beside the browser: forms without the session's CSRF token or from another origin are
//! refused and change nothing, and the session cookie is `HttpOnly` and `SameSite=Strict`.

use std::time::{Duration, Instant};

use depot_cratefile::TarballBuilder;
use depot_testkit::{Browser, CargoHome, CargoProject, Dep};

use crate::support::{Setup, TestDepot};

/// A README with ordinary Markdown and every kind of active content a publisher could try.
const HOSTILE_README: &str = "# Widget\n\nWidgets for **everyone**.\n\n\
    | feature | state |\n|---|---|\n| spin | stable |\n\n\
    ```rust\nlet w = web_widget::Widget::new();\n```\n\n\
    <script>window.__pwned = 'script';</script>\n\n\
    <img src=\"x\" onerror=\"window.__pwned = 'onerror'\">\n\n\
    [a harmless-looking link](javascript:window.__pwned='link')\n\n\
    <a href=\"JaVaScRiPt:window.__pwned='raw'\" id=\"raw-link\">raw link</a>\n\n\
    <iframe src=\"/me\"></iframe>\n\n\
    <form action=\"/me/tokens\" method=\"post\"><input name=\"name\" value=\"stolen\"><button>go</button></form>\n\n\
    <div onmouseover=\"window.__pwned='hover'\" style=\"position:fixed;inset:0\">hover me</div>\n\n\
    <svg onload=\"window.__pwned='svg'\"><circle r=\"5\"/></svg>\n\n\
    <style>body { display: none }</style>\n";

/// Publishes the crates the pages show: `web-base`, and `web-widget` 1.0.0 (yanked) and 1.1.0
/// with dependencies of every kind, features, `rust-version` and the hostile README; uploads
/// docs for 1.1.0 with `token`.
async fn publish_crates(depot: &TestDepot, home: &CargoHome, token: &str) {
    let base = CargoProject::new_lib("web-base", "1.0.0").description("Base of the widgets");
    home.publish(&base).await.assert_success();
    for vers in ["1.0.0", "1.1.0"] {
        let widget = CargoProject::new_lib("web-widget", vers)
            .description("Widgets for everyone")
            .license("MIT OR Apache-2.0")
            .package_field("rust-version", "1.80")
            .package_field("readme", "README.md")
            .package_field("keywords", vec!["widgets", "ui"])
            .file("README.md", HOSTILE_README)
            .dep("web-base", "1")
            .with_dep(Dep::new("web-base", "1").dev())
            .with_dep(
                Dep::new("base-alias", "1")
                    .package("web-base")
                    .optional()
                    .target("cfg(unix)"),
            )
            .feature("fancy", &["dep:base-alias"]);
        home.publish(&widget).await.assert_success();
    }
    home.yank("web-widget", "1.0.0").await.assert_success();
    let docs = TarballBuilder::new()
        .add_file(
            "./web_widget/index.html",
            b"<html><body><h1 id=\"docs-title\">web_widget 1.1.0 docs</h1></body></html>",
        )
        .build();
    let uploaded = depot
        .http
        .put(format!("{}/api/v1/crates/web-widget/1.1.0/docs", depot.url))
        .header("Authorization", token)
        .body(docs)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 200, "docs upload");
    for _ in 0..3 {
        let (status, _) = depot.download("web-widget", "1.1.0").await;
        assert_eq!(status, 200);
    }
}

async fn browse_sign_in_and_manage_tokens(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    depot.token("bob").await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&alice));
    publish_crates(&depot, &home, &alice).await;
    let browser = Browser::start(1280, 1000).await;
    let url = &depot.url;

    // Home: recently updated crates, then a search from the big search box.
    browser.goto(&format!("{url}/")).await;
    let recent = browser.text("section[aria-labelledby=recent-h]").await;
    assert!(recent.contains("web-widget"), "{recent}");
    browser.screenshot("home").await;

    // The keyboard reaches everything in order: the skip link first, then the header's
    // search; a search typed and sent with Enter; results are links in the tab order.
    let tab = depot_testkit::Key::Tab.to_string();
    let enter = depot_testkit::Key::Enter.to_string();
    // (On a page without the home page's autofocused search box.)
    browser.goto(&format!("{url}/crates/web-base")).await;
    browser.press(&tab).await;
    assert_eq!(browser.focused().await, "a Skip to content");
    browser.press(&tab).await;
    assert_eq!(browser.focused().await, "a Depot");
    browser.press(&tab).await;
    assert_eq!(browser.focused().await, "input#q ");
    browser.press(&format!("web-widget{enter}")).await;
    let at = browser
        .wait_for_url(|u| u.contains("/search?q=web-widget"))
        .await;
    assert!(at.contains("/search?q=web-widget"), "{at}");
    browser.find("#result-count").await;
    let focusable = browser
        .run(
            "return Array.from(document.querySelectorAll('a.name'))\
             .every(a => a.tabIndex === 0)",
        )
        .await;
    assert_eq!(focusable, serde_json::json!(true));
    browser.goto(&format!("{url}/")).await;
    browser.type_into("#home-q", "web-widget").await;
    browser.click(".big-search button").await;
    let at = browser
        .wait_for_url(|u| u.contains("/search?q=web-widget"))
        .await;
    assert!(at.contains("/search?q=web-widget"), "{at}");
    assert_eq!(browser.text("#result-count").await, "1 crate found");
    browser.screenshot("search").await;
    browser.click("a.name[href='/crates/web-widget']").await;

    // The crate page: README rendered, versions, dependencies, features, install line.
    assert_eq!(browser.text("#crate-name").await, "web-widget");
    assert_eq!(browser.text("#crate-version").await, "1.1.0");
    assert_eq!(browser.text("#readme h1").await, "Widget");
    assert_eq!(browser.text("#readme table td").await, "spin");
    assert!(browser.has("#readme code.language-rust").await);
    assert_eq!(
        browser.text("#cargo-add").await,
        "cargo add web-widget --registry depot"
    );
    assert_eq!(browser.text("#rust-version").await, "1.80");
    assert_eq!(browser.text("#license").await, "MIT OR Apache-2.0");
    let versions = browser.text("#versions").await;
    assert!(
        versions.contains("1.1.0") && versions.contains("1.0.0"),
        "{versions}"
    );
    assert!(
        versions.contains("yanked"),
        "the yanked version is marked: {versions}"
    );
    let deps = browser.text("#dependencies").await;
    for expected in [
        "Dependencies",
        "Dev dependencies",
        "web-base",
        "^1",
        "optional",
        "cfg(unix)",
    ] {
        assert!(deps.contains(expected), "`{expected}` in {deps}");
    }
    assert!(
        browser
            .has("#dependencies a[href='/crates/web-base']")
            .await
    );
    assert!(browser.text("#features").await.contains("fancy"));
    let config = browser
        .run("return document.getElementById('registry-config').textContent")
        .await;
    assert!(
        config
            .as_str()
            .unwrap_or_default()
            .contains(&depot.index_url()),
        "{config}"
    );

    // The hostile README is inert: nothing ran, nothing active is left in the page.
    let pwned = browser
        .run("return window.__pwned === undefined ? null : String(window.__pwned)")
        .await;
    assert_eq!(pwned, serde_json::Value::Null, "README code ran");
    let active = browser
        .run(
            "const r = document.getElementById('readme');\
             return r.querySelectorAll('script, iframe, form, style, object, embed, svg').length\
             + Array.from(r.querySelectorAll('*')).filter(e => Array.from(e.attributes)\
               .some(a => a.name.startsWith('on') || a.name === 'style')).length\
             + Array.from(r.querySelectorAll('a')).filter(a => /^\\s*javascript:/i\
               .test(a.getAttribute('href') || '')).length",
        )
        .await;
    assert_eq!(
        active,
        serde_json::json!(0),
        "active README content survived"
    );
    // The sanitizer drops ids: the link is found by its text and clicked.
    browser
        .run(
            "Array.from(document.querySelectorAll('#readme a'))\
             .find(a => a.textContent === 'raw link').click()",
        )
        .await;
    let pwned = browser
        .run("return window.__pwned === undefined ? null : String(window.__pwned)")
        .await;
    assert_eq!(pwned, serde_json::Value::Null, "a README link ran code");
    // Downloads are counted in batches: the total shows once one was written.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        browser.goto(&format!("{url}/crates/web-widget")).await;
        if browser.text("#downloads-total").await == "3" {
            break;
        }
        assert!(Instant::now() < deadline, "downloads never showed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        browser.has("svg.chart rect").await,
        "the chart has today's bar"
    );
    browser.screenshot("crate").await;
    browser
        .goto(&format!("{url}/crates/web-widget/1.0.0"))
        .await;
    assert!(browser.has("#yanked-badge").await);
    assert!(
        !browser.has("#hosted-docs").await,
        "1.0.0 has no docs, yet links them"
    );

    // Sign in with a token; the session cookie is out of the page's reach.
    browser.click("#sign-in-link").await;
    browser.type_into("#token", "not-a-real-token").await;
    browser.click("#sign-in").await;
    assert!(browser.text("#login-error").await.contains("unknown token"));
    browser.screenshot("sign-in").await;
    browser.type_into("#token", &alice).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.text("#account-link").await, "alice");
    let cookies = browser.run("return document.cookie").await;
    assert_eq!(cookies, serde_json::json!(""), "cookies visible to scripts");

    // The account page: create a narrow token, use it, revoke it.
    browser.goto(&format!("{url}/me")).await;
    assert!(browser.text("#tokens").await.contains("this session"));
    browser.type_into("#token-name", "ci-laptop").await;
    browser.click("input[name=scope][value=read]").await;
    browser.type_into("#token-crates", "web-*").await;
    browser.click("#create-token").await;
    let secret = browser.text("#new-token").await;
    browser.screenshot("token-created").await;
    let me = depot
        .http
        .get(format!("{url}/api/v1/me"))
        .header("Authorization", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["token"]["endpoint_scopes"], serde_json::json!(["read"]));
    assert_eq!(me["token"]["crate_scopes"], serde_json::json!(["web-*"]));
    let row = "#tokens tr.active:not(:has(.badge))";
    assert!(browser.text(row).await.contains("ci-laptop"));
    browser.click(&format!("{row} button.danger")).await;
    let revoked = browser.text("#tokens tr.revoked").await;
    assert!(revoked.contains("ci-laptop"), "{revoked}");
    browser.screenshot("account").await;
    let me = depot
        .http
        .get(format!("{url}/api/v1/me"))
        .header("Authorization", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the revoked token still works");

    // Hosted docs: the crate page links the version's docs (and marks the versions that
    // have them); they open sandboxed, in an opaque origin away from the session.
    browser.goto(&format!("{url}/crates/web-widget")).await;
    assert!(
        browser
            .has("#versions a[href='/docs/web-widget/1.1.0/']")
            .await
    );
    assert!(
        !browser
            .has("#versions a[href='/docs/web-widget/1.0.0/']")
            .await
    );
    browser.click("#hosted-docs").await;
    let at = browser
        .wait_for_url(|u| u.ends_with("/docs/web-widget/1.1.0/web_widget/index.html"))
        .await;
    assert!(
        at.ends_with("/docs/web-widget/1.1.0/web_widget/index.html"),
        "{at}"
    );
    assert_eq!(browser.text("#docs-title").await, "web_widget 1.1.0 docs");
    assert_eq!(
        browser.run("return window.origin").await,
        serde_json::json!("null"),
        "docs run in the registry's origin"
    );
    browser.screenshot("docs").await;

    // Owners: alice adds bob on the crate page.
    browser.goto(&format!("{url}/crates/web-widget")).await;
    browser.type_into("#owner-login", "bob").await;
    browser.click("#add-owner button").await;
    assert!(browser.text("#notice").await.contains("added"));
    assert!(browser.text("#owners").await.contains("bob"));
    let owners = home.owner_list("web-widget").await;
    owners.assert_success();
    assert!(owners.stdout.contains("bob"), "{}", owners.stdout);

    // Light and dark themes.
    browser.click("#theme-toggle").await;
    let theme = browser
        .run("return document.documentElement.getAttribute('data-theme')")
        .await;
    assert_eq!(theme, serde_json::json!("dark"));
    browser.screenshot("crate-dark").await;

    // Sign out ends the session.
    browser.click("#sign-out").await;
    browser.find("#sign-in-link").await;
    browser.close().await;

    // On a phone-sized screen the page still reads.
    let phone = Browser::start(390, 844).await;
    phone.goto(&format!("{url}/crates/web-widget")).await;
    let overflow = phone
        .run("return document.documentElement.scrollWidth > window.innerWidth + 1")
        .await;
    assert_eq!(
        overflow,
        serde_json::json!(false),
        "the page scrolls sideways on a phone"
    );
    phone.screenshot("crate-phone").await;
    phone.close().await;
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in over HTTP like a browser; returns the session cookie (`name=value`) and the CSRF
/// token of the account page's forms.
async fn sign_in(url: &str, token: &str) -> (String, String) {
    let http = no_redirects();
    let page = http.get(format!("{url}/login")).send().await.unwrap();
    let login_cookie = cookie_of(&page, "depot_login");
    let body = page.text().await.unwrap();
    let csrf = hidden(&body, "csrf");
    let res = http
        .post(format!("{url}/login"))
        .header("Cookie", &login_cookie)
        .header("Origin", url)
        .form(&[("csrf", csrf.as_str()), ("token", token), ("next", "/me")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in");
    let set = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("depot_session="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    let session = set.split(';').next().unwrap().to_owned();
    let account = http
        .get(format!("{url}/me"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (session.clone(), hidden(&account, "csrf"))
}

fn cookie_of(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// The value of the first hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

async fn forms_need_the_session_csrf_token_and_origin(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[]).await;
    let alice = depot.token("alice").await;
    let url = &depot.url;
    let http = no_redirects();
    let (session, csrf) = sign_in(url, &alice).await;
    let tokens_before = depot.store().tokens(Some("alice")).await.unwrap().len();
    let post = |csrf: String, origin: &'static str| {
        let http = http.clone();
        let session = session.clone();
        let target = format!("{url}/me/tokens");
        let origin = if origin.is_empty() {
            url.clone()
        } else {
            origin.to_owned()
        };
        async move {
            http.post(target)
                .header("Cookie", session)
                .header("Origin", origin)
                .form(&[("csrf", csrf.as_str()), ("name", "forged")])
                .send()
                .await
                .unwrap()
        }
    };
    // No token, a wrong one, the right one from another site: refused.
    assert_eq!(post(String::new(), "").await.status(), 403);
    assert_eq!(post("0".repeat(64), "").await.status(), 403);
    assert_eq!(
        post(csrf.clone(), "https://evil.example").await.status(),
        403
    );
    // No session: sent to sign in.
    let anonymous = http
        .post(format!("{url}/me/tokens"))
        .header("Origin", url.as_str())
        .form(&[("csrf", csrf.as_str()), ("name", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303);
    // A sign-in without the form's cookie (login CSRF) is refused.
    let forged_login = http
        .post(format!("{url}/login"))
        .header("Origin", url.as_str())
        .form(&[("csrf", "x"), ("token", alice.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged_login.status(), 403);
    // An oversized form.
    let big = http
        .post(format!("{url}/me/tokens"))
        .header("Cookie", &session)
        .header("Origin", url.as_str())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&name={}", "a".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(
        depot.store().tokens(Some("alice")).await.unwrap().len(),
        tokens_before,
        "a refused form created a token"
    );
    // The right token from the right origin works.
    let ok = post(csrf, "").await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("id=\"new-token\""));
    assert_eq!(
        depot.store().tokens(Some("alice")).await.unwrap().len(),
        tokens_before + 1
    );
    // Pages carry the CSP; static files exist; unknown ones do not.
    let page = http.get(format!("{url}/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        http.get(format!("{url}/static/depot.css"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/static/..%2Fsecret"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Revoking the token ends its sessions at once.
    let me: serde_json::Value = depot
        .http
        .get(format!("{url}/api/v1/me"))
        .header("Authorization", &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = me["token"]["id"].as_str().unwrap().to_owned();
    let revoked = depot
        .http
        .delete(format!("{url}/api/v1/me/tokens/{id}"))
        .header("Authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let account = http
            .get(format!("{url}/me"))
            .header("Cookie", &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if account.contains("id=\"login-form\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the session outlived its token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn auth_required_puts_the_ui_behind_sign_in(setup: Setup) {
    let depot = TestDepot::start_on(setup, &[("DEPOT_AUTH_REQUIRED", "true")]).await;
    let alice = depot.token("alice").await;
    let reader = depot
        .token_with("carol", &["--scope", "read", "--crate", "other-*"])
        .await;
    let home = CargoHome::new("depot", &depot.index_url(), Some(&alice));
    let krate = CargoProject::new_lib("secret-sauce", "1.0.0").description("Private stuff");
    home.publish(&krate).await.assert_success();
    let url = &depot.url;
    let http = no_redirects();
    for path in [
        "/",
        "/search?q=secret",
        "/crates/secret-sauce",
        "/crates/secret-sauce/1.0.0",
    ] {
        let res = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(res.headers()["location"], "/login", "{path}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("secret-sauce"),
            "{path} tells strangers: {body}"
        );
    }
    for path in ["/login", "/me", "/static/depot.css"] {
        let res = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    // A reader limited to other crates sees neither the crate nor its page.
    let (session, _) = sign_in(url, &reader).await;
    let page = http
        .get(format!("{url}/crates/secret-sauce"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    let listing = http
        .get(format!("{url}/"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listing.contains("secret-sauce"), "{listing}");

    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("{url}/crates/secret-sauce")).await;
    let at = browser.wait_for_url(|u| u.ends_with("/login")).await;
    assert!(at.ends_with("/login"), "{at}");
    browser.type_into("#token", &alice).await;
    browser.click("#sign-in").await;
    // Signed in once the answer to the form arrived (it sets the cookie).
    browser.find("#account-link").await;
    browser.goto(&format!("{url}/crates/secret-sauce")).await;
    assert_eq!(browser.text("#crate-name").await, "secret-sauce");
    browser.close().await;
}

mod embedded {
    use crate::support::Setup;

    #[tokio::test(flavor = "multi_thread")]
    async fn browse_sign_in_and_manage_tokens() {
        super::browse_sign_in_and_manage_tokens(Setup::Embedded).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn forms_need_the_session_csrf_token_and_origin() {
        super::forms_need_the_session_csrf_token_and_origin(Setup::Embedded).await
    }
}

mod production {
    use crate::support::Setup;

    #[tokio::test(flavor = "multi_thread")]
    async fn forms_need_the_session_csrf_token_and_origin() {
        super::forms_need_the_session_csrf_token_and_origin(Setup::Production).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn auth_required_puts_the_ui_behind_sign_in() {
        super::auth_required_puts_the_ui_behind_sign_in(Setup::Production).await
    }
}
