//! Entry points for the fuzz targets (`fuzz/`): the three places untrusted bytes enter the
//! host — a pipeline file, the Arrow IPC a plugin returns, and CSV/NDJSON source files —
//! each taken through the same code a run uses. None may panic, whatever the bytes.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::extract::file::csv_error;
use crate::extract::text::{TextDecoder, infer_schema};
use crate::plugin::bindings::{ColumnSource, Transformed};
use crate::plugin::{columns, ipc, session};

/// Parse and validate a pipeline file's text (as `fuzz/pipeline.toml`; no `${VAR}` is set).
pub fn pipeline_file(src: &str) {
    let _ = crate::config::load_str(Path::new("fuzz/pipeline.toml"), src, |_| {
        Err(std::env::VarError::NotPresent)
    });
}

/// Decode a plugin's output and check it against the schema it declared (a few columns
/// of common types); what decodes must be valid by Arrow's own full validation. Then
/// assemble answers by columns with the bytes as their computed columns.
pub fn plugin_output(bytes: Vec<u8>) {
    let declared = Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("total_usd", DataType::Float64, true),
    ]);
    if let Ok(batch) = ipc::decode_batch(bytes.clone().into()) {
        // What the decoder's own validation accepts, Arrow's must too.
        for column in batch.columns() {
            if let Err(e) = column.to_data().validate_full() {
                panic!("decode_batch accepted an array Arrow rejects: {e}");
            }
        }
        let _ = session::schema_difference(&declared, batch.schema_ref());
    }
    // The same bytes as the computed columns of answers by columns over a ten-row input.
    let input = RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from(vec![Some("x"); 10])) as _,
        ),
    ])
    .expect("a valid batch");
    use ColumnSource::{Computed, Input};
    for (keep, columns) in [
        (None, vec![Computed(0), Input(0)]),
        (
            Some(vec![0b0101_0101, 0b11]),
            vec![Input(1), Computed(1), Computed(0)],
        ),
    ] {
        let answer = Transformed {
            keep,
            computed: bytes.clone(),
            columns,
        };
        let _ = columns::assemble(&input, answer);
    }
}

/// Infer a schema from a file's head and decode the whole file in small batches and odd-sized
/// chunks, as a run does: with the provenance columns, and CSV errors explained.
pub fn text_file(bytes: &[u8], csv: bool) {
    let Ok(schema) = infer_schema(csv, &bytes[..bytes.len().min(64 * 1024)], 100) else {
        return;
    };
    let schema = std::sync::Arc::new(schema);
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let decoder = if csv {
        Ok(TextDecoder::csv(schema, 7))
    } else {
        TextDecoder::json(schema, 7)
    };
    let Ok(mut decoder) = decoder else {
        return;
    };
    let mut row = 1;
    let mut columns = crate::extract::provenance::Provenance::new("fuzz.csv");
    let mut provenance = |batch: &arrow::array::RecordBatch| {
        let _ = columns.attach(batch, row);
        row += batch.num_rows() as i64;
    };
    let explain = |error| {
        let _ = csv_error("fuzz.csv", &names, &Default::default(), error).to_string();
    };
    for chunk in bytes.chunks(997) {
        match decoder.push(chunk) {
            Ok(batches) => batches.iter().for_each(&mut provenance),
            Err(error) => return explain(error),
        }
    }
    match decoder.finish() {
        Ok(batch) => batch.iter().for_each(&mut provenance),
        Err(error) => explain(error),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};

    use super::*;

    fn seeds(target: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds")
            .join(target)
    }

    fn regressions(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions")
            .join(target);
        std::fs::read_dir(dir)
            .unwrap()
            .map(|f| std::fs::read(f.unwrap().path()).unwrap())
            .collect()
    }

    /// Inputs that once crashed a fuzz target: each is now an error, not a panic.
    #[test]
    fn the_regression_inputs_are_errors() {
        for bytes in regressions("plugin_output")
            .into_iter()
            .filter(|b| !b.is_empty())
        {
            assert!(ipc::decode_batch(bytes.into()).is_err());
        }
        for bytes in regressions("pipeline_file") {
            pipeline_file(&String::from_utf8_lossy(&bytes));
        }
        for bytes in regressions("text_file") {
            if let Some((&first, rest)) = bytes.split_first() {
                text_file(rest, first % 2 == 0);
            }
        }
    }

    /// The seed corpus is made of valid inputs that go all the way through (the plugin
    /// output seed is written here, from a real batch, when missing).
    #[test]
    fn the_seed_inputs_are_valid_and_go_through() {
        let batch = RecordBatch::try_from_iter(vec![
            ("order_id", Arc::new(Int64Array::from(vec![1, 2])) as _),
            (
                "customer",
                Arc::new(StringArray::from(vec![Some("a"), None])) as _,
            ),
            (
                "total_usd",
                Arc::new(Float64Array::from(vec![1.5, 2.5])) as _,
            ),
        ])
        .unwrap();
        let seed = seeds("plugin_output").join("orders.arrow");
        if !seed.exists() {
            std::fs::write(&seed, ipc::encode_batch(&batch).unwrap()).unwrap();
        }
        let bytes = std::fs::read(&seed).unwrap();
        assert_eq!(ipc::decode_batch(bytes.clone().into()).unwrap(), batch);
        plugin_output(bytes);

        for file in std::fs::read_dir(seeds("pipeline_file")).unwrap() {
            pipeline_file(&std::fs::read_to_string(file.unwrap().path()).unwrap());
        }
        for file in std::fs::read_dir(seeds("text_file")).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            text_file(&bytes[1..], bytes[0] % 2 == 0);
        }
    }
}
