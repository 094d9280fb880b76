//! A static sparse registry served from files: the upstream of Depot's crates.io cache in
//! tests, so no test needs the internet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// A sparse registry on 127.0.0.1 serving `config.json`, index files and `.crate` files from a
/// directory, with strong ETags (the body's sha256) and `304 Not Modified`.
///
/// Layout: `index/<cargo's index path>` and `crates/<name>/<version>.crate`; `config.json`
/// says `{"dl": "<url>/dl/{crate}/{version}.crate"}` unless `index/config.json` exists.
#[derive(Debug)]
pub struct StaticRegistry {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Shared {
    url: String,
    root: PathBuf,
    down: AtomicBool,
    index_requests: AtomicUsize,
    not_modified: AtomicUsize,
    downloads: AtomicUsize,
}

/// Counts of what a [`StaticRegistry`] was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryRequests {
    /// Index file requests (config.json excluded), answered or not.
    pub index: usize,
    /// Of those, answered `304 Not Modified`.
    pub not_modified: usize,
    /// `.crate` downloads.
    pub downloads: usize,
}

impl StaticRegistry {
    /// Binds a free loopback port and starts serving an empty registry.
    ///
    /// # Panics
    ///
    /// If no port can be bound or no temporary directory made.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the static registry");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the static registry");
        let addr = listener.local_addr().expect("the registry's address");
        std::fs::create_dir_all(dir.path().join("index")).expect("index dir");
        std::fs::create_dir_all(dir.path().join("crates")).expect("crates dir");
        let shared = Arc::new(Shared {
            url: format!("http://{addr}"),
            root: dir.path().to_owned(),
            down: AtomicBool::new(false),
            index_requests: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            downloads: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/index/config.json", get(config_json))
            .route("/index/{*path}", get(index_file))
            .route("/dl/{name}/{file}", get(download))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            shared,
            server,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// `sparse+http://127.0.0.1:PORT/index/`.
    pub fn index_url(&self) -> String {
        format!("sparse+{}/index/", self.shared.url)
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Writes (replaces) the index file at `path` (cargo's index path, e.g. `3/f/foo`).
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn put_index_file(&self, path: &str, body: &[u8]) {
        let file = self.shared.root.join("index").join(path);
        std::fs::create_dir_all(file.parent().expect("index files are in a directory"))
            .expect("create the index directory");
        std::fs::write(file, body).expect("write the index file");
    }

    /// The index file at `path`, if there is one.
    pub fn index_file(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.shared.root.join("index").join(path)).ok()
    }

    /// Writes (replaces) the `.crate` of `name` `vers` (served at `dl/<name>/<vers>.crate`).
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn put_crate(&self, name: &str, vers: &str, bytes: &[u8]) {
        let dir = self.shared.root.join("crates").join(name);
        std::fs::create_dir_all(&dir).expect("create the crate directory");
        std::fs::write(dir.join(format!("{vers}.crate")), bytes).expect("write the .crate");
    }

    /// While `down`, every request is answered 503 (the port stays open).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// What the registry was asked so far.
    pub fn requests(&self) -> RegistryRequests {
        RegistryRequests {
            index: self.shared.index_requests.load(Ordering::SeqCst),
            not_modified: self.shared.not_modified.load(Ordering::SeqCst),
            downloads: self.shared.downloads.load(Ordering::SeqCst),
        }
    }

    /// Stops serving: the port closes, connections are refused.
    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for StaticRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response()
}

async fn config_json(State(shared): State<Arc<Shared>>) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let custom = shared.root.join("index").join("config.json");
    let body = std::fs::read(custom).unwrap_or_else(|_| {
        format!(
            r#"{{"dl":"{}/dl/{{crate}}/{{version}}.crate"}}"#,
            shared.url
        )
        .into_bytes()
    });
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn index_file(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    shared.index_requests.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    let path = uri.path().trim_start_matches("/index/");
    if path.split('/').any(|part| part.is_empty() || part == "..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(body) = std::fs::read(shared.root.join("index").join(path)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&body)));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        shared.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    ([(header::ETAG, etag)], body).into_response()
}

async fn download(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((name, file)): axum::extract::Path<(String, String)>,
) -> Response {
    shared.downloads.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return unavailable();
    }
    if [&name, &file]
        .iter()
        .any(|part| part.contains(['/', '\\']) || part.starts_with('.'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    match std::fs::read(shared.root.join("crates").join(&name).join(&file)) {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
