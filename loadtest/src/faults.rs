//! The cluster under faults: the load test against the topology `deploy/cluster/up` starts,
//! while one process after another is killed with SIGKILL and started again: the JetStream
//! leader of the stream, one api process, one extractor and the active projector.
//!
//! Three things run at once:
//! - the load test ([`crate::run_detailed`]) through the load balancer;
//! - probes: every [`FaultConfig::probe_every`] a new one-version crate is published through the
//!   load balancer and its index file polled until the version shows; they measure when
//!   publishing works again after each kill ([`KillReport::resumed_after`]);
//! - the faults, in turn, each followed by a restart and a pause.
//!
//! Then the audit: every version the load test or a probe planned is looked up in the index of
//! every api process directly (not through the load balancer). An acknowledged version must be
//! in all of them with the checksum of the bytes sent, and download with that checksum; a
//! version whose publish failed may be absent or present, but never present in one api and not
//! in another, or with another checksum.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Client, IndexFetch, find_version, parse_index};
use crate::generate::{GenParams, Plan};
use crate::{Args, Outcome, Report};

/// How often a probe polls the index for its version.
const PROBE_POLL: Duration = Duration::from_millis(50);
/// How long a probe waits for its version to show.
const PROBE_VISIBLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Probes in flight at most (a stalled cluster must not pile up thousands of them).
const PROBES_IN_FLIGHT: usize = 64;
/// How long the standby projector may take to report itself active after a kill.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit of one request (probes, audit, metrics scrapes, NATS monitoring).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the faults are done to, in the order they are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The nats-server that leads the event stream's replicas.
    StreamLeader,
    /// The first api process behind the load balancer.
    Api,
    /// The first extractor.
    Extractor,
    /// The projector that holds the lease.
    ActiveProjector,
}

impl Fault {
    /// Every fault, in the order of the run.
    pub const ALL: [Fault; 4] = [
        Fault::StreamLeader,
        Fault::Api,
        Fault::Extractor,
        Fault::ActiveProjector,
    ];
}

/// The run's settings.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// The directory `deploy/cluster/up` was given.
    pub dir: PathBuf,
    /// `deploy/cluster/ctl`, which kills and starts the processes.
    pub ctl: PathBuf,
    /// Crates the load test generates.
    pub crates: usize,
    /// Concurrent publishers of the load test.
    pub concurrency: usize,
    /// Largest generated `.crate`.
    pub max_size: u64,
    /// Seed of the generator.
    pub seed: u64,
    /// Prefix of every crate name (the probes add `p` and a number).
    pub prefix: String,
    /// Time from the start of the load to the first kill.
    pub first_kill: Duration,
    /// Time a killed process stays down.
    pub down_for: Duration,
    /// Time from a restart to the next kill.
    pub settle: Duration,
    /// Interval between probes.
    pub probe_every: Duration,
    /// The longest acceptable time from a kill to the first probe published after it being
    /// visible.
    pub max_resume: Duration,
    /// The same for the kill of the stream leader, which waits for a Raft election: its
    /// followers wait 4–9 s (fixed in nats-server) before they stand for election.
    pub max_resume_leader: Duration,
    /// Show the load test's progress bars.
    pub progress: bool,
}

/// The deployment as `deploy/cluster/up` recorded it.
#[derive(Debug, Clone)]
struct Topology {
    /// The URL cargo uses (the load balancer).
    public_url: String,
    /// The event stream's name.
    stream: String,
    /// NATS monitoring URLs, `http://127.0.0.1:PORT`.
    nats_monitors: Vec<String>,
    /// Depot processes: name, role, metrics address, and for api processes their listener.
    processes: Vec<Process>,
    /// The admin token.
    token: String,
}

#[derive(Debug, Clone)]
struct Process {
    name: String,
    role: String,
    metrics: String,
    listen: Option<String>,
}

