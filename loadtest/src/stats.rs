//! Measurements: per-operation latency samples, byte counts and errors ([`Stats`]), and the
//! percentile arithmetic.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// The operations the report has a row for, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Publish request → response, crates < 1 MiB.
    PublishSmall,
    /// Publish request → response, crates ≥ 1 MiB.
    PublishLarge,
    /// Publish start → version visible in the index, small crates.
    VisibleSmall,
    /// Publish start → version visible in the index, large crates.
    VisibleLarge,
    /// Publish response → version visible in the index (all crates).
    VisibleAfterResponse,
    /// Plain index file fetch (200).
    IndexFetch,
    /// Conditional index fetch with the ETag (304).
    IndexConditional,
    /// Plain fetches of one hot index file.
    IndexHot,
    /// `.crate` download with checksum verification.
    Download,
    /// Yank request → response.
    Yank,
    /// Unyank request → response.
    Unyank,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 11] = [
        Op::PublishSmall,
        Op::PublishLarge,
        Op::VisibleSmall,
        Op::VisibleLarge,
        Op::VisibleAfterResponse,
        Op::IndexFetch,
        Op::IndexConditional,
        Op::IndexHot,
        Op::Download,
        Op::Yank,
        Op::Unyank,
    ];

    /// The label in the table and the JSON report.
    pub fn label(self) -> &'static str {
        match self {
            Op::PublishSmall => "publish (small)",
            Op::PublishLarge => "publish (large)",
            Op::VisibleSmall => "publish→visible (small)",
            Op::VisibleLarge => "publish→visible (large)",
            Op::VisibleAfterResponse => "response→visible",
            Op::IndexFetch => "index fetch",
            Op::IndexConditional => "index conditional (304)",
            Op::IndexHot => "index hot file",
            Op::Download => "download",
            Op::Yank => "yank",
            Op::Unyank => "unyank",
        }
    }

    /// Whether MB/s makes sense for this operation.
    pub fn has_bytes(self) -> bool {
        matches!(
            self,
            Op::PublishSmall | Op::PublishLarge | Op::Download | Op::IndexHot | Op::IndexFetch
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How many distinct error messages are kept per operation.
const MAX_ERROR_KINDS: usize = 20;

/// What was recorded for one operation.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Latencies of successful operations.
    pub samples: Vec<Duration>,
    /// Failed operations.
    pub errors: u64,
    /// Bytes moved by successful operations.
    pub bytes: u64,
    /// Error messages and how often each occurred (the first [`MAX_ERROR_KINDS`] kinds).
    pub error_kinds: BTreeMap<String, u64>,
    /// Wall-clock time of the phase the operation ran in (for throughput).
    pub wall: Duration,
}

impl Recorder {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if let Some(count) = self.error_kinds.get_mut(&message) {
            *count += 1;
        } else if self.error_kinds.len() < MAX_ERROR_KINDS {
            self.error_kinds.insert(message, 1);
        } else {
            *self
                .error_kinds
                .entry("(other errors)".to_owned())
                .or_default() += 1;
        }
    }
}

/// Thread-safe recorders of every operation.
#[derive(Debug, Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<Op, Recorder>>,
}

impl Stats {
    fn with<T>(&self, op: Op, f: impl FnOnce(&mut Recorder) -> T) -> T {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        f(ops.entry(op).or_default())
    }

    /// Records a success.
    pub fn ok(&self, op: Op, latency: Duration, bytes: u64) {
        self.with(op, |r| {
            r.samples.push(latency);
            r.bytes += bytes;
        });
    }

    /// Records a failure.
    pub fn error(&self, op: Op, message: impl Into<String>) {
        let message = message.into();
        self.with(op, |r| r.error(message));
    }

    /// Sets the wall time of the phase `op` ran in.
    pub fn set_wall(&self, op: Op, wall: Duration) {
        self.with(op, |r| r.wall = wall);
    }

    /// Takes a copy of everything recorded.
    pub fn snapshot(&self) -> BTreeMap<Op, Recorder> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Latency summary of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Summary {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// The `p`-th percentile (0 < p ≤ 100) of **sorted** samples by the nearest-rank method: the
/// smallest sample such that at least `p`% of the samples are ≤ it. `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Summarises samples (sorting a copy). `None` when empty.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let at = |p| percentile(&sorted, p).map(ms);
    let total: Duration = sorted.iter().sum();
    Some(Summary {
        p50_ms: at(50.0)?,
        p95_ms: at(95.0)?,
        p99_ms: at(99.0)?,
        max_ms: ms(*sorted.last()?),
        mean_ms: ms(total) / sorted.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted = millis(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 95.0), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&sorted, 0.1), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);

        let one = millis(&[7]);
        for p in [1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&one, p), Some(Duration::from_millis(7)));
        }
        // 10 samples: p99 is the largest, p50 the 5th.
        let ten = millis(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 1000]);
        assert_eq!(percentile(&ten, 99.0), Some(Duration::from_millis(1000)));
        assert_eq!(percentile(&ten, 50.0), Some(Duration::from_millis(5)));
    }

    #[test]
    fn summaries_sort_first() {
        let s = summarize(&millis(&[30, 10, 20, 40])).unwrap();
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p99_ms, 40.0);
        assert_eq!(s.max_ms, 40.0);
        assert_eq!(s.mean_ms, 25.0);
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn error_kinds_are_bounded() {
        let stats = Stats::default();
        for i in 0..50 {
            stats.error(Op::Download, format!("error {i}"));
        }
        stats.error(Op::Download, "error 0");
        stats.ok(Op::Download, Duration::from_millis(3), 10);
        let snap = stats.snapshot();
        let rec = &snap[&Op::Download];
        assert_eq!(rec.errors, 51);
        assert_eq!(rec.error_kinds.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(rec.error_kinds["error 0"], 2);
        assert_eq!(rec.error_kinds["(other errors)"], 30);
        assert_eq!(rec.bytes, 10);
        assert_eq!(rec.samples.len(), 1);
    }
}
