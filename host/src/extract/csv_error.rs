//! A CSV reading error as a user can act on it: the row and column, the value, and what to
//! do — instead of arrow's wording, which counts lines three different ways (schema
//! inference counts file lines, the decoder counts records with the header as record 0)
//! and dumps the whole row.
//!
//! Rows are counted as everywhere in Weir (`_weir_row`, the null-cursor error): the first
//! record after the header is row 1, so row N is on line N + 1 unless a quoted field spans
//! lines.

use arrow::datatypes::{DataType, TimeUnit};
use arrow::error::ArrowError;

use super::file::type_name;

/// What went wrong, and where: `row` is `None` when arrow's message names no row.
#[derive(Debug, PartialEq, Eq)]
pub struct CsvProblem {
    pub row: Option<u64>,
    pub message: String,
}

/// The columns of the file being read (names in file order) and which of them the pipeline
/// declared a type for (the others were inferred).
pub struct Columns<'a> {
    pub names: &'a [String],
    pub declared: &'a dyn Fn(&str) -> bool,
}

impl Columns<'_> {
    fn name(&self, index: usize) -> String {
        match self.names.get(index) {
            Some(name) => format!("`{name}`"),
            None => format!("field {}", index + 1),
        }
    }
}

pub fn explain(error: &ArrowError, columns: &Columns<'_>) -> CsvProblem {
    let text = match error {
        ArrowError::CsvError(text) | ArrowError::ParseError(text) => text.as_str(),
        _ => "",
    };
    ragged(text)
        .or_else(|| not_utf8(text, columns))
        .or_else(|| bad_value(text, columns))
        .unwrap_or_else(|| CsvProblem {
            row: None,
            message: error.to_string(),
        })
}

fn ragged(text: &str) -> Option<CsvProblem> {
    // Schema inference (the csv crate) or the decoder; both count file lines.
    let (line, expected, found) = if let Some(rest) =
        text.strip_prefix("Encountered unequal lengths between records on CSV file. Expected ")
    {
        let (expected, rest) = rest.split_once(" records, found ")?;
        let (found, line) = rest.split_once(" records at line ")?;
        (line, expected, found)
    } else {
        let rest = text.strip_prefix("incorrect number of fields for line ")?;
        let (line, rest) = rest.split_once(", expected ")?;
        let (expected, found) = rest.split_once(" got ")?;
        (line, expected, found)
    };
    let row = number(line)?.checked_sub(1)?;
    let message = format!(
        "{found} fields where the header has {expected} (a ragged row, or a quote left open \
         that runs into the next lines)"
    );
    Some(CsvProblem {
        row: Some(row),
        message,
    })
}

fn not_utf8(text: &str, columns: &Columns<'_>) -> Option<CsvProblem> {
    // Both count file lines; the decoder counts fields from 1, the csv crate from 0.
    let (row, column) =
        if let Some(rest) = text.strip_prefix("Encountered invalid UTF-8 data for line ") {
            let (line, field) = rest.split_once(" and field ")?;
            (
                number(line)?.checked_sub(1)?,
                number(field)?.checked_sub(1)?,
            )
        } else {
            // "Encountered UTF-8 error while reading CSV file: … in field F near byte index B at line L"
            let rest = text.strip_prefix("Encountered UTF-8 error while reading CSV file: ")?;
            let (_, rest) = rest.split_once(" in field ")?;
            let (field, rest) = rest.split_once(' ')?;
            let (_, line) = rest.split_once(" at line ")?;
            (number(line)?.checked_sub(1)?, number(field)?)
        };
    let message = format!(
        "{} is not UTF-8 text; Weir reads CSV and NDJSON files as UTF-8 (convert the file, \
         e.g. `iconv -f latin1 -t utf-8`)",
        columns.name(column as usize)
    );
    Some(CsvProblem {
        row: Some(row),
        message,
    })
}

