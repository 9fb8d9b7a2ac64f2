//! `steady run` and friends from a terminal: the whole procedure, start to finish, with a
//! manual step, an approval gate, a decision, Ctrl-C, and the audit log to prove it.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Run, scratch, steady, write};

const PROCEDURE: &str = r#"
name: restart-service
title: Restart the API behind its gate
roles:
  operator: { description: Watches the dashboards }
  approver: { description: Signs off the restart }
params:
  service: { type: string, default: api }
steps:
  - id: healthy_before
    run: echo "{{ params.service }} is up"
    read_only: true
    timeout: 5s
  - id: said_up
    check: "steps.healthy_before.stdout == params.service ~ ' is up'"
  - id: watch
    manual: { role: operator, instructions: "Open the {{ params.service }} dashboard." }
  - id: go
    approval: { role: approver, allow_self_approval: true, prompt: "Restart {{ params.service }}?" }
  - id: restart
    run: echo restarted >> restarts.log
    timeout: 5s
"#;

fn cli(dir: &std::path::Path, args: &[&str]) -> Run {
    steady(dir, args)
}

fn run_id(run: &Run) -> String {
    let line =
        run.stdout.lines().find(|line| line.starts_with("run ")).expect("the run's id is printed");
    line.split_whitespace().nth(1).expect("id").trim_end_matches(':').to_owned()
}

