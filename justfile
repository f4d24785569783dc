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
