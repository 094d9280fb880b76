//! The event log: the EventLog trait and its NATS JetStream implementation.
