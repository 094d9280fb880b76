//! The crate generator: a [`Plan`] of crates with a dependency DAG among themselves, and the
//! deterministic construction of each planned version as a real `.crate` file with its publish
//! metadata ([`Plan::build`]).
//!
//! Everything is derived from [`GenParams::seed`] and [`GenParams::prefix`]: the plan is drawn
//! from one random stream, and each version's bytes from a stream seeded by the version's unit
//! number, so any version can be rebuilt on its own, in any order, byte for byte. Nothing but
//! the plan is kept in memory; a `.crate` exists only while it is being published.
//!
//! Units (one per crate version) are numbered in a topological order: every unit's
//! prerequisites (the dependency versions it requires and the crate's previous version) have
//! smaller numbers.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::OnceLock;

use anyhow::Context as _;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One KiB.
const KIB: u64 = 1024;
/// One MiB.
pub const MIB: u64 = 1024 * 1024;
/// Crates at least this large (`.crate` bytes) are "large" in the report.
pub const LARGE_CRATE: u64 = MIB;
/// The mtime cargo gives every entry of a `.crate` (2006-07-24T01:21:28Z).
const CARGO_MTIME: u64 = 1_153_704_088;
/// crates.io's index URL as cargo sends it in publish metadata.
pub const CRATES_IO_INDEX: &str = "https://github.com/rust-lang/crates.io-index";
/// The platform of target-specific dependencies.
const UNIX: &str = "cfg(unix)";
/// Compressed size of the fixed parts of a crate (manifest, readme, lib.rs head), roughly.
const OVERHEAD: u64 = 1200;
/// Compressed / uncompressed size of the filler text at the default compression level.
const FILLER_RATIO: f64 = 0.244;
/// Filler bytes at the start of every `src/lib.rs` generated (and compressed) per crate.
const UNIQUE_FILLER: u64 = 48 * 1024;
/// Size of one pre-compressed filler chunk.
const CHUNK: usize = 64 * 1024;
/// Number of pre-compressed filler chunks.
const CHUNKS: usize = 32;

/// Words that make crate names look like crate names.
const WORDS: &[&str] = &[
    "parser", "codec", "util", "core", "macros", "derive", "client", "server", "proto", "types",
    "io", "net", "sync", "log", "config", "cli", "fmt", "hash", "cache", "store",
];

/// What the generator is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    /// Number of crates.
    pub crates: usize,
    /// Versions per crate, or `None` for the default distribution.
    pub versions_per_crate: Option<u32>,
    /// Largest `.crate` size aimed at, bytes.
    pub max_size: u64,
    /// Fraction of crates whose bulk is random bytes.
    pub incompressible_fraction: f64,
    /// Fraction of crates that depend on `serde` from crates.io.
    pub crates_io_dep_fraction: f64,
    /// Seed of everything random.
    pub seed: u64,
    /// Prefix of every crate name.
    pub prefix: String,
    /// The registry's own index URL (`sparse+…/`), written as `registry-index` of local deps.
    pub registry_index: String,
}

/// A dependency kind, as in publish metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// `[dependencies]`.
    Normal,
    /// `[dev-dependencies]`.
    Dev,
    /// `[build-dependencies]`.
    Build,
}

impl DepKind {
    /// The manifest table of this kind.
    fn table(self) -> &'static str {
        match self {
            DepKind::Normal => "dependencies",
            DepKind::Dev => "dev-dependencies",
            DepKind::Build => "build-dependencies",
        }
    }
}

/// Where a planned dependency comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepSource {
    /// A generated crate, at one of its versions (indices into [`Plan::crates`]).
    Local {
        /// The crate.
        krate: usize,
        /// Its version required (as `^version`).
        version: usize,
    },
    /// `serde` from crates.io.
    CratesIo,
}

/// One dependency of a planned version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDep {
    /// The dependency.
    pub source: DepSource,
    /// Its kind.
    pub kind: DepKind,
    /// `optional = true`.
    pub optional: bool,
    /// `default-features`.
    pub default_features: bool,
    /// Features enabled on it.
    pub features: Vec<String>,
    /// A platform it is limited to.
    pub target: Option<String>,
    /// The key in `Cargo.toml` when renamed.
    pub alias: Option<String>,
}

/// A planned crate: its name and versions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCrate {
    /// The crate name.
    pub name: String,
    /// Its versions, in publish order.
    pub versions: Vec<String>,
    /// The unit of its first version.
    pub first_unit: usize,
}

