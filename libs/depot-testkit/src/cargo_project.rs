//! [`CargoProject`]: a generated cargo package in a temp dir, and its dependencies ([`Dep`]).

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use toml::{Table, Value};

use crate::cargo_home::write;

/// The registry name projects use unless told otherwise ([`CargoProject::registry`]).
pub const DEFAULT_REGISTRY: &str = "depot";

/// Which dependency table a [`Dep`] goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepKind {
    /// `[dependencies]`.
    Normal,
    /// `[dev-dependencies]`.
    Dev,
    /// `[build-dependencies]`.
    Build,
}

impl DepKind {
    fn table(self) -> &'static str {
        match self {
            Self::Normal => "dependencies",
            Self::Dev => "dev-dependencies",
            Self::Build => "build-dependencies",
        }
    }
}

/// A dependency on a crate in the project's registry, for [`CargoProject::with_dep`].
///
/// ```
/// use depot_testkit::Dep;
/// let dep = Dep::new("serde-ish", "^1.2").optional().no_default_features().features(&["derive"]);
/// let renamed = Dep::new("alias", "0.1").package("real-name").target("cfg(unix)").dev();
/// # let _ = (dep, renamed);
/// ```
#[derive(Debug, Clone)]
pub struct Dep {
    name: String,
    req: String,
    kind: DepKind,
    package: Option<String>,
    optional: bool,
    default_features: bool,
    features: Vec<String>,
    target: Option<String>,
}

impl Dep {
    /// A normal dependency `name = { version = req, registry = "<project's registry>" }`.
    pub fn new(name: &str, req: &str) -> Self {
        Self {
            name: name.to_owned(),
            req: req.to_owned(),
            kind: DepKind::Normal,
            package: None,
            optional: false,
            default_features: true,
            features: Vec::new(),
            target: None,
        }
    }

    /// Puts it in `[dev-dependencies]`.
    pub fn dev(self) -> Self {
        self.kind(DepKind::Dev)
    }

    /// Puts it in `[build-dependencies]`.
    pub fn build(self) -> Self {
        self.kind(DepKind::Build)
    }

    /// Puts it in the given dependency table.
    pub fn kind(mut self, kind: DepKind) -> Self {
        self.kind = kind;
        self
    }

    /// Makes the name an alias of the registry crate `package` (`package = "…"`).
    pub fn package(mut self, package: &str) -> Self {
        self.package = Some(package.to_owned());
        self
    }

    /// `optional = true`.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// `default-features = false`.
    pub fn no_default_features(mut self) -> Self {
        self.default_features = false;
        self
    }

    /// `features = [...]`.
    pub fn features(mut self, features: &[&str]) -> Self {
        self.features = features.iter().map(|&f| f.to_owned()).collect();
        self
    }

    /// Puts it under `[target.'<cfg>'.…]`, for example `cfg(unix)` or `x86_64-unknown-linux-gnu`.
    pub fn target(mut self, cfg: &str) -> Self {
        self.target = Some(cfg.to_owned());
        self
    }

    fn to_value(&self, registry: &str) -> Value {
        let mut spec = Table::new();
        spec.insert("version".into(), self.req.clone().into());
        spec.insert("registry".into(), registry.into());
        if let Some(package) = &self.package {
            spec.insert("package".into(), package.clone().into());
        }
        if self.optional {
            spec.insert("optional".into(), true.into());
        }
        if !self.default_features {
            spec.insert("default-features".into(), false.into());
        }
        if !self.features.is_empty() {
            spec.insert("features".into(), strings(&self.features));
        }
        spec.into()
    }
}

