//! `steady run` and `steady resume`: drive a run in this terminal. A first Ctrl-C finishes
//! the step that is running and stops, leaving the run resumable; a second interrupts it.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use steady_engine::engine::{DriveEnd, EngineError, StartRun, Then};
use steady_engine::plan::{Action, Rendered};
use steady_engine::policy;
use steady_engine::run::{Answer, Assignment, Completion, RunMode, RunStatus, StepStatus};
use steady_engine::runbook::StepKind;
use steady_engine::runner::Stop;
use steady_engine::store::Published;
use tokio::sync::watch;
use uuid::Uuid;

use crate::app::{App, DbArgs, person};
use crate::report;
use crate::runbooks;
use crate::terminal::{TerminalObserver, run_badge, say};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A runbook file, or the name of a runbook in the runbooks folder.
    runbook: String,
    /// A parameter value; repeat for each parameter.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = crate::plan::parse_param)]
    params: Vec<(String, String)>,
    /// Execute only read-only steps and checks; record everything else as it would run.
    #[arg(long, conflicts_with = "drill")]
    dry_run: bool,
    /// Execute for real, labelled a drill: a rehearsal.
    #[arg(long)]
    drill: bool,
    /// Give a run role to a person (`ROLE=NAME`); roles given to nobody go to you.
    #[arg(long = "assign", value_name = "ROLE=PERSON", value_parser = crate::plan::parse_param)]
    assign: Vec<(String, String)>,
    #[command(flatten)]
    runbooks: crate::RunbooksDir,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run's id, or a unique prefix of it.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    run: Option<String>,
    /// Take over every run that needs a driver: running with no live lease (its driver
    /// stopped or died), or waiting at a gate past its deadline.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let file = runbooks::find(&args.runbook, &args.runbooks.path)?;
    let display = file.display_path();
    let Some(runbook) = &file.parsed.runbook else {
        report::diagnostics(&display, &file.source, &file.parsed.diagnostics);
        return Ok(ExitCode::from(1));
    };
    let app = App::open(&args.db).await?;
    match app.engine.publish(&file.source, &app.actor).await? {
        Published::New(version) => {
            println!("published {} version {}", version.name, version.version)
        }
        Published::Unchanged(_) => {}
    }
    let assignments = roles_given(&args.assign, runbook, &app);
    let mode = if args.dry_run {
        RunMode::DryRun
    } else if args.drill {
        RunMode::Drill
    } else {
        RunMode::Live
    };
    let start = StartRun {
        origin: steady_engine::run::RunOrigin::Person,
        runbook: runbook.name.clone(),
        version: None,
        params: args.params.clone(),
        mode,
        actor: app.actor.clone(),
        assignments,
    };
    let run_id = match app.engine.start_run_here(start).await {
        Ok(id) => id,
        Err(EngineError::Params(errors)) => {
            for error in errors {
                report::error(&error.to_string());
            }
            return Ok(ExitCode::from(2));
        }
        Err(EngineError::Secrets(error)) => {
            report::error(&error.to_string());
            return Ok(ExitCode::from(2));
        }
        Err(EngineError::LockHeld { key, run_id }) => {
            report::error(&format!(
                "lock `{key}` is held by active run {run_id}: finish or cancel it first"
            ));
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(error.into()),
    };
    say!("run {run_id}: {} ({mode}) as {}", runbook.name, app.actor);
    drive_here(&app, run_id, Taken::AtStart).await
}

#[derive(Debug, clap::Args)]
pub struct TakeArgs {
    /// The proposal's run id, or a unique prefix of it.
    run: String,
    /// Give a run role to a person (`ROLE=NAME`); roles given to nobody go to you.
    #[arg(long = "assign", value_name = "ROLE=PERSON", value_parser = crate::plan::parse_param)]
    assign: Vec<(String, String)>,
    #[command(flatten)]
    db: DbArgs,
}

/// `steady take RUN`: takes command of a proposal an alert made, which starts live with you as
/// its commander, and drives it in this terminal like `steady run`.
pub async fn take(args: TakeArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = app.resolve_run(&args.run).await?;
    let snapshot = app.store.run(run_id).await?.context("the run vanished")?;
    let runbook = app.engine.runbook(&snapshot.run.runbook, snapshot.run.version).await?;
    let assignments = roles_given(&args.assign, &runbook, &app);
    match app.engine.take_proposal(run_id, &app.actor, assignments, Then::Here).await {
        Ok(()) => {}
        Err(EngineError::NotProposed { status }) => {
            report::error(&format!(
                "run {run_id} is {status}: only a proposal (status proposed) can be taken"
            ));
            return Ok(ExitCode::from(1));
        }
        Err(EngineError::LockHeld { key, run_id: holder }) => {
            report::error(&format!(
                "lock `{key}` is held by active run {holder}: finish or cancel it first"
            ));
            return Ok(ExitCode::from(1));
        }
        Err(
            error @ (EngineError::Secrets(_)
            | EngineError::NoSuchRole(_)
            | EngineError::NoSuchPerson(_)),
        ) => {
            report::error(&error.to_string());
            return Ok(ExitCode::from(2));
        }
        Err(error) => return Err(error.into()),
    }
    say!("run {run_id}: {} (live) taken by {}; it runs now", runbook.name, app.actor);
    drive_here(&app, run_id, Taken::AtStart).await
}

