//! Accounts for admins: `depot user create|list|disable|enable` and `depot token
//! create|list|revoke`, and the first user of a new registry.
//!
//! Every change is an event appended to the log (users and their tokens on
//! `principal.<login>`, deploy identities on `deploy.<name>`); listings read the read models.
//! A secret is printed once, alone on the last line of standard output, and kept nowhere:
//! only its sha256 is recorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use depot_eventlog::{EventLog, Expected};
use depot_events::{
    Envelope, Event, Timestamp, TokenIssued, TokenKind, TokenRevoked, TokenScope, UserChanged,
    UserCreated,
};
use depot_index::Login;

use crate::config::Settings;
use crate::roles::{open_log, open_store};

/// The actor of changes made on the command line.
const ADMIN_ACTOR: &str = "depot:admin";

/// Who a new token acts for.
#[derive(Debug, Clone)]
pub(crate) enum Holder {
    /// A user's personal token.
    User(Login),
    /// A deploy token of no person, by name.
    Deploy(Login),
}

impl Holder {
    fn subject(&self) -> String {
        match self {
            Holder::User(login) => depot_events::subject::principal(login),
            Holder::Deploy(name) => depot_events::subject::deploy(name),
        }
    }

    fn identity(&self) -> String {
        match self {
            Holder::User(login) => login.to_lowercase().to_string(),
            Holder::Deploy(name) => format!("{}{}", depot_auth::DEPLOY_PREFIX, name.to_lowercase()),
        }
    }
}

/// What a new token may do.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenSpec {
    pub(crate) label: Option<String>,
    /// Scopes asked for; empty: the kind's default (personal: all; deploy: read only).
    pub(crate) scopes: Vec<TokenScope>,
    pub(crate) crates: Vec<String>,
    /// Days until expiry; `None`: the default lifetime.
    pub(crate) expires_in_days: Option<u32>,
    /// Never expire (personal tokens; deploy tokens never expire unless asked).
    pub(crate) no_expiry: bool,
}

async fn append(
    log: &dyn EventLog,
    subject: &str,
    actor: &str,
    event: Event,
) -> anyhow::Result<u64> {
    append_expecting(log, subject, actor, event, Expected::Any).await
}

/// Appends `event` to `subject` under the condition `expected`.
async fn append_expecting(
    log: &dyn EventLog,
    subject: &str,
    actor: &str,
    event: Event,
    expected: Expected,
) -> anyhow::Result<u64> {
    let envelope = Envelope::new(actor, event);
    let appended = log
        .append(
            subject,
            expected,
            &envelope.id.to_string(),
            Bytes::from(envelope.encode()),
        )
        .await
        .map_err(|e| {
            if e.is_conflict() {
                anyhow::anyhow!("`{subject}` was changed at the same time; run the command again")
            } else {
                anyhow::Error::new(e).context("cannot record the change in the event log")
            }
        })?;
    Ok(appended.seq)
}

/// A user as the event log says, which the read models may not show yet: a command that
/// ran a moment ago (`depot user create`) has appended events the projector has not folded.
#[derive(Debug, Default)]
struct UserFacts {
    /// The login as first created (its display form), if the user exists.
    display: Option<String>,
    admin: bool,
    disabled: bool,
    /// The log sequence of the subject's last event (0: none), for a conditional append.
    last_seq: u64,
}

/// Folds the events of `login`'s subject as the projector folds users: `user_created` makes
/// or updates the user (setting `admin`), `user_disabled`/`user_enabled` toggle it.
async fn user_facts(log: &dyn EventLog, login: &Login) -> anyhow::Result<UserFacts> {
    let subject = depot_events::subject::principal(login);
    let mut facts = UserFacts::default();
    for stored in log
        .read_subject(&subject, 0)
        .await
        .context("cannot read the user's events")?
    {
        facts.last_seq = stored.seq;
        let envelope = Envelope::decode_for_fold(&stored.payload)
            .with_context(|| format!("event {} of `{subject}` does not decode", stored.seq))?;
        match envelope.event {
            Event::UserCreated(user) => {
                facts.display.get_or_insert(user.login);
                facts.admin = user.admin;
            }
            Event::UserDisabled(_) => facts.disabled = true,
            Event::UserEnabled(_) => facts.disabled = false,
            _ => {}
        }
    }
    Ok(facts)
}

