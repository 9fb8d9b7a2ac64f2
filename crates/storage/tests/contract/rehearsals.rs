//! What rehearsals measured: a runbook's succeeded live runs and drills, newest first, each
//! with how long it and its main steps and branches took — and nothing of dry runs, failed or
//! active runs, other runbooks, rollbacks, fan-out items or failed steps.

use std::sync::Arc;

use chrono::Duration;
use steady_engine::audit::{AuditData, NewEvent, RunStarted};
use steady_engine::engine::now;
use steady_engine::rehearsal::{RehearsalQuery, RehearsedStep};
use steady_engine::run::*;
use steady_engine::store::{Published, Store};
use uuid::Uuid;

use super::actor;

/// A run of `runbook` created at `created` in `mode`, ended `status` after `took` seconds
/// (or left running), whose steps and attempts end as given.
async fn run_of(
    store: &Arc<dyn Store>,
    runbook: &str,
    (mode, status): (RunMode, RunStatus),
    (created, took): (Timestamp, i64),
    steps: Vec<StepState>,
    attempts: Vec<Attempt>,
) -> Uuid {
    let source = format!("name: {runbook}\nsteps:\n  - id: nap\n    sleep: 1s\n");
    let version = match store.publish(runbook, &source, &actor(), now()).await.unwrap() {
        Published::New(version) | Published::Unchanged(version) => version,
    };
    let id = Uuid::now_v7();
    let run = RunRecord {
        id,
        runbook: version.name,
        version: version.version,
        sha256: version.sha256,
        mode,
        origin: RunOrigin::Person,
        status: RunStatus::Running,
        phase: Phase::Main,
        started_by: actor(),
        commander: actor(),
        params: Default::default(),
        lock_key: None,
        created_at: created,
        updated_at: created,
        finished_at: None,
        lease: None,
        revision: 0,
        dry_run: None,
    };
    let started = RunStarted {
        runbook: run.runbook.clone(),
        version: run.version,
        sha256: run.sha256.clone(),
        mode,
        params: run.params.clone(),
        lock: None,
        assignments: vec![],
        origin: RunOrigin::Person,
    };
    let event = NewEvent::typed(&actor(), Some(id), AuditData::RunStarted(started));
    let pending = steps.iter().map(|s| StepState { status: StepStatus::Pending, ..s.clone() });
    store
        .create_run(NewRun { run, steps: pending.collect(), assignments: vec![], event })
        .await
        .unwrap();
    let ended = RunChange {
        status,
        phase: Phase::Main,
        started_by: actor(),
        commander: actor(),
        finished_at: (!status.is_active()).then(|| created + Duration::seconds(took)),
        lease: LeaseChange::Release,
    };
    let transition =
        Transition { revision: 0, run: Some(ended), steps, attempts, ..Default::default() };
    store.commit(id, transition).await.unwrap();
    id
}

/// A step `status` from `began` to `ended` seconds after `base`.
fn step(id: &str, status: StepStatus, span: Option<(i64, i64)>, base: Timestamp) -> StepState {
    let mut state = StepState::pending(id, Phase::Main, 0);
    state.status = status;
    state.started_at = span.map(|(began, _)| base + Duration::seconds(began));
    state.finished_at = span.map(|(_, ended)| base + Duration::seconds(ended));
    state
}

fn attempt(id: &str, number: u32, began: i64, base: Timestamp) -> Attempt {
    Attempt {
        step_id: id.into(),
        number,
        status: Some(StepStatus::Succeeded),
        started_at: Some(base + Duration::seconds(began)),
        finished_at: Some(base + Duration::seconds(began + 1)),
        ..Attempt::default()
    }
}

fn took(id: &str, seconds: Option<u64>) -> RehearsedStep {
    RehearsedStep { step_id: id.into(), took: seconds.map(std::time::Duration::from_secs) }
}

