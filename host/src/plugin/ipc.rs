//! Arrow IPC stream buffers as they cross the plugin boundary. Output from a plugin is
//! untrusted: it is fully validated, and a panic inside the decoder becomes an error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow::array::{ArrayData, RecordBatch, RecordBatchOptions};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::convert::try_fb_to_schema;
use arrow::ipc::reader::{FileDecoder, StreamReader};
use arrow::ipc::writer::{StreamEncoder, StreamWriter};
use arrow::ipc::{Block, Message, MessageHeader, root_as_message};

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
pub fn decode_batch(bytes: Buffer) -> Result<RecordBatch, String> {
    guarded(|| {
        let batch = read_unvalidated(&bytes)?;
        let (schema, columns, rows) = batch.into_parts();
        for column in &columns {
            validate(&column.to_data())?;
        }
        // Field types, lengths and nullability, which `read_unvalidated` left unchecked too.
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema, columns, &options)
    })
}

/// The one record batch of an IPC stream, its arrays not yet validated.
///
/// Arrow's `StreamDecoder` always validates, and in full: its UTF-8 check takes a text
/// column's offsets one at a time, which was most of the cost of decoding a plugin's output
/// (the orders transform's `order_month`: 12 ms of every 5 M rows). `FileDecoder`, told where
/// each message is, can leave that to [`validate`]. Nothing reads an array's values before
/// [`decode_batch`] has validated it.
fn read_unvalidated(bytes: &Buffer) -> Result<RecordBatch, ArrowError> {
    let error = |message: &str| ArrowError::IpcError(message.to_string());
    let mut decoder: Option<FileDecoder> = None;
    let mut batch = None;
    let mut at = 0;
    while let Some((message, meta_len)) = message_at(bytes, at)? {
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| error("a message has a negative body length"))?;
        let meta_len_i32 =
            i32::try_from(meta_len).map_err(|_| error("a message's metadata is too long"))?;
        let block = Block::new(at as i64, meta_len_i32, body_len as i64);
        let whole = at
            .checked_add(meta_len)
            .and_then(|end| end.checked_add(body_len))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| error("a message runs past the end of the stream"))?;
        match message.header_type() {
            MessageHeader::Schema if decoder.is_some() => {
                return Err(error("the stream holds two schemas"));
            }
            MessageHeader::Schema => {
                let schema = message
                    .header_as_schema()
                    .ok_or_else(|| error("unreadable schema"))?;
                let schema = Arc::new(try_fb_to_schema(schema)?);
                // SAFETY: `decode_batch` validates every array before anything reads it.
                decoder = Some(unsafe {
                    FileDecoder::new(schema, message.version()).with_skip_validation(true)
                });
            }
            // A delta is concatenated to the dictionary before it: that would read values
            // not yet validated. One batch's stream never needs one.
            MessageHeader::DictionaryBatch
                if message
                    .header_as_dictionary_batch()
                    .is_none_or(|d| d.isDelta()) =>
            {
                return Err(error("the stream holds a delta dictionary"));
            }
            MessageHeader::RecordBatch if batch.is_some() => {
                return Err(error("the stream holds more than one record batch"));
            }
            header @ (MessageHeader::DictionaryBatch | MessageHeader::RecordBatch) => {
                let decoder = decoder
                    .as_mut()
                    .ok_or_else(|| error("the stream holds no schema"))?;
                let message_bytes = bytes.slice(at);
                if header == MessageHeader::RecordBatch {
                    batch = decoder.read_record_batch(&block, &message_bytes)?;
                } else {
                    decoder.read_dictionary(&block, &message_bytes)?;
                }
            }
            other => {
                return Err(ArrowError::IpcError(format!(
                    "unexpected {other:?} message"
                )));
            }
        }
        at = whole;
    }
    batch.ok_or_else(|| error("the stream holds no record batch"))
}

