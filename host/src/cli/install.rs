//! `host plugin install | list | remove | verify | keygen | sign`: the project's installed
//! plugins (see `crate::registry`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use sha2::{Digest, Sha256};

use super::Outcome;
use crate::config::project::{FILE_NAME, Project};
use crate::plugin::Runtime;
use crate::registry::lock::Entry;
use crate::registry::sign::SecretKey;
use crate::registry::{PluginRef, Source, Store, Verified, sig_path};

#[derive(Args)]
pub struct ProjectArg {
    /// The project directory (its `weir.toml`, or a parent's); default: the current one.
    #[arg(long, default_value = ".")]
    project: PathBuf,
}

#[derive(Args)]
pub struct InstallArgs {
    /// A plugin crate directory (built first), a `.wasm` file or an http(s):// URL; its
    /// signature is read from SOURCE.sig (for a crate: beside the built component).
    source: String,
    /// Install it even though it is not signed by a trusted key.
    #[arg(long)]
    allow_unsigned: bool,
    #[command(flatten)]
    project: ProjectArg,
}

fn open_store(arg: &ProjectArg) -> anyhow::Result<Store> {
    let dir = std::path::absolute(&arg.project)?;
    let project = Project::find(&dir)?.with_context(|| {
        format!(
            "no {FILE_NAME} in {} or its parents: create one (it may be empty) in the directory of the pipelines",
            dir.display()
        )
    })?;
    Ok(Store::open(&project)?)
}

pub fn install(args: InstallArgs) -> anyhow::Result<Outcome> {
    let mut store = open_store(&args.project)?;
    let source = Source::parse(&args.source);
    let (wasm, signature) = source.fetch(false)?;
    let runtime = Runtime::new().context("starting the plugin runtime")?;
    let entry = store.install(
        &runtime,
        &source,
        &wasm,
        signature.as_deref(),
        args.allow_unsigned,
    )?;
    println!(
        "installed {} {} ({}) {}",
        entry.name,
        entry.version,
        world(&entry),
        entry.digest
    );
    match &entry.signed_by {
        Some(key) => println!("signed by {key}"),
        None => println!("unsigned (--allow-unsigned)"),
    }
    Ok(Outcome::Success)
}

pub fn list(project: &ProjectArg) -> anyhow::Result<Outcome> {
    let store = open_store(project)?;
    if store.lock.entries.is_empty() {
        println!("no plugins installed ({})", store.lock.path.display());
        return Ok(Outcome::Success);
    }
    println!("name\tversion\tworld\tdigest\tcapabilities\tsigned by\tsource");
    for entry in &store.lock.entries {
        let capabilities: Vec<&str> = entry.capabilities.iter().map(|c| c.as_str()).collect();
        println!(
            "{}\t{}\t{}\tsha256:{}\t{}\t{}\t{}",
            entry.name,
            entry.version,
            world(entry),
            &entry.hex()[..12.min(entry.hex().len())],
            if capabilities.is_empty() {
                "-".to_string()
            } else {
                capabilities.join(",")
            },
            entry.signed_by.as_deref().unwrap_or("unsigned"),
            entry.source
        );
    }
    Ok(Outcome::Success)
}

pub fn remove(plugin: &str, project: &ProjectArg) -> anyhow::Result<Outcome> {
    let PluginRef::Installed { name, version } = PluginRef::parse(plugin) else {
        bail!("`{plugin}` is not a plugin name: expected NAME or NAME@VERSION");
    };
    let mut store = open_store(project)?;
    for entry in store.remove(name, version)? {
        println!("removed {} {} {}", entry.name, entry.version, entry.digest);
    }
    Ok(Outcome::Success)
}

pub fn verify(project: &ProjectArg) -> anyhow::Result<Outcome> {
    let store = open_store(project)?;
    let mut failed = 0;
    for entry in &store.lock.entries {
        let what = format!("{} {} {}", entry.name, entry.version, entry.digest);
        match store.verify(entry) {
            Ok(Verified::Signed(key)) => println!("ok    {what} signed by {key}"),
            Ok(Verified::Unsigned) => println!("ok    {what} unsigned"),
            Err(e) => {
                failed += 1;
                println!("FAIL  {what}: {e}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} installed plugins failed verification",
            store.lock.entries.len()
        );
    }
    println!("{} installed plugins verified", store.lock.entries.len());
    Ok(Outcome::Success)
}

pub fn keygen(out: &Path) -> anyhow::Result<Outcome> {
    let key = SecretKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(out)
        .and_then(|mut file| file.write_all(key.to_file().as_bytes()))
        .with_context(|| format!("writing the secret key to {}", out.display()))?;
    println!("{}", key.public());
    eprintln!(
        "wrote the secret key to {} (keep it private); installers trust its signatures with\n  [plugins]\n  trusted_keys = [\"{}\"]\nin their {FILE_NAME}",
        out.display(),
        key.public()
    );
    Ok(Outcome::Success)
}

pub fn sign(file: &Path, key: &Path) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(key)
        .with_context(|| format!("reading the secret key {}", key.display()))?;
    let key = SecretKey::parse(&text).with_context(|| key.display().to_string())?;
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let digest = hex::encode(Sha256::digest(&wasm));
    let out = sig_path(file);
    std::fs::write(&out, key.sign(&digest).to_file())
        .with_context(|| format!("writing {}", out.display()))?;
    println!("signed sha256:{digest} with {}", key.public());
    println!("wrote {}", out.display());
    Ok(Outcome::Success)
}

fn world(entry: &Entry) -> &'static str {
    entry.world.kind().as_str()
}
