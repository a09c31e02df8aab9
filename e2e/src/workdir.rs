//! Temporary directories for bootstraps, config files and process logs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::unique;

/// A directory removed on drop, except when the dropping thread is panicking
/// (a failing test): then it is kept and its path printed, so the logs inside
/// can be read after the failure.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `$STRAIT_E2E_TMP/<label>-<pid>-<n>` (default base: the system
    /// temporary directory joined with `strait-e2e`).
    pub fn new(label: &str) -> Result<Self> {
        let base = std::env::var_os("STRAIT_E2E_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("strait-e2e"));
        let path = base.join(format!("{label}-{}-{}", unique::pid(), unique::next()));
        if path.exists() {
            // A previous process with the same pid left it behind.
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns the full path.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let file = self.path.join(name);
        std::fs::write(&file, contents).with_context(|| format!("writing {}", file.display()))?;
        Ok(file)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("strait-e2e: keeping {} for inspection", self.path.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("strait-e2e: cannot remove {}: {e}", self.path.display());
        }
    }
}
