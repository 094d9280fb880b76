//! `--compare-downloads`: downloads the same `.crate` files from the registry under test and
//! from other servers that hold the same bytes (an in-memory server, nginx …), in interleaved
//! rounds, and reports each server's throughput side by side.
//!
//! A first, untimed round downloads every file from the registry (hashing it) and from each
//! peer, and checks that the peers serve the same bytes. Then every timed round downloads every
//! file from each server in turn with C concurrent clients (the order of the servers rotates
//! from round to round), checking only lengths, so the client's cost is the same for all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::client::download_url;
use crate::stats::{Summary, summarize};

/// A server to download from: a label and a `dl`-style URL template (`{crate}`, `{version}`,
/// `{prefix}`, `{lowerprefix}`, `{sha256-checksum}`; without markers,
/// `{template}/{crate}/{version}/download`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// Shown in the report.
    pub label: String,
    /// The URL template.
    pub template: String,
}

impl Peer {
    /// Parses `LABEL=TEMPLATE` or a bare template (labelled by its host and port).
    pub fn parse(text: &str) -> anyhow::Result<Peer> {
        let (label, template) = match text.split_once('=') {
            Some((label, template)) if !label.contains('/') && !label.is_empty() => {
                (label.to_owned(), template.to_owned())
            }
            _ => {
                let url = reqwest::Url::parse(&text.replace(['{', '}'], ""))
                    .with_context(|| format!("invalid comparison URL `{text}`"))?;
                let host = url.host_str().unwrap_or("peer").to_owned();
                let label = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                };
                (label, text.to_owned())
            }
        };
        let probe = download_url(&template, "probe", "1.0.0", &"0".repeat(64));
        let url = reqwest::Url::parse(&probe)
            .with_context(|| format!("invalid comparison URL template `{template}`"))?;
        ensure!(
            matches!(url.scheme(), "http" | "https"),
            "comparison URL `{template}` is not http(s)"
        );
        Ok(Peer { label, template })
    }
}

/// One file to download.
#[derive(Debug, Clone)]
pub struct Item {
    /// Crate name.
    pub name: String,
    /// Version.
    pub vers: String,
}

/// One timed round of one server.
#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    /// Which round (1-based).
    pub round: usize,
    /// Wall time of the round.
    pub wall_secs: f64,
    /// Bytes received.
    pub bytes: u64,
    /// MiB/s over the round.
    pub mib_per_sec: f64,
    /// Downloads per second over the round.
    pub downloads_per_sec: f64,
    /// Failed downloads.
    pub errors: u64,
}

/// One server's results.
#[derive(Debug, Clone, Serialize)]
pub struct ServerResult {
    /// Its label.
    pub label: String,
    /// Each timed round.
    pub rounds: Vec<RoundResult>,
    /// Latency of single downloads over all rounds.
    pub latency: Option<Summary>,
    /// The median round's MiB/s.
    pub median_mib_per_sec: f64,
    /// The registry's median MiB/s divided by this server's (1.0 for the registry itself).
    pub registry_ratio: f64,
}

/// The comparison's report.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// Files per round.
    pub files: usize,
    /// Bytes per round.
    pub bytes_per_round: u64,
    /// Concurrent clients.
    pub concurrency: usize,
    /// The registry first, then the peers.
    pub servers: Vec<ServerResult>,
    /// Failed downloads in all rounds, the checking round included.
    pub errors: u64,
}

