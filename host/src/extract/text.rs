//! CSV and NDJSON decoding from a byte stream, through arrow's push decoders, so a file is
//! never held in memory: bytes in, bounded batches out.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::{csv, json};

pub enum TextDecoder {
    // Boxed: the CSV decoder is much larger than the JSON one; one decoder per file.
    Csv(Box<csv::reader::Decoder>),
    Json(json::reader::Decoder),
}

impl TextDecoder {
    pub fn csv(schema: SchemaRef, batch_size: usize) -> TextDecoder {
        TextDecoder::Csv(Box::new(
            csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_batch_size(batch_size)
                .build_decoder(),
        ))
    }

    pub fn json(schema: SchemaRef, batch_size: usize) -> Result<TextDecoder, ArrowError> {
        Ok(TextDecoder::Json(
            json::ReaderBuilder::new(schema)
                .with_batch_size(batch_size)
                .build_decoder()?,
        ))
    }

    /// Feed bytes; returns how many were consumed. Fewer than given means a batch is full.
    pub fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match self {
            TextDecoder::Csv(d) => d.decode(buf),
            TextDecoder::Json(d) => d.decode(buf),
        }
    }

    pub fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            TextDecoder::Csv(d) => d.flush(),
            TextDecoder::Json(d) => d.flush(),
        }
    }

    /// Decodes all of `chunk`, returning the batches it filled. Chunks come from the store's
    /// byte stream and are small, so this holds about a batch at a time.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut full = Vec::new();
        while !chunk.is_empty() {
            let used = self.decode(chunk)?;
            chunk = &chunk[used..];
            if chunk.is_empty() {
                break;
            }
            // Bytes left over: the batch is full.
            match self.flush()? {
                Some(batch) => full.push(batch),
                None if used == 0 => {
                    return Err(ArrowError::ComputeError(
                        "the decoder made no progress".into(),
                    ));
                }
                None => {}
            }
        }
        Ok(full)
    }

    /// The last batch, once the input has ended.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.decode(&[])?;
        self.flush()
    }
}

/// Infer a schema from the first bytes of a file (cut at the last complete line).
pub fn infer_schema(
    csv_format: bool,
    head: &[u8],
    max_records: usize,
) -> Result<arrow::datatypes::Schema, ArrowError> {
    let end = head
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let head = &head[..end];
    if csv_format {
        let format = csv::reader::Format::default().with_header(true);
        Ok(format
            .infer_schema(std::io::Cursor::new(head), Some(max_records))?
            .0)
    } else {
        Ok(json::reader::infer_json_schema(std::io::BufReader::new(head), Some(max_records))?.0)
    }
}
