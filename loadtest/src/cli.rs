//! Command-line options ([`Args`]) and the validated run configuration ([`Config`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use rand::Rng as _;
use reqwest::Url;

use crate::generate::GenParams;

/// Load test for a Cargo registry speaking the sparse index and cargo's web API (Depot or any
/// other): publishes a generated dependency graph of crates, fetches index files (plain,
/// conditional and one hot file), downloads every version, yanks and unyanks a sample, and
/// checks the measured latencies and errors against SLO thresholds.
///
/// Exit status: 0 when every SLO holds and nothing failed, 1 when an SLO is violated or an
/// integrity check failed, 2 when the test could not run at all.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version)]
pub struct Args {
    /// Sparse index URL of the registry under test, with or without `sparse+`
    /// (e.g. `sparse+http://127.0.0.1:8000/index/`).
    #[arg(long, env = "LOADTEST_INDEX")]
    pub index: String,

    /// API token used for publish, yank and unyank (and for every request when the registry
    /// says `auth-required`).
    #[arg(long, env = "LOADTEST_TOKEN", hide_env_values = true)]
    pub token: String,

    /// How many crates to generate.
    #[arg(long, default_value_t = 120)]
    pub crates: usize,

    /// Concurrent publishers, index fetchers and downloaders.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// Prefix of every generated crate name (ASCII letter first, then letters, digits, `-`,
    /// `_`; at most 24 characters). Default: random, so reruns never collide.
    #[arg(long)]
    pub prefix: Option<String>,

    /// Seed of the generator: the same seed and prefix give byte-identical crates.
    /// Default: random (printed in the report).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Versions published per crate. Default: a distribution (65% one version, 20% two, 10%
    /// three, 5% four to six).
    #[arg(long)]
    pub versions_per_crate: Option<u32>,

    /// Largest `.crate` generated (e.g. `20MiB`, `512KiB`). 70% of crates are under 16 KiB,
    /// 25% under 1 MiB and 5% between 1 MiB and this size. The registry must accept it
    /// (Depot: `DEPOT_MAX_CRATE_SIZE`, default 10MiB).
    #[arg(long, default_value = "10MiB", value_parser = parse_size)]
    pub max_size: u64,

    /// Fraction of crates whose bulk is random (incompressible) bytes in a data file.
    #[arg(long, default_value_t = 0.3)]
    pub incompressible_fraction: f64,

    /// Fraction of crates that also depend on `serde` from crates.io (set 0 for a registry
    /// that allows no other registry).
    #[arg(long, default_value_t = 0.1)]
    pub crates_io_dep_fraction: f64,

    /// Requests in the hot phase, all for one index file.
    #[arg(long, default_value_t = 2000)]
    pub hot_requests: usize,

    /// Fraction of the published versions to yank (then half of those are unyanked).
    #[arg(long, default_value_t = 0.05)]
    pub yank_fraction: f64,

    /// How long to wait for a published (or yanked) version to show in the index.
    #[arg(long, default_value_t = 60)]
    pub visible_timeout_secs: u64,

    /// Time limit of one HTTP request (a publish of a large crate included).
    #[arg(long, default_value_t = 120)]
    pub request_timeout_secs: u64,

    /// Send a publish that got no answer, a 5xx or a 429 again (the same bytes), up to this
    /// many times, 0.5 s apart. For runs against a registry under faults; a registry must
    /// answer the repeat of an acknowledged publish as a success (Depot does). Each retried
    /// attempt is counted in the report (`publish_retries`). Default: no retries.
    #[arg(long, default_value_t = 0)]
    pub publish_retries: u32,

    /// Prometheus metrics of the registry (e.g. `http://127.0.0.1:9898/metrics`): scraped
    /// before and after the run to report the deltas of its counters.
    #[arg(long)]
    pub metrics_url: Option<String>,

    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// No progress bars and no progress notes (the report is still printed).
    #[arg(long, short)]
    pub quiet: bool,

    /// Only write the generated `.crate` files into this directory, as `{name}-{version}.crate`
    /// (the same bytes a run with the same options publishes), and exit.
    #[arg(long)]
    pub write_crates: Option<PathBuf>,

    /// Instead of the load test: download every version of the generated crates (already
    /// published by a run with the same options) from the registry and from this server too,
    /// in interleaved rounds, and compare. `LABEL=TEMPLATE` or `TEMPLATE`, a `dl`-style URL
    /// template (e.g. `nginx=http://127.0.0.1:18822/{crate}-{version}.crate`). Repeatable.
    #[arg(long)]
    pub compare_downloads: Vec<String>,

    /// Timed rounds of `--compare-downloads` (each downloads every file from every server).
    #[arg(long, default_value_t = 3)]
    pub compare_rounds: usize,

    /// With `--compare-downloads`: download the list this many times in each round (longer
    /// rounds for a small corpus).
    #[arg(long, default_value_t = 1)]
    pub compare_passes: usize,

