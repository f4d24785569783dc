"""Peer baselines for Weir's orders benchmark: the seed's pandas pipeline and
its idiomatic polars / DuckDB equivalents.

Transform only (input fully loaded in memory first, untimed; N timed runs):
    python transform_orders.py --engine pandas|polars|duckdb --input FILE.parquet --runs N

Whole pipeline, one timed run (read_csv -> transform -> validate -> SQLite + Parquet):
    python transform_orders.py --engine E --pipeline --input FILE.csv --sqlite OUT.db --parquet OUT.parquet
    (rows are appended to table "orders" in OUT.db, as the seed's if_exists="append" does:
    delete OUT.db between runs for comparable timings)

Prints one JSON line: engine, version, rows_in, rows_out, null_order_date, runs (seconds),
median_s, peak_rss_mib (max RSS of the whole process, input loading included) and,
in pipeline mode, "mode": "pipeline".
"""

import argparse
import json
import resource
import sqlite3
import statistics
import time
import warnings
from contextlib import closing

# The seed's to_period("M") on UTC timestamps warns that the tz is dropped; that is intended.
warnings.filterwarnings("ignore", message="Converting to PeriodArray")

# SQLite's bound-parameter limit (SQLITE_MAX_VARIABLE_NUMBER, 32766 since 3.32);
# a multi-row INSERT binds rows * columns of them.
SQLITE_MAX_VARS = 32766
# What pandas' to_sql stores for a UTC timestamp (str(datetime) via sqlite3's adapter);
# polars and DuckDB write the same text.
SQLITE_TS_FORMAT = "%Y-%m-%d %H:%M:%S+00:00"


# ---------------------------------------------------------------- pandas (the seed)

def pandas_transform(df):
    import pandas as pd

    # The seed, except: errors="coerce" so bad dates become NaT instead of raising, and
    # format="ISO8601" so "2024-03-05T10:20:30Z" and "2024-03-05" both parse in one column.
    df = df.copy()
    df["order_date"] = pd.to_datetime(df["order_date"], utc=True, format="ISO8601", errors="coerce")
    df["total_usd"] = df["amount"] * df["exchange_rate"]
    df = df.dropna(subset=["customer_id"])
    df = df[df["total_usd"] > 0]
    df["order_month"] = df["order_date"].dt.to_period("M")  # NaT stays NaT
    return df


def pandas_validate(df):
    assert df["customer_id"].notna().all(), "Null customer IDs"
    assert df["total_usd"].ge(0).all(), "Negative amounts"
    assert len(df) > 0, "Empty batch"
    duplicate_ids = df["order_id"].duplicated().sum()
    if duplicate_ids > 0:
        raise ValueError(f"{duplicate_ids} duplicate order IDs")