/// A cargo package generated in a temp dir (removed on drop), to publish or build with the
/// real cargo through a [`crate::CargoHome`].
///
/// Every builder call rewrites the files on disk at once. The manifest has
/// `publish = ["<registry>"]`, a `description` and a `license` (so cargo doesn't warn), edition
/// 2021, and an empty `[workspace]` so no enclosing directory can capture it. Dependencies come
/// from the test registry (`{ version = …, registry = "<registry>" }`), never crates.io.
///
/// ```no_run
/// use depot_testkit::CargoProject;
/// let lib = CargoProject::new_lib("dep-a", "0.1.0")
///     .dep("dep-b", "^0.2")
///     .dev_dep("dep-c", "1")
///     .feature("extra", &["dep-b/extra"])
///     .lib_rs("pub fn a() -> u32 { 1 }");
/// let app = CargoProject::new_bin("consumer", "0.1.0").dep("dep-a", "0.1");
/// # let _ = (lib, app);
/// ```
#[derive(Debug)]
pub struct CargoProject {
    _root: TempDir,
    dir: PathBuf,
    target_dir: PathBuf,
    name: String,
    version: String,
    registry: String,
    package_fields: Table,
    deps: Vec<Dep>,
    features: Vec<(String, Vec<String>)>,
    extra_manifest: String,
    raw_manifest: Option<String>,
}

impl CargoProject {
    /// A library package with a small `src/lib.rs`.
    #[track_caller]
    pub fn new_lib(name: &str, version: &str) -> Self {
        let code = format!(
            "//! Test crate `{name}`.\n\n/// The crate's name.\npub fn name() -> &'static str {{\n    \"{name}\"\n}}\n"
        );
        Self::new(name, version).file("src/lib.rs", &code)
    }

    /// A binary package with a `src/main.rs` that prints the crate's name.
    #[track_caller]
    pub fn new_bin(name: &str, version: &str) -> Self {
        let code = format!("fn main() {{\n    println!(\"{name}\");\n}}\n");
        Self::new(name, version).file("src/main.rs", &code)
    }

    #[track_caller]
    fn new(name: &str, version: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("depot-cargo-project-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        // The package and its target dir are siblings, so packaging never sees `target/`.
        let dir = root.path().join(name);
        let target_dir = root.path().join("target");
        let mut package_fields = Table::new();
        package_fields.insert(
            "description".into(),
            format!("Test crate {name} made by depot-testkit.").into(),
        );
        package_fields.insert("license".into(), "MIT OR Apache-2.0".into());
        let project = Self {
            _root: root,
            dir,
            target_dir,
            name: name.to_owned(),
            version: version.to_owned(),
            registry: DEFAULT_REGISTRY.to_owned(),
            package_fields,
            deps: Vec::new(),
            features: Vec::new(),
            extra_manifest: String::new(),
            raw_manifest: None,
        };
        project.write_manifest();
        project
    }

    /// Uses `registry` (the name given to [`crate::CargoHome::new`]) for `publish` and for
    /// dependencies. It may be called at any point: the manifest is re-rendered on every change.
    #[track_caller]
    pub fn registry(mut self, registry: &str) -> Self {
        registry.clone_into(&mut self.registry);
        self.rewrite()
    }

    /// Changes the package version, for publishing the same crate again.
    #[track_caller]
    pub fn set_version(&mut self, version: &str) {
        version.clone_into(&mut self.version);
        self.write_manifest();
    }

    /// Adds `name = { version = req, registry = … }` to `[dependencies]`.
    #[track_caller]
    pub fn dep(self, name: &str, req: &str) -> Self {
        self.with_dep(Dep::new(name, req))
    }

    /// Adds a `[dev-dependencies]` entry.
    #[track_caller]
    pub fn dev_dep(self, name: &str, req: &str) -> Self {
        self.with_dep(Dep::new(name, req).dev())
    }

    /// Adds a `[build-dependencies]` entry.
    #[track_caller]
    pub fn build_dep(self, name: &str, req: &str) -> Self {
        self.with_dep(Dep::new(name, req).build())
    }

    /// Adds `alias = { package = "package", version = req, … }` to `[dependencies]`.
    #[track_caller]
    pub fn renamed_dep(self, alias: &str, package: &str, req: &str) -> Self {
        self.with_dep(Dep::new(alias, req).package(package))
    }

    /// Adds any dependency.
    #[track_caller]
    pub fn with_dep(mut self, dep: Dep) -> Self {
        self.deps.push(dep);
        self.rewrite()
    }

    /// Adds `name = [values…]` to `[features]`.
    #[track_caller]
    pub fn feature(mut self, name: &str, values: &[&str]) -> Self {
        let values = values.iter().map(|&v| v.to_owned()).collect();
        self.features.push((name.to_owned(), values));
        self.rewrite()
    }

    /// Sets `package.description`.
    #[track_caller]
    pub fn description(self, description: &str) -> Self {
        self.package_field("description", description)
    }

    /// Sets `package.license`.
    #[track_caller]
    pub fn license(self, license: &str) -> Self {
        self.package_field("license", license)
    }

    /// Sets any `[package]` key, for example `("rust-version", "1.70".into())`,
    /// `("links", "foo".into())`, `("edition", "2024".into())` or
    /// `("keywords", vec!["a", "b"].into())`.
    #[track_caller]
    pub fn package_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.package_fields.insert(key.to_owned(), value.into());
        self.rewrite()
    }

