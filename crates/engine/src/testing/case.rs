//! Running a case: the real engine on a memory store, with the case's stubs as the world and
//! its people answering gates, manual steps and decisions, until nothing more can happen;
//! then what the run did is held against `expect`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use crate::clock::{Clock, VirtualClock};
use crate::engine::{Engine, EngineConfig, Quiet, StartRun};
use crate::machine;
use crate::plan::{Action, Rendered};
use crate::run::{Actor, Assignment, RunSnapshot, RunStatus, StepStatus, Timestamp};
use crate::runbook::Runbook;
use crate::runner::Stop;
use crate::store::Runbooks as _;
use crate::store::memory::MemoryStore;

use super::people::People;
use super::stubs::Stubs;
use super::{Case, TestFile};

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    /// The first difference between what the case expects and what the run did, or why the
    /// case could not run; `None` when it passed.
    pub failure: Option<String>,
    /// The wall-clock time the case took to run (its virtual time is not counted).
    pub took: Duration,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// More answers than this and a case is taken to loop for ever (a gate retried after every
/// rejection, say): it fails instead of hanging.
const MAX_ROUNDS: usize = 1_000;

/// Where every case's virtual clock starts: a fixed time, so that a case reads the same on
/// every machine.
fn epoch() -> Timestamp {
    chrono::DateTime::from_timestamp(1_893_456_000, 0).unwrap_or_default()
}

/// Runs every case of `tests` against `runbook`, parsed from `source`, one after another on a
/// runtime of their own whose clock jumps ahead whenever all that is left is waiting. Must be
/// called outside any tokio runtime (from a blocking thread, in a server).
pub fn run(source: &str, runbook: &Runbook, tests: &TestFile) -> Vec<CaseReport> {
    run_within(source, runbook, tests, None)
}

/// [`run`], starting no case once `budget` of wall-clock time has passed: the cases left fail
/// as not run. What a server publishing a version gives an author's tests, so that a test
/// file of thousands of fan-outs cannot keep a thread busy for an hour.
pub fn run_within(
    source: &str,
    runbook: &Runbook,
    tests: &TestFile,
    budget: Option<Duration>,
) -> Vec<CaseReport> {
    let began = Instant::now();
    // Cases run real engines whose spans and events would read, in a server's log, like
    // real runs failing and rolling back: nothing of them is logged.
    let _quiet = tracing::dispatcher::set_default(&tracing::Dispatch::none());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let failure = Some(format!("cannot start a runtime for the tests: {error}"));
            return tests
                .cases
                .iter()
                .map(|case| CaseReport {
                    name: case.name.clone(),
                    failure: failure.clone(),
                    took: Duration::ZERO,
                })
                .collect();
        }
    };
    let runbook = Arc::new(runbook.clone());
    runtime.block_on(async {
        let mut reports = Vec::with_capacity(tests.cases.len());
        for case in &tests.cases {
            let started = Instant::now();
            if let Some(budget) = budget.filter(|budget| began.elapsed() > *budget) {
                let failure = format!(
                    "not run: the tests took longer than {} s in all; make them fewer or smaller",
                    budget.as_secs()
                );
                reports.push(CaseReport {
                    name: case.name.clone(),
                    failure: Some(failure),
                    took: Duration::ZERO,
                });
                continue;
            }
            let deadline = budget.map(|budget| began + budget);
            let failure = run_case(source, &runbook, case, deadline).await.err();
            reports.push(CaseReport { name: case.name.clone(), failure, took: started.elapsed() });
        }
        reports
    })
}