/// The IPC message at `at` and the length of its metadata (with its prefix); `None` at the
/// end of the stream (its marker, or no bytes left).
fn message_at(bytes: &[u8], at: usize) -> Result<Option<(Message<'_>, usize)>, ArrowError> {
    let truncated = || ArrowError::IpcError("the stream is cut short".into());
    if at == bytes.len() {
        return Ok(None);
    }
    let word = |at: usize| -> Result<u32, ArrowError> {
        let b = bytes.get(at..at + 4).ok_or_else(truncated)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // `0xFFFFFFFF` then the length, or the length alone (before format version 0.15).
    let prefix = if word(at)? == u32::MAX { 8 } else { 4 };
    let len = word(at + prefix - 4)? as usize;
    if len == 0 {
        return Ok(None);
    }
    let fb = bytes
        .get(at + prefix..at + prefix + len)
        .ok_or_else(truncated)?;
    let message = root_as_message(fb)
        .map_err(|e| ArrowError::IpcError(format!("unreadable message: {e}")))?;
    Ok(Some((message, prefix + len)))
}

/// Everything `ArrayData::validate_full` checks. Text and binary columns (32-bit offsets)
/// take a faster route to the same verdict: offsets checked in one pass, and text that is
/// all ASCII, where every offset falls between characters, is not checked offset by offset.
fn validate(data: &ArrayData) -> Result<(), ArrowError> {
    let text = match data.data_type() {
        DataType::Utf8 => true,
        DataType::Binary => false,
        _ => return data.validate_full(),
    };
    // Layout, buffer sizes, first and last offsets; the null count.
    data.validate()?;
    data.validate_nulls()?;
    let offsets = &data.buffer::<i32>(0)[..=data.len()];
    let values = data.buffers()[1].as_slice();
    let rising = offsets
        .windows(2)
        .fold(true, |ok, pair| ok & (pair[0] <= pair[1]));
    let (first, last) = (offsets[0], offsets[data.len()]);
    if !rising || first < 0 || last as usize > values.len() {
        return Err(ArrowError::InvalidArgumentError(
            "offsets out of order or out of bounds".into(),
        ));
    }
    if text && !values[first as usize..last as usize].is_ascii() {
        data.validate_values()?;
    }
    Ok(())
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

    use arrow::array::{
        Array, ArrayRef, BinaryArray, DictionaryArray, Int32Array, Int64Array, ListArray,
        StringArray,
    };
    use arrow::datatypes::{Int32Type, Int64Type};

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

    /// A one-column batch of `data_type` with these offsets and values, not validated (as a
    /// hostile plugin could write it).
    fn unchecked(data_type: DataType, offsets: &[i32], values: &[u8]) -> Vec<u8> {
        let data = ArrayData::builder(data_type)
            .len(offsets.len() - 1)
            .add_buffer(Buffer::from_slice_ref(offsets))
            .add_buffer(Buffer::from_slice_ref(values));
        // SAFETY: only encoded, never read as values here.
        let array = arrow::array::make_array(unsafe { data.build_unchecked() });
        let batch = RecordBatch::try_from_iter([("c", array)]).unwrap();
        encode_batch(&batch).unwrap()
    }

    #[test]
    fn text_and_binary_are_validated_as_arrow_would() {
        let text = DataType::Utf8;
        let accepted = |bytes: Vec<u8>| decode_batch(bytes.into());
        // ASCII, and not: both read back.
        let ascii = unchecked(text.clone(), &[0, 2, 2, 5], b"abcde");
        assert_eq!(accepted(ascii).unwrap().num_rows(), 3);
        let accented = unchecked(text.clone(), &[0, 2, 4], "éé".as_bytes());
        assert_eq!(
            accepted(accented).unwrap().column(0).as_ref(),
            &StringArray::from(vec!["é", "é"]) as &dyn Array
        );
        // An offset inside a character, offsets going back, bad UTF-8. (Offsets past the
        // values: `output_decodes_only_when_it_is_one_valid_batch`.)
        for (offsets, values) in [
            (&[0, 1, 4][..], "éé".as_bytes()),
            (&[0, 3, 1], b"abc".as_slice()),
            (&[0, 1, 2], &[b'a', 0xff]),
        ] {
            assert!(
                accepted(unchecked(text.clone(), offsets, values)).is_err(),
                "{offsets:?}"
            );
            let binary = unchecked(DataType::Binary, offsets, values);
            let valid_binary = offsets.windows(2).all(|w| w[0] <= w[1])
                && offsets.last().map(|&l| l as usize) <= Some(values.len());
            assert_eq!(accepted(binary).is_ok(), valid_binary, "{offsets:?}");
        }
        let binary = unchecked(DataType::Binary, &[0, 1, 2], &[0xff, 0]);
        assert_eq!(
            accepted(binary).unwrap().column(0).as_ref(),
            &BinaryArray::from(vec![&[0xff][..], &[0]]) as &dyn Array
        );
    }

    #[test]
    fn other_types_are_validated_in_full() {
        let dictionary: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>([
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
        ]);
        let batch = RecordBatch::try_from_iter([
            ("dictionary", Arc::new(dictionary) as ArrayRef),
            ("list", Arc::new(list) as ArrayRef),
        ])
        .unwrap();
        assert_eq!(
            decode_batch(encode_batch(&batch).unwrap().into()).unwrap(),
            batch
        );

        // A dictionary key past its values: 5 in a dictionary of two.
        let keys = Int32Array::from(vec![0, 5]);
        let values: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
        // SAFETY: only encoded, never read as values here.
        let bad = unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, values) };
        let batch = RecordBatch::try_from_iter([("d", Arc::new(bad) as ArrayRef)]).unwrap();
        assert!(decode_batch(encode_batch(&batch).unwrap().into()).is_err());
    }
}
