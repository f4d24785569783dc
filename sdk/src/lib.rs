//! # weir-sdk
//!
//! Write a Weir plugin as a plain Rust type over Arrow [`RecordBatch`]es; the SDK owns the
//! WebAssembly interface (`weir:plugin@0.1.2`, generated with wit-bindgen) and the Arrow IPC
//! encoding, so a plugin contains neither.
//!
//! ```ignore
//! use weir_sdk::{Config, Error, Output, Transform, arrow::array::RecordBatch};
//!
//! struct Passthrough;
//!
//! impl Transform for Passthrough {
//!     fn new(_config: Config) -> Result<Self, Error> { Ok(Passthrough) }
//!     fn transform(&mut self, batch: RecordBatch) -> Result<Output, Error> { Ok(batch.into()) }
//! }
//!
//! weir_sdk::export_transform!(Passthrough);
//! ```
//!
//! Build it with `host plugin build DIR`: the crate must be a `cdylib` and is compiled for
//! `wasm32-wasip2` into a component.

// The generated bindings name this crate by its path, also from inside it.
extern crate self as weir_sdk;

mod adapter;
mod error;
pub mod ipc;
mod output;

pub use error::{Error, ErrorKind};
pub use output::Output;

/// The Arrow crates a plugin needs, re-exported so that versions always match the SDK's.
pub mod arrow {
    pub use arrow_arith as arith;
    pub use arrow_array::RecordBatch;
    /// Arrays, as `arrow::array` has them (with the `AsArray` downcasts).
    pub mod array {
        pub use arrow_array::builder::*;
        pub use arrow_array::cast::{AsArray, as_string_array};
        pub use arrow_array::*;
    }
    pub use arrow_buffer as buffer;
    pub use arrow_cast as cast;
    pub use arrow_ord as ord;
    pub use arrow_schema as schema;
    pub use arrow_select as select;
}

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

/// The step's settings from the pipeline file (a JSON object, `{}` when there are none).
#[derive(Debug, Clone)]
pub struct Config(pub serde_json::Value);

impl Config {
    /// Deserialize the settings into the plugin's own config type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.0.clone()).map_err(|e| Error::config(e.to_string()))
    }

    /// One setting as a string, if present.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_str())
    }
}

/// A transform: one batch in, one batch out.
pub trait Transform: Sized + 'static {
    /// Called once per step, with the step's settings.
    fn new(config: Config) -> Result<Self, Error>;

    /// Transform one batch: answer with a batch (`Ok(batch.into())`) or, cheaper for a
    /// transform that keeps the input's columns, with the rows kept and the columns set
    /// ([`Output::select`]).
    fn transform(&mut self, batch: RecordBatch) -> Result<Output, Error>;

    /// The input columns this transform reads, by name (default: all of them). Only these
    /// enter the sandbox: [`Transform::transform`] is given a batch of just these (those the
    /// input has, in its order), and an [`Output`] made from that batch still has the others,
    /// which the host passes through from its own copy. Worth it for wide input.
    fn reads(&self) -> Option<&[&str]> {
        None
    }

    /// The schema this transform produces for input of `input` schema. The default runs
    /// [`Transform::transform`] on an empty batch, which is right for any transform built
    /// from Arrow kernels; override it when that is not so.
    fn output_schema(&mut self, input: SchemaRef) -> Result<SchemaRef, Error> {
        Ok(self.transform(RecordBatch::new_empty(input))?.schema())
    }
}

/// The outcome of one named check over one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub message: String,
    /// Zero-based indexes of the failing rows within the batch.
    pub failing_rows: Vec<u32>,
}

impl Check {
    /// A check over rows: it passes when `failing_rows` is empty.
    pub fn rows(name: &str, failing_rows: Vec<u32>, what: &str) -> Check {
        let passed = failing_rows.is_empty();
        let message = if passed {
            "ok".to_string()
        } else {
            format!("{} rows {what}", failing_rows.len())
        };
        Check {
            name: name.to_string(),
            passed,
            message,
            failing_rows,
        }
    }

    /// A check about the whole batch.
    pub fn batch(name: &str, passed: bool, message: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            passed,
            message: message.into(),
            failing_rows: Vec::new(),
        }
    }
}

/// A validator: named checks over one batch.
pub trait Validator: Sized + 'static {
    fn new(config: Config) -> Result<Self, Error>;
    fn validate(&mut self, batch: &RecordBatch) -> Result<Vec<Check>, Error>;

    /// The input columns this validator reads, by name (default: all of them). Only these
    /// enter the sandbox: [`Validator::validate`] is given a batch of just these (those the
    /// input has, in its order); its failing rows are rows of the whole batch all the same.
    fn reads(&self) -> Option<&[&str]> {
        None
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::{TransformAdapter, ValidatorAdapter};
    pub use crate::adapter::{transformer, validator};
    pub use wit_bindgen;
}

/// Export a [`Transform`] implementation as this component's `transformer` world.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        const _: () = {
            type __WeirTransform = $crate::__private::TransformAdapter<$t>;
            $crate::__private::transformer::export!(
                __WeirTransform with_types_in $crate::__private::transformer
            );
        };
    };
}

/// Export a [`Validator`] implementation as this component's `validator` world.
#[macro_export]
macro_rules! export_validator {
    ($t:ty) => {
        const _: () = {
            type __WeirValidator = $crate::__private::ValidatorAdapter<$t>;
            $crate::__private::validator::export!(
                __WeirValidator with_types_in $crate::__private::validator
            );
        };
    };
}
