// The seed's `transform_orders` in JavaScript: the same transform as the Rust plugin
// plugins/orders-transform, with the same output schema and values.
//
// - `order_date` (text) parsed to a UTC timestamp (microseconds, time zone "UTC");
// - `total_usd = amount * exchange_rate`;
// - rows with a null `customer_id` dropped; only rows with `total_usd > 0` kept;
// - `order_month` added as `YYYY-MM`.
//
// Settings: `bad_dates = "null"` (default: an unparseable date becomes null) or `"fail"`
// (the batch fails naming the row).
//
// The code works on the Arrow buffers (typed arrays) rather than on row objects: the
// component runs in an interpreter, where every call and allocation per row counts.

import { DataType, Field, Float64, TimestampMicrosecond, Type, Utf8, makeBuilder, makeData } from "apache-arrow";
import { invalidConfig, invalidInput, recordBatch, transform } from "weir-sdk";

let badDates = "null";

export default transform({
  init(config) {
    for (const key of Object.keys(config)) {
      if (key !== "bad_dates") throw invalidConfig(`unknown setting \`${key}\`, expected \`bad_dates\``);
    }
    const value = config.bad_dates ?? "null";
    if (value !== "null" && value !== "fail") {
      throw invalidConfig(`bad_dates must be "null" or "fail", not ${JSON.stringify(value)}`);
    }
    badDates = value;
  },

  transform(table) {
    return transformOrders(table.batches[0], badDates);
  },
});

function column(batch, name) {
  const vector = batch.getChild(name);
  if (!vector) throw invalidInput(`input has no \`${name}\` column`);
  return vector.data[0];
}

const isValid = (data, i) => data.nullCount === 0 || ((data.nullBitmap[i >> 3] >> (i & 7)) & 1) === 1;

/** The value of an Int64 at `i` of an Int32Array view (little-endian pairs), as a Number. */
const int64AsNumber = (words, i) => words[2 * i + 1] * 4294967296 + (words[2 * i] >>> 0);

/** A numeric column as a Float64Array (values under nulls are unspecified). */
function asF64(batch, name) {
  const data = column(batch, name);
  const n = data.length;
  const values = data.values;
  switch (data.type.typeId) {
    case Type.Float:
    case Type.Int: {
      const { type } = data;
      if (DataType.isFloat(type) && type.precision >= 1) {
        return type.precision === 2 ? values.subarray(0, n) : Float64Array.from(values.subarray(0, n));
      }
      if (DataType.isInt(type) && type.isSigned && (type.bitWidth === 32 || type.bitWidth === 64)) {
        if (type.bitWidth === 32) return Float64Array.from(values.subarray(0, n));
        const words = new Int32Array(values.buffer, values.byteOffset, 2 * n);
        const out = new Float64Array(n);
        for (let i = 0; i < n; i++) out[i] = int64AsNumber(words, i);
        return out;
      }
    }
  }
  throw invalidInput(`\`${name}\` must be numeric, not ${data.type}`);
}

// ---- Dates: exactly arrow-rs's `string_to_timestamp_nanos` (what the Rust plugin computes),
// floored to microseconds. Only fixed offsets: the Rust component has no time-zone database.

