//! The registry client: `config.json`, index files, publish, download, yank and unyank, as
//! cargo does them (PROTOCOL.md §1–§4). Every failure is an [`anyhow::Error`] whose message
//! says what failed and, for HTTP errors, the status and the registry's `detail`s.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use reqwest::header::{ACCEPT, AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::generate::{dl_prefix, index_path};

/// The markers cargo expands in a `dl` template.
const DL_MARKERS: [&str; 5] = [
    "{crate}",
    "{version}",
    "{prefix}",
    "{lowerprefix}",
    "{sha256-checksum}",
];

/// The parts of `config.json` the load test uses.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistryConfig {
    /// Download URL template.
    pub dl: String,
    /// API base URL.
    pub api: Option<String>,
    /// Whether every request needs the token.
    #[serde(default, rename = "auth-required")]
    pub auth_required: bool,
}

/// The answer to an index file request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexFetch {
    /// 200: the file and its ETag.
    Modified {
        /// The file.
        body: String,
        /// Its `ETag`, if sent.
        etag: Option<String>,
    },
    /// 304: unchanged since the ETag sent.
    NotModified,
    /// 404: no such crate (yet).
    NotFound,
}

/// The fields of an index line the load test checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexLine {
    /// Crate name.
    pub name: String,
    /// Version.
    pub vers: String,
    /// sha256 of the `.crate`.
    pub cksum: String,
    /// Yanked (missing or null = false).
    #[serde(default)]
    pub yanked: Option<bool>,
}

impl IndexLine {
    /// Whether the version is yanked.
    pub fn is_yanked(&self) -> bool {
        self.yanked.unwrap_or(false)
    }
}

/// Parses an index file; lines that do not parse are skipped (as cargo does).
pub fn parse_index(body: &str) -> Vec<IndexLine> {
    body.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Finds the line of `vers` in an index file.
pub fn find_version<'a>(lines: &'a [IndexLine], vers: &str) -> Option<&'a IndexLine> {
    lines.iter().find(|line| line.vers == vers)
}

/// Expands a `dl` template the way cargo does: markers if any, else
/// `{dl}/{crate}/{version}/download`.
pub fn download_url(dl: &str, name: &str, vers: &str, cksum: &str) -> String {
    if !DL_MARKERS.iter().any(|marker| dl.contains(marker)) {
        return format!("{dl}/{name}/{vers}/download");
    }
    let prefix = dl_prefix(name);
    dl.replace("{crate}", name)
        .replace("{version}", vers)
        .replace("{prefix}", &prefix)
        .replace("{lowerprefix}", &prefix.to_ascii_lowercase())
        .replace("{sha256-checksum}", cksum)
}

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    index_url: Url,
    api: String,
    config: RegistryConfig,
    token: String,
}

/// The `{"errors":[{"detail":…}]}` body of a failed API call.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    detail: String,
}

/// The body of a successful publish.
#[derive(Debug, Default, Deserialize)]
struct PublishOk {
    #[serde(default)]
    warnings: Option<PublishWarnings>,
}

#[derive(Debug, Default, Deserialize)]
struct PublishWarnings {
    #[serde(default)]
    invalid_categories: Vec<String>,
    #[serde(default)]
    invalid_badges: Vec<String>,
    #[serde(default)]
    other: Vec<String>,
}

/// `{"ok": true}`.
#[derive(Debug, Deserialize)]
struct OkBody {
    ok: bool,
}

/// Shortens a response body for an error message.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_owned(),
    }
}

