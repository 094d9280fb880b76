//! Logging setup.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: human-readable lines on stderr, filtered by
/// `RUST_LOG` (default `info`, with noisy dependencies at `warn`).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,async_nats=warn,sqlx=warn,tower_http=warn,hyper=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
