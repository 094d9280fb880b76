//! Wiring: connects the backends named by the settings and runs the roles.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use depot_api::{ApiConfig, AppState};
use depot_eventlog::{EventLog, JetStreamConfig, JetStreamLog, LocalNotifier, Notifier, SqliteLog};
use depot_extractor::Extractor;
use depot_projector::{CRATE_CHANGED_TOPIC, Projector};
use depot_store::{BlobStore, Store, Target};
use tokio::sync::watch;

use crate::config::{BlobLocation, Settings};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Roles {
    api: bool,
    extractor: bool,
    projector: bool,
}

impl Roles {
    pub(crate) const ALL: Roles = Roles {
        api: true,
        extractor: true,
        projector: true,
    };
    pub(crate) const API: Roles = Roles {
        api: true,
        extractor: false,
        projector: false,
    };
    pub(crate) const EXTRACTOR: Roles = Roles {
        api: false,
        extractor: true,
        projector: false,
    };
    pub(crate) const PROJECTOR: Roles = Roles {
        api: false,
        extractor: false,
        projector: true,
    };
}

/// The event log and the notifier that goes with it.
pub(crate) struct LogBackend {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) notifier: Arc<dyn Notifier>,
}

/// Opens the event log: JetStream when `DEPOT_NATS_URL` is set, else the embedded SQLite log in
/// the data directory.
pub(crate) async fn open_log(settings: &Settings) -> anyhow::Result<LogBackend> {
    if let Some(url) = settings.nats_url.as_deref() {
        let config = JetStreamConfig {
            url: url.to_owned(),
            stream: settings.nats_stream.clone(),
            subject_prefix: settings.nats_prefix.clone(),
            replicas: settings.nats_replicas,
            duplicate_window: Duration::from_secs(600),
        };
        let log = JetStreamLog::connect(&config)
            .await
            .with_context(|| format!("cannot open the event log on NATS at {url}"))?;
        let notifier = Arc::new(log.notifier());
        return Ok(LogBackend {
            log: Arc::new(log),
            notifier,
        });
    }
    let path = settings.embedded_log_path();
    let log = SqliteLog::open(&path)
        .await
        .with_context(|| format!("cannot open the embedded event log {}", path.display()))?;
    Ok(LogBackend {
        log: Arc::new(log),
        notifier: Arc::new(LocalNotifier::new()),
    })
}

/// Opens the read models (and applies migrations).
pub(crate) async fn open_store(settings: &Settings, max_connections: u32) -> anyhow::Result<Store> {
    let url = settings.database_url();
    Store::connect(&url, max_connections)
        .await
        .with_context(|| format!("cannot open the read models at {}", redact(&url)))
}

/// Opens the blob store (a directory or an S3 bucket) and removes what uploads interrupted by
/// a crash left behind.
pub(crate) async fn open_blobs(settings: &Settings) -> anyhow::Result<BlobStore> {
    let blobs = match settings.blob_location()? {
        BlobLocation::Directory(dir) => BlobStore::open(&dir)
            .await
            .with_context(|| format!("cannot open the blob directory {}", dir.display()))?,
        BlobLocation::S3(config) => BlobStore::open_s3(&config)
            .await
            .context("cannot open the blob store")?,
    };
    match blobs.sweep_temp(settings.stale_upload_age()).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed abandoned temporary upload files"),
        Err(e) => tracing::warn!(error = %e, "could not sweep temporary upload files"),
    }
    Ok(blobs)
}

