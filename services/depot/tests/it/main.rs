//! Integration tests of the `depot` binary on the real stack: NATS JetStream (a pinned
//! nats-server ≥ 2.11, `DEPOT_TEST_NATS_URL`), PostgreSQL (`DEPOT_TEST_DATABASE_URL`) and the
//! real `cargo`.

#[macro_use]
mod support;

mod app;
mod auth_matrix;
mod cargo_e2e;
mod cluster;
mod docs;
mod downloads;
mod extractor_faults;
mod faults;
mod hostile_http;
mod junk;
mod load;
mod metrics;
mod poison;
mod prometheus;
mod race;
mod read_side;
mod replay;
mod slow_clients;
mod tokens;
mod trusted;
mod upstream;
mod validation;
mod web;
mod webhooks;
mod yanks;
