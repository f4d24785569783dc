"""Peer baselines for Weir's Postgres benchmarks: loading orders into a table, and extracting
a table to Arrow.

    python postgres_orders.py load --engine pandas|polars|duckdb --input FILE.csv --url URL --table T
    python postgres_orders.py extract --engine connectorx|pandas|polars --url URL --table T

load (the data is read from the CSV first, untimed; the timer covers the write):
- pandas: the seed's `to_sql(method="multi", chunksize=5000)` through SQLAlchemy and psycopg2;
- polars: `write_database(engine="adbc")`, the ADBC Postgres driver (binary COPY);
- duckdb: a DuckDB table streamed through the same ADBC driver (DuckDB's own postgres
  extension is downloaded on first use, and there is no network here).
extract (the whole table into memory as Arrow, or a DataFrame for pandas):
- connectorx: `read_sql(..., return_type="arrow")`;
- pandas: `read_sql` through SQLAlchemy and psycopg2;
- polars: `read_database_uri(engine="adbc")`.

URL: postgresql://user@host:port/db. Prints one JSON line: engine, version, rows, runs
(seconds), median_s, peak_rss_mib.
"""

import argparse
import json
import resource
import time

CHUNKSIZE = 5000  # the seed's


def load(engine, csv, url, table):
    if engine == "pandas":
        import pandas as pd
        import sqlalchemy

        df = pd.read_csv(csv)
        db = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
        start = time.perf_counter()
        df.to_sql(table, db, if_exists="append", index=False, method="multi", chunksize=CHUNKSIZE)
        return len(df), time.perf_counter() - start
    if engine == "polars":
        import polars as pl

        df = pl.read_csv(csv)
        start = time.perf_counter()
        df.write_database(table, url, engine="adbc", if_table_exists="replace")
        return df.height, time.perf_counter() - start
    import adbc_driver_postgresql.dbapi as pg
    import duckdb

    con = duckdb.connect()
    con.read_csv(csv).create("orders")
    rows = con.execute("SELECT count(*) FROM orders").fetchall()[0][0]
    start = time.perf_counter()
    reader = con.sql("SELECT * FROM orders").arrow()  # a lazy RecordBatchReader in DuckDB 2
    with pg.connect(url) as conn, conn.cursor() as cur:
        cur.adbc_ingest(table, reader, mode="create_append")
        conn.commit()
    return rows, time.perf_counter() - start


def extract(engine, url, table):
    query = f"SELECT * FROM {table}"
    start = time.perf_counter()
    if engine == "connectorx":
        import connectorx as cx

        rows = cx.read_sql(url, query, return_type="arrow").num_rows
    elif engine == "pandas":
        import pandas as pd
        import sqlalchemy

        db = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
        rows = len(pd.read_sql(query, db))
    else:
        import polars as pl

        rows = pl.read_database_uri(query, url, engine="adbc").height
    return rows, time.perf_counter() - start


def version(engine):
    return __import__(engine).__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", choices=["load", "extract"])
    ap.add_argument("--engine", required=True)
    ap.add_argument("--input")
    ap.add_argument("--url", required=True)
    ap.add_argument("--table", required=True)
    args = ap.parse_args()
    if args.job == "load":
        rows, elapsed = load(args.engine, args.input, args.url, args.table)
    else:
        rows, elapsed = extract(args.engine, args.url, args.table)
    print(json.dumps({
        "engine": args.engine, "version": version(args.engine), "rows": rows,
        "runs": [elapsed], "median_s": elapsed,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
