//! The handlers and templates of the web UI.

use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use depot_events::{Timestamp, TokenScope};
use depot_index::{CrateName, Version};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::session::{self, Viewer};
use super::view::{self, Card, CratePage};
use crate::extract::ApiQuery;
use crate::{ApiError, AppState};

/// Hits per search page.
pub(crate) const PAGE_SIZE: u32 = 20;
/// The deepest search page served.
pub(crate) const MAX_PAGE: u32 = 500;
/// The largest form body read.
pub(crate) const MAX_FORM_BYTES: usize = 16 * 1024;
/// Crates per list on the home and account pages.
const LIST_SIZE: u32 = 10;
/// The largest README read from the blob store.
const MAX_README_BLOB: u64 = super::markdown::MAX_README_BYTES as u64;

/// The Content-Security-Policy of every page.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("../../assets/depot.css");
const SCRIPT: &str = include_str!("../../assets/depot.js");

/// What every page's frame shows.
#[derive(Debug)]
pub(crate) struct Frame {
    title: String,
    query: String,
    login: Option<String>,
    csrf: String,
}

impl Frame {
    fn new(title: impl Into<String>, viewer: Option<&Viewer>) -> Frame {
        Frame {
            title: title.into(),
            query: String::new(),
            login: viewer.map(|v| v.principal.login.clone()),
            csrf: viewer.map(|v| v.csrf.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    frame: Frame,
    recent: Vec<Card>,
    popular: Vec<Card>,
    index_url: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    frame: Frame,
    hits: Vec<Card>,
    total: u64,
    page: u32,
    pages: u32,
    prev: String,
    next: String,
}

#[derive(Template)]
#[template(path = "crate.html")]
struct CrateTemplate {
    frame: Frame,
    c: CratePage,
    readme: String,
    index_url: String,
    can_manage: bool,
    notice: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    frame: Frame,
    login_csrf: String,
    next: String,
    error: String,
    public_url: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    frame: Frame,
    admin: bool,
    personal: bool,
    tokens: Vec<TokenView>,
    crates: Vec<Card>,
    created_name: String,
    created_secret: String,
    error: String,
    scopes: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    frame: Frame,
    status: u16,
    message: String,
}

/// A token as the account page lists it.
#[derive(Debug)]
struct TokenView {
    id: String,
    name: String,
    scopes: String,
    crates: String,
    created: String,
    last_used: String,
    expires: String,
    state: &'static str,
    current: bool,
}

/// A page, or an error page with the error's status. A 401 sends the person to sign in.
type PageResult = Result<Response, WebError>;

/// An [`ApiError`] shown as a page.
#[derive(Debug)]
pub(crate) struct WebError {
    error: ApiError,
    login: Option<String>,
}

impl From<ApiError> for WebError {
    fn from(error: ApiError) -> WebError {
        WebError { error, login: None }
    }
}

impl From<depot_store::StoreError> for WebError {
    fn from(error: depot_store::StoreError) -> WebError {
        WebError::from(ApiError::from(error))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        if status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/login").into_response();
        }
        let mut frame = Frame::new(status.canonical_reason().unwrap_or("Error"), None);
        frame.login = self.login;
        let page = ErrorPage {
            frame,
            status: status.as_u16(),
            message: self.error.detail().to_owned(),
        };
        let mut response = html(&page);
        *response.status_mut() = status;
        response
    }
}

/// A rendered template with the page headers.
fn html(template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(PAGE_CSP),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("same-origin"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// The viewer, and whether the page may be shown to them: with `auth-required`, only to a
/// signed-in viewer whose token has the `read` scope.
async fn reader(state: &AppState, headers: &HeaderMap) -> Result<Option<Viewer>, WebError> {
    let viewer = session::viewer(state, headers).await?;
    if state.config().auth_required {
        let Some(viewer) = &viewer else {
            return Err(ApiError::unauthorized("sign in first").into());
        };
        viewer
            .principal
            .require_scope(TokenScope::Read)
            .map_err(|error| WebError {
                error,
                login: Some(viewer.principal.login.clone()),
            })?;
    }
    Ok(viewer)
}

/// Whether the viewer may see crate `name` (always, on a registry with public reads).
fn may_read(state: &AppState, viewer: Option<&Viewer>, name: &str) -> bool {
    !state.config().auth_required
        || viewer.is_some_and(|v| v.principal.grant.allows(TokenScope::Read, name))
}

/// Crates the viewer may see, at most `limit`.
fn visible(
    state: &AppState,
    viewer: Option<&Viewer>,
    cards: Vec<depot_store::CrateCard>,
    limit: usize,
) -> Vec<Card> {
    cards
        .into_iter()
        .filter(|c| may_read(state, viewer, &c.name))
        .take(limit)
        .map(Card::from)
        .collect()
}

/// `GET /`: the search box, recently changed and most downloaded crates.
pub(crate) async fn home(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let viewer = reader(&state, &headers).await?;
    let fetch = if state.config().auth_required {
        100
    } else {
        LIST_SIZE
    };
    let recent = state.store().recent_crates(fetch).await?;
    let popular = state.store().most_downloaded(fetch).await?;
    let limit = LIST_SIZE as usize;
    Ok(html(&HomePage {
        frame: Frame::new("Depot", viewer.as_ref()),
        recent: visible(&state, viewer.as_ref(), recent, limit),
        popular: visible(&state, viewer.as_ref(), popular, limit),
        index_url: state.config().index_url(),
    }))
}

/// The query of `/search`.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<u32>,
}

/// `GET /search?q=&page=`: one page of hits.
pub(crate) async fn search(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = reader(&state, &headers).await?;
    crate::limits::check_search_query(&query.q, state.config().limits.max_search_query_bytes)?;
    let q = query.q.trim();
    let page = query.page.unwrap_or(1).clamp(1, MAX_PAGE);
    let narrowed = state.config().auth_required
        && viewer
            .as_ref()
            .is_some_and(|v| !v.principal.grant.crates.is_empty());
    let (hits, total) = if narrowed {
        // As in the API: a token limited to some crates searches the first 100 hits.
        let (hits, _) = state.store().search(q, 100).await?;
        let hits: Vec<Card> = hits
            .into_iter()
            .filter(|h| may_read(&state, viewer.as_ref(), &h.name))
            .map(card_of_hit)
            .collect();
        let total = hits.len() as u64;
        let skip = ((page - 1) * PAGE_SIZE) as usize;
        (
            hits.into_iter()
                .skip(skip)
                .take(PAGE_SIZE as usize)
                .collect(),
            total,
        )
    } else {
        let offset = u64::from(page - 1) * u64::from(PAGE_SIZE);
        let (hits, total) = state.store().search_page(q, PAGE_SIZE, offset).await?;
        (hits.into_iter().map(card_of_hit).collect(), total)
    };
    let pages = u32::try_from(total.div_ceil(u64::from(PAGE_SIZE)))
        .unwrap_or(MAX_PAGE)
        .clamp(1, MAX_PAGE);
    let link = |p: u32| format!("/search?q={}&page={p}", urlencode(q));
    let mut frame = Frame::new(format!("Search: {q}"), viewer.as_ref());
    frame.query = q.to_owned();
    Ok(html(&SearchPage {
        frame,
        hits,
        total,
        page,
        pages,
        prev: if page > 1 {
            link(page - 1)
        } else {
            String::new()
        },
        next: if page < pages {
            link(page + 1)
        } else {
            String::new()
        },
    }))
}

fn card_of_hit(hit: depot_store::SearchHit) -> Card {
    Card {
        name: hit.name,
        version: hit.max_version,
        description: hit.description.unwrap_or_default(),
        downloads: String::new(),
        updated: String::new(),
    }
}

/// `GET /crates/{name}`: the crate at its newest version.
pub(crate) async fn crate_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    show_crate(&state, &headers, &name, None, String::new()).await
}

/// `GET /crates/{name}/{version}`.
pub(crate) async fn crate_version_page(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> PageResult {
    let version = Version::parse(&version)
        .map_err(|_| ApiError::not_found(format!("crate `{name}` has no such version")))?;
    show_crate(
        &state,
        &headers,
        &name,
        Some(version.as_str()),
        String::new(),
    )
    .await
}

async fn show_crate(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    version: Option<&str>,
    notice: String,
) -> PageResult {
    let viewer = reader(state, headers).await?;
    let not_found = || ApiError::not_found(format!("crate `{name}` does not exist"));
    let name = CrateName::parse(name).map_err(|_| not_found())?;
    if !may_read(state, viewer.as_ref(), &name) {
        return Err(WebError {
            error: ApiError::forbidden(format!(
                "your token does not have the `read` scope for crate `{name}`"
            )),
            login: viewer.map(|v| v.principal.login),
        });
    }
    let canon = name.canonical();
    let Some(details) = state.store().crate_details(&canon).await? else {
        return Err(not_found().into());
    };
    let today = Timestamp::now().unix_seconds().div_euclid(86_400);
    let downloads = state
        .store()
        .crate_downloads(&canon, today - view::CHART_DAYS + 1)
        .await?;
    let can_manage = viewer.as_ref().is_some_and(|v| {
        v.principal.admin
            || (v.principal.kind == depot_events::TokenKind::Personal
                && details.owners.contains(&v.principal.login))
    });
    let docs = state
        .store()
        .docs_versions(&canon)
        .await?
        .into_iter()
        .map(|row| row.vers)
        .collect();
    let yank_messages = state.store().yank_messages(&canon).await?;
    let page = view::crate_page(details, version, &docs, &yank_messages, &downloads, today)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "crate `{name}` does not have a version `{}`",
                version.unwrap_or_default()
            ))
        })?;
    let readme = match &page.readme_blob {
        Some(key) => match state.inner.blobs.read_capped(key, MAX_README_BLOB).await {
            Ok(Some(bytes)) => {
                super::markdown::render(&String::from_utf8_lossy(&bytes), page.readme_markdown)
            }
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e, key, "a readme could not be read");
                String::new()
            }
        },
        None => String::new(),
    };
    Ok(html(&CrateTemplate {
        frame: Frame::new(format!("{} {}", page.name, page.version), viewer.as_ref()),
        c: page,
        readme,
        index_url: state.config().index_url(),
        can_manage,
        notice,
    }))
}

