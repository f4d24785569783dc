//! Arrow IPC stream buffers as they cross the plugin boundary. Output from a plugin is
//! untrusted: it is fully validated, and a panic inside the decoder becomes an error.

use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::{StreamDecoder, StreamReader};
use arrow::ipc::writer::{StreamEncoder, StreamWriter};

/// The stream of one batch as its ordered segments: the framing, and the batch's own
/// buffers (not copied) in between. Their bytes in order are the IPC stream.
pub fn encode_batch_segments(batch: &RecordBatch) -> Result<Vec<Buffer>, ArrowError> {
    let mut encoder = StreamEncoder::try_new(batch.schema_ref())?;
    let mut segments = encoder.encode(batch)?;
    segments.extend(encoder.finish()?);
    Ok(segments)
}

#[cfg(test)]
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let segments = encode_batch_segments(batch)?;
    Ok(segments
        .iter()
        .flat_map(|s| s.as_slice())
        .copied()
        .collect())
}

pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    StreamWriter::try_new(&mut out, schema)?.finish()?;
    Ok(out)
}

/// Decode a stream that must hold exactly one record batch, fully validated. The batch's
/// arrays point into `bytes` (no copy); only misaligned buffers are copied.
pub fn decode_batch(mut bytes: Buffer) -> Result<RecordBatch, String> {
    guarded(|| {
        let mut decoder = StreamDecoder::new();
        let batch = decoder
            .decode(&mut bytes)?
            .ok_or_else(|| ArrowError::IpcError("the stream holds no record batch".into()))?;
        if decoder.decode(&mut bytes)?.is_some() {
            return Err(ArrowError::IpcError(
                "the stream holds more than one record batch".into(),
            ));
        }
        decoder.finish()?;
        Ok(batch)
    })
}

/// Decode a stream that holds a schema (batches, if any, are ignored).
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, String> {
    guarded(|| Ok(StreamReader::try_new(bytes, None)?.schema()))
}

fn guarded<T>(decode: impl FnOnce() -> Result<T, ArrowError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the Arrow decoder rejected it (malformed buffers)".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    fn batch() -> RecordBatch {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from(vec![7, 8]))),
            ("text", Arc::new(StringArray::from(vec!["wxyz", "wxyz"]))),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    /// `bytes` with the one occurrence of `from` replaced by `to`.
    fn replaced(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at: Vec<usize> = (0..bytes.len() - from.len())
            .filter(|&i| &bytes[i..i + from.len()] == from)
            .collect();
        assert_eq!(at.len(), 1, "{from:?} occurs once");
        let mut out = bytes.to_vec();
        out[at[0]..at[0] + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn segments_make_the_stream_a_stream_writer_writes() {
        let mut written = Vec::new();
        let mut writer = StreamWriter::try_new(&mut written, batch().schema_ref()).unwrap();
        writer.write(&batch()).unwrap();
        writer.finish().unwrap();
        drop(writer);
        let segments = encode_batch_segments(&batch()).unwrap();
        assert!(segments.len() > 2, "framing and the batch's buffers apart");
        assert_eq!(encode_batch(&batch()).unwrap(), written);
    }

    #[test]
    fn output_decodes_only_when_it_is_one_valid_batch() {
        let good = encode_batch(&batch()).unwrap();
        assert_eq!(decode_batch(good.clone().into()).unwrap(), batch());

        // The values buffer holds "wxyzwxyz": break the UTF-8, then an offset (0, 4, 8).
        let not_utf8 = replaced(&good, b"wxyzwxyz", &[0xff]);
        assert!(decode_batch(not_utf8.into()).unwrap_err().contains("UTF"));
        let offsets: Vec<u8> = [0i32, 4, 8].iter().flat_map(|o| o.to_le_bytes()).collect();
        let past_the_end = replaced(&good, &offsets, &[0, 0, 0, 0, 40]);
        assert!(decode_batch(past_the_end.into()).is_err());

        let schema_only = encode_schema(&batch().schema()).unwrap();
        assert!(decode_batch(schema_only.into()).is_err());
        let mut two = Vec::new();
        let mut writer = StreamWriter::try_new(&mut two, batch().schema_ref()).unwrap();
        writer.write(&batch()).unwrap();
        writer.write(&batch()).unwrap();
        writer.finish().unwrap();
        drop(writer);
        assert!(
            decode_batch(two.into())
                .unwrap_err()
                .contains("more than one")
        );
    }
}