impl Topology {
    fn read(dir: &std::path::Path) -> anyhow::Result<Topology> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("cannot read {}", dir.join(name).display()))
        };
        let env: HashMap<String, String> = read("env")?
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let public_url = env
            .get("DEPOT_PUBLIC_URL")
            .context("DEPOT_PUBLIC_URL is not in env")?
            .trim_end_matches('/')
            .to_owned();
        let stream = env
            .get("DEPOT_NATS_STREAM")
            .cloned()
            .unwrap_or_else(|| "DEPOT".to_owned());
        let nats: HashMap<String, String> = read("nats/cluster.env")?
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let http_port: u16 = nats
            .get("HTTP_PORT")
            .context("HTTP_PORT is not in nats/cluster.env")?
            .parse()
            .context("HTTP_PORT in nats/cluster.env is not a port")?;
        let nats_monitors = (0..3)
            .map(|i| format!("http://127.0.0.1:{}", http_port + i))
            .collect();
        let processes = read("topology")?
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                match fields.as_slice() {
                    [name, role, metrics, rest @ ..] if rest.len() <= 1 => Ok(Process {
                        name: (*name).to_owned(),
                        role: (*role).to_owned(),
                        metrics: (*metrics).to_owned(),
                        listen: rest.first().map(|s| (*s).to_owned()),
                    }),
                    _ => bail!("a line of topology is not `name role metrics [listen]`: {line}"),
                }
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let token = read("admin-token")?.trim().to_owned();
        if token.is_empty() {
            bail!("admin-token is empty");
        }
        Ok(Topology {
            public_url,
            stream,
            nats_monitors,
            processes,
            token,
        })
    }

    fn first(&self, role: &str) -> anyhow::Result<&Process> {
        self.processes
            .iter()
            .find(|p| p.role == role)
            .with_context(|| format!("no {role} process in the topology"))
    }

    fn of_role<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Process> + 'a {
        self.processes.iter().filter(move |p| p.role == role)
    }
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct KillReport {
    /// What was killed.
    pub fault: Fault,
    /// The process (`n2`, `api1`, …).
    pub process: String,
    /// When, seconds from the start of the load.
    pub killed_at_secs: f64,
    /// When it was started again.
    pub restarted_at_secs: f64,
    /// Whether the load test was still running when the process was killed.
    pub under_load: bool,
    /// From the kill to the first probe started after it being visible, seconds (`None`: no
    /// such probe became visible).
    pub resumed_after_secs: Option<f64>,
    /// Probes started between this kill and the next whose publish failed.
    pub probes_failed: usize,
    /// Probes started in the same span.
    pub probes_started: usize,
    /// The longest time from a probe's start to its version being visible, among the probes
    /// started in the same span: what the fault cost the slowest publisher, seconds.
    pub slowest_probe_secs: Option<f64>,
    /// For the active projector: the standby that took over and how long after the kill.
    pub takeover: Option<Takeover>,
}

/// A standby projector taking over.
#[derive(Debug, Clone, Serialize)]
pub struct Takeover {
    /// The projector now active.
    pub process: String,
    /// Seconds from the kill until it reported itself active.
    pub after_secs: f64,
}

/// One probe.
#[derive(Debug, Clone)]
struct Probe {
    name: String,
    vers: String,
    cksum: String,
    started: Duration,
    acked: bool,
    visible: Option<Duration>,
    error: Option<String>,
}

/// The audit of every planned version after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    /// Versions looked up (load test and probes).
    pub versions: usize,
    /// Of these, acknowledged by the registry.
    pub acknowledged: usize,
    /// Acknowledged and in the index of every api process with the right checksum.
    pub acknowledged_visible: usize,
    /// Downloaded with the right checksum (every version found in the index).
    pub downloads_verified: usize,
    /// Not acknowledged (the publish failed) but in the index: committed before the failure.
    pub unacknowledged_present: usize,
    /// Problems: an acknowledged version missing somewhere, a version in one api's index and
    /// not another's, a checksum differing from the bytes sent, a failed download. Each names
    /// the version.
    pub problems: Vec<String>,
}

/// Everything the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// The faults, in order.
    pub kills: Vec<KillReport>,
    /// Probes sent, acknowledged, failed.
    pub probes: ProbeSummary,
    /// The audit.
    pub audit: Audit,
    /// The load test's own report.
    pub load: Report,
    /// What did not hold; empty when the run passed.
    pub violations: Vec<String>,
}

