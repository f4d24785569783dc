//! `host state show|reset` and `host runs`: the run state of a pipeline.

use std::path::Path;

use clap::Subcommand;

use super::Outcome;
use crate::config;
use crate::state::{SledState, StateStore};

#[derive(Subcommand)]
pub enum StateCommand {
    /// Show the watermark, the consumed files and any interrupted load.
    Show { pipeline: std::path::PathBuf },
    /// Forget the watermark and consumed files (the next run reads everything again), or
    /// set the watermark with `--to`.
    Reset {
        pipeline: std::path::PathBuf,
        #[arg(long)]
        to: Option<String>,
    },
}

fn open(pipeline: &Path) -> anyhow::Result<(String, SledState)> {
    let loaded = config::load(pipeline)?;
    let state = SledState::open(&loaded.resolve(&loaded.pipeline.state.path))?;
    Ok((loaded.pipeline.name.get_ref().clone(), state))
}

pub fn state(command: StateCommand) -> anyhow::Result<Outcome> {
    match command {
        StateCommand::Show { pipeline } => {
            let (name, state) = open(&pipeline)?;
            println!("pipeline  {name}");
            println!(
                "watermark {}",
                state.watermark(&name)?.as_deref().unwrap_or("(none)")
            );
            let files = state.consumed_files(&name)?;
            println!("consumed files: {}", files.len());
            for (path, fingerprint) in files {
                println!("  {path} ({} bytes)", fingerprint.size);
            }
            if let Some(pending) = state.pending_load(&name)? {
                println!(
                    "interrupted load {} (the next run replays it)",
                    pending.load_id
                );
            }
        }
        StateCommand::Reset { pipeline, to } => {
            let (name, state) = open(&pipeline)?;
            state.reset(&name, to.as_deref())?;
            match to {
                Some(to) => println!("{name}: watermark set to {to}; consumed files forgotten"),
                None => println!("{name}: watermark and consumed files forgotten"),
            }
        }
    }
    Ok(Outcome::Success)
}

pub fn runs(pipeline: &Path, limit: usize) -> anyhow::Result<Outcome> {
    let (name, state) = open(pipeline)?;
    println!(
        "{:<28} {:<17} {:>8} {:>8} {:>8}  watermark after / error",
        "run", "status", "read", "quar.", "loaded"
    );
    for run in state.runs(&name, limit)? {
        let loaded: u64 = run.loaded.values().max().copied().unwrap_or(0);
        let tail = run
            .error
            .as_deref()
            .map(|e| e.lines().next().unwrap_or(""))
            .or(run.watermark_after.as_deref())
            .unwrap_or("");
        println!(
            "{:<28} {:<17} {:>8} {:>8} {:>8}  {tail}",
            run.run_id,
            format!("{:?}", run.status),
            run.rows_read,
            run.rows_quarantined,
            loaded
        );
    }
    Ok(Outcome::Success)
}
