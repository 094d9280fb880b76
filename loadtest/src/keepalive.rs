//! Kept-alive connections: sequential requests on one connection per kind of response, each
//! timed, to find stalls such as Nagle's algorithm meeting delayed ACKs (a response written in
//! two small pieces without `TCP_NODELAY` waits about 40 ms for the client's ACK).
//!
//! The client speaks HTTP/1.1 on a plain `TcpStream` (with `TCP_NODELAY`, as cargo's client
//! has), one request at a time, reading each response whole (`Content-Length` or chunked)
//! before sending the next; a server that closes the connection is an error.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use reqwest::Url;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::stats::{Summary, summarize};

/// One kind of response: a label and the URL to request again and again.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Shown in the report (`index`, `download`, `api`, `metrics` …).
    pub label: String,
    /// An `http://` URL.
    pub url: Url,
}

impl Probe {
    /// Parses `LABEL=URL`.
    pub fn parse(text: &str) -> anyhow::Result<Probe> {
        let (label, url) = text
            .split_once('=')
            .with_context(|| format!("`{text}`: expected LABEL=URL"))?;
        let url = Url::parse(url).with_context(|| format!("invalid URL `{url}`"))?;
        ensure!(url.scheme() == "http", "`{url}`: only http:// is supported");
        ensure!(url.host_str().is_some(), "`{url}` has no host");
        Ok(Probe {
            label: label.to_owned(),
            url,
        })
    }
}

/// What one probe measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// The probe's label.
    pub label: String,
    /// Requests answered on the one connection.
    pub requests: usize,
    /// Body bytes of the last response.
    pub body_bytes: usize,
    /// Latency of the requests.
    pub latency: Option<Summary>,
    /// Requests that took at least the stall threshold.
    pub stalls: usize,
    /// Why the probe stopped early, if it did.
    pub error: Option<String>,
}

/// Sends `requests` sequential `GET`s for each probe, each probe on its own kept-alive
/// connection, and counts the requests that took at least `stall`.
pub async fn run(
    probes: &[Probe],
    requests: usize,
    stall: Duration,
    token: Option<&str>,
) -> Vec<ProbeResult> {
    let mut results = Vec::with_capacity(probes.len());
    for probe in probes {
        let mut latencies = Vec::with_capacity(requests);
        let mut body_bytes = 0;
        let error = match probe_one(probe, requests, token, &mut latencies, &mut body_bytes).await {
            Ok(()) => None,
            Err(e) => Some(format!("{e:#}")),
        };
        results.push(ProbeResult {
            label: probe.label.clone(),
            requests: latencies.len(),
            body_bytes,
            stalls: latencies.iter().filter(|l| **l >= stall).count(),
            latency: summarize(&latencies),
            error,
        });
    }
    results
}

async fn probe_one(
    probe: &Probe,
    requests: usize,
    token: Option<&str>,
    latencies: &mut Vec<Duration>,
    body_bytes: &mut usize,
) -> anyhow::Result<()> {
    let host = probe.url.host_str().unwrap_or("localhost");
    let port = probe.url.port_or_known_default().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let path = match probe.url.query() {
        Some(query) => format!("{}?{query}", probe.url.path()),
        None => probe.url.path().to_owned(),
    };
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: keepalive\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: {token}\r\n"));
    }
    request.push_str("\r\n");
    for i in 0..requests {
        let started = Instant::now();
        stream.get_mut().write_all(request.as_bytes()).await?;
        let (status, body, close) = read_response(&mut stream)
            .await
            .with_context(|| format!("request {} of {}", i + 1, probe.url))?;
        latencies.push(started.elapsed());
        *body_bytes = body;
        ensure!(
            (200..400).contains(&status),
            "request {} of {} answered {status}",
            i + 1,
            probe.url
        );
        if close && i + 1 < requests {
            bail!("the server closed the connection after request {}", i + 1);
        }
    }
    Ok(())
}

/// Reads one response; returns its status, body length and whether the server closes.
async fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, usize, bool)> {
    let mut line = String::new();
    let read = stream.read_line(&mut line).await?;
    ensure!(read > 0, "the connection was closed");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        ensure!(stream.read_line(&mut line).await? > 0, "headers cut off");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = Some(value.parse::<usize>()?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = 0;
    if chunked {
        loop {
            line.clear();
            ensure!(stream.read_line(&mut line).await? > 0, "chunk cut off");
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            skip(stream, size + 2).await?;
            body += size;
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = length {
        skip(stream, length).await?;
        body = length;
    } else if status != 204 && status != 304 {
        bail!("a response without Content-Length or chunked encoding");
    }
    Ok((status, body, close))
}

async fn skip(stream: &mut BufReader<TcpStream>, mut n: usize) -> anyhow::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    while n > 0 {
        let want = n.min(buffer.len());
        stream.read_exact(&mut buffer[..want]).await?;
        n -= want;
    }
    Ok(())
}

/// The results as a table.
pub fn render(results: &[ProbeResult], stall: Duration) -> String {
    let mut out = format!(
        "{:<10} {:>8} {:>10} {:>8} {:>8} {:>8}  stalls ≥ {} ms\n",
        "kind",
        "requests",
        "body B",
        "p50 ms",
        "p99 ms",
        "max ms",
        stall.as_millis()
    );
    for r in results {
        let (p50, p99, max) = r
            .latency
            .as_ref()
            .map_or((f64::NAN, f64::NAN, f64::NAN), |l| {
                (l.p50_ms, l.p99_ms, l.max_ms)
            });
        out.push_str(&format!(
            "{:<10} {:>8} {:>10} {:>8.2} {:>8.2} {:>8.2}  {}{}\n",
            r.label,
            r.requests,
            r.body_bytes,
            p50,
            p99,
            max,
            r.stalls,
            r.error
                .as_ref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse() {
        let p = Probe::parse("index=http://127.0.0.1:18810/index/3/a/abc").unwrap();
        assert_eq!(p.label, "index");
        assert_eq!(p.url.port(), Some(18810));
        assert!(Probe::parse("http://x/").is_err());
        assert!(Probe::parse("x=https://x/").is_err());
    }

    #[tokio::test]
    async fn reads_length_and_chunked_responses_on_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut n = 0;
            let mut line = String::new();
            loop {
                line.clear();
                if stream.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                if line == "\r\n" {
                    n += 1;
                    let answer: &[u8] = if n % 2 == 1 {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
                    } else {
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                    };
                    stream.get_mut().write_all(answer).await.unwrap();
                }
            }
        });
        let probe = Probe::parse(&format!("t=http://{address}/x")).unwrap();
        let results = run(&[probe], 6, Duration::from_secs(60), None).await;
        assert_eq!(results[0].error, None);
        assert_eq!(results[0].requests, 6);
        assert_eq!(results[0].stalls, 0);
    }
}