/// Probe totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeSummary {
    /// Probes started.
    pub started: usize,
    /// Acknowledged.
    pub acknowledged: usize,
    /// Acknowledged and then seen in the index.
    pub visible: usize,
    /// Failed publishes.
    pub failed: usize,
    /// The distinct errors of failed probes, with counts.
    pub errors: BTreeMap<String, usize>,
}

/// Runs the load test under faults and audits the result.
pub async fn run(config: &FaultConfig) -> anyhow::Result<FaultReport> {
    let topology = Topology::read(&config.dir)?;
    let index = format!("sparse+{}/index/", topology.public_url);
    let load_config = Args {
        index: index.clone(),
        token: topology.token.clone(),
        crates: config.crates,
        concurrency: config.concurrency,
        prefix: Some(config.prefix.clone()),
        seed: Some(config.seed),
        versions_per_crate: None,
        max_size: config.max_size,
        incompressible_fraction: 0.3,
        crates_io_dep_fraction: 0.0,
        hot_requests: 500,
        yank_fraction: 0.0,
        visible_timeout_secs: 60,
        request_timeout_secs: 60,
        publish_retries: 5,
        metrics_url: None,
        json: None,
        quiet: !config.progress,
        slo_publish_visible_p99_ms: 100.0,
        slo_publish_large_visible_p99_ms: None,
        slo_index_p99_ms: 50.0,
        slo_download_p99_ms: None,
        slo_yank_p99_ms: None,
        slo_error_rate: 0.0,
        write_crates: None,
        compare_downloads: Vec::new(),
        compare_rounds: 3,
        compare_passes: 1,
        compare_crate: Vec::new(),
    }
    .into_config()?;
    let url = reqwest::Url::parse(&format!("{}/index/", topology.public_url))?;
    let client = Arc::new(Client::connect(&url, &topology.token, 16, REQUEST_TIMEOUT).await?);
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot create the HTTP client")?;

    // Every process must be running before the first fault.
    for process in &topology.processes {
        scrape_projector_active(&http, process)
            .await
            .with_context(|| format!("{} does not answer on {}", process.name, process.metrics))?;
    }

    let started = Instant::now();
    let load = tokio::spawn({
        let load_config = load_config.clone();
        async move { crate::run_detailed(&load_config).await }
    });
    let (stop_probes, probes_stopped) = tokio::sync::watch::channel(false);
    let probes = tokio::spawn(probe_loop(
        Arc::clone(&client),
        config.clone(),
        started,
        probes_stopped,
    ));

    let mut kills = Vec::new();
    tokio::time::sleep(config.first_kill).await;
    for fault in Fault::ALL {
        let process = match fault {
            Fault::StreamLeader => stream_leader(&http, &topology).await?,
            Fault::Api => topology.first("api")?.name.clone(),
            Fault::Extractor => topology.first("extractor")?.name.clone(),
            Fault::ActiveProjector => active_projector(&http, &topology)
                .await?
                .context("no projector reports itself active")?,
        };
        let under_load = !load.is_finished();
        let killed = started.elapsed();
        ctl(config, "kill", &process).await?;
        let takeover = if fault == Fault::ActiveProjector {
            Some(wait_for_takeover(&http, &topology, &process, started, killed).await?)
        } else {
            None
        };
        tokio::time::sleep(config.down_for.saturating_sub(started.elapsed() - killed)).await;
        ctl(config, "start", &process).await?;
        let restarted = started.elapsed();
        kills.push(KillReport {
            fault,
            process,
            killed_at_secs: killed.as_secs_f64(),
            restarted_at_secs: restarted.as_secs_f64(),
            under_load,
            resumed_after_secs: None,
            probes_failed: 0,
            probes_started: 0,
            slowest_probe_secs: None,
            takeover,
        });
        tokio::time::sleep(config.settle).await;
    }

    let Outcome {
        report: load,
        plan,
        published,
    } = load.await.context("the load test panicked")??;
    stop_probes.send_replace(true);
    let probes = probes.await.context("the probes panicked")?;

    // Attribute probes to the kill before them.
    for i in 0..kills.len() {
        let from = Duration::from_secs_f64(kills[i].killed_at_secs);
        let to = kills
            .get(i + 1)
            .map_or(Duration::MAX, |k| Duration::from_secs_f64(k.killed_at_secs));
        let span: Vec<&Probe> = probes
            .iter()
            .filter(|p| p.started >= from && p.started < to)
            .collect();
        kills[i].probes_started = span.len();
        kills[i].probes_failed = span.iter().filter(|p| !p.acked).count();
        kills[i].slowest_probe_secs = span
            .iter()
            .filter_map(|p| Some(p.visible? - p.started))
            .max()
            .map(|d| d.as_secs_f64());
        kills[i].resumed_after_secs = probes
            .iter()
            .filter(|p| p.started >= from)
            .filter_map(|p| p.visible)
            .min()
            .map(|visible| (visible - from).as_secs_f64());
    }

    let mut summary = ProbeSummary {
        started: probes.len(),
        ..ProbeSummary::default()
    };
    for probe in &probes {
        if probe.acked {
            summary.acknowledged += 1;
        } else {
            summary.failed += 1;
        }
        if probe.visible.is_some() {
            summary.visible += 1;
        }
        if let Some(error) = &probe.error {
            *summary.errors.entry(error.clone()).or_default() += 1;
        }
    }

    let audit = audit(config, &topology, &client, &plan, &published, &probes).await?;

    let mut violations = Vec::new();
    for kill in &kills {
        let limit = match kill.fault {
            Fault::StreamLeader => config.max_resume_leader,
            _ => config.max_resume,
        };
        match kill.resumed_after_secs {
            Some(secs) if secs <= limit.as_secs_f64() => {}
            Some(secs) => violations.push(format!(
                "after the kill of {} ({:?}) publishing resumed only after {secs:.1} s (limit {} s)",
                kill.process,
                kill.fault,
                limit.as_secs_f64()
            )),
            None => violations.push(format!(
                "after the kill of {} ({:?}) no probe became visible",
                kill.process, kill.fault
            )),
        }
    }
    violations.extend(audit.problems.iter().take(20).cloned());
    if audit.problems.len() > 20 {
        violations.push(format!("… {} problems in all", audit.problems.len()));
    }
    Ok(FaultReport {
        kills,
        probes: summary,
        audit,
        load,
        violations,
    })
}