/// One planned version (the unit of publishing).
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The crate (index into [`Plan::crates`]).
    pub krate: usize,
    /// The version (index into [`PlannedCrate::versions`]).
    pub version: usize,
    /// The `.crate` size aimed at, bytes.
    pub target_size: u64,
    /// Whether the bulk is random bytes.
    pub incompressible: bool,
    /// Dependencies, in cargo's metadata order (normal, dev, build, then target-specific).
    pub deps: Vec<PlannedDep>,
    /// Units that must be published first (smaller numbers), sorted.
    pub prereqs: Vec<usize>,
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The parameters it was drawn from.
    pub params: GenParams,
    /// Crates, in dependency order.
    pub crates: Vec<PlannedCrate>,
    /// Versions, in a topological order.
    pub units: Vec<Unit>,
}

/// A built version: what is sent to `PUT /api/v1/crates/new`.
#[derive(Debug, Clone)]
pub struct BuiltCrate {
    /// Crate name.
    pub name: String,
    /// Version.
    pub vers: String,
    /// The publish metadata.
    pub metadata: NewCrate,
    /// The normalised `Cargo.toml` inside the `.crate`.
    pub manifest: String,
    /// The `.crate` file.
    pub crate_bytes: Vec<u8>,
    /// Lowercase hex sha256 of [`BuiltCrate::crate_bytes`].
    pub cksum: String,
}

impl BuiltCrate {
    /// The publish request body: `u32 LE json len | JSON | u32 LE crate len | .crate`.
    pub fn publish_body(&self) -> anyhow::Result<Vec<u8>> {
        let json = serde_json::to_vec(&self.metadata).context("cannot encode publish metadata")?;
        let json_len = u32::try_from(json.len()).context("publish metadata over 4 GiB")?;
        let crate_len = u32::try_from(self.crate_bytes.len()).context(".crate over 4 GiB")?;
        let mut body = Vec::with_capacity(8 + json.len() + self.crate_bytes.len());
        body.extend_from_slice(&json_len.to_le_bytes());
        body.extend_from_slice(&json);
        body.extend_from_slice(&crate_len.to_le_bytes());
        body.extend_from_slice(&self.crate_bytes);
        Ok(body)
    }
}

/// Publish metadata, with cargo's keys in cargo's order (PROTOCOL.md §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCrate {
    /// Crate name.
    pub name: String,
    /// Version.
    pub vers: String,
    /// Dependencies.
    pub deps: Vec<NewCrateDep>,
    /// Features.
    pub features: BTreeMap<String, Vec<String>>,
    /// Authors.
    pub authors: Vec<String>,
    /// Description.
    pub description: Option<String>,
    /// Documentation URL.
    pub documentation: Option<String>,
    /// Homepage URL.
    pub homepage: Option<String>,
    /// Readme contents.
    pub readme: Option<String>,
    /// Readme path.
    pub readme_file: Option<String>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Category slugs.
    pub categories: Vec<String>,
    /// SPDX license expression.
    pub license: Option<String>,
    /// License file path.
    pub license_file: Option<String>,
    /// Repository URL.
    pub repository: Option<String>,
    /// Badges.
    pub badges: BTreeMap<String, BTreeMap<String, String>>,
    /// `links`.
    pub links: Option<String>,
    /// `rust-version`.
    pub rust_version: Option<String>,
}

/// A dependency in publish metadata, keys in cargo's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCrateDep {
    /// `optional`.
    pub optional: bool,
    /// `default_features`.
    pub default_features: bool,
    /// The real package name.
    pub name: String,
    /// Features enabled.
    pub features: Vec<String>,
    /// Requirement (`^x.y.z`).
    pub version_req: String,
    /// Platform.
    pub target: Option<String>,
    /// `normal`, `dev` or `build`.
    pub kind: DepKind,
    /// Another registry's index URL; omitted for this registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The key in `Cargo.toml` when renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explicit_name_in_toml: Option<String>,
}

impl NewCrateDep {
    /// The key of the dependency in `Cargo.toml`.
    pub fn key(&self) -> &str {
        self.explicit_name_in_toml.as_deref().unwrap_or(&self.name)
    }
}

/// splitmix64: decorrelates seeds derived from one another.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Log-uniform in `[lo, hi)`.
fn log_uniform(rng: &mut StdRng, lo: u64, hi: u64) -> u64 {
    if hi <= lo + 1 {
        return lo;
    }
    let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
    let x = rng.random_range(a..b).exp() as u64;
    x.clamp(lo, hi - 1)
}

