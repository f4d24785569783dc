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
/** The validity bitmap of `data`, or null when every value is valid (read inline in loops). */
const bitmapIfNulls = (data) => (data.nullCount === 0 ? null : data.nullBitmap);

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
  const doy = (((153 * ((month + 9) % 12) + 2) / 5) | 0) + day - 1; // non-negative: `| 0` floors
  const doe = yoe * 365 + ((yoe / 4) | 0) - ((yoe / 100) | 0) + doy;
  return era * 146097 + doe - 719468;
}

// Days since the epoch of the 1st of each month of years 0000–9999, filled as met: a lookup
// costs less than the arithmetic in an interpreter.
const UNSET = -2147483648;
const MONTH_START = new Int32Array(10000 * 12).fill(UNSET);

// The parse result: whole seconds since the epoch (an exact integer) and nanoseconds.
let SECONDS = 0;
let NANOS = 0;

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

/** Parse b[s, end) into SECONDS and NANOS; false if it is not a timestamp. */
// Written out byte by byte: this runs once per row in an interpreter.
function parseTimestamp(b, s, end) {
  const len = end - s;
  if (len < 10 || b[s + 4] !== 45 || b[s + 7] !== 45) return false;
  const y0 = b[s] - 48, y1 = b[s + 1] - 48, y2 = b[s + 2] - 48, y3 = b[s + 3] - 48;
  const m0 = b[s + 5] - 48, m1 = b[s + 6] - 48, d0 = b[s + 8] - 48, d1 = b[s + 9] - 48;
  if (y0 >>> 0 > 9 || y1 >>> 0 > 9 || y2 >>> 0 > 9 || y3 >>> 0 > 9) return false;
  if (m0 >>> 0 > 9 || m1 >>> 0 > 9 || d0 >>> 0 > 9 || d1 >>> 0 > 9) return false;
  const year = y0 * 1000 + y1 * 100 + y2 * 10 + y3;
  const month = m0 * 10 + m1;
  const day = d0 * 10 + d1;
  if (month < 1 || month > 12 || day < 1) return false;
  if (day > MONTH_DAYS[month - 1] && !(month === 2 && day === 29 && isLeap(year))) return false;
  const key = year * 12 + month - 1;
  let first = MONTH_START[key];
  if (first === UNSET) first = MONTH_START[key] = daysFromCivil(year, month, 1);
  const days = first + day - 1;
  if (len === 10) return finish(days * 86400, 0);

  const sep = b[s + 10];
  if (sep !== 84 && sep !== 116 && sep !== 32) return false; // T t space
  // Bytes 11..18 as arrow's digit mask sees them: past the end is not a digit.
  let h0, h1, c13, c14, c15, c16, c17, c18;
  if (len >= 19) {
    h0 = b[s + 11] - 48;
    h1 = b[s + 12] - 48;
    c13 = b[s + 13] - 48;
    c14 = b[s + 14] - 48;
    c15 = b[s + 15] - 48;
    c16 = b[s + 16] - 48;
    c17 = b[s + 17] - 48;
    c18 = b[s + 18] - 48;
  } else {
    const at = (i) => (i < len ? b[s + i] - 48 : -1);
    [h0, h1, c13, c14, c15, c16, c17, c18] = [at(11), at(12), at(13), at(14), at(15), at(16), at(17), at(18)];
  }
  let hour, minute, second, tz;
  let nanos = 0;
  if (
    h0 >>> 0 <= 9 && h1 >>> 0 <= 9 && c13 === 10 && c14 >>> 0 <= 9 && c15 >>> 0 <= 9 &&
    c16 === 10 && c17 >>> 0 <= 9 && c18 >>> 0 <= 9
  ) {
    // HH:MM:SS
    hour = h0 * 10 + h1;
    minute = c14 * 10 + c15;
    second = c17 * 10 + c18;
    tz = 19;
    if (len > 19 && b[s + 19] === 46) {
      let count = 0;
      while (20 + count < 32 && 20 + count < len && (b[s + 20 + count] - 48) >>> 0 <= 9) count++;
      if (count === 0) return false;
      for (let i = 0; i < 9; i++) nanos = nanos * 10 + (i < count ? b[s + 20 + i] - 48 : 0);
      tz = 20 + count;
      if (tz === 32) while (tz < len && (b[s + tz] - 48) >>> 0 <= 9) tz++; // past arrow's 32-byte window
    }
  } else if (
    h0 >>> 0 <= 9 && h1 >>> 0 <= 9 && c13 >>> 0 <= 9 && c14 >>> 0 <= 9 && c15 >>> 0 <= 9 &&
    c16 >>> 0 <= 9 && c17 >>> 0 > 9 && c18 >>> 0 > 9
  ) {
    // HHMMSS
    hour = h0 * 10 + h1;
    minute = c13 * 10 + c14;
    second = c15 * 10 + c16;
    tz = 17;
  } else {
    return false;
  }
  // chrono: a leap second (60) only as the 60th second; it counts as the next second.
  if (hour > 23 || minute > 59 || second > 60) return false;
  const local = days * 86400 + hour * 3600 + minute * 60 + second;

  if (len <= tz) return finish(local, nanos);
  const z = b[s + tz];
  if ((z === 90 || z === 122) && tz === len - 1) return finish(local, nanos);
  let from = s + tz;
  for (let w; from < end && (w = whiteSpaceLength(b, from, end)) > 0; ) from += w;
  const offset = fixedOffset(b, from, end);
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
    const nulls = bitmapIfNulls(data);
    const dayOf = new Int32Array(n); // the UTC day of each date, for order_month
    for (let i = 0; i < n; i++) {
      if (nulls !== null && ((nulls[i >> 3] >> (i & 7)) & 1) === 0) continue;
      const start = offsets[i];
      const end = offsets[i + 1];
      if (parseTimestamp(bytes, start, end)) {
        const seconds = SECONDS;
        if (seconds > -9e9 && seconds < 9e9) {
          const us = seconds * 1e6 + ((NANOS / 1000) | 0); // exact: below 2^53
          words[2 * i] = us >>> 0;
          words[2 * i + 1] = Math.floor(us / 4294967296);
        } else {
          setMicros(words, big, i, seconds, (NANOS / 1000) | 0);
        }
        dayOf[i] = Math.floor(seconds / 86400);
        valid[i] = 1;
      } else if (bad === "fail") {
        const text = new TextDecoder().decode(bytes.subarray(start, end));
        throw invalidInput(`row ${i}: order_date \`${text}\` is not a date`);
      }
    }
    return { words, big, valid, dayOf };
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

/** Call `copy(j, i, len)` for each run keep[j..j+len] = i, i+1, …, i+len-1. */
function forRuns(keep, count, copy) {
  let j = 0;
  while (j < count) {
    const i = keep[j];
    let len = 1;
    while (j + len < count && keep[j + len] === i + len) len++;
    copy(j, i, len);
    j += len;
  }
}

/** The rows `keep` of any column (fast paths for fixed-width and Utf8 columns). */
function take(vector, keep, count) {
  const data = vector.data[0];
  const { type } = data;
  const { bitmap, nulls } =
    data.nullCount === 0
      ? { bitmap: new Uint8Array(0), nulls: 0 }
      : bitmapOf((i) => ((data.nullBitmap[i >> 3] >> (i & 7)) & 1) === 1, keep, count);
  const values = data.values;
  if (data.offset === 0 && type.typeId === Type.Utf8) {
    const offsets = data.valueOffsets;
    const outOffsets = new Int32Array(count + 1);
    let size = 0;
    for (let j = 0; j < count; j++) {
      size += offsets[keep[j] + 1] - offsets[keep[j]];
      outOffsets[j + 1] = size;
    }
    const out = new Uint8Array(size);
    // Kept rows come in runs of consecutive rows: one copy per run.
    forRuns(keep, count, (j, i, len) => {
      out.set(values.subarray(offsets[i], offsets[i + len]), outOffsets[j]);
    });
    return makeData({ type, length: count, nullCount: nulls, nullBitmap: bitmap, valueOffsets: outOffsets, data: out });
  }
  const fixed = [Type.Int, Type.Float, Type.Date, Type.Timestamp, Type.Time, Type.Duration, Type.Decimal];
  if (data.offset === 0 && fixed.includes(type.typeId) && values && values.BYTES_PER_ELEMENT) {
    const width = (values.byteLength / Math.max(data.length, 1)) | 0; // bytes per value
    const from = new Uint8Array(values.buffer, values.byteOffset, data.length * width);
    const to = new Uint8Array(count * width);
    forRuns(keep, count, (j, i, len) => to.set(from.subarray(i * width, (i + len) * width), j * width));
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
  const [a, r, c] = [amountData, rateData, customers].map(bitmapIfNulls);
  for (let i = 0; i < n; i++) {
    const t = amount[i] * rate[i];
    total[i] = t;
    if (
      t > 0 &&
      (a === null || ((a[i >> 3] >> (i & 7)) & 1) === 1) &&
      (r === null || ((r[i >> 3] >> (i & 7)) & 1) === 1) &&
      (c === null || ((c[i >> 3] >> (i & 7)) & 1) === 1)
    ) {
      keep[count++] = i;
    }
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
  let keptDays = null;
  if (dates.dayOf) {
    keptDays = new Int32Array(count);
    for (let j = 0; j < count; j++) keptDays[j] = dates.dayOf[keep[j]];
  }
  columns.push(orderMonth(keptWords, keptDates, keptDays, datesValid, count));
  return recordBatch(fields, columns);
}

// Year * 16 + month of the days of 1900–2099, filled as met (0: not yet).
const CACHE_FROM = -25567; // 1900-01-01
const CACHE_DAYS = 73049; // to 2099-12-31
const YEAR_MONTH = new Int32Array(CACHE_DAYS);

/** `YYYY-MM` of each kept timestamp, written straight into the string buffers. */
function orderMonth(words, big, days, valid, count) {
  const text = new Uint8Array(count * 7);
  const offsets = new Int32Array(count + 1);
  let at = 0;
  for (let j = 0; j < count; j++) {
    if ((valid.bitmap[j >> 3] >> (j & 7)) & 1) {
      const day = days === null ? daysOf(words, big, j) : days[j];
      let y, m;
      const slot = day - CACHE_FROM;
      if (slot >= 0 && slot < CACHE_DAYS) {
        let ym = YEAR_MONTH[slot];
        if (ym === 0) ym = YEAR_MONTH[slot] = Math.min(Math.max(yearMonth(day), 0), 9999) * 16 + MONTH;
        y = ym >> 4;
        m = ym & 15;
      } else {
        y = Math.min(Math.max(yearMonth(day), 0), 9999);
        m = MONTH;
      }
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

let MONTH = 0;

/** Year (returned) and month (in MONTH) of a day count since 1970-01-01 (H. Hinnant's
 * `civil_from_days`). */
function yearMonth(days) {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  // Non-negative from here: `| 0` floors.
  const yoe = ((doe - ((doe / 1460) | 0) + ((doe / 36524) | 0) - ((doe / 146096) | 0)) / 365) | 0;
  const doy = doe - (365 * yoe + ((yoe / 4) | 0) - ((yoe / 100) | 0));
  const mp = ((5 * doy + 2) / 153) | 0;
  const month = mp < 10 ? mp + 3 : mp - 9;
  MONTH = month;
  return yoe + era * 400 + (month <= 2 ? 1 : 0);
}
