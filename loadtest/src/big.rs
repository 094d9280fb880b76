//! Very large crates: publishes one `.crate` of gigabytes to a `depot serve` started for the
//! purpose, downloads it back, and measures how much the Depot process's memory grows.
//!
//! Nothing of the crate is held in memory on either side of the client: [`generate_crate`]
//! writes it to a file as it is made (a tar of pseudo-random bytes through gzip), the publish
//! body streams from that file, and the download is hashed as it arrives. The server is
//! sampled from `/proc/<pid>/status` ([`RssSampler`]): `VmRSS` every 100 ms, labelled with the
//! phase under way (`upload`, `check`, `download`), and `VmHWM`, the kernel's own peak, which
//! is reset after the idle measurement when the kernel allows it (`clear_refs`).
//!
//! [`run`] does it all and returns a [`BigReport`]; the `bigcrate` binary and the
//! `big_crate` test call it.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};

/// Where the started Depot keeps its blobs.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The local blob directory inside the data directory.
    Local,
    /// An S3 bucket (which must exist), under the prefix `blobs`.
    S3(S3Target),
}

/// An S3 bucket and the credentials to reach it.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// `http://HOST:PORT`.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Region the requests are signed for.
    pub region: String,
}

/// What [`run`] does.
#[derive(Debug, Clone)]
pub struct BigConfig {
    /// The `depot` executable.
    pub depot: PathBuf,
    /// The blob store of the started Depot.
    pub backend: Backend,
    /// Size of the `.crate`'s one large file.
    pub data_size: u64,
    /// Largest `.crate` the started Depot accepts (`DEPOT_MAX_CRATE_SIZE`); the generated one
    /// must not be larger.
    pub max_crate_size: u64,
    /// Where the `.crate` and Depot's data directory go (a fresh directory inside it).
    pub work_dir: PathBuf,
    /// Keep the generated `.crate` and the data directory.
    pub keep: bool,
    /// How often the server's memory is sampled.
    pub sample_every: Duration,
}

/// Sizes, times and memory of one [`run`].
#[derive(Debug, Clone)]
pub struct BigReport {
    /// Backend name: `local` or `s3`.
    pub backend: &'static str,
    /// Size of the large file inside the `.crate`.
    pub data_size: u64,
    /// Size of the `.crate`.
    pub crate_size: u64,
    /// Hex SHA-256 of the `.crate`.
    pub sha256: String,
    /// Time to generate the `.crate`.
    pub generate: Duration,
    /// From the first byte sent to the end of the request body.
    pub upload: Duration,
    /// From the first byte sent to the 200 answer (upload and the extractor's check).
    pub publish: Duration,
    /// The download, redirects included, until the last byte.
    pub download: Duration,
    /// Hex SHA-256 of the downloaded bytes.
    pub download_sha256: String,
    /// Bytes downloaded.
    pub download_size: u64,
    /// Server `VmRSS` after start and a small warm-up publish and download, in bytes.
    pub idle_rss: u64,
    /// Server `VmHWM` at the end, in bytes: the peak since the idle measurement when
    /// [`BigReport::hwm_reset`], else since the process started.
    pub peak_rss: u64,
    /// Whether `VmHWM` was reset after the idle measurement.
    pub hwm_reset: bool,
    /// Highest sampled `VmRSS` per phase, in bytes.
    pub phases: Vec<PhasePeak>,
    /// Where the `.crate` and data directory were left, with `keep`.
    pub kept: Option<PathBuf>,
}

impl BigReport {
    /// Peak minus idle RSS, in bytes (0 if the peak is below the idle value).
    pub fn growth(&self) -> u64 {
        self.peak_rss.saturating_sub(self.idle_rss)
    }

    /// Whether the downloaded bytes are the published ones.
    pub fn verified(&self) -> bool {
        self.sha256 == self.download_sha256 && self.crate_size == self.download_size
    }
}

