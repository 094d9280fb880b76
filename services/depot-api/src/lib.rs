//! Cargo's web API and the sparse index over HTTP (axum).