/// One case, to the end: `Err` holds the first difference.
async fn run_case(
    source: &str,
    runbook: &Arc<Runbook>,
    case: &Case,
    deadline: Option<Instant>,
) -> Result<(), String> {
    let clock = Arc::new(VirtualClock::starting_at(epoch()));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let stubs = Arc::new(Stubs::new(case));
    let secrets = runbook
        .secrets
        .iter()
        .map(|name| {
            let given = case.secrets.iter().find(|(secret, _)| secret == name);
            let value =
                given.map_or_else(|| format!("test-secret-{name}"), |(_, value)| value.clone());
            (name.clone(), value)
        })
        .collect();
    // Nothing outside a case cancels its run, and no other driver takes it over: the lease
    // is renewed rarely, so that hours of virtual waiting are not thousands of renewals.
    // Each renewal costs a wake-up of the runtime, so years of virtual delays would be
    // thousands of them: the lease outlasts any case.
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let config = EngineConfig {
        renew_every: century,
        ..EngineConfig::new("steady-test", century * 3, secrets)
    };
    let engine = Engine::with_effects(store.clone(), config, clock.clone(), stubs.clone());
    let commander = Actor::person(&case.commander);
    let version = store
        .publish(&runbook.name, source, &commander, clock.now())
        .await
        .map_err(|error| error.to_string())?;
    let version = match version {
        crate::store::Published::New(version) | crate::store::Published::Unchanged(version) => {
            version.version
        }
    };
    engine.remember(version, runbook.clone());
    let start = StartRun {
        runbook: runbook.name.clone(),
        version: Some(version),
        params: case.params.clone(),
        mode: case.mode,
        origin: crate::run::RunOrigin::Person,
        actor: commander.clone(),
        assignments: case
            .assign
            .iter()
            .map(|placed| Assignment {
                role: placed.value.0.clone(),
                person: Actor::person(&placed.value.1),
            })
            .collect(),
    };
    let run_id = engine
        .start_run(start)
        .await
        .map_err(|error| format!("the run does not start: {error}"))?;

    let mut people = People {
        engine: &engine,
        run_id,
        case,
        commander,
        answered: HashMap::new(),
        refusals: Vec::new(),
    };
    let (_stop, stop) = watch::channel(Stop::No);
    let mut stopped_at = None;
    for _ in 0..MAX_ROUNDS {
        if deadline.is_some_and(|deadline| Instant::now() > deadline) {
            return Err("stopped: the tests ran out of time before this case ended".to_owned());
        }
        engine
            .drive(run_id, &Quiet, stop.clone())
            .await
            .map_err(|error| format!("the engine failed: {error}"))?;
        if let Some(miss) = stubs.first_miss() {
            // A step that must never start but did is the regression to report, even when
            // the case then met an effect it does not stub.
            let snapshot = snapshot(&store, run_id).await?;
            let started = started_steps(&store, &snapshot);
            if let Some(id) = case.expect.not_run.iter().find(|id| started.contains(&id.value)) {
                return Err(format!("`{}` started, and the case says it must never", id.value));
            }
            return Err(miss);
        }
        let snapshot = snapshot(&store, run_id).await?;
        let acted = match snapshot.run.status {
            RunStatus::Running => true,
            RunStatus::Waiting => people.answer_waiting(runbook, &snapshot, clock.now()).await?,
            RunStatus::NeedsAttention => people.decide(runbook, &snapshot).await,
            _ => false,
        };
        if !acted {
            stopped_at = Some(snapshot);
            break;
        }
    }
    let Some(snapshot) = stopped_at else {
        return Err(format!(
            "the run did not settle after {MAX_ROUNDS} rounds of answers: the case's answers \
             make it go round for ever"
        ));
    };
    let started = started_steps(&store, &snapshot);
    expectations(runbook, case, &snapshot, &started, &people.refusals)?;
    unused_answers(case, &stubs, &people.answered)
}

/// The steps that started, in the order they first did: every step that left `pending` for
/// anything but `skipped` (by its `when`), except a dry run's group whose items all would run.
fn started_steps(store: &MemoryStore, snapshot: &RunSnapshot) -> Vec<String> {
    store
        .started(snapshot.run.id)
        .into_iter()
        .filter(|id| snapshot.step(id).is_some_and(|state| state.status != StepStatus::WouldRun))
        .collect()
}

