//! `memserve`: a minimal HTTP/1.1 server that holds every file of a directory in memory and
//! serves it at `/<file name>` — the "in-memory cache" that Depot's downloads are compared
//! with (`loadtest --compare-downloads`). Keep-alive, `TCP_NODELAY`, `Content-Length`, each
//! response written from memory with no per-request work beyond a hash lookup.
//!
//! ```sh
//! memserve --dir crates/ --listen 127.0.0.1:18821
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Serves the files of a directory from memory.
#[derive(Debug, Parser)]
#[command(name = "memserve", version)]
struct Args {
    /// The directory whose files (not subdirectories) are loaded.
    #[arg(long)]
    dir: PathBuf,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18821")]
    listen: SocketAddr,

    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

type Files = Arc<HashMap<String, Bytes>>;

fn load(dir: &std::path::Path) -> anyhow::Result<HashMap<String, Bytes>> {
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        files.insert(
            format!("/{name}"),
            Bytes::from(std::fs::read(entry.path())?),
        );
    }
    Ok(files)
}

async fn answer(
    files: Files,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match files.get(request.uri().path()) {
        Some(bytes) => Response::builder()
            .header(hyper::header::CONTENT_TYPE, "application/gzip")
            .body(Full::new(bytes.clone()))
            .unwrap_or_default(),
        None => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    })
}

async fn serve(listener: tokio::net::TcpListener, files: Files) -> anyhow::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let files = Arc::clone(&files);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| answer(Arc::clone(&files), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[expect(clippy::print_stderr, reason = "the CLI's output")]
fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> anyhow::Result<()> {
        let files = load(&args.dir)?;
        let total: usize = files.values().map(Bytes::len).sum();
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(threads) = args.threads {
            builder.worker_threads(threads.max(1));
        }
        let runtime = builder.enable_all().build()?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            eprintln!(
                "memserve: {} files, {} bytes, on http://{}",
                files.len(),
                total,
                listener.local_addr()?
            );
            serve(listener, Arc::new(files)).await
        })
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memserve: {e:#}");
            ExitCode::from(2)
        }
    }
}
