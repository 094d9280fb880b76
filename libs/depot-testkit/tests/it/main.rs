//! Self-checks of the testkit against the real cargo, PostgreSQL and NATS.

mod cargo_driver;
mod database;
mod nats;
mod responder;
