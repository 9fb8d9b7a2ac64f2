//! The crash campaign: the real `steady` binary SIGKILLed again and again at seeded moments —
//! before, during and after steps, and while waiting at gates — and taken over each time with
//! `steady resume`. Side effects are counted in a ledger file that only the steps write.
//!
//! The test command runs a short campaign (50 kills). The long one is the same test with
//! more kills: `STEADY_CRASH_KILLS=1000 STEADY_CRASH_SEED=1 cargo test --release --test cli
//! crash -- --nocapture`. The same campaign on PostgreSQL with several nodes is
//! `tests/cluster/kills.rs`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use steady_testkit::campaign::{self, Seeded, setting};

use crate::{scratch, steady, write};

/// Twenty steps: side effects that must never repeat, idempotent ones that may, read-only
/// ones, a manual step and gates; then a fan-out of six items with side effects, three at a
/// time. Each effect is written first thing, then the step lingers so that kills land inside
/// it.
fn runbook() -> String {
    let ledger = "{{ params.ledger }}";
    let mut steps = String::new();
    for index in 0..STEPS {
        let id = format!("s{index:02}");
        let body = match index % 6 {
            0 => format!("    run: echo {id} >> {ledger}; sleep 0.15\n    timeout: 10s\n"),
            1 => format!(
                "    run: echo {id} >> {ledger}; sleep 0.1\n    idempotent: true\n    timeout: 10s\n"
            ),
            2 => "    run: sleep 0.05\n    read_only: true\n    timeout: 10s\n".to_owned(),
            3 if index == 3 => {
                "    manual: { role: operator, instructions: Check the dashboards. }\n".to_owned()
            }
            3 => "    approval: { role: operator, allow_self_approval: true }\n".to_owned(),
            4 => format!(
                "    run: [\"sh\", \"-c\", \"echo {id} >> {ledger}; sleep 0.1\"]\n    timeout: 10s\n"
            ),
            _ => "    check: \"1 == 1\"\n".to_owned(),
        };
        steps.push_str(&format!("  - id: {id}\n{body}"));
    }
    steps.push_str(&format!(
        "  - id: fleet\n    for_each: '{ITEMS:?}'\n    concurrency: 3\n    run: echo {{{{ item }}}} >> {ledger}; sleep 0.1\n    timeout: 10s\n"
    ));
    let params = "params:\n  ledger: { type: string, required: true }\n";
    format!("name: crashy\nroles:\n  operator: {{ description: Answers }}\n{params}steps:\n{steps}")
}

const STEPS: usize = 20;

/// The fan-out's items, each a side effect that must happen exactly once.
const ITEMS: [&str; 6] = ["f0", "f1", "f2", "f3", "f4", "f5"];

/// Steps whose side effect must happen exactly once (`run` strings and argv without
/// `idempotent`).
fn once_only(index: usize) -> bool {
    matches!(index % 6, 0 | 4)
}

fn idempotent(index: usize) -> bool {
    index % 6 == 1
}