def pandas_pipeline(csv, db, parquet):
    import pandas as pd

    df = pd.read_csv(csv)
    rows_in = len(df)
    df = pandas_transform(df)
    pandas_validate(df)
    # sqlite3 cannot bind Period objects (the seed as written fails here), so store the month as text.
    df["order_month"] = df["order_month"].astype(str)
    with closing(sqlite3.connect(db)) as conn:
        df.to_sql("orders", conn, if_exists="append", index=False, method="multi",
                  chunksize=SQLITE_MAX_VARS // len(df.columns))
    df.to_parquet(parquet)
    return rows_in, df


# ---------------------------------------------------------------- polars

def polars_transform(df):
    import polars as pl

    date = pl.col("order_date")
    return (
        df.lazy()
        .with_columns(
            # str.to_datetime without a format infers one from the first value and silently
            # nulls every other shape, so parse the two ISO shapes explicitly.
            pl.coalesce(
                date.str.to_datetime("%+", time_zone="UTC", strict=False),
                date.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us", "UTC")),
            ),
            total_usd=pl.col("amount") * pl.col("exchange_rate"),
        )
        .drop_nulls("customer_id")
        .filter(pl.col("total_usd") > 0)
        .with_columns(order_month=pl.col("order_date").dt.strftime("%Y-%m"))
        .collect()
    )


def polars_validate(df):
    assert df["customer_id"].null_count() == 0, "Null customer IDs"
    assert (df["total_usd"] >= 0).all(), "Negative amounts"
    assert df.height > 0, "Empty batch"
    duplicate_ids = df.height - df["order_id"].n_unique()
    if duplicate_ids > 0:
        raise ValueError(f"{duplicate_ids} duplicate order IDs")


def polars_pipeline(csv, db, parquet):
    import polars as pl

    df = pl.read_csv(csv)
    out = polars_transform(df)
    polars_validate(out)
    # Timestamps go to SQLite as text, formatted like pandas' to_sql does.
    rows = out.with_columns(pl.col("order_date").dt.strftime(SQLITE_TS_FORMAT)).iter_rows()
    sqlite_append(db, out.columns, rows)
    out.write_parquet(parquet)
    return df.height, out


# ---------------------------------------------------------------- duckdb

TRANSFORM_SQL = """
SELECT *, strftime(order_date, '%Y-%m') AS order_month
FROM (
    SELECT * REPLACE (TRY_CAST(order_date AS TIMESTAMPTZ) AS order_date),
           amount * exchange_rate AS total_usd
    FROM {src}
)
WHERE customer_id IS NOT NULL AND total_usd > 0
"""


def duckdb_connect():
    import duckdb

    con = duckdb.connect()
    # Date-only strings cast to TIMESTAMPTZ in the session zone; the seed wants UTC.
    con.execute("SET TimeZone = 'UTC'")
    return con


def duckdb_transform(con):
    # to_arrow_table() materializes; .arrow() now returns a lazy RecordBatchReader.
    return con.sql(TRANSFORM_SQL.format(src="orders")).to_arrow_table()


def duckdb_pipeline(csv, db, parquet):
    con = duckdb_connect()
    # Pin order_date to text: the sniffer samples rows and could pick TIMESTAMP, then fail on garbage.
    con.read_csv(csv, dtype={"order_date": "VARCHAR"}).create("raw")
    con.execute(f"CREATE TABLE clean AS {TRANSFORM_SQL.format(src='raw')}")

    nulls, negative, rows_out, duplicate_ids = con.execute("""
        SELECT count(*) FILTER (customer_id IS NULL), count(*) FILTER (total_usd < 0),
               count(*), count(*) - count(DISTINCT order_id)
        FROM clean""").fetchone()
    assert nulls == 0, "Null customer IDs"
    assert negative == 0, "Negative amounts"
    assert rows_out > 0, "Empty batch"
    if duplicate_ids > 0:
        raise ValueError(f"{duplicate_ids} duplicate order IDs")

    # DuckDB's sqlite extension is downloaded on first use (no network here), so stream
    # rows to Python's sqlite3 instead.
    cur = con.execute(f"SELECT * REPLACE (strftime(order_date, '{SQLITE_TS_FORMAT}') AS order_date) FROM clean")
    sqlite_append(db, [d[0] for d in cur.description], fetch_rows(cur))
    con.execute("COPY clean TO ? (FORMAT parquet)", [parquet])

    rows_in = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    null_dates = con.execute("SELECT count(*) - count(order_date) FROM clean").fetchone()[0]
    return rows_in, rows_out, null_dates


# ---------------------------------------------------------------- shared

def fetch_rows(cur, batch=100_000):
    while rows := cur.fetchmany(batch):
        yield from rows


def sqlite_append(db, columns, rows):
    with closing(sqlite3.connect(db)) as conn, conn:  # inner `conn` commits
        conn.execute(f"CREATE TABLE IF NOT EXISTS orders ({', '.join(columns)})")
        conn.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * len(columns))})", rows)


def null_count(engine, out):
    if engine == "pandas":
        return int(out["order_date"].isna().sum())
    if engine == "polars":
        return out["order_date"].null_count()
    return out.column("order_date").null_count


def engine_version(engine):
    return __import__(engine).__version__


def run_transform(engine, path, runs):
    # Load fully into memory before timing anything.
    if engine == "pandas":
        import pandas as pd
        data = pd.read_parquet(path)
        rows_in, transform = len(data), pandas_transform
    elif engine == "polars":
        import polars as pl
        data = pl.read_parquet(path)
        rows_in, transform = data.height, polars_transform
    else:
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        data = duckdb_connect()
        data.register("orders", table)
        rows_in, transform = table.num_rows, duckdb_transform

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = transform(data)
        times.append(time.perf_counter() - start)
        rows_out = len(out)  # outside the timer; every engine's result is already materialized
        null_dates = null_count(engine, out)
        del out
    return {"rows_in": rows_in, "rows_out": rows_out, "null_order_date": null_dates, "runs": times}


def run_pipeline(engine, csv, db, parquet):
    start = time.perf_counter()
    if engine == "duckdb":
        rows_in, rows_out, null_dates = duckdb_pipeline(csv, db, parquet)
    else:
        rows_in, out = {"pandas": pandas_pipeline, "polars": polars_pipeline}[engine](csv, db, parquet)
        rows_out, null_dates = len(out), null_count(engine, out)
    elapsed = time.perf_counter() - start
    return {"mode": "pipeline", "rows_in": rows_in, "rows_out": rows_out,
            "null_order_date": null_dates, "runs": [elapsed]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["pandas", "polars", "duckdb"], required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--sqlite")
    ap.add_argument("--parquet")
    args = ap.parse_args()

    if args.pipeline:
        if not (args.sqlite and args.parquet):
            ap.error("--pipeline needs --sqlite and --parquet")
        result = run_pipeline(args.engine, args.input, args.sqlite, args.parquet)
    else:
        if args.runs < 1:
            ap.error("--runs must be >= 1")
        result = run_transform(args.engine, args.input, args.runs)

    result = {"engine": args.engine, "version": engine_version(args.engine), **result}
    result["median_s"] = statistics.median(result["runs"])
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