impl CompareReport {
    /// The report as a table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "downloads compared: {} files, {:.1} MiB per round, {} concurrent clients\n",
            self.files,
            self.bytes_per_round as f64 / f64::from(1 << 20),
            self.concurrency
        );
        out.push_str(&format!(
            "{:<14} {:>10} {:>10} {:>9} {:>9} {:>8}  rounds (MiB/s)\n",
            "server", "MiB/s", "files/s", "p50 ms", "p99 ms", "reg/x"
        ));
        for server in &self.servers {
            let median_files = {
                let mut rates: Vec<f64> =
                    server.rounds.iter().map(|r| r.downloads_per_sec).collect();
                median(&mut rates)
            };
            let rounds: Vec<String> = server
                .rounds
                .iter()
                .map(|r| format!("{:.0}", r.mib_per_sec))
                .collect();
            out.push_str(&format!(
                "{:<14} {:>10.1} {:>10.1} {:>9.2} {:>9.2} {:>8.2}  {}\n",
                server.label,
                server.median_mib_per_sec,
                median_files,
                server.latency.as_ref().map_or(f64::NAN, |l| l.p50_ms),
                server.latency.as_ref().map_or(f64::NAN, |l| l.p99_ms),
                server.registry_ratio,
                rounds.join(" ")
            ));
        }
        out.push_str(&format!("errors: {}\n", self.errors));
        out
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

/// What was expected of a file: its length and sha256.
#[derive(Debug, Clone)]
struct Expected {
    len: u64,
    sha256: String,
}

/// Downloads `url`; returns its length and, if asked, its sha256.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    hash: bool,
) -> anyhow::Result<(u64, Option<String>)> {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.header(reqwest::header::AUTHORIZATION, token);
    }
    let mut response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}");
    }
    let announced = response.content_length();
    let mut hasher = hash.then(Sha256::new);
    let mut len = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("GET {url}"))?
    {
        len += chunk.len() as u64;
        if let Some(hasher) = &mut hasher {
            hasher.update(&chunk);
        }
    }
    if let Some(announced) = announced {
        ensure!(
            announced == len,
            "GET {url}: Content-Length {announced}, body {len} bytes"
        );
    }
    Ok((len, hasher.map(|h| hex::encode(h.finalize()))))
}

/// Runs the comparison: `registry` is the registry under test (its `dl` template), `peers` the
/// others. `token` is sent to the registry only.
pub async fn run(
    registry: &Peer,
    token: Option<&str>,
    peers: &[Peer],
    items: &[Item],
    rounds: usize,
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<CompareReport> {
    ensure!(!items.is_empty(), "nothing to download");
    let progress = crate::progress::Progress::new(false, !quiet);
    let concurrency = concurrency.max(1);
    let servers: Vec<Peer> = std::iter::once(registry.clone())
        .chain(peers.iter().cloned())
        .collect();
    let clients: Vec<reqwest::Client> = servers
        .iter()
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(concurrency)
                .timeout(Duration::from_secs(300))
                .build()
                .context("cannot create the HTTP client")
        })
        .collect::<anyhow::Result<_>>()?;

    // The checking round: the registry's bytes, then every peer must serve the same (each
    // distinct file once).
    let mut expected = Vec::with_capacity(items.len());
    let mut seen: std::collections::HashMap<(&str, &str), Expected> =
        std::collections::HashMap::new();
    let mut distinct = Vec::new();
    for item in items {
        let key = (item.name.as_str(), item.vers.as_str());
        if let Some(known) = seen.get(&key) {
            expected.push(known.clone());
            continue;
        }
        let url = download_url(&registry.template, &item.name, &item.vers, "");
        let (len, sha) = fetch(&clients[0], &url, token, true).await?;
        let e = Expected {
            len,
            sha256: sha.unwrap_or_default(),
        };
        seen.insert(key, e.clone());
        distinct.push((item, e.clone()));
        expected.push(e);
    }
    for (peer, client) in servers.iter().zip(&clients).skip(1) {
        for (item, expected) in distinct.iter().map(|(i, e)| (*i, e)) {
            let url = download_url(&peer.template, &item.name, &item.vers, &expected.sha256);
            let (_, sha) = fetch(client, &url, None, true).await.with_context(|| {
                format!("{} does not serve {} {}", peer.label, item.name, item.vers)
            })?;
            ensure!(
                sha.as_deref() == Some(expected.sha256.as_str()),
                "{} serves other bytes for {} {} than the registry",
                peer.label,
                item.name,
                item.vers
            );
        }
    }
    let bytes_per_round: u64 = expected.iter().map(|e| e.len).sum();
    let urls: Vec<Vec<String>> = servers
        .iter()
        .map(|server| {
            items
                .iter()
                .zip(&expected)
                .map(|(item, e)| download_url(&server.template, &item.name, &item.vers, &e.sha256))
                .collect()
        })
        .collect();
    let expected = Arc::new(expected);

    let mut results: Vec<(Vec<RoundResult>, Vec<Duration>)> =
        servers.iter().map(|_| (Vec::new(), Vec::new())).collect();
    let mut errors = 0u64;
    for round in 1..=rounds {
        for k in 0..servers.len() {
            let s = (k + round - 1) % servers.len();
            let server_token = if s == 0 { token } else { None };
            let (round_result, latencies) = timed_round(
                &clients[s],
                &urls[s],
                &expected,
                server_token,
                concurrency,
                round,
            )
            .await;
            errors += round_result.errors;
            if !quiet {
                progress.note(&format!(
                    "round {round} {:<12} {:>8.1} MiB/s {:>8.1} files/s ({} errors)",
                    servers[s].label,
                    round_result.mib_per_sec,
                    round_result.downloads_per_sec,
                    round_result.errors
                ));
            }
            results[s].0.push(round_result);
            results[s].1.extend(latencies);
        }
    }
    let medians: Vec<f64> = results
        .iter()
        .map(|(rounds, _)| {
            let mut rates: Vec<f64> = rounds.iter().map(|r| r.mib_per_sec).collect();
            median(&mut rates)
        })
        .collect();
    let servers = servers
        .iter()
        .zip(results)
        .zip(&medians)
        .map(|((server, (rounds, latencies)), median)| ServerResult {
            label: server.label.clone(),
            rounds,
            latency: summarize(&latencies),
            median_mib_per_sec: *median,
            registry_ratio: medians[0] / median,
        })
        .collect();
    Ok(CompareReport {
        files: items.len(),
        bytes_per_round,
        concurrency,
        servers,
        errors,
    })
}

