//! # Weir
//!
//! A data pipeline runtime in which every transform and validator is a sandboxed
//! WebAssembly component exchanging Arrow record batches with the host.
//!
//! # Layout
//!
//! - [`plugin`] — the Wasm runtime: engine, sandbox (memory cap, time budget, no
//!   capabilities by default), compiled-component cache, transform and validate sessions,
//!   and `host plugin build`.
//! - [`extract`] — sources behind the [`extract::Source`] trait; one module per kind (files
//!   through object_store, Postgres tables and queries, JSON APIs over HTTP).
//! - [`load`] — sinks behind the [`load::Sink`] trait (SQLite, Postgres, Parquet).
//! - [`engine`] — one run of a pipeline, exactly once; [`state`] keeps its watermarks.
//! - [`cli`] — the `host` command line, one file per command group.
//!
//! The plugin interface itself is `wit/plugin.wit` (`weir:plugin@0.1.0`); plugin authors
//! write against the `weir-sdk` crate.

pub mod cli;
pub mod config;
pub mod engine;
pub mod extract;
pub mod load;
pub mod observe;
pub mod plan;
pub mod plugin;
pub mod schedule;
pub mod state;
pub mod validate;
