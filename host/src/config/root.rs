//! Where a pipeline's local paths may point. A pipeline file names files it reads (the
//! source, a SQLite database) and directories it writes (sinks, quarantine, state); none may
//! resolve outside the project's root, so a pipeline cannot be pointed at `../../etc` or
//! `/home/someone` by an edit or an environment variable.
//!
//! The root is the directory of `weir.toml` (`[paths] root` moves it, relative to that
//! file; `[paths] allow` adds directories), or without a project file, the pipeline file's
//! directory. The check is lexical, after `.` and `..` are resolved: a symlink inside the
//! root is followed wherever it points, as its owner made it.
//!
//! Plugin paths are not checked: a plugin is code, pinned by hash and run in a sandbox.

use std::path::{Component, Path, PathBuf};

use super::project::{FILE_NAME, Project};

pub struct Roots {
    dirs: Vec<PathBuf>,
    /// Where the roots come from, for the error message.
    origin: String,
}

impl Roots {
    pub fn of(base_dir: &Path, project: Option<&Project>) -> Roots {
        let Some(project) = project else {
            return Roots {
                dirs: vec![absolute(base_dir)],
                origin: format!(
                    "the pipeline file's directory; a {FILE_NAME} with [paths] root or allow \
                     widens it"
                ),
            };
        };
        let paths = &project.settings.paths;
        let root = project.dir().join(paths.root.as_deref().unwrap_or("."));
        let dirs = std::iter::once(root)
            .chain(paths.allow.iter().map(|dir| project.dir().join(dir)))
            .map(|dir| absolute(&dir))
            .collect();
        Roots {
            dirs,
            origin: format!(
                "the project's root, set by [paths] root and allow in {}",
                project.file.display()
            ),
        }
    }

    /// `written` (as in the pipeline file, relative to `base_dir`) if it stays under a
    /// root; else what is wrong.
    pub fn check(&self, written: &str, base_dir: &Path) -> Result<(), String> {
        let resolved = normalize(&absolute(base_dir).join(written));
        if self.dirs.iter().any(|root| resolved.starts_with(root)) {
            return Ok(());
        }
        let roots: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        Err(format!(
            "`{written}` resolves to {}, outside {} ({}); local paths must stay under it",
            resolved.display(),
            roots.join(" and "),
            self.origin,
        ))
    }
}

/// The directory made absolute and free of symlinks when it exists (so that a root reached
/// through a symlink, like a temporary directory, compares equal), else only absolute.
fn absolute(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| normalize(&std::env::current_dir().unwrap_or_default().join(dir)))
}

/// `.` and `..` resolved without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("pipelines");
        std::fs::create_dir(&base).unwrap();
        let roots = Roots::of(&base, None);
        for inside in ["data/*.csv", "./out/../out/w.db", ".weir/state"] {
            roots.check(inside, &base).unwrap();
        }
        let inside_absolute = base.join("data").display().to_string();
        roots.check(&inside_absolute, &base).unwrap();
        for outside in ["../../etc", "../warehouse", "/etc/passwd", "data/../../x"] {
            let error = roots.check(outside, &base).unwrap_err();
            assert!(error.contains("(the pipeline file's directory;"), "{error}");
        }
    }
}
