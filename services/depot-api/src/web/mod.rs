//! The web UI: server-rendered pages (askama templates compiled into the binary) for people —
//! search, crate pages with their README, versions, dependencies, features, owners and
//! downloads, and, once signed in with a token, the person's tokens and crates.
//!
//! Routes: `/`, `/search`, `/crates/{name}`, `/crates/{name}/{version}`, `/login`, `/logout`,
//! `/me` (the account page; also cargo's `login_url`), `/me/tokens`, `/me/tokens/{id}/revoke`,
//! `/crates/{name}/owners` and `/static/{file}`.
//!
//! Pages authenticate with the session cookie (see [`session`]), never with the
//! `Authorization` header. With `auth-required`, every page but the sign-in page and the static
//! files sends strangers to `/login`. Every form is a `POST` with a CSRF token and a same-origin
//! check. Pages carry a Content-Security-Policy that allows only Depot's own stylesheet and
//! script (no inline script), and `frame-ancestors 'none'`.
//!
//! Bounds: form bodies are at most `pages::MAX_FORM_BYTES`; search pages are `pages::PAGE_SIZE` hits and
//! at most `pages::MAX_PAGE` deep; READMEs are read up to 1 MiB; lists show at most 100 crates.

mod markdown;
mod pages;
mod session;
mod view;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// Whether `path` is one of the web UI's (which authenticate with the session cookie).
pub(crate) fn is_web_path(path: &str) -> bool {
    path == "/"
        || path == "/search"
        || path == "/login"
        || path == "/logout"
        || path == "/me"
        || path.starts_with("/me/")
        || path.starts_with("/crates/")
        || path.starts_with("/static/")
}

/// The web UI's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/search", get(pages::search))
        .route("/crates/{name}", get(pages::crate_page))
        .route("/crates/{name}/{version}", get(pages::crate_version_page))
        .route("/crates/{name}/owners", post(pages::change_owners))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/me", get(pages::account))
        .route("/me/tokens", post(pages::create_token))
        .route("/me/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/static/{file}", get(pages::asset))
}
