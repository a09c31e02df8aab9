//! Running the iptables tools: `iptables-save` to read, `iptables-restore`
//! to write, for either address family.

mod save;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

pub use save::{SavedRule, SavedTable, Snapshot, parse_save};

use crate::rules::Family;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{binary} not found in PATH: install {package}")]
    Missing {
        binary: String,
        package: &'static str,
    },
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// The tools of one family, named after a flavour: `iptables`,
/// `iptables-nft` or `iptables-legacy` (and their ip6tables twins).
#[derive(Debug, Clone)]
pub struct FamilyTools {
    pub family: Family,
    pub save: String,
    pub restore: String,
}

impl FamilyTools {
    pub fn new(flavour: &str, family: Family) -> Self {
        let base = match family {
            Family::V4 => flavour.to_owned(),
            Family::V6 => flavour.replacen("iptables", "ip6tables", 1),
        };
        Self {
            family,
            save: format!("{base}-save"),
            restore: format!("{base}-restore"),
        }
    }

    /// Both tools found in PATH.
    pub fn available(&self) -> bool {
        self.require().is_ok()
    }

    /// Fails with the first tool missing from PATH, restore first since it
    /// is the one that matters most.
    pub fn require(&self) -> Result<(), ToolError> {
        for binary in [&self.restore, &self.save] {
            if find_in_path(binary).is_none() {
                return Err(ToolError::Missing {
                    binary: binary.clone(),
                    package: "iptables",
                });
            }
        }
        Ok(())
    }

    /// The current rules of every table.
    pub fn snapshot(&self) -> Result<Snapshot, ToolError> {
        let text = run(&mut Command::new(&self.save), None)?;
        Ok(parse_save(&text))
    }

    /// Feeds `input` to iptables-restore. `noflush` keeps what the input does
    /// not mention; `test_only` parses and checks without committing.
    pub fn restore(&self, input: &str, noflush: bool, test_only: bool) -> Result<(), ToolError> {
        let mut cmd = Command::new(&self.restore);
        cmd.arg("-w");
        if noflush {
            cmd.arg("--noflush");
        }
        if test_only {
            cmd.arg("--test");
        }
        run(&mut cmd, Some(input)).map(|_| ())
    }
}

/// Both families' tools.
#[derive(Debug, Clone)]
pub struct Tools {
    pub v4: FamilyTools,
    pub v6: FamilyTools,
}

impl Tools {
    /// `flavour` is `--force-iptables-binary`; by default the plain names
    /// from PATH are used.
    pub fn new(flavour: Option<&str>) -> Self {
        let flavour = flavour.unwrap_or("iptables");
        Self {
            v4: FamilyTools::new(flavour, Family::V4),
            v6: FamilyTools::new(flavour, Family::V6),
        }
    }

    pub fn family(&self, family: Family) -> &FamilyTools {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

pub fn find_in_path(binary: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

/// Runs a command to completion, returning stdout; a non-zero exit is an
/// error carrying stderr.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, ToolError> {
    let command = describe(cmd);
    tracing::debug!(%command, "running");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let spawn_error = |source| ToolError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_error)?;
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        return Err(ToolError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
