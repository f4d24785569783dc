"""Text dates to UTC microseconds, exactly as the Rust plugin reads them: that is Arrow's
``string_to_timestamp_nanos`` (arrow-cast 60, without chrono-tz, as built into a component)
floored to microseconds. Its rules, byte by byte:

- ``YYYY-MM-DD`` (a real date; years 0000–9999), alone or followed by ``T``, ``t`` or a
  space and a time: ``HH:MM:SS`` with an optional ``.`` and fraction (at least one digit;
  the first nine count), or ``HHMMSS``; second 60 is a leap second (the next second);
- then nothing (UTC), a lone ``Z``/``z``, or, after optional white space, an offset
  ``±HH:MM``, ``±HHMM`` or ``±HH`` of less than a day;
- and the instant must fit in i64 nanoseconds (1677-09-21 to 2262-04-11).
"""

import re

_DATE = re.compile(rb"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME = re.compile(rb"([0-9]{2}):([0-9]{2}):([0-9]{2})")
_COMPACT = re.compile(rb"([0-9]{2})([0-9]{2})([0-9]{2})(?![0-9])(?!.[0-9])", re.DOTALL)
_DIGITS = re.compile(rb"[0-9]*")
# Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim_start` strips.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def parse_utc_micros(text: str):
    """``text`` as microseconds since the epoch (UTC), or None if it is not a date."""
    if text.isascii():
        # The date is always the first 10 bytes and the rest is read alone (at fixed
        # positions), so each half is parsed once per distinct value and remembered: order
        # dates repeat, and times of day are at most 86,400 (times any offsets and fractions).
        head = text[:10]
        seconds = _DATES.get(head, _MISS)
        if seconds is _MISS:
            seconds = _remember(_DATES, head, _date_seconds(head.encode()))
        if seconds is None:
            return None
        tail = text[10:]
        nanos = _TAILS.get(tail, _MISS)
        if nanos is _MISS:
            nanos = _remember(_TAILS, tail, _tail_nanos(tail.encode()))
    else:
        b = text.encode("utf-8")
        seconds = _date_seconds(b[:10])
        if seconds is None:
            return None
        nanos = _tail_nanos(b[10:])
    if nanos is None:
        return None
    total = seconds * 1_000_000_000 + nanos
    if not _I64_MIN <= total <= _I64_MAX:
        return None
    return total // 1000


_MISS = object()
_DATES: dict = {}
_TAILS: dict = {}


def _remember(cache: dict, key: str, value):
    if len(cache) >= 100_000:  # bounded, whatever the data
        cache.clear()
    cache[key] = value
    return value


def _date_seconds(b: bytes):
    """Seconds since the epoch of a ``YYYY-MM-DD`` that is a real date; else None."""
    date = _DATE.fullmatch(b)
    if date is None:
        return None
    year, month, day = int(date[1]), int(date[2]), int(date[3])
    if not (1 <= month <= 12 and 1 <= day <= days_in_month(year, month)):
        return None
    return days_from_civil(year, month, day) * 86_400


def _tail_nanos(b: bytes):
    """Nanoseconds to add to the date for what follows it (bytes 10 on; byte positions
    below are counted from the start of the whole string, as Arrow does); None if invalid."""
    if not b:
        return 0
    if b[0] not in b"Tt ":
        return None
    nanos = 0
    time = _TIME.match(b, 1)
    if time is not None:
        end = 9  # byte 19
        if b[9:10] == b".":
            # Digits are counted within the first 32 bytes, as Arrow's bit mask does.
            count = len(_DIGITS.match(b, 10, 22)[0])
            if count == 0:
                return None
            kept = b[10 : 10 + min(count, 9)]
            nanos = int(kept) * 10 ** (9 - len(kept))
            end = 10 + count
            if end == 22:  # a longer fraction: the rest of its digits are skipped
                end += len(_DIGITS.match(b, 22)[0])
    else:
        time = _COMPACT.match(b, 1)
        if time is None:
            return None
        end = 7  # byte 17
    hour, minute, second = int(time[1]), int(time[2]), int(time[3])
    if hour > 23 or minute > 59 or second > 60:
        return None
    seconds = hour * 3600 + minute * 60 + second
    rest = b[end:]
    if rest and rest not in (b"Z", b"z"):
        offset = _offset_seconds(rest.decode("utf-8").lstrip(_RUST_WHITESPACE).encode("utf-8"))
        if offset is None:
            return None
        seconds -= offset
    return seconds * 1_000_000_000 + nanos


def _offset_seconds(tz: bytes):
    """Seconds east of UTC of ``±HH:MM``, ``±HHMM`` or ``±HH``; None for anything else."""
    if len(tz) == 6 and tz[3:4] == b":":
        digits = tz[1:3] + tz[4:6]
    elif len(tz) == 5:
        digits = tz[1:5]
    elif len(tz) == 3:
        digits = tz[1:3] + b"00"
    else:
        return None
    if not all(48 <= c <= 57 for c in digits):
        return None
    secs = int(digits[:2]) * 3600 + int(digits[2:]) * 60
    if secs >= 86_400:
        return None
    if tz[0:1] == b"+":
        return secs
    if tz[0:1] == b"-":
        return -secs
    return None


def days_in_month(year: int, month: int) -> int:
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return _MONTH_DAYS[month - 1] + (1 if leap and month == 2 else 0)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def year_month(days: int):
    """Year and month of a day count since 1970-01-01 (H. Hinnant's ``civil_from_days``)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month
