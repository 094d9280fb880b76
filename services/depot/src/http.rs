//! The HTTP/1.1 server of the api role: an accept loop with a cap on open connections, a
//! deadline for each request's headers (which is also how long an idle keep-alive connection
//! stays open), and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long shutdown waits for open connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Limits of the connection layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    /// The longest a client may take to send a request's headers, counted from when the
    /// connection is ready for the next request; also the idle keep-alive timeout.
    pub(crate) header_read_timeout: Duration,
    /// Connections open at the same time. Beyond it, new connections wait in the listen backlog
    /// until one closes.
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until `stop` completes, then lets open connections finish (for
/// at most [`SHUTDOWN_GRACE`]). Requests carry `ConnectInfo<SocketAddr>`, as with axum's
/// `into_make_service_with_connect_info`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(
            builder.clone(),
            graceful.watcher(),
            stream,
            remote,
            app.clone(),
            permit,
        ));
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
    Ok(())
}

/// Serves one connection, with `ConnectInfo` added to each request, and frees its slot when
/// it closes.
async fn serve_connection(
    builder: hyper::server::conn::http1::Builder,
    watcher: Watcher,
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        let mut app = app.clone();
        async move {
            let response = tower::Service::call(&mut app, request).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never: Infallible| match never {}))
        }
    });
    let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
    if let Err(e) = connection.await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
    drop(permit);
}

/// Accept errors: per-connection ones are skipped; others (such as running out of file
/// descriptors) are logged and retried after a pause, so the loop never spins.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn start(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, app, limits, async {
            let _ = rx.await;
        }));
        (address, tx)
    }

    async fn get(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off_and_requests_see_the_peer() {
        let (address, _stop) = start(ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 16,
        })
        .await;
        let response = get(address).await;
        assert!(response.ends_with("127.0.0.1"), "{response}");

        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET / HT").await.unwrap();
        let mut rest = Vec::new();
        // Closed (end of stream or a reset) rather than left hanging.
        let _closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
            .await
            .expect("the server closes a connection whose headers are late");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let (address, _stop) = start(ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            max_connections: 1,
        })
        .await;
        // An idle connection holds the only slot until its header deadline.
        let _idle = TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let response = get(address).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the second connection was served while the first held the slot"
        );
    }

    /// Whether TCP_NODELAY is set on this process's socket that connects `local` to `peer`
    /// (the server's end of a connection), found among the open file descriptors.
    fn nodelay_of(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()? {
            let Some(fd) = entry
                .ok()
                .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
            else {
                continue;
            };
            // Borrowed only while the connection is open (the caller holds its client end
            // and the server keeps its end for the kept-alive connection).
            #[expect(unsafe_code, reason = "inspecting a descriptor this process owns")]
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&borrowed);
            let (Ok(l), Ok(p)) = (socket.local_addr(), socket.peer_addr()) else {
                continue;
            };
            if l.as_socket() == Some(local) && p.as_socket() == Some(peer) {
                return socket.tcp_nodelay().ok();
            }
        }
        None
    }

    /// Reads one response with a `Content-Length` body from a kept-alive connection.
    async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
        let mut buffer = Vec::new();
        let mut byte = [0u8; 1];
        while !buffer.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).await.unwrap(),
                1,
                "connection closed"
            );
            buffer.push(byte[0]);
        }
        let head = String::from_utf8(buffer).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a content-length");
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.unwrap();
        (head, body)
    }

    #[tokio::test]
    async fn kept_alive_connections_have_nodelay_and_small_bodies_arrive_whole() {
        let (address, _stop) = start(ServerLimits {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 4,
        })
        .await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let client = stream.local_addr().unwrap();
        for i in 0..20 {
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let (head, body) = read_response(&mut stream).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{i}: {head}");
            assert_eq!(body, b"127.0.0.1", "{i}");
            assert_eq!(
                nodelay_of(address, client),
                Some(true),
                "{i}: the server's end of the connection has TCP_NODELAY"
            );
        }
    }

    #[tokio::test]
    async fn stops_accepting_on_stop() {
        let (address, stop) = start(ServerLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: 4,
        })
        .await;
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(TcpStream::connect(address).await.is_err());
    }
}