#[test]
fn killed_at_any_moment_steady_never_repeats_a_side_effect_nor_loses_a_record() {
    let dir = scratch("crash");
    write(&dir, "crashy.yaml", &runbook());
    let envs = [("STEADY_DB", "sqlite://steady.db"), ("STEADY_LEASE", "300ms")];
    let binary = env!("CARGO_BIN_EXE_steady");
    let spawn = |args: &[&str]| {
        Command::new(binary)
            .args(args)
            .envs(envs)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("steady starts")
    };
    let cli = |args: &[&str]| {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--db", "sqlite://steady.db", "--lease", "300ms"]);
        steady(&dir, &full)
    };
    let show = |run: &str| -> serde_json::Value {
        let shown = cli(&["show", run, "--json"]);
        serde_json::from_str(&shown.stdout).expect("show --json")
    };

    let kills_wanted = setting("STEADY_CRASH_KILLS", 50);
    let seed_value = setting("STEADY_CRASH_SEED", 42);
    let mut seed = Seeded(seed_value);
    let mut kills = 0;
    let mut events_seen = 0usize;
    let mut rounds = 0;
    let mut decisions = 0;
    let deadline = Instant::now() + Duration::from_secs(300 + 3 * kills_wanted);
    while kills < kills_wanted {
        rounds += 1;
        let ledger = dir.join(format!("ledger-{rounds}"));
        let param = format!("ledger={}", ledger.display());
        let mut run_id = String::new();
        let mut finished_steps_seen = 0usize;
        loop {
            assert!(Instant::now() < deadline, "the runs settled in time");
            let mut child = if run_id.is_empty() {
                spawn(&["run", "crashy.yaml", "-p", &param])
            } else {
                spawn(&["resume", &run_id])
            };
            let lifetime = Duration::from_millis(5 + seed.below(445));
            let started = Instant::now();
            let exited = loop {
                if let Some(status) = child.try_wait().expect("poll") {
                    break Some(status);
                }
                if started.elapsed() >= lifetime {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            if exited.is_none() {
                child.kill().expect("SIGKILL");
                child.wait().expect("reap");
                kills += 1;
            }
            if run_id.is_empty() {
                let runs = cli(&["runs", "--json", "--limit", "1"]);
                let runs: serde_json::Value =
                    serde_json::from_str(&runs.stdout).expect("runs --json");
                match runs.as_array().and_then(|runs| runs.first()) {
                    Some(run) if run["params"]["ledger"] == ledger.display().to_string() => {
                        run_id = run["id"].as_str().expect("id").to_owned();
                    }
                    _ => continue, // killed before the run was created: start it again
                }
            }

            // After every kill: the chain verifies, and nothing committed before is gone.
            let verify = cli(&["audit", "verify"]);
            assert_eq!(verify.code, 0, "chain after kill {kills}: {}", verify.stdout);
            let events = cli(&["audit", "export"]).stdout.lines().count();
            assert!(events >= events_seen, "audit events went from {events_seen} to {events}");
            events_seen = events;
            let run = show(&run_id);
            let steps = run["steps"].as_array().expect("steps");
            let finished = steps
                .iter()
                .filter(|s| {
                    matches!(s["status"].as_str(), Some("succeeded" | "skipped" | "approved"))
                })
                .count();
            assert!(
                finished >= finished_steps_seen,
                "finished steps went from {finished_steps_seen} to {finished}"
            );
            finished_steps_seen = finished;

            match run["status"].as_str().expect("status") {
                "succeeded" => break,
                "waiting" => {
                    let waiting =
                        steps.iter().find(|s| s["status"] == "waiting").expect("a waiting step");
                    let step = waiting["id"].as_str().expect("id");
                    let verb = if waiting["rendered"]["kind"] == "manual" {
                        "complete"
                    } else {
                        "approve"
                    };
                    let answered = cli(&[verb, &run_id, step]);
                    assert_eq!(answered.code, 0, "{verb} {step}: {}", answered.stderr);
                }
                "needs_attention" => {
                    // The person at the console checks whether the interrupted step did its
                    // work; for the fan-out, item by item.
                    let interrupted: Vec<&str> = steps
                        .iter()
                        .filter(|s| s["status"] == "interrupted")
                        .filter_map(|s| s["id"].as_str())
                        .collect();
                    let item = interrupted.iter().find_map(|id| {
                        let index: usize =
                            id.strip_prefix("fleet[")?.strip_suffix(']')?.parse().ok()?;
                        Some((*id, ITEMS[index]))
                    });
                    let (step, effect) = match item {
                        Some((id, effect)) => (Some(id), effect),
                        None => (None, *interrupted.first().expect("an interrupted step")),
                    };
                    let done = campaign::ledger(&ledger).contains_key(effect);
                    decisions += 1;
                    let mut args = vec!["decide", &run_id, if done { "skip" } else { "retry" }];
                    if let Some(step) = step {
                        args.extend(["--step", step]);
                    }
                    let decided = cli(&args);
                    assert_eq!(decided.code, 0, "decide: {}", decided.stderr);
                }
                "running" => {}
                other => panic!("the run ended {other}"),
            }
        }

        let counts = campaign::ledger(&ledger);
        for index in (0..STEPS).filter(|index| once_only(*index)) {
            let id = format!("s{index:02}");
            assert_eq!(
                counts.get(&id),
                Some(&1),
                "non-idempotent {id} ran exactly once (seed {seed_value}): {counts:?}"
            );
        }
        for item in ITEMS {
            assert_eq!(
                counts.get(item),
                Some(&1),
                "fan-out item {item} ran exactly once (seed {seed_value}): {counts:?}"
            );
        }
        for index in (0..STEPS).filter(|index| idempotent(*index)) {
            let id = format!("s{index:02}");
            assert!(counts.get(&id).is_some_and(|n| *n >= 1), "idempotent {id} ran: {counts:?}");
        }
    }

    let integrity = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])"])
        .arg(dir.join("steady.db"))
        .output();
    if let Ok(output) = integrity
        && output.status.success()
    {
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
    }
    println!(
        "crash campaign (seed {seed_value}): {kills} kills over {rounds} runs of {STEPS} steps and a fan-out of {} items, {decisions} interrupted steps decided, {events_seen} audit events, chain verified after every kill",
        ITEMS.len()
    );
    assert!(decisions > 0, "some kills landed inside steps with side effects");
}