const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const isLeap = (y) => y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`). */
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

// The parse result: whole seconds since the epoch (an exact integer) and nanoseconds.
let SECONDS = 0;
let NANOS = 0;

/** Digit value of byte `at` of `b` within [start, end), or -1. */
function digit(b, start, end, at) {
  if (start + at >= end) return -1;
  const d = b[start + at] - 48;
  return d >= 0 && d <= 9 ? d : -1;
}

/** Whether the bytes b[at..end) are Unicode white space starting a char; its length. */
function whiteSpaceLength(b, at, end) {
  const c = b[at];
  if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) return 1;
  const c1 = at + 1 < end ? b[at + 1] : -1;
  const c2 = at + 2 < end ? b[at + 2] : -1;
  if (c === 0xc2 && (c1 === 0x85 || c1 === 0xa0)) return 2;
  if (c === 0xe1 && c1 === 0x9a && c2 === 0x80) return 3;
  if (c === 0xe2 && c1 === 0x80 && ((c2 >= 0x80 && c2 <= 0x8a) || c2 === 0xa8 || c2 === 0xa9 || c2 === 0xaf)) return 3;
  if (c === 0xe2 && c1 === 0x81 && c2 === 0x9f) return 3;
  if (c === 0xe3 && c1 === 0x80 && c2 === 0x80) return 3;
  return 0;
}

/** A fixed offset `±HH:MM`, `±HHMM` or `±HH` in seconds east of UTC, or NaN. */
function fixedOffset(b, at, end) {
  const len = end - at;
  let h1, h2, m1, m2;
  if (len === 6 && b[at + 3] === 58) {
    [h1, h2, m1, m2] = [b[at + 1], b[at + 2], b[at + 4], b[at + 5]];
  } else if (len === 5) {
    [h1, h2, m1, m2] = [b[at + 1], b[at + 2], b[at + 3], b[at + 4]];
  } else if (len === 3) {
    [h1, h2, m1, m2] = [b[at + 1], b[at + 2], 48, 48];
  } else {
    return NaN;
  }
  const v = [h1 - 48, h2 - 48, m1 - 48, m2 - 48];
  if (v.some((x) => x < 0 || x > 9)) return NaN;
  const secs = (v[0] * 10 + v[1]) * 3600 + (v[2] * 10 + v[3]) * 60;
  if (secs >= 86400) return NaN;
  if (b[at] === 43) return secs;
  if (b[at] === 45) return -secs;
  return NaN;
}

/** Parse b[start, end) into SECONDS and NANOS; false if it is not a timestamp. */
function parseTimestamp(b, start, end) {
  const len = end - start;
  if (len < 10) return false;
  const d = (at) => digit(b, start, end, at);
  if (b[start + 4] !== 45 || b[start + 7] !== 45) return false;
  const y0 = d(0), y1 = d(1), y2 = d(2), y3 = d(3), mo0 = d(5), mo1 = d(6), d0 = d(8), d1 = d(9);
  if ((y0 | y1 | y2 | y3 | mo0 | mo1 | d0 | d1) < 0) return false;
  const year = y0 * 1000 + y1 * 100 + y2 * 10 + y3;
  const month = mo0 * 10 + mo1;
  const day = d0 * 10 + d1;
  if (month < 1 || month > 12 || day < 1) return false;
  if (day > MONTH_DAYS[month - 1] + (month === 2 && isLeap(year) ? 1 : 0)) return false;
  const days = daysFromCivil(year, month, day);
  if (len === 10) return finish(days * 86400, 0);

  const sep = b[start + 10];
  if (sep !== 84 && sep !== 116 && sep !== 32) return false; // T t space

  // The digit mask of bytes 11..18, as arrow reads it (only the first 32 bytes count).
  let mask = 0;
  for (let i = 0; i < 8; i++) if (d(11 + i) >= 0) mask |= 1 << i;
  let hour, minute, second, nanos = 0, tz;
  if (mask === 0b11011011 && b[start + 13] === 58 && b[start + 16] === 58) {
    hour = d(11) * 10 + d(12);
    minute = d(14) * 10 + d(15);
    second = d(17) * 10 + d(18);
    tz = 19;
    if (len > 19 && b[start + 19] === 46) {
      let count = 0;
      while (20 + count < 32 && d(20 + count) >= 0) count++;
      if (count === 0) return false;
      for (let i = 0; i < 9; i++) nanos = nanos * 10 + (i < count ? d(20 + i) : 0);
      tz = 20 + count;
      if (tz === 32) while (d(tz) >= 0) tz++; // digits past arrow's 32-byte window
    }
  } else if (mask === 0b00111111) {
    hour = d(11) * 10 + d(12);
    minute = d(13) * 10 + d(14);
    second = d(15) * 10 + d(16);
    tz = 17;
  } else {
    return false;
  }
  // chrono: a leap second (60) only as the 60th second; it counts as the next second.
  if (hour > 23 || minute > 59 || second > 60) return false;
  const local = days * 86400 + hour * 3600 + minute * 60 + second;

  if (len <= tz) return finish(local, nanos);
  const z = b[start + tz];
  if ((z === 90 || z === 122) && tz === len - 1) return finish(local, nanos);
  let at = start + tz;
  for (let w; at < end && (w = whiteSpaceLength(b, at, end)) > 0; ) at += w;
  const offset = fixedOffset(b, at, end);
  if (Number.isNaN(offset)) return false;
  return finish(local - offset, nanos);
}

/** Set the result if it fits in i64 nanoseconds, as arrow requires. */
function finish(seconds, nanos) {
  if (seconds >= 9223372036 || seconds < -9223372037) {
    const ns = BigInt(seconds) * 1000000000n + BigInt(nanos);
    if (ns > 9223372036854775807n || ns < -9223372036854775808n) return false;
  }
  SECONDS = seconds;
  NANOS = nanos;
  return true;
}

// ---- Columns

/** Microseconds in an Int32Array of little-endian pairs (the bytes of a BigInt64Array). */
function setMicros(words, big, i, seconds, micros) {
  if (seconds > -9e9 && seconds < 9e9) {
    const us = seconds * 1e6 + micros; // exact: below 2^53
    words[2 * i] = us >>> 0;
    words[2 * i + 1] = Math.floor(us / 4294967296);
  } else {
    big[i] = BigInt(seconds) * 1000000n + BigInt(micros);
  }
}

/** `order_date` as UTC microseconds: { words, big, valid (Uint8Array of 0/1) }. */
function orderDates(batch, bad) {
  const data = column(batch, "order_date");
  const n = data.length;
  const big = new BigInt64Array(n);
  const words = new Int32Array(big.buffer);
  const valid = new Uint8Array(n);
  const type = data.type;
  if (type.typeId === Type.Utf8) {
    const offsets = data.valueOffsets;
    const bytes = data.values;
    for (let i = 0; i < n; i++) {
      if (!isValid(data, i)) continue;
      const start = offsets[i];
      const end = offsets[i + 1];
      if (parseTimestamp(bytes, start, end)) {
        setMicros(words, big, i, SECONDS, Math.floor(NANOS / 1000));
        valid[i] = 1;
      } else if (bad === "fail") {
        const text = new TextDecoder().decode(bytes.subarray(start, end));
        throw invalidInput(`row ${i}: order_date \`${text}\` is not a date`);
      }
    }
    return { words, big, valid };
  }
  // Timestamps without a time zone are taken as UTC, as `pd.to_datetime(utc=True)` does.
  let convert;
  if (DataType.isTimestamp(type)) {
    const unit = type.unit; // 0 s, 1 ms, 2 us, 3 ns
    convert = [(v) => v * 1000000n, (v) => v * 1000n, (v) => v, (v) => (v < 0n ? (v - 999n) / 1000n : v / 1000n)][unit];
  } else if (DataType.isDate(type) && type.unit === 0) {
    const days = data.values;
    for (let i = 0; i < n; i++) {
      big[i] = BigInt(days[i]) * 86400000000n;
      valid[i] = isValid(data, i) ? 1 : 0;
    }
    return { words, big, valid };
  } else {
    throw invalidInput(`\`order_date\` must be text, a date or a timestamp, not ${type}`);
  }
  const values = data.values;
  for (let i = 0; i < n; i++) {
    big[i] = BigInt.asIntN(64, convert(values[i])); // wraps on overflow, as Rust's release build
    valid[i] = isValid(data, i) ? 1 : 0;
  }
  return { words, big, valid };
}

