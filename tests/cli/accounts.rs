//! `steady user` and `steady token`: accounts from the terminal, for the first admin's day.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{Run, scratch, steady};

fn with_stdin(dir: &std::path::Path, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("steady runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("steady exits");
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn users_and_tokens_are_managed_from_the_terminal() {
    let dir = scratch("accounts");
    let added = with_stdin(
        &dir,
        &["user", "add", "alice", "--role", "responder", "--role", "auditor", "--password-stdin"],
        "a-long-password\n",
    );
    assert_eq!(
        (added.code, added.stdout.as_str()),
        (0, "created user `alice`\n"),
        "{}",
        added.stderr
    );
    let generated = steady(&dir, &["user", "add", "bob", "--role", "admin"]);
    assert!(
        generated.stdout.starts_with("created user `bob` with password "),
        "{}",
        generated.stdout
    );
    let short = with_stdin(
        &dir,
        &["user", "add", "carol", "--role", "responder", "--password-stdin"],
        "short\n",
    );
    assert_eq!(short.code, 2);
    assert!(short.stderr.contains("at least 12 characters"), "{}", short.stderr);
    let bad_name = steady(&dir, &["user", "add", "Carol!", "--role", "responder"]);
    assert_eq!(bad_name.code, 2, "{}", bad_name.stderr);

    let listed = steady(&dir, &["user", "list"]);
    assert!(
        listed.stdout.contains("alice") && listed.stdout.contains("responder, auditor"),
        "{}",
        listed.stdout
    );
    assert_eq!(steady(&dir, &["user", "disable", "alice"]).stdout, "user `alice` is disabled\n");
    assert!(steady(&dir, &["user", "list"]).stdout.contains("(disabled)"));

    let token = steady(&dir, &["token", "create", "bob", "--label", "ci"]);
    assert_eq!(token.code, 0, "{}", token.stderr);
    let id = token.stdout.split_whitespace().nth(1).expect("the token's id").to_owned();
    assert!(token.stdout.contains(": stdy_"), "{}", token.stdout);
    assert_eq!(steady(&dir, &["token", "revoke", &id]).stdout, format!("token {id} revoked\n"));
    assert_eq!(steady(&dir, &["token", "revoke", &id]).code, 2, "already revoked");
    assert_eq!(steady(&dir, &["token", "create", "nobody"]).code, 2);

    let audit = steady(&dir, &["audit", "export"]).stdout;
    for action in ["user.created", "user.changed", "token.created", "token.revoked"] {
        assert!(audit.contains(action), "{action} is audited: {audit}");
    }
}
