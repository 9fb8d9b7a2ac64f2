//! Parallel branches and fan-out: two regions drained at once, a fleet restarted a few nodes at
//! a time, each branch and item durable on its own.

use std::time::Duration;

use steady_engine::engine::{Quiet, Then};
use steady_engine::run::{Completion, Decision, RunMode, RunStatus, StepStatus};
use steady_engine::runner::Stop;
use tokio::sync::watch;

use crate::*;

stories!(
    the_branches_of_a_group_run_at_the_same_time,
    a_fan_out_never_runs_more_items_at_once_than_its_concurrency,
    a_failed_item_stops_new_items_and_a_retry_runs_only_what_did_not_succeed,
    items_within_max_failures_let_the_fan_out_succeed,
    skipping_a_failed_item_resumes_the_fan_out_once_its_failures_are_within_the_limit,
    a_gate_before_a_fan_out_binds_every_item,
    a_manual_branch_waits_while_the_other_branch_runs,
    a_gate_branch_that_times_out_fails_its_group,
    after_a_crash_interrupted_items_wait_for_a_person_and_their_siblings_go_on,
    a_dry_run_renders_every_item_and_runs_none,
    cancelling_a_run_stops_every_running_item,
    interrupting_the_driver_leaves_the_fan_out_to_the_commander,
    a_skipped_group_skips_its_branches_and_a_skipped_fan_out_has_no_items,
    a_dry_run_cannot_list_items_that_come_from_a_step_it_did_not_run,
);

/// `(start, end)` in nanoseconds of each line pair `start <name> <ns>` / `end <name> <ns>`.
fn intervals(ledger: &str) -> BTreeMap<String, (u128, u128)> {
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    let mut found: BTreeMap<String, (u128, u128)> = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [edge, name, at] = parts.as_slice() {
            let at: u128 = at.parse().unwrap();
            let entry = found.entry((*name).to_owned()).or_default();
            if *edge == "start" {
                entry.0 = at;
            } else {
                entry.1 = at;
            }
        }
    }
    found
}

/// The most intervals that were open at one moment.
fn most_at_once(intervals: &BTreeMap<String, (u128, u128)>) -> usize {
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for (start, end) in intervals.values() {
        edges.push((*start, 1));
        edges.push((*end, -1));
    }
    // An end at the same instant as a start closes first.
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, change) in edges {
        open += change;
        most = most.max(open);
    }
    most as usize
}

const REGIONS: &str = r#"
name: regions
steps:
  - id: drain
    parallel:
      - id: drain_eu
        run: echo start eu $(date +%s%N) >> LEDGER; sleep 0.4; echo end eu $(date +%s%N) >> LEDGER
        read_only: true
        timeout: 10s
      - id: drain_us
        run: echo start us $(date +%s%N) >> LEDGER; sleep 0.4; echo end us $(date +%s%N) >> LEDGER
        read_only: true
        timeout: 10s
  - id: report
    run: ["echo", "{{ steps.drain_eu.status }} {{ steps.drain_us.status }}"]
    read_only: true
    timeout: 5s
"#;

async fn the_branches_of_a_group_run_at_the_same_time(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&REGIONS.replace("LEDGER", &ledger)).await;
    let run = h.start("regions", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);

    let drains = intervals(&ledger);
    let (eu, us) = (drains["eu"], drains["us"]);
    assert!(eu.0 < us.1 && us.0 < eu.1, "the two drains overlap in time: {drains:?}");
    let snapshot = h.snapshot(run).await;
    assert_eq!(snapshot.step("drain").unwrap().status, StepStatus::Succeeded);
    for branch in ["drain_eu", "drain_us"] {
        let state = snapshot.step(branch).unwrap();
        assert_eq!(state.parent.as_deref(), Some("drain"));
        assert_eq!(state.status, StepStatus::Succeeded);
    }
    // A later step reads each branch by its own id.
    let report = snapshot.last_attempt("report").unwrap();
    assert_eq!(report.stdout, "succeeded succeeded\n");
    h.verify_chain().await;
}

const FLEET: &str = r#"
name: fleet
params:
  hosts: { type: list, pattern: "^[a-z0-9]+$" }
