//! The extractor worker: checks uploaded .crate files and appends the outcome.