/// Answers the case gives that the run never asked for: a list's later answers, an item's
/// own answer for an item that never ran, a decision never needed. Each is an assertion
/// about the story ("the commander aborts") that did not happen.
fn unused_answers(
    case: &Case,
    stubs: &Stubs,
    answered: &HashMap<String, u32>,
) -> Result<(), String> {
    let used = stubs.used.lock().unwrap_or_else(|e| e.into_inner());
    for placed in &case.given {
        let (id, given) = &placed.value;
        let times = used.get(id).copied().unwrap_or(0).max(answered.get(id).copied().unwrap_or(0));
        let count = given.answers.len();
        if given.in_order && (times as usize) < count {
            return Err(format!(
                "`{id}` is given {count} answers, and the run asked for {times}: the story \
                 the case tells did not happen"
            ));
        }
        if id.contains('[') && times == 0 {
            return Err(format!("`{id}` is given an answer, and it never ran"));
        }
    }
    for placed in &case.decisions {
        let (id, decisions) = &placed.value;
        let times = answered.get(&format!("decision {id}")).copied().unwrap_or(0) as usize;
        if let Some(unused) = decisions.get(times) {
            return Err(format!(
                "the decision `{unused}` at `{id}` was never needed: the run did not ask for it \
                 there"
            ));
        }
    }
    Ok(())
}

