//! Test support for Depot: real NATS/PostgreSQL/S3 fixtures, a driver for the real cargo and a
//! local OIDC issuer.
//!
#![doc = include_str!("../README.md")]

mod browser;
mod cargo_command;
mod cargo_home;
mod cargo_project;
mod database;
mod env;
mod nats_cluster;
mod oidc;
mod s3;
mod servers;
mod upstream;

pub use browser::{Browser, screenshot_dir};
pub use cargo_command::{CARGO_BIN_VAR, CargoCommand, CargoOutput, DEFAULT_CARGO_TIMEOUT};
pub use cargo_home::CargoHome;
pub use cargo_project::{CargoProject, DEFAULT_REGISTRY, Dep, DepKind};
pub use database::TestDatabase;
pub use env::{DATABASE_URL_VAR, NATS_URL_VAR, nats_url, unique_prefix};
/// WebDriver key codes for [`Browser::press`].
pub use fantoccini::key::Key;
pub use nats_cluster::PrivateNatsCluster;
pub use oidc::{DEFAULT_OIDC_SUBJECT, OidcIssuer};
pub use s3::{S3_ACCESS_KEY_VAR, S3_ENDPOINT_VAR, S3_REGION_VAR, S3_SECRET_KEY_VAR, TestBucket};
pub use servers::{
    NATS_SERVER_VAR, PG_BIN_VAR, PgStopMode, PrivateNats, PrivatePostgres, free_port,
};
pub use upstream::{RegistryRequests, StaticRegistry};
