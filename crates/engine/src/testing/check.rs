//! A test file held against the runbook it tests: every step, role and parameter it names
//! exists, and every step is given what its kind can be given. What a case could only find
//! out by running is located here instead.

use crate::diagnostic::{Diagnostic, Position, with_suggestion};
use crate::runbook::{Runbook, Step, StepKind};

use super::{Case, Stub, TestFile};

/// Every problem of `tests` against `runbook`, located in the test file.
pub fn check(runbook: &Runbook, tests: &TestFile) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if tests.runbook != runbook.name {
        out.push(Diagnostic::error(
            tests.runbook_at,
            format!("this file tests `{}`, not `{}`", tests.runbook, runbook.name),
        ));
    }
    for case in &tests.cases {
        check_case(runbook, case, &mut out);
    }
    out
}

fn check_case(runbook: &Runbook, case: &Case, out: &mut Vec<Diagnostic>) {
    if let Err(errors) = crate::params::resolve(runbook, &case.params) {
        for error in errors {
            out.push(Diagnostic::error(case.params_at, format!("case `{}`: {error}", case.name)));
        }
    }
    for assignment in &case.assign {
        let (role, _) = &assignment.value;
        if runbook.role(role).is_none() {
            let message = format!("the runbook has no role `{role}`");
            let names = runbook.roles.iter().map(|role| role.name.as_str());
            out.push(Diagnostic::error(assignment.at, with_suggestion(message, role, names)));
        }
    }
    for (name, _) in &case.secrets {
        if !runbook.secrets.contains(name) {
            out.push(Diagnostic::error(
                case.at,
                format!("case `{}`: the runbook declares no secret `{name}`", case.name),
            ));
        }
    }
    for given in &case.given {
        let (id, answers) = &given.value;
        let Some(step) = step_named(runbook, id, given.at, out) else { continue };
        for answer in &answers.answers {
            if let Err(message) = fits(step, &answer.value) {
                out.push(Diagnostic::error(answer.at, message));
            }
        }
    }
    for decision in &case.decisions {
        step_named(runbook, &decision.value.0, decision.at, out);
    }
    let expect = &case.expect;
    if let Some(ran) = &expect.ran {
        for id in &ran.value {
            if let Some(step) = step_named(runbook, id, ran.at, out)
                && (runbook.steps.iter().chain(&runbook.rollback)).all(|s| s.id != step.id)
            {
                out.push(Diagnostic::error(
                    ran.at,
                    format!(
                        "`ran` lists the runbook's steps in order; `{id}` is a branch: name it \
                         in `steps` or `not_run`"
                    ),
                ));
            }
        }
    }
    for id in &expect.not_run {
        step_named(runbook, &id.value, id.at, out);
    }
    for step in &expect.steps {
        step_named(runbook, &step.value.0, step.at, out);
    }
    for rendered in &expect.rendered {
        let id = &rendered.value.0;
        let Some(step) = step_named(runbook, id, rendered.at, out) else { continue };
        if step.fan_out.is_some() && !id.contains('[') {
            // The fan-out's own rendering is its list of items: a pattern would match a host
            // name there whatever each item's command is.
            out.push(Diagnostic::error(
                rendered.at,
                format!("`{id}` fans out: name the item whose command to match (`{id}[0]`)"),
            ));
        } else if !matches!(
            step.kind,
            StepKind::Run(_) | StepKind::Http(_) | StepKind::Approval(_) | StepKind::Manual(_)
        ) {
            out.push(Diagnostic::error(
                rendered.at,
                format!(
                    "`{}` is {} step: `rendered` reads a command, a request, a gate's prompt or \
                     a manual step's instructions",
                    step.id,
                    a_kind(step)
                ),
            ));
        }
    }
}

/// The step an id names: a step, a branch, or an item of a fan-out (`restart[2]`, as the
/// fan-out itself: which items there are is known only when it runs).
fn step_named<'r>(
    runbook: &'r Runbook,
    id: &str,
    at: Position,
    out: &mut Vec<Diagnostic>,
) -> Option<&'r Step> {
    let (own, item) = match id.split_once('[') {
        Some((own, rest)) => (own, Some(rest)),
        None => (id, None),
    };
    let Some(step) = runbook.find_step(own) else {
        let message = format!("the runbook has no step `{own}`");
        let ids = runbook.all_steps().map(|step| step.id.as_str());
        out.push(Diagnostic::error(at, with_suggestion(message, own, ids)));
        return None;
    };
    if let Some(rest) = item {
        let index = rest.strip_suffix(']').and_then(|n| n.parse::<usize>().ok());
        let message = if step.fan_out.is_none() {
            Some(format!(
                "`{own}` does not fan out (`for_each`): only a fan-out's items are named with \
                 brackets"
            ))
        } else if index.is_none() {
            Some(format!("`{id}`: an item is named by its place in the list, from 0 (`{own}[0]`)"))
        } else {
            None
        };
        if let Some(message) = message {
            out.push(Diagnostic::error(at, message));
            return None;
        }
    }
    Some(step)
}

/// Whether `step` can be given `stub`; the error says what it can be given instead.
fn fits(step: &Step, stub: &Stub) -> Result<(), String> {
    let takes = match &step.kind {
        StepKind::Run(_) => {
            "an ending (`exit_code`, `stdout`, `stderr`, `error`, `takes`) or `timeout`"
        }
        StepKind::Http(_) => "an answer (`status`, `body`, `error`, `takes`) or `timeout`",
        StepKind::Manual(_) => {
            "`done` or `failed` (optionally by a person, with a `note`) or `timeout`"
        }
        StepKind::Approval(_) => "`approve: [people]`, `reject: person` or `timeout`",
        StepKind::Check(_) | StepKind::Sleep(_) | StepKind::Parallel(_) => {
            return Err(format!(
                "`{}` is {} step: the engine carries it out in a test, so it is given nothing{}",
                step.id,
                a_kind(step),
                if matches!(step.kind, StepKind::Parallel(_)) {
                    "; give its branches what they answer"
                } else {
                    ""
                }
            ));
        }
    };
    let ok = match (&step.kind, stub) {
        (_, Stub::Timeout) => true,
        (StepKind::Run(_), Stub::Effect(effect)) => !effect.is_http(),
        (StepKind::Http(_), Stub::Effect(effect)) => !effect.is_process(),
        (StepKind::Manual(_), Stub::Manual { .. }) => true,
        (StepKind::Approval(_), Stub::Approve(_) | Stub::Reject(_)) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is {} step: it takes {takes}, not {}",
            step.id,
            a_kind(step),
            stub.describe()
        ))
    }
}

/// "a run", "an approval": the step's kind with its article.
fn a_kind(step: &Step) -> String {
    let kind = step.kind.name();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {kind}")
}