/// The size buckets: 70% small (2–16 KiB), 25% medium (16 KiB – 960 KiB), 5% large
/// (1.1 MiB – max), clamped to `max`.
fn size_bucket(rng: &mut StdRng, max: u64) -> (u64, u64) {
    let u: f64 = rng.random();
    let (lo, hi) = if u < 0.70 {
        (2 * KIB, 16 * KIB)
    } else if u < 0.95 {
        (16 * KIB, 960 * KIB)
    } else {
        (MIB + MIB / 10, max + 1)
    };
    // Sizes are aimed at, not exact (compression ratios, framing): keep 1/32 of the largest
    // size free so no generated `.crate` exceeds it (and the registry's limit set to it).
    let hi = hi.min(max - max / 32 + 1);
    let lo = lo.min(hi.saturating_sub(1)).max(KIB);
    (lo, hi.max(lo + 1))
}

/// The versions of one crate: 0.1.0 or 1.0.0 first, then mostly patch bumps.
fn plan_versions(rng: &mut StdRng, count: u32) -> Vec<String> {
    let (mut major, mut minor, mut patch) = if rng.random_bool(0.7) {
        (0u64, 1u64, 0u64)
    } else {
        (1, 0, 0)
    };
    let mut versions = vec![format!("{major}.{minor}.{patch}")];
    for _ in 1..count {
        let u: f64 = rng.random();
        if u < 0.7 {
            patch += 1;
        } else if u < 0.95 {
            minor += 1;
            patch = 0;
        } else {
            major += 1;
            minor = 0;
            patch = 0;
        }
        versions.push(format!("{major}.{minor}.{patch}"));
    }
    versions
}

/// How many versions a crate gets by default: 65% 1, 20% 2, 10% 3, 5% 4–6.
fn default_version_count(rng: &mut StdRng) -> u32 {
    let u: f64 = rng.random();
    if u < 0.65 {
        1
    } else if u < 0.85 {
        2
    } else if u < 0.95 {
        3
    } else {
        rng.random_range(4..=6)
    }
}

/// How many dependencies a crate gets among earlier crates: 0–6, mostly 0–2.
fn dep_count(rng: &mut StdRng) -> usize {
    let u: f64 = rng.random();
    match u {
        u if u < 0.20 => 0,
        u if u < 0.45 => 1,
        u if u < 0.70 => 2,
        u if u < 0.85 => 3,
        u if u < 0.95 => 4,
        _ => 6,
    }
}

/// A crate-level dependency choice, before versions are picked per unit.
#[derive(Debug, Clone)]
struct CrateDep {
    source: DepSource,
    /// For local deps: the first version index required by the crate's first version.
    start: usize,
    kind: DepKind,
    optional: bool,
    default_features: bool,
    features: Vec<String>,
    target: Option<String>,
    alias: Option<String>,
}

impl Plan {
    /// Draws the plan: names, versions, dependencies and sizes.
    pub fn generate(params: &GenParams) -> Plan {
        let mut rng = StdRng::seed_from_u64(mix(params.seed));
        let mut crates: Vec<PlannedCrate> = Vec::with_capacity(params.crates);
        for i in 0..params.crates {
            let word = WORDS[rng.random_range(0..WORDS.len())];
            // Some names use `_`, as real crates do; the number keeps names (and their
            // canonical forms) unique.
            let name = if i % 7 == 3 {
                format!("{}_{}_{}", params.prefix, word, i)
            } else {
                format!("{}-{}-{}", params.prefix, word, i)
            };
            let count = params
                .versions_per_crate
                .unwrap_or_else(|| default_version_count(&mut rng));
            crates.push(PlannedCrate {
                name,
                versions: plan_versions(&mut rng, count),
                first_unit: 0,
            });
        }

        let mut units = Vec::new();
        for i in 0..params.crates {
            let crate_deps = plan_crate_deps(&mut rng, params, &crates, i);
            let (lo, hi) = size_bucket(&mut rng, params.max_size);
            let base = log_uniform(&mut rng, lo, hi);
            let incompressible = rng.random_bool(params.incompressible_fraction);
            crates[i].first_unit = units.len();
            for v in 0..crates[i].versions.len() {
                // Later versions grow a little, staying in their bucket.
                let target_size = (base + base * v as u64 / 50).min(hi - 1);
                let mut deps = Vec::with_capacity(crate_deps.len());
                let mut prereqs = Vec::new();
                if v > 0 {
                    prereqs.push(units.len() - 1);
                }
                for dep in &crate_deps {
                    let source = match dep.source {
                        DepSource::Local { krate, .. } => {
                            let version = (dep.start + v).min(crates[krate].versions.len() - 1);
                            prereqs.push(crates[krate].first_unit + version);
                            DepSource::Local { krate, version }
                        }
                        DepSource::CratesIo => DepSource::CratesIo,
                    };
                    deps.push(PlannedDep {
                        source,
                        kind: dep.kind,
                        optional: dep.optional,
                        default_features: dep.default_features,
                        features: dep.features.clone(),
                        target: dep.target.clone(),
                        alias: dep.alias.clone(),
                    });
                }
                prereqs.sort_unstable();
                prereqs.dedup();
                units.push(Unit {
                    krate: i,
                    version: v,
                    target_size,
                    incompressible,
                    deps,
                    prereqs,
                });
            }
        }
        Plan {
            params: params.clone(),
            crates,
            units,
        }
    }

