//! Validation: the built-in checks declared in the pipeline file and the checks of validator
//! plugins, gathered per row, so that a failing load is either stopped with the source and
//! row of its bad rows named, or split into rows to load and rows to quarantine.

mod builtin;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};

pub use builtin::{Checker, check_name};

use crate::extract::incremental::{provenance_row, provenance_source};

/// The column quarantined rows carry: the names of the checks they failed.
pub const FAILED_CHECKS_COLUMN: &str = "_weir_failed_checks";

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("check `{check}`: the data has no column `{column}` (columns: {available})")]
    MissingColumn {
        check: String,
        column: String,
        available: String,
    },
    #[error("check `{check}`: column `{column}` ({data_type}) {message}")]
    WrongType {
        check: String,
        column: String,
        data_type: String,
        message: String,
    },
}

/// The failed checks of each failing row of one batch, by row index.
#[derive(Debug, Default)]
pub struct Verdict {
    pub failing: BTreeMap<usize, Vec<String>>,
}

impl Verdict {
    pub fn fail(&mut self, row: usize, check: &str) {
        let checks = self.failing.entry(row).or_default();
        if !checks.iter().any(|c| c == check) {
            checks.push(check.to_string());
        }
    }

    pub fn is_clean(&self) -> bool {
        self.failing.is_empty()
    }

    /// The rows to load and the rows to quarantine (with the failed check names).
    pub fn split(&self, batch: &RecordBatch) -> (RecordBatch, RecordBatch) {
        let keep = BooleanArray::from_iter(
            (0..batch.num_rows()).map(|i| Some(!self.failing.contains_key(&i))),
        );
        let good = filter_record_batch(batch, &keep).expect("mask matches the batch");
        let indexes = UInt32Array::from_iter_values(self.failing.keys().map(|&i| i as u32));
        let bad = take_record_batch(batch, &indexes).expect("indexes within the batch");
        let reasons: StringArray = self.failing.values().map(|c| Some(c.join(","))).collect();
        let mut fields = bad.schema().fields().to_vec();
        fields.push(Arc::new(Field::new(
            FAILED_CHECKS_COLUMN,
            DataType::Utf8,
            false,
        )));
        let mut columns = bad.columns().to_vec();
        columns.push(Arc::new(reasons) as ArrayRef);
        let bad =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("same length");
        (good, bad)
    }
}

/// Failures across a load, for the report: counts per check and the first examples.
#[derive(Debug, Default, Clone)]
pub struct Failures {
    pub rows: u64,
    pub by_check: BTreeMap<String, u64>,
    pub examples: Vec<String>,
    /// Checks about the whole batch or load, which no quarantine can fix.
    pub load_level: Vec<String>,
}

const EXAMPLES: usize = 5;

impl Failures {
    pub fn add(&mut self, batch: &RecordBatch, verdict: &Verdict) {
        self.rows += verdict.failing.len() as u64;
        for (&row, checks) in &verdict.failing {
            for check in checks {
                *self.by_check.entry(check.clone()).or_default() += 1;
            }
            if self.examples.len() < EXAMPLES {
                let source = provenance_source(batch, row);
                let line = provenance_row(batch, row);
                self.examples
                    .push(format!("{source} row {line}: failed {}", checks.join(", ")));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.load_level.is_empty()
    }

    /// A multi-line report: totals per check, then example rows.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for failure in &self.load_level {
            let _ = writeln!(out, "  {failure}");
        }
        for (check, count) in &self.by_check {
            let rows = if *count == 1 { "row" } else { "rows" };
            let _ = writeln!(out, "  {check}: {count} {rows}");
        }
        for example in &self.examples {
            let _ = writeln!(out, "  e.g. {example}");
        }
        out.trim_end().to_string()
    }
}