/// Appends `event` to `login`'s subject if nothing was appended there since `facts` were
/// read; a concurrent change is an error asking to run the command again.
async fn append_user_event(
    log: &dyn EventLog,
    login: &Login,
    facts: &UserFacts,
    event: Event,
) -> anyhow::Result<u64> {
    let subject = depot_events::subject::principal(login);
    append_expecting(
        log,
        &subject,
        ADMIN_ACTOR,
        event,
        Expected::Seq(facts.last_seq),
    )
    .await
}

/// Appends `token_issued` for a new random secret; returns the secret and the token id.
async fn issue(
    log: &dyn EventLog,
    holder: &Holder,
    spec: TokenSpec,
    default_lifetime: Option<Duration>,
) -> anyhow::Result<(String, uuid::Uuid)> {
    for pattern in &spec.crates {
        depot_auth::validate_crate_pattern(pattern).map_err(anyhow::Error::msg)?;
    }
    anyhow::ensure!(
        spec.crates.len() <= depot_auth::MAX_PATTERNS,
        "at most {} crate patterns per token",
        depot_auth::MAX_PATTERNS
    );
    let (kind, scopes, lifetime) = match holder {
        Holder::User(_) => {
            let lifetime = match (spec.no_expiry, spec.expires_in_days) {
                (true, _) => None,
                (false, Some(days)) => Some(days_to_duration(days)),
                (false, None) => default_lifetime,
            };
            (TokenKind::Personal, spec.scopes, lifetime)
        }
        Holder::Deploy(name) => {
            let scopes = if spec.scopes.is_empty() {
                vec![TokenScope::Read]
            } else {
                spec.scopes
            };
            let writes = scopes.iter().any(|s| *s != TokenScope::Read);
            anyhow::ensure!(
                !writes || !spec.crates.is_empty(),
                "a deploy token that may write must name the crates it may write with --crate \
                 (`--crate '*'` for every crate); deploy `{name}` asked for {}",
                scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let lifetime = spec.expires_in_days.map(days_to_duration);
            (TokenKind::Deploy, scopes, lifetime)
        }
    };
    let secret = depot_auth::generate_secret();
    let now = Timestamp::now();
    let token = TokenIssued {
        token_id: uuid::Uuid::now_v7(),
        user: holder.identity(),
        secret_sha256: depot_auth::hash_secret(&secret),
        kind,
        label: spec.label,
        scopes,
        crates: spec.crates,
        read_crates: None,
        expires_at: lifetime.map(|lifetime| {
            Timestamp::from_unix_millis(
                now.unix_millis()
                    .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
            )
        }),
        created_by: Some(ADMIN_ACTOR.to_owned()),
        oidc: None,
    };
    let token_id = token.token_id;
    append(
        log,
        &holder.subject(),
        ADMIN_ACTOR,
        Event::TokenIssued(token),
    )
    .await?;
    Ok((secret, token_id))
}

fn days_to_duration(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 24 * 3600)
}

/// `depot token create`: prints the secret, alone on the last line of standard output. A user
/// named for the first time is created (not as an admin).
pub(crate) async fn create_token(
    settings: &Settings,
    holder: Holder,
    spec: TokenSpec,
) -> anyhow::Result<()> {
    let backend = open_log(settings).await?;
    let log = backend.log.as_ref();
    if let Holder::User(login) = &holder {
        let facts = user_facts(log, login).await?;
        if facts.display.is_none() {
            let created = Event::UserCreated(UserCreated {
                login: login.to_string(),
                admin: false,
            });
            append_user_event(log, login, &facts, created).await?;
            note(&format!("created the user `{login}`"));
        } else if facts.disabled {
            anyhow::bail!("the user `{login}` is disabled; `depot user enable {login}` first")
        }
    }
    let (secret, token_id) = issue(log, &holder, spec, settings.default_token_lifetime()).await?;
    note(&format!(
        "created token {token_id} for `{}`; it is shown only once and works once the projector \
         has applied it:",
        holder.identity()
    ));
    say(&secret);
    Ok(())
}