/// Runs `deploy/cluster/ctl COMMAND NAME DIR`.
async fn ctl(config: &FaultConfig, command: &str, name: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new("bash")
        .arg(&config.ctl)
        .args([command, name])
        .arg(&config.dir)
        .output()
        .await
        .with_context(|| format!("cannot run {}", config.ctl.display()))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("`ctl {command} {name}` failed: {}", said.trim());
    }
    if command == "start" && said.contains("already running") {
        bail!("{name} was still running when it was to be started again");
    }
    Ok(())
}

/// The nats-server leading the event stream, asked of the monitoring endpoints in turn.
async fn stream_leader(http: &reqwest::Client, topology: &Topology) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Jsz {
        #[serde(default)]
        account_details: Vec<Account>,
    }
    #[derive(serde::Deserialize)]
    struct Account {
        #[serde(default)]
        stream_detail: Vec<Stream>,
    }
    #[derive(serde::Deserialize)]
    struct Stream {
        name: String,
        cluster: Option<Cluster>,
    }
    #[derive(serde::Deserialize)]
    struct Cluster {
        leader: Option<String>,
    }
    for monitor in &topology.nats_monitors {
        let Ok(response) = http.get(format!("{monitor}/jsz?streams=true")).send().await else {
            continue;
        };
        let Ok(jsz) = response.json::<Jsz>().await else {
            continue;
        };
        let leader = jsz
            .account_details
            .iter()
            .flat_map(|a| &a.stream_detail)
            .find(|s| s.name == topology.stream)
            .and_then(|s| s.cluster.as_ref()?.leader.clone());
        if let Some(leader) = leader.filter(|l| !l.is_empty()) {
            return Ok(leader);
        }
    }
    bail!(
        "no nats-server names a leader of the stream {}",
        topology.stream
    )
}