    /// With `--compare-downloads`: download only this version (`NAME@VERSION`, repeatable)
    /// instead of the generated crates.
    #[arg(long)]
    pub compare_crate: Vec<String>,

    /// SLO: p99 of publish start → version visible in the index, small crates (< 1 MiB), ms.
    #[arg(long, default_value_t = 100.0)]
    pub slo_publish_visible_p99_ms: f64,

    /// SLO: p99 of publish start → visible for large crates (≥ 1 MiB), ms (not checked by
    /// default).
    #[arg(long)]
    pub slo_publish_large_visible_p99_ms: Option<f64>,

    /// SLO: p99 of index fetches (plain, conditional and hot), ms.
    #[arg(long, default_value_t = 50.0)]
    pub slo_index_p99_ms: f64,

    /// SLO: p99 of downloads, ms (not checked by default).
    #[arg(long)]
    pub slo_download_p99_ms: Option<f64>,

    /// SLO: p99 of yank and unyank requests, ms (not checked by default).
    #[arg(long)]
    pub slo_yank_p99_ms: Option<f64>,

    /// SLO: largest acceptable fraction of failed operations (0 = any error fails the run).
    #[arg(long, default_value_t = 0.0)]
    pub slo_error_rate: f64,
}

/// SLO thresholds; `None` means "not checked".
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// p99 publish → visible of small crates, ms.
    pub publish_visible_p99_ms: f64,
    /// p99 publish → visible of large crates, ms.
    pub publish_large_visible_p99_ms: Option<f64>,
    /// p99 of every index fetch phase, ms.
    pub index_p99_ms: f64,
    /// p99 of downloads, ms.
    pub download_p99_ms: Option<f64>,
    /// p99 of yank and unyank, ms.
    pub yank_p99_ms: Option<f64>,
    /// Largest acceptable error rate.
    pub error_rate: f64,
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The index base URL cargo fetches from (no `sparse+`, ends in `/`).
    pub index_url: Url,
    /// The registry's sparse index URL as written into manifests (`sparse+…/`).
    pub registry_index: String,
    /// API token.
    pub token: String,
    /// Concurrency of every phase.
    pub concurrency: usize,
    /// Generator parameters.
    pub gen_params: GenParams,
    /// Requests of the hot phase.
    pub hot_requests: usize,
    /// Fraction of versions to yank.
    pub yank_fraction: f64,
    /// Visibility timeout.
    pub visible_timeout: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Retries of a publish that failed transiently.
    pub publish_retries: u32,
    /// Metrics endpoint, if any.
    pub metrics_url: Option<Url>,
    /// Whether to draw progress bars.
    pub progress: bool,
    /// Whether to print progress notes on stderr (when there are no bars).
    pub notes: bool,
    /// SLO thresholds.
    pub slo: Slo,
    /// `--write-crates`.
    pub write_crates: Option<PathBuf>,
    /// `--compare-downloads`, parsed.
    pub compare: Vec<crate::compare::Peer>,
    /// `--compare-rounds`.
    pub compare_rounds: usize,
    /// `--compare-passes`.
    pub compare_passes: usize,
    /// `--compare-crate`, as (name, version).
    pub compare_crates: Vec<(String, String)>,
}

