//! {{name}}: upper-cases every string column (but the `_weir_` provenance columns, which
//! name the source file and row of each row and must pass through unchanged). Build with `host plugin build .`, check with
//! `host plugin test . --input test/input.csv --expect test/expected.csv`.

use std::sync::Arc;

use weir_sdk::arrow::array::{ArrayRef, AsArray, RecordBatch};
use weir_sdk::arrow::schema::DataType;
use weir_sdk::{Config, Error, Transform};

struct Upper;

impl Transform for Upper {
    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Upper)
    }

    fn transform(&mut self, batch: RecordBatch) -> Result<RecordBatch, Error> {
        let schema = batch.schema();
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| match column.data_type() {
                DataType::Utf8 if !field.name().starts_with("_weir_") => {
                    let upper: weir_sdk::arrow::array::StringArray = column
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.map(str::to_uppercase))
                        .collect();
                    Arc::new(upper) as ArrayRef
                }
                _ => column.clone(),
            })
            .collect();
        RecordBatch::try_new(batch.schema(), columns).map_err(|e| Error::internal(e.to_string()))
    }
}

weir_sdk::export_transform!(Upper);