/// `depot_projector_active` of one process (0 for roles other than the projector).
async fn scrape_projector_active(http: &reqwest::Client, process: &Process) -> anyhow::Result<i64> {
    let text = http
        .get(format!("http://{}/metrics", process.metrics))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("depot_projector_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// The projector that reports itself active, if one does.
async fn active_projector(
    http: &reqwest::Client,
    topology: &Topology,
) -> anyhow::Result<Option<String>> {
    for process in topology.of_role("projector") {
        if let Ok(1) = scrape_projector_active(http, process).await {
            return Ok(Some(process.name.clone()));
        }
    }
    Ok(None)
}

/// Waits until a projector other than `killed` reports itself active.
async fn wait_for_takeover(
    http: &reqwest::Client,
    topology: &Topology,
    killed: &str,
    started: Instant,
    killed_at: Duration,
) -> anyhow::Result<Takeover> {
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    loop {
        for process in topology.of_role("projector").filter(|p| p.name != killed) {
            if let Ok(1) = scrape_projector_active(http, process).await {
                return Ok(Takeover {
                    process: process.name.clone(),
                    after_secs: (started.elapsed() - killed_at).as_secs_f64(),
                });
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no standby projector took over within {} s of killing {killed}",
                TAKEOVER_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a probe every `probe_every` until told to stop; returns them all, finished.
async fn probe_loop(
    client: Arc<Client>,
    config: FaultConfig,
    started: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Probe> {
    let permits = Arc::new(Semaphore::new(PROBES_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(config.probe_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0.. {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let client = Arc::clone(&client);
        let params = probe_params(&config, n);
        tasks.spawn(async move {
            let probe = probe(&client, params, started).await;
            drop(permit);
            probe
        });
    }
    let mut probes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(probe) = joined {
            probes.push(probe);
        }
    }
    probes.sort_by_key(|p| p.started);
    probes
}

/// The generator settings of probe `n`: one small crate without dependencies.
fn probe_params(config: &FaultConfig, n: u64) -> GenParams {
    GenParams {
        crates: 1,
        versions_per_crate: Some(1),
        max_size: 4096,
        incompressible_fraction: 0.0,
        crates_io_dep_fraction: 0.0,
        seed: config.seed ^ (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        prefix: probe_prefix(&config.prefix, n),
        registry_index: String::new(),
    }
}

/// `{prefix}p{n}`, within the generator's 24 characters.
fn probe_prefix(prefix: &str, n: u64) -> String {
    let suffix = format!("p{n}");
    let keep = 24usize.saturating_sub(suffix.len()).min(prefix.len());
    format!("{}{suffix}", &prefix[..keep])
}

/// Publishes one probe crate and waits for it in the index.
async fn probe(client: &Client, params: GenParams, started: Instant) -> Probe {
    let begun = started.elapsed();
    let built = tokio::task::spawn_blocking(move || {
        let plan = Plan::generate(&params);
        let built = plan.build(0)?;
        let body = built.publish_body()?;
        anyhow::Ok((built.name, built.vers, built.cksum, body))
    })
    .await;
    let (name, vers, cksum, body) = match built {
        Ok(Ok(built)) => built,
        Ok(Err(e)) => return failed_probe(begun, format!("cannot build the probe: {e:#}")),
        Err(e) => return failed_probe(begun, format!("cannot build the probe: {e}")),
    };
    let mut probe = Probe {
        name,
        vers,
        cksum,
        started: begun,
        acked: false,
        visible: None,
        error: None,
    };
    if let Err(e) = client.publish(body).await {
        probe.error = Some(error_kind(&format!("{e:#}")));
        return probe;
    }
    probe.acked = true;
    let deadline = Instant::now() + PROBE_VISIBLE_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(IndexFetch::Modified { body, .. }) = client.fetch_index(&probe.name, None).await
            && find_version(&parse_index(&body), &probe.vers).is_some()
        {
            probe.visible = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(PROBE_POLL).await;
    }
    probe
}

fn failed_probe(started: Duration, error: String) -> Probe {
    Probe {
        name: String::new(),
        vers: String::new(),
        cksum: String::new(),
        started,
        acked: false,
        visible: None,
        error: Some(error),
    }
}

/// An error message without what differs between occurrences (names, numbers), for counting.
fn error_kind(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let cut: String = first.chars().take(120).collect();
    cut.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Looks every planned version up in every api process's index and downloads what is there.
async fn audit(
    config: &FaultConfig,
    topology: &Topology,
    client: &Client,
    plan: &Plan,
    published: &[Option<crate::phases::Published>],
    probes: &[Probe],
) -> anyhow::Result<Audit> {
    // name → [(vers, cksum sent, acknowledged)]
    let mut expected: BTreeMap<String, Vec<(String, Option<String>, bool)>> = BTreeMap::new();
    for (unit, acked) in published.iter().enumerate() {
        let (name, vers) = plan.name_version(unit);
        expected.entry(name.to_owned()).or_default().push((
            vers.to_owned(),
            acked.as_ref().map(|p| p.cksum.clone()),
            acked.is_some(),
        ));
    }
    for probe in probes.iter().filter(|p| !p.name.is_empty()) {
        expected.entry(probe.name.clone()).or_default().push((
            probe.vers.clone(),
            Some(probe.cksum.clone()),
            probe.acked,
        ));
    }
    let mut apis = Vec::new();
    for process in topology.of_role("api") {
        let listen = process
            .listen
            .as_deref()
            .with_context(|| format!("the topology gives no listener for {}", process.name))?;
        let url = reqwest::Url::parse(&format!("http://{listen}/index/"))?;
        let api = Client::connect(&url, &topology.token, config.concurrency, REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("cannot reach {} directly", process.name))?;
        apis.push((process.name.clone(), api));
    }

    let mut audit = Audit::default();
    for (name, versions) in expected {
        // The index of this crate as each api process serves it.
        let mut seen: Vec<(String, Vec<crate::client::IndexLine>)> = Vec::new();
        for (api_name, api) in &apis {
            let lines = match api.fetch_index(&name, None).await {
                Ok(IndexFetch::Modified { body, .. }) => parse_index(&body),
                Ok(IndexFetch::NotFound) => Vec::new(),
                Ok(IndexFetch::NotModified) => bail!("a 304 to an unconditional request"),
                Err(e) => {
                    audit
                        .problems
                        .push(format!("{name}: {api_name} did not serve its index: {e:#}"));
                    Vec::new()
                }
            };
            seen.push((api_name.clone(), lines));
        }
        for (vers, sent, acked) in versions {
            audit.versions += 1;
            if acked {
                audit.acknowledged += 1;
            }
            let found: Vec<Option<String>> = seen
                .iter()
                .map(|(_, lines)| find_version(lines, &vers).map(|l| l.cksum.clone()))
                .collect();
            let everywhere = found.iter().all(Option::is_some);
            let nowhere = found.iter().all(Option::is_none);
            if !everywhere && !nowhere {
                let missing: Vec<&str> = seen
                    .iter()
                    .zip(&found)
                    .filter(|(_, f)| f.is_none())
                    .map(|((api, _), _)| api.as_str())
                    .collect();
                audit.problems.push(format!(
                    "{name} {vers}: in some api processes' index but not in {missing:?}"
                ));
                continue;
            }
            if nowhere {
                if acked {
                    audit
                        .problems
                        .push(format!("{name} {vers}: acknowledged but not in the index"));
                }
                continue;
            }
            let cksum = found[0].clone().unwrap_or_default();
            if found.iter().any(|f| f.as_deref() != Some(cksum.as_str())) {
                audit.problems.push(format!(
                    "{name} {vers}: api processes disagree on the checksum"
                ));
                continue;
            }
            if let Some(sent) = &sent
                && *sent != cksum
            {
                audit.problems.push(format!(
                    "{name} {vers}: the index says {cksum}, the bytes sent were {sent}"
                ));
                continue;
            }
            if acked {
                audit.acknowledged_visible += 1;
            } else {
                audit.unacknowledged_present += 1;
            }
            match client.download(&name, &vers, &cksum).await {
                Ok((_, got)) if got == cksum => audit.downloads_verified += 1,
                Ok((_, got)) => audit.problems.push(format!(
                    "{name} {vers}: downloaded bytes hash to {got}, the index says {cksum}"
                )),
                Err(e) => audit
                    .problems
                    .push(format!("{name} {vers}: download failed: {e:#}")),
            }
        }
    }
    Ok(audit)
}

/// The report as text.
pub fn render(report: &FaultReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "cluster under faults");
    let _ = writeln!(
        out,
        "  load: {} crates, {} versions planned, {} acknowledged, {:.1} s",
        report.load.run.crates,
        report.load.checks.versions_planned,
        report.load.checks.published,
        report.load.run.duration_secs
    );
    let _ = writeln!(
        out,
        "  {:<16} {:<11} {:>7} {:>10} {:>11} {:>12} {:>6} {:>14} {:>10}",
        "fault",
        "process",
        "kill@s",
        "restart@s",
        "resumed, s",
        "slowest, s",
        "load?",
        "probes failed",
        "takeover"
    );
    for kill in &report.kills {
        let _ = writeln!(
            out,
            "  {:<16} {:<11} {:>7.1} {:>10.1} {:>11} {:>12} {:>6} {:>14} {:>10}",
            format!("{:?}", kill.fault),
            kill.process,
            kill.killed_at_secs,
            kill.restarted_at_secs,
            kill.resumed_after_secs
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.2}")),
            kill.slowest_probe_secs
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}")),
            if kill.under_load { "yes" } else { "no" },
            format!("{}/{}", kill.probes_failed, kill.probes_started),
            kill.takeover.as_ref().map_or_else(String::new, |t| format!(
                "{} {:.2}s",
                t.process, t.after_secs
            )),
        );
    }
    let p = &report.probes;
    let _ = writeln!(
        out,
        "  probes: {} started, {} acknowledged, {} visible, {} failed",
        p.started, p.acknowledged, p.visible, p.failed
    );
    for (error, count) in &p.errors {
        let _ = writeln!(out, "    {count} × {error}");
    }
    let a = &report.audit;
    let _ = writeln!(
        out,
        "  audit: {} versions, {} acknowledged, {} of them in every api's index with the sent checksum, \
         {} unacknowledged but present, {} downloads verified, {} problems",
        a.versions,
        a.acknowledged,
        a.acknowledged_visible,
        a.unacknowledged_present,
        a.downloads_verified,
        a.problems.len()
    );
    for row in &report.load.operations {
        if let (crate::stats::Op::VisibleSmall | crate::stats::Op::VisibleLarge, Some(latency)) =
            (row.op, &row.latency)
        {
            let _ = writeln!(
                out,
                "  load test {}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                row.label, latency.p50_ms, latency.p99_ms, latency.max_ms
            );
        }
    }
    let errors: u64 = report.load.operations.iter().map(|r| r.errors).sum();
    let _ = writeln!(
        out,
        "  load test: {errors} errors (all phases), {} publishes sent again after a failure",
        report.load.checks.publish_retries
    );
    if report.violations.is_empty() {
        let _ = writeln!(out, "PASSED");
    } else {
        let _ = writeln!(out, "FAILED:");
        for v in &report.violations {
            let _ = writeln!(out, "  - {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_prefixes_stay_within_the_generators_limit() {
        for n in [0, 7, 12_345, u64::MAX] {
            let p = probe_prefix("abcdefghijklmnopqrstuvwx", n);
            assert!(p.len() <= 24, "{p}");
            assert!(p.ends_with(&format!("p{n}")), "{p}");
        }
        assert_eq!(probe_prefix("ft", 3), "ftp3");
    }

    #[test]
    fn error_kinds_group_messages_that_differ_in_numbers() {
        assert_eq!(
            error_kind("HTTP 502: bad gateway 12\nmore"),
            error_kind("HTTP 502: bad gateway 99")
        );
    }
}