impl Args {
    /// Validates the options and fills in the random defaults (seed, prefix).
    pub fn into_config(self) -> anyhow::Result<Config> {
        let (index_url, registry_index) = normalize_index_url(&self.index)?;
        if self.token.is_empty()
            || !self
                .token
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            bail!("--token must be non-empty printable ASCII");
        }
        if self.crates == 0 {
            bail!("--crates must be at least 1");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.max_size < 4096 {
            bail!("--max-size must be at least 4KiB");
        }
        for (name, value) in [
            ("--incompressible-fraction", self.incompressible_fraction),
            ("--crates-io-dep-fraction", self.crates_io_dep_fraction),
            ("--yank-fraction", self.yank_fraction),
            ("--slo-error-rate", self.slo_error_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                bail!("{name} must be between 0 and 1, got {value}");
            }
        }
        if self.versions_per_crate == Some(0) {
            bail!("--versions-per-crate must be at least 1");
        }
        let prefix = match self.prefix {
            Some(prefix) => {
                validate_prefix(&prefix)?;
                prefix
            }
            None => random_prefix(),
        };
        let metrics_url = self
            .metrics_url
            .as_deref()
            .map(|url| Url::parse(url).with_context(|| format!("invalid --metrics-url `{url}`")))
            .transpose()?;
        let compare = self
            .compare_downloads
            .iter()
            .map(|peer| crate::compare::Peer::parse(peer))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let compare_crates = self
            .compare_crate
            .iter()
            .map(|spec| {
                spec.split_once('@')
                    .filter(|(name, vers)| !name.is_empty() && !vers.is_empty())
                    .map(|(name, vers)| (name.to_owned(), vers.to_owned()))
                    .with_context(|| format!("--compare-crate `{spec}`: expected NAME@VERSION"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if self.compare_rounds == 0 {
            bail!("--compare-rounds must be at least 1");
        }
        let use_bars = !self.quiet && std::io::IsTerminal::is_terminal(&std::io::stdout());
        Ok(Config {
            index_url,
            registry_index: registry_index.clone(),
            token: self.token,
            concurrency: self.concurrency,
            gen_params: GenParams {
                crates: self.crates,
                versions_per_crate: self.versions_per_crate,
                max_size: self.max_size,
                incompressible_fraction: self.incompressible_fraction,
                crates_io_dep_fraction: self.crates_io_dep_fraction,
                seed: self.seed.unwrap_or_else(|| rand::rng().random()),
                prefix,
                registry_index,
            },
            hot_requests: self.hot_requests,
            yank_fraction: self.yank_fraction,
            visible_timeout: Duration::from_secs(self.visible_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            publish_retries: self.publish_retries,
            metrics_url,
            progress: use_bars,
            notes: !self.quiet,
            slo: Slo {
                publish_visible_p99_ms: self.slo_publish_visible_p99_ms,
                publish_large_visible_p99_ms: self.slo_publish_large_visible_p99_ms,
                index_p99_ms: self.slo_index_p99_ms,
                download_p99_ms: self.slo_download_p99_ms,
                yank_p99_ms: self.slo_yank_p99_ms,
                error_rate: self.slo_error_rate,
            },
            write_crates: self.write_crates,
            compare,
            compare_rounds: self.compare_rounds,
            compare_passes: self.compare_passes.max(1),
            compare_crates,
        })
    }
}

/// Splits an index URL as given into the URL to fetch from (no `sparse+`, trailing `/`) and
/// the `sparse+…/` form manifests name the registry by.
pub fn normalize_index_url(given: &str) -> anyhow::Result<(Url, String)> {
    let bare = given.trim().strip_prefix("sparse+").unwrap_or(given.trim());
    let mut bare = bare.to_owned();
    if !bare.ends_with('/') {
        bare.push('/');
    }
    let url = Url::parse(&bare).with_context(|| format!("invalid --index URL `{given}`"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--index must be an http(s) sparse index URL, got `{given}`");
    }
    Ok((url, format!("sparse+{bare}")))
}

/// Checks a crate-name prefix: an ASCII letter, then letters, digits, `-` or `_`; ≤ 24 chars.
pub fn validate_prefix(prefix: &str) -> anyhow::Result<()> {
    let ok = (1..=24).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_alphabetic())
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        bail!(
            "invalid --prefix `{prefix}`: use 1 to 24 ASCII letters, digits, `-` or `_`, starting with a letter"
        )
    }
}

/// `lt` and five random lowercase letters or digits.
fn random_prefix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("lt{tail}")
}

/// Parses a size: a number of bytes, optionally followed by `K`/`KB`/`KiB`, `M…`, `G…`
/// (all binary multiples), case-insensitive, spaces allowed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid size `{text}`: expected a number, e.g. 20MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("invalid size unit `{other}` in `{text}`")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("20MiB"), Ok(20 << 20));
        assert_eq!(parse_size("512 k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10 parsecs").is_err());
    }

    #[test]
    fn index_urls() {
        let (url, reg) = normalize_index_url("sparse+http://127.0.0.1:8000/index/").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8000/index/");
        assert_eq!(reg, "sparse+http://127.0.0.1:8000/index/");
        let (url, reg) = normalize_index_url("http://127.0.0.1:8000/index").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8000/index/");
        assert_eq!(reg, "sparse+http://127.0.0.1:8000/index/");
        assert!(normalize_index_url("ftp://x/").is_err());
        assert!(normalize_index_url("not a url").is_err());
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("lt1a2b3").is_ok());
        assert!(validate_prefix("a-b_c").is_ok());
        assert!(validate_prefix("1abc").is_err());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("has space").is_err());
        assert!(validate_prefix(&"x".repeat(25)).is_err());
        let random = random_prefix();
        assert!(validate_prefix(&random).is_ok(), "{random}");
    }

    #[test]
    fn args_parse_and_validate() {
        let args = Args::try_parse_from([
            "loadtest",
            "--index",
            "http://127.0.0.1:1/index/",
            "--token",
            "t",
            "--seed",
            "7",
            "--prefix",
            "abc",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.gen_params.crates, 120);
        assert_eq!(config.gen_params.seed, 7);
        assert_eq!(config.gen_params.max_size, 10 << 20);
        assert_eq!(config.slo.publish_visible_p99_ms, 100.0);
        assert_eq!(config.slo.index_p99_ms, 50.0);
        assert_eq!(config.slo.error_rate, 0.0);
        let bad = Args::try_parse_from([
            "loadtest",
            "--index",
            "http://x/",
            "--token",
            "t",
            "--yank-fraction",
            "2",
        ])
        .unwrap();
        assert!(bad.into_config().is_err());
    }
}