    /// Removes a `[package]` key, such as the default `description` or `license`.
    #[track_caller]
    pub fn without_package_field(mut self, key: &str) -> Self {
        self.package_fields.remove(key);
        self.rewrite()
    }

    /// Appends raw TOML to the generated manifest (new tables such as `[lints]` or
    /// `[package.metadata.x]`; keys already generated cannot be repeated).
    #[track_caller]
    pub fn append_manifest(mut self, toml: &str) -> Self {
        self.extra_manifest.push('\n');
        self.extra_manifest.push_str(toml);
        self.rewrite()
    }

    /// Writes a file relative to the package root. `Cargo.toml` replaces the generated
    /// manifest for good (later builder calls no longer change it).
    #[track_caller]
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        if path == "Cargo.toml" {
            self.raw_manifest = Some(contents.to_owned());
            return self.rewrite();
        }
        write(&self.dir.join(path), contents);
        self
    }

    /// Replaces `src/lib.rs`.
    #[track_caller]
    pub fn lib_rs(self, code: &str) -> Self {
        self.file("src/lib.rs", code)
    }

    /// Replaces `src/main.rs`.
    #[track_caller]
    pub fn main_rs(self, code: &str) -> Self {
        self.file("src/main.rs", code)
    }

    /// The package root (cargo's working directory).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The project's private `CARGO_TARGET_DIR` (a sibling of the package root).
    pub fn target_dir(&self) -> PathBuf {
        self.target_dir.clone()
    }

    /// The package name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The package version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where `cargo package` / `cargo publish` leave the `.crate` file.
    pub fn crate_file(&self) -> PathBuf {
        self.target_dir
            .join("package")
            .join(format!("{}-{}.crate", self.name, self.version))
    }

    /// The current `Cargo.lock`, if cargo has written one.
    pub fn lockfile(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("Cargo.lock")).ok()
    }

    /// The registry named in the generated manifest (`None` for a raw `Cargo.toml`).
    pub(crate) fn generated_registry(&self) -> Option<&str> {
        self.raw_manifest
            .is_none()
            .then_some(self.registry.as_str())
    }

    /// The manifest as written to `Cargo.toml`.
    pub fn manifest(&self) -> String {
        if let Some(raw) = &self.raw_manifest {
            return raw.clone();
        }
        let mut package = Table::new();
        package.insert("name".into(), self.name.clone().into());
        package.insert("version".into(), self.version.clone().into());
        package.insert("edition".into(), "2021".into());
        package.insert(
            "publish".into(),
            strings(std::slice::from_ref(&self.registry)),
        );
        package.extend(self.package_fields.clone());

        let mut manifest = Table::new();
        manifest.insert("package".into(), package.into());
        for dep in &self.deps {
            let scope = match &dep.target {
                Some(cfg) => sub_table(sub_table(&mut manifest, "target"), cfg),
                None => &mut manifest,
            };
            sub_table(scope, dep.kind.table())
                .insert(dep.name.clone(), dep.to_value(&self.registry));
        }
        if !self.features.is_empty() {
            let features = sub_table(&mut manifest, "features");
            for (name, values) in &self.features {
                features.insert(name.clone(), strings(values));
            }
        }
        manifest.insert("workspace".into(), Table::new().into());
        format!("{manifest}{}", self.extra_manifest)
    }

    #[track_caller]
    fn rewrite(self) -> Self {
        self.write_manifest();
        self
    }

    #[track_caller]
    fn write_manifest(&self) {
        write(&self.dir.join("Cargo.toml"), &self.manifest());
    }
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| s.clone().into()).collect())
}