steps:
  - id: restart
    for_each: "params.hosts"
    as: host
    concurrency: CONCURRENCY
    max_failures: MAX_FAILURES
    run: echo start {{ host }} $(date +%s%N) >> LEDGER; test ! -e FAIL_{{ host }}; status=$?; sleep 0.2; echo end {{ host }} $(date +%s%N) >> LEDGER; exit $status
    idempotent: true
    timeout: 10s
  - id: report
    run: ["echo", "{{ steps.restart.items | selectattr('status', 'eq', 'succeeded') | map(attribute='item') | join(',') }}"]
    read_only: true
    timeout: 5s
"#;

fn fleet(h: &Harness, concurrency: u32, max_failures: &str) -> String {
    FLEET
        .replace("LEDGER", &h.path("ledger"))
        .replace("FAIL_", &h.path("fail-"))
        .replace("CONCURRENCY", &concurrency.to_string())
        .replace("MAX_FAILURES", max_failures)
}

async fn a_fan_out_never_runs_more_items_at_once_than_its_concurrency(h: Harness) {
    h.publish(&fleet(&h, 3, "0")).await;
    let hosts = "web1,web2,web3,web4,web5,web6,web7,web8";
    let run = h.start("fleet", &[("hosts", hosts)], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);

    let ran = intervals(&h.path("ledger"));
    assert_eq!(ran.len(), 8, "every host was restarted once: {ran:?}");
    let most = most_at_once(&ran);
    assert!(most <= 3, "at most 3 hosts at once, saw {most}");
    assert!(most >= 2, "hosts really ran side by side, saw {most} at most");
    let snapshot = h.snapshot(run).await;
    let items: Vec<String> = snapshot
        .children("restart")
        .map(|item| format!("{}={}={}", item.step_id, item.item.as_ref().unwrap(), item.status))
        .collect();
    assert_eq!(items.len(), 8);
    assert_eq!(items[0], r#"restart[0]="web1"=succeeded"#);
    assert_eq!(items[7], r#"restart[7]="web8"=succeeded"#);
    assert_eq!(snapshot.last_attempt("report").unwrap().stdout, format!("{hosts}\n"));
    h.verify_chain().await;
}

async fn a_failed_item_stops_new_items_and_a_retry_runs_only_what_did_not_succeed(h: Harness) {
    h.publish(&fleet(&h, 2, "0")).await;
    std::fs::write(h.path("fail-b"), "").unwrap();
    let run = h.start("fleet", &[("hosts", "a,b,c,d,e,f")], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);

    let snapshot = h.snapshot(run).await;
    let status = |id: &str| snapshot.step(id).unwrap().status;
    assert_eq!(status("restart"), StepStatus::Failed);
    assert_eq!(status("restart[1]"), StepStatus::Failed, "host b failed");
    // Host a ran beside b and finished; no new host started once b had failed.
    assert_eq!(status("restart[0]"), StepStatus::Succeeded);
    let not_run = snapshot.children("restart").filter(|i| i.status == StepStatus::Pending).count();
    assert!(not_run >= 3, "no new host started after the failure ({not_run} not run)");
    assert!(
        snapshot.step("restart").unwrap().note.as_deref().unwrap().contains("1 of 6 items failed")
    );

    // The commander fixes host b and retries: what succeeded does not run again.
    std::fs::remove_file(h.path("fail-b")).unwrap();
    h.engine.decide(run, &commander(), Decision::Retry).await.unwrap();
    let retried = h.snapshot(run).await;
    assert_eq!(retried.step("restart").unwrap().note, None, "why it failed is history now");
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let ledger = std::fs::read_to_string(h.path("ledger")).unwrap();
    let starts =
        |host: &str| ledger.lines().filter(|l| l.starts_with(&format!("start {host} "))).count();
    assert_eq!(starts("a"), 1, "a succeeded the first time and never ran again");
    assert_eq!(starts("b"), 2, "b ran again, as the commander decided");
    for host in ["c", "d", "e", "f"] {
        assert_eq!(starts(host), 1, "{host} ran once");
    }
    assert_eq!(h.snapshot(run).await.last_attempt("report").unwrap().stdout, "a,b,c,d,e,f\n");
    h.verify_chain().await;
}

async fn items_within_max_failures_let_the_fan_out_succeed(h: Harness) {
    h.publish(&fleet(&h, 2, "\"25%\"")).await;
    std::fs::write(h.path("fail-c"), "").unwrap();
    let run = h.start("fleet", &[("hosts", "a,b,c,d")], &[]).await;
    // 25 % of 4 hosts is one: c may fail and the rest goes on.
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let snapshot = h.snapshot(run).await;
    assert_eq!(snapshot.step("restart[2]").unwrap().status, StepStatus::Failed);
    assert_eq!(snapshot.last_attempt("report").unwrap().stdout, "a,b,d\n");
}

async fn skipping_a_failed_item_resumes_the_fan_out_once_its_failures_are_within_the_limit(
    h: Harness,
) {
    h.publish(&fleet(&h, 2, "1")).await;
    for host in ["a", "b"] {
        std::fs::write(h.path(&format!("fail-{host}")), "").unwrap();
    }
    // a and b run side by side and both fail: one more than the one failure allowed.
    let run = h.start("fleet", &[("hosts", "a,b,c,d")], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(h.step_status(run, "restart").await, StepStatus::Failed);

    // Skipping a leaves one failure, within the limit: the fan-out goes on with c and d.
    let carol = commander();
    let skipped = h.engine.decide_because(run, &carol, Decision::Skip, Some("restart[0]"), None);
    assert_eq!(skipped.await.unwrap(), RunStatus::Running);
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(h.step_status(run, "restart[1]").await, StepStatus::Failed);
    assert_eq!(h.snapshot(run).await.last_attempt("report").unwrap().stdout, "c,d\n");
}

const GATED: &str = r#"
name: gated-fleet
roles:
  approver: { description: Signs off the restart }
params:
  hosts: { type: list, default: [web1, web2, web3] }
steps:
  - id: go
    approval: { role: approver }
  - id: restart
    for_each: "params.hosts"
    as: host
    concurrency: 2
    run: ["echo", "restarting", "{{ host }}"]
    idempotent: true
    timeout: 5s
"#;

async fn a_gate_before_a_fan_out_binds_every_item(h: Harness) {
    h.publish(GATED).await;
    let run = h.start("gated-fleet", &[], &[("approver", &alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    h.engine.approve(run, "go", &alice(), None).await.unwrap();

    let vote = h.snapshot(run).await.votes[0].clone();
    let bound: Vec<&String> = vote.bound.steps.keys().collect();
    assert_eq!(bound, ["restart[0]", "restart[1]", "restart[2]"], "every item is bound");
    let web2 = vote.bound.step("restart[1]").unwrap();
    assert!(web2.contains(r#""argv":["echo","restarting","web2"]"#), "{web2}");

    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let snapshot = h.snapshot(run).await;
    let outputs: Vec<&str> = (0..3)
        .map(|i| snapshot.last_attempt(&format!("restart[{i}]")).unwrap().stdout.as_str())
        .collect();
    assert_eq!(outputs, ["restarting web1\n", "restarting web2\n", "restarting web3\n"]);
}

const HANDOFF: &str = r#"
name: handoff
roles:
  ops_us: { description: US operations }
steps:
  - id: drain
    parallel:
      - id: drain_eu
        run: sleep 0.3; echo drained >> LEDGER
        read_only: true
        timeout: 10s
      - id: confirm_us
        manual: { role: ops_us, instructions: "Confirm US traffic is below 10 %." }
  - id: after
    run: ["true"]
    read_only: true
    timeout: 5s
"#;

async fn a_manual_branch_waits_while_the_other_branch_runs(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&HANDOFF.replace("LEDGER", &ledger)).await;
    let run = h.start("handoff", &[], &[("ops_us", &bob())]).await;
    // The run waits for Bob only once the EU drain, which ran meanwhile, has ended.
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    assert_eq!(count_lines(&ledger), 1, "the EU branch ran while the manual branch waited");
    assert_eq!(h.step_status(run, "drain_eu").await, StepStatus::Succeeded);
    assert_eq!(h.step_status(run, "confirm_us").await, StepStatus::Waiting);
    assert_eq!(h.step_status(run, "drain").await, StepStatus::Running);

    h.engine
        .complete_manual(run, "confirm_us", &bob(), Completion::Done, None, Then::AnyDriver)
        .await
        .unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(h.step_status(run, "after").await, StepStatus::Succeeded);
    h.verify_chain().await;
}

async fn a_gate_branch_that_times_out_fails_its_group(h: Harness) {
    h.publish(
        r#"
name: two-teams
roles:
  approver: { description: Signs off }
steps:
  - id: both
    parallel:
      - id: sign_off
        approval: { role: approver, timeout: 30m }
      - id: check
        run: ["true"]
        read_only: true
        timeout: 5s
"#,
    )
    .await;
    let run = h.start("two-teams", &[], &[("approver", &alice())]).await;
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    assert_eq!(h.step_status(run, "check").await, StepStatus::Succeeded);
    h.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    assert_eq!(h.step_status(run, "sign_off").await, StepStatus::TimedOut);
    assert_eq!(h.step_status(run, "both").await, StepStatus::Failed);
    // Retrying asks the gate again; the branch that succeeded does not run again.
    h.engine.decide(run, &commander(), Decision::Retry).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Waiting);
    h.engine.approve(run, "sign_off", &alice(), None).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let check_attempts =
        h.snapshot(run).await.attempts.iter().filter(|a| a.step_id == "check").count();
    assert_eq!(check_attempts, 1);
}

const RISKY_FLEET: &str = r#"
name: risky-fleet
params:
  hosts: { type: list, default: [a, b, c, d, e, f] }
steps:
  - id: migrate
    for_each: "params.hosts"
    concurrency: 3
    run: echo {{ item }} >> LEDGER; test -e RELEASE || sleep 30
    timeout: 60s
"#;

async fn after_a_crash_interrupted_items_wait_for_a_person_and_their_siblings_go_on(h: Harness) {
    let ledger = h.path("ledger");
    let release = h.path("release");
    h.publish(&RISKY_FLEET.replace("LEDGER", &ledger).replace("RELEASE", &release)).await;
    let run = h.start("risky-fleet", &[], &[]).await;

    // A driver starts three items and dies while they run.
    let doomed = h.another_node("doomed").await;
    let task = tokio::spawn(async move {
        let (_keep, stop) = watch::channel(Stop::No);
        let _ = doomed.engine.drive(run, &Quiet, stop).await;
    });
    while count_lines(&ledger) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    std::fs::write(&release, "").unwrap();
    h.clock.advance(Duration::from_millis(1200));

    // The next driver: the three that were running are not run again; the rest run.
    assert_eq!(h.drive(run).await, RunStatus::NeedsAttention);
    let snapshot = h.snapshot(run).await;
    let interrupted: Vec<&str> = snapshot
        .children("migrate")
        .filter(|item| item.status == StepStatus::Interrupted)
        .map(|item| item.step_id.as_str())
        .collect();
    assert_eq!(interrupted, ["migrate[0]", "migrate[1]", "migrate[2]"]);
    let succeeded = snapshot.children("migrate").filter(|i| i.status == StepStatus::Succeeded);
    assert_eq!(succeeded.count(), 3, "the siblings went on");
    assert_eq!(snapshot.step("migrate").unwrap().status, StepStatus::Interrupted);
    let lines = std::fs::read_to_string(&ledger).unwrap();
    for host in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(lines.lines().filter(|l| *l == host).count(), 1, "{host} ran exactly once");
    }

    // A person decides: the interrupted items run again, the others do not.
    h.engine.decide(run, &commander(), Decision::Retry).await.unwrap();
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let lines = std::fs::read_to_string(&ledger).unwrap();
    for (host, times) in [("a", 2), ("b", 2), ("c", 2), ("d", 1), ("e", 1), ("f", 1)] {
        assert_eq!(lines.lines().filter(|l| *l == host).count(), times, "{host}");
    }
    h.verify_chain().await;
}

async fn a_dry_run_renders_every_item_and_runs_none(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&RISKY_FLEET.replace("LEDGER", &ledger).replace("RELEASE", "/")).await;
    let run = h.start_in(RunMode::DryRun, "risky-fleet", &[("hosts", "x,y")], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(count_lines(&ledger), 0, "nothing ran");
    let snapshot = h.snapshot(run).await;
    for (id, host) in [("migrate[0]", "x"), ("migrate[1]", "y")] {
        let state = snapshot.step(id).unwrap();
        assert_eq!(state.status, StepStatus::WouldRun);
        let rendered = state.rendered.as_ref().unwrap().to_string();
        assert!(rendered.contains(&format!("echo {host} >>")), "{rendered}");
    }
}

async fn cancelling_a_run_stops_every_running_item(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&RISKY_FLEET.replace("LEDGER", &ledger).replace("RELEASE", &h.path("never"))).await;
    let run = h.start("risky-fleet", &[], &[]).await;
    let canceller = h.another_node("canceller").await;
    let cancel = async {
        while count_lines(&ledger) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        canceller.engine.cancel(run, &commander()).await.unwrap();
    };
    let started = std::time::Instant::now();
    let (status, ()) = tokio::join!(h.drive(run), cancel);
    assert_eq!(status, RunStatus::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10), "the running items were stopped");
    let snapshot = h.snapshot(run).await;
    let statuses: Vec<StepStatus> = snapshot.children("migrate").map(|i| i.status).collect();
    assert_eq!(statuses, [StepStatus::Cancelled; 6]);
    assert_eq!(snapshot.step("migrate").unwrap().status, StepStatus::Cancelled, "the fan-out too");
    assert_eq!(count_lines(&ledger), 3, "no new item started");
}

async fn interrupting_the_driver_leaves_the_fan_out_to_the_commander(h: Harness) {
    let ledger = h.path("ledger");
    h.publish(&RISKY_FLEET.replace("LEDGER", &ledger).replace("RELEASE", &h.path("never"))).await;
    let run = h.start("risky-fleet", &[], &[]).await;
    // A second Ctrl-C: the running items are interrupted, and nothing more starts.
    let (stop_tx, stop) = watch::channel(Stop::No);
    let interrupt = async {
        while count_lines(&ledger) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop_tx.send(Stop::Interrupt).unwrap();
    };
    let (end, ()) = tokio::join!(h.engine.drive(run, &Quiet, stop), interrupt);
    assert!(matches!(end, Ok(steady_engine::engine::DriveEnd::Stopped)), "{end:?}");
    let snapshot = h.snapshot(run).await;
    assert_eq!(snapshot.run.status, RunStatus::NeedsAttention);
    assert_eq!(snapshot.step("migrate").unwrap().status, StepStatus::Interrupted);
    let interrupted = snapshot.children("migrate").filter(|i| i.status == StepStatus::Interrupted);
    assert_eq!(interrupted.count(), 3);

    // The commander decides item by item: the run waits for the next decision in between.
    std::fs::write(h.path("never"), "").unwrap();
    let carol = commander();
    let decide = |decision, item| h.engine.decide_because(run, &carol, decision, Some(item), None);
    assert_eq!(decide(Decision::Skip, "migrate[0]").await.unwrap(), RunStatus::NeedsAttention);
    assert_eq!(decide(Decision::Retry, "migrate[1]").await.unwrap(), RunStatus::NeedsAttention);
    assert_eq!(decide(Decision::Retry, "migrate[2]").await.unwrap(), RunStatus::Running);
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let lines = std::fs::read_to_string(&ledger).unwrap();
    for (host, times) in [("a", 1), ("b", 2), ("c", 2), ("d", 1), ("e", 1), ("f", 1)] {
        assert_eq!(lines.lines().filter(|l| *l == host).count(), times, "{host}");
    }
    assert_eq!(h.step_status(run, "migrate[0]").await, StepStatus::Skipped);
    h.verify_chain().await;
}

async fn a_skipped_group_skips_its_branches_and_a_skipped_fan_out_has_no_items(h: Harness) {
    h.publish(
        r#"
name: optional
params:
  go: { type: boolean, default: false }
  hosts: { type: list, default: [a, b] }
steps:
  - id: both
    when: params.go
    parallel:
      - id: left
        run: ["true"]
        read_only: true
        timeout: 5s
      - id: right
        run: ["true"]
        read_only: true
        timeout: 5s
  - id: fleet
    when: params.go
    for_each: params.hosts
    run: ["true"]
    read_only: true
    timeout: 5s
  - id: report
    check: "steps.left.status == 'skipped' and steps.fleet.items | length == 0"
"#,
    )
    .await;
    let run = h.start("optional", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    assert_eq!(h.step_status(run, "right").await, StepStatus::Skipped);
}

async fn a_dry_run_cannot_list_items_that_come_from_a_step_it_did_not_run(h: Harness) {
    h.publish(
        r#"
name: listed
steps:
  - id: list
    run: ["echo", "x1 x2"]
    timeout: 5s
  - id: fan
    for_each: "steps.list.stdout | split"
    run: ["echo", "{{ item }}"]
    timeout: 5s
"#,
    )
    .await;
    let run = h.start_in(RunMode::DryRun, "listed", &[], &[]).await;
    assert_eq!(h.drive(run).await, RunStatus::Succeeded);
    let snapshot = h.snapshot(run).await;
    let fan = snapshot.step("fan").unwrap();
    assert_eq!(fan.status, StepStatus::WouldRun);
    assert!(fan.note.as_deref().unwrap().contains("did not run"), "{:?}", fan.note);
    assert!(fan.rendered.as_ref().unwrap().to_string().contains("⟨item⟩"));
}