async fn snapshot(store: &MemoryStore, run_id: Uuid) -> Result<RunSnapshot, String> {
    use crate::store::Runs as _;
    match store.run(run_id).await {
        Ok(Some(snapshot)) => Ok(snapshot),
        Ok(None) => Err("the run is gone".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// The first difference between `case.expect` and what the run did.
fn expectations(
    runbook: &Runbook,
    case: &Case,
    snapshot: &RunSnapshot,
    started: &[String],
    refusals: &[String],
) -> Result<(), String> {
    let expect = &case.expect;
    let status = snapshot.run.status;
    if status != expect.status.value {
        let mut message = format!(
            "status: expected {}, got {status}{}",
            expect.status.value,
            situation(runbook, snapshot)
        );
        if let Some(refusal) = refusals.first() {
            message.push_str(&format!("; refused: {refusal}"));
        }
        return Err(message);
    }
    if let Some(ran) = &expect.ran {
        let own: Vec<&str> =
            runbook.steps.iter().chain(&runbook.rollback).map(|s| s.id.as_str()).collect();
        let actual: Vec<&str> =
            started.iter().map(String::as_str).filter(|id| own.contains(id)).collect();
        let expected: Vec<&str> = ran.value.iter().map(String::as_str).collect();
        if actual != expected {
            let place = actual.iter().zip(&expected).position(|(a, e)| a != e);
            let detail = match place {
                Some(index) => format!(
                    "step {} is `{}`, expected `{}`",
                    index + 1,
                    actual[index],
                    expected[index]
                ),
                None if actual.len() > expected.len() => {
                    format!("then `{}` ran too", actual[expected.len()])
                }
                None => format!("`{}` never ran", expected[actual.len()]),
            };
            return Err(format!(
                "ran: expected [{}], got [{}]: {detail}",
                expected.join(", "),
                actual.join(", ")
            ));
        }
    }
    for id in &expect.not_run {
        if started.iter().any(|started| started == &id.value) {
            return Err(format!("`{}` started, and the case says it must never", id.value));
        }
    }
    for placed in &expect.steps {
        let (id, expected) = &placed.value;
        let actual = snapshot.step(id).map_or(StepStatus::Pending, |state| state.status);
        if actual != *expected {
            let never = if snapshot.step(id).is_none() { " (it never started)" } else { "" };
            return Err(format!("steps: `{id}` expected {expected}, got {actual}{never}"));
        }
    }
    for placed in &expect.rendered {
        let (id, pattern) = &placed.value;
        let Some(Rendered::Action(action)) = snapshot.step(id).and_then(|s| s.rendered.as_ref())
        else {
            return Err(format!("rendered: `{id}` was never rendered: it did not start"));
        };
        let text = rendered_text(action);
        if !pattern.is_match(&text) {
            return Err(format!(
                "rendered: `{id}` rendered `{text}`, which does not match `{}`",
                pattern.as_str()
            ));
        }
    }
    Ok(())
}

/// Where the run stopped, for a status that differs: the steps waiting or needing a decision.
fn situation(runbook: &Runbook, snapshot: &RunSnapshot) -> String {
    match snapshot.run.status {
        RunStatus::Waiting => {
            let waiting: Vec<String> = snapshot
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Waiting)
                .map(|s| format!("`{}`", s.step_id))
                .collect();
            format!(" (waiting at {}, which the case does not answer further)", waiting.join(", "))
        }
        RunStatus::NeedsAttention => {
            let step = machine::attention_step(runbook, snapshot);
            let note = step
                .and_then(|step| snapshot.step(&step.id))
                .filter(|state| state.attempt == 0)
                .and_then(|state| state.note.clone());
            let error = step
                .and_then(|step| {
                    snapshot.attempts.iter().rev().find(|a| {
                        a.step_id == step.id || a.step_id.starts_with(&format!("{}[", step.id))
                    })
                })
                .and_then(|attempt| attempt.error.clone())
                .or(note)
                .map(|error| format!(": {error}"))
                .unwrap_or_default();
            let children: Vec<String> = step
                .map(|step| {
                    snapshot
                        .children(&step.id)
                        .filter(|c| c.status.is_failure() || c.status == StepStatus::Interrupted)
                        .map(|child| {
                            let error = snapshot
                                .attempts
                                .iter()
                                .rev()
                                .find(|a| a.step_id == child.step_id)
                                .and_then(|a| a.error.clone())
                                .map(|error| format!(": {error}"))
                                .unwrap_or_default();
                            format!("`{}` {}{error}", child.step_id, child.status)
                        })
                        .collect()
                })
                .unwrap_or_default();
            match step {
                Some(step) if !children.is_empty() => format!(
                    " (`{}` awaits a decision the case does not give: {}; decide about one with \
                     `\"{}\": retry` or `skip`, or about the whole step with `{}: abort`)",
                    step.id,
                    children.join(", "),
                    children_first_id(snapshot, &step.id),
                    step.id
                ),
                Some(step) => {
                    format!(" (`{}` awaits a decision the case does not give{error})", step.id)
                }
                None => String::new(),
            }
        }
        _ => {
            let failed: BTreeMap<&str, String> = snapshot
                .steps
                .iter()
                .filter(|s| s.status.is_failure() || s.status == StepStatus::Interrupted)
                .map(|s| {
                    let error = snapshot
                        .attempts
                        .iter()
                        .rev()
                        .find(|a| a.step_id == s.step_id)
                        .and_then(|a| a.error.clone());
                    let text = match error {
                        Some(error) => format!("`{}` {} ({error})", s.step_id, s.status),
                        None => format!("`{}` {}", s.step_id, s.status),
                    };
                    (s.step_id.as_str(), text)
                })
                .collect();
            if failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", failed.into_values().collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// The id of the first failed or interrupted child of `group`, for an example decision.
fn children_first_id(snapshot: &RunSnapshot, group: &str) -> String {
    snapshot
        .children(group)
        .find(|c| c.status.is_failure() || c.status == StepStatus::Interrupted)
        .map(|c| c.step_id.clone())
        .unwrap_or_default()
}

/// A rendered command or request as `rendered` patterns read it: an argv joined as a shell
/// would need it quoted (`'--replicas=0'`), a shell command as written, `METHOD URL`, each
/// header (`Name: value`) and the body on lines of their own for HTTP, a gate's prompt, a
/// manual step's instructions.
fn rendered_text(action: &Action) -> String {
    match action {
        Action::Run { argv } => {
            shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
        }
        Action::Shell { command } => command.clone(),
        Action::Http { method, url, headers, json, body } => {
            let mut text = format!("{method} {url}");
            for (name, value) in headers {
                text.push_str(&format!("\n{name}: {value}"));
            }
            if let Some(body) = json.as_ref().map(|json| json.to_string()).or_else(|| body.clone())
            {
                text.push_str(&format!("\n{body}"));
            }
            text
        }
        Action::Approval { prompt, .. } => prompt.clone().unwrap_or_default(),
        Action::Manual { instructions, .. } => instructions.clone(),
        other => other.to_value().to_string(),
    }
}
