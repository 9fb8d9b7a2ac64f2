//! The figures' arithmetic and a run's outlook, case by case: no samples, one sample, ties,
//! skipped steps, people's time, groups, steps never rehearsed, decisions and rollbacks.

use super::*;
use crate::run::{Attempt, RunRecord};

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn all(seconds: &[u64]) -> Vec<Duration> {
    seconds.iter().copied().map(secs).collect()
}

/// The epoch plus `seconds`: the instants of these stories.
fn at(seconds: i64) -> Timestamp {
    chrono::DateTime::<chrono::Utc>::UNIX_EPOCH + chrono::Duration::seconds(seconds)
}

#[test]
fn percentiles_are_nearest_rank_samples_that_happened() {
    let ten = all(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(percentile(&ten, 50), secs(5));
    assert_eq!(percentile(&ten, 90), secs(9));
    assert_eq!(percentile(&ten, 100), secs(10));
    // ⌈0.9 · 11⌉ = 10th of eleven.
    let eleven = all(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!((percentile(&eleven, 50), percentile(&eleven, 90)), (secs(6), secs(10)));
    // Of two, the median is the shorter and the p90 the longer.
    assert_eq!((percentile(&all(&[3, 8]), 50), percentile(&all(&[3, 8]), 90)), (secs(3), secs(8)));
    assert_eq!(percentile(&[], 50), Duration::ZERO);
}

#[test]
fn a_spread_of_nothing_is_none_and_of_one_sample_is_that_sample() {
    assert_eq!(Spread::of(Vec::new()), None);
    let one = Spread::of(all(&[42])).unwrap();
    assert_eq!(one, Spread { samples: 1, median: secs(42), p90: secs(42), max: secs(42) });
    let unsorted = Spread::of(all(&[30, 10, 20, 10])).unwrap();
    assert_eq!(
        unsorted,
        Spread { samples: 4, median: secs(10), p90: secs(30), max: secs(30) },
        "samples are sorted first; ties count each"
    );
}

fn rehearsal(mode: RunMode, whole: i64, steps: &[(&str, Option<u64>)]) -> Rehearsal {
    Rehearsal {
        run_id: Uuid::now_v7(),
        mode,
        version: 1,
        started_at: at(0),
        finished_at: at(whole),
        steps: steps
            .iter()
            .map(|(id, took)| RehearsedStep { step_id: (*id).to_owned(), took: took.map(secs) })
            .collect(),
    }
}

#[test]
fn figures_count_runs_drills_steps_and_skips() {
    assert_eq!(Figures::new(&[]), Figures::default());
    let figures = Figures::new(&[
        rehearsal(RunMode::Drill, 600, &[("check", Some(10)), ("optional", None)]),
        rehearsal(RunMode::Live, 900, &[("check", Some(30)), ("optional", Some(50))]),
        rehearsal(RunMode::Drill, 700, &[("check", Some(20)), ("optional", None)]),
    ]);
    assert_eq!((figures.rehearsals, figures.drills), (3, 2));
    assert_eq!(
        figures.whole,
        Some(Spread { samples: 3, median: secs(700), p90: secs(900), max: secs(900) })
    );
    assert_eq!(figures.step("check").map(|s| (s.samples, s.median)), Some((3, secs(20))));
    assert_eq!(
        figures.steps["optional"],
        StepFigures { ran: Spread::of(all(&[50])), skipped: 2 },
        "a skipped step is no sample of how long it takes"
    );
    assert_eq!(figures.step("nowhere"), None);
}

const RUNBOOK: &str = r#"
name: failover
roles:
  approver: {}
steps:
  - id: check
    run: ["true"]
    read_only: true
  - id: go
    approval: { role: approver }
  - id: drain
    parallel:
      - id: drain_eu
        run: ["true"]
      - id: drain_us
        run: ["true"]
  - id: optional
    when: "false"
    run: ["true"]
  - id: promote
    run: ["true"]
    on_failure: pause
  - id: announce
    run: ["true"]
"#;

fn runbook() -> Runbook {
    crate::parse(RUNBOOK).runbook.expect("the test runbook is valid")
}

/// Rehearsed: check 10 s, go 120 s (people), drain 60 s, optional always skipped, promote
/// 30 s; `announce` is new and was never rehearsed.
fn figures() -> Figures {
    let steps: &[(&str, Option<u64>)] = &[
        ("check", Some(10)),
        ("go", Some(120)),
        ("drain", Some(60)),
        ("drain_eu", Some(60)),
        ("drain_us", Some(5)),
        ("optional", None),
        ("promote", Some(30)),
    ];
    Figures::new(&[rehearsal(RunMode::Drill, 240, steps), rehearsal(RunMode::Live, 250, steps)])
}

/// A live run of the runbook started at the epoch, every step pending.
fn snapshot() -> RunSnapshot {
    let runbook = runbook();
    let run = RunRecord {
        version: 1,
        created_at: at(0),
        updated_at: at(0),
        ..RunRecord::would_start(&runbook.name, &crate::run::Actor::user("carol"))
    };
    let mut steps = Vec::new();
    for (position, step) in runbook.steps.iter().enumerate() {
        steps.push(StepState::pending(&step.id, Phase::Main, position as u32));
        for (index, branch) in step.branches().iter().enumerate() {
            steps.push(StepState::child(&branch.id, &step.id, Phase::Main, index));
        }
    }
    RunSnapshot::begun(run, steps, vec![])
}

fn set(snapshot: &mut RunSnapshot, id: &str, status: StepStatus, started: Option<i64>) {
    let state = snapshot.steps.iter_mut().find(|s| s.step_id == id).unwrap();
    state.status = status;
    state.started_at = started.map(at);
}

fn expected(outlook: &Option<Outlook>) -> (u64, Vec<String>) {
    let expected = outlook.as_ref().unwrap().expected.as_ref().unwrap();
    (expected.remaining.as_secs(), expected.never_rehearsed.clone())
}

fn past_median(outlook: &Option<Outlook>) -> Vec<String> {
    outlook.as_ref().unwrap().expected.as_ref().unwrap().past_median.clone()
}

#[test]
fn a_run_not_started_expects_every_rehearsed_median_and_names_what_was_never_rehearsed() {
    let outlook = figures().outlook(&runbook(), &snapshot(), at(0));
    // check 10 + go 120 + drain 60 (the group as a whole, not its branches) + optional 0
    // (rehearsals always skipped it) + promote 30; announce unknown.
    assert_eq!(expected(&outlook), (220, vec!["announce".to_owned()]));
    assert_eq!(outlook.unwrap().expected.unwrap().rehearsals, 2);
}

#[test]
fn a_step_under_way_counts_what_is_left_of_its_median_and_past_it_is_named() {
    let mut run = snapshot();
    set(&mut run, "check", StepStatus::Succeeded, Some(0));
    // People have been looking at the gate for 100 of its usual 120 s.
    set(&mut run, "go", StepStatus::Waiting, Some(20));
    let outlook = figures().outlook(&runbook(), &run, at(120));
    assert_eq!(expected(&outlook).0, 20 + 60 + 30);
    assert!(outlook.as_ref().unwrap().slower.is_empty());

    assert_eq!(past_median(&outlook), Vec::<String>::new());

    // Past its median, a step still waiting adds nothing more and is named: the rest takes
    // at least what is left of the others.
    let outlook = figures().outlook(&runbook(), &run, at(20 + 121));
    assert_eq!(expected(&outlook).0, 60 + 30);
    assert_eq!(past_median(&outlook), ["go"]);
}

#[test]
fn a_step_past_the_longest_rehearsal_is_slower_than_any_and_one_within_it_is_not() {
    let mut run = snapshot();
    set(&mut run, "check", StepStatus::Succeeded, Some(0));
    set(&mut run, "go", StepStatus::Approved, Some(10));
    set(&mut run, "drain", StepStatus::Running, Some(100));
    set(&mut run, "drain_eu", StepStatus::Running, Some(100));
    set(&mut run, "drain_us", StepStatus::Running, Some(100));
    let slower = |now: i64| {
        let outlook = figures().outlook(&runbook(), &run, at(now)).unwrap();
        outlook.slower.iter().map(|s| (s.step_id.clone(), s.longest.as_secs())).collect::<Vec<_>>()
    };
    assert_eq!(slower(105), [], "exactly as long as the longest is not slower");
    assert_eq!(slower(106), [("drain_us".to_owned(), 5)], "a branch is measured on its own");
    assert_eq!(slower(160), [("drain_us".to_owned(), 5)]);
    // The page looks again once the group and its other branch outlast their 60 s.
    let outlook = figures().outlook(&runbook(), &run, at(106)).unwrap();
    assert_eq!(outlook.slower_from, Some(at(160) + chrono::Duration::milliseconds(1)));
    assert_eq!(
        slower(161),
        [("drain".to_owned(), 60), ("drain_eu".to_owned(), 60), ("drain_us".to_owned(), 5)]
    );
}

#[test]
fn a_retried_step_is_measured_from_its_first_attempt() {
    let mut run = snapshot();
    set(&mut run, "check", StepStatus::Running, Some(50));
    for (number, started) in [(1, 0), (2, 50)] {
        run.attempts.push(Attempt {
            step_id: "check".into(),
            number,
            started_at: Some(at(started)),
            ..Attempt::default()
        });
    }
    let outlook = figures().outlook(&runbook(), &run, at(11)).unwrap();
    assert_eq!(outlook.slower.len(), 1, "11 s since the first attempt, longest was 10 s");
    assert_eq!(outlook.slower[0].running_for, secs(11));
}

#[test]
fn a_step_awaiting_a_decision_counts_whole_as_if_retried() {
    let mut run = snapshot();
    for id in ["check", "go", "drain", "optional"] {
        set(&mut run, id, StepStatus::Succeeded, Some(0));
    }
    set(&mut run, "promote", StepStatus::Failed, Some(0));
    run.run.status = RunStatus::NeedsAttention;
    let outlook = figures().outlook(&runbook(), &run, at(1000));
    assert_eq!(expected(&outlook), (30, vec!["announce".to_owned()]));
}

#[test]
fn nothing_is_expected_of_an_ended_run_a_dry_run_a_rollback_or_without_rehearsals() {
    let mut ended = snapshot();
    ended.run.status = RunStatus::Succeeded;
    assert_eq!(figures().outlook(&runbook(), &ended, at(0)), None);
    let mut dry = snapshot();
    dry.run.mode = RunMode::DryRun;
    assert_eq!(figures().outlook(&runbook(), &dry, at(0)), None);
    assert_eq!(Figures::default().outlook(&runbook(), &snapshot(), at(0)), None);
    let mut rollback = snapshot();
    rollback.run.phase = Phase::Rollback;
    let outlook = figures().outlook(&runbook(), &rollback, at(0)).unwrap();
    assert_eq!(outlook.expected, None, "no succeeded run rehearsed a rollback");
}

#[test]
fn a_drill_expects_its_finish_like_a_live_run() {
    let mut drill = snapshot();
    drill.run.mode = RunMode::Drill;
    assert_eq!(expected(&figures().outlook(&runbook(), &drill, at(0))).0, 220);
}