/// The roles given with `--assign ROLE=PERSON`, and every other role of the runbook to the
/// person at this terminal, who runs it here.
fn roles_given(
    given: &[(String, String)],
    runbook: &steady_engine::runbook::Runbook,
    app: &App,
) -> Vec<Assignment> {
    let mut assignments: Vec<Assignment> = given
        .iter()
        .map(|(role, name)| Assignment { role: role.clone(), person: person(name) })
        .collect();
    for role in &runbook.roles {
        if !assignments.iter().any(|a| a.role == role.name) {
            assignments.push(Assignment { role: role.name.clone(), person: app.actor.clone() });
        }
    }
    assignments
}

pub async fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let runs = match &args.run {
        Some(run) => vec![app.resolve_run(run).await?],
        None => app.store.runs_needing_a_driver(steady_engine::engine::now()).await?,
    };
    if runs.is_empty() {
        say!("no run needs a driver");
    }
    let mut code = ExitCode::SUCCESS;
    for run_id in runs {
        if app.store.run_status(run_id).await? == Some(RunStatus::Proposed) {
            report::error(&format!(
                "run {run_id} is a proposal: nothing runs until someone takes command (`steady take {run_id}`)"
            ));
            code = ExitCode::from(1);
            continue;
        }
        say!("resuming run {run_id} as {}", app.engine.config().node);
        let outcome = drive_here(&app, run_id, Taken::PartWay).await?;
        if outcome != ExitCode::SUCCESS {
            code = outcome;
        }
    }
    Ok(code)
}

/// Where a run driven here stands when this terminal takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Nothing has run yet (`steady run`, `steady take`).
    AtStart,
    /// Some steps may have run under another driver (`steady resume`).
    PartWay,
}

/// Drives a run until it settles, answering at the terminal what this person may answer.
async fn drive_here(app: &App, run_id: Uuid, taken: Taken) -> anyhow::Result<ExitCode> {
    // Only the run's runbook is needed here: the driver reads the whole run itself.
    let record = app.store.run_record(run_id).await?.with_context(|| format!("no run {run_id}"))?;
    let runbook = app.engine.runbook(&record.runbook, record.version).await?;
    let observer = std::sync::Arc::new(TerminalObserver::new(&runbook));
    // The whole run is read only where it shows: a TTY, for a run some steps of which ran.
    if taken == Taken::PartWay
        && observer.live()
        && let Some(snapshot) = app.store.run(run_id).await?
    {
        observer.seed(&runbook, &snapshot.steps);
    }
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let interrupt = stop_tx.clone();
    let told = observer.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            told.notice("finishing the running step, then stopping; Ctrl-C again interrupts it");
            let _ = stop_tx.send(Stop::AfterStep);
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop_tx.send(Stop::Interrupt);
            }
        }
    });
    // A closed terminal (SIGHUP) or a `kill` (SIGTERM) must not leave the step's processes
    // running with nobody watching: interrupt the step, as a second Ctrl-C does, and record it.
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut hangup), Ok(mut terminate)) =
            (signal(SignalKind::hangup()), signal(SignalKind::terminate()))
        else {
            return;
        };
        tokio::select! {
            _ = hangup.recv() => {}
            _ = terminate.recv() => {}
        }
        let _ = interrupt.send(Stop::Interrupt);
    });
    loop {
        let end = loop {
            match app.engine.drive(run_id, &*observer, stop_rx.clone()).await {
                Err(EngineError::LeaseHeld { owner, until }) => {
                    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                    say!(
                        "run {run_id} is driven by {owner} until {until}; waiting for that lease to expire"
                    );
                    tokio::time::sleep(wait + std::time::Duration::from_millis(100)).await;
                }
                other => break other?,
            }
        };
        let status = match end {
            DriveEnd::Stopped => {
                // An interrupted step (or group) may have left the run needing a decision.
                let now = app.store.run(run_id).await?.map(|s| s.run.status);
                if now == Some(RunStatus::NeedsAttention) {
                    return Ok(settled(app, run_id, RunStatus::NeedsAttention).await);
                }
                say!(
                    "stopped driving run {run_id}; it is still running and can be resumed: steady resume {run_id}"
                );
                return Ok(ExitCode::SUCCESS);
            }
            DriveEnd::Settled(status) => status,
        };
        if status == RunStatus::Waiting && answer_here(app, run_id, &observer).await? {
            continue;
        }
        return Ok(settled(app, run_id, status).await);
    }
}

