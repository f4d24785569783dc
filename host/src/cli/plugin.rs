//! `host plugin build DIR` and `host plugin test PLUGIN --input FILE`; the store's commands
//! (install, list, remove, verify, keygen, sign) are in `install.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::pretty::pretty_format_batches;
use clap::{Args, Subcommand};
use parquet::arrow::ArrowWriter;

use super::Outcome;
use crate::config::types::DEFAULT_BATCH_SIZE;
use crate::extract::BatchStream;
use crate::extract::file::{FileSource, FileSpec};
use crate::plugin::build::{BuildOptions, Language, build};
use crate::plugin::{Grants, Limits, PluginKind, RowPolicy, Runtime, StepPolicy};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Make a new plugin project that builds and passes its own test.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Language,
        /// Where to make it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin project (Rust, JavaScript or Python) into a component; prints its path
    /// and sha256.
    Build {
        /// The plugin's directory (holding its Cargo.toml, package.json or pyproject.toml).
        dir: PathBuf,
    },
    /// Run a transform or validator over a CSV or Parquet file and show the result.
    Test(TestArgs),
    /// Install a plugin into the project's store and pin it in weir.lock.
    Install(super::install::InstallArgs),
    /// The plugins pinned in weir.lock.
    List(super::install::ProjectArg),
    /// Remove a plugin (NAME, or NAME@VERSION) from weir.lock and the store.
    Remove {
        plugin: String,
        #[command(flatten)]
        project: super::install::ProjectArg,
    },
    /// Re-hash every installed plugin and check its signature.
    Verify(super::install::ProjectArg),
    /// Make an ed25519 signing key; prints the public key to trust.
    Keygen {
        /// Where to write the secret key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component: writes FILE.sig beside it.
    Sign {
        file: PathBuf,
        /// The secret key file written by `host plugin keygen`.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Args)]
pub struct TestArgs {
    /// A component (.wasm) or a plugin crate directory (built first).
    plugin: PathBuf,
    /// Input file, .csv (header row, schema inferred) or .parquet.
    #[arg(long)]
    input: PathBuf,
    /// The step's settings, as JSON.
    #[arg(long, default_value = "{}")]
    config: String,
    /// Write a transform's output to this Parquet file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Fail unless a transform's output, written as CSV, is exactly this file.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Rows per batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Memory cap of the plugin, MiB.
    #[arg(long, default_value_t = Limits::default().memory_mib)]
    memory_mib: u64,
    /// Time budget per batch, milliseconds.
    #[arg(long, default_value_t = Limits::default().timeout_ms)]
    timeout_ms: u64,
    /// Grant the plugin the real clock.
    #[arg(long)]
    grant_clock: bool,
    /// Grant the plugin real random numbers.
    #[arg(long)]
    grant_random: bool,
    /// What a transform may do to the row count: at-most-input, same or any.
    #[arg(long, value_enum, default_value = "at-most-input")]
    rows: RowsArg,
    /// Rows of output to show.
    #[arg(long, default_value_t = 10)]
    show: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RowsArg {
    AtMostInput,
    Same,
    Any,
}

pub fn run(command: PluginCommand) -> anyhow::Result<Outcome> {
    match command {
        PluginCommand::New { name, lang, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            for file in crate::plugin::scaffold::new_project(&dir, &name, lang)? {
                println!("wrote {}", file.display());
            }
            println!(
                "next: host plugin build {0} && host plugin test {0} --input {0}/test/input.csv --expect {0}/test/expected.csv",
                dir.display()
            );
            Ok(Outcome::Success)
        }
        PluginCommand::Build { dir } => {
            let built = build(&dir, &BuildOptions::default())?;
            println!("{}", built.path.display());
            println!("sha256 {}", built.sha256);
            println!("{} bytes", built.bytes);
            Ok(Outcome::Success)
        }
        PluginCommand::Test(args) => test(args),
        PluginCommand::Install(args) => super::install::install(args),
        PluginCommand::List(project) => super::install::list(&project),
        PluginCommand::Remove { plugin, project } => super::install::remove(&plugin, &project),
        PluginCommand::Verify(project) => super::install::verify(&project),
        PluginCommand::Keygen { out } => super::install::keygen(&out),
        PluginCommand::Sign { file, key } => super::install::sign(&file, &key),
    }
}

fn component_path(plugin: &Path) -> anyhow::Result<PathBuf> {
    if plugin.is_dir() {
        let built = build(
            plugin,
            &BuildOptions {
                quiet: true,
                ..Default::default()
            },
        )?;
        Ok(built.path)
    } else {
        Ok(plugin.to_path_buf())
    }
}

fn test(args: TestArgs) -> anyhow::Result<Outcome> {
    serde_json::from_str::<serde_json::Value>(&args.config)
        .context("--config is not valid JSON")?;
    let rows = match args.rows {
        RowsArg::AtMostInput => RowPolicy::AtMostInput,
        RowsArg::Same => RowPolicy::Same,
        RowsArg::Any => RowPolicy::Any,
    };
    let policy = StepPolicy {
        limits: Limits {
            memory_mib: args.memory_mib,
            timeout_ms: args.timeout_ms,
        },
        grants: Grants {
            clock: args.grant_clock,
            random: args.grant_random,
        },
        rows,
    };
    let runtime = Runtime::new().context("starting the plugin runtime")?;
    let plugin = runtime.load(&component_path(&args.plugin)?)?;
    plugin
        .check_grants(&policy.grants)
        .context("`host plugin test` grants with --grant-clock and --grant-random")?;
    println!(
        "plugin {} ({}, sha256 {})",
        plugin.name(),
        plugin.kind().as_str(),
        plugin.short_digest()
    );
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let _context = tokio.enter();
    let (input_schema, batches) =
        tokio.block_on(open_input(&args.input, args.batch_size.max(1)))?;
    let input =
        futures::executor::block_on_stream(batches).map(|b| b.map(|b| without_provenance(&b)));
    let started = Instant::now();
    match plugin.kind() {
        PluginKind::Transformer => {
            let mut session = plugin.transform_session(&args.config, policy)?;
            let schema = session.output_schema(&input_schema)?;
            let mut writer = match &args.output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    Some(ArrowWriter::try_new(file, schema.clone(), None)?)
                }
                None => None,
            };
            let mut csv = args
                .expect
                .as_ref()
                .map(|_| arrow::csv::WriterBuilder::new().build(Vec::new()));
            let (mut rows_in, mut rows_out, mut batches, mut shown) = (0, 0, 0, Vec::new());
            let mut shown_rows = 0;
            for batch in input {
                let batch = batch?;
                rows_in += batch.num_rows();
                batches += 1;
                let output = session.transform(&batch)?;
                rows_out += output.num_rows();
                if shown_rows < args.show && output.num_rows() > 0 {
                    let take = (args.show - shown_rows).min(output.num_rows());
                    shown.push(output.slice(0, take));
                    shown_rows += take;
                }
                if let Some(writer) = writer.as_mut() {
                    writer.write(&output)?;
                }
                if let Some(csv) = csv.as_mut() {
                    csv.write(&output)?;
                }
            }
            if let Some(writer) = writer {
                writer.close()?;
            }
            println!("{}", pretty_format_batches(&shown)?);
            println!(
                "{rows_in} rows in, {rows_out} rows out, {batches} batches, {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            );
            if let Some(path) = &args.output {
                println!("wrote {}", path.display());
            }
            if let (Some(path), Some(csv)) = (&args.expect, csv) {
                let expected = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let got = String::from_utf8(csv.into_inner())?;
                compare_csv(&expected, &got, path)?;
                println!("output matches {}", path.display());
            }
            Ok(Outcome::Success)
        }
        PluginKind::Validator => {
            if args.output.is_some() || args.expect.is_some() {
                bail!(
                    "--output and --expect are for transforms; {} is a validator",
                    plugin.name()
                );
            }
            let mut session = plugin.validate_session(&args.config, policy)?;
            let mut report: BTreeMap<String, CheckSummary> = BTreeMap::new();
            let mut offset = 0usize;
            for batch in input {
                let batch: RecordBatch = batch?;
                for check in session.validate(&batch)? {
                    let summary = report.entry(check.name.clone()).or_default();
                    summary.failed_batches += usize::from(!check.passed);
                    summary.failing_rows += check.failing_rows.len();
                    summary.examples.extend(
                        check
                            .failing_rows
                            .iter()
                            .take(5)
                            .map(|&r| offset + r as usize + 1),
                    );
                    summary.examples.truncate(5);
                    if !check.passed && summary.message.is_empty() {
                        summary.message = check.message;
                    }
                }
                offset += batch.num_rows();
            }
            print_report(&report, offset);
            let failed = report.values().any(|s| s.failed_batches > 0);
            Ok(if failed {
                Outcome::ValidationFailed
            } else {
                Outcome::Success
            })
        }
    }
}

/// The first line where a transform's CSV output differs from the expected file.
fn compare_csv(expected: &str, got: &str, path: &Path) -> anyhow::Result<()> {
    let expected: Vec<&str> = expected.lines().collect();
    let got: Vec<&str> = got.lines().collect();
    for line in 0..expected.len().max(got.len()) {
        let (want, have) = (expected.get(line), got.get(line));
        if want != have {
            bail!(
                "the output differs from {} at line {}: expected {}, got {}",
                path.display(),
                line + 1,
                want.map_or("the end of the file".to_string(), |l| format!("`{l}`")),
                have.map_or("the end of the output".to_string(), |l| format!("`{l}`")),
            );
        }
    }
    Ok(())
}

/// The input file as one-file source (the same reader `host run` uses).
async fn open_input(path: &Path, batch_size: usize) -> anyhow::Result<(SchemaRef, BatchStream)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("--input must name a file")?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let spec = FileSpec {
        pattern: glob::Pattern::escape(name),
        format: None,
        batch_size,
        declared: Default::default(),
    };
    let source = FileSource::open(dir, spec, &Default::default())?;
    let file = source
        .list()
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("{} does not exist", path.display()))?;
    let schema = source.schema(&file).await?;
    Ok((schema, source.read(&file).await?))
}

/// A pipeline's provenance columns mean nothing to a plugin tried on its own.
fn without_provenance(batch: &RecordBatch) -> RecordBatch {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !batch.schema().field(i).name().starts_with("_weir_"))
        .collect();
    batch.project(&keep).expect("indexes within the batch")
}

#[derive(Default)]
struct CheckSummary {
    failed_batches: usize,
    failing_rows: usize,
    examples: Vec<usize>,
    message: String,
}

fn print_report(report: &BTreeMap<String, CheckSummary>, rows: usize) {
    let width = report.keys().map(String::len).max().unwrap_or(5).max(5);
    println!(
        "{:width$}  {:6}  {:>12}  first failing rows (1 = first data row)  message",
        "check", "result", "failing rows"
    );
    for (name, s) in report {
        let result = if s.failed_batches == 0 {
            "pass"
        } else {
            "FAIL"
        };
        let examples = s
            .examples
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{name:width$}  {result:6}  {:>12}  {examples:40}  {}",
            s.failing_rows, s.message
        );
    }
    println!("{rows} rows checked");
}
