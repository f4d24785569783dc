//! A page's records to Arrow: found at the `records` path, typed by the declared schema and
//! what the first page with records shows, decoded in bounded batches by arrow's JSON
//! decoder, with provenance (`_weir_source` = the page's URL, secrets masked; `_weir_row` =
//! the record's place in its page, from 1).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::json::reader::{Decoder, ReaderBuilder, infer_json_schema_from_iterator};
use serde_json::Value;

use crate::config::types::ColumnType;
use crate::extract::file::arrow_type;
use crate::extract::provenance;

/// The value at a dotted path (`data.items`).
pub(super) fn lookup<'v>(body: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(body, |value, key| value.get(key))
}

/// Takes the records array out of a response (the body itself without a path), leaving
/// null in its place. Errors name what was found instead.
pub(super) fn take_records(body: &mut Value, path: Option<&str>) -> Result<Vec<Value>, String> {
    let Some(path) = path else {
        return match body.take() {
            Value::Array(records) => Ok(records),
            other => Err(format!(
                "the response is {}, not an array of records; set `source.records` to the \
                 path of the records array{}",
                kind(&other),
                keys_of(&other)
            )),
        };
    };
    let mut value = body;
    let mut walked = Vec::new();
    for key in path.split('.') {
        let here = if walked.is_empty() {
            "the response".to_string()
        } else {
            format!("`{}`", walked.join("."))
        };
        if !value.is_object() {
            return Err(format!(
                "no `{path}` in the response: {here} is {}, not an object",
                kind(value)
            ));
        }
        let keys = keys_of(value);
        value = match value.get_mut(key) {
            Some(inner) => inner,
            None => {
                return Err(format!(
                    "no `{path}` in the response: {here} has no `{key}`{keys}; check \
                     `source.records`"
                ));
            }
        };
        walked.push(key);
    }
    match value.take() {
        Value::Array(records) => Ok(records),
        // An API may send null for an empty page.
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "`{path}` is {}, not an array of records; check `source.records`",
            kind(&other)
        )),
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// ` (keys: a, b, c)` for an object, for messages.
fn keys_of(value: &Value) -> String {
    match value.as_object() {
        Some(object) if !object.is_empty() => {
            let keys: Vec<String> = object.keys().take(20).map(|k| format!("`{k}`")).collect();
            format!(" (its keys: {})", keys.join(", "))
        }
        _ => String::new(),
    }
}

