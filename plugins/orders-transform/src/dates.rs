//! Text dates to UTC microseconds, fast for the shapes order exports use.
//!
//! Arrow's `string_to_timestamp_nanos` is general (IANA zones, compact times, long
//! fractions) and builds a formatted error for every bad row; per row it dominated the
//! transform. The common shapes are read here by fixed byte positions instead; everything
//! else goes to Arrow, so the result is Arrow's for every string (see the tests).

use weir_sdk::arrow::cast::parse::string_to_timestamp_nanos;

/// `s` as microseconds since the epoch (UTC), exactly as
/// `string_to_timestamp_nanos(s).ok().map(|ns| ns.div_euclid(1000))`; `None` if not a date.
#[cfg(test)]
pub fn parse_utc_micros(s: &str) -> Option<i64> {
    parse(s).map(|p| p.micros)
}

/// A parsed date: the instant, and whether its UTC date is the text's own `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub micros: i64,
    /// True when the text's first 7 bytes are the instant's UTC `YYYY-MM` (no offset or
    /// leap second moved it to another day; a four-digit year): the caller can copy them
    /// instead of computing the month from `micros` (two divisions).
    pub on_text_date: bool,
}

/// `s` as microseconds since the epoch (UTC), exactly as
/// `string_to_timestamp_nanos(s).ok().map(|ns| ns.div_euclid(1000))`, and whether the
/// text's `YYYY-MM` is the instant's; `None` if not a date.
#[inline(always)]
pub fn parse(s: &str) -> Option<Parsed> {
    let b = s.as_bytes();
    // Arrow rejects outright whatever does not start with `dddd-dd-dd`: no need to ask it
    // (and have it format an error message per bad row).
    let date = ymd(b)?;
    fast(b, date).or_else(|| {
        let micros = string_to_timestamp_nanos(s).ok()?.div_euclid(1000);
        Some(Parsed {
            micros,
            on_text_date: false,
        })
    })
}

/// Year, month and day numbers of a string starting `dddd-dd-dd`.
// Inlined: returned through memory, the tuple cost a store-forwarding stall per row (~25%).
#[inline(always)]
fn ymd(b: &[u8]) -> Option<(i32, i32, i32)> {
    let ([c1, c2, rest @ ..], _) = b.split_first_chunk::<10>()?;
    let (c1, c2) = (c1.wrapping_sub(b'0'), c2.wrapping_sub(b'0'));
    let (yy, month, day) = two_digit_triple(rest, b'-')?;
    if (c1 >= 10) | (c2 >= 10) {
        return None;
    }
    let year = i32::from(c1) * 1000 + i32::from(c2) * 100 + yy as i32;
    Some((year, month as i32, day as i32))
}

/// `dd?dd?dd` (each `?` being `sep`) as its three numbers: "YY-MM-DD" and "HH:MM:SS".
/// SWAR: the 8 bytes as one u64, checked and converted together, without a branch per
/// byte (native 64-bit adds, ands and one multiply, in Wasm too).
#[inline(always)]
fn two_digit_triple(bytes: &[u8; 8], sep: u8) -> Option<(u32, u32, u32)> {
    const DIGITS: u64 = 0xffff_00ff_ff00_ffff; // bytes 0, 1, 3, 4, 6 and 7 (little-endian)
    const HIGH: u64 = 0xf0f0_00f0_f000_f0f0 & DIGITS; // their high nibbles
    const ZEROS: u64 = 0x3030_3030_3030_3030 & DIGITS; // their `0`s
    let v = u64::from_le_bytes(*bytes);
    let seps = u64::from(sep) * 0x0000_0100_0001_0000; // `sep` in bytes 2 and 5
    // A digit is 0x30–0x39: high nibble 3, and adding 6 leaves it 3 (no carry out of a
    // byte whose high nibble is 3). Separators compared whole.
    let shape = (v & (HIGH | !DIGITS)) == (ZEROS | seps);
    let below_ten = (v.wrapping_add(0x0606_0606_0606_0606 & DIGITS) & HIGH) == ZEROS;
    if !(shape & below_ten) {
        return None;
    }
    // Digit values; then ten times each plus the next (never above 99, so no carries):
    // the pairs' numbers in bytes 0, 3 and 6.
    let d = (v & DIGITS) - ZEROS;
    let n = d * 10 + (d >> 8);
    Some((
        (n & 0xff) as u32,
        (n >> 24 & 0xff) as u32,
        (n >> 48 & 0xff) as u32,
    ))
}