/// Downloads every URL once with `concurrency` workers taking the next URL in turn.
async fn timed_round(
    client: &reqwest::Client,
    urls: &[String],
    expected: &Arc<Vec<Expected>>,
    token: Option<&str>,
    concurrency: usize,
    round: usize,
) -> (RoundResult, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Arc<Vec<String>> = Arc::new(urls.to_vec());
    let token: Option<Arc<str>> = token.map(Arc::from);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, urls, expected, next, token) = (
            client.clone(),
            Arc::clone(&urls),
            Arc::clone(expected),
            Arc::clone(&next),
            token.clone(),
        );
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let (mut bytes, mut errors) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(url) = urls.get(i) else { break };
                let one = Instant::now();
                match fetch(&client, url, token.as_deref(), false).await {
                    Ok((len, _)) if len == expected[i].len => {
                        latencies.push(one.elapsed());
                        bytes += len;
                    }
                    _ => errors += 1,
                }
            }
            (latencies, bytes, errors)
        });
    }
    let (mut latencies, mut bytes, mut errors) = (Vec::new(), 0u64, 0u64);
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((l, b, e)) => {
                latencies.extend(l);
                bytes += b;
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let wall = started.elapsed().as_secs_f64();
    (
        RoundResult {
            round,
            wall_secs: wall,
            bytes,
            mib_per_sec: bytes as f64 / f64::from(1 << 20) / wall,
            downloads_per_sec: urls.len() as f64 / wall,
            errors,
        },
        latencies,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let p = Peer::parse("mem=http://127.0.0.1:1/{crate}-{version}.crate").unwrap();
        assert_eq!(p.label, "mem");
        assert_eq!(p.template, "http://127.0.0.1:1/{crate}-{version}.crate");
        let p = Peer::parse("http://127.0.0.1:18822/dl/{crate}-{version}.crate").unwrap();
        assert_eq!(p.label, "127.0.0.1:18822");
        assert!(Peer::parse("ftp://x/{crate}").is_err());
        assert!(Peer::parse("not a url").is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