impl fmt::Display for BigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb_per_sec = |d: Duration| self.crate_size as f64 / 1e6 / d.as_secs_f64().max(1e-9);
        writeln!(f, "backend           {}", self.backend)?;
        writeln!(
            f,
            "data file         {} bytes ({})",
            self.data_size,
            mib(self.data_size)
        )?;
        writeln!(
            f,
            ".crate            {} bytes ({})",
            self.crate_size,
            mib(self.crate_size)
        )?;
        writeln!(f, "sha256            {}", self.sha256)?;
        writeln!(f, "generate          {:.1} s", self.generate.as_secs_f64())?;
        writeln!(
            f,
            "upload (body)     {:.1} s, {:.1} MB/s",
            self.upload.as_secs_f64(),
            mb_per_sec(self.upload)
        )?;
        writeln!(
            f,
            "publish (to 200)  {:.1} s, {:.1} MB/s (upload and the extractor's check)",
            self.publish.as_secs_f64(),
            mb_per_sec(self.publish)
        )?;
        writeln!(
            f,
            "download          {:.1} s, {:.1} MB/s, sha256 {}",
            self.download.as_secs_f64(),
            mb_per_sec(self.download),
            if self.verified() {
                "matches"
            } else {
                "MISMATCH"
            }
        )?;
        writeln!(f, "idle RSS          {}", mib(self.idle_rss))?;
        writeln!(
            f,
            "peak RSS (VmHWM)  {} ({})",
            mib(self.peak_rss),
            if self.hwm_reset {
                "since the idle measurement"
            } else {
                "since the start: VmHWM could not be reset"
            }
        )?;
        writeln!(f, "growth            {}", mib(self.growth()))?;
        for phase in &self.phases {
            writeln!(
                f,
                "  {:<15} highest sampled VmRSS {} ({:+.1} MiB over idle, {} samples)",
                phase.phase,
                mib(phase.max_rss),
                (phase.max_rss as f64 - self.idle_rss as f64) / f64::from(1 << 20),
                phase.samples
            )?;
        }
        if let Some(kept) = &self.kept {
            writeln!(f, "kept in           {}", kept.display())?;
        }
        Ok(())
    }
}

/// `12.3 MiB`.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Publishes a crate of `config.data_size` to a fresh Depot, downloads it, and measures.
pub async fn run(config: &BigConfig) -> anyhow::Result<BigReport> {
    let root = tempfile::Builder::new()
        .prefix("depot-bigcrate-")
        .tempdir_in(&config.work_dir)
        .with_context(|| format!("creating a directory in {}", config.work_dir.display()))?;
    let (name, vers) = ("bigcrate-blob", "1.0.0");

    let started = Instant::now();
    let crate_path = root.path().join(format!("{name}-{vers}.crate"));
    let generated = {
        let (path, data_size) = (crate_path.clone(), config.data_size);
        tokio::task::spawn_blocking(move || generate_crate(&path, name, vers, data_size, 1))
            .await
            .context("the generator panicked")??
    };
    let generate = started.elapsed();
    ensure!(
        generated.crate_size <= config.max_crate_size,
        "the .crate is {} bytes, more than the {} bytes allowed: use a smaller data size",
        generated.crate_size,
        config.max_crate_size
    );
    let warmup_path = root.path().join("warmup.crate");
    let warmup = generate_crate(&warmup_path, "bigcrate-warmup", "0.1.0", 1 << 20, 2)?;

    let data_dir = root.path().join("data");
    std::fs::create_dir(&data_dir)?;
    let depot = DepotProcess::start(
        &config.depot,
        &data_dir,
        config.max_crate_size,
        &config.backend,
    )?;
    let client = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    depot.wait_for_token(&client).await?;

    let sampler = RssSampler::start(depot.pid(), config.sample_every);
    let result = async {
        publish(
            &client,
            &depot,
            &warmup_path,
            "bigcrate-warmup",
            "0.1.0",
            None,
        )
        .await
        .context("the warm-up publish")?;
        let (hash, _) = download(&client, &depot.url, "bigcrate-warmup", "0.1.0")
            .await
            .context("the warm-up download")?;
        ensure!(hash == warmup.sha256, "the warm-up download differs");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = read_status(depot.pid())?;
        let hwm_reset = reset_hwm(depot.pid()).is_ok();

        sampler.set_phase("upload");
        let timing = publish(&client, &depot, &crate_path, name, vers, Some(&sampler)).await?;
        sampler.set_phase("download");
        let started = Instant::now();
        let (download_sha256, download_size) = download(&client, &depot.url, name, vers).await?;
        let download = started.elapsed();
        sampler.set_phase("after");
        let end = read_status(depot.pid())?;
        Ok((
            idle,
            hwm_reset,
            timing,
            download,
            download_sha256,
            download_size,
            end,
        ))
    }
    .await;
    let phases = sampler.stop();
    let (idle, hwm_reset, timing, download, download_sha256, download_size, end) =
        result.with_context(|| format!("--- depot log ---\n{}", depot.log()))?;
    drop(depot);

    let kept = config.keep.then(|| root.keep());
    Ok(BigReport {
        backend: match config.backend {
            Backend::Local => "local",
            Backend::S3(_) => "s3",
        },
        data_size: config.data_size,
        crate_size: generated.crate_size,
        sha256: generated.sha256,
        generate,
        upload: timing.upload,
        publish: timing.total,
        download,
        download_sha256,
        download_size,
        idle_rss: idle.rss,
        peak_rss: end.hwm,
        hwm_reset,
        phases: phases
            .into_iter()
            .filter(|p| p.phase != "idle" && p.phase != "after")
            .collect(),
        kept,
    })
}