    /// The crate name and version of a unit.
    pub fn name_version(&self, unit: usize) -> (&str, &str) {
        let unit = &self.units[unit];
        let krate = &self.crates[unit.krate];
        (&krate.name, &krate.versions[unit.version])
    }

    /// The publish metadata of a unit (deterministic, no randomness).
    pub fn metadata(&self, unit_id: usize) -> NewCrate {
        let unit = &self.units[unit_id];
        let (name, vers) = self.name_version(unit_id);
        let word = name
            .trim_start_matches(&self.params.prefix)
            .trim_start_matches(['-', '_'])
            .split(['-', '_'])
            .next()
            .unwrap_or("util")
            .to_owned();
        let deps: Vec<NewCrateDep> = unit
            .deps
            .iter()
            .map(|dep| {
                let (name, version_req, registry) = match dep.source {
                    DepSource::Local { krate, version } => (
                        self.crates[krate].name.clone(),
                        format!("^{}", self.crates[krate].versions[version]),
                        None,
                    ),
                    DepSource::CratesIo => (
                        "serde".to_owned(),
                        "^1.0".to_owned(),
                        Some(CRATES_IO_INDEX.to_owned()),
                    ),
                };
                NewCrateDep {
                    optional: dep.optional,
                    default_features: dep.default_features,
                    name,
                    features: dep.features.clone(),
                    version_req,
                    target: dep.target.clone(),
                    kind: dep.kind,
                    registry,
                    explicit_name_in_toml: dep.alias.clone(),
                }
            })
            .collect();

        let mut features: BTreeMap<String, Vec<String>> = BTreeMap::new();
        features.insert("default".to_owned(), vec!["std".to_owned()]);
        let mut std_values = Vec::new();
        for dep in &deps {
            if dep.kind != DepKind::Normal || dep.target.is_some() {
                continue;
            }
            let key = dep.key();
            if dep.registry.is_some() {
                // serde: the classic optional-dependency feature.
                if dep.optional {
                    features.insert("serde".to_owned(), vec!["dep:serde".to_owned()]);
                }
                continue;
            }
            if dep.optional {
                features.insert(format!("with-{key}"), vec![format!("dep:{key}")]);
                std_values.push(format!("{key}?/std"));
            } else {
                std_values.push(format!("{key}/std"));
            }
        }
        features.insert("std".to_owned(), std_values);
        if unit_id.is_multiple_of(3) {
            features.insert("fast".to_owned(), Vec::new());
        }

        let has_build = deps.iter().any(|d| d.kind == DepKind::Build);
        NewCrate {
            name: name.to_owned(),
            vers: vers.to_owned(),
            deps,
            features,
            authors: vec!["Depot Load Test <loadtest@example.com>".to_owned()],
            description: Some(format!(
                "Generated {word} crate for the Depot load test (unit {unit_id})."
            )),
            documentation: Some(format!("https://docs.example.com/{name}")),
            homepage: None,
            readme: Some(readme(name, vers)),
            readme_file: Some("README.md".to_owned()),
            keywords: vec!["loadtest".to_owned(), word],
            categories: vec!["development-tools".to_owned()],
            license: Some("MIT OR Apache-2.0".to_owned()),
            license_file: None,
            repository: Some(format!("https://git.example.com/loadtest/{name}")),
            badges: BTreeMap::new(),
            links: has_build.then(|| name.replace('-', "_")),
            rust_version: Some("1.70".to_owned()),
        }
    }

    /// Builds the `.crate` of a unit with its metadata. Deterministic: the same plan gives the
    /// same bytes. CPU-bound (compression); call it from a blocking thread.
    pub fn build(&self, unit_id: usize) -> anyhow::Result<BuiltCrate> {
        // Sizes are aimed at; a `.crate` over the largest size asked for (which the registry
        // may enforce) is built again, smaller by its excess.
        let mut target = self.units[unit_id].target_size;
        let mut built = self.build_sized(unit_id, target)?;
        for _ in 0..4 {
            let len = built.crate_bytes.len() as u64;
            if len <= self.params.max_size || target <= KIB {
                break;
            }
            target = target.saturating_sub(len - self.params.max_size + KIB);
            built = self.build_sized(unit_id, target)?;
        }
        Ok(built)
    }

