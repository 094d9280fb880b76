//! The signing keys of OIDC issuers, fetched over HTTP and cached, for trusted publishing.
//!
//! [`JwksCache`] fetches an issuer's discovery document
//! (`{issuer}/.well-known/openid-configuration`) and then its `jwks_uri`, and keeps the key set
//! for [`JwksLimits::max_age`]. When a token names a key the cached set lacks (the issuer rotated
//! its keys), [`JwksCache::verify`] refetches once — but never twice within
//! [`JwksLimits::min_refresh_interval`], so tokens with made-up `kid`s cannot make Depot hammer
//! the issuer. Concurrent misses for one issuer share a single fetch.
//!
//! Responses are read with a cap of [`MAX_DOCUMENT_BYTES`] whatever their `Content-Length`,
//! redirects are followed at most [`MAX_REDIRECTS`] times and only to https (or loopback http)
//! URLs, and every request is bounded by [`JwksLimits::fetch_timeout`].

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use depot_auth::oidc::{self, MAX_DOCUMENT_BYTES, OidcError, VerifiedToken};
use jsonwebtoken::jwk::JwkSet;
use lru::LruCache;

/// The most redirects followed for one request.
const MAX_REDIRECTS: usize = 3;

/// Timeouts and sizes of a [`JwksCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksLimits {
    /// The longest one HTTP request (connect, headers and body) may take.
    pub fetch_timeout: Duration,
    /// How long a fetched key set is used before it is fetched again.
    pub max_age: Duration,
    /// The shortest time between two fetches for one issuer, whatever prompts them.
    pub min_refresh_interval: Duration,
    /// The most issuers cached at once; the least recently used one is forgotten first.
    pub max_issuers: usize,
}

impl Default for JwksLimits {
    /// 5 s per request, keys kept 10 minutes, at most one fetch per issuer every 30 s, 64
    /// issuers.
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(5),
            max_age: Duration::from_secs(10 * 60),
            min_refresh_interval: Duration::from_secs(30),
            max_issuers: 64,
        }
    }
}

/// Why an issuer's keys could not be had, or a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The token, the discovery document or the key set was refused.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// A document could not be fetched from the issuer.
    #[error("cannot fetch `{url}` from the ID token's issuer: {reason}")]
    Fetch {
        /// The URL requested.
        url: String,
        /// What went wrong, as a short phrase.
        reason: &'static str,
    },
}

/// Cached key sets of OIDC issuers. Cloning is cheap and clones share the cache.
#[derive(Debug, Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    limits: JwksLimits,
    issuers: Mutex<LruCache<String, Arc<IssuerEntry>>>,
}

/// One issuer: its keys, and a lock so that only one fetch for it runs at a time.
#[derive(Debug, Default)]
struct IssuerEntry {
    fetch: tokio::sync::Mutex<()>,
    state: Mutex<IssuerState>,
}

