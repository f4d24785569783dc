//! Python plugins for the tests: built for real with componentize-py (never skipped: without
//! Python the tests fail saying what to install).

use std::path::{Path, PathBuf};
use std::process::Command;

use weir::plugin::build::{BuildOptions, build};

/// Fail (never skip) when Python is missing, saying what to install.
pub fn require_python() {
    let ok = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests build Python plugins: install Python 3 with venv and pip (Debian: `apt-get install python3 python3-venv python3-pip`)"
    );
}

pub fn build_python(dir: &Path) -> PathBuf {
    require_python();
    let options = BuildOptions {
        quiet: true,
        ..Default::default()
    };
    build(dir, &options)
        .unwrap_or_else(|e| panic!("building {}: {e}", dir.display()))
        .path
}