    /// [`Plan::build`] aiming at `target_size` bytes.
    fn build_sized(&self, unit_id: usize, target_size: u64) -> anyhow::Result<BuiltCrate> {
        let unit = &self.units[unit_id];
        let metadata = self.metadata(unit_id);
        let manifest = render_manifest(&metadata, &self.params.registry_index);
        let (name, vers) = (metadata.name.clone(), metadata.vers.clone());
        let root = format!("{name}-{vers}");
        let mut rng = StdRng::seed_from_u64(mix(self.params.seed ^ mix(unit_id as u64 + 1)));

        let bulk = target_size.saturating_sub(OVERHEAD);
        let (filler_len, blob_len) = if unit.incompressible {
            // Stored deflate blocks add 5 bytes per 64 KiB.
            (0, bulk.saturating_sub((bulk / 65_535 + 1) * 5))
        } else {
            ((bulk as f64 / FILLER_RATIO) as u64, 0)
        };

        let lib_head = lib_rs_head(&metadata, blob_len > 0);
        let mut gz = GzAssembler::new(&format!("{root}.crate"), target_size as usize);
        let mut tar = tar::Builder::new(&mut gz);
        let files: [(&str, Option<&str>); 3] = [
            ("Cargo.toml", Some(&manifest)),
            ("README.md", metadata.readme.as_deref()),
            (
                "build.rs",
                metadata
                    .deps
                    .iter()
                    .any(|d| d.kind == DepKind::Build)
                    .then_some(
                        "fn main() {\n    println!(\"cargo:rerun-if-changed=build.rs\");\n}\n",
                    ),
            ),
        ];
        for (path, text) in files {
            if let Some(text) = text {
                append(&mut tar, &root, path, text.as_bytes())?;
            }
        }
        // The bulk by hand: random bytes are stored (as deflate ends up doing with them),
        // and src/lib.rs's filler is mostly pre-compressed chunks spliced into the deflate
        // stream, which keeps building large crates cheap.
        let gz_out = tar.get_mut();
        if blob_len > 0 {
            gz_out.write_all(entry_header(&root, "data/blob.bin", blob_len)?.as_bytes())?;
            gz_out.set_level(Compression::none())?;
            let mut blob = RandomReader {
                rng: StdRng::seed_from_u64(rng.next_u64()),
                remaining: blob_len,
            };
            io::copy(&mut blob, gz_out)?;
            gz_out.set_level(Compression::default())?;
            gz_out.write_all(padding(blob_len))?;
        }
        let lib_len = lib_head.len() as u64 + filler_len;
        gz_out.write_all(entry_header(&root, "src/lib.rs", lib_len)?.as_bytes())?;
        gz_out.write_all(lib_head.as_bytes())?;
        write_filler(gz_out, &mut rng, filler_len)?;
        gz_out.write_all(padding(lib_len))?;
        tar.into_inner().context("cannot finish the tar archive")?;
        let crate_bytes = gz.finish()?;
        let cksum = hex::encode(Sha256::digest(&crate_bytes));
        Ok(BuiltCrate {
            name,
            vers,
            metadata,
            manifest,
            crate_bytes,
            cksum,
        })
    }
}

/// Chooses the dependencies of crate `i` among crates `0..i` (and maybe serde).
fn plan_crate_deps(
    rng: &mut StdRng,
    params: &GenParams,
    crates: &[PlannedCrate],
    i: usize,
) -> Vec<CrateDep> {
    let wanted = dep_count(rng).min(i);
    let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
    let mut attempts = 0;
    while chosen.len() < wanted && attempts < wanted * 20 {
        attempts += 1;
        // Mostly recent crates (chains), sometimes any earlier crate (fan-in on old ones).
        let j = if rng.random_bool(0.6) {
            rng.random_range(i.saturating_sub(20)..i)
        } else {
            rng.random_range(0..i)
        };
        if !chosen.contains(&j) {
            chosen.push(j);
        }
    }
    let mut deps: Vec<CrateDep> = chosen
        .into_iter()
        .map(|j| {
            let u: f64 = rng.random();
            let kind = if u < 0.75 {
                DepKind::Normal
            } else if u < 0.90 {
                DepKind::Dev
            } else {
                DepKind::Build
            };
            let normal = kind == DepKind::Normal;
            let target = (normal && rng.random_bool(0.08)).then(|| UNIX.to_owned());
            let alias = (normal && rng.random_bool(0.05))
                .then(|| format!("{}_r", crates[j].name.replace('-', "_")));
            CrateDep {
                source: DepSource::Local {
                    krate: j,
                    version: 0,
                },
                start: rng.random_range(0..crates[j].versions.len()),
                kind,
                optional: normal && target.is_none() && rng.random_bool(0.15),
                default_features: !rng.random_bool(0.2),
                features: if rng.random_bool(0.4) {
                    vec!["std".to_owned()]
                } else {
                    Vec::new()
                },
                target,
                alias,
            }
        })
        .collect();
    if rng.random_bool(params.crates_io_dep_fraction) {
        deps.push(CrateDep {
            source: DepSource::CratesIo,
            start: 0,
            kind: DepKind::Normal,
            optional: rng.random_bool(0.5),
            default_features: true,
            features: vec!["derive".to_owned()],
            target: None,
            alias: None,
        });
    }
    // cargo's order: normal, dev, build, then target-specific ones.
    deps.sort_by_key(|d| (d.target.is_some(), d.kind));
    deps
}