#[derive(Debug, Default)]
struct IssuerState {
    keys: Option<Arc<JwkSet>>,
    /// When `keys` were fetched.
    fetched_at: Option<Instant>,
    /// When the last fetch started, successful or not, and its error if it failed.
    last_attempt: Option<(Instant, Option<JwksError>)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl JwksCache {
    /// An empty cache with its own HTTP client (rustls, limited redirects, `fetch_timeout` per
    /// request).
    ///
    /// # Panics
    ///
    /// If the TLS backend cannot be initialised.
    pub fn new(limits: JwksLimits) -> Self {
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if acceptable_url(attempt.url()) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(limits.fetch_timeout)
            .connect_timeout(limits.fetch_timeout)
            .redirect(redirects)
            .user_agent(concat!("depot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("build the HTTP client for OIDC issuers");
        let capacity = NonZeroUsize::new(limits.max_issuers).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Arc::new(Inner {
                client,
                limits,
                issuers: Mutex::new(LruCache::new(capacity)),
            }),
        }
    }

    /// The limits the cache was built with.
    pub fn limits(&self) -> JwksLimits {
        self.inner.limits
    }

    fn entry(&self, issuer: &str) -> Arc<IssuerEntry> {
        let mut issuers = lock(&self.inner.issuers);
        if let Some(entry) = issuers.get(issuer) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(IssuerEntry::default());
        issuers.put(issuer.to_owned(), Arc::clone(&entry));
        entry
    }

    /// The fresh cached keys of an entry, if any.
    fn fresh(&self, entry: &IssuerEntry) -> Option<Arc<JwkSet>> {
        let state = lock(&entry.state);
        match (&state.keys, state.fetched_at) {
            (Some(keys), Some(at)) if at.elapsed() < self.inner.limits.max_age => {
                Some(Arc::clone(keys))
            }
            _ => None,
        }
    }

    /// The issuer's key set: from the cache while younger than `max_age`, else fetched.
    ///
    /// A fetch that failed less than `min_refresh_interval` ago is not retried: its error is
    /// returned again.
    pub async fn keys(&self, issuer: &str) -> Result<Arc<JwkSet>, JwksError> {
        let entry = self.entry(issuer);
        if let Some(keys) = self.fresh(&entry) {
            return Ok(keys);
        }
        let _fetching = entry.fetch.lock().await;
        if let Some(keys) = self.fresh(&entry) {
            return Ok(keys);
        }
        if let Some(error) = self.recent_failure(&entry) {
            return Err(error);
        }
        self.fetch_into(issuer, &entry).await
    }

    /// Fetches the issuer's key set again, unless the last fetch for it started less than
    /// `min_refresh_interval` ago: then `Ok(None)`, and the cached keys (see [`Self::keys`])
    /// are as new as they may be. Meant for a token whose `kid` is not in the cached set.
    pub async fn refresh(&self, issuer: &str) -> Result<Option<Arc<JwkSet>>, JwksError> {
        let entry = self.entry(issuer);
        let _fetching = entry.fetch.lock().await;
        let recent = lock(&entry.state)
            .last_attempt
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < self.inner.limits.min_refresh_interval);
        if recent {
            return Ok(None);
        }
        self.fetch_into(issuer, &entry).await.map(Some)
    }

    /// Verifies `token` from `issuer` (see [`depot_auth::oidc::verify`]) with the issuer's
    /// cached keys; if it names a key they lack, refreshes them once (as [`Self::refresh`]
    /// allows) and tries again.
    pub async fn verify(
        &self,
        token: &str,
        issuer: &str,
        now_unix: i64,
        skew_secs: i64,
    ) -> Result<VerifiedToken, JwksError> {
        let keys = self.keys(issuer).await?;
        match oidc::verify(token, &keys, issuer, now_unix, skew_secs) {
            Err(OidcError::UnknownKey(kid)) => {
                let retry_with = match self.refresh(issuer).await? {
                    Some(refreshed) => refreshed,
                    // Another request may have refreshed the keys in the meantime.
                    None => match self.fresh(&self.entry(issuer)) {
                        Some(current) if !Arc::ptr_eq(&current, &keys) => current,
                        _ => return Err(OidcError::UnknownKey(kid).into()),
                    },
                };
                tracing::debug!(issuer, "verifying an ID token again with refreshed keys");
                Ok(oidc::verify(
                    token,
                    &retry_with,
                    issuer,
                    now_unix,
                    skew_secs,
                )?)
            }
            result => Ok(result?),
        }
    }

    fn recent_failure(&self, entry: &IssuerEntry) -> Option<JwksError> {
        let state = lock(&entry.state);
        match &state.last_attempt {
            Some((at, Some(error))) if at.elapsed() < self.inner.limits.min_refresh_interval => {
                Some(error.clone())
            }
            _ => None,
        }
    }

    /// Fetches and records the issuer's keys; the caller holds the entry's fetch lock.
    async fn fetch_into(
        &self,
        issuer: &str,
        entry: &IssuerEntry,
    ) -> Result<Arc<JwkSet>, JwksError> {
        let started = Instant::now();
        let result = self.fetch(issuer).await.map(Arc::new);
        let mut state = lock(&entry.state);
        match &result {
            Ok(keys) => {
                state.keys = Some(Arc::clone(keys));
                state.fetched_at = Some(started);
                state.last_attempt = Some((started, None));
            }
            Err(error) => {
                tracing::warn!(issuer, %error, "cannot fetch the keys of an OIDC issuer");
                state.last_attempt = Some((started, Some(error.clone())));
            }
        }
        result
    }

    async fn fetch(&self, issuer: &str) -> Result<JwkSet, JwksError> {
        if !oidc::is_acceptable_issuer(issuer) {
            return Err(OidcError::Discovery("the issuer is not an https URL".to_owned()).into());
        }
        let base = issuer.strip_suffix('/').unwrap_or(issuer);
        let discovery_url = format!("{base}/.well-known/openid-configuration");
        let document = self.get(&discovery_url).await?;
        let jwks_uri = oidc::jwks_uri_from_discovery(&document, issuer)?;
        let jwks = self.get(&jwks_uri).await?;
        Ok(oidc::parse_jwks(&jwks)?)
    }

    /// `GET url`, expecting 200 and a body of at most [`MAX_DOCUMENT_BYTES`].
    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let failed = |reason| JwksError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .inner
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(failed(if response.status().is_redirection() {
                "it redirects to a URL that is not https"
            } else {
                "it does not answer 200 OK"
            }));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(failed("the response is larger than 64 KiB"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(describe(&e)))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(failed("the response is larger than 64 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A short, stable description of a request failure.
fn describe(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "the request timed out"
    } else if error.is_connect() {
        "the connection failed"
    } else if error.is_redirect() {
        "it redirects too often"
    } else if error.is_body() || error.is_decode() {
        "the response could not be read"
    } else {
        "the request failed"
    }
}

/// Whether a redirect target may be followed: https, or http to a loopback host.
fn acceptable_url(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use depot_testkit::OidcIssuer;
    use serde_json::json;

    const AUDIENCE: &str = "depot.example.com";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .try_into()
            .unwrap()
    }

    fn limits(min_refresh_interval: Duration) -> JwksLimits {
        JwksLimits {
            min_refresh_interval,
            ..JwksLimits::default()
        }
    }

    #[tokio::test]
    async fn verifies_and_caches() {
        let issuer = OidcIssuer::start().await;
        let cache = JwksCache::new(JwksLimits::default());
        let url = issuer.url();

        for _ in 0..3 {
            let token =
                issuer.sign(&issuer.claims(AUDIENCE, json!({"project_path": "acme/tools"})));
            let verified = cache.verify(&token, &url, now(), 60).await.unwrap();
            assert_eq!(verified.claims["project_path"], "acme/tools");
        }
        assert_eq!(issuer.jwks_requests(), 1, "the key set is fetched once");

        // A forged token is refused without a refetch.
        let forged = issuer.forge_hs256_with_public_key(&issuer.claims(AUDIENCE, json!({})));
        assert_eq!(
            cache.verify(&forged, &url, now(), 60).await,
            Err(JwksError::Oidc(OidcError::SymmetricAlgorithm(
                "HS256".to_owned()
            )))
        );
        assert_eq!(issuer.jwks_requests(), 1);
    }

    #[tokio::test]
    async fn rotation_refreshes_once_and_random_kids_do_not_refetch() {
        let issuer = OidcIssuer::start().await;
        let interval = Duration::from_secs(1);
        let cache = JwksCache::new(limits(interval));
        let url = issuer.url();

        let first = issuer.sign(&issuer.claims(AUDIENCE, json!({})));
        cache.verify(&first, &url, now(), 60).await.unwrap();
        assert_eq!(issuer.jwks_requests(), 1);

        tokio::time::sleep(interval).await;
        issuer.rotate();
        let second = issuer.sign(&issuer.claims(AUDIENCE, json!({})));
        let verified = cache.verify(&second, &url, now(), 60).await.unwrap();
        assert_eq!(verified.issuer, url);
        assert_eq!(
            issuer.jwks_requests(),
            2,
            "the unknown kid caused one refresh"
        );

        // The old key left the issuer's JWKS, and now the cache's.
        assert_eq!(
            cache.verify(&first, &url, now(), 60).await,
            Err(JwksError::Oidc(OidcError::UnknownKey("key-1".to_owned())))
        );
        for kid in ["random-1", "random-2"] {
            let token = issuer.sign_with_kid(&issuer.claims(AUDIENCE, json!({})), kid);
            assert_eq!(
                cache.verify(&token, &url, now(), 60).await,
                Err(JwksError::Oidc(OidcError::UnknownKey(kid.to_owned())))
            );
        }
        assert_eq!(
            issuer.jwks_requests(),
            2,
            "no refetch within min_refresh_interval"
        );
        assert_eq!(cache.refresh(&url).await, Ok(None));

        tokio::time::sleep(interval).await;
        assert!(cache.refresh(&url).await.unwrap().is_some());
        assert_eq!(issuer.jwks_requests(), 3);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let issuer = OidcIssuer::start().await;
        let cache = JwksCache::new(JwksLimits::default());
        let url = issuer.url();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                let url = url.clone();
                tokio::spawn(async move { cache.keys(&url).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().keys.len(), 1);
        }
        assert_eq!(issuer.jwks_requests(), 1);
    }

    #[tokio::test]
    async fn keys_expire_after_max_age() {
        let issuer = OidcIssuer::start().await;
        let cache = JwksCache::new(JwksLimits {
            max_age: Duration::from_secs(1),
            min_refresh_interval: Duration::ZERO,
            ..JwksLimits::default()
        });
        cache.keys(&issuer.url()).await.unwrap();
        cache.keys(&issuer.url()).await.unwrap();
        assert_eq!(issuer.jwks_requests(), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        cache.keys(&issuer.url()).await.unwrap();
        assert_eq!(issuer.jwks_requests(), 2);
    }

    #[tokio::test]
    async fn unreachable_and_unacceptable_issuers() {
        let issuer = OidcIssuer::start().await;
        let url = issuer.url();
        drop(issuer);
        let cache = JwksCache::new(JwksLimits {
            fetch_timeout: Duration::from_secs(2),
            ..JwksLimits::default()
        });
        let err = cache.keys(&url).await.unwrap_err();
        assert!(
            matches!(err, JwksError::Fetch { .. }),
            "unexpected error: {err}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot fetch `http://127.0.0.1:")
        );
        // The failure is remembered for min_refresh_interval.
        assert_eq!(cache.keys(&url).await.unwrap_err(), err);

        assert!(matches!(
            cache.keys("http://gitlab.example.com").await,
            Err(JwksError::Oidc(OidcError::Discovery(_)))
        ));
    }

    /// Serves a discovery document whose JWKS is `jwks_chunks` streamed without a length.
    async fn serve_streamed_jwks(
        jwks_chunks: Vec<Vec<u8>>,
    ) -> (String, tokio::task::JoinHandle<()>) {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let document = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(document) }),
            )
            .route(
                "/jwks",
                get(move || async move {
                    let chunks = jwks_chunks
                        .into_iter()
                        .map(Ok::<_, std::io::Error>)
                        .collect::<Vec<_>>();
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            );
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, server)
    }

    #[tokio::test]
    async fn bodies_are_capped_without_a_content_length() {
        let (url, server) = serve_streamed_jwks(vec![vec![b' '; 16 * 1024]; 8]).await;
        let cache = JwksCache::new(JwksLimits::default());
        assert_eq!(
            cache.keys(&url).await,
            Err(JwksError::Fetch {
                url: format!("{url}/jwks"),
                reason: "the response is larger than 64 KiB"
            })
        );
        server.abort();

        let (url, server) =
            serve_streamed_jwks(vec![b"{\"keys\":".to_vec(), b" []}".to_vec()]).await;
        assert!(cache.keys(&url).await.unwrap().keys.is_empty());
        server.abort();
    }

    #[tokio::test]
    async fn the_least_recently_used_issuer_is_forgotten() {
        let a = OidcIssuer::start().await;
        let b = OidcIssuer::start().await;
        let cache = JwksCache::new(JwksLimits {
            max_issuers: 1,
            ..JwksLimits::default()
        });
        cache.keys(&a.url()).await.unwrap();
        cache.keys(&b.url()).await.unwrap();
        cache.keys(&a.url()).await.unwrap();
        assert_eq!(a.jwks_requests(), 2);
        assert_eq!(b.jwks_requests(), 1);
    }
}
