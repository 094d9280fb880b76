//! A tiny HTTP/1.1 responder standing in for a registry in the cargo-driver self-checks.
//!
//! It answers each request from a fixed route table and records what it received; anything not
//! in the table gets a 404. One request per connection (`Connection: close`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

/// The running responder; stops when dropped.
#[derive(Debug)]
pub(crate) struct Responder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

type Routes = HashMap<(String, String), (u16, String)>;

impl Responder {
    /// Starts answering `routes`: `(method, path)` → `(status, body)`. `{api}` in a body is
    /// replaced by the responder's own `http://127.0.0.1:PORT`.
    pub(crate) async fn start(routes: &[(&str, &str, u16, &str)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = format!("http://{addr}");
        let routes: Arc<Routes> = Arc::new(
            routes
                .iter()
                .map(|&(method, path, status, body)| {
                    let key = (method.to_owned(), path.to_owned());
                    (key, (status, body.replace("{api}", &api)))
                })
                .collect(),
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let routes = Arc::clone(&routes);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let _ = serve(stream, &routes, &recorded).await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// The sparse index URL served by this responder.
    pub(crate) fn index_url(&self) -> String {
        format!("sparse+http://{}/index/", self.addr)
    }

    /// Everything received so far.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The received requests with this method and path.
    pub(crate) fn requests_to(&self, method: &str, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    routes: &Routes,
    recorded: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    if headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        stream
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    let (status, reply) = routes
        .get(&(method.clone(), path.clone()))
        .cloned()
        .unwrap_or((404, r#"{"errors":[{"detail":"not found"}]}"#.to_owned()));
    recorded.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
    });
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reply}",
        reply.len()
    );
    stream.get_mut().write_all(response.as_bytes()).await?;
    stream.get_mut().shutdown().await
}