fn readme(name: &str, vers: &str) -> String {
    format!("# {name}\n\nVersion {vers}, generated by Depot's load test. It does nothing useful.\n")
}

fn lib_rs_head(metadata: &NewCrate, has_blob: bool) -> String {
    let mut head = format!(
        "//! {} {}: generated by Depot's load test.\n\n",
        metadata.name, metadata.vers
    );
    if has_blob {
        head.push_str(
            "/// Opaque data.\npub static BLOB: &[u8] = include_bytes!(\"../data/blob.bin\");\n\n",
        );
    }
    head.push_str("/// The answer.\npub fn answer() -> u32 {\n    42\n}\n\n");
    head
}

/// The tar header of a regular file the way cargo writes it (GNU, mode 0644, uid/gid 0,
/// fixed mtime).
fn entry_header(root: &str, path: &str, len: u64) -> anyhow::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    header
        .set_path(format!("{root}/{path}"))
        .with_context(|| format!("cannot name {root}/{path} in the archive"))?;
    header.set_size(len);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(CARGO_MTIME);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

/// The zeros that pad an entry of `len` bytes to a 512-byte block.
fn padding(len: u64) -> &'static [u8] {
    const ZEROS: [u8; 512] = [0; 512];
    &ZEROS[..(512 - (len % 512) as usize) % 512]
}

/// Appends one small regular file through the tar builder.
fn append<W: io::Write>(
    tar: &mut tar::Builder<W>,
    root: &str,
    path: &str,
    data: &[u8],
) -> anyhow::Result<()> {
    let header = entry_header(root, path, data.len() as u64)?;
    tar.append(&header, data)
        .with_context(|| format!("cannot add {root}/{path} to the archive"))
}

/// Runs `comp` over `input` with `flush`, appending the output to `out`.
fn deflate_into(
    comp: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
    buf: &mut [u8],
) -> io::Result<()> {
    loop {
        let (in_before, out_before) = (comp.total_in(), comp.total_out());
        let status = comp.compress(input, buf, flush).map_err(io::Error::other)?;
        let consumed = (comp.total_in() - in_before) as usize;
        let produced = (comp.total_out() - out_before) as usize;
        out.extend_from_slice(&buf[..produced]);
        input = &input[consumed..];
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => input.is_empty() && produced < buf.len(),
        };
        if done {
            return Ok(());
        }
    }
}

/// A gzip member assembled from deflate segments: bytes written are compressed as they come,
/// and pre-compressed chunks can be spliced in between. Every segment ends with a sync flush
/// (byte-aligned, not final) and the next one starts a fresh compressor, so no block refers
/// to data its compressor did not see; the result is one valid gzip stream.
struct GzAssembler {
    out: Vec<u8>,
    comp: Compress,
    level: Compression,
    crc: Crc,
    size: u64,
    buf: Vec<u8>,
}