/// `YYYY-MM-DD`, optionally with `[Tt ]HH:MM:SS`, a `.` and 1–9 digits, and `Z`, `z`,
/// `±HH:MM`, `±HHMM` or `±HH`. `None` for other shapes and for invalid values alike
/// (both rare): the caller then asks Arrow.
#[inline(always)]
fn fast(b: &[u8], (year, month, day): (i32, i32, i32)) -> Option<Parsed> {
    let days = i64::from(days_since_epoch(year, month, day)?);
    if b.len() == 10 {
        return Some(Parsed {
            micros: days * 86_400_000_000,
            on_text_date: true,
        });
    }

    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (hour, minute, second) = two_digit_triple(b[11..19].try_into().ok()?, b':')?;
    let rest = &b[19..];
    // Second 60: chrono takes a leap second at any minute, and counts it as the next
    // second of the timeline, which is what plain arithmetic gives.
    if (hour > 23) | (minute > 59) | (second > 60) {
        return None;
    }

    // The common endings first, without the general matching below.
    let (micros, offset) = match rest {
        [] | [b'Z' | b'z'] => (0, 0),
        _ => fraction_and_offset(rest)?,
    };
    let of_day = (hour * 3600 + minute * 60 + second) as i32 - offset;
    Some(Parsed {
        micros: (days * 86_400 + i64::from(of_day)) * 1_000_000 + i64::from(micros),
        on_text_date: (0..86_400).contains(&of_day),
    })
}

/// What may follow `HH:MM:SS`: microseconds of an optional fraction and the offset in
/// seconds east of UTC. Out of line: rarer, and it keeps the inlined common path small.
#[inline(never)]
fn fraction_and_offset(mut rest: &[u8]) -> Option<(i32, i32)> {
    let mut micros = 0;
    if let [b'.', fraction @ ..] = rest {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None; // none: invalid; more: Arrow truncates, rare enough to leave to it
        }
        // Arrow keeps nanoseconds, floored to microseconds: the first six digits.
        let kept = n.min(6);
        micros = digits(fraction, 0, kept)? * 10_i32.pow((6 - kept) as u32);
        rest = &fraction[n..];
    }

    // What Arrow's fixed-offset parser accepts (and not its leading-space form).
    let offset = match *rest {
        [] | [b'Z' | b'z'] => 0,
        [sign, h1, h2, b':', m1, m2] | [sign, h1, h2, m1, m2] => {
            offset_seconds(sign, [h1, h2, m1, m2])?
        }
        [sign, h1, h2] => offset_seconds(sign, [h1, h2, b'0', b'0'])?,
        _ => return None,
    };
    Some((micros, offset))
}

/// Seconds east of UTC. Arrow takes any two-digit minutes (`+05:99`) but, as chrono's
/// `FixedOffset`, only less than a day.
fn offset_seconds(sign: u8, hhmm: [u8; 4]) -> Option<i32> {
    let v = digits(&hhmm, 0, 4)?;
    let secs = v / 100 * 3600 + v % 100 * 60;
    if secs >= 86_400 {
        return None;
    }
    match sign {
        b'+' => Some(secs),
        b'-' => Some(-secs),
        _ => None,
    }
}

/// The decimal value of `b[at..at + n]` (`n` ≤ 9) if those bytes are all ASCII digits.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i32> {
    b.get(at..at + n)?.iter().try_fold(0, |value, &c| {
        let digit = c.wrapping_sub(b'0');
        (digit < 10).then(|| value * 10 + i32::from(digit))
    })
}

