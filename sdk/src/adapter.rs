//! The glue between the WIT bindings and the [`Transform`] / [`Validator`] traits.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use arrow_schema::SchemaRef;

use crate::output::{Projection, with_projection};
use crate::{Config, Error, ErrorKind, Transform, Validator, ipc};

pub mod transformer {
    wit_bindgen::generate!({
        world: "reading-transformer",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::__private::transformer",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

pub mod validator {
    wit_bindgen::generate!({
        world: "reading-validator",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::__private::validator",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

use transformer::exports::weir::plugin::transform as t;
use transformer::exports::weir::plugin::transform_columns as tc;
use transformer::exports::weir::plugin::transform_reads as tr;
use validator::exports::weir::plugin::validate as v;
use validator::exports::weir::plugin::validate_reads as vr;

thread_local! {
    // The plugin's state between calls; a component instance is single-threaded.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    // The input schema `reads` was last asked about, and the columns of it the plugin reads.
    static READS: RefCell<Option<(SchemaRef, Vec<usize>)>> = const { RefCell::new(None) };
}

fn init_state<P: 'static>(
    config: &str,
    new: impl FnOnce(Config) -> Result<P, Error>,
) -> Result<(), Error> {
    let value = if config.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_str(config)
            .map_err(|e| Error::config(format!("config is not JSON: {e}")))?
    };
    let plugin = new(Config(value))?;
    STATE.with(|s| *s.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

fn with_state<P: 'static, R>(f: impl FnOnce(&mut P) -> Result<R, Error>) -> Result<R, Error> {
    STATE.with(|s| {
        let mut state = s.borrow_mut();
        let plugin = state
            .as_mut()
            .and_then(|b| b.downcast_mut::<P>())
            .ok_or_else(|| Error::internal("called before init"))?;
        f(plugin)
    })
}

macro_rules! wit_error {
    ($types:path) => {
        const _: () = {
            use $types as types;
            impl From<Error> for types::PluginError {
                fn from(e: Error) -> Self {
                    let kind = match e.kind {
                        ErrorKind::InvalidConfig => types::ErrorKind::InvalidConfig,
                        ErrorKind::InvalidInput => types::ErrorKind::InvalidInput,
                        ErrorKind::Internal => types::ErrorKind::Internal,
                    };
                    types::PluginError {
                        kind,
                        message: e.message,
                    }
                }
            }
        };
    };
}
wit_error!(transformer::weir::plugin::types);
wit_error!(validator::weir::plugin::types);

#[doc(hidden)]
pub struct TransformAdapter<T>(PhantomData<T>);

impl<T: Transform> t::Guest for TransformAdapter<T> {
    fn init(config: String) -> Result<(), t::PluginError> {
        Ok(init_state(&config, T::new)?)
    }

    fn output_schema(input_schema: Vec<u8>) -> Result<Vec<u8>, t::PluginError> {
        let input = ipc::decode_schema(&input_schema).map_err(Error::from)?;
        let output = with_state(|p: &mut T| p.output_schema(input))?;
        Ok(ipc::encode_schema(&output).map_err(|e| Error::internal(e.to_string()))?)
    }

    /// For hosts of 0.1.0: the whole output batch.
    fn transform(batch: Vec<u8>) -> Result<Vec<u8>, t::PluginError> {
        let input = ipc::decode_host_batch(batch).map_err(Error::from)?;
        let output = with_state(|p: &mut T| p.transform(input))?.into_batch()?;
        Ok(ipc::encode_batch(&output).map_err(|e| Error::internal(e.to_string()))?)
    }
}

impl<T: Transform> tc::Guest for TransformAdapter<T> {
    fn transform(batch: Vec<u8>) -> Result<tc::Transformed, tc::PluginError> {
        let input = ipc::decode_host_batch(batch).map_err(Error::from)?;
        // Only the columns read, if the host sent only those: outputs made from this batch
        // stand for the whole input.
        let projection = READS.with(|reads| {
            let reads = reads.borrow();
            let (whole, columns) = reads.as_ref()?;
            Projection::of(&input, whole, columns)
        });
        let output = with_projection(projection, || {
            with_state(|p: &mut T| p.transform(input.clone()))
        })?;
        let parts = output.into_parts(&input)?;
        let computed =
            ipc::encode_batch(&parts.computed).map_err(|e| Error::internal(e.to_string()))?;
        Ok(tc::Transformed {
            keep: parts.keep,
            computed,
            columns: parts.sources,
        })
    }
}

/// The indexes in `whole` of the columns named in `names` (`None`: all).
fn columns_read(whole: &SchemaRef, names: Option<&[&str]>) -> Option<Vec<usize>> {
    let fields = whole.fields().iter().enumerate();
    let names = names?;
    let read = fields.filter(|(_, f)| names.contains(&f.name().as_str()));
    Some(read.map(|(i, _)| i).collect())
}

fn as_u32(columns: &[usize]) -> Vec<u32> {
    columns.iter().map(|&i| i as u32).collect()
}

impl<T: Transform> tr::Guest for TransformAdapter<T> {
    fn reads(input_schema: Vec<u8>) -> Result<Option<Vec<u32>>, tr::PluginError> {
        let whole = ipc::decode_schema(&input_schema).map_err(Error::from)?;
        let columns = with_state(|p: &mut T| Ok(columns_read(&whole, p.reads())))?;
        let answer = columns.as_deref().map(as_u32);
        READS.with(|reads| *reads.borrow_mut() = columns.map(|c| (whole, c)));
        Ok(answer)
    }
}

#[doc(hidden)]
pub struct ValidatorAdapter<V>(PhantomData<V>);

impl<V: Validator> vr::Guest for ValidatorAdapter<V> {
    fn reads(input_schema: Vec<u8>) -> Result<Option<Vec<u32>>, vr::PluginError> {
        let whole = ipc::decode_schema(&input_schema).map_err(Error::from)?;
        let columns = with_state(|p: &mut V| Ok(columns_read(&whole, p.reads())))?;
        Ok(columns.as_deref().map(as_u32))
    }
}

impl<V: Validator> v::Guest for ValidatorAdapter<V> {
    fn init(config: String) -> Result<(), v::PluginError> {
        Ok(init_state(&config, V::new)?)
    }

    fn validate(batch: Vec<u8>) -> Result<v::Validation, v::PluginError> {
        let input = ipc::decode_host_batch(batch).map_err(Error::from)?;
        let checks = with_state(|p: &mut V| p.validate(&input))?;
        Ok(v::Validation {
            checks: checks
                .into_iter()
                .map(|c| validator::weir::plugin::types::CheckResult {
                    name: c.name,
                    passed: c.passed,
                    message: c.message,
                    failing_rows: c.failing_rows,
                })
                .collect(),
        })
    }
}
