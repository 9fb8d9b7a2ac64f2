//! The `steady` binary: command-line parsing and wiring, nothing else.
//!
//! Each subcommand lives in its own module and returns the process's exit code:
//! 0 when all went well, 1 when a runbook or run failed, 2 for bad usage or bad input.

mod plan;
mod report;
mod runbooks;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runbook execution with approval gates: versioned, rehearsed recovery procedures.
#[derive(Debug, Parser)]
#[command(name = "steady", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check runbook files or folders: every error with its line and column, and lint warnings.
    Validate(validate::Args),
    /// Render a runbook with its parameters as the procedure it would run. Touches nothing.
    Plan(plan::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Plan(args) => plan::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            report::error(&format!("{error:#}"));
            ExitCode::from(2)
        }
    }
}

/// Where `steady` finds runbooks by name, shared by the commands that take one.
#[derive(Debug, clap::Args)]
struct RunbooksDir {
    /// Folder of runbook files, searched when a runbook is named rather than given as a path.
    #[arg(long = "runbooks", env = "STEADY_RUNBOOKS", default_value = "runbooks")]
    path: PathBuf,
}