/// `depot token list [--user LOGIN | --deploy NAME]`.
pub(crate) async fn list_tokens(settings: &Settings, holder: Option<Holder>) -> anyhow::Result<()> {
    let store = open_store(settings, 1).await?;
    let tokens = store
        .tokens(holder.as_ref().map(Holder::identity).as_deref())
        .await?;
    say(
        "ID                                    KIND      HOLDER                STATE    EXPIRES                   LAST USED                 SCOPES / CRATES / LABEL",
    );
    let now = Timestamp::now();
    for token in tokens {
        let state = if token.revoked {
            "revoked"
        } else if token.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else if token.user_disabled {
            "disabled"
        } else {
            "active"
        };
        let list = |items: Vec<&str>| {
            if items.is_empty() {
                "*".to_owned()
            } else {
                items.join(",")
            }
        };
        say(&format!(
            "{:<37} {:<9} {:<21} {:<8} {:<25} {:<25} {} / {} / {}",
            token.token_id,
            token.kind.as_str(),
            token.login,
            state,
            token
                .expires_at
                .map_or_else(|| "never".to_owned(), Timestamp::to_rfc3339),
            token
                .last_used_at
                .map_or_else(|| "-".to_owned(), Timestamp::to_rfc3339),
            list(token.scopes.iter().map(|s| s.as_str()).collect()),
            match &token.read_crates {
                Some(read) => format!(
                    "{} (read: {})",
                    list(token.crates.iter().map(String::as_str).collect()),
                    list(read.iter().map(String::as_str).collect())
                ),
                None => list(token.crates.iter().map(String::as_str).collect()),
            },
            token.label.as_deref().unwrap_or("-"),
        ));
    }
    Ok(())
}

/// `depot token revoke ID`.
pub(crate) async fn revoke_token(settings: &Settings, id: &str) -> anyhow::Result<()> {
    let token_id =
        uuid::Uuid::parse_str(id).context("a token id is a UUID, as `depot token list` shows")?;
    let store = open_store(settings, 1).await?;
    let token = store
        .token(&token_id.to_string())
        .await?
        .with_context(|| format!("no token {token_id}"))?;
    if token.revoked {
        note(&format!("token {token_id} was already revoked"));
        return Ok(());
    }
    let subject = subject_of(&token.login, &token_id)?;
    let backend = open_log(settings).await?;
    append(
        backend.log.as_ref(),
        &subject,
        ADMIN_ACTOR,
        Event::TokenRevoked(TokenRevoked { token_id }),
    )
    .await?;
    note(&format!(
        "revoked token {token_id} of `{}`; every api process refuses it within a second",
        token.login
    ));
    Ok(())
}

/// The subject of a token's revocation: its holder's (`alice`, `deploy:name`), or the CI
/// token's own.
fn subject_of(identity: &str, token_id: &uuid::Uuid) -> anyhow::Result<String> {
    if let Some(name) = identity.strip_prefix(depot_auth::DEPLOY_PREFIX) {
        Ok(depot_events::subject::deploy(&Login::parse(name)?))
    } else if identity.starts_with(depot_auth::CI_PREFIX) {
        Ok(depot_events::subject::ci_token(token_id))
    } else {
        Ok(depot_events::subject::principal(&Login::parse(identity)?))
    }
}

/// `depot user create LOGIN [--admin]`.
pub(crate) async fn create_user(
    settings: &Settings,
    login: &str,
    admin: bool,
) -> anyhow::Result<()> {
    let login = Login::parse(login)?;
    let backend = open_log(settings).await?;
    let log = backend.log.as_ref();
    let facts = user_facts(log, &login).await?;
    // An existing user can only be made an admin (`--admin` again); anything else is a
    // duplicate.
    if let Some(display) = &facts.display
        && (facts.admin || !admin)
    {
        anyhow::bail!("the user `{display}` already exists");
    }
    let created = Event::UserCreated(UserCreated {
        login: login.to_string(),
        admin,
    });
    append_user_event(log, &login, &facts, created).await?;
    note(&format!(
        "created the user `{login}`{}; give them a token with `depot token create --user {login}`",
        if admin { " (admin)" } else { "" }
    ));
    Ok(())
}