/// The table under `key`, created if missing (replacing a non-table value).
fn sub_table<'a>(table: &'a mut Table, key: &str) -> &'a mut Table {
    let value = table
        .entry(key.to_owned())
        .or_insert_with(|| Table::new().into());
    if !value.is_table() {
        *value = Table::new().into();
    }
    match value {
        Value::Table(table) => table,
        _ => unreachable!("just made it a table"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_has_registry_deps_features_and_workspace() {
        let project = CargoProject::new_lib("my-lib", "0.2.0")
            .registry("reg")
            .dep("a", "1")
            .dev_dep("b", "^2")
            .build_dep("c", "=3.0.0")
            .renamed_dep("d_alias", "d-real", "0.4")
            .with_dep(
                Dep::new("e", "5")
                    .optional()
                    .no_default_features()
                    .features(&["x"]),
            )
            .with_dep(Dep::new("f", "6").target("cfg(unix)"))
            .feature("default", &["e"])
            .feature("x", &["e/x", "dep:e"])
            .package_field("rust-version", "1.70")
            .without_package_field("license");
        let manifest: Table = project.manifest().parse().expect("manifest is valid TOML");
        let on_disk = std::fs::read_to_string(project.path().join("Cargo.toml")).unwrap();
        assert_eq!(on_disk, project.manifest());

        let package = manifest["package"].as_table().unwrap();
        assert_eq!(package["name"].as_str(), Some("my-lib"));
        assert_eq!(package["version"].as_str(), Some("0.2.0"));
        assert_eq!(
            package["publish"].as_array().unwrap()[0].as_str(),
            Some("reg")
        );
        assert_eq!(package["rust-version"].as_str(), Some("1.70"));
        assert!(package.contains_key("description"));
        assert!(!package.contains_key("license"));

        let a = &manifest["dependencies"]["a"];
        assert_eq!(a["version"].as_str(), Some("1"));
        assert_eq!(a["registry"].as_str(), Some("reg"));
        assert_eq!(
            manifest["dev-dependencies"]["b"]["version"].as_str(),
            Some("^2")
        );
        assert_eq!(
            manifest["build-dependencies"]["c"]["version"].as_str(),
            Some("=3.0.0")
        );
        assert_eq!(
            manifest["dependencies"]["d_alias"]["package"].as_str(),
            Some("d-real")
        );
        let e = &manifest["dependencies"]["e"];
        assert_eq!(e["optional"].as_bool(), Some(true));
        assert_eq!(e["default-features"].as_bool(), Some(false));
        assert_eq!(e["features"][0].as_str(), Some("x"));
        let f = &manifest["target"]["cfg(unix)"]["dependencies"]["f"];
        assert_eq!(f["registry"].as_str(), Some("reg"));
        assert_eq!(manifest["features"]["x"][1].as_str(), Some("dep:e"));
        assert!(manifest["workspace"].as_table().unwrap().is_empty());
    }

    #[test]
    fn files_and_versions() {
        let mut project = CargoProject::new_bin("app", "1.0.0")
            .file("README.md", "# app\n")
            .append_manifest("[package.metadata.x]\ny = 1\n");
        assert!(project.path().join("src/main.rs").exists());
        assert!(project.path().join("README.md").exists());
        project.set_version("1.1.0");
        assert!(project.manifest().contains("1.1.0"));
        assert!(project.manifest().contains("[package.metadata.x]"));
        assert!(project.crate_file().ends_with("package/app-1.1.0.crate"));
        assert!(project.lockfile().is_none());

        let raw = "[package]\nname = \"app\"\nversion = \"9.0.0\"\n";
        let project = project.file("Cargo.toml", raw).dep("ignored", "1");
        assert_eq!(
            std::fs::read_to_string(project.path().join("Cargo.toml")).unwrap(),
            raw
        );
    }
}