/// A failed request: the registry's answer, or none.
#[derive(Debug)]
pub enum RequestError {
    /// A non-success answer, with the `detail`s of its body if it has them.
    Status(StatusCode, String),
    /// No (complete) answer: a connection, timeout or body error, without the URL (so that
    /// errors group by kind in the report).
    Transport(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Status(status, message) => {
                write!(f, "HTTP {}: {message}", status.as_u16())
            }
            RequestError::Transport(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for RequestError {}

/// Whether a request that failed with `error` may succeed when sent again unchanged: no
/// answer, a 5xx or a 429. (A publish is idempotent on Depot: the same bytes again are
/// acknowledged as already published.)
pub fn is_retryable(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<RequestError>() {
        Some(RequestError::Transport(_)) => true,
        Some(RequestError::Status(status, _)) => {
            status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
        }
        None => false,
    }
}

/// The error for a non-success API answer: the `detail`s if the body has them.
fn api_error(status: StatusCode, body: &str) -> anyhow::Error {
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(errors) if !errors.errors.is_empty() => {
            let details: Vec<&str> = errors.errors.iter().map(|e| e.detail.as_str()).collect();
            details.join(", ")
        }
        _ => excerpt(body),
    };
    RequestError::Status(status, message).into()
}

/// A transport error, without the URL.
fn transport(error: reqwest::Error) -> anyhow::Error {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    RequestError::Transport(format!("{kind}: {}", error.without_url())).into()
}

impl Client {
    /// Reads the registry's `config.json` (retrying once with the token on a 401, as cargo
    /// does for `auth-required` registries).
    pub async fn connect(
        index_url: &Url,
        token: &str,
        concurrency: usize,
        request_timeout: Duration,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("depot-loadtest/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(concurrency * 2)
            .connect_timeout(Duration::from_secs(10))
            .timeout(request_timeout)
            .build()
            .context("cannot create the HTTP client")?;
        let url = index_url
            .join("config.json")
            .context("cannot build the config.json URL")?;
        let mut response = http
            .get(url.clone())
            .header("cargo-protocol", "version=1")
            .send()
            .await
            .map_err(transport)
            .with_context(|| format!("cannot fetch {url}"))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            response = http
                .get(url.clone())
                .header("cargo-protocol", "version=1")
                .header(AUTHORIZATION, token)
                .send()
                .await
                .map_err(transport)
                .with_context(|| format!("cannot fetch {url}"))?;
        }
        let status = response.status();
        let body = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(api_error(status, &body)).with_context(|| format!("cannot fetch {url}"));
        }
        let config: RegistryConfig = serde_json::from_str(&body)
            .with_context(|| format!("{url} is not a registry config.json: {}", excerpt(&body)))?;
        let api = config.api.clone().with_context(|| {
            format!("{url} has no `api`: the registry does not support publishing")
        })?;
        Ok(Client {
            http,
            index_url: index_url.clone(),
            api: api.trim_end_matches('/').to_owned(),
            config,
            token: token.to_owned(),
        })
    }

    /// The registry's `config.json`.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The API base URL (no trailing `/`).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// The URL of a crate's index file.
    pub fn index_file_url(&self, name: &str) -> anyhow::Result<Url> {
        self.index_url
            .join(&index_path(name))
            .with_context(|| format!("cannot build the index URL of `{name}`"))
    }

    /// Adds the token when the registry requires it on reads.
    fn read_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.config.auth_required {
            request.header(AUTHORIZATION, &self.token)
        } else {
            request
        }
    }

    /// `PUT /api/v1/crates/new`. Returns the registry's warnings (empty normally).
    pub async fn publish(&self, body: Vec<u8>) -> anyhow::Result<Vec<String>> {
        let response = self
            .http
            .put(format!("{}/api/v1/crates/new", self.api))
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, &self.token)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let (status, text) = read_text(response).await?;
        if !status.is_success() || serde_json::from_str::<ErrorBody>(&text).is_ok() {
            return Err(api_error(status, &text));
        }
        let ok: PublishOk = if text.trim().is_empty() {
            PublishOk::default()
        } else {
            serde_json::from_str(&text).map_err(|_| {
                anyhow!(
                    "HTTP {}: body is not JSON: {}",
                    status.as_u16(),
                    excerpt(&text)
                )
            })?
        };
        let warnings = ok.warnings.unwrap_or_default();
        Ok(warnings
            .invalid_categories
            .into_iter()
            .map(|c| format!("invalid category {c}"))
            .chain(
                warnings
                    .invalid_badges
                    .into_iter()
                    .map(|b| format!("invalid badge {b}")),
            )
            .chain(warnings.other)
            .collect())
    }

    /// `GET` an index file, conditionally when `etag` is given.
    pub async fn fetch_index(&self, name: &str, etag: Option<&str>) -> anyhow::Result<IndexFetch> {
        let url = self.index_file_url(name)?;
        let mut request = self
            .http
            .get(url)
            .header("cargo-protocol", "version=1")
            .header(ACCEPT, "text/plain");
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = self.read_auth(request).send().await.map_err(transport)?;
        let status = response.status();
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match status {
            StatusCode::NOT_MODIFIED => Ok(IndexFetch::NotModified),
            StatusCode::NOT_FOUND => Ok(IndexFetch::NotFound),
            StatusCode::OK => {
                let body = response.text().await.map_err(transport)?;
                Ok(IndexFetch::Modified { body, etag })
            }
            _ => {
                let body = response.text().await.unwrap_or_default();
                Err(api_error(status, &body))
            }
        }
    }

    /// Downloads a `.crate`, streaming it through sha256. Returns (bytes, lowercase hex sha256).
    pub async fn download(
        &self,
        name: &str,
        vers: &str,
        cksum: &str,
    ) -> anyhow::Result<(u64, String)> {
        let url = download_url(&self.config.dl, name, vers, cksum);
        let request = self.http.get(&url).header(ACCEPT, "*/*");
        let mut response = self.read_auth(request).send().await.map_err(transport)?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            return Err(api_error(status, &body));
        }
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            bytes += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((bytes, hex::encode(hasher.finalize())))
    }

    /// `DELETE /api/v1/crates/{name}/{version}/yank`.
    pub async fn yank(&self, name: &str, vers: &str) -> anyhow::Result<()> {
        let request = self
            .http
            .delete(format!("{}/api/v1/crates/{name}/{vers}/yank", self.api));
        self.ok_call(request).await
    }

    /// `PUT /api/v1/crates/{name}/{version}/unyank` (empty JSON body, as cargo 1.95 sends).
    pub async fn unyank(&self, name: &str, vers: &str) -> anyhow::Result<()> {
        let request = self
            .http
            .put(format!("{}/api/v1/crates/{name}/{vers}/unyank", self.api))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(Vec::new());
        self.ok_call(request).await
    }

    async fn ok_call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<()> {
        let response = request
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, &self.token)
            .send()
            .await
            .map_err(transport)?;
        let (status, text) = read_text(response).await?;
        if !status.is_success() || serde_json::from_str::<ErrorBody>(&text).is_ok() {
            return Err(api_error(status, &text));
        }
        match serde_json::from_str::<OkBody>(&text) {
            Ok(OkBody { ok: true }) => Ok(()),
            Ok(OkBody { ok: false }) => {
                bail!("HTTP {}: answered {{\"ok\":false}}", status.as_u16())
            }
            Err(_) => bail!(
                "HTTP {}: expected {{\"ok\":true}}, got {}",
                status.as_u16(),
                excerpt(&text)
            ),
        }
    }

    /// `GET` a plain-text URL (the metrics endpoint).
    pub async fn get_text(&self, url: &Url) -> anyhow::Result<String> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(transport)
            .with_context(|| format!("cannot fetch {url}"))?;
        let (status, text) = read_text(response).await?;
        if !status.is_success() {
            return Err(api_error(status, &text)).with_context(|| format!("cannot fetch {url}"));
        }
        Ok(text)
    }
}