impl GzAssembler {
    /// Starts a member with the gzip header (FNAME = `filename`, as cargo writes it).
    fn new(filename: &str, capacity: usize) -> GzAssembler {
        let mut out = Vec::with_capacity(capacity + 4096);
        // ID1 ID2, CM deflate, FLG FNAME, MTIME 0, XFL 0, OS unknown; then the name.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 0xff]);
        out.extend_from_slice(filename.as_bytes());
        out.push(0);
        GzAssembler {
            out,
            comp: Compress::new(Compression::default(), false),
            level: Compression::default(),
            crc: Crc::new(),
            size: 0,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Ends the current segment and starts one compressed at `level`.
    fn set_level(&mut self, level: Compression) -> io::Result<()> {
        deflate_into(
            &mut self.comp,
            &[],
            FlushCompress::Sync,
            &mut self.out,
            &mut self.buf,
        )?;
        self.comp = Compress::new(level, false);
        self.level = level;
        Ok(())
    }

    /// Appends `raw`, already compressed as `compressed` (a sync-flushed raw deflate stream of
    /// its own).
    fn splice(&mut self, raw: &[u8], compressed: &[u8]) -> io::Result<()> {
        self.set_level(self.level)?;
        self.out.extend_from_slice(compressed);
        self.crc.update(raw);
        self.size += raw.len() as u64;
        Ok(())
    }

    /// Ends the stream and appends the gzip trailer.
    fn finish(mut self) -> io::Result<Vec<u8>> {
        deflate_into(
            &mut self.comp,
            &[],
            FlushCompress::Finish,
            &mut self.out,
            &mut self.buf,
        )?;
        self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the size modulo 2^32.
        self.out
            .extend_from_slice(&(self.size as u32).to_le_bytes());
        Ok(self.out)
    }
}

impl Write for GzAssembler {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.crc.update(data);
        self.size += data.len() as u64;
        deflate_into(
            &mut self.comp,
            data,
            FlushCompress::None,
            &mut self.out,
            &mut self.buf,
        )?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A filler chunk and its sync-flushed raw deflate stream.
struct Chunk {
    raw: Vec<u8>,
    compressed: Vec<u8>,
}

/// The pre-compressed filler chunks, made once per process from fixed seeds.
fn chunks() -> &'static [Chunk] {
    static POOL: OnceLock<Vec<Chunk>> = OnceLock::new();
    POOL.get_or_init(|| {
        (0..CHUNKS)
            .map(|i| {
                let mut raw = Vec::with_capacity(CHUNK);
                let mut filler = FillerReader::new(
                    StdRng::seed_from_u64(mix(0x6c74_0000 + i as u64)),
                    CHUNK as u64,
                );
                filler.read_to_end(&mut raw).expect("reading from memory");
                let mut comp = Compress::new(Compression::default(), false);
                let (mut compressed, mut buf) = (Vec::new(), vec![0; 64 * 1024]);
                for flush in [FlushCompress::None, FlushCompress::Sync] {
                    let input = if matches!(flush, FlushCompress::None) {
                        &raw[..]
                    } else {
                        &[][..]
                    };
                    deflate_into(&mut comp, input, flush, &mut compressed, &mut buf)
                        .expect("compressing in memory");
                }
                Chunk { raw, compressed }
            })
            .collect()
    })
}

/// Writes `len` bytes of filler: up to [`UNIQUE_FILLER`] bytes generated for this crate,
/// then pre-compressed chunks in a random order, then a generated tail.
fn write_filler(out: &mut GzAssembler, rng: &mut StdRng, len: u64) -> io::Result<()> {
    let unique = len.min(UNIQUE_FILLER);
    io::copy(
        &mut FillerReader::new(StdRng::seed_from_u64(rng.next_u64()), unique),
        out,
    )?;
    let mut left = len - unique;
    let pool = chunks();
    while left >= CHUNK as u64 {
        let chunk = &pool[rng.random_range(0..pool.len())];
        out.splice(&chunk.raw, &chunk.compressed)?;
        left -= CHUNK as u64;
    }
    io::copy(
        &mut FillerReader::new(StdRng::seed_from_u64(rng.next_u64()), left),
        out,
    )?;
    Ok(())
}

/// `len` random bytes.
struct RandomReader {
    rng: StdRng,
    remaining: u64,
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        self.rng.fill_bytes(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// `len` bytes of Rust-looking text (tables of random bytes and comments), compressing to
/// roughly [`FILLER_RATIO_DEFAULT`] of its size.
struct FillerReader {
    rng: StdRng,
    remaining: u64,
    line: Vec<u8>,
    at: usize,
    n: u64,
}

impl FillerReader {
    fn new(rng: StdRng, len: u64) -> FillerReader {
        FillerReader {
            rng,
            remaining: len,
            line: Vec::new(),
            at: 0,
            n: 0,
        }
    }

    fn next_line(&mut self) {
        self.line.clear();
        self.at = 0;
        self.n += 1;
        if self.remaining < 40 {
            // The tail: a comment of exactly the remaining length, ending in a newline.
            let len = self.remaining as usize;
            self.line.resize(len, b'/');
            if len > 0 {
                self.line[len - 1] = b'\n';
            }
            return;
        }
        if self.rng.random_bool(0.15) {
            let word = WORDS[self.rng.random_range(0..WORDS.len())];
            let _ = writeln!(self.line, "// Table {} of the {word} fixtures.", self.n);
            return;
        }
        let _ = write!(self.line, "pub const T{}: [u8; 16] = [", self.n);
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        for (i, b) in bytes.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(self.line, "{sep}0x{b:02x}");
        }
        self.line.extend_from_slice(b"];\n");
    }
}

impl Read for FillerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.at >= self.line.len() {
            self.next_line();
        }
        let available = (self.line.len() - self.at)
            .min(buf.len())
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..available].copy_from_slice(&self.line[self.at..self.at + available]);
        self.at += available;
        self.remaining -= available as u64;
        Ok(available)
    }
}