#[test]
fn a_procedure_runs_start_to_finish_from_the_terminal() {
    let dir = scratch("run-story");
    write(&dir, "restart.yaml", PROCEDURE);

    let started = cli(&dir, &["run", "restart.yaml"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    assert!(
        started.stdout.starts_with("published restart-service version 1\n"),
        "{}",
        started.stdout
    );
    assert!(started.stdout.contains("step healthy_before: succeeded"), "{}", started.stdout);
    assert!(
        started.stdout.contains("step watch: waiting for a person holding `operator`"),
        "{}",
        started.stdout
    );
    let id = run_id(&started);
    let prefix = &id[..13];

    assert_eq!(cli(&dir, &["complete", prefix, "watch", "-m", "dashboard is green"]).code, 0);
    let resumed = cli(&dir, &["resume", prefix]);
    assert!(resumed.stdout.contains("step go: waiting for 0 of 1 approvals"), "{}", resumed.stdout);
    let approved = cli(&dir, &["approve", prefix, "go", "-m", "restart it"]);
    assert_eq!(approved.code, 0, "{}", approved.stderr);
    let finished = cli(&dir, &["resume", prefix]);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert!(finished.stdout.contains(&format!("run {id}: ✓ succeeded")), "{}", finished.stdout);
    assert_eq!(std::fs::read_to_string(dir.join("restarts.log")).unwrap(), "restarted\n");

    let shown = cli(&dir, &["show", prefix]);
    assert!(shown.stdout.contains("stdout  api is up"), "{}", shown.stdout);
    assert!(shown.stdout.contains("approved by local:"), "{}", shown.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&cli(&dir, &["show", prefix, "--json"]).stdout).unwrap();
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["steps"][2]["note"], "dashboard is green");

    let listed = cli(&dir, &["runs", "--status", "succeeded"]);
    assert!(listed.stdout.starts_with(&id), "{}", listed.stdout);
    assert_eq!(cli(&dir, &["runs", "--status", "bogus"]).code, 2);

    let verified = cli(&dir, &["audit", "verify"]);
    assert_eq!((verified.code, verified.stdout.trim_end()), (0, "audit chain verified: 14 events"));
    let story: Vec<String> = cli(&dir, &["audit", "export"])
        .stdout
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let actor = if event["actor"] == "steady" { "steady" } else { "operator" };
            format!(
                "{actor} {} {}",
                event["action"].as_str().unwrap(),
                event["step_id"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        story,
        [
            "operator runbook.published -",
            "operator run.started -",
            "steady step.started healthy_before",
            "steady step.finished healthy_before",
            "steady output.stored healthy_before",
            "steady step.finished said_up",
            "steady step.waiting watch",
            "operator manual.completed watch",
            "steady step.waiting go",
            "operator approval.granted go",
            "operator step.finished go",
            "steady step.started restart",
            "steady step.finished restart",
            "steady run.finished -",
        ]
    );
    let csv = cli(&dir, &["audit", "export", "--format", "csv", "--run", prefix]).stdout;
    assert!(
        csv.starts_with("seq,id,at,actor,action,run_id,step_id,data,prev_hash,hash\n"),
        "{csv}"
    );
    assert!(csv.contains(",manual.completed,"), "{csv}");
    assert!(csv.contains("restart it"), "{csv}");
    let jsonl = cli(&dir, &["audit", "export", "--actor", "steady"]).stdout;
    assert!(
        jsonl
            .lines()
            .all(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["actor"]
                == "steady")
    );

    // The same content again is not a new version.
    let published = cli(&dir, &["publish", "restart.yaml"]);
    assert!(
        published.stdout.contains("restart-service version 1 is unchanged"),
        "{}",
        published.stdout
    );
}

#[test]
fn a_failed_step_waits_for_the_commanders_decision() {
    let dir = scratch("run-decide");
    write(
        &dir,
        "flaky.yaml",
        "name: flaky\nsteps:\n  - id: needs_flag\n    run: test -e flag\n    read_only: true\n    timeout: 5s\n",
    );
    let started = cli(&dir, &["run", "flaky.yaml"]);
    assert_eq!(started.code, 1, "{}", started.stdout);
    assert!(started.stdout.contains("decide with `steady decide"), "{}", started.stdout);
    let id = run_id(&started);
    write(&dir, "flag", "");
    assert_eq!(cli(&dir, &["decide", &id, "retry"]).code, 0);
    assert_eq!(cli(&dir, &["resume", &id]).code, 0);
    assert_eq!(cli(&dir, &["decide", &id, "retry"]).code, 2, "nothing to decide any more");
}

#[test]
fn when_the_commander_is_unreachable_an_operator_on_the_host_hands_command_over() {
    let dir = scratch("run-commander");
    write(&dir, "restart.yaml", PROCEDURE);
    let typo = cli(&dir, &["run", "restart.yaml", "--assign", "operator=alice"]);
    assert_eq!(typo.code, 2, "nobody is called alice yet: {}", typo.stdout);
    assert!(typo.stderr.contains("`alice` is not an existing, enabled user"), "{}", typo.stderr);
    for name in ["alice", "bob"] {
        assert_eq!(cli(&dir, &["user", "add", name, "--role", "responder"]).code, 0);
    }
    let started = cli(&dir, &["run", "restart.yaml", "--assign", "operator=alice"]);
    let id = run_id(&started);

    let to_a_typo = cli(&dir, &["commander", &id, "bbo"]);
    assert_eq!(to_a_typo.code, 2);
    assert!(
        to_a_typo.stderr.contains("`bbo` is not an existing, enabled user"),
        "{}",
        to_a_typo.stderr
    );
    let handed = cli(&dir, &["commander", &id, "bob"]);
    assert_eq!(handed.code, 0, "{}", handed.stderr);
    assert_eq!(handed.stdout, format!("user:bob commands run {id} now\n"));
    let shown = cli(&dir, &["show", &id]);
    assert!(shown.stdout.contains("commander  user:bob"), "{}", shown.stdout);
    let audit = cli(&dir, &["audit", "export", "--run", &id]);
    let transferred = audit
        .stdout
        .lines()
        .find(|line| line.contains("run.commander_transferred"))
        .expect("the hand-over is in the audit log");
    assert!(transferred.contains("user:bob"), "{transferred}");
}

#[test]
fn a_lock_held_by_an_active_run_refuses_a_second_one() {
    let dir = scratch("run-lock");
    write(
        &dir,
        "locked.yaml",
        "name: locked\nlock: db/main\nroles:\n  approver: {}\nsteps:\n  - id: go\n    approval: { role: approver }\n",
    );
    let first = cli(&dir, &["run", "locked.yaml"]);
    let id = run_id(&first);
    let second = cli(&dir, &["run", "locked.yaml"]);
    assert_eq!(second.code, 1);
    assert!(
        second.stderr.contains(&format!("lock `db/main` is held by active run {id}")),
        "{}",
        second.stderr
    );
    let self_approval = cli(&dir, &["approve", &id, "go"]);
    assert_eq!(self_approval.code, 2);
    assert!(
        self_approval.stderr.contains("started this run and may not approve its gates"),
        "{}",
        self_approval.stderr
    );
}

#[test]
fn an_operator_cancels_a_waiting_run_from_the_terminal_and_it_frees_its_lock() {
    let dir = scratch("run-cancel");
    write(
        &dir,
        "locked.yaml",
        "name: locked\nlock: db/main\nroles:\n  approver: {}\nsteps:\n  - id: go\n    approval: { role: approver }\n  - id: act\n    run: echo acted >> acted.log\n    timeout: 5s\n",
    );
    let first = cli(&dir, &["run", "locked.yaml"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let id = run_id(&first);

    let cancelled = cli(&dir, &["cancel", &id[..8], "-m", "maintenance moved to Friday"]);
    assert_eq!(
        (cancelled.code, cancelled.stdout.as_str()),
        (0, format!("run {id}: cancelled\n").as_str()),
        "{}",
        cancelled.stderr
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli(&dir, &["show", &id, "--json"]).stdout).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["steps"][0]["status"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    let audit = cli(&dir, &["audit", "export", "--run", &id]);
    let line = audit.stdout.lines().find(|l| l.contains("run.cancelled")).expect("audited");
    assert!(line.contains("local:"), "the local operator cancelled it: {line}");
    assert!(line.contains("maintenance moved to Friday"), "with the reason given: {line}");

    let again = cli(&dir, &["cancel", &id]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("is cancelled: only a run that has not finished"),
        "{}",
        again.stderr
    );
    assert_eq!(cli(&dir, &["cancel", "ffffffff"]).code, 2, "no such run");
    let second = cli(&dir, &["run", "locked.yaml"]);
    assert_eq!(second.code, 0, "the lock is free again: {}", second.stderr);
    assert!(!dir.join("acted.log").exists(), "nothing behind the gate ran");
}

#[test]
fn ctrl_c_finishes_the_running_step_and_leaves_the_run_resumable() {
    let dir = scratch("run-ctrl-c");
    write(
        &dir,
        "slow.yaml",
        "name: slow\nsteps:\n  - id: first\n    run: sleep 1\n    read_only: true\n    timeout: 5s\n  - id: second\n    run: [\"true\"]\n    read_only: true\n    timeout: 5s\n",
    );
    let child = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["run", "slow.yaml"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("step first: succeeded"), "the running step finished: {stdout}");
    assert!(stdout.contains("it is still running and can be resumed"), "{stdout}");
    let id = run_id(&Run { code: 0, stdout: stdout.into_owned(), stderr: String::new() });
    let json: serde_json::Value =
        serde_json::from_str(&cli(&dir, &["show", &id, "--json"]).stdout).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["steps"][1]["status"].as_str()),
        (Some("running"), Some("pending"))
    );
    let resumed = cli(&dir, &["resume", "--all"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stdout.contains(&format!("run {id}: ✓ succeeded")), "{}", resumed.stdout);
    assert_eq!(cli(&dir, &["resume", "--all"]).stdout, "no run needs a driver\n");
}

/// A secret reaches the step that uses it and nothing a person or a log collector reads: not
/// the terminal's progress, not `show`, not the audit export.
#[test]
fn a_secret_is_used_by_its_step_and_never_printed() {
    let dir = scratch("run-secret");
    let secret = "hunter2-cli-secret";
    write(
        &dir,
        "secretive.yaml",
        "name: secretive\nsecrets: [TOKEN]\nsteps:\n  - id: use\n    run: test $(printf %s {{ secrets.TOKEN }} | sha256sum | cut -c1-8) = fd16e4b9 && echo sent {{ secrets.TOKEN }}\n    read_only: true\n    timeout: 5s\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["run", "secretive.yaml"])
        .current_dir(&dir)
        .env("STEADY_SECRET_TOKEN", secret)
        .output()
        .expect("steady runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "the step saw the real value: {printed}");
    let shown = steady(&dir, &["show", "--json", &last_run(&dir)]);
    let exported = steady(&dir, &["audit", "export"]);
    for text in [&printed, &shown.stdout, &exported.stdout] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
    assert!(shown.stdout.contains("sent ***"), "{}", shown.stdout);
}

pub fn last_run(dir: &std::path::Path) -> String {
    let runs = steady(dir, &["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("runs --json");
    runs[0]["id"].as_str().expect("a run").to_owned()
}

/// Step output, parameters, notes and names are shown at a terminal with their control
/// characters escaped: what a step printed cannot clear the operator's screen, retitle the
/// window or colour what follows. The stored bytes stay as they were.
#[test]
fn control_sequences_in_a_run_are_shown_escaped_at_the_terminal() {
    let dir = scratch("run-escapes");
    write(
        &dir,
        "noisy.yaml",
        r#"
name: noisy
params:
  colour: { type: string, default: red }
steps:
  - id: paint
    run: ["printf", "\\033[2J\\033]0;pwned\\007hello %s\\n", "{{ params.colour }}"]
    read_only: true
    timeout: 5s
"#,
    );
    let output = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["run", "noisy.yaml", "-p", "colour=\x1b[31mred"])
        .env("USER", "ops\x1b]0;owned\x07")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(r"as local:ops\x1b]0;owned\x07"), "{stdout}");
    let id = run_id(&Run { code: 0, stdout: stdout.clone(), stderr: String::new() });

    let shown = cli(&dir, &["show", &id]);
    assert!(
        shown.stdout.contains(r"stdout  \x1b[2J\x1b]0;pwned\x07hello \x1b[31mred"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains(r"'\x1b[31mred'"), "the command as run: {}", shown.stdout);
    for printed in [&stdout, &shown.stdout] {
        assert!(!printed.contains(['\x1b', '\x07']), "raw control characters in {printed:?}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&cli(&dir, &["show", &id, "--json"]).stdout).unwrap();
    let stored = json["steps"][0]["attempts"][0]["stdout"].as_str().unwrap_or_default();
    assert_eq!(stored, "\x1b[2J\x1b]0;pwned\x07hello \x1b[31mred\n");
}
