//! [`CargoHome`]: a private `CARGO_HOME` configured for the registry under test, and the cargo
//! commands tests run with it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use toml::{Table, Value};

use crate::cargo_command::{CargoCommand, CargoOutput, DEFAULT_CARGO_TIMEOUT};
use crate::cargo_project::CargoProject;

/// Name of the empty directory source that stands in for crates.io.
const NO_CRATES_IO: &str = "depot-testkit-no-crates-io";

/// A throwaway `CARGO_HOME` whose `config.toml` names one registry, the Depot under test.
///
/// - `[registries.<name>] index = "sparse+http://…/index/"` with
///   `credential-provider = ["cargo:token"]`, and the token (if any) in `credentials.toml`;
/// - crates.io is replaced by an empty local directory source, so no command can ever reach
///   the network for it: a dependency that is not in the test registry fails at once with
///   ``no matching package named `…` found`` instead of downloading;
/// - every command runs with a scrubbed environment (no `CARGO_*`, `RUSTFLAGS` or compiler
///   wrappers from the enclosing `cargo test`), `CARGO_TERM_COLOR=never`, a per-project
///   `CARGO_TARGET_DIR`, empty stdin and a time limit (180 s by default).
///
/// The helpers are `async` and run cargo on a blocking thread, because the Depot under test
/// usually runs on the test's own tokio runtime. Each returns a [`CargoOutput`]; call
/// [`CargoOutput::assert_success`] or [`CargoOutput::assert_failure_contains`] on it.
#[derive(Debug)]
pub struct CargoHome {
    /// Owns the directory tree; removed on drop.
    _root: TempDir,
    /// The `CARGO_HOME` (`<root>/home`).
    home: PathBuf,
    /// Working directory of commands outside any project (`<root>/work`).
    work: PathBuf,
    /// Target directory of commands outside any project (`<root>/target`).
    target: PathBuf,
    /// The empty directory source replacing crates.io (`<root>/no-crates-io`).
    no_crates_io: PathBuf,
    /// Whether crates.io is replaced by this registry (its cache of crates.io) rather than by
    /// an empty directory.
    mirrors_crates_io: bool,
    registry: String,
    index_url: String,
    timeout: Duration,
}

impl CargoHome {
    /// Creates the home for `registry_name` at `index_url` (for example
    /// `sparse+http://127.0.0.1:PORT/index/`; a bare `http://` URL gets `sparse+` prepended),
    /// with `token` as the registry's token, or no token at all.
    ///
    /// # Panics
    ///
    /// If the URL does not end in `/` (cargo refuses such sparse URLs), or on I/O errors.
    #[track_caller]
    pub fn new(registry_name: &str, index_url: &str, token: Option<&str>) -> Self {
        assert!(
            index_url.ends_with('/'),
            "sparse index URL must end in `/`: {index_url}"
        );
        let index_url = if index_url.starts_with("sparse+") {
            index_url.to_owned()
        } else {
            format!("sparse+{index_url}")
        };
        let root = tempfile::Builder::new()
            .prefix("depot-cargo-home-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let home = Self {
            home: root.path().join("home"),
            work: root.path().join("work"),
            target: root.path().join("target"),
            no_crates_io: root.path().join("no-crates-io"),
            mirrors_crates_io: false,
            _root: root,
            registry: registry_name.to_owned(),
            index_url,
            timeout: DEFAULT_CARGO_TIMEOUT,
        };
        for dir in [&home.home, &home.work, &home.no_crates_io] {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        write(&home.path().join("config.toml"), &home.config_toml());
        home.set_token(token);
        home
    }

    /// Replaces crates.io with this home's registry (cargo's source replacement), for a
    /// registry that caches crates.io: dependencies without a `registry` come from it.
    #[must_use]
    pub fn mirroring_crates_io(mut self) -> Self {
        self.mirrors_crates_io = true;
        write(&self.path().join("config.toml"), &self.config_toml());
        self
    }

    /// Uses `timeout` instead of 180 s as the time limit of each command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `CARGO_HOME` directory.
    pub fn path(&self) -> &Path {
        &self.home
    }

    /// The registry's name, as used with `--registry`.
    pub fn registry_name(&self) -> &str {
        &self.registry
    }

    /// The index URL as written in `config.toml` (with the `sparse+` prefix).
    pub fn index_url(&self) -> &str {
        &self.index_url
    }

    /// Replaces the token in `credentials.toml` (`None` removes it), so one home can act as
    /// different users in turn.
    #[track_caller]
    pub fn set_token(&self, token: Option<&str>) {
        let path = self.path().join("credentials.toml");
        match token {
            Some(token) => {
                let mut registry = Table::new();
                registry.insert("token".into(), token.into());
                let mut registries = Table::new();
                registries.insert(self.registry.clone(), registry.into());
                let mut credentials = Table::new();
                credentials.insert("registries".into(), registries.into());
                write(&path, &credentials.to_string());
            }
            None => {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    panic!("cannot remove {}: {e}", path.display());
                }
            }
        }
    }

    /// A cargo command in `project`'s directory, with the project's own target dir.
    ///
    /// # Panics
    ///
    /// If the project's generated manifest names another registry than this home
    /// (see [`CargoProject::registry`]).
    #[track_caller]
    pub fn command(&self, project: &CargoProject) -> CargoCommand {
        if let Some(registry) = project.generated_registry() {
            assert!(
                registry == self.registry,
                "project `{}` uses registry `{registry}` but this CargoHome configures `{}`: \
                 build the project with `.registry(\"{}\")`",
                project.name(),
                self.registry,
                self.registry,
            );
        }
        CargoCommand::new(project.path(), self.path(), &project.target_dir()).timeout(self.timeout)
    }