/// The form of owner changes.
#[derive(Debug, Deserialize)]
pub(crate) struct OwnersForm {
    csrf: String,
    action: String,
    login: String,
}

/// `POST /crates/{name}/owners`: adds or removes an owner, then shows the crate page.
pub(crate) async fn change_owners(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (viewer, form): (Viewer, OwnersForm) = signed_form(&state, &headers, &body).await?;
    let name = CrateName::parse(&name)
        .map_err(|_| ApiError::not_found(format!("crate `{name}` does not exist")))?;
    let add = match form.action.as_str() {
        "add" => true,
        "remove" => false,
        _ => return Err(ApiError::bad_request("unknown action").into()),
    };
    let outcome =
        crate::crates::change_owners_as(&state, &viewer.principal, &name, &[form.login], add).await;
    let notice = match outcome {
        Ok(message) => message,
        Err(e) if e.status().is_client_error() => format!("Not changed: {}", e.detail()),
        Err(e) => return Err(e.into()),
    };
    show_crate(&state, &headers, &name, None, notice).await
}

/// The query of `/login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    next: String,
}

/// `GET /login`: the sign-in form (and how to get a first token).
pub(crate) async fn login_page(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LoginQuery>,
    headers: HeaderMap,
) -> PageResult {
    let viewer = session::viewer(&state, &headers).await?;
    Ok(login_form(
        &state,
        viewer.as_ref(),
        &query.next,
        String::new(),
    ))
}