// --- the crate ---------------------------------------------------------------------------

/// A `.crate` written by [`generate_crate`].
#[derive(Debug, Clone)]
pub struct GeneratedCrate {
    /// Its size in bytes.
    pub crate_size: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// Writes `path`: a gzip (level 1) of a tar with `{name}-{vers}/Cargo.toml`,
/// `{name}-{vers}/src/lib.rs` and `{name}-{vers}/data/blob.bin`, `data_size` pseudo-random
/// (incompressible) bytes from `seed`. Memory use does not depend on `data_size`.
pub fn generate_crate(
    path: &Path,
    name: &str,
    vers: &str,
    data_size: u64,
    seed: u64,
) -> anyhow::Result<GeneratedCrate> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gzip = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    let root = format!("{name}-{vers}");
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"{vers}\"\nedition = \"2021\"\n\
         description = \"A very large crate of random bytes, for testing.\"\nlicense = \"MIT\"\n"
    );
    let lib = "//! A crate that carries a large data file.\n";
    append(
        &mut tar,
        &format!("{root}/Cargo.toml"),
        manifest.len() as u64,
        manifest.as_bytes(),
    )?;
    append(
        &mut tar,
        &format!("{root}/src/lib.rs"),
        lib.len() as u64,
        lib.as_bytes(),
    )?;
    append(
        &mut tar,
        &format!("{root}/data/blob.bin"),
        data_size,
        Noise::new(seed, data_size),
    )?;
    let mut out = tar
        .into_inner()
        .context("finishing the tar")?
        .finish()
        .context("finishing the gzip")?;
    out.flush()?;
    let (crate_size, sha256) = (out.written, hex::encode(out.hasher.finalize()));
    out.inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(GeneratedCrate { crate_size, sha256 })
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
        .with_context(|| format!("writing {path}"))
}

/// `len` pseudo-random bytes (xorshift64*), incompressible for gzip.
#[derive(Debug)]
struct Noise {
    state: u64,
    left: u64,
}

