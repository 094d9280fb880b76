//! Progress display: indicatif bars on stderr when stdout is a terminal (and not `--quiet`),
//! plain notes on stderr otherwise (unless `--quiet`).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one run.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
    bars: bool,
    notes: bool,
}

impl Progress {
    /// `bars`: draw progress bars; `notes`: print phase notes.
    pub fn new(bars: bool, notes: bool) -> Progress {
        let target = if bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            bars,
            notes,
        }
    }

    /// A bar of `len` steps named `label` (hidden when bars are off).
    pub fn bar(&self, len: u64, label: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>18} [{bar:36.cyan/blue}] {pos:>6}/{len:6} {per_sec:>12} {elapsed:>4} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        bar
    }

    /// Prints a note about the run's progress.
    #[expect(clippy::print_stderr, reason = "progress notes for the operator")]
    pub fn note(&self, text: &str) {
        if self.bars {
            let _ = self.multi.println(text);
        } else if self.notes {
            eprintln!("{text}");
        }
    }
}
