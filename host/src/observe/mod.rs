//! What a run shows while it works: a progress bar on a terminal, plain log lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    rows: u64,
}

impl Progress {
    pub fn new(quiet: bool, pipeline: &str) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} {msg} {human_pos} rows ({per_sec})",
                )
                .expect("valid template"),
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
