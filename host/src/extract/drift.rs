//! Schema drift between the files of one load. Each file's schema is read (or inferred) on
//! its own, and a sink's table follows the load's first batch, so a file with a column more
//! would lose it silently and one with a column less or renamed would fail in the sink,
//! far from the cause. The load stops at the first file whose columns differ, naming it.
//!
//! Types may differ: inference gives a text column to a file whose dates include a bad one
//! and a timestamp column to the next, and the steps and sinks take either (a type a sink
//! cannot hold fails there, naming the column).

use arrow::datatypes::{Schema, SchemaRef};

use super::ExtractError;
use super::file::type_name;

/// The columns of the load's first part, once one has been read.
#[derive(Default)]
pub struct LoadColumns {
    first: Option<(String, SchemaRef)>,
}

impl LoadColumns {
    /// Checks a batch of `part` against the load's first part: the same column names, in
    /// order.
    pub fn check(&mut self, part: &str, schema: &SchemaRef) -> Result<(), ExtractError> {
        let Some((first, expected)) = &self.first else {
            self.first = Some((part.to_string(), schema.clone()));
            return Ok(());
        };
        if first == part || same_columns(expected, schema) {
            return Ok(());
        }
        Err(ExtractError::Drift {
            path: part.to_string(),
            first: first.clone(),
            message: differences(expected, schema),
        })
    }
}

fn same_columns(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(a, b)| a.name() == b.name())
}

fn differences(expected: &Schema, found: &Schema) -> String {
    let new = found
        .fields()
        .iter()
        .filter(|f| expected.field_with_name(f.name()).is_err())
        .map(|f| format!("`{}` ({}) is new", f.name(), type_name(f.data_type())));
    let missing = expected
        .fields()
        .iter()
        .filter(|f| found.field_with_name(f.name()).is_err())
        .map(|f| format!("`{}` is missing", f.name()));
    let all: Vec<String> = new.chain(missing).collect();
    match all.is_empty() {
        true => "the same columns in another order".to_string(),
        false => all.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field};

    use super::*;

    fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, t)| Field::new(*name, t.clone(), true))
            .collect();
        Arc::new(Schema::new(fields))
    }

    #[test]
    fn names_what_changed_from_the_first_file() {
        let mut load = LoadColumns::default();
        let first = schema(&[("id", DataType::Int64), ("amount", DataType::Int64)]);
        load.check("a.csv", &first).unwrap();
        load.check("a.csv", &first).unwrap();
        let same = schema(&[("id", DataType::Int64), ("amount", DataType::Int64)]);
        load.check("b.csv", &same).unwrap();

        // Inferred types may differ from file to file.
        let retyped = schema(&[("id", DataType::Int64), ("amount", DataType::Float64)]);
        load.check("b.csv", &retyped).unwrap();

        let drifted = schema(&[("id", DataType::Int64), ("note", DataType::Utf8)]);
        let error = load.check("c.csv", &drifted).unwrap_err().to_string();
        assert_eq!(
            error,
            "c.csv: its columns differ from those of a.csv (the load's first file): `note` (utf8) \
             is new; `amount` is missing; every file of a load must have the same columns"
        );
        let reordered = schema(&[("amount", DataType::Int64), ("id", DataType::Int64)]);
        let error = load.check("d.csv", &reordered).unwrap_err().to_string();
        assert!(
            error.contains("the same columns in another order"),
            "{error}"
        );
    }
}
