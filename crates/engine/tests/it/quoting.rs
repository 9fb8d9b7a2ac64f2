//! In a `run` string every interpolated value is shell-quoted: a hostile parameter stays one
//! word and runs nothing. Checked by handing the rendered command to a real `/bin/sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command as Process;

use steady_engine::runbook::{Command, ParamValue, StepKind};
use steady_engine::template::{self, Context, Target};
use steady_engine::{Runbook, parse};

fn runbook(step: &str) -> Runbook {
    let source = format!(
        "name: quoting\nsecrets: [TOKEN]\nparams:\n  value: {{ type: string, required: true }}\nsteps:\n{step}"
    );
    let parsed = parse(&source);
    parsed.runbook.unwrap_or_else(|| panic!("valid runbook: {:?}", parsed.diagnostics))
}

fn params(value: &str) -> BTreeMap<String, ParamValue> {
    BTreeMap::from([("value".to_owned(), ParamValue::String(value.to_owned()))])
}

/// Renders the runbook's first step, a `run` string, with `value` as the parameter.
fn render_shell(runbook: &Runbook, value: &str) -> String {
    let StepKind::Run(Command::Shell(command)) = &runbook.steps[0].kind else {
        panic!("a run string")
    };
    template::render(command, Target::Shell, &Context::offline(runbook, &params(value)))
        .expect("renders")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steady-quoting-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn a_hostile_parameter_stays_one_word_and_runs_nothing() {
    let dir = scratch_dir("hostile");
    let pwned = dir.join("pwned");
    let pwned = pwned.display();
    let runbook = runbook(
        "  - id: show\n    run: printf '%s\\n' {{ params.value }}\n    read_only: true\n    timeout: 5s\n",
    );
    let hostile = [
        format!("x'; touch {pwned} #"),
        format!("$(touch {pwned})"),
        format!("`touch {pwned}`"),
        format!("\"; touch {pwned}; echo \""),
        format!("a b\ntouch {pwned}"),
        format!("x && touch {pwned} || true"),
        "*".to_owned(),
        "--help".to_owned(),
        "$HOME".to_owned(),
        "ünïcødé ⟨x⟩".to_owned(),
        String::new(),
    ];
    for value in hostile {
        let command = render_shell(&runbook, &value);
        let output = Process::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&dir)
            .output()
            .expect("sh runs");
        assert!(output.status.success(), "{command}: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{value}\n"), "for {command}");
        assert!(!dir.join("pwned").exists(), "{command} ran an injected command");
    }
}

#[test]
fn quoting_cannot_be_switched_off_from_the_template() {
    for step in [
        "  - id: show\n    run: echo {{ params.value | safe }}\n    read_only: true\n    timeout: 5s\n",
        "  - id: show\n    run: \"{% autoescape false %}echo {{ params.value }}{% endautoescape %}\"\n    read_only: true\n    timeout: 5s\n",
    ] {
        let runbook = runbook(step);
        assert_eq!(render_shell(&runbook, "a; b"), "echo 'a; b'");
    }
}

#[test]
fn safe_values_are_left_readable() {
    let runbook = runbook(
        "  - id: show\n    run: pg_ctl promote -D /srv/{{ params.value }}\n    timeout: 5s\n",
    );
    assert_eq!(render_shell(&runbook, "main-1"), "pg_ctl promote -D /srv/main-1");
}

#[test]
fn argv_elements_are_passed_as_they_are() {
    let runbook = runbook(
        "  - id: show\n    run: [\"psql\", \"-c\", \"select '{{ params.value }}'\"]\n    read_only: true\n    timeout: 5s\n",
    );
    let StepKind::Run(Command::Argv(argv)) = &runbook.steps[0].kind else { panic!("an argv list") };
    let context = Context::offline(&runbook, &params("it's"));
    let rendered: Vec<String> = argv
        .iter()
        .map(|t| template::render(t, Target::Text, &context).expect("renders"))
        .collect();
    assert_eq!(rendered, ["psql", "-c", "select 'it's'"]);
}

#[test]
fn secrets_render_masked_everywhere_shown() {
    let runbook = runbook(
        "  - id: call\n    run: curl --oauth2-bearer {{ secrets.TOKEN }} https://example.com\n    timeout: 5s\n",
    );
    assert_eq!(render_shell(&runbook, "x"), "curl --oauth2-bearer '***' https://example.com");
}
