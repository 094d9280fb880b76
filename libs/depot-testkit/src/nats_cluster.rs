//! A JetStream cluster of one test ([`PrivateNatsCluster`]): N nats-servers on free loopback
//! ports, configured like `deploy/cluster/nats`, any of which a test may kill and start again.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::required_var;
use crate::servers::{NATS_SERVER_VAR, free_port, jetstream_greeting};

/// The cluster name, as in `deploy/cluster/nats`.
const CLUSTER_NAME: &str = "depot";
/// How long the cluster may take to elect a meta leader, or a node to catch up after a restart.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one request to a monitoring endpoint.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(2);

/// One server of a [`PrivateNatsCluster`].
#[derive(Debug)]
struct Node {
    name: String,
    client_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// A JetStream cluster of one test: N nats-servers (the binary named by `DEPOT_TEST_NATS_SERVER`)
/// named `n1`…`nN`, with routes between all of them, on free ports of 127.0.0.1, stores and
/// logs in a temp dir. Configured like `deploy/cluster/nats` (cluster `depot`,
/// `sync_interval: always`). Each node keeps its ports and store, so it can be killed and
/// started again. Everything is killed on drop.
///
/// Nodes are addressed by index, `0..N` (node `i` is the server named `n{i+1}`).
#[derive(Debug)]
pub struct PrivateNatsCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl PrivateNatsCluster {
    /// Starts `size` servers and waits until they agree on a JetStream meta leader and all
    /// report healthy.
    ///
    /// # Panics
    ///
    /// If `DEPOT_TEST_NATS_SERVER` is unset, `size` is 0, or the cluster does not form within
    /// 30 s (the message carries every server's log).
    pub fn start(size: usize) -> PrivateNatsCluster {
        assert!(size > 0, "a cluster needs at least one server");
        let binary = PathBuf::from(required_var(
            NATS_SERVER_VAR,
            "the path of a nats-server >= 2.11 binary (bash .ci/test exports it)",
        ));
        let dir = tempfile::Builder::new()
            .prefix("depot-nats-cluster-")
            .tempdir()
            .expect("temp dir for the nats cluster");
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes = ports
            .iter()
            .map(|(_, route, _)| format!("nats-route://127.0.0.1:{route}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::with_capacity(size);
        for (i, &(client_port, route_port, http_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let node_dir = dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let config = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{client_port}\n\
                 http: 127.0.0.1:{http_port}\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n  \
                 max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
                 cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{route_port}\n  \
                 routes: [{routes}]\n}}\n",
                store = node_dir.join("jetstream").display(),
            );
            std::fs::write(node_dir.join("nats.conf"), config).expect("write nats.conf");
            nodes.push(Node {
                name,
                client_port,
                http_port,
                child: None,
            });
        }
        let mut cluster = PrivateNatsCluster { binary, dir, nodes };
        for i in 0..size {
            cluster.spawn(i);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            cluster.check_alive();
            let leaders: Vec<Option<String>> =
                (0..size).map(|i| cluster.meta_leader_seen_by(i)).collect();
            let agreed = leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]);
            if agreed && (0..size).all(|i| cluster.healthy(i)) {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "the nats cluster formed no JetStream meta leader within {READY_TIMEOUT:?} \
                 (leaders seen: {leaders:?}):\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The number of servers.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every server's client URL, comma-separated (`DEPOT_NATS_URL` for a cluster); killed
    /// servers included.
    pub fn url(&self) -> String {
        self.urls().join(",")
    }

    /// Every server's client URL, `nats://127.0.0.1:PORT`.
    pub fn urls(&self) -> Vec<String> {
        (0..self.size()).map(|i| self.client_url(i)).collect()
    }

    /// Server `i`'s client URL.
    pub fn client_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Server `i`'s monitoring URL, `http://127.0.0.1:PORT`.
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].http_port)
    }

    /// Server `i`'s name (`server_name`), `n{i+1}`.
    pub fn server_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the server called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// Whether server `i` is running (started and not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Kills server `i` with SIGKILL (a crash) and waits for it.
    ///
    /// # Panics
    ///
    /// If it is not running.
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", node.name));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the killed server `i` again on its ports and store, and waits until it greets
    /// clients with JetStream, sees a meta leader and its `/healthz` reports `ok`. That does
    /// not mean its replicas have caught up with what was stored while it was down: poll
    /// [`PrivateNatsCluster::stream_detail`] for that.
    ///
    /// # Panics
    ///
    /// If it is running, or it is not healthy within 30 s.
    pub fn start_again(&mut self, i: usize) {
        assert!(
            !self.is_running(i),
            "{} is already running",
            self.nodes[i].name
        );
        self.spawn(i);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !(jetstream_greeting(self.nodes[i].client_port)
            && self.meta_leader_seen_by(i).is_some()
            && self.healthy(i))
        {
            self.check_alive();
            assert!(
                Instant::now() < deadline,
                "{} did not rejoin the cluster within {READY_TIMEOUT:?}:\n{}",
                self.nodes[i].name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A monitoring endpoint of server `i` as JSON, e.g. `monitor(0, "/jsz?streams=true")`;
    /// `None` if the server does not answer (within 2 s) or the answer is not JSON.
    pub fn monitor(&self, i: usize, path_and_query: &str) -> Option<serde_json::Value> {
        if !self.is_running(i) {
            return None;
        }
        http_get_json(self.nodes[i].http_port, path_and_query)
    }

    /// What server `i` reports about its replica of `stream` (from
    /// `/jsz?streams=true&consumers=true&config=true`): `name`, `config` (e.g.
    /// `config.num_replicas`), `cluster` (`leader`, `replicas`), `state` (`messages`,
    /// `last_seq`, …) and `consumer_detail`. `None` if the server does not answer or holds no
    /// replica of the stream.
    pub fn stream_detail(&self, i: usize, stream: &str) -> Option<serde_json::Value> {
        let jsz = self.monitor(i, "/jsz?streams=true&consumers=true&config=true")?;
        stream_details(&jsz)
            .find(|detail| detail["name"] == stream)
            .cloned()
    }

    /// The index of the server that leads `stream`, as the first running server that knows a
    /// leader reports it; `None` while no leader is known (e.g. during an election).
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        (0..self.size()).find_map(|i| {
            let detail = self.stream_detail(i, stream)?;
            self.index_of(detail.pointer("/cluster/leader")?.as_str()?)
        })
    }

    /// Server `i`'s log so far (for assertion messages).
    pub fn server_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("nats.log")).unwrap_or_default()
    }

    /// Every server's log, each under a header line (for assertion messages).
    pub fn logs(&self) -> String {
        (0..self.size())
            .map(|i| format!("--- {} ---\n{}", self.nodes[i].name, self.server_log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name)
    }

    fn spawn(&mut self, i: usize) {
        let node_dir = self.node_dir(i);
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(node_dir.join("nats.conf"))
            .arg("-l")
            .arg(node_dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.nodes[i].child = Some(child);
    }

    /// Panics (with the logs) if a server that should be running has exited.
    fn check_alive(&mut self) {
        let exited = self.nodes.iter_mut().find_map(|node| {
            let status = node.child.as_mut()?.try_wait().ok()??;
            node.child = None;
            Some((node.name.clone(), status))
        });
        if let Some((name, status)) = exited {
            panic!("nats-server {name} exited ({status}):\n{}", self.logs());
        }
    }

    /// The meta leader's name as server `i` sees it.
    fn meta_leader_seen_by(&self, i: usize) -> Option<String> {
        let jsz = self.monitor(i, "/jsz")?;
        let leader = jsz.pointer("/meta_cluster/leader")?.as_str()?;
        (!leader.is_empty()).then(|| leader.to_owned())
    }

    /// Whether server `i`'s `/healthz` reports `ok` (JetStream current, assets caught up).
    fn healthy(&self, i: usize) -> bool {
        self.monitor(i, "/healthz")
            .is_some_and(|health| health["status"] == "ok")
    }
}

impl Drop for PrivateNatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Every stream detail of a `/jsz?streams=true` answer (over all accounts).
fn stream_details(jsz: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
}

/// GETs `http://127.0.0.1:{port}{path}` and parses the body as JSON, whatever the status (an
/// unhealthy `/healthz` answers 503 with a JSON body).
fn http_get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(MONITOR_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(MONITOR_TIMEOUT)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8(response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}
