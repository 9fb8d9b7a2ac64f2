//! `steady validate`: 0 when every runbook is valid, 1 when any is not, 2 for bad usage.

use crate::{repo, scratch, steady, write};

#[test]
fn the_shipped_runbooks_are_valid() {
    let run = steady(repo(), &["validate", "runbooks"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert_eq!(run.stdout, "checked 6 runbooks and 6 test files: 0 errors, 0 warnings\n");
}

#[test]
fn a_folder_with_a_broken_runbook_fails_with_every_error_located() {
    let dir = scratch("validate-broken");
    write(&dir, "fine.yaml", "name: fine\nsteps:\n  - id: wait\n    sleep: 1s\n");
    std::fs::create_dir(dir.join("db")).expect("make folder");
    write(
        &dir,
        "db/broken.yml",
        "name: broken\nsteps:\n  - id: wait\n    sleep: 1 minute\n  - id: look\n    run: uptime\n    read_only: true\n    timout: 5s\n",
    );
    let run = steady(&dir, &["validate", "."]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "checked 2 runbooks: 2 errors, 0 warnings\n");
    insta::assert_snapshot!(run.stderr, @r"
    ./db/broken.yml:4:12: error: `sleep`: invalid duration `1 minute`: write a number and a unit, such as 500ms, 30s, 5m, 1h30m or 90d
    4 |     sleep: 1 minute
      |            ^
    ./db/broken.yml:8:5: error: unknown field `timout` in a step; did you mean `timeout`?
    8 |     timout: 5s
      |     ^
    ");
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = scratch("validate-warnings");
    write(
        &dir,
        "restart.yaml",
        "name: restart\nsteps:\n  - id: restart\n    run: systemctl restart nginx\n    timeout: 30s\n",
    );
    let run = steady(&dir, &["validate", "restart.yaml"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.starts_with("restart.yaml:3:5: warning: step `restart` changes things"),
        "{}",
        run.stderr
    );
    let run = steady(&dir, &["validate", "--deny-warnings", "restart.yaml"]);
    assert_eq!(run.code, 1);
}

#[test]
fn two_runbooks_may_not_share_a_name() {
    let dir = scratch("validate-duplicate");
    let source = "name: same\nsteps:\n  - id: wait\n    sleep: 1s\n";
    write(&dir, "a.yaml", source);
    write(&dir, "b.yaml", source);
    let run = steady(&dir, &["validate", "a.yaml", "b.yaml"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("b.yaml:1:7: error: runbook name `same` is already used by a.yaml"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_path_is_a_usage_error() {
    let dir = scratch("validate-missing");
    let run = steady(&dir, &["validate", "nowhere.yaml"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (2, "nowhere.yaml: error: no such file or folder\n")
    );
    let run = steady(&dir, &["validate"]);
    assert_eq!(run.code, 2, "no path at all: {}", run.stderr);
}

#[test]
fn the_readme_example_is_a_valid_runbook() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let start = readme.find("```yaml\n").expect("a YAML example") + "```yaml\n".len();
    let end = start + readme[start..].find("```").expect("its end");
    let dir = scratch("validate-readme");
    write(&dir, "example.yaml", &readme[start..end]);
    let run = steady(&dir, &["validate", "example.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("error"), "{}", run.stderr);
}

/// Found by fuzzing: YAML ends a line at a lone `\r` (old Mac line ends), `str::lines` does
/// not, so the excerpt under an error showed another line than the one it names.
#[test]
fn a_file_with_old_mac_line_ends_shows_the_line_the_error_names() {
    let dir = scratch("validate-cr");
    write(&dir, "cr.yaml", "name: cr\rsteps:\r  - id: nap\r    sleep: soon\r");
    let run = steady(&dir, &["validate", "cr.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("cr.yaml:4:"), "{}", run.stderr);
    assert!(run.stderr.contains("4 |     sleep: soon"), "{}", run.stderr);
}

/// Found by fuzzing: YAML that stops inside a flow mapping with no final line break was
/// reported one line past the end of the file, where no excerpt can be shown.
#[test]
fn an_error_at_the_end_of_a_file_points_at_its_last_line() {
    let dir = scratch("validate-eof");
    write(&dir, "eof.yaml", "name: eof\nsteps:\n  - id: go\n    approval: { role: app");
    let run = steady(&dir, &["validate", "eof.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("eof.yaml:4:26:"), "{}", run.stderr);
    assert!(run.stderr.contains("4 |     approval: { role: app"), "{}", run.stderr);
}

/// Found by fuzzing: a one-line file without `name` had its error placed on a second line
/// that does not exist.
#[test]
fn a_one_line_file_without_a_name_is_refused_on_its_line() {
    let dir = scratch("validate-one-line");
    write(&dir, "one.yaml", "# just a comment");
    let run = steady(&dir, &["validate", "one.yaml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("one.yaml:1:"), "{}", run.stderr);
    assert!(run.stderr.contains("1 | # just a comment"), "{}", run.stderr);
}