/** Null bitmap and null count of the rows `keep` (indexes) of a 0/1 validity array. */
function bitmapOf(validAt, keep, count) {
  const bitmap = new Uint8Array((count + 7) >> 3);
  let nulls = 0;
  for (let j = 0; j < count; j++) {
    if (validAt(keep[j])) bitmap[j >> 3] |= 1 << (j & 7);
    else nulls++;
  }
  return { bitmap, nulls };
}

/** The rows `keep` of any column (fast paths for fixed-width and Utf8 columns). */
function take(vector, keep, count) {
  const data = vector.data[0];
  const { type } = data;
  const { bitmap, nulls } =
    data.nullCount === 0 ? { bitmap: new Uint8Array(0), nulls: 0 } : bitmapOf((i) => isValid(data, i), keep, count);
  const values = data.values;
  if (data.offset === 0 && type.typeId === Type.Utf8) {
    const offsets = data.valueOffsets;
    let size = 0;
    for (let j = 0; j < count; j++) size += offsets[keep[j] + 1] - offsets[keep[j]];
    const out = new Uint8Array(size);
    const outOffsets = new Int32Array(count + 1);
    let at = 0;
    for (let j = 0; j < count; j++) {
      const i = keep[j];
      for (let k = offsets[i], e = offsets[i + 1]; k < e; k++) out[at++] = values[k];
      outOffsets[j + 1] = at;
    }
    return makeData({ type, length: count, nullCount: nulls, nullBitmap: bitmap, valueOffsets: outOffsets, data: out });
  }
  const fixed = [Type.Int, Type.Float, Type.Date, Type.Timestamp, Type.Time, Type.Duration, Type.Decimal];
  if (data.offset === 0 && fixed.includes(type.typeId) && values && values.BYTES_PER_ELEMENT) {
    const width = (values.byteLength / Math.max(data.length, 1)) | 0; // bytes per value
    const wide = width % 4 === 0;
    const unit = wide ? width / 4 : width;
    const View = wide ? Int32Array : Uint8Array;
    const from = new View(values.buffer, values.byteOffset, data.length * unit);
    const to = new View(count * unit);
    for (let j = 0; j < count; j++) {
      const i = keep[j] * unit;
      for (let k = 0; k < unit; k++) to[j * unit + k] = from[i + k];
    }
    const out = new values.constructor(to.buffer);
    return makeData({ type, length: count, nullCount: nulls, nullBitmap: bitmap, data: out });
  }
  // Anything else: value by value.
  const builder = makeBuilder({ type, nullValues: [null, undefined] });
  for (let j = 0; j < count; j++) builder.append(vector.get(keep[j]));
  return builder.finish().toVector().data[0];
}

