//! The built-in checks: not_null, unique (within the load), range, accepted_values, regex
//! (per row) and row_count (per load).

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{ValidateError, Verdict};
use crate::config::types::Check;

enum Compiled {
    NotNull(String),
    Unique(String),
    Range {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    Accepted {
        column: String,
        values: HashSet<String>,
    },
    Regex {
        column: String,
        pattern: regex::Regex,
    },
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
}

/// Runs the built-in checks over the batches of one load.
pub struct Checker {
    checks: Vec<(String, Compiled)>,
    /// Values seen so far per `unique` column (the memory of a unique check grows with the
    /// number of distinct values in the load).
    seen: HashMap<String, HashSet<String>>,
}

/// The name a check is reported under, e.g. `not_null(customer_id)`.
pub fn check_name(check: &Check) -> String {
    match check {
        Check::NotNull { column } => format!("not_null({column})"),
        Check::Unique { column } => format!("unique({column})"),
        Check::Range { column, .. } => format!("range({column})"),
        Check::AcceptedValues { column, .. } => format!("accepted_values({column})"),
        Check::Regex { column, .. } => format!("regex({column})"),
        Check::RowCount { .. } => "row_count".to_string(),
    }
}

impl Checker {
    /// Checks come validated from the config module (regexes compile there too).
    pub fn new(checks: &[Check]) -> Checker {
        let checks = checks
            .iter()
            .map(|check| {
                let compiled = match check.clone() {
                    Check::NotNull { column } => Compiled::NotNull(column),
                    Check::Unique { column } => Compiled::Unique(column),
                    Check::Range { column, min, max } => Compiled::Range { column, min, max },
                    Check::AcceptedValues { column, values } => Compiled::Accepted {
                        column,
                        values: values.into_iter().collect(),
                    },
                    Check::Regex { column, pattern } => Compiled::Regex {
                        column,
                        pattern: regex::Regex::new(&pattern).expect("validated in config"),
                    },
                    Check::RowCount { min, max } => Compiled::RowCount { min, max },
                };
                (check_name(check), compiled)
            })
            .collect();
        Checker {
            checks,
            seen: HashMap::new(),
        }
    }

    /// Run the per-row checks over one batch, adding failures to `verdict`.
    pub fn check_batch(
        &mut self,
        batch: &RecordBatch,
        verdict: &mut Verdict,
    ) -> Result<(), ValidateError> {
        for (name, check) in &self.checks {
            match check {
                Compiled::NotNull(column) => {
                    let values = column_of(batch, name, column)?;
                    for row in (0..values.len()).filter(|&i| values.is_null(i)) {
                        verdict.fail(row, name);
                    }
                }
                Compiled::Unique(column) => {
                    let values = column_of(batch, name, column)?;
                    let seen = self.seen.entry(column.clone()).or_default();
                    let formatter =
                        ArrayFormatter::try_new(values.as_ref(), &FormatOptions::default())
                            .map_err(|e| wrong_type(name, column, &values, e.to_string()))?;
                    for row in (0..values.len()).filter(|&i| values.is_valid(i)) {
                        if !seen.insert(formatter.value(row).to_string()) {
                            verdict.fail(row, name);
                        }
                    }
                }
                Compiled::Range { column, min, max } => {
                    let values = column_of(batch, name, column)?;
                    let numbers = cast(&values, &DataType::Float64)
                        .map_err(|_| wrong_type(name, column, &values, "is not numeric".into()))?;
                    for (row, value) in numbers.as_primitive::<Float64Type>().iter().enumerate() {
                        let out = value.is_some_and(|v| {
                            min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) || v.is_nan()
                        });
                        if out {
                            verdict.fail(row, name);
                        }
                    }
                }
                Compiled::Accepted {
                    column,
                    values: accepted,
                } => {
                    for_each_text(batch, name, column, |row, text| {
                        if !accepted.contains(text) {
                            verdict.fail(row, name);
                        }
                    })?;
                }
                Compiled::Regex { column, pattern } => {
                    for_each_text(batch, name, column, |row, text| {
                        if !pattern.is_match(text) {
                            verdict.fail(row, name);
                        }
                    })?;
                }
                Compiled::RowCount { .. } => {}
            }
        }
        Ok(())
    }

    /// The load-level checks, given the rows the load would write.
    pub fn check_load(&self, rows: u64) -> Vec<String> {
        self.checks
            .iter()
            .filter_map(|(name, check)| match check {
                Compiled::RowCount { min, max }
                    if min.is_some_and(|m| rows < m) || max.is_some_and(|m| rows > m) =>
                {
                    let bounds = format!(
                        "between {} and {}",
                        min.map_or("0".into(), |m| m.to_string()),
                        max.map_or("any number".into(), |m| m.to_string())
                    );
                    Some(format!(
                        "{name}: the load has {rows} rows; expected {bounds}"
                    ))
                }
                _ => None,
            })
            .collect()
    }
}

