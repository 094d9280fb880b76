//! Metric names, the metrics registry and tracing setup.
