//! `depot`: the one binary of the registry. `depot serve` runs every role in one process;
//! `depot api|extractor|projector` run one role each so they can be scaled apart; `depot
//! migrate`, `depot user` and `depot token` are administration commands.

mod accounts;
mod admin;
mod audit;
mod config;
mod docs;
mod http;
mod mirror;
mod roles;
mod webhooks;

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
    /// Who did what and when, from the event log: publishes, yanks, owners, tokens, users.
    Audit {
        /// Only events of this crate.
        #[arg(long = "crate")]
        krate: Option<String>,
        /// Only events by or about this user (or `deploy:<name>`).
        #[arg(long)]
        user: Option<String>,
        /// Only events since this time: RFC 3339, or an age such as 90m, 12h, 7d.
        #[arg(long)]
        since: Option<String>,
    },
    /// Manage users: create, list, disable, enable.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens: create, list, revoke.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Webhooks: subscribe URLs to crate events, list them and their deliveries, re-send
    /// history.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// The crates.io cache: pre-fetch (sync), export and import it; names the
    /// dependency-confusion guard lets through.
    Mirror {
        #[command(subcommand)]
        command: MirrorCommand,
    },
    /// Hosted documentation: upload a version's rustdoc output.
    Docs {
        #[command(subcommand)]
        command: DocsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// Pack a `target/doc` directory and upload it as the docs of NAME VERSION (needs a token
    /// with `publish-update` for the crate; replaces earlier docs of that version).
    Upload {
        /// The Depot to upload to; default: this Depot's public URL.
        #[arg(long, env = "DEPOT_REGISTRY_URL")]
        registry_url: Option<String>,
        /// The token, sent as `Authorization`.
        #[arg(long, env = "DEPOT_TOKEN", hide_env_values = true)]
        token: String,
        /// The crate.
        name: String,
        /// The version (an accepted one).
        #[arg(value_name = "VERSION")]
        vers: String,
        /// The rustdoc output directory.
        #[arg(default_value = "target/doc")]
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Subscribe a URL to crate events and print its signing secret once (`whsec_…`, alone on
    /// the last line of standard output). It receives the events appended after it.
    Add {
        /// Where deliveries are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// Event type (repeatable): crate.published, crate.yanked, crate.unyanked,
        /// crate.owners_added, crate.owners_removed, crate.docs_uploaded; default: all.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Crate name pattern, `*` as wildcard (repeatable); default: all crates.
        #[arg(long = "crate")]
        crates: Vec<String>,
        /// A label to recognise the subscription by.
        #[arg(long)]
        description: Option<String>,
    },
    /// List subscriptions with their pending deliveries.
    List,
    /// Remove a subscription: its pending deliveries are given up.
    Remove {
        /// The subscription id (`depot webhook list` shows it).
        id: String,
    },
    /// The newest deliveries of a subscription.
    Deliveries {
        /// The subscription id.
        id: String,
        /// How many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send the events of a range of the log again (with their original webhook-id), in log
    /// order, to every subscription they match (or one).
    Replay {
        /// The first event sequence.
        #[arg(long)]
        from: u64,
        /// The last event sequence; default: the last one folded.
        #[arg(long)]
        to: Option<u64>,
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MirrorCommand {
    /// Let a new private crate take NAME although the upstream registry has a crate of that
    /// name (the dependency-confusion guard refuses it otherwise).
    AllowName {
        /// The crate name.
        name: String,
        /// Withdraw an earlier permission instead.
        #[arg(long)]
        withdraw: bool,
    },
    /// Fetch through a running Depot every crates.io crate that lock files need (and the
    /// crates named), so later builds find them in its cache.
    Sync {
        /// The Depot to fetch through; default: this Depot's public URL.
        #[arg(long)]
        url: Option<String>,
        /// Sent as `Authorization` (a Depot that requires authentication).
        #[arg(long, env = "DEPOT_MIRROR_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A Cargo.lock, or a directory searched for them (repeatable).
        #[arg(long = "lock")]
        locks: Vec<std::path::PathBuf>,
        /// Downloads at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Crates to fetch: NAME (its newest version that is not yanked) or NAME@VERSION.
        crates: Vec<String>,
    },
    /// Write the cache (index files, crates and a manifest of their checksums) to DIR, to carry
    /// across an air gap.
    Export {
        /// An empty or new directory.
        dir: std::path::PathBuf,
    },
    /// Verify and load a cache written by `depot mirror export` (nothing is stored unless every
    /// file matches the manifest).
    Import {
        /// The exported directory.
        dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        /// The login: 1–39 letters, digits, `-` or `_`.
        login: String,
        /// Make the user an admin: admins may manage any crate's owners and yank any version.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Disable a user: their tokens stop working on every api process within a second.
    Disable {
        /// The login.
        login: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The login.
        login: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it once; only its sha256 is kept. A personal token (--user)
    /// acts as its user and expires after DEPOT_TOKEN_EXPIRY_DAYS (90) unless --no-expiry; a
    /// deploy token (--deploy) belongs to no person, may only read unless --write, and acts on
    /// exactly the crates its --crate patterns name.
    #[command(group(clap::ArgGroup::new("holder").required(true).args(["user", "deploy"])))]
    Create {
        /// The user the token acts for (created if new).
        #[arg(long)]
        user: Option<String>,
        /// The name of a deploy identity, e.g. `prod-builders`.
        #[arg(long)]
        deploy: Option<String>,
        /// A label to recognise the token by.
        #[arg(long)]
        label: Option<String>,
        /// Allowed operation (repeatable); default: all for a personal token, `read` for a
        /// deploy token.
        #[arg(long = "scope", value_enum)]
        scopes: Vec<Scope>,
        /// Deploy tokens: allow reading (the index, downloads, search).
        #[arg(long, requires = "deploy")]
        read: bool,
        /// Deploy tokens: allow publishing and yanking the crates named by --crate.
        #[arg(long, requires = "deploy")]
        write: bool,
        /// Crate name pattern the token may act on, `*` as wildcard (repeatable); default: all.
        #[arg(long = "crate")]
        crates: Vec<String>,
        /// Days until the token expires.
        #[arg(long, conflicts_with = "no_expiry")]
        expires_in_days: Option<u32>,
        /// A personal token that never expires.
        #[arg(long)]
        no_expiry: bool,
    },
    /// List tokens (all, or those of one user or deploy identity).
    List {
        /// Only this user's tokens.
        #[arg(long, conflicts_with = "deploy")]
        user: Option<String>,
        /// Only this deploy identity's tokens.
        #[arg(long)]
        deploy: Option<String>,
    },
    /// Revoke a token by id: every api process refuses it within a second.
    Revoke {
        /// The token id (`depot token list` shows it).
        id: String,
    },
}

/// Token scopes.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scope {
    Read,
    PublishNew,
    PublishUpdate,
    Yank,
    ChangeOwners,
}

impl Scope {
    fn event(self) -> depot_events::TokenScope {
        use depot_events::TokenScope as S;
        match self {
            Scope::Read => S::Read,
            Scope::PublishNew => S::PublishNew,
            Scope::PublishUpdate => S::PublishUpdate,
            Scope::Yank => S::Yank,
            Scope::ChangeOwners => S::ChangeOwners,
        }
    }
}

fn holder(
    user: Option<String>,
    deploy: Option<String>,
) -> anyhow::Result<Option<accounts::Holder>> {
    Ok(match (user, deploy) {
        (Some(user), _) => Some(accounts::Holder::User(depot_index::Login::parse(&user)?)),
        (None, Some(name)) => Some(accounts::Holder::Deploy(depot_index::Login::parse(&name)?)),
        (None, None) => None,
    })
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
        Command::Audit { krate, user, since } => {
            let filter =
                audit::AuditFilter::parse(krate.as_deref(), user.as_deref(), since.as_deref())?;
            audit::audit(&settings, &filter).await
        }
        Command::User { command } => match command {
            UserCommand::Create { login, admin } => {
                accounts::create_user(&settings, &login, admin).await
            }
            UserCommand::List => accounts::list_users(&settings).await,
            UserCommand::Disable { login } => {
                accounts::set_user_disabled(&settings, &login, true).await
            }
            UserCommand::Enable { login } => {
                accounts::set_user_disabled(&settings, &login, false).await
            }
        },
        Command::Webhook { command } => match command {
            WebhookCommand::Add {
                url,
                events,
                crates,
                description,
            } => {
                let request = depot_webhooks::SubscriptionRequest {
                    url,
                    event_types: events,
                    crates,
                    description,
                };
                webhooks::add(&settings, request).await
            }
            WebhookCommand::List => webhooks::list(&settings).await,
            WebhookCommand::Remove { id } => webhooks::remove(&settings, &id).await,
            WebhookCommand::Deliveries { id, limit } => {
                webhooks::deliveries(&settings, &id, limit).await
            }
            WebhookCommand::Replay {
                from,
                to,
                subscription,
            } => webhooks::replay(&settings, from, to, subscription.as_deref()).await,
        },
        Command::Mirror { command } => match command {
            MirrorCommand::AllowName { name, withdraw } => {
                accounts::allow_upstream_name(&settings, &name, !withdraw).await
            }
            MirrorCommand::Sync {
                url,
                token,
                locks,
                jobs,
                crates,
            } => {
                anyhow::ensure!(
                    !locks.is_empty() || !crates.is_empty(),
                    "name crates or give --lock"
                );
                let url = url.unwrap_or_else(|| settings.public_url(settings.listen));
                mirror::sync(mirror::SyncRequest {
                    url,
                    token,
                    locks,
                    crates,
                    jobs,
                })
                .await
            }
            MirrorCommand::Export { dir } => mirror::export(&settings, &dir).await,
            MirrorCommand::Import { dir } => mirror::import(&settings, &dir).await,
        },
        Command::Docs {
            command:
                DocsCommand::Upload {
                    registry_url,
                    token,
                    name,
                    vers,
                    dir,
                },
        } => {
            docs::upload(docs::UploadRequest {
                url: registry_url.unwrap_or_else(|| settings.public_url(settings.listen)),
                token,
                name,
                version: vers,
                dir,
            })
            .await
        }
        Command::Token { command } => match command {
            TokenCommand::Create {
                user,
                deploy,
                label,
                scopes,
                read,
                write,
                crates,
                expires_in_days,
                no_expiry,
            } => {
                let holder = holder(user, deploy)?.expect("clap requires --user or --deploy");
                let mut scopes: Vec<_> = scopes.into_iter().map(Scope::event).collect();
                if read {
                    scopes.push(depot_events::TokenScope::Read);
                }
                if write {
                    scopes.extend(depot_events::TokenScope::WRITE);
                }
                let mut unique = Vec::new();
                for scope in scopes {
                    if !unique.contains(&scope) {
                        unique.push(scope);
                    }
                }
                let scopes = unique;
                let spec = accounts::TokenSpec {
                    label,
                    scopes,
                    crates,
                    expires_in_days,
                    no_expiry,
                };
                accounts::create_token(&settings, holder, spec).await
            }
            TokenCommand::List { user, deploy } => {
                accounts::list_tokens(&settings, holder(user, deploy)?).await
            }
            TokenCommand::Revoke { id } => accounts::revoke_token(&settings, &id).await,
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
