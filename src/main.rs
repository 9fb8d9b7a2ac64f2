//! The `steady` binary: command-line parsing and wiring, nothing else.
//!
//! Each subcommand lives in its own module and returns the process's exit code:
//! 0 when all went well, 1 when a runbook or run failed, 2 for bad usage or bad input.

mod accounts;
mod answer;
mod app;
mod audit;
mod backup;
mod inspect;
mod logs;
mod plan;
mod publish;
mod report;
mod run;
mod runbook_tests;
mod runbooks;
mod serve;
mod terminal;
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
    /// Serve the web API and drive runs: the main job.
    Serve(serve::Args),
    /// Check runbook files or folders: every error with its line and column, and lint warnings.
    Validate(validate::Args),
    /// Render a runbook with its parameters as the procedure it would run. Touches nothing.
    Plan(plan::Args),
    /// Run runbook tests offline: every case through the engine, effects stubbed.
    Test(runbook_tests::Args),
    /// Store runbooks as new versions when their content changed.
    Publish(publish::Args),
    /// Run a runbook in this terminal, recorded in the database.
    Run(run::RunArgs),
    /// List runs, newest first.
    Runs(inspect::RunsArgs),
    /// One run: steps, attempts, gates, outputs.
    Show(inspect::ShowArgs),
    /// Take over a run whose driver stopped or died, and drive it here.
    Resume(run::ResumeArgs),
    /// Answer a run that needs attention: retry, skip, rollback or abort.
    Decide(answer::DecideArgs),
    /// Approve a gate.
    Approve(answer::GateArgs),
    /// Reject a gate.
    Reject(answer::GateArgs),
    /// Mark a manual step done.
    Complete(answer::GateArgs),
    /// Mark a manual step failed.
    Fail(answer::GateArgs),
    /// Give run roles to people (`ROLE=PERSON`), or take them away.
    Assign(answer::AssignArgs),
    /// Hand command of a run to another person.
    Commander(answer::CommanderArgs),
    /// End a run that has not finished.
    Cancel(answer::CancelArgs),
    /// Take command of a run an alert proposed: it starts live, driven in this terminal.
    Take(run::TakeArgs),
    /// Dismiss a run an alert proposed, saying why.
    Dismiss(answer::DismissArgs),
    /// Verify or export the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Write a consistent, verified copy of the database to a new file, while Steady runs.
    Backup(backup::Args),
    /// Apply database migrations.
    Migrate {
        #[command(flatten)]
        db: app::DbArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Test(args) => runbook_tests::run(args),
        command => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => {
                // Steady adopts what its steps leave behind (daemons that left the step's
                // process group), so that a step's end kills everything it started. Where the
                // system refuses, killing the step's group is still done.
                let _ = steady_engine::runner::adopt_orphans();
                // This process holds secrets in its environment: other processes of its user
                // (a step among them) may not read its memory or `/proc/<pid>/environ`.
                let _ = nix::sys::prctl::set_dumpable(false);
                runtime.block_on(database_command(command))
            }
            Err(error) => Err(error.into()),
        },
    };
    match result {
        Ok(code) => code,
        // `steady audit export | head`: the reader has what it wanted.
        Err(error) if terminal::broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            report::error(&format!("{error:#}"));
            ExitCode::from(2)
        }
    }
}

async fn database_command(command: Command) -> anyhow::Result<ExitCode> {
    use answer::Answer;
    match command {
        Command::Validate(_) | Command::Plan(_) | Command::Test(_) => {
            unreachable!("offline commands run without a runtime")
        }
        Command::Serve(args) => serve::run(args).await,
        Command::User(command) => accounts::user(command).await,
        Command::Token(command) => accounts::token(command).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Runs(args) => inspect::runs(args).await,
        Command::Show(args) => inspect::show(args).await,
        Command::Resume(args) => run::resume(args).await,
        Command::Take(args) => run::take(args).await,
        Command::Dismiss(args) => answer::dismiss(args).await,
        Command::Decide(args) => answer::decide(args).await,
        Command::Approve(args) => answer::answer(args, Answer::Approve).await,
        Command::Reject(args) => answer::answer(args, Answer::Reject).await,
        Command::Complete(args) => answer::answer(args, Answer::Complete).await,
        Command::Fail(args) => answer::answer(args, Answer::Fail).await,
        Command::Assign(args) => answer::assign(args).await,
        Command::Commander(args) => answer::hand_over(args).await,
        Command::Cancel(args) => answer::cancel(args).await,
        Command::Audit(command) => audit::run(command).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Migrate { db } => {
            app::App::open(&db).await?;
            println!("{} is up to date", db.db);
            Ok(ExitCode::SUCCESS)
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
