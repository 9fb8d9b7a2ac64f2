//! What a step's process gets and what it leaves: a clean environment, no run without its
//! secrets, no option injection through a shipped runbook's parameter, and nothing left
//! running after the step ends — even a daemon that left the step's process group.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{repo, scratch, write};

/// `steady` in `dir` with exactly these `STEADY_*` settings besides the inherited rest.
fn steady_with(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steady"));
    command.args(args).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("STEADY_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("steady runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_step_sees_only_path_home_lang_tz_user_and_its_own_env() {
    let dir = scratch("isolation-env");
    write(
        &dir,
        "looking.yaml",
        "name: looking\nsteps:\n  - id: environment\n    run: [\"env\"]\n    env: { MINE: \"yes\" }\n    read_only: true\n    timeout: 5s\n",
    );
    let (code, _, stderr) = steady_with(
        &dir,
        &["run", "looking.yaml"],
        &[
            ("STEADY_ADMIN_PASSWORD", "admin-password-never-shown"),
            ("STEADY_SECRET_ELSEWHERE", "another-runbooks-secret"),
            ("AWS_SECRET_ACCESS_KEY", "an-operators-own-credential"),
            ("LANG", "C.UTF-8"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let (_, shown, _) = steady_with(&dir, &["show", "--json", &crate::run::last_run(&dir)], &[]);
    let run: serde_json::Value = serde_json::from_str(&shown).expect("json");
    let stdout = run["steps"][0]["attempts"][0]["stdout"].as_str().expect("output").to_owned();
    let mut names: Vec<&str> = stdout.lines().filter_map(|line| line.split('=').next()).collect();
    names.sort_unstable();
    let allowed = ["HOME", "LANG", "MINE", "PATH", "TZ", "USER"];
    assert!(names.iter().all(|name| allowed.contains(name)), "{stdout}");
    assert!(names.contains(&"MINE") && names.contains(&"PATH") && names.contains(&"LANG"));
}

#[test]
fn a_run_whose_secret_has_no_value_does_not_start() {
    let dir = scratch("isolation-missing");
    write(
        &dir,
        "calling.yaml",
        "name: calling\nsecrets: [TOKEN, HOOK]\nsteps:\n  - id: call\n    http: { url: \"http://127.0.0.1:9/\", headers: { Authorization: \"Bearer {{ secrets.TOKEN }}\" } }\n    read_only: true\n    timeout: 5s\n",
    );
    let (code, _, stderr) =
        steady_with(&dir, &["run", "calling.yaml"], &[("STEADY_SECRET_TOKEN", "a-long-token")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("declared secret `HOOK` has no value: set STEADY_SECRET_HOOK"),
        "{stderr}"
    );
    let (code, _, stderr) = steady_with(
        &dir,
        &["run", "calling.yaml"],
        &[("STEADY_SECRET_TOKEN", "a-long-token"), ("STEADY_SECRET_HOOK", "abc")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("shorter than 4 characters"), "{stderr}");
}

#[test]
fn a_hostile_host_parameter_is_refused_before_anything_runs() {
    let dir = scratch("isolation-injection");
    let (code, _, stderr) = steady_with(
        &dir,
        &[
            "run",
            repo().join("runbooks/postgres-failover.yaml").to_str().expect("path"),
            "--dry-run",
            "-p",
            "cluster=main",
            "-p",
            "standby_host=-oProxyCommand=touch /tmp/steady-pwned",
        ],
        &[("STEADY_SECRET_SLACK_WEBHOOK", "http://127.0.0.1:9/hook")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("standby_host"), "{stderr}");
}

/// Processes whose command line holds `marker`, still alive.
fn alive(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie =
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker) {
            found.push(pid);
        }
    }
    found
}

fn gone_soon(marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if alive(marker).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A daemon that calls `setsid` leaves the step's process group; it must not outlive the step,
/// whether the step succeeds, times out or fails — not even one that keeps forking anew.
#[test]
fn daemons_a_step_starts_die_with_the_step() {
    let dir = scratch("isolation-daemons");
    // Distinct durations, so that each process can be found by its command line.
    write(
        &dir,
        "daemons.yaml",
        r#"
name: daemons
steps:
  - id: succeeds
    run: setsid -f sleep 4242.1; echo started
    read_only: true
    timeout: 5s
  - id: times_out
    run: setsid -f sleep 4242.2; sh -c 'setsid sleep 4242.3 & wait'; sleep 4242.4
    read_only: true
    timeout: 1s
    on_failure: continue
  - id: hops
    run:
      - python3
      - -c
      - |
        import os, sys, time
        if os.fork():
            sys.exit(0)
        os.setsid()
        end = time.time() + 3
        while time.time() < end:
            if os.fork():
                os._exit(0)
        os.execvp("sleep", ["sleep", "4242.5"])
    read_only: true
    timeout: 5s
  - id: after
    run: echo the run went on
    read_only: true
    timeout: 5s
"#,
    );
    let started = Instant::now();
    let (code, stdout, stderr) = steady_with(&dir, &["run", "daemons.yaml"], &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "the run waited for its daemons");
    for marker in ["sleep 4242.1", "sleep 4242.2", "sleep 4242.3", "sleep 4242.4", "sleep 4242.5"] {
        let survived = !gone_soon(marker);
        if survived {
            for pid in alive(marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        assert!(!survived, "`{marker}` outlived its step");
    }
}