fn login_form(state: &AppState, viewer: Option<&Viewer>, next: &str, error: String) -> Response {
    let csrf = session::new_secret();
    let mut response = html(&LoginPage {
        frame: Frame::new("Sign in", viewer),
        login_csrf: csrf.clone(),
        next: local_path(next).to_owned(),
        error,
        public_url: state.config().public_url.clone(),
    });
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            state,
            session::LOGIN_COOKIE,
            &csrf,
            Duration::from_secs(3600),
        ),
    );
    response
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    csrf: String,
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: opens a session for a valid token.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    session::check_origin(&state, &headers)?;
    let form: LoginForm = parse_form(&body)?;
    let expected = session::cookie(&headers, session::LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same(&form.csrf, expected) {
        return Err(ApiError::forbidden(
            "the sign-in form expired or came from another site; reload the page and try again",
        )
        .into());
    }
    let secret = form.token.trim();
    let Some(secret) = depot_auth::secret_from_header(secret) else {
        return Ok(login_form(
            &state,
            None,
            &form.next,
            "That is not a Depot token.".into(),
        ));
    };
    let hash = depot_auth::hash_secret(secret);
    let principal = match crate::auth::authenticate_hash(&state, hash.clone()).await {
        Ok(principal) => principal,
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            return Ok(login_form(&state, None, &form.next, e.detail().to_owned()));
        }
        Err(e) => return Err(e.into()),
    };
    let cookie_secret = session::open(&state, &hash, principal.expires_at).await?;
    let mut response = Redirect::to(local_path(&form.next)).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(
            &state,
            session::SESSION_COOKIE,
            &cookie_secret,
            session::SESSION_LIFETIME,
        ),
    );
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(&state, session::LOGIN_COOKIE, "", Duration::ZERO),
    );
    Ok(response)
}

