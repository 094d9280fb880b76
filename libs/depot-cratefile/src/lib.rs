//! Publish request framing and metadata, and .crate archive validation and extraction (pure).
