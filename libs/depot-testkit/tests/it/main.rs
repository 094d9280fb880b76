//! Self-checks of the testkit against the real cargo, PostgreSQL, NATS and S3, and of its OIDC
//! issuer against Depot's verifier.

mod cargo_driver;
mod database;
mod nats;
mod nats_cluster;
mod oidc;
mod responder;
mod s3;
