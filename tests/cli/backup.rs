//! `steady backup`: the operator copies the database while a run waits for a person, and the
//! copy is a working Steady database where that run carries on.

use crate::{scratch, steady, write};

const WAITING: &str = r#"
name: rotate-certificates
title: Rotate the edge certificates
roles:
  operator: { description: Installs the certificates }
steps:
  - id: fetched
    run: echo fetched >> effects.log
    timeout: 5s
  - id: install
    manual: { role: operator, instructions: "Install the new certificates on the edge." }
  - id: reload
    run: echo reloaded >> effects.log
    timeout: 5s
"#;

#[test]
fn a_backup_taken_while_a_run_waits_restores_to_that_run() {
    let dir = scratch("backup");
    write(&dir, "rotate.yaml", WAITING);
    let started = steady(&dir, &["run", "rotate.yaml"]);
    assert!(started.stdout.contains("step install: waiting"), "{}", started.stdout);
    let id = started
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("run "))
        .and_then(|rest| rest.split(':').next())
        .expect("the run's id is printed")
        .to_owned();

    let backup = steady(&dir, &["backup", "copy.db"]);
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    assert!(
        backup.stdout.starts_with("backed up sqlite://steady.db to copy.db: audit chain verified"),
        "{}",
        backup.stdout
    );
    let again = steady(&dir, &["backup", "copy.db"]);
    assert_eq!(again.code, 2, "a backup never overwrites: {}", again.stdout);
    assert!(again.stderr.contains("copy.db already exists"), "{}", again.stderr);

    // Restore: the copy is the database now. The run is where it was, and goes on from there.
    let restored = ["--db", "sqlite://copy.db"];
    let shown = steady(&dir, &[&["show", &id][..], &restored].concat());
    assert!(shown.stdout.contains("waiting"), "{}", shown.stdout);
    let done = steady(&dir, &[&["complete", &id, "install"][..], &restored].concat());
    assert_eq!(done.code, 0, "{}", done.stderr);
    let finished = steady(&dir, &[&["resume", &id][..], &restored].concat());
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert!(finished.stdout.contains("succeeded"), "{}", finished.stdout);
    assert_eq!(
        std::fs::read_to_string(dir.join("effects.log")).unwrap(),
        "fetched\nreloaded\n",
        "the step that ran before the backup does not run again after the restore"
    );
    let verified = steady(&dir, &[&["audit", "verify"][..], &restored].concat());
    assert_eq!(verified.code, 0, "{}", verified.stdout);
}