async fn read_text(response: Response) -> anyhow::Result<(StatusCode, String)> {
    let status = response.status();
    let text = response.text().await.map_err(transport)?;
    Ok((status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dl_templates() {
        let sum = "ab".repeat(32);
        assert_eq!(
            download_url("http://h/api/v1/crates", "My_Crate", "0.2.0+b.5", &sum),
            "http://h/api/v1/crates/My_Crate/0.2.0+b.5/download"
        );
        assert_eq!(
            download_url(
                "http://h/dl/{crate}/{version}/{prefix}/{lowerprefix}/{sha256-checksum}",
                "My_Crate",
                "0.2.0+build.5",
                &sum
            ),
            format!("http://h/dl/My_Crate/0.2.0+build.5/My/_C/my/_c/{sum}")
        );
        assert_eq!(
            download_url("http://h/{prefix}/{crate}", "abc", "1.0.0", &sum),
            "http://h/3/a/abc"
        );
        assert_eq!(
            download_url("http://h/{prefix}/{crate}", "ab", "1.0.0", &sum),
            "http://h/2/ab"
        );
        assert_eq!(
            download_url("http://h/{prefix}/{crate}", "a", "1.0.0", &sum),
            "http://h/1/a"
        );
    }

    #[test]
    fn index_lines() {
        let body = concat!(
            r#"{"name":"a","vers":"0.1.0","deps":[],"cksum":"00","features":{},"yanked":false}"#,
            "\n",
            "not json\n",
            "\n",
            r#"{"name":"a","vers":"0.2.0","deps":[],"cksum":"11","features":{},"yanked":true,"v":2}"#,
            "\n",
            r#"{"name":"a","vers":"0.3.0","deps":[],"cksum":"22"}"#,
            "\n",
        );
        let lines = parse_index(body);
        assert_eq!(lines.len(), 3);
        assert!(!find_version(&lines, "0.1.0").unwrap().is_yanked());
        assert!(find_version(&lines, "0.2.0").unwrap().is_yanked());
        assert!(!find_version(&lines, "0.3.0").unwrap().is_yanked());
        assert_eq!(find_version(&lines, "0.3.0").unwrap().cksum, "22");
        assert!(find_version(&lines, "0.4.0").is_none());
    }

    #[test]
    fn api_errors_show_details() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            r#"{"errors":[{"detail":"first"},{"detail":"second"}]}"#,
        );
        assert_eq!(e.to_string(), "HTTP 400: first, second");
        let e = api_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
        assert_eq!(e.to_string(), "HTTP 500: Internal Server Error");
        let long = "x".repeat(500);
        assert!(api_error(StatusCode::BAD_GATEWAY, &long).to_string().len() < 230);
    }
}