/// Years whose every instant, with any offset, fits in i64 nanoseconds: at the edges
/// (1677-09-21, 2262-04-11) Arrow's overflow check decides.
const FIRST_YEAR: i32 = 1678;
const LAST_YEAR: i32 = 2261;

/// Days since 1970-01-01 of each January 1st, `FIRST_YEAR` to `LAST_YEAR + 1` (the last
/// one for the length of `LAST_YEAR`): a lookup instead of the era arithmetic per row.
static YEAR_STARTS: [i32; (LAST_YEAR - FIRST_YEAR + 2) as usize] = {
    let mut starts = [0; (LAST_YEAR - FIRST_YEAR + 2) as usize];
    let mut i = 0;
    while i < starts.len() {
        starts[i] = days_from_civil(FIRST_YEAR + i as i32, 1, 1);
        i += 1;
    }
    starts
};

/// Days before each month (1–12, index 0 unused) in a common year, and the month's length.
const MONTHS: [(i32, i32); 13] = [
    (0, 0),
    (0, 31),
    (31, 28),
    (59, 31),
    (90, 30),
    (120, 31),
    (151, 30),
    (181, 31),
    (212, 31),
    (243, 30),
    (273, 31),
    (304, 30),
    (334, 31),
];

/// Days since 1970-01-01 of a valid date with a year in `FIRST_YEAR..=LAST_YEAR`, by table.
/// `|` rather than `||`: fewer branches, as months and days vary from row to row.
#[inline(always)]
fn days_since_epoch(year: i32, month: i32, day: i32) -> Option<i32> {
    let y = year.wrapping_sub(FIRST_YEAR) as usize;
    let (&start, &next) = (YEAR_STARTS.get(y)?, YEAR_STARTS.get(y + 1)?);
    let &(before, length) = MONTHS.get(month as usize)?; // month ≤ 99: never negative
    let leap = next - start - 365;
    let length = length + (leap & i32::from(month == 2));
    if (month == 0) | (day == 0) | (day > length) {
        return None;
    }
    Some(start + before + (leap & i32::from(month > 2)) + day - 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
const fn days_from_civil(year: i32, month: i32, day: i32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1; // from March 1st
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use weir_sdk::arrow::array::{
        Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray,
    };

    use super::*;

    /// Today's behaviour, which `parse_utc_micros` must reproduce.
    fn arrow(s: &str) -> Option<i64> {
        string_to_timestamp_nanos(s)
            .ok()
            .map(|ns| ns.div_euclid(1000))
    }

    /// What the fast path alone makes of `s`.
    fn fast_path(s: &str) -> Option<i64> {
        let date = ymd(s.as_bytes())?;
        fast(s.as_bytes(), date).map(|p| p.micros)
    }

    /// xorshift64: deterministic, no dependency (the `reference` tests use it too).
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(crate) fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
        /// True one time in `n`.
        pub(crate) fn one_in(&mut self, n: usize) -> bool {
            self.below(n) == 0
        }
    }

    const YEARS: &[&str] = &[
        "0000", "0001", "1600", "1677", "1678", "1900", "1969", "1970", "2000", "2023", "2024",
        "2100", "2261", "2262", "9999", "20x4", "202",
    ];
    const SEPARATORS: &[&str] = &["T", "t", " ", "_", "-", "  ", ""];
    const FRACTIONS: &[&str] = &[
        "",
        ".",
        ".1",
        ".12",
        ".123",
        ".1234",
        ".12345",
        ".123456",
        ".1234567",
        ".12345678",
        ".999999999",
        ".0000000001",
        ".123456789012",
        ".9999999999999",
        ".12a",
        ",5",
    ];
    const SUFFIXES: &[&str] = &[
        "", "Z", "z", "+05:30", "-08:00", "+0530", "-0800", "+05", "-08", "+00:00", "-00:00",
        "+23:59", "-23:59", "+24:00", "-2400", "+99", "+05:99", "+5:30", "+05:3", "+05:300",
        "+05-30", "*05:30", " +05:00", " Z", "ZZ", "Z ", "UTC", " UTC", "+05:30Z", "05:30", "é",
        "x", " ",
    ];

    fn check(s: &str, accepted: &mut usize, fast_hits: &mut usize) {
        let expected = arrow(s);
        assert_eq!(parse_utc_micros(s), expected, "{s:?}");
        // Where the text's `YYYY-MM` is used as the month, it must be the instant's.
        if let Some(p) = parse(s).filter(|p| p.on_text_date) {
            let (y, m) = crate::year_month(p.micros.div_euclid(86_400_000_000) as i32);
            assert_eq!(&s[..7], format!("{y:04}-{m:02}"), "{s:?}");
        }
        *accepted += usize::from(expected.is_some());
        *fast_hits += usize::from(fast_path(s).is_some());
    }

    #[test]
    fn agrees_with_arrow() {
        let (mut total, mut accepted, mut fast_hits) = (0, 0, 0);
        let mut check = |s: &str| {
            total += 1;
            check(s, &mut accepted, &mut fast_hits);
        };

        // Every month and day number, as a date and as a time stamp.
        for year in YEARS {
            for month in 0..=13 {
                for day in 0..=32 {
                    for time in [
                        "",
                        "T00:00:00",
                        "T23:59:60.5-23:59",
                        "t12:30:45z",
                        "T23:59:60Z",
                        "T00:30:00+01:00",
                        "T23:30:00-01",
                    ] {
                        check(&format!("{year}-{month:02}-{day:02}{time}"));
                    }
                }
            }
        }
        // Every hour, edge minutes and seconds, with each separator, fraction and suffix.
        for hour in 0..=25 {
            for minute in ["00", "01", "30", "59", "60", "99", "5", "x0"] {
                for second in ["00", "01", "59", "60", "61", "99", "7"] {
                    for separator in SEPARATORS {
                        for fraction in FRACTIONS {
                            for suffix in SUFFIXES {
                                check(&format!(
                                    "2024-02-29{separator}{hour:02}:{minute}:{second}{fraction}{suffix}"
                                ));
                            }
                        }
                    }
                }
            }
        }
        // Random time stamps, some mangled: a byte replaced, inserted or removed, or cut short.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        const ALPHABET: &[u8] = b"0123456789-:T t.+Zz,/";
        for _ in 0..1_000_000 {
            let mut s = format!(
                "{}-{:02}-{:02}{}{:02}:{:02}:{:02}{}{}",
                rng.pick(YEARS),
                rng.below(14),
                rng.below(33),
                rng.pick(SEPARATORS),
                rng.below(26),
                rng.below(62),
                rng.below(62),
                rng.pick(FRACTIONS),
                rng.pick(SUFFIXES),
            )
            .into_bytes();
            let at = rng.below(s.len() + 1);
            let byte = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(6) {
                0 if at < s.len() => s[at] = byte,
                1 => s.insert(at, byte),
                2 if at < s.len() => drop(s.remove(at)),
                3 => s.truncate(at),
                _ => {}
            }
            check(&String::from_utf8_lossy(&s));
        }
        eprintln!("{total} strings: Arrow accepts {accepted}, the fast path reads {fast_hits}");
        // Deterministic, so these only guard against the generator losing its valid strings.
        // (Built beside the host, arrow has chrono-tz and accepts zone names too: more strings
        // go to the fallback, hence the loose bound.)
        assert!(accepted * 25 > total && fast_hits * 2 > accepted);
    }

    #[test]
    fn fast_path_reads_the_common_shapes() {
        for s in [
            "2024-01-15",
            "2024-01-15T10:30:00",
            "2024-01-15 10:30:00",
            "2024-01-15t10:30:00.5z",
            "2024-01-15T10:30:00.123456789Z",
            "2024-01-15T10:30:00+05:30",
            "2024-01-15T10:30:00.1-0800",
            "2024-02-29T23:59:60-08",
        ] {
            assert!(fast_path(s).is_some(), "{s}");
            assert_eq!(parse_utc_micros(s), arrow(s), "{s}");
        }
        assert_eq!(parse_utc_micros("1970-01-01"), Some(0));
        assert_eq!(
            parse_utc_micros("2024-01-15T10:30:00.1234567+01:00"),
            Some(1_705_311_000_123_456)
        );
    }

    /// Native CPU time per string, Arrow's parser vs `parse_utc_micros`, on 5 M strings
    /// shaped like the benchmark's (host/benches/support): 1/33 not a date, 4/33 dates, the
    /// rest `YYYY-MM-DDTHH:MM:SSZ`; then on fractions and offsets. Then the whole transform.
    /// Run: `cargo test --release -p orders-transform -- --ignored --nocapture timing`.
    #[test]
    #[ignore]
    fn timing() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut bench_like = Vec::with_capacity(5_000_000);
        let mut varied = Vec::with_capacity(5_000_000);
        for _ in 0..5_000_000 {
            let r = rng.next();
            let (month, day, hour) = ((r >> 52) % 12 + 1, (r >> 56) % 28 + 1, (r >> 36) % 24);
            bench_like.push(match (r >> 30) % 33 {
                0 => "not a date".to_string(),
                1..=4 => format!("2024-{month:02}-{day:02}"),
                _ => format!("2024-{month:02}-{day:02}T{hour:02}:15:30Z"),
            });
            let frac = (r >> 8) % 1_000_000;
            varied.push(match (r >> 30) % 4 {
                0 => format!("2024-{month:02}-{day:02} {hour:02}:15:30"),
                1 => format!("2024-{month:02}-{day:02}T{hour:02}:15:30.{frac:06}Z"),
                2 => format!("2024-{month:02}-{day:02}T{hour:02}:15:30+05:30"),
                _ => format!("2024-{month:02}-{day:02}T{hour:02}:15:30.{frac:03}-08:00"),
            });
        }
        for (name, strings) in [("benchmark-like", &bench_like), ("varied", &varied)] {
            // In a StringArray, as `order_dates` reads them.
            let strings = StringArray::from_iter_values(strings);
            let time = |parse: fn(&str) -> Option<i64>| {
                best_of_3(|| {
                    let started = cpu_ns();
                    let sum: i64 = strings.iter().flatten().filter_map(parse).sum();
                    std::hint::black_box(sum);
                    (cpu_ns() - started) as f64 / strings.len() as f64
                })
            };
            let floor = time(|s| Some(s.len() as i64)); // just reading the strings
            let (before, after) = (time(arrow), time(parse_utc_micros));
            eprintln!(
                "{name}: Arrow {before:.1} ns/string, parse_utc_micros {after:.1} (reading alone {floor:.1})"
            );
        }

        // The whole transform (as used now in `order_dates`) on the benchmark-like column.
        let batches: Vec<RecordBatch> = bench_like
            .chunks(65_536)
            .map(|dates| {
                let n = dates.len() as i64;
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 1000))),
                    Arc::new(Float64Array::from_iter_values(
                        (0..n).map(|i| (i % 200 - 20) as f64),
                    )),
                    Arc::new(Float64Array::from_iter_values((0..n).map(|_| 0.92))),
                    Arc::new(StringArray::from_iter_values(dates)),
                ];
                let names = ["customer_id", "amount", "exchange_rate", "order_date"];
                RecordBatch::try_from_iter(names.into_iter().zip(columns)).unwrap()
            })
            .collect();
        let whole = best_of_3(|| {
            let started = cpu_ns();
            for batch in &batches {
                std::hint::black_box(
                    crate::transform_orders(batch, Default::default())
                        .and_then(weir_sdk::Output::into_batch)
                        .unwrap(),
                );
            }
            (cpu_ns() - started) as f64 / bench_like.len() as f64
        });
        eprintln!(
            "transform_orders: {whole:.1} ns/row ({:.1} M rows/s)",
            1e3 / whole
        );
    }

    /// Nanoseconds this thread has run (Linux): unlike wall time, not inflated by other
    /// jobs on the shared cores.
    fn cpu_ns() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        stat.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn best_of_3(mut run: impl FnMut() -> f64) -> f64 {
        (0..3).map(|_| run()).fold(f64::MAX, f64::min)
    }
}