fn bad_value(text: &str, columns: &Columns<'_>) -> Option<CsvProblem> {
    // The value, its column's type (arrow's name when it has no Weir spelling), and where.
    let (value, data_type, column, row) =
        if let Some(rest) = text.strip_prefix("Error while parsing value '") {
            // The value may hold quotes; the part after it is fixed.
            let at = rest.rfind("' as type '")?;
            let (value, rest) = (&rest[..at], &rest[at + "' as type '".len()..]);
            let (arrow_type, rest) = rest.split_once("' for column ")?;
            let (column, rest) = rest.split_once(" at line ")?;
            let (row, _) = rest.split_once(". Row data: ")?;
            let data_type = arrow_type.parse::<DataType>().map_err(|_| arrow_type);
            (value, data_type, number(column)?, number(row)?)
        } else {
            // Timestamps: "Error parsing column C at line R: <chrono's reason>".
            let rest = text.strip_prefix("Error parsing column ")?;
            let (column, rest) = rest.split_once(" at line ")?;
            let (row, reason) = rest.split_once(": ")?;
            // "<why>: Error parsing timestamp from '<value>': <chrono's reason>"
            let value = reason
                .split_once(" from '")
                .and_then(|(_, rest)| rest.split_once("': "))
                .map(|(value, _)| value);
            let timestamp = Ok(DataType::Timestamp(TimeUnit::Microsecond, None));
            (
                value.unwrap_or(reason),
                timestamp,
                number(column)?,
                number(row)?,
            )
        };
    let column = column as usize;
    let name = columns.name(column);
    let integer = data_type.as_ref().is_ok_and(DataType::is_integer);
    let type_name = data_type.map_or_else(str::to_string, |t| type_name(&t));
    let digits = value.trim_start_matches(['-', '+']);
    let mut message = if value.contains('\n') {
        format!("{name} runs over a line break: a quote left open runs into the next lines")
    } else if integer && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        format!("{name} = '{value}' is out of range for {type_name}")
    } else {
        format!("{name} = '{value}' is not a valid {type_name}")
    };
    let declared = columns
        .names
        .get(column)
        .is_some_and(|n| (columns.declared)(n));
    if !declared && !value.contains('\n') {
        message += &format!(
            " (the type was inferred from the file's first rows; declare the column in \
             `source.schema`, e.g. {} = \"utf8\", to read it as written)",
            columns.names.get(column).map_or("column", |n| n.as_str())
        );
    }
    Some(CsvProblem {
        row: Some(row),
        message,
    })
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain_text(error: ArrowError) -> (Option<u64>, String) {
        let names = ["id".to_string(), "amount".to_string(), "name".to_string()];
        let declared = |name: &str| name == "amount";
        let columns = Columns {
            names: &names,
            declared: &declared,
        };
        let problem = explain(&error, &columns);
        (problem.row, problem.message)
    }

    #[test]
    fn rows_are_records_after_the_header_whoever_counted() {
        // Inference counts file lines; the decoder counts records from the header.
        let inferred = explain_text(ArrowError::CsvError(
            "Encountered unequal lengths between records on CSV file. Expected 3 records, found 4 records at line 3".into(),
        ));
        let decoded = explain_text(ArrowError::CsvError(
            "incorrect number of fields for line 3, expected 3 got 4".into(),
        ));
        assert_eq!(inferred, decoded);
        assert_eq!(inferred.0, Some(2));
        assert!(inferred.1.starts_with("4 fields where the header has 3"));

        let inferred = explain_text(ArrowError::CsvError(
            "Encountered UTF-8 error while reading CSV file: invalid utf-8: invalid UTF-8 in field 2 near byte index 3 at line 2".into(),
        ));
        let decoded = explain_text(ArrowError::CsvError(
            "Encountered invalid UTF-8 data for line 2 and field 3".into(),
        ));
        assert_eq!(inferred, decoded);
        assert_eq!(inferred.0, Some(1));
        assert!(inferred.1.starts_with("`name` is not UTF-8 text"));
    }

    #[test]
    fn values_name_their_column_and_what_to_declare() {
        let (row, message) = explain_text(ArrowError::ParseError(
            "Error while parsing value 'x'2' as type 'Int64' for column 0 at line 7. Row data: '[x'2,1,a]'".into(),
        ));
        assert_eq!(row, Some(7));
        assert!(
            message.starts_with("`id` = 'x'2' is not a valid int64 (the type was inferred"),
            "{message}"
        );
        let (_, message) = explain_text(ArrowError::ParseError(
            "Error while parsing value '-99999999999999999999' as type 'Int64' for column 1 at line 1. Row data: '[]'".into(),
        ));
        assert_eq!(
            message,
            "`amount` = '-99999999999999999999' is out of range for int64"
        );
    }

    #[test]
    fn other_errors_pass_through() {
        let error = ArrowError::CsvError("something new".into());
        assert_eq!(
            explain_text(error),
            (None, "Csv error: something new".into())
        );
    }
}
