"""The seed's ``transform_orders`` in Python, row for row what ``plugins/orders-transform``
(Rust) gives:

- ``order_date`` (text) parsed to a UTC timestamp (microseconds, tz "UTC");
- ``total_usd = amount * exchange_rate``;
- rows with a null ``customer_id`` dropped; only rows with ``total_usd > 0`` kept;
- ``order_month`` added as ``YYYY-MM``.

Settings: ``bad_dates = "null"`` (default: an unparseable date becomes null) or ``"fail"``
(the batch fails naming the row).
"""

from itertools import compress

from dates import parse_utc_micros, year_month
from weir_sdk import (
    DATE32,
    FLOAT32,
    FLOAT64,
    INT32,
    INT64,
    UTF8,
    Field,
    InvalidConfig,
    InvalidInput,
    Table,
    Transform,
    export,
    timestamp,
)

UTC_MICROS = timestamp("us", "UTC")
# Microseconds per unit, to convert timestamp columns.
PER_UNIT = {"s": 1_000_000, "ms": 1000, "us": 1}
NUMERIC = (FLOAT64, FLOAT32, INT64, INT32)


def column(table: Table, name: str):
    if name not in table.schema:
        raise InvalidInput(f"input has no `{name}` column")
    return table.field(name), table.column(name)


def as_float(table: Table, name: str) -> list:
    field, values = column(table, name)
    if field.type not in NUMERIC:
        raise InvalidInput(f"`{name}` must be numeric, not {field.type!r}")
    if field.type in (FLOAT64, FLOAT32):
        return values
    return [None if v is None else float(v) for v in values]


@export
class OrdersTransform(Transform):
    def init(self, config: dict) -> None:
        unknown = set(config) - {"bad_dates"}
        if unknown:
            raise InvalidConfig(f"unknown setting `{sorted(unknown)[0]}`, expected `bad_dates`")
        self.fail_on_bad_dates = config.get("bad_dates", "null") == "fail"
        if config.get("bad_dates", "null") not in ("null", "fail"):
            raise InvalidConfig(
                f"bad_dates = {config['bad_dates']!r}: expected \"null\" or \"fail\""
            )

    def transform(self, table: Table) -> Table:
        date_field, dates = column(table, "order_date")
        if date_field.type not in (UTF8, DATE32) and date_field.type.kind != "timestamp":
            raise InvalidInput(
                f"`order_date` must be text, a date or a timestamp, not {date_field.type!r}"
            )
        parsed = None
        if date_field.type == UTF8 and self.fail_on_bad_dates:
            # Every row's date is checked, kept or not, before anything else (as the Rust
            # plugin does): the first bad one fails the batch.
            parsed = []
            for row, text in enumerate(dates):
                value = None if text is None else parse_utc_micros(text)
                if value is None and text is not None:
                    raise InvalidInput(f"row {row}: order_date `{text}` is not a date")
                parsed.append(value)
        amounts = as_float(table, "amount")
        rates = as_float(table, "exchange_rate")
        _, customers = column(table, "customer_id")

        totals = [
            a * r if a is not None and r is not None else None for a, r in zip(amounts, rates)
        ]
        # A null total (null amount) is dropped, as pandas' comparison drops NaN.
        keep = [
            t is not None and t > 0 and c is not None for t, c in zip(totals, customers)
        ]

        if date_field.type == UTF8 and self.fail_on_bad_dates:
            kept_dates = list(compress(parsed, keep))
        elif date_field.type == UTF8:
            # Only the kept rows' dates are ever seen: parse just those.
            kept_dates = [
                None if text is None else parse_utc_micros(text)
                for text in compress(dates, keep)
            ]
        else:
            kept_dates = [to_micros(v, date_field.type) for v in compress(dates, keep)]

        fields, columns = [], []
        for field, values in zip(table.schema, table.columns):
            if field.name == "order_date":
                fields.append(Field("order_date", UTC_MICROS, True))
                columns.append(kept_dates)
            elif field.name not in ("total_usd", "order_month"):
                fields.append(field)
                columns.append(list(compress(values, keep)))
        fields.append(Field("total_usd", FLOAT64, True))
        columns.append(list(compress(totals, keep)))
        fields.append(Field("order_month", UTF8, True))
        columns.append(order_months(kept_dates))
        return Table(fields, columns)


def to_micros(value, data_type):
    """A date or timestamp value as UTC microseconds (timestamps without a time zone are
    taken as UTC, as ``pd.to_datetime(utc=True)`` does)."""
    if value is None:
        return None
    if data_type == DATE32:
        return value * 86_400_000_000
    if data_type.unit == "ns":
        return value // 1000
    return value * PER_UNIT[data_type.unit]


def order_months(micros: list) -> list:
    """``YYYY-MM`` of each timestamp, computed once per distinct day."""
    days = [None if us is None else us // 86_400_000_000 for us in micros]
    names = {None: None}
    for day in set(days):
        if day is not None:
            y, m = year_month(day)
            names[day] = f"{min(max(y, 0), 9999):04d}-{m:02d}"
    return [names[day] for day in days]
