//! Lint warnings: a valid runbook that is probably not what its author meant, or not safe.

use super::*;

pub(super) fn check(runbook: &Runbook, out: &mut Vec<Diagnostic>) {
    sequence(&runbook.steps, false, out);
    sequence(&runbook.rollback, rollback_is_gated(&runbook.steps), out);
    unused_roles(runbook, out);
    free_parameters_from_alerts(runbook, out);
    verification_that_proves_nothing(runbook, out);
}

/// A verification executes only read-only steps and checks; without any, it passes every time
/// and proves nothing about today's systems.
fn verification_that_proves_nothing(runbook: &Runbook, out: &mut Vec<Diagnostic>) {
    let Some(verify) = &runbook.verify else { return };
    let observes = |step: &Step| step.read_only || matches!(step.kind, StepKind::Check(_));
    if !runbook.all_steps().any(observes) {
        out.push(Diagnostic::warning(
            verify.at,
            "`verify` dry-runs the runbook, but no step is `read_only` or a `check`: the verification executes nothing and always passes; mark the steps that only look as read_only",
        ));
    }
}

/// A rollback starts by a commander's decision, which is a person deciding, or because a step
/// with `on_failure: rollback` failed; when every such step waited behind a gate, the approver
/// signed off the attempt and with it the way back.
fn rollback_is_gated(steps: &[Step]) -> bool {
    let mut gated = false;
    for step in steps {
        gated |= step.is_gate();
        if step.on_failure == OnFailure::Rollback && !gated {
            return false;
        }
    }
    true
}

/// Lints one sequence of steps; `gated` says whether it starts behind an approval.
fn sequence(steps: &[Step], mut gated: bool, out: &mut Vec<Diagnostic>) {
    for step in steps {
        gated |= step.is_gate();
        self::step(step, gated, out);
        // A gate before a group guards each of its branches. A gate that is itself a branch
        // guards nothing: its siblings run while it waits, and the engine binds no step to it.
        for branch in step.branches() {
            self::step(branch, gated, out);
        }
    }
}

/// Lints one step, or one branch of a group; `gated` says whether an approval comes before it.
fn step(step: &Step, gated: bool, out: &mut Vec<Diagnostic>) {
    let id = &step.id;
    let repeatable = step.read_only || step.idempotent;
    let crowded_fan_out = step.fan_out.as_ref().filter(|fan_out| fan_out.concurrency > 1);
    match crowded_fan_out {
        // The sharper warning of the two: several items at once with nobody's sign-off.
        Some(fan_out) if step.has_side_effects() && !repeatable && !gated => {
            let at_once = fan_out.concurrency;
            out.push(Diagnostic::warning(
                step.at,
                format!("step `{id}` is a fan-out of non-idempotent steps that runs {at_once} at once with no approval gate before it: a mistake repeats on {at_once} items before anyone can stop it; put an approval step before it, lower `concurrency` to 1, or mark it idempotent if running it twice is harmless"),
            ));
        }
        _ if step.has_side_effects() && !gated => {
            out.push(Diagnostic::warning(
                step.at,
                format!("step `{id}` changes things but is neither `read_only` nor behind an approval gate: mark it read_only if it only looks, or put an approval step before it"),
            ));
        }
        _ => {}
    }
    if let Some(fan_out) = &step.fan_out
        && fan_out.max_failures == FailureLimit::Percent(100)
        && step.has_side_effects()
    {
        out.push(Diagnostic::warning(
            step.at,
            format!("step `{id}` allows every item to fail (`max_failures: \"100%\"`): it succeeds even when no item did; allow fewer failures so that a bad change stops before it reaches the whole fleet"),
        ));
    }
    if step.retries.is_some() && step.has_side_effects() && !step.idempotent {
        out.push(Diagnostic::warning(
            step.at,
            format!("step `{id}` has `retries` but is not `idempotent`: a retry could repeat its side effect; mark it idempotent if running it twice is harmless"),
        ));
    }
    let expressions = match &step.kind {
        StepKind::Check(expression) => vec![expression],
        _ => vec![],
    };
    for expression in expressions.into_iter().chain(step.when.as_ref()) {
        if let Some(output) = text_compared_by_order(&expression.source) {
            out.push(Diagnostic::warning(
                expression.at,
                format!("`{output}` is text, and it is compared with `<`, `<=`, `>` or `>=`: Jinja orders any text above any number (`\"1\" >= 3` is true), so the comparison passes whatever was printed; convert it first (`{output} | int`, `| float`)"),
            ));
        }
    }
    // A check reads values that cannot change while it is retried: its retries are for
    // nothing, and the measurement it reads is what should be retried.
    if step.retries.is_some() && matches!(step.kind, StepKind::Check(_)) {
        out.push(Diagnostic::warning(
            step.at,
            format!("step `{id}` is a `check` with `retries`: a retry evaluates the same values again and can never pass; retry the step that measures instead (its `expect` can fail until the value is right)"),
        ));
    }
    if matches!(step.kind, StepKind::Run(_)) && step.timeout.is_none() {
        out.push(Diagnostic::warning(
            step.at,
            format!("step `{id}` has no `timeout`, so the default of 5m applies: say how long it may take"),
        ));
    }
}