fn column_of(batch: &RecordBatch, check: &str, column: &str) -> Result<ArrayRef, ValidateError> {
    batch
        .column_by_name(column)
        .cloned()
        .ok_or_else(|| ValidateError::MissingColumn {
            check: check.to_string(),
            column: column.to_string(),
            available: batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| !n.starts_with("_weir_"))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn wrong_type(check: &str, column: &str, values: &ArrayRef, message: String) -> ValidateError {
    ValidateError::WrongType {
        check: check.to_string(),
        column: column.to_string(),
        data_type: values.data_type().to_string(),
        message,
    }
}

/// Visit the non-null values of a column as text.
fn for_each_text(
    batch: &RecordBatch,
    check: &str,
    column: &str,
    mut f: impl FnMut(usize, &str),
) -> Result<(), ValidateError> {
    let values = column_of(batch, check, column)?;
    let text = cast(&values, &DataType::Utf8)
        .map_err(|e| wrong_type(check, column, &values, e.to_string()))?;
    for (row, value) in text.as_string::<i32>().iter().enumerate() {
        if let Some(value) = value {
            f(row, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};

    use super::*;

    fn batch(
        ids: Vec<Option<i64>>,
        totals: Vec<Option<f64>>,
        codes: Vec<Option<&str>>,
    ) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("total", Arc::new(Float64Array::from(totals)) as ArrayRef),
            ("code", Arc::new(StringArray::from(codes)) as ArrayRef),
        ])
        .unwrap()
    }

    fn failing(checker: &mut Checker, batch: &RecordBatch) -> Vec<(usize, Vec<String>)> {
        let mut verdict = Verdict::default();
        checker.check_batch(batch, &mut verdict).unwrap();
        verdict.failing.into_iter().collect()
    }

    #[test]
    fn each_row_check_names_exactly_its_failing_rows() {
        let checks = [
            Check::NotNull {
                column: "id".into(),
            },
            Check::Range {
                column: "total".into(),
                min: Some(0.0),
                max: Some(100.0),
            },
            Check::AcceptedValues {
                column: "code".into(),
                values: vec!["USD".into(), "EUR".into()],
            },
            Check::Regex {
                column: "code".into(),
                pattern: "^[A-Z]{3}$".into(),
            },
        ];
        let mut checker = Checker::new(&checks);
        let b = batch(
            vec![Some(1), None, Some(3), Some(4)],
            vec![Some(5.0), Some(-1.0), Some(250.0), None],
            vec![Some("USD"), Some("EUR"), Some("usd"), None],
        );
        assert_eq!(
            failing(&mut checker, &b),
            vec![
                (
                    1,
                    vec!["not_null(id)".to_string(), "range(total)".to_string()]
                ),
                (
                    2,
                    vec![
                        "range(total)".into(),
                        "accepted_values(code)".into(),
                        "regex(code)".into()
                    ]
                ),
            ]
        );
    }

    #[test]
    fn unique_spans_the_batches_of_a_load() {
        let mut checker = Checker::new(&[Check::Unique {
            column: "id".into(),
        }]);
        let first = batch(
            vec![Some(1), Some(2), Some(1), None],
            vec![None; 4],
            vec![None; 4],
        );
        assert_eq!(
            failing(&mut checker, &first),
            vec![(2, vec!["unique(id)".to_string()])]
        );
        let second = batch(vec![Some(2), Some(3), None], vec![None; 3], vec![None; 3]);
        assert_eq!(
            failing(&mut checker, &second),
            vec![(0, vec!["unique(id)".to_string()])]
        );
    }

    #[test]
    fn row_count_is_checked_over_the_load() {
        let checker = Checker::new(&[Check::RowCount {
            min: Some(1),
            max: Some(10),
        }]);
        assert!(checker.check_load(5).is_empty());
        assert_eq!(
            checker.check_load(0),
            vec!["row_count: the load has 0 rows; expected between 1 and 10"]
        );
        assert_eq!(
            checker.check_load(11),
            vec!["row_count: the load has 11 rows; expected between 1 and 10"]
        );
    }

    #[test]
    fn a_check_on_a_missing_column_says_which_columns_exist() {
        let mut checker = Checker::new(&[Check::NotNull {
            column: "shipped".into(),
        }]);
        let mut verdict = Verdict::default();
        let error = checker
            .check_batch(&batch(vec![Some(1)], vec![None], vec![None]), &mut verdict)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "check `not_null(shipped)`: the data has no column `shipped` (columns: id, total, code)"
        );
    }
}