    /// A cargo command outside any project (for `yank`, `owner`, `search`, `login`, …).
    pub fn global_command(&self) -> CargoCommand {
        CargoCommand::new(&self.work, &self.home, &self.target).timeout(self.timeout)
    }

    /// Runs `cargo <args>` in `project`'s directory. Add `--registry` yourself where needed
    /// (see [`CargoHome::registry_name`]).
    pub async fn run(&self, project: &CargoProject, args: &[&str]) -> CargoOutput {
        self.command(project).args(args).run().await
    }

    /// Runs `cargo <args>` outside any project.
    pub async fn run_global(&self, args: &[&str]) -> CargoOutput {
        self.global_command().args(args).run().await
    }

    /// `cargo publish --registry <name> --no-verify --allow-dirty` in `project`.
    pub async fn publish(&self, project: &CargoProject) -> CargoOutput {
        self.command(project)
            .args(["publish", "--no-verify", "--allow-dirty", "--registry"])
            .arg(&self.registry)
            .run()
            .await
    }

    /// `cargo yank --registry <name> --version <vers> <crate>`.
    pub async fn yank(&self, name: &str, vers: &str) -> CargoOutput {
        self.registry_command(&["yank", "--version", vers, name])
            .run()
            .await
    }

    /// `cargo yank --undo --registry <name> --version <vers> <crate>`.
    pub async fn unyank(&self, name: &str, vers: &str) -> CargoOutput {
        self.registry_command(&["yank", "--undo", "--version", vers, name])
            .run()
            .await
    }

    /// `cargo owner --add <login>… <crate>`.
    pub async fn owner_add(&self, name: &str, logins: &[&str]) -> CargoOutput {
        self.owner_command("--add", name, logins).run().await
    }

    /// `cargo owner --remove <login>… <crate>`.
    pub async fn owner_remove(&self, name: &str, logins: &[&str]) -> CargoOutput {
        self.owner_command("--remove", name, logins).run().await
    }

    /// `cargo owner --list <crate>`.
    pub async fn owner_list(&self, name: &str) -> CargoOutput {
        self.registry_command(&["owner", "--list", name])
            .run()
            .await
    }

    /// `cargo search --registry <name> <query>`.
    pub async fn search(&self, query: &str) -> CargoOutput {
        self.registry_command(&["search", query]).run().await
    }

    /// `cargo login --registry <name>` with `token` on standard input (the non-deprecated
    /// way); the `cargo:token` provider then writes it to `credentials.toml`.
    pub async fn login(&self, token: &str) -> CargoOutput {
        self.registry_command(&["login"])
            .stdin(format!("{token}\n"))
            .run()
            .await
    }

    /// `cargo build` in `project` (downloads and compiles its registry dependencies).
    pub async fn build(&self, project: &CargoProject) -> CargoOutput {
        self.run(project, &["build"]).await
    }

    /// `cargo generate-lockfile` in `project` (resolves against the index, downloads nothing).
    pub async fn generate_lockfile(&self, project: &CargoProject) -> CargoOutput {
        self.run(project, &["generate-lockfile"]).await
    }

    fn registry_command(&self, args: &[&str]) -> CargoCommand {
        self.global_command()
            .args(args)
            .arg("--registry")
            .arg(&self.registry)
    }

    fn owner_command(&self, flag: &str, name: &str, logins: &[&str]) -> CargoCommand {
        let mut command = self.registry_command(&["owner"]);
        for login in logins {
            command = command.arg(flag).arg(login);
        }
        command.arg(name)
    }

    fn config_toml(&self) -> String {
        let mut config = Table::new();

        let mut registry = Table::new();
        registry.insert("index".into(), self.index_url.clone().into());
        registry.insert(
            "credential-provider".into(),
            Value::Array(vec!["cargo:token".into()]),
        );
        let mut registries = Table::new();
        registries.insert(self.registry.clone(), registry.into());
        config.insert("registries".into(), registries.into());

        // crates.io is replaced by an empty directory, or (a registry that caches crates.io)
        // by the registry itself, by its name in `[registries]`, so cargo sends its token.
        let mut crates_io = Table::new();
        let mut source = Table::new();
        if self.mirrors_crates_io {
            crates_io.insert("replace-with".into(), self.registry.clone().into());
        } else {
            crates_io.insert("replace-with".into(), NO_CRATES_IO.into());
            let mut no_crates_io = Table::new();
            no_crates_io.insert(
                "directory".into(),
                self.no_crates_io.to_string_lossy().into_owned().into(),
            );
            source.insert(NO_CRATES_IO.into(), no_crates_io.into());
        }
        source.insert("crates-io".into(), crates_io.into());
        config.insert("source".into(), source.into());

        let mut net = Table::new();
        net.insert("git-fetch-with-cli".into(), false.into());
        config.insert("net".into(), net.into());

        let mut cargo_new = Table::new();
        cargo_new.insert("vcs".into(), "none".into());
        config.insert("cargo-new".into(), cargo_new.into());

        config.to_string()
    }
}

/// Writes a file, panicking with its path on failure.
#[track_caller]
pub(crate) fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    std::fs::write(path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
