//! {{name}}: upper-cases every string column (but the `_weir_` provenance columns, which
//! name the source file and row of each row and must pass through unchanged). Build with `host plugin build .`, check with
//! `host plugin test . --input test/input.csv --expect test/expected.csv`.

use std::sync::Arc;

use weir_sdk::arrow::array::{AsArray, RecordBatch, StringArray};
use weir_sdk::arrow::schema::DataType;
use weir_sdk::{Config, Error, Output, Transform};

struct Upper;

impl Transform for Upper {
    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Upper)
    }

    fn transform(&mut self, batch: RecordBatch) -> Result<Output, Error> {
        // The input as it is; only the columns set below go back to the host.
        let mut output = Output::from(batch.clone());
        for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
            if column.data_type() == &DataType::Utf8 && !field.name().starts_with("_weir_") {
                let upper: StringArray = column
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_uppercase))
                    .collect();
                output.set(field.clone(), Arc::new(upper))?;
            }
        }
        Ok(output)
    }
}

weir_sdk::export_transform!(Upper);
