//! [`TestBucket`]: a fresh, uniquely named bucket on the test S3 server per test, deleted
//! afterwards.
//!
//! Buckets are created and deleted with the standard S3 `CreateBucket` and `DeleteBucket`
//! requests, signed by object_store's own SigV4 signer as presigned URLs and sent with a plain
//! HTTP client. object_store has no bucket operations, and this keeps both a second S3 SDK and
//! hand-written signing out of the tree; the server under test must (and SeaweedFS does) refuse
//! unsigned requests, so the signatures are checked for real.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::ObjectStore as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{Method, Signer as _};

use crate::env::required_var;

/// Environment variable naming the S3 endpoint tests use, e.g. `http://127.0.0.1:8333`.
pub const S3_ENDPOINT_VAR: &str = "DEPOT_TEST_S3_ENDPOINT";

/// Environment variable holding the access key id of the test S3 server's identity.
pub const S3_ACCESS_KEY_VAR: &str = "DEPOT_TEST_S3_ACCESS_KEY";

/// Environment variable holding the secret access key of the test S3 server's identity.
pub const S3_SECRET_KEY_VAR: &str = "DEPOT_TEST_S3_SECRET_KEY";

/// Environment variable naming the region requests are signed for, e.g. `us-east-1`.
pub const S3_REGION_VAR: &str = "DEPOT_TEST_S3_REGION";

/// Prefix of every bucket this crate creates: `depot-test-<16 hex digits>`.
const NAME_PREFIX: &str = "depot-test-";

/// Bound on every bucket operation, so a wedged server fails the test instead of hanging it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the presigned bucket requests stay valid.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// A fresh, empty bucket on the S3 server named by `DEPOT_TEST_S3_ENDPOINT`.
///
/// Each value owns one bucket with a unique name; dropping the value deletes the bucket's
/// objects and then the bucket (best effort: failures are printed, not raised). The accessors
/// give everything an S3 client needs; requests must be signed with [`TestBucket::access_key`]
/// and [`TestBucket::secret_key`] for [`TestBucket::region`], and addressed path-style
/// (`<endpoint>/<bucket>/<key>`) over plain HTTP.
///
/// ```no_run
/// # async fn example() {
/// use object_store::aws::AmazonS3Builder;
///
/// let bucket = depot_testkit::TestBucket::new().await;
/// let store = AmazonS3Builder::new()
///     .with_endpoint(bucket.endpoint())
///     .with_bucket_name(bucket.name())
///     .with_access_key_id(bucket.access_key())
///     .with_secret_access_key(bucket.secret_key())
///     .with_region(bucket.region())
///     .with_allow_http(true)
///     .with_virtual_hosted_style_request(false)
///     .build()
///     .unwrap();
/// # let _ = store;
/// # }
/// ```
#[derive(Debug)]
pub struct TestBucket {
    name: String,
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
}

impl TestBucket {
    /// Creates the bucket.
    ///
    /// # Panics
    ///
    /// If one of `DEPOT_TEST_S3_ENDPOINT`, `DEPOT_TEST_S3_ACCESS_KEY`,
    /// `DEPOT_TEST_S3_SECRET_KEY` or `DEPOT_TEST_S3_REGION` is unset, or the server cannot be
    /// reached, or it refuses to create the bucket.
    pub async fn new() -> Self {
        let endpoint = required_var(S3_ENDPOINT_VAR, "a real S3 server");
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let access_key = required_var(S3_ACCESS_KEY_VAR, "the access key of the test S3 server");
        let secret_key = required_var(S3_SECRET_KEY_VAR, "the secret key of the test S3 server");
        let region = required_var(S3_REGION_VAR, "the region of the test S3 server");
        let name = new_name();
        let store = s3_store(&endpoint, &name, &access_key, &secret_key, &region);
        if let Err(e) = bucket_request(&store, Method::PUT).await {
            panic!(
                "cannot create test bucket {name} via {S3_ENDPOINT_VAR}={endpoint}: {e:#}. Is \
                 the S3 server running and are {S3_ACCESS_KEY_VAR} and {S3_SECRET_KEY_VAR} its \
                 credentials? `bash .ci/test` starts SeaweedFS and sets them."
            );
        }
        Self {
            name,
            endpoint,
            access_key,
            secret_key,
            region,
        }
    }

    /// The bucket's name, such as `depot-test-3f9c0a1b2d4e5f60`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The S3 endpoint, `http://HOST:PORT` without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The access key id requests are signed with.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret access key requests are signed with.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `s3://<bucket>`.
    pub fn url(&self) -> String {
        format!("s3://{}", self.name)
    }

    /// An object_store client for this bucket.
    fn store(&self) -> AmazonS3 {
        s3_store(
            &self.endpoint,
            &self.name,
            &self.access_key,
            &self.secret_key,
            &self.region,
        )
    }
}

/// A fresh bucket name: `depot-test-` and 16 lowercase hex digits, a valid S3 bucket name.
fn new_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{NAME_PREFIX}{}", &id[..16])
}

/// An object_store client for one bucket: path-style requests over plain HTTP.
fn s3_store(
    endpoint: &str,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_region(region)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("an S3 client configuration built from valid parts")
}

impl Drop for TestBucket {
    #[expect(
        clippy::print_stderr,
        reason = "Drop cannot return errors; the test harness shows stderr of failing tests"
    )]
    fn drop(&mut self) {
        // Drop cannot be async, and may run inside a runtime: do the work on a thread of its
        // own with a private runtime, and wait for it so the bucket is really gone.
        let store = self.store();
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a runtime")?
                .block_on(delete_bucket(store))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "depot-testkit: could not delete bucket {}: {e:#}",
                self.name
            ),
            Err(_) => eprintln!("depot-testkit: deleting bucket {} panicked", self.name),
        }
    }
}

/// Deletes every object of the bucket, then the bucket (S3 deletes only empty buckets).
async fn delete_bucket(store: AmazonS3) -> anyhow::Result<()> {
    let emptied = async {
        let locations = store.list(None).map_ok(|meta| meta.location).boxed();
        store
            .delete_stream(locations)
            .try_collect::<Vec<Path>>()
            .await
    };
    tokio::time::timeout(ADMIN_TIMEOUT, emptied)
        .await
        .context("timed out deleting the objects")?
        .context("deleting the objects")?;
    bucket_request(&store, Method::DELETE).await
}

/// Sends a bucket-level request (`PUT /<bucket>/` creates, `DELETE /<bucket>/` deletes),
/// authorized by a presigned URL.
async fn bucket_request(store: &AmazonS3, method: Method) -> anyhow::Result<()> {
    let url = store
        .signed_url(method.clone(), &Path::default(), SIGNATURE_LIFETIME)
        .await
        .context("signing the request")?;
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
        .context("an HTTP method reqwest knows")?;
    let response = reqwest::Client::new()
        .request(method.clone(), url.as_str())
        .timeout(ADMIN_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("{method} {}", url.path()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("{method} {} answered {status}: {}", url.path(), body.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_bucket_names_and_unique() {
        let name = new_name();
        assert_ne!(name, new_name());
        assert_eq!(name.len(), 27);
        assert!(name.starts_with(NAME_PREFIX), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
    }
}
