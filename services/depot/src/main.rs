//! `depot`: the one binary of the registry. `depot serve` runs every role in one process;
//! `depot api|extractor|projector` run one role each so they can be scaled apart; `depot
//! migrate` and `depot token` are administration commands.

mod admin;
mod config;
mod http;
mod roles;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{GcSettings, Settings};

/// Depot, a self-hosted Cargo registry.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    settings: Settings,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the api, the extractor and the projector in one process.
    Serve,
    /// Run only the HTTP api (cargo's web API and the sparse index).
    Api,
    /// Run only the extractor (checks uploaded .crate files).
    Extractor,
    /// Run only the projector (folds the event log into the read models).
    Projector,
    /// Apply the database migrations and exit.
    Migrate,
    /// Rebuild every read model from the event log into a new generation, then switch to it
    /// (the registry keeps serving meanwhile). With --until, render the index as it was after
    /// that event instead, without switching.
    Replay {
        /// Stop after this event sequence: the index as of that point in the log.
        #[arg(long)]
        until: Option<u64>,
        /// Also write the resulting index files (sparse layout) into this directory.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Compare the live read models with a fresh replay, and every index line with its stored
    /// .crate; list orphan blobs. Exits non-zero on any mismatch.
    Verify,
    /// Delete stored blobs that no event refers to and that are older than the grace period.
    Gc {
        #[command(flatten)]
        gc: GcSettings,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token for a user (created if new) and print it once; only its sha256 is kept.
    Create {
        /// The user the token acts for.
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long, value_enum, default_value_t = Kind::Personal)]
        kind: Kind,
        /// A label to recognise the token by.
        #[arg(long)]
        label: Option<String>,
        /// Allowed operation (repeatable); default: all.
        #[arg(long = "scope", value_enum)]
        scopes: Vec<Scope>,
        /// Crate name pattern the token may act on, `*` as wildcard (repeatable); default: all.
        #[arg(long = "crate")]
        crates: Vec<String>,
        /// Days until the token expires; default: never.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

/// Token kinds.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Personal,
    Deploy,
    Ci,
}

/// Token scopes.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scope {
    PublishNew,
    PublishUpdate,
    Yank,
    ChangeOwners,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    depot_telemetry::init_tracing();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report_fatal(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

#[expect(
    clippy::print_stderr,
    reason = "the one place fatal errors are reported"
)]
fn report_fatal(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    settings.validate()?;
    match cli.command {
        Command::Serve => roles::serve(&settings, roles::Roles::ALL).await,
        Command::Api => roles::serve(&settings, roles::Roles::API).await,
        Command::Extractor => roles::serve(&settings, roles::Roles::EXTRACTOR).await,
        Command::Projector => roles::serve(&settings, roles::Roles::PROJECTOR).await,
        Command::Migrate => roles::migrate(&settings).await,
        Command::Replay { until, out } => admin::replay(&settings, until, out.as_deref()).await,
        Command::Verify => {
            if admin::verify(&settings).await? {
                Ok(())
            } else {
                anyhow::bail!("verification failed")
            }
        }
        Command::Gc { gc } => admin::gc(&settings, gc.grace()).await,
        Command::Token { command } => match command {
            TokenCommand::Create {
                user,
                kind,
                label,
                scopes,
                crates,
                expires_in_days,
            } => {
                let kind = match kind {
                    Kind::Personal => depot_events::TokenKind::Personal,
                    Kind::Deploy => depot_events::TokenKind::Deploy,
                    Kind::Ci => depot_events::TokenKind::Ci,
                };
                let scopes = scopes
                    .into_iter()
                    .map(|s| match s {
                        Scope::PublishNew => depot_events::TokenScope::PublishNew,
                        Scope::PublishUpdate => depot_events::TokenScope::PublishUpdate,
                        Scope::Yank => depot_events::TokenScope::Yank,
                        Scope::ChangeOwners => depot_events::TokenScope::ChangeOwners,
                    })
                    .collect();
                roles::create_token(
                    &settings,
                    &user,
                    kind,
                    label,
                    scopes,
                    crates,
                    expires_in_days,
                )
                .await
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
