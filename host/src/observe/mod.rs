//! What a run shows while it works: a progress bar on a terminal, plain log lines otherwise.

use std::fmt;
use std::io::IsTerminal;

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    rows: u64,
}

impl Progress {
    pub fn new(quiet: bool, pipeline: &str) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} {human_pos} rows ({rate})")
                    .expect("valid template")
                    // indicatif's own `{per_sec}` prints four decimals of a row count.
                    .with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
                        let _ = w.write_str(&rows_per_sec(state.per_sec()));
                    }),
            );
            bar.set_prefix(pipeline.to_string());
            bar
        });
        Progress { bar, rows: 0 }
    }

    pub fn file(&mut self, path: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(path.to_string()),
            None => tracing::info!(file = path, "reading"),
        }
    }

    pub fn rows(&mut self, rows: u64) {
        self.rows += rows;
        if let Some(bar) = &self.bar {
            bar.set_position(self.rows);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn rows_per_sec(rate: f64) -> String {
    format!("{} rows/s", HumanCount(rate.round() as u64))
}

/// A run that stops early (an error, an interrupt) clears its bar before its error is printed.
impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rate_is_whole_rows_per_second() {
        assert_eq!(super::rows_per_sec(1_209_499.808_7), "1,209,500 rows/s");
        assert_eq!(super::rows_per_sec(0.4), "0 rows/s");
    }
}