fn unused_roles(runbook: &Runbook, out: &mut Vec<Diagnostic>) {
    let mut used = Vec::new();
    for step in runbook.all_steps() {
        match &step.kind {
            StepKind::Manual(manual) => used.push(manual.role.name.as_str()),
            StepKind::Approval(approval) => {
                used.push(approval.role.name.as_str());
                if let OnTimeout::Escalate { role, .. } = &approval.on_timeout {
                    used.push(role.name.as_str());
                }
            }
            _ => {}
        }
    }
    for role in &runbook.roles {
        if !used.contains(&role.name.as_str()) {
            out.push(Diagnostic::warning(
                role.at,
                format!("role `{}` is not used by any approval or manual step", role.name),
            ));
        }
    }
}

/// Alert labels are outside input: whoever can raise an alert, or write a label into one
/// (a scrape target's own labels, a Grafana query's series), chooses what a trigger puts into
/// a string parameter. A parameter with a `pattern` or `enum` is checked when the proposal is
/// made; one without takes whatever the alert says. Literals are the author's own, and other
/// types are checked by their type.
fn free_parameters_from_alerts(runbook: &Runbook, out: &mut Vec<Diagnostic>) {
    for mapping in runbook.triggers.iter().flat_map(|trigger| &trigger.params) {
        let Some(param) = runbook.param(&mapping.name) else { continue };
        let free_text = matches!(param.kind, ParamType::String | ParamType::List)
            && param.pattern.is_none()
            && param.choices.is_empty();
        if free_text && mapping.value.source.contains('{') {
            let name = &param.name;
            out.push(Diagnostic::warning(
                mapping.at,
                format!("a trigger fills parameter `{name}` from the alert, and `{name}` has neither `pattern` nor `enum`: alert labels are outside input, so give it a `pattern` anchored with ^ and $, or an `enum`"),
            ));
        }
    }
}

/// The first `steps.<id>.stdout` (or `stderr`) an expression compares by order without
/// converting it: always text, it compares above any number in Jinja, so such a check passes
/// whatever the step printed.
fn text_compared_by_order(source: &str) -> Option<String> {
    use std::sync::OnceLock;
    static BEFORE: OnceLock<regex::Regex> = OnceLock::new();
    static AFTER: OnceLock<regex::Regex> = OnceLock::new();
    let before = BEFORE.get_or_init(|| {
        regex::Regex::new(r"(steps\.[a-z][a-z0-9_]*\.std(?:out|err))\s*(?:<=|>=|<|>)")
            .expect("a valid regex")
    });
    let after = AFTER.get_or_init(|| {
        regex::Regex::new(
            r"(?:<=|>=|<|>)\s*(steps\.[a-z][a-z0-9_]*\.std(?:out|err))\s*(?:$|\)|\band\b|\bor\b|\bif\b)",
        )
        .expect("a valid regex")
    });
    before.captures(source).or_else(|| after.captures(source)).map(|found| found[1].to_owned())
}