/// A TOML basic string.
fn toml_str(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when possible.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        toml_str(key)
    }
}

fn toml_list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| toml_str(v)).collect();
    format!("[{}]", items.join(", "))
}

/// Renders the normalised `Cargo.toml` cargo would put in the `.crate` for this metadata:
/// the same dependencies (local ones with `registry-index`), features and package fields.
pub fn render_manifest(meta: &NewCrate, registry_index: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "# THIS FILE IS AUTOMATICALLY GENERATED BY CARGO\n\
         #\n\
         # When uploading crates to the registry Cargo will automatically\n\
         # \"normalize\" Cargo.toml files for maximal compatibility\n\
         # with all versions of Cargo and also rewrite `path` dependencies\n\
         # to registry (e.g., crates.io) dependencies.\n\
         #\n\
         # If you are reading this file be aware that the original Cargo.toml\n\
         # will likely look very different (and much more reasonable).\n\
         # See Cargo.toml.orig for the original contents.\n\n[package]\nedition = \"2021\"\n",
    );
    let opt = |out: &mut String, key: &str, value: &Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(out, "{key} = {}", toml_str(value));
        }
    };
    opt(&mut out, "rust-version", &meta.rust_version);
    let _ = writeln!(out, "name = {}", toml_str(&meta.name));
    let _ = writeln!(out, "version = {}", toml_str(&meta.vers));
    let _ = writeln!(out, "authors = {}", toml_list(&meta.authors));
    let has_build = meta.deps.iter().any(|d| d.kind == DepKind::Build);
    if has_build {
        out.push_str("build = \"build.rs\"\n");
    } else {
        out.push_str("build = false\n");
    }
    opt(&mut out, "links", &meta.links);
    out.push_str(
        "autolib = false\nautobins = false\nautoexamples = false\nautotests = false\nautobenches = false\n",
    );
    opt(&mut out, "description", &meta.description);
    opt(&mut out, "homepage", &meta.homepage);
    opt(&mut out, "documentation", &meta.documentation);
    opt(&mut out, "readme", &meta.readme_file);
    let _ = writeln!(out, "keywords = {}", toml_list(&meta.keywords));
    let _ = writeln!(out, "categories = {}", toml_list(&meta.categories));
    opt(&mut out, "license", &meta.license);
    opt(&mut out, "license-file", &meta.license_file);
    opt(&mut out, "repository", &meta.repository);

    if !meta.features.is_empty() {
        out.push_str("\n[features]\n");
        for (feature, values) in &meta.features {
            let _ = writeln!(out, "{} = {}", toml_key(feature), toml_list(values));
        }
    }
    let _ = write!(
        out,
        "\n[lib]\nname = {}\npath = \"src/lib.rs\"\n",
        toml_str(&meta.name.replace('-', "_"))
    );

    for dep in &meta.deps {
        let table = match &dep.target {
            Some(target) => format!("target.{}.{}", toml_str(target), dep.kind.table()),
            None => dep.kind.table().to_owned(),
        };
        let _ = write!(
            out,
            "\n[{table}.{}]\nversion = {}\n",
            toml_key(dep.key()),
            toml_str(&dep.version_req)
        );
        if !dep.features.is_empty() {
            let _ = writeln!(out, "features = {}", toml_list(&dep.features));
        }
        if !dep.default_features {
            out.push_str("default-features = false\n");
        }
        if dep.optional {
            out.push_str("optional = true\n");
        }
        if dep.explicit_name_in_toml.is_some() {
            let _ = writeln!(out, "package = {}", toml_str(&dep.name));
        }
        match &dep.registry {
            // No `registry-index` in a manifest means crates.io.
            Some(registry) if registry == CRATES_IO_INDEX => {}
            Some(registry) => {
                let _ = writeln!(out, "registry-index = {}", toml_str(registry));
            }
            None => {
                let _ = writeln!(out, "registry-index = {}", toml_str(registry_index));
            }
        }
    }
    out
}

/// The sparse index path of a crate: cargo's `make_dep_path` on the lowercased name.
pub fn index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// The `{prefix}` of a `dl` template: the directory part of `make_dep_path`, on the name as
/// given (original case).
pub fn dl_prefix(name: &str) -> String {
    match name.len() {
        1 => "1".to_owned(),
        2 => "2".to_owned(),
        3 => format!("3/{}", &name[..1]),
        _ => format!("{}/{}", &name[..2], &name[2..4]),
    }
}

#[cfg(test)]
mod tests;
