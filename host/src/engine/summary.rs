//! What a run did, for the summary table and the run history.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::state::{RunRecord, RunStatus};

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub pipeline: String,
    pub status: RunStatus,
    pub load_id: String,
    pub files: usize,
    /// Rows past the watermark.
    pub rows_read: u64,
    /// Rows the transform steps dropped.
    pub rows_rejected: u64,
    /// Rows that failed checks and went to the quarantine dataset.
    pub rows_quarantined: u64,
    /// Rows committed per sink.
    pub loaded: BTreeMap<String, u64>,
    /// Sinks that already held this load (a replay after a crash) and were skipped.
    pub replayed_sinks: Vec<String>,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    pub duration: Duration,
    /// When there was nothing to load because the source lists nothing: why, in its words
    /// (a pattern that matches no file may be a typo).
    pub source_empty: Option<String>,
    started_at: String,
}

impl RunSummary {
    pub(super) fn new(
        pipeline: &str,
        load_id: &str,
        watermark_before: Option<String>,
    ) -> RunSummary {
        RunSummary {
            pipeline: pipeline.to_string(),
            status: RunStatus::Failed,
            load_id: load_id.to_string(),
            files: 0,
            rows_read: 0,
            rows_rejected: 0,
            rows_quarantined: 0,
            loaded: BTreeMap::new(),
            replayed_sinks: Vec::new(),
            watermark_after: watermark_before.clone(),
            watermark_before,
            duration: Duration::ZERO,
            source_empty: None,
            started_at: super::now(),
        }
    }

    pub(super) fn finished(mut self, started: Instant) -> RunSummary {
        self.duration = started.elapsed();
        self
    }

    pub(super) fn record(&self, run_id: String, finished_at: String) -> RunRecord {
        RunRecord {
            run_id,
            started_at: self.started_at.clone(),
            finished_at,
            status: self.status,
            load_id: (self.status == RunStatus::Succeeded).then(|| self.load_id.clone()),
            rows_read: self.rows_read,
            rows_rejected: self.rows_rejected,
            rows_quarantined: self.rows_quarantined,
            loaded: self.loaded.clone(),
            watermark_before: self.watermark_before.clone(),
            watermark_after: self.watermark_after.clone(),
            error: None,
        }
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |w: &Option<String>| w.clone().unwrap_or_else(|| "(none)".into());
        writeln!(f, "pipeline   {}", self.pipeline)?;
        writeln!(f, "status     {:?}", self.status)?;
        if self.status == RunStatus::NothingNew {
            let why = self.source_empty.as_ref().map(|w| format!(": {w}"));
            writeln!(
                f,
                "nothing new to load{} (watermark {})",
                why.unwrap_or_default(),
                show(&self.watermark_before)
            )?;
            return write!(f, "duration   {:.2} s", self.duration.as_secs_f64());
        }
        match self.files {
            0 => writeln!(f, "load       {}", self.load_id)?,
            n => writeln!(f, "load       {} ({n} files)", self.load_id)?,
        }
        writeln!(f, "rows read        {:>10}", self.rows_read)?;
        writeln!(
            f,
            "rows rejected    {:>10}  (dropped by transforms)",
            self.rows_rejected
        )?;
        writeln!(f, "rows quarantined {:>10}", self.rows_quarantined)?;
        for (sink, rows) in &self.loaded {
            let note = if self.replayed_sinks.contains(sink) {
                "  (already loaded: replay skipped)"
            } else {
                ""
            };
            writeln!(f, "loaded {sink:<10}{rows:>10}{note}")?;
        }
        writeln!(
            f,
            "watermark  {} -> {}",
            show(&self.watermark_before),
            show(&self.watermark_after)
        )?;
        write!(f, "duration   {:.2} s", self.duration.as_secs_f64())
    }
}