/// At a gate or manual step this person may answer, asks at the terminal. Returns whether
/// the run can go on.
async fn answer_here(app: &App, run_id: Uuid, observer: &TerminalObserver) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    let snapshot = app.store.run(run_id).await?.with_context(|| format!("no run {run_id}"))?;
    let runbook = app.engine.runbook(&snapshot.run.runbook, snapshot.run.version).await?;
    let Some(state) = snapshot.steps.iter().find(|s| s.status == StepStatus::Waiting) else {
        return Ok(false);
    };
    let Some(step) = runbook.find_step(&state.step_id) else {
        return Ok(false);
    };
    // What the step waits for in words, where the runbook wrote no prompt or instructions.
    let text = policy::waiting_for(&snapshot, step);
    let action = state.rendered.as_ref().and_then(Rendered::action);
    match &step.kind {
        StepKind::Approval(_) => {
            // Asked only of someone the engine would take an approval from.
            if policy::may_approve(&snapshot, step, &app.actor).is_err() {
                return Ok(false);
            }
            let _question = observer.asking();
            say!(
                "\ngate `{}`: {}",
                step.id,
                match action {
                    Some(Action::Approval { prompt: Some(prompt), .. }) => prompt,
                    _ => &text,
                }
            );
            let answer = ask("approve? [y]es / [n]o / anything else to leave it waiting: ")?;
            let comment = Some("answered at the terminal");
            let answer = match answer.as_str() {
                "y" | "yes" => Answer::Approve,
                "n" | "no" => Answer::Reject,
                _ => return Ok(false),
            };
            // Taken under this terminal's lease with the answer: it drives the run on next.
            let answered =
                app.engine.answer(run_id, &step.id, &app.actor, answer, comment, Then::Here).await;
            given_here(answered, step, observer)
        }
        StepKind::Manual(_) => {
            if policy::may_answer(&snapshot, step, &app.actor).is_err() {
                return Ok(false);
            }
            let _question = observer.asking();
            say!(
                "\nmanual step `{}`:\n{}",
                step.id,
                match action {
                    Some(Action::Manual { instructions, .. }) => instructions,
                    _ => &text,
                }
            );
            let answer = ask("[d]one / [f]ailed / anything else to leave it waiting: ")?;
            let completion = match answer.as_str() {
                "d" | "done" => Completion::Done,
                "f" | "failed" => Completion::Failed,
                _ => return Ok(false),
            };
            let note = ask("note (optional): ")?;
            let note = (!note.is_empty()).then_some(note.as_str());
            let completed = app
                .engine
                .complete_manual(run_id, &step.id, &app.actor, completion, note, Then::Here)
                .await;
            given_here(completed, step, observer)
        }
        _ => Ok(false),
    }
}

fn ask(question: &str) -> anyhow::Result<String> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        say!();
    }
    Ok(line.trim().to_lowercase())
}

/// Says where the run stands and what can be done next; the exit code follows the status.
/// Shows an answer given at this terminal; or, when someone answered elsewhere while the
/// question was open (or the run ended meanwhile), says so instead of failing: either way the
/// terminal goes on following the run.
fn given_here(
    answered: Result<StepStatus, EngineError>,
    step: &steady_engine::runbook::Step,
    observer: &TerminalObserver,
) -> anyhow::Result<bool> {
    match answered {
        // An approval below the gate's quorum leaves it waiting for more.
        Ok(StepStatus::Waiting) => observer.answered(
            step,
            StepStatus::Waiting,
            "your approval given here; it waits for more",
        ),
        Ok(status) => observer.answered(step, status, "answered here"),
        Err(EngineError::NotWaiting { status, .. }) => {
            say!("step `{}` was answered elsewhere meanwhile: it is {status}", step.id);
            observer.answered(step, status, "answered elsewhere");
        }
        Err(EngineError::RunNotActive { status }) => {
            say!("the run ended meanwhile: it is {status}")
        }
        Err(error) => return Err(error.into()),
    }
    Ok(true)
}

async fn settled(app: &App, run_id: Uuid, status: RunStatus) -> ExitCode {
    say!("run {run_id}: {}", run_badge(status));
    match status {
        RunStatus::Waiting => {
            say!(
                "it waits for people: answer with `steady approve|reject|complete|fail {run_id} STEP`, then `steady resume {run_id}`"
            );
        }
        RunStatus::NeedsAttention => {
            say!(
                "decide with `steady decide {run_id} retry|skip|rollback|abort`, then `steady resume {run_id}`"
            );
        }
        _ => {}
    }
    say!("steps, attempts and outputs are stored in {}: steady show {run_id}", app.db);
    match status {
        RunStatus::Succeeded | RunStatus::Waiting | RunStatus::Running => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
