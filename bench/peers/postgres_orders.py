"""Peer baselines for Weir's Postgres benchmark: CSV -> the seed's transform and validate ->
a Postgres table, one timed run.

    python postgres_orders.py --engine pandas|polars|duckdb --input FILE.csv --url postgresql://... --table T

- pandas: the seed's way, `to_sql(method="multi", chunksize=...)` through SQLAlchemy and psycopg2;
- polars: `write_database(engine="adbc")`, the ADBC Postgres driver (binary COPY);
- duckdb: the transform in DuckDB, the result written through the same ADBC driver (DuckDB's
  own postgres extension is downloaded on first use, and there is no network here).

Prints one JSON line: engine, version, rows_in, rows_out, runs (seconds), median_s, peak_rss_mib.
"""

import argparse
import json
import resource
import time

from transform_orders import (
    duckdb_connect, pandas_transform, pandas_validate, polars_transform, polars_validate,
    TRANSFORM_SQL, engine_version,
)

# The seed's chunk size; psycopg2 has no bound-parameter limit to keep under.
CHUNKSIZE = 5000


def pandas_job(csv, url, table):
    import pandas as pd
    import sqlalchemy

    df = pd.read_csv(csv)
    rows_in = len(df)
    df = pandas_transform(df)
    pandas_validate(df)
    df["order_month"] = df["order_month"].astype(str)  # psycopg2 cannot bind Period objects
    engine = sqlalchemy.create_engine(url)
    df.to_sql(table, engine, if_exists="append", index=False, method="multi", chunksize=CHUNKSIZE)
    return rows_in, len(df)


def adbc_url(url):
    return url.replace("postgresql+psycopg2://", "postgresql://")


def polars_job(csv, url, table):
    import polars as pl

    df = pl.read_csv(csv)
    out = polars_transform(df)
    polars_validate(out)
    out.write_database(table, adbc_url(url), engine="adbc", if_table_exists="replace")
    return df.height, out.height


def duckdb_job(csv, url, table):
    import adbc_driver_postgresql.dbapi as pg

    con = duckdb_connect()
    con.read_csv(csv, dtype={"order_date": "VARCHAR"}).create("raw")
    con.execute(f"CREATE TABLE clean AS {TRANSFORM_SQL.format(src='raw')}")
    nulls, negative, rows_out, duplicate_ids = con.execute("""
        SELECT count(*) FILTER (customer_id IS NULL), count(*) FILTER (total_usd < 0),
               count(*), count(*) - count(DISTINCT order_id)
        FROM clean""").fetchall()[0]
    assert nulls == 0 and negative == 0 and rows_out > 0 and duplicate_ids == 0
    rows_in = con.execute("SELECT count(*) FROM raw").fetchall()[0][0]
    reader = con.sql("SELECT * FROM clean").arrow()  # a lazy RecordBatchReader in DuckDB 2
    with pg.connect(adbc_url(url)) as conn, conn.cursor() as cur:
        cur.adbc_ingest(table, reader, mode="create_append")
        conn.commit()
    return rows_in, rows_out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["pandas", "polars", "duckdb"], required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--url", required=True, help="postgresql+psycopg2://user@host:port/db")
    ap.add_argument("--table", required=True)
    args = ap.parse_args()
    job = {"pandas": pandas_job, "polars": polars_job, "duckdb": duckdb_job}[args.engine]
    start = time.perf_counter()
    rows_in, rows_out = job(args.input, args.url, args.table)
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "engine": args.engine, "version": engine_version(args.engine),
        "rows_in": rows_in, "rows_out": rows_out, "runs": [elapsed], "median_s": elapsed,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
