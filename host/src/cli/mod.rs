//! The `host` command line. `anyhow` lives here only; the library has typed errors.
//!
//! Exit codes: 0 success; 1 an error (bad arguments, unreadable input, a plugin failure);
//! 2 validation failed (a check did not pass).

mod plugin;

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
    /// Build, test and inspect plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// What a command found, beyond success.
pub enum Outcome {
    Success,
    ValidationFailed,
}

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_VALIDATION_FAILED: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Plugin(command) => plugin::run(command),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::ValidationFailed) => ExitCode::from(EXIT_VALIDATION_FAILED),
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
