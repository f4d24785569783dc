# Shortcuts for developers; the README's two commands need none of this.

# Run the example pipeline on embedded defaults.
run:
    cargo run --release -- run pipelines/orders.toml

# The Postgres example against a throwaway server on loopback.
postgres-demo:
    scripts/postgres-demo

# The whole test suite (what CI runs).
test:
    cargo test --release

# Benchmarks: Weir beside pandas, Polars and DuckDB; results land in BENCHMARKS.md.
bench:
    cargo bench

# Everything CI does.
ci:
    .ci/run

# The crash harness at full size: 500 kill -9s per sink (CI runs 50); figures land in RELIABILITY.md.
chaos:
    WEIR_CHAOS_KILLS=500 cargo test --release --test chaos -- --nocapture

# Fuzz each target (pipeline files, plugin output, CSV/NDJSON) for SECONDS; CI runs 60 each.
fuzz seconds="600":
    .ci/ensure-fuzz
    scripts/fuzz {{seconds}}