/// `depot user list`.
pub(crate) async fn list_users(settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings, 1).await?;
    say("LOGIN                                    ROLE   STATE     CREATED");
    for user in store.users().await? {
        say(&format!(
            "{:<40} {:<6} {:<9} {}",
            user.display,
            if user.admin { "admin" } else { "user" },
            if user.disabled { "disabled" } else { "active" },
            user.created_at.to_rfc3339()
        ));
    }
    Ok(())
}

/// `depot user disable|enable LOGIN`: a disabled user's tokens stop working on every api
/// process within a second.
pub(crate) async fn set_user_disabled(
    settings: &Settings,
    login: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let login = Login::parse(login)?;
    let backend = open_log(settings).await?;
    let log = backend.log.as_ref();
    let facts = user_facts(log, &login).await?;
    let Some(display) = facts.display.clone() else {
        anyhow::bail!("no user `{login}`");
    };
    let change = UserChanged {
        login: login.to_string(),
    };
    let event = if disabled {
        Event::UserDisabled(change)
    } else {
        Event::UserEnabled(change)
    };
    append_user_event(log, &login, &facts, event).await?;
    note(&format!(
        "{} the user `{display}`",
        if disabled { "disabled" } else { "enabled" },
    ));
    Ok(())
}

/// On the first start of a new registry (an empty event log), creates the admin user `admin`
/// with a token, writes the token to `<data dir>/admin-token` (readable by the owner only) and
/// prints where it is and how to point cargo at Depot. The secret itself is never printed, so
/// it cannot end up in a service's log.
pub(crate) async fn welcome_first_user(
    log: &dyn EventLog,
    settings: &Settings,
    public_url: &str,
) -> anyhow::Result<()> {
    if log.head().await? > 0 {
        return Ok(());
    }
    let login = Login::parse("admin")?;
    let holder = Holder::User(login.clone());
    append(
        log,
        &holder.subject(),
        ADMIN_ACTOR,
        Event::UserCreated(UserCreated {
            login: login.to_string(),
            admin: true,
        }),
    )
    .await?;
    let spec = TokenSpec {
        label: Some("created on first start".to_owned()),
        ..TokenSpec::default()
    };
    let (secret, _) = issue(log, &holder, spec, settings.default_token_lifetime()).await?;
    let path = write_secret_file(&settings.data_dir, &secret).await?;
    let path = path.display();
    say(&format!(
        "\nDepot is ready. A first user, `admin` (an admin), was created; its token is in\n\n    \
         {path}\n\n(readable only by you; it is not printed, so it stays out of logs).\n\n\
         Add Depot to ~/.cargo/config.toml:\n\n    [registries.depot]\n    \
         index = \"sparse+{public_url}/index/\"\n    credential-provider = [\"cargo:token\"]\n\n\
         and log in (cargo reads the token from standard input):\n\n    \
         cargo login --registry depot < {path}\n\n\
         More users and tokens: depot user create NAME, depot token create --user NAME\n"
    ));
    Ok(())
}

/// Writes the first admin token to `<dir>/admin-token`, created with mode 0600.
async fn write_secret_file(dir: &Path, secret: &str) -> anyhow::Result<PathBuf> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("admin-token");
    let contents = format!("{secret}\n");
    let target = path.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&target)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    })
    .await?
    .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

#[expect(clippy::print_stderr, reason = "CLI output for humans")]
fn note(text: &str) {
    eprintln!("{text}");
}

fn say(text: &str) {
    println!("{text}");
}

/// `depot mirror allow-name`: lets a new private crate take a name that exists upstream (or
/// withdraws that), recorded on the crate's subject.
pub(crate) async fn allow_upstream_name(
    settings: &Settings,
    name: &str,
    allowed: bool,
) -> anyhow::Result<()> {
    let name = depot_index::CrateName::parse(name)?;
    let backend = open_log(settings).await?;
    let seq = append(
        backend.log.as_ref(),
        &depot_events::subject::krate(&name.canonical()),
        ADMIN_ACTOR,
        Event::UpstreamNameAllowed(depot_events::UpstreamNameAllowed {
            name: name.to_string(),
            allowed,
        }),
    )
    .await?;
    say(&if allowed {
        format!(
            "`{name}` may be published as a new crate although the upstream registry has it \
             (event {seq})"
        )
    } else {
        format!(
            "`{name}` is guarded again: a new crate of that name is refused while the upstream \
             registry has one (event {seq})"
        )
    });
    Ok(())
}