impl Noise {
    fn new(seed: u64, len: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
        }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.left).map_or(buf.len(), |left| left.min(buf.len()));
        for chunk in buf[..n].chunks_mut(8) {
            let mut x = self.state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.state = x;
            let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts and hashes what goes through.
#[derive(Debug)]
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// --- the registry protocol ---------------------------------------------------------------

/// How long a publish took.
#[derive(Debug, Clone, Copy)]
struct PublishTiming {
    /// Until the last byte of the body was handed to the connection.
    upload: Duration,
    /// Until the answer.
    total: Duration,
}

/// The metadata JSON as cargo sends it.
fn metadata(name: &str, vers: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": name,
        "vers": vers,
        "deps": [],
        "features": {},
        "authors": [],
        "description": "A very large crate of random bytes, for testing.",
        "documentation": null,
        "homepage": null,
        "readme": null,
        "readme_file": null,
        "keywords": [],
        "categories": [],
        "license": "MIT",
        "license_file": null,
        "repository": null,
        "badges": {},
        "links": null,
        "rust_version": null,
    }))
    .expect("a JSON value serializes")
}

/// Publishes the `.crate` at `path`, its bytes streamed from the file; moves `sampler` to
/// the `check` phase when the body has been sent.
async fn publish(
    client: &reqwest::Client,
    depot: &DepotProcess,
    path: &Path,
    name: &str,
    vers: &str,
    sampler: Option<&RssSampler>,
) -> anyhow::Result<PublishTiming> {
    let json = metadata(name, vers);
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let crate_len = file.metadata().await?.len();
    let mut head = Vec::with_capacity(json.len() + 8);
    head.extend_from_slice(&u32::try_from(json.len())?.to_le_bytes());
    head.extend_from_slice(&json);
    head.extend_from_slice(&u32::try_from(crate_len)?.to_le_bytes());
    let content_length = head.len() as u64 + crate_len;

    let started = Instant::now();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<Instant>();
    let mut sent_tx = Some(sent_tx);
    let body = futures::stream::once(async move { Ok(bytes::Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10))
        .chain(futures::stream::poll_fn(move |_| {
            if let Some(tx) = sent_tx.take() {
                let _ = tx.send(Instant::now());
            }
            std::task::Poll::Ready(None::<io::Result<bytes::Bytes>>)
        }));
    let request = client
        .put(format!("{}/api/v1/crates/new", depot.url))
        .header(reqwest::header::AUTHORIZATION, &depot.token)
        .header(reqwest::header::CONTENT_LENGTH, content_length)
        .body(reqwest::Body::wrap_stream(body))
        .send();
    tokio::pin!(request);
    let mut sent_rx = sent_rx;
    let mut upload = None;
    let answer = loop {
        tokio::select! {
            answer = &mut request => break answer,
            sent = &mut sent_rx, if upload.is_none() => {
                let at = sent.unwrap_or_else(|_| Instant::now());
                upload = Some(at - started);
                if let Some(sampler) = sampler {
                    sampler.set_phase("check");
                }
            }
        }
    };
    let answer = answer.with_context(|| format!("publishing {name} {vers}"))?;
    let total = started.elapsed();
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    ensure!(
        status == reqwest::StatusCode::OK,
        "publishing {name} {vers} answered {status}: {}",
        text.trim()
    );
    if upload.is_none()
        && let Ok(sent) = sent_rx.try_recv()
    {
        upload = Some(sent - started);
    }
    Ok(PublishTiming {
        upload: upload.unwrap_or(total),
        total,
    })
}

/// Downloads a version (following redirects) and returns the hex SHA-256 and size of its
/// bytes, hashed as they arrive.
async fn download(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    vers: &str,
) -> anyhow::Result<(String, u64)> {
    let answer = client
        .get(format!("{url}/api/v1/crates/{name}/{vers}/download"))
        .send()
        .await
        .with_context(|| format!("downloading {name} {vers}"))?;
    let status = answer.status();
    if !status.is_success() {
        let text = answer.text().await.unwrap_or_default();
        bail!(
            "downloading {name} {vers} answered {status}: {}",
            text.trim()
        );
    }
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut chunks = answer.bytes_stream();
    while let Some(chunk) = chunks
        .try_next()
        .await
        .with_context(|| format!("downloading {name} {vers}"))?
    {
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

// --- the server --------------------------------------------------------------------------

/// A `depot serve` started by [`DepotProcess::start`], killed on drop.
#[derive(Debug)]
pub struct DepotProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token written on the first start.
    pub token: String,
    log: Arc<Mutex<String>>,
}

impl Drop for DepotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DepotProcess {
    /// Starts `depot serve` on a free loopback port with its data in `data_dir` and its blobs
    /// in `backend`, accepting `.crate`s up to `max_crate_size`, and waits until it listens.
    /// The process gets none of this process's `DEPOT_*` and `AWS_*` variables.
    pub fn start(
        depot: &Path,
        data_dir: &Path,
        max_crate_size: u64,
        backend: &Backend,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(depot);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("DEPOT_") || key.starts_with("AWS_") {
                command.env_remove(&*key);
            }
        }
        command
            .arg("serve")
            .env("DEPOT_DATA_DIR", data_dir)
            .env("DEPOT_LISTEN", "127.0.0.1:0")
            .env("DEPOT_UPSTREAM_INDEX", "off")
            .env("DEPOT_METRICS_LISTEN", "off")
            .env("DEPOT_MAX_CRATE_SIZE", max_crate_size.to_string())
            .env("DEPOT_PUBLISH_WAIT_SECS", "1200")
            .env("DEPOT_EXTRACTOR_CHECK_TIMEOUT_SECS", "1200")
            .env("RUST_LOG", "info");
        if let Backend::S3(s3) = backend {
            command
                .env("DEPOT_BLOB_URL", format!("s3://{}/blobs", s3.bucket))
                .env("AWS_ENDPOINT_URL", &s3.endpoint)
                .env("AWS_REGION", &s3.region)
                .env("AWS_ACCESS_KEY_ID", &s3.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} serve", depot.display()))?;

        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    push_log(&log, &line);
                }
            });
        }
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("depot listening on ").nth(1) {
                        let url = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(url.to_owned());
                    }
                    push_log(&log, &line);
                }
            });
        }
        let mut process = Self {
            child,
            url: String::new(),
            token: String::new(),
            log,
        };
        process.url = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow::anyhow!("depot serve did not start:\n{}", process.log()))?;
        process.token = std::fs::read_to_string(data_dir.join("admin-token"))
            .with_context(|| format!("no admin token file\n{}", process.log()))?
            .trim()
            .to_owned();
        Ok(process)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server printed so far (the last 64 KiB).
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the first-start token is usable (the projector applied it).
    pub async fn wait_for_token(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = client
                .get(format!("{}/api/v1/me", self.url))
                .header(reqwest::header::AUTHORIZATION, &self.token)
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the admin token never worked:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Appends a line to a log that keeps its last 64 KiB.
fn push_log(log: &Mutex<String>, line: &str) {
    const KEEP: usize = 64 << 10;
    if let Ok(mut log) = log.lock() {
        log.push_str(line);
        log.push('\n');
        if log.len() > 2 * KEEP {
            let mut cut = log.len() - KEEP;
            while !log.is_char_boundary(cut) {
                cut += 1;
            }
            log.drain(..cut);
        }
    }
}

// --- memory ------------------------------------------------------------------------------

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemStatus {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: the peak of `VmRSS`.
    pub hwm: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/<pid>/status`.
pub fn read_status(pid: u32) -> anyhow::Result<MemStatus> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: u64 = line
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("{name} {line}"))?;
        Ok(kib * 1024)
    };
    Ok(MemStatus {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// Resets a process's `VmHWM` to its current `VmRSS` (`echo 5 > /proc/<pid>/clear_refs`).
pub fn reset_hwm(pid: u32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// The highest `VmRSS` sampled during one phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhasePeak {
    /// The phase's label.
    pub phase: String,
    /// Highest sampled `VmRSS`, in bytes.
    pub max_rss: u64,
    /// Samples taken.
    pub samples: u64,
}

/// Samples a process's `VmRSS` on a thread of its own, attributing each sample to the phase
/// set last ([`RssSampler::set_phase`]; the first is `idle`).
#[derive(Debug)]
pub struct RssSampler {
    phases: Arc<Mutex<Vec<PhasePeak>>>,
    pid: u32,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> Self {
        let phases = Arc::new(Mutex::new(vec![PhasePeak {
            phase: "idle".to_owned(),
            max_rss: 0,
            samples: 0,
        }]));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (phases, stop) = (Arc::clone(&phases), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sample(pid, &phases);
                    std::thread::sleep(every);
                }
            })
        };
        Self {
            phases,
            pid,
            stop,
            thread: Some(thread),
        }
    }

    /// Samples once more, then attributes the next samples to `phase`.
    pub fn set_phase(&self, phase: &str) {
        sample(self.pid, &self.phases);
        if let Ok(mut phases) = self.phases.lock() {
            phases.push(PhasePeak {
                phase: phase.to_owned(),
                max_rss: 0,
                samples: 0,
            });
        }
    }

    /// Stops sampling and returns every phase's peak, in order.
    pub fn stop(mut self) -> Vec<PhasePeak> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.phases.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn sample(pid: u32, phases: &Mutex<Vec<PhasePeak>>) {
    if let Ok(status) = read_status(pid)
        && let Ok(mut phases) = phases.lock()
        && let Some(current) = phases.last_mut()
    {
        current.max_rss = current.max_rss.max(status.rss);
        current.samples += 1;
    }
}

// --- S3 buckets --------------------------------------------------------------------------

/// Creates the bucket `target.bucket` (a `CreateBucket` presigned by object_store's signer).
pub async fn create_bucket(target: &S3Target) -> anyhow::Result<()> {
    bucket_request(&s3_store(target)?, object_store::signer::Method::PUT).await
}

/// Deletes every object of the bucket, then the bucket.
pub async fn delete_bucket(target: &S3Target) -> anyhow::Result<()> {
    use object_store::ObjectStore as _;
    let store = s3_store(target)?;
    let locations = store.list(None).map_ok(|meta| meta.location).boxed();
    store
        .delete_stream(locations)
        .try_collect::<Vec<_>>()
        .await
        .context("deleting the objects")?;
    bucket_request(&store, object_store::signer::Method::DELETE).await
}

fn s3_store(target: &S3Target) -> anyhow::Result<object_store::aws::AmazonS3> {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&target.endpoint)
        .with_bucket_name(&target.bucket)
        .with_access_key_id(&target.access_key)
        .with_secret_access_key(&target.secret_key)
        .with_region(&target.region)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .context("configuring the S3 client")
}

async fn bucket_request(
    store: &object_store::aws::AmazonS3,
    method: object_store::signer::Method,
) -> anyhow::Result<()> {
    use object_store::signer::Signer as _;
    let url = store
        .signed_url(
            method.clone(),
            &object_store::path::Path::default(),
            Duration::from_secs(300),
        )
        .await
        .context("signing the bucket request")?;
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes())?;
    let answer = reqwest::Client::new()
        .request(method.clone(), url.as_str())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("{method} {}", url.path()))?;
    let status = answer.status();
    if !status.is_success() {
        let text = answer.text().await.unwrap_or_default();
        bail!("{method} {} answered {status}: {}", url.path(), text.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_crate_unpacks_to_the_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.crate");
        let generated = generate_crate(&path, "x", "1.0.0", 100_003, 7).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, generated.crate_size);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), generated.sha256);
        // Incompressible: gzip adds a little instead of saving.
        assert!(generated.crate_size > 100_003, "{}", generated.crate_size);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let entries: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-1.0.0/Cargo.toml",
                "x-1.0.0/src/lib.rs",
                "x-1.0.0/data/blob.bin"
            ]
        );
        assert_eq!(entries[2].1, 100_003);
    }

    #[test]
    fn noise_is_deterministic_and_exact() {
        let mut a = Vec::new();
        Noise::new(3, 1001).read_to_end(&mut a).unwrap();
        let mut b = Vec::new();
        Noise::new(3, 1001).read_to_end(&mut b).unwrap();
        assert_eq!(a.len(), 1001);
        assert_eq!(a, b);
    }

    #[test]
    fn status_of_this_process() {
        let status = read_status(std::process::id()).unwrap();
        assert!(status.rss > 0 && status.hwm >= status.rss);
    }
}
