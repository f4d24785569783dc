//! # Weir
//!
//! A data pipeline runtime in which every transform and validator is a sandboxed
//! WebAssembly component exchanging Arrow record batches with the host.
//!
//! # Layout
//!
//! - [`plugin`] — the Wasm runtime: engine, sandbox (memory cap, time budget, no
//!   capabilities by default), compiled-component cache, transform and validate sessions,
//!   the plugin manifest (`weir-plugin.toml`, embedded in the component) and `host plugin
//!   build`.
//! - [`registry`] — installed plugins: the content-addressed store, `weir.lock`, ed25519
//!   signatures, `host plugin install`.
//! - [`extract`] — sources behind the [`extract::Source`] trait; one module per kind (files
//!   through object_store, Postgres tables and queries, JSON APIs over HTTP).
//! - [`load`] — sinks behind the [`load::Sink`] trait (SQLite, Postgres, Parquet).
//! - [`lake`] — lake zones (`weir.toml`) and their retention (`host lake gc`).
//! - [`engine`] — one run of a pipeline, exactly once, its plugin steps in lanes
//!   (`parallel_batches`); [`state`] keeps its watermarks.
//! - [`store`] — which object store a path means (local directory or `s3://bucket/prefix`)
//!   and opening it; file sources and the Parquet sink read and write through it.
//! - [`alloc`] — the `host` binary's allocator (batch-sized blocks reused from a bounded
//!   cache).
//! - [`cli`] — the `host` command line, one file per command group.
//! - `fuzz` — the entry points of the fuzz targets in `fuzz/` (pipeline files, plugin
//!   output, CSV/NDJSON).
//!
//! The plugin interface itself is `wit/plugin.wit` (`weir:plugin@0.1.2`); plugin authors
//! write against the `weir-sdk` crate.

pub mod alloc;
pub mod cli;
pub mod config;
pub mod engine;
pub mod extract;
#[doc(hidden)]
pub mod fuzz;
pub mod lake;
pub mod load;
pub mod observe;
pub mod plan;
pub mod plugin;
pub mod registry;
pub mod schedule;
pub mod state;
pub mod store;
pub mod validate;
