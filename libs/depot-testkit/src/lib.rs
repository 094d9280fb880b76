//! Test support: real NATS/PostgreSQL fixtures, a Depot on port 0, a real cargo driver.