/// The columns of `records`: inferred, then the declared types over them (and declared
/// columns the records lack, added). A column that is null in every record is read as text.
pub(super) fn schema_of(
    records: &[Value],
    declared: &BTreeMap<String, ColumnType>,
) -> Result<SchemaRef, String> {
    let inferred = infer_json_schema_from_iterator(records.iter().map(Ok))
        .map_err(|e| format!("cannot infer the records' columns: {e}"))?;
    let mut fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| match (declared.get(f.name()), f.data_type()) {
            (Some(t), _) => Field::new(f.name(), arrow_type(*t), true),
            (None, DataType::Null) => Field::new(f.name(), DataType::Utf8, true),
            (None, _) => f.as_ref().clone(),
        })
        .collect();
    for (name, t) in declared {
        if inferred.field_with_name(name).is_err() {
            fields.push(Field::new(name, arrow_type(*t), true));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Records in, batches of at most `batch_size` rows out.
pub(super) struct Batcher {
    declared: BTreeMap<String, ColumnType>,
    batch_size: usize,
    /// Set by the first page with records; every batch has it.
    decoder: Option<Decoder>,
    sources: StringBuilder,
    rows: Int64Builder,
}

impl Batcher {
    pub(super) fn new(declared: BTreeMap<String, ColumnType>, batch_size: usize) -> Batcher {
        Batcher {
            declared,
            batch_size,
            decoder: None,
            sources: StringBuilder::new(),
            rows: Int64Builder::new(),
        }
    }

    /// Adds one page's records; returns the batches that filled up.
    pub(super) fn push(
        &mut self,
        source: &str,
        records: &[Value],
    ) -> Result<Vec<RecordBatch>, String> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if self.decoder.is_none() {
            let schema = schema_of(records, &self.declared)?;
            let decoder = ReaderBuilder::new(schema)
                // Numbers and booleans in a text column are kept as their text.
                .with_coerce_primitive(true)
                .with_batch_size(self.batch_size)
                .build_decoder()
                .map_err(|e| e.to_string())?;
            self.decoder = Some(decoder);
        }
        let mut full = Vec::new();
        let mut start = 0;
        while start < records.len() {
            let decoder = self.decoder.as_mut().expect("made above");
            let end = records.len().min(start + self.batch_size - decoder.len());
            decoder.serialize(&records[start..end]).map_err(|e| {
                format!(
                    "records {}..{}: {e}; declare the column's type in `source.schema` if the \
                     first page with records did not show it",
                    start + 1,
                    end
                )
            })?;
            for row in start..end {
                self.sources.append_value(source);
                self.rows.append_value(row as i64 + 1);
            }
            start = end;
            if self
                .decoder
                .as_ref()
                .is_some_and(|d| d.len() == self.batch_size)
            {
                full.extend(self.flush()?);
            }
        }
        Ok(full)
    }

    /// The rows not yet in a batch.
    pub(super) fn flush(&mut self) -> Result<Option<RecordBatch>, String> {
        let Some(batch) = self
            .decoder
            .as_mut()
            .map(|d| d.flush())
            .transpose()
            .map_err(|e| e.to_string())?
            .flatten()
        else {
            return Ok(None);
        };
        let (sources, rows) = (self.sources.finish(), self.rows.finish());
        provenance::append(&batch, Arc::new(sources), Arc::new(rows))
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use serde_json::json;

    use crate::extract::{ROW_COLUMN, SOURCE_COLUMN};

    use super::*;

    #[test]
    fn records_are_found_by_path_and_a_wrong_path_names_the_keys() {
        let mut body = json!({"data": {"items": [{"a": 1}], "next": "x"}});
        assert_eq!(
            take_records(&mut body, Some("data.items")).unwrap().len(),
            1
        );
        assert_eq!(lookup(&body, "data.next"), Some(&json!("x")));
        let mut body = json!({"data": {"rows": []}});
        let error = take_records(&mut body, Some("data.items")).unwrap_err();
        assert_eq!(
            error,
            "no `data.items` in the response: `data` has no `items` (its keys: `rows`); check `source.records`"
        );
        let mut body = json!({"results": []});
        let error = take_records(&mut body, None).unwrap_err();
        assert!(
            error.contains("an object, not an array") && error.contains("`results`"),
            "{error}"
        );
        let mut body = json!({"data": 3});
        let error = take_records(&mut body, Some("data.items")).unwrap_err();
        assert!(
            error.contains("`data` is a number, not an object"),
            "{error}"
        );
    }

    #[test]
    fn batches_are_bounded_and_carry_provenance_across_pages() {
        let declared = BTreeMap::from([("ts".to_string(), ColumnType::Timestamp)]);
        let mut batcher = Batcher::new(declared, 3);
        let page = |n: i64| -> Vec<Value> {
            (0..n)
                .map(|i| json!({"id": i, "note": null, "ts": "2024-06-01T00:00:00Z"}))
                .collect()
        };
        let full = batcher.push("p1", &page(2)).unwrap();
        assert!(full.is_empty());
        let full = batcher.push("p2", &page(5)).unwrap();
        assert_eq!(
            full.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [3, 3]
        );
        let rest = batcher.flush().unwrap().unwrap();
        assert_eq!(rest.num_rows(), 1);
        let first = &full[0];
        assert_eq!(
            first.schema().field_with_name("note").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(matches!(
            first.schema().field_with_name("ts").unwrap().data_type(),
            DataType::Timestamp(_, _)
        ));
        let sources = first
            .column_by_name(SOURCE_COLUMN)
            .unwrap()
            .as_string::<i32>();
        assert_eq!(
            sources.iter().flatten().collect::<Vec<_>>(),
            ["p1", "p1", "p2"]
        );
        let rows = first
            .column_by_name(ROW_COLUMN)
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(rows.values().to_vec(), [1, 2, 1]);
        assert!(batcher.flush().unwrap().is_none());
    }
}