/// Hides the password of a URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `depot migrate`.
pub(crate) async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    open_store(settings, 1).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// `depot serve|api|extractor|projector`.
pub(crate) async fn serve(settings: &Settings, roles: Roles) -> anyhow::Result<()> {
    let LogBackend { log, notifier } = open_log(settings).await?;
    let store = if roles.api || roles.projector {
        Some(open_store(settings, 16).await?)
    } else {
        None
    };
    let blobs = if roles.api || roles.extractor {
        Some(open_blobs(settings).await?)
    } else {
        None
    };

    // The listener is bound first: the public URL defaults to its real address.
    let listener = if roles.api {
        Some(
            tokio::net::TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("cannot listen on {}", settings.listen))?,
        )
    } else {
        None
    };
    let bound = match &listener {
        Some(l) => l.local_addr()?,
        None => settings.listen,
    };
    let public_url = settings.public_url(bound);
    if roles.api && roles.projector && roles.extractor {
        crate::accounts::welcome_first_user(log.as_ref(), settings, &public_url).await?;
    }

    let metrics_listener = match settings.metrics_listen.as_str() {
        "off" => None,
        address => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen for metrics on {address}"))?,
        ),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();

    if let Some(listener) = metrics_listener {
        let address = listener.local_addr()?;
        tracing::info!("metrics on http://{address}/metrics");
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    depot_telemetry::encode(),
                )
            }),
        );
        let stop = stopped();
        // The api's accept path: TCP_NODELAY on every connection, the same connection cap and
        // header deadline.
        let server_limits = settings.server_limits();
        tasks.spawn(async move {
            crate::http::serve(listener, app, server_limits, stop)
                .await
                .context("metrics listener failed")
        });
    }
    if roles.projector {
        let projector = Projector::new(
            log.clone(),
            store.clone().expect("projector has a store"),
            Some(notifier.clone()),
            Target::Active,
        );
        let sampler = projector.clone();
        let stop = stopped();
        tasks.spawn(async move { sampler.sample_lag(Duration::from_secs(5), stop).await });
        let stop = stopped();
        tasks.spawn(async move { projector.run(stop).await.context("projector failed") });
        if settings.webhooks {
            let dispatcher = depot_webhooks::Dispatcher::new(
                log.clone(),
                store.clone().expect("projector has a store"),
                settings.webhook_key()?,
                settings.webhook_config(),
            )?;
            let stop = stopped();
            tasks.spawn(async move {
                dispatcher
                    .run(stop)
                    .await
                    .context("webhook dispatcher failed")
            });
        }
    }
    if roles.extractor {
        let extractor = Extractor::new(
            log.clone(),
            blobs.clone().expect("extractor has blobs"),
            settings.extractor_config(&public_url),
        );
        let stop = stopped();
        tasks.spawn(async move { extractor.run(stop).await.context("extractor failed") });
    }
    if let Some(listener) = listener {
        let config = ApiConfig {
            public_url: public_url.clone(),
            max_crate_size: settings.max_crate_size,
            max_json_size: u32::try_from(settings.max_json_size).unwrap_or(u32::MAX),
            publish_limits: settings.publish_limits(&public_url),
            tarball_limits: settings.tarball_limits(&public_url),
            publish_wait: settings.publish_wait(),
            command_wait: Duration::from_secs(10),
            index_cache_ttl: Duration::from_secs(5),
            limits: settings.edge_limits(),
            auth_required: settings.auth_required,
            default_token_lifetime: settings.default_token_lifetime(),
            trusted_publishing: settings.trusted_publishing(),
            blob_redirect: settings.blob_redirect(),
            upstream: settings.upstream()?,
            docs: settings.docs(),
            webhooks: settings.webhooks_api(),
        };
        let api_blobs = blobs.clone().expect("api has blobs");
        let inline_checker = Extractor::new(
            log.clone(),
            api_blobs.clone(),
            settings.extractor_config(&public_url),
        );
        let state = AppState::new(
            config,
            log.clone(),
            store.clone().expect("api has a store"),
            api_blobs,
        )
        .with_inline_checks(inline_checker, settings.inline_check_size);
        let listener_task =
            depot_api::spawn_change_listener(state.clone(), notifier.clone(), CRATE_CHANGED_TOPIC);
        let flusher_state = state.clone();
        let flush_stop = stopped();
        tasks.spawn(async move {
            tokio::pin!(flush_stop);
            loop {
                tokio::select! {
                    () = &mut flush_stop => break,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                if let Err(e) = flusher_state.flush_downloads().await {
                    tracing::warn!(error = %e, "could not store download counts");
                }
            }
            let _ = flusher_state.flush_downloads().await;
            Ok(())
        });
        let app = depot_api::router(state);
        let stop = stopped();
        let server_limits = settings.server_limits();
        tracing::info!(%public_url, index = %format!("sparse+{public_url}/index/"), "depot listening on http://{bound}");
        tasks.spawn(async move {
            let served = crate::http::serve(listener, app, server_limits, stop)
                .await
                .context("http server failed");
            listener_task.abort();
            served
        });
    }

    // Run until a signal, or until a role fails.
    let outcome = tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        Some(joined) = tasks.join_next() => match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a role panicked: {e}")),
        },
    };
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    outcome
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
