//! Answering a run from the terminal: gates, manual steps and the commander's decisions, as
//! the local operator. Gates still refuse the person who started the run.

use std::process::ExitCode;

use steady_engine::engine::{EngineError, Then};
use steady_engine::run::{Completion, Decision, RoleChange, RunStatus, StepStatus};

use crate::app::{App, DbArgs, person};
use crate::report;

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The run's id, or a unique prefix of it.
    run: String,
    /// What to do with the failed or interrupted step.
    #[arg(value_parser = parse_decision)]
    decision: Decision,
    /// Retry or skip only this failed or interrupted branch or item of the group that awaits
    /// the decision (`restart[3]`); the group goes on with its other children.
    #[arg(long = "step")]
    step: Option<String>,
    /// Why: recorded with the decision in the audit log and shown in the step's history.
    #[arg(long = "reason", short = 'm')]
    reason: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

fn parse_decision(text: &str) -> Result<Decision, String> {
    text.parse().map_err(|_| "use retry, skip, rollback or abort".to_owned())
}

#[derive(Debug, clap::Args)]
pub struct GateArgs {
    /// The run's id, or a unique prefix of it.
    run: String,
    /// The step's id.
    step: String,
    /// Why: kept with the answer in the run and the audit log.
    #[arg(long, short = 'm')]
    comment: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    /// The run's id, or a unique prefix of it.
    run: String,
    /// `ROLE=PERSON`; repeat for more.
    #[arg(required = true, value_parser = crate::plan::parse_param)]
    assignments: Vec<(String, String)>,
    /// Take the roles away instead.
    #[arg(long)]
    remove: bool,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub struct CommanderArgs {
    /// The run's id, or a unique prefix of it.
    run: String,
    /// Who commands the run from now on (`alice` is the account `user:alice`).
    to: String,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run's id, or a unique prefix of it.
    run: String,
    /// Why the run is cancelled: recorded in the audit log and shown on the run page.
    #[arg(long = "reason", short = 'm')]
    reason: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub struct DismissArgs {
    /// The proposal's run id, or a unique prefix of it.
    run: String,
    /// Why no run is needed: recorded in the audit log and shown on the run page.
    #[arg(long = "reason", short = 'm', required = true)]
    reason: String,
    #[command(flatten)]
    db: DbArgs,
}

/// Which answer a `GateArgs` command gives.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Approve,
    Reject,
    Complete,
    Fail,
}

pub async fn decide(args: DecideArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    let reason = args.reason.as_deref().map(str::trim).filter(|reason| !reason.is_empty());
    let status = app
        .engine
        .decide_because(run_id, &app.actor, args.decision, args.step.as_deref(), reason)
        .await?;
    match &args.step {
        Some(step) => {
            println!("run {run_id}: {} of {step} taken; the run is {status}", args.decision)
        }
        None => println!("run {run_id}: {} taken; the run is {status}", args.decision),
    }
    if status == RunStatus::Running {
        println!("drive it here with `steady resume {run_id}`");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn answer(args: GateArgs, answer: Answer) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    let comment = args.comment.as_deref();
    let engine = &app.engine;
    let status = match answer {
        Answer::Approve => engine.approve(run_id, &args.step, &app.actor, comment).await?,
        Answer::Reject => engine.reject(run_id, &args.step, &app.actor, comment).await?,
        Answer::Complete => {
            engine
                .complete_manual(
                    run_id,
                    &args.step,
                    &app.actor,
                    Completion::Done,
                    comment,
                    Then::AnyDriver,
                )
                .await?
        }
        Answer::Fail => {
            engine
                .complete_manual(
                    run_id,
                    &args.step,
                    &app.actor,
                    Completion::Failed,
                    comment,
                    Then::AnyDriver,
                )
                .await?
        }
    };
    println!("step {}: {status}", args.step);
    if status != StepStatus::Waiting {
        println!("the run can go on: `steady resume {run_id}` drives it here");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn assign(args: AssignArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    for (role, name) in &args.assignments {
        let change = if args.remove { RoleChange::Unassign } else { RoleChange::Assign };
        app.engine.assign(run_id, &app.actor, role, &person(name), change).await?;
        let verb = if args.remove { "no longer holds" } else { "holds" };
        println!("{} {verb} `{role}` in run {run_id}", person(name));
    }
    Ok(ExitCode::SUCCESS)
}

/// Hands command of a run to another person: the way on when the commander is unreachable,
/// since nobody else may command a run over the web.
pub async fn hand_over(args: CommanderArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    let to = person(&args.to);
    app.engine.transfer_command(run_id, &app.actor, &to).await?;
    println!("{to} commands run {run_id} now");
    Ok(ExitCode::SUCCESS)
}

/// Ends a run that has not finished, as the local operator. A step that is running is stopped
/// by whichever process drives it, within a second; gates and manual steps stop waiting.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    let reason = args.reason.as_deref().map(str::trim).filter(|reason| !reason.is_empty());
    match app.engine.cancel_because(run_id, &app.actor, reason).await {
        Ok(()) => {
            println!("run {run_id}: cancelled");
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::RunNotActive { status: RunStatus::Proposed }) => {
            report::error(&format!(
                "run {run_id} is a proposal, which runs nothing: dismiss it with `steady dismiss {run_id} -m REASON`"
            ));
            Ok(ExitCode::from(2))
        }
        Err(EngineError::RunNotActive { status }) => {
            report::error(&format!(
                "run {run_id} is {status}: only a run that has not finished can be cancelled"
            ));
            Ok(ExitCode::from(2))
        }
        Err(error) => Err(error.into()),
    }
}

/// `steady dismiss RUN -m REASON`: a proposal an alert made needs no run.
pub async fn dismiss(args: DismissArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    match app.engine.dismiss(run_id, &app.actor, &args.reason).await {
        Ok(()) => {
            println!("run {run_id}: dismissed");
            Ok(ExitCode::SUCCESS)
        }
        Err(EngineError::NotProposed { status }) => {
            report::error(&format!(
                "run {run_id} is {status}: only a proposal (status proposed) can be dismissed"
            ));
            Ok(ExitCode::from(1))
        }
        Err(EngineError::ReasonRequired) => {
            report::error("say why the proposal is dismissed: -m REASON");
            Ok(ExitCode::from(2))
        }
        Err(error) => Err(error.into()),
    }
}