pub(crate) async fn rehearsals_are_the_succeeded_live_runs_and_drills_of_a_runbook(
    store: Arc<dyn Store>,
) {
    let base = now() - Duration::days(1);
    let t = |minutes: i64| base + Duration::minutes(minutes);
    let succeeded = |mode| (mode, RunStatus::Succeeded);

    // A live run: a step retried (measured from its first attempt), a gate (people's time),
    // a step skipped, a group with a branch and a fan-out's item, a step that failed and
    // was passed over, and a rollback step.
    let live = t(0);
    let mut branch = step("drain_eu", StepStatus::Succeeded, Some((80, 90)), live);
    branch.parent = Some("drain".into());
    let mut item = step("restart[0]", StepStatus::Succeeded, Some((95, 99)), live);
    item.parent = Some("restart".into());
    item.item = Some(serde_json::json!("web1"));
    let mut rollback = step("undo", StepStatus::Succeeded, Some((99, 100)), live);
    rollback.phase = Phase::Rollback;
    let live = run_of(
        &store,
        "failover",
        succeeded(RunMode::Live),
        (live, 100),
        vec![
            step("check", StepStatus::Succeeded, Some((5, 20)), live),
            step("go", StepStatus::Approved, Some((20, 80)), live),
            step("optional", StepStatus::Skipped, None, live),
            step("drain", StepStatus::Succeeded, Some((80, 95)), live),
            branch,
            item,
            step("announce", StepStatus::Failed, Some((99, 99)), live),
            rollback,
        ],
        vec![attempt("check", 1, 0, live), attempt("check", 2, 5, live)],
    )
    .await;
    let drill = run_of(
        &store,
        "failover",
        succeeded(RunMode::Drill),
        (t(10), 30),
        vec![step("check", StepStatus::Succeeded, Some((0, 7)), t(10))],
        vec![],
    )
    .await;
    // None of these is a rehearsal of `failover`.
    let check = || vec![step("check", StepStatus::Succeeded, Some((0, 1)), t(20))];
    run_of(&store, "failover", succeeded(RunMode::DryRun), (t(20), 5), check(), vec![]).await;
    let failed = (RunMode::Live, RunStatus::Failed);
    run_of(&store, "failover", failed, (t(21), 5), check(), vec![]).await;
    let running = (RunMode::Drill, RunStatus::Running);
    run_of(&store, "failover", running, (t(22), 0), check(), vec![]).await;
    run_of(&store, "other", succeeded(RunMode::Live), (t(23), 5), check(), vec![]).await;

    let rehearsals = store.rehearsals(&RehearsalQuery::of("failover")).await.unwrap();
    let ids: Vec<Uuid> = rehearsals.iter().map(|r| r.run_id).collect();
    assert_eq!(ids, [drill, live], "the succeeded live run and drill, newest first");
    assert_eq!(rehearsals[0].mode, RunMode::Drill);
    assert_eq!(
        (rehearsals[0].started_at, rehearsals[0].finished_at),
        (t(10), t(10) + Duration::seconds(30))
    );
    assert_eq!(rehearsals[0].steps, [took("check", Some(7))]);
    let mut steps = rehearsals[1].steps.clone();
    steps.sort_by(|a, b| a.step_id.cmp(&b.step_id));
    assert_eq!(
        steps,
        [
            took("check", Some(20)),
            took("drain", Some(15)),
            took("drain_eu", Some(10)),
            took("go", Some(60)),
            took("optional", None),
        ]
    );

    // Bounded, before an instant, and without steps for the catalogue.
    let newest = RehearsalQuery { limit: 1, ..RehearsalQuery::of("failover") };
    assert_eq!(store.rehearsals(&newest).await.unwrap().len(), 1);
    let before = RehearsalQuery { before: Some(t(10)), ..RehearsalQuery::of("failover") };
    let before = store.rehearsals(&before).await.unwrap();
    assert_eq!(before.iter().map(|r| r.run_id).collect::<Vec<_>>(), [live]);
    let whole = RehearsalQuery { steps: false, ..RehearsalQuery::of("failover") };
    let whole = store.rehearsals(&whole).await.unwrap();
    assert_eq!(whole.len(), 2);
    assert!(whole.iter().all(|r| r.steps.is_empty()));
    assert!(store.rehearsals(&RehearsalQuery::of("nothing")).await.unwrap().is_empty());
}
