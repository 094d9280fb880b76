//! The test environment: where the real NATS server is, how the other services are named, and
//! unique names for test resources.
//!
//! Integration tests talk to real servers named by environment variables. `bash .ci/test`
//! starts them and exports the variables; a test that runs without them panics with an
//! explanation instead of silently passing.

use std::io::{BufRead, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable naming the NATS server (≥ 2.11, JetStream enabled) tests use.
pub const NATS_URL_VAR: &str = "DEPOT_TEST_NATS_URL";

/// Environment variable naming a PostgreSQL server (a database on it that a superuser can
/// connect to) on which [`crate::TestDatabase`] creates its databases.
pub const DATABASE_URL_VAR: &str = "DEPOT_TEST_DATABASE_URL";

/// The oldest nats-server Depot supports (EVENTING.md, "Server versions").
const MIN_NATS_VERSION: (u64, u64) = (2, 11);

/// How the services are provided, repeated in every "not set" message.
const HOW_TO: &str = "Run the tests with `bash .ci/test` (it starts a private nats-server 2.15.1 \
     and a private SeaweedFS S3 server and checks PostgreSQL, then runs the whole suite), or \
     start the services yourself and export DEPOT_TEST_NATS_URL=nats://127.0.0.1:<port> (a \
     nats-server >= 2.11 with JetStream; not Debian's 2.9.10 on 127.0.0.1:4222), \
     DEPOT_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres and, for S3, \
     DEPOT_TEST_S3_ENDPOINT=http://127.0.0.1:<port>, DEPOT_TEST_S3_ACCESS_KEY, \
     DEPOT_TEST_S3_SECRET_KEY and DEPOT_TEST_S3_REGION (an identity that may create buckets).";

/// Reads a required test environment variable, panicking with instructions if it is missing.
#[track_caller]
pub(crate) fn required_var(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value.trim().to_owned(),
        _ => panic!(
            "{name} is not set: this test needs {what}, and tests never skip silently. {HOW_TO}"
        ),
    }
}

/// The URL of the NATS server for integration tests, from `DEPOT_TEST_NATS_URL`.
///
/// The first call in a process also connects once and checks that the server speaks NATS, is
/// at least version 2.11 and has JetStream enabled, so pointing the tests at an old or
/// JetStream-less server fails loudly instead of producing baffling test failures.
///
/// # Panics
///
/// If the variable is unset or empty, or the server is unreachable, too old or lacks JetStream.
#[track_caller]
pub fn nats_url() -> String {
    let url = required_var(NATS_URL_VAR, "a real NATS server with JetStream");
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(problem) = CHECKED.get_or_init(|| check_nats_server(&url)) {
        panic!("{NATS_URL_VAR}={url} is not usable: {problem}. {HOW_TO}");
    }
    url
}

/// A fresh prefix for names a test creates on shared servers, such as `t_3f9c0a1b2d4e5f60`.
///
/// It contains only lowercase ASCII letters, digits and `_`, so it is a valid NATS subject
/// token, part of a JetStream stream or consumer name, and an unquoted SQL identifier.
pub fn unique_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{}", &id[..16])
}

/// Connects to the first server of a NATS URL and checks its `INFO` greeting.
fn check_nats_server(url: &str) -> Result<(), String> {
    let first = url.split(',').next().unwrap_or_default().trim();
    let Some(rest) = first.strip_prefix("nats://") else {
        // tls://, ws:// and friends: leave the checks to the client library.
        return Ok(());
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, hp)| hp);
    let has_port = match host_port.rfind(']') {
        Some(bracket) => host_port[bracket..].contains(':'),
        None => host_port.contains(':'),
    };
    let address = if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:4222")
    };
    let socket = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))?;
    let stream = TcpStream::connect_timeout(&socket, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {socket}: {e} (is the server running?)"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("no greeting from {socket}: {e}"))?;
    let info = line
        .strip_prefix("INFO ")
        .ok_or_else(|| format!("{socket} does not speak NATS (greeting: {line:?})"))?;
    let info: serde_json::Value =
        serde_json::from_str(info.trim()).map_err(|e| format!("unreadable INFO: {e}"))?;
    let version = info["version"].as_str().unwrap_or("unknown");
    if parse_version(version).is_none_or(|v| v < MIN_NATS_VERSION) {
        return Err(format!(
            "nats-server {version} is too old, Depot needs >= {}.{}",
            MIN_NATS_VERSION.0, MIN_NATS_VERSION.1
        ));
    }
    if info["jetstream"].as_bool() != Some(true) {
        return Err(format!("nats-server {version} has JetStream disabled"));
    }
    Ok(())
}

/// Parses the `major.minor` of a version such as `2.15.1` or `2.12.0-beta.3`.
fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_a_valid_token_and_unique() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("t_"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("2.12.0-beta.3"), Some((2, 12)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("2.9.10").unwrap() < MIN_NATS_VERSION);
    }
}