/** The transform itself. */
function transformOrders(batch, bad) {
  const dates = orderDates(batch, bad);
  const amount = asF64(batch, "amount");
  const rate = asF64(batch, "exchange_rate");
  const amountData = column(batch, "amount");
  const rateData = column(batch, "exchange_rate");
  const customers = column(batch, "customer_id");
  const n = batch.numRows;

  // Keep rows with a customer and `total_usd > 0`; a null total (null amount) is dropped.
  const total = new Float64Array(n);
  const keep = new Int32Array(n);
  let count = 0;
  for (let i = 0; i < n; i++) {
    const t = amount[i] * rate[i];
    total[i] = t;
    if (t > 0 && isValid(amountData, i) && isValid(rateData, i) && isValid(customers, i)) keep[count++] = i;
  }

  const fields = [];
  const columns = [];
  const datesType = new TimestampMicrosecond("UTC");
  const keptDates = new BigInt64Array(count);
  const keptWords = new Int32Array(keptDates.buffer);
  for (let j = 0; j < count; j++) {
    const i = keep[j];
    keptWords[2 * j] = dates.words[2 * i];
    keptWords[2 * j + 1] = dates.words[2 * i + 1];
  }
  const datesValid = bitmapOf((i) => dates.valid[i] === 1, keep, count);
  for (const field of batch.schema.fields) {
    if (field.name === "order_date") {
      fields.push(new Field("order_date", datesType, true));
      columns.push(
        makeData({ type: datesType, length: count, nullCount: datesValid.nulls, nullBitmap: datesValid.bitmap, data: keptDates }),
      );
    } else if (field.name !== "total_usd" && field.name !== "order_month") {
      fields.push(field);
      columns.push(take(batch.getChild(field.name), keep, count));
    }
  }
  const keptTotal = new Float64Array(count);
  for (let j = 0; j < count; j++) keptTotal[j] = total[keep[j]];
  fields.push(new Field("total_usd", new Float64(), true));
  columns.push(makeData({ type: new Float64(), length: count, nullCount: 0, data: keptTotal }));

  fields.push(new Field("order_month", new Utf8(), true));
  columns.push(orderMonth(keptWords, keptDates, datesValid, count));
  return recordBatch(fields, columns);
}

/** `YYYY-MM` of each kept timestamp, written straight into the string buffers. */
function orderMonth(words, big, valid, count) {
  const text = new Uint8Array(count * 7);
  const offsets = new Int32Array(count + 1);
  let at = 0;
  for (let j = 0; j < count; j++) {
    if ((valid.bitmap[j >> 3] >> (j & 7)) & 1) {
      const [y0, m] = yearMonth(daysOf(words, big, j));
      const y = Math.min(Math.max(y0, 0), 9999);
      text[at] = 48 + (Math.floor(y / 1000) % 10);
      text[at + 1] = 48 + (Math.floor(y / 100) % 10);
      text[at + 2] = 48 + (Math.floor(y / 10) % 10);
      text[at + 3] = 48 + (y % 10);
      text[at + 4] = 45;
      text[at + 5] = 48 + Math.floor(m / 10);
      text[at + 6] = 48 + (m % 10);
      at += 7;
    }
    offsets[j + 1] = at;
  }
  return makeData({
    type: new Utf8(),
    length: count,
    nullCount: valid.nulls,
    nullBitmap: valid.bitmap,
    valueOffsets: offsets,
    data: text.subarray(0, at),
  });
}

/** `div_euclid(us, 86_400_000_000) as i32` of the i64 at `j`. */
function daysOf(words, big, j) {
  const hi = words[2 * j + 1];
  if (hi >= -2097152 && hi < 2097152) {
    const us = hi * 4294967296 + (words[2 * j] >>> 0); // exact: |us| < 2^53
    let seconds = Math.floor(us / 1e6);
    if (seconds * 1e6 > us) seconds--;
    return Math.floor(seconds / 86400);
  }
  const v = big[j];
  const q = v / 86400000000n;
  const days = v < 0n && q * 86400000000n !== v ? q - 1n : q;
  return Number(BigInt.asIntN(32, days));
}

/** Year and month of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`). */
function yearMonth(days) {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month];
}
