//! The steps' rules: plugin paths on disk or installed names, tenants, built-in checks.

use std::path::Path;

use crate::config::ConfigError;
use crate::config::error::Locator;
use crate::config::project::{FILE_NAME, Project};

use crate::config::types::{Check, PluginStep};
use crate::plugin::build::Language;
use crate::registry::PluginRef;

use super::not_blank;

/// A step's tenant must be one the project defines, and the step may not ask for more than
/// the tenant's ceilings.
pub(super) fn tenant(
    step: &PluginStep,
    project: Option<&Project>,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let Some(name) = &step.tenant else {
        return Ok(());
    };
    let name = name.get_ref();
    let key_tenant = format!("{key}.tenant");
    let Some(project) = project else {
        return Err(at.at_key(
            &key_tenant,
            format!(
                "tenant `{name}` needs a project file: a `{FILE_NAME}` beside the pipeline or above it, with a [tenants.{name}] table"
            ),
        ));
    };
    let tenants = &project.settings.tenants;
    let Some(limits) = tenants.get(name) else {
        let known = tenants.keys().map(String::as_str).collect::<Vec<_>>();
        return Err(at.at_key(
            &key_tenant,
            format!(
                "unknown tenant `{name}`: {} defines {}",
                project.file.display(),
                if known.is_empty() {
                    "no [tenants.NAME] tables".to_string()
                } else {
                    format!("tenants {}", known.join(", "))
                }
            ),
        ));
    };
    let ceilings = [
        ("memory_mib", step.limits.memory_mib, limits.memory_mib),
        ("timeout_ms", step.limits.timeout_ms, limits.timeout_ms),
    ];
    for (limit, asked, ceiling) in ceilings {
        if let (Some(asked), Some(ceiling)) = (asked, ceiling)
            && asked > ceiling
        {
            return Err(at.at_key(
                &format!("{key}.limits.{limit}"),
                format!(
                    "{asked} is over tenant `{name}`'s ceiling of {ceiling} ({} [tenants.{name}])",
                    project.file.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A plugin is an installed plugin's name (looked up in the project's `weir.lock` when the
/// pipeline is planned), a crate directory (built on first use) or a `.wasm` component.
pub(super) fn plugin_path(
    step: &PluginStep,
    base_dir: &Path,
    project: Option<&Project>,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let written = step.plugin.get_ref();
    not_blank(written, key, at)?;
    if let PluginRef::Installed { .. } = PluginRef::parse(written) {
        if project.is_none() {
            return Err(at.at_key(
                key,
                format!(
                    "`{written}` names an installed plugin, but there is no {FILE_NAME} beside the pipeline or above it (installed plugins are pinned in the weir.lock beside it); write a path with a `/` for a plugin crate or .wasm file"
                ),
            ));
        }
        return Ok(());
    }
    let path = base_dir.join(written);
    let expected =
        "expected a plugin project directory (Rust, JavaScript or Python) or a .wasm component";
    let problem = if path.is_dir() {
        if Language::detect(&path).is_ok() {
            return Ok(());
        }
        "is a directory without Cargo.toml, package.json or pyproject.toml"
    } else if path.is_file() {
        if path.extension().is_some_and(|ext| ext == "wasm") {
            return Ok(());
        }
        "is a file that is not a .wasm component"
    } else {
        "does not exist"
    };
    Err(at.at_key(
        key,
        format!(
            "plugin `{written}` {problem} (looked at {}); {expected}",
            path.display()
        ),
    ))
}

pub(super) fn builtin_check(check: &Check, key: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    let column = |column: &str| not_blank(column, &format!("{key}.column"), at);
    match check {
        Check::NotNull { column: name } | Check::Unique { column: name } => column(name),
        Check::Range {
            column: name,
            min,
            max,
        } => {
            column(name)?;
            bounds(*min, *max, "range", key, at)
        }
        Check::RowCount { min, max } => bounds(*min, *max, "row_count", key, at),
        Check::AcceptedValues {
            column: name,
            values,
        } => {
            column(name)?;
            if values.is_empty() {
                return Err(at.at_key(&format!("{key}.values"), "needs at least one value"));
            }
            Ok(())
        }
        Check::Regex {
            column: name,
            pattern,
        } => {
            column(name)?;
            regex::Regex::new(pattern).map(drop).map_err(|e| {
                at.at_key(
                    &format!("{key}.pattern"),
                    format!("invalid regex: {}", regex_reason(&e)),
                )
            })
        }
    }
}

fn bounds<T: PartialOrd>(
    min: Option<T>,
    max: Option<T>,
    name: &str,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    match (min, max) {
        (None, None) => Err(at.at_key(key, format!("a `{name}` check needs `min`, `max` or both"))),
        (Some(min), Some(max)) if min > max => {
            Err(at.at_key(&format!("{key}.min"), "is greater than `max`"))
        }
        _ => Ok(()),
    }
}

/// The regex crate's syntax errors span several lines (pattern, caret, reason); the reason
/// is the last one.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}
