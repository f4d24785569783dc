//! `host lake gc`: retention for the project's lake zones.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::Outcome;
use crate::config::project::{FILE_NAME, Project, Zone};
use crate::lake;

#[derive(Subcommand)]
pub enum LakeCommand {
    /// Delete a zone's objects older than an age (by their `load_date=` partition, else
    /// their modification time). Run with `--dry-run` first: it prints what would go.
    Gc {
        #[arg(long, value_enum)]
        zone: Zone,
        /// `90d` (days) or `12h` (hours).
        #[arg(long)]
        older_than: String,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// The project directory (its `weir.toml`, or a parent's); default: the current one.
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
}

pub fn run(command: LakeCommand) -> anyhow::Result<Outcome> {
    let LakeCommand::Gc {
        zone,
        older_than,
        dry_run,
        project,
    } = command;
    let dir = std::path::absolute(&project)?;
    let project = Project::find(&dir)?
        .with_context(|| format!("no {FILE_NAME} in {} or its parents", dir.display()))?;
    let root = project.zone_root(zone).with_context(|| {
        format!(
            "{} has no `{}` zone: add `{} = \"<directory>\"` under [lake]",
            project.file.display(),
            zone.name(),
            zone.name()
        )
    })?;
    let cutoff = chrono::Utc::now() - lake::parse_age(&older_than)?;
    let doomed = super::pipeline::tokio()?.block_on(lake::gc(&root, cutoff, dry_run))?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for object in &doomed {
        println!("{verb} {}/{} ({})", zone.name(), object.path, object.age);
    }
    let bytes: u64 = doomed.iter().map(|d| d.size).sum();
    println!(
        "{verb} {} objects ({bytes} bytes) older than {} from zone `{}` ({})",
        doomed.len(),
        cutoff.format("%Y-%m-%dT%H:%M:%SZ"),
        zone.name(),
        root
    );
    Ok(Outcome::Success)
}
