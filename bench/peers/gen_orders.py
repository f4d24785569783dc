"""Generate a synthetic orders file for the peer benchmarks.

    python gen_orders.py --rows N --out FILE.parquet|FILE.csv [--seed S]

Columns: order_id (int64, unique), customer_id (int64, ~10% null),
amount (float64, ~10% negative, ~0.5% null), exchange_rate (float64),
order_date (string: ~85% "YYYY-MM-DDTHH:MM:SSZ", ~12% "YYYY-MM-DD",
~3% unparseable). Deterministic for a given --seed.
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# Values every engine must turn into null rather than raise on; "2024-02-30"
# and "2024-13-45" look like dates, so they catch parsers that are too lenient.
GARBAGE = np.array(["not a date", "N/A", "TBD", "2024-13-45", "2024-02-30", "0000-00-00"])


def generate(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)

    order_id = rng.permutation(n).astype(np.int64) + 1_000_000
    customer_id = rng.integers(1, max(n // 20, 2), n, dtype=np.int64)
    amount = np.round(rng.uniform(1, 500, n), 2) * np.where(rng.random(n) < 0.10, -1, 1)
    exchange_rate = np.round(rng.uniform(0.5, 1.5, n), 4)

    ts = np.datetime64("2023-01-01T00:00:00") + rng.integers(0, 2 * 365 * 86400, n).astype("timedelta64[s]")
    kind = rng.random(n)
    order_date = np.where(
        kind < 0.85,
        np.char.add(np.datetime_as_string(ts, unit="s"), "Z"),
        np.where(kind < 0.97, np.datetime_as_string(ts, unit="D"), rng.choice(GARBAGE, n)),
    )

    return pa.table({
        "order_id": order_id,
        "customer_id": pa.array(customer_id, mask=rng.random(n) < 0.10),
        "amount": pa.array(amount, mask=rng.random(n) < 0.005),
        "exchange_rate": exchange_rate,
        "order_date": pa.array(order_date, pa.string()),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--out", required=True, help="*.parquet or *.csv")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    table = generate(args.rows, args.seed)
    if args.out.endswith(".parquet"):
        pq.write_table(table, args.out)
    elif args.out.endswith(".csv"):
        pacsv.write_csv(table, args.out)
    else:
        ap.error("--out must end in .parquet or .csv")


if __name__ == "__main__":
    main()
