//! The `host` command line. `anyhow` lives here only; the library has typed errors.
//!
//! Exit codes: 0 success (or nothing new); 1 an error (bad pipeline file, unreadable input,
//! a plugin failure, a sink error); 2 validation failed (a check did not pass, nothing was
//! loaded); 3 loaded, but rows failed checks and were quarantined.

mod install;
mod lake;
mod pipeline;
mod plugin;
mod state;

use std::path::PathBuf;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "host",
    version,
    about = "Weir: data pipelines with sandboxed Wasm transforms"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: extract what is new, transform, validate, load exactly once. Several
    /// pipelines run at once in one process, sharing tenants' limits.
    Run {
        #[arg(required = true)]
        pipeline: Vec<PathBuf>,
        /// Plain log lines instead of a progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a pipeline file without running it: config, plugins, schemas.
    Validate { pipeline: PathBuf },
    /// Show what a run would do: steps, sinks, watermark and the files it would read.
    Plan { pipeline: PathBuf },
    /// Show or reset a pipeline's watermark and consumed files.
    #[command(subcommand)]
    State(state::StateCommand),
    /// The pipeline's run history, newest first.
    Runs {
        pipeline: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Build, test, sign and install plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// The project's lake zones (`weir.toml`): retention.
    #[command(subcommand)]
    Lake(lake::LakeCommand),
}

/// What a command found, beyond success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    Quarantined,
    ValidationFailed,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

impl Outcome {
    /// The outcome of several runs: the worst of theirs.
    pub fn worst(self, other: Outcome) -> Outcome {
        self.max(other)
    }
}

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_VALIDATION_FAILED: u8 = 2;
pub const EXIT_QUARANTINED: u8 = 3;
/// 128 + SIGINT, as shells report a process a Ctrl-C ended.
pub const EXIT_INTERRUPTED: u8 = 130;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { pipeline, quiet } => pipeline::run(&pipeline, quiet),
        Command::Validate { pipeline } => pipeline::validate(&pipeline),
        Command::Plan { pipeline } => pipeline::plan(&pipeline),
        Command::State(command) => state::state(command),
        Command::Runs { pipeline, limit } => state::runs(&pipeline, limit),
        Command::Plugin(command) => plugin::run(command),
        Command::Lake(command) => lake::run(command),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::ValidationFailed) => ExitCode::from(EXIT_VALIDATION_FAILED),
        Ok(Outcome::Quarantined) => ExitCode::from(EXIT_QUARANTINED),
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
