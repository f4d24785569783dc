//! Pipeline files written into a temp dir laid out like a project, for the config tests.

use std::collections::HashMap;
use std::env::VarError;
use std::path::PathBuf;

use tempfile::TempDir;
use weir::config::{ConfigError, LoadedPipeline, load_with_env};

/// A project dir with two plugin crates; the pipeline file is `pipelines/orders.toml`.
pub struct Project {
    pub dir: TempDir,
    pub file: PathBuf,
}

impl Project {
    pub fn new(toml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        for plugin in ["orders-transform", "orders-validator"] {
            let crate_dir = dir.path().join("plugins").join(plugin);
            std::fs::create_dir_all(&crate_dir).unwrap();
            std::fs::write(crate_dir.join("Cargo.toml"), "[package]\n").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        let file = dir.path().join("pipelines/orders.toml");
        std::fs::write(&file, toml).unwrap();
        Project { dir, file }
    }

    /// A `weir.toml` beside the pipeline that lets its paths use `dirs` too.
    pub fn allow(&self, dirs: &[&str]) {
        let dirs: Vec<String> = dirs.iter().map(|d| format!("{d:?}")).collect();
        let toml = format!("[paths]\nallow = [{}]\n", dirs.join(", "));
        std::fs::write(self.dir.path().join("pipelines/weir.toml"), toml).unwrap();
    }

    pub fn load(&self, vars: &[(&str, &str)]) -> Result<LoadedPipeline, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(&self.file, |name| {
            vars.get(name).cloned().ok_or(VarError::NotPresent)
        })
    }

    /// The error's text, with the temp dir shown as `TMP` so messages can be compared whole.
    pub fn error(&self, vars: &[(&str, &str)]) -> String {
        let error = self.load(vars).expect_err("the pipeline should not load");
        self.masked(&error.to_string())
    }

    pub fn masked(&self, text: &str) -> String {
        text.replace(&self.dir.path().display().to_string(), "TMP")
    }
}

/// A sink to end files whose test is about something else (`sinks` is required).
pub const SINK: &str = "[[sinks]]\nkind = \"parquet\"\nname = \"lake\"\npath = \"lake\"\n";

pub fn error_of(toml: &str) -> String {
    Project::new(toml).error(&[])
}
