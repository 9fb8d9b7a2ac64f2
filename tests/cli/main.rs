//! End-to-end tests of the `steady` binary: the real program, run in a scratch folder, as a
//! runbook author runs it.
//!
//! - `validate`: `steady validate` over files and folders, exit codes and messages.
//! - `plan`: `steady plan` of every shipped runbook, parameters, names and JSON.
//! - `isolation`: a step's clean environment, refused starts, daemons that die with the step.
//! - `leaks`: the leak scanner — no secret reaches anything Steady writes.

mod accounts;
mod backup;
mod crash;
mod isolation;
mod leaks;
mod plan;
mod run;
mod serve;
mod test;
mod validate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root, where `runbooks/` lives.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch folder for one test, removed and made anew each time.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steady-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Writes a runbook file into a scratch folder.
pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write runbook file");
}

/// What one run of `steady` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `steady` with `args` in `dir`, with no `STEADY_*` settings inherited.
pub fn steady(dir: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steady"));
    command.args(args).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("STEADY_") {
            command.env_remove(key);
        }
    }
    let Output { status, stdout, stderr } = command.output().expect("steady runs");
    Run {
        code: status.code().expect("steady exits rather than being killed"),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}