/// The form of signing out and revoking.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// `POST /logout`: ends the session.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (viewer, CsrfForm { .. }) = signed_form(&state, &headers, &body).await?;
    state.store().close_session(&viewer.key).await?;
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&state, session::SESSION_COOKIE, "", Duration::ZERO),
    );
    Ok(response)
}

/// `GET /me`: the signed-in person's tokens and crates; the sign-in page for anyone else.
pub(crate) async fn account(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let Some(viewer) = session::viewer(&state, &headers).await? else {
        return Ok(login_form(&state, None, "/me", String::new()));
    };
    account_page(&state, &viewer, String::new(), String::new(), String::new()).await
}

async fn account_page(
    state: &AppState,
    viewer: &Viewer,
    created_name: String,
    created_secret: String,
    error: String,
) -> PageResult {
    let principal = &viewer.principal;
    let personal = principal.kind == depot_events::TokenKind::Personal;
    let tokens = if personal {
        state.store().tokens(Some(&principal.login)).await?
    } else {
        Vec::new()
    };
    let now = Timestamp::now();
    let mut tokens: Vec<TokenView> = tokens
        .into_iter()
        .filter(|t| t.kind == depot_events::TokenKind::Personal)
        .map(|t| TokenView {
            current: t.token_id == principal.token_id.to_string(),
            state: if t.revoked {
                "revoked"
            } else if t.expires_at.is_some_and(|e| e <= now) {
                "expired"
            } else {
                "active"
            },
            name: t.label.unwrap_or_default(),
            scopes: if t.scopes.is_empty() {
                "all".into()
            } else {
                t.scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            crates: if t.crates.is_empty() {
                "all".into()
            } else {
                t.crates.join(", ")
            },
            created: view::date(t.created_at),
            last_used: t
                .last_used_at
                .map(view::date)
                .unwrap_or_else(|| "never".into()),
            expires: t
                .expires_at
                .map(view::date)
                .unwrap_or_else(|| "never".into()),
            id: t.token_id,
        })
        .collect();
    tokens.sort_by_key(|t| t.state != "active");
    let crates = state
        .store()
        .crates_owned_by(&principal.login, 100)
        .await?
        .into_iter()
        .map(Card::from)
        .collect();
    Ok(html(&AccountPage {
        frame: Frame::new("Your account", Some(viewer)),
        admin: principal.admin,
        personal,
        tokens,
        crates,
        created_name,
        created_secret,
        error,
        scopes: TokenScope::ALL.map(TokenScope::as_str).to_vec(),
    }))
}

/// `POST /me/tokens`: creates a token and shows its secret, once.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (viewer, fields): (Viewer, Vec<(String, String)>) =
        signed_form(&state, &headers, &body).await?;
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let scopes: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let crates: Vec<String> = field("crates")
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let expires = field("expires");
    let request = crate::tokens::NewToken {
        name: field("name"),
        crate_scopes: (!crates.is_empty()).then_some(crates),
        endpoint_scopes: (!scopes.is_empty()).then_some(scopes),
        expired_at: (!expires.is_empty()).then(|| format!("{expires}T00:00:00Z")),
    };
    let name = request.name.clone();
    match crate::tokens::issue(&state, &viewer.principal, request).await {
        Ok((_, secret)) => account_page(&state, &viewer, name, secret, String::new()).await,
        Err(e) if e.status().is_client_error() => {
            account_page(
                &state,
                &viewer,
                String::new(),
                String::new(),
                e.detail().to_owned(),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /me/tokens/{id}/revoke`.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let (viewer, CsrfForm { .. }) = signed_form(&state, &headers, &body).await?;
    crate::tokens::revoke_own(&state, &viewer.principal, &id).await?;
    Ok(Redirect::to("/me").into_response())
}

/// `GET /static/{file}`: the stylesheet and the script, compiled into the binary.
pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (body, kind) = match file.as_str() {
        "depot.css" => (STYLE, "text/css; charset=utf-8"),
        "depot.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return Err(ApiError::not_found("no such file")),
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response())
}

/// A form posted by a signed-in viewer from Depot's own pages: the origin is checked, the
/// body parsed (at most [`MAX_FORM_BYTES`]) and its CSRF token compared with the session's.
async fn signed_form<T: DeserializeOwned + HasCsrf>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Viewer, T), WebError> {
    session::check_origin(state, headers)?;
    let Some(viewer) = session::viewer(state, headers).await? else {
        return Err(ApiError::unauthorized("sign in first").into());
    };
    let form: T = parse_form(body)?;
    if !session::same(form.csrf(), &viewer.csrf) {
        return Err(WebError {
            error: ApiError::forbidden(
                "this form expired or came from another site; reload the page and try again",
            ),
            login: Some(viewer.principal.login),
        });
    }
    Ok((viewer, form))
}

/// A form with a CSRF field.
trait HasCsrf {
    fn csrf(&self) -> &str;
}

impl HasCsrf for OwnersForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl HasCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl HasCsrf for Vec<(String, String)> {
    fn csrf(&self) -> &str {
        self.iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str())
    }
}

fn parse_form<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(ApiError::too_large(format!(
            "a form may have at most {MAX_FORM_BYTES} bytes"
        )));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::bad_request(format!("the form could not be read: {e}")))
}

/// `next` if it is a path on this site (`/…`, not `//…`), else `/`.
fn local_path(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 512
        && !next.chars().any(char::is_control);
    if local { next } else { "/" }
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path("/crates/x"), "/crates/x");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
        assert_eq!(local_path(""), "/");
    }

    #[test]
    fn forms_are_bounded_and_checked() {
        let big = Bytes::from(vec![b'a'; MAX_FORM_BYTES + 1]);
        assert!(parse_form::<CsrfForm>(&big).is_err());
        assert!(parse_form::<CsrfForm>(&Bytes::from_static(b"x=1")).is_err());
        let form: CsrfForm = parse_form(&Bytes::from_static(b"csrf=abc")).expect("form");
        assert_eq!(form.csrf, "abc");
        assert_eq!(urlencode("a b&c"), "a+b%26c");
    }

    proptest! {
        #[test]
        fn any_form_body_is_read_safely(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_form::<OwnersForm>(&Bytes::from(body.clone()));
            let _ = parse_form::<Vec<(String, String)>>(&Bytes::from(body));
        }

        #[test]
        fn a_followed_path_stays_on_the_site(next in ".{0,64}") {
            let path = local_path(&next);
            prop_assert!(path.starts_with('/') && !path.starts_with("//"));
        }
    }
}
