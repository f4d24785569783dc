//! The sinks' rules: names, paths and URLs, and each sink's load mode.

use crate::config::ConfigError;
use crate::config::error::Locator;
use crate::config::project::Project;

use crate::config::types::{LoadMode, ModeName, Sink};

use super::{local_only, not_blank, postgres_url, store_path, zone_configured};

pub(super) fn sinks(
    sinks: &[Sink],
    project: Option<&Project>,
    at: &Locator<'_>,
) -> Result<Vec<LoadMode>, ConfigError> {
    if sinks.is_empty() {
        return Err(at.at_key("sinks", "at least one sink is needed"));
    }
    let mut modes = Vec::with_capacity(sinks.len());
    for (i, sink) in sinks.iter().enumerate() {
        let key = format!("sinks[{i}]");
        not_blank(sink.name(), &format!("{key}.name"), at)?;
        if let Some(first) = sinks[..i]
            .iter()
            .position(|other| other.name() == sink.name())
        {
            let message = format!(
                "duplicate sink name `{}` (also the name of sinks[{first}])",
                sink.name()
            );
            return Err(at.at_key(&format!("{key}.name"), message));
        }
        let path_key = format!("{key}.path");
        let (mode, partition_by, keys) = match sink {
            Sink::Sqlite(s) => {
                not_blank(s.path.get_ref(), &path_key, at)?;
                not_blank(s.table.get_ref(), &format!("{key}.table"), at)?;
                let what = "a SQLite database is a local file";
                local_only(s.path.get_ref(), &path_key, what, at)?;
                (*s.mode.get_ref(), &s.partition_by, &s.keys)
            }
            Sink::Postgres(s) => {
                postgres_url(s.url.get_ref(), &format!("{key}.url"), at)?;
                not_blank(s.table.get_ref(), &format!("{key}.table"), at)?;
                (*s.mode.get_ref(), &s.partition_by, &s.keys)
            }
            Sink::Parquet(s) => {
                store_path(s.path.get_ref(), &path_key, at)?;
                if let Some(zone) = s.zone {
                    zone_configured(zone, project, &format!("{key}.zone"), at)?;
                }
                if s.rows_per_file == 0 {
                    let message = "must be greater than 0";
                    return Err(at.at_key(&format!("{key}.rows_per_file"), message));
                }
                (*s.mode.get_ref(), &s.partition_by, &s.keys)
            }
        };
        if let Some(column) = partition_by {
            not_blank(column, &format!("{key}.partition_by"), at)?;
        }
        for (j, column) in keys.iter().enumerate() {
            not_blank(column, &format!("{key}.keys[{j}]"), at)?;
        }
        modes.push(load_mode(mode, partition_by, keys, &key, at)?);
    }
    Ok(modes)
}

fn load_mode(
    mode: ModeName,
    partition_by: &Option<String>,
    keys: &[String],
    key: &str,
    at: &Locator<'_>,
) -> Result<LoadMode, ConfigError> {
    let keys_unused = |name: &str| {
        let message = format!("`keys` only applies to mode `merge` (this sink's mode is `{name}`)");
        at.at_key(&format!("{key}.keys"), message)
    };
    match mode {
        ModeName::Append if !keys.is_empty() => Err(keys_unused("append")),
        ModeName::Append => Ok(LoadMode::Append),
        ModeName::ReplacePartition if !keys.is_empty() => Err(keys_unused("replace_partition")),
        ModeName::ReplacePartition => match partition_by {
            Some(column) => Ok(LoadMode::ReplacePartition { column: column.clone() }),
            None => Err(at.at_key(
                &format!("{key}.mode"),
                "mode `replace_partition` needs `partition_by` (the column whose partitions are replaced)",
            )),
        },
        ModeName::Merge if keys.is_empty() => {
            Err(at.at_key(&format!("{key}.mode"), "mode `merge` needs `keys` (the key columns to upsert on)"))
        }
        ModeName::Merge => Ok(LoadMode::Merge { keys: keys.to_vec() }),
    }
}
