//! `steady plan`: each shipped runbook rendered as the procedure a tired engineer follows.

use crate::{repo, scratch, steady, write};

#[track_caller]
fn plan(args: &[&str]) -> String {
    let mut full = vec!["plan"];
    full.extend_from_slice(args);
    let run = steady(repo(), &full);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "steady {}", full.join(" "));
    run.stdout
}

#[test]
fn postgres_failover() {
    insta::assert_snapshot!(plan(&[
        "postgres-failover",
        "-p",
        "cluster=main",
        "-p",
        "standby_host=db2.example.com"
    ]));
}

#[test]
fn redis_failover() {
    insta::assert_snapshot!(plan(&[
        "runbooks/redis-failover.yaml",
        "-p",
        "sentinel_host=sentinel-1"
    ]));
}

#[test]
fn traffic_shift() {
    insta::assert_snapshot!(plan(&[
        "traffic-shift",
        "-p",
        "service=checkout",
        "-p",
        "secondary=eu-west-1"
    ]));
}

#[test]
fn shed_load() {
    insta::assert_snapshot!(plan(&["shed-load", "-p", "service=checkout"]));
}

#[test]
fn rolling_restart() {
    insta::assert_snapshot!(plan(&[
        "rolling-restart",
        "-p",
        "service=shop",
        "-p",
        "hosts=web1,web2,web3",
        "-p",
        "backend=shop"
    ]));
}

#[test]
fn restore_verify() {
    insta::assert_snapshot!(plan(&[
        "restore-verify",
        "-p",
        "cluster=main",
        "-p",
        "source_host=db1.example.com"
    ]));
}

#[test]
fn json_plan_lists_every_step_with_its_rendered_action() {
    let json =
        plan(&["postgres-failover", "--json", "-p", "cluster=main", "-p", "standby_host=db2"]);
    let plan: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(plan["lock"], "pg/main");
    assert_eq!(plan["steps"].as_array().map(Vec::len), Some(7));
    assert_eq!(
        plan["steps"][4]["action"],
        serde_json::json!({"kind": "run", "argv": ["ssh", "--", "db2", "pg_ctl", "promote", "-w", "-D", "/var/lib/postgresql/16/main"]})
    );
    assert_eq!(plan["steps"][3]["action"]["kind"], "approval");
    assert_eq!(plan["steps"][3]["action"]["role"], "approver");
    assert_eq!(plan["rollback"][0]["number"], "R1");
}

#[test]
fn parameter_errors_are_bad_input() {
    let run = steady(
        repo(),
        &[
            "plan",
            "postgres-failover",
            "-p",
            "cluster=Main!",
            "-p",
            "max_lag_bytes=lots",
            "-p",
            "standbyhost=x",
        ],
    );
    assert_eq!(run.code, 2);
    insta::assert_snapshot!(run.stderr, @r"
    error: parameter `cluster` must match `^[a-z0-9-]+$`, got `Main!`
    error: parameter `max_lag_bytes` must be a whole number, got `lots`
    error: unknown parameter `standbyhost`; did you mean `standby_host`?
    error: missing required parameter `standby_host` (Host name of the standby to promote)
    ");
    let run = steady(repo(), &["plan", "postgres-failover", "-p", "cluster"]);
    assert_eq!(run.code, 2, "a parameter without =: {}", run.stderr);
}

#[test]
fn a_hostile_parameter_is_shown_quoted_as_it_would_run() {
    let dir = scratch("plan-hostile");
    write(
        &dir,
        "echo.yaml",
        "name: echo\nparams:\n  who: { type: string, required: true }\nsteps:\n  - id: greet\n    run: echo hello {{ params.who }}\n    read_only: true\n    timeout: 5s\n",
    );
    let run = steady(&dir, &["plan", "echo.yaml", "-p", "who=x'; touch /tmp/pwned #"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("sh       echo hello \"x'; touch /tmp/pwned #\"\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn runbooks_are_found_by_name_in_the_runbooks_folder() {
    let dir = scratch("plan-by-name");
    let run = steady(
        &dir,
        &[
            "plan",
            "no-such-runbook",
            "--runbooks",
            repo().join("runbooks").to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no runbook named `no-such-runbook`"), "{}", run.stderr);
    assert!(run.stderr.contains(
        "(found: postgres-failover, redis-failover, restore-verify, rolling-restart, shed-load, traffic-shift)"
    ));
}

#[test]
fn an_invalid_runbook_fails_with_its_errors() {
    let dir = scratch("plan-invalid");
    write(&dir, "bad.yaml", "name: bad\nsteps:\n  - id: wait\n    sleep: forever\n");
    let run = steady(&dir, &["plan", "bad.yaml"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("bad.yaml:4:12: error: `sleep`: invalid duration `forever`"),
        "{}",
        run.stderr
    );
}

/// `steady plan … | head -3`, `steady runs | head` and `steady audit export | head`: a reader
/// that stops reading ends the command quietly, not with a panic about a broken pipe.
#[test]
fn a_reader_that_stops_reading_ends_the_command_quietly() {
    use std::process::{Command, Stdio};
    let dir = scratch("closed-pipe");
    let commands: [&[&str]; 5] = [
        &["plan", "postgres-failover", "-p", "cluster=main", "-p", "standby_host=db2"],
        &["plan", "postgres-failover", "--json", "-p", "cluster=main", "-p", "standby_host=db2"],
        &["runs"],
        &["runs", "--json"],
        &["audit", "export"],
    ];
    for args in commands {
        let folder = if args[0] == "plan" { repo() } else { dir.as_path() };
        let mut child = Command::new(env!("CARGO_BIN_EXE_steady"))
            .args(args)
            .current_dir(folder)
            .env("STEADY_DB", format!("sqlite://{}", dir.join("steady.db").display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("steady starts");
        // The reader goes away before the first line: every write meets a closed pipe.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("steady ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!((output.status.code(), stderr.as_ref()), (Some(0), ""), "steady {args:?}");
    }
}
